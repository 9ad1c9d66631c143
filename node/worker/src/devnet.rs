//! The embedded default of `vichaind dev --workers N`: the demo models (the digits
//! MLP with Groth16 proofs, all-MiniLM-L6-v2 and SmolLM2-135M when their files are
//! present), registered by the dev authority, and N workers with their own keys,
//! funded, staked and registered, each running a [`Runner`] against the node's gRPC.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, Result};
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use tracing::{info, warn};
use vichain_consensus::{Address, StateReadExt, Storage, dev_signing_key, sign_tx, state_key};
use vichain_inference::{KvCacheConfig, SentenceEmbedder, TextGenerator};
use vichain_proto::v1::{self as pb, tx_body::Action};
use vichain_zk::{OutputMode, QuantizedMlp, WeightMode};

use vichain_validator::{dev::DevChain, tasks::Shutdown};

use crate::{
    runner::{DigitsExecutor, EmbedExecutor, Executor, GenerateExecutor, Runner, RunnerConfig},
    zk_tool,
};

use vichain_inference::DIGITS_MODEL;
/// Tokens SmolLM2 generates per demo job.
pub const DEMO_MAX_NEW_TOKENS: usize = 16;
/// Each dev worker's funding and stake.
pub const WORKER_FUNDS: u64 = 1_000_000;
pub const WORKER_STAKE: u64 = 10_000;

/// A model the dev chain registers and its workers run.
pub struct DemoModel {
    pub register: pb::RegisterModel,
    /// One per worker (shared where the executor is stateless).
    pub executors: Vec<Arc<dyn Executor>>,
}

impl std::fmt::Debug for DemoModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoModel")
            .field("model_id", &self.register.model_id)
            .finish_non_exhaustive()
    }
}

/// The key of dev worker `i`, derived from a public string like the dev key: for
/// dev chains only.
pub fn dev_worker_key(i: usize) -> SigningKey {
    let seed: [u8; 32] = Sha256::digest(format!("vichain/dev/worker/{i}")).into();
    SigningKey::from_bytes(&seed)
}

/// A base58 string standing in for a dev worker's libp2p peer id.
fn dev_peer_id(key: &SigningKey) -> String {
    const BASE58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let digest = Sha256::digest(key.verifying_key().as_bytes());
    let mut s = String::from("12D3KooW");
    s.extend(
        digest
            .iter()
            .map(|b| BASE58[*b as usize % BASE58.len()] as char),
    );
    s
}

fn single_shard(total_layers: u32, bytes_sha: [u8; 32]) -> Vec<pb::ShardSpec> {
    vec![pb::ShardSpec {
        start_layer: 0,
        end_layer: total_layers,
        sha256: bytes_sha.to_vec(),
    }]
}

fn sha256_file(path: &Path) -> Result<[u8; 32]> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Sha256::digest(&bytes).into())
}

/// The digits model with its Groth16 keys (set up once per home, then reused).
pub fn digits_model(home: &Path, workers: usize) -> Result<DemoModel> {
    let dir = home.join("zk/digits");
    let model_path = home.join("models/digits-mlp.vqmlp");
    std::fs::create_dir_all(model_path.parent().unwrap_or(home))?;
    if !model_path.exists() {
        std::fs::write(&model_path, DIGITS_MODEL)?;
    }
    if !dir.join("proving.key").exists() {
        info!("Groth16 setup for the digits model (once per home)");
        zk_tool::setup(
            &model_path,
            &dir,
            WeightMode::Public,
            OutputMode::Argmax,
            None,
            false,
        )?;
    }
    let (pk_bytes, pk_hash) = zk_tool::read_key(&dir.join("proving.key"), None)?;
    let pk = vichain_zk::decode_proving_key(&pk_bytes, &pk_hash)?;
    let vk = vichain_zk::encode_verifying_key(&pk.vk)?;
    let model = Arc::new(QuantizedMlp::from_bytes(DIGITS_MODEL)?);
    let register = pb::RegisterModel {
        model_id: "digits".into(),
        name: "8x8 digits MLP (int8, Groth16)".into(),
        family: "mlp".into(),
        total_layers: model.layers.len() as u32,
        shards: single_shard(
            model.layers.len() as u32,
            Sha256::digest(DIGITS_MODEL).into(),
        ),
        policy: Some(pb::VerificationPolicy {
            k: 3,
            quorum: 2,
            require_proof: true,
            ..Default::default()
        }),
        verifying_key: vk,
        commitment: vichain_zk::model_commitment(&model).to_bytes().to_vec(),
        price: 10,
    };
    let executor: Arc<dyn Executor> = Arc::new(DigitsExecutor {
        model,
        proving: Some((Arc::new(pk), WeightMode::Public, OutputMode::Argmax)),
    });
    Ok(DemoModel {
        register,
        executors: vec![executor; workers],
    })
}

