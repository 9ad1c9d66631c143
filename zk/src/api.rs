//! The entry points the ledger (verification) and workers (proving, with the `prover`
//! feature) call.

#[cfg(feature = "prover")]
use std::sync::Arc;

use ark_bn254::{Bn254, Fr};
use ark_groth16::PreparedVerifyingKey;
#[cfg(feature = "prover")]
use ark_groth16::ProvingKey;
#[cfg(feature = "prover")]
use rand::{CryptoRng, RngCore};

use crate::{
    Result,
    keys::{
        KeyHash, decode_proof, decode_verifying_key, prepare, verify, verify_batch_with_fallback,
    },
    public::{InferencePublic, OpeningPublic, ShardPublic},
};
#[cfg(feature = "prover")]
use crate::{
    circuits::{
        InferenceCircuit, InferencePrivate, ModelShard, OpeningCircuit, ShardCircuit, ShardPrivate,
    },
    commit::JobId,
    mlp::QuantizedMlp,
    public::{OutputMode, WeightMode},
};

/// A verifying key that was checked against its registered hash and prepared; cheap to keep
/// per model and reuse for every proof.
#[derive(Clone, Debug)]
pub struct PreparedKey {
    pvk: PreparedVerifyingKey<Bn254>,
    hash: KeyHash,
}

impl PreparedKey {
    /// Decodes `vk_bytes` (bounded, validated) and refuses it unless its sha256 is `vk_hash`.
    pub fn decode(vk_bytes: &[u8], vk_hash: &KeyHash) -> Result<Self> {
        let vk = decode_verifying_key(vk_bytes, vk_hash)?;
        Ok(Self {
            pvk: prepare(&vk),
            hash: *vk_hash,
        })
    }

    /// The hash the key was checked against.
    pub fn hash(&self) -> KeyHash {
        self.hash
    }

    /// Number of public inputs the key expects.
    pub fn num_public_inputs(&self) -> usize {
        self.pvk.vk.gamma_abc_g1.len() - 1
    }

    /// Verifies an inference proof.
    pub fn verify_inference(&self, public: &InferencePublic, proof_bytes: &[u8]) -> Result<()> {
        self.verify_inputs(&public.to_field_elements(), proof_bytes)
    }

    /// Verifies a split-model shard proof.
    pub fn verify_shard(&self, public: &ShardPublic, proof_bytes: &[u8]) -> Result<()> {
        self.verify_inputs(&public.to_field_elements(), proof_bytes)
    }

    /// Verifies a commitment-opening proof.
    pub fn verify_opening(&self, public: &OpeningPublic, proof_bytes: &[u8]) -> Result<()> {
        self.verify_inputs(&public.to_field_elements(), proof_bytes)
    }

    /// Verifies many inference proofs at once (see [`crate::verify_batch`]), falling back to
    /// one at a time when the batch fails; one result per item, in order. `randomness` should
    /// be the block hash, so that every validator computes the same thing.
    pub fn verify_inference_batch(
        &self,
        items: &[(InferencePublic, Vec<u8>)],
        randomness: &[u8],
    ) -> Vec<Result<()>> {
        let mut results: Vec<Option<Result<()>>> = Vec::with_capacity(items.len());
        let mut decoded = Vec::with_capacity(items.len());
        let mut positions = Vec::with_capacity(items.len());
        for (i, (public, proof)) in items.iter().enumerate() {
            match decode_proof(proof) {
                Ok(p) => {
                    decoded.push((public.to_field_elements(), p));
                    positions.push(i);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        for (pos, r) in positions
            .into_iter()
            .zip(verify_batch_with_fallback(&self.pvk, &decoded, randomness))
        {
            results[pos] = Some(r);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(crate::Error::InvalidProof)))
            .collect()
    }

    fn verify_inputs(&self, inputs: &[Fr], proof_bytes: &[u8]) -> Result<()> {
        let proof = decode_proof(proof_bytes)?;
        verify(&self.pvk, inputs, &proof)
    }
}

/// Verifies an inference proof against a registered verifying key: pure and deterministic,
/// with every input bounded. The ledger runs it in `CheckTx` and `FinalizeBlock`.
pub fn verify_inference_proof(
    vk_bytes: &[u8],
    vk_hash: &KeyHash,
    public: &InferencePublic,
    proof_bytes: &[u8],
) -> Result<()> {
    PreparedKey::decode(vk_bytes, vk_hash)?.verify_inference(public, proof_bytes)
}

/// Verifies a shard proof against a registered verifying key.
pub fn verify_shard_proof(
    vk_bytes: &[u8],
    vk_hash: &KeyHash,
    public: &ShardPublic,
    proof_bytes: &[u8],
) -> Result<()> {
    PreparedKey::decode(vk_bytes, vk_hash)?.verify_shard(public, proof_bytes)
}

/// Verifies a commitment-opening proof against a registered verifying key.
pub fn verify_opening_proof(
    vk_bytes: &[u8],
    vk_hash: &KeyHash,
    public: &OpeningPublic,
    proof_bytes: &[u8],
) -> Result<()> {
    PreparedKey::decode(vk_bytes, vk_hash)?.verify_opening(public, proof_bytes)
}

/// What a worker calls: runs the model, proves the inference and returns the public inputs
/// with the compressed proof.
#[cfg(feature = "prover")]
pub fn prove_inference<R: RngCore + CryptoRng>(
    pk: &ProvingKey<Bn254>,
    model: Arc<QuantizedMlp>,
    weight_mode: WeightMode,
    output_mode: OutputMode,
    private: InferencePrivate,
    job_id: JobId,
    rng: &mut R,
) -> Result<(InferencePublic, Vec<u8>)> {
    let (circuit, public) =
        InferenceCircuit::for_proving(model, weight_mode, output_mode, private, job_id)?;
    Ok((public, crate::setup::prove(pk, circuit, rng)?))
}

/// Proves one stage of a split inference.
#[cfg(feature = "prover")]
pub fn prove_shard<R: RngCore + CryptoRng>(
    pk: &ProvingKey<Bn254>,
    shard: Arc<ModelShard>,
    weight_mode: WeightMode,
    private: ShardPrivate,
    job_id: JobId,
    rng: &mut R,
) -> Result<(ShardPublic, Vec<u8>)> {
    let (circuit, public) = ShardCircuit::for_proving(shard, weight_mode, private, job_id)?;
    Ok((public, crate::setup::prove(pk, circuit, rng)?))
}

/// Proves knowledge of the weights behind a model commitment, bound to a job.
#[cfg(feature = "prover")]
pub fn prove_opening<R: RngCore + CryptoRng>(
    pk: &ProvingKey<Bn254>,
    model: Arc<QuantizedMlp>,
    job_id: JobId,
    rng: &mut R,
) -> Result<(OpeningPublic, Vec<u8>)> {
    let (circuit, public) = OpeningCircuit::for_proving(model, job_id)?;
    Ok((public, crate::setup::prove(pk, circuit, rng)?))
}
