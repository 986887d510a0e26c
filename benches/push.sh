#!/usr/bin/env bash
# Times pushing to a local registry:2, in one run, and prints medians and ratios:
#
#   push        hoist push of the big-context image  vs  skopeo copy of the same
#               image from an OCI layout (`hoist build --output type=oci`)
#   build+push  hoist build --push  vs  buildah bud --isolation chroot + buildah
#               push  vs  BuildKit (docker build) + docker push, all cold
#
# Every timed command pushes to a fresh, empty registry, so nothing is skipped
# or mounted: each run uploads every blob. Run as root on a machine where
# scripts/install-test-deps.sh has been run. Never part of the test suite.
#
#   bash benches/push.sh [RUNS]    # default: 3 runs
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
ROOT=$(mktemp -d /tmp/hoist-push-bench.XXXXXX)
trap 'cleanup' EXIT
cleanup() {
  [ -n "${DOCKERD_PID:-}" ] && kill "$DOCKERD_PID" 2>/dev/null && wait "$DOCKERD_PID" 2>/dev/null || true
  [ -n "${REGISTRY_PID:-}" ] && kill "$REGISTRY_PID" 2>/dev/null || true
  rm -rf "$ROOT" 2>/dev/null || true
}

cargo build --release --locked -q
HOIST=$PWD/target/release/hoist

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG=127.0.0.1:$PORT
# A fresh, empty registry (same address) before every timed command: no tool
# finds a blob there already, and none can mount one from an earlier run
# (skopeo and buildah remember blob locations in their blob-info cache and
# would mount instead of uploading).
fresh_registry() {
  if [ -n "${REGISTRY_PID:-}" ]; then kill "$REGISTRY_PID"; wait "$REGISTRY_PID" 2>/dev/null || true; fi
  rm -rf "$ROOT/registry"
  cat > "$ROOT/registry.yml" <<YML
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $ROOT/registry}}
http: {addr: $REG}
YML
  docker-registry serve "$ROOT/registry.yml" >> "$ROOT/registry.log" 2>&1 &
  REGISTRY_PID=$!
  for _ in $(seq 100); do curl -sf "http://$REG/v2/" > /dev/null && return; sleep 0.1; done
  echo "registry did not start: $(cat "$ROOT/registry.log")" >&2; exit 1
}
fresh_registry

# big-context is FROM scratch: no base image, so no rootfs is needed.
if [ ! -d "${ROOTFS:-/tmp/rootfs}" ]; then export ROOTFS=$ROOT/empty-rootfs; mkdir -p "$ROOTFS"; fi
PUSH_BASES=0 BASE_REG=$REG bash ../shared/bench/make-workloads.sh "$ROOT/w" > "$ROOT/workloads.log" 2>&1 \
  || { cat "$ROOT/workloads.log"; exit 1; }
CTX=$ROOT/w/big-context

mkdir -p "$ROOT/docker"
dockerd --host "unix://$ROOT/docker/sock" --data-root "$ROOT/docker/data" --exec-root "$ROOT/docker/exec" \
  --pidfile "$ROOT/docker/pid" --iptables=false --bridge=none > "$ROOT/dockerd.log" 2>&1 &
DOCKERD_PID=$!
DOCKER="/usr/bin/docker -H unix://$ROOT/docker/sock"
for _ in $(seq 100); do $DOCKER info >/dev/null 2>&1 && break; sleep 0.1; done

warm_cache() { find "$1" -type f -exec cat {} + > /dev/null; }
seconds() { local s e; s=$EPOCHREALTIME; "$@" > "$ROOT/last.log" 2>&1 || { cat "$ROOT/last.log" >&2; exit 1; }; e=$EPOCHREALTIME; echo "$e - $s" | bc; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# ---------------------------------------------------------------- push only
STORE=$ROOT/store
$HOIST --store "$STORE" build -q -t bench/big:1 --output "type=oci,dest=$ROOT/layout" "$CTX" > /dev/null
hoist_push=(); skopeo_push=()
for run in $(seq "$RUNS"); do
  # No push records: the push must upload, not mount from the previous run.
  rm -rf "$STORE/pushed"
  fresh_registry
  warm_cache "$STORE/blobs"
  hoist_push+=("$(seconds "$HOIST" --store "$STORE" push -q bench/big:1 "$REG/hoist-$run/big:1")")
  fresh_registry
  warm_cache "$ROOT/layout"
  skopeo_push+=("$(seconds skopeo copy -q --dest-tls-verify=false "oci:$ROOT/layout" "docker://$REG/skopeo-$run/big:1")")
done

# ---------------------------------------------------------------- build + push
hoist_e2e=(); buildah_e2e=(); buildkit_e2e=()
for run in $(seq "$RUNS"); do
  state=$ROOT/state-$run; rm -rf "$state"; mkdir -p "$state"
  fresh_registry
  warm_cache "$CTX"
  hoist_e2e+=("$(seconds "$HOIST" --store "$state/hoist" build -q --push -t "$REG/e2e-hoist-$run/big:1" "$CTX")")
  fresh_registry
  warm_cache "$CTX"
  buildah_e2e+=("$(seconds bash -c "buildah --root $state/root --runroot $state/run bud --isolation chroot -q -t $REG/e2e-buildah-$run/big:1 $CTX \
    && buildah --root $state/root --runroot $state/run push -q --tls-verify=false $REG/e2e-buildah-$run/big:1")")
  $DOCKER builder prune -af > /dev/null 2>&1
  fresh_registry
  warm_cache "$CTX"
  buildkit_e2e+=("$(seconds bash -c "DOCKER_BUILDKIT=1 $DOCKER build --network=host -q -t $REG/e2e-buildkit-$run/big:1 $CTX \
    && $DOCKER push -q $REG/e2e-buildkit-$run/big:1")")
  $DOCKER rmi -f "$REG/e2e-buildkit-$run/big:1" > /dev/null 2>&1 || true
  rm -rf "$state"
done

printf '%-12s %-9s %10s\n' step tool median_s
m_hp=$(median "${hoist_push[@]}"); m_sp=$(median "${skopeo_push[@]}")
m_he=$(median "${hoist_e2e[@]}"); m_be=$(median "${buildah_e2e[@]}"); m_ke=$(median "${buildkit_e2e[@]}")
printf '%-12s %-9s %10.3f\n' push hoist "$m_hp" push skopeo "$m_sp"
printf '%-12s %-9s %10.3f\n' build+push hoist "$m_he" build+push buildah "$m_be" build+push buildkit "$m_ke"
fastest=$(printf '%s\n' "$m_be" "$m_ke" | sort -n | head -1)
printf 'push: hoist/skopeo %.2f (target <= 1.0)\n' "$(echo "$m_hp / $m_sp" | bc -l)"
printf 'build+push: hoist/fastest peer %.2f (target <= 0.5; buildah %.2f, buildkit %.2f)\n' \
  "$(echo "$m_he / $fastest" | bc -l)" "$(echo "$m_he / $m_be" | bc -l)" "$(echo "$m_he / $m_ke" | bc -l)"
echo "runs: $RUNS; samples: hoist push ${hoist_push[*]} | skopeo ${skopeo_push[*]} | hoist e2e ${hoist_e2e[*]} | buildah ${buildah_e2e[*]} | buildkit ${buildkit_e2e[*]}"
