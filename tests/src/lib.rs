//! Test helpers for scenarios across crates: a harness that plays CometBFT's part
//! for several ledger instances (proposer rotation, identical blocks, crash and
//! restart from disk), and a seeded generator of valid and invalid transactions.

mod process;

use std::{path::PathBuf, sync::Arc};

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use tendermint_proto::{
    google::protobuf::Timestamp,
    v0_38::{abci, crypto as tmcrypto},
};
use vichain_config::{
    AppState, GenesisAccount, GenesisModel, GenesisShard, ParamsConfig, PolicyConfig,
};
use vichain_consensus::{Address, App, StateReadExt, Storage, sign_tx};
use vichain_proto::v1::{self as pb, tx_body::Action};

pub use crate::process::{DevNode, Process, free_port};

pub const CHAIN_ID: &str = "vichain-test";
pub const BALANCE: u64 = 1_000_000_000;

/// `n` distinct deterministic keys (seeded by their index), for benches with many senders.
pub fn funded_keys(n: usize) -> Vec<SigningKey> {
    (0..n)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            SigningKey::from_bytes(&seed)
        })
        .collect()
}

/// `n` signed transfers of 1 token: sender `j % keys.len()` sends its nonces 0, 1, ...
/// in order, so every transaction is valid in one block.
pub fn transfers(keys: &[SigningKey], n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|j| {
            Bytes::from(sign_tx(
                &keys[j % keys.len()],
                CHAIN_ID,
                (j / keys.len()) as u64,
                1,
                Action::Transfer(pb::Transfer {
                    to: vec![7; 20],
                    amount: 1,
                }),
            ))
        })
        .collect()
}

/// A deterministic key from a small index.
pub fn key(i: u8) -> SigningKey {
    SigningKey::from_bytes(&[i.wrapping_add(1); 32])
}

pub fn address(k: &SigningKey) -> Address {
    Address::from_public_key(&k.verifying_key())
}

/// Genesis with `accounts` keys funded, key 0 as the authority, one model
/// `m1` (2 shards) and the given validators.
pub fn init_chain_request(
    accounts: &[SigningKey],
    validators: &[SigningKey],
) -> abci::RequestInitChain {
    let app_state = AppState {
        authority: address(&accounts[0]).to_string(),
        accounts: accounts
            .iter()
            .map(|k| GenesisAccount {
                address: address(k).to_string(),
                balance: BALANCE,
            })
            .collect(),
        models: vec![GenesisModel {
            model_id: "m1".into(),
            name: "test model".into(),
            family: "mlp".into(),
            total_layers: 4,
            shards: vec![
                GenesisShard {
                    start_layer: 0,
                    end_layer: 2,
                    sha256: hex::encode([1u8; 32]),
                },
                GenesisShard {
                    start_layer: 2,
                    end_layer: 4,
                    sha256: hex::encode([2u8; 32]),
                },
            ],
            policy: PolicyConfig::default(),
            verifying_key: String::new(),
            commitment: String::new(),
            price: 10,
        }],
        params: ParamsConfig {
            max_tx_bytes: 64 * 1024,
            max_input_bytes: 4 * 1024,
            ..ParamsConfig::default()
        },
    };
    abci::RequestInitChain {
        time: Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        chain_id: CHAIN_ID.into(),
        consensus_params: None,
        validators: validators.iter().map(|k| validator_update(k, 10)).collect(),
        app_state_bytes: serde_json::to_vec(&app_state).unwrap_or_default().into(),
        initial_height: 1,
    }
}

pub fn validator_update(k: &SigningKey, power: i64) -> abci::ValidatorUpdate {
    abci::ValidatorUpdate {
        pub_key: Some(tmcrypto::PublicKey {
            sum: Some(tmcrypto::public_key::Sum::Ed25519(
                k.verifying_key().to_bytes().to_vec(),
            )),
        }),
        power,
    }
}

/// One ledger instance with its own directory.
#[derive(Debug)]
pub struct Instance {
    pub dir: PathBuf,
    pub app: App,
}

impl Instance {
    pub fn open(dir: PathBuf) -> anyhow::Result<Self> {
        let store = Arc::new(Storage::open(&dir.join("state.redb"))?);
        Ok(Self {
            dir,
            app: App::new(store),
        })
    }

    pub fn last_height(&self) -> u64 {
        self.app.last_committed().map(|(h, _)| h).unwrap_or(0)
    }

    pub fn app_hash(&self) -> [u8; 32] {
        self.app.last_committed().map(|(_, h)| h).unwrap_or([0; 32])
    }
}

