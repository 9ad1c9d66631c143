//! `vichaind worker`: serve one shard of a split model to the worker network.
//!
//! [`RunningWorker::start`] loads the shard (checking the sha256 the manifest records),
//! joins the libp2p network and serves activations; [`RunningWorker::serve`] is the
//! supervised task that keeps it up until shutdown. [`run`] does both on a
//! [`TaskManager`], so `vichaind worker` and, later, `vichaind dev` start a worker the same
//! way and learn its peer id and addresses from the returned [`WorkerInfo`].

use std::{collections::BTreeSet, path::PathBuf, str::FromStr, time::Duration};

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;
use vichain_inference::LayerRange;
use vichain_split::{AllowList, Multiaddr, PeerId, Worker, WorkerConfig};

use vichain_validator::tasks::{Shutdown, TaskManager};

/// Largest allow-list file read (a peer id is about 53 characters a line).
const MAX_ALLOW_FILE_BYTES: u64 = 1024 * 1024;
/// How often the supervising task checks that the worker's network task is alive.
const LIVENESS_INTERVAL: Duration = Duration::from_secs(2);

/// `vichaind worker` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Directory for the worker's libp2p key (`p2p_key`, created on first use).
    #[arg(long, env = "VICHAIN_HOME")]
    pub home: PathBuf,
    /// The split model's manifest.json (from `vichaind model split`); the shard file is
    /// read next to it and checked against the sha256 the manifest records.
    #[arg(long)]
    pub model: PathBuf,
    /// The layers served, START..END: one of the manifest's shards.
    #[arg(long, value_parser = parse_layer_range)]
    pub layers: LayerRange,
    /// Address to listen on (repeatable).
    #[arg(long, default_value = "/ip4/0.0.0.0/tcp/0")]
    pub listen: Vec<Multiaddr>,
    /// A peer of the worker network to join through (repeatable), e.g.
    /// /ip4/127.0.0.1/tcp/4001 or one with /p2p/PEER_ID.
    #[arg(long)]
    pub bootstrap: Vec<Multiaddr>,
    /// Only the peers listed in FILE (one peer id a line, `#` comments) may connect:
    /// clients and other workers. By default every peer may.
    #[arg(long)]
    pub allow_peers: Option<PathBuf>,
    /// Interval of the worker's announcements and DHT provider records.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,
    /// Print the worker's identity as one JSON line.
    #[arg(long)]
    pub json: bool,
    /// Delay added before every forward pass (fault injection for tests and benchmarks).
    #[arg(long, hide = true, value_parser = humantime::parse_duration)]
    pub inject_delay: Option<Duration>,
    /// Also take jobs from the chain: the gRPC address of a vichain node, e.g.
    /// http://127.0.0.1:9090. The worker watches for jobs assigned to its operator key,
    /// runs them, proves where the model requires it, commits and reveals.
    #[arg(long)]
    pub chain: Option<String>,
    /// Name of the operator key in HOME/keys (created on first use; fund it and
    /// register it with `vichain tx register-worker --from NAME --peer-id ...`).
    #[arg(long, default_value = "operator")]
    pub operator: String,
    /// A model this worker runs for chain jobs, ID=PATH (repeatable): a `.vqmlp` integer
    /// MLP, a BERT directory (config.json, model.safetensors, tokenizer.json), a `.gguf`
    /// Llama, or a split model's manifest.json, which it runs as the orchestrator of a
    /// pipeline through the worker network.
    #[arg(long, value_parser = parse_job_model)]
    pub job_model: Vec<(String, PathBuf)>,
    /// Groth16 proving key for the `.vqmlp` models whose jobs require proofs (from
    /// `vichaind zk setup`; public weights, argmax output).
    #[arg(long)]
    pub proving_key: Option<PathBuf>,
    /// Tokens generated per job for Llama models.
    #[arg(long, default_value_t = 16)]
    pub max_new_tokens: usize,
    /// Serve Prometheus `/metrics` (the worker network's counters, inference and
    /// proving times) on this address, e.g. 127.0.0.1:26661.
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// Parses `ID=PATH`.
pub fn parse_job_model(s: &str) -> Result<(String, PathBuf)> {
    let (id, path) = s
        .split_once('=')
        .with_context(|| format!("--job-model {s:?} is not ID=PATH"))?;
    ensure!(
        !id.is_empty() && !path.is_empty(),
        "--job-model {s:?} is not ID=PATH"
    );
    Ok((id.to_owned(), PathBuf::from(path)))
}

impl WorkerArgs {
    /// The worker's configuration.
    pub fn config(&self) -> Result<WorkerConfig> {
        let mut config = WorkerConfig::new(self.home.clone(), self.model.clone(), self.layers);
        config.network.listen = self.listen.clone();
        config.network.bootstrap = self.bootstrap.clone();
        config.network.heartbeat = self.heartbeat;
        if let Some(file) = &self.allow_peers {
            config.network.allow = AllowList::only(read_allow_list(file)?);
        }
        if let Some(d) = self.inject_delay {
            config.delay = d;
        }
        config.network.validate()?;
        Ok(config)
    }
}

