//! The validator daemon's integration tests: the ABCI socket server driven by
//! tendermint-abci's client, the Grafana dashboard against the exported metrics, and
//! the JobService streams following the dev chain's commits.

#![allow(clippy::unwrap_used)]

mod abci;
mod grafana;
mod jobs;