pub fn minilm_model(dir: &Path, workers: usize) -> Result<DemoModel> {
    let embedder = SentenceEmbedder::from_dir(dir)?;
    Ok(DemoModel {
        register: minilm_registration(dir)?,
        executors: vec![Arc::new(EmbedExecutor(Arc::new(embedder))) as Arc<dyn Executor>; workers],
    })
}

/// MiniLM's registry entry (k=3, quorum 2, tolerance 1e-3), read from the model
/// directory's config.json and weights without loading the model.
pub fn minilm_registration(dir: &Path) -> Result<pb::RegisterModel> {
    let config_path = dir.join("config.json");
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&config_path)
            .with_context(|| format!("reading {}", config_path.display()))?,
    )
    .with_context(|| format!("{} is not JSON", config_path.display()))?;
    let layers = config["num_hidden_layers"]
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .with_context(|| format!("{}: no num_hidden_layers", config_path.display()))?;
    Ok(pb::RegisterModel {
        model_id: "minilm".into(),
        name: "all-MiniLM-L6-v2 sentence embeddings".into(),
        family: "bert".into(),
        total_layers: layers,
        shards: single_shard(layers, sha256_file(&dir.join("model.safetensors"))?),
        policy: Some(pb::VerificationPolicy {
            k: 3,
            quorum: 2,
            // 1e-3 per component, in the 1e6 fixed point of embeddings.
            tolerance_ppm: 1_000,
            ..Default::default()
        }),
        price: 5,
        ..Default::default()
    })
}

pub fn smollm2_model(path: &Path, workers: usize) -> Result<DemoModel> {
    let generator = TextGenerator::from_gguf(path, KvCacheConfig::default())?;
    // Each worker its own generator (its own KV caches): they run side by side.
    let mut executors: Vec<Arc<dyn Executor>> = Vec::with_capacity(workers);
    for _ in 0..workers {
        executors.push(Arc::new(GenerateExecutor {
            generator: Mutex::new(TextGenerator::from_gguf(path, KvCacheConfig::default())?),
            max_new_tokens: DEMO_MAX_NEW_TOKENS,
        }));
    }
    let layers = generator
        .stages()
        .iter()
        .map(|s| s.range().len() as u32)
        .sum();
    Ok(DemoModel {
        register: pb::RegisterModel {
            model_id: "smollm2".into(),
            name: "SmolLM2-135M-Instruct (Q4_1), greedy".into(),
            family: "llama".into(),
            total_layers: layers,
            shards: single_shard(layers, sha256_file(path)?),
            policy: Some(pb::VerificationPolicy {
                k: 2,
                quorum: 2,
                ..Default::default()
            }),
            price: 20,
            ..Default::default()
        },
        executors,
    })
}

/// Every demo model that can be loaded here; a missing model is a warning naming
/// the package that provides it.
pub fn demo_models(home: &Path, workers: usize) -> Vec<DemoModel> {
    let mut out = Vec::new();
    match digits_model(home, workers) {
        Ok(m) => out.push(m),
        Err(e) => warn!("digits model unavailable: {e:#}"),
    }
    match vichain_inference::models::minilm_dir() {
        Ok(minilm) => match minilm_model(&minilm, workers) {
            Ok(m) => {
                // The same model for sealed inputs: only attested workers serve it.
                let mut register = m.register.clone();
                register.model_id = "minilm-tee".into();
                register.name = "all-MiniLM-L6-v2, TEE workers only (sealed inputs)".into();
                if let Some(p) = register.policy.as_mut() {
                    p.require_tee = true;
                }
                let sealed = DemoModel {
                    register,
                    executors: m.executors.clone(),
                };
                out.push(m);
                out.push(sealed);
            }
            Err(e) => warn!("all-MiniLM-L6-v2 in {}: {e:#}", minilm.display()),
        },
        Err(e) => warn!("{e}"),
    }
    out
}

