//! The worker runtime: what a machine that runs models does. It takes its jobs from the
//! chain, runs them (candle), proves them (Groth16) and commits and reveals the results;
//! it serves shards of split models to the worker network (libp2p); and it carries the
//! demo models that `vichaind dev --workers N` and the localnet register.
//!
//! - [`runner`]: a worker's side of a job: run, prove, commit, reveal.
//! - [`serve`]: `vichaind worker`: a worker process (shards over libp2p, jobs from a chain).
//! - [`infer`]: one job through the worker network as a client (`vichain infer`, and the
//!   pipeline executor of split-model jobs), with typed results.
//! - [`devnet`]: the demo models and the in-process workers of `vichaind dev --workers N`.
//! - [`localnet`]: `vichaind localnet --start`: real CometBFT validators and workers on one
//!   machine.
//! - [`zk_tool`]: `vichaind zk setup|prove|verify` and `vichaind model commit`.
//! - [`metrics`]: the worker network's counters, recorded into the node's exporter.

pub mod devnet;
pub mod infer;
pub mod localnet;
pub mod metrics;
pub mod runner;
pub mod serve;
pub mod zk_tool;
