//! Zero-knowledge model verification for vichain: Poseidon commitments to quantized models
//! and their inputs and outputs, Groth16 circuits on BN254 that prove a quantized MLP's
//! inference (whole, or one shard of a split model) or knowledge of the weights behind a
//! commitment, and the pure, deterministic verification the ledger runs before it commits a
//! result.
//!
//! - [`QuantizedMlp`] is the integer model the circuits prove, bit-exact with
//!   [`QuantizedMlp::forward`], stored in the versioned `VQMLP` file format.
//! - [`model_commitment`], [`input_commitment`] and [`vector_commitment`] follow the
//!   versioned layout documented in the `commit` module, with circomlib's Poseidon
//!   parameters ([`poseidon_config`]), so anyone can recompute them.
//! - [`InferenceCircuit`], [`ShardCircuit`] and [`OpeningCircuit`] each come with `*Public`
//!   and `*Private` inputs; [`setup`] and [`prove`] produce keys and proofs.
//! - The ledger calls [`verify_inference_proof`] (or keeps a [`PreparedKey`] per model and
//!   batches a block's proofs with [`PreparedKey::verify_inference_batch`]). Keys are pinned
//!   by [`KeyHash`]; every decoder is bounded and validates points.
//!
//! # Features
//!
//! Without features the crate is verifier-only, and links no constraint system: commitments
//! and native Poseidon, [`QuantizedMlp`] and its file format, the public-input types
//! ([`InferencePublic`], [`ShardPublic`], [`OpeningPublic`]), verifying-key and proof
//! decoding, and [`verify`], [`verify_batch`], [`PreparedKey`] and the `verify_*_proof`
//! functions. That is what the ledger (`vichain-consensus`) and so the validator links.
//!
//! - `prover`: the circuits and their R1CS gadgets, in-circuit Poseidon
//!   ([`poseidon_hash2_var`], [`sponge_hash_var`]), [`setup`], [`prove`],
//!   [`prove_inference`], [`prove_shard`], [`prove_opening`], and proving-key encoding. For
//!   workers, the model owner's setup, and tests.
//! - `parallel` (implies `prover`): multithreaded proving and MSMs.
//!
//! ```no_run
//! use std::sync::Arc;
//! use vichain_zk::*;
//!
//! # #[cfg(feature = "prover")]
//! # fn main() -> vichain_zk::Result<()> {
//! let model = Arc::new(QuantizedMlp::synthetic(&[64, 32, 10], 7)?);
//! let circuit = InferenceCircuit::for_setup(model.clone(), WeightMode::Public, OutputMode::Argmax)?;
//! let keys = setup(circuit, None)?;
//! let vk_bytes = encode_verifying_key(&keys.verifying_key)?;
//!
//! let private = InferencePrivate { input: vec![3; 64], input_salt: Salt::random(), output_salt: Salt::default() };
//! let (public, proof) = prove_inference(
//!     &keys.proving_key, model, WeightMode::Public, OutputMode::Argmax, private,
//!     JobId::from_u64(42), &mut rand::rngs::OsRng,
//! )?;
//! verify_inference_proof(&vk_bytes, &keys.verifying_key_hash, &public, &proof)?;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "prover"))]
//! # fn main() {}
//! ```

// Without `prover` the links above to prover items have no target; they resolve in the
// documentation built with it.
#![cfg_attr(not(feature = "prover"), allow(rustdoc::broken_intra_doc_links))]

mod api;
#[cfg(feature = "prover")]
mod circuits;
mod commit;
#[cfg(feature = "prover")]
mod gadgets;
mod keys;
mod mlp;
mod poseidon;
mod public;
#[cfg(feature = "prover")]
mod setup;

pub use ark_bn254::{Bn254, Fr};
pub use ark_groth16::{PreparedVerifyingKey, Proof, VerifyingKey};

