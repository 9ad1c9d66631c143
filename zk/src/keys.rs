//! Groth16 verification on BN254: keys pinned by hash, bounded decoding of verifying keys,
//! proofs and public inputs, single and batched verification. Setup and proving (the
//! `prover` feature) are in the `setup` module.

use std::fmt;

use ark_bn254::{Bn254, Fr, G1Projective};
use ark_ec::{CurveGroup, pairing::Pairing};
use ark_ff::{Field, PrimeField};
use ark_groth16::{Groth16, PreparedVerifyingKey, Proof, VerifyingKey, prepare_verifying_key};
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// A compressed BN254 Groth16 proof is exactly this long.
pub const PROOF_BYTES: usize = 128;
/// Largest verifying key accepted (about 32 bytes per public input).
pub const MAX_VERIFYING_KEY_BYTES: usize = 64 * 1024;
/// Most public inputs an encoded list may carry.
pub const MAX_PUBLIC_INPUTS: usize = 1024;
/// Most proofs verified in one batch.
pub const MAX_BATCH: usize = 4096;

/// sha256 of a key's compressed serialization: the key's identity in the model registry.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    /// Hashes encoded key bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({self})")
    }
}

/// Verifies a decoded proof against public inputs; the input count must match the key.
pub fn verify(
    pvk: &PreparedVerifyingKey<Bn254>,
    public_inputs: &[Fr],
    proof: &Proof<Bn254>,
) -> Result<()> {
    check_input_count(&pvk.vk, public_inputs.len())?;
    // The inherent method behind `SNARK::verify_with_processed_vk`, without the SNARK trait.
    match Groth16::<Bn254>::verify_proof(pvk, proof, public_inputs) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::InvalidProof),
        Err(e) => Err(Error::Synthesis(e)),
    }
}

/// Precomputes what verification needs from a verifying key.
pub fn prepare(vk: &VerifyingKey<Bn254>) -> PreparedVerifyingKey<Bn254> {
    prepare_verifying_key(vk)
}

/// Verifies many proofs for one key with a random linear combination of their pairing
/// equations: `n + 2` Miller loops and one final exponentiation instead of `3n` and `n`.
///
/// The coefficients are 128-bit, derived by sha256 from `randomness` (for example the block
/// hash) and from every proof and public input in the batch, so a prover cannot choose
/// proofs that cancel. Returns `Ok(())` only if every proof is valid (except with
/// probability about `2^-128`); it does not say which one failed, see
/// [`verify_batch_with_fallback`].
pub fn verify_batch(
    pvk: &PreparedVerifyingKey<Bn254>,
    items: &[(Vec<Fr>, Proof<Bn254>)],
    randomness: &[u8],
) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    if items.len() > MAX_BATCH {
        return Err(Error::Oversize {
            what: "proof batch",
            len: items.len(),
            max: MAX_BATCH,
        });
    }
    for (inputs, _) in items {
        check_input_count(&pvk.vk, inputs.len())?;
    }
    let coefficients = batch_coefficients(items, randomness)?;
    let mut g1 = Vec::with_capacity(items.len() + 2);
    let mut g2 = Vec::with_capacity(items.len() + 2);
    let mut sum_ic = G1Projective::default();
    let mut sum_c = G1Projective::default();
    let mut sum_r = Fr::from(0u64);
    for ((inputs, proof), r) in items.iter().zip(&coefficients) {
        let ic = Groth16::<Bn254>::prepare_inputs(pvk, inputs).map_err(Error::Synthesis)?;
        sum_ic += ic * r;
        sum_c += proof.c * r;
        sum_r += r;
        g1.push((proof.a * r).into_affine());
        g2.push(proof.b);
    }
    g1.push(sum_ic.into_affine());
    g2.push(pvk.vk.gamma_g2);
    g1.push(sum_c.into_affine());
    g2.push(pvk.vk.delta_g2);
    let mut g2_prepared: Vec<<Bn254 as Pairing>::G2Prepared> =
        g2[..items.len()].iter().map(|b| (*b).into()).collect();
    g2_prepared.push(pvk.gamma_g2_neg_pc.clone());
    g2_prepared.push(pvk.delta_g2_neg_pc.clone());
    let g1_prepared: Vec<<Bn254 as Pairing>::G1Prepared> = g1.iter().map(|a| (*a).into()).collect();
    let lhs = Bn254::final_exponentiation(Bn254::multi_miller_loop(g1_prepared, g2_prepared))
        .ok_or(Error::InvalidProof)?;
    if lhs.0 == pvk.alpha_g1_beta_g2.pow(sum_r.into_bigint()) {
        Ok(())
    } else {
        Err(Error::InvalidProof)
    }
}

