//! The vichain ledger: a CometBFT v0.38 ABCI++ application.
//!
//! [`App`] answers every ABCI method deterministically over a [`Storage`] (a
//! Jellyfish Merkle tree persisted in redb, whose root is the app hash); the node
//! serves it on CometBFT's socket protocol (`vichain_validator::abci`). Transactions
//! ([`SignedTx`]) are protobuf bodies signed with ed25519; each one executes on a
//! fork of the block's state that is kept only if every check passes, and a
//! rejected one gets a [`TxError`] with a stable code. Queries return values with
//! ics23 proofs that [`query::verify`] checks against an app hash.
//!
//! [`SnapshotStore`] takes state-sync snapshots after Commit and serves them; any
//! [`App`] restores one into an empty store (ABCI's OfferSnapshot and
//! ApplySnapshotChunk), checking the rebuilt root against the trusted app hash.
//!
//! [`metrics`] records operators' metrics (through the `metrics` facade) once per
//! finalized block, from its results and events, and keeps the recent blocks the
//! node's dashboard shows.
//!
//! The ledger links neither candle nor libp2p: it stores bytes and integers, and
//! every validator computes the same app hash from the same blocks.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let store = Arc::new(vichain_consensus::Storage::open("state.redb".as_ref())?);
//! let app = vichain_consensus::App::new(store);
//! # let _ = app; Ok(()) }
//! ```

#![deny(clippy::arithmetic_side_effects)]

mod app;
mod attest;
mod crypto;
mod ctx;
mod error;
mod exec;
mod genesis;
mod jobs;
pub mod metrics;
mod proofs;
pub mod query;
mod snapshot;
mod state;
pub mod state_key;
mod store;
mod tx;

pub use app::{APP_VERSION, App, MAX_VOTE_EXTENSION_BYTES, TxResult, time_ns};
pub use attest::{
    MAX_MEASUREMENT_BYTES, MAX_POLICY_KINDS, MAX_POLICY_MEASUREMENTS, attestation_is_current,
    attested_encryption_key, check_sealed_input,
};
pub use crypto::{ADDRESS_HRP, Address, dev_signing_key, parse_public_key};
pub use ctx::{BlockCtx, Event, TxOutcome};
pub use error::{CODESPACE, Error, Result, TxError};
pub use exec::MAX_VALIDATOR_POWER;
pub use genesis::policy_from_config;
pub use jobs::{
    COMMIT_DOMAIN, FIXED_POINT_ONE, MAX_OUTPUT_TEXT, REPUTATION_MAX, REPUTATION_ONE, equivalent,
    output_fingerprint, result_commitment, status_name,
};
pub use proofs::{
    KeyCache, MAX_PROOF_BYTES, MAX_PROOF_LOGITS, MAX_PROVABLE_INPUT, ProofCtx, Verdicts,
    batch_randomness,
};
pub use query::{QueryResult, QueryTarget, verify_membership, verify_non_membership};
pub use snapshot::{
    MAX_CHUNK_BYTES, MAX_CHUNKS, MAX_KEY_BYTES, MAX_METADATA_BYTES, MAX_SNAPSHOT_BYTES,
    MAX_VALUE_BYTES, Pairs, SNAPSHOT_FORMAT, SnapshotError, SnapshotInfo, SnapshotMetadata,
    SnapshotResult, SnapshotStore, decode_chunk, encode_chunk,
};
pub use state::{Overlay, StateRead, StateReadExt};
pub use store::{ChangeSet, Committed, PendingCommit, PendingRestore, ReadView, Storage};
pub use tx::{SIGN_DOMAIN, SigCache, SignedTx, action_kind, sign_bytes, sign_tx, tx_hash};

/// Re-exported so that users of the ABCI types need not pin tendermint-proto.
pub use tendermint_proto;
