//! AMD SEV-SNP: report signature by the VCEK, VCEK -> ASK -> ARK chain to a pinned AMD root.

use std::sync::OnceLock;

use sev::certs::snp::{Certificate as SevCert, Verifiable, builtin};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;
use x509_cert::Certificate as X509;
use x509_cert::der::Decode;
use x509_cert::der::asn1::ObjectIdentifier;

use crate::attestation::VerifiedAttestation;
use crate::attestation::{Claims, SnpClaims, SnpProduct, SnpTcb, TcbStatus, TeeKind};
use crate::error::{Error, Result};
use crate::evidence::SnpEvidence;

/// Length of an SNP attestation report (firmware ABI, table 22).
const REPORT_LEN: usize = 0x4A0;
/// `SIGNATURE_ALGO`: ECDSA P-384 with SHA-384, the only algorithm the firmware uses.
const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;
/// `KEY_INFO.SIGNING_KEY` values.
const SIGNING_KEY_VCEK: u32 = 0;
const SIGNING_KEY_VLEK: u32 = 1;

// VCEK certificate extensions (AMD VCEK/KDS specification 57230, table 8).
const OID_BL_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
const OID_TEE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
const OID_SNP_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
const OID_UCODE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
const OID_FMC_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.9");
const OID_HW_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");

/// AMD's root and signing keys for one product, parsed and self-verified once.
struct Pinned {
    product: SnpProduct,
    ark_der: Vec<u8>,
    ark: Cert,
    ask: Cert,
}

/// A certificate in both the forms sev and x509-cert work with.
struct Cert {
    sev: SevCert,
    not_before: u64,
    not_after: u64,
}

impl Cert {
    fn from_der(der: &[u8], name: &'static str) -> Result<Self> {
        let x509 = X509::from_der(der).map_err(|e| Error::CertificateMalformed {
            cert: name,
            reason: e.to_string(),
        })?;
        Ok(Self::from_x509(x509))
    }

    fn from_x509(x509: X509) -> Self {
        let validity = &x509.tbs_certificate.validity;
        let not_before = validity.not_before.to_unix_duration().as_secs();
        let not_after = validity.not_after.to_unix_duration().as_secs();
        Self {
            sev: SevCert::from(x509),
            not_before,
            not_after,
        }
    }

    fn check_valid_at(&self, name: &'static str, at: u64) -> Result<()> {
        if at < self.not_before || at > self.not_after {
            return Err(Error::CertificateNotValidAt {
                cert: name,
                at,
                not_before: self.not_before,
                not_after: self.not_after,
            });
        }
        Ok(())
    }
}

fn pinned() -> Result<&'static [Pinned]> {
    static PINNED: OnceLock<std::result::Result<Vec<Pinned>, String>> = OnceLock::new();
    PINNED
        .get_or_init(|| {
            SnpProduct::ALL
                .into_iter()
                .map(|product| {
                    let (ark, ask) = match product {
                        SnpProduct::Milan => (builtin::milan::ark(), builtin::milan::ask()),
                        SnpProduct::Genoa => (builtin::genoa::ark(), builtin::genoa::ask()),
                        SnpProduct::Turin => (builtin::turin::ark(), builtin::turin::ask()),
                    };
                    let (ark, ask) = (
                        ark.map_err(|e| e.to_string())?,
                        ask.map_err(|e| e.to_string())?,
                    );
                    (&ark, &ark)
                        .verify()
                        .map_err(|e| format!("{product} ARK: {e}"))?;
                    (&ark, &ask)
                        .verify()
                        .map_err(|e| format!("{product} ASK: {e}"))?;
                    let ark_der = ark.to_der().map_err(|e| e.to_string())?;
                    let ask_der = ask.to_der().map_err(|e| e.to_string())?;
                    let ark = Cert::from_der(&ark_der, "ARK").map_err(|e| e.to_string())?;
                    let ask = Cert::from_der(&ask_der, "ASK").map_err(|e| e.to_string())?;
                    Ok(Pinned {
                        product,
                        ark_der,
                        ark,
                        ask,
                    })
                })
                .collect()
        })
        .as_ref()
        .map(Vec::as_slice)
        .map_err(|e| Error::CertificateMalformed {
            cert: "built-in AMD",
            reason: e.clone(),
        })
}

