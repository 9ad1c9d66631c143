//! A worker's part in the life of a job: it watches its node (gRPC `WatchAssignments`, a
//! stream of its open jobs at every block) for
//! jobs assigned to it, runs the model, proves where the model requires it, sends
//! `CommitResult`, and once the commit phase closes, `RevealResult`.
//!
//! What it has computed and committed is written to its state file before the
//! commitment is broadcast, so a restarted worker reveals what it committed and
//! never commits twice with different outputs (the ledger refuses a second
//! commitment anyway). A transaction that did not make it into a block is sent
//! again with the same bytes of commitment.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};
use ed25519_dalek::SigningKey;
use prost::Message;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;
use tracing::{debug, info, warn};
use vichain_consensus::{
    Address, FIXED_POINT_ONE, TxError, output_fingerprint, result_commitment, sign_tx,
};
use vichain_inference::{GenerationParams, SentenceEmbedder, TextGenerator};
use vichain_proto::v1::{
    self as pb, job_service_client::JobServiceClient, node_service_client::NodeServiceClient,
    tx_body::Action,
};
use vichain_zk::{
    InferencePrivate, JobId, OutputMode, ProvingKey, PublicOutput, QuantizedMlp, Salt, WeightMode,
};

use vichain_validator::tasks::Shutdown;

/// What a worker computed for a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed {
    pub output: pb::JobOutput,
    pub proof: Option<pb::SubmitProof>,
    pub stages: Vec<pb::Stage>,
}

/// Runs one model for jobs.
pub trait Executor: Send + Sync + 'static {
    fn execute(&self, job: &pb::Job) -> Result<Executed>;
}

/// The integer digits MLP, with Groth16 proofs when given a proving key.
pub struct DigitsExecutor {
    pub model: Arc<QuantizedMlp>,
    pub proving: Option<(Arc<ProvingKey<vichain_zk::Bn254>>, WeightMode, OutputMode)>,
}

impl Executor for DigitsExecutor {
    fn execute(&self, job: &pb::Job) -> Result<Executed> {
        let input: Vec<i8> = job.input.iter().map(|&b| b as i8).collect();
        let out = self
            .model
            .forward(&input)
            .with_context(|| format!("job {}: digits model", job.id))?;
        let Some((pk, mode, output_mode)) = &self.proving else {
            return Ok(Executed {
                output: pb::JobOutput {
                    values: vec![out.argmax as i64],
                    text: String::new(),
                },
                proof: None,
                stages: Vec::new(),
            });
        };
        let mut salt = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let proving_started = std::time::Instant::now();
        let (public, proof) = vichain_zk::prove_inference(
            pk,
            self.model.clone(),
            *mode,
            *output_mode,
            InferencePrivate {
                input,
                input_salt: Salt(salt),
                output_salt: Salt::default(),
            },
            JobId::from_u64(job.id),
            &mut rand::rngs::OsRng,
        )
        .with_context(|| format!("job {}: proving", job.id))?;
        vichain_validator::metrics::zk_proved(proving_started.elapsed());
        use pb::inference_output::Value;
        let (values, value) = match public.output {
            PublicOutput::Argmax(i) => (vec![i64::from(i)], Value::Argmax(i)),
            PublicOutput::Logits(l) => (l.clone(), Value::Logits(pb::Logits { values: l })),
            PublicOutput::Commitment(_) => bail!("committed outputs cannot be revealed as values"),
        };
        Ok(Executed {
            output: pb::JobOutput {
                values,
                text: String::new(),
            },
            proof: Some(pb::SubmitProof {
                job_id: job.id,
                proof,
                input_commitment: public.input_commitment.to_bytes().to_vec(),
                output: Some(pb::InferenceOutput { value: Some(value) }),
                input_salt: salt.to_vec(),
            }),
            stages: Vec::new(),
        })
    }
}

/// A float output (an embedding) in the ledger's fixed point (1e6 = 1.0).
fn fixed_point(values: &[f32]) -> Vec<i64> {
    values
        .iter()
        .map(|&x| (f64::from(x) * FIXED_POINT_ONE as f64).round() as i64)
        .collect()
}

/// The HPKE key at `path`, created (0600, never overwritten) on first use.
pub fn load_or_create_encryption_key(path: &Path) -> Result<vichain_tee::EncryptionKey> {
    if path.exists() {
        return Ok(vichain_tee::EncryptionKey::load(path)?);
    }
    let key = vichain_tee::EncryptionKey::generate();
    key.save(path)?;
    Ok(key)
}

