#!/usr/bin/env bash
# RUN in a default container: run-heavy (../shared/bench) cold and warm,
# built by hoist's image inside `docker run` with Docker's default seccomp
# profile and capabilities (chroot isolation), by hoist on the host
# (namespaces), and by `buildah bud --isolation chroot` on the host and in
# `docker run` (an image of Debian's buildah, vfs storage; it needs
# `--security-opt seccomp=unconfined`, as it makes a user namespace even
# with chroot isolation: "Error during unshare(CLONE_NEWUSER): Operation
# not permitted" under the default profile).
#
#   bash benches/chroot.sh REGISTRY [RUNS]
#
# REGISTRY holds the Debian stand-in base (fixtures/base-images/
# make-stand-ins.sh REGISTRY); run-heavy is built FROM python:3.9-slim
# through it. Needs the release binary (built if missing), docker.io,
# buildah. Prints each run and the medians.
set -euo pipefail
REG=${1:?usage: chroot.sh REGISTRY [RUNS]}
RUNS=${2:-3}
repo=$(cd "$(dirname "$0")/.." && pwd)
hoist=$repo/target/release/hoist
[ -x "$hoist" ] || (cd "$repo" && cargo build --release --locked)
work=$(mktemp -d /var/tmp/hoist-chroot-bench.XXXXXX)
cleanup() {
    [ -f "$work/docker.pid" ] && kill "$(cat "$work/docker.pid")" 2>/dev/null || true
    sleep 3
    umount "$work/exec/netns/default" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/empty"
PUSH_BASES=0 ROOTFS=$work/empty bash "$repo/../shared/bench/make-workloads.sh" "$work/wl" >/dev/null
ctx=$work/wl/run-heavy
sed -i '1s|.*|FROM python:3.9-slim|' "$ctx/Dockerfile"

dockerd --host "unix://$work/docker.sock" --data-root "$work/docker" --exec-root "$work/exec" \
    --pidfile "$work/docker.pid" --iptables=false --bridge=none >"$work/dockerd.log" 2>&1 &
docker=(/usr/bin/docker -H "unix://$work/docker.sock")
for _ in $(seq 60); do "${docker[@]}" info >/dev/null 2>&1 && break; sleep 1; done
HOIST_BIN=$hoist bash "$repo/scripts/build-image.sh" --store "$work/image-store" -q \
    -t hoist:bench --output "type=docker,dest=$work/hoist.tar" >/dev/null
"${docker[@]}" load -q -i "$work/hoist.tar" >/dev/null

# buildah's image: Debian's binary, the libraries it links, a policy that
# accepts any image, vfs storage (overlay cannot be mounted there).
b=$work/buildah-image/rootfs
install -D -m 0755 "$(command -v buildah)" "$b/usr/bin/buildah"
for lib in $(ldd "$(command -v buildah)" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $1 !~ /:$/ { print $1 }' | sort -u); do
    install -D -m 0755 "$(readlink -f "$lib")" "$b$lib"
done
install -d -m 0755 "$b/etc/containers" "$b/root" "$b/var/lib/containers"
install -d -m 1777 "$b/tmp" "$b/var/tmp"
echo '{"default":[{"type":"insecureAcceptAnything"}]}' > "$b/etc/containers/policy.json"
printf '[storage]\ndriver = "vfs"\nrunroot = "/run/containers/storage"\ngraphroot = "/var/lib/containers/storage"\n' \
    > "$b/etc/containers/storage.conf"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$b/etc/passwd"
printf 'root:x:0:\n' > "$b/etc/group"
printf 'FROM scratch\nCOPY rootfs/ /\nENTRYPOINT ["/usr/bin/buildah"]\n' > "$work/buildah-image/Dockerfile"
"$hoist" --store "$work/image-store" build -q -t buildah:bench \
    --output "type=docker,dest=$work/buildah.tar" "$work/buildah-image" >/dev/null
"${docker[@]}" load -q -i "$work/buildah.tar" >/dev/null

seconds() { local start=$(date +%s.%N); "$@" >/dev/null 2>&1; echo "$(date +%s.%N) - $start" | bc; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

declare -A times
# Every run gets fresh directories, and nothing is deleted before the end:
# on ext4 mounted with `discard`, creating files right after a large
# deletion is slow for a while, whoever creates them.
settle() { sync; sleep 20; }
for i in $(seq "$RUNS"); do
    mkdir -p "$work/vol-$i"
    settle
    times[host-cold]+="$(seconds "$hoist" --store "$work/store-$i" build -q --isolation namespaces \
        --registry-mirror "docker.io=$REG" "$ctx") "
    times[host-warm]+="$(seconds "$hoist" --store "$work/store-$i" build -q --isolation namespaces \
        --registry-mirror "docker.io=$REG" "$ctx") "
    settle
    run=("${docker[@]}" run --rm --network=host -v "$ctx:/ctx:ro" -v "$work/vol-$i:/var/lib/hoist" hoist:bench
        build -q --registry-mirror "docker.io=$REG" /ctx)
    times[container-cold]+="$(seconds "${run[@]}") "
    times[container-warm]+="$(seconds "${run[@]}") "
    settle
    bud=(buildah --root "$work/buildah-$i/root" --runroot "$work/buildah-$i/run"
        bud --isolation chroot --layers --tls-verify=false -q -f "$ctx/Dockerfile")
    sed "1s|.*|FROM $REG/library/python:3.9-slim|" "$ctx/Dockerfile" > "$work/Dockerfile.buildah"
    bud[-1]=$work/Dockerfile.buildah
    times[buildah-cold]+="$(seconds "${bud[@]}" "$ctx") "
    times[buildah-warm]+="$(seconds "${bud[@]}" "$ctx") "
    settle
    mkdir -p "$work/buildah-vol-$i"
    bud_in=("${docker[@]}" run --rm --network=host --security-opt seccomp=unconfined
        -v "$ctx:/ctx:ro" -v "$work/Dockerfile.buildah:/Dockerfile:ro"
        -v "$work/buildah-vol-$i:/var/lib/containers" buildah:bench
        bud --isolation chroot --layers --tls-verify=false -q -f /Dockerfile /ctx)
    times[buildah-container-cold]+="$(seconds "${bud_in[@]}") "
    times[buildah-container-warm]+="$(seconds "${bud_in[@]}") "
done
for key in host-cold container-cold buildah-cold buildah-container-cold \
    host-warm container-warm buildah-warm buildah-container-warm; do
    m=$(tr ' ' '\n' <<<"${times[$key]}" | grep . | median)
    printf '%-24s median %6.2f s   runs: %s\n' "$key" "$m" "${times[$key]}"
done
