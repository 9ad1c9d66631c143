//! The node's home directory and `vichaind init`.
//!
//! ```text
//! HOME/config.toml              vichaind's configuration
//! HOME/genesis.json             the chain's genesis (CometBFT format, app_state inside)
//! HOME/keys/*.json              account keys (the operator key is the authority of a new chain)
//! HOME/data/state.redb          the ledger's state
//! HOME/cometbft/config/...      CometBFT's config.toml, genesis.json, node and validator keys
//! HOME/cometbft/data/...        CometBFT's validator state
//! ```
//! A validator runs `cometbft start --home HOME/cometbft` next to `vichaind start --home HOME`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use vichain_config::{
    AppState, Genesis, GenesisAccount, GenesisValidator, NodeConfig, ParamsConfig, PubKeyJson,
};
use vichain_consensus::{Address, dev_signing_key};

use crate::keys::{Keyring, NamedKey};

/// Balance given to the operator (and, in dev, the dev account) at genesis.
pub const GENESIS_BALANCE: u64 = 1_000_000_000_000;
/// Voting power of each genesis validator.
pub const GENESIS_POWER: u64 = 10;
/// Chain id of `vichaind dev` when no genesis exists yet.
pub const DEV_CHAIN_ID: &str = "vichain-dev";

/// Paths inside a home directory.
#[derive(Debug, Clone)]
pub struct Home {
    pub root: PathBuf,
}

impl Home {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `~/.vichain`, the default home.
    pub fn default_path() -> PathBuf {
        dirs::home_dir()
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".vichain")
    }

    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    pub fn genesis(&self) -> PathBuf {
        self.root.join("genesis.json")
    }
    pub fn state_db(&self) -> PathBuf {
        self.root.join("data").join("state.redb")
    }
    pub fn keyring(&self) -> Keyring {
        Keyring::new(&self.root)
    }
    pub fn cometbft(&self) -> PathBuf {
        self.root.join("cometbft")
    }
    pub fn validator_key(&self) -> PathBuf {
        self.cometbft()
            .join("config")
            .join("priv_validator_key.json")
    }

    pub fn is_initialized(&self) -> bool {
        self.config().exists() || self.genesis().exists()
    }

    /// Loads config.toml, or the defaults when there is none.
    pub fn load_config(&self) -> Result<NodeConfig> {
        if self.config().exists() {
            Ok(NodeConfig::load(&self.config())?)
        } else {
            Ok(NodeConfig::default())
        }
    }

    pub fn load_validator_key(&self) -> Result<SigningKey> {
        read_cometbft_key(&self.validator_key())
    }

    /// CometBFT's node key (its P2P identity; the node id is derived from it).
    /// Writes `genesis` to both places that read it: vichaind's and CometBFT's.
    pub fn save_genesis(&self, genesis: &Genesis) -> Result<()> {
        genesis.save(&self.genesis())?;
        genesis.save(&self.cometbft().join("config/genesis.json"))?;
        Ok(())
    }

    pub fn load_node_key(&self) -> Result<SigningKey> {
        read_cometbft_key(&self.cometbft().join("config").join("node_key.json"))
    }
}

