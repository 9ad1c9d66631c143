//! vichain under real CometBFT v0.38: validator processes (`vichaind start` +
//! `cometbft start`) on loopback, as `scripts/localnet.sh` runs them. The `cometbft`
//! binary comes from `scripts/install-cometbft.sh` (which `.ci/run` runs); these
//! tests fail, never skip, without it.
//!
//! Each test is a scenario an operator lives through: the network agreeing on every
//! app hash, verified jobs through it, processes killed and restarted, the validator
//! set changed by the authority, and a new node joining by state sync.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use ed25519_dalek::SigningKey;
use vichain_consensus::{Address, QueryResult, query};
use vichain_proto::v1::{self as pb, query_request::Target, tx_body::Action};
use vichain_tests::{free_port_range, workspace_binary};
use vichain_worker::localnet::{Binaries, Localnet, LocalnetOptions, wait_until};

const BLOCK_TIME: Duration = Duration::from_millis(500);
const LONG: Duration = Duration::from_secs(180);

/// A localnet in a temporary directory (kept on failure for its logs).
struct Net {
    net: Localnet,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl std::ops::Deref for Net {
    type Target = Localnet;
    fn deref(&self) -> &Localnet {
        &self.net
    }
}

impl std::ops::DerefMut for Net {
    fn deref_mut(&mut self) -> &mut Localnet {
        &mut self.net
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(t) = self._tmp.take() {
                let kept = t.keep();
                eprintln!("localnet kept for its logs in {}", kept.display());
            }
            for n in &self.net.nodes {
                for log in ["vichaind.log", "cometbft.log"] {
                    tail(&n.home.root.join(log), 15);
                }
            }
        }
    }
}

fn tail(path: &Path, n: usize) {
    if let Ok(text) = std::fs::read_to_string(path) {
        let lines: Vec<&str> = text.lines().collect();
        eprintln!("--- {} (last {n} lines)", path.display());
        for l in &lines[lines.len().saturating_sub(n)..] {
            eprintln!("{l}");
        }
    }
}

fn localnet(validators: usize, snapshot_interval: u64) -> Net {
    let cometbft = Binaries::find_cometbft()
        .expect("cometbft is required: scripts/install-cometbft.sh installs it");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let net = Localnet::create(LocalnetOptions {
        dir: dir.clone(),
        validators,
        chain_id: "vichain-localnet-test".into(),
        base_port: Some(free_port_range(200)),
        block_time: BLOCK_TIME,
        snapshot_interval,
        log_filter: "info".into(),
        bins: Binaries {
            vichaind: workspace_binary("vichaind"),
            cometbft,
        },
    })
    .unwrap();
    let mut net = Net {
        net,
        dir,
        _tmp: Some(tmp),
    };
    net.start_all().unwrap();
    net
}

/// App hashes in the headers of blocks `from..=to` as node `i`'s CometBFT serves them
/// (header `h + 1` carries the state after block `h`).
fn header_app_hashes(net: &Localnet, i: usize, from: u64, to: u64) -> Vec<String> {
    let rpc = net.nodes[i].rpc().unwrap();
    net.runtime().block_on(async {
        let mut out = Vec::new();
        for h in from..=to {
            out.push(rpc.header_app_hash(h).await.unwrap());
        }
        out
    })
}

/// vichain's app hash at `height` on node `i` (the root its proofs are against).
fn vichain_app_hash(net: &Localnet, i: usize, height: u64) -> String {
    let r = net.query(i, Target::Params(true), height).unwrap();
    assert_eq!(r.height, height);
    hex::encode(r.app_hash)
}

/// Checks a proof-carrying query response against an app hash taken from a
/// CometBFT header (what a light client trusts).
fn verify_against(r: &pb::QueryResponse, header_app_hash: &str) {
    let root: [u8; 32] = hex::decode(header_app_hash).unwrap().try_into().unwrap();
    let result = QueryResult {
        key: r.key.clone(),
        value: r.found.then(|| r.value.clone()),
        height: r.height,
        app_hash: r.app_hash.clone().try_into().unwrap(),
        proof: r.proof.clone(),
    };
    query::verify(&result, &root).expect("the proof verifies against the header's app hash");
}

fn transfer(net: &Localnet, via: usize, to: Address, amount: u64) {
    let authority = net.authority().unwrap();
    net.send(
        via,
        &authority,
        vec![Action::Transfer(pb::Transfer {
            to: to.as_bytes().to_vec(),
            amount,
        })],
    )
    .unwrap();
}

