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
use vichain_consensus::{Address, App, SnapshotStore, Storage, dev_signing_key};
use vichain_node::{
    abci,
    comet::{CometRpc, CometView},
    dev::DevChain,
    grpc::{self, NodeServer, TxSink},
    home::{self, Home, InitOptions},
    localnet,
    tasks::TaskManager,
    tee_tool, web,
    zk_tool::{self, OutputModeArg, WeightModeArg},
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
        #[arg(long, default_value_t = 3)]
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
    #[command(subcommand)]
    Zk(ZkCmd),
    /// Model files.
    #[command(subcommand)]
    Model(ModelCmd),
    /// TEE attestation evidence.
    #[command(subcommand)]
    Tee(TeeCmd),
    /// Serve one shard of a split model to the worker network (libp2p) until SIGINT or
    /// SIGTERM; prints the worker's peer id and dialable addresses (`listening ADDR`).
    Worker(vichain_node::worker::WorkerArgs),
}

#[derive(Debug, Subcommand)]
enum TeeCmd {
    /// Verify evidence (signatures, certificate chains to AMD's and Intel's roots,
    /// collateral and TCB) at a given time, and print what it attests.
    Verify {
        /// VTEE evidence (binary or hex), a raw DCAP quote (with --collateral) or a
        /// raw SEV-SNP report (with --vcek).
        #[arg(long)]
        evidence: PathBuf,
        /// Intel PCS collateral JSON for a DCAP quote.
        #[arg(long)]
        collateral: Option<PathBuf>,
        /// VCEK certificate (DER) for an SEV-SNP report.
        #[arg(long)]
        vcek: Option<PathBuf>,
        /// AMD KDS cert chain (PEM: ASK then ARK) for an SEV-SNP report.
        #[arg(long)]
        cert_chain: Option<PathBuf>,
        /// Verification time: unix seconds or RFC 3339 (default: now).
        #[arg(long)]
        at: Option<String>,
        /// Accept the dev attester's evidence (labelled simulated).
        #[arg(long)]
        allow_simulated: bool,
        #[arg(long)]
        json: bool,
    },
    /// Make dev-attester evidence for a worker (accepted only on chains with
    /// allow_simulated_tee, e.g. `vichaind dev`).
    Simulate {
        /// 32-byte hex secret of the dev attester.
        #[arg(long)]
        secret: String,
        /// Hex launch measurement to claim.
        #[arg(long)]
        measurement: String,
        /// Hex ed25519 public key of the worker's operator.
        #[arg(long)]
        operator_key: String,
        #[arg(long)]
        chain_id: String,
        /// Hex hash of the block the evidence binds (the SubmitAttestation nonce height).
        #[arg(long)]
        nonce: String,
        /// Hex HPKE public key of the worker (`tee keygen`) that the evidence binds.
        #[arg(long)]
        encryption_key: String,
        /// Validity from now, e.g. 24h.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        valid_for: Duration,
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a worker's HPKE encryption key (X25519): the secret goes to --out
    /// (mode 0600, never overwritten), the public key is printed (hex).
    Keygen {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Print the public key of an encryption key file.
    Pubkey {
        #[arg(long)]
        key: PathBuf,
    },
    /// Seal a job input to a worker's encryption key (HPKE), bound to the chain,
    /// the job and the worker, so it opens nowhere else.
    Seal {
        /// Hex public key of the worker (its attestation's encryption_key).
        #[arg(long)]
        to: String,
        #[arg(long)]
        chain_id: String,
        #[arg(long)]
        job_id: u64,
        /// Operator address of the worker (vichain1... or 40 hex digits).
        #[arg(long)]
        worker: String,
        /// The input to seal.
        #[arg(long = "in")]
        input: PathBuf,
        /// Where to write the sealed input.
        #[arg(long)]
        out: PathBuf,
    },
    /// Open a sealed job input with the worker's encryption key.
    Open {
        /// The worker's encryption key file (`tee keygen`).
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        chain_id: String,
        #[arg(long)]
        job_id: u64,
        /// Operator address of the worker (vichain1... or 40 hex digits).
        #[arg(long)]
        worker: String,
        /// The sealed input.
        #[arg(long = "in")]
        input: PathBuf,
        /// Where to write the plaintext.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ZkCmd {
    /// Circuit-specific trusted setup for a model: writes proving.key, verifying.key
    /// (with .sha256 files) and keys.json under --out. Whoever runs it can forge
    /// proofs for this circuit: in a permissioned network the model owner or the
    /// authority runs it with OS entropy and publishes only the keys.
    Setup {
        /// A VQMLP model file (e.g. inference/data/digits-mlp.vqmlp).
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// public: weights are circuit constants; private: weights are witnesses
        /// opened against the model commitment.
        #[arg(long, value_enum, default_value_t = WeightModeArg::Public)]
        mode: WeightModeArg,
        /// What the proof reveals: argmax, logits or commitment.
        #[arg(long, value_enum, default_value_t = OutputModeArg::Argmax)]
        output: OutputModeArg,
        /// 32-byte hex seed for a reproducible setup (tests only: it lets anyone forge proofs).
        #[arg(long)]
        seed: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Run the model on an input and prove it for a job; writes a proof bundle (JSON).
    Prove {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        pk: PathBuf,
        /// Expected sha256 of the proving key (default: the .sha256 file beside it).
        #[arg(long)]
        pk_hash: Option<String>,
        /// int8 values separated by commas or spaces, or @FILE (each byte an int8).
        #[arg(long)]
        input: String,
        #[arg(long)]
        job_id: u64,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = WeightModeArg::Public)]
        mode: WeightModeArg,
        #[arg(long, value_enum, default_value_t = OutputModeArg::Argmax)]
        output: OutputModeArg,
        /// Salt of the input commitment, 32-byte hex (random by default).
        #[arg(long)]
        salt: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Verify a proof bundle against a verifying key pinned by its sha256.
    Verify {
        #[arg(long)]
        vk: PathBuf,
        /// Expected sha256 of the verifying key (default: the .sha256 file beside it).
        #[arg(long)]
        vk_hash: Option<String>,
        /// A proof bundle written by `zk prove`.
        #[arg(long)]
        proof: PathBuf,
        /// Check the bundle is for this job (the public input is derived from it).
        #[arg(long)]
        job_id: Option<u64>,
        /// Check the bundle claims this model commitment (hex).
        #[arg(long)]
        model_commitment: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ModelCmd {
    /// Recompute a model file's sha256 and Poseidon commitment (the two values the
    /// model registry records).
    Commit {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Cut a model into layer-range shard files plus manifest.json (each shard with
    /// the sha256 of its bytes): a Hugging Face BERT directory, a Llama GGUF file, or
    /// a VQMLP file.
    Split {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// The id the model is (or will be) registered under.
        #[arg(long)]
        id: String,
        /// Contiguous layer ranges covering the model, e.g. 0..2,2..4,4..6.
        #[arg(long, value_delimiter = ',', required = true)]
        layers: Vec<String>,
        /// Put embeddings and head in a separate shard the client keeps (split
        /// learning); otherwise the first shard carries the embeddings, the last the head.
        #[arg(long)]
        client_keeps_ends: bool,
        #[arg(long)]
        json: bool,
    },
}

fn model_split(
    model: &std::path::Path,
    out: &std::path::Path,
    id: &str,
    layers: &[String],
    client_keeps_ends: bool,
    json: bool,
) -> Result<()> {
    use vichain_inference::{ShardLayout, split_bert, split_gguf, split_mlp};
    let ranges = layers
        .iter()
        .map(|l| vichain_node::worker::parse_layer_range(l))
        .collect::<Result<Vec<_>>>()?;
    let layout = if client_keeps_ends {
        ShardLayout::ClientKeepsEnds
    } else {
        ShardLayout::Pipeline
    };
    let ext = model
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    let manifest = if model.is_dir() {
        split_bert(model, out, id, &ranges, layout)?
    } else if ext == "gguf" {
        split_gguf(model, out, id, &ranges, layout)?
    } else if ext == "vqmlp" {
        if client_keeps_ends {
            anyhow::bail!(
                "an MLP has no embedding or head to keep apart: drop --client-keeps-ends"
            );
        }
        let (mlp, _) = zk_tool::load_model(model)?;
        split_mlp(&mlp, out, id, &ranges)?
    } else {
        anyhow::bail!(
            "{}: expected a Hugging Face model directory, a .gguf file or a .vqmlp file",
            model.display()
        );
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&manifest)?);
    } else {
        println!(
            "wrote {} shards and {}/manifest.json",
            manifest.shards.len(),
            out.display()
        );
        for s in &manifest.shards {
            println!(
                "  {:<24} layers {}..{}  {}{} sha256 {}",
                s.file,
                s.layers.start,
                s.layers.end,
                if s.embeddings { "+embeddings " } else { "" },
                if s.head { "+head" } else { "" },
                s.sha256
            );
        }
    }
    Ok(())
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
            let cometbft = match cometbft {
                Some(c) => c,
                None => localnet::Binaries::find_cometbft()?,
            };
            run_localnet(
                localnet::LocalnetOptions {
                    dir: out,
                    validators,
                    chain_id,
                    base_port,
                    block_time,
                    snapshot_interval,
                    log_filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
                    bins: localnet::Binaries {
                        vichaind: std::env::current_exe()?,
                        cometbft,
                    },
                },
                workers,
            )
        }
        Command::Start { home, metrics_addr } => block_on(start(Home::new(home), metrics_addr)),
        Command::Worker(args) => block_on(vichain_node::worker::main(args)),
        Command::Zk(cmd) => zk(cmd),
        Command::Tee(cmd) => tee(cmd),
        Command::Model(ModelCmd::Split {
            model,
            out,
            id,
            layers,
            client_keeps_ends,
            json,
        }) => model_split(&model, &out, &id, &layers, client_keeps_ends, json),
        Command::Model(ModelCmd::Commit { model, json }) => {
            let (_, info) = zk_tool::load_model(&model)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                println!("model       {}", info.path.display());
                println!("sha256      {}", info.sha256);
                println!("commitment  {}", info.commitment);
                println!(
                    "shape       {} layers, {} -> {}, {} weights",
                    info.layers, info.input_dim, info.output_dim, info.weights
                );
            }
            Ok(())
        }
        Command::Dev {
            home,
            block_time,
            grpc,
            workers,
            metrics_addr,
        } => block_on(dev(
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

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn open_store(home: &Home) -> Result<Arc<Storage>> {
    Ok(Arc::new(Storage::open(&home.state_db()).with_context(
        || format!("opening {}", home.state_db().display()),
    )?))
}

async fn start(home: Home, metrics_addr: Option<std::net::SocketAddr>) -> Result<()> {
    let mut config = home.load_config()?;
    if let Some(addr) = metrics_addr {
        config.metrics.listen = addr;
    }
    // Every line this validator logs names it (several run on one machine).
    let span = tracing::info_span!("node", name = %config.moniker);
    tracing::Instrument::instrument(start_node(home, config), span).await
}

async fn start_node(home: Home, config: vichain_config::NodeConfig) -> Result<()> {
    config.validate()?;
    let store = open_store(&home)?;
    // Snapshots for nodes joining by state sync, every `snapshot_interval` blocks; a
    // node restores one offered to it either way.
    let snapshots = home.root.join("data").join("snapshots");
    let app = App::new(store.clone()).with_snapshots(
        SnapshotStore::new(snapshots.clone(), config.state_sync.clone())
            .with_context(|| format!("opening {}", snapshots.display()))?,
    );
    let recent = app.recent_blocks();
    let app = Arc::new(Mutex::new(app));
    let mut tasks = TaskManager::new();
    let addr = AbciAddr::parse(&config.abci.listen)?;
    let listener = abci::AbciListener::bind(&addr)
        .await
        .with_context(|| format!("binding ABCI on {addr}"))?;
    let shutdown = tasks.shutdown();
    let max_frame = config.abci.max_frame_bytes;
    let abci_app = app.clone();
    tasks.spawn_critical("abci", async move {
        abci::serve(listener, abci_app, max_frame, shutdown.token()).await;
        Ok(())
    });
    let rpc = CometRpc::new(&config.cometbft.rpc, config.cometbft.timeout)?;
    let chain_id = Genesis::load(&home.genesis()).map_or_else(|_| String::new(), |g| g.chain_id);
    let view = CometView::new(rpc.clone());
    tasks.spawn_critical(
        "cometbft-poller",
        view.clone().run(Duration::from_secs(2), tasks.shutdown()),
    );
    web::spawn(
        &mut tasks,
        &config.metrics,
        store.clone(),
        recent,
        None,
        Some(view),
        &chain_id,
    )?;
    let server = NodeServer::new(store, TxSink::Comet(rpc));
    tasks.spawn_critical(
        "grpc",
        grpc::serve(config.grpc.listen, server, tasks.shutdown()),
    );
    info!(home = %home.root.display(), abci = %addr, grpc = %config.grpc.listen, metrics = %config.metrics.listen, cometbft_rpc = %config.cometbft.rpc, "vichaind started; waiting for CometBFT");
    tasks.run().await
}

async fn dev(
    home: Home,
    block_time: Option<Duration>,
    grpc_addr: Option<std::net::SocketAddr>,
    workers: usize,
    metrics_addr: Option<std::net::SocketAddr>,
) -> Result<()> {
    if !home.is_initialized() {
        let s = home::init(
            &home,
            &InitOptions {
                dev: true,
                ..InitOptions::new(home::DEV_CHAIN_ID, "vichain-dev")
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
    if let Some(addr) = metrics_addr {
        config.metrics.listen = addr;
    }
    config.validate()?;
    let genesis = Genesis::load(&home.genesis())?;
    let proposer = home
        .load_validator_key()
        .map(|k| hex::decode(home::cometbft_address(&k)).unwrap_or_default())
        .unwrap_or_default();
    let store = open_store(&home)?;
    let app = App::new(store.clone());
    let recent = app.recent_blocks();
    let app = Arc::new(Mutex::new(app));
    let chain = Arc::new(DevChain::new(
        app,
        config.dev.clone(),
        config.mempool.clone(),
        proposer,
    ));
    let height = chain.handshake(&genesis)?;

    let mut tasks = TaskManager::new();
    web::spawn(
        &mut tasks,
        &config.metrics,
        store.clone(),
        recent,
        Some(chain.clone()),
        None,
        &genesis.chain_id,
    )?;
    let server = NodeServer::new(store.clone(), TxSink::Dev(chain.clone()));
    tasks.spawn_critical(
        "grpc",
        grpc::serve(config.grpc.listen, server, tasks.shutdown()),
    );
    tasks.spawn_critical("block-producer", chain.clone().run(tasks.shutdown()));
    if workers > 0 {
        tasks.spawn_critical(
            "dev-workers",
            vichain_node::devnet::run(
                home.root.clone(),
                chain.clone(),
                store,
                format!("http://{}", config.grpc.listen),
                workers,
                tasks.shutdown(),
            ),
        );
    }
    let dev_addr = Address::from_public_key(&dev_signing_key().verifying_key());
    info!(
        chain_id = %genesis.chain_id,
        height,
        grpc = %config.grpc.listen,
        dashboard = %format!("http://{}/", config.metrics.listen),
        block_time = ?config.dev.block_time,
        home = %home.root.display(),
        dev_account = %dev_addr,
        "vichaind dev is running (try: vichain status; vichain tx transfer --to ADDR --amount 5)"
    );
    tasks.run().await
}

/// `vichaind localnet --start`: runs the network until SIGINT or SIGTERM, then
/// stops every process it started.
fn run_localnet(opts: localnet::LocalnetOptions, workers: usize) -> Result<()> {
    let mut net = localnet::Localnet::create(opts)?;
    let result = (|| {
        net.start_all()?;
        net.wait_height(0, 1, Duration::from_secs(120))?;
        if workers > 0 {
            net.start_workers(workers)?;
        }
        let path = net.write_description()?;
        println!(
            "localnet {} running; described in {}",
            net.genesis.chain_id,
            path.display()
        );
        for n in &net.nodes {
            println!(
                "  {}: gRPC {}  CometBFT RPC {}  dashboard http://127.0.0.1:{}/  home {}",
                n.name,
                n.grpc_url(),
                n.rpc_url(),
                n.ports.metrics,
                n.home.root.display()
            );
        }
        for w in &net.workers {
            println!("  {}: operator {} peer {}", w.name, w.operator, w.peer_id);
        }
        println!("Ctrl-C stops it.");
        anyhow::Ok(())
    })();
    if let Err(e) = result {
        net.stop_all();
        return Err(e);
    }
    let stop = net.runtime().block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let int = signal(SignalKind::interrupt())?;
        let term = signal(SignalKind::terminate())?;
        anyhow::Ok((int, term))
    });
    let (mut int, mut term) = stop?;
    loop {
        let signalled = net.runtime().block_on(async {
            tokio::select! {
                _ = int.recv() => true,
                _ = term.recv() => true,
                _ = tokio::time::sleep(Duration::from_secs(1)) => false,
            }
        });
        if signalled {
            break;
        }
        for gone in net.reap() {
            tracing::warn!("{gone}");
        }
    }
    info!("stopping the localnet");
    net.stop_all();
    Ok(())
}

fn zk(cmd: ZkCmd) -> Result<()> {
    match cmd {
        ZkCmd::Setup {
            model,
            out,
            mode,
            output,
            seed,
            json,
        } => {
            let seed = seed
                .map(|s| zk_tool::parse_hex32(&s, "--seed"))
                .transpose()?;
            if seed.is_some() {
                eprintln!(
                    "warning: a seeded setup is for tests only; anyone who knows the seed can forge proofs"
                );
            }
            let s = zk_tool::setup(&model, &out, mode.into(), output.into(), seed, !json)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!(
                    "mode                 {} weights, {} output",
                    s.mode, s.output
                );
                println!("model sha256         {}", s.model_sha256);
                println!("model commitment     {}", s.model_commitment);
                println!(
                    "proving key          {} ({} bytes)",
                    s.proving_key.display(),
                    s.proving_key_bytes
                );
                println!("proving key sha256   {}", s.proving_key_sha256);
                println!(
                    "verifying key        {} ({} bytes)",
                    s.verifying_key.display(),
                    s.verifying_key_bytes
                );
                println!("verifying key sha256 {}", s.verifying_key_sha256);
                println!("setup took {:.2}s", s.setup_seconds);
            }
            Ok(())
        }
        ZkCmd::Prove {
            model,
            pk,
            pk_hash,
            input,
            job_id,
            out,
            mode,
            output,
            salt,
            json,
        } => {
            let input_salt = match salt {
                Some(s) => vichain_zk::Salt(zk_tool::parse_hex32(&s, "--salt")?),
                None => vichain_zk::Salt::random(),
            };
            let opts = zk_tool::ProveOptions {
                mode: mode.into(),
                output: output.into(),
                input: zk_tool::parse_input(&input)?,
                job_id,
                input_salt,
                output_salt: vichain_zk::Salt::random(),
            };
            let start = std::time::Instant::now();
            let bundle = zk_tool::prove(&model, &pk, pk_hash.as_deref(), &opts)?;
            let text = serde_json::to_string_pretty(&bundle)?;
            std::fs::write(&out, &text).with_context(|| format!("writing {}", out.display()))?;
            if json {
                println!("{text}");
            } else {
                println!(
                    "proved job {} in {:.2}s: output {:?}; bundle written to {}",
                    bundle.job_id,
                    start.elapsed().as_secs_f64(),
                    bundle.output,
                    out.display()
                );
            }
            Ok(())
        }
        ZkCmd::Verify {
            vk,
            vk_hash,
            proof,
            job_id,
            model_commitment,
            json,
        } => {
            let bundle = zk_tool::ProofBundle::load(&proof)?;
            if let Some(id) = job_id {
                anyhow::ensure!(
                    bundle.job_id == id,
                    "the bundle is for job {}, not job {id}",
                    bundle.job_id
                );
            }
            if let Some(c) = model_commitment {
                anyhow::ensure!(
                    zk_tool::parse_hex32(&c, "--model-commitment")?
                        == zk_tool::parse_hex32(&bundle.model_commitment, "model_commitment")?,
                    "the bundle claims model commitment {}, not {c}",
                    bundle.model_commitment
                );
            }
            zk_tool::verify(&vk, vk_hash.as_deref(), &bundle)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"valid": true, "job_id": bundle.job_id, "output": bundle.output})
                );
            } else {
                println!(
                    "valid: proof for job {} with output {:?}",
                    bundle.job_id, bundle.output
                );
            }
            Ok(())
        }
    }
}

fn tee(cmd: TeeCmd) -> Result<()> {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    match cmd {
        TeeCmd::Verify {
            evidence,
            collateral,
            vcek,
            cert_chain,
            at,
            allow_simulated,
            json,
        } => {
            let at = at
                .map(|s| tee_tool::parse_time(&s))
                .transpose()?
                .unwrap_or_else(now);
            let evidence = tee_tool::load_evidence(
                &evidence,
                collateral.as_deref(),
                vcek.as_deref(),
                cert_chain.as_deref(),
            )?;
            let kind = evidence.kind();
            let v = tee_tool::verify(&evidence, at, allow_simulated)
                .with_context(|| format!("{kind} evidence does not verify at {at}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let label = if v.simulated {
                    " (SIMULATED: no hardware)"
                } else {
                    ""
                };
                println!("kind         {}{label}", v.kind);
                println!("measurement  {}", v.measurement_hex());
                println!("tcb status   {}", v.tcb_status);
                if !v.advisory_ids.is_empty() {
                    println!("advisories   {}", v.advisory_ids.join(", "));
                }
                println!("report data  {}", hex::encode(v.report_data));
                println!("valid until  {} (unix s)", v.valid_until);
                println!("debug        {}", v.debug);
            }
            Ok(())
        }
        TeeCmd::Simulate {
            secret,
            measurement,
            operator_key,
            chain_id,
            nonce,
            encryption_key,
            valid_for,
            out,
        } => {
            let bytes = tee_tool::simulate(
                zk_tool::parse_hex32(&secret, "--secret")?,
                &hex::decode(&measurement).context("--measurement")?,
                &hex::decode(&operator_key).context("--operator-key")?,
                &chain_id,
                &zk_tool::parse_hex32(&nonce, "--nonce")?,
                &vichain_tee::EncryptionPublicKey::from_hex(&encryption_key)
                    .context("--encryption-key")?,
                now() + valid_for.as_secs(),
            );
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "simulated evidence ({} bytes) written to {}",
                bytes.len(),
                out.display()
            );
            Ok(())
        }
        TeeCmd::Keygen { out, json } => {
            let pk = tee_tool::keygen(&out)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"public_key": pk.to_hex(), "key_file": out})
                );
            } else {
                println!("{pk}");
            }
            Ok(())
        }
        TeeCmd::Pubkey { key } => {
            println!("{}", tee_tool::public_key(&key)?);
            Ok(())
        }
        TeeCmd::Seal {
            to,
            chain_id,
            job_id,
            worker,
            input,
            out,
        } => {
            let to = vichain_tee::EncryptionPublicKey::from_hex(&to).context("--to")?;
            let worker = tee_tool::parse_worker(&worker)?;
            let sealed = tee_tool::seal_file(&to, &chain_id, job_id, &worker, &input)?;
            std::fs::write(&out, &sealed).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "sealed input ({} bytes) for job {job_id} at {worker} written to {}",
                sealed.len(),
                out.display()
            );
            Ok(())
        }
        TeeCmd::Open {
            key,
            chain_id,
            job_id,
            worker,
            input,
            out,
        } => {
            let worker = tee_tool::parse_worker(&worker)?;
            let plain = tee_tool::open_file(&key, &chain_id, job_id, &worker, &input)
                .with_context(|| format!("opening {}", input.display()))?;
            std::fs::write(&out, &plain).with_context(|| format!("writing {}", out.display()))?;
            println!("{} bytes written to {}", plain.len(), out.display());
            Ok(())
        }
    }
}