/// Batch verification that falls back to verifying each proof alone when the batch fails;
/// returns one result per item, in order.
pub fn verify_batch_with_fallback(
    pvk: &PreparedVerifyingKey<Bn254>,
    items: &[(Vec<Fr>, Proof<Bn254>)],
    randomness: &[u8],
) -> Vec<Result<()>> {
    match verify_batch(pvk, items, randomness) {
        Ok(()) => items.iter().map(|_| Ok(())).collect(),
        Err(_) => items
            .iter()
            .map(|(inputs, proof)| verify(pvk, inputs, proof))
            .collect(),
    }
}

fn batch_coefficients(items: &[(Vec<Fr>, Proof<Bn254>)], randomness: &[u8]) -> Result<Vec<Fr>> {
    let mut transcript = Sha256::new();
    transcript.update(b"vichain.zk.batch.v1");
    transcript.update((randomness.len() as u64).to_le_bytes());
    transcript.update(randomness);
    transcript.update((items.len() as u64).to_le_bytes());
    for (inputs, proof) in items {
        transcript.update(encode(proof, "proof")?);
        transcript.update(encode(inputs, "public inputs")?);
    }
    let seed = transcript.finalize();
    Ok((0..items.len() as u64)
        .map(|i| {
            let d = Sha256::new()
                .chain_update(seed)
                .chain_update(i.to_le_bytes())
                .finalize();
            // 128-bit coefficients, never zero.
            Fr::from_le_bytes_mod_order(&d[..16]) + Fr::from(1u64)
        })
        .collect())
}

