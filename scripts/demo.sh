#!/usr/bin/env bash
# hoist's main job, end to end, as far as it goes today: build hoist, then
# check and parse the tutorial's two Dockerfiles.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
hoist=target/release/hoist
for app in web-app configurable-app; do
  file=fixtures/tutorial/$app/Dockerfile
  echo "== hoist check $file"
  "$hoist" check "$file"
  echo "== hoist parse $file"
  "$hoist" parse "$file"
done
