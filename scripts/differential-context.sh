#!/usr/bin/env bash
# Materialises the build context of one differential case, the same way for the
# oracle recorder and for hoist's differential tests (tests/it/support calls this).
#
# usage: differential-context.sh CASE_DIR OUT_DIR
#
# OUT_DIR (recreated) gets CASE_DIR/context/ (with its .dockerignore), CASE_DIR's
# Dockerfile, modes normalised to 0755 (dirs) / 0644 (files) because a checkout's
# modes depend on the umask, then CASE_DIR/setup.sh run inside OUT_DIR to make what
# git cannot keep: symlinks, hardlinks, special modes, empty dirs, archives.
set -euo pipefail

case_dir=$(realpath "${1:?usage: differential-context.sh CASE_DIR OUT_DIR}")
out=${2:?usage: differential-context.sh CASE_DIR OUT_DIR}

rm -rf "$out"
mkdir -p "$out"
if [ -d "$case_dir/context" ]; then
  cp -R "$case_dir/context/." "$out/"
fi
cp "$case_dir/Dockerfile" "$out/Dockerfile"
find "$out" -type d -exec chmod 0755 {} +
find "$out" -type f -exec chmod 0644 {} +
if [ -f "$case_dir/setup.sh" ]; then
  (cd "$out" && umask 022 && bash -euo pipefail "$case_dir/setup.sh")
fi
