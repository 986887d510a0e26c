#!/usr/bin/env bash
# "Fresh CI runner, warm registry cache": runner A builds with a registry
# cache export; runner B, on an empty state, builds with that cache and
# pushes to the same registry:2; runner C does the same after one source
# file changed. hoist (--cache-to/--cache-from type=registry), BuildKit
# (Docker 20.10, inline cache, --cache-from on a pruned builder) and
# buildah (--layers --cache-to/--cache-from), in one run, on
# ../shared/bench's small-app and run-heavy and the tutorial's web app.
# Also the cost of the export on A's build (the same build without it).
# Layer bytes B downloads and uploads are counted from the registry's
# access log. Run as root after scripts/install-test-deps.sh; never part
# of the test suite.
#
#   bash benches/registry-cache.sh [RUNS] [WORKLOAD...]
#       default: 3 runs; small-app run-heavy web-app
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
shift || true
WORKLOADS=("${@:-small-app run-heavy web-app}")
read -r -a WORKLOADS <<< "${WORKLOADS[*]}"
SETTLE=${SETTLE:-5}
ROOT=$(mktemp -d /tmp/hoist-cache-bench.XXXXXX)
trap 'cleanup' EXIT
cleanup() {
  [ -n "${DOCKERD_PID:-}" ] && kill "$DOCKERD_PID" 2>/dev/null && wait "$DOCKERD_PID" 2>/dev/null || true
  [ -n "${REGISTRY_PID:-}" ] && kill "$REGISTRY_PID" 2>/dev/null || true
  { findmnt -rn -o TARGET | grep "^$ROOT/" || true; } | sort -r | xargs -r umount -l
  rm -rf "$ROOT" 2>/dev/null || true
}

if [ -z "${HOIST:-}" ]; then
  cargo build --release --locked -q
  HOIST=$PWD/target/release/hoist
fi

# One registry:2 on loopback for bases, images and caches, its access log
# on stdout (one line per request, with the bytes it sent).
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG=127.0.0.1:$PORT
cat > "$ROOT/registry.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: false}}
storage: {filesystem: {rootdirectory: $ROOT/registry}, delete: {enabled: true}}
http: {addr: $REG}
YML
docker-registry serve "$ROOT/registry.yml" > "$ROOT/registry.log" 2>&1 &
REGISTRY_PID=$!
for _ in $(seq 100); do curl -fs "http://$REG/v2/" > /dev/null && break; sleep 0.1; done

# Bases: bench/busybox:1 and bench/debian:bookworm (built by hoist from
# ../shared/bench's contexts; run-heavy needs a debootstrap rootfs in
# $ROOTFS), and the tutorial's node:14-alpine stand-in.
export BASE_REG=$REG
[ -x "${ROOTFS:-/tmp/rootfs}/bin/sh" ] || { echo "run-heavy needs a debootstrap rootfs in \$ROOTFS (/tmp/rootfs)" >&2; exit 1; }
PUSH_BASES=0 bash ../shared/bench/make-workloads.sh "$ROOT/w" > "$ROOT/workloads.log" 2>&1 \
  || { cat "$ROOT/workloads.log"; exit 1; }
"$HOIST" --store "$ROOT/base-store" build -q --push -t "$REG/bench/busybox:1" "$ROOT/w/base-busybox" > /dev/null
"$HOIST" --store "$ROOT/base-store" build -q --push -t "$REG/bench/debian:bookworm" "$ROOT/w/base-debian" > /dev/null
bash fixtures/base-images/make-stand-ins.sh "$REG" > "$ROOT/stand-ins.log" 2>&1 \
  || { cat "$ROOT/stand-ins.log"; exit 1; }
cp -a fixtures/tutorial/web-app "$ROOT/w/web-app"
sed -i "s|^FROM node:14-alpine|FROM $REG/library/node:14-alpine|" "$ROOT/w/web-app/Dockerfile"

# A private dockerd for BuildKit.
mkdir -p "$ROOT/docker"
dockerd --host "unix://$ROOT/docker/sock" --data-root "$ROOT/docker/data" --exec-root "$ROOT/docker/exec" \
  --pidfile "$ROOT/docker/pid" --iptables=false --bridge=none > "$ROOT/dockerd.log" 2>&1 &
DOCKERD_PID=$!
DOCKER="/usr/bin/docker -H unix://$ROOT/docker/sock"
for _ in $(seq 100); do $DOCKER info > /dev/null 2>&1 && break; sleep 0.1; done

