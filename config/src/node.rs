use std::{net::SocketAddr, path::Path, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The node's `config.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Human name of this node, shown in status and logs.
    pub moniker: String,
    pub abci: AbciConfig,
    pub grpc: GrpcConfig,
    pub cometbft: CometConfig,
    pub mempool: MempoolConfig,
    pub dev: DevConfig,
    pub metrics: MetricsConfig,
    pub state_sync: StateSyncConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            moniker: "vichain-node".into(),
            abci: AbciConfig::default(),
            grpc: GrpcConfig::default(),
            cometbft: CometConfig::default(),
            mempool: MempoolConfig::default(),
            dev: DevConfig::default(),
            metrics: MetricsConfig::default(),
            state_sync: StateSyncConfig::default(),
        }
    }
}

/// Where the ABCI server listens for CometBFT's four connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AbciConfig {
    /// `tcp://HOST:PORT` or `unix:///path/to/socket` (CometBFT's `proxy_app`).
    pub listen: String,
    /// Largest ABCI frame accepted from CometBFT, in bytes.
    pub max_frame_bytes: u64,
}

impl Default for AbciConfig {
    fn default() -> Self {
        Self {
            listen: "tcp://127.0.0.1:26658".into(),
            max_frame_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A parsed ABCI listen address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbciAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl AbciAddr {
    pub fn parse(s: &str) -> Result<Self> {
        let invalid = |reason: String| Error::Invalid {
            field: "abci.listen",
            reason,
        };
        if let Some(path) = s.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(invalid("unix socket path is empty".into()));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        let hostport = s.strip_prefix("tcp://").unwrap_or(s);
        hostport.parse().map(Self::Tcp).map_err(|e| {
            invalid(format!(
                "{s:?} is neither tcp://HOST:PORT nor unix://PATH: {e}"
            ))
        })
    }
}

impl std::fmt::Display for AbciAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "tcp://{a}"),
            Self::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcConfig {
    /// Address of the gRPC server (NodeService, with reflection).
    pub listen: SocketAddr,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
        }
    }
}

