use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::attestation::{SnpTcb, TcbStatus, TeeKind, VerifiedAttestation};
use crate::error::{Error, Result};

/// What a model accepts from a worker's verified attestation.
///
/// Checked after [`Verifier::verify`](crate::Verifier::verify) and independently of the
/// binding. The default accepts nothing: a policy names the kinds and measurements it trusts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Policy {
    /// Hardware kinds accepted (simulated evidence is governed by `allow_simulated` alone).
    pub allowed_kinds: BTreeSet<TeeKind>,
    /// Launch measurements accepted (hex in JSON and TOML); `None` accepts any.
    #[serde(with = "crate::attestation::hex_set_opt")]
    pub allowed_measurements: Option<BTreeSet<Vec<u8>>>,
    /// Lowest Intel TCB status accepted. SEV-SNP evidence has no status: with a minimum set, it
    /// is accepted only through `min_snp_tcb`.
    pub min_tcb_status: Option<TcbStatus>,
    /// Lowest SEV-SNP TCB version accepted, component by component.
    pub min_snp_tcb: Option<SnpTcb>,
    /// Accept debug-mode guests and enclaves (whose memory the host can read).
    pub allow_debug: bool,
    /// Accept the dev attester's evidence.
    pub allow_simulated: bool,
}

impl Policy {
    /// Accepts `attestation`, or says why not.
    ///
    /// Checks run from the coarsest to the finest: simulated, kind, measurement, debug, TCB.
    /// A revoked TCB is never accepted. Expiry is a matter of time and is checked with
    /// [`VerifiedAttestation::check_valid_at`].
    pub fn check(&self, attestation: &VerifiedAttestation) -> Result<()> {
        if attestation.simulated {
            if !self.allow_simulated {
                return Err(Error::SimulatedNotAllowed);
            }
        } else if !self.allowed_kinds.contains(&attestation.kind) {
            return Err(Error::KindNotAllowed(attestation.kind));
        }
        if let Some(allowed) = &self.allowed_measurements
            && !allowed.contains(&attestation.measurement)
        {
            return Err(Error::MeasurementNotAllowed(attestation.measurement_hex()));
        }
        if attestation.debug && !self.allow_debug {
            return Err(Error::DebugNotAllowed(attestation.kind));
        }
        if attestation.simulated {
            return Ok(());
        }
        if attestation.tcb_status == TcbStatus::Revoked {
            return Err(Error::TcbRevoked);
        }
        if let crate::attestation::Claims::SevSnp(snp) = &attestation.claims {
            if let Some(minimum) = &self.min_snp_tcb {
                if !snp.reported_tcb.meets(minimum) {
                    return Err(Error::SnpTcbTooLow {
                        reported: snp.reported_tcb,
                        minimum: *minimum,
                    });
                }
            } else if self.min_tcb_status.is_some() {
                return Err(Error::TcbUnrated(attestation.kind));
            }
            return Ok(());
        }
        if let Some(minimum) = self.min_tcb_status
            && !attestation.tcb_status.meets(minimum)
        {
            return Err(Error::TcbStatusTooLow {
                status: attestation.tcb_status,
                minimum,
            });
        }
        Ok(())
    }
}