seconds() { local s e; s=$EPOCHREALTIME; "$@" > "$ROOT/last.log" 2>&1 || { cat "$ROOT/last.log" >&2; return 1; }; e=$EPOCHREALTIME; echo "$e - $s" | bc; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
log_lines() { wc -l < "$ROOT/registry.log"; }
# Layer bytes a phase moved: GETs of layer blobs (bytes sent, from the
# access log) and layer uploads (each finished by a PUT naming its digest;
# its size from the registry's storage). Layers are the gzip blobs; image
# configs and cache metadata are not counted. Prints "DOWN UP".
moved() { # FIRST_LINE
  tail -n +"$(($1 + 1))" "$ROOT/registry.log" | python3 -c '
import os, re, sys, urllib.parse
root = sys.argv[1]
def blob(digest):
    hexd = digest.split(":")[1]
    return f"{root}/docker/registry/v2/blobs/sha256/{hexd[:2]}/{hexd}/data"
def is_layer(digest):
    with open(blob(digest), "rb") as f:
        return f.read(2) == b"\x1f\x8b"
down = up = 0
for line in sys.stdin:
    m = re.search(r"\"(GET|PUT) (\S+) HTTP/[0-9.]+\" (\d+) (\d+)", line)
    if not m:
        continue
    method, target, status, sent = m.group(1), m.group(2), int(m.group(3)), int(m.group(4))
    if method == "GET" and "/blobs/sha256:" in target and status < 300:
        if is_layer(target.rsplit("/", 1)[1]):
            down += sent
    elif method == "PUT" and "/blobs/uploads/" in target and status == 201:
        digest = urllib.parse.parse_qs(urllib.parse.urlparse(target).query)["digest"][0]
        if is_layer(digest):
            up += os.path.getsize(blob(digest))
print(down, up)
' "$ROOT/registry"
}

# BUILDER PHASE STATE CONTEXT TAG: the command of one phase.
#   plain: A's build with no cache export; export: A's build with it;
#   import: a fresh runner's build with the cache, then a push.
phase() {
  local builder=$1 phase=$2 state=$3 ctx=$4 tag=$5 cache=$REG/cache/$w-$1
  case $builder-$phase in
    hoist-plain) echo "$HOIST --store $state build -q $ctx" ;;
    hoist-export) echo "$HOIST --store $state build -q --cache-to type=registry,ref=$cache,mode=max $ctx" ;;
    hoist-import) echo "$HOIST --store $state build --progress plain --cache-from type=registry,ref=$cache --push -t $tag $ctx" ;;
    buildah-plain) echo "buildah --root $state/root --runroot $state/run bud --isolation chroot --layers --tls-verify=false -q $ctx" ;;
    buildah-export) echo "buildah --root $state/root --runroot $state/run bud --isolation chroot --layers --tls-verify=false -q --cache-to $cache $ctx" ;;
    buildah-import) echo "bash -c 'buildah --root $state/root --runroot $state/run bud --isolation chroot --layers --tls-verify=false -q --cache-from $cache -t $tag $ctx && buildah --root $state/root --runroot $state/run push --tls-verify=false $tag'" ;;
    # Docker 20.10's BuildKit exports an inline cache with the image, so
    # A's export is its build and push.
    buildkit-plain) echo "env DOCKER_BUILDKIT=1 $DOCKER build --network=host -q $ctx" ;;
    buildkit-export) echo "bash -c 'DOCKER_BUILDKIT=1 $DOCKER build --network=host -q --build-arg BUILDKIT_INLINE_CACHE=1 -t $cache:latest $ctx && $DOCKER push -q $cache:latest'" ;;
    buildkit-import) echo "bash -c 'DOCKER_BUILDKIT=1 $DOCKER build --network=host -q --cache-from $cache:latest -t $tag $ctx && $DOCKER push -q $tag'" ;;
  esac
}

fresh_buildkit() {
  $DOCKER builder prune -af > /dev/null 2>&1
  $DOCKER image prune -af > /dev/null 2>&1
  $DOCKER images -q | xargs -r $DOCKER rmi -f > /dev/null 2>&1 || true
}

