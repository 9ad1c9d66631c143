use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A CometBFT v0.38 `genesis.json`. Integers that CometBFT writes as strings
/// (`initial_height`, `power`) are kept as strings so the file round-trips byte for
/// byte through CometBFT's own parser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Genesis {
    pub genesis_time: String,
    pub chain_id: String,
    #[serde(default = "one")]
    pub initial_height: String,
    #[serde(default = "default_consensus_params")]
    pub consensus_params: serde_json::Value,
    #[serde(default)]
    pub validators: Vec<GenesisValidator>,
    #[serde(default)]
    pub app_hash: String,
    pub app_state: AppState,
}

fn one() -> String {
    "1".into()
}

/// CometBFT's defaults, with vote extensions enabled from the first height (the
/// ledger answers ExtendVote/VerifyVoteExtension).
pub fn default_consensus_params() -> serde_json::Value {
    serde_json::json!({
        "block": { "max_bytes": "22020096", "max_gas": "-1" },
        "evidence": {
            "max_age_num_blocks": "100000",
            "max_age_duration": "172800000000000",
            "max_bytes": "1048576"
        },
        "validator": { "pub_key_types": ["ed25519"] },
        "version": { "app": "1" },
        "abci": { "vote_extensions_enable_height": "1" }
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisValidator {
    /// Upper-case hex of the first 20 bytes of sha256(pub_key), as CometBFT writes it.
    pub address: String,
    pub pub_key: PubKeyJson,
    pub power: String,
    #[serde(default)]
    pub name: String,
}

/// Amino-JSON public key: `{"type": "tendermint/PubKeyEd25519", "value": base64}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PubKeyJson {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

/// The ledger's part of genesis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppState {
    /// bech32 address allowed to change validators and register models.
    pub authority: String,
    #[serde(default)]
    pub accounts: Vec<GenesisAccount>,
    #[serde(default)]
    pub models: Vec<GenesisModel>,
    #[serde(default)]
    pub params: ParamsConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    pub address: String,
    pub balance: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisModel {
    pub model_id: String,
    #[serde(default)]
    pub name: String,
    pub family: String,
    pub total_layers: u32,
    pub shards: Vec<GenesisShard>,
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Hex of the compressed Groth16 verifying key, if any.
    #[serde(default)]
    pub verifying_key: String,
    /// Hex of the 32-byte Poseidon commitment, if any.
    #[serde(default)]
    pub commitment: String,
    #[serde(default)]
    pub price: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisShard {
    pub start_layer: u32,
    pub end_layer: u32,
    /// Hex sha256 of the shard file.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    pub k: u32,
    pub quorum: u32,
    pub tolerance_ppm: u64,
    pub require_proof: bool,
    pub require_tee: bool,
    /// TEE kinds accepted when `require_tee` ("sev-snp", "tdx", "sgx").
    pub tee_kinds: Vec<String>,
    /// Hex launch measurements accepted; empty accepts any.
    pub tee_measurements: Vec<String>,
    /// Lowest Intel TCB status accepted, e.g. "UpToDate"; empty for none.
    pub min_tcb_status: String,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            k: 3,
            quorum: 2,
            tolerance_ppm: 0,
            require_proof: false,
            require_tee: false,
            tee_kinds: Vec::new(),
            tee_measurements: Vec::new(),
            min_tcb_status: String::new(),
        }
    }
}

/// Consensus-relevant limits of the ledger; stored in state at genesis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParamsConfig {
    pub max_tx_bytes: u64,
    pub max_input_bytes: u64,
    pub min_fee: u64,
    pub min_worker_stake: u64,
    pub max_k: u32,
    pub max_shards: u32,
    pub max_served_shards: u32,
    pub max_verifying_key_bytes: u64,
    /// Accept simulated TEE evidence (dev chains only).
    pub allow_simulated_tee: bool,
    pub max_evidence_bytes: u64,
    pub attestation_ttl_blocks: u64,
    /// Blocks assigned workers have to commit to their result.
    pub commit_window_blocks: u64,
    /// Blocks after the commit deadline to reveal it.
    pub reveal_window_blocks: u64,
    /// Reputation penalty and reward factors (the paper's Pen = 0.8, Rew = 1.01), ppm.
    pub reputation_penalty_ppm: u64,
    pub reputation_reward_ppm: u64,
    /// Fraction of stake slashed for a revealed output outside the quorum, ppm.
    pub slash_ppm: u64,
    /// Escalations of a job without quorum before it fails with a refund.
    pub max_escalations: u32,
    /// Largest number of values in a revealed output.
    pub max_output_values: u32,
}

impl Default for ParamsConfig {
    fn default() -> Self {
        Self {
            max_tx_bytes: 1024 * 1024,
            max_input_bytes: 256 * 1024,
            min_fee: 1,
            min_worker_stake: 1_000,
            max_k: 16,
            max_shards: 256,
            max_served_shards: 64,
            max_verifying_key_bytes: 64 * 1024,
            allow_simulated_tee: false,
            max_evidence_bytes: 64 * 1024,
            attestation_ttl_blocks: 14_400,
            commit_window_blocks: 10,
            reveal_window_blocks: 10,
            reputation_penalty_ppm: 800_000,
            reputation_reward_ppm: 1_010_000,
            slash_ppm: 100_000,
            max_escalations: 1,
            max_output_values: 4096,
        }
    }
}

impl Genesis {
    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::read(path)?;
        let genesis: Self = serde_json::from_str(&text).map_err(|e| Error::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        genesis.validate()?;
        Ok(genesis)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        crate::write(path, &text)
    }

    /// The bytes CometBFT hands to InitChain as `app_state_bytes`.
    pub fn app_state_bytes(&self) -> Vec<u8> {
        // AppState holds only strings, integers and vectors: serialization cannot fail.
        serde_json::to_vec(&self.app_state).unwrap_or_default()
    }

    pub fn initial_height(&self) -> Result<u64> {
        self.initial_height.parse().map_err(|_| Error::Invalid {
            field: "initial_height",
            reason: format!("{:?} is not a positive integer", self.initial_height),
        })
    }

    pub fn validate(&self) -> Result<()> {
        if self.chain_id.is_empty() || self.chain_id.len() > 50 {
            return Err(Error::Invalid {
                field: "chain_id",
                reason: format!("{:?} must be 1 to 50 characters", self.chain_id),
            });
        }
        if self.initial_height()? == 0 {
            return Err(Error::Invalid {
                field: "initial_height",
                reason: "must be at least 1".into(),
            });
        }
        for v in &self.validators {
            v.power.parse::<u64>().map_err(|_| Error::Invalid {
                field: "validators.power",
                reason: format!("{:?} is not an integer", v.power),
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genesis_round_trips_and_keeps_cometbft_shape() {
        let g = Genesis {
            genesis_time: "2026-01-01T00:00:00Z".into(),
            chain_id: "vichain-test".into(),
            initial_height: "1".into(),
            consensus_params: default_consensus_params(),
            validators: vec![],
            app_hash: String::new(),
            app_state: AppState {
                authority: "vichain1xyz".into(),
                accounts: vec![GenesisAccount {
                    address: "vichain1xyz".into(),
                    balance: 5,
                }],
                models: vec![],
                params: ParamsConfig::default(),
            },
        };
        let text = serde_json::to_string(&g).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["initial_height"], "1");
        assert_eq!(v["app_state"]["accounts"][0]["balance"], 5);
        let back: Genesis = serde_json::from_str(&text).unwrap();
        assert_eq!(back, g);
        let state: AppState = serde_json::from_slice(&g.app_state_bytes()).unwrap();
        assert_eq!(state, g.app_state);
    }

    #[test]
    fn unknown_app_state_fields_are_rejected() {
        let err = serde_json::from_str::<AppState>(r#"{"authority":"a","bogus":1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus"), "{err}");
    }
}
