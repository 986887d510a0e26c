#!/usr/bin/env bash
# Builds hoist's own container image, with hoist, from packaging/Dockerfile.
#
#   bash scripts/build-image.sh -t REGISTRY/hoist:TAG --push
#   bash scripts/build-image.sh -t hoist:dev --output type=docker,dest=- | docker load
#
# Arguments are hoist build flags. HOIST_BIN names the binary to package
# (default: target/release/hoist, built if missing). The image holds that
# binary, the C libraries it and newuidmap/newgidmap link, CA certificates,
# and users root and hoist (1000, with subordinate ids 1001-65535 for
# rootless RUN in a user namespace of 65536 ids). Timestamps are clamped to
# SOURCE_DATE_EPOCH (default: the last commit's time), so the same binary
# gives the same digest on any machine.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${HOIST_BIN:-$repo/target/release/hoist}
if [ ! -x "$bin" ]; then
    (cd "$repo" && cargo build --release --locked)
fi
hoist=${HOIST:-$bin}
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
install -D -m 0755 "$bin" "$root/usr/local/bin/hoist"
programs=("$bin")
setcap=$(command -v setcap || true)
if [ -z "$setcap" ]; then
    echo "build-image: setcap is missing: apt-get install libcap2-bin" >&2
    exit 1
fi
idmap=$ctx/idmap
for tool in newuidmap newgidmap; do
    path=$(command -v "$tool" || true)
    if [ -z "$path" ]; then
        echo "build-image: $tool is missing: apt-get install uidmap" >&2
        exit 1
    fi
    # With file capabilities instead of setuid root: a setuid newuidmap
    # runs as root of a container's user namespace, which does not own the
    # namespace hoist makes, and the kernel then wants CAP_SYS_ADMIN to
    # write its map. With cap_setuid/cap_setgid it runs as the user who
    # made the namespace (uid 1000 under `podman run --userns=auto`).
    install -D -m 0755 "$path" "$idmap/usr/bin/$tool"
    programs+=("$path")
done
"$setcap" cap_setuid+ep "$idmap/usr/bin/newuidmap"
"$setcap" cap_setgid+ep "$idmap/usr/bin/newgidmap"
# A tar carries the capabilities into the image (ADD keeps
# security.capability; a context's files are sent without attributes).
tar --xattrs --xattrs-include=security.capability --sort=name --owner=0 --group=0 \
    --numeric-owner -C "$idmap" -cf "$ctx/idmap.tar" .
rm -rf "$idmap"
# The shared libraries, at the paths the dynamic loader looks them up.
for lib in $(ldd "${programs[@]}" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $1 !~ /:$/ { print $1 }' | sort -u); do
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
done
certs=/etc/ssl/certs/ca-certificates.crt
if [ ! -f "$certs" ]; then
    echo "build-image: $certs is missing: apt-get install ca-certificates" >&2
    exit 1
fi
install -D -m 0644 "$certs" "$root$certs"
install -d -m 0755 "$root/etc" "$root/root" "$root/var/lib" "$root/workspace"
install -d -m 1777 "$root/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\nhoist:x:1000:1000:hoist:/home/hoist:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\nhoist:x:1000:\n' > "$root/etc/group"
printf 'hoist:1001:64535\n' > "$root/etc/subuid"
printf 'hoist:1001:64535\n' > "$root/etc/subgid"
install -d -m 0755 "$ctx/home/hoist" "$ctx/store"
cp "$repo/packaging/Dockerfile" "$ctx/Dockerfile"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 0)}
"$hoist" build "$@" "$ctx"