fn balance(net: &Localnet, i: usize, addr: Address) -> Option<u64> {
    use prost::Message;
    let r = net.query(i, Target::Account(addr.to_string()), 0).ok()?;
    r.found
        .then(|| pb::Account::decode(r.value.as_slice()).unwrap().balance)
}

/// All of `nodes` report the same app hash at every height `1..=to` (vichain's
/// roots), and CometBFT's headers agree with them.
fn assert_same_app_hashes(net: &Localnet, nodes: &[usize], from: u64, to: u64) {
    let reference = header_app_hashes(net, nodes[0], from + 1, to + 1);
    for &i in nodes {
        assert_eq!(
            header_app_hashes(net, i, from + 1, to + 1),
            reference,
            "node{i}'s CometBFT headers differ"
        );
        for (k, h) in (from..=to).enumerate() {
            assert_eq!(
                vichain_app_hash(net, i, h),
                reference[k],
                "node{i}'s ledger at height {h} differs from the header of {}",
                h + 1
            );
        }
    }
}

fn fresh_address(seed: u8) -> Address {
    Address::from_public_key(&SigningKey::from_bytes(&[seed; 32]).verifying_key())
}

#[test]
fn four_validators_agree_on_every_app_hash_and_prove_each_others_transactions() {
    let net = localnet(4, 0);
    for i in 0..4 {
        net.wait_height(i, 11, LONG).unwrap();
    }
    assert_same_app_hashes(&net, &[0, 1, 2, 3], 1, 10);

    // A transfer sent to validator 1 is visible on validator 4, with a proof that
    // verifies against validator 1's CometBFT header.
    let alice = fresh_address(7);
    transfer(&net, 0, alice, 1234);
    wait_until("the transfer on node3", LONG, || {
        Ok(balance(&net, 3, alice) == Some(1234))
    })
    .unwrap();
    let r = net.query(3, Target::Account(alice.to_string()), 0).unwrap();
    assert!(r.found);
    net.wait_height(0, r.height + 1, LONG).unwrap();
    let header = header_app_hashes(&net, 0, r.height + 1, r.height + 1).remove(0);
    verify_against(&r, &header);

    // The status of every validator names CometBFT as its block source.
    for i in 0..4 {
        let s = net.status(i).unwrap();
        assert_eq!(s.mode, "cometbft");
        assert_eq!(s.chain_id, "vichain-localnet-test");
    }

    // The dashboard's API shows CometBFT's validator set with signing records, and
    // the node's peers.
    wait_until("the dashboard's view of CometBFT", LONG, || {
        let v = http_json(net.nodes[1].ports.metrics, "/api/validators");
        Ok(v["validators"].as_array().is_some_and(|a| a.len() == 4)
            && v["peers"].as_array().is_some_and(|a| a.len() == 3)
            && v["validators"][0]["window"].as_u64().unwrap_or(0) > 0)
    })
    .unwrap();
    let v = http_json(net.nodes[1].ports.metrics, "/api/validators");
    assert_eq!(v["mode"], "cometbft");
    assert_eq!(v["status"]["catching_up"], false, "{v:#}");
    for val in v["validators"].as_array().unwrap() {
        assert_eq!(val["voting_power"], 10, "{v:#}");
        assert!(val["last_signed_height"].as_u64().is_some(), "{v:#}");
        // Every validator signs (a late precommit may miss a commit on a busy machine).
        assert!(
            val["missed_blocks"].as_u64().unwrap() < val["window"].as_u64().unwrap(),
            "{v:#}"
        );
    }
    assert_eq!(
        v["status"]["validator_address"],
        v["validators"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["address"] == v["status"]["validator_address"])
            .unwrap()["address"]
    );

    // A transaction CometBFT's CheckTx refuses comes back with vichain's code and log.
    let authority = net.authority().unwrap();
    let stale = vichain_consensus::sign_tx(
        &authority,
        "vichain-localnet-test",
        0, // already used
        1,
        Action::Transfer(pb::Transfer {
            to: alice.as_bytes().to_vec(),
            amount: 1,
        }),
    );
    let r = net
        .runtime()
        .block_on(async {
            let mut c =
                pb::node_service_client::NodeServiceClient::connect(net.nodes[2].grpc_url())
                    .await?;
            anyhow::Ok(
                c.broadcast_tx(pb::BroadcastTxRequest { tx: stale })
                    .await?
                    .into_inner(),
            )
        })
        .unwrap();
    assert_ne!(r.code, 0);
    assert_eq!(r.codespace, vichain_consensus::CODESPACE);
    assert!(r.log.contains("nonce"), "{}", r.log);
}

