//! The quantized integer MLP whose forward pass the circuits prove.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Most layers a model may have.
pub const MAX_LAYERS: usize = 16;
/// Widest layer input or output.
pub const MAX_DIM: usize = 4096;
/// Largest number of weights a model may have (in all layers together).
pub const MAX_WEIGHTS: usize = 1 << 22;
/// Largest requantization shift; keeps the 7 saturation bits inside the 32-bit accumulator.
pub const MAX_SHIFT: u8 = 24;
/// Accumulators are proven to lie in `[-2^31, 2^31)`.
pub const ACC_BITS: u32 = 32;
/// Upper bound of a hidden activation (ReLU then saturate to `[0, 127]`).
pub const ACTIVATION_MAX: i64 = 127;

const FILE_MAGIC: &[u8; 6] = b"VQMLP\0";
const FILE_VERSION: u16 = 1;

/// A multilayer perceptron over integers, exactly as the circuits prove it.
///
/// For layer `l` with input `x` (int8 for the first layer, `[0, 127]` after that):
/// `acc[o] = bias[o] + sum_i weight[o][i] * x[i]` (exact integers),
/// `q[o] = acc[o] >> shift` (arithmetic shift, i.e. floor division by `2^shift`),
/// hidden layers output `clamp(q, 0, 127)` (ReLU then saturation) and the last layer outputs
/// the logits `q` unchanged. The prediction is the first index of the largest logit.
///
/// [`QuantizedMlp::validate`] checks that every accumulator fits in `[-2^31, 2^31)` for every
/// admissible input, which is what the circuit's 32-bit decomposition relies on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantizedMlp {
    /// The layers, first to last.
    pub layers: Vec<QuantizedLayer>,
}

/// One fully connected layer of a [`QuantizedMlp`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantizedLayer {
    /// Input width.
    pub in_dim: usize,
    /// Output width.
    pub out_dim: usize,
    /// Row-major `[out_dim][in_dim]` weights.
    pub weights: Vec<i8>,
    /// One bias per output, in accumulator scale.
    pub biases: Vec<i32>,
    /// Requantization shift applied to the accumulator.
    pub shift: u8,
}

/// What a forward pass produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MlpOutput {
    /// The last layer's output.
    pub logits: Vec<i64>,
    /// First index of the largest logit.
    pub argmax: usize,
}

impl QuantizedMlp {
    /// Builds a model and validates it.
    pub fn new(layers: Vec<QuantizedLayer>) -> Result<Self> {
        let model = Self { layers };
        model.validate()?;
        Ok(model)
    }

