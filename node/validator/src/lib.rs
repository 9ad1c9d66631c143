//! The validator daemon behind `vichaind init|start|dev`: the ledger (`vichain-consensus`)
//! served to CometBFT and to clients, with the node's runtime pieces the worker runtime
//! (`vichain-worker`) reuses. It links no model runtime, peer-to-peer networking or
//! prover: a validator verifies, it does not infer or prove.
//!
//! - [`abci`]: the ABCI socket server CometBFT connects to (`vichaind start`).
//! - [`comet`]: CometBFT's RPC (tendermint-rpc): forwarding transactions, and the
//!   consensus view (peers, validators, missed blocks) for metrics and the dashboard.
//! - [`dev`]: `vichaind dev`: in-process block production over the same ABCI code
//!   path CometBFT drives, with an in-process mempool.
//! - [`grpc`]: the `NodeService` gRPC server (status, broadcast, verifiable queries).
//! - [`job_service`]: the `JobService` gRPC server (submit, get with proof, watch).
//! - [`home`]: the home directory: `vichaind init`, key files, CometBFT's files.
//! - [`keys`]: the client keyring.
//! - [`metrics`]: the Prometheus exporter and the catalogue of every metric vichain exports.
//! - [`web`]: the HTTP server on the metrics address: `/metrics`, the dashboard
//!   page and its JSON API.
//! - [`tasks`]: named, supervised tasks with a shutdown signal.
//! - [`tee_tool`]: `vichaind tee verify|simulate|keygen|seal|open`.

pub mod abci;
pub mod comet;
pub mod dev;
pub mod grpc;
pub mod home;
pub mod job_service;
pub mod keys;
pub mod metrics;
pub mod tasks;
pub mod tee_tool;
pub mod web;

/// The version string of the binaries.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