printf '%-10s %-9s %-22s %9s   %s\n' workload builder measure median runs
for w in "${WORKLOADS[@]}"; do
  declare -A R=()
  for builder in hoist buildah buildkit; do
    plain=(); export_=(); import=(); changed=(); down=(); up=(); cdown=(); cup=(); runs_ran=()
    for run in $(seq "$RUNS"); do
      base="$ROOT/$w-$builder-$run"
      ctx="$base/ctx"; mkdir -p "$base"; cp -a "$ROOT/w/$w" "$ctx"
      # A, without and with the export (fresh states, same context).
      [ "$builder" = buildkit ] && fresh_buildkit
      sync; sleep "$SETTLE"
      plain+=("$(seconds bash -c "$(phase "$builder" plain "$base/plain" "$ctx" x)")")
      [ "$builder" = buildkit ] && fresh_buildkit
      # Each run exports to its own cache repository.
      w_saved=$w; w="$w-$run"
      sync; sleep "$SETTLE"
      export_+=("$(seconds bash -c "$(phase "$builder" export "$base/a" "$ctx" x)")")
      # B: a fresh runner, nothing changed.
      [ "$builder" = buildkit ] && fresh_buildkit
      sync; sleep "$SETTLE"
      first=$(log_lines)
      import+=("$(seconds bash -c "$(phase "$builder" import "$base/b" "$ctx" "$REG/team/$w_saved-$builder:b$run")")")
      read -r d u <<< "$(moved "$first")"; down+=("$d"); up+=("$u")
      if [ "$builder" = hoist ]; then
        # RUN steps B ran: hoist's plain progress marks the others CACHED.
        ran=$(grep -E '^#[0-9]+/[0-9]+ RUN' "$ROOT/last.log" | grep -vc CACHED || true)
        runs_ran+=("$ran")
      fi
      # C: a fresh runner, one source file changed.
      one=$(find "$ctx" -type f ! -name Dockerfile ! -name .dockerignore | sort | tail -1)
      echo "# changed $run" >> "$one"
      [ "$builder" = buildkit ] && fresh_buildkit
      sync; sleep "$SETTLE"
      first=$(log_lines)
      changed+=("$(seconds bash -c "$(phase "$builder" import "$base/c" "$ctx" "$REG/team/$w_saved-$builder:c$run")")")
      read -r d u <<< "$(moved "$first")"; cdown+=("$d"); cup+=("$u")
      w=$w_saved
      if [ "$builder" = buildah ]; then
        for s in plain a b c; do
          buildah --root "$base/$s/root" --runroot "$base/$s/run" rm -a > /dev/null 2>&1 || true
        done
        { findmnt -rn -o TARGET | grep "^$base/" || true; } | sort -r | xargs -r umount -l
      fi
    done
    for m in plain export_ import changed down up cdown cup; do
      declare -n arr=$m
      R[$builder-$m]=$(median "${arr[@]}")
    done
    printf '%-10s %-9s %-22s %9.3f   %s\n' "$w" "$builder" "A build (no export) s" "${R[$builder-plain]}" "${plain[*]}"
    printf '%-10s %-9s %-22s %9.3f   %s\n' "$w" "$builder" "A build+export s" "${R[$builder-export_]}" "${export_[*]}"
    printf '%-10s %-9s %-22s %9.3f   %s\n' "$w" "$builder" "B build+push s" "${R[$builder-import]}" "${import[*]}"
    printf '%-10s %-9s %-22s %9d   %s\n' "$w" "$builder" "B layer bytes down" "${R[$builder-down]}" "${down[*]}"
    printf '%-10s %-9s %-22s %9d   %s\n' "$w" "$builder" "B layer bytes up" "${R[$builder-up]}" "${up[*]}"
    printf '%-10s %-9s %-22s %9.3f   %s\n' "$w" "$builder" "C (1 file) build+push s" "${R[$builder-changed]}" "${changed[*]}"
    printf '%-10s %-9s %-22s %9d   %s\n' "$w" "$builder" "C layer bytes down" "${R[$builder-cdown]}" "${cdown[*]}"
    if [ "$builder" = hoist ]; then
      printf '%-10s %-9s %-22s %9s   %s\n' "$w" "$builder" "B RUN steps run" "-" "${runs_ran[*]}"
    fi
  done
  min() { printf '%s\n' "$@" | sort -n | head -1; }
  faster_b=$(min "${R[buildah-import]}" "${R[buildkit-import]}")
  faster_c=$(min "${R[buildah-changed]}" "${R[buildkit-changed]}")
  printf '%-10s ratio     B hoist/faster peer %.2f; C hoist/faster peer %.2f; export cost hoist %.2fx\n' "$w" \
    "$(echo "${R[hoist-import]} / $faster_b" | bc -l)" \
    "$(echo "${R[hoist-changed]} / $faster_c" | bc -l)" \
    "$(echo "${R[hoist-export_]} / ${R[hoist-plain]}" | bc -l)"
done
