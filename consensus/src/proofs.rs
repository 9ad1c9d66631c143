//! Zero-knowledge proofs in the ledger: turning a `SubmitProof` transaction and the
//! job and model it names into the public inputs of a Groth16 inference proof, and
//! verifying it against the model's registered verifying key.
//!
//! Verification is a pure function of (verifying key, public inputs, proof), so two
//! things may be remembered without touching determinism: decoded and prepared keys
//! ([`KeyCache`], by the key's sha256), and a block's verdicts ([`Verdicts`]), which
//! [`preverify`] computes for all the block's proofs at once with a batch check whose
//! randomness comes from the block. Execution then looks each proof up by everything
//! verification reads, and verifies alone whatever the batch did not cover (a job
//! submitted in the same block, a model registered in it). A batch that fails falls
//! back to one check per proof, so the verdicts are those of single verification
//! (up to the batch's 2^-128 soundness error).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use sha2::{Digest, Sha256};
use vichain_proto::v1::{self as pb, tx_body::Action};
use vichain_zk::{Commitment, InferencePublic, JobId, KeyHash, PreparedKey, PublicOutput, Salt};

use crate::{StateRead, StateReadExt, TxError, tx::SignedTx};

/// A compressed BN254 Groth16 proof is exactly this long; longer ones are rejected
/// before anything else.
pub const MAX_PROOF_BYTES: usize = vichain_zk::PROOF_BYTES;
/// Most logits a proof may reveal (the circuit's public-input bound, less the three
/// fixed inputs).
pub const MAX_PROOF_LOGITS: usize = vichain_zk::MAX_PUBLIC_INPUTS - 3;
/// Longest on-chain job input a proof can be about: a provable model's input width.
pub const MAX_PROVABLE_INPUT: usize = vichain_zk::MAX_DIM;

/// What a proof is checked against: the registered key and the public inputs.
#[derive(Debug, Clone)]
pub(crate) struct Claim {
    pub vk_hash: KeyHash,
    pub public: InferencePublic,
}

/// Checks on a `SubmitProof` that need no state.
pub(crate) fn check_submit_proof(p: &pb::SubmitProof) -> Result<(), TxError> {
    if p.proof.len() > MAX_PROOF_BYTES {
        return Err(TxError::OversizeProof {
            size: p.proof.len() as u64,
            max: MAX_PROOF_BYTES as u64,
        });
    }
    Commitment::from_bytes(&p.input_commitment).map_err(|e| {
        TxError::invalid(
            "submit_proof.input_commitment",
            format!("{} bytes: {e}", p.input_commitment.len()),
        )
    })?;
    public_output(p.output.as_ref())?;
    if !(p.input_salt.is_empty() || p.input_salt.len() == 32) {
        return Err(TxError::invalid(
            "submit_proof.input_salt",
            format!("{} bytes, expected 0 or 32", p.input_salt.len()),
        ));
    }
    Ok(())
}

fn public_output(o: Option<&pb::InferenceOutput>) -> Result<PublicOutput, TxError> {
    use pb::inference_output::Value;
    match o.and_then(|o| o.value.as_ref()) {
        Some(Value::Argmax(i)) => Ok(PublicOutput::Argmax(*i)),
        Some(Value::Logits(l)) => {
            if l.values.is_empty() || l.values.len() > MAX_PROOF_LOGITS {
                return Err(TxError::invalid(
                    "submit_proof.output.logits",
                    format!(
                        "{} logits; between 1 and {MAX_PROOF_LOGITS} allowed",
                        l.values.len()
                    ),
                ));
            }
            Ok(PublicOutput::Logits(l.values.clone()))
        }
        Some(Value::Commitment(c)) => Commitment::from_bytes(c)
            .map(PublicOutput::Commitment)
            .map_err(|e| TxError::invalid("submit_proof.output.commitment", e.to_string())),
        None => Err(TxError::invalid("submit_proof.output", "missing")),
    }
}

