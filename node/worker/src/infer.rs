//! One job through the worker network as a client, with typed results: what `vichain
//! infer` prints and what the worker's pipeline executor records on chain.
//!
//! The client keeps the model's embedding and head (the manifest must be split with
//! `--client-keeps-ends`), so workers see only intermediate activations. The summary holds
//! the route (the worker of each stage), every stage's activation hashes (the sha256 of
//! what it received and emitted, which chain from the client's embedding to its head),
//! failovers, and the output. With `local`, the same shards, or the whole model, run in
//! this process instead: the single-process baseline of the benchmarks.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;
use sha2::{Digest, Sha256};
use vichain_inference::{
    Activation, BertConfig, GenerationParams, KvCacheConfig, MANIFEST_FILE, ModelFamily,
    ModelManifest, Pipeline, SENTENCE_BERT_CONFIG, Sampler, SentenceEmbedder, TextGenerator,
    bert_max_seq_length, bert_tokenizer,
};
use vichain_split::{
    AllowList, ClientConfig, InferOutput, InferProgress, InferReport, Multiaddr, PeerId,
    SplitClient,
};

/// Values of an embedding printed in the summary.
const SUMMARY_VALUES: usize = 8;
/// Most runs of one `--repeat`.
const MAX_REPEAT: usize = 10_000;

/// One job for the worker network (or, with `local`, for this process).
#[derive(Debug, Clone)]
pub struct InferJob {
    /// The split model's manifest.json; the client's shard (embedding and head),
    /// config and tokenizer are read next to it. With `local`, also a Hugging Face
    /// BERT directory or a .gguf file (the whole model).
    pub model: PathBuf,
    /// A sentence to embed (BERT) or a chat message to answer (Llama).
    pub text: String,
    /// Workers to join the network through.
    pub bootstrap: Vec<Multiaddr>,
    /// Most tokens to generate (Llama models).
    pub max_tokens: usize,
    /// Use only these workers (`None`: any that serves the model).
    pub allow_peers: Option<BTreeSet<PeerId>>,
    /// How long a stage may take to answer before it is replaced.
    pub timeout: Duration,
    /// How long to look for holders of every stage.
    pub discovery_timeout: Duration,
    /// Runs on one connection (for timing); the report is the last run's.
    pub repeat: usize,
    /// Run in this process, without the network (the single-process baseline).
    pub local: bool,
}

impl InferJob {
    /// A job of `text` for `model` through the workers at `bootstrap`, run once with the
    /// default timeouts (30 s a stage, 20 s to discover the stages).
    pub fn new(model: PathBuf, text: String, bootstrap: Vec<Multiaddr>, max_tokens: usize) -> Self {
        Self {
            model,
            text,
            bootstrap,
            max_tokens,
            allow_peers: None,
            timeout: Duration::from_secs(30),
            discovery_timeout: Duration::from_secs(20),
            repeat: 1,
            local: false,
        }
    }
}

/// What `vichain infer --json` prints: the last run's report, a summary of its output and
/// the timing of every run.
#[derive(Debug, Clone, Serialize)]
pub struct InferSummary {
    /// Route, commitments, failovers and output of the last run.
    #[serde(flatten)]
    pub report: InferReport,
    /// The output in brief.
    pub summary: OutputSummary,
    /// Timing of each run.
    pub runs: Vec<RunTiming>,
    /// Time to load the client's shard and join the network, microseconds.
    pub connect_micros: u64,
    /// Whether the shards ran in this process (`--local`).
    pub local: bool,
}

/// The output of a job in brief.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OutputSummary {
    /// A sentence embedding.
    Embedding {
        /// Its width.
        dims: usize,
        /// Its L2 norm.
        norm: f64,
        /// Its first values.
        first: Vec<f32>,
        /// sha256 of its little-endian f32 bytes (equal iff bit-identical).
        values_sha256: String,
    },
    /// Generated text.
    Text {
        /// Tokens generated.
        tokens: usize,
        /// The text.
        text: String,
    },
    /// An integer MLP's output.
    Logits {
        /// The predicted class (first index of the largest logit).
        argmax: usize,
        /// The logits.
        values: Vec<i64>,
    },
}

/// Timing of one run.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct RunTiming {
    /// Wall time of the job, microseconds.
    pub elapsed_micros: u64,
    /// The first step (the whole input; the prompt's prefill for generation), microseconds.
    pub first_step_micros: u64,
    /// Steps after the first (one per generated token after the first).
    pub later_steps: usize,
    /// Their total time, microseconds.
    pub later_steps_micros: u64,
}

