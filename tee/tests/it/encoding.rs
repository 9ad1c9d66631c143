use vichain_tee::{Error, Evidence, MAX_EVIDENCE_LEN, SimulatedAttester, Verifier};

use crate::{DCAP_AT, SNP_AT, sgx, snp_ca, snp_evidence, tdx, tdx_td15ex};

fn all_evidence() -> Vec<Evidence> {
    let mut snp_with_ca = snp_evidence();
    snp_with_ca.ca = Some(snp_ca());
    vec![
        Evidence::SevSnp(snp_evidence()),
        Evidence::SevSnp(snp_with_ca),
        sgx(),
        tdx(),
        tdx_td15ex(),
        SimulatedAttester::from_secret([5; 32]).attest(&[1; 48], [2; 64], 10),
    ]
}

#[test]
fn genuine_evidence_round_trips_and_fits_the_bound() {
    for e in all_evidence() {
        let bytes = e.encode();
        assert!(
            bytes.len() <= MAX_EVIDENCE_LEN,
            "{:?}: {}",
            e.kind(),
            bytes.len()
        );
        assert_eq!(Evidence::decode(&bytes).as_ref(), Ok(&e));
    }
}

#[test]
fn decoded_evidence_verifies() {
    let v = Verifier::new();
    let snp = v
        .verify_bytes(&Evidence::SevSnp(snp_evidence()).encode(), SNP_AT)
        .expect("SNP");
    assert_eq!(snp.measurement.len(), 48);
    v.verify_bytes(&tdx().encode(), DCAP_AT).expect("TDX");
    v.verify_bytes(&sgx().encode(), DCAP_AT).expect("SGX");
}

#[test]
fn oversize_input_is_rejected_before_parsing() {
    let mut bytes = tdx().encode();
    bytes.resize(MAX_EVIDENCE_LEN + 1, 0);
    assert_eq!(
        Evidence::decode(&bytes),
        Err(Error::TooLarge {
            len: MAX_EVIDENCE_LEN + 1,
            max: MAX_EVIDENCE_LEN
        })
    );
}

#[test]
fn every_truncation_is_an_error() {
    for e in all_evidence() {
        let bytes = e.encode();
        // Every prefix near the header and fields' boundaries, and a stride through the rest.
        let cuts = (0..bytes.len().min(64)).chain((64..bytes.len()).step_by(7));
        for n in cuts {
            assert!(
                matches!(Evidence::decode(&bytes[..n]), Err(Error::Malformed(_))),
                "{:?} cut at {n}",
                e.kind()
            );
        }
    }
}

#[test]
fn garbage_is_an_error_never_a_panic() {
    let v = Verifier::new().allow_simulated(true);
    for seed in 1..200u64 {
        let len = (seed as usize * 37) % 3000;
        let junk = crate::noise(seed, len);
        assert!(v.verify_bytes(&junk, DCAP_AT).is_err());
        // Garbage behind a valid header for each kind.
        for tag in 1..=4u8 {
            let mut bytes = b"VTEE\x01".to_vec();
            bytes.push(tag);
            bytes.extend_from_slice(&junk);
            assert!(v.verify_bytes(&bytes, DCAP_AT).is_err());
        }
    }
}

#[test]
fn flipping_any_byte_of_encoded_snp_evidence_never_verifies_silently_wrong() {
    // Every single-byte change either fails or (for bytes the encoding ignores) cannot exist:
    // the decoded evidence must differ or verification must fail.
    let bytes = Evidence::SevSnp(snp_evidence()).encode();
    let genuine = Verifier::new()
        .verify_bytes(&bytes, SNP_AT)
        .expect("genuine");
    for i in (0..bytes.len()).step_by(13) {
        let mut b = bytes.clone();
        b[i] ^= 0x20;
        if let Ok(att) = Verifier::new().verify_bytes(&b, SNP_AT) {
            // Only certificate bytes that signatures do not cover (e.g. in an unsigned outer DER
            // field) could leave the result verifiable; the claims must then be unchanged.
            assert_eq!(att, genuine, "byte {i} changed the verified claims");
        }
    }
}
