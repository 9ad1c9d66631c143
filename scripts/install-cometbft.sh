#!/usr/bin/env bash
# Installs the pinned CometBFT release (v0.38, the consensus engine vichaind is an ABCI++
# application of) from the Go module proxy, idempotently, and prints the binary's path.
#
#   scripts/install-cometbft.sh          # into ${VICHAIN_TOOLS:-/var/tmp/vichain-tools}/cometbft-<version>/
#   export PATH="$(dirname "$(scripts/install-cometbft.sh)"):$PATH"
#
# The version lives here and only here; tests find the binary with this script's
# layout (or $VICHAIN_COMETBFT).
set -euo pipefail
VERSION="v0.38.26"
TOOLS="${VICHAIN_TOOLS:-/var/tmp/vichain-tools}"
dir="$TOOLS/cometbft-$VERSION"
bin="$dir/bin/cometbft"
if [ "${1:-}" = "--version" ]; then echo "$VERSION"; exit 0; fi
have() { [ -x "$bin" ] && "$bin" version 2>/dev/null | grep -qx "${VERSION#v}"; }
if ! have; then
  command -v go >/dev/null || { echo "install-cometbft: Go is needed (go install from the module proxy)" >&2; exit 1; }
  mkdir -p "$dir/bin"
  echo "install-cometbft: building CometBFT $VERSION with $(go version | cut -d' ' -f3) (a minute or two, once)" >&2
  GOBIN="$dir/bin" GOFLAGS="${GOFLAGS:-} -buildvcs=false" go install "github.com/cometbft/cometbft/cmd/cometbft@$VERSION"
  have || { echo "install-cometbft: $bin does not report version ${VERSION#v}: $("$bin" version 2>&1)" >&2; exit 1; }
fi
# A stable name next to the versioned one, for tests and scripts.
ln -sfn "cometbft-$VERSION" "$TOOLS/cometbft"
echo "$bin"