pub(crate) fn verify(evidence: &SnpEvidence, at: u64) -> Result<VerifiedAttestation> {
    // Report.
    if evidence.report.len() != REPORT_LEN {
        return Err(Error::SnpReport(format!(
            "report is {} bytes, expected {REPORT_LEN}",
            evidence.report.len()
        )));
    }
    let report = AttestationReport::from_bytes(&evidence.report)
        .map_err(|e| Error::SnpReport(e.to_string()))?;
    // sev checks the signature over its re-encoding of the parsed report, which drops reserved
    // bytes; insisting on a canonical report makes every signed byte count.
    let canonical = report
        .to_bytes()
        .map_err(|e| Error::SnpReport(e.to_string()))?;
    if canonical.as_slice() != evidence.report.as_slice() {
        return Err(Error::SnpReport(
            "report is not canonical: reserved bytes are set".into(),
        ));
    }
    if report.sig_algo != SIG_ALGO_ECDSA_P384_SHA384 {
        return Err(Error::SnpUnsupported {
            what: "signature algorithm",
            value: report.sig_algo,
        });
    }
    let signing_key = report.key_info.signing_key();
    if signing_key != SIGNING_KEY_VCEK && signing_key != SIGNING_KEY_VLEK {
        return Err(Error::SnpUnsupported {
            what: "signing key",
            value: signing_key,
        });
    }
    let vek_name = if signing_key == SIGNING_KEY_VLEK {
        "VLEK"
    } else {
        "VCEK"
    };

    // Endorsement key certificate.
    let vek_x509 = X509::from_der(&evidence.vcek).map_err(|e| Error::CertificateMalformed {
        cert: vek_name,
        reason: e.to_string(),
    })?;
    let vek_tcb = CertTcb::read(&vek_x509, vek_name)?;
    let vek = Cert::from_x509(vek_x509);
    vek.check_valid_at(vek_name, at)?;

    // Chain to a pinned ARK.
    let pinned = pinned()?;
    let (product, ark_not_after, ask_not_after) = match &evidence.ca {
        Some(ca) => {
            let root = pinned
                .iter()
                .find(|p| p.ark_der == ca.ark)
                .ok_or(Error::UntrustedRoot)?;
            root.ark.check_valid_at("ARK", at)?;
            let ask = Cert::from_der(&ca.ask, "ASK")?;
            ask.check_valid_at("ASK", at)?;
            (&root.ark.sev, &ask.sev)
                .verify()
                .map_err(|e| Error::CertificateSignature {
                    cert: "ASK",
                    issuer: "ARK",
                    reason: e.to_string(),
                })?;
            (&ask.sev, &vek.sev)
                .verify()
                .map_err(|e| Error::CertificateSignature {
                    cert: vek_name,
                    issuer: "ASK",
                    reason: e.to_string(),
                })?;
            (root.product, root.ark.not_after, ask.not_after)
        }
        None => {
            if signing_key == SIGNING_KEY_VLEK {
                return Err(Error::UnknownProduct(
                    "a VLEK needs its ASVK supplied in the CA chain".into(),
                ));
            }
            let hint = product_hint(&report);
            let mut last_err = String::from("no candidate product");
            let mut found = None;
            for p in pinned
                .iter()
                .filter(|p| hint.is_none_or(|h| h == p.product))
            {
                match (&p.ask.sev, &vek.sev).verify() {
                    Ok(()) => {
                        found = Some(p);
                        break;
                    }
                    Err(e) => last_err = format!("{}: {e}", p.product),
                }
            }
            let p = found.ok_or(Error::UnknownProduct(last_err))?;
            p.ark.check_valid_at("ARK", at)?;
            p.ask.check_valid_at("ASK", at)?;
            (p.product, p.ark.not_after, p.ask.not_after)
        }
    };

    // Report signature.
    (&vek.sev, &report)
        .verify()
        .map_err(|e| Error::SnpSignature(e.to_string()))?;

    // The endorsement key certifies one TCB (and, for a VCEK, one chip): the report must match.
    let reported_tcb = SnpTcb {
        fmc: report.reported_tcb.fmc,
        bootloader: report.reported_tcb.bootloader,
        tee: report.reported_tcb.tee,
        snp: report.reported_tcb.snp,
        microcode: report.reported_tcb.microcode,
    };
    vek_tcb.check(
        &reported_tcb,
        &report.chip_id,
        signing_key == SIGNING_KEY_VCEK,
    )?;

    let claims = SnpClaims {
        product,
        version: report.version,
        policy: report.policy.into(),
        vmpl: report.vmpl,
        guest_svn: report.guest_svn,
        reported_tcb,
        host_data: report.host_data.to_vec(),
        family_id: report.family_id.to_vec(),
        image_id: report.image_id.to_vec(),
        id_key_digest: report.id_key_digest.to_vec(),
        chip_id: report.chip_id.to_vec(),
    };
    Ok(VerifiedAttestation {
        kind: TeeKind::SevSnp,
        measurement: report.measurement.to_vec(),
        tcb_status: TcbStatus::Unrated,
        advisory_ids: Vec::new(),
        report_data: report.report_data,
        valid_until: vek.not_after.min(ask_not_after).min(ark_not_after),
        debug: report.policy.debug_allowed(),
        simulated: false,
        claims: Claims::SevSnp(claims),
    })
}

