//! Hardware trust for vichain: verification of TEE attestation evidence.
//!
//! A worker proves that it runs an approved image inside a confidential VM or enclave by
//! submitting [`Evidence`]: an AMD SEV-SNP report with its VCEK, an Intel TDX or SGX quote with
//! its collateral, or, on dev chains, evidence from the [`SimulatedAttester`]. The ledger decodes
//! it ([`Evidence::decode`], bounded), verifies it at block time with a [`Verifier`] (signatures
//! and certificate chains up to AMD's and Intel's pinned roots, collateral validity, TCB level),
//! then checks the resulting [`VerifiedAttestation`] twice: against the worker's key, chain, a
//! recent block hash and its HPKE [`EncryptionPublicKey`] ([`check_binding`]), and against the
//! model's [`Policy`] (kinds, measurements, minimum TCB, debug, simulated). Verification is pure:
//! no clock, no network, no randomness, so every validator reaches the same verdict from the same
//! bytes and time.
//!
//! Clients then [`seal`] job inputs to the attested encryption key under a
//! [`SealedInputContext`] (chain, job, worker); only the worker's [`EncryptionKey`] can [`open`]
//! them.
//!
//! ```
//! use vichain_tee::{
//!     EncryptionKey, Evidence, Policy, SealedInputContext, SimulatedAttester, TeeKind, Verifier,
//!     check_binding, expected_report_data,
//! };
//!
//! let (worker_key, chain_id, block_hash, now) = ([1u8; 32], "vichain-dev", [2u8; 32], 1_000);
//!
//! // On the worker (here the dev attester stands in for the TEE):
//! let encryption_key = EncryptionKey::generate();
//! let ek = encryption_key.public_key();
//! let report_data = expected_report_data(&worker_key, chain_id, &block_hash, &ek);
//! let attester = SimulatedAttester::from_secret([9u8; 32]);
//! let bytes = attester.attest(&[0xaa; 48], report_data, now + 3600).encode();
//!
//! // In the ledger, at block time `now` (`ek` comes with the transaction and is stored):
//! let verified = Verifier::new()
//!     .allow_simulated(true)
//!     .verify(&Evidence::decode(&bytes)?, now)?;
//! check_binding(&verified, &worker_key, chain_id, &block_hash, &ek)?;
//! let policy = Policy { allow_simulated: true, ..Policy::default() };
//! policy.check(&verified)?;
//! assert!(verified.simulated && verified.kind == TeeKind::Simulated);
//!
//! // A client seals job 7's input to the worker (operator address [3; 20]); the worker opens it.
//! let ctx = SealedInputContext { chain_id, job_id: 7, worker: &[3u8; 20] };
//! let sealed = ctx.seal(&ek, b"input")?;
//! assert_eq!(ctx.open(&encryption_key, &sealed)?, b"input");
//! # Ok::<(), vichain_tee::Error>(())
//! ```

mod attestation;
mod binding;
mod dcap;
mod error;
mod evidence;
mod policy;
mod sealed;
mod simulated;
mod snp;

pub use crate::{
    attestation::{
        Claims, SgxClaims, SnpClaims, SnpProduct, SnpTcb, TcbStatus, TdxClaims, TeeKind,
        VerifiedAttestation,
    },
    binding::{check_binding, expected_report_data},
    error::{Error, Result},
    evidence::{
        Collateral, DcapEvidence, EVIDENCE_ENCODING_VERSION, Evidence, MAX_COLLATERAL_JSON_LEN,
        MAX_EVIDENCE_LEN, SimulatedEvidence, SnpCaChain, SnpEvidence,
    },
    policy::Policy,
    sealed::{
        ENCRYPTION_KEY_LEN, EncryptionKey, EncryptionPublicKey, MAX_SEALED_INPUT_LEN,
        MAX_SEALED_PLAINTEXT_LEN, SEALED_INPUT_INFO, SEALED_INPUT_OVERHEAD, SEALED_INPUT_VERSION,
        SealedInput, SealedInputContext, open, seal,
    },
    simulated::SimulatedAttester,
};

/// Verifies evidence at a given time.
///
/// Hardware evidence is verified against the vendors' roots pinned in this build (AMD's ARKs for
/// Milan, Genoa and Turin from the `sev` crate, Intel's SGX root CA from `dcap-qvl`). Simulated
/// evidence is refused unless [`Verifier::allow_simulated`] is set, as it is on dev chains.
#[derive(Debug, Clone, Copy, Default)]
pub struct Verifier {
    allow_simulated: bool,
}

impl Verifier {
    /// A verifier for hardware evidence only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also accept the dev attester's evidence (still labelled as simulated).
    pub fn allow_simulated(mut self, allow: bool) -> Self {
        self.allow_simulated = allow;
        self
    }

    /// Verifies `evidence` at `at` (unix seconds, the block time in the ledger): signatures,
    /// certificate chains to the vendor roots, and validity of certificates and collateral.
    ///
    /// Says nothing about whether the measurement or TCB is acceptable ([`Policy::check`]) nor
    /// whom the evidence is for ([`check_binding`]).
    pub fn verify(&self, evidence: &Evidence, at: u64) -> Result<VerifiedAttestation> {
        match evidence {
            Evidence::SevSnp(e) => snp::verify(e, at),
            Evidence::Tdx(e) => dcap::verify(TeeKind::Tdx, e, at),
            Evidence::Sgx(e) => dcap::verify(TeeKind::Sgx, e, at),
            Evidence::Simulated(e) => {
                if !self.allow_simulated {
                    return Err(Error::SimulatedNotAllowed);
                }
                simulated::verify(e, at)
            }
        }
    }

    /// Decodes and verifies [`Evidence::encode`]d bytes.
    pub fn verify_bytes(&self, bytes: &[u8], at: u64) -> Result<VerifiedAttestation> {
        self.verify(&Evidence::decode(bytes)?, at)
    }
}
