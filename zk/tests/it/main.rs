//! End to end through the byte-level API the ledger and workers use.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use vichain_zk::QuantizedMlp;

mod model_file;
mod poseidon_reference;
// These make proofs, so they need the prover.
#[cfg(feature = "prover")]
mod proofs;

fn digits() -> Arc<QuantizedMlp> {
    Arc::new(QuantizedMlp::synthetic(&[64, 32, 10], 2024).unwrap())
}
