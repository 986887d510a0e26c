#!/usr/bin/env bash
# hoist's whole test suite, as CI runs it (.ci/run calls exactly this).
# Installs what it needs first, so it works on a fresh machine of this kind.
set -euo pipefail
cd "$(dirname "$0")/.."

# The real components the integration tests drive (registry:2, dockerd, podman,
# buildah, ...): Debian packages plus /etc/containers/containers.conf.
if [ "$(id -u)" -eq 0 ]; then
  bash scripts/install-test-deps.sh
else
  echo "== not root: skipping scripts/install-test-deps.sh (tests needing its packages will fail)"
fi

# Rust components used by the checks below (rustup is the machine's toolchain).
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi

# Tools the image export tests load archives with (tests/it/image_tools.rs);
# those tests fail rather than skip when one is missing.
missing=()
for tool in skopeo umoci oci-image-tool podman dockerd /usr/bin/docker; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "== installing image tools (missing: ${missing[*]})"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  $sudo apt-get install -y -q skopeo umoci oci-image-tool podman docker.io
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked --all-targets
