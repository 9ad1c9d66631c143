use vichain_tee::{
    Claims, DcapEvidence, Error, Evidence, Policy, TcbStatus, TeeKind, VerifiedAttestation,
    Verifier,
};

use crate::{DCAP_AT, OUTDATED_AT, TD15EX_AT, sgx, tdx, tdx_outdated, tdx_td15ex};

const SGX_MR_ENCLAVE: &str = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb";
const SGX_MR_SIGNER: &str = "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6";
const TDX_MR_TD: &str = "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7";
const TD15EX_MR_TD: &str = "2a674327c50218dba880066b349b8d559d749ed68dce33fd651c184a877d084b07a9e583767a7ad5da13ed91deec2b70";
/// 2025-07-19T10:01:18Z: the earliest nextUpdate in the SGX collateral (QE identity).
const SGX_COLLATERAL_NEXT_UPDATE: u64 = 1_752_919_278;

/// Offsets into a v3/v4 quote: 48-byte header, then the report body.
const SGX_BODY: usize = 48;
const SGX_SIGNED_LEN: usize = 48 + 384;
const TDX_SIGNED_LEN: usize = 48 + 584;

fn verify(e: &Evidence, at: u64) -> vichain_tee::Result<VerifiedAttestation> {
    Verifier::new().verify(e, at)
}

fn parts(e: Evidence) -> DcapEvidence {
    match e {
        Evidence::Tdx(d) | Evidence::Sgx(d) => d,
        other => panic!("DCAP evidence expected, got {:?}", other.kind()),
    }
}

fn rejected(e: &Evidence, at: u64) -> String {
    match verify(e, at) {
        Err(Error::Quote { reason, .. }) => reason,
        other => panic!("expected a quote rejection, got {other:?}"),
    }
}

#[test]
fn sgx_quote_verifies_with_its_mrenclave_and_tcb() {
    let e = sgx();
    assert_eq!(e.kind(), TeeKind::Sgx);
    let att = verify(&e, DCAP_AT).expect("genuine SGX quote");
    assert_eq!(att.kind, TeeKind::Sgx);
    assert_eq!(att.measurement_hex(), SGX_MR_ENCLAVE);
    assert_eq!(att.tcb_status, TcbStatus::ConfigurationAndSWHardeningNeeded);
    assert_eq!(att.advisory_ids, ["INTEL-SA-00289", "INTEL-SA-00615"]);
    assert_eq!(att.valid_until, SGX_COLLATERAL_NEXT_UPDATE);
    assert!(!att.debug && !att.simulated);
    let Claims::Sgx(claims) = &att.claims else {
        panic!("SGX claims expected")
    };
    assert_eq!(hex::encode(&claims.mr_signer), SGX_MR_SIGNER);
    assert_eq!(
        att.report_data[..],
        include_bytes!("../data/sgx_quote")[SGX_BODY + 320..SGX_BODY + 384]
    );
}

#[test]
fn tdx_quote_verifies_with_its_mrtd_and_rtmrs() {
    let e = tdx();
    assert_eq!(e.kind(), TeeKind::Tdx);
    let att = verify(&e, DCAP_AT).expect("genuine TDX quote");
    assert_eq!(att.kind, TeeKind::Tdx);
    assert_eq!(att.measurement_hex(), TDX_MR_TD);
    assert_eq!(att.tcb_status, TcbStatus::UpToDate);
    assert!(att.valid_until > DCAP_AT);
    let Claims::Tdx(claims) = &att.claims else {
        panic!("TDX claims expected")
    };
    assert_eq!(claims.rtmrs.len(), 4);
    assert!(claims.rtmrs.iter().all(|r| r.len() == 48));
    assert_eq!(hex::encode(&claims.mr_td), TDX_MR_TD);
}

#[test]
fn tdx_15ex_quote_verifies() {
    let att = verify(&tdx_td15ex(), TD15EX_AT).expect("genuine TD 1.5ex quote");
    assert_eq!(att.measurement_hex(), TD15EX_MR_TD);
    assert_eq!(att.tcb_status, TcbStatus::UpToDate);
}

