//! The validator daemon's integration tests: the ABCI socket server driven by
//! tendermint-abci's client, and the Grafana dashboard against the exported metrics.

#![allow(clippy::unwrap_used)]

mod abci;
mod grafana;
