//! Runs one job through the worker network as a client and prints the route, each stage's
//! activation hashes, failovers and the output.
//!
//! `cargo run -p vichain-split --example infer -- --model MANIFEST (--text STR | --input
//! FILE) --bootstrap ADDR [--max-tokens N] [--json]` (the flags of `vichain infer`).

use anyhow::{Context, bail};
use vichain_split::{InferInput, InferOutput, InferRequest, infer};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let (mut model, mut input, mut max_tokens, mut json) = (None, None, None, false);
    let mut bootstrap = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => model = Some(value()?.into()),
            "--text" => input = Some(InferInput::Text(value()?)),
            "--input" => input = Some(InferInput::File(value()?.into())),
            "--bootstrap" => bootstrap.push(value()?.parse()?),
            "--max-tokens" => max_tokens = Some(value()?.parse()?),
            "--json" => json = true,
            other => bail!("unknown flag {other}"),
        }
    }
    if bootstrap.is_empty() {
        bail!("--bootstrap is required");
    }
    let mut request = InferRequest::new(
        model.context("--model is required")?,
        input.context("--text or --input is required")?,
        bootstrap,
    );
    if let Some(n) = max_tokens {
        request.max_tokens = n;
    }
    let report = infer(request).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("model {} (client {})", report.model_id, report.client);
    for (i, r) in report.route.iter().enumerate() {
        println!("stage {i}: layers {} on {}", r.layers, r.peer);
    }
    for step in &report.steps {
        println!(
            "step at {} ({} tokens): embed {}",
            step.position, step.tokens, step.embedding_sha256
        );
        for s in &step.stages {
            println!(
                "  {} on {}: in {} out {} ({} B out, {} B back, {} us)",
                s.layers,
                s.peer,
                s.input_sha256,
                s.output_sha256,
                s.bytes_sent,
                s.bytes_received,
                s.latency_micros
            );
        }
        println!("  head {}", step.head_sha256);
    }
    for f in &report.failovers {
        println!(
            "failover {}: {} -> {} after {} ({} steps replayed, {} us)",
            f.layers, f.from, f.to, f.reason, f.replayed_steps, f.recovery_micros
        );
    }
    match &report.output {
        InferOutput::Embedding { values } => println!("embedding ({}): {values:?}", values.len()),
        InferOutput::Text { text, .. } => println!("{text}"),
    }
    Ok(())
}