#[test]
fn tcb_below_up_to_date_is_reported_and_a_minimum_rejects_it() {
    let att = verify(&sgx(), DCAP_AT).expect("genuine SGX quote");
    assert_eq!(att.tcb_status, TcbStatus::ConfigurationAndSWHardeningNeeded);
    let mut policy = Policy {
        allowed_kinds: [TeeKind::Sgx].into(),
        ..Policy::default()
    };
    assert_eq!(policy.check(&att), Ok(()));
    policy.min_tcb_status = Some(TcbStatus::UpToDate);
    assert_eq!(
        policy.check(&att),
        Err(Error::TcbStatusTooLow {
            status: TcbStatus::ConfigurationAndSWHardeningNeeded,
            minimum: TcbStatus::UpToDate
        })
    );
    policy.min_tcb_status = Some(TcbStatus::OutOfDate);
    assert_eq!(policy.check(&att), Ok(()));
}

#[test]
fn outdated_tdx_platform_is_rejected_for_its_tcb() {
    // The platform's SVNs are below every TCB level in the collateral: Intel's QVL calls this
    // an unsupported TCB (dcap-qvl's own test only accepts it through a TCB override).
    let reason = rejected(&tdx_outdated(), OUTDATED_AT);
    assert!(reason.contains("TCB level"), "{reason}");
}

#[test]
fn up_to_date_tdx_meets_a_strict_minimum() {
    let att = verify(&tdx(), DCAP_AT).expect("genuine TDX quote");
    let policy = Policy {
        allowed_kinds: [TeeKind::Tdx].into(),
        allowed_measurements: Some([att.measurement.clone()].into()),
        min_tcb_status: Some(TcbStatus::UpToDate),
        ..Policy::default()
    };
    assert_eq!(policy.check(&att), Ok(()));
}

#[test]
fn flipped_report_body_byte_is_rejected() {
    // MRENCLAVE, report data, and (for TDX) MRTD.
    for offset in [SGX_BODY + 64, SGX_BODY + 330] {
        let mut d = parts(sgx());
        d.quote[offset] ^= 0x01;
        let reason = rejected(&Evidence::Sgx(d), DCAP_AT);
        assert!(reason.to_lowercase().contains("signature"), "{reason}");
    }
    let mut d = parts(tdx());
    d.quote[184] ^= 0x01;
    let reason = rejected(&Evidence::Tdx(d), DCAP_AT);
    assert!(reason.to_lowercase().contains("signature"), "{reason}");
}

#[test]
fn flipped_quote_signature_byte_is_rejected() {
    // Auth data: 4-byte length, then the 64-byte ECDSA signature.
    let mut d = parts(sgx());
    d.quote[SGX_SIGNED_LEN + 4 + 10] ^= 0x01;
    rejected(&Evidence::Sgx(d), DCAP_AT);
    let mut d = parts(tdx());
    d.quote[TDX_SIGNED_LEN + 4 + 40] ^= 0x01;
    rejected(&Evidence::Tdx(d), DCAP_AT);
}

#[test]
fn flipped_pck_certificate_byte_is_rejected() {
    let mut d = parts(tdx());
    let begin = find(&d.quote, b"-----BEGIN CERTIFICATE-----").expect("PCK chain in quote");
    let at = begin + 28 + 300;
    d.quote[at] = if d.quote[at] == b'A' { b'B' } else { b'A' };
    rejected(&Evidence::Tdx(d), DCAP_AT);
}

#[test]
fn flipped_collateral_bytes_are_rejected() {
    type Tamper = fn(&mut vichain_tee::Collateral);
    let tampers: [(&str, Tamper); 6] = [
        ("tcb_info", |c| {
            c.tcb_info = c.tcb_info.replacen(
                "\"tcbEvaluationDataNumber\":",
                "\"tcbEvaluationDataNumber\":1",
                1,
            )
        }),
        ("tcb_info_signature", |c| c.tcb_info_signature[5] ^= 1),
        ("qe_identity", |c| {
            c.qe_identity = c.qe_identity.replacen("\"isvsvn\":", "\"isvsvn\":1", 1)
        }),
        ("qe_identity_signature", |c| {
            c.qe_identity_signature[40] ^= 1
        }),
        ("root_ca_crl", |c| {
            let n = c.root_ca_crl.len();
            c.root_ca_crl[n - 10] ^= 1
        }),
        ("pck_crl", |c| {
            let n = c.pck_crl.len();
            c.pck_crl[n - 10] ^= 1
        }),
    ];
    for (what, tamper) in tampers {
        for e in [sgx(), tdx()] {
            let kind = e.kind();
            let mut d = parts(e);
            let before = d.collateral.clone();
            tamper(&mut d.collateral);
            assert_ne!(before, d.collateral, "{what} was not changed");
            let e = if kind == TeeKind::Sgx {
                Evidence::Sgx(d)
            } else {
                Evidence::Tdx(d)
            };
            let err = verify(&e, DCAP_AT).expect_err(what);
            assert!(matches!(err, Error::Quote { .. }), "{what}: {err}");
        }
    }
}

