//! `vichaind`: the vichain node.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tracing::info;
use vichain_config::{AbciAddr, Genesis};
use vichain_consensus::{Address, App, Storage, abci, dev_signing_key};
use vichain_node::{
    comet::CometRpc,
    dev::DevChain,
    grpc::{self, NodeServer, TxSink},
    home::{self, Home, InitOptions},
    tasks::TaskManager,
};

#[derive(Debug, Parser)]
#[command(
    name = "vichaind",
    version,
    about = "vichain node: a CometBFT ABCI++ ledger for verifiable AI inference"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    },
    /// Create N validator homes sharing one genesis, for a local CometBFT network.
    Localnet {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 4)]
        validators: usize,
        #[arg(long, default_value = "vichain-localnet")]
        chain_id: String,
    },
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Init {
            home,
            chain_id,
            moniker,
        } => {
            let s = home::init(
                &Home::new(&home),
                &InitOptions {
                    chain_id,
                    moniker,
                    dev: false,
                    port_offset: 0,
                },
            )?;
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
        } => {
            let nodes = home::init_localnet(&out, validators, &chain_id)?;
            for (i, n) in nodes.iter().enumerate() {
                println!(
                    "node{i}: home {} operator {} node id {}",
                    n.home.display(),
                    n.operator,
                    n.node_id
                );
            }
            Ok(())
        }
        Command::Start { home } => runtime()?.block_on(start(Home::new(home))),
        Command::Dev {
            home,
            block_time,
            grpc,
        } => runtime()?.block_on(dev(
            Home::new(home.unwrap_or_else(Home::default_path)),
            block_time,
            grpc,
        )),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn open_app(home: &Home) -> Result<(Arc<Storage>, Arc<Mutex<App>>)> {
    let store = Arc::new(
        Storage::open(&home.state_db())
            .with_context(|| format!("opening {}", home.state_db().display()))?,
    );
    let app = Arc::new(Mutex::new(App::new(store.clone())));
    Ok((store, app))
}

async fn start(home: Home) -> Result<()> {
    let config = home.load_config()?;
    let (store, app) = open_app(&home)?;
    let mut tasks = TaskManager::new();
    let addr = AbciAddr::parse(&config.abci.listen)?;
    let listener = abci::AbciListener::bind(&addr)
        .await
        .with_context(|| format!("binding ABCI on {addr}"))?;
    let shutdown = tasks.shutdown();
    let max_frame = config.abci.max_frame_bytes;
    let abci_app = app.clone();
    tasks.spawn_critical("abci", async move {
        abci::serve(listener, abci_app, max_frame, shutdown.receiver()).await;
        Ok(())
    });
    let rpc = CometRpc::new(&config.cometbft.rpc, config.cometbft.timeout)?;
    let server = NodeServer::new(store, TxSink::Comet(rpc));
    tasks.spawn_critical(
        "grpc",
        grpc::serve(config.grpc.listen, server, tasks.shutdown()),
    );
    info!(home = %home.root.display(), abci = %addr, grpc = %config.grpc.listen, cometbft_rpc = %config.cometbft.rpc, "vichaind started; waiting for CometBFT");
    tasks.run().await
}

async fn dev(
    home: Home,
    block_time: Option<Duration>,
    grpc_addr: Option<std::net::SocketAddr>,
) -> Result<()> {
    if !home.is_initialized() {
        let s = home::init(
            &home,
            &InitOptions {
                chain_id: home::DEV_CHAIN_ID.into(),
                moniker: "vichain-dev".into(),
                dev: true,
                port_offset: 0,
            },
        )?;
        info!(home = %s.home.display(), "created a dev home");
    }
    let mut config = home.load_config()?;
    if let Some(bt) = block_time {
        config.dev.block_time = bt;
    }
    if let Some(addr) = grpc_addr {
        config.grpc.listen = addr;
    }
    config.validate()?;
    let genesis = Genesis::load(&home.genesis())?;
    let proposer = home
        .load_validator_key()
        .map(|k| hex::decode(home::cometbft_address(&k)).unwrap_or_default())
        .unwrap_or_default();
    let (store, app) = open_app(&home)?;
    let chain = Arc::new(DevChain::new(
        app,
        config.dev.clone(),
        config.mempool.clone(),
        proposer,
    ));
    let height = chain.handshake(&genesis)?;

    let mut tasks = TaskManager::new();
    let server = NodeServer::new(store, TxSink::Dev(chain.clone()));
    tasks.spawn_critical(
        "grpc",
        grpc::serve(config.grpc.listen, server, tasks.shutdown()),
    );
    tasks.spawn_critical("block-producer", chain.clone().run(tasks.shutdown()));
    let dev_addr = Address::from_public_key(&dev_signing_key().verifying_key());
    info!(
        chain_id = %genesis.chain_id,
        height,
        grpc = %config.grpc.listen,
        block_time = ?config.dev.block_time,
        home = %home.root.display(),
        dev_account = %dev_addr,
        "vichaind dev is running (try: vichain status; vichain tx transfer --to ADDR --amount 5)"
    );
    tasks.run().await
}