fn check_input_count(vk: &VerifyingKey<Bn254>, got: usize) -> Result<()> {
    let expected = vk.gamma_abc_g1.len().saturating_sub(1);
    if got != expected {
        return Err(Error::PublicInputCount { got, expected });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Encoding

/// Compressed serialization of a verifying key.
pub fn encode_verifying_key(vk: &VerifyingKey<Bn254>) -> Result<Vec<u8>> {
    encode(vk, "verifying key")
}

/// Decodes a verifying key whose sha256 must equal `expected`; points are checked to be on
/// the curve and in the prime-order subgroup.
pub fn decode_verifying_key(bytes: &[u8], expected: &KeyHash) -> Result<VerifyingKey<Bn254>> {
    check_hash(bytes, expected, MAX_VERIFYING_KEY_BYTES, "verifying key")?;
    let vk: VerifyingKey<Bn254> = decode(bytes, "verifying key")?;
    if vk.gamma_abc_g1.is_empty() {
        return Err(Error::Malformed {
            what: "verifying key",
            reason: "no input commitments".into(),
        });
    }
    Ok(vk)
}

/// Decodes a compressed proof (exactly [`PROOF_BYTES`]; points on the curve, in the subgroup).
pub fn decode_proof(bytes: &[u8]) -> Result<Proof<Bn254>> {
    if bytes.len() != PROOF_BYTES {
        return Err(Error::Malformed {
            what: "proof",
            reason: format!("{} bytes, expected {PROOF_BYTES}", bytes.len()),
        });
    }
    decode(bytes, "proof")
}

/// Compressed serialization of public inputs (a length-prefixed list of scalars).
pub fn encode_public_inputs(inputs: &[Fr]) -> Result<Vec<u8>> {
    encode(&inputs.to_vec(), "public inputs")
}

/// Decodes public inputs; at most [`MAX_PUBLIC_INPUTS`], each a canonical scalar.
pub fn decode_public_inputs(bytes: &[u8]) -> Result<Vec<Fr>> {
    let max = 8 + 32 * MAX_PUBLIC_INPUTS;
    if bytes.len() > max {
        return Err(Error::Oversize {
            what: "public inputs",
            len: bytes.len(),
            max,
        });
    }
    decode(bytes, "public inputs")
}

pub(crate) fn check_hash(
    bytes: &[u8],
    expected: &KeyHash,
    max: usize,
    what: &'static str,
) -> Result<()> {
    if bytes.len() > max {
        return Err(Error::Oversize {
            what,
            len: bytes.len(),
            max,
        });
    }
    let actual = KeyHash::of(bytes);
    if actual != *expected {
        return Err(Error::KeyHashMismatch {
            what,
            expected: *expected,
            actual,
        });
    }
    Ok(())
}

pub(crate) fn encode<T: CanonicalSerialize>(value: &T, what: &'static str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(value.compressed_size());
    value
        .serialize_compressed(&mut out)
        .map_err(|e| Error::Malformed {
            what,
            reason: e.to_string(),
        })?;
    Ok(out)
}

/// Validated decoding that must consume every byte.
pub(crate) fn decode<T: CanonicalDeserialize>(bytes: &[u8], what: &'static str) -> Result<T> {
    let mut reader = bytes;
    let value = T::deserialize_compressed(&mut reader).map_err(|e| Error::Malformed {
        what,
        reason: e.to_string(),
    })?;
    if !reader.is_empty() {
        return Err(Error::Malformed {
            what,
            reason: format!("{} trailing bytes", reader.len()),
        });
    }
    Ok(value)
}

// The tests make their proofs, so they need the prover.
#[cfg(all(test, feature = "prover"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use rand::{SeedableRng, rngs::StdRng};

    use super::*;
    use crate::{
        InferenceCircuit, InferencePrivate, InferencePublic, JobId, Keys, OutputMode, PublicOutput,
        QuantizedMlp, Salt, WeightMode, decode_proving_key, encode_proving_key, prove, setup,
    };

    struct Fixture {
        keys: Keys,
        proofs: Vec<(InferencePublic, Vec<u8>)>,
    }

    fn fixture(n: u64) -> Fixture {
        let model = Arc::new(QuantizedMlp::synthetic(&[6, 4, 3], 21).unwrap());
        let keys = setup(
            InferenceCircuit::for_setup(model.clone(), WeightMode::Public, OutputMode::Logits)
                .unwrap(),
            Some([7; 32]),
        )
        .unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let proofs = (0..n)
            .map(|j| {
                let private = InferencePrivate {
                    input: vec![j as i8, -3, 5, 100, -128, 9],
                    input_salt: Salt([j as u8; 32]),
                    output_salt: Salt::default(),
                };
                let (c, public) = InferenceCircuit::for_proving(
                    model.clone(),
                    WeightMode::Public,
                    OutputMode::Logits,
                    private,
                    JobId::from_u64(j),
                )
                .unwrap();
                (public, prove(&keys.proving_key, c, &mut rng).unwrap())
            })
            .collect();
        Fixture { keys, proofs }
    }

    #[test]
    fn prove_verify_and_reject_another_job() {
        let f = fixture(1);
        let pvk = prepare(&f.keys.verifying_key);
        let (public, proof_bytes) = &f.proofs[0];
        assert_eq!(proof_bytes.len(), PROOF_BYTES);
        let proof = decode_proof(proof_bytes).unwrap();
        verify(&pvk, &public.to_field_elements(), &proof).unwrap();
        let replay = InferencePublic {
            job_id: JobId::from_u64(99),
            ..public.clone()
        };
        assert!(matches!(
            verify(&pvk, &replay.to_field_elements(), &proof),
            Err(Error::InvalidProof)
        ));
        let mut wrong_output = public.clone();
        if let PublicOutput::Logits(l) = &mut wrong_output.output {
            l[0] += 1;
        }
        assert!(matches!(
            verify(&pvk, &wrong_output.to_field_elements(), &proof),
            Err(Error::InvalidProof)
        ));
        let short = &public.to_field_elements()[1..];
        assert!(matches!(
            verify(&pvk, short, &proof),
            Err(Error::PublicInputCount { .. })
        ));
    }

    #[test]
    fn setup_is_reproducible_from_a_seed() {
        let model = Arc::new(QuantizedMlp::synthetic(&[2, 2], 1).unwrap());
        let c = || {
            InferenceCircuit::for_setup(model.clone(), WeightMode::Public, OutputMode::Argmax)
                .unwrap()
        };
        assert_eq!(
            setup(c(), Some([1; 32])).unwrap().verifying_key_hash,
            setup(c(), Some([1; 32])).unwrap().verifying_key_hash
        );
        assert_ne!(
            setup(c(), Some([1; 32])).unwrap().verifying_key_hash,
            setup(c(), Some([2; 32])).unwrap().verifying_key_hash
        );
    }

    #[test]
    fn keys_are_pinned_by_hash_and_decoded_strictly() {
        let f = fixture(0);
        let vk_bytes = encode_verifying_key(&f.keys.verifying_key).unwrap();
        assert_eq!(KeyHash::of(&vk_bytes), f.keys.verifying_key_hash);
        assert_eq!(
            decode_verifying_key(&vk_bytes, &f.keys.verifying_key_hash).unwrap(),
            f.keys.verifying_key
        );
        assert!(matches!(
            decode_verifying_key(&vk_bytes, &KeyHash([0; 32])),
            Err(Error::KeyHashMismatch { .. })
        ));
        let pk_bytes = encode_proving_key(&f.keys.proving_key).unwrap();
        assert_eq!(
            decode_proving_key(&pk_bytes, &f.keys.proving_key_hash).unwrap(),
            f.keys.proving_key
        );
        // Truncated, extended, corrupted: errors (with their own hash, to reach the decoder).
        for bad in [
            vk_bytes[..vk_bytes.len() - 1].to_vec(),
            [vk_bytes.clone(), vec![0]].concat(),
            {
                let mut b = vk_bytes.clone();
                b[5] ^= 0x40;
                b
            },
        ] {
            assert!(decode_verifying_key(&bad, &KeyHash::of(&bad)).is_err());
        }
        // A length prefix claiming 2^64-1 input points must not allocate or panic.
        let mut huge = vk_bytes[..32 + 64 * 3].to_vec();
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_verifying_key(&huge, &KeyHash::of(&huge)).is_err());
        let big = vec![0u8; MAX_VERIFYING_KEY_BYTES + 1];
        assert!(matches!(
            decode_verifying_key(&big, &KeyHash::of(&big)),
            Err(Error::Oversize { .. })
        ));
    }

    #[test]
    fn malformed_proofs_are_errors() {
        let f = fixture(1);
        let bytes = &f.proofs[0].1;
        assert!(decode_proof(&bytes[..127]).is_err());
        assert!(decode_proof(&[bytes.clone(), vec![0]].concat()).is_err());
        assert!(decode_proof(&[0xffu8; PROOF_BYTES]).is_err());
        // Flipping bits lands off the curve, on a non-canonical encoding, or on another point.
        let pvk = prepare(&f.keys.verifying_key);
        for i in [0, 31, 40, 95, 100, 127] {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            if let Ok(p) = decode_proof(&b) {
                assert!(p.a.is_on_curve() && p.a.is_in_correct_subgroup_assuming_on_curve());
                assert!(verify(&pvk, &f.proofs[0].0.to_field_elements(), &p).is_err());
            }
        }
        let inputs = f.proofs[0].0.to_field_elements();
        let enc = encode_public_inputs(&inputs).unwrap();
        assert_eq!(decode_public_inputs(&enc).unwrap(), inputs);
        let mut noncanonical = enc.clone();
        noncanonical[8..40].copy_from_slice(&[0xff; 32]);
        assert!(decode_public_inputs(&noncanonical).is_err());
        assert!(decode_public_inputs(&vec![0u8; 8 + 32 * MAX_PUBLIC_INPUTS + 1]).is_err());
    }

    #[test]
    fn batch_verification_finds_the_bad_proof() {
        let f = fixture(4);
        let pvk = prepare(&f.keys.verifying_key);
        let mut items: Vec<(Vec<Fr>, Proof<Bn254>)> = f
            .proofs
            .iter()
            .map(|(p, b)| (p.to_field_elements(), decode_proof(b).unwrap()))
            .collect();
        verify_batch(&pvk, &items, b"block hash").unwrap();
        assert!(
            verify_batch_with_fallback(&pvk, &items, b"block hash")
                .iter()
                .all(|r| r.is_ok())
        );
        // Proof 2 presented for job 0's public inputs.
        items[2].0 = items[0].0.clone();
        assert!(verify_batch(&pvk, &items, b"block hash").is_err());
        let results = verify_batch_with_fallback(&pvk, &items, b"block hash");
        assert_eq!(
            results.iter().map(|r| r.is_ok()).collect::<Vec<_>>(),
            vec![true, true, false, true]
        );
        assert!(verify_batch(&pvk, &[], b"").is_ok());
    }
}
