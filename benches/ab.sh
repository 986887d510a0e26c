#!/usr/bin/env bash
# Times two hoist binaries against each other on one workload, runs
# alternating, and prints each one's medians: cold build (empty store),
# warm rebuild (nothing changed) and one file changed. For "no regression"
# checks of a change: build the old binary, keep it, build the new one.
#
#   bash benches/ab.sh OLD_HOIST NEW_HOIST [RUNS] [CONTEXT]
#
# CONTEXT defaults to big-context of ../shared/bench (made once in
# /tmp/hoist-ab/w). One file is changed by appending a line to the
# CONTEXT's first regular file in sorted order, and restored afterwards.
# Before each timed build, 3 GB of memory is touched and freed: this VM
# reports free pages to its host, and memory freed a moment before makes
# the next build's allocations slow and bimodal (docs/build.md).
set -euo pipefail
OLD=${1:?usage: ab.sh OLD_HOIST NEW_HOIST [RUNS] [CONTEXT]}
NEW=${2:?usage: ab.sh OLD_HOIST NEW_HOIST [RUNS] [CONTEXT]}
RUNS=${3:-5}
ROOT=/tmp/hoist-ab
CONTEXT=${4:-$ROOT/w/big-context}
if [ ! -d "$CONTEXT" ]; then
  mkdir -p "$ROOT/empty-rootfs"
  PUSH_BASES=0 ROOTFS=$ROOT/empty-rootfs BUSYBOX=/bin/busybox \
    bash "$(dirname "$0")/../../shared/bench/make-workloads.sh" "$ROOT/w" > /dev/null 2>&1
fi
changed=$(find "$CONTEXT" -type f ! -name Dockerfile | sort | awk 'NR == 1')
cp -p "$changed" "$ROOT/original"
trap 'cp -p "$ROOT/original" "$changed"' EXIT

settle() {
  sync
  head -c 3G /dev/zero > /dev/shm/hoist-ab-touch && rm -f /dev/shm/hoist-ab-touch
}

# time_build BINARY STORE: seconds of one `hoist build -q`.
time_build() {
  settle
  local start=$EPOCHREALTIME
  "$1" --store "$2" build -q "$CONTEXT" > /dev/null
  echo "$EPOCHREALTIME - $start" | bc
}

declare -A times
for run in $(seq "$RUNS"); do
  for who in old new; do
    bin=$OLD; [ "$who" = new ] && bin=$NEW
    store=$ROOT/store-$who
    rm -rf "$store"
    times[$who-cold]+="$(time_build "$bin" "$store") "
    times[$who-warm]+="$(time_build "$bin" "$store") "
    echo "# run $run" >> "$changed"
    times[$who-changed]+="$(time_build "$bin" "$store") "
    cp -p "$ROOT/original" "$changed"
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-8s %10s %10s %8s\n' step old new new/old
for step in cold warm changed; do
  o=$(echo "${times[old-$step]}" | median)
  n=$(echo "${times[new-$step]}" | median)
  printf '%-8s %10.3f %10.3f %8.2f\n' "$step" "$o" "$n" "$(echo "$n / $o" | bc -l)"
  echo "  old: ${times[old-$step]}"
  echo "  new: ${times[new-$step]}"
done
