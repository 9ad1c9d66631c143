#!/usr/bin/env bash
# scripts/bench-warm-build.sh DIR LABEL FILE CARGO-ARGS...: a warm build after a change.
# Adds a public function to FILE (a change to the crate's interface, so dependent crates
# rebuild too), times `cargo build -q CARGO-ARGS` in checkout DIR, twice; prints the
# faster under LABEL and restores FILE. CARGO_TARGET_DIR defaults to
# /var/tmp/vichain-target. BENCHMARKS.md's build table comes from it.
set -u
dir=$1; label=$2; file=$3; shift 3
cd "$dir"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/vichain-target}"
tmp=$(mktemp)
cp "$file" "$tmp"
cargo build -q "$@" 2>/dev/null
best=
for i in 1 2; do
  cp "$tmp" "$file"; echo "pub fn warm_build_probe_$RANDOM() {}" >> "$file"
  s=$(date +%s.%N); cargo build -q "$@" 2>/dev/null; e=$(date +%s.%N)
  t=$(awk "BEGIN { print $e - $s }")
  if [ -z "$best" ] || awk "BEGIN { exit !($t < $best) }"; then best=$t; fi
done
cp "$tmp" "$file"
rm -f "$tmp"
printf "%-72s %6.1f s\n" "$label" "$best"