impl RunTiming {
    fn of(report: &InferReport) -> Self {
        let first = report.steps.first().map_or(0, |s| s.elapsed_micros);
        let later = report.steps.iter().skip(1);
        Self {
            elapsed_micros: report.elapsed_micros,
            first_step_micros: first,
            later_steps: later.clone().count(),
            later_steps_micros: later.map(|s| s.elapsed_micros).sum(),
        }
    }
}

/// sha256 of the little-endian bytes of `values`.
pub fn f32_sha256(values: &[f32]) -> String {
    let mut h = Sha256::new();
    for v in values {
        h.update(v.to_le_bytes());
    }
    hex::encode(h.finalize())
}

fn summarize(output: &InferOutput) -> OutputSummary {
    match output {
        InferOutput::Embedding { values } => OutputSummary::Embedding {
            dims: values.len(),
            norm: values
                .iter()
                .map(|v| f64::from(*v) * f64::from(*v))
                .sum::<f64>()
                .sqrt(),
            first: values.iter().take(SUMMARY_VALUES).copied().collect(),
            values_sha256: f32_sha256(values),
        },
        InferOutput::Text { tokens, text, .. } => OutputSummary::Text {
            tokens: tokens.len(),
            text: text.clone(),
        },
        InferOutput::Logits { values, argmax } => OutputSummary::Logits {
            argmax: *argmax,
            values: values.clone(),
        },
    }
}

/// Runs the job (`args.repeat` times) and returns the summary; `progress` sees the route,
/// each token and each failover as they happen.
pub async fn run(args: &InferJob, mut progress: impl FnMut(InferProgress)) -> Result<InferSummary> {
    ensure!(
        (1..=MAX_REPEAT).contains(&args.repeat),
        "--repeat must be 1..={MAX_REPEAT}"
    );
    let text = &args.text;
    if args.local {
        return run_local(args, text);
    }
    let mut config = ClientConfig {
        discovery_timeout: args.discovery_timeout,
        ..ClientConfig::default()
    };
    config.network.bootstrap = args.bootstrap.clone();
    config.network.request_timeout = args.timeout;
    if let Some(peers) = &args.allow_peers {
        config.network.allow = AllowList::only(peers.clone());
    }
    let started = Instant::now();
    let mut client = SplitClient::connect(&args.model, config)
        .await
        .with_context(|| format!("joining the worker network for {}", args.model.display()))?;
    let connect_micros = started.elapsed().as_micros() as u64;
    let mut runs = Vec::with_capacity(args.repeat);
    let mut last = None;
    for _ in 0..args.repeat {
        let result = client.run(text, args.max_tokens, &mut progress).await;
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                client.node().shutdown().await;
                return Err(e.into());
            }
        };
        runs.push(RunTiming::of(&report));
        last = Some(report);
    }
    client.node().shutdown().await;
    let report = last.context("no run")?;
    Ok(InferSummary {
        summary: summarize(&report.output),
        report,
        runs,
        connect_micros,
        local: false,
    })
}

/// What `--local` runs: the shards of a manifest, or a whole model.
enum LocalModel {
    /// Every shard of a split BERT model, in sequence.
    BertShards {
        pipeline: Box<Pipeline>,
        tokenizer: Box<tokenizers::Tokenizer>,
    },
    /// A whole BERT model (a Hugging Face directory).
    BertWhole(Box<SentenceEmbedder>),
    /// A Llama model, whole (GGUF file) or as every shard of a split one.
    Llama(Box<TextGenerator>),
}

impl LocalModel {
    fn load(model: &Path) -> Result<(Self, String)> {
        let kv = KvCacheConfig::default();
        if model.is_dir() {
            let e = SentenceEmbedder::from_dir(model)?;
            return Ok((Self::BertWhole(Box::new(e)), model.display().to_string()));
        }
        if model.extension().is_some_and(|e| e == "gguf") {
            let g = TextGenerator::from_gguf(model, kv)?;
            return Ok((Self::Llama(Box::new(g)), model.display().to_string()));
        }
        ensure!(
            model.file_name().is_some_and(|n| n == MANIFEST_FILE),
            "--local runs a manifest named {MANIFEST_FILE}, a Hugging Face BERT directory or a \
             .gguf file, not {}",
            model.display()
        );
        let manifest = ModelManifest::load(model)?;
        let dir = model
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let loaded = match manifest.family {
            ModelFamily::Bert => {
                let source = dir.display().to_string();
                let cfg =
                    BertConfig::from_json(&manifest.read_file(&dir, "config.json")?, &source)?;
                let sbc = manifest
                    .files
                    .iter()
                    .any(|f| f.file == SENTENCE_BERT_CONFIG)
                    .then(|| manifest.read_file(&dir, SENTENCE_BERT_CONFIG))
                    .transpose()?;
                let max = bert_max_seq_length(&cfg, sbc.as_deref(), &source)?;
                Self::BertShards {
                    tokenizer: Box::new(bert_tokenizer(
                        &manifest.read_file(&dir, "tokenizer.json")?,
                        max,
                        &source,
                    )?),
                    pipeline: Box::new(Pipeline::load(&dir, kv)?),
                }
            }
            ModelFamily::Llama => Self::Llama(Box::new(TextGenerator::from_shards(&dir, kv)?)),
            ModelFamily::QuantizedMlp => bail!("vichain infer runs BERT and Llama models"),
        };
        Ok((loaded, manifest.model_id))
    }
}

