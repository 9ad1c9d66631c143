//! TEE attestations in the ledger: a worker's evidence is verified at block time
//! (never the wall clock), bound to the worker's operator key, the chain id, a
//! recent block hash and the worker's HPKE encryption key, checked against the
//! policy of every `require_tee` model the worker serves, and kept on the worker
//! record (with the encryption key clients seal inputs to) until it expires.

use std::{collections::BTreeSet, str::FromStr};

use sha2::{Digest, Sha256};
use vichain_proto::v1 as pb;
use vichain_tee::{
    EncryptionPublicKey, Evidence, Policy, SealedInput, SealedInputContext, TcbStatus, TeeKind,
    VerifiedAttestation, Verifier,
};

use crate::TxError;

/// Most TEE kinds, and most measurements, a model policy may list.
pub const MAX_POLICY_KINDS: usize = 8;
pub const MAX_POLICY_MEASUREMENTS: usize = 32;
/// Longest launch measurement (SNP and TDX: 48 bytes; SGX: 32).
pub const MAX_MEASUREMENT_BYTES: usize = 64;

/// Checks on a `SubmitAttestation` that need no state: size and decoding of the
/// evidence, and a usable X25519 encryption key (32 bytes, not a small-order point).
pub(crate) fn check_submit_attestation(
    a: &pb::SubmitAttestation,
    params: &pb::Params,
) -> Result<(Evidence, EncryptionPublicKey), TxError> {
    let max = params
        .max_evidence_bytes
        .min(vichain_tee::MAX_EVIDENCE_LEN as u64);
    if a.evidence.len() as u64 > max {
        return Err(TxError::OversizeEvidence {
            size: a.evidence.len() as u64,
            max,
        });
    }
    let evidence = Evidence::decode(&a.evidence).map_err(|e| TxError::AttestationInvalid {
        reason: format!("evidence does not decode: {e}"),
    })?;
    let key = EncryptionPublicKey::from_bytes(&a.encryption_key)
        .map_err(|e| TxError::invalid("submit_attestation.encryption_key", e.to_string()))?;
    Ok((evidence, key))
}

/// Validates the TEE part of a model policy.
pub(crate) fn check_policy(p: &pb::VerificationPolicy) -> Result<(), TxError> {
    if p.tee_kinds.len() > MAX_POLICY_KINDS {
        return Err(TxError::invalid(
            "register_model.policy.tee_kinds",
            format!("{} kinds; at most {MAX_POLICY_KINDS}", p.tee_kinds.len()),
        ));
    }
    for k in &p.tee_kinds {
        match TeeKind::from_str(k) {
            Ok(TeeKind::Simulated) | Err(_) => {
                return Err(TxError::invalid(
                    "register_model.policy.tee_kinds",
                    format!(
                        "{k:?}: expected sev-snp, tdx or sgx (simulated evidence is a chain param)"
                    ),
                ));
            }
            Ok(_) => {}
        }
    }
    if p.tee_measurements.len() > MAX_POLICY_MEASUREMENTS
        || p.tee_measurements
            .iter()
            .any(|m| m.is_empty() || m.len() > MAX_MEASUREMENT_BYTES)
    {
        return Err(TxError::invalid(
            "register_model.policy.tee_measurements",
            format!(
                "at most {MAX_POLICY_MEASUREMENTS} measurements of 1 to {MAX_MEASUREMENT_BYTES} bytes"
            ),
        ));
    }
    if !p.min_tcb_status.is_empty() && TcbStatus::from_str(&p.min_tcb_status).is_err() {
        return Err(TxError::invalid(
            "register_model.policy.min_tcb_status",
            format!("{:?} is not an Intel TCB status", p.min_tcb_status),
        ));
    }
    Ok(())
}

/// The vichain-tee policy of a model (kinds, measurements, minimum TCB status);
/// simulated evidence is accepted exactly where the chain accepts it.
pub(crate) fn tee_policy(p: &pb::VerificationPolicy, params: &pb::Params) -> Policy {
    Policy {
        allowed_kinds: p
            .tee_kinds
            .iter()
            .filter_map(|k| TeeKind::from_str(k).ok())
            .collect(),
        allowed_measurements: (!p.tee_measurements.is_empty())
            .then(|| p.tee_measurements.iter().cloned().collect::<BTreeSet<_>>()),
        min_tcb_status: TcbStatus::from_str(&p.min_tcb_status).ok(),
        min_snp_tcb: None,
        allow_debug: false,
        allow_simulated: params.allow_simulated_tee,
    }
}

/// Verifies evidence at block time `time_ns` (unix nanoseconds).
pub(crate) fn verify(
    evidence: &Evidence,
    params: &pb::Params,
    time_ns: i64,
) -> Result<VerifiedAttestation, TxError> {
    let at = u64::try_from(time_ns / 1_000_000_000).unwrap_or(0);
    crate::metrics::attestation_verification(evidence.kind().as_str(), || {
        Verifier::new()
            .allow_simulated(params.allow_simulated_tee)
            .verify(evidence, at)
            .map_err(|e| TxError::AttestationInvalid {
                reason: e.to_string(),
            })
    })
}

