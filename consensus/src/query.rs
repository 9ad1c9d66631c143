//! Verifiable queries: a state value at a height with an ics23 proof against that
//! height's app hash, and the client-side check of such a proof.

use prost013::Message as _;

use crate::{Address, Error, Result, state_key, store::Storage};

/// `ProofOp.type` of the proofs this ledger returns (ics23 over the jmt spec).
pub const PROOF_OP_TYPE: &str = "ics23:jmt";
/// Largest proof a client decodes.
pub const MAX_PROOF_BYTES: usize = 64 * 1024;

/// A value (or its absence) at a height, with a proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryResult {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub height: u64,
    /// Root of the state tree at `height`: the app hash of that block.
    pub app_hash: [u8; 32],
    /// Encoded `ics23::CommitmentProof`.
    pub proof: Vec<u8>,
}

/// What a client asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryTarget {
    Account(Address),
    Model(String),
    Worker(Address),
    Job(u64),
    Params,
    Key(Vec<u8>),
}

impl QueryTarget {
    pub fn key(&self) -> Vec<u8> {
        match self {
            Self::Account(a) => state_key::account(a).into_bytes(),
            Self::Model(id) => state_key::model(id).into_bytes(),
            Self::Worker(a) => state_key::worker(a).into_bytes(),
            Self::Job(id) => state_key::job(*id).into_bytes(),
            Self::Params => state_key::PARAMS.as_bytes().to_vec(),
            Self::Key(k) => k.clone(),
        }
    }
}

/// Maps an ABCI query path to a state key: `/accounts/ADDR`, `/models/ID`,
/// `/workers/ADDR`, `/jobs/ID`, `/params`, or `/key` with the raw key in `data`.
pub fn parse_path(path: &str, data: &[u8]) -> Result<Vec<u8>> {
    let bad = |why: String| Error::Query(format!("path {path:?}: {why}"));
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let target = match parts.as_slice() {
        ["accounts", a] => QueryTarget::Account(a.parse().map_err(|e| bad(format!("{e}")))?),
        ["models", id] => QueryTarget::Model((*id).to_owned()),
        ["workers", a] => QueryTarget::Worker(a.parse().map_err(|e| bad(format!("{e}")))?),
        ["jobs", id] => QueryTarget::Job(
            id.parse()
                .map_err(|_| bad(format!("{id:?} is not a job id")))?,
        ),
        ["params"] => QueryTarget::Params,
        ["key"] | ["store"] => QueryTarget::Key(data.to_vec()),
        _ => {
            return Err(bad(
                "expected /accounts/ADDR, /models/ID, /workers/ADDR, /jobs/ID, /params or /key"
                    .into(),
            ));
        }
    };
    Ok(target.key())
}

/// Reads `key` at `height` (0 = latest committed) with its proof.
pub fn get(store: &Storage, key: &[u8], height: u64) -> Result<QueryResult> {
    let committed = store
        .committed()?
        .ok_or_else(|| Error::Query("no state committed yet".into()))?;
    let height = if height == 0 {
        committed.height
    } else {
        height
    };
    let (value, proof, app_hash) = store.get_with_proof(key, height)?;
    Ok(QueryResult {
        key: key.to_vec(),
        value,
        height,
        app_hash,
        proof: proof.encode_to_vec(),
    })
}

/// Checks a query result against an app hash the client trusts (from a block
/// header, or the node's status when it trusts the node's consensus).
pub fn verify(result: &QueryResult, app_hash: &[u8; 32]) -> Result<()> {
    if result.proof.len() > MAX_PROOF_BYTES {
        return Err(Error::Query(format!(
            "proof of {} bytes exceeds {MAX_PROOF_BYTES}",
            result.proof.len()
        )));
    }
    let proof = ics23::CommitmentProof::decode(result.proof.as_slice())
        .map_err(|e| Error::Query(format!("malformed proof: {e}")))?;
    let ok = match &result.value {
        Some(v) => verify_membership(&proof, app_hash, &result.key, v),
        None => verify_non_membership(&proof, app_hash, &result.key),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::Query(format!(
            "proof for key {:?} does not match app hash {}",
            String::from_utf8_lossy(&result.key),
            hex::encode(app_hash)
        )))
    }
}

pub fn verify_membership(
    proof: &ics23::CommitmentProof,
    root: &[u8; 32],
    key: &[u8],
    value: &[u8],
) -> bool {
    ics23::verify_membership::<ics23::HostFunctionsManager>(
        proof,
        &jmt::ics23_spec(),
        &root.to_vec(),
        key,
        value,
    )
}

pub fn verify_non_membership(proof: &ics23::CommitmentProof, root: &[u8; 32], key: &[u8]) -> bool {
    ics23::verify_non_membership::<ics23::HostFunctionsManager>(
        proof,
        &jmt::ics23_spec(),
        &root.to_vec(),
        key,
    )
}