/// Sentence embeddings; the output is the embedding in fixed point (1e6 = 1.0).
pub struct EmbedExecutor(pub Arc<SentenceEmbedder>);

impl Executor for EmbedExecutor {
    fn execute(&self, job: &pb::Job) -> Result<Executed> {
        let text = std::str::from_utf8(&job.input)
            .with_context(|| format!("job {}: the input is not UTF-8 text", job.id))?;
        let embedding = self.0.embed(text)?;
        Ok(Executed {
            output: pb::JobOutput {
                values: fixed_point(&embedding),
                text: String::new(),
            },
            proof: None,
            stages: Vec::new(),
        })
    }
}

/// Greedy chat generation; the output is the generated token ids and text.
pub struct GenerateExecutor {
    pub generator: Mutex<TextGenerator>,
    pub max_new_tokens: usize,
}

impl Executor for GenerateExecutor {
    fn execute(&self, job: &pb::Job) -> Result<Executed> {
        let text = std::str::from_utf8(&job.input)
            .with_context(|| format!("job {}: the input is not UTF-8 text", job.id))?;
        let params = GenerationParams {
            max_new_tokens: self.max_new_tokens,
            ..GenerationParams::default()
        };
        let g = self
            .generator
            .lock()
            .map_err(|_| anyhow!("generator poisoned"))?
            .chat(job.id, text, &params)?;
        vichain_validator::metrics::inference_tokens(&job.model_id, g.tokens.len() as u64);
        Ok(Executed {
            output: pb::JobOutput {
                values: g.tokens.iter().map(|&t| i64::from(t)).collect(),
                text: g.text,
            },
            proof: None,
            stages: Vec::new(),
        })
    }
}

/// Runs a split model as the orchestrator of a pipeline through the worker network
/// (the client side of `vichain infer`); the reveal lists every stage with its
/// operator (from the chain's worker registry, by peer id) and a digest of the
/// activations it received and emitted over the whole job, so that redundant
/// pipelines can be compared stage by stage.
pub struct PipelineExecutor {
    manifest: PathBuf,
    bootstrap: Vec<vichain_split::Multiaddr>,
    max_new_tokens: usize,
    chain: String,
    handle: tokio::runtime::Handle,
}

impl PipelineExecutor {
    pub fn new(
        manifest: PathBuf,
        bootstrap: Vec<vichain_split::Multiaddr>,
        max_new_tokens: usize,
        chain: String,
    ) -> Result<Self> {
        vichain_inference::ModelManifest::load(&manifest)?;
        Ok(Self {
            manifest,
            bootstrap,
            max_new_tokens,
            chain,
            handle: tokio::runtime::Handle::current(),
        })
    }
}

/// sha256 over a sequence of digests, in order.
fn digest_of(hashes: impl Iterator<Item = vichain_inference::Fingerprint>) -> Vec<u8> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for x in hashes {
        h.update(x.0);
    }
    h.finalize().to_vec()
}

impl Executor for PipelineExecutor {
    fn execute(&self, job: &pb::Job) -> Result<Executed> {
        let text = std::str::from_utf8(&job.input)
            .with_context(|| format!("job {}: the input is not UTF-8 text", job.id))?;
        let args = crate::infer::InferJob::new(
            self.manifest.clone(),
            text.to_owned(),
            self.bootstrap.clone(),
            self.max_new_tokens,
        );
        let chain = self.chain.clone();
        let (summary, workers) = self.handle.block_on(async move {
            let summary = crate::infer::run(&args, |_| {}).await?;
            let workers = NodeServiceClient::connect(chain)
                .await?
                .list_workers(pb::ListWorkersRequest {})
                .await?
                .into_inner()
                .workers;
            anyhow::Ok((summary, workers))
        })?;
        let (output, stages) = pipeline_result(&summary.report, &workers)?;
        Ok(Executed {
            output,
            proof: None,
            stages,
        })
    }
}

