//! Integration tests of vichain-inference against the real models.
//!
//! The models come from PyPI through `scripts/fetch-models.sh` into `$VICHAIN_MODELS`
//! (default `/var/tmp/vichain-models`); the tests fail, naming the script, when they are
//! missing.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic on failure like the tests do"
)]

mod bad_input;
mod common;
mod determinism;
mod digits;
mod minilm;
mod shards;
mod smollm2;
