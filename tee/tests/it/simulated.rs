use vichain_tee::{
    EncryptionKey, Error, Evidence, Policy, SimulatedAttester, TcbStatus, TeeKind, Verifier,
    check_binding, expected_report_data,
};

const NOW: u64 = 1_800_000_000;

fn attester() -> SimulatedAttester {
    SimulatedAttester::from_secret([42; 32])
}

#[test]
fn simulated_evidence_is_refused_unless_enabled() {
    let e = attester().attest(&[7; 48], [0; 64], NOW + 60);
    assert_eq!(
        Verifier::new().verify(&e, NOW),
        Err(Error::SimulatedNotAllowed)
    );
    let att = Verifier::new()
        .allow_simulated(true)
        .verify(&e, NOW)
        .expect("simulated allowed");
    assert!(att.simulated);
    assert_eq!(att.kind, TeeKind::Simulated);
    assert_eq!(att.tcb_status, TcbStatus::Unrated);
    assert_eq!(att.valid_until, NOW + 60);
    assert_eq!(att.measurement, vec![7; 48]);
}

#[test]
fn simulated_evidence_binds_worker_chain_nonce_and_encryption_key() {
    let worker = [3u8; 32];
    let nonce = [4u8; 32];
    let ek = EncryptionKey::derive(&[5; 32]).expect("key").public_key();
    let other_ek = EncryptionKey::derive(&[6; 32]).expect("key").public_key();
    let rd = expected_report_data(&worker, "vichain-dev", &nonce, &ek);
    let e = attester().attest(&[7; 48], rd, NOW + 60);
    let att = Verifier::new()
        .allow_simulated(true)
        .verify(&e, NOW)
        .expect("verifies");
    assert_eq!(
        check_binding(&att, &worker, "vichain-dev", &nonce, &ek),
        Ok(())
    );
    for (w, chain, n, k) in [
        ([9u8; 32], "vichain-dev", nonce, ek),
        (worker, "vichain-main", nonce, ek),
        (worker, "vichain-dev", [5u8; 32], ek),
        (worker, "vichain-dev", nonce, other_ek),
    ] {
        assert!(matches!(
            check_binding(&att, &w, chain, &n, &k),
            Err(Error::ReportDataMismatch { .. })
        ));
    }
}

#[test]
fn tampered_or_expired_simulated_evidence_is_rejected() {
    let v = Verifier::new().allow_simulated(true);
    let Evidence::Simulated(genuine) = attester().attest(&[7; 48], [1; 64], NOW + 60) else {
        panic!("simulated evidence expected")
    };
    let mut e = genuine.clone();
    e.measurement[0] ^= 1;
    assert_eq!(
        v.verify(&Evidence::Simulated(e), NOW),
        Err(Error::SimulatedSignature)
    );
    let mut e = genuine.clone();
    e.expires_at += 1;
    assert_eq!(
        v.verify(&Evidence::Simulated(e), NOW),
        Err(Error::SimulatedSignature)
    );
    let mut e = genuine.clone();
    e.signature[0] ^= 1;
    assert_eq!(
        v.verify(&Evidence::Simulated(e), NOW),
        Err(Error::SimulatedSignature)
    );
    let mut e = genuine.clone();
    e.public_key = SimulatedAttester::from_secret([1; 32]).public_key();
    assert_eq!(
        v.verify(&Evidence::Simulated(e), NOW),
        Err(Error::SimulatedSignature)
    );
    assert_eq!(
        v.verify(&Evidence::Simulated(genuine), NOW + 61),
        Err(Error::SimulatedExpired {
            expires_at: NOW + 60,
            at: NOW + 61
        })
    );
}

#[test]
fn policy_accepts_simulated_only_when_asked() {
    let att = Verifier::new()
        .allow_simulated(true)
        .verify(&attester().attest(&[7; 48], [0; 64], NOW + 60), NOW)
        .expect("verifies");
    let mut policy = Policy {
        allowed_kinds: TeeKind::ALL.into_iter().collect(),
        min_tcb_status: Some(TcbStatus::UpToDate),
        ..Policy::default()
    };
    assert_eq!(policy.check(&att), Err(Error::SimulatedNotAllowed));
    policy.allow_simulated = true;
    assert_eq!(policy.check(&att), Ok(()));
    policy.allowed_measurements = Some([vec![8; 48]].into());
    assert!(matches!(
        policy.check(&att),
        Err(Error::MeasurementNotAllowed(_))
    ));
}
