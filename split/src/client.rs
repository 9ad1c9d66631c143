//! The client side of a split pipeline: it keeps the embedding and the head (an integer
//! MLP has neither: the job's input goes to the first stage and the last emits the logits),
//! routes activations through the workers, checks their commitments and fails over.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use libp2p::{Multiaddr, PeerId, identity::Keypair};
use tokenizers::Tokenizer;
use vichain_inference::{
    Activation, ActivationDType, ActivationData, BertConfig, Fingerprint, GenerationParams,
    GgufFile, KvCacheConfig, LayerRange, LlamaConfig, LlamaStage, MAX_NEW_TOKENS, ModelFamily,
    ModelManifest, SENTENCE_BERT_CONFIG, Sampler, Shard, TextGenerator, bert_max_seq_length,
    bert_tokenizer, tokenizer_from_gguf,
};

use vichain_zk::{ACTIVATION_MAX, QuantizedMlp};

use crate::{
    Candidate, Error, ForwardRequest, Metrics, MetricsSnapshot, NetworkConfig, Node, Request,
    Response, Result, Route, RouteOptions, ShardRef, plan_route,
};

/// Settings of a [`SplitClient`].
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Network settings; `bootstrap` names the peers to join through.
    pub network: NetworkConfig,
    /// Route preferences.
    pub route: RouteOptions,
    /// How long to look for holders of every stage before giving up.
    pub discovery_timeout: Duration,
    /// The client's libp2p key (a fresh one when absent).
    pub keypair: Option<Keypair>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            network: NetworkConfig::default(),
            route: RouteOptions::default(),
            discovery_timeout: Duration::from_secs(20),
            keypair: None,
        }
    }
}

/// What one stage committed to for one step: the sha256 of the activation it received and
/// of the one it emitted, checked by the client against what it sent and received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageCommitment {
    /// Index of the stage.
    pub stage: usize,
    /// The shard.
    pub shard: ShardRef,
    /// The worker that answered.
    pub peer: PeerId,
    /// sha256 of the activation received (equal to the previous link's output).
    pub input_sha256: Fingerprint,
    /// sha256 of the activation emitted.
    pub output_sha256: Fingerprint,
    /// Request frame size.
    pub bytes_sent: usize,
    /// Response frame size.
    pub bytes_received: usize,
    /// Round trip, in microseconds.
    pub latency_micros: u64,
    /// Compute time the worker reported, in microseconds.
    pub compute_micros: u64,
}

/// The chain of commitments of one step through the pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepTrace {
    /// Position of the step's first token in the session.
    pub position: u32,
    /// Tokens in the step (1 for an integer MLP's input vector).
    pub tokens: usize,
    /// sha256 of the client's embedding output (for an integer MLP, of the job's input: what
    /// the first stage received).
    pub embedding_sha256: Fingerprint,
    /// One link per worker stage.
    pub stages: Vec<StageCommitment>,
    /// sha256 of the client's head output (for an integer MLP, of the logits the last stage
    /// emitted).
    pub head_sha256: Fingerprint,
    /// Wall time of the step at the client (embedding, every stage, head), in microseconds.
    pub elapsed_micros: u64,
}

impl StepTrace {
    /// Every activation hash of the step in order (with client-kept ends, what
    /// [`vichain_inference::Pipeline::run`] reports as `stage_hashes`).
    pub fn hashes(&self) -> Vec<Fingerprint> {
        std::iter::once(self.embedding_sha256)
            .chain(self.stages.iter().map(|s| s.output_sha256))
            .chain(std::iter::once(self.head_sha256))
            .collect()
    }
}

/// A stage replaced mid-job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverEvent {
    /// Index of the stage.
    pub stage: usize,
    /// Its layers.
    pub range: LayerRange,
    /// The worker that failed.
    pub from: PeerId,
    /// Its replacement.
    pub to: PeerId,
    /// Why the first failed.
    pub reason: String,
    /// Steps replayed to rebuild the replacement's KV cache.
    pub replayed_steps: usize,
    /// Time from the failure to the replacement being ready, in microseconds.
    pub recovery_micros: u64,
}

/// The result of [`SplitClient::embed`].
#[derive(Clone, Debug, PartialEq)]
pub struct EmbeddingOutput {
    /// The normalized sentence embedding.
    pub embedding: Vec<f32>,
    /// The route used (after failovers).
    pub route: Vec<(ShardRef, PeerId)>,
    /// The step's commitments.
    pub trace: StepTrace,
    /// Stages replaced.
    pub failovers: Vec<FailoverEvent>,
}

/// The result of a generation session.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationOutput {
    /// The session id.
    pub session: u64,
    /// The prompt's token ids.
    pub prompt_tokens: Vec<u32>,
    /// Generated ids (with the end-of-sequence token if produced).
    pub tokens: Vec<u32>,
    /// The generated text, special tokens removed.
    pub text: String,
    /// Whether generation stopped at the end-of-sequence token.
    pub stopped_at_eos: bool,
    /// The route at the end (after failovers).
    pub route: Vec<(ShardRef, PeerId)>,
    /// Commitments of every step.
    pub traces: Vec<StepTrace>,
    /// Stages replaced.
    pub failovers: Vec<FailoverEvent>,
}

/// What the client runs itself.
#[derive(Debug)]
enum ClientModel {
    /// The embeddings and the pooling head of a BERT model, and its tokenizer.
    Bert { ends: Shard, tokenizer: Tokenizer },
    /// The embeddings and the head of a Llama model, and its tokenizer.
    Llama {
        ends: Shard,
        tokenizer: Tokenizer,
        eos: u32,
        vocab_size: usize,
        context_length: usize,
    },
    /// Nothing of an integer MLP: the client only checks the width of the job's input.
    Mlp { input_dim: usize },
}

