//! The public inputs of the proofs, shared by the verifier and the prover: what a proof
//! attests, and the order in which its circuit allocates them as Groth16 public inputs.
//!
//! The circuits that allocate them (`InferenceCircuit`, `ShardCircuit`, `OpeningCircuit`)
//! come with the `prover` feature; verification needs only these types.

use ark_bn254::Fr;

use crate::commit::{Commitment, JobId};

/// Whether the weights are circuit constants or witnesses opened against the commitment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightMode {
    /// Weights are constants: linear layers cost no multiplication constraints and the
    /// verifying key itself is bound to the model.
    Public,
    /// Weights are witnesses that must open the public model commitment.
    Private,
}

/// What an inference proof reveals about the result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutputMode {
    /// Every logit is a public input.
    Logits,
    /// Only the predicted class (first index of the largest logit).
    Argmax,
    /// A salted commitment to the logits (32-bit vector commitment).
    Commitment,
}

/// The result an inference proof attests, as public inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicOutput {
    /// The logits.
    Logits(Vec<i64>),
    /// The predicted class.
    Argmax(u32),
    /// The commitment to the logits.
    Commitment(Commitment),
}

// ---------------------------------------------------------------------------------------
// Inference

/// Public inputs of an inference proof (`InferenceCircuit`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InferencePublic {
    /// The registered model commitment.
    pub model_commitment: Commitment,
    /// Commitment to the job's int8 input (salted).
    pub input_commitment: Commitment,
    /// The job the proof is for.
    pub job_id: JobId,
    /// The attested result.
    pub output: PublicOutput,
}

impl InferencePublic {
    /// Public inputs in allocation order: model commitment, input commitment, job id, then
    /// the logits (each as a signed field element), the class, or the output commitment.
    pub fn to_field_elements(&self) -> Vec<Fr> {
        let mut out = vec![
            self.model_commitment.0,
            self.input_commitment.0,
            self.job_id.0,
        ];
        match &self.output {
            PublicOutput::Logits(l) => out.extend(l.iter().map(|&v| i64_to_fr(v))),
            PublicOutput::Argmax(i) => out.push(Fr::from(u64::from(*i))),
            PublicOutput::Commitment(c) => out.push(c.0),
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// Shard of a split model

/// Public inputs of a split-model shard proof (`ShardCircuit`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardPublic {
    /// The registered model commitment.
    pub model_commitment: Commitment,
    /// Commitment to the activation entering the shard (8-bit vector commitment).
    pub input_commitment: Commitment,
    /// Commitment to the activation leaving it (8-bit, or 32-bit for logits).
    pub output_commitment: Commitment,
    /// The job the proof is for.
    pub job_id: JobId,
}

impl ShardPublic {
    /// Public inputs in allocation order.
    pub fn to_field_elements(&self) -> Vec<Fr> {
        vec![
            self.model_commitment.0,
            self.input_commitment.0,
            self.output_commitment.0,
            self.job_id.0,
        ]
    }
}

// ---------------------------------------------------------------------------------------
// Commitment opening

/// Public inputs of a commitment-opening proof (`OpeningCircuit`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpeningPublic {
    /// The registered model commitment.
    pub model_commitment: Commitment,
    /// The job the proof is for.
    pub job_id: JobId,
}

impl OpeningPublic {
    /// Public inputs in allocation order.
    pub fn to_field_elements(&self) -> Vec<Fr> {
        vec![self.model_commitment.0, self.job_id.0]
    }
}

/// A signed integer as a field element (negative values as `r - |v|`): how logits become
/// public inputs.
pub(crate) fn i64_to_fr(v: i64) -> Fr {
    if v >= 0 {
        Fr::from(v as u64)
    } else {
        -Fr::from(v.unsigned_abs())
    }
}