/// Simulated evidence (the dev attester) for worker `k`'s operator key and HPKE key.
fn zk_free_simulate(
    secret: [u8; 32],
    k: &SigningKey,
    chain_id: &str,
    nonce: &[u8; 32],
    enc: &vichain_tee::EncryptionPublicKey,
    expires_at: u64,
) -> Vec<u8> {
    vichain_validator::tee_tool::simulate(
        secret,
        &Sha256::digest(b"vichain dev worker image"),
        k.verifying_key().as_bytes(),
        chain_id,
        nonce,
        enc,
        expires_at,
    )
}

/// Submits `action` from `key`, signed with `nonce`, to the dev mempool.
fn submit(
    chain: &DevChain,
    store: &Storage,
    key: &SigningKey,
    nonce: u64,
    action: Action,
) -> Result<()> {
    let chain_id = store.chain_id()?;
    let r = chain.submit(sign_tx(key, &chain_id, nonce, 1, action))?;
    anyhow::ensure!(r.code == 0, "dev set-up transaction refused: {}", r.log);
    Ok(())
}

fn nonce_of(store: &Storage, key: &SigningKey) -> Result<u64> {
    Ok(store
        .account(&Address::from_public_key(&key.verifying_key()))?
        .map_or(0, |a| a.nonce))
}

async fn wait_for<F: Fn() -> Result<bool>>(what: &str, f: F) -> Result<()> {
    for _ in 0..600 {
        if f()? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("timed out waiting for {what}")
}

/// The SmolLM2 GGUF that `scripts/fetch-models.sh` fetches, if present (a warning
/// naming the fetch script otherwise).
pub fn smollm2_path() -> Option<PathBuf> {
    vichain_inference::models::smollm2_gguf()
        .inspect_err(|e| warn!("{e}"))
        .ok()
}

/// SmolLM2 as a pipeline of three stages (layers 0..10, 10..20, 20..30) over the
/// worker network: each dev worker also runs a libp2p worker serving one stage (its
/// peer id is the one it registers), and the workers assigned a job orchestrate it,
/// keeping the embedding and head themselves.
pub struct SplitSmollm2 {
    pub model: DemoModel,
    pub nodes: Vec<crate::serve::RunningWorker>,
    /// Per dev worker: its libp2p peer id and the index of the stage it serves.
    pub stages: Vec<(String, u32)>,
}

impl std::fmt::Debug for SplitSmollm2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplitSmollm2")
            .field("stages", &self.stages)
            .finish_non_exhaustive()
    }
}

