#!/usr/bin/env bash
# Times hoist against buildah and BuildKit on ../shared/bench's workloads, in one
# run, and prints medians and ratios: cold build (empty cache), warm rebuild
# (nothing changed) and one file changed. Run as root on a machine where
# scripts/install-test-deps.sh has been run. Never part of the test suite.
#
#   bash benches/compare.sh [RUNS] [WORKLOAD...]    # default: 3 runs, big-context
#
# The machine evicts file cache unused for about a minute, so every timed
# build is preceded by a read of its context (as ../shared/bench/README.md
# describes for its own figures).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
# Seconds of quiet before each cold build (see the loop below).
SETTLE=${SETTLE:-30}
shift || true
WORKLOADS=("${@:-big-context}")
ROOT=$(mktemp -d /tmp/hoist-bench.XXXXXX)
trap 'cleanup' EXIT
cleanup() {
  [ -n "${DOCKERD_PID:-}" ] && kill "$DOCKERD_PID" 2>/dev/null && wait "$DOCKERD_PID" 2>/dev/null || true
  [ -n "${REGISTRY_PID:-}" ] && kill "$REGISTRY_PID" 2>/dev/null || true
  rm -rf "$ROOT" 2>/dev/null || true
}

# HOIST=PATH times another hoist binary (an older build, for before/after
# figures); by default this tree's, built now.
if [ -z "${HOIST:-}" ]; then
  cargo build --release --locked -q
  HOIST=$PWD/target/release/hoist
fi

# A registry for the workloads' base images, on loopback.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$ROOT/registry.yml" <<YML
version: 0.1
storage: {filesystem: {rootdirectory: $ROOT/registry}}
http: {addr: 127.0.0.1:$PORT}
YML
docker-registry serve "$ROOT/registry.yml" > "$ROOT/registry.log" 2>&1 &
REGISTRY_PID=$!
export BASE_REG=127.0.0.1:$PORT
# The base images need a debootstrap rootfs ($ROOTFS, e.g. `debootstrap
# --variant=minbase bookworm /tmp/rootfs`); big-context does not, so an empty
# rootfs stands in when absent. run-heavy builds FROM bench/debian:bookworm,
# which hoist builds from that rootfs and pushes here (the workloads script
# would use buildah), so every builder pulls the same base; small-app's
# bench/busybox:1 is built and pushed the same way.
if [ ! -d "${ROOTFS:-/tmp/rootfs}" ]; then export ROOTFS=$ROOT/empty-rootfs; mkdir -p "$ROOTFS"; fi
PUSH_BASES=0 bash ../shared/bench/make-workloads.sh "$ROOT/w" > "$ROOT/workloads.log" 2>&1 \
  || { cat "$ROOT/workloads.log"; exit 1; }
if [[ " ${WORKLOADS[*]} " == *" small-app "* ]]; then
  "$HOIST" --store "$ROOT/base-store" build -q --push -t "$BASE_REG/bench/busybox:1" \
    "$ROOT/w/base-busybox" > /dev/null
fi
if [[ " ${WORKLOADS[*]} " == *" run-heavy "* ]]; then
  [ -x "${ROOTFS:-/tmp/rootfs}/bin/sh" ] || { echo "run-heavy needs a debootstrap rootfs in \$ROOTFS" >&2; exit 1; }
  "$HOIST" --store "$ROOT/base-store" build -q --push -t "$BASE_REG/bench/debian:bookworm" \
    "$ROOT/w/base-debian" > /dev/null
fi

# A private dockerd for BuildKit (Debian's 20.10 client and daemon).
mkdir -p "$ROOT/docker"
dockerd --host "unix://$ROOT/docker/sock" --data-root "$ROOT/docker/data" --exec-root "$ROOT/docker/exec" \
  --pidfile "$ROOT/docker/pid" --iptables=false --bridge=none > "$ROOT/dockerd.log" 2>&1 &