/// A client of the worker network for one split model.
#[derive(Debug)]
pub struct SplitClient {
    node: Node,
    manifest: ModelManifest,
    stages: Vec<ShardRef>,
    model: ClientModel,
    config: ClientConfig,
    candidates: Vec<Candidate>,
    failed: BTreeSet<PeerId>,
}

#[derive(Debug)]
struct StageSlot {
    shard: ShardRef,
    peer: PeerId,
    alternates: Vec<PeerId>,
    inputs: Vec<Activation>,
    outputs: Vec<Fingerprint>,
}

impl SplitClient {
    /// Loads the client's ends of the model at `manifest` (which must keep them on the
    /// client; an integer MLP, split by [`vichain_inference::split_mlp`], has none),
    /// joins the network through `config.network.bootstrap` and waits for a peer.
    pub async fn connect(manifest: &Path, config: ClientConfig) -> Result<Self> {
        let m = ModelManifest::load(manifest)?;
        let dir = manifest
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let stages = m
            .worker_shards()
            .map(|(_, s)| ShardRef::from_entry(s))
            .collect::<Result<Vec<_>>>()?;
        let model = Self::load_model(&m, &dir)?;
        let keypair = config
            .keypair
            .clone()
            .unwrap_or_else(Keypair::generate_ed25519);
        let metrics = std::sync::Arc::new(Metrics::default());
        let (node, _inbound) = Node::start(keypair, config.network.clone(), false, metrics).await?;
        if !config.network.bootstrap.is_empty() {
            node.wait_for_peers(1, config.discovery_timeout).await?;
        }
        Ok(Self {
            node,
            manifest: m,
            stages,
            model,
            config,
            candidates: Vec::new(),
            failed: BTreeSet::new(),
        })
    }

    /// What the client of `m` (in `dir`) runs itself.
    fn load_model(m: &ModelManifest, dir: &Path) -> Result<ClientModel> {
        let model_err = |reason: String| Error::Model {
            model_id: m.model_id.clone(),
            reason,
        };
        let client_shard = || {
            m.client_shard().ok_or_else(|| {
                model_err(
                    "the manifest gives the embeddings and head to workers; split it with \
                     ShardLayout::ClientKeepsEnds so raw inputs and outputs stay here"
                        .into(),
                )
            })
        };
        let kv = KvCacheConfig::default();
        match m.family {
            ModelFamily::QuantizedMlp => {
                if m.client_shard().is_some() {
                    return Err(model_err(
                        "integer MLPs have no embedding or head to keep on the client; split it \
                     with split_mlp"
                            .into(),
                    ));
                }
                // The client runs no layer. It reads the first shard for its input width only,
                // so that a wrong-length input is refused here instead of failing a worker.
                let (first, _) = m
                    .worker_shards()
                    .next()
                    .ok_or_else(|| model_err("the manifest lists no worker shard".into()))?;
                let part = QuantizedMlp::from_bytes(&m.read_shard(dir, first)?)
                    .map_err(vichain_inference::Error::from)?;
                Ok(ClientModel::Mlp {
                    input_dim: part.input_dim(),
                })
            }
            ModelFamily::Bert => {
                let (index, _) = client_shard()?;
                let name = dir.join("config.json").display().to_string();
                let cfg = BertConfig::from_json(&m.read_file(dir, "config.json")?, &name)?;
                // The same truncation as the whole model's embedder (256 tokens for
                // all-MiniLM-L6-v2, not the 512 positions of its config).
                let sentence_bert_config = m
                    .files
                    .iter()
                    .any(|f| f.file == SENTENCE_BERT_CONFIG)
                    .then(|| m.read_file(dir, SENTENCE_BERT_CONFIG))
                    .transpose()?;
                let source = dir.display().to_string();
                let max_seq_length =
                    bert_max_seq_length(&cfg, sentence_bert_config.as_deref(), &source)?;
                let tokenizer = bert_tokenizer(
                    &m.read_file(dir, "tokenizer.json")?,
                    max_seq_length,
                    &source,
                )?;
                Ok(ClientModel::Bert {
                    ends: Shard::load(dir, m, index, kv)?,
                    tokenizer,
                })
            }
            ModelFamily::Llama => {
                let (index, entry) = client_shard()?;
                let name = dir.join(&entry.file).display().to_string();
                let gg = GgufFile::from_bytes(m.read_shard(dir, index)?, &name)?;
                let cfg = LlamaConfig::from_gguf(&gg.content, &name)?;
                let tokenizer = tokenizer_from_gguf(&gg.content, &name)?;
                let eos = gg
                    .content
                    .metadata
                    .get("tokenizer.ggml.eos_token_id")
                    .ok_or_else(|| model_err(format!("{name}: no tokenizer.ggml.eos_token_id")))?
                    .to_u32()
                    .map_err(|e| model_err(format!("{name}: eos token id: {e}")))?;
                let stage = LlamaStage::load(&gg, entry.layers, entry.embeddings, entry.head, kv)?;
                Ok(ClientModel::Llama {
                    ends: Shard::Llama(stage),
                    tokenizer,
                    eos,
                    vocab_size: cfg.vocab_size,
                    context_length: cfg.context_length,
                })
            }
        }
    }

    /// The client's network handle.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The model's manifest.
    pub fn manifest(&self) -> &ModelManifest {
        &self.manifest
    }

