#!/usr/bin/env bash
# hoist's main job, end to end: the tutorial's workflow with no daemon.
#
#   1. install what it needs (as root: apt-get update, the whole package list)
#      and build hoist;
#   2. start a registry:2 on a free loopback port, and push offline stand-ins
#      for node:14-alpine and python:3.9-slim to it (Docker Hub is not
#      reachable here; fixtures/base-images/README.md says what they are);
#   3. check both tutorial Dockerfiles, then build and push both apps with
#      hoist, their `FROM` lines unchanged, resolved through
#      `--registry-mirror`;
#   4. write their Kubernetes manifests (the tutorial's, pinned by digest);
#   5. pull and run both images with podman (ports on 127.0.0.1 only) and show
#      them answering, the configurable app with and without its mounted
#      configuration;
#   6. ship v2 of the web app (the tutorial's Part 4 edit): a new digest that
#      answers the new message; rebuild v1's sources: v1's digest again, the
#      image a rollback returns to;
#   7. stop and remove everything it started.
#
# usage: bash scripts/demo.sh      (root; about 5 minutes on a fresh machine,
#                                   most of it building the stand-in bases)
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
repo=$PWD

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: run as root (it installs packages, runs RUN steps and podman)" >&2
  exit 1
fi
say "install the tools and build hoist"
bash scripts/install-test-deps.sh
cargo build --release --locked
hoist=$repo/target/release/hoist

work=$(mktemp -d /tmp/hoist-demo.XXXXXX)
export HOIST_STORE=$work/store
# Reproducible builds: every timestamp hoist writes, and those RUN steps'
# tools write (useradd's /etc/shadow), come from the sources' last commit.
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct -- fixtures/tutorial 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH
podman_=(podman --cgroup-manager=cgroupfs --runtime=runc)
# Every container of this run is named with this prefix, so that cleanup
# finds them all (they are started in subshells).
prefix=hoist-demo-$$
registry_pid=
reg=
cleanup() {
  set +e
  for c in $("${podman_[@]}" ps -a --format '{{.Names}}' | grep "^$prefix-"); do
    "${podman_[@]}" rm -f -t 2 "$c" >/dev/null 2>&1
  done
  for image in $("${podman_[@]}" images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | grep "^$reg/tutorial/"); do
    "${podman_[@]}" rmi -f "$image" >/dev/null 2>&1
  done
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # URL
  for _ in $(seq 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.2; done
  echo "demo.sh: nothing answers at $1" >&2
  return 1
}

say "start a registry:2 on loopback"
port=$(free_port)
reg=127.0.0.1:$port
cat >"$work/registry.yml" <<YML
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: $reg}
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
wait_http "http://$reg/v2/"
echo "registry: http://$reg"

say "stand-in base images (node:14-alpine, python:3.9-slim), built offline"
bash fixtures/base-images/make-stand-ins.sh "$reg"

for app in web-app configurable-app; do
  say "hoist check fixtures/tutorial/$app/Dockerfile"
  "$hoist" check "fixtures/tutorial/$app/Dockerfile"
done

# The tutorial's v1 sources, copied so that Part 4's edit does not touch them.
cp -a fixtures/tutorial "$work/src"
build_push() { # APP TAG
  "$hoist" build --registry-mirror "docker.io=$reg" --push \
    -t "$reg/tutorial/$1:$2" "$work/src/$1"
}

say "build and push the web app (v1)"
web_v1=$(build_push web-app v1)
say "build and push the configurable app (v1)"
conf_v1=$(build_push configurable-app v1)

say "Kubernetes manifests, pinned by digest"
mkdir -p "$work/k8s"
"$hoist" k8s "$reg/tutorial/web-app:v1" --name web-app --replicas 3 \
  --limits cpu=0.5,memory=512Mi --requests cpu=0.2,memory=256Mi \
  --liveness http=/health,port=3000,initial-delay=5,period=10 \
  --readiness http=/health,port=3000,initial-delay=2,period=5 \
  --service-name web-app-service --service-port 80:3000 \
  --ingress-name web-app-ingress --ingress-host web-app.local \
  --ingress-annotation nginx.ingress.kubernetes.io/rewrite-target=/ \
  >"$work/k8s/web-app.yaml"