/// The `vichain` CLI against a validator, with node0's keyring (the authority).
fn cli(net: &Net, node: usize, args: &[&str]) -> serde_json::Value {
    let out = Command::new(workspace_binary("vichain"))
        .args(args)
        .arg("--json")
        .env("VICHAIN_NODE", net.nodes[node].grpc_url())
        .env("VICHAIN_HOME", net.dir.join("node0"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vichain {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "vichain {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn jobs_submitted_to_one_validator_are_finalized_by_workers_attached_to_others() {
    let mut net = localnet(4, 0);
    net.wait_height(0, 2, LONG).unwrap();
    // Three workers, following validators 2, 3 and 4; the client talks to
    // validator 1 only.
    let models = net.start_workers_on(&[1, 2, 3]).unwrap();
    assert!(models.contains(&"digits".to_string()), "{models:?}");
    assert!(
        models.contains(&"minilm".to_string()),
        "make test fetches MiniLM: {models:?}"
    );

    let status = cli(&net, 0, &["status"]);
    assert_eq!(status["mode"], "cometbft", "{status}");

    // The digits MLP: Groth16 proofs verified by the ledger of every validator.
    let job = cli(
        &net,
        0,
        &[
            "submit", "--from", "operator", "--model", "digits", "--digit", "3", "--wait",
        ],
    );
    assert_eq!(job["status"], "JOB_STATUS_FINALIZED", "{job:#}");
    assert_eq!(job["inclusion"]["proof_verified"], true, "{job:#}");
    let agreed: Vec<&serde_json::Value> = job["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["verdict"] == "VERDICT_AGREED")
        .collect();
    assert!(agreed.len() >= 2, "{job:#}");
    assert!(
        agreed.iter().all(|a| a["proof_verified"] == true),
        "{job:#}"
    );
    let expected = {
        let data = vichain_inference::DigitsDataset::bundled().unwrap();
        let (_, test) = data.split();
        let model = vichain_zk::QuantizedMlp::from_bytes(vichain_inference::DIGITS_MODEL).unwrap();
        let input = vichain_inference::quantize_input(&test.images[3]);
        model.forward(&input).unwrap().argmax as i64
    };
    assert_eq!(job["result"]["values"][0].as_i64().unwrap(), expected);
    let id = job["id"].as_u64().unwrap().to_string();

    // MiniLM, submitted to node0 and read back from node3 with its proof.
    let job = cli(
        &net,
        0,
        &[
            "submit",
            "--from",
            "operator",
            "--model",
            "minilm",
            "--text",
            "vichain on CometBFT",
            "--wait",
        ],
    );
    assert_eq!(job["status"], "JOB_STATUS_FINALIZED", "{job:#}");
    let again = cli(&net, 3, &["job", &id]);
    assert_eq!(again["status"], "JOB_STATUS_FINALIZED");
    assert_eq!(again["inclusion"]["proof_verified"], true);
}

#[test]
fn validators_survive_kill_9_catch_up_and_resume_after_a_full_restart() {
    let mut net = localnet(4, 0);
    net.wait_height(0, 3, LONG).unwrap();

    // 1. kill -9 node3's vichaind while its CometBFT runs: the others go on.
    net.nodes[3].kill_app();
    let h = net.height(0);
    net.wait_height(0, h + 5, LONG).unwrap();
    // A transaction lands while node3's application is down.
    let bob = fresh_address(9);
    transfer(&net, 1, bob, 77);
    // CometBFT has stopped with its application gone; restart both, as an operator
    // would: the ABCI handshake replays what the application missed.
    net.nodes[3].kill_comet();
    net.start_node(3).unwrap();
    let target = net.height(0) + 2;
    net.wait_height(3, target, LONG).unwrap();
    assert_eq!(balance(&net, 3, bob), Some(77));
    assert_same_app_hashes(&net, &[0, 3], 1, target - 1);

    // 2. kill -9 both processes of node2 for at least 20 blocks; it blocksyncs back.
    let stopped_at = net.height(2);
    net.nodes[2].kill_app();
    net.nodes[2].kill_comet();
    net.wait_height(0, stopped_at + 20, LONG).unwrap();
    net.start_node(2).unwrap();
    let target = net.height(0) + 2;
    net.wait_height(2, target, LONG).unwrap();
    assert_same_app_hashes(&net, &[0, 1, 2, 3], stopped_at, target - 1);

    // 3. Stop all four (SIGTERM) and start them from their homes: the chain goes on
    // from where it stopped.
    net.stop_all();
    let last = (0..4)
        .map(|i| {
            let store = vichain_consensus::Storage::open(&net.nodes[i].home.state_db()).unwrap();
            store.committed().unwrap().unwrap().height
        })
        .max()
        .unwrap();
    net.start_all().unwrap();
    for i in 0..4 {
        net.wait_height(i, last + 3, LONG).unwrap();
    }
    assert_same_app_hashes(&net, &[0, 1, 2, 3], last - 2, last + 2);
    assert_eq!(balance(&net, 2, bob), Some(77));
}

/// Addresses (upper hex) of the validators that signed block `height`'s commit,
/// as node `i`'s CometBFT reports it.
fn signers(net: &Localnet, i: usize, height: u64) -> Vec<String> {
    let rpc = net.nodes[i].rpc().unwrap();
    net.runtime().block_on(rpc.signers(height)).unwrap()
}

fn cometbft_validators(net: &Localnet, i: usize) -> Vec<(String, u64)> {
    let rpc = net.nodes[i].rpc().unwrap();
    net.runtime()
        .block_on(async {
            let height = rpc.status().await?.latest_block_height;
            rpc.validators(height).await
        })
        .unwrap()
        .into_iter()
        .map(|v| (v.pub_key, v.voting_power))
        .collect()
}

#[test]
fn validator_set_changes_from_the_authority_take_effect_in_cometbft() {
    let mut net = localnet(4, 0);
    net.wait_height(0, 2, LONG).unwrap();
    // A fifth node joins (blocksync from genesis), then the authority adds it.
    let five = net.add_node(false).unwrap();
    net.start_node(five).unwrap();
    let h = net.height(0);
    net.wait_height(five, h, LONG).unwrap();
    let key = hex::decode(&net.nodes[five].validator_key).unwrap();
    let authority = net.authority().unwrap();
    net.send(
        0,
        &authority,
        vec![Action::AddValidator(pb::AddValidator {
            pub_key: key.clone(),
            power: 10,
        })],
    )
    .unwrap();
    wait_until("the fifth validator in CometBFT's set", LONG, || {
        Ok(cometbft_validators(&net, 0)
            .iter()
            .any(|(k, p)| *k == net.nodes[five].validator_key && *p == 10))
    })
    .unwrap();
    let address = {
        use sha2::Digest;
        hex::encode_upper(&sha2::Sha256::digest(&key)[..20])
    };
    // It signs blocks.
    let from = net.height(0);
    wait_until("a block signed by the fifth validator", LONG, || {
        let top = net.height(0);
        Ok((from..top).any(|h| signers(&net, 0, h).contains(&address)))
    })
    .unwrap();

    // Its power changes.
    net.send(
        0,
        &authority,
        vec![Action::UpdatePower(pb::UpdatePower {
            pub_key: key.clone(),
            power: 5,
        })],
    )
    .unwrap();
    wait_until("the new power in CometBFT's set", LONG, || {
        Ok(cometbft_validators(&net, 1)
            .iter()
            .any(|(k, p)| *k == net.nodes[five].validator_key && *p == 5))
    })
    .unwrap();

    // Removed, it stops signing, and the chain never halts.
    net.send(
        0,
        &authority,
        vec![Action::RemoveValidator(pb::RemoveValidator {
            pub_key: key,
        })],
    )
    .unwrap();
    wait_until("the fifth validator out of the set", LONG, || {
        Ok(!cometbft_validators(&net, 0)
            .iter()
            .any(|(k, _)| *k == net.nodes[five].validator_key))
    })
    .unwrap();
    let removed_at = net.height(0);
    net.wait_height(0, removed_at + 5, LONG).unwrap();
    for h in removed_at + 2..removed_at + 5 {
        assert!(
            !signers(&net, 0, h).contains(&address),
            "block {h} is signed by the removed validator"
        );
    }
    // The fifth node still follows the chain as a full node.
    net.wait_height(five, removed_at + 4, LONG).unwrap();
    assert_same_app_hashes(&net, &[0, five], removed_at, removed_at + 3);
}

/// A 32-byte seed from a number.
fn seed32(i: u32) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(i.to_be_bytes()).into()
}

/// The height of the newest complete snapshot a node keeps (0: none).
fn newest_snapshot(home: &Path) -> u64 {
    std::fs::read_dir(home.join("data/snapshots"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("metadata").exists())
        .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
}

/// The snapshot chunk files a node keeps under `HOME/data/snapshots`.
fn chunk_files(home: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![home.join("data/snapshots")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            // Snapshots being written live in `.tmp-*` folders until renamed.
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if p.is_dir() && !hidden {
                dirs.push(p);
            } else if p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("chunk-"))
            {
                out.push(p);
            }
        }
    }
    out
}

/// The body of `GET path` on a node's HTTP server (plain HTTP/1.0).
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut text = String::new();
    if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
        let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        let _ = s.read_to_string(&mut text);
    }
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

fn http_json(port: u16, path: &str) -> serde_json::Value {
    serde_json::from_str(&http_get(port, path)).unwrap_or(serde_json::Value::Null)
}

/// The sum of a metric's series on a node's `/metrics`.
fn metric(port: u16, name: &str) -> f64 {
    let text = http_get(port, "/metrics");
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_new_node_joins_by_state_sync_and_a_corrupted_chunk_is_refetched_never_applied() {
    let mut net = localnet(4, 10);
    net.wait_height(0, 2, LONG).unwrap();
    // Some state worth restoring: accounts created over several blocks, through
    // different validators, and 800 more, for a snapshot of several 4 KiB chunks: the
    // new node then fetches many chunks from the corrupting peers below.
    for seed in 20..26u8 {
        transfer(
            &net,
            (seed % 4) as usize,
            fresh_address(seed),
            1000 + u64::from(seed),
        );
    }
    let many: Vec<Action> = (0..800u32)
        .map(|i| {
            Action::Transfer(pb::Transfer {
                to: Address::from_public_key(&SigningKey::from_bytes(&seed32(i)).verifying_key())
                    .as_bytes()
                    .to_vec(),
                amount: 1,
            })
        })
        .collect();
    net.send(1, &net.authority().unwrap(), many).unwrap();
    let state_height = net.height(0);
    wait_until("a snapshot of that state on every validator", LONG, || {
        Ok((0..4).all(|i| newest_snapshot(&net.nodes[i].home.root) >= state_height))
    })
    .unwrap();
    // With k chunks and 3 of 4 peers corrupting, no refusal at all has odds 4^-k.
    let newest = format!("{:020}", newest_snapshot(&net.nodes[0].home.root));
    let chunks = chunk_files(&net.nodes[0].home.root)
        .iter()
        .filter(|p| p.to_string_lossy().contains(&newest))
        .count();
    assert!(chunks >= 8, "only {chunks} chunks in the newest snapshot");
    // Three of the four validators serve corrupted chunks (a bad disk, or a lying
    // peer): the new node must refuse each, refetch it from another peer, and never
    // apply one.
    let mut corrupted = 0;
    for i in 1..4 {
        for f in chunk_files(&net.nodes[i].home.root) {
            let mut bytes = std::fs::read(&f).unwrap();
            for b in bytes.iter_mut().take(64) {
                *b ^= 0x5a;
            }
            std::fs::write(&f, bytes).unwrap();
            corrupted += 1;
        }
    }
    assert!(corrupted > 0);

    let new = net.add_node(true).unwrap();
    net.start_node(new).unwrap();
    let target = net.height(0) + 3;
    net.wait_height(new, target, LONG).unwrap();
    // It restored a snapshot (its block store starts after genesis) and its state
    // is the network's at every height since.
    let status = net
        .runtime()
        .block_on(net.nodes[new].rpc().unwrap().status())
        .unwrap();
    assert!(
        status.earliest_block_height > 1,
        "the node block-synced from genesis instead of restoring a snapshot: {status:?}"
    );
    let from = status.earliest_block_height;
    assert_same_app_hashes(&net, &[0, new], from, target - 1);
    for seed in 20..26u8 {
        assert_eq!(
            balance(&net, new, fresh_address(seed)),
            Some(1000 + u64::from(seed))
        );
    }
    let rejected = metric(
        net.nodes[new].ports.metrics,
        "vichain_statesync_chunks_rejected_total",
    );
    assert!(rejected >= 1.0, "no corrupted chunk was seen and refused");
}
