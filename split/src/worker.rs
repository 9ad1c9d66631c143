//! A worker: serves one shard of a model to the network.

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use libp2p::{Multiaddr, PeerId, identity::Keypair};
use tokio::task::JoinHandle;
use vichain_inference::{KvCacheConfig, LayerRange, ModelManifest, Shard};

use crate::{
    Announcement, Error, ErrorCode, ForwardResponse, Metrics, MetricsSnapshot, NetworkConfig, Node,
    Pong, Request, Response, Result, ShardRef, StageError,
};

/// File in the worker's home holding its libp2p key.
const KEY_FILE: &str = "p2p_key";

/// What a worker serves and how.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Directory for the worker's key.
    pub home: PathBuf,
    /// The model's `manifest.json`; shard files are read next to it.
    pub manifest: PathBuf,
    /// The layers served (must be a shard of the manifest).
    pub layers: LayerRange,
    /// Network settings (listen addresses, bootstrap peers, allow-list).
    pub network: NetworkConfig,
    /// KV cache bounds; `max_sessions` is the capacity announced.
    pub kv: KvCacheConfig,
    /// Delay added before every forward pass (fault injection for tests and benchmarks).
    pub delay: Duration,
}

impl WorkerConfig {
    /// A worker of `layers` of the model at `manifest`, with default settings.
    pub fn new(home: PathBuf, manifest: PathBuf, layers: LayerRange) -> Self {
        Self {
            home,
            manifest,
            layers,
            network: NetworkConfig::default(),
            kv: KvCacheConfig::default(),
            delay: Duration::ZERO,
        }
    }
}

/// A running worker. Dropping it leaves the network task running until
/// [`Worker::shutdown`].
#[derive(Debug)]
pub struct Worker {
    node: Node,
    model_id: String,
    shard: ShardRef,
    tasks: Vec<JoinHandle<()>>,
}

/// Runs a worker until `shutdown` completes.
pub async fn run_worker(config: WorkerConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    let worker = Worker::start(config).await?;
    shutdown.await;
    worker.shutdown().await;
    Ok(())
}

/// Reads the ed25519 key at `path`, or creates it (mode 0600) if absent.
pub fn load_or_create_keypair(path: &Path) -> Result<Keypair> {
    match std::fs::read(path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes)
            .map_err(|e| Error::Config(format!("{}: not a libp2p key: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .map_err(|e| Error::Config(format!("encoding a new key: {e}")))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            write_private(path, &bytes)?;
            Ok(key)
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path).map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))
}

impl Worker {
    /// Loads the shard (checking its sha256), joins the network, provides the shard in the
    /// DHT, announces it at every heartbeat and serves requests.
    pub async fn start(config: WorkerConfig) -> Result<Self> {
        let keypair = load_or_create_keypair(&config.home.join(KEY_FILE))?;
        let manifest = ModelManifest::load(&config.manifest)?;
        let dir = config
            .manifest
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let index = manifest
            .shards
            .iter()
            .position(|s| s.layers == config.layers && !s.layers.is_empty())
            .ok_or_else(|| Error::Model {
                model_id: manifest.model_id.clone(),
                reason: format!(
                    "no shard holds layers {}; shards: {}",
                    config.layers,
                    manifest
                        .worker_shards()
                        .map(|(_, s)| s.layers.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        let shard_ref = ShardRef::from_entry(&manifest.shards[index])?;
        let kv = config.kv;
        let loaded = {
            let manifest = manifest.clone();
            tokio::task::spawn_blocking(move || Shard::load(&dir, &manifest, index, kv))
                .await
                .map_err(|e| Error::Config(format!("loading the shard panicked: {e}")))??
        };
        let metrics = Arc::new(Metrics::default());
        let heartbeat = config.network.heartbeat;
        let (node, mut inbound) =
            Node::start(keypair, config.network.clone(), true, metrics.clone()).await?;
        let state = Arc::new(ServeState {
            model_id: manifest.model_id.clone(),
            shard_ref,
            shard: Mutex::new(loaded),
            load: AtomicU32::new(0),
            capacity: u32::try_from(kv.max_sessions).unwrap_or(u32::MAX),
            metrics,
            max_message_bytes: config.network.max_message_bytes,
            delay: config.delay,
        });
        tracing::info!(peer = %node.peer_id(), shard = %shard_ref, model = %manifest.model_id, "worker started");
        let serve = {
            let (node, state) = (node.clone(), state.clone());
            tokio::spawn(async move {
                while let Some(req) = inbound.recv().await {
                    let (node, state) = (node.clone(), state.clone());
                    tokio::spawn(async move {
                        let peer = req.peer;
                        let answer =
                            tokio::task::spawn_blocking(move || state.handle(peer, &req.bytes))
                                .await
                                .unwrap_or_else(|e| {
                                    Response::Error(StageError::new(ErrorCode::Internal, e))
                                        .encode()
                                });
                        let _ = node.respond(req.id, answer).await;
                    });
                }
            })
        };
        let announce = {
            let (node, state) = (node.clone(), state.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(heartbeat);
                // Starts from the wall clock so a restarted worker's announcements are newer
                // than those peers remember from its previous run.
                let mut sequence = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or_default();
                loop {
                    tick.tick().await;
                    sequence += 1;
                    let Ok(snapshot) = node.snapshot().await else {
                        return;
                    };
                    let announcement = Announcement {
                        model_id: state.model_id.clone(),
                        shard: state.shard_ref,
                        load: state.load.load(Ordering::Relaxed),
                        capacity: state.capacity,
                        listen_addrs: snapshot.listen_addrs,
                        sequence,
                    };
                    if node.provide(state.shard_ref.provider_key()).await.is_err()
                        || node.publish(&announcement).await.is_err()
                    {
                        return;
                    }
                    let state = state.clone();
                    let _ = tokio::task::spawn_blocking(move || state.evict_idle()).await;
                }
            })
        };
        Ok(Self {
            node,
            model_id: manifest.model_id,
            shard: shard_ref,
            tasks: vec![serve, announce],
        })
    }

    /// The worker's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.node.peer_id()
    }

    /// The model served.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// The shard served.
    pub fn shard(&self) -> ShardRef {
        self.shard
    }

    /// The network handle.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The worker's counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.node.metrics().snapshot()
    }

    /// Addresses the worker listens on, with its peer id appended (dialable as is).
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>> {
        let peer = self.peer_id();
        Ok(self
            .node
            .snapshot()
            .await?
            .listen_addrs
            .into_iter()
            .map(|a| a.with(libp2p::multiaddr::Protocol::P2p(peer)))
            .collect())
    }

    /// Stops serving and closes every connection, as a crash would look to peers.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.node.shutdown().await;
    }
}