/// The public inputs a proof for `job` on `model` must verify with. Rejections here
/// are about the claim itself (no key registered, input not the job's).
pub(crate) fn claim(
    job: &pb::Job,
    model: &pb::Model,
    p: &pb::SubmitProof,
) -> Result<Claim, TxError> {
    if model.verifying_key.is_empty() {
        return Err(TxError::NoVerifyingKey {
            model_id: model.model_id.clone(),
            missing: "verifying key",
        });
    }
    let model_commitment =
        Commitment::from_bytes(&model.commitment).map_err(|_| TxError::NoVerifyingKey {
            model_id: model.model_id.clone(),
            missing: "model commitment",
        })?;
    let vk_hash = KeyHash(
        model
            .verifying_key_hash
            .as_slice()
            .try_into()
            .map_err(|_| TxError::NoVerifyingKey {
                model_id: model.model_id.clone(),
                missing: "verifying key hash",
            })?,
    );
    let input_commitment = Commitment::from_bytes(&p.input_commitment)
        .map_err(|e| TxError::invalid("submit_proof.input_commitment", e.to_string()))?;
    if !job.input.is_empty() {
        if job.input.len() > MAX_PROVABLE_INPUT {
            return Err(TxError::ProofInvalid {
                job_id: job.id,
                reason: format!(
                    "the job's input of {} bytes is wider than any provable model input ({MAX_PROVABLE_INPUT})",
                    job.input.len()
                ),
            });
        }
        let salt: [u8; 32] = p.input_salt.as_slice().try_into().map_err(|_| {
            TxError::invalid(
                "submit_proof.input_salt",
                "required (32 bytes): the job's input is on chain and the proof must be about it",
            )
        })?;
        let input: Vec<i8> = job.input.iter().map(|&b| b as i8).collect();
        if vichain_zk::input_commitment(&input, &Salt(salt)) != input_commitment {
            return Err(TxError::ProofInvalid {
                job_id: job.id,
                reason:
                    "the input commitment is not a commitment to the job's input with this salt"
                        .into(),
            });
        }
    }
    Ok(Claim {
        vk_hash,
        public: InferencePublic {
            model_commitment,
            input_commitment,
            job_id: JobId::from_u64(job.id),
            output: public_output(p.output.as_ref())?,
        },
    })
}

/// Identifies one verification by everything it reads.
fn verdict_key(claim: &Claim, proof: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"vichain/zk/verdict/v1");
    h.update(claim.vk_hash.0);
    let inputs = claim.public.to_field_elements();
    h.update((inputs.len() as u64).to_be_bytes());
    for f in &inputs {
        h.update(Commitment::from_field(*f).to_bytes());
    }
    h.update((proof.len() as u64).to_be_bytes());
    h.update(proof);
    h.finalize().into()
}

/// Prepared verifying keys by hash. Each is checked against its hash when decoded,
/// so a cached key is exactly what decoding the registered bytes would give.
#[derive(Debug, Default)]
pub struct KeyCache {
    keys: Mutex<BTreeMap<KeyHash, Arc<PreparedKey>>>,
}

impl KeyCache {
    /// Most keys kept; a model's key is a few kilobytes.
    pub const CAPACITY: usize = 256;

