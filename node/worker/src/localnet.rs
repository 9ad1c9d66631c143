//! `vichaind localnet`: a network of real CometBFT v0.38 validators on one machine,
//! run the way an operator runs one: each validator is a home with `vichaind start`
//! next to `cometbft start` on its own loopback ports, all sharing one genesis, and
//! workers (`vichaind worker --chain ...`) attached to different validators take the
//! demo models' jobs (the digits MLP with Groth16 proofs, all-MiniLM-L6-v2).
//!
//! [`Localnet`] owns the processes: it creates the homes, starts and stops each
//! process (`kill -9` included, for fault tests), adds nodes that join later (as
//! validators, or as full nodes by state sync), registers the models and workers
//! through the authority's and workers' own signed transactions, and describes
//! everything in `DIR/localnet.json` for scripts. `scripts/localnet.sh` runs it until
//! Ctrl-C; the process-level tests in `tests/` drive it directly.

use std::{
    fs::File,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail, ensure};
use ed25519_dalek::SigningKey;
use prost::Message;
use serde::{Deserialize, Serialize};
use tendermint_rpc::Client as _;
use tracing::{info, warn};
use vichain_config::Genesis;
use vichain_consensus::{Address, sign_tx};
use vichain_proto::v1::{
    self as pb, node_service_client::NodeServiceClient, query_request::Target, tx_body::Action,
};

use vichain_validator::{
    comet::CometRpc,
    home::{self, Home, Ports, StateSyncToml},
    keys::Keyring,
};

/// Funds and stake of each localnet worker.
pub const WORKER_FUNDS: u64 = 1_000_000;
pub const WORKER_STAKE: u64 = 10_000;
/// Blocks a worker has to commit, then to reveal, on a localnet: generous, since a
/// localnet shares one machine's cores between every validator and worker.
pub const LOCALNET_WINDOW_BLOCKS: u64 = 30;
/// How long to wait for a process to come up or a transaction to land.
const WAIT: Duration = Duration::from_secs(120);

/// Where the programs are.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub vichaind: PathBuf,
    pub cometbft: PathBuf,
}

impl Binaries {
    /// `cometbft` as `scripts/install-cometbft.sh` installs it: `$VICHAIN_COMETBFT`,
    /// else `${VICHAIN_TOOLS:-/var/tmp/vichain-tools}/cometbft/bin/cometbft`, else
    /// `cometbft` on PATH.
    pub fn find_cometbft() -> Result<PathBuf> {
        if let Some(p) = std::env::var_os("VICHAIN_COMETBFT") {
            return Ok(PathBuf::from(p));
        }
        let tools = std::env::var_os("VICHAIN_TOOLS")
            .map_or_else(|| PathBuf::from("/var/tmp/vichain-tools"), PathBuf::from);
        let installed = tools.join("cometbft/bin/cometbft");
        if installed.exists() {
            return Ok(installed);
        }
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                if dir.join("cometbft").is_file() {
                    return Ok(dir.join("cometbft"));
                }
            }
        }
        bail!(
            "cometbft not found (not at {} nor on PATH): run scripts/install-cometbft.sh",
            installed.display()
        )
    }
}

/// What a localnet is made of.
#[derive(Debug, Clone)]
pub struct LocalnetOptions {
    pub dir: PathBuf,
    pub validators: usize,
    pub chain_id: String,
    /// First port of node 0 (10 per node); `None` for the standard ports
    /// (26656..., gRPC 9090...; see [`Ports::standard`]).
    pub base_port: Option<u16>,
    pub block_time: Duration,
    /// Snapshots for state sync every this many blocks (0: none).
    pub snapshot_interval: u64,
    /// Log filter of the child processes (`RUST_LOG`).
    pub log_filter: String,
    pub bins: Binaries,
}

impl LocalnetOptions {
    pub fn ports(&self, i: usize) -> Ports {
        match self.base_port {
            Some(b) => Ports::from_base(b, i),
            None => Ports::standard(i),
        }
    }
}

/// One node: a home, its ports, and its two processes when running.
#[derive(Debug)]
pub struct LocalNode {
    pub name: String,
    pub home: Home,
    pub ports: Ports,
    pub node_id: String,
    /// Hex ed25519 key of its CometBFT validator key.
    pub validator_key: String,
    app: Option<Child>,
    comet: Option<Child>,
}

