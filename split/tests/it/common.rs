use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use vichain_inference::LayerRange;
use vichain_split::{AllowList, ClientConfig, Multiaddr, NetworkConfig, Worker, WorkerConfig};

pub fn minilm_dir() -> PathBuf {
    vichain_inference::models::minilm_dir().unwrap()
}

pub fn smollm2_path() -> PathBuf {
    vichain_inference::models::smollm2_gguf().unwrap()
}

pub fn network(bootstrap: Vec<Multiaddr>, allow: AllowList) -> NetworkConfig {
    NetworkConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap,
        request_timeout: Duration::from_secs(20),
        heartbeat: Duration::from_millis(300),
        allow,
        ..NetworkConfig::default()
    }
}

pub fn client_config(bootstrap: Vec<Multiaddr>) -> ClientConfig {
    let mut network = network(bootstrap, AllowList::all());
    network.listen.clear();
    ClientConfig {
        network,
        discovery_timeout: Duration::from_secs(30),
        ..ClientConfig::default()
    }
}

/// Starts a worker serving `layers` of the model at `manifest`; its home is a fresh
/// directory kept until the process ends.
pub async fn worker(
    manifest: &Path,
    layers: LayerRange,
    bootstrap: Vec<Multiaddr>,
    allow: AllowList,
) -> Worker {
    let home = tempfile::tempdir().unwrap().keep();
    let mut cfg = WorkerConfig::new(home, manifest.to_path_buf(), layers);
    cfg.network = network(bootstrap, allow);
    Worker::start(cfg).await.unwrap()
}

/// Splits all-MiniLM-L6-v2 into `ranges` (the client keeps the ends) in `dir`; returns the
/// manifest's path.
pub fn split_minilm(dir: &Path, ranges: &[LayerRange]) -> PathBuf {
    vichain_inference::split_bert(
        &minilm_dir(),
        dir,
        "all-minilm-l6-v2",
        ranges,
        vichain_inference::ShardLayout::ClientKeepsEnds,
    )
    .unwrap();
    dir.join(vichain_inference::MANIFEST_FILE)
}

/// Splits SmolLM2 into `ranges` (the client keeps the ends) in `dir`; returns the manifest's
/// path.
pub fn split_smollm2(dir: &Path, ranges: &[LayerRange]) -> PathBuf {
    vichain_inference::split_gguf(
        &smollm2_path(),
        dir,
        "smollm2-135m",
        ranges,
        vichain_inference::ShardLayout::ClientKeepsEnds,
    )
    .unwrap();
    dir.join(vichain_inference::MANIFEST_FILE)
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Splits the bundled digits MLP into `ranges` (a pipeline: the model has no embedding or
/// head) in `dir`; returns the manifest's path.
pub fn split_digits(dir: &Path, ranges: &[LayerRange]) -> PathBuf {
    let mlp = vichain_zk::QuantizedMlp::from_bytes(vichain_inference::DIGITS_MODEL).unwrap();
    vichain_inference::split_mlp(&mlp, dir, "digits", ranges).unwrap();
    dir.join(vichain_inference::MANIFEST_FILE)
}
