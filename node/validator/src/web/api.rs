//! The dashboard's JSON API. Every response is an object; errors are
//! `{"error": "...", "status": N}` with that HTTP status:
//!
//! - `GET /api/status`: `chain_id`, `height` (0 before the first block), `app_hash`
//!   (hex), `block_time_ns` (unix ns of the last block), `block_time` (RFC 3339),
//!   `mode` (`dev` | `cometbft`), `version`, `mempool_txs` (dev only, else null),
//!   `models`, `workers` (registered counts).
//! - `GET /api/validators` (`vichaind start`): what the node's CometBFT says,
//!   polled every 2 s: `mode`, `status` (null until CometBFT answers, or `node_id`,
//!   `moniker`, `network`, `version`, `latest_block_height`, `latest_app_hash`,
//!   `latest_block_time`, `earliest_block_height`, `catching_up`,
//!   `validator_address`, `voting_power`), `validators` (`address`, `pub_key`,
//!   `voting_power`, `proposer_priority`, `last_signed_height`, `missed_blocks` and
//!   `window`: blocks of the last 100 whose commit lacks its signature), `peers`
//!   (`node_id`, `moniker`, `remote_ip`, `outbound`), `error` (why the last poll
//!   failed, or null) and `updated_at` (unix s). In dev mode: `mode` and empty lists.
//! - `GET /api/blocks?limit=N` (1..=512, default 100): `{"blocks": [...]}`, newest
//!   first, the blocks this process committed since it started: `height`,
//!   `time_ns`, `txs`, `failed_txs`, `app_hash`, `finalize_seconds`,
//!   `jobs_submitted`, `jobs_finalized`, `jobs_failed`, `job_latency_seconds_sum`.
//! - `GET /api/workers?limit=N` (1..=1000, default 200): `{"height", "workers": [...]}`
//!   in operator order, each the wire view of a `Worker` (`vichain_proto::json`: field
//!   names as in state.proto, bytes as hex, addresses as bech32, enums by name;
//!   `reputation` in millionths, 1000000 = neutral), its `attestation` (or null) with
//!   `current`: whether it still counts at the last block.
//! - `GET /api/jobs?limit=N` (1..=200, default 50): `{"height", "jobs": [...]}`, newest
//!   first; `GET /api/jobs/{id}`: one job, 404 if there is none. A job is the wire view
//!   of a `Job` (`status` `JOB_STATUS_PENDING` ... `JOB_STATUS_FAILED`, `assignments`,
//!   `result`, `output`, ...) without `input`, plus `input_bytes`, `agreed` (operator
//!   addresses whose results agreed) and `verification`: `proof_verified`, `prover`,
//!   `proof_height`, `proof_hash`, `output` (as in the job), `input_commitment`,
//!   `prover_attestation` (the prover's attestation as in workers, or null).
//!
//! The wire views follow the `.proto` files: a field renamed there is renamed here.
//! Other fields are only ever added.

use axum::{
    extract::{FromRequestParts, Path, Query, path::ErrorKind, rejection::PathRejection},
    http::{StatusCode, request::Parts},
    response::{IntoResponse, Response},
};
use prost::Message;
use serde::Deserialize;
use serde_json::{Value, json};
use vichain_consensus::{
    Address, StateReadExt, Storage, attestation_is_current,
    metrics::{BlockRecord, RecentBlocks},
    state_key,
};
use vichain_proto::{
    json::{address_string, view},
    v1 as pb,
};

use crate::dev::DevChain;

/// Most blocks, workers and jobs one request returns.
pub const MAX_BLOCKS: usize = vichain_consensus::metrics::RECENT_CAPACITY;
pub const MAX_WORKERS: usize = 1000;
pub const MAX_JOBS: usize = 200;
/// Longest query string looked at.
const MAX_QUERY: usize = 256;

/// A failed request: its status and message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        super::error(self.status, self.message)
    }
}

impl From<vichain_consensus::Error> for ApiError {
    fn from(e: vichain_consensus::Error) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: e.to_string(),
        }
    }
}

impl From<prost::DecodeError> for ApiError {
    fn from(e: prost::DecodeError) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("corrupt state: {e}"),
        }
    }
}

type Result<T> = std::result::Result<T, ApiError>;

/// The `limit` query parameter of a listing: `DEFAULT` when absent, else an integer
/// in 1..=`MAX`. Other parameters are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit<const DEFAULT: usize, const MAX: usize>(pub usize);

/// The query parameters the listings read; the value is kept as text so that a bad
/// one is reported as sent.
#[derive(Debug, Deserialize)]
struct ListParams {
    limit: Option<String>,
}