/// What the worker record keeps.
pub(crate) fn record(
    v: &VerifiedAttestation,
    evidence: &[u8],
    encryption_key: &EncryptionPublicKey,
    height: u64,
    ttl_blocks: u64,
) -> pb::Attestation {
    pb::Attestation {
        kind: v.kind.as_str().into(),
        measurement: v.measurement.clone(),
        tcb_status: v.tcb_status.as_str().into(),
        debug: v.debug,
        simulated: v.simulated,
        valid_until: v.valid_until,
        attested_height: height,
        expiry_height: height.saturating_add(ttl_blocks),
        evidence_hash: Sha256::digest(evidence).to_vec(),
        encryption_key: encryption_key.to_bytes().to_vec(),
    }
}

/// Whether a stored attestation still counts at `height` and block time `time_ns`:
/// what job assignment checks before giving a `require_tee` job to a worker.
pub fn attestation_is_current(a: &pb::Attestation, height: u64, time_ns: i64) -> bool {
    let at = u64::try_from(time_ns / 1_000_000_000).unwrap_or(0);
    height <= a.expiry_height && at <= a.valid_until
}

/// The encryption key clients may seal job inputs to for `w` at `height` and block
/// time `time_ns`: that of its current attestation, if it has one.
pub fn attested_encryption_key(
    w: &pb::Worker,
    height: u64,
    time_ns: i64,
) -> Option<EncryptionPublicKey> {
    let a = w.attestation.as_ref()?;
    if !attestation_is_current(a, height, time_ns) {
        return None;
    }
    EncryptionPublicKey::from_bytes(&a.encryption_key).ok()
}

/// Checks a sealed job input (vichain-tee's `SealedInput` encoding) addressed to
/// `worker` before the ledger carries it: it decodes within bounds, the worker has
/// an attestation current at `height`/`time_ns`, and the input is sealed to that
/// attestation's encryption key under the context (chain id, job id, worker's
/// operator address). Needs no secret; only the worker can open it.
pub fn check_sealed_input(
    sealed: &[u8],
    worker: &pb::Worker,
    chain_id: &str,
    job_id: u64,
    height: u64,
    time_ns: i64,
) -> Result<SealedInput, TxError> {
    let input =
        SealedInput::decode(sealed).map_err(|e| TxError::invalid("sealed_input", e.to_string()))?;
    let key = attested_encryption_key(worker, height, time_ns).ok_or_else(|| {
        TxError::AttestationInvalid {
            reason: format!(
                "worker {} has no current attestation, so no key to seal an input to",
                hex::encode(&worker.operator)
            ),
        }
    })?;
    let ctx = SealedInputContext {
        chain_id,
        job_id,
        worker: &worker.operator,
    };
    input
        .check_addressed(&key, &ctx.aad())
        .map_err(|e| TxError::invalid("sealed_input", e.to_string()))?;
    Ok(input)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use vichain_tee::EncryptionKey;

    use super::*;

    const NOW_NS: i64 = 1_700_000_000 * 1_000_000_000;

    fn worker(key: &EncryptionKey) -> pb::Worker {
        pb::Worker {
            operator: vec![0x11; 20],
            attestation: Some(pb::Attestation {
                kind: "simulated".into(),
                valid_until: 1_700_000_100,
                attested_height: 10,
                expiry_height: 20,
                encryption_key: key.public_key().to_bytes().to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn seal(key: &EncryptionKey, job_id: u64, operator: &[u8]) -> Vec<u8> {
        SealedInputContext {
            chain_id: "c",
            job_id,
            worker: operator,
        }
        .seal(&key.public_key(), b"input")
        .unwrap()
        .encode()
    }

    #[test]
    fn a_sealed_input_is_carried_only_to_the_current_attested_key_of_its_job_and_worker() {
        let key = EncryptionKey::derive(&[1; 32]).unwrap();
        let w = worker(&key);
        let good = seal(&key, 5, &w.operator);
        let checked = check_sealed_input(&good, &w, "c", 5, 15, NOW_NS).unwrap();
        assert_eq!(checked.recipient, key.public_key());
        assert_eq!(
            attested_encryption_key(&w, 15, NOW_NS),
            Some(key.public_key())
        );

        let other = EncryptionKey::derive(&[2; 32]).unwrap();
        let cases = [
            ("another key", seal(&other, 5, &w.operator), 15, 14),
            ("another job", seal(&key, 6, &w.operator), 15, 14),
            ("another worker", seal(&key, 5, &[0x22; 20]), 15, 14),
            ("garbage", vec![1; 40], 15, 14),
            ("an expired attestation", good.clone(), 21, 25),
        ];
        for (name, bytes, height, code) in cases {
            let err = check_sealed_input(&bytes, &w, "c", 5, height, NOW_NS).unwrap_err();
            assert_eq!(err.code(), code, "{name}: {err}");
        }
        assert!(check_sealed_input(&good, &w, "other-chain", 5, 15, NOW_NS).is_err());
        let unattested = pb::Worker {
            attestation: None,
            ..w
        };
        assert_eq!(attested_encryption_key(&unattested, 15, NOW_NS), None);
        assert_eq!(
            check_sealed_input(&good, &unattested, "c", 5, 15, NOW_NS)
                .unwrap_err()
                .code(),
            25
        );
    }
}