    /// The worker shards, in execution order.
    pub fn stages(&self) -> &[ShardRef] {
        &self.stages
    }

    /// Counters of this client.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.node.metrics().snapshot()
    }

    /// Workers that failed for this client and are no longer used.
    pub fn failed_peers(&self) -> &BTreeSet<PeerId> {
        &self.failed
    }

    /// Finds holders of every stage (DHT providers and announcements), pings them (which
    /// checks what they serve and measures latency and load) and plans a route, retrying
    /// until `discovery_timeout`.
    pub async fn discover(&mut self) -> Result<Route> {
        let deadline = Instant::now() + self.config.discovery_timeout;
        loop {
            let mut peers = BTreeSet::new();
            for s in &self.stages {
                peers.extend(self.node.find_providers(s.provider_key()).await?);
            }
            let snapshot = self.node.snapshot().await?;
            for (peer, seen) in &snapshot.announcements {
                if seen.announcement.model_id == self.manifest.model_id
                    && self.stages.contains(&seen.announcement.shard)
                {
                    peers.insert(*peer);
                }
            }
            peers.retain(|p| !self.failed.contains(p) && *p != self.node.peer_id());
            let pings = peers.iter().map(|p| self.ping(*p));
            let mut candidates = Vec::new();
            for found in futures::future::join_all(pings).await.into_iter().flatten() {
                candidates.extend(found);
            }
            self.candidates = candidates;
            let planned = plan_route(
                &self.manifest.model_id,
                &self.stages,
                &self.candidates,
                &self.failed,
                &self.config.route,
            );
            match planned {
                Ok(route) => return Ok(route),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "route not complete yet");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    async fn ping(&self, peer: PeerId) -> Result<Vec<Candidate>> {
        let nonce: u64 = rand::random();
        let started = Instant::now();
        let bytes = self
            .node
            .request(peer, Request::Ping { nonce }.encode())
            .await?;
        let latency = started.elapsed();
        match Response::decode(&bytes, self.node.max_message_bytes())? {
            Response::Pong(p) if p.nonce == nonce => Ok(p
                .shards
                .into_iter()
                .filter(|(m, s)| *m == self.manifest.model_id && self.stages.contains(s))
                .map(|(_, shard)| Candidate {
                    peer,
                    shard,
                    load: p.load,
                    capacity: p.capacity,
                    latency: Some(latency),
                })
                .collect()),
            other => Err(Error::Request {
                peer,
                reason: format!("unexpected answer to a ping: {other:?}"),
            }),
        }
    }

    async fn route(&mut self) -> Result<Route> {
        match plan_route(
            &self.manifest.model_id,
            &self.stages,
            &self.candidates,
            &self.failed,
            &self.config.route,
        ) {
            Ok(r) => Ok(r),
            Err(_) => self.discover().await,
        }
    }

    fn slots(route: Route) -> Vec<StageSlot> {
        route
            .stages
            .into_iter()
            .map(|s| StageSlot {
                shard: s.shard,
                peer: s.peer,
                alternates: s.alternates,
                inputs: Vec::new(),
                outputs: Vec::new(),
            })
            .collect()
    }

    /// Embeds `text` (BERT models): tokens and pooling stay here, the encoder layers run
    /// on the workers.
    pub async fn embed(&mut self, text: &str) -> Result<EmbeddingOutput> {
        if !matches!(self.model, ClientModel::Bert { .. }) {
            return Err(self.model_error("embeddings need a BERT model"));
        }
        if text.len() > vichain_inference::MAX_TEXT_BYTES {
            return Err(Error::TooLarge {
                what: "text",
                got: text.len(),
                limit: vichain_inference::MAX_TEXT_BYTES,
            });
        }
        let ids = self
            .tokenizer()?
            .encode(text, true)
            .map_err(|e| self.model_error(format!("tokenizing: {e}")))?
            .get_ids()
            .to_vec();
        let route = self.route().await?;
        let mut slots = Self::slots(route);
        let mut failovers = Vec::new();
        let (out, trace) = self
            .step(&mut slots, 0, 0, &ids, false, &mut failovers)
            .await?;
        let embedding = out
            .as_f32()
            .ok_or_else(|| self.model_error("the pooled output is not f32"))?
            .to_vec();
        Ok(EmbeddingOutput {
            embedding,
            route: slots.iter().map(|s| (s.shard, s.peer)).collect(),
            trace,
            failovers,
        })
    }

    /// Token ids of a chat message in the model's ChatML template (Llama models).
    pub fn chat_tokens(&self, user: &str) -> Result<Vec<u32>> {
        let prompt = TextGenerator::chat_prompt(user);
        Ok(self
            .tokenizer()?
            .encode(prompt, false)
            .map_err(|e| self.model_error(format!("tokenizing: {e}")))?
            .get_ids()
            .to_vec())
    }

    /// Starts a generation session with a fresh session id.
    pub async fn start_generation(
        &mut self,
        prompt: &[u32],
        params: GenerationParams,
    ) -> Result<GenerationSession<'_>> {
        let session: u64 = rand::random();
        self.start_generation_in(session, prompt, params).await
    }

    /// Starts a generation session with the given id (for reproducible commitments).
    pub async fn start_generation_in(
        &mut self,
        session: u64,
        prompt: &[u32],
        params: GenerationParams,
    ) -> Result<GenerationSession<'_>> {
        let ClientModel::Llama { context_length, .. } = self.model else {
            return Err(self.model_error("generation needs a Llama model"));
        };
        if prompt.is_empty() {
            return Err(self.model_error("empty prompt"));
        }
        if params.max_new_tokens > MAX_NEW_TOKENS
            || prompt.len() + params.max_new_tokens > context_length
        {
            return Err(Error::TooLarge {
                what: "prompt plus new tokens",
                got: prompt.len() + params.max_new_tokens,
                limit: context_length.min(MAX_NEW_TOKENS + prompt.len()),
            });
        }
        let sampler = Sampler::new(params.sampling)?;
        let route = self.route().await?;
        Ok(GenerationSession {
            slots: Self::slots(route),
            client: self,
            session,
            prompt: prompt.to_vec(),
            tokens: Vec::new(),
            sampler,
            max_new_tokens: params.max_new_tokens,
            stopped_at_eos: false,
            traces: Vec::new(),
            failovers: Vec::new(),
        })
    }

    /// Generates from a chat message, start to end.
    pub async fn generate(
        &mut self,
        user: &str,
        params: GenerationParams,
    ) -> Result<GenerationOutput> {
        let ids = self.chat_tokens(user)?;
        let mut session = self.start_generation(&ids, params).await?;
        while session.next_token().await?.is_some() {}
        session.finish().await
    }

    fn model_error(&self, reason: impl Into<String>) -> Error {
        Error::Model {
            model_id: self.manifest.model_id.clone(),
            reason: reason.into(),
        }
    }

    /// The embeddings and head the client keeps (text models).
    fn ends(&mut self) -> Result<&mut Shard> {
        match &mut self.model {
            ClientModel::Bert { ends, .. } | ClientModel::Llama { ends, .. } => Ok(ends),
            ClientModel::Mlp { .. } => Err(Error::Model {
                model_id: self.manifest.model_id.clone(),
                reason: "integer MLPs keep no embedding or head on the client".into(),
            }),
        }
    }

    /// The tokenizer (text models).
    fn tokenizer(&self) -> Result<&Tokenizer> {
        match &self.model {
            ClientModel::Bert { tokenizer, .. } | ClientModel::Llama { tokenizer, .. } => {
                Ok(tokenizer)
            }
            ClientModel::Mlp { .. } => Err(self.model_error("integer MLPs have no tokenizer")),
        }
    }

    /// One step: embed `ids` here, run every worker stage (with failover), apply the head.
    async fn step(
        &mut self,
        slots: &mut [StageSlot],
        session: u64,
        position: u32,
        ids: &[u32],
        stateful: bool,
        failovers: &mut Vec<FailoverEvent>,
    ) -> Result<(Activation, StepTrace)> {
        let started = Instant::now();
        let tokens = Activation::tokens(session, position, ids)?;
        let act = self.ends()?.forward(&tokens)?;
        let embedding_sha256 = act.sha256();
        let (act, stages) = self.run_stages(slots, act, stateful, failovers).await?;
        let out = self.ends()?.forward(&act)?;
        let head_sha256 = out.sha256();
        Ok((
            out,
            StepTrace {
                position,
                tokens: ids.len(),
                embedding_sha256,
                stages,
                head_sha256,
                elapsed_micros: started.elapsed().as_micros() as u64,
            },
        ))
    }

    /// Runs `act` through every worker stage in turn (with failover), checking that each
    /// stage committed to the activation it was sent; returns the last stage's output.
    async fn run_stages(
        &mut self,
        slots: &mut [StageSlot],
        mut act: Activation,
        stateful: bool,
        failovers: &mut Vec<FailoverEvent>,
    ) -> Result<(Activation, Vec<StageCommitment>)> {
        let mut stages = Vec::with_capacity(slots.len());
        for (i, slot) in slots.iter_mut().enumerate() {
            let (out, commitment) = self.call(i, slot, &act, stateful, failovers).await?;
            if commitment.input_sha256 != act.sha256() {
                return Err(Error::BadAnswer {
                    peer: commitment.peer,
                    range: slot.shard.range,
                    reason: "the commitment chain is broken".into(),
                });
            }
            stages.push(commitment);
            act = out;
        }
        Ok((act, stages))
    }

    /// Runs `act` through stage `i`, replacing its worker on failure by the next holder of
    /// the same shard, whose KV cache is first rebuilt by replaying the stage's earlier
    /// inputs (each replayed output must hash to what the failed worker emitted).
    async fn call(
        &mut self,
        i: usize,
        slot: &mut StageSlot,
        act: &Activation,
        stateful: bool,
        failovers: &mut Vec<FailoverEvent>,
    ) -> Result<(Activation, StageCommitment)> {
        loop {
            let first_error = match self.forward_once(i, slot.shard, slot.peer, act).await {
                Ok((out, commitment)) => {
                    if stateful {
                        slot.inputs.push(act.clone());
                        slot.outputs.push(commitment.output_sha256);
                    }
                    return Ok((out, commitment));
                }
                Err(e) => e,
            };
            let failed_at = Instant::now();
            let mut error = first_error;
            let from = slot.peer;
            // A worker that is up but lost this session's KV cache (restarted, or evicted
            // it) refuses the step; its cache is rebuilt by replaying the session there
            // before anyone else is tried.
            let lost_cache = matches!(
                &error,
                Error::Stage {
                    code: crate::ErrorCode::BadActivation,
                    ..
                }
            );
            if stateful && lost_cache && !slot.inputs.is_empty() {
                tracing::warn!(stage = i, peer = %slot.peer, %error, "rebuilding the stage's cache");
                let rebuilt = match self.replay(i, slot).await {
                    Ok(()) => self.forward_once(i, slot.shard, slot.peer, act).await,
                    Err(e) => Err(e),
                };
                match rebuilt {
                    Ok((out, commitment)) => {
                        let replayed_steps = slot.inputs.len();
                        slot.inputs.push(act.clone());
                        slot.outputs.push(commitment.output_sha256);
                        self.node.metrics().failover();
                        failovers.push(FailoverEvent {
                            stage: i,
                            range: slot.shard.range,
                            from,
                            to: from,
                            reason: format!(
                                "cache rebuilt on the same worker: {}",
                                error_reason(&error)
                            ),
                            replayed_steps,
                            recovery_micros: failed_at.elapsed().as_micros() as u64,
                        });
                        return Ok((out, commitment));
                    }
                    Err(e) => error = e,
                }
            }
            loop {
                tracing::warn!(stage = i, peer = %slot.peer, %error, "stage failed");
                self.failed.insert(slot.peer);
                slot.alternates.retain(|p| !self.failed.contains(p));
                if slot.alternates.is_empty() {
                    // Holders that joined (or were not yet found) since the route was
                    // planned are looked up again before giving up.
                    match self.discover().await {
                        Ok(route) => {
                            let found = &route.stages[i];
                            slot.alternates = std::iter::once(found.peer)
                                .chain(found.alternates.iter().copied())
                                .filter(|p| !self.failed.contains(p))
                                .collect();
                        }
                        Err(e) => tracing::warn!(stage = i, error = %e, "no other holder found"),
                    }
                }
                if slot.alternates.is_empty() {
                    return Err(Error::NoRoute {
                        model_id: self.manifest.model_id.clone(),
                        range: slot.shard.range,
                        reason: format!("every holder failed; last error: {error}"),
                    });
                }
                slot.peer = slot.alternates.remove(0);
                match self.replay(i, slot).await {
                    Ok(()) => break,
                    Err(e) => error = e,
                }
            }
            self.node.metrics().failover();
            failovers.push(FailoverEvent {
                stage: i,
                range: slot.shard.range,
                from,
                to: slot.peer,
                reason: error_reason(&error),
                replayed_steps: slot.inputs.len(),
                recovery_micros: failed_at.elapsed().as_micros() as u64,
            });
        }
    }

    async fn replay(&self, i: usize, slot: &StageSlot) -> Result<()> {
        for (input, expected) in slot.inputs.iter().zip(&slot.outputs) {
            let (_, c) = self.forward_once(i, slot.shard, slot.peer, input).await?;
            if c.output_sha256 != *expected {
                return Err(Error::BadAnswer {
                    peer: slot.peer,
                    range: slot.shard.range,
                    reason: format!(
                        "replaying position {} gave {}, the session had {expected}",
                        input.position(),
                        c.output_sha256
                    ),
                });
            }
        }
        Ok(())
    }

    async fn forward_once(
        &self,
        i: usize,
        shard: ShardRef,
        peer: PeerId,
        act: &Activation,
    ) -> Result<(Activation, StageCommitment)> {
        let request = ForwardRequest::new(self.manifest.model_id.clone(), shard, act.clone());
        let sent = request.tensor_sha256;
        let bytes = Request::Forward(request).encode();
        let bytes_sent = bytes.len();
        let started = Instant::now();
        let answer = self.node.request(peer, bytes).await?;
        let latency_micros = started.elapsed().as_micros() as u64;
        self.node.metrics().stage_call(latency_micros);
        let bad = |reason: String| Error::BadAnswer {
            peer,
            range: shard.range,
            reason,
        };
        match Response::decode(&answer, self.node.max_message_bytes()) {
            Err(e) => Err(bad(e.to_string())),
            Ok(Response::Error(e)) => Err(Error::Stage {
                peer,
                range: shard.range,
                code: e.code,
                reason: e.reason,
            }),
            Ok(Response::Forward(f)) => {
                if f.input_sha256 != sent {
                    return Err(bad(format!(
                        "commits to input {} but {sent} was sent",
                        f.input_sha256
                    )));
                }
                self.check_output(i, act, &f.output).map_err(bad)?;
                Ok((
                    f.output,
                    StageCommitment {
                        stage: i,
                        shard,
                        peer,
                        input_sha256: f.input_sha256,
                        output_sha256: f.output_sha256,
                        bytes_sent,
                        bytes_received: answer.len(),
                        latency_micros,
                        compute_micros: f.compute_micros,
                    },
                ))
            }
            Ok(other) => Err(bad(format!("unexpected answer {other:?}"))),
        }
    }

    /// Whether `out` is what stage `i` may emit for `act`: the same step, and the same shape
    /// in f32 for transformer stages; `[1, n]` i64 for integer MLP stages, in
    /// `[0, ACTIVATION_MAX]` unless the stage is the last (the logits), so that a stage
    /// emitting an impossible activation is blamed rather than the next one that refuses it.
    fn check_output(
        &self,
        i: usize,
        act: &Activation,
        out: &Activation,
    ) -> std::result::Result<(), String> {
        if out.session() != act.session() || out.position() != act.position() {
            return Err(format!(
                "emitted session {} position {}, expected session {} position {}",
                out.session(),
                out.position(),
                act.session(),
                act.position()
            ));
        }
        if let ClientModel::Mlp { .. } = self.model {
            let values = match (out.as_i64(), out.shape()) {
                (Some(v), [1, n]) if *n > 0 => v,
                _ => {
                    return Err(format!(
                        "emitted {:?} {}, expected [1, n] i64",
                        out.shape(),
                        out.dtype()
                    ));
                }
            };
            let hidden = i + 1 < self.stages.len();
            let outside = values
                .iter()
                .enumerate()
                .find(|(_, v)| !(0..=ACTIVATION_MAX).contains(*v));
            if let Some((k, v)) = outside.filter(|_| hidden) {
                return Err(format!(
                    "hidden activation [{k}] = {v} is outside [0, {ACTIVATION_MAX}]"
                ));
            }
        } else if out.dtype() != ActivationDType::F32 || out.shape() != act.shape() {
            return Err(format!(
                "emitted {:?} {}, expected {:?} f32",
                out.shape(),
                out.dtype(),
                act.shape()
            ));
        }
        Ok(())
    }
}