/// A block as CometBFT decided it.
#[derive(Debug, Clone)]
pub struct Block {
    pub height: u64,
    pub time: Timestamp,
    pub txs: Vec<Bytes>,
    pub hash: Vec<u8>,
    pub app_hash: Vec<u8>,
}

impl Block {
    pub fn finalize_request(&self) -> abci::RequestFinalizeBlock {
        abci::RequestFinalizeBlock {
            txs: self.txs.clone(),
            hash: self.hash.clone().into(),
            height: self.height as i64,
            time: Some(self.time),
            ..Default::default()
        }
    }
}

/// Plays CometBFT for `n` instances: the same blocks go to every instance.
#[derive(Debug)]
pub struct Harness {
    _root: tempfile::TempDir,
    pub instances: Vec<Option<Instance>>,
    pub blocks: Vec<Block>,
    pub genesis_hash: Vec<u8>,
    time_s: i64,
}

impl Harness {
    pub fn new(n: usize, init: &abci::RequestInitChain) -> anyhow::Result<Self> {
        let root = tempfile::tempdir()?;
        let mut instances = Vec::new();
        let mut hashes = Vec::new();
        for i in 0..n {
            let mut inst = Instance::open(root.path().join(format!("node{i}")))?;
            let r = inst.app.init_chain(init.clone())?;
            hashes.push(r.app_hash.to_vec());
            instances.push(Some(inst));
        }
        anyhow::ensure!(
            hashes.windows(2).all(|w| w[0] == w[1]),
            "genesis hashes differ"
        );
        Ok(Self {
            _root: root,
            instances,
            blocks: Vec::new(),
            genesis_hash: hashes[0].clone(),
            time_s: 1_700_000_000,
        })
    }

    pub fn height(&self) -> u64 {
        self.blocks.len() as u64
    }

    pub fn live(&mut self) -> impl Iterator<Item = &mut Instance> {
        self.instances.iter_mut().flatten()
    }

    /// The instance that proposes `height` (round robin among live ones).
    fn proposer(&self, height: u64) -> usize {
        let live: Vec<usize> = (0..self.instances.len())
            .filter(|i| self.instances[*i].is_some())
            .collect();
        live[(height as usize) % live.len()]
    }

    /// Proposes a block from `candidates` (the proposer filters them), has every
    /// live instance accept, finalize and commit it, and checks that all compute
    /// the same app hash and the same result codes.
    pub fn step(&mut self, candidates: Vec<Bytes>) -> anyhow::Result<abci::ResponseFinalizeBlock> {
        let height = self.height() + 1;
        self.time_s += 1;
        let time = Timestamp {
            seconds: self.time_s,
            nanos: 0,
        };
        let proposer = self.proposer(height);
        let prepared = self.instances[proposer]
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("proposer is down"))?
            .app
            .prepare_proposal(&abci::RequestPrepareProposal {
                max_tx_bytes: 22 * 1024 * 1024,
                txs: candidates,
                height: height as i64,
                time: Some(time),
                ..Default::default()
            })?;
        let hash = height.to_be_bytes().repeat(4);
        for inst in self.live() {
            let r = inst.app.process_proposal(&abci::RequestProcessProposal {
                txs: prepared.txs.clone(),
                hash: hash.clone().into(),
                height: height as i64,
                time: Some(time),
                ..Default::default()
            })?;
            anyhow::ensure!(
                r.status == abci::response_process_proposal::ProposalStatus::Accept as i32,
                "an instance rejected an honest proposal at height {height}"
            );
        }
        let block = Block {
            height,
            time,
            txs: prepared.txs,
            hash,
            app_hash: Vec::new(),
        };
        self.finalize_and_commit(block)
    }

    /// Finalizes and commits `block` on every live instance, whatever it contains.
    pub fn finalize_and_commit(
        &mut self,
        mut block: Block,
    ) -> anyhow::Result<abci::ResponseFinalizeBlock> {
        let req = block.finalize_request();
        let mut first: Option<abci::ResponseFinalizeBlock> = None;
        for inst in self.instances.iter_mut().flatten() {
            let r = inst.app.finalize_block(&req)?;
            if let Some(f) = &first {
                anyhow::ensure!(
                    f.app_hash == r.app_hash,
                    "app hashes diverge at height {}",
                    block.height
                );
                let codes = |x: &abci::ResponseFinalizeBlock| {
                    x.tx_results.iter().map(|t| t.code).collect::<Vec<_>>()
                };
                anyhow::ensure!(
                    codes(f) == codes(&r),
                    "tx results diverge at height {}",
                    block.height
                );
            } else {
                first = Some(r);
            }
            inst.app.commit()?;
        }
        let r = first.ok_or_else(|| anyhow::anyhow!("no live instance"))?;
        block.app_hash = r.app_hash.to_vec();
        self.blocks.push(block);
        Ok(r)
    }

    /// Simulates a crash: the instance is dropped with whatever it had in memory.
    pub fn kill(&mut self, i: usize) {
        self.instances[i] = None;
    }

    /// Restarts instance `i` from its directory and replays the blocks it missed
    /// (CometBFT's handshake), checking each app hash against the others'.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<u64> {
        let dir = self._root.path().join(format!("node{i}"));
        let mut inst = Instance::open(dir)?;
        let info = inst.app.info(&abci::RequestInfo::default())?;
        let from = info.last_block_height as u64;
        if from > 0 {
            anyhow::ensure!(
                info.last_block_app_hash.to_vec() == self.blocks[from as usize - 1].app_hash,
                "restarted instance reports a wrong app hash for height {from}"
            );
        }
        for b in &self.blocks[from as usize..] {
            let r = inst.app.finalize_block(&b.finalize_request())?;
            anyhow::ensure!(
                r.app_hash.to_vec() == b.app_hash,
                "replay diverges at height {}",
                b.height
            );
            inst.app.commit()?;
        }
        self.instances[i] = Some(inst);
        Ok(from)
    }

    /// Every live instance's last committed app hash.
    pub fn app_hashes(&self) -> Vec<[u8; 32]> {
        self.instances
            .iter()
            .flatten()
            .map(|i| i.app_hash())
            .collect()
    }

    pub fn any(&self) -> &Instance {
        self.instances
            .iter()
            .flatten()
            .next()
            .expect("a live instance")
    }
}

