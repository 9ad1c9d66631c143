use vichain_tee::{Claims, Error, Evidence, SnpProduct, TcbStatus, TeeKind, Verifier};

use crate::{SNP_AT, snp_ca, snp_evidence, snp_report};

const MEASUREMENT_OFFSET: usize = 0x90;
const SIGNATURE_OFFSET: usize = 0x2A0;
/// 2030-04-03T19:23:43Z, the Milan VCEK's notAfter (earlier than the ASK's and ARK's).
const VCEK_NOT_AFTER: u64 = 1_901_474_623;

fn verify(
    e: vichain_tee::SnpEvidence,
    at: u64,
) -> vichain_tee::Result<vichain_tee::VerifiedAttestation> {
    Verifier::new().verify(&Evidence::SevSnp(e), at)
}

#[test]
fn milan_report_verifies_with_its_measurement() {
    let att = verify(snp_evidence(), SNP_AT).expect("genuine Milan report");
    let report = snp_report();
    assert_eq!(att.kind, TeeKind::SevSnp);
    assert_eq!(att.measurement.len(), 48);
    assert_eq!(
        att.measurement_hex(),
        hex::encode(&report[MEASUREMENT_OFFSET..MEASUREMENT_OFFSET + 48])
    );
    assert_eq!(att.measurement_hex(), MILAN_MEASUREMENT);
    assert_eq!(att.report_data[..], report[0x50..0x90]);
    assert_eq!(att.tcb_status, TcbStatus::Unrated);
    assert_eq!(att.valid_until, VCEK_NOT_AFTER);
    assert!(!att.simulated);
    let Claims::SevSnp(claims) = &att.claims else {
        panic!("SNP claims expected, got {:?}", att.claims)
    };
    assert_eq!(claims.product, SnpProduct::Milan);
    assert_eq!(claims.version, 2);
    assert_eq!(claims.policy, 0x30000);
    assert!(!att.debug);
}

/// The Milan fixture's launch measurement (report bytes 0x90..0xC0).
const MILAN_MEASUREMENT: &str = "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";

#[test]
fn milan_report_verifies_with_kds_chain() {
    let mut e = snp_evidence();
    e.ca = Some(snp_ca());
    let att = verify(e, SNP_AT).expect("genuine Milan report with KDS chain");
    assert_eq!(att.measurement_hex(), MILAN_MEASUREMENT);
}

#[test]
fn flipped_measurement_byte_breaks_the_signature() {
    let mut e = snp_evidence();
    e.report[MEASUREMENT_OFFSET] ^= 1;
    assert!(matches!(verify(e, SNP_AT), Err(Error::SnpSignature(_))));
}

#[test]
fn flipped_report_data_and_policy_bytes_break_the_signature() {
    for offset in [0x08, 0x50, 0x8F] {
        let mut e = snp_evidence();
        e.report[offset] ^= 0x01;
        let err = verify(e, SNP_AT).expect_err("tampered report");
        assert!(
            matches!(err, Error::SnpSignature(_)),
            "offset {offset:#x}: {err}"
        );
    }
}

#[test]
fn flipped_reserved_byte_is_rejected() {
    let mut e = snp_evidence();
    e.report[0x2A0 - 1] ^= 0xFF;
    let err = verify(e, SNP_AT).expect_err("non-canonical report");
    assert!(matches!(err, Error::SnpReport(_)), "{err}");
}

#[test]
fn flipped_signature_byte_is_rejected() {
    let mut e = snp_evidence();
    e.report[SIGNATURE_OFFSET + 3] ^= 0x01;
    assert!(matches!(verify(e, SNP_AT), Err(Error::SnpSignature(_))));
}

#[test]
fn flipped_vcek_byte_is_rejected() {
    // Offset 40 lies in the VCEK's to-be-signed part, so the DER still parses.
    let mut e = snp_evidence();
    e.vcek[40] ^= 0xFF;
    let err = verify(e.clone(), SNP_AT).expect_err("tampered VCEK");
    assert!(matches!(err, Error::UnknownProduct(_)), "{err}");

    e.ca = Some(snp_ca());
    let err = verify(e, SNP_AT).expect_err("tampered VCEK with chain");
    assert!(
        matches!(err, Error::CertificateSignature { cert: "VCEK", .. }),
        "{err}"
    );
}

#[test]
fn flipped_vcek_public_key_is_rejected() {
    // The last bytes before the signature algorithm: inside the TBS, in the extensions or key.
    let mut e = snp_evidence();
    let n = e.vcek.len();
    e.vcek[n - 200] ^= 0x01;
    assert!(verify(e, SNP_AT).is_err());
}

#[test]
fn flipped_ask_or_ark_byte_is_rejected() {
    let mut e = snp_evidence();
    let mut ca = snp_ca();
    ca.ask[60] ^= 0x01;
    e.ca = Some(ca);
    let err = verify(e, SNP_AT).expect_err("tampered ASK");
    assert!(
        matches!(
            err,
            Error::CertificateSignature { cert: "ASK", .. } | Error::CertificateMalformed { .. }
        ),
        "{err}"
    );

    let mut e = snp_evidence();
    let mut ca = snp_ca();
    ca.ark[60] ^= 0x01;
    e.ca = Some(ca);
    assert_eq!(verify(e, SNP_AT), Err(Error::UntrustedRoot));
}

#[test]
fn vcek_is_checked_against_the_verification_time() {
    let err = verify(snp_evidence(), VCEK_NOT_AFTER + 1).expect_err("expired VCEK");
    assert!(
        matches!(err, Error::CertificateNotValidAt { cert: "VCEK", .. }),
        "{err}"
    );
    // Before the VCEK was issued (2023-04-03).
    let err = verify(snp_evidence(), 1_600_000_000).expect_err("not yet valid");
    assert!(matches!(err, Error::CertificateNotValidAt { .. }), "{err}");
    assert!(verify(snp_evidence(), VCEK_NOT_AFTER).is_ok());
}

#[test]
fn truncated_and_garbage_reports_are_errors() {
    let report = snp_report();
    for len in [0, 1, 4, 0x2A0, report.len() - 1] {
        let mut e = snp_evidence();
        e.report.truncate(len);
        assert!(
            matches!(verify(e, SNP_AT), Err(Error::SnpReport(_))),
            "len {len}"
        );
    }
    for seed in 0..64 {
        let mut e = snp_evidence();
        e.report = crate::noise(seed, report.len());
        assert!(verify(e, SNP_AT).is_err());
        let mut e = snp_evidence();
        e.vcek = crate::noise(seed, 1360);
        assert!(verify(e, SNP_AT).is_err());
    }
    // Garbage only in the version and the tail: the parser must not panic on odd versions.
    for version in [0u8, 1, 3, 5, 0xFF] {
        let mut e = snp_evidence();
        e.report[0] = version;
        assert!(verify(e, SNP_AT).is_err(), "version {version}");
    }
}