/// A generation in progress: each call to [`GenerationSession::next_token`] runs one step
/// through every stage, each of which keeps the session's KV cache.
#[derive(Debug)]
pub struct GenerationSession<'a> {
    client: &'a mut SplitClient,
    session: u64,
    slots: Vec<StageSlot>,
    prompt: Vec<u32>,
    tokens: Vec<u32>,
    sampler: Sampler,
    max_new_tokens: usize,
    stopped_at_eos: bool,
    traces: Vec<StepTrace>,
    failovers: Vec<FailoverEvent>,
}

impl GenerationSession<'_> {
    /// The session id.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// The worker now running each stage.
    pub fn route(&self) -> Vec<(ShardRef, PeerId)> {
        self.slots.iter().map(|s| (s.shard, s.peer)).collect()
    }

    /// Tokens generated so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// The next token, or `None` once `max_new_tokens` are generated or the end-of-sequence
    /// token was.
    pub async fn next_token(&mut self) -> Result<Option<u32>> {
        let ClientModel::Llama {
            eos, vocab_size, ..
        } = self.client.model
        else {
            return Err(self.client.model_error("generation needs a Llama model"));
        };
        if self.stopped_at_eos || self.tokens.len() >= self.max_new_tokens {
            return Ok(None);
        }
        let (position, ids) = match self.tokens.last() {
            None => (0, self.prompt.clone()),
            Some(&last) => (
                (self.prompt.len() + self.tokens.len() - 1) as u32,
                vec![last],
            ),
        };
        let (logits, trace) = self
            .client
            .step(
                &mut self.slots,
                self.session,
                position,
                &ids,
                true,
                &mut self.failovers,
            )
            .await?;
        let logits = match (logits.as_f32(), logits.shape()) {
            (Some(l), [1, v]) if *v == vocab_size => l,
            _ => {
                return Err(self
                    .client
                    .model_error("the head did not emit [1, vocab] logits"));
            }
        };
        let next = self.sampler.sample(logits)?;
        self.traces.push(trace);
        self.tokens.push(next);
        self.stopped_at_eos = next == eos;
        Ok(Some(next))
    }

    /// Ends the session on every worker and returns what was generated.
    pub async fn finish(self) -> Result<GenerationOutput> {
        for slot in &self.slots {
            let end = Request::EndSession {
                model_id: self.client.manifest.model_id.clone(),
                shard: slot.shard,
                session: self.session,
            };
            // A worker that misses this evicts the session when it goes idle.
            let _ = self.client.node.request(slot.peer, end.encode()).await;
        }
        let text = self
            .client
            .tokenizer()?
            .decode(&self.tokens, true)
            .map_err(|e| self.client.model_error(format!("decoding: {e}")))?;
        Ok(GenerationOutput {
            session: self.session,
            prompt_tokens: self.prompt,
            route: self.slots.iter().map(|s| (s.shard, s.peer)).collect(),
            tokens: self.tokens,
            text,
            stopped_at_eos: self.stopped_at_eos,
            traces: self.traces,
            failovers: self.failovers,
        })
    }
}

