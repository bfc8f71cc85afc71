#!/usr/bin/env bash
# Build localhost/hpclaunch-standin:latest, the smallest image that runs the stand-in:
# the host's /usr/bin/python3.11, the shared libraries it and its extension modules load,
# the standard library without tests and GUI parts, and a copy of the hpclaunch package
# at /opt/hpclaunch (PYTHONPATH). No registry is reachable here, so the image is imported
# from a root filesystem tarball made of host files (merged /usr: keep the bin/lib/lib64
# symlinks or the loader is missing).
#
# Usage: bash scripts/podman/build-image.sh [IMAGE]   (skips the build when the image's
# hpclaunch.source label already matches the package's content hash)
set -euo pipefail

IMAGE=${1:-localhost/hpclaunch-standin:latest}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=/usr/bin/python3.11
STDLIB=/usr/lib/python3.11

hash=$(cd "$REPO" && find hpclaunch -name '*.py' -o -name '*.json' -o -name '*.yaml' | LC_ALL=C sort \
       | xargs sha256sum | sha256sum | cut -c1-16)
if [ "$(podman image inspect --format '{{ index .Labels "hpclaunch.source" }}' "$IMAGE" 2>/dev/null)" = "$hash" ]; then
    echo "build-image: $IMAGE is up to date ($hash)" >&2
    exit 0
fi

old=$(podman image inspect --format '{{ .Id }}' "$IMAGE" 2>/dev/null || true)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root/usr/bin" "$root/usr/lib/x86_64-linux-gnu" "$root/usr/lib64" "$root/etc" \
         "$root/tmp" "$root/opt/hpclaunch"
chmod 1777 "$root/tmp"
ln -s usr/bin "$root/bin"
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"
cp -a "$PY" "$root/usr/bin/"
ln -s python3.11 "$root/usr/bin/python3"
# The libraries the interpreter and its extension modules need, as ldd resolves them.
{ ldd "$PY"; find "$STDLIB/lib-dynload" -name '*.so' -exec ldd {} \; ; } 2>/dev/null \
    | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\/lib64\// { print $1 }' | sort -u \
    | while read -r lib; do cp -L "$lib" "$root/usr/${lib#/usr/}" 2>/dev/null \
        || cp -L "$lib" "$root${lib/#\/lib/\/usr\/lib}"; done
tar -C / -cf - --exclude='__pycache__' --exclude='python3.11/test' --exclude='idlelib' \
    --exclude='tkinter' --exclude='turtledemo' --exclude='ensurepip' --exclude='lib2to3' \
    --exclude='dist-packages' --exclude='config-3.11-*' "${STDLIB#/}" | tar -C "$root" -xf -
(cd "$REPO" && tar -cf - --exclude='__pycache__' hpclaunch) | tar -C "$root/opt/hpclaunch" -xf -
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
tar -C "$root" -cf "$work/rootfs.tar" .
podman import --quiet \
    --change 'ENV PYTHONPATH=/opt/hpclaunch' --change 'ENV PYTHONDONTWRITEBYTECODE=1' \
    --change "LABEL hpclaunch.source=$hash" --change 'CMD ["/usr/bin/python3.11"]' \
    "$work/rootfs.tar" "$IMAGE" >/dev/null
# The previous build, now untagged, would pile up with every source change.
[ -z "$old" ] || podman rmi "$old" >/dev/null 2>&1 || true
echo "build-image: built $IMAGE ($(du -sh "$work/rootfs.tar" | cut -f1) tar, source $hash)" >&2
