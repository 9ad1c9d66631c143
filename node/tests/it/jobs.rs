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

use super::{Node, VICHAIND, cli, free_port, json, wait_for_height};

fn dev_with_workers(home: &Path, grpc: u16) -> Node {
    Node(
        Command::new(VICHAIND)
            .args(["dev", "--workers", "3", "--block-time", "200ms", "--grpc"])
            .arg(format!("127.0.0.1:{grpc}"))
            .args(["--metrics-addr", "127.0.0.1:0"])
            .arg("--home")
            .arg(home)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
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
    let status = json(&cli(grpc, &keys, &["query", "job", "3", "--json"]).clone());
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
        let open = c
            .list_jobs(pb::ListJobsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(open.jobs.is_empty(), "nothing was stored");
    });
}
