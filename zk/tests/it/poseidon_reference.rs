//! vichain's Poseidon against circomlib's: the vectors in `tests/data/circomlib-poseidon.json`
//! were computed by circomlibjs (`scripts/poseidon-reference.sh`), not by this crate, so they
//! check the parameters, the permutation, the sponge and the commitment layout independently.

use ark_crypto_primitives::sponge::{
    CryptographicSponge, FieldBasedCryptographicSponge, poseidon::PoseidonSponge,
};
use ark_ff::{BigInteger, PrimeField};
use serde_json::Value;
use vichain_zk::{
    Commitment, Fr, Salt, poseidon_config, poseidon_hash2, sponge_hash, vector_commitment,
};

const VECTORS: &str = include_str!("../data/circomlib-poseidon.json");

fn vectors() -> Value {
    serde_json::from_str(VECTORS).unwrap()
}

/// A canonical field element from `0x` + 64 big-endian hex digits.
fn fr(v: &Value) -> Fr {
    let s = v.as_str().unwrap();
    let bytes = hex::decode(s.strip_prefix("0x").unwrap()).unwrap();
    Commitment::from_bytes(&bytes).unwrap().to_field()
}

fn frs(v: &Value) -> Vec<Fr> {
    v.as_array().unwrap().iter().map(fr).collect()
}

fn cases<'a>(v: &'a Value, section: &str) -> &'a [Value] {
    let cases = v[section].as_array().unwrap();
    assert!(!cases.is_empty(), "{section}");
    cases
}

/// The t = 3 permutation that `sponge_hash` runs, through arkworks' public sponge API: a
/// squeeze from the absorbing state permutes it once.
fn permute(state: [Fr; 3]) -> Vec<Fr> {
    let mut sponge = PoseidonSponge::new(poseidon_config());
    sponge.state = state.to_vec();
    let _ = sponge.squeeze_native_field_elements(1);
    sponge.state
}

#[test]
fn the_vectors_are_circomlibs_on_bn254() {
    let v = vectors();
    assert_eq!(v["circomlibjs_version"], "0.1.7");
    let modulus = hex::encode(Fr::MODULUS.to_bytes_be());
    assert_eq!(v["field_modulus"], format!("0x{modulus}"));
}

#[test]
fn hash2_matches_circomlib() {
    for case in cases(&vectors(), "hash2") {
        let inputs = frs(&case["inputs"]);
        assert_eq!(
            poseidon_hash2(inputs[0], inputs[1]),
            fr(&case["output"]),
            "{case}"
        );
    }
}

#[test]
fn the_permutation_matches_circomlib() {
    for case in cases(&vectors(), "permutation") {
        let state = frs(&case["state"]);
        assert_eq!(
            permute([state[0], state[1], state[2]]),
            frs(&case["output"]),
            "{case}"
        );
    }
}

#[test]
fn sponge_hash_matches_the_sponge_rebuilt_on_circomlibs_permutation() {
    let v = vectors();
    let sponge = cases(&v, "sponge");
    assert!(
        sponge
            .iter()
            .any(|c| c["inputs"].as_array().unwrap().len() >= 5)
    );
    for case in sponge {
        assert_eq!(
            sponge_hash(&frs(&case["inputs"])),
            fr(&case["output"]),
            "{case}"
        );
    }
}

#[test]
fn vector_commitments_match_the_layout_rebuilt_on_circomlib() {
    for case in cases(&vectors(), "vector_commitment") {
        let values: Vec<i64> = case["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect();
        let bits = u32::try_from(case["bits"].as_u64().unwrap()).unwrap();
        let salt: [u8; 32] = hex::decode(case["salt"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let commitment = vector_commitment(&values, bits, &Salt(salt)).unwrap();
        assert_eq!(commitment.to_field(), fr(&case["output"]), "{case}");
        // The elements circomlib's sponge absorbed hash to the same value here.
        assert_eq!(
            sponge_hash(&frs(&case["elements"])),
            commitment.to_field(),
            "{case}"
        );
    }
}