    /// A deterministic model with pseudo-random small weights, for benchmarks, demos and tests.
    ///
    /// `dims` lists the widths, input first (`[64, 32, 10]` is a 64-32-10 MLP).
    pub fn synthetic(dims: &[usize], seed: u64) -> Result<Self> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        let layers = dims
            .windows(2)
            .map(|w| {
                let (in_dim, out_dim) = (w[0], w[1]);
                let weights = (0..in_dim * out_dim)
                    .map(|_| rng.gen_range(-64i8..=64))
                    .collect();
                let biases = (0..out_dim).map(|_| rng.gen_range(-2048..=2048)).collect();
                // Keeps activations in a useful range: |acc| is about 64 * 64 * sqrt(in_dim).
                let shift = (12 + (usize::BITS - in_dim.leading_zeros()) / 2) as u8;
                QuantizedLayer {
                    in_dim,
                    out_dim,
                    weights,
                    biases,
                    shift: shift.min(MAX_SHIFT),
                }
            })
            .collect();
        Self::new(layers)
    }

    /// Checks shapes, bounds and that no accumulator can leave `[-2^31, 2^31)`.
    pub fn validate(&self) -> Result<()> {
        let invalid = |layer: usize, reason: String| Error::InvalidModel { layer, reason };
        if self.layers.is_empty() || self.layers.len() > MAX_LAYERS {
            return Err(invalid(
                0,
                format!("{} layers, expected 1..={MAX_LAYERS}", self.layers.len()),
            ));
        }
        let mut total = 0usize;
        for (l, layer) in self.layers.iter().enumerate() {
            if layer.in_dim == 0
                || layer.in_dim > MAX_DIM
                || layer.out_dim == 0
                || layer.out_dim > MAX_DIM
            {
                return Err(invalid(
                    l,
                    format!(
                        "shape {}x{} outside 1..={MAX_DIM}",
                        layer.out_dim, layer.in_dim
                    ),
                ));
            }
            if l > 0 && self.layers[l - 1].out_dim != layer.in_dim {
                return Err(invalid(
                    l,
                    format!(
                        "input width {} != previous output width {}",
                        layer.in_dim,
                        self.layers[l - 1].out_dim
                    ),
                ));
            }
            if layer.weights.len() != layer.in_dim * layer.out_dim {
                return Err(invalid(
                    l,
                    format!(
                        "{} weights for shape {}x{}",
                        layer.weights.len(),
                        layer.out_dim,
                        layer.in_dim
                    ),
                ));
            }
            if layer.biases.len() != layer.out_dim {
                return Err(invalid(
                    l,
                    format!(
                        "{} biases for {} outputs",
                        layer.biases.len(),
                        layer.out_dim
                    ),
                ));
            }
            if layer.shift > MAX_SHIFT {
                return Err(invalid(
                    l,
                    format!("shift {} above {MAX_SHIFT}", layer.shift),
                ));
            }
            total += layer.weights.len();
            if total > MAX_WEIGHTS {
                return Err(invalid(l, format!("more than {MAX_WEIGHTS} weights")));
            }
            let max_input: i64 = if l == 0 { 128 } else { ACTIVATION_MAX };
            for o in 0..layer.out_dim {
                let row = &layer.weights[o * layer.in_dim..(o + 1) * layer.in_dim];
                let bound = i64::from(layer.biases[o]).abs()
                    + row
                        .iter()
                        .map(|&w| i64::from(w).abs() * max_input)
                        .sum::<i64>();
                if bound >= 1i64 << (ACC_BITS - 1) {
                    return Err(invalid(
                        l,
                        format!("output {o} can reach |acc| = {bound} >= 2^31"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Width of the model's input.
    pub fn input_dim(&self) -> usize {
        self.layers.first().map_or(0, |l| l.in_dim)
    }

    /// Width of the model's output.
    pub fn output_dim(&self) -> usize {
        self.layers.last().map_or(0, |l| l.out_dim)
    }

    /// Total number of weights.
    pub fn num_weights(&self) -> usize {
        self.layers.iter().map(|l| l.weights.len()).sum()
    }

    /// Runs the whole model on an int8 input.
    pub fn forward(&self, input: &[i8]) -> Result<MlpOutput> {
        let x: Vec<i64> = input.iter().map(|&v| i64::from(v)).collect();
        let logits = self.forward_range(0, self.layers.len(), &x)?;
        let argmax = argmax(&logits);
        Ok(MlpOutput { logits, argmax })
    }

    /// Runs layers `start..end` on `input` (int8 values for layer 0, `[0, 127]` after that).
    ///
    /// The result is a hidden activation in `[0, 127]` unless `end` is the last layer, in
    /// which case it is the logits.
    pub fn forward_range(&self, start: usize, end: usize, input: &[i64]) -> Result<Vec<i64>> {
        self.check_range(start, end)?;
        check_activation(start, input, self.layers[start].in_dim)?;
        let mut x = input.to_vec();
        for l in start..end {
            let last = l + 1 == self.layers.len();
            x = self.layers[l].forward(&x, last);
        }
        Ok(x)
    }

    pub(crate) fn check_range(&self, start: usize, end: usize) -> Result<()> {
        if start >= end || end > self.layers.len() {
            return Err(Error::LayerRange {
                start,
                end,
                layers: self.layers.len(),
            });
        }
        Ok(())
    }

    /// Encodes the model in the versioned `VQMLP` file format (version 1).
    ///
    /// Layout, little-endian: magic `"VQMLP\0"`, `u16` version, `u16` layer count, then for
    /// each layer `u32` in_dim, `u32` out_dim, `u8` shift, `in_dim * out_dim` weight bytes
    /// (row-major, two's complement), `out_dim` `i32` biases.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(10 + self.num_weights() + 64 * self.layers.len());
        out.extend_from_slice(FILE_MAGIC);
        out.extend_from_slice(&FILE_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.layers.len() as u16).to_le_bytes());
        for layer in &self.layers {
            out.extend_from_slice(&(layer.in_dim as u32).to_le_bytes());
            out.extend_from_slice(&(layer.out_dim as u32).to_le_bytes());
            out.push(layer.shift);
            out.extend(layer.weights.iter().map(|&w| w as u8));
            for b in &layer.biases {
                out.extend_from_slice(&b.to_le_bytes());
            }
        }
        out
    }

    /// Decodes and validates a `VQMLP` file; never panics on malformed bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(FILE_MAGIC.len())? != FILE_MAGIC {
            return Err(Error::ModelFormat("bad magic, not a VQMLP file".into()));
        }
        let version = r.u16()?;
        if version != FILE_VERSION {
            return Err(Error::ModelFormat(format!("unsupported version {version}")));
        }
        let num_layers = usize::from(r.u16()?);
        if num_layers == 0 || num_layers > MAX_LAYERS {
            return Err(Error::ModelFormat(format!(
                "{num_layers} layers, expected 1..={MAX_LAYERS}"
            )));
        }
        let mut layers = Vec::with_capacity(num_layers);
        for l in 0..num_layers {
            let in_dim = r.u32()? as usize;
            let out_dim = r.u32()? as usize;
            if in_dim == 0 || in_dim > MAX_DIM || out_dim == 0 || out_dim > MAX_DIM {
                return Err(Error::ModelFormat(format!(
                    "layer {l}: shape {out_dim}x{in_dim} outside 1..={MAX_DIM}"
                )));
            }
            let shift = r.take(1)?[0];
            let weights = r.take(in_dim * out_dim)?.iter().map(|&b| b as i8).collect();
            let biases = r
                .take(4 * out_dim)?
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            layers.push(QuantizedLayer {
                in_dim,
                out_dim,
                weights,
                biases,
                shift,
            });
        }
        if r.pos != bytes.len() {
            return Err(Error::ModelFormat(format!(
                "{} trailing bytes",
                bytes.len() - r.pos
            )));
        }
        Self::new(layers)
    }

    /// sha256 of [`QuantizedMlp::to_bytes`], the file hash recorded in the model registry.
    pub fn file_sha256(&self) -> [u8; 32] {
        Sha256::digest(self.to_bytes()).into()
    }
}

impl QuantizedLayer {
    /// Applies the layer; `last` selects logits instead of ReLU-and-saturate.
    pub fn forward(&self, x: &[i64], last: bool) -> Vec<i64> {
        (0..self.out_dim)
            .map(|o| {
                let row = &self.weights[o * self.in_dim..(o + 1) * self.in_dim];
                let acc = i64::from(self.biases[o])
                    + row
                        .iter()
                        .zip(x)
                        .map(|(&w, &v)| i64::from(w) * v)
                        .sum::<i64>();
                let q = acc >> self.shift;
                if last { q } else { q.clamp(0, ACTIVATION_MAX) }
            })
            .collect()
    }
}

/// First index of the largest value (0 for an empty slice).
pub fn argmax(values: &[i64]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// Checks the width and range of the activation entering layer `start`.
pub(crate) fn check_activation(start: usize, x: &[i64], expected: usize) -> Result<()> {
    if x.len() != expected {
        return Err(Error::InputLength {
            got: x.len(),
            expected,
        });
    }
    let (lo, hi) = if start == 0 {
        (-128, 127)
    } else {
        (0, ACTIVATION_MAX)
    };
    if let Some((index, &value)) = x.iter().enumerate().find(|(_, v)| **v < lo || **v > hi) {
        return Err(Error::InputOutOfRange {
            index,
            value,
            lo,
            hi,
        });
    }
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| {
                Error::ModelFormat(format!(
                    "truncated: need {n} bytes at offset {}, have {}",
                    self.pos,
                    self.bytes.len() - self.pos
                ))
            })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tiny() -> QuantizedMlp {
        QuantizedMlp::new(vec![
            QuantizedLayer {
                in_dim: 3,
                out_dim: 2,
                weights: vec![1, -2, 3, 4, 5, -6],
                biases: vec![10, -10],
                shift: 1,
            },
            QuantizedLayer {
                in_dim: 2,
                out_dim: 2,
                weights: vec![2, -1, -3, 1],
                biases: vec![0, 7],
                shift: 0,
            },
        ])
        .unwrap()
    }

    #[test]
    fn forward_matches_hand_computation() {
        let m = tiny();
        // layer 0: acc = [10 + 1*5 - 2*-3 + 3*7, -10 + 4*5 + 5*-3 - 6*7] = [42, -47]
        // q = [21, -24] -> relu/saturate [21, 0]
        // layer 1: [2*21 - 0, 7 - 3*21 + 0] = [42, -56]
        let out = m.forward(&[5, -3, 7]).unwrap();
        assert_eq!(out.logits, vec![42, -56]);
        assert_eq!(out.argmax, 0);
    }

    #[test]
    fn shift_is_floor_division() {
        let layer = QuantizedLayer {
            in_dim: 1,
            out_dim: 1,
            weights: vec![1],
            biases: vec![0],
            shift: 2,
        };
        assert_eq!(layer.forward(&[-5], true), vec![-2]);
        assert_eq!(layer.forward(&[5], true), vec![1]);
        assert_eq!(layer.forward(&[-5], false), vec![0]);
        let big = QuantizedLayer {
            in_dim: 1,
            out_dim: 1,
            weights: vec![127],
            biases: vec![0],
            shift: 0,
        };
        assert_eq!(big.forward(&[100], false), vec![127]);
    }

    #[test]
    fn argmax_takes_first_maximum() {
        assert_eq!(argmax(&[1, 5, 5, 2]), 1);
        assert_eq!(argmax(&[-3]), 0);
    }

    #[test]
    fn file_roundtrip_and_rejections() {
        let m = QuantizedMlp::synthetic(&[8, 4, 3], 1).unwrap();
        let bytes = m.to_bytes();
        assert_eq!(QuantizedMlp::from_bytes(&bytes).unwrap(), m);
        for cut in 0..bytes.len() {
            assert!(QuantizedMlp::from_bytes(&bytes[..cut]).is_err());
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(QuantizedMlp::from_bytes(&extra).is_err());
        let mut huge = bytes[..10].to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(QuantizedMlp::from_bytes(&huge).is_err());
    }

    #[test]
    fn validation_rejects_overflowing_accumulators() {
        let layer = QuantizedLayer {
            in_dim: 1,
            out_dim: 1,
            weights: vec![1],
            biases: vec![i32::MAX],
            shift: 0,
        };
        assert!(matches!(
            QuantizedMlp::new(vec![layer]),
            Err(Error::InvalidModel { .. })
        ));
    }

    #[test]
    fn inputs_are_range_checked() {
        let m = tiny();
        assert!(matches!(m.forward(&[1, 2]), Err(Error::InputLength { .. })));
        assert!(matches!(
            m.forward_range(1, 2, &[-1, 3]),
            Err(Error::InputOutOfRange { .. })
        ));
    }
}