    fn get(&self, vk: &[u8], hash: &KeyHash) -> vichain_zk::Result<Arc<PreparedKey>> {
        if let Some(k) = self.lock().get(hash) {
            return Ok(k.clone());
        }
        let key = Arc::new(PreparedKey::decode(vk, hash)?);
        let mut keys = self.lock();
        while keys.len() >= Self::CAPACITY {
            keys.pop_first();
        }
        keys.insert(*hash, key.clone());
        Ok(key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<KeyHash, Arc<PreparedKey>>> {
        // The map is valid whatever a panicking holder was doing.
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Verdicts computed ahead of execution for a block's proofs.
pub type Verdicts = BTreeMap<[u8; 32], Result<(), String>>;

/// What proof verification needs besides the state: the key cache and the verdicts
/// of this block's batch.
#[derive(Debug, Clone, Default)]
pub struct ProofCtx {
    pub keys: Arc<KeyCache>,
    pub verdicts: Arc<Verdicts>,
}

impl ProofCtx {
    /// Verifies `proof` for `claim` against the model's registered key bytes.
    pub(crate) fn verify(&self, vk: &[u8], claim: &Claim, proof: &[u8]) -> Result<(), String> {
        if let Some(v) = self.verdicts.get(&verdict_key(claim, proof)) {
            return v.clone();
        }
        crate::metrics::proof_verification(|| {
            self.keys
                .get(vk, &claim.vk_hash)
                .and_then(|k| k.verify_inference(&claim.public, proof))
                .map_err(|e| e.to_string())
        })
    }
}

/// Randomness of a block's batch verification: its height and transaction hashes.
pub fn batch_randomness(height: u64, tx_hashes: impl IntoIterator<Item = [u8; 32]>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"vichain/zk/batch/v1");
    h.update(height.to_be_bytes());
    for t in tx_hashes {
        h.update(t);
    }
    h.finalize().into()
}

/// Verifies, in one batch per verifying key, every proof in `txs` whose job and
/// model are already in `state`. Anything that cannot be resolved here is left to
/// execution; storage errors are too (execution reports them).
pub(crate) fn preverify(
    state: &dyn StateRead,
    keys: &KeyCache,
    txs: &[Result<SignedTx, TxError>],
    randomness: &[u8],
) -> Verdicts {
    type Item = ([u8; 32], InferencePublic, Vec<u8>);
    let mut models: BTreeMap<String, Option<pb::Model>> = BTreeMap::new();
    let mut groups: BTreeMap<KeyHash, (Vec<u8>, Vec<Item>)> = BTreeMap::new();
    for tx in txs.iter().flatten() {
        let p = match &tx.action {
            Action::SubmitProof(p) => p,
            Action::RevealResult(pb::RevealResult { proof: Some(p), .. }) => p,
            _ => continue,
        };
        if check_submit_proof(p).is_err() {
            continue;
        }
        let Ok(Some(job)) = state.job(p.job_id) else {
            continue;
        };
        let model = models
            .entry(job.model_id.clone())
            .or_insert_with(|| state.model(&job.model_id).ok().flatten());
        let Some(model) = model.as_ref() else {
            continue;
        };
        let Ok(claim) = claim(&job, model, p) else {
            continue;
        };
        let key = verdict_key(&claim, &p.proof);
        groups
            .entry(claim.vk_hash)
            .or_insert_with(|| (model.verifying_key.clone(), Vec::new()))
            .1
            .push((key, claim.public, p.proof.clone()));
    }
    let mut verdicts = Verdicts::new();
    for (hash, (vk, items)) in groups {
        // One proof is verified alone at execution; a batch pays off from two.
        if items.len() < 2 {
            continue;
        }
        let Ok(key) = keys.get(&vk, &hash) else {
            continue;
        };
        for chunk in items.chunks(vichain_zk::MAX_BATCH) {
            let batch: Vec<(InferencePublic, Vec<u8>)> = chunk
                .iter()
                .map(|(_, public, proof)| (public.clone(), proof.clone()))
                .collect();
            let results =
                crate::metrics::proof_batch(|| key.verify_inference_batch(&batch, randomness));
            for ((k, _, _), r) in chunk.iter().zip(results) {
                verdicts.insert(*k, r.map_err(|e| e.to_string()));
            }
        }
    }
    verdicts
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{crypto::dev_signing_key, state::Overlay, state_key, tx::sign_tx};
    use rand::SeedableRng;
    use vichain_zk::{InferenceCircuit, InferencePrivate, OutputMode, QuantizedMlp, WeightMode};

    #[test]
    fn a_block_batch_gives_the_verdicts_of_single_verification() {
        let model = Arc::new(QuantizedMlp::synthetic(&[8, 4, 3], 11).unwrap());
        let circuit =
            InferenceCircuit::for_setup(model.clone(), WeightMode::Public, OutputMode::Logits)
                .unwrap();
        let keys = vichain_zk::setup(circuit, Some([4; 32])).unwrap();
        let vk = vichain_zk::encode_verifying_key(&keys.verifying_key).unwrap();
        let store = crate::Storage::open(&tempfile::tempdir().unwrap().path().join("s")).unwrap();
        let mut state = Overlay::new(&store);
        state.put(
            state_key::model("m"),
            &pb::Model {
                model_id: "m".into(),
                verifying_key_hash: keys.verifying_key_hash.0.to_vec(),
                verifying_key: vk,
                commitment: vichain_zk::model_commitment(&model).to_bytes().to_vec(),
                ..Default::default()
            },
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut txs = Vec::new();
        for id in 1..=4u64 {
            state.put(
                state_key::job(id),
                &pb::Job {
                    id,
                    model_id: "m".into(),
                    ..Default::default()
                },
            );
            let (public, mut proof) = vichain_zk::prove_inference(
                &keys.proving_key,
                model.clone(),
                WeightMode::Public,
                OutputMode::Logits,
                InferencePrivate {
                    input: vec![id as i8; 8],
                    input_salt: Salt([id as u8; 32]),
                    output_salt: Salt::default(),
                },
                JobId::from_u64(id),
                &mut rng,
            )
            .unwrap();
            if id == 3 {
                proof[100] ^= 1;
            }
            let PublicOutput::Logits(values) = public.output else {
                panic!("logits")
            };
            let p = pb::SubmitProof {
                job_id: id,
                proof,
                input_commitment: public.input_commitment.to_bytes().to_vec(),
                output: Some(pb::InferenceOutput {
                    value: Some(pb::inference_output::Value::Logits(pb::Logits { values })),
                }),
                input_salt: Vec::new(),
            };
            let bytes = sign_tx(&dev_signing_key(), "c", id, 1, Action::SubmitProof(p));
            txs.push(SignedTx::decode(&bytes, 1 << 20));
        }
        let cache = KeyCache::default();
        let verdicts = preverify(&state, &cache, &txs, b"block");
        assert_eq!(verdicts.len(), 4, "every resolvable proof is in the batch");
        let batched = ProofCtx {
            keys: Arc::new(KeyCache::default()),
            verdicts: Arc::new(verdicts),
        };
        let single = ProofCtx::default();
        for tx in txs.iter().flatten() {
            let Action::SubmitProof(p) = &tx.action else {
                unreachable!()
            };
            let job = state.job(p.job_id).unwrap().unwrap();
            let model = state.model("m").unwrap().unwrap();
            let claim = claim(&job, &model, p).unwrap();
            let a = batched.verify(&model.verifying_key, &claim, &p.proof);
            let b = single.verify(&model.verifying_key, &claim, &p.proof);
            assert_eq!(a, b, "job {}", p.job_id);
            assert_eq!(a.is_ok(), p.job_id != 3, "job {}", p.job_id);
        }
    }
}
