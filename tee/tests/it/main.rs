//! Verification of genuine vendor evidence (see `tests/data/README.md`) and of tampered copies.

mod dcap;
mod encoding;
mod policy;
mod sealed;
mod simulated;
mod snp;

use vichain_tee::{Collateral, Evidence, SnpCaChain, SnpEvidence};

/// 2025-01-01T00:00:00Z: inside the Milan VCEK's validity.
pub const SNP_AT: u64 = 1_735_689_600;
/// 2025-06-25T00:00:00Z: inside the SGX and TDX collateral's validity.
pub const DCAP_AT: u64 = 1_750_809_600;
/// 2026-03-01T00:00:00Z: inside the outdated TDX quote's collateral validity.
pub const OUTDATED_AT: u64 = 1_772_323_200;
/// 2026-10-20T00:00:00Z: inside the TD 1.5ex quote's collateral validity.
pub const TD15EX_AT: u64 = 1_792_454_400;

pub fn snp_report() -> Vec<u8> {
    hex::decode(include_str!("../data/report_milan.hex").trim()).unwrap_or_default()
}

pub fn snp_evidence() -> SnpEvidence {
    SnpEvidence {
        report: snp_report(),
        vcek: include_bytes!("../data/vcek_milan.der").to_vec(),
        ca: None,
    }
}

pub fn snp_ca() -> SnpCaChain {
    SnpCaChain::from_pem(include_bytes!("../data/cert_chain_milan")).expect("Milan chain")
}

pub fn collateral(json: &[u8]) -> Collateral {
    Collateral::from_json(json).expect("collateral JSON")
}

pub fn sgx() -> Evidence {
    Evidence::dcap(
        include_bytes!("../data/sgx_quote").to_vec(),
        collateral(include_bytes!("../data/sgx_quote_collateral.json")),
    )
    .expect("SGX quote")
}

pub fn tdx() -> Evidence {
    Evidence::dcap(
        include_bytes!("../data/tdx_quote").to_vec(),
        collateral(include_bytes!("../data/tdx_quote_collateral.json")),
    )
    .expect("TDX quote")
}

pub fn tdx_outdated() -> Evidence {
    Evidence::dcap(
        include_bytes!("../data/tdx_quote_outdated").to_vec(),
        collateral(include_bytes!("../data/tdx_quote_outdated_collateral.json")),
    )
    .expect("outdated TDX quote")
}

pub fn tdx_td15ex() -> Evidence {
    Evidence::dcap(
        include_bytes!("../data/tdx_quote_td15ex").to_vec(),
        collateral(include_bytes!("../data/tdx_quote_td15ex_collateral.json")),
    )
    .expect("TD 1.5ex quote")
}

/// Deterministic bytes for garbage-input tests (xorshift64).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
