//! Poseidon commitments to models and vectors: layout v1.
//!
//! Every commitment is one squeeze of the Poseidon sponge of [`crate::poseidon_config`]
//! (circomlib's t = 3 parameters, capacity element first, rate 2) over a list of field
//! elements that starts with an ASCII domain tag (the tag's bytes read as a big-endian
//! integer) and the lengths that make the encoding injective.
//!
//! Integers are packed into field elements ("limbs"): a value `v` of width `bits` is offset
//! to `u = v + 2^(bits-1)` in `[0, 2^bits)`, and `floor(248 / bits)` consecutive values go
//! into one limb, the first value in the least significant bits (`limb = sum_k u_k *
//! 2^(bits*k)`); the last limb may be partial. int8 weights fill 31 per limb, int32 biases
//! and logits 7 per limb.
//!
//! - layer `l`: `H(TAG_LAYER, l, in_dim, out_dim, shift, weight limbs (8-bit, row-major), bias limbs (32-bit))`
//! - model: `H(TAG_MODEL, number of layers, layer commitment 0, ..., layer commitment L-1)`
//! - vector (job input, output logits, split activations): `H(TAG_VECTOR, len, bits, salt, limbs)`
//!
//! Layer commitments let a split-model shard open the model commitment with only its own
//! layers' weights.

use std::fmt;

use ark_bn254::Fr;
use ark_ff::{BigInteger, Field, PrimeField};
#[cfg(feature = "prover")]
use ark_r1cs_std::{fields::fp::FpVar, prelude::*};
#[cfg(feature = "prover")]
use ark_relations::gr1cs::{ConstraintSystemRef, SynthesisError};
use sha2::{Digest, Sha256};

#[cfg(feature = "prover")]
use crate::poseidon::sponge_hash_var;
use crate::{
    Error, Result,
    mlp::{QuantizedLayer, QuantizedMlp},
    poseidon::sponge_hash,
};

/// Version of the commitment layout described in this module.
pub const COMMITMENT_LAYOUT_VERSION: u32 = 1;
/// Bits of payload per packed limb.
pub const LIMB_BITS: u32 = 248;
/// Domain tag of a layer commitment.
pub const TAG_LAYER: &str = "vichain.zk.layer.v1";
/// Domain tag of a model commitment.
pub const TAG_MODEL: &str = "vichain.zk.model.v1";
/// Domain tag of a vector commitment.
pub const TAG_VECTOR: &str = "vichain.zk.vector.v1";
/// Domain of the job id hash.
pub const TAG_JOB: &str = "vichain.zk.job.v1";
/// Width of a packed weight.
pub const WEIGHT_BITS: u32 = 8;
/// Width of a packed bias.
pub const BIAS_BITS: u32 = 32;
/// Width of a packed int8 input or hidden activation.
pub const ACTIVATION_BITS: u32 = 8;
/// Width of a packed logit.
pub const LOGIT_BITS: u32 = 32;
/// Longest job id accepted, in bytes.
pub const MAX_JOB_ID_BYTES: usize = 64;

/// A Poseidon commitment: one BN254 scalar, encoded as 32 big-endian bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Commitment(pub(crate) Fr);

impl Commitment {
    /// The 32-byte big-endian encoding (the integer circomlib prints in hex).
    pub fn to_bytes(&self) -> [u8; 32] {
        fr_to_be_bytes(&self.0)
    }

    /// Decodes a canonical 32-byte big-endian scalar; values `>= r` are rejected.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        fr_from_be_bytes(bytes, "commitment").map(Self)
    }

    /// Wraps a field element.
    pub fn from_field(f: Fr) -> Self {
        Self(f)
    }

    /// The field element.
    pub fn to_field(&self) -> Fr {
        self.0
    }
}

impl fmt::Display for Commitment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.to_bytes()))
    }
}

impl fmt::Debug for Commitment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Commitment({self})")
    }
}

