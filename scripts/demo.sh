#!/usr/bin/env bash
# The main job on one machine: build the binaries, start a single-node dev chain
# (`vichaind dev`) in a fresh home, create a key, send it tokens from the built-in
# dev account with the CLI, read the balance back with its Merkle proof checked,
# restart the node on the same home, and stop.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/vichain-target}"
cargo build --quiet -p vichain-node --bins
bin="$CARGO_TARGET_DIR/debug"
work="$(mktemp -d)"
port="${VICHAIN_DEMO_PORT:-19090}"
export VICHAIN_NODE="http://127.0.0.1:$port" VICHAIN_HOME="$work/client"
node_pid=""
cleanup() { [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

start_node() {
  "$bin/vichaind" dev --home "$work/node" --grpc "127.0.0.1:$port" --block-time 500ms >>"$work/node.log" 2>&1 &
  node_pid=$!
  for _ in $(seq 1 100); do
    if ! kill -0 "$node_pid" 2>/dev/null; then
      echo "vichaind exited (is port $port taken? set VICHAIN_DEMO_PORT); its log:" >&2
      cat "$work/node.log" >&2; exit 1
    fi
    "$bin/vichain" status >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "the node did not answer; its log:" >&2; cat "$work/node.log" >&2; exit 1
}

echo "== starting vichaind dev in $work/node"
start_node
"$bin/vichain" status
echo "== a new key"
"$bin/vichain" keys add alice
alice="$("$bin/vichain" keys show alice --address)"
echo "== transfer 5 from the built-in dev account to alice"
"$bin/vichain" tx transfer --to "$alice" --amount 5
echo "== alice's account, verified against the app hash"
"$bin/vichain" query account "$alice"
echo "== restart on the same home: the chain resumes"
kill -TERM "$node_pid"; wait "$node_pid" || true
start_node
"$bin/vichain" status
"$bin/vichain" query account "$alice" | head -2
echo "== done"
