//! Split inference across processes: `vichaind worker` processes serving shards of real
//! models over libp2p on loopback, and `vichain infer` as the client. Outputs are compared
//! with the models run whole in this process, bit for bit (embeddings) and token for token
//! (generation); workers are SIGKILLed to show failover.

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, ChildStderr, Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::Value;
use vichain_inference::{
    Activation, GenerationParams, KvCacheConfig, Pipeline, SentenceEmbedder, TextGenerator,
};

use crate::{VICHAIN, VICHAIND};

fn minilm_dir() -> PathBuf {
    vichain_inference::models::minilm_dir().unwrap()
}

fn smollm2_path() -> PathBuf {
    vichain_inference::models::smollm2_gguf().unwrap()
}

/// `vichaind model split --client-keeps-ends`; returns the manifest's path.
fn split(model: &Path, out: &Path, id: &str, layers: &str) -> PathBuf {
    let o = Command::new(VICHAIND)
        .args(["model", "split", "--client-keeps-ends", "--id", id])
        .args(["--layers", layers, "--model"])
        .arg(model)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out.join("manifest.json")
}

/// A `vichaind worker` process, SIGKILLed when dropped.
struct WorkerProc {
    child: Child,
    peer_id: String,
    addr: String,
}

impl WorkerProc {
    /// Starts a worker on an ephemeral loopback port and waits for its JSON identity line.
    fn start(dir: &Path, manifest: &Path, layers: &str, bootstrap: Option<&str>) -> Self {
        let home = tempfile::tempdir_in(dir).unwrap().keep();
        let mut cmd = Command::new(VICHAIND);
        cmd.args(["worker", "--json", "--layers", layers])
            .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--heartbeat", "500ms"])
            .arg("--home")
            .arg(home)
            .arg("--model")
            .arg(manifest)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(b) = bootstrap {
            cmd.args(["--bootstrap", b]);
        }
        let mut child = cmd.spawn().unwrap();
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        // Drains stdout for the worker's whole life (its logs go there too).
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v.get("peer_id").is_some()
                {
                    let _ = tx.send(v);
                }
            }
        });
        let stderr = drain(child.stderr.take().unwrap());
        let info = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(v) => v,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "worker {layers} printed no identity; stderr: {}",
                    stderr.recv().unwrap_or_default()
                );
            }
        };
        assert_eq!(info["layers"], layers);
        let addr = info["listen_addrs"][0].as_str().unwrap().to_owned();
        assert!(addr.starts_with("/ip4/127.0.0.1/tcp/") && addr.contains("/p2p/"));
        Self {
            child,
            peer_id: info["peer_id"].as_str().unwrap().to_owned(),
            addr,
        }
    }

    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then the exit status (the worker must stop within 20 s).
    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "worker did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a pipe to its end on a thread; the text arrives on the channel.
fn drain(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    rx
}

fn infer(args: &[&str]) -> Output {
    Command::new(&*VICHAIN)
        .arg("infer")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn infer_json(args: &[&str]) -> Value {
    let out = infer(&[args, &["--json"]].concat());
    assert!(
        out.status.success(),
        "vichain infer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn f32_sha256(values: &[f32]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for v in values {
        h.update(v.to_le_bytes());
    }
    hex::encode(h.finalize())
}

/// Every step's hashes chain: the client's embedding is what stage 0 received, each
/// stage received what the previous one emitted. Returns each step's hashes in order
/// (embedding, every stage's output, head).
fn chain(report: &Value) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for step in report["steps"].as_array().unwrap() {
        let mut prev = step["embedding_sha256"].as_str().unwrap().to_owned();
        let mut hashes = vec![prev.clone()];
        for stage in step["stages"].as_array().unwrap() {
            assert_eq!(stage["input_sha256"], prev.as_str(), "the chain links");
            prev = stage["output_sha256"].as_str().unwrap().to_owned();
            hashes.push(prev.clone());
        }
        hashes.push(step["head_sha256"].as_str().unwrap().to_owned());
        out.push(hashes);
    }
    out
}

fn route_peers(report: &Value) -> Vec<String> {
    report["route"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["peer"].as_str().unwrap().to_owned())
        .collect()
}

/// Longer than all-MiniLM-L6-v2's 256-token limit, so the client must truncate exactly
/// where the whole model's embedder does.
fn long_text() -> String {
    "Split inference keeps the raw input on the client, and workers only see activations. "
        .repeat(20)
}

