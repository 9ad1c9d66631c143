//! The binaries as users run them: `vichaind dev` with the `vichain` CLI against
//! it (transfer, verified queries, restart on the same home), and `vichaind start`
//! driven over its ABCI socket the way CometBFT drives it.

#![allow(clippy::unwrap_used)]

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

const VICHAIND: &str = env!("CARGO_BIN_EXE_vichaind");
const VICHAIN: &str = env!("CARGO_BIN_EXE_vichain");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A node process, stopped with SIGTERM when dropped.
struct Node(Child);

impl Node {
    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "node did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn dev(home: &Path, grpc: u16) -> Node {
    Node(
        Command::new(VICHAIND)
            .args(["dev", "--block-time", "200ms", "--grpc"])
            .arg(format!("127.0.0.1:{grpc}"))
            .arg("--home")
            .arg(home)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn cli(grpc: u16, keys: &Path, args: &[&str]) -> Output {
    Command::new(VICHAIN)
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
    let mut node = Node(
        Command::new(VICHAIND)
            .args(["start", "--home"])
            .arg(&home)
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

    // With CometBFT's RPC unreachable, a broadcast fails with a message saying so.
    let t = Command::new(VICHAIN)
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
