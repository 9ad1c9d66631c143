//! Every key of the ledger's state, built in one place.
//!
//! Keys are UTF-8 paths. Numeric ids are zero-padded so that prefix scans list
//! them in order.

use crate::Address;

pub const CHAIN_ID: &str = "chain/id";
pub const HEIGHT: &str = "chain/height";
pub const BLOCK_TIME: &str = "chain/block_time";
pub const AUTHORITY: &str = "chain/authority";
pub const PARAMS: &str = "chain/params";
pub const FEE_POOL: &str = "chain/fee_pool";
pub const NEXT_JOB_ID: &str = "chain/next_job_id";
pub const GENESIS_DIGEST: &str = "chain/genesis_digest";
pub const VALIDATOR_COUNT: &str = "chain/validator_count";

pub const ACCOUNTS: &str = "accounts/";
pub const VALIDATORS: &str = "validators/";
pub const MODELS: &str = "models/";
pub const WORKERS: &str = "workers/";
pub const JOBS: &str = "jobs/";
pub const RECENT_BLOCKS: &str = "chain/recent_blocks/";
/// Per model: the operators of the workers serving it (`OperatorSet`).
pub const MODEL_WORKERS: &str = "model_workers/";
/// Jobs not yet finalized or failed (`JobIds` is not used: one key per job, so
/// workers list them by prefix).
pub const OPEN_JOBS: &str = "jobs_open/";
/// Per transaction hash: the id of the job it submitted (8 bytes, big endian).
pub const JOB_BY_TX: &str = "jobs_by_tx/";
/// Per height: the jobs with a commit or reveal deadline there (`JobIds`).
pub const DEADLINES: &str = "chain/deadlines/";

/// How many recent block hashes the state keeps (nonces of TEE evidence).
pub const RECENT_BLOCK_HASHES: u64 = 100;

pub fn account(address: &Address) -> String {
    format!("{ACCOUNTS}{}", address.to_hex())
}

pub fn validator(pub_key: &[u8]) -> String {
    format!("{VALIDATORS}{}", hex::encode(pub_key))
}

pub fn model(model_id: &str) -> String {
    format!("{MODELS}{model_id}")
}

pub fn worker(operator: &Address) -> String {
    format!("{WORKERS}{}", operator.to_hex())
}

pub fn job(id: u64) -> String {
    format!("{JOBS}{id:020}")
}

pub fn recent_block_hash(height: u64) -> String {
    format!("{RECENT_BLOCKS}{height:020}")
}

pub fn model_workers(model_id: &str) -> String {
    format!("{MODEL_WORKERS}{model_id}")
}

pub fn deadlines(height: u64) -> String {
    format!("{DEADLINES}{height:020}")
}

pub fn open_job(id: u64) -> String {
    format!("{OPEN_JOBS}{id:020}")
}

pub fn job_by_tx(hash: &[u8]) -> String {
    format!("{JOB_BY_TX}{}", hex::encode(hash))
}