#[test]
fn minilm_across_worker_processes_is_bit_identical_and_routes_around_a_killed_holder() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = split(
        &minilm_dir(),
        &dir.path().join("minilm"),
        "all-minilm-l6-v2",
        "0..3,3..6",
    );
    let a = WorkerProc::start(dir.path(), &manifest, "0..3", None);
    let b = WorkerProc::start(dir.path(), &manifest, "3..6", Some(&a.addr));
    let c = WorkerProc::start(dir.path(), &manifest, "3..6", Some(&a.addr));
    let mut workers = [b, c];

    let text = long_text();
    let input = dir.path().join("input.txt");
    std::fs::write(&input, &text).unwrap();
    let whole = SentenceEmbedder::from_dir(&minilm_dir()).unwrap();
    let expected = f32_sha256(&whole.embed(&text).unwrap());
    let ids = whole.tokenize(&text).unwrap();
    assert_eq!(ids.len(), 256, "the input is truncated");
    let local = Pipeline::load(&dir.path().join("minilm"), KvCacheConfig::default())
        .unwrap()
        .run(&Activation::tokens(0, 0, &ids).unwrap())
        .unwrap();
    let expected_hashes: Vec<String> = local.stage_hashes.iter().map(|h| h.to_string()).collect();

    let m = manifest.to_str().unwrap();
    let i = input.to_str().unwrap();
    let report = infer_json(&["--model", m, "--input", i, "--bootstrap", &a.addr]);
    assert_eq!(report["summary"]["kind"], "embedding");
    assert_eq!(report["summary"]["dims"], 384);
    assert_eq!(
        report["summary"]["values_sha256"], expected,
        "bit-identical to the whole model in this process"
    );
    assert_eq!(
        report["steps"][0]["tokens"], 256,
        "truncated like the embedder"
    );
    assert_eq!(
        chain(&report),
        vec![expected_hashes.clone()],
        "every stage commits to what the in-process pipeline computes"
    );
    let peers = route_peers(&report);
    assert_eq!(peers[0], a.peer_id);
    let victim = workers.iter().position(|w| w.peer_id == peers[1]).unwrap();
    assert!(report["failovers"].as_array().unwrap().is_empty());
    let stage = &report["steps"][0]["stages"][0];
    assert!(
        stage["bytes_sent"].as_u64().unwrap() > 256 * 384 * 4,
        "f32 hidden states"
    );

    // The allow-list decides who may serve.
    for w in &workers {
        let allow = dir.path().join("allow");
        std::fs::write(&allow, format!("# stage 0\n{}\n{}\n", a.peer_id, w.peer_id)).unwrap();
        let only = infer_json(&[
            "--model",
            m,
            "--text",
            "allowed",
            "--bootstrap",
            &a.addr,
            "--allow-peers",
            allow.to_str().unwrap(),
        ]);
        assert_eq!(
            route_peers(&only),
            vec![a.peer_id.clone(), w.peer_id.clone()]
        );
    }
    let allow = dir.path().join("allow-a");
    std::fs::write(&allow, format!("{}\n", a.peer_id)).unwrap();
    let refused = infer(&[
        "--model",
        m,
        "--text",
        "nobody may serve 3..6",
        "--bootstrap",
        &a.addr,
        "--allow-peers",
        allow.to_str().unwrap(),
        "--discovery-timeout",
        "2s",
    ]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("no route for layers 3..6"), "{err}");

    // The holder that served stage 1 dies; the other serves the same bits.
    workers[victim].kill();
    let other = &workers[1 - victim];
    let again = infer_json(&["--model", m, "--input", i, "--bootstrap", &a.addr]);
    assert_eq!(
        route_peers(&again),
        vec![a.peer_id.clone(), other.peer_id.clone()]
    );
    assert_eq!(again["summary"]["values_sha256"], expected);
    assert_eq!(chain(&again), vec![expected_hashes]);

    let mut a = a;
    assert!(a.terminate().success(), "SIGTERM stops a worker cleanly");
}