pub use crate::{
    api::{PreparedKey, verify_inference_proof, verify_opening_proof, verify_shard_proof},
    commit::{
        ACTIVATION_BITS, BIAS_BITS, COMMITMENT_LAYOUT_VERSION, Commitment, JobId, LIMB_BITS,
        LOGIT_BITS, MAX_JOB_ID_BYTES, Salt, TAG_JOB, TAG_LAYER, TAG_MODEL, TAG_VECTOR, WEIGHT_BITS,
        domain_tag, input_commitment, layer_commitment, model_commitment,
        model_commitment_from_layers, pack, values_per_limb, vector_commitment,
    },
    keys::{
        KeyHash, MAX_BATCH, MAX_PUBLIC_INPUTS, MAX_VERIFYING_KEY_BYTES, PROOF_BYTES, decode_proof,
        decode_public_inputs, decode_verifying_key, encode_public_inputs, encode_verifying_key,
        prepare, verify, verify_batch, verify_batch_with_fallback,
    },
    mlp::{
        ACC_BITS, ACTIVATION_MAX, MAX_DIM, MAX_LAYERS, MAX_SHIFT, MAX_WEIGHTS, MlpOutput,
        QuantizedLayer, QuantizedMlp, argmax,
    },
    poseidon::{
        POSEIDON_ALPHA, POSEIDON_FULL_ROUNDS, POSEIDON_PARTIAL_ROUNDS, POSEIDON_RATE,
        POSEIDON_WIDTH, poseidon_config, poseidon_hash2, sponge_hash,
    },
    public::{InferencePublic, OpeningPublic, OutputMode, PublicOutput, ShardPublic, WeightMode},
};

// The prover's API (the `prover` feature).
#[cfg(feature = "prover")]
pub use crate::{
    api::{prove_inference, prove_opening, prove_shard},
    circuits::{
        InferenceCircuit, InferencePrivate, ModelShard, OpeningCircuit, OpeningPrivate,
        ShardCircuit, ShardPrivate,
    },
    poseidon::{poseidon_hash2_var, sponge_hash_var},
    setup::{Keys, MAX_PROVING_KEY_BYTES, decode_proving_key, encode_proving_key, prove, setup},
};
#[cfg(feature = "prover")]
pub use ark_groth16::ProvingKey;

/// Everything that can go wrong in this crate; each variant carries the offending values.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model file could not be decoded.
    #[error("model file: {0}")]
    ModelFormat(String),
    /// A model violates a shape or bound.
    #[error("model layer {layer}: {reason}")]
    InvalidModel {
        /// The offending layer.
        layer: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A layer range is empty or outside the model.
    #[error("layer range {start}..{end} is not within a model of {layers} layers")]
    LayerRange {
        /// First layer.
        start: usize,
        /// One past the last layer.
        end: usize,
        /// Layers in the model.
        layers: usize,
    },
    /// A vector has the wrong length.
    #[error("input has {got} values, expected {expected}")]
    InputLength {
        /// Length given.
        got: usize,
        /// Length required.
        expected: usize,
    },
    /// A value is outside its allowed range.
    #[error("value {value} at index {index} is outside [{lo}, {hi}]")]
    InputOutOfRange {
        /// Position of the value.
        index: usize,
        /// The value.
        value: i64,
        /// Smallest allowed.
        lo: i64,
        /// Largest allowed.
        hi: i64,
    },
    /// A packing width outside 1..=32.
    #[error("packing width {bits} is outside 1..=32")]
    InvalidWidth {
        /// The width given.
        bits: u32,
    },
    /// Bytes longer than the limit for their kind.
    #[error("{what} is {len} long, limit {max}")]
    Oversize {
        /// What was too long.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Bytes that do not decode (including points off the curve or outside the subgroup).
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What failed to decode.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A key whose hash is not the registered one.
    #[error("{what} hash mismatch: expected {expected}, got {actual}")]
    KeyHashMismatch {
        /// Which key.
        what: &'static str,
        /// The registered hash.
        expected: KeyHash,
        /// The hash of the bytes given.
        actual: KeyHash,
    },
    /// The public inputs do not match the verifying key's arity.
    #[error("{got} public inputs, the verifying key expects {expected}")]
    PublicInputCount {
        /// Inputs given.
        got: usize,
        /// Inputs the key expects.
        expected: usize,
    },
    /// A well-formed proof that does not verify.
    #[error("proof does not verify")]
    InvalidProof,
    /// Constraint synthesis, setup or proving failed.
    #[error("constraint synthesis: {0}")]
    Synthesis(ark_relations::gr1cs::SynthesisError),
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
