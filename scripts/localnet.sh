#!/usr/bin/env bash
# A network of real CometBFT v0.38 validators on this machine, run as an operator
# would: N validator homes sharing one genesis (`vichaind localnet`), `vichaind start`
# next to `cometbft start` for each on its own loopback ports, the demo models
# registered by the authority (node0's operator key), and three workers
# (`vichaind worker --chain ...`) following different validators, each funded and
# registered with its own key. Runs until Ctrl-C (or SIGTERM), then stops every
# process it started. DIR/localnet.json lists each validator's home, CometBFT RPC,
# P2P address, gRPC, metrics and process ids, and the workers.
#
#   scripts/localnet.sh [DIR] [N]        # default: a fresh temporary DIR, 4 validators
#
# Ports of node i (i = 0..N-1): CometBFT P2P 26656+10i, RPC 26657+10i, ABCI
# 26658+10i, vichain metrics/dashboard 26660+10i, CometBFT metrics 26661+10i,
# gRPC 9090+10i. Restarting with the same DIR resumes the chain from its homes.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/vichain-target}"
cometbft="$(scripts/install-cometbft.sh)"
scripts/fetch-models.sh >/dev/null
cargo build --quiet -p vichain-node -p vichain-cli --bins
bin="$CARGO_TARGET_DIR/debug"
dir="${1:-$(mktemp -d)}"
n="${2:-4}"
mkdir -p "$dir"
echo "localnet in $dir ($n validators); logs: $dir/node*/vichaind.log, cometbft.log, $dir/worker*/worker.log"
echo "try: VICHAIN_HOME=$dir/node0 $bin/vichain submit --from operator --model digits --digit 3 --wait"
exec "$bin/vichaind" localnet --out "$dir" --validators "$n" --start --cometbft "$cometbft" \
  --snapshot-interval "${VICHAIN_SNAPSHOT_INTERVAL:-20}"