fn error_reason(e: &Error) -> String {
    e.to_string()
}

/// What to run through the pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InferInput {
    /// A sentence to embed, or a chat message to answer.
    Text(String),
    /// A file holding that text.
    File(PathBuf),
}

/// A command-line style inference: `vichain infer --model MANIFEST (--text STR | --input
/// FILE) --bootstrap ADDR [--max-tokens N]`.
#[derive(Clone, Debug)]
pub struct InferRequest {
    /// The model's `manifest.json` (the client's shard must be next to it).
    pub manifest: PathBuf,
    /// The input.
    pub input: InferInput,
    /// Most tokens to generate (Llama models).
    pub max_tokens: usize,
    /// Client settings; `client.network.bootstrap` holds the bootstrap peers.
    pub client: ClientConfig,
}

impl InferRequest {
    /// A request with default settings.
    pub fn new(manifest: PathBuf, input: InferInput, bootstrap: Vec<Multiaddr>) -> Self {
        let mut client = ClientConfig::default();
        client.network.bootstrap = bootstrap;
        Self {
            manifest,
            input,
            max_tokens: 32,
            client,
        }
    }
}

/// The output of [`infer`], ready for JSON.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct InferReport {
    /// The model.
    pub model_id: String,
    /// The client's peer id.
    pub client: String,
    /// Worker per stage at the end of the job.
    pub route: Vec<RouteReport>,
    /// Commitments of every step, stage by stage.
    pub steps: Vec<StepReport>,
    /// Stages replaced.
    pub failovers: Vec<FailoverReport>,
    /// The result.
    pub output: InferOutput,
    /// Wall time of the job (after connecting), in microseconds.
    pub elapsed_micros: u64,
    /// The client's counters.
    pub metrics: MetricsSnapshot,
}