/// A job identifier bound into every proof, so that a proof cannot be replayed for another job.
///
/// The ledger's id bytes (at most [`MAX_JOB_ID_BYTES`]) are hashed to a field element:
/// the first 31 bytes of `sha256(TAG_JOB || id)`, read big-endian.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobId(pub(crate) Fr);

impl JobId {
    /// Derives the public input from the ledger's job id bytes.
    pub fn from_bytes(id: &[u8]) -> Result<Self> {
        if id.len() > MAX_JOB_ID_BYTES {
            return Err(Error::Oversize {
                what: "job id",
                len: id.len(),
                max: MAX_JOB_ID_BYTES,
            });
        }
        let digest = Sha256::new()
            .chain_update(TAG_JOB.as_bytes())
            .chain_update(id)
            .finalize();
        Ok(Self(Fr::from_be_bytes_mod_order(&digest[..31])))
    }

    /// Derives the public input from a numeric job id (its big-endian bytes).
    pub fn from_u64(id: u64) -> Self {
        let digest = Sha256::new()
            .chain_update(TAG_JOB.as_bytes())
            .chain_update(id.to_be_bytes())
            .finalize();
        Self(Fr::from_be_bytes_mod_order(&digest[..31]))
    }

    /// The field element.
    pub fn to_field(&self) -> Fr {
        self.0
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId(0x{})", hex::encode(fr_to_be_bytes(&self.0)))
    }
}

/// Blinding for a vector commitment (32 bytes reduced into the field, little-endian).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Salt(pub [u8; 32]);

impl Salt {
    /// A fresh salt from the operating system's entropy.
    pub fn random() -> Self {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The field element absorbed by the commitment.
    pub fn to_field(&self) -> Fr {
        Fr::from_le_bytes_mod_order(&self.0)
    }
}

impl fmt::Debug for Salt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Salt(..)")
    }
}

/// A domain tag as a field element: its ASCII bytes read as a big-endian integer.
pub fn domain_tag(tag: &str) -> Fr {
    Fr::from_be_bytes_mod_order(tag.as_bytes())
}

/// Values per limb at a given width.
pub fn values_per_limb(bits: u32) -> usize {
    (LIMB_BITS / bits) as usize
}

/// Packs signed values of width `bits` into limbs (see the module documentation).
///
/// Values must lie in `[-2^(bits-1), 2^(bits-1))`; callers check this first.
pub fn pack(values: &[i64], bits: u32) -> Vec<Fr> {
    let offset = 1i128 << (bits - 1);
    values
        .chunks(values_per_limb(bits))
        .map(|chunk| {
            let mut limb = Fr::from(0u64);
            let mut scale = Fr::from(1u64);
            let step = Fr::from(2u64).pow([u64::from(bits)]);
            for &v in chunk {
                let u = (i128::from(v) + offset) as u64;
                limb += scale * Fr::from(u);
                scale *= step;
            }
            limb
        })
        .collect()
}

/// Commitment to one layer (index `index` of its model).
pub fn layer_commitment(index: usize, layer: &QuantizedLayer) -> Commitment {
    let weights: Vec<i64> = layer.weights.iter().map(|&w| i64::from(w)).collect();
    let biases: Vec<i64> = layer.biases.iter().map(|&b| i64::from(b)).collect();
    let mut elems = layer_header(index, layer);
    elems.extend(pack(&weights, WEIGHT_BITS));
    elems.extend(pack(&biases, BIAS_BITS));
    Commitment(sponge_hash(&elems))
}

/// Commitment to a whole model: the hash of its layer commitments.
pub fn model_commitment(model: &QuantizedMlp) -> Commitment {
    let layers: Vec<Commitment> = model
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| layer_commitment(i, l))
        .collect();
    model_commitment_from_layers(&layers)
}