struct ServeState {
    model_id: String,
    shard_ref: ShardRef,
    shard: Mutex<Shard>,
    load: AtomicU32,
    capacity: u32,
    metrics: Arc<Metrics>,
    max_message_bytes: usize,
    delay: Duration,
}

impl ServeState {
    fn handle(&self, peer: PeerId, bytes: &[u8]) -> Vec<u8> {
        let _stage = tracing::info_span!(
            "pipeline_stage",
            %peer,
            model = %self.model_id,
            bytes = bytes.len()
        )
        .entered();
        let response = self.answer(bytes);
        let ok = !matches!(response, Response::Error(_));
        if let Response::Error(e) = &response {
            tracing::debug!(%peer, code = %e.code, reason = %e.reason, "refused a request");
        }
        self.metrics.served(ok);
        response.encode()
    }

    fn serves(&self, model_id: &str, shard: &ShardRef) -> Result<(), StageError> {
        if model_id != self.model_id || *shard != self.shard_ref {
            return Err(StageError::new(
                ErrorCode::NotServing,
                format!(
                    "asked for {model_id} shard {shard}, this worker serves {} shard {}",
                    self.model_id, self.shard_ref
                ),
            ));
        }
        Ok(())
    }

    fn answer(&self, bytes: &[u8]) -> Response {
        let request = match Request::decode(bytes, self.max_message_bytes) {
            Ok(r) => r,
            Err(e) => {
                let code = match e {
                    Error::HashMismatch { .. } => ErrorCode::HashMismatch,
                    _ => ErrorCode::Malformed,
                };
                return Response::Error(StageError::new(code, e));
            }
        };
        match request {
            Request::Ping { nonce } => Response::Pong(Pong {
                nonce,
                shards: vec![(self.model_id.clone(), self.shard_ref)],
                load: self.load.load(Ordering::Relaxed),
                capacity: self.capacity,
            }),
            Request::EndSession {
                model_id,
                shard,
                session,
            } => {
                if let Err(e) = self.serves(&model_id, &shard) {
                    return Response::Error(e);
                }
                match self.shard.lock() {
                    Ok(mut s) => {
                        let existed = match &mut *s {
                            Shard::Llama(l) => l.end_session(session),
                            _ => false,
                        };
                        Response::EndSession { existed }
                    }
                    Err(_) => Response::Error(StageError::new(
                        ErrorCode::Internal,
                        "the shard's state was poisoned by an earlier failure",
                    )),
                }
            }
            Request::Forward(f) => {
                if let Err(e) = self.serves(&f.model_id, &f.shard) {
                    return Response::Error(e);
                }
                self.load.fetch_add(1, Ordering::Relaxed);
                if !self.delay.is_zero() {
                    std::thread::sleep(self.delay);
                }
                let started = Instant::now();
                let out = match self.shard.lock() {
                    Ok(mut s) => s
                        .forward(&f.activation)
                        .map_err(|e| StageError::new(ErrorCode::BadActivation, e)),
                    Err(_) => Err(StageError::new(
                        ErrorCode::Internal,
                        "the shard's state was poisoned by an earlier failure",
                    )),
                };
                self.load.fetch_sub(1, Ordering::Relaxed);
                match out {
                    Ok(output) => Response::Forward(ForwardResponse {
                        input_sha256: f.tensor_sha256,
                        output_sha256: output.sha256(),
                        output,
                        compute_micros: started.elapsed().as_micros() as u64,
                    }),
                    Err(e) => Response::Error(e),
                }
            }
        }
    }

    fn evict_idle(&self) {
        if let Ok(mut s) = self.shard.lock()
            && let Shard::Llama(l) = &mut *s
        {
            l.evict_idle();
        }
    }
}
