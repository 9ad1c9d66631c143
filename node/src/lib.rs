//! The `vichaind` node and the `vichain` client, wired from the ledger
//! (`vichain-consensus`), the configuration (`vichain-config`) and the wire
//! contract (`vichain-proto`).
//!
//! - [`abci`]: the ABCI socket server CometBFT connects to (`vichaind start`).
//! - [`home`]: the home directory: `vichaind init`, key files, CometBFT's files.
//! - [`infer`]: `vichain infer`: one job through the worker network as a client.
//! - [`grpc`]: the `NodeService` gRPC server (status, broadcast, verifiable queries).
//! - [`dev`]: `vichaind dev`: in-process block production over the same ABCI code
//!   path CometBFT drives, with an in-process mempool.
//! - [`runner`]: a worker's side of a job: run, prove, commit, reveal.
//! - [`devnet`]: `vichaind dev --workers N`: demo models and in-process workers.
//! - [`comet`]: forwarding transactions to CometBFT's RPC in `vichaind start`.
//! - [`job_service`]: the `JobService` gRPC server (submit, get with proof, watch).
//! - [`keys`]: the client keyring.
//! - [`localnet`]: `vichaind localnet`: real CometBFT validators and workers on one machine.
//! - [`metrics`]: the Prometheus exporter and the node's own metrics.
//! - [`web`]: the HTTP server on the metrics address: `/metrics`, the dashboard
//!   page and its JSON API.
//! - [`tasks`]: named, supervised tasks with a shutdown signal.
//! - [`tee_tool`]: `vichaind tee verify|simulate`.
//! - [`worker`]: `vichaind worker`: serve a shard of a split model over libp2p.
//! - [`zk_tool`]: `vichaind zk setup|prove|verify` and `vichaind model commit`.

pub mod abci;
pub mod comet;
pub mod dev;
pub mod devnet;
pub mod grpc;
pub mod home;
pub mod infer;
pub mod job_service;
pub mod keys;
pub mod localnet;
pub mod metrics;
pub mod runner;
pub mod tasks;
pub mod tee_tool;
pub mod web;
pub mod worker;
pub mod zk_tool;

/// The version string of both binaries.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