pub async fn smollm2_pipeline(
    home: &Path,
    gguf: &Path,
    workers: usize,
    grpc: &str,
) -> Result<SplitSmollm2> {
    use vichain_inference::{LayerRange, ModelManifest, ShardLayout, split_gguf};
    anyhow::ensure!(workers > 0, "no workers to serve the stages");
    let out = home.join("models/smollm2-split");
    let manifest_path = out.join(vichain_inference::MANIFEST_FILE);
    if !manifest_path.exists() {
        let (src, dst) = (gguf.to_path_buf(), out.clone());
        tokio::task::spawn_blocking(move || {
            split_gguf(
                &src,
                &dst,
                "smollm2",
                &[
                    LayerRange::new(0, 10),
                    LayerRange::new(10, 20),
                    LayerRange::new(20, 30),
                ],
                ShardLayout::ClientKeepsEnds,
            )
        })
        .await??;
    }
    let manifest = ModelManifest::load(&manifest_path)?;
    let shards: Vec<pb::ShardSpec> = manifest
        .worker_shards()
        .map(|(_, s)| {
            Ok(pb::ShardSpec {
                start_layer: s.layers.start as u32,
                end_layer: s.layers.end as u32,
                sha256: hex::decode(&s.sha256)?,
            })
        })
        .collect::<Result<_>>()?;
    let mut nodes: Vec<crate::serve::RunningWorker> = Vec::with_capacity(workers);
    let mut stages = Vec::with_capacity(workers);
    let mut bootstrap: Vec<vichain_split::Multiaddr> = Vec::new();
    for i in 0..workers {
        let stage = i % shards.len();
        let s = &shards[stage];
        let mut config = vichain_split::WorkerConfig::new(
            home.join(format!("workers/p2p-{i}")),
            manifest_path.clone(),
            LayerRange::new(s.start_layer as usize, s.end_layer as usize),
        );
        config.network.listen = vec!["/ip4/127.0.0.1/tcp/0".parse()?];
        config.network.bootstrap = bootstrap.clone();
        let node = crate::serve::RunningWorker::start(config).await?;
        stages.push((node.info().peer_id.clone(), stage as u32));
        for a in &node.info().listen_addrs {
            bootstrap.push(a.parse()?);
        }
        nodes.push(node);
    }
    // For clients that run the pipeline themselves (`vichain submit --private`).
    let lines: Vec<String> = bootstrap.iter().map(ToString::to_string).collect();
    std::fs::write(out.join("bootstrap.txt"), lines.join("\n") + "\n")?;
    info!(
        manifest = %manifest_path.display(),
        bootstrap = %lines.first().cloned().unwrap_or_default(),
        "SmolLM2 pipeline stages are up (addresses in bootstrap.txt next to the manifest)"
    );
    let executor: Arc<dyn Executor> = Arc::new(crate::runner::PipelineExecutor::new(
        manifest_path,
        bootstrap,
        DEMO_MAX_NEW_TOKENS,
        grpc.to_owned(),
    )?);
    let model = DemoModel {
        register: pb::RegisterModel {
            model_id: "smollm2".into(),
            name: "SmolLM2-135M-Instruct (Q4_1), greedy, 3 pipeline stages".into(),
            family: "llama".into(),
            total_layers: manifest.total_layers as u32,
            shards,
            policy: Some(pb::VerificationPolicy {
                k: 2,
                quorum: 2,
                ..Default::default()
            }),
            price: 20,
            ..Default::default()
        },
        executors: vec![executor; workers],
    };
    Ok(SplitSmollm2 {
        model,
        nodes,
        stages,
    })
}

