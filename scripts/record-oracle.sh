#!/usr/bin/env bash
# Records what BuildKit (Docker 20.10, Debian 12's docker.io) and buildah 1.28 build
# from each differential case under fixtures/differential/, as committed JSON, so the
# differential tests compare hoist with them without re-running the oracles.
#
# usage: scripts/record-oracle.sh [CASE...]     (default: every case; run as root)
#
# For every case directory (Dockerfile, case.json, optional context/ and setup.sh;
# names starting with `_` are not cases) and every oracle its case.json lists:
#   1. scripts/differential-context.sh builds the context in a temp dir;
#   2. the oracle builds it: `DOCKER_BUILDKIT=1 /usr/bin/docker build --network=host`
#      against a private dockerd, or `buildah bud --isolation chroot`;
#      base images (`FROM busybox`, `bench/busybox:1`) come from a private registry:2
#      filled by scripts/make-base-images.sh and reached through a docker.io mirror
#      (dockerd --registry-mirror; a registries.conf mirror for buildah), so the
#      Dockerfiles stay unmodified;
#   3. the image is exported (docker save / buildah push oci:), unpacked with umoci raw,
#      its config read as the builder wrote it (dockerd's image store, the OCI layout),
#      and described by `cargo run --example tree` (tests/it/support/tree.rs);
#   4. fixtures/differential/<case>/expected.<oracle>.json gets the tree and the
#      config fields hoist must match.
# ADD <url> cases fetch from `python3 -m http.server` on 127.0.0.1:38080 (fixed here: the
# URL is part of the Dockerfile and of the cache key) serving fixtures/differential/_served.
# A build that fails stops the recording: case.json must say which oracles apply.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
CASES_DIR=$REPO/fixtures/differential
HTTP_PORT=38080
DOCKER=/usr/bin/docker   # Debian's 20.10 client: the newer one on PATH lacks buildx

[ "$(id -u)" -eq 0 ] || { echo "record-oracle.sh: run as root (dockerd, buildah, umoci)" >&2; exit 1; }
for tool in dockerd "$DOCKER" docker-registry buildah skopeo umoci python3 curl cargo; do
  command -v "$tool" >/dev/null || {
    echo "record-oracle.sh: $tool not found; run scripts/install-test-deps.sh" >&2
    exit 1
  }
done

started=$(date +%s.%N)
since() { python3 -c "import sys,time; print(f'{time.time()-float(sys.argv[1]):.2f}s')" "$1"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # DESCRIPTION SECONDS COMMAND...
  local what=$1 deadline=$(($(date +%s) + $2))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "record-oracle.sh: $what did not come up" >&2
      return 1
    fi
    sleep 0.1
  done
}