/// Model commitment from precomputed layer commitments.
pub fn model_commitment_from_layers(layers: &[Commitment]) -> Commitment {
    let mut elems = vec![domain_tag(TAG_MODEL), Fr::from(layers.len() as u64)];
    elems.extend(layers.iter().map(|c| c.0));
    Commitment(sponge_hash(&elems))
}

/// Commitment to a vector of signed values of width `bits` (8 for inputs and activations,
/// 32 for logits).
pub fn vector_commitment(values: &[i64], bits: u32, salt: &Salt) -> Result<Commitment> {
    if !(1..=32).contains(&bits) {
        return Err(Error::InvalidWidth { bits });
    }
    let (lo, hi) = (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1);
    if let Some((index, &value)) = values
        .iter()
        .enumerate()
        .find(|(_, v)| **v < lo || **v > hi)
    {
        return Err(Error::InputOutOfRange {
            index,
            value,
            lo,
            hi,
        });
    }
    let mut elems = vector_header(values.len(), bits, salt.to_field());
    elems.extend(pack(values, bits));
    Ok(Commitment(sponge_hash(&elems)))
}

/// Commitment to an int8 input vector.
pub fn input_commitment(input: &[i8], salt: &Salt) -> Commitment {
    let values: Vec<i64> = input.iter().map(|&v| i64::from(v)).collect();
    let mut elems = vector_header(values.len(), ACTIVATION_BITS, salt.to_field());
    elems.extend(pack(&values, ACTIVATION_BITS));
    Commitment(sponge_hash(&elems))
}

pub(crate) fn layer_header(index: usize, layer: &QuantizedLayer) -> Vec<Fr> {
    vec![
        domain_tag(TAG_LAYER),
        Fr::from(index as u64),
        Fr::from(layer.in_dim as u64),
        Fr::from(layer.out_dim as u64),
        Fr::from(u64::from(layer.shift)),
    ]
}

pub(crate) fn vector_header(len: usize, bits: u32, salt: Fr) -> Vec<Fr> {
    vec![
        domain_tag(TAG_VECTOR),
        Fr::from(len as u64),
        Fr::from(u64::from(bits)),
        salt,
    ]
}

// ---------------------------------------------------------------------------------------
// In-circuit counterparts (the `prover` feature). Values passed in are the *unsigned*
// offsets `u = v + 2^(bits-1)`, already range-checked by the caller.

/// Packs range-checked unsigned values into limbs (linear combinations, no constraints).
#[cfg(feature = "prover")]
pub(crate) fn pack_var(unsigned: &[FpVar<Fr>], bits: u32) -> Vec<FpVar<Fr>> {
    let step = Fr::from(2u64).pow([u64::from(bits)]);
    unsigned
        .chunks(values_per_limb(bits))
        .map(|chunk| {
            let mut scale = Fr::from(1u64);
            let mut terms = Vec::with_capacity(chunk.len());
            for u in chunk {
                terms.push(u * scale);
                scale *= step;
            }
            terms.iter().sum()
        })
        .collect()
}

#[cfg(feature = "prover")]
pub(crate) fn layer_commitment_var(
    cs: ConstraintSystemRef<Fr>,
    index: usize,
    layer: &QuantizedLayer,
    weights_unsigned: &[FpVar<Fr>],
    biases_unsigned: &[FpVar<Fr>],
) -> std::result::Result<FpVar<Fr>, SynthesisError> {
    let mut elems: Vec<FpVar<Fr>> = layer_header(index, layer)
        .into_iter()
        .map(FpVar::constant)
        .collect();
    elems.extend(pack_var(weights_unsigned, WEIGHT_BITS));
    elems.extend(pack_var(biases_unsigned, BIAS_BITS));
    sponge_hash_var(cs, &elems)
}

