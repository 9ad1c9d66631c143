#!/usr/bin/env python3
"""Split inference across processes on loopback, against the same models in one process.

Starts `vichaind worker` processes (MiniLM in 2 stages; SmolLM2 in 3 stages with a second
holder of the middle stage) and times `vichain infer` through them against
`vichain infer --local` (the whole model, and every shard in sequence, in one process),
alternating the two in each round. Then SIGKILLs the middle SmolLM2 stage during a
generation and reports the failover. Prints markdown tables for BENCHMARKS.md.

    cargo build --release --workspace --bins
    scripts/fetch-models.sh
    python3 scripts/bench_split.py [--bin DIR] [--rounds 3] [--repeat 30] [--tokens 32]

Binaries are copied out of --bin (default $CARGO_TARGET_DIR/release) first, so a
concurrent build cannot swap them mid-run. Every process gets RAYON_NUM_THREADS=--threads.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SENTENCE = "Split inference keeps the raw input on the client."  # 12 tokens
PROMPT = "What is a blockchain?"


def run(cmd, env):
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return out.stdout


class Worker:
    def __init__(self, bins, env, tmp, manifest, layers, bootstrap):
        home = tempfile.mkdtemp(dir=tmp)
        cmd = [f"{bins}/vichaind", "worker", "--json", "--home", home, "--model", manifest,
               "--layers", layers, "--listen", "/ip4/127.0.0.1/tcp/0", "--heartbeat", "1s"]
        if bootstrap:
            cmd += ["--bootstrap", bootstrap]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        for line in self.proc.stdout:
            if line.startswith("{"):
                info = json.loads(line)
                break
        else:
            sys.exit(f"worker {layers} did not start")
        self.peer = info["peer_id"]
        self.addr = info["listen_addrs"][0]
        # Keep draining stdout (logs) so the worker never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def infer(bins, env, args):
    return json.loads(run([f"{bins}/vichain", "infer", "--json"] + args, env))


def median_ms(runs, key="elapsed_micros"):
    xs = [r[key] for r in runs[1:]] or [r[key] for r in runs]  # first run is a warm-up
    return statistics.median(xs) / 1000


def decode_tps(runs):
    steps = sum(r["later_steps"] for r in runs)
    micros = sum(r["later_steps_micros"] for r in runs)
    return steps / (micros / 1e6)


def main():
    p = argparse.ArgumentParser()
    target = os.environ.get("CARGO_TARGET_DIR", "/var/tmp/vichain-target")
    p.add_argument("--bin", default=f"{target}/release")
    p.add_argument("--models", default=os.environ.get("VICHAIN_MODELS", "/var/tmp/vichain-models"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--threads", default="1")
    a = p.parse_args()

    tmp = tempfile.mkdtemp(prefix="bench-split-")
    bins = f"{tmp}/bin"
    os.makedirs(bins)
    for b in ("vichaind", "vichain"):
        shutil.copy2(f"{a.bin}/{b}", bins)
    env = dict(os.environ, RUST_LOG="warn", RAYON_NUM_THREADS=a.threads)
    minilm_dir = f"{a.models}/all-minilm-l6-v2"
    gguf = f"{a.models}/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
    split = [f"{bins}/vichaind", "model", "split", "--client-keeps-ends"]
    run(split + ["--model", minilm_dir, "--out", f"{tmp}/minilm", "--id", "all-minilm-l6-v2",
                 "--layers", "0..3,3..6"], env)
    run(split + ["--model", gguf, "--out", f"{tmp}/smollm2", "--id", "smollm2-135m",
                 "--layers", "0..10,10..20,20..30"], env)
    minilm = f"{tmp}/minilm/manifest.json"
    smollm2 = f"{tmp}/smollm2/manifest.json"

    workers = []
    try:
        first = Worker(bins, env, tmp, minilm, "0..3", None)
        workers.append(first)
        boot = first.addr
        workers.append(Worker(bins, env, tmp, minilm, "3..6", boot))
        for layers in ("0..10", "10..20", "20..30", "10..20"):
            workers.append(Worker(bins, env, tmp, smollm2, layers, boot))
        time.sleep(3)

        print(f"threads per process: {a.threads}; rounds: {a.rounds}; "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")

        # MiniLM: one 12-token sentence.
        rows = {"whole model, in process": [], "2 shards, in process": [],
                "2 stages, 2 worker processes": []}
        report = None
        for _ in range(a.rounds):
            common = ["--text", SENTENCE, "--repeat", str(a.repeat)]
            rows["whole model, in process"].append(
                median_ms(infer(bins, env, ["--local", "--model", minilm_dir] + common)["runs"]))
            rows["2 shards, in process"].append(
                median_ms(infer(bins, env, ["--local", "--model", minilm] + common)["runs"]))
            report = infer(bins, env, ["--model", minilm, "--bootstrap", boot] + common)
            rows["2 stages, 2 worker processes"].append(median_ms(report["runs"]))
        base = statistics.median(rows["whole model, in process"])
        print("| all-MiniLM-L6-v2, 12 tokens | median ms per sentence (each round) | ratio |")
        print("| --- | --- | --- |")
        for name, xs in rows.items():
            print(f"| {name} | {', '.join(f'{x:.1f}' for x in xs)} | "
                  f"{statistics.median(xs) / base:.2f}x |")
        step = report["steps"][0]
        hidden = step["tokens"] * 384 * 4
        print()
        for s in step["stages"]:
            print(f"- MiniLM hop to layers {s['layers']}: {s['bytes_sent']} B sent, "
                  f"{s['bytes_received']} B back ({step['tokens']} x 384 x f32 = {hidden} B); "
                  f"round trip {s['latency_micros']} us of which compute {s['compute_micros']} us")
        print()

        # SmolLM2: the chat prompt, then --tokens greedy tokens.
        rows = {"whole model, in process": [], "3 shards, in process": [],
                "3 stages, 3 worker processes": []}
        prefill = {k: [] for k in rows}
        for _ in range(a.rounds):
            common = ["--text", PROMPT, "--max-tokens", str(a.tokens), "--repeat", "2"]
            for name, args in (("whole model, in process", ["--local", "--model", gguf]),
                               ("3 shards, in process", ["--local", "--model", smollm2]),
                               ("3 stages, 3 worker processes",
                                ["--model", smollm2, "--bootstrap", boot])):
                r = infer(bins, env, args + common)
                rows[name].append(decode_tps(r["runs"][1:]))
                prefill[name].append(r["runs"][-1]["first_step_micros"] / 1000)
                if name.startswith("3 stages"):
                    report = r
        base = statistics.median(rows["whole model, in process"])
        print(f"| SmolLM2-135M Q4_1, {a.tokens} tokens | decode tokens/s (each round) | "
              f"overhead (time per token) | prefill ms ({report['steps'][0]['tokens']} tokens) |")
        print("| --- | --- | --- | --- |")
        for name, xs in rows.items():
            print(f"| {name} | {', '.join(f'{x:.1f}' for x in xs)} | "
                  f"{base / statistics.median(xs):.2f}x | "
                  f"{statistics.median(prefill[name]):.0f} |")
        print()
        pre, dec = report["steps"][0], report["steps"][1]
        for s0, s1 in zip(pre["stages"], dec["stages"]):
            print(f"- SmolLM2 hop to layers {s1['layers']}: decode {s1['bytes_sent']} B sent, "
                  f"{s1['bytes_received']} B back (576 x f32 = 2304 B); prefill "
                  f"{s0['bytes_sent']} B ({pre['tokens']} x 2304 = {pre['tokens'] * 2304} B); "
                  f"decode round trip {s1['latency_micros']} us, compute {s1['compute_micros']} us")
        print()

        # Failover: SIGKILL the middle stage's worker after token 8.
        by_peer = {w.peer: w for w in workers}
        cmd = [f"{bins}/vichain", "infer", "--json", "--model", smollm2, "--bootstrap", boot,
               "--text", PROMPT, "--max-tokens", str(a.tokens)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        out = []
        threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True).start()
        killed_at, failed_over, next_token_after = None, False, None
        for line in proc.stderr:
            if line.startswith("token 8: "):
                middle = line.split()[5]
                by_peer[middle].kill()
                killed_at = time.monotonic()
            elif killed_at and line.startswith("failover "):
                failed_over = True
            elif failed_over and next_token_after is None and line.startswith("token "):
                next_token_after = time.monotonic() - killed_at
        proc.wait()
        time.sleep(0.2)
        r = json.loads(out[0])
        f = r["failovers"][0]
        steps = [s["elapsed_micros"] for s in r["steps"][1:]]
        print(f"- failover of layers {f['layers']} (SIGKILL after token 8 of {a.tokens}): "
              f"replacement ready {f['recovery_micros'] / 1000:.1f} ms after the error "
              f"({f['replayed_steps']} steps replayed); kill to next token "
              f"{next_token_after * 1000:.0f} ms; slowest decode step {max(steps) / 1000:.0f} ms "
              f"against a median of {statistics.median(steps) / 1000:.0f} ms; reason: "
              f"{f['reason'][:80]}")
    finally:
        for w in workers:
            if w.proc.poll() is None:
                w.proc.terminate()
                w.proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
