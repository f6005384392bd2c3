#!/bin/sh
# Gathers programs and the shared libraries they load into the layout a
# FROM scratch image is built from (deploy/Containerfile,
# deploy/image/redis.Containerfile):
#
#   OUT/rootfs/usr/local/bin/PROGRAM...    the programs (stripped unless --no-strip)
#   OUT/rootfs/<path of each library>      every library `ldd` lists, the loader included
#   OUT/rootfs/etc/passwd, etc/group       root and the image's user
#   OUT/rootfs/tmp (mode 1777), var/lib    empty directories
#   OUT/state/                             an empty directory: the user's data
#                                          directory, which the Containerfile
#                                          copies in owned by the user
#
# Usage: sh deploy/image/gather.sh [--user NAME:UID] [--no-strip] OUT PROGRAM...
#
# --user defaults to gdp:10001 (the group has the same name and number).
# Runs on the build host (deploy/image/build.sh) and inside a Rust builder
# image (the Containerfile's `source` stage); needs only sh, ldd, cp and,
# for stripping, strip. Nothing here needs root.
set -eu

user=gdp:10001
strip=yes
while [ $# -gt 0 ]; do
    case $1 in
        --user) user=$2; shift 2 ;;
        --no-strip) strip=no; shift ;;
        --) shift; break ;;
        -*) echo "gather.sh: unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done
if [ $# -lt 2 ]; then
    echo "usage: gather.sh [--user NAME:UID] [--no-strip] OUT PROGRAM..." >&2
    exit 2
fi
out=$1
shift
name=${user%%:*}
id=${user#*:}
case $id in
    ''|*[!0-9]*) echo "gather.sh: --user wants NAME:UID, got $user" >&2; exit 2 ;;
esac
if [ "$strip" = yes ] && ! command -v strip >/dev/null 2>&1; then
    echo "gather.sh: strip not found, the programs are copied as they are" >&2
    strip=no
fi

root=$out/rootfs
mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$root/var/lib" "$out/state"
chmod 1777 "$root/tmp"
printf 'root:x:0:0:root:/:/sbin/nologin\n%s:x:%s:%s::/var/lib/%s:/sbin/nologin\n' \
    "$name" "$id" "$id" "$name" >"$root/etc/passwd"
printf 'root:x:0:\n%s:x:%s:\n' "$name" "$id" >"$root/etc/group"

for program in "$@"; do
    if [ ! -f "$program" ]; then
        echo "gather.sh: $program is not a file" >&2
        exit 1
    fi
    target=$root/usr/local/bin/$(basename "$program")
    cp "$program" "$target"
    chmod 0755 "$target"
    if [ "$strip" = yes ]; then
        strip --strip-unneeded "$target"
    fi
    # `ldd` prints `name => /path (addr)` for each library and `/path (addr)`
    # for the loader; the vDSO has no path. A static program has none.
    libraries=$(ldd "$program" 2>/dev/null | awk '
        $2 == "=>" && $3 ~ /^\// { print $3 }
        $1 ~ /^\// { print $1 }') || true
    for lib in $libraries; do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
done
echo "gathered $# programs into $out: $(du -sh "$root" | cut -f1)"
