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
for tool in newuidmap newgidmap; do
    path=$(command -v "$tool" || true)
    if [ -z "$path" ]; then
        echo "build-image: $tool is missing: apt-get install uidmap" >&2
        exit 1
    fi
    # setuid root, as uidmap installs them.
    install -D -m 4755 "$path" "$root/usr/bin/$tool"
    programs+=("$path")
done
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
install -d -m 0755 "$root/etc" "$root/root" "$root/var/lib/hoist" "$root/workspace"
install -d -m 1777 "$root/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\nhoist:x:1000:1000:hoist:/home/hoist:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\nhoist:x:1000:\n' > "$root/etc/group"
printf 'hoist:1001:64535\n' > "$root/etc/subuid"
printf 'hoist:1001:64535\n' > "$root/etc/subgid"
install -d -m 0755 "$ctx/home/hoist"
cp "$repo/packaging/Dockerfile" "$ctx/Dockerfile"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 0)}
"$hoist" build "$@" "$ctx"