/// Parses `START..END`.
pub fn parse_layer_range(s: &str) -> Result<LayerRange> {
    let (a, b) = s
        .split_once("..")
        .with_context(|| format!("layer range {s:?} is not START..END"))?;
    let start = a
        .trim()
        .parse()
        .with_context(|| format!("layer range {s:?}: bad start"))?;
    let end = b
        .trim()
        .parse()
        .with_context(|| format!("layer range {s:?}: bad end"))?;
    if start >= end {
        bail!("layer range {s:?} is empty");
    }
    Ok(LayerRange::new(start, end))
}

/// Reads an allow-list: one base58 peer id a line; blank lines and `#` comments skipped.
pub fn read_allow_list(path: &std::path::Path) -> Result<BTreeSet<PeerId>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if len > MAX_ALLOW_FILE_BYTES {
        bail!(
            "{}: {len} bytes, more than the {MAX_ALLOW_FILE_BYTES} an allow-list may have",
            path.display()
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut peers = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let peer = PeerId::from_str(line).with_context(|| {
            format!(
                "{} line {}: {line:?} is not a peer id",
                path.display(),
                i + 1
            )
        })?;
        peers.insert(peer);
    }
    if peers.is_empty() {
        bail!("{}: the allow-list names no peer", path.display());
    }
    Ok(peers)
}

/// Who a running worker is and where to reach it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WorkerInfo {
    /// The worker's libp2p peer id.
    pub peer_id: String,
    /// The model served.
    pub model_id: String,
    /// The layers served.
    pub layers: String,
    /// sha256 of the shard served (its DHT provider key).
    pub shard_sha256: String,
    /// Dialable addresses, each ending in `/p2p/PEER_ID`.
    pub listen_addrs: Vec<String>,
}

/// A worker serving its shard.
#[derive(Debug)]
pub struct RunningWorker {
    worker: Worker,
    info: WorkerInfo,
}

impl RunningWorker {
    /// Loads the shard and joins the network; errors name a bad manifest, a layer range
    /// the manifest does not have, or a shard file whose sha256 does not match.
    pub async fn start(config: WorkerConfig) -> Result<Self> {
        let manifest = config.manifest.clone();
        let layers = config.layers;
        let worker = Worker::start(config).await.with_context(|| {
            format!(
                "starting a worker for layers {layers} of {}",
                manifest.display()
            )
        })?;
        let info = WorkerInfo {
            peer_id: worker.peer_id().to_string(),
            model_id: worker.model_id().to_string(),
            layers: worker.shard().range.to_string(),
            shard_sha256: worker.shard().sha256.to_string(),
            listen_addrs: worker
                .listen_addrs()
                .await?
                .iter()
                .map(ToString::to_string)
                .collect(),
        };
        Ok(Self { worker, info })
    }

    /// Who the worker is and where to reach it.
    pub fn info(&self) -> &WorkerInfo {
        &self.info
    }

    /// A handle on the worker's libp2p node.
    pub fn split_node(&self) -> vichain_split::Node {
        self.worker.node().clone()
    }

    /// The worker network's counters.
    pub fn split_metrics(&self) -> std::sync::Arc<vichain_split::Metrics> {
        self.worker.node().metrics().clone()
    }

    /// The worker's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.worker.peer_id()
    }

    /// Serves until `shutdown`; fails if the worker's network task stops on its own.
    pub async fn serve(self, shutdown: Shutdown) -> Result<()> {
        let mut tick = tokio::time::interval(LIVENESS_INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = tick.tick() => {
                    if self.worker.node().snapshot().await.is_err() {
                        self.worker.shutdown().await;
                        bail!("the worker's network task stopped");
                    }
                }
            }
        }
        tracing::info!(peer = %self.info.peer_id, "worker stopping");
        self.worker.shutdown().await;
        Ok(())
    }
}

/// Starts a worker and hands it to `tasks` as the critical task `worker`.
pub async fn run(config: WorkerConfig, tasks: &mut TaskManager) -> Result<WorkerInfo> {
    let worker = RunningWorker::start(config).await?;
    let info = worker.info().clone();
    tasks.spawn_critical("worker", worker.serve(tasks.shutdown()));
    Ok(info)
}

/// `vichaind worker`: starts the worker, prints its identity and runs until SIGINT or
/// SIGTERM.
pub async fn main(args: WorkerArgs) -> Result<()> {
    let config = args.config()?;
    let mut tasks = TaskManager::new();
    let worker = RunningWorker::start(config).await?;
    if let Some(addr) = args.metrics_addr {
        let bound = vichain_validator::web::spawn_exporter(
            &mut tasks,
            addr,
            Some(crate::metrics::split_scrape_hook(worker.split_metrics())),
        )
        .await?;
        if !args.json {
            println!("metrics http://{bound}/metrics");
        }
    }
    let info = worker.info().clone();
    if args.metrics_addr.is_some() {
        let node = worker.split_node();
        let stop = tasks.shutdown();
        tasks.spawn_critical("peer-gauge", async move {
            loop {
                if let Ok(s) = node.snapshot().await {
                    vichain_validator::metrics::split_connected_peers(s.connected.len());
                }
                tokio::select! {
                    _ = stop.wait() => return Ok(()),
                    _ = tokio::time::sleep(LIVENESS_INTERVAL) => {}
                }
            }
        });
    }
    tasks.spawn_critical("worker", worker.serve(tasks.shutdown()));
    if args.json {
        println!("{}", serde_json::to_string(&info)?);
    } else {
        println!(
            "worker {} serves {} layers {} (shard sha256 {})",
            info.peer_id, info.model_id, info.layers, info.shard_sha256
        );
        for a in &info.listen_addrs {
            println!("listening {a}");
        }
    }
    if let Some(chain) = &args.chain {
        start_job_runner(&args, chain, &info, &mut tasks).await?;
    }
    tasks.run().await
}