work=$(mktemp -d /tmp/hoist-oracle.XXXXXX)
pids=()
current=
cleanup() {
  local status=$?
  if [ "$status" -ne 0 ] && [ -n "$current" ]; then
    echo "record-oracle.sh: failed while recording $current (build output above)" >&2
  elif [ "$status" -ne 0 ]; then
    # Failed while setting up: the servers' logs say why.
    for log in "$work"/*.log; do
      [ -s "$log" ] && { echo "--- last lines of $(basename "$log")" >&2; tail -n 20 "$log" >&2; }
    done
  fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  buildah --root "$work/buildah/root" --runroot "$work/buildah/run" rm --all >/dev/null 2>&1 || true
  buildah --root "$work/buildah/root" --runroot "$work/buildah/run" rmi --all --force >/dev/null 2>&1 || true
  umount -R "$work/buildah/root/overlay" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cargo build -q --manifest-path "$REPO/Cargo.toml" --example tree
TREE=$REPO/target/debug/examples/tree

# ---------------------------------------------------------------- registry
REG_PORT=$(free_port)
REG=127.0.0.1:$REG_PORT
cat >"$work/registry.yml" <<EOF
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: $REG}
EOF
t=$(date +%s.%N)
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
pids+=($!)
wait_for "registry on $REG" 20 curl -sf "http://$REG/v2/"
echo "registry up in $(since "$t")"
t=$(date +%s.%N)
bash "$REPO/scripts/make-base-images.sh" "$REG"
echo "base images pushed in $(since "$t")"
BUSYBOX_SHA=$(sha256sum /bin/busybox | cut -d' ' -f1)

# ---------------------------------------------------------------- dockerd
dd=$work/dockerd
mkdir -p "$dd"
t=$(date +%s.%N)
dockerd --host "unix://$dd/docker.sock" --data-root "$dd/data" --exec-root "$dd/exec" \
  --pidfile "$dd/docker.pid" --iptables=false --bridge=none \
  --registry-mirror "http://$REG" --insecure-registry "$REG" >"$work/dockerd.log" 2>&1 &
pids+=($!)
docker_() { "$DOCKER" -H "unix://$dd/docker.sock" "$@"; }
wait_for dockerd 60 docker_ info
echo "dockerd up in $(since "$t")"
DOCKER_VERSION=$(docker_ version --format '{{.Server.Version}}')

# ---------------------------------------------------------------- buildah
cat >"$work/registries.conf" <<EOF
unqualified-search-registries = ["docker.io"]
[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "$REG"
insecure = true
EOF
export CONTAINERS_REGISTRIES_CONF=$work/registries.conf
buildah_() { buildah --root "$work/buildah/root" --runroot "$work/buildah/run" "$@"; }
BUILDAH_VERSION=$(buildah --version | awk '{print $3}')

# ---------------------------------------------------------------- http server
if curl -s -o /dev/null "http://127.0.0.1:$HTTP_PORT/"; then
  echo "record-oracle.sh: port $HTTP_PORT is taken; ADD <url> cases need it" >&2
  exit 1
fi
python3 -m http.server "$HTTP_PORT" --bind 127.0.0.1 --directory "$CASES_DIR/_served" \
  >"$work/http.log" 2>&1 &
pids+=($!)
wait_for "http server on $HTTP_PORT" 20 curl -sf "http://127.0.0.1:$HTTP_PORT/hello.txt"

# ---------------------------------------------------------------- cases
# Writes expected.<oracle>.json from the tree and the image config.
write_expected() { # CASE ORACLE VERSION CONFIG_JSON TREE_FILE OUT
  python3 - "$@" "$BUSYBOX_SHA" <<'PY'
import json, sys
case, oracle, version, config_file, tree_file, out, busybox = sys.argv[1:8]
config = json.load(open(config_file)).get("config") or {}
fields = ["Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes",
          "Labels", "StopSignal", "Healthcheck", "Shell", "OnBuild"]
picked = {f: config.get(f) for f in fields}
tree = open(tree_file).read().strip()
json.loads(tree)  # the tree tool's output must be JSON
with open(out, "w") as f:
    f.write("{\n")
    f.write(f'"case": {json.dumps(case)},\n')
    f.write(f'"oracle": {json.dumps(oracle)},\n')
    f.write(f'"oracle_version": {json.dumps(version)},\n')
    f.write(f'"base_busybox_sha256": {json.dumps(busybox)},\n')
    f.write('"config": ' + json.dumps(picked, sort_keys=True, indent=1) + ",\n")
    f.write('"tree": ' + tree + "\n}\n")
PY
}

# The image config of an OCI layout's only image.
oci_config() { # LAYOUT OUT
  python3 - "$1" >"$2" <<'PY'
import json, sys
layout = sys.argv[1]
def blob(d):
    algo, hexd = d.split(":")
    return json.load(open(f"{layout}/blobs/{algo}/{hexd}"))
index = json.load(open(f"{layout}/index.json"))
manifest = blob(index["manifests"][0]["digest"])
print(json.dumps(blob(manifest["config"]["digest"])))
PY
}

# `raw`: plain `umoci unpack` also generates a runtime config, which fails on a
# USER name the image has no /etc/passwd entry for. Its progress lines go to a log.
unpack() { # LAYOUT:TAG ROOTFS
  umoci raw unpack --image "$1" "$2" >"$2.log" 2>&1 || { cat "$2.log" >&2; exit 1; }
}

build_args() { # CASE_JSON SECRETS_DIR -> flags, one per line
  python3 - "$1" "$2" <<'PY'
import json, os, sys
c = json.load(open(sys.argv[1]))
if c.get("target"):
    print("--target"); print(c["target"])
for k, v in sorted(c.get("build_args", {}).items()):
    print("--build-arg"); print(f"{k}={v}")
# Secrets are written to files outside the context, as a user keeps them.
for k, v in sorted(c.get("secrets", {}).items()):
    os.makedirs(sys.argv[2], exist_ok=True)
    path = os.path.join(sys.argv[2], k)
    open(path, "w").write(v)
    print("--secret"); print(f"id={k},src={path}")
PY
}

# A case whose build must fail (`"fails": true`): the recording says so, with
# the failing step's exit code as the oracle printed it.
write_failure() { # CASE ORACLE VERSION LOG OUT
  python3 - "$@" <<'PY'
import json, re, sys
case, oracle, version, log, out = sys.argv[1:6]
codes = re.findall(r"exit (?:code|status):? (\d+)", open(log).read())
if not codes:
    sys.exit(f"{case} with {oracle}: no exit code in the failed build's output")
with open(out, "w") as f:
    json.dump({"case": case, "oracle": oracle, "oracle_version": version,
               "fails": True, "exit_code": int(codes[-1])}, f, indent=1)
    f.write("\n")
PY
}

expect_failure() { # CASE_JSON
  python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1])).get("fails") else 1)' "$1"
}

record_buildkit() { # CASE CTX FLAGS...
  local case=$1 ctx=$2 out=$work/out/$1/buildkit
  shift 2
  mkdir -p "$out"
  if expect_failure "$CASES_DIR/$case/case.json"; then
    if DOCKER_BUILDKIT=1 docker_ build --progress=plain --network=host "$@" "$ctx" >"$out/build.log" 2>&1; then
      echo "record-oracle.sh: $case was to fail with BuildKit and did not" >&2; exit 1
    fi
    write_failure "$case" buildkit "docker $DOCKER_VERSION (BuildKit, DOCKER_BUILDKIT=1)" \
      "$out/build.log" "$CASES_DIR/$case/expected.buildkit.json"
    return
  fi
  DOCKER_BUILDKIT=1 docker_ build -q --network=host "$@" -t "hoist-oracle/$case" "$ctx" \
    >"$out/build.log" 2>&1 || { cat "$out/build.log" >&2; exit 1; }
  # The config exactly as BuildKit wrote it: dockerd's image store keeps it under
  # the image ID (its digest).
  local id layers
  id=$(docker_ image inspect --format '{{.Id}}' "hoist-oracle/$case")
  cp "$dd/data/image/overlay2/imagedb/content/sha256/${id#sha256:}" "$out/config.json"
  layers=$(docker_ image inspect --format '{{len .RootFS.Layers}}' "hoist-oracle/$case")
  if [ "$layers" -eq 0 ]; then
    # Docker 20.10 cannot save an image without layers ("empty export").
    echo '[]' >"$out/tree.json"
  else
    docker_ save -o "$out/image.tar" "hoist-oracle/$case"
    skopeo copy -q "docker-archive:$out/image.tar" "oci:$out/layout:img"
    unpack "$out/layout:img" "$out/rootfs"
    "$TREE" "$out/rootfs" >"$out/tree.json"
  fi
  write_expected "$case" buildkit "docker $DOCKER_VERSION (BuildKit, DOCKER_BUILDKIT=1)" \
    "$out/config.json" "$out/tree.json" "$CASES_DIR/$case/expected.buildkit.json"
  docker_ rmi -f "hoist-oracle/$case" >/dev/null
}

record_buildah() { # CASE CTX FLAGS...
  local case=$1 ctx=$2 out=$work/out/$1/buildah
  shift 2
  mkdir -p "$out"
  if expect_failure "$CASES_DIR/$case/case.json"; then
    if buildah_ bud --isolation chroot "$@" "$ctx" >"$out/build.log" 2>&1; then
      echo "record-oracle.sh: $case was to fail with buildah and did not" >&2; exit 1
    fi
    write_failure "$case" buildah "buildah $BUILDAH_VERSION (bud --isolation chroot --identity-label=false, OCI format)" \
      "$out/build.log" "$CASES_DIR/$case/expected.buildah.json"
    return
  fi
  # --identity-label=false: no `io.buildah.version` label, which BuildKit has no
  # counterpart of and which would differ in every case.
  buildah_ bud --isolation chroot --identity-label=false -q "$@" -t "hoist-oracle/$case" "$ctx" \
    >"$out/build.log" 2>&1 || { cat "$out/build.log" >&2; exit 1; }
  buildah_ push -q "hoist-oracle/$case" "oci:$out/layout:img"
  oci_config "$out/layout" "$out/config.json"
  unpack "$out/layout:img" "$out/rootfs"
  "$TREE" "$out/rootfs" >"$out/tree.json"
  write_expected "$case" buildah "buildah $BUILDAH_VERSION (bud --isolation chroot --identity-label=false, OCI format)" \
    "$out/config.json" "$out/tree.json" "$CASES_DIR/$case/expected.buildah.json"
  buildah_ rmi -f "hoist-oracle/$case" >/dev/null
}

if [ $# -gt 0 ]; then
  cases=("$@")
else
  cases=()
  for d in "$CASES_DIR"/*/; do
    name=$(basename "$d")
    [[ $name == _* ]] || cases+=("$name")
  done
fi

t=$(date +%s.%N)
for case in "${cases[@]}"; do
  dir=$CASES_DIR/$case
  current=$case
  [ -f "$dir/case.json" ] || { echo "record-oracle.sh: $dir/case.json missing" >&2; exit 1; }
  ctx=$work/ctx/$case
  bash "$REPO/scripts/differential-context.sh" "$dir" "$ctx"
  mapfile -t flags < <(build_args "$dir/case.json" "$work/secrets/$case")
  for oracle in $(python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["oracles"]))' "$dir/case.json"); do
    tc=$(date +%s.%N)
    # Not `record_… || …`: that would switch off `set -e` inside the function.
    current="$case with $oracle"
    "record_$oracle" "$case" "$ctx" "${flags[@]}"
    echo "recorded $case with $oracle in $(since "$tc")"
  done
done
echo "${#cases[@]} cases recorded in $(since "$t"); whole run $(since "$started")"
