//! What users wait for on a network of real CometBFT validators, next to
//! `vichaind dev` on the same machine in the same run:
//!
//! - transfers: throughput and broadcast-to-commit latency (p50, p99) of signed
//!   transfers sent over gRPC `BroadcastTx` by 20 funded senders in parallel, each
//!   sending its nonces in order;
//! - jobs: submit-to-final time of the demo models (`vichain submit --wait`, the CLI
//!   a user runs), with workers attached to validators other than the client's;
//! - joining: time for a new node to state-sync and catch up, against blocksync
//!   from genesis, to the same height.
//!
//! `cargo test -p vichain-tests --bench localnet` runs it on the debug binaries that
//! `scripts/localnet.sh` and `scripts/demo.sh` run (`cargo bench` the same on release
//! ones, after a release build of the workspace). Needs `scripts/install-cometbft.sh`
//! and `scripts/fetch-models.sh`; several minutes. Prints a Markdown table.
//! `VICHAIN_BENCH_TRANSFERS` (default 400) sets the transfers per run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use ed25519_dalek::SigningKey;
use prost::Message;
use vichain_consensus::{Address, sign_tx};
use vichain_proto::v1::{
    self as pb, node_service_client::NodeServiceClient, query_request::Target, tx_body::Action,
};
use vichain_tests::{DevNode, free_port_range, workspace_binary};
use vichain_worker::localnet::{Binaries, Localnet, LocalnetOptions, wait_until};

const BLOCK_TIME: Duration = Duration::from_millis(500);
const SENDERS: usize = 20;
const LONG: Duration = Duration::from_secs(300);
/// Height at which new nodes join (state sync against blocksync from genesis).
const JOIN_HEIGHT: u64 = 200;

