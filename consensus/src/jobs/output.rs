//! What workers agree on: the fingerprint of a revealed output and its stages, the
//! commitment that binds it to its worker, and when two outputs are equivalent.

use sha2::{Digest, Sha256};
use vichain_proto::v1 as pb;

use crate::Address;

/// Domain of result commitments.
pub const COMMIT_DOMAIN: &[u8] = b"vichain/commit/v1";

const FINGERPRINT_DOMAIN: &[u8] = b"vichain/output/v1";

/// Fixed-point scale of float outputs (embeddings): 1_000_000 = 1.0.
pub const FIXED_POINT_ONE: i64 = 1_000_000;

/// Longest generated text a reveal may carry.
pub const MAX_OUTPUT_TEXT: usize = 16 * 1024;

/// Digest of everything a reveal asserts: the output and the pipeline's stages.
pub fn output_fingerprint(output: &pb::JobOutput, stages: &[pb::Stage]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(FINGERPRINT_DOMAIN);
    h.update((output.values.len() as u64).to_be_bytes());
    for v in &output.values {
        h.update(v.to_be_bytes());
    }
    h.update((output.text.len() as u64).to_be_bytes());
    h.update(output.text.as_bytes());
    h.update((stages.len() as u64).to_be_bytes());
    for s in stages {
        for bytes in [&s.operator, &s.input_hash, &s.output_hash] {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        }
        h.update(s.start_layer.to_be_bytes());
        h.update(s.end_layer.to_be_bytes());
    }
    h.finalize().into()
}

/// The commitment a worker sends in `CommitResult`.
pub fn result_commitment(fingerprint: &[u8; 32], salt: &[u8; 32], operator: &Address) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(COMMIT_DOMAIN);
    h.update(fingerprint);
    h.update(salt);
    h.update(operator.as_bytes());
    h.finalize().into()
}

/// Whether two outputs count as the same result under `tolerance` (in the
/// fixed-point units of the values; 0 = identical).
pub fn equivalent(a: &pb::JobOutput, b: &pb::JobOutput, tolerance: u64) -> bool {
    a.text == b.text
        && a.values.len() == b.values.len()
        && a.values
            .iter()
            .zip(&b.values)
            .all(|(x, y)| x.abs_diff(*y) <= tolerance)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn out(values: &[i64]) -> pb::JobOutput {
        pb::JobOutput {
            values: values.to_vec(),
            text: String::new(),
        }
    }

    #[test]
    fn equivalence_respects_tolerance_length_and_text() {
        assert!(equivalent(&out(&[1, 2]), &out(&[1, 2]), 0));
        assert!(!equivalent(&out(&[1, 2]), &out(&[1, 3]), 0));
        assert!(equivalent(&out(&[1, 2]), &out(&[1, 3]), 1));
        assert!(!equivalent(&out(&[1, 2]), &out(&[1, 2, 3]), 100));
        let mut t = out(&[1]);
        t.text = "a".into();
        assert!(!equivalent(&t, &out(&[1]), 100));
        assert!(equivalent(&out(&[i64::MIN]), &out(&[i64::MAX]), u64::MAX));
    }

    #[test]
    fn commitments_bind_output_salt_and_worker() {
        let fp = output_fingerprint(&out(&[7]), &[]);
        let a = Address([1; 20]);
        let b = Address([2; 20]);
        let c = result_commitment(&fp, &[0; 32], &a);
        assert_ne!(c, result_commitment(&fp, &[0; 32], &b));
        assert_ne!(c, result_commitment(&fp, &[1; 32], &a));
        assert_ne!(fp, output_fingerprint(&out(&[8]), &[]));
        assert_ne!(fp, output_fingerprint(&out(&[7, 0]), &[]));
    }
}
