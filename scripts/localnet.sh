#!/usr/bin/env bash
# A 4-validator CometBFT network on this machine: `vichaind localnet` writes four
# homes sharing one genesis (ports offset by 10 per node), then each node runs
# `vichaind start` next to `cometbft start`. Needs `cometbft` (v0.38) on PATH.
#   scripts/localnet.sh [DIR] [VALIDATORS]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cometbft >/dev/null; then
  echo "cometbft is not on PATH: install CometBFT v0.38 (https://github.com/cometbft/cometbft/releases)" >&2
  exit 1
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/vichain-target}"
cargo build --quiet -p vichain-node --bins
bin="$CARGO_TARGET_DIR/debug"
out="${1:-$(mktemp -d)}"
n="${2:-4}"
"$bin/vichaind" localnet --out "$out" --validators "$n"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
for i in $(seq 0 $((n - 1))); do
  home="$out/node$i"
  "$bin/vichaind" start --home "$home" >"$home/vichaind.log" 2>&1 & pids+=($!)
  sleep 0.5
  cometbft start --home "$home/cometbft" >"$home/cometbft.log" 2>&1 & pids+=($!)
done
echo "localnet running in $out; node0's gRPC is http://127.0.0.1:9090 (nodeN: 9090+10N). Ctrl-C stops it."
echo "try: VICHAIN_HOME=$out/node0 $bin/vichain tx transfer --from operator --to <ADDR> --amount 5"
wait
