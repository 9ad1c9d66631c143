//! The ledger's integration tests: overflow attacks refused, each App's recent
//! blocks, state-sync snapshots taken, offered and restored. (The ABCI socket
//! server's tests live with the server, in `vichain-validator`.)

#![allow(clippy::unwrap_used)]

mod overflow;
mod recent;
mod snapshots;