/// The product named by the report's CPUID fields (report version 3 and later).
fn product_hint(report: &AttestationReport) -> Option<SnpProduct> {
    let (family, model) = (report.cpuid_fam_id?, report.cpuid_mod_id?);
    match sev::Generation::identify_cpu(family, model).ok()? {
        sev::Generation::Milan => Some(SnpProduct::Milan),
        sev::Generation::Genoa => Some(SnpProduct::Genoa),
        sev::Generation::Turin => Some(SnpProduct::Turin),
        _ => None,
    }
}

/// The TCB and chip an endorsement key certificate was issued for.
struct CertTcb {
    cert: &'static str,
    fmc: Option<u8>,
    bootloader: u8,
    tee: u8,
    snp: u8,
    microcode: u8,
    hw_id: Option<Vec<u8>>,
}

impl CertTcb {
    fn read(cert: &X509, name: &'static str) -> Result<Self> {
        let malformed = |reason: String| Error::CertificateMalformed { cert: name, reason };
        let exts = cert
            .tbs_certificate
            .extensions
            .as_deref()
            .unwrap_or_default();
        let find = |oid: ObjectIdentifier| {
            exts.iter()
                .find(|e| e.extn_id == oid)
                .map(|e| e.extn_value.as_bytes())
        };
        let spl = |oid: ObjectIdentifier, field: &str| -> Result<Option<u8>> {
            find(oid)
                .map(|v| u8::from_der(v).map_err(|e| malformed(format!("{field} SPL: {e}"))))
                .transpose()
        };
        let required = |oid, field: &str| {
            spl(oid, field)?.ok_or_else(|| malformed(format!("missing {field} SPL extension")))
        };
        // hwID holds the chip id's raw octets (64 bytes; 8 for Turin), not a DER value.
        let hw_id = find(OID_HW_ID).map(<[u8]>::to_vec);
        Ok(Self {
            cert: name,
            fmc: spl(OID_FMC_SPL, "FMC")?,
            bootloader: required(OID_BL_SPL, "bootloader")?,
            tee: required(OID_TEE_SPL, "TEE")?,
            snp: required(OID_SNP_SPL, "SNP")?,
            microcode: required(OID_UCODE_SPL, "microcode")?,
            hw_id,
        })
    }

    fn check(&self, tcb: &SnpTcb, chip_id: &[u8; 64], is_vcek: bool) -> Result<()> {
        let pairs = [
            ("bootloader", self.bootloader, tcb.bootloader),
            ("TEE", self.tee, tcb.tee),
            ("SNP", self.snp, tcb.snp),
            ("microcode", self.microcode, tcb.microcode),
            ("FMC", self.fmc.unwrap_or(0), tcb.fmc.unwrap_or(0)),
        ];
        for (field, cert, report) in pairs {
            if cert != report {
                return Err(Error::VcekTcbMismatch {
                    field,
                    cert,
                    report,
                });
            }
        }
        if is_vcek {
            let hw_id = self.hw_id.as_deref().ok_or(Error::CertificateMalformed {
                cert: self.cert,
                reason: "missing hwID extension".into(),
            })?;
            // Turin VCEKs carry an 8-byte hwID; the rest of the report's CHIP_ID is zero.
            let matches = hw_id.len() <= chip_id.len()
                && chip_id.starts_with(hw_id)
                && chip_id[hw_id.len()..].iter().all(|&b| b == 0);
            if !matches {
                return Err(Error::VcekChipMismatch {
                    cert: hex::encode(hw_id),
                    report: hex::encode(chip_id),
                });
            }
        }
        Ok(())
    }
}
