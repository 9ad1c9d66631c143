//! Runs a worker serving one shard until Ctrl-C; prints its dialable addresses.
//!
//! `cargo run -p vichain-split --example worker -- --home DIR --model MANIFEST --layers A..B
//! [--listen ADDR] [--bootstrap ADDR]...` (the flags of `vichaind worker`).

use anyhow::{Context, bail};
use vichain_inference::LayerRange;
use vichain_split::{Worker, WorkerConfig};

fn parse_layers(s: &str) -> anyhow::Result<LayerRange> {
    let (a, b) = s.split_once("..").context("--layers expects A..B")?;
    Ok(LayerRange::new(a.parse()?, b.parse()?))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let (mut home, mut model, mut layers) = (None, None, None);
    let (mut listen, mut bootstrap) = (Vec::new(), Vec::new());
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--home" => home = Some(value()?.into()),
            "--model" => model = Some(value()?.into()),
            "--layers" => layers = Some(parse_layers(&value()?)?),
            "--listen" => listen.push(value()?.parse()?),
            "--bootstrap" => bootstrap.push(value()?.parse()?),
            other => bail!("unknown flag {other}"),
        }
    }
    let mut config = WorkerConfig::new(
        home.context("--home is required")?,
        model.context("--model is required")?,
        layers.context("--layers is required")?,
    );
    if listen.is_empty() {
        listen.push("/ip4/0.0.0.0/tcp/0".parse()?);
    }
    config.network.listen = listen;
    config.network.bootstrap = bootstrap;
    let worker = Worker::start(config).await?;
    for addr in worker.listen_addrs().await? {
        println!("{addr}");
    }
    tokio::signal::ctrl_c().await?;
    worker.shutdown().await;
    Ok(())
}
