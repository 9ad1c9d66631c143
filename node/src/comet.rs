//! Forwarding transactions to CometBFT's RPC (`broadcast_tx_sync`) and reading
//! its status, for `vichaind start`.

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde::Deserialize;

/// A CometBFT RPC endpoint.
#[derive(Debug, Clone)]
pub struct CometRpc {
    url: String,
    client: reqwest::Client,
}

/// CometBFT's answer to `broadcast_tx_sync` (CheckTx's result).
#[derive(Debug, Clone, Deserialize)]
pub struct BroadcastResult {
    #[serde(default)]
    pub code: u32,
    #[serde(default)]
    pub log: String,
    #[serde(default)]
    pub codespace: String,
    /// Upper hex of sha256(tx).
    pub hash: String,
}

#[derive(Debug, Deserialize)]
struct RpcResponse<T> {
    result: Option<T>,
    error: Option<serde_json::Value>,
}

impl CometRpc {
    pub fn new(url: &str, timeout: std::time::Duration) -> Result<Self> {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            client,
        })
    }

    pub async fn broadcast_tx_sync(&self, tx: &[u8]) -> Result<BroadcastResult> {
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "id": 1,
            "method": "broadcast_tx_sync",
            "params": { "tx": base64::engine::general_purpose::STANDARD.encode(tx) },
        });
        let resp: RpcResponse<BroadcastResult> = self
            .client
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("CometBFT RPC {} is unreachable", self.url))?
            .json()
            .await
            .context("CometBFT RPC answered with something other than JSON-RPC")?;
        match (resp.result, resp.error) {
            (Some(r), _) => Ok(r),
            (None, Some(e)) => bail!("CometBFT RPC error: {e}"),
            (None, None) => bail!("CometBFT RPC returned neither result nor error"),
        }
    }
}
