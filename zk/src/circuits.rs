//! The three Groth16 circuits: MLP inference, a shard of a split model, commitment opening.
//!
//! Public inputs are allocated in the order their `*Public::to_field_elements` (in the
//! `public` module) lists them.

use std::sync::Arc;

use ark_bn254::Fr;
use ark_r1cs_std::{fields::fp::FpVar, prelude::*};
use ark_relations::gr1cs::{ConstraintSynthesizer, ConstraintSystemRef, SynthesisError};

use crate::{
    Error, Result,
    commit::{
        ACTIVATION_BITS, BIAS_BITS, Commitment, JobId, LOGIT_BITS, Salt, WEIGHT_BITS,
        input_commitment, layer_commitment, layer_commitment_var, model_commitment_from_layers,
        model_commitment_var, vector_commitment, vector_commitment_var,
    },
    gadgets::{self, LayerWeights, SignedVar, alloc_signed},
    mlp::{QuantizedLayer, QuantizedMlp, check_activation},
    public::{
        InferencePublic, OpeningPublic, OutputMode, PublicOutput, ShardPublic, WeightMode,
        i64_to_fr,
    },
};

type SResult<T> = std::result::Result<T, SynthesisError>;

// ---------------------------------------------------------------------------------------
// Inference

/// Witnesses of [`InferenceCircuit`] (besides the weights, in private-weight mode).
#[derive(Clone, Debug)]
pub struct InferencePrivate {
    /// The job's input.
    pub input: Vec<i8>,
    /// Salt of the input commitment.
    pub input_salt: Salt,
    /// Salt of the output commitment ([`OutputMode::Commitment`] only).
    pub output_salt: Salt,
}

/// Proves that the public output is the committed model's output on the committed input.
#[derive(Clone, Debug)]
pub struct InferenceCircuit {
    model: Arc<QuantizedMlp>,
    weight_mode: WeightMode,
    output_mode: OutputMode,
    layer_commitments: Vec<Commitment>,
    public: Option<InferencePublic>,
    private: Option<InferencePrivate>,
}

impl InferenceCircuit {
    /// The circuit without witnesses, for setup. In private-weight mode only the model's
    /// shapes and shifts matter here.
    pub fn for_setup(
        model: Arc<QuantizedMlp>,
        weight_mode: WeightMode,
        output_mode: OutputMode,
    ) -> Result<Self> {
        model.validate()?;
        let layer_commitments = model
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| layer_commitment(i, l))
            .collect();
        Ok(Self {
            model,
            weight_mode,
            output_mode,
            layer_commitments,
            public: None,
            private: None,
        })
    }

    /// Runs the model natively and returns the circuit with its witnesses and the public
    /// inputs the proof will attest.
    pub fn for_proving(
        model: Arc<QuantizedMlp>,
        weight_mode: WeightMode,
        output_mode: OutputMode,
        private: InferencePrivate,
        job_id: JobId,
    ) -> Result<(Self, InferencePublic)> {
        let mut circuit = Self::for_setup(model, weight_mode, output_mode)?;
        let result = circuit.model.forward(&private.input)?;
        let output = match output_mode {
            OutputMode::Logits => PublicOutput::Logits(result.logits),
            OutputMode::Argmax => PublicOutput::Argmax(result.argmax as u32),
            OutputMode::Commitment => PublicOutput::Commitment(vector_commitment(
                &result.logits,
                LOGIT_BITS,
                &private.output_salt,
            )?),
        };
        let public = InferencePublic {
            model_commitment: circuit.model_commitment(),
            input_commitment: input_commitment(&private.input, &private.input_salt),
            job_id,
            output,
        };
        circuit.public = Some(public.clone());
        circuit.private = Some(private);
        Ok((circuit, public))
    }

    /// Replaces the public inputs the witnesses are checked against.
    pub fn with_public(mut self, public: InferencePublic) -> Self {
        self.public = Some(public);
        self
    }

    /// The commitment of the model this circuit is built for.
    pub fn model_commitment(&self) -> Commitment {
        model_commitment_from_layers(&self.layer_commitments)
    }
}

impl ConstraintSynthesizer<Fr> for InferenceCircuit {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> SResult<()> {
        let model = &self.model;
        let private = self.private.as_ref();
        let public = self.public.as_ref();

