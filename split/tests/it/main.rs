//! Integration tests of the worker network: real libp2p swarms on loopback, in one process.

#![allow(clippy::unwrap_used)]

mod common;
mod discovery;
mod faults;
mod minilm;
mod mlp;
mod privacy;
mod slow;
mod smollm2;