impl<S: Send + Sync, const DEFAULT: usize, const MAX: usize> FromRequestParts<S>
    for Limit<DEFAULT, MAX>
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        if parts.uri.query().is_some_and(|q| q.len() > MAX_QUERY) {
            return Err(ApiError::bad_request(format!(
                "query string longer than {MAX_QUERY} bytes"
            )));
        }
        let Query(params) = Query::<ListParams>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let Some(v) = params.limit else {
            return Ok(Self(DEFAULT));
        };
        match v.parse::<usize>() {
            Ok(n) if (1..=MAX).contains(&n) => Ok(Self(n)),
            _ => Err(ApiError::bad_request(format!(
                "limit must be an integer from 1 to {MAX}, got {v:?}"
            ))),
        }
    }
}

/// The id in `/api/jobs/{id}`: a positive integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobId(pub u64);

impl<S: Send + Sync> FromRequestParts<S> for JobId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        match Path::<u64>::from_request_parts(parts, state).await {
            Ok(Path(0)) => Err(ApiError::bad_request("job id 0 is out of range")),
            Ok(Path(id)) => Ok(Self(id)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => match e.into_kind() {
                ErrorKind::ParseErrorAtKey { value, .. }
                | ErrorKind::ParseErrorAtIndex { value, .. }
                | ErrorKind::ParseError { value, .. } => Err(bad_job_id(&value)),
                kind => Err(ApiError::bad_request(format!("job id: {kind}"))),
            },
            Err(e) => Err(ApiError {
                status: e.status(),
                message: e.body_text(),
            }),
        }
    }
}

/// Why `value` is not a job id: digits that overflow a u64, or not a number at all.
fn bad_job_id(value: &str) -> ApiError {
    if !value.is_empty() && value.len() <= 20 && value.bytes().all(|b| b.is_ascii_digit()) {
        ApiError::bad_request(format!("job id {value} is out of range"))
    } else {
        ApiError::bad_request(format!(
            "job id must be a positive integer, got {:?}",
            value.chars().take(32).collect::<String>()
        ))
    }
}

fn committed_height(store: &Storage) -> Result<u64> {
    Ok(match store.committed()? {
        Some(c) if c.height + 1 != c.initial_height => c.height,
        _ => 0,
    })
}

fn last_block(store: &Storage) -> Result<(u64, i64)> {
    Ok((
        store.get_u64(state_key::HEIGHT)?.unwrap_or(0),
        store.get_u64(state_key::BLOCK_TIME)?.unwrap_or(0) as i64,
    ))
}

pub(super) fn status(store: &Storage, dev: Option<&DevChain>) -> Result<Value> {
    let Some(c) = store.committed()? else {
        return Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "the chain has no genesis yet".into(),
        });
    };
    let block_time_ns = store.get_u64(state_key::BLOCK_TIME)?.unwrap_or(0);
    let block_time = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(block_time_ns);
    let count = |prefix: &str| -> Result<usize> {
        Ok(store
            .prefix(prefix.as_bytes(), crate::grpc::MAX_LIST)?
            .len())
    };
    Ok(json!({
        "chain_id": store.chain_id()?,
        "height": committed_height(store)?,
        "app_hash": hex::encode(c.app_hash),
        "block_time_ns": block_time_ns,
        "block_time": humantime::format_rfc3339_millis(block_time).to_string(),
        "mode": if dev.is_some() { "dev" } else { "cometbft" },
        "version": crate::VERSION,
        "mempool_txs": dev.map(|d| d.mempool_size()),
        "models": count(state_key::MODELS)?,
        "workers": count(state_key::WORKERS)?,
    }))
}

pub(super) fn validators(comet: Option<&crate::comet::CometView>) -> Value {
    match comet {
        Some(c) => {
            let mut v = serde_json::to_value(c.snapshot()).unwrap_or(Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert("mode".into(), json!("cometbft"));
            }
            v
        }
        None => json!({
            "mode": "dev", "status": null, "validators": [], "peers": [], "error": null, "updated_at": 0,
        }),
    }
}

pub fn block_json(b: &BlockRecord) -> Value {
    serde_json::to_value(b).unwrap_or(Value::Null)
}

pub(super) fn blocks(recent: &RecentBlocks, limit: usize) -> Value {
    let blocks: Vec<Value> = recent.latest(limit).iter().map(block_json).collect();
    json!({ "blocks": blocks })
}

/// An attestation in the wire view, plus `current`: whether it still counts at block
/// `height` and block time `time_ns`.
fn attestation_json(a: &pb::Attestation, height: u64, time_ns: i64) -> Value {
    let mut v = view(a);
    v["current"] = attestation_is_current(a, height, time_ns).into();
    v
}

