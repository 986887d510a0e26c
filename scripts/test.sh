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

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --locked --all-targets
