#!/usr/bin/env bash
# hoist's main job, end to end, as far as it goes today:
#   1. install what the demo needs (Debian packages, as root) and build hoist;
#   2. check and parse the tutorial's two Dockerfiles;
#   3. build a small image with no daemon (Debian's static busybox plus a
#      message, FROM scratch), export it, load it into podman and run it;
#   4. rebuild it from the cache and show the digest is the same.
# The tutorial's own images need their base images (node:14-alpine,
# python:3.9-slim), which Docker Hub would serve; offline stand-ins come next.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -eq 0 ]; then
  bash scripts/install-test-deps.sh
fi
cargo build --release --locked
hoist=$PWD/target/release/hoist

for app in web-app configurable-app; do
  file=fixtures/tutorial/$app/Dockerfile
  echo "== hoist check $file"
  "$hoist" check "$file"
  echo "== hoist parse $file"
  "$hoist" parse "$file"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ctx=$work/context
mkdir -p "$ctx/bin" "$ctx/srv"
cp /bin/busybox "$ctx/bin/busybox"
for applet in sh cat id; do ln -s busybox "$ctx/bin/$applet"; done
echo "Hello from an image hoist built without a daemon" > "$ctx/srv/message"
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY bin /bin/
COPY srv /srv/
USER 1001
CMD ["cat", "/srv/message"]
DOCKERFILE

echo "== hoist build"
digest=$("$hoist" --store "$work/store" build -t hoist-demo:v1 \
  --output "type=docker,dest=$work/image.tar" "$ctx")
echo "manifest digest: $digest"
echo "== podman load + run"
image=$(podman --cgroup-manager=cgroupfs --runtime=runc load -q -i "$work/image.tar" | sed -n 's/^Loaded image.*: //p' | tail -1)
podman --cgroup-manager=cgroupfs --runtime=runc run --rm --network=none \
  --ulimit=nofile=1024:1024 --ulimit=nproc=1000:1000 "$image"
podman --cgroup-manager=cgroupfs --runtime=runc rmi -f "$image" > /dev/null
echo "== rebuild from the cache"
again=$("$hoist" --store "$work/store" build -t hoist-demo:v1 "$ctx")
[ "$again" = "$digest" ] && echo "same digest: $again"