#[test]
fn collateral_is_rejected_once_expired() {
    let att = verify(&sgx(), DCAP_AT).expect("valid now");
    // A month after its next update, and years later.
    for at in [
        att.valid_until + 1,
        att.valid_until + 30 * 86_400,
        1_924_992_000,
    ] {
        let reason = rejected(&sgx(), at);
        assert!(
            reason.to_lowercase().contains("expired"),
            "at {at}: {reason}"
        );
        let reason = rejected(&tdx(), at);
        assert!(
            reason.to_lowercase().contains("expired"),
            "at {at}: {reason}"
        );
    }
    assert_eq!(
        att.check_valid_at(att.valid_until + 1),
        Err(Error::Expired {
            valid_until: att.valid_until,
            at: att.valid_until + 1
        })
    );
}

#[test]
fn collateral_from_before_its_issue_is_rejected() {
    // 2025-01-01: before the collateral was issued.
    assert!(verify(&sgx(), 1_735_689_600).is_err());
}

#[test]
fn quote_labelled_with_the_wrong_kind_is_rejected() {
    let e = Evidence::Tdx(parts(sgx()));
    assert_eq!(
        verify(&e, DCAP_AT),
        Err(Error::QuoteKindMismatch {
            expected: TeeKind::Tdx,
            found: TeeKind::Sgx
        })
    );
}

#[test]
fn collateral_of_another_quote_is_rejected() {
    let mut d = parts(tdx());
    d.collateral = parts(sgx()).collateral;
    assert!(verify(&Evidence::Tdx(d), DCAP_AT).is_err());
}

/// Where the TDX fixture's quote ends: its auth data length follows the signed part.
fn tdx_quote_end(quote: &[u8]) -> usize {
    let len: [u8; 4] = quote[TDX_SIGNED_LEN..TDX_SIGNED_LEN + 4]
        .try_into()
        .expect("4 bytes");
    TDX_SIGNED_LEN + 4 + u32::from_le_bytes(len) as usize
}

#[test]
fn zero_padding_after_a_quote_is_tolerated_other_trailing_data_is_not() {
    let quote = parts(tdx()).quote;
    let end = tdx_quote_end(&quote);
    assert!(end < quote.len(), "the TDX fixture is zero-padded");
    let mut d = parts(tdx());
    d.quote.truncate(end);
    verify(&Evidence::Tdx(d), DCAP_AT).expect("unpadded quote");
    let mut d = parts(tdx());
    *d.quote.last_mut().expect("non-empty") = 1;
    let reason = rejected(&Evidence::Tdx(d), DCAP_AT);
    assert!(reason.contains("not zero padding"), "{reason}");
}

#[test]
fn truncated_and_garbage_quotes_are_errors() {
    let quote = parts(tdx()).quote;
    let end = tdx_quote_end(&quote);
    for len in [
        0,
        1,
        47,
        48,
        100,
        TDX_SIGNED_LEN,
        TDX_SIGNED_LEN + 100,
        end - 1,
    ] {
        let mut d = parts(tdx());
        d.quote.truncate(len);
        assert!(verify(&Evidence::Tdx(d), DCAP_AT).is_err(), "len {len}");
    }
    for seed in 0..64 {
        let mut d = parts(tdx());
        d.quote = crate::noise(seed, quote.len());
        assert!(verify(&Evidence::Tdx(d), DCAP_AT).is_err());
        // Garbage behind a genuine header.
        let mut d = parts(tdx());
        d.quote[48..].copy_from_slice(&crate::noise(seed, quote.len() - 48));
        assert!(verify(&Evidence::Tdx(d), DCAP_AT).is_err());
    }
    assert!(Evidence::dcap(vec![0; 10], parts(tdx()).collateral).is_err());
}

#[test]
fn garbage_collateral_json_is_an_error() {
    assert!(vichain_tee::Collateral::from_json(b"{").is_err());
    assert!(vichain_tee::Collateral::from_json(&crate::noise(3, 4096)).is_err());
    let huge = vec![b' '; vichain_tee::MAX_COLLATERAL_JSON_LEN + 1];
    assert!(matches!(
        vichain_tee::Collateral::from_json(&huge),
        Err(Error::TooLarge { .. })
    ));
    let c = parts(sgx()).collateral;
    assert_eq!(vichain_tee::Collateral::from_json(&c.to_json()), Ok(c));
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
