#!/usr/bin/env bash
# hoist's whole test suite, as CI runs it (.ci/run calls exactly this).
# Installs what it needs first, so it works on a fresh machine of this kind.
set -euo pipefail
cd "$(dirname "$0")/.."

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