/// One worker process.
#[derive(Debug)]
pub struct LocalWorker {
    pub name: String,
    pub home: PathBuf,
    pub operator: Address,
    pub peer_id: String,
    /// Index of the validator whose gRPC it follows.
    pub validator: usize,
    pub metrics: String,
    child: Option<Child>,
}

/// A running localnet. Dropping it kills every process it started.
#[derive(Debug)]
pub struct Localnet {
    pub opts: LocalnetOptions,
    pub nodes: Vec<LocalNode>,
    pub workers: Vec<LocalWorker>,
    pub genesis: Genesis,
    rt: tokio::runtime::Runtime,
}

/// `DIR/localnet.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalnetFile {
    pub chain_id: String,
    pub validators: Vec<NodeEntry>,
    pub workers: Vec<WorkerEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeEntry {
    pub name: String,
    pub home: PathBuf,
    pub node_id: String,
    pub cometbft_rpc: String,
    /// `id@127.0.0.1:port`.
    pub p2p: String,
    pub grpc: String,
    pub metrics: String,
    pub cometbft_metrics: String,
    pub abci: String,
    pub vichaind_pid: Option<u32>,
    pub cometbft_pid: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerEntry {
    pub name: String,
    pub home: PathBuf,
    pub operator: String,
    pub peer_id: String,
    /// The gRPC target it takes jobs from.
    pub grpc: String,
    pub metrics: String,
    pub pid: Option<u32>,
}

impl LocalNode {
    fn open(name: String, home: Home, ports: Ports) -> Result<Self> {
        let node_id = home::node_id(&home.load_node_key()?);
        let validator_key = hex::encode(home.load_validator_key()?.verifying_key().as_bytes());
        Ok(Self {
            name,
            home,
            ports,
            node_id,
            validator_key,
            app: None,
            comet: None,
        })
    }

    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.grpc)
    }

    pub fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.rpc)
    }

    pub fn p2p_address(&self) -> String {
        home::peer_address(&self.node_id, &self.ports)
    }

    pub fn rpc(&self) -> Result<CometRpc> {
        CometRpc::new(&self.rpc_url(), Duration::from_secs(5))
    }

    /// Whether `vichaind start` and `cometbft start` are running (started here and
    /// not yet exited).
    pub fn running(&mut self) -> (bool, bool) {
        let alive =
            |c: &mut Option<Child>| c.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        (alive(&mut self.app), alive(&mut self.comet))
    }

    /// Starts `vichaind start` and waits until its ABCI port accepts connections.
    pub fn start_app(&mut self, opts: &LocalnetOptions) -> Result<()> {
        ensure!(
            self.app.is_none(),
            "{}: vichaind is already running",
            self.name
        );
        let mut cmd = Command::new(&opts.bins.vichaind);
        cmd.arg("start")
            .arg("--home")
            .arg(&self.home.root)
            .env("RUST_LOG", &opts.log_filter);
        let child = spawn_logged(&mut cmd, &self.home.root.join("vichaind.log"))?;
        self.app = Some(child);
        wait_until(
            &format!("{}'s ABCI port {}", self.name, self.ports.abci),
            Duration::from_secs(60),
            || Ok(std::net::TcpStream::connect(("127.0.0.1", self.ports.abci)).is_ok()),
        )
    }

    /// Starts `cometbft start` on this node's CometBFT home.
    pub fn start_comet(&mut self, opts: &LocalnetOptions) -> Result<()> {
        ensure!(
            self.comet.is_none(),
            "{}: cometbft is already running",
            self.name
        );
        let mut cmd = Command::new(&opts.bins.cometbft);
        cmd.arg("start").arg("--home").arg(self.home.cometbft());
        let child = spawn_logged(&mut cmd, &self.home.root.join("cometbft.log"))?;
        self.comet = Some(child);
        Ok(())
    }

    pub fn start(&mut self, opts: &LocalnetOptions) -> Result<()> {
        self.start_app(opts)?;
        self.start_comet(opts)
    }

    /// `kill -9` of `vichaind start`.
    pub fn kill_app(&mut self) {
        kill_hard(&mut self.app);
    }

    /// `kill -9` of `cometbft start`.
    pub fn kill_comet(&mut self) {
        kill_hard(&mut self.comet);
    }

    /// SIGTERM to both (CometBFT first, so it stops calling the application), then
    /// waits for them to exit (SIGKILL after 15 s).
    pub fn stop(&mut self) {
        stop_gracefully(&mut self.comet, Duration::from_secs(15));
        stop_gracefully(&mut self.app, Duration::from_secs(15));
    }

    fn entry(&self) -> NodeEntry {
        NodeEntry {
            name: self.name.clone(),
            home: self.home.root.clone(),
            node_id: self.node_id.clone(),
            cometbft_rpc: self.rpc_url(),
            p2p: self.p2p_address(),
            grpc: self.grpc_url(),
            metrics: format!("http://127.0.0.1:{}/metrics", self.ports.metrics),
            cometbft_metrics: format!("http://127.0.0.1:{}/metrics", self.ports.cometbft_metrics),
            abci: format!("tcp://127.0.0.1:{}", self.ports.abci),
            vichaind_pid: self.app.as_ref().map(Child::id),
            cometbft_pid: self.comet.as_ref().map(Child::id),
        }
    }
}