/// The node's HTTP server: Prometheus `/metrics`, the dashboard at `/` and its
/// JSON API under `/api/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// Listen address. CometBFT's own Prometheus endpoint defaults to :26660 too;
    /// `vichaind init` leaves CometBFT's off.
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 26660)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CometConfig {
    /// CometBFT's RPC, where `vichaind start` forwards broadcast transactions.
    pub rpc: String,
    /// Timeout of one RPC call.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for CometConfig {
    fn default() -> Self {
        Self {
            rpc: "http://127.0.0.1:26657".into(),
            timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MempoolConfig {
    /// Most transactions held by the dev mempool.
    pub max_txs: usize,
    /// Most bytes held by the dev mempool.
    pub max_bytes: u64,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        Self {
            max_txs: 50_000,
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// The in-process block producer of `vichaind dev`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DevConfig {
    /// Interval between blocks.
    #[serde(with = "humantime_serde")]
    pub block_time: Duration,
    /// Largest block (sum of tx bytes), as CometBFT's `block.max_bytes`.
    pub max_block_bytes: u64,
}

impl Default for DevConfig {
    fn default() -> Self {
        Self {
            block_time: Duration::from_secs(1),
            max_block_bytes: 21 * 1024 * 1024,
        }
    }
}

/// Largest snapshot chunk this node writes or accepts. CometBFT carries a chunk in
/// one p2p message of at most 16e6 bytes (about 15.3 MiB) including its envelope,
/// so a chunk stays at 15 MiB.
pub const MAX_SNAPSHOT_CHUNK_BYTES: u64 = 15 * 1024 * 1024;
/// Smallest `state_sync.chunk_bytes`: smaller chunks only multiply round trips.
pub const MIN_SNAPSHOT_CHUNK_BYTES: u64 = 4 * 1024;

/// State-sync snapshots this node takes and serves to nodes that join by state
/// sync (CometBFT's `[statesync]` section configures the joining side; a node
/// restores a snapshot whatever this section says).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateSyncConfig {
    /// Take a snapshot after committing every block whose height is a multiple of
    /// this; 0 never takes one. Off by default, as in the Cosmos SDK: a snapshot is
    /// a full copy of the state written next to it, which a single local node or a
    /// validator has no use for; the nodes that serve joiners opt in (a few hundred
    /// to a few thousand blocks is usual).
    pub snapshot_interval: u64,
    /// How many of the newest snapshots are kept on disk; older ones are deleted.
    pub snapshot_keep_recent: u32,
    /// Size a snapshot chunk is cut to, bytes (a single state entry larger than this
    /// gets a chunk of its own). At least 4 KiB and at most 15 MiB
    /// ([`MAX_SNAPSHOT_CHUNK_BYTES`]).
    pub chunk_bytes: u64,
}

impl Default for StateSyncConfig {
    fn default() -> Self {
        Self {
            snapshot_interval: 0,
            snapshot_keep_recent: 2,
            chunk_bytes: 1024 * 1024,
        }
    }
}

impl StateSyncConfig {
    /// Checks the bounds of each field.
    pub fn validate(&self) -> Result<()> {
        if self.snapshot_keep_recent == 0 {
            return Err(Error::Invalid {
                field: "state_sync.snapshot_keep_recent",
                reason: "must be at least 1".into(),
            });
        }
        if !(MIN_SNAPSHOT_CHUNK_BYTES..=MAX_SNAPSHOT_CHUNK_BYTES).contains(&self.chunk_bytes) {
            return Err(Error::Invalid {
                field: "state_sync.chunk_bytes",
                reason: format!(
                    "{} is outside {MIN_SNAPSHOT_CHUNK_BYTES}..={MAX_SNAPSHOT_CHUNK_BYTES}",
                    self.chunk_bytes
                ),
            });
        }
        Ok(())
    }
}

impl NodeConfig {
    /// Checks every field that can be wrong independently of the others.
    pub fn validate(&self) -> Result<()> {
        AbciAddr::parse(&self.abci.listen)?;
        if self.abci.max_frame_bytes < 1024 {
            return Err(Error::Invalid {
                field: "abci.max_frame_bytes",
                reason: format!("{} is below 1024", self.abci.max_frame_bytes),
            });
        }
        if !(self.cometbft.rpc.starts_with("http://") || self.cometbft.rpc.starts_with("https://"))
        {
            return Err(Error::Invalid {
                field: "cometbft.rpc",
                reason: format!("{:?} is not an http(s) URL", self.cometbft.rpc),
            });
        }
        if self.dev.block_time < Duration::from_millis(10) {
            return Err(Error::Invalid {
                field: "dev.block_time",
                reason: format!("{:?} is below 10ms", self.dev.block_time),
            });
        }
        if self.mempool.max_txs == 0 {
            return Err(Error::Invalid {
                field: "mempool.max_txs",
                reason: "must be positive".into(),
            });
        }
        self.state_sync.validate()?;
        Ok(())
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::read(path)?;
        let cfg: Self = toml::from_str(&text).map_err(|e| Error::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Writes the config as documented TOML.
    pub fn save(&self, path: &Path) -> Result<()> {
        let body = toml::to_string_pretty(self).map_err(|e| Error::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        crate::write(path, &format!("{HEADER}\n{body}"))
    }
}

const HEADER: &str = "\
# vichaind configuration.
#
# moniker             human name of this node
# [abci] listen       where CometBFT connects (proxy_app): tcp://HOST:PORT or unix:///PATH
# [abci] max_frame_bytes   largest ABCI message accepted
# [grpc] listen       NodeService gRPC server (with reflection)
# [cometbft] rpc      CometBFT RPC used by `vichaind start` to broadcast transactions
# [mempool]           bounds of the in-process mempool of `vichaind dev`
# [dev] block_time    interval between blocks of `vichaind dev` (e.g. \"1s\", \"250ms\")
# [dev] max_block_bytes   largest block produced by `vichaind dev`
# [metrics] enabled   serve Prometheus /metrics, the dashboard (/) and its JSON API (/api/)
# [metrics] listen    address of that HTTP server
# [state_sync] snapshot_interval   take a state-sync snapshot every N blocks (0 = never)
# [state_sync] snapshot_keep_recent   how many snapshots are kept on disk
# [state_sync] chunk_bytes   size of a snapshot chunk (4 KiB to 15 MiB)
#
# Every field may be omitted; omitted fields take the defaults shown here.
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_round_trips_through_toml() {
        let dir = std::env::temp_dir().join(format!("vichain-config-{}", std::process::id()));
        let path = dir.join("config.toml");
        let cfg = NodeConfig::default();
        cfg.save(&path).unwrap();
        assert_eq!(NodeConfig::load(&path).unwrap(), cfg);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn abci_addresses_parse() {
        assert_eq!(
            AbciAddr::parse("tcp://127.0.0.1:26658").unwrap(),
            AbciAddr::Tcp("127.0.0.1:26658".parse().unwrap())
        );
        assert_eq!(
            AbciAddr::parse("unix:///tmp/app.sock").unwrap(),
            AbciAddr::Unix("/tmp/app.sock".into())
        );
        assert!(AbciAddr::parse("localhost").is_err());
        assert!(AbciAddr::parse("unix://").is_err());
    }

    #[test]
    fn a_config_without_a_metrics_section_takes_the_default() {
        let cfg: NodeConfig = toml::from_str("moniker = \"x\"").unwrap();
        assert_eq!(cfg.metrics, MetricsConfig::default());
        assert_eq!(cfg.metrics.listen.port(), 26660);
        let cfg: NodeConfig =
            toml::from_str("[metrics]\nenabled = false\nlisten = \"0.0.0.0:9100\"").unwrap();
        assert!(!cfg.metrics.enabled);
        assert_eq!(cfg.metrics.listen.port(), 9100);
    }

    #[test]
    fn state_sync_takes_defaults_and_bounds_its_chunks() {
        let cfg: NodeConfig = toml::from_str("moniker = \"x\"").unwrap();
        assert_eq!(cfg.state_sync, StateSyncConfig::default());
        assert_eq!(cfg.state_sync.snapshot_interval, 0);
        assert_eq!(cfg.state_sync.snapshot_keep_recent, 2);
        let cfg: NodeConfig =
            toml::from_str("[state_sync]\nsnapshot_interval = 100\nchunk_bytes = 65536").unwrap();
        assert_eq!(cfg.state_sync.snapshot_interval, 100);
        assert_eq!(cfg.state_sync.chunk_bytes, 65536);
        assert_eq!(cfg.state_sync.snapshot_keep_recent, 2);
        cfg.validate().unwrap();

        for (chunk_bytes, keep) in [
            (MAX_SNAPSHOT_CHUNK_BYTES + 1, 2),
            (16 * 1024 * 1024, 2),
            (MIN_SNAPSHOT_CHUNK_BYTES - 1, 2),
            (0, 2),
            (1024 * 1024, 0),
        ] {
            let mut cfg = NodeConfig::default();
            cfg.state_sync.chunk_bytes = chunk_bytes;
            cfg.state_sync.snapshot_keep_recent = keep;
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains("state_sync."), "{err}");
        }
        let err = toml::from_str::<NodeConfig>("[state_sync]\ninterval = 5")
            .unwrap_err()
            .to_string();
        assert!(err.contains("interval"), "{err}");
    }

    #[test]
    fn bad_fields_are_named() {
        let mut cfg = NodeConfig::default();
        cfg.cometbft.rpc = "ftp://x".into();
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("cometbft.rpc"), "{err}");
        let err = toml::from_str::<NodeConfig>("bogus = 1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus"), "{err}");
    }
}
