//! `SubmitProof`: a zk proof of a job's inference, verified against the model's
//! registered key.

use sha2::{Digest, Sha256};
use vichain_proto::v1::{self as pb};

use crate::{
    TxError,
    ctx::{BlockCtx, Event, TxOutcome},
    error::ExecResult,
    proofs,
    state::{Overlay, StateReadExt},
    state_key,
    tx::SignedTx,
};

pub(super) fn submit_proof(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx,
    tx: &SignedTx,
    p: &pb::SubmitProof,
    out: &mut TxOutcome,
) -> ExecResult<()> {
    let Some(worker) = state.worker(&tx.sender)? else {
        return Err(TxError::UnknownWorker {
            address: tx.sender.to_string(),
        }
        .into());
    };
    let Some(mut job) = state.job(p.job_id)? else {
        return Err(TxError::UnknownJob { job_id: p.job_id }.into());
    };
    if !worker.serves.iter().any(|s| s.model_id == job.model_id) {
        return Err(TxError::NotServing {
            address: tx.sender.to_string(),
            model_id: job.model_id.clone(),
        }
        .into());
    }
    if job.proof_verified {
        return Err(TxError::AlreadyExists {
            what: "verified proof for job",
            id: job.id.to_string(),
        }
        .into());
    }
    let open = [
        pb::JobStatus::Pending as i32,
        pb::JobStatus::Assigned as i32,
    ];
    if !open.contains(&job.status) {
        return Err(TxError::invalid(
            "submit_proof.job_id",
            format!("job {} is closed (status {})", job.id, job.status),
        )
        .into());
    }
    let Some(model) = state.model(&job.model_id)? else {
        return Err(TxError::UnknownModel {
            model_id: job.model_id.clone(),
        }
        .into());
    };
    let claim = proofs::claim(&job, &model, p)?;
    if let Err(reason) = ctx.proofs.verify(&model.verifying_key, &claim, &p.proof) {
        return Err(TxError::ProofInvalid {
            job_id: job.id,
            reason,
        }
        .into());
    }
    job.proof_verified = true;
    job.output = p.output.clone();
    job.input_commitment = p.input_commitment.clone();
    job.prover = tx.sender.as_bytes().to_vec();
    job.proof_height = ctx.height;
    job.proof_hash = Sha256::digest(&p.proof).to_vec();
    state.put(state_key::job(job.id), &job);
    out.events.push(
        Event::new("proof_verified")
            .attr("job_id", job.id)
            .attr("model_id", &job.model_id)
            .attr("prover", tx.sender)
            .attr("output", output_summary(p.output.as_ref())),
    );
    Ok(())
}

/// A short, human-readable form of a proven output for events.
fn output_summary(o: Option<&pb::InferenceOutput>) -> String {
    use pb::inference_output::Value;
    match o.and_then(|o| o.value.as_ref()) {
        Some(Value::Argmax(i)) => format!("argmax:{i}"),
        Some(Value::Logits(l)) => format!(
            "logits:{}",
            l.values
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
        Some(Value::Commitment(c)) => format!("commitment:{}", hex::encode(c)),
        None => String::new(),
    }
}
