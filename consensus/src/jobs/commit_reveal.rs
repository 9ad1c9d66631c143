//! Commit-reveal: assigned workers commit to their output, then, once the round has
//! committed, open the commitment (with a proof or an attestation where the model
//! requires one). The last reveal of a round tallies it.

use vichain_proto::v1 as pb;

use super::{
    assign::attested,
    lookup::{find_assignment, status_name},
    output::{MAX_OUTPUT_TEXT, output_fingerprint, result_commitment},
    pipeline::{check_stages, covers},
    settle::tally,
};
use crate::{
    Address, Error, TxError,
    attest::attestation_is_current,
    ctx::{BlockCtx, Event, TxOutcome},
    error::ExecResult,
    proofs,
    state::{Overlay, StateReadExt},
    state_key,
    tx::SignedTx,
};

pub(crate) fn commit_result(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx,
    tx: &SignedTx,
    c: &pb::CommitResult,
    out: &mut TxOutcome,
) -> ExecResult<()> {
    let Some(mut job) = state.job(c.job_id)? else {
        return Err(TxError::UnknownJob { job_id: c.job_id }.into());
    };
    if job.status != pb::JobStatus::Assigned as i32 || ctx.height > job.commit_deadline {
        return Err(TxError::WrongPhase {
            job_id: job.id,
            reason: format!(
                "commitments are not accepted now (status {}, commit deadline {})",
                status_name(job.status),
                job.commit_deadline
            ),
        }
        .into());
    }
    let Some(i) = find_assignment(&job, &tx.sender) else {
        return Err(TxError::NotAssigned {
            job_id: job.id,
            address: tx.sender.to_string(),
        }
        .into());
    };
    if !job.assignments[i].commitment.is_empty() {
        return Err(TxError::AlreadyExists {
            what: "commitment for job",
            id: format!("{} from {}", job.id, tx.sender),
        }
        .into());
    }
    if job.assignments.iter().any(|a| a.commitment == c.commitment) {
        return Err(TxError::invalid(
            "commit_result.commitment",
            "equals another worker's commitment: a commitment binds its committer's address",
        )
        .into());
    }
    job.assignments[i].commitment = c.commitment.clone();
    job.assignments[i].commit_height = ctx.height;
    seen(state, ctx, &tx.sender)?;
    out.events.push(
        Event::new("result_committed")
            .attr("job_id", job.id)
            .attr("worker", tx.sender),
    );
    let round_done = job
        .assignments
        .iter()
        .filter(|a| a.round == job.round)
        .all(|a| !a.commitment.is_empty());
    if round_done {
        job.status = pb::JobStatus::Revealing as i32;
        out.events.push(
            Event::new("job_revealing")
                .attr("job_id", job.id)
                .attr("reveal_deadline", job.reveal_deadline),
        );
    }
    state.put(state_key::job(job.id), &job);
    Ok(())
}

/// Stateless checks of a `CommitResult`.
pub(crate) fn check_commit(c: &pb::CommitResult) -> Result<(), TxError> {
    if c.commitment.len() != 32 {
        return Err(TxError::invalid(
            "commit_result.commitment",
            format!("{} bytes, expected 32", c.commitment.len()),
        ));
    }
    Ok(())
}

