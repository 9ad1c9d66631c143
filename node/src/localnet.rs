//! `vichaind localnet --start` (the `worker` feature: it registers the demo models and
//! starts worker processes).

use std::{path::PathBuf, time::Duration};

use anyhow::Result;
use tracing::info;
use vichain_worker::localnet::{Binaries, Localnet, LocalnetOptions};

/// `vichaind localnet --start`'s flags.
#[derive(Debug)]
pub(crate) struct Options {
    pub out: PathBuf,
    pub validators: usize,
    pub chain_id: String,
    pub base_port: Option<u16>,
    pub block_time: Duration,
    pub snapshot_interval: u64,
    pub cometbft: Option<PathBuf>,
    pub workers: usize,
}

/// Creates (or reuses) the homes and runs the network until SIGINT or SIGTERM.
pub(crate) fn start(o: Options) -> Result<()> {
    let cometbft = match o.cometbft {
        Some(c) => c,
        None => Binaries::find_cometbft()?,
    };
    run_localnet(
        LocalnetOptions {
            dir: o.out,
            validators: o.validators,
            chain_id: o.chain_id,
            base_port: o.base_port,
            block_time: o.block_time,
            snapshot_interval: o.snapshot_interval,
            log_filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            bins: Binaries {
                vichaind: std::env::current_exe()?,
                cometbft,
            },
        },
        o.workers,
    )
}

/// `vichaind localnet --start`: runs the network until SIGINT or SIGTERM, then
/// stops every process it started.
fn run_localnet(opts: LocalnetOptions, workers: usize) -> Result<()> {
    let mut net = Localnet::create(opts)?;
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
