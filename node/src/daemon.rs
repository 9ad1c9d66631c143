//! `vichaind start` (a validator behind CometBFT) and `vichaind dev` (a one-node chain in
//! this process, with in-process workers when built with the `worker` feature).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, Result};
use tracing::info;
use vichain_config::{AbciAddr, Genesis};
use vichain_consensus::{Address, App, SnapshotStore, Storage, dev_signing_key};
use vichain_validator::{
    abci,
    comet::{CometRpc, CometView},
    dev::DevChain,
    grpc::{self, NodeServer, TxSink},
    home::{self, Home, InitOptions},
    tasks::TaskManager,
    web,
};

fn open_store(home: &Home) -> Result<Arc<Storage>> {
    Ok(Arc::new(Storage::open(&home.state_db()).with_context(
        || format!("opening {}", home.state_db().display()),
    )?))
}

pub(crate) async fn start(home: Home, metrics_addr: Option<std::net::SocketAddr>) -> Result<()> {
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
    let (app, commits) = grpc::announce_commits(App::new(store.clone()))?;
    let app = app.with_snapshots(
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
        grpc::serve(config.grpc.listen, server, commits, tasks.shutdown()),
    );
    info!(home = %home.root.display(), abci = %addr, grpc = %config.grpc.listen, metrics = %config.metrics.listen, cometbft_rpc = %config.cometbft.rpc, "vichaind started; waiting for CometBFT");
    tasks.run().await
}

pub(crate) async fn dev(
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
    let (app, commits) = grpc::announce_commits(App::new(store.clone()))?;
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
        grpc::serve(config.grpc.listen, server, commits, tasks.shutdown()),
    );
    tasks.spawn_critical("block-producer", chain.clone().run(tasks.shutdown()));
    #[cfg(not(feature = "worker"))]
    if workers > 0 {
        return Err(crate::without_worker("dev --workers"));
    }
    #[cfg(feature = "worker")]
    if workers > 0 {
        tasks.spawn_critical(
            "dev-workers",
            vichain_worker::devnet::run(
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
