//! R1CS gadgets shared by the circuits: range-checked integers, the MLP layer, argmax.

use ark_bn254::Fr;
use ark_ff::{BigInteger, PrimeField};
use ark_r1cs_std::{fields::fp::FpVar, prelude::*};
use ark_relations::gr1cs::{ConstraintSystemRef, SynthesisError};

use crate::{
    mlp::{ACC_BITS, ACTIVATION_MAX, QuantizedLayer},
    public::i64_to_fr,
};

type SResult<T> = Result<T, SynthesisError>;

/// A signed integer witness of width `bits`, range-checked by its bit decomposition.
#[derive(Clone, Debug)]
pub(crate) struct SignedVar {
    /// The integer `v` (a linear combination of the bits).
    pub value: FpVar<Fr>,
    /// `v + 2^(bits-1)`, the form that commitments pack.
    pub unsigned: FpVar<Fr>,
}

/// Allocates `bits` boolean witnesses for an unsigned value (`bits` constraints).
pub(crate) fn alloc_bits(
    cs: &ConstraintSystemRef<Fr>,
    value: Option<u64>,
    bits: u32,
) -> SResult<Vec<Boolean<Fr>>> {
    (0..bits)
        .map(|i| {
            Boolean::new_witness(cs.clone(), || {
                value
                    .map(|v| (v >> i) & 1 == 1)
                    .ok_or(SynthesisError::AssignmentMissing)
            })
        })
        .collect()
}

/// Little-endian bits to a field element (a linear combination; no constraints for < 254 bits).
pub(crate) fn from_bits(bits: &[Boolean<Fr>]) -> SResult<FpVar<Fr>> {
    Boolean::le_bits_to_fp(bits)
}

/// Allocates a signed witness in `[-2^(bits-1), 2^(bits-1))` (`bits` constraints).
pub(crate) fn alloc_signed(
    cs: &ConstraintSystemRef<Fr>,
    value: Option<i64>,
    bits: u32,
) -> SResult<SignedVar> {
    let offset = 1i64 << (bits - 1);
    let unsigned_value = value.map(|v| (v + offset) as u64);
    let unsigned = from_bits(&alloc_bits(cs, unsigned_value, bits)?)?;
    let value = &unsigned - Fr::from(offset as u64);
    Ok(SignedVar { value, unsigned })
}

/// The signed integer a field element represents, if it is within `i64`.
pub(crate) fn fr_to_i64(f: Fr) -> Option<i64> {
    let limbs = f.into_bigint();
    if limbs.num_bits() <= 63 {
        return Some(limbs.as_ref()[0] as i64);
    }
    let neg = (-f).into_bigint();
    if neg.num_bits() <= 63 {
        Some(-(neg.as_ref()[0] as i64))
    } else {
        None
    }
}

fn value_i64(v: &FpVar<Fr>) -> Option<i64> {
    v.value().ok().and_then(fr_to_i64)
}

/// Weights of one layer, either circuit constants or range-checked witnesses.
pub(crate) enum LayerWeights<'a> {
    Constant(&'a QuantizedLayer),
    Witness {
        weights: &'a [SignedVar],
        biases: &'a [SignedVar],
    },
}

/// One layer of the quantized MLP, bit-exact with [`QuantizedLayer::forward`].
///
/// Per output: `acc + 2^31` is decomposed into 32 bits (which range-checks the accumulator,
/// and yields the shift remainder as the low `shift` bits); the quotient is the upper bits.
/// Hidden layers then apply ReLU (the sign bit) and saturate at 127 (any quotient bit at or
/// above position 7 set).
pub(crate) fn layer(
    cs: &ConstraintSystemRef<Fr>,
    shape: &QuantizedLayer,
    weights: LayerWeights<'_>,
    x: &[FpVar<Fr>],
    last: bool,
) -> SResult<Vec<FpVar<Fr>>> {
    let s = u32::from(shape.shift);
    let mut out = Vec::with_capacity(shape.out_dim);
    for o in 0..shape.out_dim {
        let acc: FpVar<Fr> = match &weights {
            LayerWeights::Constant(layer) => {
                let row = &layer.weights[o * layer.in_dim..(o + 1) * layer.in_dim];
                let mut terms: Vec<FpVar<Fr>> = row
                    .iter()
                    .zip(x)
                    .filter(|(w, _)| **w != 0)
                    .map(|(&w, xi)| xi * i64_to_fr(i64::from(w)))
                    .collect();
                terms.push(FpVar::constant(i64_to_fr(i64::from(layer.biases[o]))));
                terms.iter().sum()
            }
            LayerWeights::Witness { weights, biases } => {
                let row = &weights[o * shape.in_dim..(o + 1) * shape.in_dim];
                let mut terms = Vec::with_capacity(row.len() + 1);
                for (w, xi) in row.iter().zip(x) {
                    terms.push(&w.value * xi);
                }
                terms.push(biases[o].value.clone());
                terms.iter().sum()
            }
        };
        let half = 1i64 << (ACC_BITS - 1);
        let bits = alloc_bits(cs, value_i64(&acc).map(|a| (a + half) as u64), ACC_BITS)?;
        from_bits(&bits)?.enforce_equal(&(&acc + Fr::from(half as u64)))?;
        let quotient_bits = &bits[s as usize..ACC_BITS as usize - 1];
        if last {
            // floor(acc / 2^s) = (upper bits with the sign bit as +2^(31-s)) - 2^(31-s).
            let q = from_bits(&bits[s as usize..])? - Fr::from(1u64 << (ACC_BITS - 1 - s));
            out.push(q);
        } else {
            let nonneg = &bits[ACC_BITS as usize - 1];
            let low7 = from_bits(&quotient_bits[..7.min(quotient_bits.len())])?;
            let high: Vec<FpVar<Fr>> = quotient_bits
                .iter()
                .skip(7)
                .map(|b| FpVar::from(b.clone()))
                .collect();
            let saturated = if high.is_empty() {
                low7
            } else {
                let big = !high.iter().sum::<FpVar<Fr>>().is_zero()?;
                big.select(&FpVar::constant(Fr::from(ACTIVATION_MAX as u64)), &low7)?
            };
            out.push(nonneg.select(&saturated, &FpVar::zero())?);
        }
    }
    Ok(out)
}