/// The output (in the ledger's fixed point) and the stages (operator from the chain's
/// worker registry by peer id, or zero when the peer is not registered; digests of
/// every activation each stage received and emitted) of a pipeline run.
pub fn pipeline_result(
    report: &vichain_split::InferReport,
    workers: &[pb::Worker],
) -> Result<(pb::JobOutput, Vec<pb::Stage>)> {
    let output = match &report.output {
        vichain_split::InferOutput::Embedding { values } => pb::JobOutput {
            values: fixed_point(values),
            text: String::new(),
        },
        vichain_split::InferOutput::Text { tokens, text, .. } => pb::JobOutput {
            values: tokens.iter().map(|&t| i64::from(t)).collect(),
            text: text.clone(),
        },
        // The class, as the digits executor reports it, so that both agree on a job.
        vichain_split::InferOutput::Logits { argmax, .. } => pb::JobOutput {
            values: vec![i64::try_from(*argmax).context("argmax")?],
            text: String::new(),
        },
    };
    let mut stages = Vec::with_capacity(report.route.len());
    for (i, r) in report.route.iter().enumerate() {
        let operator = workers
            .iter()
            .find(|w| w.peer_id == r.peer)
            .map_or(vec![0; 20], |w| w.operator.clone());
        stages.push(pb::Stage {
            operator,
            start_layer: u32::try_from(r.layers.start)
                .with_context(|| format!("route layers {}", r.layers))?,
            end_layer: u32::try_from(r.layers.end)
                .with_context(|| format!("route layers {}", r.layers))?,
            input_hash: digest_of(
                report
                    .steps
                    .iter()
                    .filter_map(|s| s.stages.get(i).map(|x| x.input_sha256)),
            ),
            output_hash: digest_of(
                report
                    .steps
                    .iter()
                    .filter_map(|s| s.stages.get(i).map(|x| x.output_sha256)),
            ),
        });
    }
    Ok((output, stages))
}

macro_rules! opaque_debug {
    ($($t:ty),*) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t)).finish_non_exhaustive()
            }
        }
    )*};
}
opaque_debug!(
    DigitsExecutor,
    EmbedExecutor,
    GenerateExecutor,
    PipelineExecutor,
    RunnerConfig,
    Runner
);

/// How a worker runs.
#[derive(Clone)]
pub struct RunnerConfig {
    pub name: String,
    /// gRPC endpoint of its node, e.g. `http://127.0.0.1:9090`.
    pub grpc: String,
    pub key: SigningKey,
    pub chain_id: String,
    /// Where commitments in flight are remembered.
    pub state_file: PathBuf,
    pub poll: Duration,
    pub fee: u64,
    pub executors: BTreeMap<String, Arc<dyn Executor>>,
    /// The HPKE key the worker's attestation binds: opens sealed job inputs.
    pub encryption_key: Option<Arc<vichain_tee::EncryptionKey>>,
}

/// A job this worker computed: everything needed to commit and reveal it again.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct Pending {
    salt: String,
    /// Encoded `RevealResult` (output, salt, proof, stages).
    reveal: String,
    commit_sent: u32,
    reveal_sent: u32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RunnerState {
    jobs: BTreeMap<u64, Pending>,
}

/// Updates (blocks) before a sent transaction that has not landed is sent again.
const RESEND_AFTER_POLLS: u32 = 20;

pub struct Runner {
    cfg: RunnerConfig,
    address: Address,
    jobs: JobServiceClient<Channel>,
    node: NodeServiceClient<Channel>,
    state: RunnerState,
    next_nonce: Option<u64>,
    polls_since: BTreeMap<u64, u32>,
}