DOCKERD_PID=$!
DOCKER="/usr/bin/docker -H unix://$ROOT/docker/sock"
for _ in $(seq 100); do $DOCKER info >/dev/null 2>&1 && break; sleep 0.1; done

warm_cache() { find "$1" -type f -exec cat {} + > /dev/null; }
# Bash's own clock: forking `date` around a build would add milliseconds to
# every figure, which matters for the warm rebuilds.
seconds() { local s e; s=$EPOCHREALTIME; "$@" > /dev/null 2>&1; e=$EPOCHREALTIME; echo "$e - $s" | bc; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

builder_cmd() { # BUILDER STATE_DIR CONTEXT
  case $1 in
    hoist) echo "$HOIST --store $2 build -q $3" ;;
    buildah) echo "buildah --root $2/root --runroot $2/run bud --isolation chroot --layers --tls-verify=false -q $3" ;;
    buildkit) echo "env DOCKER_BUILDKIT=1 $DOCKER build --network=host -q $3" ;;
  esac
}

printf '%-12s %-9s %-14s %10s\n' workload builder step median_s
for w in "${WORKLOADS[@]}"; do
  ctx_orig="$ROOT/w/$w"
  declare -A RESULT=()
  for builder in hoist buildah buildkit; do
    cold=(); warm=(); changed=()
    for run in $(seq "$RUNS"); do
      ctx="$ROOT/ctx-$builder-$run"; rm -rf "$ctx"; cp -a "$ctx_orig" "$ctx"
      state="$ROOT/state-$builder-$run"; rm -rf "$state"; mkdir -p "$state"
      if [ "$builder" = buildkit ]; then
        # Cold for BuildKit too: its cache, and the images earlier runs
        # exported, whose layers (the base's among them) dockerd's
        # BuildKit would otherwise find unpacked and skip pulling.
        $DOCKER builder prune -af > /dev/null 2>&1
        $DOCKER image prune -af > /dev/null 2>&1
      fi
      cmd=$(builder_cmd "$builder" "$state" "$ctx")
      # Each cold build starts on a settled machine: the previous build's
      # dirty pages written back, and inodes deleted by a prune past
      # ext4's recently-deleted window (they are skipped, slowly, by
      # inode allocation for about half a minute).
      sync; sleep "$SETTLE"
      warm_cache "$ctx"; cold+=("$(seconds $cmd)")
      warm_cache "$ctx"; warm+=("$(seconds $cmd)")
      one=$(find "$ctx" -type f ! -name Dockerfile | sort | awk "NR == 1")
      # A comment line: harmless in the files the workloads source or parse.
      echo "# changed $run" >> "$one"
      warm_cache "$ctx"; changed+=("$(seconds $cmd)")
      if [ "$builder" = buildah ]; then
        # RUN steps leave buildah's overlays mounted.
        buildah --root "$state/root" --runroot "$state/run" rm -a > /dev/null 2>&1 || true
        { findmnt -rn -o TARGET | grep "^$state/" || true; } | sort -r | xargs -r umount -l
      fi
      # States stay until the script exits: deleting tens of thousands of
      # inodes just before the next timed build slows that build's inode
      # allocation on ext4 (recently deleted inodes are skipped for a
      # while), which would charge one builder for another's cleanup.
    done
    for step in cold warm changed; do
      declare -n arr=$step
      m=$(median "${arr[@]}")
      RESULT[$builder-$step]=$m
      printf '%-12s %-9s %-14s %10.3f   (runs: %s)\n' "$w" "$builder" "$step" "$m" "${arr[*]}"
    done
  done
  for step in cold warm changed; do
    printf '%-12s ratio     %-14s hoist/buildah %.2f  hoist/buildkit %.2f\n' "$w" "$step" \
      "$(echo "${RESULT[hoist-$step]} / ${RESULT[buildah-$step]}" | bc -l)" \
      "$(echo "${RESULT[hoist-$step]} / ${RESULT[buildkit-$step]}" | bc -l)"
  done
done
