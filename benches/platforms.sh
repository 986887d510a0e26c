#!/usr/bin/env bash
# Several platforms: a two-platform build (linux/amd64,linux/arm64) of a
# cross-compiling Dockerfile against the single-platform build of it, and
# of an emulated one (its RUN step under QEMU for arm64) against BuildKit's
# two per-platform builds (Docker 20.10 has no buildx), cold, in one run.
#
#   bash benches/platforms.sh [RUNS]
#
# The work is synthetic and stands in for a compiler: a RUN step hashing
# WORK_MB MiB (default 512) with busybox, on Debian's static busybox for
# each architecture (scripts/install-test-deps.sh downloads the arm64 one).
# The cross-compiling Dockerfile runs it natively in a `FROM
# --platform=$BUILDPLATFORM` stage, once per target as `GOARCH=$TARGETARCH
# go build` would; the emulated one runs it in each target's stage. Needs
# the release binary (built if missing), docker.io, qemu-user-static
# (its aarch64 handler is registered here if it is not). Prints each run
# and the medians.
set -euo pipefail
RUNS=${1:-3}
WORK_MB=${WORK_MB:-512}
repo=$(cd "$(dirname "$0")/.." && pwd)
hoist=$repo/target/release/hoist
[ -x "$hoist" ] || (cd "$repo" && cargo build --release --locked)
arm64=/var/cache/hoist-fixtures/busybox-static-arm64/bin/busybox
[ -x "$arm64" ] || { echo "platforms.sh: $arm64 is missing: run scripts/install-test-deps.sh" >&2; exit 1; }
binfmt=/proc/sys/fs/binfmt_misc
[ -e "$binfmt/status" ] || mount -t binfmt_misc binfmt_misc "$binfmt"
[ -e "$binfmt/qemu-aarch64" ] || cat /usr/lib/binfmt.d/qemu-aarch64.conf > "$binfmt/register"

work=$(mktemp -d /var/tmp/hoist-platforms-bench.XXXXXX)
cleanup() {
    [ -f "$work/docker.pid" ] && kill "$(cat "$work/docker.pid")" 2>/dev/null || true
    sleep 3
    umount "$work/exec/netns/default" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

for kind in cross emulated; do
    mkdir -p "$work/$kind"
    cp /bin/busybox "$work/$kind/busybox-amd64"
    cp "$arm64" "$work/$kind/busybox-arm64"
done
hash_work="for i in \$(/bin/busybox seq 1 $((WORK_MB / 64))); do /bin/busybox dd if=/dev/zero bs=1M count=64 2>/dev/null | /bin/busybox sha256sum; done"
cat > "$work/cross/Dockerfile" <<EOF
FROM --platform=\$BUILDPLATFORM scratch AS build
ARG BUILDARCH
COPY busybox-\$BUILDARCH /bin/busybox
ARG TARGETARCH
RUN ["/bin/busybox", "sh", "-c", "($hash_work; echo \$TARGETARCH) > /out"]
FROM scratch
ARG TARGETARCH
COPY busybox-\$TARGETARCH /bin/busybox
COPY --from=build /out /out
EOF
cat > "$work/emulated/Dockerfile" <<EOF
FROM scratch
ARG TARGETARCH
COPY busybox-\$TARGETARCH /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "($hash_work; echo \$TARGETARCH) > /out"]
EOF

dockerd --host "unix://$work/docker.sock" --data-root "$work/docker" --exec-root "$work/exec" \
    --pidfile "$work/docker.pid" --iptables=false --bridge=none >"$work/dockerd.log" 2>&1 &
docker=(/usr/bin/docker -H "unix://$work/docker.sock")
for _ in $(seq 60); do "${docker[@]}" info >/dev/null 2>&1 && break; sleep 1; done

# A failed build stops the bench: its time would mean nothing.
seconds() {
    local start=$(date +%s.%N)
    if ! "$@" >/dev/null 2>"$work/last.err"; then
        echo "platforms.sh: failed: $*" >&2
        cat "$work/last.err" >&2
        kill $$
    fi
    echo "$(date +%s.%N) - $start" | bc
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
buildkit_both() {
    for p in linux/amd64 linux/arm64; do
        DOCKER_BUILDKIT=1 "${docker[@]}" build --no-cache --network=host --platform "$p" \
            -t "bench:${p//\//-}" "$work/emulated" || return 1
    done
}

declare -A times
for i in $(seq "$RUNS"); do
    times[cross-one]+="$(seconds "$hoist" --store "$work/s-$i-a" build -q --platform linux/amd64 "$work/cross") "
    times[cross-two]+="$(seconds "$hoist" --store "$work/s-$i-b" build -q --platform linux/amd64,linux/arm64 "$work/cross") "
    times[emulated-two]+="$(seconds "$hoist" --store "$work/s-$i-c" build -q --platform linux/amd64,linux/arm64 "$work/emulated") "
    "${docker[@]}" builder prune -af >/dev/null 2>&1 || true
    times[buildkit-emulated-two]+="$(seconds buildkit_both) "
done
for key in cross-one cross-two emulated-two buildkit-emulated-two; do
    m=$(tr ' ' '\n' <<<"${times[$key]}" | grep . | median)
    printf '%-24s median %6.2f s   runs: %s\n' "$key" "$m" "${times[$key]}"
done