fn senders() -> Vec<SigningKey> {
    (0..SENDERS)
        .map(|i| SigningKey::from_bytes(&[i as u8 + 100; 32]))
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct TransferRun {
    tps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn nonce(c: &mut NodeServiceClient<tonic::transport::Channel>, a: Address) -> u64 {
    let r = c
        .query(pb::QueryRequest {
            target: Some(Target::Account(a.to_string())),
            height: 0,
        })
        .await
        .unwrap()
        .into_inner();
    if r.found {
        pb::Account::decode(r.value.as_slice()).unwrap().nonce
    } else {
        0
    }
}

/// Sends `total` transfers (senders' nonces in order) to `grpc` and measures each
/// one's broadcast-to-commit time by watching the senders' committed nonces.
fn run_transfers(
    rt: &tokio::runtime::Runtime,
    grpc: &str,
    chain_id: &str,
    total: usize,
) -> TransferRun {
    let keys = senders();
    rt.block_on(async {
        let mut c = NodeServiceClient::connect(grpc.to_owned()).await.unwrap();
        let addrs: Vec<Address> = keys
            .iter()
            .map(|k| Address::from_public_key(&k.verifying_key()))
            .collect();
        let mut start_nonce = Vec::new();
        for a in &addrs {
            start_nonce.push(nonce(&mut c, *a).await);
        }
        let t0 = Instant::now();
        let mut watcher = c.clone();
        // One task per sender, each sending its nonces in order; senders in parallel.
        let mut tasks = Vec::new();
        for (s, key) in keys.iter().enumerate() {
            let key = key.clone();
            let chain_id = chain_id.to_owned();
            let mut c = c.clone();
            let first = start_nonce[s];
            let count = share(total, keys.len(), s);
            tasks.push(tokio::spawn(async move {
                let mut times = Vec::with_capacity(count);
                for k in 0..count as u64 {
                    times.push(Instant::now());
                    transfer(&mut c, &key, &chain_id, first + k, &[7; 20], 1).await;
                }
                times
            }));
        }
        let mut committed_at: Vec<Vec<Instant>> = vec![Vec::new(); keys.len()];
        loop {
            let mut done = true;
            for (s, a) in addrs.iter().enumerate() {
                let n = nonce(&mut watcher, *a).await;
                let landed = (n - start_nonce[s]) as usize;
                while committed_at[s].len() < landed {
                    committed_at[s].push(Instant::now());
                }
                if landed < share(total, keys.len(), s) {
                    done = false;
                }
            }
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = t0.elapsed();
        let mut sent_at = Vec::new();
        for t in tasks {
            sent_at.push(t.await.unwrap());
        }
        let mut lat: Vec<f64> = sent_at
            .iter()
            .zip(&committed_at)
            .flat_map(|(s, c)| {
                s.iter()
                    .zip(c)
                    .map(|(a, b)| (b.duration_since(*a)).as_secs_f64() * 1e3)
            })
            .collect();
        lat.sort_by(f64::total_cmp);
        TransferRun {
            tps: total as f64 / elapsed.as_secs_f64(),
            p50_ms: percentile(&lat, 0.5),
            p99_ms: percentile(&lat, 0.99),
        }
    })
}

/// How many of `total` transfers sender `s` of `n` sends.
fn share(total: usize, n: usize, s: usize) -> usize {
    total / n + usize::from(s < total % n)
}

/// Signs a transfer with `nonce` and broadcasts it; CheckTx must accept it.
async fn transfer(
    c: &mut NodeServiceClient<tonic::transport::Channel>,
    key: &SigningKey,
    chain_id: &str,
    nonce: u64,
    to: &[u8],
    amount: u64,
) {
    let tx = sign_tx(
        key,
        chain_id,
        nonce,
        1,
        Action::Transfer(pb::Transfer {
            to: to.to_vec(),
            amount,
        }),
    );
    let r = c
        .broadcast_tx(pb::BroadcastTxRequest { tx })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.code, 0, "{}", r.log);
}

/// Funds the senders from `from` (signed with `key`) through `grpc` and waits.
fn fund(rt: &tokio::runtime::Runtime, grpc: &str, chain_id: &str, key: &SigningKey) {
    rt.block_on(async {
        let mut c = NodeServiceClient::connect(grpc.to_owned()).await.unwrap();
        let me = Address::from_public_key(&key.verifying_key());
        let first = nonce(&mut c, me).await;
        for (j, k) in senders().iter().enumerate() {
            let to = Address::from_public_key(&k.verifying_key());
            transfer(
                &mut c,
                key,
                chain_id,
                first + j as u64,
                to.as_bytes(),
                1_000_000,
            )
            .await;
        }
        while nonce(&mut c, me).await < first + SENDERS as u64 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

/// Submit-to-final seconds of `vichain submit ... --wait` (median of `n`).
fn job_seconds(grpc: &str, home: &Path, from: &str, args: &[&str], n: usize) -> f64 {
    let mut times = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let out = Command::new(workspace_binary("vichain"))
            .args(["submit", "--from", from])
            .args(args)
            .args(["--wait", "--json"])
            .env("VICHAIN_NODE", grpc)
            .env("VICHAIN_HOME", home)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["status"], "JOB_STATUS_FINALIZED", "{v}");
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and nextest's discovery
    }
    let total: usize = std::env::var("VICHAIN_BENCH_TRANSFERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let digit = ["--model", "digits", "--digit", "3"];
    let minilm = ["--model", "minilm", "--text", "vichain verifies inference"];

    // --- vichaind dev, same block time, three in-process workers.
    let dev_home = tmp.path().join("dev");
    let port = free_port_range(200);
    let grpc = format!("http://127.0.0.1:{port}");
    let _dev = DevNode::new(&dev_home, port)
        .workers(3)
        .block_time("500ms")
        .metrics(port + 1)
        .spawn(&workspace_binary("vichaind"));
    wait_until("the dev chain's models", LONG, || {
        let out = Command::new(workspace_binary("vichain"))
            .args(["workers", "--json"])
            .env("VICHAIN_NODE", &grpc)
            .output()?;
        Ok(out.status.success()
            && String::from_utf8_lossy(&out.stdout)
                .matches("\"peer_id\"")
                .count()
                >= 3)
    })
    .unwrap();
    let dev_key = vichain_consensus::dev_signing_key();
    fund(&rt, &grpc, "vichain-dev", &dev_key);
    let dev_transfers = run_transfers(&rt, &grpc, "vichain-dev", total);
    let client_home = tmp.path().join("client");
    let dev_digits = job_seconds(&grpc, &client_home, "dev", &digit, 3);
    let dev_minilm = job_seconds(&grpc, &client_home, "dev", &minilm, 3);
    drop(_dev);

    // --- the 4-validator localnet.
    let mut net = Localnet::create(LocalnetOptions {
        dir: tmp.path().join("localnet"),
        validators: 4,
        chain_id: "vichain-bench".into(),
        base_port: Some(free_port_range(200)),
        block_time: BLOCK_TIME,
        snapshot_interval: 20,
        log_filter: "warn".into(),
        bins: Binaries {
            vichaind: workspace_binary("vichaind"),
            cometbft: Binaries::find_cometbft().unwrap(),
        },
    })
    .unwrap();
    net.start_all().unwrap();
    net.wait_height(0, 2, LONG).unwrap();
    let grpc0 = net.nodes[0].grpc_url();
    fund(&rt, &grpc0, "vichain-bench", &net.authority().unwrap());
    let net_transfers = run_transfers(&rt, &grpc0, "vichain-bench", total);
    net.start_workers_on(&[1, 2, 3]).unwrap();
    let node0 = net.nodes[0].home.root.clone();
    let net_digits = job_seconds(&grpc0, &node0, "operator", &digit, 3);
    let net_minilm = job_seconds(&grpc0, &node0, "operator", &minilm, 3);

    // --- joining at the same height: state sync, then blocksync from genesis.
    net.wait_height(0, JOIN_HEIGHT, LONG).unwrap();
    let ss = net.add_node(true).unwrap();
    let t = Instant::now();
    net.start_node(ss).unwrap();
    let target = net.height(0);
    net.wait_height(ss, target, LONG).unwrap();
    let state_sync_s = t.elapsed().as_secs_f64();
    let bs = net.add_node(false).unwrap();
    let t = Instant::now();
    net.start_node(bs).unwrap();
    net.wait_height(bs, target, LONG).unwrap();
    let block_sync_s = t.elapsed().as_secs_f64();
    net.stop_all();

    println!("| workload | vichaind dev | 4-validator CometBFT localnet |");
    println!("| --- | --- | --- |");
    println!(
        "| {total} transfers over gRPC, 20 senders in parallel: throughput | {:.0} tx/s | {:.0} tx/s |",
        dev_transfers.tps, net_transfers.tps
    );
    println!(
        "| broadcast-to-commit latency p50 / p99 | {:.0} / {:.0} ms | {:.0} / {:.0} ms |",
        dev_transfers.p50_ms, dev_transfers.p99_ms, net_transfers.p50_ms, net_transfers.p99_ms
    );
    println!(
        "| digits job (Groth16, k=3), `vichain submit --wait`, median of 3 | {dev_digits:.2} s | {net_digits:.2} s |"
    );
    println!(
        "| MiniLM job (k=3), `vichain submit --wait`, median of 3 | {dev_minilm:.2} s | {net_minilm:.2} s |"
    );
    println!(
        "| new node to height {target}: state sync (snapshot every 20 blocks) | - | {state_sync_s:.1} s |"
    );
    println!("| new node to height {target}: blocksync from genesis | - | {block_sync_s:.1} s |");
}