        // Witnesses
        let input = alloc_vector(
            &cs,
            private.map(|p| p.input.iter().map(|&v| i64::from(v)).collect()),
            model.input_dim(),
            ACTIVATION_BITS,
        )?;
        let input_salt = FpVar::new_witness(cs.clone(), || {
            private
                .map(|p| p.input_salt.to_field())
                .ok_or(SynthesisError::AssignmentMissing)
        })?;
        let output_salt = match self.output_mode {
            OutputMode::Commitment => Some(FpVar::new_witness(cs.clone(), || {
                private
                    .map(|p| p.output_salt.to_field())
                    .ok_or(SynthesisError::AssignmentMissing)
            })?),
            _ => None,
        };
        let weights = match self.weight_mode {
            WeightMode::Public => None,
            WeightMode::Private => Some(alloc_layers(&cs, &model.layers, private.is_some())?),
        };

        // Public inputs
        let model_commitment_in = FpVar::new_input(cs.clone(), || {
            public
                .map(|p| p.model_commitment.0)
                .ok_or(SynthesisError::AssignmentMissing)
        })?;
        let input_commitment_in = FpVar::new_input(cs.clone(), || {
            public
                .map(|p| p.input_commitment.0)
                .ok_or(SynthesisError::AssignmentMissing)
        })?;
        let job_id = FpVar::new_input(cs.clone(), || {
            public
                .map(|p| p.job_id.0)
                .ok_or(SynthesisError::AssignmentMissing)
        })?;
        let output_in = match self.output_mode {
            OutputMode::Logits => (0..model.output_dim())
                .map(|i| {
                    FpVar::new_input(cs.clone(), || match public.map(|p| &p.output) {
                        Some(PublicOutput::Logits(l)) => l
                            .get(i)
                            .map(|&v| i64_to_fr(v))
                            .ok_or(SynthesisError::AssignmentMissing),
                        _ => Err(SynthesisError::AssignmentMissing),
                    })
                })
                .collect::<SResult<Vec<_>>>()?,
            OutputMode::Argmax => vec![FpVar::new_input(cs.clone(), || {
                match public.map(|p| &p.output) {
                    Some(PublicOutput::Argmax(i)) => Ok(Fr::from(u64::from(*i))),
                    _ => Err(SynthesisError::AssignmentMissing),
                }
            })?],
            OutputMode::Commitment => vec![FpVar::new_input(cs.clone(), || {
                match public.map(|p| &p.output) {
                    Some(PublicOutput::Commitment(c)) => Ok(c.0),
                    _ => Err(SynthesisError::AssignmentMissing),
                }
            })?],
        };

        // Constraints
        let model_commitment = match &weights {
            None => FpVar::constant(self.model_commitment().0),
            Some(w) => {
                let layers = layer_commitments_var(&cs, &model.layers, 0, w)?;
                model_commitment_var(cs.clone(), &layers)?
            }
        };
        model_commitment.enforce_equal(&model_commitment_in)?;

        let unsigned: Vec<FpVar<Fr>> = input.iter().map(|v| v.unsigned.clone()).collect();
        vector_commitment_var(cs.clone(), &unsigned, ACTIVATION_BITS, &input_salt)?
            .enforce_equal(&input_commitment_in)?;

        let x: Vec<FpVar<Fr>> = input.into_iter().map(|v| v.value).collect();
        let logits = run_layers(&cs, &model.layers, weights.as_deref(), x, true)?;

        match self.output_mode {
            OutputMode::Logits => logits.enforce_equal(&output_in)?,
            OutputMode::Argmax => gadgets::argmax(&cs, &logits)?.enforce_equal(&output_in[0])?,
            OutputMode::Commitment => {
                let unsigned = logits_unsigned(&logits);
                let salt = output_salt.as_ref().ok_or(SynthesisError::Unsatisfiable)?;
                vector_commitment_var(cs.clone(), &unsigned, LOGIT_BITS, salt)?
                    .enforce_equal(&output_in[0])?;
            }
        }

        bind_job_id(&job_id)
    }
}

// ---------------------------------------------------------------------------------------
// Shard of a split model

/// The part of a model a split-inference stage holds: its layers and the commitments of all
/// the model's layers (from the registry), which is enough to open the model commitment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelShard {
    /// Index of the first layer held.
    pub start: usize,
    /// The layers `start..start + layers.len()`.
    pub layers: Vec<QuantizedLayer>,
    /// Commitments of every layer of the model, in order.
    pub layer_commitments: Vec<Commitment>,
}

