//! `vichaind worker`: serve one shard of a split model to the worker network.
//!
//! [`RunningWorker::start`] loads the shard (checking the sha256 the manifest records),
//! joins the libp2p network and serves activations; [`RunningWorker::serve`] is the
//! supervised task that keeps it up until shutdown. [`run`] does both on a
//! [`TaskManager`], so `vichaind worker` and, later, `vichaind dev` start a worker the same
//! way and learn its peer id and addresses from the returned [`WorkerInfo`].

use std::{collections::BTreeSet, path::PathBuf, str::FromStr, time::Duration};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use vichain_inference::LayerRange;
use vichain_split::{AllowList, Multiaddr, PeerId, Worker, WorkerConfig};

use crate::tasks::{Shutdown, TaskManager};

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

    /// The worker's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.worker.peer_id()
    }

    /// Serves until `shutdown`; fails if the worker's network task stops on its own.
    pub async fn serve(self, mut shutdown: Shutdown) -> Result<()> {
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
    let info = run(config, &mut tasks).await?;
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
    tasks.run().await
}
