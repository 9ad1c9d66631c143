//! Two kinds of failure, kept apart: a transaction that is invalid ([`TxError`],
//! rejected with a code and a message the client can act on, changing nothing) and a
//! node that is broken ([`Error`], storage or invariant failures, on which the node
//! halts rather than diverge from the other validators).

/// Codespace of every rejection code, as CometBFT's `codespace` field.
pub const CODESPACE: &str = "vichain";

/// Why a transaction was rejected. Each variant has a distinct, stable [`code`](Self::code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("malformed transaction: {0}")]
    Malformed(String),
    #[error("transaction of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge { size: u64, max: u64 },
    #[error("unknown transaction kind: the body carries no action this node understands")]
    UnknownKind,
    #[error("bad signature from signer {signer}")]
    BadSignature { signer: String },
    #[error("wrong chain id {got:?}: this chain is {expected:?}")]
    WrongChainId { expected: String, got: String },
    #[error("nonce {got} of {address} was already used (next nonce is {expected})")]
    NonceReplayed {
        address: String,
        expected: u64,
        got: u64,
    },
    #[error("nonce {got} of {address} is ahead of the next nonce {expected}")]
    NonceGap {
        address: String,
        expected: u64,
        got: u64,
    },
    #[error("insufficient funds: {address} has {balance}, needs {needed}")]
    InsufficientFunds {
        address: String,
        balance: u64,
        needed: u64,
    },
    #[error("fee {fee} is below the minimum fee {min_fee}")]
    FeeTooLow { fee: u64, min_fee: u64 },
    #[error("model {model_id:?} is not registered")]
    UnknownModel { model_id: String },
    #[error("input of {size} bytes exceeds the limit of {max} bytes")]
    OversizeInput { size: u64, max: u64 },
    #[error("{address} is not the authority; only the authority may {action}")]
    Unauthorized {
        address: String,
        action: &'static str,
    },
    #[error("invalid {field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("{what} {id} already exists")]
    AlreadyExists { what: &'static str, id: String },
    #[error("validator {pub_key} is not in the validator set")]
    UnknownValidator { pub_key: String },
    #[error("account {address} does not exist")]
    UnknownAccount { address: String },
    #[error("arithmetic overflow in {what}: {values}")]
    Overflow { what: &'static str, values: String },
    #[error("job {job_id} does not exist")]
    UnknownJob { job_id: u64 },
    #[error("proof for job {job_id} rejected: {reason}")]
    ProofInvalid { job_id: u64, reason: String },
    #[error("proof of {size} bytes exceeds the limit of {max} bytes")]
    OversizeProof { size: u64, max: u64 },
    #[error("{address} is not a registered worker")]
    UnknownWorker { address: String },
    #[error("worker {address} does not serve model {model_id:?}")]
    NotServing { address: String, model_id: String },
    #[error("attestation rejected: {reason}")]
    AttestationInvalid { reason: String },
    #[error("evidence of {size} bytes exceeds the limit of {max} bytes")]
    OversizeEvidence { size: u64, max: u64 },
    #[error("{address} is not assigned to job {job_id} in its current round")]
    NotAssigned { job_id: u64, address: String },
    #[error("job {job_id}: {reason}")]
    WrongPhase { job_id: u64, reason: String },
    #[error("reveal for job {job_id} does not open the commitment of {address}")]
    BadOpening { job_id: u64, address: String },
    #[error("model {model_id:?} has no {missing} registered, so it accepts no proofs")]
    NoVerifyingKey {
        model_id: String,
        missing: &'static str,
    },
}

impl TxError {
    /// The ABCI response code: stable, distinct per variant, never 0 (0 is success).
    pub fn code(&self) -> u32 {
        match self {
            Self::Malformed(_) => 2,
            Self::TooLarge { .. } => 3,
            Self::UnknownKind => 4,
            Self::BadSignature { .. } => 5,
            Self::WrongChainId { .. } => 6,
            Self::NonceReplayed { .. } => 7,
            Self::NonceGap { .. } => 8,
            Self::InsufficientFunds { .. } => 9,
            Self::FeeTooLow { .. } => 10,
            Self::UnknownModel { .. } => 11,
            Self::OversizeInput { .. } => 12,
            Self::Unauthorized { .. } => 13,
            Self::InvalidField { .. } => 14,
            Self::AlreadyExists { .. } => 15,
            Self::UnknownValidator { .. } => 16,
            Self::UnknownAccount { .. } => 17,
            Self::Overflow { .. } => 18,
            Self::UnknownJob { .. } => 19,
            Self::ProofInvalid { .. } => 20,
            Self::OversizeProof { .. } => 21,
            Self::UnknownWorker { .. } => 22,
            Self::NotServing { .. } => 23,
            Self::NoVerifyingKey { .. } => 24,
            Self::AttestationInvalid { .. } => 25,
            Self::OversizeEvidence { .. } => 26,
            Self::NotAssigned { .. } => 27,
            Self::WrongPhase { .. } => 28,
            Self::BadOpening { .. } => 29,
        }
    }

    /// `what` (`"price * k"`) overflows u64 with the transaction's `values`
    /// (`"18446744073709551615 x 2"`).
    pub(crate) fn overflow(what: &'static str, values: impl Into<String>) -> Self {
        Self::Overflow {
            what,
            values: values.into(),
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidField {
            field,
            reason: reason.into(),
        }
    }
}

/// The node itself is broken: storage failed or an invariant does not hold. The
/// ledger stops rather than compute a state the other validators would not.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage: {0}")]
    Storage(String),
    #[error("state value at {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("genesis: {0}")]
    Genesis(String),
    #[error("consensus protocol violation: {0}")]
    Protocol(String),
    #[error("query: {0}")]
    Query(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Why executing a transaction stopped: it is invalid (rejected with its code, its
/// changes discarded, the block goes on) or the node is broken (the node halts). One
/// type, so that `?` carries either out of every step of execution.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExecError {
    #[error(transparent)]
    Rejected(#[from] TxError),
    #[error(transparent)]
    Halt(#[from] Error),
}

pub(crate) type ExecResult<T> = std::result::Result<T, ExecError>;

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Storage(e.to_string())
            }
        }
    )*};
}
storage_from!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    anyhow::Error
);
