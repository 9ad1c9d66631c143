//! Report data binding: evidence names the worker key, the chain, a recent block hash and the
//! worker's HPKE encryption key.

use sha2::{Digest, Sha256};

use crate::attestation::VerifiedAttestation;
use crate::error::{Error, Result};
use crate::sealed::EncryptionPublicKey;

/// Domain separation for report data. v2 added the encryption key.
const DOMAIN: &[u8] = b"vichain-tee/report-data/v2";

/// The report data a worker must put in its evidence:
/// `sha256(worker key, chain id, nonce, encryption key)` in the first 32 bytes, zeros in the rest.
///
/// The hash input is `DOMAIN || len(key) || key || len(chain_id) || chain_id || nonce ||
/// encryption_key`, lengths as big-endian u32, so that no two (key, chain id) pairs hash the same
/// bytes (the nonce and the encryption key are 32 bytes each). The nonce is a recent block hash,
/// so evidence cannot be prepared before that block nor replayed by another worker or on another
/// chain; the encryption key is the HPKE key clients seal job inputs to, so only the code the
/// evidence measures holds its secret.
pub fn expected_report_data(
    worker_pubkey: &[u8],
    chain_id: &str,
    nonce: &[u8; 32],
    encryption_key: &EncryptionPublicKey,
) -> [u8; 64] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(len_be(worker_pubkey.len()));
    h.update(worker_pubkey);
    h.update(len_be(chain_id.len()));
    h.update(chain_id.as_bytes());
    h.update(nonce);
    h.update(encryption_key.as_bytes());
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(&h.finalize());
    out
}

/// Checks that verified evidence binds `worker_pubkey` on `chain_id` with `nonce` and
/// `encryption_key`.
pub fn check_binding(
    attestation: &VerifiedAttestation,
    worker_pubkey: &[u8],
    chain_id: &str,
    nonce: &[u8; 32],
    encryption_key: &EncryptionPublicKey,
) -> Result<()> {
    let expected = expected_report_data(worker_pubkey, chain_id, nonce, encryption_key);
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

    use crate::sealed::EncryptionKey;

    #[test]
    fn binding_separates_key_chain_nonce_and_encryption_key() {
        let n = [7u8; 32];
        let ek = EncryptionKey::derive(&[1; 32]).unwrap().public_key();
        let other = EncryptionKey::derive(&[2; 32]).unwrap().public_key();
        let a = expected_report_data(b"ab", "c", &n, &ek);
        assert_ne!(a, expected_report_data(b"a", "bc", &n, &ek));
        assert_ne!(a, expected_report_data(b"ab", "c", &[8u8; 32], &ek));
        assert_ne!(a, expected_report_data(b"ab", "c", &n, &other));
        assert_eq!(a[32..], [0u8; 32]);
        assert_ne!(a[..32], [0u8; 32]);
    }
}
