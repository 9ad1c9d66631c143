//! `vichain`: the client CLI. Talks to a node's gRPC `NodeService`; query answers
//! are checked client-side against the app hash with their Merkle proofs.

mod infer;
mod jobs;
mod json;
mod keys;
mod query;
mod tx;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use vichain_proto::{
    json::{address_string, view},
    v1::{self as pb, node_service_client::NodeServiceClient},
};
use vichain_validator::{home::Home, keys::Keyring};

use crate::{infer::InferArgs, jobs::SubmitArgs, keys::KeysCmd, query::QueryCmd, tx::TxCmd};

#[derive(Debug, Parser)]
#[command(
    name = "vichain",
    version,
    about = "vichain client: keys, transactions and verifiable queries"
)]
pub(crate) struct Cli {
    /// gRPC address of a vichain node.
    #[arg(
        long,
        global = true,
        env = "VICHAIN_NODE",
        default_value = "http://127.0.0.1:9090"
    )]
    pub node: String,
    /// Directory holding keys/ (default ~/.vichain).
    #[arg(long, global = true, env = "VICHAIN_HOME")]
    pub home: Option<PathBuf>,
    /// Print JSON (snake_case keys) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Chain id, height and app hash of the node.
    Status,
    /// Manage account keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Sign and broadcast a transaction.
    #[command(subcommand)]
    Tx(TxCmd),
    /// Read state, verified against the app hash with a Merkle proof.
    #[command(subcommand)]
    Query(QueryCmd),
    /// List registered models.
    Models,
    /// List registered workers.
    Workers,
    /// Submit an inference job; with --wait, follow it to its verified result.
    Submit(SubmitArgs),
    /// Follow a job's status changes until it is finalized or failed.
    Watch { id: u64 },
    /// A job with its result, checked against the app hash with its Merkle proof.
    Job { id: u64 },
    /// Submit one job per registered demo model and print each verified result.
    Demo {
        #[arg(long, default_value = "dev")]
        from: String,
    },
    /// Run a split model through the worker network (libp2p) as a client: prints the
    /// route, each stage's activation hashes, failovers and the output.
    Infer(InferArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The split client computes while its libp2p swarm runs: give them threads.
    let mut runtime = if matches!(
        cli.command,
        Command::Infer(_) | Command::Submit(SubmitArgs { private: true, .. })
    ) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let result = runtime
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(cli)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

pub(crate) fn keyring(cli: &Cli) -> Keyring {
    Home::new(cli.home.clone().unwrap_or_else(Home::default_path)).keyring()
}

pub(crate) async fn client(cli: &Cli) -> Result<NodeServiceClient<tonic::transport::Channel>> {
    NodeServiceClient::connect(cli.node.clone())
        .await
        .with_context(|| {
            format!(
                "cannot reach a vichain node at {} (is `vichaind dev` running?)",
                cli.node
            )
        })
}

pub(crate) fn print(cli: &Cli, value: &Value, text: impl FnOnce() -> String) {
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        println!("{}", text());
    }
}

async fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Status => {
            let s = client(&cli)
                .await?
                .status(pb::StatusRequest {})
                .await?
                .into_inner();
            let v = json!({
                "chain_id": s.chain_id,
                "height": s.height,
                "app_hash": hex::encode(&s.app_hash),
                "block_time_ns": s.block_time_ns,
                "mode": s.mode,
                "mempool_size": s.mempool_size,
                "version": s.version,
            });
            print(&cli, &v, || {
                format!(
                    "chain id:  {}\nheight:    {}\napp hash:  {}\nmode:      {}\nmempool:   {}",
                    s.chain_id,
                    s.height,
                    hex::encode_upper(&s.app_hash),
                    s.mode,
                    s.mempool_size
                )
            });
        }
        Command::Keys(cmd) => keys::run(&cli, cmd)?,
        Command::Submit(args) => jobs::submit(&cli, args).await?,
        Command::Watch { id } => {
            let job = jobs::watch(&cli, *id, !cli.json).await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&json::job_json(&job))?);
            }
        }
        Command::Job { id } => {
            let job = query::get_verified_job(&cli, *id).await?;
            jobs::show_job(&cli, &job.0, Some(job.1)).await?;
        }
        Command::Demo { from } => jobs::demo(&cli, from).await?,
        Command::Tx(cmd) => tx::run(&cli, cmd).await?,
        Command::Query(cmd) => query::run(&cli, cmd).await?,
        Command::Models => {
            let r = client(&cli)
                .await?
                .list_models(pb::ListModelsRequest {})
                .await?
                .into_inner();
            let models: Vec<Value> = r.models.iter().map(view).collect();
            print(&cli, &json!({"height": r.height, "models": models}), || {
                if r.models.is_empty() {
                    return "no models registered".into();
                }
                r.models
                    .iter()
                    .map(|m| {
                        let p = m.policy.clone().unwrap_or_default();
                        format!(
                            "{}  family={} layers={} shards={} k={} quorum={} price={}",
                            m.model_id,
                            m.family,
                            m.total_layers,
                            m.shards.len(),
                            p.k,
                            p.quorum,
                            m.price
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Command::Infer(args) => infer::main(args, cli.json).await?,
        Command::Workers => {
            let r = client(&cli)
                .await?
                .list_workers(pb::ListWorkersRequest {})
                .await?
                .into_inner();
            let workers: Vec<Value> = r.workers.iter().map(view).collect();
            print(
                &cli,
                &json!({"height": r.height, "workers": workers}),
                || {
                    if r.workers.is_empty() {
                        return "no workers registered".into();
                    }
                    r.workers
                        .iter()
                        .map(worker_line)
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
        }
    }
    Ok(())
}

/// One worker in `vichain workers`' text: operator, peer, stake, reputation (a ratio)
/// and TEE evidence.
fn worker_line(w: &pb::Worker) -> String {
    let tee = match &w.attestation {
        None => "none".to_owned(),
        Some(a) => format!(
            "{}{} measurement={} tcb={} expires_at_height={} encryption_key={}",
            a.kind,
            if a.simulated { " (SIMULATED)" } else { "" },
            hex::encode(&a.measurement),
            a.tcb_status,
            a.expiry_height,
            hex::encode(&a.encryption_key)
        ),
    };
    format!(
        "{}  peer={} stake={} reputation={:.3} tee={}",
        address_string(&w.operator),
        w.peer_id,
        w.stake,
        w.reputation as f64 / vichain_consensus::REPUTATION_ONE as f64,
        tee
    )
}