impl ModelShard {
    /// Cuts layers `start..end` out of a model.
    pub fn from_model(model: &QuantizedMlp, start: usize, end: usize) -> Result<Self> {
        model.validate()?;
        model.check_range(start, end)?;
        Ok(Self {
            start,
            layers: model.layers[start..end].to_vec(),
            layer_commitments: model
                .layers
                .iter()
                .enumerate()
                .map(|(i, l)| layer_commitment(i, l))
                .collect(),
        })
    }

    /// One past the last layer held.
    pub fn end(&self) -> usize {
        self.start + self.layers.len()
    }

    /// Whether the shard ends with the model's output layer (its output is the logits).
    pub fn is_last(&self) -> bool {
        self.end() == self.layer_commitments.len()
    }

    /// The model commitment the shard opens.
    pub fn model_commitment(&self) -> Commitment {
        model_commitment_from_layers(&self.layer_commitments)
    }

    fn check(&self) -> Result<()> {
        let total = self.layer_commitments.len();
        if self.layers.is_empty() || self.end() > total {
            return Err(Error::LayerRange {
                start: self.start,
                end: self.end(),
                layers: total,
            });
        }
        for (i, layer) in self.layers.iter().enumerate() {
            if layer_commitment(self.start + i, layer) != self.layer_commitments[self.start + i] {
                return Err(Error::InvalidModel {
                    layer: self.start + i,
                    reason: "does not match its layer commitment".into(),
                });
            }
        }
        QuantizedMlp::new(self.layers.clone()).map(|_| ())
    }

    /// Bit width of the activation leaving the shard (8, or 32 for logits).
    pub fn output_bits(&self) -> u32 {
        if self.is_last() {
            LOGIT_BITS
        } else {
            ACTIVATION_BITS
        }
    }

    /// Runs the shard natively.
    pub fn forward(&self, input: &[i64]) -> Result<Vec<i64>> {
        let first = self.layers.first().ok_or(Error::LayerRange {
            start: self.start,
            end: self.start,
            layers: self.layer_commitments.len(),
        })?;
        check_activation(self.start, input, first.in_dim)?;
        let mut x = input.to_vec();
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x, self.start + i + 1 == self.layer_commitments.len());
        }
        Ok(x)
    }
}

/// Witnesses of [`ShardCircuit`].
#[derive(Clone, Debug)]
pub struct ShardPrivate {
    /// The activation entering the shard (int8 for layer 0, `[0, 127]` after).
    pub input: Vec<i64>,
    /// Salt of the input commitment (the previous stage's output salt).
    pub input_salt: Salt,
    /// Salt of the output commitment.
    pub output_salt: Salt,
}

/// Proves one stage of a split inference: committed activation in, committed activation out.
///
/// A chain of shard proofs whose commitments link up, with the first input commitment and
/// the last output commitment equal to the job's, proves the whole inference.
#[derive(Clone, Debug)]
pub struct ShardCircuit {
    shard: Arc<ModelShard>,
    weight_mode: WeightMode,
    public: Option<ShardPublic>,
    private: Option<ShardPrivate>,
}

impl ShardCircuit {
    /// The circuit without witnesses, for setup.
    pub fn for_setup(shard: Arc<ModelShard>, weight_mode: WeightMode) -> Result<Self> {
        shard.check()?;
        Ok(Self {
            shard,
            weight_mode,
            public: None,
            private: None,
        })
    }

    /// Runs the shard natively and returns the circuit with witnesses and its public inputs.
    pub fn for_proving(
        shard: Arc<ModelShard>,
        weight_mode: WeightMode,
        private: ShardPrivate,
        job_id: JobId,
    ) -> Result<(Self, ShardPublic)> {
        let mut circuit = Self::for_setup(shard, weight_mode)?;
        let output = circuit.shard.forward(&private.input)?;
        let public = ShardPublic {
            model_commitment: circuit.shard.model_commitment(),
            input_commitment: vector_commitment(
                &private.input,
                ACTIVATION_BITS,
                &private.input_salt,
            )?,
            output_commitment: vector_commitment(
                &output,
                circuit.shard.output_bits(),
                &private.output_salt,
            )?,
            job_id,
        };
        circuit.public = Some(public.clone());
        circuit.private = Some(private);
        Ok((circuit, public))
    }