/// Reads an ed25519 key from a CometBFT key file (`priv_validator_key.json`,
/// `node_key.json`: `priv_key.value` is base64 of seed || public key).
fn read_cometbft_key(path: &Path) -> Result<SigningKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let b64 = v["priv_key"]["value"]
        .as_str()
        .with_context(|| format!("{}: no priv_key.value", path.display()))?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64)?;
    let seed: [u8; 32] = bytes
        .get(..32)
        .and_then(|s| s.try_into().ok())
        .with_context(|| format!("{}: priv_key is too short", path.display()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Options of `vichaind init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub chain_id: String,
    pub moniker: String,
    /// Fund and empower the well-known dev account instead of a fresh operator key.
    pub dev: bool,
    /// The node's ports (several nodes on one machine each get their own).
    pub ports: Ports,
    /// CometBFT's `timeout_commit`: the pause after a block before the next height.
    pub block_time: std::time::Duration,
}

impl InitOptions {
    /// A single node on the standard ports.
    pub fn new(chain_id: impl Into<String>, moniker: impl Into<String>) -> Self {
        Self {
            chain_id: chain_id.into(),
            moniker: moniker.into(),
            dev: false,
            ports: Ports::standard(0),
            block_time: DEFAULT_BLOCK_TIME,
        }
    }
}

/// CometBFT's default `timeout_commit` in v0.38 is 1 s; vichain keeps it.
pub const DEFAULT_BLOCK_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// The TCP ports of one node on loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ports {
    /// CometBFT's peer-to-peer port.
    pub p2p: u16,
    /// CometBFT's RPC.
    pub rpc: u16,
    /// vichaind's ABCI server (CometBFT's `proxy_app`).
    pub abci: u16,
    /// vichaind's gRPC (clients, workers).
    pub grpc: u16,
    /// vichaind's metrics, dashboard and JSON API.
    pub metrics: u16,
    /// CometBFT's own Prometheus endpoint.
    pub cometbft_metrics: u16,
}

impl Ports {
    /// Node `i` of a network on one machine with CometBFT's and vichain's usual ports
    /// (26656 p2p, 26657 RPC, 26658 ABCI, 26660 metrics, 26661 CometBFT metrics,
    /// 9090 gRPC), each offset by 10 per node.
    pub fn standard(i: usize) -> Self {
        let off = (i * 10) as u16;
        Self {
            p2p: 26656 + off,
            rpc: 26657 + off,
            abci: 26658 + off,
            grpc: 9090 + off,
            metrics: 26660 + off,
            cometbft_metrics: 26661 + off,
        }
    }

    /// Node `i` of a network whose ports start at `base` (10 per node: base+10i is
    /// p2p, then RPC, ABCI, gRPC, metrics and CometBFT metrics).
    pub fn from_base(base: u16, i: usize) -> Self {
        let b = base + (i * 10) as u16;
        Self {
            p2p: b,
            rpc: b + 1,
            abci: b + 2,
            grpc: b + 3,
            metrics: b + 4,
            cometbft_metrics: b + 5,
        }
    }
}

/// What `init` created.
#[derive(Debug, Clone)]
pub struct InitSummary {
    pub home: PathBuf,
    pub chain_id: String,
    pub operator: Address,
    pub validator_pub_key: [u8; 32],
    pub node_id: String,
}

/// Creates a home with keys, config.toml, genesis.json and CometBFT's files.
/// Refuses to touch a home that is already initialized.
pub fn init(home: &Home, opts: &InitOptions) -> Result<InitSummary> {
    if home.is_initialized() {
        bail!(
            "{} is already initialized (config.toml or genesis.json exists); choose another --home",
            home.root.display()
        );
    }
    let operator = if opts.dev {
        NamedKey {
            name: "operator".into(),
            key: dev_signing_key(),
        }
    } else {
        NamedKey {
            name: "operator".into(),
            key: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    };
    home.keyring().save(&operator)?;
    let validator = SigningKey::generate(&mut rand::rngs::OsRng);
    let node_key = SigningKey::generate(&mut rand::rngs::OsRng);

    let mut config = NodeConfig {
        moniker: opts.moniker.clone(),
        ..NodeConfig::default()
    };
    let p = opts.ports;
    config.abci.listen = format!("tcp://127.0.0.1:{}", p.abci);
    config.grpc.listen = std::net::SocketAddr::from(([127, 0, 0, 1], p.grpc));
    config.cometbft.rpc = format!("http://127.0.0.1:{}", p.rpc);
    config.metrics.listen = std::net::SocketAddr::from(([127, 0, 0, 1], p.metrics));
    config.save(&home.config())?;

    let genesis = Genesis {
        genesis_time: now_rfc3339(),
        chain_id: opts.chain_id.clone(),
        initial_height: "1".into(),
        consensus_params: vichain_config::default_consensus_params(),
        validators: vec![genesis_validator(&validator, &opts.moniker)],
        app_hash: String::new(),
        app_state: AppState {
            authority: operator.address().to_string(),
            accounts: vec![GenesisAccount {
                address: operator.address().to_string(),
                balance: GENESIS_BALANCE,
            }],
            models: Vec::new(),
            params: ParamsConfig {
                // The dev attester stands in for TEEs on dev chains only.
                allow_simulated_tee: opts.dev,
                // Dev blocks are short (1 s, 200 ms in tests): give workers time to
                // prove before a deadline counts them absent.
                commit_window_blocks: if opts.dev { 150 } else { 10 },
                reveal_window_blocks: if opts.dev { 150 } else { 10 },
                ..ParamsConfig::default()
            },
        },
    };
    genesis.validate()?;
    genesis.save(&home.genesis())?;
    write_cometbft(home, &genesis, &validator, &node_key)?;
    CometToml::new(&opts.moniker, opts.ports, opts.block_time).write(home)?;
    Ok(InitSummary {
        home: home.root.clone(),
        chain_id: opts.chain_id.clone(),
        operator: operator.address(),
        validator_pub_key: validator.verifying_key().to_bytes(),
        node_id: node_id(&node_key),
    })
}

/// CometBFT's validator entry for a consensus key.
pub fn genesis_validator(key: &SigningKey, name: &str) -> GenesisValidator {
    GenesisValidator {
        address: cometbft_address(key),
        pub_key: PubKeyJson {
            kind: "tendermint/PubKeyEd25519".into(),
            value: b64(key.verifying_key().as_bytes()),
        },
        power: GENESIS_POWER.to_string(),
        name: name.into(),
    }
}

/// CometBFT's address of an ed25519 key: first 20 bytes of sha256(pub_key), upper hex.
pub fn cometbft_address(key: &SigningKey) -> String {
    hex::encode_upper(&Sha256::digest(key.verifying_key().as_bytes())[..20])
}

/// CometBFT's node id: the lower-hex address of the node key.
pub fn node_id(key: &SigningKey) -> String {
    cometbft_address(key).to_lowercase()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(value)?)
        .with_context(|| format!("writing {}", path.display()))
}

fn write_cometbft(
    home: &Home,
    genesis: &Genesis,
    validator: &SigningKey,
    node_key: &SigningKey,
) -> Result<()> {
    let cmt = home.cometbft();
    let secret = |k: &SigningKey| {
        let mut full = k.to_bytes().to_vec();
        full.extend_from_slice(k.verifying_key().as_bytes());
        b64(&full)
    };
    write_json(
        &cmt.join("config/priv_validator_key.json"),
        &serde_json::json!({
            "address": cometbft_address(validator),
            "pub_key": {"type": "tendermint/PubKeyEd25519", "value": b64(validator.verifying_key().as_bytes())},
            "priv_key": {"type": "tendermint/PrivKeyEd25519", "value": secret(validator)},
        }),
    )?;
    write_json(
        &cmt.join("config/node_key.json"),
        &serde_json::json!({"priv_key": {"type": "tendermint/PrivKeyEd25519", "value": secret(node_key)}}),
    )?;
    write_json(
        &cmt.join("data/priv_validator_state.json"),
        &serde_json::json!({"height": "0", "round": 0, "step": 0}),
    )?;
    genesis.save(&cmt.join("config/genesis.json"))?;
    Ok(())
}

/// The keys of CometBFT's `config.toml` that vichain sets; every other key keeps
/// CometBFT's default.
#[derive(Debug, Clone)]
pub struct CometToml {
    pub moniker: String,
    pub ports: Ports,
    /// `id@host:port` of the peers to keep connections to.
    pub persistent_peers: Vec<String>,
    pub block_time: std::time::Duration,
    /// Join by state sync from a snapshot instead of replaying every block.
    pub state_sync: Option<StateSyncToml>,
}

/// CometBFT's `[statesync]` section: the light client's trust root and the RPC
/// servers it verifies headers against.
#[derive(Debug, Clone)]
pub struct StateSyncToml {
    /// At least two, comma-separated in the file.
    pub rpc_servers: Vec<String>,
    pub trust_height: u64,
    /// Hex hash of the header at `trust_height`.
    pub trust_hash: String,
    pub trust_period: std::time::Duration,
}

impl CometToml {
    pub fn new(moniker: &str, ports: Ports, block_time: std::time::Duration) -> Self {
        Self {
            moniker: moniker.into(),
            ports,
            persistent_peers: Vec::new(),
            block_time,
            state_sync: None,
        }
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let p = self.ports;
        let ms = |d: std::time::Duration| format!("{}ms", d.as_millis());
        let (enable, rpc_servers, trust_height, trust_hash, trust_period) = match &self.state_sync {
            Some(s) => (
                true,
                s.rpc_servers.join(","),
                s.trust_height,
                s.trust_hash.clone(),
                format!("{}s", s.trust_period.as_secs()),
            ),
            None => (false, String::new(), 0, String::new(), "168h0m0s".into()),
        };
        format!(
            r#"# CometBFT configuration written by vichaind; see
# https://docs.cometbft.com/v0.38/core/configuration for every key.
proxy_app = "tcp://127.0.0.1:{abci}"
moniker = "{moniker}"
abci = "socket"
db_backend = "goleveldb"

[rpc]
laddr = "tcp://127.0.0.1:{rpc}"

[p2p]
laddr = "tcp://127.0.0.1:{p2p}"
persistent_peers = "{peers}"
allow_duplicate_ip = true
addr_book_strict = false

[mempool]
recheck = true
size = 50000

[statesync]
enable = {enable}
rpc_servers = "{rpc_servers}"
trust_height = {trust_height}
trust_hash = "{trust_hash}"
trust_period = "{trust_period}"
discovery_time = "5s"
chunk_request_timeout = "10s"

[consensus]
timeout_propose = "2s"
timeout_commit = "{commit}"
create_empty_blocks = true

[instrumentation]
prometheus = true
prometheus_listen_addr = "127.0.0.1:{prom}"
namespace = "cometbft"
"#,
            abci = p.abci,
            rpc = p.rpc,
            p2p = p.p2p,
            prom = p.cometbft_metrics,
            moniker = self.moniker,
            peers = self.persistent_peers.join(","),
            commit = ms(self.block_time),
        )
    }

    /// Writes `HOME/cometbft/config/config.toml`.
    pub fn write(&self, home: &Home) -> Result<()> {
        let path = home.cometbft().join("config/config.toml");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, self.render()).with_context(|| format!("writing {}", path.display()))
    }
}

/// A node's CometBFT peer address, `id@127.0.0.1:port`.
pub fn peer_address(node_id: &str, ports: &Ports) -> String {
    format!("{node_id}@127.0.0.1:{}", ports.p2p)
}

/// Creates `n` validator homes under `out` sharing one genesis, with distinct ports
/// (`ports(i)` for node `i`) and each node's CometBFT peering with the others.
pub fn init_localnet(
    out: &Path,
    n: usize,
    chain_id: &str,
    ports: impl Fn(usize) -> Ports,
    block_time: std::time::Duration,
) -> Result<Vec<InitSummary>> {
    if n == 0 || n > 50 {
        bail!("--validators must be between 1 and 50, got {n}");
    }
    let mut summaries = Vec::new();
    for i in 0..n {
        let home = Home::new(out.join(format!("node{i}")));
        summaries.push(init(
            &home,
            &InitOptions {
                ports: ports(i),
                block_time,
                ..InitOptions::new(chain_id, format!("node{i}"))
            },
        )?);
    }
    // One genesis: node0's, with every validator and every operator funded.
    let first = Home::new(out.join("node0"));
    let mut genesis = Genesis::load(&first.genesis())?;
    genesis.validators.clear();
    genesis.app_state.accounts.clear();
    for (i, s) in summaries.iter().enumerate() {
        let home = Home::new(out.join(format!("node{i}")));
        genesis.validators.push(genesis_validator(
            &home.load_validator_key()?,
            &format!("node{i}"),
        ));
        genesis.app_state.accounts.push(GenesisAccount {
            address: s.operator.to_string(),
            balance: GENESIS_BALANCE,
        });
    }
    for i in 0..n {
        let home = Home::new(out.join(format!("node{i}")));
        home.save_genesis(&genesis)?;
        let mut toml = CometToml::new(&format!("node{i}"), ports(i), block_time);
        toml.persistent_peers = summaries
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(j, p)| peer_address(&p.node_id, &ports(j)))
            .collect();
        toml.write(&home)?;
    }
    Ok(summaries)
}

/// Creates a home for a node that joins an existing chain: its own keys (its
/// validator key is not in the set until the authority adds it), `genesis` copied
/// in, CometBFT peering with `peers`, optionally by state sync.
pub fn init_joining(
    home: &Home,
    genesis: &Genesis,
    moniker: &str,
    ports: Ports,
    block_time: std::time::Duration,
    peers: Vec<String>,
    state_sync: Option<StateSyncToml>,
) -> Result<InitSummary> {
    let s = init(
        home,
        &InitOptions {
            ports,
            block_time,
            ..InitOptions::new(&genesis.chain_id, moniker)
        },
    )?;
    home.save_genesis(genesis)?;
    let mut toml = CometToml::new(moniker, ports, block_time);
    toml.persistent_peers = peers;
    toml.state_sync = state_sync;
    toml.write(home)?;
    Ok(s)
}

/// The current time as RFC 3339 (UTC), for genesis files only (never in state
/// transitions).
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now();
    humantime::format_rfc3339_nanos(now).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_a_consistent_home_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().join("h"));
        let opts = InitOptions::new("vichain-test", "n0");
        let s = init(&home, &opts).unwrap();
        let genesis = Genesis::load(&home.genesis()).unwrap();
        assert_eq!(genesis.chain_id, "vichain-test");
        assert_eq!(genesis.app_state.authority, s.operator.to_string());
        let cmt = Genesis::load(&home.cometbft().join("config/genesis.json")).unwrap();
        assert_eq!(cmt, genesis);
        assert_eq!(
            home.load_validator_key()
                .unwrap()
                .verifying_key()
                .to_bytes(),
            s.validator_pub_key
        );
        assert_eq!(
            home.keyring().get("operator").unwrap().address(),
            s.operator
        );
        home.load_config().unwrap();
        let err = init(&home, &opts).unwrap_err().to_string();
        assert!(err.contains("already initialized"), "{err}");
    }

    #[test]
    fn localnet_homes_share_one_genesis() {
        let dir = tempfile::tempdir().unwrap();
        let s = init_localnet(
            dir.path(),
            4,
            "vichain-local",
            Ports::standard,
            DEFAULT_BLOCK_TIME,
        )
        .unwrap();
        assert_eq!(s.len(), 4);
        let g0 = Genesis::load(&dir.path().join("node0/genesis.json")).unwrap();
        assert_eq!(g0.validators.len(), 4);
        for i in 1..4 {
            let gi = Genesis::load(&dir.path().join(format!("node{i}/genesis.json"))).unwrap();
            assert_eq!(gi, g0);
        }
        let cfg =
            std::fs::read_to_string(dir.path().join("node2/cometbft/config/config.toml")).unwrap();
        assert!(
            cfg.contains("proxy_app = \"tcp://127.0.0.1:26678\""),
            "{cfg}"
        );
        assert!(cfg.contains(&s[0].node_id));
    }

    #[test]
    fn cometbft_config_is_valid_toml_with_ports_metrics_and_state_sync() {
        let ports = Ports::from_base(40000, 2);
        let mut t = CometToml::new("n2", ports, std::time::Duration::from_millis(500));
        t.persistent_peers = vec!["abc@127.0.0.1:40000".into()];
        let plain: toml::Value = toml::from_str(&t.render()).unwrap();
        assert_eq!(plain["proxy_app"].as_str(), Some("tcp://127.0.0.1:40022"));
        assert_eq!(
            plain["rpc"]["laddr"].as_str(),
            Some("tcp://127.0.0.1:40021")
        );
        assert_eq!(
            plain["p2p"]["laddr"].as_str(),
            Some("tcp://127.0.0.1:40020")
        );
        assert_eq!(
            plain["p2p"]["persistent_peers"].as_str(),
            Some("abc@127.0.0.1:40000")
        );
        assert_eq!(plain["consensus"]["timeout_commit"].as_str(), Some("500ms"));
        assert_eq!(plain["instrumentation"]["prometheus"].as_bool(), Some(true));
        assert_eq!(
            plain["instrumentation"]["prometheus_listen_addr"].as_str(),
            Some("127.0.0.1:40025")
        );
        assert_eq!(plain["statesync"]["enable"].as_bool(), Some(false));
        t.state_sync = Some(StateSyncToml {
            rpc_servers: vec!["http://127.0.0.1:1".into(), "http://127.0.0.1:2".into()],
            trust_height: 42,
            trust_hash: "AB".repeat(32),
            trust_period: std::time::Duration::from_secs(3600),
        });
        let synced: toml::Value = toml::from_str(&t.render()).unwrap();
        let ss = &synced["statesync"];
        assert_eq!(ss["enable"].as_bool(), Some(true));
        assert_eq!(
            ss["rpc_servers"].as_str(),
            Some("http://127.0.0.1:1,http://127.0.0.1:2")
        );
        assert_eq!(ss["trust_height"].as_integer(), Some(42));
        assert_eq!(ss["trust_period"].as_str(), Some("3600s"));
        assert_eq!(Ports::standard(1).grpc, 9100);
        assert_eq!(Ports::standard(0).cometbft_metrics, 26661);
    }

    #[test]
    fn a_localnet_of_no_or_too_many_validators_is_refused_and_writes_nothing() {
        for n in [0, 51] {
            let dir = tempfile::tempdir().unwrap();
            let err = init_localnet(dir.path(), n, "x", Ports::standard, DEFAULT_BLOCK_TIME)
                .unwrap_err()
                .to_string();
            assert!(err.contains("between 1 and 50"), "{err}");
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        }
    }
}