impl LocalWorker {
    pub fn kill(&mut self) {
        kill_hard(&mut self.child);
    }

    pub fn stop(&mut self) {
        stop_gracefully(&mut self.child, Duration::from_secs(10));
    }
}

impl Drop for Localnet {
    fn drop(&mut self) {
        for w in &mut self.workers {
            w.kill();
        }
        for n in &mut self.nodes {
            n.kill_comet();
            n.kill_app();
        }
    }
}

impl Localnet {
    /// Creates the validator homes (or opens them, when `DIR/node0` exists: a
    /// localnet restarted from its homes) without starting anything.
    pub fn create(opts: LocalnetOptions) -> Result<Self> {
        let first = opts.dir.join("node0");
        if !first.exists() {
            home::init_localnet(
                &opts.dir,
                opts.validators,
                &opts.chain_id,
                |i| opts.ports(i),
                opts.block_time,
            )?;
            let mut genesis = Genesis::load(&first.join("genesis.json"))?;
            genesis.app_state.params.commit_window_blocks = LOCALNET_WINDOW_BLOCKS;
            genesis.app_state.params.reveal_window_blocks = LOCALNET_WINDOW_BLOCKS;
            for i in 0..opts.validators {
                let home = Home::new(opts.dir.join(format!("node{i}")));
                configure_node(&home, &opts)?;
                home.save_genesis(&genesis)?;
            }
        }
        let genesis = Genesis::load(&first.join("genesis.json"))?;
        let mut nodes = Vec::new();
        for i in 0.. {
            let root = opts.dir.join(format!("node{i}"));
            if !root.exists() {
                break;
            }
            nodes.push(LocalNode::open(
                format!("node{i}"),
                Home::new(root),
                opts.ports(i),
            )?);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        Ok(Self {
            opts,
            nodes,
            workers: Vec::new(),
            genesis,
            rt,
        })
    }

    /// Starts every node that is not running.
    pub fn start_all(&mut self) -> Result<()> {
        for n in &mut self.nodes {
            if !n.running().0 {
                n.app = None;
                n.start_app(&self.opts)?;
            }
        }
        for n in &mut self.nodes {
            if !n.running().1 {
                n.comet = None;
                n.start_comet(&self.opts)?;
            }
        }
        Ok(())
    }

    /// Starts node `i`'s two processes (after a kill or a stop).
    pub fn start_node(&mut self, i: usize) -> Result<()> {
        let opts = self.opts.clone();
        self.nodes[i].start(&opts)
    }

    /// Stops every process gracefully (workers first).
    pub fn stop_all(&mut self) {
        for w in &mut self.workers {
            w.stop();
        }
        for n in &mut self.nodes {
            n.stop();
        }
    }

    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }

    /// vichain's view of node `i`: its gRPC `Status`.
    pub fn status(&self, i: usize) -> Result<pb::StatusResponse> {
        let url = self.nodes[i].grpc_url();
        self.rt.block_on(async {
            let mut c = NodeServiceClient::connect(url.clone())
                .await
                .with_context(|| format!("connecting to {url}"))?;
            Ok(c.status(pb::StatusRequest {}).await?.into_inner())
        })
    }

    /// The height node `i`'s ledger has committed (0 when unreachable).
    pub fn height(&self, i: usize) -> u64 {
        self.status(i).map_or(0, |s| s.height)
    }

    /// Waits until node `i` has committed `height`.
    pub fn wait_height(&self, i: usize, height: u64, timeout: Duration) -> Result<()> {
        wait_until(
            &format!("{} at height {height}", self.nodes[i].name),
            timeout,
            || Ok(self.height(i) >= height),
        )
    }

