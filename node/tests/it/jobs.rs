//! Verified jobs end to end, as users run them: `vichaind dev --workers 3` (three
//! in-process workers with their own keys) and `vichain submit --wait` over gRPC:
//! the digits model's result is finalized by workers whose Groth16 proofs the
//! ledger verified, MiniLM's embedding by agreeing workers, each with an inclusion
//! proof checked by the CLI. Bad submissions get clear errors and store nothing.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use vichain_tests::{DevNode, Process, free_port};

use super::{VICHAIND, cli, json, wait_for_height};

fn dev_with_workers(home: &Path, grpc: u16) -> Process {
    DevNode::new(home, grpc)
        .workers(3)
        .spawn(Path::new(VICHAIND))
}

/// Waits until `model` is registered and at least `n` workers serve it.
pub(super) fn wait_for_workers(grpc: u16, keys: &Path, model: &str, n: usize) {
    for _ in 0..1200 {
        let out = cli(grpc, keys, &["workers", "--json"]);
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            let serving = v["workers"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|w| {
                    w["serves"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|s| s["model_id"] == model)
                })
                .count();
            if serving >= n {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{n} workers for {model} never registered");
}

fn agreed(job: &Value) -> Vec<&Value> {
    job["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["verdict"] == "VERDICT_AGREED")
        .collect()
}

#[test]
fn dev_workers_finalize_verified_jobs_submitted_with_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (home, keys) = (dir.path().join("node"), dir.path().join("client"));
    let grpc = free_port();
    let mut node = dev_with_workers(&home, grpc);
    wait_for_height(grpc, &keys, 1);
    wait_for_workers(grpc, &keys, "digits", 3);

    // The digits MLP: every worker proves its inference; the ledger verifies the proofs.
    let (label, expected) = {
        let data = vichain_inference::DigitsDataset::bundled().unwrap();
        let (_, test) = data.split();
        let model = vichain_zk::QuantizedMlp::from_bytes(vichain_inference::DIGITS_MODEL).unwrap();
        let input = vichain_inference::quantize_input(&test.images[0]);
        (test.labels[0], model.forward(&input).unwrap().argmax as i64)
    };
    let job = json(&cli(
        grpc,
        &keys,
        &[
            "submit", "--model", "digits", "--digit", "0", "--wait", "--json",
        ],
    ));
    assert_eq!(job["status"], "JOB_STATUS_FINALIZED", "{job:#}");
    assert_eq!(
        job["result"]["values"][0].as_i64().unwrap(),
        expected,
        "label {label}"
    );
    assert_eq!(job["inclusion"]["proof_verified"], true);
    let agreeing = agreed(&job);
    assert!(agreeing.len() >= 2, "{job:#}");
    assert!(agreeing.iter().all(|a| a["proof_verified"] == true));

    // `vichain job` fetches it again with its Merkle proof.
    let again = json(&cli(grpc, &keys, &["job", "1", "--json"]));
    assert_eq!(again["result"], job["result"]);
    assert_eq!(again["inclusion"]["proof_verified"], true);

    // MiniLM: the embedding the quorum agreed on is the model's.
    let models = json(&cli(grpc, &keys, &["models", "--json"]));
    let has_minilm = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["model_id"] == "minilm");
    assert!(
        has_minilm,
        "make test fetches MiniLM; dev registers it: {models:#}"
    );
    let job = json(&cli(
        grpc,
        &keys,
        &[
            "submit",
            "--model",
            "minilm",
            "--text",
            "a verified sentence",
            "--wait",
            "--json",
        ],
    ));
    assert_eq!(job["status"], "JOB_STATUS_FINALIZED", "{job:#}");
    let values = job["result"]["values"].as_array().unwrap();
    assert_eq!(values.len(), 384);
    let norm: f64 = values
        .iter()
        .map(|v| (v.as_i64().unwrap() as f64 / 1e6).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(
        (norm - 1.0).abs() < 1e-3,
        "normalized embedding, norm {norm}"
    );
    assert!(agreed(&job).len() >= 2);

    // The same sentence sealed to the attested workers of minilm-tee: only its hash
    // is on chain, and the workers that opened it agree on the same embedding.
    let sealed = json(&cli(
        grpc,
        &keys,
        &[
            "submit",
            "--model",
            "minilm-tee",
            "--text",
            "a verified sentence",
            "--sealed",
            "--wait",
            "--json",
        ],
    ));
    assert_eq!(sealed["status"], "JOB_STATUS_FINALIZED", "{sealed:#}");
    assert_eq!(sealed["input_bytes"], 0, "the input never went on chain");
    assert_eq!(sealed["result"], job["result"]);
    // A model that does not require TEE refuses sealed jobs.
    let out = cli(
        grpc,
        &keys,
        &["submit", "--model", "minilm", "--text", "x", "--sealed"],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not require TEE"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // SmolLM2 in three pipeline stages through the dev workers' libp2p network: the two
    // orchestrators agree, on exactly the tokens of the whole model in one process.
    let job = json(&cli(
        grpc,
        &keys,
        &[
            "submit",
            "--model",
            "smollm2",
            "--text",
            "Name a colour.",
            "--wait",
            "--json",
        ],
    ));
    assert_eq!(job["status"], "JOB_STATUS_FINALIZED", "{job:#}");
    assert_eq!(job["outcome"], "unanimous", "{job:#}");
    let gguf = vichain_worker::devnet::smollm2_path().expect("make test fetches SmolLM2");
    let mut whole = vichain_inference::TextGenerator::from_gguf(
        &gguf,
        vichain_inference::KvCacheConfig::default(),
    )
    .unwrap();
    let g = whole
        .chat(
            1,
            "Name a colour.",
            &vichain_inference::GenerationParams {
                max_new_tokens: vichain_worker::devnet::DEMO_MAX_NEW_TOKENS,
                ..Default::default()
            },
        )
        .unwrap();
    let tokens: Vec<i64> = g.tokens.iter().map(|&t| i64::from(t)).collect();
    assert_eq!(job["result"]["values"], serde_json::json!(tokens));
    assert_eq!(job["result"]["text"], g.text.as_str());

    // Split mode: this client runs the same pipeline itself and keeps input and output;
    // the chain records the stages and the output's digest and pays the stage workers.
    let split_dir = home.join("models/smollm2-split");
    let bootstrap = std::fs::read_to_string(split_dir.join("bootstrap.txt")).unwrap();
    let manifest = split_dir.join("manifest.json");
    let private = json(&cli(
        grpc,
        &keys,
        &[
            "submit",
            "--model",
            "smollm2",
            "--text",
            "Name a colour.",
            "--private",
            "--pipeline",
            manifest.to_str().unwrap(),
            "--bootstrap",
            bootstrap.lines().next().unwrap(),
            "--wait",
            "--json",
        ],
    ));
    assert_eq!(private["status"], "JOB_STATUS_FINALIZED", "{private:#}");
    assert_eq!(private["outcome"], "client_pipeline");
    assert_eq!(private["privacy"], "PRIVACY_MODE_SPLIT");
    assert_eq!(private["input_bytes"], 0);
    assert!(
        private["result"].is_null(),
        "the output stays with the client"
    );
    assert_eq!(private["output_hash"].as_str().unwrap().len(), 64);
    let stages = private["pipeline"].as_array().unwrap();
    let layers: Vec<(u64, u64)> = stages
        .iter()
        .map(|s| {
            (
                s["start_layer"].as_u64().unwrap(),
                s["end_layer"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(layers, [(0, 10), (10, 20), (20, 30)]);
    let workers = json(&cli(grpc, &keys, &["workers", "--json"]));
    for s in stages {
        assert!(
            workers["workers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w["operator"] == s["operator"]),
            "stage run by a registered worker: {s}"
        );
    }

    // Bad submissions: unknown model, oversize input, k above the workers, too small a fee.
    let bad = |args: &[&str], needle: &str| {
        let out = cli(grpc, &keys, args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    };
    bad(
        &["submit", "--model", "nope", "--text", "x"],
        "not registered",
    );
    let big = dir.path().join("big");
    std::fs::write(&big, vec![1u8; 300 * 1024]).unwrap();
    bad(
        &[
            "submit",
            "--model",
            "digits",
            "--input",
            big.to_str().unwrap(),
        ],
        "exceeds the limit",
    );
    bad(
        &["submit", "--model", "digits", "--digit", "1", "--k", "5"],
        "only 3 eligible workers",
    );
    bad(
        &[
            "submit",
            "--model",
            "digits",
            "--digit",
            "1",
            "--max-fee",
            "1",
        ],
        "below price",
    );
    let status = json(&cli(grpc, &keys, &["query", "job", "6", "--json"]));
    assert_eq!(
        status["found"], false,
        "no job was stored for a refused submission"
    );
    assert!(node.terminate().success());
}

#[test]
fn job_service_answers_bad_requests_with_grpc_status_codes() {
    use tonic::Code;
    use vichain_proto::v1::{self as pb, job_service_client::JobServiceClient};

    let dir = tempfile::tempdir().unwrap();
    let grpc = free_port();
    let _node = super::dev(&dir.path().join("node"), grpc);
    wait_for_height(grpc, &dir.path().join("client"), 1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = JobServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
            .await
            .unwrap();
        let submit = |tx: Vec<u8>| pb::SubmitJobRequest { tx, wait_ms: 1000 };
        let e = c.submit_job(submit(vec![0xff; 40])).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        assert!(e.message().contains("malformed"), "{}", e.message());
        // A valid transaction that is not a job.
        let transfer = vichain_consensus::sign_tx(
            &vichain_consensus::dev_signing_key(),
            "vichain-dev",
            0,
            1,
            pb::tx_body::Action::Transfer(pb::Transfer {
                to: vec![1; 20],
                amount: 1,
            }),
        );
        let e = c.submit_job(submit(transfer)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("not a submit_job"), "{}", e.message());
        // A job on a model nobody registered.
        let job = vichain_consensus::sign_tx(
            &vichain_consensus::dev_signing_key(),
            "vichain-dev",
            0,
            1,
            pb::tx_body::Action::SubmitJob(pb::SubmitJob {
                model_id: "nope".into(),
                payload: Some(pb::submit_job::Payload::Input(b"x".to_vec())),
                k: 0,
                max_fee: 10,
                privacy: 0,
            }),
        );
        let e = c.submit_job(submit(job)).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e}");
        assert!(
            e.message().contains("\"nope\" is not registered"),
            "{}",
            e.message()
        );

        let e = c
            .get_job(pb::GetJobRequest { job_id: 42 })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        let e = c
            .watch_job(pb::WatchJobRequest { job_id: 42 })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        let e = c
            .list_jobs(pb::ListJobsRequest {
                worker: "not-an-address".into(),
                limit: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        let e = c
            .watch_assignments(pb::ListJobsRequest {
                worker: "not-an-address".into(),
                limit: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        let open = c
            .list_jobs(pb::ListJobsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(open.jobs.is_empty(), "nothing was stored");
    });
}

/// `vichaind worker --chain`: a worker process with its own operator key watches the
/// chain, runs the job it is assigned and commits and reveals; the job finalizes with
/// its result, and the operator is paid.
#[test]
fn a_standalone_worker_process_takes_its_jobs_from_the_chain() {
    use std::io::{BufRead, BufReader};

    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("client");
    let grpc = free_port();
    let _node = super::dev(&dir.path().join("node"), grpc);
    wait_for_height(grpc, &keys, 1);

    // The digits MLP cut into one shard for the worker network, and registered on chain.
    let model = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../inference/data/digits-mlp.vqmlp"
    );
    let shards = dir.path().join("shards");
    let out = Command::new(VICHAIND)
        .args([
            "model", "split", "--model", model, "--id", "digits", "--layers", "0..2", "--out",
        ])
        .arg(&shards)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spec = dir.path().join("plain.json");
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(model).unwrap()))
    };
    std::fs::write(
        &spec,
        serde_json::json!({
            "model_id": "plain", "family": "mlp", "total_layers": 2,
            "shards": [{"start_layer": 0, "end_layer": 2, "sha256": sha}],
            "policy": {"k": 1, "quorum": 1}, "price": 3,
        })
        .to_string(),
    )
    .unwrap();
    json(&cli(
        grpc,
        &keys,
        &[
            "tx",
            "register-model",
            "--spec",
            spec.to_str().unwrap(),
            "--json",
        ],
    ));

    let home = dir.path().join("worker");
    let mut worker = Process(
        Command::new(VICHAIND)
            .args(["worker", "--listen", "/ip4/127.0.0.1/tcp/0", "--home"])
            .arg(&home)
            .arg("--model")
            .arg(shards.join("manifest.json"))
            .args(["--layers", "0..2", "--chain"])
            .arg(format!("http://127.0.0.1:{grpc}"))
            .arg("--job-model")
            .arg(format!("plain={model}"))
            .args(["--metrics-addr", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (mut peer, mut operator, mut metrics) = (String::new(), String::new(), String::new());
    let mut lines = BufReader::new(worker.0.stdout.take().unwrap()).lines();
    while peer.is_empty() || operator.is_empty() || metrics.is_empty() {
        let line = lines.next().expect("worker output ended").unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first() {
            Some(&"worker") => peer = words[1].to_owned(),
            Some(&"operator") => operator = words[1].to_owned(),
            Some(&"metrics") => metrics = words[1].to_owned(),
            _ => {}
        }
    }
    // Fund the operator, then it registers as a worker for "plain".
    json(&cli(
        grpc,
        &keys,
        &[
            "tx", "transfer", "--to", &operator, "--amount", "100000", "--json",
        ],
    ));
    let reg = Command::new(&*super::VICHAIN)
        .args([
            "tx",
            "register-worker",
            "--from",
            "operator",
            "--peer-id",
            &peer,
        ])
        .args(["--stake", "5000", "--serves", "plain:0", "--json"])
        .env("VICHAIN_NODE", format!("http://127.0.0.1:{grpc}"))
        .env("VICHAIN_HOME", &home)
        .output()
        .unwrap();
    let reg = json(&reg);
    assert_eq!(reg["code"], 0, "{reg}");

    let job = json(&cli(
        grpc,
        &keys,
        &[
            "submit", "--model", "plain", "--digit", "4", "--wait", "--json",
        ],
    ));
    assert_eq!(job["status"], "JOB_STATUS_FINALIZED", "{job:#}");
    let agreed = agreed(&job);
    assert_eq!(agreed.len(), 1);
    assert_eq!(agreed[0]["operator"], operator.as_str());
    assert_eq!(agreed[0]["reward"], 3);
    let (input, _) = {
        let data = vichain_inference::DigitsDataset::bundled().unwrap();
        let (_, test) = data.split();
        (vichain_inference::quantize_input(&test.images[4]), ())
    };
    let m = vichain_zk::QuantizedMlp::from_bytes(vichain_inference::DIGITS_MODEL).unwrap();
    assert_eq!(
        job["result"]["values"][0].as_i64().unwrap(),
        m.forward(&input).unwrap().argmax as i64
    );
    // The worker's /metrics shows the job's inference time for the model.
    let (status, text) = super::dashboard::Http::new().get(&metrics);
    assert_eq!(status, 200);
    assert!(
        text.lines().any(
            |l| l.starts_with("vichain_inference_forward_duration_seconds_count")
                && l.contains("model=\"plain\"")
        ),
        "{text}"
    );
    // Connected peers are sampled every 2 s.
    let mut peers_seen = false;
    for _ in 0..50 {
        let (_, text) = super::dashboard::Http::new().get(&metrics);
        if text
            .lines()
            .any(|l| l.starts_with("vichain_split_connected_peers"))
        {
            peers_seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        peers_seen,
        "the worker exports vichain_split_connected_peers"
    );
    // What it committed is in its state file until the job closes.
    assert!(home.join("jobs.json").exists());
    assert!(worker.terminate().success());
}