    /// Replaces the public inputs the witnesses are checked against.
    pub fn with_public(mut self, public: ShardPublic) -> Self {
        self.public = Some(public);
        self
    }
}

impl ConstraintSynthesizer<Fr> for ShardCircuit {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> SResult<()> {
        let shard = &self.shard;
        let private = self.private.as_ref();
        let public = self.public.as_ref();
        let in_dim = shard.layers.first().map_or(0, |l| l.in_dim);

        // Witnesses
        let input = alloc_vector(
            &cs,
            private.map(|p| p.input.clone()),
            in_dim,
            ACTIVATION_BITS,
        )?;
        let input_salt = FpVar::new_witness(cs.clone(), || {
            private
                .map(|p| p.input_salt.to_field())
                .ok_or(SynthesisError::AssignmentMissing)
        })?;
        let output_salt = FpVar::new_witness(cs.clone(), || {
            private
                .map(|p| p.output_salt.to_field())
                .ok_or(SynthesisError::AssignmentMissing)
        })?;
        let weights = match self.weight_mode {
            WeightMode::Public => None,
            WeightMode::Private => Some(alloc_layers(&cs, &shard.layers, private.is_some())?),
        };
        let other_layers = match self.weight_mode {
            WeightMode::Public => Vec::new(),
            WeightMode::Private => shard
                .layer_commitments
                .iter()
                .map(|c| FpVar::new_witness(cs.clone(), || Ok(c.0)))
                .collect::<SResult<Vec<_>>>()?,
        };

        // Public inputs
        let alloc = |f: fn(&ShardPublic) -> Fr| {
            FpVar::new_input(cs.clone(), || {
                public.map(f).ok_or(SynthesisError::AssignmentMissing)
            })
        };
        let model_commitment_in = alloc(|p| p.model_commitment.0)?;
        let input_commitment_in = alloc(|p| p.input_commitment.0)?;
        let output_commitment_in = alloc(|p| p.output_commitment.0)?;
        let job_id = alloc(|p| p.job_id.0)?;

        // Constraints
        let model_commitment = match &weights {
            None => FpVar::constant(shard.model_commitment().0),
            Some(w) => {
                let own = layer_commitments_var(&cs, &shard.layers, shard.start, w)?;
                let mut all = other_layers;
                for (i, c) in own.into_iter().enumerate() {
                    all[shard.start + i] = c;
                }
                model_commitment_var(cs.clone(), &all)?
            }
        };
        model_commitment.enforce_equal(&model_commitment_in)?;

        let unsigned: Vec<FpVar<Fr>> = input.iter().map(|v| v.unsigned.clone()).collect();
        vector_commitment_var(cs.clone(), &unsigned, ACTIVATION_BITS, &input_salt)?
            .enforce_equal(&input_commitment_in)?;

        let x: Vec<FpVar<Fr>> = input.into_iter().map(|v| v.value).collect();
        let out = run_layers(&cs, &shard.layers, weights.as_deref(), x, shard.is_last())?;
        let out_unsigned = if shard.is_last() {
            logits_unsigned(&out)
        } else {
            // Hidden activations are proven to lie in [0, 127].
            out.iter()
                .map(|y| y + Fr::from(1u64 << (ACTIVATION_BITS - 1)))
                .collect()
        };
        vector_commitment_var(cs.clone(), &out_unsigned, shard.output_bits(), &output_salt)?
            .enforce_equal(&output_commitment_in)?;

        bind_job_id(&job_id)
    }
}

// ---------------------------------------------------------------------------------------
// Commitment opening

/// Witnesses of [`OpeningCircuit`]: the weights.
#[derive(Clone, Debug)]
pub struct OpeningPrivate {
    /// The model whose weights open the commitment.
    pub model: Arc<QuantizedMlp>,
}

/// Proves knowledge of weights that open a model commitment (for models too large to prove
/// inference for).
#[derive(Clone, Debug)]
pub struct OpeningCircuit {
    shape: Arc<QuantizedMlp>,
    public: Option<OpeningPublic>,
    private: Option<OpeningPrivate>,
}

impl OpeningCircuit {
    /// The circuit without witnesses, for setup; only the shapes and shifts of `shape` matter.
    pub fn for_setup(shape: Arc<QuantizedMlp>) -> Result<Self> {
        shape.validate()?;
        Ok(Self {
            shape,
            public: None,
            private: None,
        })
    }

