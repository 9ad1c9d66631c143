//! CometBFT's RPC, for `vichaind start`: forwarding transactions
//! (`broadcast_tx_sync`) and reading what an operator wants to see next to the
//! ledger: the node's sync state and peers, the validator set, and which validators
//! signed the recent blocks.
//!
//! The RPC client is tendermint-rs's (`tendermint-rpc`), in CometBFT v0.38's
//! compatibility mode. [`CometView`] is a poller that keeps the latest of these in
//! memory for the dashboard and the metrics, so a page load never waits on CometBFT.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, RwLock},
    time::Duration,
};

use anyhow::{Context, Result};
use serde::Serialize;
use tendermint::block::Height;
use tendermint_rpc::{Client, HttpClient, HttpClientUrl, Paging, client::CompatMode};
use tracing::{debug, warn};

use crate::tasks::Shutdown;

/// How many recent blocks the signing record covers (CometBFT's own
/// `signed_blocks_window` in the Cosmos SDK's slashing module is 100 by default).
pub const SIGNING_WINDOW: u64 = 100;
/// Most blocks whose commits one poll fetches (the rest are caught up next poll).
const MAX_COMMITS_PER_POLL: u64 = 20;

/// A CometBFT RPC endpoint.
#[derive(Debug, Clone)]
pub struct CometRpc {
    url: String,
    client: HttpClient,
}

/// CometBFT's answer to `broadcast_tx_sync` (CheckTx's result).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastResult {
    pub code: u32,
    pub log: String,
    pub codespace: String,
    /// sha256 of the transaction.
    pub hash: Vec<u8>,
}

/// What `/status` says about the node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub node_id: String,
    pub moniker: String,
    pub network: String,
    pub version: String,
    pub latest_block_height: u64,
    /// Hex.
    pub latest_app_hash: String,
    pub latest_block_time: String,
    pub earliest_block_height: u64,
    pub catching_up: bool,
    /// Hex address of this node's validator key, and its voting power (0 when it
    /// is not in the set).
    pub validator_address: String,
    pub voting_power: u64,
}

/// One member of the validator set, with its signing record.
#[derive(Debug, Clone, Serialize)]
pub struct ValidatorInfo {
    /// Upper hex, as CometBFT prints it.
    pub address: String,
    /// Hex ed25519 key.
    pub pub_key: String,
    pub voting_power: u64,
    pub proposer_priority: i64,
    /// Last height among the recent ones whose commit carries its signature.
    pub last_signed_height: Option<u64>,
    /// Blocks of the recent window whose commit lacks its signature.
    pub missed_blocks: u64,
    /// Blocks of the recent window looked at.
    pub window: u64,
}

/// A connected peer.
#[derive(Debug, Clone, Serialize)]
pub struct PeerInfo {
    pub node_id: String,
    pub moniker: String,
    pub remote_ip: String,
    pub outbound: bool,
}

