//! The crate's error type.

use libp2p::PeerId;
use vichain_inference::LayerRange;

/// Everything that can go wrong in the worker network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The libp2p transport or swarm could not be built or could not listen.
    #[error("transport: {0}")]
    Transport(String),
    /// A bytes frame or message is larger than its bound.
    #[error("{what} is {got} bytes, more than the limit of {limit}")]
    TooLarge {
        /// What was measured.
        what: &'static str,
        /// Its size.
        got: usize,
        /// The bound.
        limit: usize,
    },
    /// A message could not be decoded or is missing a required field.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// The message.
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// A tensor does not hash to the sha256 sent with it.
    #[error("{what}: sha256 is {got}, expected {expected}")]
    HashMismatch {
        /// Which tensor.
        what: String,
        /// The hash computed over the bytes.
        got: String,
        /// The hash claimed or committed to.
        expected: String,
    },
    /// A request to a peer failed in transport (dial, timeout, connection closed).
    #[error("request to {peer} failed: {reason}")]
    Request {
        /// The peer asked.
        peer: PeerId,
        /// What failed.
        reason: String,
    },
    /// A stage answered with an error.
    #[error("stage {range} on {peer} refused ({code}): {reason}")]
    Stage {
        /// The peer that answered.
        peer: PeerId,
        /// Its layers.
        range: LayerRange,
        /// The error code it sent.
        code: crate::ErrorCode,
        /// The reason it gave.
        reason: String,
    },
    /// A stage answered with a result that does not fit the request or the chain of
    /// commitments.
    #[error("stage {range} on {peer} answered badly: {reason}")]
    BadAnswer {
        /// The peer that answered.
        peer: PeerId,
        /// Its layers.
        range: LayerRange,
        /// What was wrong.
        reason: String,
    },
    /// No allowed, reachable worker serves some layers of the model.
    #[error("model {model_id}: no route for layers {range}: {reason}")]
    NoRoute {
        /// The model.
        model_id: String,
        /// The layers nobody serves.
        range: LayerRange,
        /// Why (nobody found, every holder failed or is excluded).
        reason: String,
    },
    /// Privacy asks that no single worker hold every stage, and only one worker can.
    #[error("model {model_id}: only {peer} serves every stage and privacy forbids it")]
    SingleHolder {
        /// The model.
        model_id: String,
        /// The only worker able to serve all stages.
        peer: PeerId,
    },
    /// The model or its manifest cannot be run as a split pipeline.
    #[error("model {model_id}: {reason}")]
    Model {
        /// The model.
        model_id: String,
        /// Why.
        reason: String,
    },
    /// A job's input does not fit the model's first layer (refused before any worker sees
    /// it).
    #[error(
        "model {model_id}: the input is {got} bytes, expected {expected} (one int8 per input \
         of the first layer)"
    )]
    InputLength {
        /// The model.
        model_id: String,
        /// The first layer's input width.
        expected: usize,
        /// The input's length.
        got: usize,
    },
    /// The local network task has stopped.
    #[error("the network task has stopped")]
    Stopped,
    /// Reading or writing a local file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The model runtime failed.
    #[error(transparent)]
    Inference(#[from] vichain_inference::Error),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn malformed(what: &'static str, reason: impl std::fmt::Display) -> Self {
        Self::Malformed {
            what,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