/// One stage of an [`InferReport`]'s route.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RouteReport {
    /// Layers `start..end`.
    #[serde(serialize_with = "as_display")]
    pub layers: LayerRange,
    /// sha256 of the shard.
    #[serde(serialize_with = "as_display")]
    pub shard_sha256: Fingerprint,
    /// The worker.
    pub peer: String,
}

/// One step of an [`InferReport`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StepReport {
    /// Position of the step's first token.
    pub position: u32,
    /// Tokens in the step.
    pub tokens: usize,
    /// sha256 of the client's embedding output.
    #[serde(serialize_with = "as_display")]
    pub embedding_sha256: Fingerprint,
    /// Each stage's commitment.
    pub stages: Vec<StageReport>,
    /// sha256 of the client's head output.
    #[serde(serialize_with = "as_display")]
    pub head_sha256: Fingerprint,
    /// Wall time of the step at the client, microseconds.
    pub elapsed_micros: u64,
}

/// One stage's commitment in a [`StepReport`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StageReport {
    /// Layers.
    #[serde(serialize_with = "as_display")]
    pub layers: LayerRange,
    /// Worker.
    pub peer: String,
    /// sha256 of the activation received.
    #[serde(serialize_with = "as_display")]
    pub input_sha256: Fingerprint,
    /// sha256 of the activation emitted.
    #[serde(serialize_with = "as_display")]
    pub output_sha256: Fingerprint,
    /// Request bytes.
    pub bytes_sent: usize,
    /// Response bytes.
    pub bytes_received: usize,
    /// Round trip, microseconds.
    pub latency_micros: u64,
    /// Compute time the worker reported, microseconds (the rest of the round trip is
    /// transfer, encoding and hashing).
    pub compute_micros: u64,
}

