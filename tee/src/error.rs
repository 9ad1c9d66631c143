use crate::attestation::{SnpTcb, TcbStatus, TeeKind};

/// Why evidence was not accepted.
///
/// Verification errors ("the evidence is not genuine or not valid now") and policy errors ("the
/// evidence is genuine but this model does not accept it") are distinct variants so the ledger can
/// report them to a worker with a reason it can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    // --- Encoding ---
    /// The encoded evidence is larger than the ledger accepts.
    #[error("evidence is {len} bytes, more than the {max} allowed")]
    TooLarge { len: usize, max: usize },
    /// The encoded evidence could not be decoded.
    #[error("malformed evidence: {0}")]
    Malformed(String),
    /// The encoding version is not one this build understands.
    #[error("unsupported evidence encoding version {0}")]
    UnsupportedVersion(u8),

    // --- AMD SEV-SNP ---
    /// The SNP attestation report could not be parsed.
    #[error("SEV-SNP report: {0}")]
    SnpReport(String),
    /// A certificate in the SNP chain could not be parsed.
    #[error("SEV-SNP {cert} certificate is malformed: {reason}")]
    CertificateMalformed { cert: &'static str, reason: String },
    /// A certificate in the SNP chain is not signed by its issuer.
    #[error("SEV-SNP {cert} certificate is not signed by the {issuer}: {reason}")]
    CertificateSignature {
        cert: &'static str,
        issuer: &'static str,
        reason: String,
    },
    /// The supplied AMD root key is not AMD's ARK for any supported product.
    #[error("SEV-SNP chain does not lead to a pinned AMD root key (ARK)")]
    UntrustedRoot,
    /// No supported product (Milan, Genoa, Turin) has an ASK that signs this VCEK.
    #[error("SEV-SNP VCEK is not issued by the AMD signing key of any supported product: {0}")]
    UnknownProduct(String),
    /// A certificate is not valid at the verification time.
    #[error("{cert} certificate is not valid at {at}: valid from {not_before} to {not_after}")]
    CertificateNotValidAt {
        cert: &'static str,
        at: u64,
        not_before: u64,
        not_after: u64,
    },
    /// The report signature does not verify with the VCEK.
    #[error("SEV-SNP report signature does not verify with the VCEK: {0}")]
    SnpSignature(String),
    /// The TCB the VCEK was issued for differs from the TCB in the report.
    #[error("SEV-SNP VCEK certifies {field} SVN {cert} but the report claims {report}")]
    VcekTcbMismatch {
        field: &'static str,
        cert: u8,
        report: u8,
    },
    /// The VCEK was issued for another chip.
    #[error("SEV-SNP VCEK was issued for chip {cert} but the report comes from chip {report}")]
    VcekChipMismatch { cert: String, report: String },
    /// The report was signed by a key this verifier does not support.
    #[error("SEV-SNP report signed with unsupported {what} {value}")]
    SnpUnsupported { what: &'static str, value: u32 },

    // --- Intel DCAP ---
    /// The collateral JSON could not be parsed.
    #[error("DCAP collateral: {0}")]
    Collateral(String),
    /// The quote is for another TEE than the evidence says.
    #[error("evidence is labelled {expected} but the quote is a {found} quote")]
    QuoteKindMismatch { expected: TeeKind, found: TeeKind },
    /// dcap-qvl rejected the quote or its collateral.
    #[error("{kind} quote rejected: {reason}")]
    Quote { kind: TeeKind, reason: String },
    /// dcap-qvl reported a TCB status this crate does not know.
    #[error("unknown TCB status {0:?}")]
    UnknownTcbStatus(String),

    // --- Simulated ---
    /// Simulated evidence was presented to a verifier that does not accept it.
    #[error("simulated evidence is not accepted here")]
    SimulatedNotAllowed,
    /// The simulated evidence's signature does not verify.
    #[error("simulated evidence signature does not verify")]
    SimulatedSignature,
    /// The simulated evidence is past its expiry.
    #[error("simulated evidence expired at {expires_at}, verification time is {at}")]
    SimulatedExpired { expires_at: u64, at: u64 },

    // --- Binding ---
    /// The report data does not bind the expected worker key, chain, nonce and encryption key.
    #[error(
        "report data {found} does not bind this worker key, chain id, nonce and encryption key (expected {expected})"
    )]
    ReportDataMismatch { expected: String, found: String },

    // --- Sealed inputs ---
    /// An HPKE key is malformed or unusable.
    #[error("encryption key: {0}")]
    EncryptionKeyInvalid(String),
    /// An encryption key file could not be written or read.
    #[error("encryption key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    /// A plaintext or encoded sealed input is over the limit.
    #[error("sealed input is {len} bytes, more than the {max} allowed")]
    SealedInputTooLarge { len: usize, max: usize },
    /// The encoded sealed input could not be decoded.
    #[error("malformed sealed input: {0}")]
    SealedInputMalformed(String),
    /// Sealing failed (the recipient key is unusable).
    #[error("sealing failed: {0}")]
    Seal(String),
    /// The input is sealed to another public key than this worker's.
    #[error("sealed input is for encryption key {sealed_to}, not this key {key}")]
    SealedToAnotherKey { sealed_to: String, key: String },
    /// The input was sealed under another context (chain id, job id or worker).
    #[error("sealed input was sealed for another chain, job or worker")]
    SealedForAnotherContext,
    /// Authenticated decryption failed: the ciphertext or encapsulated key was altered.
    #[error("sealed input does not decrypt: its ciphertext or encapsulated key was altered")]
    SealedInputTampered,

    // --- Policy ---
    /// The policy does not accept this kind of TEE.
    #[error("policy does not accept {0} evidence")]
    KindNotAllowed(TeeKind),
    /// The measurement is not in the policy's allow list.
    #[error("measurement {0} is not allowed by the policy")]
    MeasurementNotAllowed(String),
    /// The TEE runs in debug mode, so its memory is readable by the host.
    #[error("{0} evidence comes from a debug-mode guest or enclave")]
    DebugNotAllowed(TeeKind),
    /// The vendor has revoked this platform's TCB.
    #[error("TCB status is Revoked")]
    TcbRevoked,
    /// The TCB status is below the policy's minimum.
    #[error("TCB status {status} is below the policy minimum {minimum}")]
    TcbStatusTooLow {
        status: TcbStatus,
        minimum: TcbStatus,
    },
    /// The evidence has no vendor TCB status and the policy asks for one.
    #[error(
        "{0} evidence carries no vendor TCB status; the policy needs a minimum SNP TCB version to accept it"
    )]
    TcbUnrated(TeeKind),
    /// The SEV-SNP TCB version is below the policy's minimum.
    #[error("SEV-SNP TCB {reported} is below the policy minimum {minimum}")]
    SnpTcbTooLow { reported: SnpTcb, minimum: SnpTcb },
    /// The attestation is no longer valid.
    #[error("attestation expired at {valid_until}, time is {at}")]
    Expired { valid_until: u64, at: u64 },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