    /// A query of node `i` at `height` (0: latest), with its proof.
    pub fn query(&self, i: usize, target: Target, height: u64) -> Result<pb::QueryResponse> {
        let url = self.nodes[i].grpc_url();
        self.rt.block_on(async {
            let mut c = NodeServiceClient::connect(url).await?;
            Ok(c.query(pb::QueryRequest {
                target: Some(target),
                height,
            })
            .await?
            .into_inner())
        })
    }

    /// The authority's key: node0's operator.
    pub fn authority(&self) -> Result<SigningKey> {
        Ok(self.nodes[0].home.keyring().get("operator")?.key)
    }

    /// The next nonce of `key` as node `i` sees it (committed state).
    pub fn nonce(&self, i: usize, key: &SigningKey) -> Result<u64> {
        let addr = Address::from_public_key(&key.verifying_key());
        let r = self.query(i, Target::Account(addr.to_string()), 0)?;
        Ok(if r.found {
            pb::Account::decode(r.value.as_slice())?.nonce
        } else {
            0
        })
    }

    /// Signs `actions` from `key` with consecutive nonces, broadcasts them through
    /// node `i` (gRPC `BroadcastTx`, forwarded to CometBFT) and waits until they are
    /// all in a committed block. Errors name the first refused one.
    pub fn send(&self, i: usize, key: &SigningKey, actions: Vec<Action>) -> Result<()> {
        let first = self.nonce(i, key)?;
        let n = actions.len() as u64;
        let url = self.nodes[i].grpc_url();
        let chain_id = self.genesis.chain_id.clone();
        self.rt.block_on(async {
            let mut c = NodeServiceClient::connect(url).await?;
            for (j, action) in actions.into_iter().enumerate() {
                let kind = vichain_consensus::action_kind(&action);
                let tx = sign_tx(key, &chain_id, first + j as u64, 1, action);
                let r = c
                    .broadcast_tx(pb::BroadcastTxRequest { tx })
                    .await?
                    .into_inner();
                ensure!(r.code == 0, "{kind} refused (code {}): {}", r.code, r.log);
            }
            anyhow::Ok(())
        })?;
        wait_until("transactions to be committed", WAIT, || {
            Ok(self.nonce(i, key)? >= first + n)
        })
    }

    /// Adds a node with its own keys that joins the running chain through the
    /// existing nodes (not a validator until the authority adds its key), by state
    /// sync from node 0's and node 1's RPC when `state_sync`. Not started.
    pub fn add_node(&mut self, state_sync: bool) -> Result<usize> {
        let i = self.nodes.len();
        let ports = self.opts.ports(i);
        let home = Home::new(self.opts.dir.join(format!("node{i}")));
        let peers = self.nodes.iter().map(LocalNode::p2p_address).collect();
        let state_sync = if state_sync {
            ensure!(self.nodes.len() >= 2, "state sync needs two RPC servers");
            let rpc = self.nodes[0].rpc()?;
            let (height, hash) = self.rt.block_on(async {
                let s = rpc.status().await?;
                let h = s.latest_block_height.saturating_sub(1).max(1);
                let hdr = rpc
                    .client()
                    .header(tendermint::block::Height::try_from(h)?)
                    .await?;
                anyhow::Ok((h, hdr.header.hash().to_string()))
            })?;
            Some(StateSyncToml {
                rpc_servers: vec![self.nodes[0].rpc_url(), self.nodes[1].rpc_url()],
                trust_height: height,
                trust_hash: hash,
                trust_period: Duration::from_secs(7 * 24 * 3600),
            })
        } else {
            None
        };
        home::init_joining(
            &home,
            &self.genesis,
            &format!("node{i}"),
            ports,
            self.opts.block_time,
            peers,
            state_sync,
        )?;
        configure_node(&home, &self.opts)?;
        self.nodes
            .push(LocalNode::open(format!("node{i}"), home, ports)?);
        Ok(i)
    }

    /// [`Localnet::start_workers_on`] with worker `j` following validator `j % n`.
    pub fn start_workers(&mut self, workers: usize) -> Result<Vec<String>> {
        let n = self.nodes.len();
        let follow: Vec<usize> = (self.workers.len()..workers).map(|j| j % n).collect();
        self.start_workers_on(&follow)
    }