#[cfg(feature = "prover")]
pub(crate) fn model_commitment_var(
    cs: ConstraintSystemRef<Fr>,
    layers: &[FpVar<Fr>],
) -> std::result::Result<FpVar<Fr>, SynthesisError> {
    let mut elems = vec![
        FpVar::constant(domain_tag(TAG_MODEL)),
        FpVar::constant(Fr::from(layers.len() as u64)),
    ];
    elems.extend(layers.iter().cloned());
    sponge_hash_var(cs, &elems)
}

#[cfg(feature = "prover")]
pub(crate) fn vector_commitment_var(
    cs: ConstraintSystemRef<Fr>,
    unsigned: &[FpVar<Fr>],
    bits: u32,
    salt: &FpVar<Fr>,
) -> std::result::Result<FpVar<Fr>, SynthesisError> {
    let mut elems: Vec<FpVar<Fr>> = vector_header(unsigned.len(), bits, Fr::from(0u64))
        .into_iter()
        .map(FpVar::constant)
        .collect();
    elems[3] = salt.clone();
    elems.extend(pack_var(unsigned, bits));
    sponge_hash_var(cs, &elems)
}

pub(crate) fn fr_to_be_bytes(f: &Fr) -> [u8; 32] {
    let bytes = f.into_bigint().to_bytes_be();
    let mut out = [0u8; 32];
    out[32 - bytes.len()..].copy_from_slice(&bytes);
    out
}

