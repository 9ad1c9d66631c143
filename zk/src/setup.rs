//! Groth16 trusted setup and proving on BN254 (the `prover` feature), and proving-key
//! encoding.
//!
//! Trusted setup: [`setup`] samples the toxic waste from the given seed (or OS entropy).
//! Whoever runs it can forge proofs for that circuit, so in a permissioned network the model
//! owner or the authority runs it on a machine it trusts, with OS entropy, and publishes only
//! the keys; the verifying key's sha256 goes into the model registry. A seed is for tests and
//! reproducible benchmarks only.

use ark_bn254::{Bn254, Fr};
use ark_groth16::{Groth16, ProvingKey, VerifyingKey};
use ark_relations::gr1cs::ConstraintSynthesizer;
use ark_snark::SNARK;
use rand::{CryptoRng, RngCore, SeedableRng, rngs::StdRng};

use crate::{
    Error, Result,
    keys::{KeyHash, check_hash, decode, encode, encode_verifying_key},
};

/// Largest proving key accepted from a file.
pub const MAX_PROVING_KEY_BYTES: usize = 4 << 30;

/// Keys produced by [`setup`], with their encodings' hashes.
#[derive(Clone, Debug)]
pub struct Keys {
    /// The proving key.
    pub proving_key: ProvingKey<Bn254>,
    /// The verifying key.
    pub verifying_key: VerifyingKey<Bn254>,
    /// sha256 of [`encode_proving_key`].
    pub proving_key_hash: KeyHash,
    /// sha256 of [`encode_verifying_key`].
    pub verifying_key_hash: KeyHash,
}

/// Circuit-specific Groth16 setup; `seed` makes it reproducible (tests only), `None` uses OS
/// entropy.
pub fn setup<C: ConstraintSynthesizer<Fr>>(circuit: C, seed: Option<[u8; 32]>) -> Result<Keys> {
    let mut rng = match seed {
        Some(s) => StdRng::from_seed(s),
        None => StdRng::from_entropy(),
    };
    let (proving_key, verifying_key) =
        Groth16::<Bn254>::circuit_specific_setup(circuit, &mut rng).map_err(Error::Synthesis)?;
    let proving_key_hash = KeyHash::of(&encode_proving_key(&proving_key)?);
    let verifying_key_hash = KeyHash::of(&encode_verifying_key(&verifying_key)?);
    Ok(Keys {
        proving_key,
        verifying_key,
        proving_key_hash,
        verifying_key_hash,
    })
}

/// Proves `circuit` (which carries its witnesses) with fresh randomness from `rng`; returns the
/// compressed proof.
pub fn prove<C: ConstraintSynthesizer<Fr>, R: RngCore + CryptoRng>(
    pk: &ProvingKey<Bn254>,
    circuit: C,
    rng: &mut R,
) -> Result<Vec<u8>> {
    let proof = Groth16::<Bn254>::prove(pk, circuit, rng).map_err(Error::Synthesis)?;
    encode(&proof, "proof")
}

/// Compressed serialization of a proving key.
pub fn encode_proving_key(pk: &ProvingKey<Bn254>) -> Result<Vec<u8>> {
    encode(pk, "proving key")
}

/// Decodes a proving key whose sha256 must equal `expected` (validated like verifying keys).
pub fn decode_proving_key(bytes: &[u8], expected: &KeyHash) -> Result<ProvingKey<Bn254>> {
    check_hash(bytes, expected, MAX_PROVING_KEY_BYTES, "proving key")?;
    decode(bytes, "proving key")
}