impl CometRpc {
    pub fn new(url: &str, timeout: Duration) -> Result<Self> {
        let parsed: HttpClientUrl = url.parse().map_err(|e: tendermint_rpc::Error| {
            anyhow::anyhow!("cometbft.rpc {url:?} is not an http(s) URL: {}", e.detail())
        })?;
        let client = HttpClient::builder(parsed)
            .compat_mode(CompatMode::V0_38)
            .timeout(timeout)
            .build()
            .map_err(|e| anyhow::anyhow!("CometBFT RPC client for {url}: {}", e.detail()))?;
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            client,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A one-line error naming the endpoint and the call. tendermint-rs's errors
    /// carry a multi-line trace in their `Display`; only the detail is kept, since
    /// the message goes into logs and gRPC status headers.
    fn error(&self, call: &str, e: &tendermint_rpc::Error) -> anyhow::Error {
        let detail = e.detail().to_string();
        let first = detail.lines().next().unwrap_or("").trim();
        anyhow::anyhow!("CometBFT RPC {} {call}: {first}", self.url)
    }

    /// The tendermint-rs client, for calls not wrapped here.
    pub fn client(&self) -> &HttpClient {
        &self.client
    }

    /// Gives `tx` to CometBFT's mempool; the result is the application's CheckTx.
    pub async fn broadcast_tx_sync(&self, tx: &[u8]) -> Result<BroadcastResult> {
        let r = self
            .client
            .broadcast_tx_sync(tx.to_vec())
            .await
            .map_err(|e| self.error("broadcast_tx_sync", &e))?;
        Ok(BroadcastResult {
            code: r.code.value(),
            log: r.log,
            codespace: r.codespace,
            hash: r.hash.as_bytes().to_vec(),
        })
    }

    pub async fn status(&self) -> Result<NodeStatus> {
        let s = self
            .client
            .status()
            .await
            .map_err(|e| self.error("status", &e))?;
        Ok(NodeStatus {
            node_id: s.node_info.id.to_string(),
            moniker: s.node_info.moniker.to_string(),
            network: s.node_info.network.to_string(),
            version: s.node_info.version.to_string(),
            latest_block_height: s.sync_info.latest_block_height.value(),
            latest_app_hash: hex::encode(s.sync_info.latest_app_hash.as_bytes()),
            latest_block_time: s.sync_info.latest_block_time.to_rfc3339(),
            earliest_block_height: s.sync_info.earliest_block_height.value(),
            catching_up: s.sync_info.catching_up,
            validator_address: s.validator_info.address.to_string(),
            voting_power: s.validator_info.power.value(),
        })
    }

    /// The validator set at `height` (every page), without signing records.
    pub async fn validators(&self, height: u64) -> Result<Vec<ValidatorInfo>> {
        let h = Height::try_from(height.max(1)).context("height out of range")?;
        let r = self
            .client
            .validators(h, Paging::All)
            .await
            .map_err(|e| self.error("validators", &e))?;
        Ok(r.validators
            .into_iter()
            .map(|v| ValidatorInfo {
                address: v.address.to_string(),
                pub_key: hex::encode(v.pub_key.to_bytes()),
                voting_power: v.power.value(),
                proposer_priority: v.proposer_priority.value(),
                last_signed_height: None,
                missed_blocks: 0,
                window: 0,
            })
            .collect())
    }

    pub async fn peers(&self) -> Result<Vec<PeerInfo>> {
        let r = self
            .client
            .net_info()
            .await
            .map_err(|e| self.error("net_info", &e))?;
        Ok(r.peers
            .into_iter()
            .map(|p| PeerInfo {
                node_id: p.node_info.id.to_string(),
                moniker: p.node_info.moniker.to_string(),
                remote_ip: p.remote_ip.to_string(),
                outbound: p.is_outbound,
            })
            .collect())
    }

    /// Addresses (upper hex) of the validators whose signature for block `height`
    /// is in its commit.
    pub async fn signers(&self, height: u64) -> Result<Vec<String>> {
        let h = Height::try_from(height).context("height out of range")?;
        let c = self
            .client
            .commit(h)
            .await
            .map_err(|e| self.error(&format!("commit {height}"), &e))?;
        Ok(c.signed_header
            .commit
            .signatures
            .iter()
            .filter_map(|s| match s {
                tendermint::block::CommitSig::BlockIdFlagCommit {
                    validator_address, ..
                } => Some(validator_address.to_string()),
                _ => None,
            })
            .collect())
    }

    /// The app hash in the header of block `height` (the state after block
    /// `height - 1`), hex.
    pub async fn header_app_hash(&self, height: u64) -> Result<String> {
        let h = Height::try_from(height).context("height out of range")?;
        let r = self
            .client
            .header(h)
            .await
            .map_err(|e| self.error(&format!("header {height}"), &e))?;
        Ok(hex::encode(r.header.app_hash.as_bytes()))
    }
}

/// What the dashboard shows of CometBFT, refreshed by [`CometView::run`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct CometSnapshot {
    pub status: Option<NodeStatus>,
    pub validators: Vec<ValidatorInfo>,
    pub peers: Vec<PeerInfo>,
    /// Why the last poll failed, if it did (CometBFT down, say).
    pub error: Option<String>,
    /// Unix seconds of the last successful poll.
    pub updated_at: u64,
}

