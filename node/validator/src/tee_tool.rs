//! The TEE commands of `vichaind` (`tee verify`, `tee simulate`, `tee keygen`,
//! `tee seal`, `tee open`) as functions.
//!
//! `tee verify` reads evidence in any of the forms workers hold it: the `VTEE`
//! encoding that transactions carry (binary or hex), a raw Intel DCAP quote with
//! its collateral JSON, or a raw AMD SEV-SNP report with its VCEK (and optionally
//! AMD's cert chain). Verification is the ledger's: pure, at the time given.
//!
//! `tee seal` / `tee open` are vichain-tee's sealed inputs by hand: HPKE to a
//! worker's encryption key under the (chain id, job id, worker address) context.

use std::path::Path;

use anyhow::{Context, Result};
use vichain_consensus::Address;
use vichain_tee::{
    Collateral, EncryptionKey, EncryptionPublicKey, Evidence, SealedInput, SealedInputContext,
    SimulatedAttester, SnpCaChain, SnpEvidence, VerifiedAttestation, Verifier,
    expected_report_data,
};

/// Reads a file, decoding it from hex when it is hex text.
fn read_maybe_hex(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text: String = String::from_utf8_lossy(&bytes)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if !text.is_empty()
        && text.len().is_multiple_of(2)
        && text.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return hex::decode(text).context("hex");
    }
    Ok(bytes)
}

/// Loads evidence: a DCAP quote when `collateral` is given, an SNP report when
/// `vcek` is given, the `VTEE` encoding otherwise.
pub fn load_evidence(
    evidence: &Path,
    collateral: Option<&Path>,
    vcek: Option<&Path>,
    cert_chain: Option<&Path>,
) -> Result<Evidence> {
    let bytes = read_maybe_hex(evidence)?;
    if let Some(c) = collateral {
        let json = std::fs::read(c).with_context(|| format!("reading {}", c.display()))?;
        return Ok(Evidence::dcap(bytes, Collateral::from_json(&json)?)?);
    }
    if let Some(v) = vcek {
        let ca = cert_chain
            .map(|p| -> Result<SnpCaChain> {
                let pem = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                Ok(SnpCaChain::from_pem(&pem)?)
            })
            .transpose()?;
        return Ok(Evidence::SevSnp(SnpEvidence {
            report: bytes,
            vcek: std::fs::read(v).with_context(|| format!("reading {}", v.display()))?,
            ca,
        }));
    }
    Evidence::decode(&bytes).with_context(|| {
        format!(
            "{} is not VTEE evidence (for a raw DCAP quote give --collateral, for an SNP report --vcek)",
            evidence.display()
        )
    })
}

/// Parses `--at`: unix seconds or an RFC 3339 time.
pub fn parse_time(s: &str) -> Result<u64> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(secs);
    }
    let t = humantime::parse_rfc3339_weak(s)
        .with_context(|| format!("--at {s:?}: expected unix seconds or an RFC 3339 time"))?;
    Ok(t.duration_since(std::time::UNIX_EPOCH)?.as_secs())
}

/// Verifies evidence at `at` (unix seconds).
pub fn verify(evidence: &Evidence, at: u64, allow_simulated: bool) -> Result<VerifiedAttestation> {
    Ok(Verifier::new()
        .allow_simulated(allow_simulated)
        .verify(evidence, at)?)
}

/// Dev-attester evidence for a worker: report data binds `operator_key`,
/// `chain_id`, the block hash `nonce` and the worker's `encryption_key`. Always
/// labelled as simulated.
pub fn simulate(
    secret: [u8; 32],
    measurement: &[u8],
    operator_key: &[u8],
    chain_id: &str,
    nonce: &[u8; 32],
    encryption_key: &EncryptionPublicKey,
    expires_at: u64,
) -> Vec<u8> {
    SimulatedAttester::from_secret(secret)
        .attest(
            measurement,
            expected_report_data(operator_key, chain_id, nonce, encryption_key),
            expires_at,
        )
        .encode()
}

/// Makes a worker encryption key, writes its secret to `out` (0600, never
/// overwriting) and returns the public key.
pub fn keygen(out: &Path) -> Result<EncryptionPublicKey> {
    let key = EncryptionKey::generate();
    key.save(out)?;
    Ok(key.public_key())
}

/// The public key of the encryption key in `path`.
pub fn public_key(path: &Path) -> Result<EncryptionPublicKey> {
    Ok(EncryptionKey::load(path)?.public_key())
}

/// Parses a worker's operator address (bech32 `vichain1...` or 40 hex digits).
pub fn parse_worker(s: &str) -> Result<Address> {
    s.parse::<Address>()
        .map_err(|e| anyhow::anyhow!("--worker {s:?}: {e}"))
}

/// Seals the file `input` to `to` for job `job_id` of `chain_id` at `worker`,
/// returning the [`SealedInput::encode`]d bytes.
pub fn seal_file(
    to: &EncryptionPublicKey,
    chain_id: &str,
    job_id: u64,
    worker: &Address,
    input: &Path,
) -> Result<Vec<u8>> {
    let plaintext = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let ctx = SealedInputContext {
        chain_id,
        job_id,
        worker: &worker.0,
    };
    Ok(ctx.seal(to, &plaintext)?.encode())
}

/// Opens the sealed file `input` with the key in `key` for job `job_id` of
/// `chain_id` at `worker`.
pub fn open_file(
    key: &Path,
    chain_id: &str,
    job_id: u64,
    worker: &Address,
    input: &Path,
) -> Result<Vec<u8>> {
    let key = EncryptionKey::load(key)?;
    let bytes = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let sealed = SealedInput::decode(&bytes)?;
    let ctx = SealedInputContext {
        chain_id,
        job_id,
        worker: &worker.0,
    };
    Ok(ctx.open(&key, &sealed)?)
}

/// Parses 32 bytes of hex (an optional `0x` prefix allowed).
pub fn parse_hex32(s: &str, what: &str) -> Result<[u8; 32]> {
    let bytes = hex::decode(s.trim().trim_start_matches("0x"))
        .with_context(|| format!("{what}: {s:?} is not hex"))?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("{what}: {} bytes, expected 32", bytes.len()))
}
