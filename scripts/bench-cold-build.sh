#!/usr/bin/env bash
# scripts/bench-cold-build.sh [BEFORE_CHECKOUT]: debug builds from an empty target
# directory (under /var/tmp, removed after) of the validator-only vichaind, and of vichaind
# + vichain; with BEFORE_CHECKOUT (a checkout of 6fe013f, before the node split), also of
# that checkout's binaries. Prints one line per build. BENCHMARKS.md's cold builds come
# from it. Takes tens of minutes on 2 cores; run it on an otherwise idle machine.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
before=${1:-}
run() { # label dir target args...
  local label=$1 dir=$2 target=$3; shift 3
  rm -rf "$target"
  cd "$dir"
  local s=$(date +%s)
  CARGO_TARGET_DIR="$target" cargo build -q "$@" > /dev/null 2>&1
  local rc=$?
  local e=$(date +%s)
  echo "$label: $((e - s)) s (rc $rc, target $(du -sh "$target" | cut -f1))"
  rm -rf "$target"
}
run "validator-only vichaind (-p vichain-node --no-default-features)" "$here" /var/tmp/vichain-cold-a -p vichain-node --no-default-features
run "vichaind + vichain (-p vichain-node -p vichain-cli)" "$here" /var/tmp/vichain-cold-b -p vichain-node -p vichain-cli
if [ -n "$before" ]; then
  run "before: vichaind + vichain (-p vichain-node --bins)" "$before" /var/tmp/vichain-cold-c -p vichain-node --bins
fi
