//! Typed configuration of a vichain node and the chain's genesis.
//!
//! [`NodeConfig`] is the node's own `config.toml` (listen addresses, mempool and dev
//! chain settings, state-sync snapshots); [`Genesis`] is a CometBFT-compatible `genesis.json` whose
//! `app_state` ([`AppState`]) holds the ledger's accounts, authority, initial models
//! and parameters. Every config has working defaults for a single local node and a
//! `validate` step that names the offending field.

mod genesis;
mod node;

pub use genesis::{
    AppState, Genesis, GenesisAccount, GenesisModel, GenesisShard, GenesisValidator, ParamsConfig,
    PolicyConfig, PubKeyJson, default_consensus_params,
};
pub use node::{
    AbciAddr, AbciConfig, CometConfig, DevConfig, GrpcConfig, MAX_SNAPSHOT_CHUNK_BYTES,
    MIN_SNAPSHOT_CHUNK_BYTES, MempoolConfig, MetricsConfig, NodeConfig, StateSyncConfig,
};

/// Errors of loading or validating configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid config field `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
}

pub type Result<T> = std::result::Result<T, Error>;

fn read(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

fn write(path: &std::path::Path, contents: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.display().to_string(),
            source,
        })?;
    }
    std::fs::write(path, contents).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}