pub(crate) fn fr_from_be_bytes(bytes: &[u8], what: &'static str) -> Result<Fr> {
    if bytes.len() != 32 {
        return Err(Error::Malformed {
            what,
            reason: format!("{} bytes, expected 32", bytes.len()),
        });
    }
    let f = Fr::from_be_bytes_mod_order(bytes);
    if fr_to_be_bytes(&f) != bytes {
        return Err(Error::Malformed {
            what,
            reason: "not a canonical scalar (>= field modulus)".into(),
        });
    }
    Ok(f)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A fixed model for the pinned vectors: weights `(7 * k) % 256 - 128`, biases
    /// `1000 * o - 1500`, shift 4 then 0.
    fn vector_model() -> QuantizedMlp {
        let layer = |in_dim: usize, out_dim: usize, shift: u8| QuantizedLayer {
            in_dim,
            out_dim,
            weights: (0..in_dim * out_dim)
                .map(|k| ((7 * k) % 256) as i64 - 128)
                .map(|w| w as i8)
                .collect(),
            biases: (0..out_dim).map(|o| 1000 * o as i32 - 1500).collect(),
            shift,
        };
        QuantizedMlp::new(vec![layer(40, 5, 4), layer(5, 3, 0)]).unwrap()
    }

    #[test]
    fn tags_and_packing() {
        assert_eq!(domain_tag("ab"), Fr::from(0x6162u64));
        assert_eq!(values_per_limb(8), 31);
        assert_eq!(values_per_limb(32), 7);
        // -128 -> 0, 127 -> 255, 1 -> 129: 0 + 255 * 2^8 + 129 * 2^16
        assert_eq!(
            pack(&[-128, 127, 1], 8),
            vec![Fr::from(255u64 * 256 + 129 * 65536)]
        );
        assert_eq!(pack(&[0; 32], 8).len(), 2);
    }

    #[test]
    fn pinned_vectors() {
        let model = vector_model();
        assert_eq!(
            layer_commitment(0, &model.layers[0]).to_string(),
            "0x09126b125c6f75a8a2c8fc208698898bf22083a2a8c1cb2d755928276db7f8f4"
        );
        assert_eq!(
            model_commitment(&model).to_string(),
            "0x09b30adf900fc1e9d8f379f581e1def116ddd9d5dec130c0f2f4a157e41633be"
        );
        let input: Vec<i8> = (0..40).map(|i| (i * 5 - 100) as i8).collect();
        assert_eq!(
            input_commitment(&input, &Salt::default()).to_string(),
            "0x06340aac13c12f3d643c8c6d6157c58812d4b9d898dc9fc2395887f5b74f9f99"
        );
        assert_eq!(
            input_commitment(&input, &Salt([1; 32])).to_string(),
            "0x1db8625d40d1eb33b1380f1b2e39b6686d922ba79d464980d7327f398e8ba0cd"
        );
        assert_eq!(
            vector_commitment(&[-5, 0, 70_000], LOGIT_BITS, &Salt::default())
                .unwrap()
                .to_string(),
            "0x0d9b6040329a3ce13a42275364fdcca240ae73dd0694c53027749eb471aac60b"
        );
        assert_eq!(
            format!("{:?}", JobId::from_u64(42)),
            "JobId(0x004d17a4270b667764321811fb57feaa1d865258f002e800981f2865089ef747)"
        );
    }

    #[test]
    fn commitments_separate_what_they_should() {
        let model = vector_model();
        let mut other = model.clone();
        other.layers[1].weights[0] ^= 1;
        assert_ne!(model_commitment(&model), model_commitment(&other));
        let mut shifted = model.clone();
        shifted.layers[0].shift += 1;
        assert_ne!(model_commitment(&model), model_commitment(&shifted));
        // Same values, different length or width: different commitments.
        let s = Salt::default();
        assert_ne!(
            vector_commitment(&[1, 0], 8, &s).unwrap(),
            vector_commitment(&[1], 8, &s).unwrap()
        );
        assert_ne!(
            vector_commitment(&[1], 8, &s).unwrap(),
            vector_commitment(&[1], 32, &s).unwrap()
        );
        assert!(vector_commitment(&[128], 8, &s).is_err());
        assert_eq!(
            input_commitment(&[1, -2], &s),
            vector_commitment(&[1, -2], 8, &s).unwrap()
        );
    }

    #[test]
    fn commitment_bytes_roundtrip_and_reject_noncanonical() {
        let c = model_commitment(&vector_model());
        assert_eq!(Commitment::from_bytes(&c.to_bytes()).unwrap(), c);
        assert!(Commitment::from_bytes(&[0xff; 32]).is_err());
        assert!(Commitment::from_bytes(&[0; 31]).is_err());
        assert!(JobId::from_bytes(&[0; 65]).is_err());
        assert_eq!(
            JobId::from_bytes(&42u64.to_be_bytes()).unwrap(),
            JobId::from_u64(42)
        );
    }

    #[cfg(feature = "prover")]
    #[test]
    fn circuit_commitments_match_native() {
        use ark_r1cs_std::alloc::AllocVar;
        use ark_relations::gr1cs::ConstraintSystem;

        use crate::gadgets::alloc_signed;

        let model = vector_model();
        let cs = ConstraintSystem::<Fr>::new_ref();
        let layer = &model.layers[0];
        let w: Vec<FpVar<Fr>> = layer
            .weights
            .iter()
            .map(|&v| alloc_signed(&cs, Some(i64::from(v)), 8).unwrap().unsigned)
            .collect();
        let b: Vec<FpVar<Fr>> = layer
            .biases
            .iter()
            .map(|&v| alloc_signed(&cs, Some(i64::from(v)), 32).unwrap().unsigned)
            .collect();
        let c = layer_commitment_var(cs.clone(), 0, layer, &w, &b).unwrap();
        assert_eq!(c.value().unwrap(), layer_commitment(0, layer).0);
        let values = [-128i64, 5, 127];
        let u: Vec<FpVar<Fr>> = values
            .iter()
            .map(|&v| alloc_signed(&cs, Some(v), 8).unwrap().unsigned)
            .collect();
        let salt = FpVar::new_witness(cs.clone(), || Ok(Salt([9; 32]).to_field())).unwrap();
        let v = vector_commitment_var(cs.clone(), &u, 8, &salt).unwrap();
        assert_eq!(
            v.value().unwrap(),
            vector_commitment(&values, 8, &Salt([9; 32])).unwrap().0
        );
        assert!(cs.is_satisfied().unwrap());
    }
}
