#!/bin/sh
# Makes the local `redis:7` image that the compose file of
# `gdp-deploy compose` runs as the directory, with no image registry: the
# host's redis-server (Debian: apt-get install redis-server) and the
# libraries it loads on a FROM scratch base (deploy/image/redis.Containerfile).
#
# Usage: deploy/image/redis.sh [--tag TAG] [--force] [--engine podman|docker]
#
#   --tag TAG   the image's name (default redis:7)
#   --force     build even when an image of that name exists (by default an
#               existing one, perhaps a real Redis image, is left alone)
#   --engine    podman (default when installed) or docker; GDP_ENGINE too
set -eu

repo=$(cd "$(dirname "$0")/../.." && pwd)
tag=redis:7
force=no
engine=${GDP_ENGINE:-}
while [ $# -gt 0 ]; do
    case $1 in
        --tag) tag=$2; shift 2 ;;
        --force) force=yes; shift ;;
        --engine) engine=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "redis.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$engine" ]; then
    if command -v podman >/dev/null 2>&1; then engine=podman; else engine=docker; fi
fi
if [ "$force" = no ] && "$engine" image inspect "$tag" >/dev/null 2>&1; then
    echo "$tag exists already; --force builds it again"
    exit 0
fi
server=$(command -v redis-server) || {
    echo "redis.sh: redis-server is not installed (Debian: apt-get install redis-server)" >&2
    exit 1
}
version=$("$server" --version | sed -n 's/.* v=\([0-9.]*\).*/\1/p')
case $version in
    7.*) ;;
    *) echo "redis.sh: warning: redis-server is version ${version:-unknown}, tagged $tag all the same" >&2 ;;
esac

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
sh "$repo/deploy/image/gather.sh" --user redis:999 "$context" "$server"
previous=$("$engine" image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
case $engine in
    podman) cache="--layers=false" ;;
    *) cache= ;;
esac
# shellcheck disable=SC2086 # $cache is one option or nothing
"$engine" build $cache --file "$repo/deploy/image/redis.Containerfile" --tag "$tag" "$context"
# The image this tag named before (with --force) is left without a name:
# remove it, unless a container still uses it.
current=$("$engine" image inspect --format '{{.Id}}' "$tag")
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
    "$engine" rmi "$previous" >/dev/null 2>&1 || true
fi
echo "built $tag with $engine from $server (version $version)"
