//! `vichain infer`: one job through the worker network as a client, printed.
//!
//! The client keeps the model's embedding and head (the manifest must be split with
//! `--client-keeps-ends`), so workers see only intermediate activations. It prints the
//! route (the worker of each stage), every stage's activation hashes (the sha256 of what it
//! received and emitted, which chain from the client's embedding to its head), failovers,
//! and the output. `--local` runs the same shards, or the whole model, in this process
//! instead: the single-process baseline of the benchmarks.

use std::{io::Write, path::PathBuf, time::Duration};

use anyhow::{Result, bail};
use vichain_split::{InferInput, InferProgress, Multiaddr};
use vichain_worker::{
    infer::{InferJob, InferSummary, OutputSummary},
    serve::read_allow_list,
};

/// `vichain infer` flags (`--json` is the CLI's global flag).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct InferArgs {
    /// The split model's manifest.json; the client's shard (embedding and head),
    /// config and tokenizer are read next to it.
    #[arg(long)]
    pub model: PathBuf,
    /// A sentence to embed (BERT) or a chat message to answer (Llama).
    #[arg(long, conflicts_with = "input", required_unless_present = "input")]
    pub text: Option<String>,
    /// A file holding that text.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// A worker to join the network through (repeatable).
    #[arg(long, required_unless_present = "local")]
    pub bootstrap: Vec<Multiaddr>,
    /// Most tokens to generate (Llama models).
    #[arg(long, default_value_t = 32)]
    pub max_tokens: usize,
    /// Use only the workers listed in FILE (one peer id a line, `#` comments): the
    /// hook the ledger's worker registry will feed.
    #[arg(long)]
    pub allow_peers: Option<PathBuf>,
    /// How long a stage may take to answer before it is replaced.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// How long to look for holders of every stage.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub discovery_timeout: Duration,
    /// Run the job N times on one connection (for timing); the report is the last run's.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Run in this process, without the network (the single-process baseline): every
    /// shard of --model in sequence, or the whole model when --model is a Hugging Face
    /// BERT directory or a .gguf file.
    #[arg(long, conflicts_with_all = ["bootstrap", "allow_peers"])]
    pub local: bool,
}

impl InferArgs {
    /// The job these flags describe (the input file read, bounded; the allow list parsed).
    pub(crate) fn job(&self) -> Result<InferJob> {
        let input = match (&self.text, &self.input) {
            (Some(t), None) => InferInput::Text(t.clone()),
            (None, Some(p)) => InferInput::File(p.clone()),
            _ => bail!("give one of --text or --input"),
        };
        Ok(InferJob {
            model: self.model.clone(),
            text: input.read()?,
            bootstrap: self.bootstrap.clone(),
            max_tokens: self.max_tokens,
            allow_peers: self
                .allow_peers
                .as_deref()
                .map(read_allow_list)
                .transpose()?,
            timeout: self.timeout,
            discovery_timeout: self.discovery_timeout,
            repeat: self.repeat,
            local: self.local,
        })
    }
}

/// Runs `vichain infer` and prints its result (JSON with `json`). Progress (the route,
/// each token, failovers) goes to stderr as it happens.
pub(crate) async fn main(args: &InferArgs, json: bool) -> Result<()> {
    let summary = vichain_worker::infer::run(&args.job()?, |p| {
        let line = progress_line(&p);
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    })
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_text(&summary);
    }
    Ok(())
}

fn progress_line(p: &InferProgress) -> String {
    match p {
        InferProgress::Route(route) => {
            let stages: Vec<String> = route
                .iter()
                .map(|r| format!("{} -> {}", r.layers, r.peer))
                .collect();
            format!("route: {}", stages.join(", "))
        }
        InferProgress::Token {
            index,
            token,
            route,
        } => {
            let peers: Vec<&str> = route.iter().map(|r| r.peer.as_str()).collect();
            format!("token {index}: {token} via {}", peers.join(" "))
        }
        InferProgress::Failover(f) => format!(
            "failover {}: {} -> {} ({} steps replayed in {} us): {}",
            f.layers, f.from, f.to, f.replayed_steps, f.recovery_micros, f.reason
        ),
    }
}

fn print_text(s: &InferSummary) {
    let r = &s.report;
    println!("model {} (client {})", r.model_id, r.client);
    for (i, stage) in r.route.iter().enumerate() {
        println!("stage {i}: layers {} on {}", stage.layers, stage.peer);
    }
    for step in &r.steps {
        println!(
            "step at position {} ({} tokens, {} us): embedding {}",
            step.position, step.tokens, step.elapsed_micros, step.embedding_sha256
        );
        for st in &step.stages {
            println!(
                "  layers {} on {}: in {} out {} ({} B sent, {} B back, {} us, {} us compute)",
                st.layers,
                st.peer,
                st.input_sha256,
                st.output_sha256,
                st.bytes_sent,
                st.bytes_received,
                st.latency_micros,
                st.compute_micros
            );
        }
        println!("  head {}", step.head_sha256);
    }
    for f in &r.failovers {
        println!(
            "failover layers {}: {} -> {} ({} steps replayed, {} us): {}",
            f.layers, f.from, f.to, f.replayed_steps, f.recovery_micros, f.reason
        );
    }
    match &s.summary {
        OutputSummary::Embedding {
            dims,
            norm,
            first,
            values_sha256,
        } => println!(
            "embedding: {dims} dims, norm {norm:.6}, first {first:?}, sha256 {values_sha256}"
        ),
        OutputSummary::Text { tokens, text } => println!("generated {tokens} tokens:\n{text}"),
        OutputSummary::Logits { argmax, values } => println!("class {argmax}, logits {values:?}"),
    }
    if s.runs.len() > 1 {
        let mut t: Vec<u64> = s.runs.iter().map(|r| r.elapsed_micros).collect();
        t.sort_unstable();
        println!("{} runs, median {} us", t.len(), t[t.len() / 2]);
    }
}