/// The executor of chain jobs for the model file at `path`.
fn executor_for(
    args: &WorkerArgs,
    path: &std::path::Path,
    info: &WorkerInfo,
    chain: &str,
) -> Result<std::sync::Arc<dyn crate::runner::Executor>> {
    use std::sync::{Arc, Mutex};

    use crate::runner::{DigitsExecutor, EmbedExecutor, GenerateExecutor, PipelineExecutor};
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.ends_with(".vqmlp") {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let model = Arc::new(vichain_zk::QuantizedMlp::from_bytes(&bytes)?);
        let proving = match &args.proving_key {
            Some(pk) => {
                let (pk_bytes, hash) = crate::zk_tool::read_key(pk, None)?;
                let pk = vichain_zk::decode_proving_key(&pk_bytes, &hash)?;
                Some((
                    Arc::new(pk),
                    vichain_zk::WeightMode::Public,
                    vichain_zk::OutputMode::Argmax,
                ))
            }
            None => None,
        };
        return Ok(Arc::new(DigitsExecutor { model, proving }));
    }
    if name.ends_with(".gguf") {
        let generator = vichain_inference::TextGenerator::from_gguf(
            path,
            vichain_inference::KvCacheConfig::default(),
        )?;
        return Ok(Arc::new(GenerateExecutor {
            generator: Mutex::new(generator),
            max_new_tokens: args.max_new_tokens,
        }));
    }
    if name == vichain_inference::MANIFEST_FILE || name.ends_with(".json") {
        let mut bootstrap = args.bootstrap.clone();
        bootstrap.extend(info.listen_addrs.iter().filter_map(|a| a.parse().ok()));
        return Ok(Arc::new(PipelineExecutor::new(
            path.to_path_buf(),
            bootstrap,
            args.max_new_tokens,
            chain.to_owned(),
        )?));
    }
    if path.join("config.json").exists() {
        let embedder = vichain_inference::SentenceEmbedder::from_dir(path)?;
        return Ok(Arc::new(EmbedExecutor(Arc::new(embedder))));
    }
    bail!(
        "--job-model {}: not a .vqmlp, .gguf, manifest.json or BERT directory",
        path.display()
    )
}

/// The worker's HPKE key (`HOME/encryption.key`, created on first use): attest it
/// with `vichain tx submit-attestation --encryption-key` so clients can seal inputs.
fn encryption_key(
    home: &std::path::Path,
) -> Result<Option<std::sync::Arc<vichain_tee::EncryptionKey>>> {
    let key = crate::runner::load_or_create_encryption_key(&home.join("encryption.key"))?;
    println!("encryption key {}", key.public_key());
    Ok(Some(std::sync::Arc::new(key)))
}

async fn start_job_runner(
    args: &WorkerArgs,
    chain: &str,
    info: &WorkerInfo,
    tasks: &mut TaskManager,
) -> Result<()> {
    use crate::runner::{Runner, RunnerConfig};
    let keyring = vichain_validator::keys::Keyring::new(&args.home);
    let key = match keyring.get(&args.operator) {
        Ok(k) => k,
        Err(_) => keyring.add(&args.operator)?,
    };
    let mut executors = std::collections::BTreeMap::new();
    for (id, path) in &args.job_model {
        executors.insert(id.clone(), executor_for(args, path, info, chain)?);
    }
    ensure!(
        !executors.is_empty(),
        "--chain needs at least one --job-model ID=PATH"
    );
    let mut node =
        vichain_proto::v1::node_service_client::NodeServiceClient::connect(chain.to_owned())
            .await
            .with_context(|| format!("cannot reach the node at {chain}"))?;
    let status = node
        .status(vichain_proto::v1::StatusRequest {})
        .await?
        .into_inner();
    let runner = Runner::connect(RunnerConfig {
        name: format!("worker {}", info.peer_id),
        grpc: chain.to_owned(),
        key: key.key.clone(),
        chain_id: status.chain_id,
        state_file: args.home.join("jobs.json"),
        poll: Duration::from_millis(300),
        fee: 1,
        executors,
        encryption_key: encryption_key(&args.home)?,
    })
    .await?;
    println!(
        "operator {} takes jobs from {chain} for models {}",
        key.address(),
        args.job_model
            .iter()
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    tasks.spawn_critical("job-runner", runner.run(tasks.shutdown()));
    Ok(())
}