/// Registers the models and `workers` workers, then runs the workers until shutdown.
pub async fn run(
    home: PathBuf,
    chain: Arc<DevChain>,
    store: Arc<Storage>,
    grpc: String,
    workers: usize,
    shutdown: Shutdown,
) -> Result<()> {
    let h = home.clone();
    let mut models = tokio::task::spawn_blocking(move || demo_models(&h, workers)).await?;
    // SmolLM2 runs split in three stages through the worker network; whole in each
    // worker if the network cannot start.
    let mut split_stages: Vec<Option<(String, u32)>> = vec![None; workers];
    if let Some(gguf) = smollm2_path() {
        match smollm2_pipeline(&home, &gguf, workers, &grpc).await {
            Ok(split) => {
                for (i, st) in split.stages.iter().enumerate() {
                    split_stages[i] = Some(st.clone());
                }
                models.push(split.model);
                for node in split.nodes {
                    let stop = shutdown.clone();
                    tokio::spawn(async move {
                        if let Err(e) = node.serve(stop).await {
                            warn!("SmolLM2 stage worker: {e:#}");
                        }
                    });
                }
            }
            Err(e) => {
                warn!("SmolLM2 pipeline: {e:#}; each worker runs the whole model instead");
                let path = gguf.clone();
                match tokio::task::spawn_blocking(move || smollm2_model(&path, workers)).await? {
                    Ok(m) => models.push(m),
                    Err(e) => warn!("SmolLM2 in {}: {e:#}", gguf.display()),
                }
            }
        }
    }
    let authority = dev_signing_key();
    let mut nonce = nonce_of(&store, &authority)?;
    for m in &models {
        if store.model(&m.register.model_id)?.is_none() {
            submit(
                &chain,
                &store,
                &authority,
                nonce,
                Action::RegisterModel(m.register.clone()),
            )?;
            nonce += 1;
        }
    }
    let keys: Vec<SigningKey> = (0..workers).map(dev_worker_key).collect();
    for k in &keys {
        let addr = Address::from_public_key(&k.verifying_key());
        if store.account(&addr)?.is_none() {
            submit(
                &chain,
                &store,
                &authority,
                nonce,
                Action::Transfer(pb::Transfer {
                    to: addr.as_bytes().to_vec(),
                    amount: WORKER_FUNDS,
                }),
            )?;
            nonce += 1;
        }
    }
    wait_for("worker funds and models", || {
        for k in &keys {
            if store
                .account(&Address::from_public_key(&k.verifying_key()))?
                .is_none()
            {
                return Ok(false);
            }
        }
        for m in &models {
            if store.model(&m.register.model_id)?.is_none() {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await?;
    for (i, k) in keys.iter().enumerate() {
        let addr = Address::from_public_key(&k.verifying_key());
        // Every model's only shard, or for the split SmolLM2 the stage the worker runs.
        let serves: Vec<pb::ServedShard> = models
            .iter()
            .map(|m| pb::ServedShard {
                model_id: m.register.model_id.clone(),
                shard_index: match (&split_stages[i], m.register.model_id.as_str()) {
                    (Some((_, stage)), "smollm2") => *stage,
                    _ => 0,
                },
            })
            .collect();
        let peer_id = split_stages[i]
            .as_ref()
            .map_or_else(|| dev_peer_id(k), |(p, _)| p.clone());
        if store.worker(&addr)?.is_none() && !serves.is_empty() {
            submit(
                &chain,
                &store,
                k,
                nonce_of(&store, k)?,
                Action::RegisterWorker(pb::RegisterWorker {
                    peer_id,
                    stake: WORKER_STAKE,
                    serves,
                }),
            )?;
        }
    }
    wait_for("worker registrations", || {
        for k in &keys {
            if store
                .worker(&Address::from_public_key(&k.verifying_key()))?
                .is_none()
            {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await?;
    let names: Vec<&str> = models
        .iter()
        .map(|m| m.register.model_id.as_str())
        .collect();
    info!(workers, models = ?names, "dev workers registered; try: vichain demo");
    let dir = home.join("workers");
    std::fs::create_dir_all(&dir)?;
    // Each worker's HPKE key, bound into a (simulated: dev only) attestation, so that
    // clients can seal inputs to it and require_tee models may use it.
    let mut enc_keys = Vec::with_capacity(keys.len());
    let chain_id = store.chain_id()?;
    for (i, k) in keys.iter().enumerate() {
        let ek =
            crate::runner::load_or_create_encryption_key(&dir.join(format!("worker-{i}.hpke")))?;
        let height = store.committed()?.map_or(0, |c| c.height);
        let nonce: [u8; 32] = store
            .get(state_key::recent_block_hash(height).as_bytes())?
            .and_then(|h| h.try_into().ok())
            .context("no recent block hash to bind the attestation to")?;
        let expires_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
            + 30 * 24 * 3600;
        let secret: [u8; 32] = Sha256::digest(format!("vichain/dev/attester/{i}")).into();
        let evidence = zk_free_simulate(secret, k, &chain_id, &nonce, &ek.public_key(), expires_at);
        submit(
            &chain,
            &store,
            k,
            nonce_of(&store, k)?,
            Action::SubmitAttestation(pb::SubmitAttestation {
                evidence,
                nonce_height: height,
                encryption_key: ek.public_key().as_bytes().to_vec(),
            }),
        )?;
        enc_keys.push(Arc::new(ek));
    }
    wait_for("worker attestations", || {
        for k in &keys {
            let w = store.worker(&Address::from_public_key(&k.verifying_key()))?;
            if w.and_then(|w| w.attestation).is_none() {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await?;
    let mut handles = Vec::new();
    for (i, key) in keys.into_iter().enumerate() {
        let executors: BTreeMap<String, Arc<dyn Executor>> = models
            .iter()
            .map(|m| (m.register.model_id.clone(), m.executors[i].clone()))
            .collect();
        let runner = Runner::connect(RunnerConfig {
            name: format!("worker-{i}"),
            grpc: grpc.clone(),
            key,
            chain_id: chain_id.clone(),
            state_file: dir.join(format!("worker-{i}.json")),
            poll: Duration::from_millis(200),
            fee: 1,
            executors,
            encryption_key: Some(enc_keys[i].clone()),
        })
        .await?;
        handles.push(tokio::spawn(runner.run(shutdown.clone())));
    }
    for h in handles {
        h.await??;
    }
    Ok(())
}
