//! Verification cost of each evidence kind against one raw ECDSA verify, and the cost of
//! sealing and opening job inputs (HPKE).
//!
//! `cargo bench -p vichain-tee --bench verify`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use dcap_qvl::config::CryptoProvider;
use sev::certs::snp::{Certificate, Verifiable};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;
use vichain_tee::{
    Collateral, EncryptionKey, Evidence, SealedInputContext, SnpCaChain, SnpEvidence, Verifier,
};

const SNP_AT: u64 = 1_735_689_600;
const DCAP_AT: u64 = 1_750_809_600;

fn data(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn snp(with_ca: bool) -> Evidence {
    let report_hex = String::from_utf8(data("report_milan.hex")).expect("hex text");
    Evidence::SevSnp(SnpEvidence {
        report: hex::decode(report_hex.trim()).expect("hex"),
        vcek: data("vcek_milan.der"),
        ca: with_ca.then(|| SnpCaChain::from_pem(&data("cert_chain_milan")).expect("chain")),
    })
}

fn dcap(quote: &str, collateral: &str) -> Evidence {
    let collateral = Collateral::from_json(&data(collateral)).expect("collateral");
    Evidence::dcap(data(quote), collateral).expect("quote")
}

/// DER `ECDSA-Sig-Value` from a raw 64-byte `r || s`.
fn der_signature(raw: &[u8; 64]) -> Vec<u8> {
    fn int(x: &[u8]) -> Vec<u8> {
        let start = x.iter().position(|&b| b != 0).unwrap_or(x.len() - 1);
        let mut v = x[start..].to_vec();
        if v[0] & 0x80 != 0 {
            v.insert(0, 0);
        }
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    }
    let (r, s) = (int(&raw[..32]), int(&raw[32..]));
    let mut out = vec![0x30, (r.len() + s.len()) as u8];
    out.extend(r);
    out.extend(s);
    out
}

fn bench(c: &mut Criterion) {
    let verifier = Verifier::new();
    let cases = [
        ("snp/verify/chain=builtin", snp(false), SNP_AT),
        ("snp/verify/chain=kds", snp(true), SNP_AT),
        (
            "tdx/verify/collateral=pcs",
            dcap("tdx_quote", "tdx_quote_collateral.json"),
            DCAP_AT,
        ),
        (
            "sgx/verify/collateral=pcs",
            dcap("sgx_quote", "sgx_quote_collateral.json"),
            DCAP_AT,
        ),
    ];
    for (name, evidence, at) in &cases {
        verifier.verify(evidence, *at).expect(name);
        c.bench_function(name, |b| {
            b.iter(|| verifier.verify(black_box(evidence), *at))
        });
    }

    // dcap-qvl 0.7 takes collateral by value and parses and verifies all of it (CRLs, TCB info,
    // QE identity and their issuer chains) on every call, before it looks at the quote's PCK
    // chain; it has no entry point for pre-verified collateral. A quote whose PCK certificate is
    // corrupted fails right after that collateral work, so its time bounds what a cache of
    // verified collateral could save.
    for (name, case) in [
        ("tdx/verify_until_pck_chain/collateral=pcs", &cases[2]),
        ("sgx/verify_until_pck_chain/collateral=pcs", &cases[3]),
    ] {
        let (Evidence::Tdx(e) | Evidence::Sgx(e)) = &case.1 else {
            unreachable!()
        };
        let mut broken = e.clone();
        let marker = b"-----BEGIN CERTIFICATE-----";
        let start = broken
            .quote
            .windows(marker.len())
            .position(|w| w == marker)
            .expect("PCK chain in the quote")
            + marker.len();
        // A base64 character well inside the PCK leaf's signed part.
        let i = start + 200;
        broken.quote[i] = if broken.quote[i] == b'A' { b'B' } else { b'A' };
        let broken = match &case.1 {
            Evidence::Tdx(_) => Evidence::Tdx(broken),
            _ => Evidence::Sgx(broken),
        };
        let err = verifier
            .verify(&broken, case.2)
            .expect_err("corrupted PCK leaf");
        eprintln!("{name}: fails with: {err}");
        c.bench_function(name, |b| {
            b.iter(|| verifier.verify(black_box(&broken), case.2))
        });
    }

    let tdx_bytes = cases[2].1.encode();
    c.bench_function("evidence/decode/kind=tdx", |b| {
        b.iter(|| Evidence::decode(black_box(&tdx_bytes)))
    });

    // One P-384 verify: the VCEK's signature over the SNP report (SHA-384 of 672 bytes).
    let Evidence::SevSnp(snp) = &cases[0].1 else {
        unreachable!()
    };
    let report = AttestationReport::from_bytes(&snp.report).expect("report");
    let vcek = Certificate::from_der(&snp.vcek).expect("vcek");
    c.bench_function("ecdsa/verify/curve=p384", |b| {
        b.iter(|| (black_box(&vcek), black_box(&report)).verify())
    });

    // One P-256 verify: the attestation key's signature over the TDX quote header and body.
    let Evidence::Tdx(tdx) = &cases[2].1 else {
        unreachable!()
    };
    let quote = dcap_qvl::quote::Quote::parse(&tdx.quote).expect("quote");
    let auth = quote.auth_data.clone().into_v3();
    let mut key = vec![0x04];
    key.extend_from_slice(&auth.ecdsa_attestation_key);
    let signed = &tdx.quote[..quote.signed_length()];
    let sig = der_signature(&auth.ecdsa_signature);
    let algo = dcap_qvl::crypto::RustCryptoCrypto::sig_algo();
    algo.verify_signature(&key, signed, &sig)
        .expect("P-256 quote signature");
    c.bench_function("ecdsa/verify/curve=p256", |b| {
        b.iter(|| algo.verify_signature(black_box(&key), black_box(signed), black_box(&sig)))
    });

    // Sealed job inputs: HPKE X25519 / HKDF-SHA256 / ChaCha20Poly1305 to one worker.
    let worker_key = EncryptionKey::derive(&[7; 32]).expect("key");
    let pk = worker_key.public_key();
    let ctx = SealedInputContext {
        chain_id: "vichain-dev",
        job_id: 42,
        worker: &[0x11; 20],
    };
    for size in [1024usize, 256 * 1024] {
        let input = vec![0x5a; size];
        c.bench_function(&format!("hpke/seal/bytes={size}"), |b| {
            b.iter(|| ctx.seal(black_box(&pk), black_box(&input)))
        });
        let sealed = ctx.seal(&pk, &input).expect("seal");
        c.bench_function(&format!("hpke/open/bytes={size}"), |b| {
            b.iter(|| ctx.open(black_box(&worker_key), black_box(&sealed)))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
