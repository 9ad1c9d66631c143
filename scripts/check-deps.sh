#!/usr/bin/env bash
# The validator links no model runtime, peer-to-peer network or prover (vichain-zk's
# `prover` feature, whose circuits need ark-r1cs-std): a validator-only
# `vichaind` (vichain-node without its default `worker` feature) and the validator
# daemon's library must not depend on any of the crates below. Fails naming the
# offender and the path that pulls it in.
set -euo pipefail
cd "$(dirname "$0")/.."
forbidden=(vichain-worker vichain-split vichain-inference candle-core candle-nn
  candle-transformers tokenizers libp2p gemm ark-r1cs-std ${VICHAIN_FORBIDDEN_EXTRA:-})
check() {
  local what="$1"; shift
  local tree
  tree=$(cargo tree --offline -e normal --prefix none --no-dedupe "$@" 2>/dev/null ||
    cargo tree -e normal --prefix none --no-dedupe "$@")
  local bad=0
  for c in "${forbidden[@]}"; do
    if grep -q "^$c v" <<<"$tree"; then
      echo "check-deps: $what depends on $c:" >&2
      cargo tree -e normal -i "$c" "$@" 2>/dev/null | head -8 >&2 || true
      bad=1
    fi
  done
  return $bad
}
status=0
check "vichaind --no-default-features" -p vichain-node --no-default-features || status=1
check "vichain-validator" -p vichain-validator || status=1
if [ $status -eq 0 ]; then
  echo "check-deps: the validator links none of: ${forbidden[*]}"
fi
exit $status