    /// Registers the demo models (digits with Groth16 proofs, MiniLM when fetched)
    /// with the authority's key and starts one more worker per entry of `follow`, each
    /// taking jobs from that validator's gRPC, funded by the authority and registered
    /// with its own key. Returns the models registered.
    pub fn start_workers_on(&mut self, follow: &[usize]) -> Result<Vec<String>> {
        let dir = self.opts.dir.clone();
        let authority = self.authority()?;
        // The digits model, its Groth16 keys (set up once per localnet) and a split
        // manifest: a worker also serves the model's layers over libp2p.
        let digits = crate::devnet::digits_model(&dir, 0)?;
        let digits_path = dir.join("models/digits-mlp.vqmlp");
        let manifest_dir = dir.join("models/digits-split");
        let mlp = vichain_zk::QuantizedMlp::from_bytes(vichain_inference::DIGITS_MODEL)?;
        let layers = mlp.layers.len();
        if !manifest_dir.join("manifest.json").exists() {
            vichain_inference::split_mlp(
                &mlp,
                &manifest_dir,
                "digits",
                &[vichain_inference::LayerRange::new(0, layers)],
            )?;
        }
        let mut models = vec![digits.register];
        let minilm = vichain_inference::models::minilm_dir()
            .inspect_err(|e| warn!("{e}"))
            .ok();
        if let Some(minilm) = &minilm {
            models.push(crate::devnet::minilm_registration(minilm)?);
        }
        let missing: Vec<Action> = models
            .iter()
            .filter(|m| {
                !self
                    .query(0, Target::Model(m.model_id.clone()), 0)
                    .is_ok_and(|r| r.found)
            })
            .map(|m| Action::RegisterModel(m.clone()))
            .collect();
        if !missing.is_empty() {
            self.send(0, &authority, missing)?;
        }
        let names: Vec<String> = models.iter().map(|m| m.model_id.clone()).collect();

        for &validator in follow {
            ensure!(
                validator < self.nodes.len(),
                "no validator {validator} to follow"
            );
            let j = self.workers.len();
            let home = dir.join(format!("worker{j}"));
            std::fs::create_dir_all(&home)?;
            let keyring = Keyring::new(&home);
            let key = match keyring.get("operator") {
                Ok(k) => k,
                Err(_) => keyring.add("operator")?,
            };
            let mut cmd = Command::new(&self.opts.bins.vichaind);
            cmd.arg("worker")
                .arg("--home")
                .arg(&home)
                .arg("--model")
                .arg(manifest_dir.join("manifest.json"))
                .arg("--layers")
                .arg(format!("0..{layers}"))
                .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
                .arg("--chain")
                .arg(self.nodes[validator].grpc_url())
                .arg("--job-model")
                .arg(format!("digits={}", digits_path.display()))
                .arg("--proving-key")
                .arg(dir.join("zk/digits/proving.key"))
                .args(["--metrics-addr", "127.0.0.1:0"]);
            if let Some(minilm) = &minilm {
                cmd.arg("--job-model")
                    .arg(format!("minilm={}", minilm.display()));
            }
            let (child, peer_id, metrics) = spawn_worker(cmd, &home, &self.opts.log_filter)?;
            self.workers.push(LocalWorker {
                name: format!("worker{j}"),
                home,
                operator: key.address(),
                peer_id,
                validator,
                metrics,
                child: Some(child),
            });
        }
        // Fund the new workers, then each registers with its own key.
        let unfunded: Vec<Action> = self
            .workers
            .iter()
            .filter(|w| {
                !self
                    .query(0, Target::Account(w.operator.to_string()), 0)
                    .is_ok_and(|r| r.found)
            })
            .map(|w| {
                Action::Transfer(pb::Transfer {
                    to: w.operator.as_bytes().to_vec(),
                    amount: WORKER_FUNDS,
                })
            })
            .collect();
        if !unfunded.is_empty() {
            self.send(0, &authority, unfunded)?;
        }
        for w in &self.workers {
            if self
                .query(0, Target::Worker(w.operator.to_string()), 0)?
                .found
            {
                continue;
            }
            let key = Keyring::new(&w.home).get("operator")?.key;
            let serves = names
                .iter()
                .map(|m| pb::ServedShard {
                    model_id: m.clone(),
                    shard_index: 0,
                })
                .collect();
            self.send(
                w.validator,
                &key,
                vec![Action::RegisterWorker(pb::RegisterWorker {
                    peer_id: w.peer_id.clone(),
                    stake: WORKER_STAKE,
                    serves,
                })],
            )?;
        }
        info!(workers = self.workers.len(), models = ?names, "localnet workers registered");
        Ok(names)
    }

