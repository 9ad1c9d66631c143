//! Integration tests of the worker network: real libp2p swarms on loopback, in one process.

#![allow(clippy::unwrap_used)]

mod common;
mod faults;
mod minilm;
mod smollm2;