printf 'APP_VERSION=2.0.0\nSECRET_KEY=my-super-secret-key\n' >"$work/app-secrets.env"
printf '{\n  "message": "Hello from Kubernetes ConfigMap!"\n}\n' >"$work/config.json"
"$hoist" k8s "$reg/tutorial/configurable-app:v1" --replicas 2 \
  --limits cpu=0.5,memory=512Mi --requests cpu=0.2,memory=256Mi \
  --env APP_ENV=kubernetes --env CONFIG_PATH=/app/config/config.json \
  --liveness http=/health,port=8080,initial-delay=5,period=10 \
  --configmap-name app-config --config-volume-name config-volume \
  --config-mount /app/config --config-file "config.json=$work/config.json" \
  --secret-name app-secrets --secret-env-file "$work/app-secrets.env" \
  --service-name configurable-app-service --service-port 80:8080 \
  >"$work/k8s/configurable-app.yaml"
echo "--- web-app.yaml (Deployment excerpt)"
grep -n 'image:\|replicas:\|runAsUser\|containerPort\|path: /health' "$work/k8s/web-app.yaml"
echo "--- configurable-app.yaml: $(grep -c '^kind:' "$work/k8s/configurable-app.yaml") objects ($(grep '^kind:' "$work/k8s/configurable-app.yaml" | awk '{print $2}' | paste -sd, -))"

run() { # NAME IMAGE CONTAINER_PORT [podman args...] -> prints the host port
  local name=$1 image=$2 cport=$3 hport
  shift 3
  hport=$(free_port)
  "${podman_[@]}" run -d --name "$prefix-$name" --tls-verify=false \
    --ulimit=nofile=1024:1024 --ulimit=nproc=1000:1000 \
    -p "127.0.0.1:$hport:$cport" "$@" "$image" >/dev/null
  wait_http "http://127.0.0.1:$hport/health"
  echo "$hport"
}

say "run the web app v1 with podman"
p=$(run web "$reg/tutorial/web-app@$web_v1" 3000)
echo "GET /       -> $(curl -fsS "http://127.0.0.1:$p/")"
echo "GET /health -> $(curl -fsS "http://127.0.0.1:$p/health")"
echo "uid         -> $("${podman_[@]}" exec "$prefix-web" id -u)"
start=$(date +%s.%N)
"${podman_[@]}" stop -t 10 "$prefix-web" >/dev/null
echo "podman stop -> $(echo "$(date +%s.%N) - $start" | bc | xargs printf "%.2f") s; log: $("${podman_[@]}" logs "$prefix-web" 2>&1 | grep -m1 SIGTERM)"

say "run the configurable app with podman"
p=$(run conf "$reg/tutorial/configurable-app@$conf_v1" 8080)
echo "default config  -> $(curl -fsS "http://127.0.0.1:$p/")"
mkdir -p "$work/test-config"
printf '{"message": "Message personnalisé pour le test!"}\n' >"$work/test-config/config.json"
p=$(run conf-test "$reg/tutorial/configurable-app@$conf_v1" 8080 \
  -v "$work/test-config:/app/config:ro" -e APP_ENV=testing -e APP_VERSION=1.1.0)
echo "mounted config  -> $(curl -fsS "http://127.0.0.1:$p/")"

say "ship v2 (the tutorial's Part 4 edit), then rebuild v1 (rollback)"
sed -i 's/Hello from Kubernetes!/Hello from updated Kubernetes app!/' "$work/src/web-app/server.js"
web_v2=$(build_push web-app v2)
p=$(run web-v2 "$reg/tutorial/web-app@$web_v2" 3000)
echo "v2 GET /    -> $(curl -fsS "http://127.0.0.1:$p/")"
"$hoist" k8s "$reg/tutorial/web-app:v2" --name web-app >/dev/null 2>"$work/k8s-v2.log" || true
grep -m1 'kubectl set image' "$work/k8s-v2.log" || true
# Back to v1's sources, timestamps included (layers record mtimes; those
# newer than SOURCE_DATE_EPOCH are clamped to it, older ones are kept).
cp -p fixtures/tutorial/web-app/server.js "$work/src/web-app/server.js"
web_again=$("$hoist" build --registry-mirror "docker.io=$reg" -q --no-cache "$work/src/web-app")
echo "v1 digest   $web_v1"
echo "v2 digest   $web_v2"
echo "v1 rebuilt  $web_again (--no-cache)"
if [ "$web_again" != "$web_v1" ]; then
  echo "demo.sh: rebuilding v1's sources gave another digest" >&2
  exit 1
fi

say "done: everything started is stopped and removed"