    /// The circuit with the weights of `model` as witnesses, and its public inputs.
    pub fn for_proving(model: Arc<QuantizedMlp>, job_id: JobId) -> Result<(Self, OpeningPublic)> {
        let mut circuit = Self::for_setup(model.clone())?;
        let public = OpeningPublic {
            model_commitment: crate::commit::model_commitment(&model),
            job_id,
        };
        circuit.public = Some(public.clone());
        circuit.private = Some(OpeningPrivate { model });
        Ok((circuit, public))
    }

    /// Replaces the public inputs the witnesses are checked against.
    pub fn with_public(mut self, public: OpeningPublic) -> Self {
        self.public = Some(public);
        self
    }
}

impl ConstraintSynthesizer<Fr> for OpeningCircuit {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> SResult<()> {
        let public = self.public.as_ref();
        let layers = match &self.private {
            Some(p) if p.model.layers.len() == self.shape.layers.len() => &p.model.layers,
            _ => &self.shape.layers,
        };

        // Witnesses
        let weights = alloc_layers(&cs, layers, self.private.is_some())?;

        // Public inputs
        let model_commitment_in = FpVar::new_input(cs.clone(), || {
            public
                .map(|p| p.model_commitment.0)
                .ok_or(SynthesisError::AssignmentMissing)
        })?;
        let job_id = FpVar::new_input(cs.clone(), || {
            public
                .map(|p| p.job_id.0)
                .ok_or(SynthesisError::AssignmentMissing)
        })?;

        // Constraints
        let commitments = layer_commitments_var(&cs, &self.shape.layers, 0, &weights)?;
        model_commitment_var(cs.clone(), &commitments)?.enforce_equal(&model_commitment_in)?;
        bind_job_id(&job_id)
    }
}

// ---------------------------------------------------------------------------------------
// Shared synthesis steps

/// Range-checked weight and bias witnesses of some layers.
struct LayerVars {
    weights: Vec<SignedVar>,
    biases: Vec<SignedVar>,
}

fn alloc_vector(
    cs: &ConstraintSystemRef<Fr>,
    values: Option<Vec<i64>>,
    len: usize,
    bits: u32,
) -> SResult<Vec<SignedVar>> {
    if values.as_ref().is_some_and(|v| v.len() != len) {
        return Err(SynthesisError::Unsatisfiable);
    }
    (0..len)
        .map(|i| alloc_signed(cs, values.as_ref().map(|v| v[i]), bits))
        .collect()
}

fn alloc_layers(
    cs: &ConstraintSystemRef<Fr>,
    layers: &[QuantizedLayer],
    with_values: bool,
) -> SResult<Vec<LayerVars>> {
    layers
        .iter()
        .map(|layer| {
            let weights = layer
                .weights
                .iter()
                .map(|&w| alloc_signed(cs, with_values.then_some(i64::from(w)), WEIGHT_BITS))
                .collect::<SResult<Vec<_>>>()?;
            let biases = layer
                .biases
                .iter()
                .map(|&b| alloc_signed(cs, with_values.then_some(i64::from(b)), BIAS_BITS))
                .collect::<SResult<Vec<_>>>()?;
            Ok(LayerVars { weights, biases })
        })
        .collect()
}

fn layer_commitments_var(
    cs: &ConstraintSystemRef<Fr>,
    shapes: &[QuantizedLayer],
    first_index: usize,
    vars: &[LayerVars],
) -> SResult<Vec<FpVar<Fr>>> {
    shapes
        .iter()
        .zip(vars)
        .enumerate()
        .map(|(i, (shape, v))| {
            let w: Vec<FpVar<Fr>> = v.weights.iter().map(|s| s.unsigned.clone()).collect();
            let b: Vec<FpVar<Fr>> = v.biases.iter().map(|s| s.unsigned.clone()).collect();
            layer_commitment_var(cs.clone(), first_index + i, shape, &w, &b)
        })
        .collect()
}

/// Runs `layers`; `ends_model` makes the last of them the output layer (logits).
fn run_layers(
    cs: &ConstraintSystemRef<Fr>,
    layers: &[QuantizedLayer],
    weights: Option<&[LayerVars]>,
    mut x: Vec<FpVar<Fr>>,
    ends_model: bool,
) -> SResult<Vec<FpVar<Fr>>> {
    for (i, shape) in layers.iter().enumerate() {
        let last = ends_model && i + 1 == layers.len();
        let w = match weights {
            None => LayerWeights::Constant(shape),
            Some(vars) => LayerWeights::Witness {
                weights: &vars[i].weights,
                biases: &vars[i].biases,
            },
        };
        x = gadgets::layer(cs, shape, w, &x, last)?;
    }
    Ok(x)
}