#[test]
fn workers_and_clients_refuse_bad_manifests_layers_and_shards_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = split(
        &minilm_dir(),
        &dir.path().join("minilm"),
        "all-minilm-l6-v2",
        "0..3,3..6",
    );
    let worker = |manifest: &Path, layers: &str| {
        let o = Command::new(VICHAIND)
            .args([
                "worker",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--layers",
                layers,
            ])
            .arg("--home")
            .arg(dir.path().join("home"))
            .arg("--model")
            .arg(manifest)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(!o.status.success(), "the worker must refuse");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };

    let err = worker(&manifest, "1..3");
    assert!(
        err.contains("no shard holds layers 1..3; shards: 0..3, 3..6"),
        "{err}"
    );
    let err = worker(&manifest, "3..3");
    assert!(err.contains("layer range \"3..3\" is empty"), "{err}");

    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "{\"version\": 1, \"model_id\": ").unwrap();
    let err = worker(&garbage, "0..3");
    assert!(err.contains("invalid JSON"), "{err}");
    let err = worker(&dir.path().join("missing.json"), "0..3");
    assert!(err.contains("No such file"), "{err}");

    // A shard whose bytes do not hash to the manifest's sha256.
    let shard = dir.path().join("minilm/shard-01-layers-3-6.safetensors");
    let mut bytes = std::fs::read(&shard).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    std::fs::write(&shard, bytes).unwrap();
    let err = worker(&manifest, "3..6");
    assert!(err.contains("does not match the expected"), "{err}");
    assert!(err.contains("shard-01-layers-3-6.safetensors"), "{err}");

    // The client checks the same: a manifest without a client shard, and a bad one.
    let o = infer(&[
        "--model",
        garbage.to_str().unwrap(),
        "--text",
        "x",
        "--bootstrap",
        "/ip4/127.0.0.1/tcp/1",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid JSON"));
    let o = infer(&["--model", manifest.to_str().unwrap(), "--text", "x"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--bootstrap"));
}

#[test]
fn smollm2_generation_across_three_stages_survives_killing_the_middle_worker() {
    const TOKENS: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let manifest = split(
        &smollm2_path(),
        &dir.path().join("smollm2"),
        "smollm2-135m",
        "0..10,10..20,20..30",
    );
    let a = WorkerProc::start(dir.path(), &manifest, "0..10", None);
    let mut workers = [
        WorkerProc::start(dir.path(), &manifest, "10..20", Some(&a.addr)),
        WorkerProc::start(dir.path(), &manifest, "20..30", Some(&a.addr)),
        WorkerProc::start(dir.path(), &manifest, "10..20", Some(&a.addr)),
    ];

    let prompt_text = "What is a blockchain?";
    let mut whole = TextGenerator::from_gguf(&smollm2_path(), KvCacheConfig::default()).unwrap();
    let prompt = whole
        .encode(&TextGenerator::chat_prompt(prompt_text))
        .unwrap();
    let params = GenerationParams {
        max_new_tokens: TOKENS,
        ..GenerationParams::default()
    };
    let expected = whole.generate(1, &prompt, &params).unwrap();
    assert_eq!(expected.tokens.len(), TOKENS, "no early end of sequence");
    let expected_ids: Vec<Value> = expected.tokens.iter().map(|t| (*t).into()).collect();

    let m = manifest.to_str().unwrap();
    let short = infer_json(&[
        "--model",
        m,
        "--text",
        prompt_text,
        "--bootstrap",
        &a.addr,
        "--max-tokens",
        "4",
    ]);
    assert_eq!(
        short["output"]["tokens"].as_array().unwrap(),
        &expected_ids[..4]
    );
    let hashes = chain(&short);
    assert_eq!(hashes.len(), 4, "one step per token");
    assert!(
        hashes.iter().all(|h| h.len() == 5),
        "embedding, 3 stages, head"
    );
    assert_eq!(short["steps"][0]["tokens"], prompt.len());
    assert!(short["failovers"].as_array().unwrap().is_empty());

    // The middle stage's worker is SIGKILLed after the second token.
    let mut child = Command::new(&*VICHAIN)
        .args(["infer", "--json", "--model", m, "--text", prompt_text])
        .args(["--bootstrap", &a.addr, "--max-tokens", &TOKENS.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = drain(child.stdout.take().unwrap());
    let stderr: ChildStderr = child.stderr.take().unwrap();
    let mut victim = None;
    let mut progress = String::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        progress.push_str(&line);
        progress.push('\n');
        if victim.is_none()
            && let Some(rest) = line.strip_prefix("token 2: ")
        {
            let middle = rest.split(' ').nth(3).unwrap().to_owned();
            let w = workers.iter().position(|w| w.peer_id == middle).unwrap();
            workers[w].kill();
            victim = Some(middle);
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "vichain infer failed: {progress}");
    let victim = victim.expect("a token-2 progress line");
    let report: Value = serde_json::from_str(&stdout.recv().unwrap()).unwrap();
    assert_eq!(
        report["output"]["tokens"].as_array().unwrap(),
        &expected_ids,
        "identical tokens after the failover"
    );
    let failovers = report["failovers"].as_array().unwrap();
    assert_eq!(failovers.len(), 1, "{progress}");
    assert_eq!(failovers[0]["layers"], "10..20");
    assert_eq!(failovers[0]["from"], victim.as_str());
    let replacement = failovers[0]["to"].as_str().unwrap();
    assert_ne!(replacement, victim);
    assert!(failovers[0]["replayed_steps"].as_u64().unwrap() >= 2);
    assert_eq!(route_peers(&report)[1], replacement);
    let hashes = chain(&report);
    assert_eq!(hashes.len(), TOKENS);
    assert!(progress.contains("failover 10..20"), "{progress}");
}
