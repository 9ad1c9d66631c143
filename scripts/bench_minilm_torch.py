#!/usr/bin/env python3
"""Side-by-side reference for `cargo bench -p vichain-inference --bench inference -- minilm`:
all-MiniLM-L6-v2 through PyTorch, on the same sentence (12 tokens) and batch (32 sentences),
with the same thread count.

  python3 scripts/bench_minilm_torch.py [THREADS]     # default 2
"""
import os
import pathlib
import statistics
import sys
import time

import torch
from sentence_transformers import SentenceTransformer

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
torch.set_num_threads(threads)
models = pathlib.Path(os.environ.get("VICHAIN_MODELS", "/var/tmp/vichain-models"))
model = SentenceTransformer(str(models / "all-minilm-l6-v2"), device="cpu")
sentence = "The quick brown fox jumps over the lazy dog."
assert len(model.tokenizer(sentence)["input_ids"]) == 12
batch = [f"{sentence} Number {i}." for i in range(32)]
enc = model.tokenizer(sentence, return_tensors="pt")


def timeit(f, n):
    for _ in range(max(3, n // 10)):
        f()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


with torch.inference_mode():
    fwd = timeit(lambda: model[0].auto_model(**enc), 300)
    st = timeit(lambda: model.encode(sentence, convert_to_numpy=True), 300)
    b = timeit(lambda: model.encode(batch, batch_size=32, convert_to_numpy=True), 20)
print(f"torch {torch.__version__}, {threads} threads")
print(f"minilm/forward/tokens=12 (torch model only): {fwd * 1e3:.2f} ms")
print(f"minilm/embed/tokens=12 (sentence-transformers encode): {st * 1e3:.2f} ms")
print(f"minilm/embed_batch/sentences=32: {b * 1e3:.1f} ms ({32 / b:.0f} sentences/s)")
