//! What execution reads and produces besides state: the facts of the block being
//! executed ([`BlockCtx`]) and what a successful transaction returns to CometBFT
//! ([`TxOutcome`], with its [`Event`]s). Both transaction execution and the job
//! lifecycle use these, so they live below both.

use vichain_proto::v1 as pb;

use crate::proofs::ProofCtx;

/// Facts of the block being executed.
#[derive(Debug, Clone)]
pub struct BlockCtx {
    pub height: u64,
    /// Block time, unix nanoseconds.
    pub time_ns: i64,
    pub chain_id: String,
    /// Hash of the block being finalized (zero while checking or proposing): the
    /// seed of job assignment.
    pub block_hash: [u8; 32],
    pub params: pb::Params,
    /// Verifying keys and this block's batch-verified proofs.
    pub proofs: ProofCtx,
}

/// An ABCI event: a kind and ordered attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: String,
    pub attributes: Vec<(String, String)>,
}

impl Event {
    pub(crate) fn new(kind: &str) -> Self {
        Self {
            kind: kind.into(),
            attributes: Vec::new(),
        }
    }

    pub(crate) fn attr(mut self, key: &str, value: impl ToString) -> Self {
        self.attributes.push((key.into(), value.to_string()));
        self
    }
}

/// What a successful transaction produced besides state changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxOutcome {
    pub events: Vec<Event>,
    /// (ed25519 public key, new power; 0 removes).
    pub validator_updates: Vec<(Vec<u8>, u64)>,
    /// Returned to the client in the tx result's `data` (e.g. a job id).
    pub data: Vec<u8>,
}
