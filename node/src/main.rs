//! `vichaind`: the vichain node. The validator daemon (`init`, `start`, `dev`, `tee`,
//! `localnet` homes) comes from `vichain-validator`; with the `worker` feature (on by
//! default) the worker runtime (`vichain-worker`) adds `worker`, `dev --workers N`,
//! `localnet --start`, `zk` and `model`. A validator-only build
//! (`cargo build -p vichain-node --no-default-features`) links no candle, libp2p or prover.

mod daemon;
#[cfg(feature = "worker")]
mod localnet;
mod tee;
#[cfg(feature = "worker")]
mod zk;

use std::{path::PathBuf, time::Duration};

use anyhow::Result;
use clap::{Parser, Subcommand};
use vichain_validator::home::{self, Home, InitOptions};

use crate::tee::TeeCmd;
#[cfg(feature = "worker")]
use crate::zk::{ModelCmd, ZkCmd};

/// In-process workers of `vichaind dev` unless --workers says otherwise: none in a
/// validator-only build, which has no worker runtime.
const DEFAULT_DEV_WORKERS: usize = if cfg!(feature = "worker") { 3 } else { 0 };

#[derive(Debug, Parser)]
#[command(
    name = "vichaind",
    version,
    about = "vichain node: a CometBFT ABCI++ ledger for verifiable AI inference"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format: text for people, json (one object per line) for machines.
    /// Filter with RUST_LOG (default info).
    #[arg(long, global = true, env = "VICHAIN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a home: keys, config.toml, genesis.json and CometBFT's files.
    Init {
        #[arg(long, env = "VICHAIN_HOME")]
        home: PathBuf,
        #[arg(long, default_value = "vichain-local")]
        chain_id: String,
        #[arg(long, default_value = "vichain-node")]
        moniker: String,
    },
    /// Run the ABCI application for CometBFT, and the gRPC server.
    Start {
        #[arg(long, env = "VICHAIN_HOME")]
        home: PathBuf,
        /// Metrics, dashboard and JSON API address (overrides config.toml).
        #[arg(long, env = "VICHAIN_METRICS_ADDR")]
        metrics_addr: Option<std::net::SocketAddr>,
    },
    /// Run a complete single-node chain in this process (creates the home if needed).
    Dev {
        /// Home directory (default ~/.vichain).
        #[arg(long, env = "VICHAIN_HOME")]
        home: Option<PathBuf>,
        /// Interval between blocks, e.g. 1s or 250ms.
        #[arg(long, value_parser = humantime::parse_duration)]
        block_time: Option<Duration>,
        /// gRPC listen address (overrides config.toml).
        #[arg(long)]
        grpc: Option<std::net::SocketAddr>,
        /// In-process workers with their own keys that run the demo models' jobs
        /// (0: none, a bare chain).
        #[arg(long, default_value_t = DEFAULT_DEV_WORKERS)]
        workers: usize,
        /// Metrics, dashboard and JSON API address (overrides config.toml).
        #[arg(long, env = "VICHAIN_METRICS_ADDR")]
        metrics_addr: Option<std::net::SocketAddr>,
    },
    /// Create N validator homes sharing one genesis, for a CometBFT network on this
    /// machine; with --start, also run them (`vichaind start` + `cometbft start`
    /// each), register the demo models and start workers, until SIGINT or SIGTERM.
    Localnet {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 4)]
        validators: usize,
        #[arg(long, default_value = "vichain-localnet")]
        chain_id: String,
        /// Run the network (reusing the homes in --out if they exist).
        #[arg(long)]
        start: bool,
        /// Workers to start with --start (worker j follows validator j mod N).
        #[arg(long, default_value_t = 3)]
        workers: usize,
        /// First port of node 0, 10 per node (default: CometBFT's usual ports
        /// 26656..., gRPC 9090..., each + 10 per node).
        #[arg(long)]
        base_port: Option<u16>,
        /// CometBFT's timeout_commit (the pause between blocks).
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        block_time: Duration,
        /// Take a state-sync snapshot every this many blocks (0: never).
        #[arg(long, default_value_t = 0)]
        snapshot_interval: u64,
        /// The cometbft binary (default: scripts/install-cometbft.sh's, or PATH).
        #[arg(long, env = "VICHAIN_COMETBFT")]
        cometbft: Option<PathBuf>,
    },
    /// Groth16 keys and proofs for quantized MLP models (BN254).
    #[cfg(feature = "worker")]
    #[command(subcommand)]
    Zk(ZkCmd),
    /// Model files.
    #[cfg(feature = "worker")]
    #[command(subcommand)]
    Model(ModelCmd),
    /// TEE attestation evidence.
    #[command(subcommand)]
    Tee(TeeCmd),
    /// Serve one shard of a split model to the worker network (libp2p) until SIGINT or
    /// SIGTERM; prints the worker's peer id and dialable addresses (`listening ADDR`).
    #[cfg(feature = "worker")]
    Worker(vichain_worker::serve::WorkerArgs),
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    // arkworks opens a tracing span per constraint namespace: with those enabled,
    // Groth16 setup and proving run some 50 times slower. They stay off unless
    // RUST_LOG names them (target `gr1cs`).
    let mut filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    if !filter.contains("ark_") && !filter.contains("gr1cs") {
        filter.push_str(
            ",gr1cs=off,ark_relations=off,ark_r1cs_std=off,ark_groth16=off,ark_crypto_primitives=off",
        );
    }
    let cli = Cli::parse();
    let env_filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(env_filter);
    if cli.log_format == LogFormat::Json {
        logs.json()
            .with_current_span(true)
            .with_span_list(true)
            .init();
    } else {
        logs.with_target(false).init();
    }
    match cli.command {
        Command::Init {
            home,
            chain_id,
            moniker,
        } => {
            let s = home::init(&Home::new(&home), &InitOptions::new(chain_id, moniker))?;
            println!("initialized {}", s.home.display());
            println!("  chain id:        {}", s.chain_id);
            println!(
                "  operator:        {} (authority, key in keys/operator.json)",
                s.operator
            );
            println!("  validator key:   {}", hex::encode(s.validator_pub_key));
            println!("  node id:         {}", s.node_id);
            println!(
                "run: vichaind start --home {0}  and  cometbft start --home {0}/cometbft",
                s.home.display()
            );
            Ok(())
        }
        Command::Localnet {
            out,
            validators,
            chain_id,
            start,
            workers,
            base_port,
            block_time,
            snapshot_interval,
            cometbft,
        } => {
            let ports = |i| {
                base_port.map_or_else(
                    || home::Ports::standard(i),
                    |b| home::Ports::from_base(b, i),
                )
            };
            if !start {
                let nodes = home::init_localnet(&out, validators, &chain_id, ports, block_time)?;
                for (i, n) in nodes.iter().enumerate() {
                    println!(
                        "node{i}: home {} operator {} node id {}",
                        n.home.display(),
                        n.operator,
                        n.node_id
                    );
                }
                return Ok(());
            }
            #[cfg(feature = "worker")]
            {
                localnet::start(localnet::Options {
                    out,
                    validators,
                    chain_id,
                    base_port,
                    block_time,
                    snapshot_interval,
                    cometbft,
                    workers,
                })
            }
            #[cfg(not(feature = "worker"))]
            {
                let _ = (workers, snapshot_interval, cometbft);
                Err(without_worker("localnet --start"))
            }
        }
        Command::Start { home, metrics_addr } => {
            block_on(daemon::start(Home::new(home), metrics_addr))
        }
        Command::Tee(cmd) => tee::run(cmd),
        #[cfg(feature = "worker")]
        Command::Worker(args) => block_on(vichain_worker::serve::main(args)),
        #[cfg(feature = "worker")]
        Command::Zk(cmd) => zk::zk(cmd),
        #[cfg(feature = "worker")]
        Command::Model(cmd) => zk::model(cmd),
        Command::Dev {
            home,
            block_time,
            grpc,
            workers,
            metrics_addr,
        } => block_on(daemon::dev(
            Home::new(home.unwrap_or_else(Home::default_path)),
            block_time,
            grpc,
            workers,
            metrics_addr,
        )),
    }
}

/// Runs `fut` to completion, then stops without waiting for blocking work still in
/// flight (a Groth16 setup or a model load started before a shutdown signal).
fn block_on<T>(fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let rt = runtime()?;
    let out = rt.block_on(fut);
    rt.shutdown_timeout(Duration::from_secs(1));
    out
}

/// The error of a command that needs the worker runtime in a validator-only build.
#[cfg(not(feature = "worker"))]
fn without_worker(what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} needs the worker runtime, and this vichaind was built without it \
         (a validator-only build, --no-default-features); build vichain-node with the `worker` feature"
    )
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
