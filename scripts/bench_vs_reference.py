#!/usr/bin/env python3
"""candle (this project) against the references users would pick, alternating A and B in one
session so that the machine's noise hits both alike:

- all-MiniLM-L6-v2: `minilm_speed` against PyTorch / sentence-transformers
  (`scripts/bench_minilm_torch.py`), same thread count;
- SmolLM2-135M-Instruct Q4_1: `smollm2_speed` against llama.cpp (llama-cpp-python) on the same
  GGUF, same prompt token ids, greedy, 64 generated tokens, same thread count; and both against
  the memory-bandwidth bound (the weights streamed once per generated token).

  pip install torch sentence-transformers numpy llama-cpp-python   # llama.cpp builds from source
  scripts/fetch-models.sh
  cargo build --release -p vichain-inference --example minilm_speed --example smollm2_speed
  python3 scripts/bench_vs_reference.py --bin target/release/examples [--rounds 3] [--threads 2]
"""
import argparse
import concurrent.futures
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = pathlib.Path(os.environ.get("VICHAIN_MODELS", "/var/tmp/vichain-models"))
GGUF = MODELS / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"
TOKENS = 64


def run(cmd, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return out


def number(pattern, text):
    m = re.search(pattern, text)
    if not m:
        sys.exit(f"no match for {pattern!r} in:\n{text}")
    return float(m.group(1))


def candle_minilm(bin_dir, threads):
    out = run([str(bin_dir / "minilm_speed")], threads)
    return number(r"embed/tokens=12: ([\d.]+) ms", out), number(r"sentences=32: ([\d.]+) ms", out)


def torch_minilm(threads):
    out = run([sys.executable, str(ROOT / "scripts" / "bench_minilm_torch.py"), str(threads)], threads)
    return (
        number(r"sentence-transformers encode\): ([\d.]+) ms", out),
        number(r"sentences=32: ([\d.]+) ms", out),
    )


def candle_smollm2(bin_dir, threads):
    out = run([str(bin_dir / "smollm2_speed"), str(TOKENS), "3"], threads)
    prompt = [float(x) for x in re.findall(r"\(([\d.]+) tokens/s\); generation", out)]
    gen = [float(x) for x in re.findall(r"generation \d+ tokens in [\d.]+ ms \(([\d.]+) tokens/s", out)]
    return max(prompt), max(gen)


def haiku_prompt_ids():
    fixture = json.loads((ROOT / "inference" / "tests" / "fixtures" / "smollm2_reference.json").read_text())
    case = next(c for c in fixture["cases"] if c["prompt"] == "Write a haiku about the sea.")
    return case["prompt_ids"]


def llama_cpp_smollm2(threads, rounds=3):
    """Same measurement as smollm2_speed: prefill the prompt, then argmax + one-token eval."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(GGUF), n_ctx=512, n_threads=threads, n_threads_batch=threads,
                n_batch=512, verbose=False)
    ids = haiku_prompt_ids()
    vocab = llm.n_vocab()
    best_prompt, best_gen = 0.0, 0.0
    for _ in range(rounds):
        llm.reset()
        t = time.perf_counter()
        llm.eval(ids)
        prefill = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(TOKENS):
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(vocab,))
            nxt = int(np.argmax(logits))
            llm.eval([nxt])
        gen = time.perf_counter() - t
        best_prompt = max(best_prompt, len(ids) / prefill)
        best_gen = max(best_gen, TOKENS / gen)
    return best_prompt, best_gen


def read_bandwidth(threads):
    """GB/s summing a 1 GiB float32 array split across `threads` threads (numpy releases the GIL)."""
    a = np.ones(1 << 28, dtype=np.float32)
    parts = np.array_split(a, threads)
    best = 0.0
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for _ in range(5):
            t = time.perf_counter()
            list(pool.map(np.sum, parts))
            best = max(best, a.nbytes / (time.perf_counter() - t) / 1e9)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, type=pathlib.Path, help="directory with minilm_speed and smollm2_speed")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    rows = {k: [] for k in ("c1", "cb", "t1", "tb", "cp", "cg", "lp", "lg")}
    for r in range(args.rounds):
        rows["c1"].append(None), rows["cb"].append(None)
        rows["c1"][-1], rows["cb"][-1] = candle_minilm(args.bin, args.threads)
        t1, tb = torch_minilm(args.threads)
        rows["t1"].append(t1), rows["tb"].append(tb)
        cp, cg = candle_smollm2(args.bin, args.threads)
        rows["cp"].append(cp), rows["cg"].append(cg)
        lp, lg = llama_cpp_smollm2(args.threads)
        rows["lp"].append(lp), rows["lg"].append(lg)
        print(f"round {r}: minilm one {rows['c1'][-1]:.2f} vs {t1:.2f} ms, batch {rows['cb'][-1]:.1f} vs {tb:.1f} ms; "
              f"smollm2 prompt {cp:.0f} vs {lp:.0f} tok/s, generation {cg:.1f} vs {lg:.1f} tok/s", flush=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    bw = read_bandwidth(args.threads)
    weights = GGUF.stat().st_size
    bound = bw * 1e9 / weights
    print(f"\nmedians over {args.rounds} rounds, {args.threads} threads")
    print("| | candle (vichain) | reference | ratio |")
    print("| --- | --- | --- | --- |")
    print(f"| MiniLM, one 12-token sentence | {med['c1']:.2f} ms | {med['t1']:.2f} ms (sentence-transformers) | {med['t1'] / med['c1']:.2f}x |")
    print(f"| MiniLM, batch of 32 | {med['cb']:.1f} ms ({32e3 / med['cb']:.0f}/s) | {med['tb']:.1f} ms ({32e3 / med['tb']:.0f}/s) | {med['tb'] / med['cb']:.2f}x |")
    print(f"| SmolLM2 prompt ({len(haiku_prompt_ids())} tokens) | {med['cp']:.0f} tokens/s | {med['lp']:.0f} tokens/s (llama.cpp) | {med['cp'] / med['lp']:.2f}x |")
    print(f"| SmolLM2 generation ({TOKENS} tokens) | {med['cg']:.1f} tokens/s | {med['lg']:.1f} tokens/s (llama.cpp) | {med['cg'] / med['lg']:.2f}x |")
    print(f"\nread bandwidth {bw:.1f} GB/s ({args.threads} threads); {weights / 1e6:.1f} MB of weights per token: "
          f"bound {bound:.0f} tokens/s; candle at {med['cg'] / bound:.0%}, llama.cpp at {med['lg'] / bound:.0%} of it")


if __name__ == "__main__":
    main()
