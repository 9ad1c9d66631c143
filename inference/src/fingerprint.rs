//! Output fingerprints: exact hashes for integer outputs, fixed-point ones for floats.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// A sha256 digest (of canonical bytes), printed as lowercase hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// sha256 of `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// sha256 of integer outputs (token ids, logits of an integer model), each as `i64` LE.
    pub fn of_integers(values: impl IntoIterator<Item = i64>) -> Self {
        let mut h = Sha256::new();
        for v in values {
            h.update(v.to_le_bytes());
        }
        Self(h.finalize().into())
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// How float outputs are compared across machines.
///
/// Values are rounded to multiples of `2^-step_bits` (round half away from zero); two outputs
/// are equivalent when every pair of rounded values differs by at most `max_steps` steps, that
/// is when `|a - b| <= max_steps * 2^-step_bits` up to one rounding step. Comparison works on
/// integers only, so every validator reaches the same verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloatTolerance {
    /// Fixed-point precision: values are multiples of `2^-step_bits`.
    pub step_bits: u8,
    /// Largest allowed difference between corresponding values, in steps.
    pub max_steps: u32,
}

impl FloatTolerance {
    /// For unit-norm sentence embeddings: steps of `2^-16` (about 1.5e-5), 4 steps allowed
    /// (about 6e-5). Candle against PyTorch differs by about 2e-7 on MiniLM, so honest
    /// machines agree with a wide margin, while any change to weights or inputs moves
    /// embedding components by far more.
    pub const EMBEDDING: Self = Self {
        step_bits: 16,
        max_steps: 4,
    };

    /// Largest absolute difference this tolerance accepts for sure (`max_steps` steps).
    pub fn max_abs(&self) -> f64 {
        f64::from(self.max_steps) / (1u64 << self.step_bits) as f64
    }

    /// Rounds `values` to fixed point.
    pub fn quantize(&self, values: &[f32]) -> Result<FixedPointOutput> {
        if self.step_bits > 30 {
            return Err(Error::field(
                "FloatTolerance",
                "step_bits",
                format!("{} is above 30", self.step_bits),
            ));
        }
        let scale = (1u64 << self.step_bits) as f64;
        let values = values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let q = (f64::from(v) * scale).round();
                if !q.is_finite() || q.abs() >= i64::MAX as f64 / 2.0 {
                    return Err(Error::field(
                        "output",
                        format!("[{i}]"),
                        format!("{v} cannot be fixed-point encoded"),
                    ));
                }
                Ok(q as i64)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(FixedPointOutput {
            step_bits: self.step_bits,
            values,
        })
    }
}

/// A float output rounded to fixed point: what a worker reveals and the ledger compares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedPointOutput {
    /// Values are multiples of `2^-step_bits`.
    pub step_bits: u8,
    /// The rounded values, in steps.
    pub values: Vec<i64>,
}

impl FixedPointOutput {
    /// sha256 over `u8 step_bits` then each value as `i64` LE: the committed fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut h = Sha256::new();
        h.update([self.step_bits]);
        for v in &self.values {
            h.update(v.to_le_bytes());
        }
        Fingerprint(h.finalize().into())
    }

    /// Whether two outputs are equivalent under `max_steps` (same precision, same length, and
    /// every difference at most `max_steps`).
    pub fn within(&self, other: &Self, max_steps: u32) -> bool {
        self.step_bits == other.step_bits
            && self.values.len() == other.values.len()
            && self
                .values
                .iter()
                .zip(&other.values)
                .all(|(a, b)| a.abs_diff(*b) <= u64::from(max_steps))
    }

    /// The largest difference between corresponding values, in steps (`None` if the outputs
    /// have different precisions or lengths).
    pub fn max_diff_steps(&self, other: &Self) -> Option<u64> {
        (self.step_bits == other.step_bits && self.values.len() == other.values.len()).then(|| {
            self.values
                .iter()
                .zip(&other.values)
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap_or(0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_accepts_below_and_rejects_above() {
        let tol = FloatTolerance::EMBEDDING;
        let base: Vec<f32> = (0..384).map(|i| ((i as f32) * 0.37).sin() * 0.1).collect();
        let q = tol.quantize(&base).unwrap();
        let step = 1.0 / 65536.0;
        // Below: every value moved by 1e-6, far under one step.
        let small: Vec<f32> = base.iter().map(|v| v + 1e-6).collect();
        assert!(q.within(&tol.quantize(&small).unwrap(), tol.max_steps));
        // At the bound: moved by (max_steps - 1) steps (rounding can add at most one).
        let edge: Vec<f32> = base.iter().map(|v| v + 3.0 * step).collect();
        assert!(q.within(&tol.quantize(&edge).unwrap(), tol.max_steps));
        // Above: one value moved by 6 steps.
        let mut big = base.clone();
        big[17] += 6.0 * step;
        let qb = tol.quantize(&big).unwrap();
        assert!(!q.within(&qb, tol.max_steps));
        assert_eq!(q.max_diff_steps(&qb), Some(6));
        assert_ne!(q.fingerprint(), qb.fingerprint());
    }

    #[test]
    fn non_finite_values_are_rejected() {
        assert!(FloatTolerance::EMBEDDING.quantize(&[f32::NAN]).is_err());
        assert!(
            FloatTolerance::EMBEDDING
                .quantize(&[f32::INFINITY])
                .is_err()
        );
    }

    #[test]
    fn fingerprints_print_as_hex() {
        let f = Fingerprint::of_bytes(b"abc");
        assert_eq!(
            f.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
