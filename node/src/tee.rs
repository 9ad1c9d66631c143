//! `vichaind tee`: attestation evidence and sealed inputs.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use clap::Subcommand;
use vichain_validator::tee_tool;

#[derive(Debug, Subcommand)]
pub(crate) enum TeeCmd {
    /// Verify evidence (signatures, certificate chains to AMD's and Intel's roots,
    /// collateral and TCB) at a given time, and print what it attests.
    Verify {
        /// VTEE evidence (binary or hex), a raw DCAP quote (with --collateral) or a
        /// raw SEV-SNP report (with --vcek).
        #[arg(long)]
        evidence: PathBuf,
        /// Intel PCS collateral JSON for a DCAP quote.
        #[arg(long)]
        collateral: Option<PathBuf>,
        /// VCEK certificate (DER) for an SEV-SNP report.
        #[arg(long)]
        vcek: Option<PathBuf>,
        /// AMD KDS cert chain (PEM: ASK then ARK) for an SEV-SNP report.
        #[arg(long)]
        cert_chain: Option<PathBuf>,
        /// Verification time: unix seconds or RFC 3339 (default: now).
        #[arg(long)]
        at: Option<String>,
        /// Accept the dev attester's evidence (labelled simulated).
        #[arg(long)]
        allow_simulated: bool,
        #[arg(long)]
        json: bool,
    },
    /// Make dev-attester evidence for a worker (accepted only on chains with
    /// allow_simulated_tee, e.g. `vichaind dev`).
    Simulate {
        /// 32-byte hex secret of the dev attester.
        #[arg(long)]
        secret: String,
        /// Hex launch measurement to claim.
        #[arg(long)]
        measurement: String,
        /// Hex ed25519 public key of the worker's operator.
        #[arg(long)]
        operator_key: String,
        #[arg(long)]
        chain_id: String,
        /// Hex hash of the block the evidence binds (the SubmitAttestation nonce height).
        #[arg(long)]
        nonce: String,
        /// Hex HPKE public key of the worker (`tee keygen`) that the evidence binds.
        #[arg(long)]
        encryption_key: String,
        /// Validity from now, e.g. 24h.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        valid_for: Duration,
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a worker's HPKE encryption key (X25519): the secret goes to --out
    /// (mode 0600, never overwritten), the public key is printed (hex).
    Keygen {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Print the public key of an encryption key file.
    Pubkey {
        #[arg(long)]
        key: PathBuf,
    },
    /// Seal a job input to a worker's encryption key (HPKE), bound to the chain,
    /// the job and the worker, so it opens nowhere else.
    Seal {
        /// Hex public key of the worker (its attestation's encryption_key).
        #[arg(long)]
        to: String,
        #[arg(long)]
        chain_id: String,
        #[arg(long)]
        job_id: u64,
        /// Operator address of the worker (vichain1... or 40 hex digits).
        #[arg(long)]
        worker: String,
        /// The input to seal.
        #[arg(long = "in")]
        input: PathBuf,
        /// Where to write the sealed input.
        #[arg(long)]
        out: PathBuf,
    },
    /// Open a sealed job input with the worker's encryption key.
    Open {
        /// The worker's encryption key file (`tee keygen`).
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        chain_id: String,
        #[arg(long)]
        job_id: u64,
        /// Operator address of the worker (vichain1... or 40 hex digits).
        #[arg(long)]
        worker: String,
        /// The sealed input.
        #[arg(long = "in")]
        input: PathBuf,
        /// Where to write the plaintext.
        #[arg(long)]
        out: PathBuf,
    },
}

pub(crate) fn run(cmd: TeeCmd) -> Result<()> {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    match cmd {
        TeeCmd::Verify {
            evidence,
            collateral,
            vcek,
            cert_chain,
            at,
            allow_simulated,
            json,
        } => {
            let at = at
                .map(|s| tee_tool::parse_time(&s))
                .transpose()?
                .unwrap_or_else(now);
            let evidence = tee_tool::load_evidence(
                &evidence,
                collateral.as_deref(),
                vcek.as_deref(),
                cert_chain.as_deref(),
            )?;
            let kind = evidence.kind();
            let v = tee_tool::verify(&evidence, at, allow_simulated)
                .with_context(|| format!("{kind} evidence does not verify at {at}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let label = if v.simulated {
                    " (SIMULATED: no hardware)"
                } else {
                    ""
                };
                println!("kind         {}{label}", v.kind);
                println!("measurement  {}", v.measurement_hex());
                println!("tcb status   {}", v.tcb_status);
                if !v.advisory_ids.is_empty() {
                    println!("advisories   {}", v.advisory_ids.join(", "));
                }
                println!("report data  {}", hex::encode(v.report_data));
                println!("valid until  {} (unix s)", v.valid_until);
                println!("debug        {}", v.debug);
            }
            Ok(())
        }
        TeeCmd::Simulate {
            secret,
            measurement,
            operator_key,
            chain_id,
            nonce,
            encryption_key,
            valid_for,
            out,
        } => {
            let bytes = tee_tool::simulate(
                tee_tool::parse_hex32(&secret, "--secret")?,
                &hex::decode(&measurement).context("--measurement")?,
                &hex::decode(&operator_key).context("--operator-key")?,
                &chain_id,
                &tee_tool::parse_hex32(&nonce, "--nonce")?,
                &vichain_tee::EncryptionPublicKey::from_hex(&encryption_key)
                    .context("--encryption-key")?,
                now() + valid_for.as_secs(),
            );
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "simulated evidence ({} bytes) written to {}",
                bytes.len(),
                out.display()
            );
            Ok(())
        }
        TeeCmd::Keygen { out, json } => {
            let pk = tee_tool::keygen(&out)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"public_key": pk.to_hex(), "key_file": out})
                );
            } else {
                println!("{pk}");
            }
            Ok(())
        }
        TeeCmd::Pubkey { key } => {
            println!("{}", tee_tool::public_key(&key)?);
            Ok(())
        }
        TeeCmd::Seal {
            to,
            chain_id,
            job_id,
            worker,
            input,
            out,
        } => {
            let to = vichain_tee::EncryptionPublicKey::from_hex(&to).context("--to")?;
            let worker = tee_tool::parse_worker(&worker)?;
            let sealed = tee_tool::seal_file(&to, &chain_id, job_id, &worker, &input)?;
            std::fs::write(&out, &sealed).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "sealed input ({} bytes) for job {job_id} at {worker} written to {}",
                sealed.len(),
                out.display()
            );
            Ok(())
        }
        TeeCmd::Open {
            key,
            chain_id,
            job_id,
            worker,
            input,
            out,
        } => {
            let worker = tee_tool::parse_worker(&worker)?;
            let plain = tee_tool::open_file(&key, &chain_id, job_id, &worker, &input)
                .with_context(|| format!("opening {}", input.display()))?;
            std::fs::write(&out, &plain).with_context(|| format!("writing {}", out.display()))?;
            println!("{} bytes written to {}", plain.len(), out.display());
            Ok(())
        }
    }
}
