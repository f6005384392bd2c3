#!/bin/sh
# Builds the GDP image (deploy/Containerfile) from prebuilt programs, with
# no image registry: gathers gdp-router, gdp-capsule-server and gdp and the
# shared libraries they load into a context directory (gather.sh), then
# builds the Containerfile's default target from it.
#
# Usage: deploy/image/build.sh [--bin-dir DIR] [--tag TAG] [--context DIR]
#                              [--engine podman|docker] [--no-strip]
#
#   --bin-dir DIR   take the programs from DIR; without it, run
#                   `cargo build --release --locked` for the three packages
#                   and take them from target/release (or $CARGO_TARGET_DIR/release)
#   --tag TAG       the image's name (default gdp:latest, what the compose
#                   file of `gdp-deploy compose` runs unless GDP_IMAGE says otherwise)
#   --context DIR   where to gather (default target/gdp-image); emptied first
#   --engine        podman (default when installed) or docker; GDP_ENGINE too
#   --no-strip      keep the programs' symbols (line tables for backtraces)
#
# Why a script and not a `gdp-deploy` subcommand: it runs before anything of
# the workspace is built (it may run cargo itself) and only strings together
# cargo, ldd and the container engine, so an operator can read and adapt it.
set -eu

repo=$(cd "$(dirname "$0")/../.." && pwd)
bin_dir=
tag=gdp:latest
context=
engine=${GDP_ENGINE:-}
strip=
while [ $# -gt 0 ]; do
    case $1 in
        --bin-dir) bin_dir=$2; shift 2 ;;
        --tag) tag=$2; shift 2 ;;
        --context) context=$2; shift 2 ;;
        --engine) engine=$2; shift 2 ;;
        --no-strip) strip=--no-strip; shift ;;
        -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [ -z "$engine" ]; then
    if command -v podman >/dev/null 2>&1; then
        engine=podman
    elif command -v docker >/dev/null 2>&1; then
        engine=docker
    else
        echo "build.sh: neither podman nor docker is installed" >&2
        exit 1
    fi
fi
case $engine in
    # podman's default image format (OCI) has no HEALTHCHECK.
    podman) format="--format docker" ;;
    docker) format= ;;
    *) echo "build.sh: unknown engine $engine" >&2; exit 2 ;;
esac

if [ -z "$bin_dir" ]; then
    (cd "$repo" && cargo build --release --locked -p gdp-router -p gdp-capsule-server -p gdp-cli --bins)
    bin_dir=${CARGO_TARGET_DIR:-$repo/target}/release
fi
context=${context:-$repo/target/gdp-image}
rm -rf "$context"
mkdir -p "$context"

sh "$repo/deploy/image/gather.sh" $strip "$context" \
    "$bin_dir/gdp-router" "$bin_dir/gdp-capsule-server" "$bin_dir/gdp"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -n 1)
previous=$("$engine" image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
case $engine in
    # No cached stage images: each build copies new programs anyway.
    podman) cache="--layers=false" ;;
    docker) cache= ;;
esac
# shellcheck disable=SC2086 # $format and $cache are one option or nothing
"$engine" build $format $cache --file "$repo/deploy/Containerfile" \
    --build-arg "GDP_VERSION=$version" --tag "$tag" "$context"
# The image this tag named before is left without a name: remove it, unless
# a container still uses it.
current=$("$engine" image inspect --format '{{.Id}}' "$tag")
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
    "$engine" rmi "$previous" >/dev/null 2>&1 || true
fi
echo "built $tag with $engine from $bin_dir"
