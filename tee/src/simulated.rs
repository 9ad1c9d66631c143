//! The dev attester: evidence signed by a local ed25519 key, with no hardware behind it.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier as _, VerifyingKey};

use crate::attestation::{Claims, TcbStatus, TeeKind, VerifiedAttestation};
use crate::error::{Error, Result};
use crate::evidence::{Evidence, SimulatedEvidence};

/// Domain separation for the simulated attester's signatures.
const DOMAIN: &[u8] = b"vichain-tee/simulated/v1";

/// Signs simulated evidence, standing in for a TEE on machines without one (`vichaind dev`).
///
/// Its evidence is only accepted by a [`Verifier`](crate::Verifier) built with
/// [`allow_simulated`](crate::Verifier::allow_simulated) and a [`Policy`](crate::Policy) with
/// `allow_simulated`, and always comes out with [`VerifiedAttestation::simulated`] set.
pub struct SimulatedAttester {
    key: SigningKey,
}

impl std::fmt::Debug for SimulatedAttester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedAttester")
            .field("public_key", &hex::encode(self.public_key()))
            .finish_non_exhaustive()
    }
}

impl SimulatedAttester {
    /// An attester with the ed25519 key derived from `secret`.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&secret),
        }
    }

    /// The attester's ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Evidence claiming `measurement` and `report_data`, valid until `expires_at` (unix seconds).
    pub fn attest(&self, measurement: &[u8], report_data: [u8; 64], expires_at: u64) -> Evidence {
        let message = signed_message(measurement, &report_data, expires_at);
        Evidence::Simulated(SimulatedEvidence {
            public_key: self.public_key(),
            measurement: measurement.to_vec(),
            report_data,
            expires_at,
            signature: self.key.sign(&message).to_bytes(),
        })
    }
}

/// `DOMAIN || len(measurement) (u32 BE) || measurement || report_data || expires_at (u64 BE)`.
fn signed_message(measurement: &[u8], report_data: &[u8; 64], expires_at: u64) -> Vec<u8> {
    let len = u32::try_from(measurement.len()).unwrap_or(u32::MAX);
    let mut m = Vec::with_capacity(DOMAIN.len() + 4 + measurement.len() + 64 + 8);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(&len.to_be_bytes());
    m.extend_from_slice(measurement);
    m.extend_from_slice(report_data);
    m.extend_from_slice(&expires_at.to_be_bytes());
    m
}

pub(crate) fn verify(evidence: &SimulatedEvidence, at: u64) -> Result<VerifiedAttestation> {
    let key =
        VerifyingKey::from_bytes(&evidence.public_key).map_err(|_| Error::SimulatedSignature)?;
    let message = signed_message(
        &evidence.measurement,
        &evidence.report_data,
        evidence.expires_at,
    );
    key.verify(&message, &Signature::from_bytes(&evidence.signature))
        .map_err(|_| Error::SimulatedSignature)?;
    if at > evidence.expires_at {
        return Err(Error::SimulatedExpired {
            expires_at: evidence.expires_at,
            at,
        });
    }
    Ok(VerifiedAttestation {
        kind: TeeKind::Simulated,
        measurement: evidence.measurement.clone(),
        tcb_status: TcbStatus::Unrated,
        advisory_ids: Vec::new(),
        report_data: evidence.report_data,
        valid_until: evidence.expires_at,
        debug: false,
        simulated: true,
        claims: Claims::Simulated,
    })
}
