//! `RecordPipeline`: the client of a split-mode job, who ran the pipeline itself,
//! records its stages; the stage operators are paid by layers and the job closes.

use vichain_proto::v1 as pb;

use super::{
    lookup::{corrupt, model_of, status_name},
    settle::{credit, latency, mul_div, refund_and_close, serves_range, stage_layers},
};
use crate::{
    Address, TxError,
    ctx::{BlockCtx, Event, TxOutcome},
    error::ExecResult,
    state::{Overlay, StateReadExt},
    state_key,
    tx::SignedTx,
};

pub(crate) fn record_pipeline(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx,
    tx: &SignedTx,
    r: &pb::RecordPipeline,
    out: &mut TxOutcome,
) -> ExecResult<()> {
    let Some(mut job) = state.job(r.job_id)? else {
        return Err(TxError::UnknownJob { job_id: r.job_id }.into());
    };
    if job.client != tx.sender.as_bytes() {
        return Err(TxError::Unauthorized {
            address: tx.sender.to_string(),
            action: "record the pipeline of another client's job",
        }
        .into());
    }
    if pb::PrivacyMode::try_from(job.privacy) != Ok(pb::PrivacyMode::Split) {
        return Err(TxError::invalid(
            "record_pipeline.job_id",
            format!("job {} was not submitted in split mode", job.id),
        )
        .into());
    }
    if job.status != pb::JobStatus::Pending as i32 || ctx.height > job.reveal_deadline {
        return Err(TxError::WrongPhase {
            job_id: job.id,
            reason: format!(
                "a pipeline is recorded once, before height {} (status {})",
                job.reveal_deadline,
                status_name(job.status)
            ),
        }
        .into());
    }
    let model = model_of(state, &job)?;
    if !covers(&r.stages, model.total_layers) {
        return Err(TxError::invalid(
            "record_pipeline.stages",
            format!(
                "stages must cover layers 0..{} in order without gaps",
                model.total_layers
            ),
        )
        .into());
    }
    for (i, s) in r.stages.iter().enumerate() {
        let op =
            Address::from_bytes(&s.operator).map_err(|e| corrupt("stage".into(), e.to_string()))?;
        if !serves_range(state, &model, &op, s)? {
            return Err(TxError::invalid(
                "record_pipeline.stages",
                format!(
                    "stage {} ({}..{}) is not held by {op}: no registered worker of it serves exactly those layers of {}",
                    // A position in the transaction's stages: far below usize::MAX.
                    i.saturating_add(1),
                    s.start_layer,
                    s.end_layer,
                    model.model_id
                ),
            ).into());
        }
    }
    // SubmitJob checked that price x k fits and is escrowed; the escrow bounds the payout.
    let payout = model.price.saturating_mul(u64::from(job.k)).min(job.escrow);
    let mut paid = 0u64;
    for s in &r.stages {
        let op =
            Address::from_bytes(&s.operator).map_err(|e| corrupt("stage".into(), e.to_string()))?;
        let share = mul_div(
            payout,
            u64::from(stage_layers(&model, s)?),
            u64::from(model.total_layers.max(1)),
        )
        .unwrap_or(0);
        credit(state, &op, share)?;
        // The stages cover the model's layers once, so the shares add up to at most
        // the payout.
        paid = paid.checked_add(share).ok_or_else(|| {
            corrupt(
                state_key::job(job.id),
                format!("paid {paid} + share {share} overflows"),
            )
        })?;
    }
    job.pipeline = r.stages.clone();
    job.output_hash = r.output_hash.clone();
    job.outcome = "client_pipeline".into();
    refund_and_close(state, ctx, &mut job, paid, pb::JobStatus::Finalized)?;
    out.events.push(
        Event::new("job_finalized")
            .attr("job_id", job.id)
            .attr("model_id", &job.model_id)
            .attr("outcome", &job.outcome)
            .attr("stages", r.stages.len())
            .attr("latency_blocks", latency(ctx, &job))
            .attr("submitted_time_ns", job.submitted_time_ns),
    );
    state.put(state_key::job(job.id), &job);
    Ok(())
}

/// Stateless checks of a `RecordPipeline`.
pub(crate) fn check_record(r: &pb::RecordPipeline, params: &pb::Params) -> Result<(), TxError> {
    if r.stages.is_empty() {
        return Err(TxError::invalid("record_pipeline.stages", "no stages"));
    }
    check_stages(
        &r.stages,
        "record_pipeline.stages",
        "record_pipeline.stages.operator",
        params,
    )?;
    if r.output_hash.len() != 32 {
        return Err(TxError::invalid(
            "record_pipeline.output_hash",
            format!("{} bytes, expected 32", r.output_hash.len()),
        ));
    }
    Ok(())
}

/// Checks of a stage list needing no state: operators and digests well formed,
/// non-empty layer ranges.
pub(super) fn check_stages(
    stages: &[pb::Stage],
    field: &'static str,
    operator_field: &'static str,
    params: &pb::Params,
) -> Result<(), TxError> {
    if stages.len() > params.max_shards as usize {
        return Err(TxError::invalid(
            field,
            format!(
                "{} stages exceed the maximum {}",
                stages.len(),
                params.max_shards
            ),
        ));
    }
    for s in stages {
        Address::from_bytes(&s.operator).map_err(|_| {
            TxError::invalid(
                operator_field,
                format!("{} bytes, expected 20", s.operator.len()),
            )
        })?;
        if s.input_hash.len() != 32 || s.output_hash.len() != 32 {
            return Err(TxError::invalid(
                field,
                "activation hashes must be 32 bytes",
            ));
        }
        if s.start_layer >= s.end_layer {
            return Err(TxError::invalid(
                field,
                format!("empty layer range {}..{}", s.start_layer, s.end_layer),
            ));
        }
    }
    Ok(())
}

/// Whether `stages` cover layers `0..total` in order without gaps.
pub(super) fn covers(stages: &[pb::Stage], total: u32) -> bool {
    stages.first().map(|s| s.start_layer) == Some(0)
        && stages
            .windows(2)
            .all(|w| w[0].end_layer == w[1].start_layer)
        && stages.last().map(|s| s.end_layer) == Some(total)
}