/// The signers (upper-hex addresses) of each recent height, oldest first.
type SigningRecord = VecDeque<(u64, Vec<String>)>;

/// The poller's shared state.
#[derive(Debug, Clone)]
pub struct CometView {
    rpc: CometRpc,
    latest: Arc<RwLock<CometSnapshot>>,
    /// Signers of each recent height, oldest first.
    signing: Arc<RwLock<SigningRecord>>,
}

impl CometView {
    pub fn new(rpc: CometRpc) -> Self {
        Self {
            rpc,
            latest: Arc::default(),
            signing: Arc::default(),
        }
    }

    pub fn rpc(&self) -> &CometRpc {
        &self.rpc
    }

    /// The latest poll's result.
    pub fn snapshot(&self) -> CometSnapshot {
        self.latest.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Polls CometBFT every `interval` until shutdown. Failures are recorded in
    /// the snapshot and logged at debug level (CometBFT starts after vichaind).
    pub async fn run(self, interval: Duration, shutdown: Shutdown) -> Result<()> {
        loop {
            match self.poll().await {
                Ok(s) => {
                    crate::metrics::comet_view(&s);
                    if let Ok(mut l) = self.latest.write() {
                        *l = s;
                    }
                }
                Err(e) => {
                    debug!("polling CometBFT: {e:#}");
                    if let Ok(mut l) = self.latest.write() {
                        l.error = Some(format!("{e:#}"));
                    }
                }
            }
            tokio::select! {
                _ = shutdown.wait() => return Ok(()),
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }

    async fn poll(&self) -> Result<CometSnapshot> {
        let status = self.rpc.status().await?;
        let mut validators = self.rpc.validators(status.latest_block_height).await?;
        let peers = self.rpc.peers().await.unwrap_or_else(|e| {
            warn!("CometBFT net_info: {e:#}");
            Vec::new()
        });
        self.record_signers(status.latest_block_height, status.earliest_block_height)
            .await;
        let signing = self.signing.read().map(|s| s.clone()).unwrap_or_default();
        let mut last: BTreeMap<&str, u64> = BTreeMap::new();
        let mut signed: BTreeMap<&str, u64> = BTreeMap::new();
        for (h, signers) in &signing {
            for s in signers {
                last.insert(s, *h);
                *signed.entry(s).or_default() += 1;
            }
        }
        let window = signing.len() as u64;
        for v in &mut validators {
            v.last_signed_height = last.get(v.address.as_str()).copied();
            v.window = window;
            v.missed_blocks = window - signed.get(v.address.as_str()).copied().unwrap_or(0);
        }
        let updated_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(CometSnapshot {
            status: Some(status),
            validators,
            peers,
            error: None,
            updated_at,
        })
    }

    /// Fetches the commits of heights not yet recorded, up to `latest`. The commit
    /// of `latest` itself is only in the next block, so the last height recorded
    /// is `latest - 1` (CometBFT's `/commit` of the latest height is not canonical).
    async fn record_signers(&self, latest: u64, earliest: u64) {
        let last_recorded = self
            .signing
            .read()
            .ok()
            .and_then(|s| s.back().map(|(h, _)| *h))
            .unwrap_or(0);
        let top = latest.saturating_sub(1);
        let from = (last_recorded + 1)
            .max(top.saturating_sub(SIGNING_WINDOW) + 1)
            .max(earliest.max(1));
        let to = top.min(from + MAX_COMMITS_PER_POLL - 1);
        for h in from..=to {
            match self.rpc.signers(h).await {
                Ok(signers) => {
                    if let Ok(mut s) = self.signing.write() {
                        s.push_back((h, signers));
                        while s.len() as u64 > SIGNING_WINDOW {
                            s.pop_front();
                        }
                    }
                }
                Err(e) => {
                    debug!("commit {h}: {e:#}");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_rpc_url_is_refused_naming_it() {
        let err = CometRpc::new("not a url", Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cometbft.rpc \"not a url\""), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
}