pub(crate) fn reveal_result(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx,
    tx: &SignedTx,
    r: &pb::RevealResult,
    out: &mut TxOutcome,
) -> ExecResult<()> {
    let Some(mut job) = state.job(r.job_id)? else {
        return Err(TxError::UnknownJob { job_id: r.job_id }.into());
    };
    if job.status != pb::JobStatus::Revealing as i32 || ctx.height > job.reveal_deadline {
        let reason = if job.status == pb::JobStatus::Assigned as i32 {
            format!(
                "the commit phase is open until every assigned worker commits or height {}",
                job.commit_deadline
            )
        } else {
            format!(
                "reveals are not accepted now (status {}, reveal deadline {})",
                status_name(job.status),
                job.reveal_deadline
            )
        };
        return Err(TxError::WrongPhase {
            job_id: job.id,
            reason,
        }
        .into());
    }
    let Some(i) = find_assignment(&job, &tx.sender) else {
        return Err(TxError::NotAssigned {
            job_id: job.id,
            address: tx.sender.to_string(),
        }
        .into());
    };
    if job.assignments[i].commitment.is_empty() {
        return Err(TxError::WrongPhase {
            job_id: job.id,
            reason: format!("{} did not commit before the deadline", tx.sender),
        }
        .into());
    }
    if job.assignments[i].revealed {
        return Err(TxError::AlreadyExists {
            what: "reveal for job",
            id: format!("{} from {}", job.id, tx.sender),
        }
        .into());
    }
    let output = r.output.clone().unwrap_or_default();
    let salt: [u8; 32] = r.salt.as_slice().try_into().unwrap_or([0; 32]);
    let expected = result_commitment(&output_fingerprint(&output, &r.stages), &salt, &tx.sender);
    if job.assignments[i].commitment != expected {
        return Err(TxError::BadOpening {
            job_id: job.id,
            address: tx.sender.to_string(),
        }
        .into());
    }
    let Some(model) = state.model(&job.model_id)? else {
        return Err(TxError::UnknownModel {
            model_id: job.model_id.clone(),
        }
        .into());
    };
    let policy = model.policy.clone().unwrap_or_default();
    if !r.stages.is_empty() && !covers(&r.stages, model.total_layers) {
        return Err(TxError::invalid(
            "reveal_result.stages",
            format!(
                "stages must cover layers 0..{} in order without gaps",
                model.total_layers
            ),
        )
        .into());
    }
    let mut proof_verified = false;
    if policy.require_proof {
        let Some(p) = &r.proof else {
            return Err(TxError::ProofInvalid {
                job_id: job.id,
                reason: "the model requires a proof and the reveal carries none".into(),
            }
            .into());
        };
        if let Err(reason) = proof_output_matches(p, &output) {
            return Err(TxError::ProofInvalid {
                job_id: job.id,
                reason,
            }
            .into());
        }
        let claim = proofs::claim(&job, &model, p)?;
        if let Err(reason) = ctx.proofs.verify(&model.verifying_key, &claim, &p.proof) {
            return Err(TxError::ProofInvalid {
                job_id: job.id,
                reason,
            }
            .into());
        }
        proof_verified = true;
    }
    let worker = state.worker(&tx.sender)?;
    let attestation_kind = worker
        .as_ref()
        .and_then(|w| w.attestation.as_ref())
        .filter(|a| attestation_is_current(a, ctx.height, ctx.time_ns))
        .map(|a| a.kind.clone())
        .unwrap_or_default();
    if policy.require_tee && !worker.as_ref().is_some_and(|w| attested(w, &policy, ctx)) {
        return Err(TxError::AttestationInvalid {
            reason: format!(
                "{} has no current attestation accepted by model {}",
                tx.sender, model.model_id
            ),
        }
        .into());
    }
    seen(state, ctx, &tx.sender)?;
    let a = &mut job.assignments[i];
    a.revealed = true;
    a.output = Some(output);
    a.reveal_height = ctx.height;
    a.proof_verified = proof_verified;
    a.attestation_kind = attestation_kind;
    a.stages = r.stages.clone();
    out.events.push(
        Event::new("result_revealed")
            .attr("job_id", job.id)
            .attr("worker", tx.sender)
            .attr("proof_verified", proof_verified),
    );
    let all_revealed = job
        .assignments
        .iter()
        .filter(|a| a.round == job.round && !a.commitment.is_empty())
        .all(|a| a.revealed);
    if all_revealed {
        tally(state, ctx, &mut job, &model, &mut out.events)?;
    }
    state.put(state_key::job(job.id), &job);
    Ok(())
}

/// Stateless checks of a `RevealResult`.
pub(crate) fn check_reveal(r: &pb::RevealResult, params: &pb::Params) -> Result<(), TxError> {
    if r.salt.len() != 32 {
        return Err(TxError::invalid(
            "reveal_result.salt",
            format!("{} bytes, expected 32", r.salt.len()),
        ));
    }
    let Some(output) = &r.output else {
        return Err(TxError::invalid("reveal_result.output", "missing"));
    };
    if output.values.len() > params.max_output_values as usize {
        return Err(TxError::invalid(
            "reveal_result.output.values",
            format!(
                "{} values exceed the maximum {}",
                output.values.len(),
                params.max_output_values
            ),
        ));
    }
    if output.text.len() > MAX_OUTPUT_TEXT {
        return Err(TxError::invalid(
            "reveal_result.output.text",
            format!(
                "{} bytes exceed the maximum {MAX_OUTPUT_TEXT}",
                output.text.len()
            ),
        ));
    }
    check_stages(
        &r.stages,
        "reveal_result.stages",
        "reveal_result.stages.operator",
        params,
    )?;
    if let Some(p) = &r.proof {
        proofs::check_submit_proof(p)?;
        if p.job_id != r.job_id {
            return Err(TxError::invalid(
                "reveal_result.proof.job_id",
                format!("{} is not the revealed job {}", p.job_id, r.job_id),
            ));
        }
    }
    Ok(())
}

/// Whether `proof`'s output is exactly `output`.
fn proof_output_matches(proof: &pb::SubmitProof, output: &pb::JobOutput) -> Result<(), String> {
    use pb::inference_output::Value;
    match proof.output.as_ref().and_then(|o| o.value.as_ref()) {
        Some(Value::Argmax(i)) if output.values == [i64::from(*i)] => Ok(()),
        Some(Value::Argmax(i)) => Err(format!(
            "the proof attests class {i}, the reveal {:?}",
            output.values
        )),
        Some(Value::Logits(l)) if l.values == output.values => Ok(()),
        Some(Value::Logits(_)) => Err("the proof attests other logits than revealed".into()),
        Some(Value::Commitment(_)) => {
            Err("a proof of a committed output cannot be compared with revealed values".into())
        }
        None => Err("the proof has no output".into()),
    }
}

/// Records that the worker `who` was active at this height.
fn seen(state: &mut Overlay<'_>, ctx: &BlockCtx, who: &Address) -> Result<(), Error> {
    if let Some(mut w) = state.worker(who)? {
        w.last_seen_height = ctx.height;
        state.put(state_key::worker(who), &w);
    }
    Ok(())
}