impl Runner {
    pub async fn connect(cfg: RunnerConfig) -> Result<Self> {
        let channel = Channel::from_shared(cfg.grpc.clone())
            .with_context(|| format!("bad gRPC address {}", cfg.grpc))?
            .connect_lazy();
        let state = match std::fs::read(&cfg.state_file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("reading {}", cfg.state_file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RunnerState::default(),
            Err(e) => return Err(e).context(format!("reading {}", cfg.state_file.display())),
        };
        Ok(Self {
            address: Address::from_public_key(&cfg.key.verifying_key()),
            jobs: JobServiceClient::new(channel.clone()),
            node: NodeServiceClient::new(channel),
            cfg,
            state,
            next_nonce: None,
            polls_since: BTreeMap::new(),
        })
    }

    pub fn address(&self) -> Address {
        self.address
    }

    fn save(&self) -> Result<()> {
        let tmp = self.cfg.state_file.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&self.state)?)?;
        std::fs::rename(&tmp, &self.cfg.state_file)?;
        Ok(())
    }

    async fn nonce(&mut self) -> Result<u64> {
        if let Some(n) = self.next_nonce {
            return Ok(n);
        }
        let r = self
            .node
            .query(pb::QueryRequest {
                target: Some(pb::query_request::Target::Account(self.address.to_string())),
                height: 0,
            })
            .await?
            .into_inner();
        let n = if r.found {
            pb::Account::decode(r.value.as_slice())?.nonce
        } else {
            0
        };
        self.next_nonce = Some(n);
        Ok(n)
    }

    /// Signs and broadcasts `action`; Ok(false) when the ledger refused it.
    async fn send(&mut self, action: Action) -> Result<bool> {
        let nonce = self.nonce().await?;
        let kind = vichain_consensus::action_kind(&action);
        let tx = sign_tx(
            &self.cfg.key,
            &self.cfg.chain_id,
            nonce,
            self.cfg.fee,
            action,
        );
        let r = self
            .node
            .broadcast_tx(pb::BroadcastTxRequest { tx })
            .await?
            .into_inner();
        if r.code == 0 {
            self.next_nonce = Some(nonce + 1);
            return Ok(true);
        }
        let nonce_codes = [
            TxError::NonceReplayed {
                address: String::new(),
                expected: 0,
                got: 0,
            }
            .code(),
            TxError::NonceGap {
                address: String::new(),
                expected: 0,
                got: 0,
            }
            .code(),
        ];
        if nonce_codes.contains(&r.code) {
            self.next_nonce = None;
        }
        warn!(worker = %self.cfg.name, kind, code = r.code, log = %r.log, "transaction refused");
        Ok(false)
    }

    /// One pass over this worker's open jobs, fetched with ListJobs.
    pub async fn poll_once(&mut self) -> Result<()> {
        let open = self
            .jobs
            .list_jobs(pb::ListJobsRequest {
                worker: self.address.to_string(),
                limit: 1000,
            })
            .await?
            .into_inner()
            .jobs;
        self.process(open).await
    }

    /// Acts on this worker's open jobs: compute, commit, reveal; forgets closed ones.
    async fn process(&mut self, open: Vec<pb::Job>) -> Result<()> {
        let open_ids: Vec<u64> = open.iter().map(|j| j.id).collect();
        let before = self.state.jobs.len();
        self.state.jobs.retain(|id, _| open_ids.contains(id));
        self.polls_since.retain(|id, _| open_ids.contains(id));
        if before != self.state.jobs.len() {
            self.save()?;
        }
        for job in open {
            let span = tracing::info_span!("job", id = job.id, model = %job.model_id);
            if let Err(e) = tracing::Instrument::instrument(self.handle(&job), span).await {
                warn!(worker = %self.cfg.name, job = job.id, "{e:#}");
            }
        }
        Ok(())
    }

    async fn handle(&mut self, job: &pb::Job) -> Result<()> {
        let Some(mine) = job
            .assignments
            .iter()
            .find(|a| a.round == job.round && a.operator == self.address.as_bytes())
            .cloned()
        else {
            return Ok(());
        };
        let assigned = job.status == pb::JobStatus::Assigned as i32;
        let revealing = job.status == pb::JobStatus::Revealing as i32;
        if assigned && mine.commitment.is_empty() {
            if !self.state.jobs.contains_key(&job.id) {
                if job.privacy == pb::PrivacyMode::Sealed as i32 {
                    if mine.sealed_input.is_empty() {
                        // The client seals the input once it sees the assignment.
                        return Ok(());
                    }
                    let mut opened = job.clone();
                    opened.input = self.open_sealed(job, &mine.sealed_input)?;
                    self.compute(&opened).await?;
                } else {
                    self.compute(job).await?;
                }
            }
            let polls = self.polls_since.entry(job.id).or_insert(0);
            *polls += 1;
            let pending = self.state.jobs.get(&job.id).cloned().unwrap_or_default();
            if pending.commit_sent == 0 || *polls > RESEND_AFTER_POLLS {
                self.polls_since.insert(job.id, 0);
                if pending.commit_sent > 0 {
                    self.next_nonce = None;
                }
                let reveal = decode_reveal(&pending)?;
                let salt = salt_of(&pending)?;
                let fp = output_fingerprint(&reveal.output.unwrap_or_default(), &reveal.stages);
                let commitment = result_commitment(&fp, &salt, &self.address).to_vec();
                let sent = self
                    .send(Action::CommitResult(pb::CommitResult {
                        job_id: job.id,
                        commitment,
                    }))
                    .await?;
                if let Some(p) = self.state.jobs.get_mut(&job.id) {
                    p.commit_sent += u32::from(sent);
                }
                self.save()?;
                debug!(worker = %self.cfg.name, job = job.id, sent, "commit");
            }
        } else if revealing && !mine.commitment.is_empty() && !mine.revealed {
            let Some(pending) = self.state.jobs.get(&job.id).cloned() else {
                warn!(worker = %self.cfg.name, job = job.id, "committed, but this worker's state file has no record of the output: cannot reveal");
                return Ok(());
            };
            let polls = self.polls_since.entry(job.id).or_insert(0);
            *polls += 1;
            if pending.reveal_sent == 0 || *polls > RESEND_AFTER_POLLS {
                self.polls_since.insert(job.id, 0);
                if pending.reveal_sent > 0 {
                    self.next_nonce = None;
                }
                let sent = self
                    .send(Action::RevealResult(decode_reveal(&pending)?))
                    .await?;
                if let Some(p) = self.state.jobs.get_mut(&job.id) {
                    p.reveal_sent += u32::from(sent);
                }
                self.save()?;
                debug!(worker = %self.cfg.name, job = job.id, sent, "reveal");
            }
        }
        Ok(())
    }

    /// Opens this worker's copy of a sealed input and checks it is the job's input.
    fn open_sealed(&self, job: &pb::Job, sealed: &[u8]) -> Result<Vec<u8>> {
        use sha2::Digest;
        let key = self.cfg.encryption_key.as_ref().with_context(|| {
            format!(
                "job {} is sealed and this worker has no encryption key",
                job.id
            )
        })?;
        let sealed = vichain_tee::SealedInput::decode(sealed)?;
        let ctx = vichain_tee::SealedInputContext {
            chain_id: &self.cfg.chain_id,
            job_id: job.id,
            worker: self.address.as_bytes(),
        };
        let input = ctx.open(key, &sealed)?;
        anyhow::ensure!(
            sha2::Sha256::digest(&input)[..] == job.input_hash[..],
            "job {}: the opened input does not hash to the job's input hash",
            job.id
        );
        Ok(input)
    }

    async fn compute(&mut self, job: &pb::Job) -> Result<()> {
        let executor = self
            .cfg
            .executors
            .get(&job.model_id)
            .cloned()
            .with_context(|| format!("this worker does not run model {}", job.model_id))?;
        let j = job.clone();
        let started = std::time::Instant::now();
        let executed = tokio::task::spawn_blocking(move || executor.execute(&j)).await??;
        vichain_validator::metrics::inference_forward(&job.model_id, 0, started.elapsed());
        info!(worker = %self.cfg.name, job = job.id, model = %job.model_id, ms = started.elapsed().as_millis() as u64, proof = executed.proof.is_some(), "computed");
        let mut salt = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let reveal = pb::RevealResult {
            job_id: job.id,
            output: Some(executed.output),
            salt: salt.to_vec(),
            proof: executed.proof,
            stages: executed.stages,
        };
        self.state.jobs.insert(
            job.id,
            Pending {
                salt: hex::encode(salt),
                reveal: hex::encode(reveal.encode_to_vec()),
                commit_sent: 0,
                reveal_sent: 0,
            },
        );
        // Remembered before anything is sent.
        self.save()
    }

    /// Follows the node's WatchAssignments stream (this worker's open jobs at every
    /// block) until shutdown; reconnects after `poll` when the stream ends or fails.
    pub async fn run(mut self, shutdown: Shutdown) -> Result<()> {
        info!(worker = %self.cfg.name, address = %self.address, "worker watching for jobs");
        loop {
            let stream = self
                .jobs
                .watch_assignments(pb::ListJobsRequest {
                    worker: self.address.to_string(),
                    limit: 1000,
                })
                .await;
            match stream {
                Ok(stream) => {
                    let mut stream = stream.into_inner();
                    loop {
                        tokio::select! {
                            _ = shutdown.wait() => return Ok(()),
                            update = stream.message() => match update {
                                Ok(Some(update)) => {
                                    if let Err(e) = self.process(update.jobs).await {
                                        debug!(worker = %self.cfg.name, "jobs: {e:#}");
                                    }
                                }
                                Ok(None) => break,
                                Err(e) => {
                                    debug!(worker = %self.cfg.name, "assignment stream: {e}");
                                    break;
                                }
                            },
                        }
                    }
                }
                Err(e) => debug!(worker = %self.cfg.name, "cannot watch assignments: {e}"),
            }
            tokio::select! {
                _ = shutdown.wait() => return Ok(()),
                _ = tokio::time::sleep(self.cfg.poll) => {}
            }
        }
    }
}

fn decode_reveal(p: &Pending) -> Result<pb::RevealResult> {
    Ok(pb::RevealResult::decode(
        hex::decode(&p.reveal)?.as_slice(),
    )?)
}

fn salt_of(p: &Pending) -> Result<[u8; 32]> {
    hex::decode(&p.salt)?
        .try_into()
        .map_err(|_| anyhow!("bad salt in worker state"))
}
