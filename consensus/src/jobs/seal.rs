//! `SealInputs`: the client of a sealed job sends each assigned TEE worker its input,
//! encrypted to that worker's attested key.

use vichain_proto::v1 as pb;

use super::lookup::{corrupt, find_assignment};
use crate::{
    Address, TxError,
    ctx::{BlockCtx, Event, TxOutcome},
    error::ExecResult,
    state::{Overlay, StateReadExt},
    state_key,
    tx::SignedTx,
};

pub(crate) fn seal_inputs(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx,
    tx: &SignedTx,
    s: &pb::SealInputs,
    out: &mut TxOutcome,
) -> ExecResult<()> {
    let Some(mut job) = state.job(s.job_id)? else {
        return Err(TxError::UnknownJob { job_id: s.job_id }.into());
    };
    if job.client != tx.sender.as_bytes() {
        return Err(TxError::Unauthorized {
            address: tx.sender.to_string(),
            action: "seal the input of another client's job",
        }
        .into());
    }
    if pb::PrivacyMode::try_from(job.privacy) != Ok(pb::PrivacyMode::Sealed) {
        return Err(TxError::invalid(
            "seal_inputs.job_id",
            format!("job {} was not submitted as sealed", job.id),
        )
        .into());
    }
    if job.status != pb::JobStatus::Assigned as i32 || ctx.height > job.commit_deadline {
        return Err(TxError::WrongPhase {
            job_id: job.id,
            reason: format!(
                "inputs are sealed while workers are assigned and before the commit deadline {}",
                job.commit_deadline
            ),
        }
        .into());
    }
    for c in &s.copies {
        let op =
            Address::from_bytes(&c.operator).map_err(|e| corrupt("seal".into(), e.to_string()))?;
        let Some(i) = find_assignment(&job, &op) else {
            return Err(TxError::NotAssigned {
                job_id: job.id,
                address: op.to_string(),
            }
            .into());
        };
        if !job.assignments[i].sealed_input.is_empty() {
            return Err(TxError::AlreadyExists {
                what: "sealed input for worker",
                id: op.to_string(),
            }
            .into());
        }
        let Some(worker) = state.worker(&op)? else {
            return Err(TxError::UnknownWorker {
                address: op.to_string(),
            }
            .into());
        };
        let sealed = crate::attest::check_sealed_input(
            &c.sealed,
            &worker,
            &ctx.chain_id,
            job.id,
            ctx.height,
            ctx.time_ns,
        )?;
        if sealed.plaintext_len() as u64 > ctx.params.max_input_bytes {
            return Err(TxError::OversizeInput {
                size: sealed.plaintext_len() as u64,
                max: ctx.params.max_input_bytes,
            }
            .into());
        }
        job.assignments[i].sealed_input = c.sealed.clone();
    }
    out.events.push(
        Event::new("inputs_sealed")
            .attr("job_id", job.id)
            .attr("copies", s.copies.len()),
    );
    state.put(state_key::job(job.id), &job);
    Ok(())
}

/// Stateless checks of a `SealInputs`.
pub(crate) fn check_seal(s: &pb::SealInputs, params: &pb::Params) -> Result<(), TxError> {
    // Twice a u32 fits a u64.
    let max_copies = u64::from(params.max_k).saturating_mul(2);
    if s.copies.is_empty() || s.copies.len() as u64 > max_copies {
        return Err(TxError::invalid(
            "seal_inputs.copies",
            format!(
                "{} copies; between 1 and {max_copies} allowed",
                s.copies.len()
            ),
        ));
    }
    for c in &s.copies {
        Address::from_bytes(&c.operator).map_err(|_| {
            TxError::invalid(
                "seal_inputs.copies.operator",
                format!("{} bytes, expected 20", c.operator.len()),
            )
        })?;
        // A limit past usize::MAX is no limit: saturating keeps it so.
        let max =
            (params.max_input_bytes as usize).saturating_add(vichain_tee::SEALED_INPUT_OVERHEAD);
        if c.sealed.len() > max {
            return Err(TxError::OversizeInput {
                size: c.sealed.len() as u64,
                max: max as u64,
            });
        }
    }
    Ok(())
}
