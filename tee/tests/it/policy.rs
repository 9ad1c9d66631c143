use vichain_tee::{
    Error, Evidence, Policy, SnpTcb, TcbStatus, TeeKind, VerifiedAttestation, Verifier,
    check_binding,
};

use crate::{DCAP_AT, SNP_AT, sgx, snp_evidence};

fn snp() -> VerifiedAttestation {
    Verifier::new()
        .verify(&Evidence::SevSnp(snp_evidence()), SNP_AT)
        .expect("genuine SNP")
}

fn snp_policy(att: &VerifiedAttestation) -> Policy {
    Policy {
        allowed_kinds: [TeeKind::SevSnp].into(),
        allowed_measurements: Some([att.measurement.clone()].into()),
        ..Policy::default()
    }
}

#[test]
fn default_policy_accepts_nothing() {
    assert_eq!(
        Policy::default().check(&snp()),
        Err(Error::KindNotAllowed(TeeKind::SevSnp))
    );
}

#[test]
fn snp_policy_checks_kind_measurement_and_tcb_version() {
    let att = snp();
    let mut policy = snp_policy(&att);
    assert_eq!(policy.check(&att), Ok(()));

    policy.allowed_kinds = [TeeKind::Tdx, TeeKind::Sgx].into();
    assert_eq!(
        policy.check(&att),
        Err(Error::KindNotAllowed(TeeKind::SevSnp))
    );

    let mut policy = snp_policy(&att);
    policy.allowed_measurements = Some([vec![0; 48]].into());
    assert_eq!(
        policy.check(&att),
        Err(Error::MeasurementNotAllowed(att.measurement_hex()))
    );

    // An Intel-style minimum cannot be met by SNP, which has no vendor status...
    let mut policy = snp_policy(&att);
    policy.min_tcb_status = Some(TcbStatus::UpToDate);
    assert_eq!(policy.check(&att), Err(Error::TcbUnrated(TeeKind::SevSnp)));
    // ... it is met through a minimum SNP TCB version.
    let vichain_tee::Claims::SevSnp(claims) = &att.claims else {
        panic!("SNP claims expected")
    };
    policy.min_snp_tcb = Some(claims.reported_tcb);
    assert_eq!(policy.check(&att), Ok(()));
    let higher = SnpTcb {
        microcode: claims.reported_tcb.microcode.saturating_add(1),
        ..claims.reported_tcb
    };
    policy.min_snp_tcb = Some(higher);
    assert_eq!(
        policy.check(&att),
        Err(Error::SnpTcbTooLow {
            reported: claims.reported_tcb,
            minimum: higher
        })
    );
}

#[test]
fn debug_guests_are_rejected_unless_allowed() {
    let mut att = snp();
    att.debug = true;
    let mut policy = snp_policy(&att);
    assert_eq!(
        policy.check(&att),
        Err(Error::DebugNotAllowed(TeeKind::SevSnp))
    );
    policy.allow_debug = true;
    assert_eq!(policy.check(&att), Ok(()));
}

#[test]
fn revoked_tcb_is_never_accepted() {
    let mut att = Verifier::new().verify(&sgx(), DCAP_AT).expect("SGX");
    att.tcb_status = TcbStatus::Revoked;
    let policy = Policy {
        allowed_kinds: [TeeKind::Sgx].into(),
        ..Policy::default()
    };
    assert_eq!(policy.check(&att), Err(Error::TcbRevoked));
}

#[test]
fn sgx_configuration_needed_meets_a_lenient_minimum_only() {
    let att = Verifier::new().verify(&sgx(), DCAP_AT).expect("SGX");
    let mut policy = Policy {
        allowed_kinds: [TeeKind::Sgx].into(),
        min_tcb_status: Some(TcbStatus::SWHardeningNeeded),
        ..Policy::default()
    };
    assert!(matches!(
        policy.check(&att),
        Err(Error::TcbStatusTooLow { .. })
    ));
    policy.min_tcb_status = Some(TcbStatus::ConfigurationAndSWHardeningNeeded);
    assert_eq!(policy.check(&att), Ok(()));
}

#[test]
fn vendor_fixtures_do_not_carry_our_binding() {
    let att = snp();
    assert!(matches!(
        check_binding(
            &att,
            &[1; 32],
            "vichain",
            &[0; 32],
            &vichain_tee::EncryptionKey::derive(&[1; 32])
                .expect("key")
                .public_key()
        ),
        Err(Error::ReportDataMismatch { .. })
    ));
}

#[test]
fn policy_round_trips_through_json_with_hex_measurements() {
    let att = snp();
    let policy = Policy {
        min_tcb_status: Some(TcbStatus::UpToDate),
        ..snp_policy(&att)
    };
    let json = serde_json::to_string(&policy).expect("serialize");
    assert!(json.contains(&att.measurement_hex()), "{json}");
    assert_eq!(serde_json::from_str::<Policy>(&json).ok(), Some(policy));
    let att_json = serde_json::to_string(&att).expect("serialize attestation");
    assert_eq!(
        serde_json::from_str::<VerifiedAttestation>(&att_json).ok(),
        Some(att)
    );
}
