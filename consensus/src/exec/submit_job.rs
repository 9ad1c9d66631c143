//! `SubmitJob`: a client escrows the fee for an inference and the job is assigned
//! (or, in split mode, left to the client to record).

use sha2::{Digest, Sha256};
use vichain_proto::v1::{self as pb};

use super::models::check_id;
use crate::{
    Error, TxError,
    ctx::{BlockCtx, Event, TxOutcome},
    error::ExecResult,
    jobs::{self},
    state::{Overlay, StateReadExt},
    state_key,
    tx::SignedTx,
};

pub(super) fn submit_job(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx,
    tx: &SignedTx,
    j: &pb::SubmitJob,
    out: &mut TxOutcome,
) -> ExecResult<()> {
    let Some(model) = state.model(&j.model_id)? else {
        return Err(TxError::UnknownModel {
            model_id: j.model_id.clone(),
        }
        .into());
    };
    let policy = model.policy.clone().unwrap_or_default();
    let k = if j.k == 0 { policy.k } else { j.k };
    if k < policy.quorum {
        return Err(TxError::invalid(
            "submit_job.k",
            format!("{k} is below the model's quorum {}", policy.quorum),
        )
        .into());
    }
    let Some(min_fee) = model.price.checked_mul(u64::from(k)) else {
        return Err(TxError::overflow("price * k", format!("{} x {k}", model.price)).into());
    };
    if j.max_fee < min_fee {
        return Err(TxError::invalid(
            "submit_job.max_fee",
            format!(
                "{} is below price {} x k {k} = {min_fee}",
                j.max_fee, model.price
            ),
        )
        .into());
    }
    if pb::PrivacyMode::try_from(j.privacy) == Ok(pb::PrivacyMode::Sealed) {
        if !policy.require_tee {
            return Err(TxError::invalid(
                "submit_job.privacy",
                format!(
                    "model {} does not require TEE workers, so nobody could be trusted with a sealed input",
                    j.model_id
                ),
            ).into());
        }
        if !matches!(j.payload, Some(pb::submit_job::Payload::InputHash(_))) {
            return Err(TxError::invalid(
                "submit_job.payload",
                "a sealed job carries only its input hash; the input follows in SealInputs",
            )
            .into());
        }
    }
    let (input, input_hash) = match &j.payload {
        Some(pb::submit_job::Payload::Input(input)) => {
            (input.clone(), Sha256::digest(input).to_vec())
        }
        Some(pb::submit_job::Payload::InputHash(h)) => (Vec::new(), h.clone()),
        None => return Err(TxError::invalid("submit_job", "no payload").into()),
    };
    let id = state.get_u64(state_key::NEXT_JOB_ID)?.unwrap_or(1);
    // One id per job ever submitted: u64 ids do not run out unless the state is corrupt.
    let next_id = id.checked_add(1).ok_or_else(|| Error::Corrupt {
        key: state_key::NEXT_JOB_ID.into(),
        reason: format!("next job id {id} + 1 overflows"),
    })?;
    state.put_u64(state_key::NEXT_JOB_ID, next_id);
    let privacy = match pb::PrivacyMode::try_from(j.privacy) {
        Ok(pb::PrivacyMode::Unspecified) | Err(_) => pb::PrivacyMode::Public,
        Ok(p) => p,
    };
    let split = pb::PrivacyMode::try_from(j.privacy) == Ok(pb::PrivacyMode::Split);
    if split && !matches!(j.payload, Some(pb::submit_job::Payload::InputHash(_))) {
        return Err(TxError::invalid(
            "submit_job.payload",
            "a split-mode job carries only its input hash: the client keeps the input",
        )
        .into());
    }
    let available = if split {
        usize::MAX
    } else {
        jobs::available(state, ctx, &model)?
    };
    if available < k as usize {
        return Err(TxError::invalid(
            "submit_job.k",
            format!(
                "{k} workers asked for, but only {available} eligible workers serve model {}",
                j.model_id
            ),
        )
        .into());
    }
    let deadlines = jobs::deadlines(ctx)?;
    let mut job = pb::Job {
        id,
        model_id: j.model_id.clone(),
        client: tx.sender.as_bytes().to_vec(),
        input,
        input_hash,
        k,
        escrow: j.max_fee,
        privacy: privacy as i32,
        status: pb::JobStatus::Pending as i32,
        submitted_height: ctx.height,
        submitted_time_ns: ctx.time_ns,
        tx_hash: tx.hash.to_vec(),
        ..Default::default()
    };
    if split {
        // The client runs the pipeline itself and records it (RecordPipeline) before
        // the deadline; otherwise the job fails and is refunded.
        job.reveal_deadline = deadlines.reveal;
        jobs::add_deadline(state, job.reveal_deadline, id)?;
    } else {
        jobs::assign(state, ctx, &mut job, &model, k as usize, deadlines)?;
    }
    let assigned: Vec<String> = job
        .assignments
        .iter()
        .map(|a| hex::encode(&a.operator))
        .collect();
    state.put(state_key::job(id), &job);
    state.put_raw(state_key::job_by_tx(&tx.hash), id.to_be_bytes().to_vec());
    out.data = id.to_be_bytes().to_vec();
    out.events.push(
        Event::new("job_submitted")
            .attr("job_id", id)
            .attr("model_id", &j.model_id)
            .attr("k", k)
            .attr("escrow", j.max_fee),
    );
    out.events.push(
        Event::new("job_assigned")
            .attr("job_id", id)
            .attr("model_id", &j.model_id)
            .attr("workers", assigned.join(","))
            .attr("commit_deadline", job.commit_deadline)
            .attr("reveal_deadline", job.reveal_deadline),
    );
    Ok(())
}

pub(super) fn check_job(j: &pb::SubmitJob, params: &pb::Params) -> Result<(), TxError> {
    check_id(&j.model_id, "submit_job.model_id")?;
    match &j.payload {
        Some(pb::submit_job::Payload::Input(input)) => {
            if input.len() as u64 > params.max_input_bytes {
                return Err(TxError::OversizeInput {
                    size: input.len() as u64,
                    max: params.max_input_bytes,
                });
            }
            if input.is_empty() {
                return Err(TxError::invalid("submit_job.input", "empty"));
            }
        }
        Some(pb::submit_job::Payload::InputHash(h)) => {
            if h.len() != 32 {
                return Err(TxError::invalid(
                    "submit_job.input_hash",
                    format!("{} bytes, expected 32", h.len()),
                ));
            }
        }
        None => {
            return Err(TxError::invalid(
                "submit_job",
                "neither input nor input_hash",
            ));
        }
    }
    if j.k > params.max_k {
        return Err(TxError::invalid(
            "submit_job.k",
            format!("{} exceeds the maximum {}", j.k, params.max_k),
        ));
    }
    if pb::PrivacyMode::try_from(j.privacy).is_err() {
        return Err(TxError::invalid(
            "submit_job.privacy",
            format!("unknown mode {}", j.privacy),
        ));
    }
    Ok(())
}
