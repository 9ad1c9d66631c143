//! The binaries as users run them: `vichaind dev` with the `vichain` CLI against
//! it (transfer, verified queries, restart on the same home), and `vichaind start`
//! driven over its ABCI socket the way CometBFT drives it; `vichaind worker` processes
//! serving split models to `vichain infer` ([`split`]).

#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use vichain_tests::{DevNode, Process, free_port};

mod dashboard;
mod jobs;
mod split;

const VICHAIND: &str = env!("CARGO_BIN_EXE_vichaind");
/// The CLI, a binary of `vichain-cli` (built by `cargo test --workspace`, or here on demand).
static VICHAIN: std::sync::LazyLock<PathBuf> =
    std::sync::LazyLock::new(|| vichain_tests::workspace_binary("vichain"));

/// `vichaind dev` without workers, 200 ms blocks, gRPC on `grpc`.
fn dev(home: &Path, grpc: u16) -> Process {
    DevNode::new(home, grpc).spawn(Path::new(VICHAIND))
}

fn cli(grpc: u16, keys: &Path, args: &[&str]) -> Output {
    Command::new(&*VICHAIN)
        .args(args)
        .env("VICHAIN_NODE", format!("http://127.0.0.1:{grpc}"))
        .env("VICHAIN_HOME", keys)
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "command failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn wait_for_height(grpc: u16, keys: &Path, min: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = cli(grpc, keys, &["status", "--json"]);
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            if v["height"].as_u64().unwrap_or(0) >= min {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "chain did not reach height {min}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn dev_chain_transfers_with_the_cli_and_resumes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("node");
    let keys = dir.path().join("client");
    let grpc = free_port();
    let mut node = dev(&home, grpc);
    let status = wait_for_height(grpc, &keys, 1);
    assert_eq!(status["chain_id"], "vichain-dev");
    assert_eq!(status["mode"], "dev");

    let alice = json(&cli(grpc, &keys, &["keys", "add", "alice", "--json"]));
    let alice = alice["address"].as_str().unwrap().to_owned();
    // No --from: the built-in dev key signs.
    let sent = json(&cli(
        grpc,
        &keys,
        &["tx", "transfer", "--to", &alice, "--amount", "5", "--json"],
    ));
    assert_eq!(sent["code"], 0);
    assert_eq!(sent["included"], true);
    let account = json(&cli(grpc, &keys, &["query", "account", &alice, "--json"]));
    assert_eq!(account["balance"], 5);
    assert_eq!(account["proof_verified"], true);

    // Bad input gets a clear error and a failure exit code.
    let bad = cli(
        grpc,
        &keys,
        &["tx", "transfer", "--to", "vichain1nope", "--amount", "5"],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--to"));
    let broke = cli(
        grpc,
        &keys,
        &[
            "tx", "transfer", "--from", "alice", "--to", &alice, "--amount", "500", "--json",
        ],
    );
    assert!(!broke.status.success());
    let broke: Value = serde_json::from_slice(&broke.stdout).unwrap();
    assert_eq!(broke["code"], 9, "insufficient funds: {broke}");

    let services = reflected_services(grpc);
    assert!(
        services.iter().any(|s| s == "vichain.v1.NodeService"),
        "{services:?}"
    );

    let before = wait_for_height(grpc, &keys, 1)["height"].as_u64().unwrap();
    assert!(node.terminate().success(), "graceful shutdown exits 0");

    // Same home: the chain resumes where it stopped, state intact.
    let mut node = dev(&home, grpc);
    let after = wait_for_height(grpc, &keys, before + 1);
    assert_eq!(after["chain_id"], "vichain-dev");
    let account = json(&cli(grpc, &keys, &["query", "account", &alice, "--json"]));
    assert_eq!(account["balance"], 5);

    // Killed without warning, mid-stream of blocks: the store holds whole blocks
    // only, and the next start resumes from the last committed one.
    let before = wait_for_height(grpc, &keys, 1)["height"].as_u64().unwrap();
    node.0.kill().unwrap();
    node.0.wait().unwrap();
    let _node = dev(&home, grpc);
    wait_for_height(grpc, &keys, before + 1);
    let account = json(&cli(grpc, &keys, &["query", "account", &alice, "--json"]));
    assert_eq!(account["balance"], 5);
}

/// Lists services through gRPC server reflection, as grpcurl does.
fn reflected_services(port: u16) -> Vec<String> {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = ServerReflectionClient::new(channel);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = client
            .server_reflection_info(tokio_stream::iter(vec![req]))
            .await
            .unwrap()
            .into_inner();
        let resp = stream.message().await.unwrap().unwrap();
        match resp.message_response {
            Some(MessageResponse::ListServicesResponse(l)) => {
                l.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("unexpected reflection answer {other:?}"),
        }
    })
}

#[test]
fn start_serves_cometbft_over_abci_and_clients_over_grpc() {
    use tendermint_proto::v0_38::abci;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("val");
    let init = Command::new(VICHAIND)
        .args(["init", "--chain-id", "vichain-it", "--home"])
        .arg(&home)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let again = Command::new(VICHAIND)
        .args(["init", "--home"])
        .arg(&home)
        .output()
        .unwrap();
    assert!(!again.status.success(), "init refuses an initialized home");

    // Point the node at free ports.
    let (abci_port, grpc) = (free_port(), free_port());
    let config = std::fs::read_to_string(home.join("config.toml")).unwrap();
    let config = config
        .replace(
            "tcp://127.0.0.1:26658",
            &format!("tcp://127.0.0.1:{abci_port}"),
        )
        .replace("127.0.0.1:9090", &format!("127.0.0.1:{grpc}"))
        .replace("http://127.0.0.1:26657", "http://127.0.0.1:9");
    std::fs::write(home.join("config.toml"), config).unwrap();
    let metrics_port = free_port();
    let mut node = Process(
        Command::new(VICHAIND)
            .args(["start", "--home"])
            .arg(&home)
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // CometBFT's part: handshake, genesis from the generated genesis.json, a block.
    let genesis: Value = serde_json::from_str(
        &std::fs::read_to_string(home.join("cometbft/config/genesis.json")).unwrap(),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut client = loop {
        match tendermint_abci::ClientBuilder::default().connect(format!("127.0.0.1:{abci_port}")) {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("ABCI server did not come up: {e}"),
        }
    };
    assert_eq!(
        client
            .info(abci::RequestInfo::default())
            .unwrap()
            .last_block_height,
        0
    );
    client
        .init_chain(abci::RequestInitChain {
            chain_id: "vichain-it".into(),
            app_state_bytes: serde_json::to_vec(&genesis["app_state"]).unwrap().into(),
            initial_height: 1,
            ..Default::default()
        })
        .unwrap();
    let fin = client
        .finalize_block(abci::RequestFinalizeBlock {
            height: 1,
            ..Default::default()
        })
        .unwrap();
    client.commit().unwrap();

    let keys = dir.path().join("client");
    let status = json(&cli(grpc, &keys, &["status", "--json"]));
    assert_eq!(status["height"], 1);
    assert_eq!(status["mode"], "cometbft");
    assert_eq!(status["app_hash"], hex::encode(&fin.app_hash));
    // The dashboard's API and /metrics serve `start` as they serve `dev`.
    let http = dashboard::Http::new();
    let api = http.get_json(&format!("http://127.0.0.1:{metrics_port}/api/status"));
    assert_eq!(api.1["height"], 1);
    assert_eq!(api.1["mode"], "cometbft");
    assert_eq!(api.1["app_hash"], hex::encode(&fin.app_hash));
    let text = http
        .get(&format!("http://127.0.0.1:{metrics_port}/metrics"))
        .1;
    assert!(text.contains("vichain_chain_blocks_total 1\n"), "{text}");
    assert!(
        text.contains(&format!(
            "vichain_chain_app_hash_info{{app_hash=\"{}\"}} 1",
            hex::encode(&fin.app_hash)
        )),
        "{text}"
    );

    // With CometBFT's RPC unreachable, a broadcast fails with a message saying so.
    let t = Command::new(&*VICHAIN)
        .args([
            "tx",
            "transfer",
            "--from",
            "operator",
            "--to",
            "vichain1y9zkcwapp5n33pv3z0j5dsul6eh42flhgqg5j7",
            "--amount",
            "1",
            "--home",
        ])
        .arg(&home)
        .env("VICHAIN_NODE", format!("http://127.0.0.1:{grpc}"))
        .output()
        .unwrap();
    assert!(!t.status.success());
    assert!(
        String::from_utf8_lossy(&t.stderr).contains("CometBFT RPC"),
        "{}",
        String::from_utf8_lossy(&t.stderr)
    );
    assert!(node.terminate().success());
}

fn vichaind(args: &[&str]) -> Output {
    Command::new(VICHAIND)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// `vichaind zk setup|prove|verify` and `model commit` on the digits model, then the
/// proof on a dev chain: the model registered from a spec file, a worker, a job,
/// `vichain tx submit-proof`, and the verified output on the job.
#[test]
fn zk_keys_and_proofs_from_the_command_line_are_verified_on_chain() {
    let dir = tempfile::tempdir().unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../inference/data/digits-mlp.vqmlp");
    let model = model.to_str().unwrap();
    let keys_dir = dir.path().join("keys");

    let commit = json(&vichaind(&["model", "commit", "--model", model, "--json"]));
    assert_eq!(commit["input_dim"], 64);
    assert_eq!(commit["sha256"].as_str().unwrap().len(), 64);

    let setup = json(&vichaind(&[
        "zk",
        "setup",
        "--model",
        model,
        "--out",
        keys_dir.to_str().unwrap(),
        "--mode",
        "public",
        "--json",
    ]));
    assert_eq!(setup["model_commitment"], commit["commitment"]);
    let vk_hash = setup["verifying_key_sha256"].as_str().unwrap().to_owned();
    let pk = keys_dir.join("proving.key");
    let vk = keys_dir.join("verifying.key");

    // The job's input: 64 bytes that are also the int8 model input.
    let text: String = (0..64).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let input_file = dir.path().join("input.bin");
    std::fs::write(&input_file, text.as_bytes()).unwrap();
    let bundle = dir.path().join("proof.json");
    let input_arg = format!("@{}", input_file.display());
    let proved = json(&vichaind(&[
        "zk",
        "prove",
        "--model",
        model,
        "--pk",
        pk.to_str().unwrap(),
        "--input",
        &input_arg,
        "--job-id",
        "1",
        "--out",
        bundle.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(proved["job_id"], 1);
    assert_eq!(proved["verifying_key_sha256"], vk_hash.as_str());

    let ok = json(&vichaind(&[
        "zk",
        "verify",
        "--vk",
        vk.to_str().unwrap(),
        "--vk-hash",
        &vk_hash,
        "--proof",
        bundle.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(ok["valid"], true);
    // A key with another hash is refused; a proof for another job does not verify.
    let wrong = vichaind(&[
        "zk",
        "verify",
        "--vk",
        vk.to_str().unwrap(),
        "--vk-hash",
        &"00".repeat(32),
        "--proof",
        bundle.to_str().unwrap(),
    ]);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("hash mismatch"));
    let mut other: Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    other["job_id"] = 2.into();
    let other_file = dir.path().join("other.json");
    std::fs::write(&other_file, other.to_string()).unwrap();
    let replay = vichaind(&[
        "zk",
        "verify",
        "--vk",
        vk.to_str().unwrap(),
        "--proof",
        other_file.to_str().unwrap(),
    ]);
    assert!(
        !replay.status.success(),
        "a proof for job 1 verified for job 2"
    );

    // On chain.
    let home = dir.path().join("node");
    let grpc = free_port();
    let metrics_port = free_port();
    let _node = dashboard::dev_with_metrics(&home, grpc, metrics_port, 0);
    let client = home.clone();
    wait_for_height(grpc, &client, 1);
    let spec = dir.path().join("digits.json");
    std::fs::write(
        &spec,
        serde_json::json!({
            "model_id": "digits",
            "family": "mlp",
            "total_layers": 2,
            "shards": [{"start_layer": 0, "end_layer": 2, "sha256": commit["sha256"]}],
            "policy": {"k": 1, "quorum": 1, "require_proof": true},
            "verifying_key_file": "keys/verifying.key",
            "verifying_key_sha256": vk_hash,
            "commitment": commit["commitment"],
            "price": 1,
        })
        .to_string(),
    )
    .unwrap();
    let tx = |args: &[&str]| {
        let v = json(&cli(grpc, &client, args));
        assert_eq!(v["code"], 0, "{v}");
        assert_eq!(v["included"], true, "{v}");
    };
    tx(&[
        "tx",
        "register-model",
        "--spec",
        spec.to_str().unwrap(),
        "--json",
    ]);
    tx(&[
        "tx",
        "register-worker",
        "--peer-id",
        "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN",
        "--stake",
        "5000",
        "--serves",
        "digits:0",
        "--json",
    ]);
    tx(&[
        "tx",
        "submit-job",
        "--model",
        "digits",
        "--text",
        &text,
        "--max-fee",
        "10",
        "--json",
    ]);
    tx(&[
        "tx",
        "submit-proof",
        "--proof",
        bundle.to_str().unwrap(),
        "--json",
    ]);
    let job = json(&cli(grpc, &client, &["query", "job", "1", "--json"]));
    assert_eq!(job["proof_verified"], true, "{job}");
    assert_eq!(
        job["output"]["value"]["argmax"], proved["output"]["argmax"],
        "{job}"
    );

    // The same proof again is refused with a code, and the CLI says why.
    let again = cli(
        grpc,
        &client,
        &[
            "tx",
            "submit-proof",
            "--proof",
            bundle.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(!again.status.success());
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["code"], 15, "{again}");

    // The operator's view: the verification on the job, and in the metrics.
    let http = dashboard::Http::new();
    let base = format!("http://127.0.0.1:{metrics_port}");
    let (_, api) = http.get_json(&format!("{base}/api/jobs/1"));
    assert_eq!(api["verification"]["proof_verified"], true, "{api}");
    assert_eq!(api["verification"]["output"], job["output"], "{api}");
    assert_eq!(api["verification"]["prover"], dev_address(&client, grpc));
    let (_, text) = http.get(&format!("{base}/metrics"));
    let verified = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("vichain_verification_proofs_total{mode=\"single\",result=\"ok\"} ")
        })
        .unwrap_or_else(|| panic!("no verified proof counted:\n{text}"));
    assert!(verified.parse::<f64>().unwrap() >= 1.0);
    assert!(text.contains("vichain_verification_proof_duration_seconds_count{mode=\"single\"}"));
    assert!(
        text.contains("vichain_chain_checktx_rejections_total{reason=\"already_exists\"}"),
        "{text}"
    );
}

/// The address of the dev key, which signs when no --from is given.
fn dev_address(keys: &Path, grpc: u16) -> String {
    let dev = json(&cli(grpc, keys, &["keys", "show", "dev", "--json"]));
    dev["address"].as_str().unwrap().to_owned()
}

/// `vichaind tee verify` on genuine Intel SGX and AMD SEV-SNP evidence (the tee
/// crate's fixtures) at a time their collateral is valid, on a later time when it
/// is not, and on dev-attester evidence from `vichaind tee simulate`.
#[test]
fn tee_verify_reports_kind_measurement_and_tcb_or_why_it_fails() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tee/tests/data");
    let p = |f: &str| data.join(f).to_str().unwrap().to_owned();
    let sgx = json(&vichaind(&[
        "tee",
        "verify",
        "--evidence",
        &p("sgx_quote"),
        "--collateral",
        &p("sgx_quote_collateral.json"),
        "--at",
        "1750809600",
        "--json",
    ]));
    assert_eq!(sgx["kind"], "sgx");
    assert_eq!(
        sgx["measurement"],
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    );
    assert_eq!(sgx["tcb_status"], "ConfigurationAndSWHardeningNeeded");
    let expired = vichaind(&[
        "tee",
        "verify",
        "--evidence",
        &p("sgx_quote"),
        "--collateral",
        &p("sgx_quote_collateral.json"),
        "--at",
        "2027-01-01T00:00:00Z",
    ]);
    assert!(!expired.status.success());
    assert!(String::from_utf8_lossy(&expired.stderr).contains("does not verify"));

    let snp = vichaind(&[
        "tee",
        "verify",
        "--evidence",
        &p("report_milan.hex"),
        "--vcek",
        &p("vcek_milan.der"),
        "--cert-chain",
        &p("cert_chain_milan"),
        "--at",
        "1735689600",
    ]);
    assert!(
        snp.status.success(),
        "{}",
        String::from_utf8_lossy(&snp.stderr)
    );
    assert!(String::from_utf8_lossy(&snp.stdout).contains("sev-snp"));

    let dir = tempfile::tempdir().unwrap();
    let ev = dir.path().join("sim.vtee");
    let made = vichaind(&[
        "tee",
        "simulate",
        "--secret",
        &"09".repeat(32),
        "--measurement",
        &"bb".repeat(48),
        "--operator-key",
        &"01".repeat(32),
        "--chain-id",
        "vichain-dev",
        "--nonce",
        &"02".repeat(32),
        "--encryption-key",
        &"09".repeat(32),
        "--out",
        ev.to_str().unwrap(),
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let sim = json(&vichaind(&[
        "tee",
        "verify",
        "--evidence",
        ev.to_str().unwrap(),
        "--allow-simulated",
        "--json",
    ]));
    assert_eq!(sim["kind"], "simulated");
    assert_eq!(sim["simulated"], true);
    let refused = vichaind(&["tee", "verify", "--evidence", ev.to_str().unwrap()]);
    assert!(!refused.status.success());
}

/// `vichaind tee keygen | pubkey | seal | open`: an input sealed to a worker's key
/// for a job opens with that key to the same bytes, and fails with the reason for
/// another key, job, worker or chain, or a flipped byte.
#[test]
fn tee_seal_and_open_round_trip_and_refuse_every_other_context() {
    let dir = tempfile::tempdir().unwrap();
    let path = |f: &str| dir.path().join(f).to_str().unwrap().to_owned();
    let keygen = |f: &str| {
        let out = vichaind(&["tee", "keygen", "--out", &path(f), "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json(&out)["public_key"].as_str().unwrap().to_owned()
    };
    let pk = keygen("worker.key");
    let other = keygen("other.key");
    assert_eq!(pk.len(), 64);
    assert_ne!(pk, other);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path("worker.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let shown = vichaind(&["tee", "pubkey", "--key", &path("worker.key")]);
    assert_eq!(String::from_utf8_lossy(&shown.stdout).trim(), pk);
    // A second keygen to the same file is refused and leaves the key alone.
    let again = vichaind(&["tee", "keygen", "--out", &path("worker.key")]);
    assert!(!again.status.success());
    let shown = vichaind(&["tee", "pubkey", "--key", &path("worker.key")]);
    assert_eq!(String::from_utf8_lossy(&shown.stdout).trim(), pk);

    let worker = "11".repeat(20);
    let input: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    std::fs::write(path("input.bin"), &input).unwrap();
    let sealed = vichaind(&[
        "tee",
        "seal",
        "--to",
        &pk,
        "--chain-id",
        "vichain-dev",
        "--job-id",
        "7",
        "--worker",
        &worker,
        "--in",
        &path("input.bin"),
        "--out",
        &path("input.sealed"),
    ]);
    assert!(
        sealed.status.success(),
        "{}",
        String::from_utf8_lossy(&sealed.stderr)
    );
    let ciphertext = std::fs::read(path("input.sealed")).unwrap();
    assert_eq!(
        ciphertext.len(),
        input.len() + vichain_tee::SEALED_INPUT_OVERHEAD
    );
    assert!(
        !ciphertext
            .windows(64)
            .any(|w| input.windows(64).any(|i| i == w))
    );

    let open = |key: &str, chain: &str, job: &str, worker: &str, sealed: &str| {
        vichaind(&[
            "tee",
            "open",
            "--key",
            &path(key),
            "--chain-id",
            chain,
            "--job-id",
            job,
            "--worker",
            worker,
            "--in",
            &path(sealed),
            "--out",
            &path("opened.bin"),
        ])
    };
    let ok = open("worker.key", "vichain-dev", "7", &worker, "input.sealed");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(std::fs::read(path("opened.bin")).unwrap(), input);

    let other_worker = "22".repeat(20);
    let mut tampered = ciphertext.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    std::fs::write(path("tampered.sealed"), &tampered).unwrap();
    for (case, out, reason) in [
        (
            "another key",
            open("other.key", "vichain-dev", "7", &worker, "input.sealed"),
            "not this key",
        ),
        (
            "another job",
            open("worker.key", "vichain-dev", "8", &worker, "input.sealed"),
            "another chain, job or worker",
        ),
        (
            "another worker",
            open(
                "worker.key",
                "vichain-dev",
                "7",
                &other_worker,
                "input.sealed",
            ),
            "another chain, job or worker",
        ),
        (
            "another chain",
            open("worker.key", "vichain-main", "7", &worker, "input.sealed"),
            "another chain, job or worker",
        ),
        (
            "a flipped byte",
            open("worker.key", "vichain-dev", "7", &worker, "tampered.sealed"),
            "was altered",
        ),
    ] {
        assert!(!out.status.success(), "{case} opened");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(reason), "{case}: {err}");
    }

    let bad_key = vichaind(&[
        "tee",
        "seal",
        "--to",
        &"00".repeat(32),
        "--chain-id",
        "vichain-dev",
        "--job-id",
        "7",
        "--worker",
        &worker,
        "--in",
        &path("input.bin"),
        "--out",
        &path("x.sealed"),
    ]);
    assert!(!bad_key.status.success());
    assert!(String::from_utf8_lossy(&bad_key.stderr).contains("small-order"));
}

#[test]
fn model_split_cuts_the_digits_mlp_into_shards_with_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let model = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../inference/data/digits-mlp.vqmlp"
    );
    let out = dir.path().join("shards");
    let run = |layers: &str, out: &Path| {
        Command::new(VICHAIND)
            .args([
                "model", "split", "--model", model, "--id", "digits", "--json", "--layers", layers,
                "--out",
            ])
            .arg(out)
            .output()
            .unwrap()
    };
    let manifest = json(&run("0..1,1..2", &out));
    assert_eq!(manifest["model_id"], "digits");
    assert_eq!(manifest["shards"].as_array().unwrap().len(), 2);
    assert!(out.join("manifest.json").exists());
    // Ranges that do not cover the model are refused with a message.
    let bad = run("0..1", &dir.path().join("bad"));
    assert!(!bad.status.success());
    assert!(!String::from_utf8_lossy(&bad.stderr).is_empty());
    let bad = run("zero..1", &dir.path().join("bad2"));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bad start"));
}
