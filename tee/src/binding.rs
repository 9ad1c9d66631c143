//! Report data binding: evidence names the worker key, the chain and a recent block hash.

use sha2::{Digest, Sha256};

use crate::attestation::VerifiedAttestation;
use crate::error::{Error, Result};

/// Domain separation for report data.
const DOMAIN: &[u8] = b"vichain-tee/report-data/v1";

/// The report data a worker must put in its evidence: `sha256(worker key, chain id, nonce)` in the
/// first 32 bytes, zeros in the rest.
///
/// The hash input is `DOMAIN || len(key) || key || len(chain_id) || chain_id || nonce`, lengths as
/// big-endian u32, so that no two (key, chain id) pairs hash the same bytes. The nonce is a recent
/// block hash, so evidence cannot be prepared before that block nor replayed by another worker or
/// on another chain.
pub fn expected_report_data(worker_pubkey: &[u8], chain_id: &str, nonce: &[u8; 32]) -> [u8; 64] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(len_be(worker_pubkey.len()));
    h.update(worker_pubkey);
    h.update(len_be(chain_id.len()));
    h.update(chain_id.as_bytes());
    h.update(nonce);
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(&h.finalize());
    out
}

/// Checks that verified evidence binds `worker_pubkey` on `chain_id` with `nonce`.
pub fn check_binding(
    attestation: &VerifiedAttestation,
    worker_pubkey: &[u8],
    chain_id: &str,
    nonce: &[u8; 32],
) -> Result<()> {
    let expected = expected_report_data(worker_pubkey, chain_id, nonce);
    if attestation.report_data != expected {
        return Err(Error::ReportDataMismatch {
            expected: hex::encode(expected),
            found: hex::encode(attestation.report_data),
        });
    }
    Ok(())
}

fn len_be(len: usize) -> [u8; 4] {
    u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_separates_key_chain_and_nonce() {
        let n = [7u8; 32];
        let a = expected_report_data(b"ab", "c", &n);
        assert_ne!(a, expected_report_data(b"a", "bc", &n));
        assert_ne!(a, expected_report_data(b"ab", "c", &[8u8; 32]));
        assert_eq!(a[32..], [0u8; 32]);
        assert_ne!(a[..32], [0u8; 32]);
    }
}