/// Logits are proven to lie in `[-2^31, 2^31)`, so their offsets need no further check.
fn logits_unsigned(logits: &[FpVar<Fr>]) -> Vec<FpVar<Fr>> {
    logits
        .iter()
        .map(|l| l + Fr::from(1u64 << (LOGIT_BITS - 1)))
        .collect()
}

/// Puts the job id in a constraint of its own, so the proof depends on it even if a future
/// prover backend dropped public inputs that appear in no constraint.
fn bind_job_id(job_id: &FpVar<Fr>) -> SResult<()> {
    let _ = job_id.square()?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ark_relations::gr1cs::ConstraintSystem;

    fn tiny() -> Arc<QuantizedMlp> {
        Arc::new(QuantizedMlp::synthetic(&[8, 4, 3], 11).unwrap())
    }

    fn private(model: &QuantizedMlp) -> InferencePrivate {
        InferencePrivate {
            input: (0..model.input_dim())
                .map(|i| (((i * 13) % 200) as i64 - 100) as i8)
                .collect(),
            input_salt: Salt([3; 32]),
            output_salt: Salt([4; 32]),
        }
    }

    /// (satisfied, constraints)
    fn check<C: ConstraintSynthesizer<Fr>>(circuit: C) -> (bool, usize) {
        let cs = ConstraintSystem::<Fr>::new_ref();
        circuit.generate_constraints(cs.clone()).unwrap();
        (cs.is_satisfied().unwrap(), cs.num_constraints())
    }

    fn inference(
        model: Arc<QuantizedMlp>,
        w: WeightMode,
        o: OutputMode,
    ) -> (InferenceCircuit, InferencePublic) {
        let p = private(&model);
        InferenceCircuit::for_proving(model, w, o, p, JobId::from_u64(1)).unwrap()
    }

    const MODES: [(WeightMode, OutputMode); 6] = [
        (WeightMode::Public, OutputMode::Logits),
        (WeightMode::Public, OutputMode::Argmax),
        (WeightMode::Public, OutputMode::Commitment),
        (WeightMode::Private, OutputMode::Logits),
        (WeightMode::Private, OutputMode::Argmax),
        (WeightMode::Private, OutputMode::Commitment),
    ];

    #[test]
    fn honest_inference_is_satisfied_with_pinned_counts() {
        let counts: Vec<usize> = MODES
            .iter()
            .map(|&(w, o)| {
                let (c, public) = inference(tiny(), w, o);
                let expected = tiny().forward(&private(&tiny()).input).unwrap();
                if let PublicOutput::Logits(l) = &public.output {
                    assert_eq!(l, &expected.logits);
                }
                let (ok, n) = check(c);
                assert!(ok, "{w:?} {o:?}");
                n
            })
            .collect();
        assert_eq!(counts, vec![797, 904, 1275, 2617, 2724, 3095]);
    }

    #[test]
    fn digits_sized_constraint_counts() {
        let model = Arc::new(QuantizedMlp::synthetic(&[64, 32, 10], 5).unwrap());
        let public = check(inference(model.clone(), WeightMode::Public, OutputMode::Argmax).0);
        let private = check(inference(model.clone(), WeightMode::Private, OutputMode::Argmax).0);
        let opening = check(
            OpeningCircuit::for_proving(model, JobId::from_u64(1))
                .unwrap()
                .0,
        );
        assert_eq!(
            (public, private, opening),
            ((true, 3114), (true, 36690), (true, 31210))
        );
    }

    #[test]
    fn wrong_weight_input_or_output_is_unsatisfied() {
        for &(w, o) in &MODES {
            let (_, public) = inference(tiny(), w, o);
            // A different weight.
            let mut other = (*tiny()).clone();
            other.layers[0].weights[0] = other.layers[0].weights[0].wrapping_add(1);
            let (c, _) = inference(Arc::new(other), w, o);
            assert!(
                !check(c.with_public(public.clone())).0,
                "weight {w:?} {o:?}"
            );
            // A different input than the committed one.
            let mut p = private(&tiny());
            p.input[3] += 1;
            let (c, _) =
                InferenceCircuit::for_proving(tiny(), w, o, p, JobId::from_u64(1)).unwrap();
            assert!(!check(c.with_public(public.clone())).0, "input {w:?} {o:?}");
            // A different output.
            let (c, _) = inference(tiny(), w, o);
            let mut wrong = public.clone();
            wrong.output = match &public.output {
                PublicOutput::Logits(l) => PublicOutput::Logits(l.iter().map(|v| v + 1).collect()),
                PublicOutput::Argmax(i) => PublicOutput::Argmax((i + 1) % 3),
                PublicOutput::Commitment(_) => PublicOutput::Commitment(Commitment(Fr::from(5u64))),
            };
            assert!(!check(c.with_public(wrong)).0, "output {w:?} {o:?}");
            // A different model commitment.
            let (c, _) = inference(tiny(), w, o);
            let wrong = InferencePublic {
                model_commitment: Commitment(Fr::from(9u64)),
                ..public.clone()
            };
            assert!(!check(c.with_public(wrong)).0, "model {w:?} {o:?}");
        }
    }

    #[test]
    fn output_commitment_is_the_logits_vector_commitment() {
        let (_, public) = inference(tiny(), WeightMode::Public, OutputMode::Commitment);
        let logits = tiny().forward(&private(&tiny()).input).unwrap().logits;
        let expected = vector_commitment(&logits, LOGIT_BITS, &Salt([4; 32])).unwrap();
        assert_eq!(public.output, PublicOutput::Commitment(expected));
    }

    #[test]
    fn shard_chain_links_up_to_the_jobs_commitments() {
        let model = QuantizedMlp::synthetic(&[8, 6, 4, 3], 2).unwrap();
        let p = private(&model);
        let job = JobId::from_u64(9);
        let (_, whole) = InferenceCircuit::for_proving(
            Arc::new(model.clone()),
            WeightMode::Public,
            OutputMode::Commitment,
            p.clone(),
            job,
        )
        .unwrap();
        let mid_salt = Salt([8; 32]);
        let first = Arc::new(ModelShard::from_model(&model, 0, 2).unwrap());
        let second = Arc::new(ModelShard::from_model(&model, 2, 3).unwrap());
        let input: Vec<i64> = p.input.iter().map(|&v| i64::from(v)).collect();
        let activation = first.forward(&input).unwrap();
        let mut counts = Vec::new();
        for mode in [WeightMode::Public, WeightMode::Private] {
            let (c1, s1) = ShardCircuit::for_proving(
                first.clone(),
                mode,
                ShardPrivate {
                    input: input.clone(),
                    input_salt: p.input_salt,
                    output_salt: mid_salt,
                },
                job,
            )
            .unwrap();
            let (c2, s2) = ShardCircuit::for_proving(
                second.clone(),
                mode,
                ShardPrivate {
                    input: activation.clone(),
                    input_salt: mid_salt,
                    output_salt: p.output_salt,
                },
                job,
            )
            .unwrap();
            assert_eq!(s1.input_commitment, whole.input_commitment);
            assert_eq!(s1.output_commitment, s2.input_commitment);
            assert_eq!(PublicOutput::Commitment(s2.output_commitment), whole.output);
            assert_eq!(s1.model_commitment, whole.model_commitment);
            let (ok1, n1) = check(c1.clone());
            let (ok2, n2) = check(c2);
            assert!(ok1 && ok2, "{mode:?}");
            counts.push((n1, n2));
            // A forged activation out of stage one.
            let forged = ShardPublic {
                output_commitment: vector_commitment(&[1; 4], 8, &mid_salt).unwrap(),
                ..s1.clone()
            };
            assert!(!check(c1.with_public(forged)).0, "{mode:?}");
        }
        assert_eq!(counts, vec![(1398, 1095), (3809, 2262)]);
    }

    #[test]
    fn opening_accepts_only_the_committed_weights() {
        let (c, public) = OpeningCircuit::for_proving(tiny(), JobId::from_u64(3)).unwrap();
        assert_eq!(check(c), (true, 1778));
        let mut other = (*tiny()).clone();
        other.layers[1].biases[0] += 1;
        let (c, _) = OpeningCircuit::for_proving(Arc::new(other), JobId::from_u64(3)).unwrap();
        assert!(!check(c.with_public(public)).0);
    }
}
