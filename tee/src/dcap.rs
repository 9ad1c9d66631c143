//! Intel TDX and SGX: DCAP quote verification with collateral, through dcap-qvl.

use dcap_qvl::QuotePolicy;
use dcap_qvl::quote::{Quote, Report};
use dcap_qvl::verify::QuoteVerifier;

use crate::attestation::{Claims, SgxClaims, TcbStatus, TdxClaims, TeeKind, VerifiedAttestation};
use crate::error::{Error, Result};
use crate::evidence::DcapEvidence;

/// SGX `ATTRIBUTES.DEBUG`.
const SGX_ATTR_DEBUG: u8 = 0x02;
/// TDX `TDATTRIBUTES.DEBUG`.
const TDX_ATTR_DEBUG: u8 = 0x01;

/// Verifies a quote's signature chain to Intel's root (pinned inside dcap-qvl), its collateral
/// (signatures, CRLs, validity at `at`) and its TCB level.
///
/// Debug enclaves and TDs are let through here and flagged in [`VerifiedAttestation::debug`], so
/// that accepting them is a [`Policy`](crate::Policy) decision like it is for SEV-SNP.
pub(crate) fn verify(
    kind: TeeKind,
    evidence: &DcapEvidence,
    at: u64,
) -> Result<VerifiedAttestation> {
    let rejected = |reason: String| Error::Quote { kind, reason };
    let quote =
        Quote::parse(&evidence.quote).map_err(|e| rejected(format!("malformed quote: {e:#}")))?;
    let found = if quote.header.is_sgx() {
        TeeKind::Sgx
    } else {
        TeeKind::Tdx
    };
    if found != kind {
        return Err(Error::QuoteKindMismatch {
            expected: kind,
            found,
        });
    }

    check_no_trailing_data(&quote, &evidence.quote).map_err(rejected)?;

    let claims = QuoteVerifier::new_prod()
        .allow_debug(true)
        .verify_with_policy(
            &evidence.quote,
            evidence.collateral.to_dcap(),
            at,
            &QuotePolicy::claims_only(at),
        )
        .map_err(|e| rejected(format!("{e:#}")))?;

    let (measurement, report_data, debug, claims_out) = match &claims.report {
        Report::SgxEnclave(r) => (
            r.mr_enclave.to_vec(),
            r.report_data,
            r.attributes[0] & SGX_ATTR_DEBUG != 0,
            Claims::Sgx(SgxClaims {
                mr_enclave: r.mr_enclave.to_vec(),
                mr_signer: r.mr_signer.to_vec(),
                isv_prod_id: r.isv_prod_id,
                isv_svn: r.isv_svn,
                attributes: r.attributes.to_vec(),
                cpu_svn: r.cpu_svn.to_vec(),
            }),
        ),
        report => {
            let td = report
                .as_td10()
                .ok_or_else(|| rejected("quote body is neither SGX nor TDX".into()))?;
            (
                td.mr_td.to_vec(),
                td.report_data,
                td.td_attributes[0] & TDX_ATTR_DEBUG != 0,
                Claims::Tdx(TdxClaims {
                    mr_td: td.mr_td.to_vec(),
                    rtmrs: [td.rt_mr0, td.rt_mr1, td.rt_mr2, td.rt_mr3]
                        .iter()
                        .map(|r| r.to_vec())
                        .collect(),
                    mr_seam: td.mr_seam.to_vec(),
                    mr_config_id: td.mr_config_id.to_vec(),
                    mr_owner: td.mr_owner.to_vec(),
                    mr_owner_config: td.mr_owner_config.to_vec(),
                    td_attributes: td.td_attributes.to_vec(),
                    tee_tcb_svn: td.tee_tcb_svn.to_vec(),
                }),
            )
        }
    };

    Ok(VerifiedAttestation {
        kind,
        measurement,
        tcb_status: tcb_status(claims.tcb.status),
        advisory_ids: claims.tcb.advisory_ids.clone(),
        report_data,
        valid_until: claims.earliest_expiration_date,
        debug,
        simulated: false,
        claims: claims_out,
    })
}

/// Quotes read from a TDX guest are often zero-padded to a fixed buffer size; padding is
/// tolerated, but anything else after the quote's auth data (which no signature covers) is not.
fn check_no_trailing_data(quote: &Quote, raw: &[u8]) -> std::result::Result<(), String> {
    let signed = quote.signed_length();
    let auth_len = raw
        .get(signed..signed.saturating_add(4))
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_le_bytes)
        .ok_or("quote ends before its auth data")?;
    let end = usize::try_from(auth_len)
        .ok()
        .and_then(|len| signed.checked_add(4)?.checked_add(len))
        .ok_or("auth data length overflows")?;
    let trailing = raw.get(end..).unwrap_or_default();
    if trailing.iter().any(|&b| b != 0) {
        return Err(format!(
            "{} bytes after the quote are not zero padding",
            trailing.len()
        ));
    }
    Ok(())
}

fn tcb_status(status: dcap_qvl::TcbStatus) -> TcbStatus {
    use dcap_qvl::TcbStatus as D;
    match status {
        D::UpToDate => TcbStatus::UpToDate,
        D::SWHardeningNeeded => TcbStatus::SWHardeningNeeded,
        D::ConfigurationNeeded => TcbStatus::ConfigurationNeeded,
        D::ConfigurationAndSWHardeningNeeded => TcbStatus::ConfigurationAndSWHardeningNeeded,
        D::TDRelaunchAdvised => TcbStatus::TDRelaunchAdvised,
        D::TDRelaunchAdvisedConfigurationNeeded => TcbStatus::TDRelaunchAdvisedConfigurationNeeded,
        D::OutOfDate => TcbStatus::OutOfDate,
        D::OutOfDateConfigurationNeeded => TcbStatus::OutOfDateConfigurationNeeded,
        D::Revoked => TcbStatus::Revoked,
    }
}