/// A seeded source of valid and invalid transactions over a set of keys.
#[derive(Debug)]
pub struct TxGen {
    pub rng: ChaCha8Rng,
    pub keys: Vec<SigningKey>,
    workers_registered: Vec<bool>,
}

impl TxGen {
    pub fn new(seed: u64, keys: Vec<SigningKey>) -> Self {
        let n = keys.len();
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            keys,
            workers_registered: vec![false; n],
        }
    }

    /// A block's worth of candidate transactions against the committed `state`:
    /// mostly valid, with a share of every kind of invalid one.
    pub fn block(&mut self, state: &Storage, count: usize) -> Vec<Bytes> {
        let mut next_nonce: Vec<u64> = self
            .keys
            .iter()
            .map(|k| {
                state
                    .account(&address(k))
                    .ok()
                    .flatten()
                    .map_or(0, |a| a.nonce)
            })
            .collect();
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let i = self.rng.gen_range(0..self.keys.len());
            let nonce = next_nonce[i];
            let roll: u32 = self.rng.gen_range(0..100);
            let (tx, valid) = self.one(i, nonce, roll);
            if valid {
                next_nonce[i] += 1;
            }
            out.push(Bytes::from(tx));
        }
        out.shuffle(&mut self.rng);
        out
    }

    fn one(&mut self, i: usize, nonce: u64, roll: u32) -> (Vec<u8>, bool) {
        let key = self.keys[i].clone();
        let to = address(&self.keys[self.rng.gen_range(0..self.keys.len())]);
        let transfer = |amount: u64| {
            Action::Transfer(pb::Transfer {
                to: to.as_bytes().to_vec(),
                amount,
            })
        };
        match roll {
            0..=54 => (
                sign_tx(
                    &key,
                    CHAIN_ID,
                    nonce,
                    1,
                    transfer(self.rng.gen_range(1..1000)),
                ),
                true,
            ),
            55..=59 => {
                let job = Action::SubmitJob(pb::SubmitJob {
                    model_id: "m1".into(),
                    payload: Some(pb::submit_job::Payload::Input(vec![
                        7;
                        self.rng
                            .gen_range(1..64)
                    ])),
                    k: 0,
                    max_fee: 100,
                    privacy: 0,
                });
                (sign_tx(&key, CHAIN_ID, nonce, 1, job), true)
            }
            60..=62 if !self.workers_registered[i] => {
                self.workers_registered[i] = true;
                let w = Action::RegisterWorker(pb::RegisterWorker {
                    peer_id: "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN".into(),
                    stake: 5_000,
                    serves: vec![pb::ServedShard {
                        model_id: "m1".into(),
                        shard_index: (i % 2) as u32,
                    }],
                });
                // Valid only the first time; the generator may not know whether an
                // earlier registration made it in, so treat the nonce as used.
                (sign_tx(&key, CHAIN_ID, nonce, 1, w), true)
            }
            63..=65 => (sign_tx(&key, "other-chain", nonce, 1, transfer(1)), false),
            66..=68 => (sign_tx(&key, CHAIN_ID, nonce + 5, 1, transfer(1)), false),
            69..=71 if nonce > 0 => (sign_tx(&key, CHAIN_ID, nonce - 1, 1, transfer(1)), false),
            72..=74 => (
                sign_tx(&key, CHAIN_ID, nonce, 1, transfer(BALANCE * 10)),
                false,
            ),
            75..=77 => {
                let mut tx = sign_tx(&key, CHAIN_ID, nonce, 1, transfer(1));
                let last = tx.len() - 1;
                tx[last] ^= 0x01;
                (tx, false)
            }
            78..=80 => {
                let len = self.rng.gen_range(0..200);
                ((0..len).map(|_| self.rng.r#gen::<u8>()).collect(), false)
            }
            81..=83 => {
                let job = Action::SubmitJob(pb::SubmitJob {
                    model_id: "no-such-model".into(),
                    payload: Some(pb::submit_job::Payload::Input(vec![1])),
                    k: 0,
                    max_fee: 100,
                    privacy: 0,
                });
                (sign_tx(&key, CHAIN_ID, nonce, 1, job), false)
            }
            84..=85 => {
                let job = Action::SubmitJob(pb::SubmitJob {
                    model_id: "m1".into(),
                    payload: Some(pb::submit_job::Payload::Input(vec![0; 5000])),
                    k: 0,
                    max_fee: 100,
                    privacy: 0,
                });
                (sign_tx(&key, CHAIN_ID, nonce, 1, job), false)
            }
            86..=88 if i != 0 => {
                let v = Action::AddValidator(pb::AddValidator {
                    pub_key: vec![9; 32],
                    power: 1,
                });
                (sign_tx(&key, CHAIN_ID, nonce, 1, v), false)
            }
            89..=91 if i == 0 => {
                let power = self.rng.gen_range(1..100);
                let v = Action::UpdatePower(pb::UpdatePower {
                    pub_key: key.verifying_key().to_bytes().to_vec(),
                    power,
                });
                // Valid only while key 0 is a validator; the harness makes it one.
                (sign_tx(&key, CHAIN_ID, nonce, 1, v), true)
            }
            _ => (
                sign_tx(
                    &key,
                    CHAIN_ID,
                    nonce,
                    1,
                    transfer(self.rng.gen_range(1..1000)),
                ),
                true,
            ),
        }
    }
}

/// A binary of this workspace (`vichaind`, `vichain`), built next to the running
/// test or bench (target/PROFILE/deps/EXE -> target/PROFILE/NAME), or the debug one
/// when a bench runs without the release binaries built. `cargo test --workspace`
/// builds every binary first (each binary's package has integration tests); a binary
/// still missing (`cargo test -p` of another package) is built here. A test of one
/// package runs the other package's binary as last built: `cargo build --workspace`
/// first when both changed.
pub fn workspace_binary(name: &str) -> PathBuf {
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let exe = std::env::current_exe().expect("the running executable's path");
    let dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/PROFILE/deps");
    let here = dir.join(name);
    if here.exists() {
        return here;
    }
    if let Some(d) = dir
        .parent()
        .map(|t| t.join("debug").join(name))
        .filter(|d| d.exists())
    {
        return d;
    }
    let _one_build = BUILD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let target = dir.parent().expect("target/PROFILE");
    let mut build = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()));
    build
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet", "-p", package_of(name), "--bin", name])
        .arg("--target-dir")
        .arg(target);
    if dir.file_name().is_some_and(|p| p == "release") {
        build.arg("--release");
    }
    let ok = build.status().map(|s| s.success()).unwrap_or(false);
    assert!(
        ok && here.exists(),
        "{} is missing and `cargo build --bin {name}` did not make it",
        here.display()
    );
    here
}

/// The package of a workspace binary.
fn package_of(bin: &str) -> &'static str {
    match bin {
        "vichain" => "vichain-cli",
        _ => "vichain-node",
    }
}

/// A base port with `span` free loopback ports above it, in a random range so that
/// concurrent test processes rarely collide.
pub fn free_port_range(span: u16) -> u16 {
    let mut rng = rand::thread_rng();
    for _ in 0..200 {
        let base = rng.gen_range(200..600u16) * 100;
        if (0..span).all(|p| std::net::TcpListener::bind(("127.0.0.1", base + p)).is_ok()) {
            return base;
        }
    }
    panic!("no range of {span} free ports found");
}