/// A failover in an [`InferReport`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FailoverReport {
    /// Layers.
    #[serde(serialize_with = "as_display")]
    pub layers: LayerRange,
    /// The failed worker.
    pub from: String,
    /// Its replacement.
    pub to: String,
    /// Why.
    pub reason: String,
    /// Steps replayed.
    pub replayed_steps: usize,
    /// Recovery time, microseconds.
    pub recovery_micros: u64,
}

/// The result in an [`InferReport`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InferOutput {
    /// A sentence embedding.
    Embedding {
        /// Its values.
        values: Vec<f32>,
    },
    /// Generated text.
    Text {
        /// The generated ids.
        tokens: Vec<u32>,
        /// The text.
        text: String,
        /// Whether generation stopped at end-of-sequence.
        stopped_at_eos: bool,
    },
    /// An integer MLP's output.
    Logits {
        /// The last layer's output.
        values: Vec<i64>,
        /// First index of the largest logit (the predicted class).
        argmax: usize,
    },
}

/// What a job reports while it runs (for a command line's progress output).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InferProgress {
    /// The route was planned: the worker of each stage.
    Route(Vec<RouteReport>),
    /// A token was generated (`index` counts from 1); `route` is the route that ran it.
    Token {
        /// Tokens generated so far.
        index: usize,
        /// The token id.
        token: u32,
        /// Worker per stage for this token.
        route: Vec<RouteReport>,
    },
    /// A stage was replaced.
    Failover(FailoverReport),
}

/// Runs one job through the network as a client: embeddings for BERT models, a chat answer
/// for Llama models. Connects, runs [`SplitClient::run`] and disconnects (integer MLPs take
/// bytes: connect and call [`SplitClient::run_bytes`]).
pub async fn infer(request: InferRequest) -> Result<InferReport> {
    let text = request.input.read()?;
    let mut client = SplitClient::connect(&request.manifest, request.client).await?;
    let report = client.run(&text, request.max_tokens, |_| {}).await;
    client.node.shutdown().await;
    report
}

impl InferInput {
    /// The text, read from the file for [`InferInput::File`] (at most
    /// [`vichain_inference::MAX_TEXT_BYTES`]).
    pub fn read(&self) -> Result<String> {
        match self {
            Self::Text(t) => Ok(t.clone()),
            Self::File(p) => {
                let len = std::fs::metadata(p).map_err(|e| Error::io(p, e))?.len();
                let limit = vichain_inference::MAX_TEXT_BYTES;
                if len > limit as u64 {
                    return Err(Error::TooLarge {
                        what: "input file",
                        got: usize::try_from(len).unwrap_or(usize::MAX),
                        limit,
                    });
                }
                std::fs::read_to_string(p).map_err(|e| Error::io(p, e))
            }
        }
    }
}

/// Serializes a value by its `Display` form (layer ranges as `start..end`, digests as hex).
fn as_display<T: std::fmt::Display, S: serde::Serializer>(
    value: &T,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(value)
}

fn route_report(route: &[(ShardRef, PeerId)]) -> Vec<RouteReport> {
    route
        .iter()
        .map(|(s, p)| RouteReport {
            layers: s.range,
            shard_sha256: s.sha256,
            peer: p.to_string(),
        })
        .collect()
}

fn failover_report(f: &FailoverEvent) -> FailoverReport {
    FailoverReport {
        layers: f.range,
        from: f.from.to_string(),
        to: f.to.to_string(),
        reason: f.reason.clone(),
        replayed_steps: f.replayed_steps,
        recovery_micros: f.recovery_micros,
    }
}

