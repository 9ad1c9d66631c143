//! Poseidon over BN254's scalar field with circomlib's parameters.
//!
//! `tests/it/poseidon_reference.rs` checks the hash, the permutation, the sponge and vector
//! commitments against outputs of circomlib's own code (circomlibjs), written to
//! `tests/data/circomlib-poseidon.json` by `scripts/poseidon-reference.sh`.

use std::sync::OnceLock;

use ark_bn254::Fr;
use ark_crypto_primitives::sponge::{
    CryptographicSponge, FieldBasedCryptographicSponge,
    poseidon::{PoseidonConfig, PoseidonSponge, find_poseidon_ark_and_mds},
};
#[cfg(feature = "prover")]
use ark_crypto_primitives::sponge::{
    constraints::CryptographicSpongeVar, poseidon::constraints::PoseidonSpongeVar,
};
use ark_ff::PrimeField;
#[cfg(feature = "prover")]
use ark_r1cs_std::fields::fp::FpVar;
#[cfg(feature = "prover")]
use ark_relations::gr1cs::{ConstraintSystemRef, SynthesisError};

/// State width t = rate + capacity.
pub const POSEIDON_WIDTH: usize = 3;
/// Field elements absorbed per permutation.
pub const POSEIDON_RATE: usize = 2;
/// S-box exponent.
pub const POSEIDON_ALPHA: u64 = 5;
/// Full rounds (half before, half after the partial rounds).
pub const POSEIDON_FULL_ROUNDS: usize = 8;
/// Partial rounds for t = 3 (circomlib's `N_ROUNDS_P[1]`).
pub const POSEIDON_PARTIAL_ROUNDS: usize = 57;

/// The Poseidon parameters every commitment in vichain uses.
pub fn poseidon_config() -> &'static PoseidonConfig<Fr> {
    static CONFIG: OnceLock<PoseidonConfig<Fr>> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let (ark, mds) = find_poseidon_ark_and_mds::<Fr>(
            u64::from(Fr::MODULUS_BIT_SIZE),
            POSEIDON_RATE,
            POSEIDON_FULL_ROUNDS as u64,
            POSEIDON_PARTIAL_ROUNDS as u64,
            0,
        );
        PoseidonConfig {
            full_rounds: POSEIDON_FULL_ROUNDS,
            partial_rounds: POSEIDON_PARTIAL_ROUNDS,
            alpha: POSEIDON_ALPHA,
            ark,
            mds,
            rate: POSEIDON_RATE,
            capacity: 1,
        }
    })
}

/// circomlib's `Poseidon(2)`: the state `[0, a, b]` is permuted once and its first element is
/// the hash.
pub fn poseidon_hash2(a: Fr, b: Fr) -> Fr {
    let mut sponge = PoseidonSponge::new(poseidon_config());
    sponge.absorb(&vec![a, b]);
    let _ = sponge.squeeze_native_field_elements(1);
    sponge.state[0]
}

/// In-circuit [`poseidon_hash2`].
#[cfg(feature = "prover")]
pub fn poseidon_hash2_var(
    cs: ConstraintSystemRef<Fr>,
    a: &FpVar<Fr>,
    b: &FpVar<Fr>,
) -> Result<FpVar<Fr>, SynthesisError> {
    let mut sponge = PoseidonSpongeVar::new(cs, poseidon_config());
    sponge.absorb(&vec![a.clone(), b.clone()])?;
    let _ = sponge.squeeze_field_elements(1)?;
    Ok(sponge.state[0].clone())
}

/// The sponge used for commitments: capacity element first, rate 2, one squeezed element.
pub fn sponge_hash(elements: &[Fr]) -> Fr {
    let mut sponge = PoseidonSponge::new(poseidon_config());
    sponge.absorb(&elements.to_vec());
    sponge.squeeze_native_field_elements(1)[0]
}

/// In-circuit [`sponge_hash`].
#[cfg(feature = "prover")]
pub fn sponge_hash_var(
    cs: ConstraintSystemRef<Fr>,
    elements: &[FpVar<Fr>],
) -> Result<FpVar<Fr>, SynthesisError> {
    let mut sponge = PoseidonSpongeVar::new(cs, poseidon_config());
    sponge.absorb(&elements.to_vec())?;
    let mut out = sponge.squeeze_field_elements(1)?;
    out.pop().ok_or(SynthesisError::Unsatisfiable)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use crate::commit::fr_to_be_bytes;

    fn hex(f: Fr) -> String {
        hex::encode(fr_to_be_bytes(&f))
    }

    #[test]
    fn parameters_are_circomlibs() {
        let c = poseidon_config();
        // circomlib poseidon_constants.js, t = 3: C[0] and M[0][0], M[0][1], M[1][0].
        assert_eq!(
            hex(c.ark[0][0]),
            "0ee9a592ba9a9518d05986d656f40c2114c4993c11bb29938d21d47304cd8e6e"
        );
        assert_eq!(
            hex(c.mds[0][0]),
            "109b7f411ba0e4c9b2b70caf5c36a7b194be7c11ad24378bfedb68592ba8118b"
        );
        assert_eq!(
            hex(c.mds[0][1]),
            "16ed41e13bb9c0c66ae119424fddbcbc9314dc9fdbdeea55d6c64543dc4903e0"
        );
        assert_eq!(
            hex(c.mds[1][0]),
            "2969f27eed31a480b9c36c764379dbca2cc8fdd1415c3dded62940bcde0bd771"
        );
        assert_eq!((c.ark.len(), c.mds.len()), (65, 3));
    }

    #[test]
    fn hash2_matches_circomlib() {
        // circomlibjs: poseidon([1, 2])
        let h = poseidon_hash2(Fr::from(1u64), Fr::from(2u64));
        assert_eq!(
            hex(h),
            "115cc0f5e7d690413df64c6b9662e9cf2a3617f2743245519e19607a4417189a"
        );
    }

    #[cfg(feature = "prover")]
    #[test]
    fn native_and_circuit_agree() {
        use ark_r1cs_std::{GR1CSVar, alloc::AllocVar};
        use ark_relations::gr1cs::ConstraintSystem;

        let cs = ConstraintSystem::<Fr>::new_ref();
        let elems: Vec<Fr> = (0..5u64).map(|i| Fr::from(i * 1_000_003 + 17)).collect();
        let vars: Vec<FpVar<Fr>> = elems
            .iter()
            .map(|e| FpVar::new_witness(cs.clone(), || Ok(*e)).unwrap())
            .collect();
        let out = sponge_hash_var(cs.clone(), &vars).unwrap();
        assert_eq!(out.value().unwrap(), sponge_hash(&elems));
        let h2 = poseidon_hash2_var(cs.clone(), &vars[0], &vars[1]).unwrap();
        assert_eq!(h2.value().unwrap(), poseidon_hash2(elems[0], elems[1]));
        assert!(cs.is_satisfied().unwrap());
        // 3 permutations for 5 elements and 1 for the pair, 243 constraints each, less one
        // free S-box per sponge (the capacity element is still a constant in round one).
        assert_eq!(cs.num_constraints(), 4 * 243 - 2 * 3);
    }

    #[test]
    fn sponge_vector() {
        let h = sponge_hash(&[Fr::from(1u64), Fr::from(2u64), Fr::from(3u64)]);
        assert_eq!(
            hex(h),
            "1e706b0afc828a5262be1773734e80df7fa9c0aa25c8fd5dfb008122a62e65ca"
        );
    }
}
