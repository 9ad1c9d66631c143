//! `SubmitAttestation`: a worker's TEE evidence, verified at block time and bound
//! to its key, this chain and a recent block.

use vichain_proto::v1::{self as pb};

use crate::{
    Error, TxError, attest,
    ctx::{BlockCtx, Event, TxOutcome},
    error::ExecResult,
    state::{Overlay, StateRead, StateReadExt},
    state_key,
    tx::SignedTx,
};

pub(super) fn submit_attestation(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx,
    tx: &SignedTx,
    a: &pb::SubmitAttestation,
    out: &mut TxOutcome,
) -> ExecResult<()> {
    let Some(mut worker) = state.worker(&tx.sender)? else {
        return Err(TxError::UnknownWorker {
            address: tx.sender.to_string(),
        }
        .into());
    };
    let nonce = match state.get_raw(state_key::recent_block_hash(a.nonce_height).as_bytes())? {
        Some(h) => <[u8; 32]>::try_from(h.as_slice()).map_err(|_| Error::Corrupt {
            key: state_key::recent_block_hash(a.nonce_height),
            reason: format!("{} bytes, expected 32", h.len()),
        })?,
        None => {
            return Err(TxError::invalid(
                "submit_attestation.nonce_height",
                format!(
                    "block {} is not among the last {} blocks",
                    a.nonce_height,
                    state_key::RECENT_BLOCK_HASHES
                ),
            )
            .into());
        }
    };
    let (evidence, encryption_key) = attest::check_submit_attestation(a, &ctx.params)?;
    let verified = attest::verify(&evidence, &ctx.params, ctx.time_ns)?;
    if let Err(e) = vichain_tee::check_binding(
        &verified,
        &worker.operator_key,
        &ctx.chain_id,
        &nonce,
        &encryption_key,
    ) {
        return Err(TxError::AttestationInvalid {
            reason: e.to_string(),
        }
        .into());
    }
    let mut checked = std::collections::BTreeSet::new();
    for s in &worker.serves {
        if !checked.insert(s.model_id.clone()) {
            continue;
        }
        let Some(model) = state.model(&s.model_id)? else {
            continue;
        };
        let policy = model.policy.unwrap_or_default();
        if !policy.require_tee {
            continue;
        }
        if let Err(e) = attest::tee_policy(&policy, &ctx.params).check(&verified) {
            return Err(TxError::AttestationInvalid {
                reason: format!("model {}: {e}", s.model_id),
            }
            .into());
        }
    }
    let record = attest::record(
        &verified,
        &a.evidence,
        &encryption_key,
        ctx.height,
        ctx.params.attestation_ttl_blocks,
    );
    out.events.push(
        Event::new("attestation_verified")
            .attr("operator", tx.sender)
            .attr("kind", &record.kind)
            .attr("measurement", hex::encode(&record.measurement))
            .attr("tcb_status", &record.tcb_status)
            .attr("simulated", record.simulated)
            .attr("encryption_key", hex::encode(&record.encryption_key))
            .attr("expiry_height", record.expiry_height),
    );
    worker.attestation = Some(record);
    worker.last_seen_height = ctx.height;
    state.put(state_key::worker(&tx.sender), &worker);
    Ok(())
}