    /// What `DIR/localnet.json` says.
    pub fn describe(&self) -> LocalnetFile {
        LocalnetFile {
            chain_id: self.genesis.chain_id.clone(),
            validators: self.nodes.iter().map(LocalNode::entry).collect(),
            workers: self
                .workers
                .iter()
                .map(|w| WorkerEntry {
                    name: w.name.clone(),
                    home: w.home.clone(),
                    operator: w.operator.to_string(),
                    peer_id: w.peer_id.clone(),
                    grpc: self.nodes[w.validator].grpc_url(),
                    metrics: w.metrics.clone(),
                    pid: w.child.as_ref().map(Child::id),
                })
                .collect(),
        }
    }

    /// Writes `DIR/localnet.json`.
    pub fn write_description(&self) -> Result<PathBuf> {
        let path = self.opts.dir.join("localnet.json");
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&self.describe())?)?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }

    /// Reports processes that exited on their own since the last call, and forgets
    /// them (a localnet keeps running without them, as a real network would).
    pub fn reap(&mut self) -> Vec<String> {
        let mut gone = Vec::new();
        let mut check = |name: String, c: &mut Option<Child>| {
            if let Some(child) = c
                && let Ok(Some(status)) = child.try_wait()
            {
                gone.push(format!("{name} exited ({status})"));
                *c = None;
            }
        };
        for n in &mut self.nodes {
            check(format!("{} vichaind", n.name), &mut n.app);
            check(format!("{} cometbft", n.name), &mut n.comet);
        }
        for w in &mut self.workers {
            check(w.name.clone(), &mut w.child);
        }
        gone
    }
}

/// Sets vichaind's config of a localnet node: its name, state-sync snapshots.
fn configure_node(home: &Home, opts: &LocalnetOptions) -> Result<()> {
    let mut config = home.load_config()?;
    config.moniker = home
        .root
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("node")
        .to_owned();
    config.state_sync.snapshot_interval = opts.snapshot_interval;
    // Small chunks: a localnet's state is small, and several chunks exercise the
    // verification of each.
    config.state_sync.chunk_bytes = 4096;
    config.save(&home.config())?;
    Ok(())
}

/// Starts a worker and reads its peer id and metrics address from its first lines;
/// the rest of its output goes to `HOME/worker.log`.
fn spawn_worker(mut cmd: Command, home: &Path, filter: &str) -> Result<(Child, String, String)> {
    let log = append_log(&home.join("worker.log"))?;
    let mut child = cmd
        .env("RUST_LOG", filter)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log.try_clone()?)
        .spawn()
        .context("starting vichaind worker")?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("worker has no stdout"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut log = log;
        for line in BufReader::new(stdout)
            .lines()
            .map_while(std::result::Result::ok)
        {
            let _ = tx.send(line.clone());
            use std::io::Write as _;
            let _ = writeln!(log, "{line}");
        }
    });
    let (mut peer, mut metrics, mut operator) = (None, None, false);
    let deadline = Instant::now() + Duration::from_secs(60);
    while peer.is_none() || metrics.is_none() || !operator {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the worker in {} did not start within 60 s; see {}",
                    home.display(),
                    home.join("worker.log").display()
                );
            }
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["worker", p, ..] => peer = Some((*p).to_owned()),
            ["metrics", m, ..] => metrics = Some((*m).to_owned()),
            ["operator", ..] => operator = true,
            _ => {}
        }
    }
    Ok((child, peer.unwrap_or_default(), metrics.unwrap_or_default()))
}

/// Starts `cmd` with its stdout and stderr appended to `log`.
fn spawn_logged(cmd: &mut Command, log: &Path) -> Result<Child> {
    let file = append_log(log)?;
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))
}

fn append_log(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

fn kill_hard(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn stop_gracefully(child: &mut Option<Child>, timeout: Duration) {
    let Some(mut c) = child.take() else {
        return;
    };
    let _ = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if matches!(c.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    warn!(
        pid = c.id(),
        "did not stop within {timeout:?} of SIGTERM; killing it"
    );
    let _ = c.kill();
    let _ = c.wait();
}

/// Polls `f` every 100 ms until it is true, or errors naming `what` after `timeout`.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if f()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