/// A worker as the API shows it (the wire view; its attestation with `current`), at
/// block `height` and block time `time_ns`.
pub fn worker_json(w: &pb::Worker, height: u64, time_ns: i64) -> Value {
    let mut v = view(w);
    if let Some(a) = &w.attestation {
        v["attestation"] = attestation_json(a, height, time_ns);
    }
    v
}

pub(super) fn workers(store: &Storage, limit: usize) -> Result<Value> {
    let (height, time_ns) = last_block(store)?;
    let workers = store
        .prefix(state_key::WORKERS.as_bytes(), limit)?
        .into_iter()
        .map(|(_, v)| {
            Ok(worker_json(
                &pb::Worker::decode(v.as_slice())?,
                height,
                time_ns,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(json!({ "height": committed_height(store)?, "workers": workers }))
}

/// A job as the API shows it: the wire view without `input` (its length is
/// `input_bytes`; `vichain query job` shows the input), plus `agreed` (the operators
/// whose results agreed) and `verification` (what was proven, and by whom);
/// `prover` is the prover's worker record, if any.
pub fn job_json(j: &pb::Job, prover: Option<&pb::Worker>, height: u64, time_ns: i64) -> Value {
    let mut v = view(j);
    if let Some(o) = v.as_object_mut() {
        o.remove("input");
    }
    v["input_bytes"] = j.input.len().into();
    v["agreed"] = j
        .assignments
        .iter()
        .filter(|a| a.verdict == pb::Verdict::Agreed as i32)
        .map(|a| address_string(&a.operator))
        .collect::<Vec<_>>()
        .into();
    v["verification"] = json!({
        // A proof stored by SubmitProof, or one that came with an agreeing reveal.
        "proof_verified": j.proof_verified
            || j.assignments.iter().any(|a| a.proof_verified && a.verdict == pb::Verdict::Agreed as i32),
        "prover": address_string(&j.prover),
        "proof_height": j.proof_height,
        "proof_hash": hex::encode(&j.proof_hash),
        "output": j.output.as_ref().map(view),
        "input_commitment": hex::encode(&j.input_commitment),
        "prover_attestation": prover
            .and_then(|w| w.attestation.as_ref())
            .map(|a| attestation_json(a, height, time_ns)),
    });
    v
}

fn job_with_prover(store: &Storage, j: &pb::Job, height: u64, time_ns: i64) -> Result<Value> {
    let prover = match Address::from_bytes(&j.prover) {
        Ok(a) if !j.prover.is_empty() => store.worker(&a)?,
        _ => None,
    };
    Ok(job_json(j, prover.as_ref(), height, time_ns))
}

pub(super) fn jobs(store: &Storage, limit: usize) -> Result<Value> {
    let (height, time_ns) = last_block(store)?;
    let next = store.get_u64(state_key::NEXT_JOB_ID)?.unwrap_or(1);
    let mut jobs = Vec::with_capacity(limit);
    // Newest first; ids are dense, but a pruned job is skipped (scanning a bounded
    // number of ids).
    let oldest = next.saturating_sub((limit as u64).saturating_mul(4)).max(1);
    for id in (oldest..next).rev() {
        if jobs.len() >= limit {
            break;
        }
        if let Some(j) = store.job(id)? {
            jobs.push(job_with_prover(store, &j, height, time_ns)?);
        }
    }
    Ok(json!({ "height": committed_height(store)?, "jobs": jobs }))
}

pub(super) fn job(store: &Storage, id: u64) -> Result<Value> {
    let (height, time_ns) = last_block(store)?;
    match store.job(id)? {
        Some(j) => job_with_prover(store, &j, height, time_ns),
        None => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("job {id} does not exist"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_shows_its_status_and_verification() {
        let job = pb::Job {
            id: 3,
            model_id: "digits".into(),
            status: pb::JobStatus::Pending as i32,
            k: 2,
            proof_verified: true,
            output: Some(pb::InferenceOutput {
                value: Some(pb::inference_output::Value::Argmax(7)),
            }),
            ..Default::default()
        };
        let v = job_json(&job, None, 10, 0);
        assert_eq!(v["status"], "JOB_STATUS_PENDING");
        assert_eq!(v["k"], 2);
        assert_eq!(v["verification"]["proof_verified"], true);
        assert_eq!(v["verification"]["output"], v["output"]);
        assert_eq!(v["output"]["value"]["argmax"], 7);
        assert_eq!(v["verification"]["prover_attestation"], Value::Null);
    }
}