/// The same job in this process, without the network: every shard of a manifest in
/// sequence, or the whole model.
fn run_local(args: &InferJob, text: &str) -> Result<InferSummary> {
    let started = Instant::now();
    let (mut model, model_id) = LocalModel::load(&args.model)?;
    let connect_micros = started.elapsed().as_micros() as u64;
    let mut runs = Vec::with_capacity(args.repeat);
    let mut last = None;
    for session in 0..args.repeat as u64 {
        let t = Instant::now();
        let (output, timing) = match &mut model {
            LocalModel::BertWhole(e) => {
                let values = e.embed(text)?;
                (InferOutput::Embedding { values }, None)
            }
            LocalModel::BertShards {
                pipeline,
                tokenizer,
            } => {
                let ids = tokenizer
                    .encode(text, true)
                    .map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?
                    .get_ids()
                    .to_vec();
                let out = pipeline.run(&Activation::tokens(0, 0, &ids)?)?;
                let values = out
                    .output
                    .as_f32()
                    .context("the pooled output is not f32")?
                    .to_vec();
                (InferOutput::Embedding { values }, None)
            }
            LocalModel::Llama(generator) => {
                let (output, first) = generate_local(generator, session, text, args.max_tokens)?;
                (output, Some(first))
            }
        };
        let micros = t.elapsed().as_micros() as u64;
        let later_steps = match &output {
            InferOutput::Text { tokens, .. } => tokens.len().saturating_sub(1),
            InferOutput::Embedding { .. } | InferOutput::Logits { .. } => 0,
        };
        let first_step_micros = timing.unwrap_or(micros);
        runs.push(RunTiming {
            elapsed_micros: micros,
            first_step_micros,
            later_steps,
            later_steps_micros: micros.saturating_sub(first_step_micros),
        });
        last = Some(output);
    }
    finish_local(model_id, last, runs, connect_micros)
}

/// Greedy generation step by step, as the split client runs it; returns the output and
/// the first step's time in microseconds.
fn generate_local(
    generator: &mut TextGenerator,
    session: u64,
    text: &str,
    max_tokens: usize,
) -> Result<(InferOutput, u64)> {
    let t = Instant::now();
    let prompt = generator.encode(&TextGenerator::chat_prompt(text))?;
    let params = GenerationParams {
        max_new_tokens: max_tokens,
        ..GenerationParams::default()
    };
    let mut sampler = Sampler::new(params.sampling)?;
    let mut tokens: Vec<u32> = Vec::new();
    let mut first_step_micros = 0;
    while tokens.len() < params.max_new_tokens {
        let (position, ids) = match tokens.last() {
            None => (0, prompt.clone()),
            Some(&last) => ((prompt.len() + tokens.len() - 1) as u32, vec![last]),
        };
        let logits = generator.step(session, position, &ids)?;
        let next = sampler.sample(&logits)?;
        if tokens.is_empty() {
            first_step_micros = t.elapsed().as_micros() as u64;
        }
        tokens.push(next);
        if next == generator.eos_token() {
            break;
        }
    }
    generator.end_session(session);
    let stopped_at_eos = tokens.last() == Some(&generator.eos_token());
    Ok((
        InferOutput::Text {
            text: generator.decode(&tokens)?,
            tokens,
            stopped_at_eos,
        },
        first_step_micros,
    ))
}

fn finish_local(
    model_id: String,
    output: Option<InferOutput>,
    runs: Vec<RunTiming>,
    connect_micros: u64,
) -> Result<InferSummary> {
    let output = output.context("no run")?;
    let elapsed_micros = runs.last().map_or(0, |r| r.elapsed_micros);
    Ok(InferSummary {
        summary: summarize(&output),
        report: InferReport {
            model_id,
            client: "local".into(),
            route: Vec::new(),
            steps: Vec::new(),
            failovers: Vec::new(),
            output,
            elapsed_micros,
            metrics: Default::default(),
        },
        runs,
        connect_micros,
        local: true,
    })
}