impl SplitClient {
    /// Runs one job on this connected client: the embedding of `text` for BERT models, the
    /// answer to the chat message `text` (at most `max_tokens`) for Llama models.
    /// `progress` hears of the route, each token and each failover as they happen.
    pub async fn run(
        &mut self,
        text: &str,
        max_tokens: usize,
        mut progress: impl FnMut(InferProgress),
    ) -> Result<InferReport> {
        let started = Instant::now();
        let (route, traces, failovers, output) = match self.model {
            ClientModel::Mlp { .. } => {
                return Err(self.model_error(
                    "an integer MLP takes bytes, not text: run it with SplitClient::run_bytes",
                ));
            }
            ClientModel::Bert { .. } => {
                let e = self.embed(text).await?;
                progress(InferProgress::Route(route_report(&e.route)));
                for f in &e.failovers {
                    progress(InferProgress::Failover(failover_report(f)));
                }
                (
                    e.route,
                    vec![e.trace],
                    e.failovers,
                    InferOutput::Embedding {
                        values: e.embedding,
                    },
                )
            }
            ClientModel::Llama { .. } => {
                let params = GenerationParams {
                    max_new_tokens: max_tokens,
                    ..GenerationParams::default()
                };
                let ids = self.chat_tokens(text)?;
                let mut session = self.start_generation(&ids, params).await?;
                progress(InferProgress::Route(route_report(&session.route())));
                let mut reported = 0;
                while let Some(token) = session.next_token().await? {
                    for f in &session.failovers[reported..] {
                        progress(InferProgress::Failover(failover_report(f)));
                    }
                    reported = session.failovers.len();
                    progress(InferProgress::Token {
                        index: session.tokens.len(),
                        token,
                        route: route_report(&session.route()),
                    });
                }
                let g = session.finish().await?;
                (
                    g.route,
                    g.traces,
                    g.failovers,
                    InferOutput::Text {
                        tokens: g.tokens,
                        text: g.text,
                        stopped_at_eos: g.stopped_at_eos,
                    },
                )
            }
        };
        Ok(self.report(started, &route, &traces, &failovers, output))
    }

    /// Runs one job of an integer MLP on this connected client: `input` holds one int8
    /// (two's complement, as jobs carry it) per input of the first layer. It goes to the
    /// first stage as is, each stage's output to the next, and the last stage's output is
    /// the logits ([`InferOutput::Logits`]). A stage that fails is replaced by another
    /// holder of the same shard, as for text models; a wrong-length input is refused
    /// ([`Error::InputLength`]) before any worker sees it.
    pub async fn run_bytes(
        &mut self,
        input: &[u8],
        mut progress: impl FnMut(InferProgress),
    ) -> Result<InferReport> {
        let started = Instant::now();
        let ClientModel::Mlp { input_dim } = self.model else {
            return Err(self.model_error(
                "byte inputs are for integer MLPs; text models run with SplitClient::run",
            ));
        };
        if input.len() != input_dim {
            return Err(Error::InputLength {
                model_id: self.manifest.model_id.clone(),
                expected: input_dim,
                got: input.len(),
            });
        }
        let values = input.iter().map(|&b| i64::from(b as i8)).collect();
        let act = Activation::new(0, 0, vec![1, input_dim], ActivationData::I64(values))?;
        let input_sha256 = act.sha256();
        let route = self.route().await?;
        let mut slots = Self::slots(route);
        progress(InferProgress::Route(route_report(
            &slots.iter().map(|s| (s.shard, s.peer)).collect::<Vec<_>>(),
        )));
        let step_started = Instant::now();
        let mut failovers = Vec::new();
        let (out, stages) = self
            .run_stages(&mut slots, act, false, &mut failovers)
            .await?;
        for f in &failovers {
            progress(InferProgress::Failover(failover_report(f)));
        }
        let trace = StepTrace {
            position: 0,
            tokens: 1,
            embedding_sha256: input_sha256,
            stages,
            head_sha256: out.sha256(),
            elapsed_micros: step_started.elapsed().as_micros() as u64,
        };
        let values = out
            .as_i64()
            .ok_or_else(|| self.model_error("the last stage did not emit i64 logits"))?
            .to_vec();
        let output = InferOutput::Logits {
            argmax: vichain_zk::argmax(&values),
            values,
        };
        let route: Vec<_> = slots.iter().map(|s| (s.shard, s.peer)).collect();
        Ok(self.report(started, &route, &[trace], &failovers, output))
    }

    /// The report of a job that started at `started`.
    fn report(
        &self,
        started: Instant,
        route: &[(ShardRef, PeerId)],
        traces: &[StepTrace],
        failovers: &[FailoverEvent],
        output: InferOutput,
    ) -> InferReport {
        InferReport {
            model_id: self.manifest.model_id.clone(),
            client: self.node.peer_id().to_string(),
            route: route_report(route),
            steps: traces
                .iter()
                .map(|t| StepReport {
                    position: t.position,
                    tokens: t.tokens,
                    embedding_sha256: t.embedding_sha256,
                    stages: t
                        .stages
                        .iter()
                        .map(|c| StageReport {
                            layers: c.shard.range,
                            peer: c.peer.to_string(),
                            input_sha256: c.input_sha256,
                            output_sha256: c.output_sha256,
                            bytes_sent: c.bytes_sent,
                            bytes_received: c.bytes_received,
                            latency_micros: c.latency_micros,
                            compute_micros: c.compute_micros,
                        })
                        .collect(),
                    head_sha256: t.head_sha256,
                    elapsed_micros: t.elapsed_micros,
                })
                .collect(),
            failovers: failovers.iter().map(failover_report).collect(),
            output,
            elapsed_micros: started.elapsed().as_micros() as u64,
            metrics: self.metrics(),
        }
    }
}