/// Enforces that `index` (returned) is the first position of the largest logit.
///
/// A one-hot witness selects the maximum; every other logit is at most the maximum, and
/// logits before the selected position are strictly smaller (33 constraints per logit).
pub(crate) fn argmax(cs: &ConstraintSystemRef<Fr>, logits: &[FpVar<Fr>]) -> SResult<FpVar<Fr>> {
    let values: Option<Vec<i64>> = logits.iter().map(value_i64).collect();
    let winner = values.as_ref().map(|v| crate::mlp::argmax(v));
    let onehot: Vec<Boolean<Fr>> = (0..logits.len())
        .map(|i| {
            Boolean::new_witness(cs.clone(), || {
                winner
                    .map(|w| w == i)
                    .ok_or(SynthesisError::AssignmentMissing)
            })
        })
        .collect::<SResult<_>>()?;
    let onehot_fp: Vec<FpVar<Fr>> = onehot.iter().map(|b| FpVar::from(b.clone())).collect();
    onehot_fp
        .iter()
        .sum::<FpVar<Fr>>()
        .enforce_equal(&FpVar::one())?;
    let mut max = FpVar::zero();
    for (b, l) in onehot.iter().zip(logits) {
        max += b.select(l, &FpVar::zero())?;
    }
    let index: FpVar<Fr> = onehot_fp
        .iter()
        .enumerate()
        .map(|(i, b)| b * Fr::from(i as u64))
        .sum();
    for i in 0..logits.len() {
        // 1 when the winner comes after i, so logit i must be strictly smaller.
        let before: FpVar<Fr> = onehot_fp[i + 1..].iter().sum();
        let gap = &max - &logits[i] - before;
        let gap_value = gap.value().ok().and_then(fr_to_i64).map(|g| g as u64);
        let gap_bits = alloc_bits(cs, gap_value, ACC_BITS + 1)?;
        from_bits(&gap_bits)?.enforce_equal(&gap)?;
    }
    Ok(index)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ark_relations::gr1cs::ConstraintSystem;

    #[test]
    fn fr_i64_roundtrip() {
        for v in [
            0i64,
            1,
            -1,
            127,
            -128,
            i32::MAX as i64,
            i32::MIN as i64,
            i64::MAX,
            -i64::MAX,
        ] {
            assert_eq!(fr_to_i64(i64_to_fr(v)), Some(v));
        }
    }

    #[test]
    fn signed_witness_out_of_range_is_unsatisfied() {
        let cs = ConstraintSystem::<Fr>::new_ref();
        let v = alloc_signed(&cs, Some(-128), 8).unwrap();
        assert_eq!(v.value.value().unwrap(), i64_to_fr(-128));
        assert!(cs.is_satisfied().unwrap());
        let cs = ConstraintSystem::<Fr>::new_ref();
        // 128 does not fit: its bit pattern is truncated, so the value differs.
        let v = alloc_signed(&cs, Some(128), 8).unwrap();
        assert_ne!(v.value.value().unwrap(), i64_to_fr(128));
    }

    #[test]
    fn argmax_gadget_accepts_only_the_first_maximum() {
        let logits = [3i64, -7, 9, 9, 0];
        let cs = ConstraintSystem::<Fr>::new_ref();
        let vars: Vec<FpVar<Fr>> = logits
            .iter()
            .map(|&l| FpVar::new_witness(cs.clone(), || Ok(i64_to_fr(l))).unwrap())
            .collect();
        let index = argmax(&cs, &vars).unwrap();
        assert_eq!(index.value().unwrap(), Fr::from(2u64));
        assert!(cs.is_satisfied().unwrap());
    }
}
