//! The wire contract of vichain: protobuf messages for transactions, ledger state,
//! and the node's gRPC services, generated at build time from `proto/vichain/v1/*.proto`.
//!
//! These are wire types only. Domain types live in the crates that own them and are
//! converted with `TryFrom`, which is where untrusted input is validated.

#[allow(clippy::all, missing_debug_implementations)]
pub mod v1 {
    tonic::include_proto!("vichain.v1");
}

/// Encoded `FileDescriptorSet` of every vichain proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("vichain_descriptor");

pub use prost::Message;
