#!/usr/bin/env bash
# Prints, as JSON, circomlib's Poseidon outputs for the inputs vichain's tests check its
# own Poseidon against (zk/tests/it/poseidon_reference.rs): Poseidon(2) hashes, the t = 3
# permutation, vichain's sponge and vector commitments rebuilt on circomlib's permutation.
#
#   scripts/poseidon-reference.sh > zk/tests/data/circomlib-poseidon.json
#
# circomlibjs (pinned below) is installed with npm into ${VICHAIN_CIRCOMLIBJS_DIR:-
# /var/tmp/vichain-circomlibjs-<version>}, never into the repository, and reused from there.
# The tests read the committed JSON and need neither node nor npm.
set -euo pipefail

VERSION=0.1.7
DIR="${VICHAIN_CIRCOMLIBJS_DIR:-/var/tmp/vichain-circomlibjs-$VERSION}"
HERE="$(cd "$(dirname "$0")" && pwd)"

if [[ ! -f "$DIR/node_modules/circomlibjs/package.json" ]]; then
    mkdir -p "$DIR"
    (cd "$DIR" && npm install --silent --no-audit --no-fund --no-save "circomlibjs@$VERSION" >&2)
fi
installed="$(node -p "require('$DIR/node_modules/circomlibjs/package.json').version")"
if [[ "$installed" != "$VERSION" ]]; then
    echo "circomlibjs $installed in $DIR, expected $VERSION" >&2
    exit 1
fi
# Next to node_modules, so that `import "circomlibjs"` resolves to the pinned copy.
cp "$HERE/poseidon-reference.mjs" "$DIR/poseidon-reference.mjs"
node "$DIR/poseidon-reference.mjs"
