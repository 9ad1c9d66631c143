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
