#!/usr/bin/env bash
# Jobs end to end on this machine: latency from submission to the finalized result per
# demo model, and sustained throughput of digits (k=3, Groth16 proofs) and MiniLM (k=3)
# jobs, on `vichaind dev --workers 3` with 200 ms blocks.
#
#   scripts/bench-jobs.sh [JOBS_PER_MODEL=5] [CLIENTS=6] [THROUGHPUT_JOBS=12]
#
# Throughput submits THROUGHPUT_JOBS digits jobs and three times as many MiniLM jobs at
# once; more digits jobs than the workers can prove within the commit window (150
# blocks) fail with a refund, which is the ledger working as designed, not a result.
#
# Prints one line per measurement; BENCHMARKS.md quotes them.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/vichain-target}"
per_model="${1:-5}" clients="${2:-6}" total="${3:-12}"
scripts/fetch-models.sh >/dev/null
cargo build --quiet -p vichain-node -p vichain-cli --bins
bin="$CARGO_TARGET_DIR/debug"
work="$(mktemp -d)"
port="${VICHAIN_BENCH_PORT:-19390}"
export VICHAIN_NODE="http://127.0.0.1:$port" VICHAIN_HOME="$work/client"
cleanup() { kill "$node_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
RUST_LOG=info,gr1cs=off "$bin/vichaind" dev --workers 3 --home "$work/node" --grpc "127.0.0.1:$port" \
  --block-time 200ms >"$work/node.log" 2>&1 &
node_pid=$!
for _ in $(seq 1 3000); do
  n="$("$bin/vichain" workers --json 2>/dev/null | grep -c '"peer_id"' || true)"
  [ "${n:-0}" -ge 3 ] && break
  sleep 0.1
done
models="$("$bin/vichain" models --json | python3 -c 'import json,sys; print(" ".join(m["model_id"] for m in json.load(sys.stdin)["models"]))')"

input_args() {
  case "$1" in
    digits) echo "--digit $2" ;;
    minilm) echo "--text sentence-$2-about-verifiable-inference" ;;
    minilm-tee) echo "--text sentence-$2-about-verifiable-inference --sealed" ;;
    smollm2) echo "--text Name-a-color-$2" ;;
  esac
}

echo "== latency: submission to finalized result, one job at a time ($per_model per model)"
for m in $models; do
  python3 - "$bin/vichain" "$m" "$per_model" "$(input_args "$m" 0)" <<'PY'
import json, subprocess, sys, time
cli, model, n, args = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
secs, blocks = [], []
for i in range(n):
    a = args.replace("-0-", f"-{i}-").replace("--digit 0", f"--digit {i}").split()
    t = time.time()
    out = subprocess.run([cli, "submit", "--model", model, *a, "--wait", "--json"],
                         capture_output=True, text=True, check=True).stdout
    secs.append(time.time() - t)
    job = json.loads(out)
    assert job["status"] == "JOB_STATUS_FINALIZED", job
    blocks.append(job["finalized_height"] - job["submitted_height"])
secs.sort(); blocks.sort()
print(f"{model}: median {secs[len(secs)//2]:.2f} s (min {secs[0]:.2f}, max {secs[-1]:.2f}), "
      f"median {blocks[len(blocks)//2]} blocks of 200 ms, {n} jobs")
PY
done
echo "== where a job's time goes (worker log: compute = inference + proving, per worker)"
python3 - "$work/node.log" <<'PY'
import re, sys, collections
ms = collections.defaultdict(list)
for line in open(sys.argv[1]):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    m = re.search(r"computed worker=\S+ job=\d+ model=(\S+) ms=(\d+)", line)
    if m:
        ms[m.group(1)].append(int(m.group(2)))
for model, v in sorted(ms.items()):
    v.sort()
    print(f"{model}: compute median {v[len(v)//2]} ms per worker (min {v[0]}, max {v[-1]}, {len(v)} runs)")
PY

echo "== throughput: $total digits jobs and $((3 * total)) MiniLM jobs from $clients clients at once"
for i in $(seq 1 "$clients"); do
  "$bin/vichain" keys add "c$i" >/dev/null
  "$bin/vichain" tx transfer --to "$("$bin/vichain" keys show "c$i" --address)" --amount 100000 >/dev/null
done
for m in digits minilm; do
  case " $models " in *" $m "*) ;; *) continue ;; esac
  n="$total"; [ "$m" = minilm ] && n=$((3 * total))
  python3 - "$bin/vichain" "$m" "$clients" "$n" <<'PY'
import json, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
cli, model, clients, total = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def run(c):
    ids = []
    for i in range(c, total, clients):
        a = ["--digit", str(i % 300)] if model == "digits" else ["--text", f"throughput sentence {i}"]
        out = subprocess.run([cli, "submit", "--model", model, *a, "--from", f"c{c+1}", "--json"],
                             capture_output=True, text=True, check=True).stdout
        ids.append(json.loads(out)["job_id"])
    return ids
t = time.time()
with ThreadPoolExecutor(clients) as ex:
    ids = [j for part in ex.map(run, range(clients)) for j in part]
pending = set(ids)
while pending:
    for j in list(pending):
        job = json.loads(subprocess.run([cli, "query", "job", str(j), "--json"],
                                        capture_output=True, text=True, check=True).stdout)
        if job["status"] in ("JOB_STATUS_FINALIZED", "JOB_STATUS_FAILED"):
            assert job["status"] == "JOB_STATUS_FINALIZED", job
            pending.discard(j)
    time.sleep(0.2)
dt = time.time() - t
print(f"{model}: {len(ids)} jobs finalized in {dt:.1f} s = {len(ids)/dt:.2f} jobs/s (k=3)")
PY
done
