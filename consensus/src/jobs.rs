//! The life of a job on chain: deterministic assignment, commit-reveal, output
//! consensus, and settlement (payment, reputation, slashing, escalation, refund).
//!
//! - `SubmitJob` escrows the fee and assigns `k` workers drawn without replacement
//!   from those serving the model, weighted by stake x reputation, seeded by the
//!   block hash and the job id: every validator draws the same set, and one operator
//!   holds one worker record, so no operator is drawn twice for one job.
//! - Assigned workers send `CommitResult` until the commit deadline; once every
//!   worker of the round committed (or the deadline passed with at least one
//!   commitment) the job moves to revealing. No reveal is accepted before that, so
//!   nobody can copy an output it has seen; a commitment binds its worker's address,
//!   so nobody can reuse another's.
//! - `RevealResult` opens the commitment, with a proof when the model requires one
//!   (verified against the registered key, and its output must be the revealed one)
//!   and a current attestation when the model requires TEE.
//! - When every committed worker revealed, or at the reveal deadline, reveals are
//!   grouped by equivalence; the largest group (first revealer breaks ties) that
//!   reaches the quorum finalizes the job. Agreeing workers share `price * k` and
//!   gain reputation; workers that revealed a different output are slashed and
//!   penalized; absent ones are penalized. Without a quorum the job is escalated to
//!   `k` fresh workers (`max_escalations` times), then fails and is refunded.

use sha2::{Digest, Sha256};
use vichain_proto::v1 as pb;

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

/// Reputation is fixed point with this scale (1.0).
pub const REPUTATION_ONE: u64 = 1_000_000;
/// Domain of result commitments.
pub const COMMIT_DOMAIN: &[u8] = b"vichain/commit/v1";
const FINGERPRINT_DOMAIN: &[u8] = b"vichain/output/v1";
const ASSIGN_DOMAIN: &[u8] = b"vichain/assign/v1";
/// Fixed-point scale of float outputs (embeddings): 1_000_000 = 1.0.
pub const FIXED_POINT_ONE: i64 = 1_000_000;
/// Reputation never grows above this (10.0), so that no long-lived worker's weight
/// crowds out the others.
pub const REPUTATION_MAX: u64 = 10 * REPUTATION_ONE;
/// Longest generated text a reveal may carry.
pub const MAX_OUTPUT_TEXT: usize = 16 * 1024;
const PPM: u128 = 1_000_000;

/// Digest of everything a reveal asserts: the output and the pipeline's stages.
pub fn output_fingerprint(output: &pb::JobOutput, stages: &[pb::Stage]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(FINGERPRINT_DOMAIN);
    h.update((output.values.len() as u64).to_be_bytes());
    for v in &output.values {
        h.update(v.to_be_bytes());
    }
    h.update((output.text.len() as u64).to_be_bytes());
    h.update(output.text.as_bytes());
    h.update((stages.len() as u64).to_be_bytes());
    for s in stages {
        for bytes in [&s.operator, &s.input_hash, &s.output_hash] {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        }
        h.update(s.start_layer.to_be_bytes());
        h.update(s.end_layer.to_be_bytes());
    }
    h.finalize().into()
}

/// The commitment a worker sends in `CommitResult`.
pub fn result_commitment(fingerprint: &[u8; 32], salt: &[u8; 32], operator: &Address) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(COMMIT_DOMAIN);
    h.update(fingerprint);
    h.update(salt);
    h.update(operator.as_bytes());
    h.finalize().into()
}

/// Whether two outputs count as the same result under `tolerance` (in the
/// fixed-point units of the values; 0 = identical).
pub fn equivalent(a: &pb::JobOutput, b: &pb::JobOutput, tolerance: u64) -> bool {
    a.text == b.text
        && a.values.len() == b.values.len()
        && a.values
            .iter()
            .zip(&b.values)
            .all(|(x, y)| x.abs_diff(*y) <= tolerance)
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

/// Stateless checks of a `SealInputs`.
pub(crate) fn check_seal(s: &pb::SealInputs, params: &pb::Params) -> Result<(), TxError> {
    if s.copies.is_empty() || s.copies.len() > 2 * params.max_k as usize {
        return Err(TxError::invalid(
            "seal_inputs.copies",
            format!(
                "{} copies; between 1 and {} allowed",
                s.copies.len(),
                2 * params.max_k
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
        let max = params.max_input_bytes as usize + vichain_tee::SEALED_INPUT_OVERHEAD;
        if c.sealed.len() > max {
            return Err(TxError::OversizeInput {
                size: c.sealed.len() as u64,
                max: max as u64,
            });
        }
    }
    Ok(())
}

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

/// Checks of a stage list needing no state: operators and digests well formed,
/// non-empty layer ranges.
fn check_stages(
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
fn covers(stages: &[pb::Stage], total: u32) -> bool {
    stages.first().map(|s| s.start_layer) == Some(0)
        && stages
            .windows(2)
            .all(|w| w[0].end_layer == w[1].start_layer)
        && stages.last().map(|s| s.end_layer) == Some(total)
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
                    i + 1,
                    s.start_layer,
                    s.end_layer,
                    model.model_id
                ),
            ).into());
        }
    }
    let payout = model.price.saturating_mul(u64::from(job.k)).min(job.escrow);
    let mut paid = 0u64;
    for s in &r.stages {
        let op =
            Address::from_bytes(&s.operator).map_err(|e| corrupt("stage".into(), e.to_string()))?;
        let share = u64::try_from(
            u128::from(payout) * u128::from(s.end_layer - s.start_layer)
                / u128::from(model.total_layers.max(1)),
        )
        .unwrap_or(0);
        credit(state, &op, share)?;
        paid += share;
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
            .attr("latency_blocks", ctx.height - job.submitted_height)
            .attr("submitted_time_ns", job.submitted_time_ns),
    );
    state.put(state_key::job(job.id), &job);
    Ok(())
}

/// Records that `operator` serves `model_id` (registration of a worker).
pub(crate) fn index_worker(
    state: &mut Overlay<'_>,
    model_id: &str,
    operator: &Address,
) -> Result<(), Error> {
    let key = state_key::model_workers(model_id);
    let mut set: pb::OperatorSet = state.get_msg(&key)?.unwrap_or_default();
    let op = operator.as_bytes().to_vec();
    if let Err(at) = set.operators.binary_search(&op) {
        set.operators.insert(at, op);
        state.put(key, &set);
    }
    Ok(())
}

pub(crate) fn add_deadline(state: &mut Overlay<'_>, height: u64, job_id: u64) -> Result<(), Error> {
    let key = state_key::deadlines(height);
    let mut ids: pb::JobIds = state.get_msg(&key)?.unwrap_or_default();
    if let Err(at) = ids.ids.binary_search(&job_id) {
        ids.ids.insert(at, job_id);
        state.put(key, &ids);
    }
    Ok(())
}

/// Whether `w`'s attestation satisfies `policy` now.
fn attested(w: &pb::Worker, policy: &pb::VerificationPolicy, ctx: &BlockCtx) -> bool {
    let Some(a) = &w.attestation else {
        return false;
    };
    if !attestation_is_current(a, ctx.height, ctx.time_ns) {
        return false;
    }
    if a.simulated {
        return ctx.params.allow_simulated_tee;
    }
    (policy.tee_kinds.is_empty() || policy.tee_kinds.contains(&a.kind))
        && (policy.tee_measurements.is_empty() || policy.tee_measurements.contains(&a.measurement))
}

fn corrupt(key: String, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        key,
        reason: reason.into(),
    }
}

/// Workers that may be given a job on `model` now, with their draw weights, in
/// operator order; `exclude` are operators already in the job.
fn eligible(
    state: &Overlay<'_>,
    ctx: &BlockCtx,
    model: &pb::Model,
    exclude: &[Vec<u8>],
) -> Result<Vec<(Address, u128)>, Error> {
    let key = state_key::model_workers(&model.model_id);
    let set: pb::OperatorSet = state.get_msg(&key)?.unwrap_or_default();
    let policy = model.policy.clone().unwrap_or_default();
    let mut out = Vec::with_capacity(set.operators.len());
    for op in &set.operators {
        if exclude.contains(op) {
            continue;
        }
        let addr = Address::from_bytes(op).map_err(|e| corrupt(key.clone(), e.to_string()))?;
        let Some(w) = state.worker(&addr)? else {
            continue;
        };
        if w.stake < ctx.params.min_worker_stake || w.stake == 0 || w.reputation == 0 {
            continue;
        }
        if policy.require_tee && !attested(&w, &policy, ctx) {
            continue;
        }
        let weight = u128::from(w.stake.min(1 << 48)) * u128::from(w.reputation.min(1 << 32));
        out.push((addr, weight));
    }
    Ok(out)
}

/// Draws `count` distinct workers, weighted, from `candidates`.
fn draw(
    seed: &[u8; 32],
    job_id: u64,
    round: u32,
    mut candidates: Vec<(Address, u128)>,
    count: usize,
) -> Vec<Address> {
    let mut chosen = Vec::with_capacity(count);
    for i in 0..count as u64 {
        let total: u128 = candidates.iter().map(|(_, w)| w).sum();
        if total == 0 {
            break;
        }
        let mut h = Sha256::new();
        h.update(ASSIGN_DOMAIN);
        h.update(seed);
        h.update(job_id.to_be_bytes());
        h.update(round.to_be_bytes());
        h.update(i.to_be_bytes());
        let digest: [u8; 32] = h.finalize().into();
        let mut r = u128::from_be_bytes(digest[..16].try_into().unwrap_or([0; 16])) % total;
        let mut pick = candidates.len() - 1;
        for (j, (_, w)) in candidates.iter().enumerate() {
            if r < *w {
                pick = j;
                break;
            }
            r -= w;
        }
        chosen.push(candidates.remove(pick).0);
    }
    chosen
}

/// How many workers could take a job on `model` now.
pub(crate) fn available(
    state: &Overlay<'_>,
    ctx: &BlockCtx,
    model: &pb::Model,
) -> Result<usize, Error> {
    Ok(eligible(state, ctx, model, &[])?.len())
}

/// Assigns a new round of up to `count` workers to `job` (not yet stored) and sets
/// its deadlines. Returns how many were assigned.
pub(crate) fn assign(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx,
    job: &mut pb::Job,
    model: &pb::Model,
    count: usize,
) -> Result<usize, Error> {
    let exclude: Vec<Vec<u8>> = job.assignments.iter().map(|a| a.operator.clone()).collect();
    let candidates = eligible(state, ctx, model, &exclude)?;
    let chosen = draw(&ctx.block_hash, job.id, job.round, candidates, count);
    for op in &chosen {
        job.assignments.push(pb::Assignment {
            operator: op.as_bytes().to_vec(),
            round: job.round,
            ..Default::default()
        });
    }
    job.status = pb::JobStatus::Assigned as i32;
    state.put_raw(state_key::open_job(job.id), job.id.to_be_bytes().to_vec());
    job.commit_deadline = ctx.height + ctx.params.commit_window_blocks;
    job.reveal_deadline = job.commit_deadline + ctx.params.reveal_window_blocks;
    add_deadline(state, job.commit_deadline, job.id)?;
    add_deadline(state, job.reveal_deadline, job.id)?;
    Ok(chosen.len())
}

/// Records that the worker `who` was active at this height.
fn seen(state: &mut Overlay<'_>, ctx: &BlockCtx, who: &Address) -> Result<(), Error> {
    if let Some(mut w) = state.worker(who)? {
        w.last_seen_height = ctx.height;
        state.put(state_key::worker(who), &w);
    }
    Ok(())
}

fn find_assignment(job: &pb::Job, who: &Address) -> Option<usize> {
    job.assignments
        .iter()
        .position(|a| a.round == job.round && a.operator == who.as_bytes())
}

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

/// Processes the deadlines at the block's height; returns the block's events.
pub(crate) fn end_block(state: &mut Overlay<'_>, ctx: &BlockCtx) -> Result<Vec<Event>, Error> {
    let key = state_key::deadlines(ctx.height);
    let Some(ids) = state.get_msg::<pb::JobIds>(&key)? else {
        return Ok(Vec::new());
    };
    state.delete_raw(key);
    let mut events = Vec::new();
    for id in ids.ids {
        let Some(mut job) = state.job(id)? else {
            continue;
        };
        let assigned = job.status == pb::JobStatus::Assigned as i32;
        let revealing = job.status == pb::JobStatus::Revealing as i32;
        if assigned && job.commit_deadline == ctx.height {
            let committed = job
                .assignments
                .iter()
                .any(|a| a.round == job.round && !a.commitment.is_empty());
            if committed {
                job.status = pb::JobStatus::Revealing as i32;
                events.push(
                    Event::new("job_revealing")
                        .attr("job_id", job.id)
                        .attr("reveal_deadline", job.reveal_deadline),
                );
            } else {
                let model = model_of(state, &job)?;
                tally(state, ctx, &mut job, &model, &mut events)?;
            }
        } else if job.status == pb::JobStatus::Pending as i32 && job.reveal_deadline == ctx.height {
            fail(state, ctx, &mut job, "no_pipeline_recorded", &mut events)?;
        } else if (assigned || revealing) && job.reveal_deadline == ctx.height {
            let model = model_of(state, &job)?;
            tally(state, ctx, &mut job, &model, &mut events)?;
        } else {
            continue;
        }
        state.put(state_key::job(job.id), &job);
    }
    Ok(events)
}

fn model_of(state: &Overlay<'_>, job: &pb::Job) -> Result<pb::Model, Error> {
    state.model(&job.model_id)?.ok_or_else(|| {
        corrupt(
            state_key::job(job.id),
            format!("job of unknown model {}", job.model_id),
        )
    })
}

/// The largest group of equivalent reveals (indices into `job.assignments`); the
/// earliest-assigned reveal wins ties.
fn largest_group(job: &pb::Job, tolerance: u64) -> Vec<usize> {
    let revealed: Vec<usize> = (0..job.assignments.len())
        .filter(|&i| job.assignments[i].revealed)
        .collect();
    let mut best: Vec<usize> = Vec::new();
    for &i in &revealed {
        let center = job.assignments[i].output.clone().unwrap_or_default();
        let group: Vec<usize> = revealed
            .iter()
            .copied()
            .filter(|&j| {
                equivalent(
                    &center,
                    job.assignments[j]
                        .output
                        .as_ref()
                        .unwrap_or(&pb::JobOutput::default()),
                    tolerance,
                )
            })
            .collect();
        if group.len() > best.len() {
            best = group;
        }
    }
    best
}

/// Decides the job if it can be decided: finalize, escalate, or fail.
fn tally(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx,
    job: &mut pb::Job,
    model: &pb::Model,
    events: &mut Vec<Event>,
) -> Result<(), Error> {
    let policy = model.policy.clone().unwrap_or_default();
    let group = largest_group(job, policy.tolerance_ppm);
    if !group.is_empty() && group.len() >= policy.quorum.max(1) as usize {
        return finalize(state, ctx, job, model, &group, events);
    }
    let exclude: Vec<Vec<u8>> = job.assignments.iter().map(|a| a.operator.clone()).collect();
    if job.round < ctx.params.max_escalations && !eligible(state, ctx, model, &exclude)?.is_empty()
    {
        job.round += 1;
        let assigned = assign(state, ctx, job, model, job.k as usize)?;
        events.push(
            Event::new("job_escalated")
                .attr("job_id", job.id)
                .attr("model_id", &job.model_id)
                .attr("round", job.round)
                .attr("workers", assigned),
        );
        return Ok(());
    }
    fail(state, ctx, job, "no_quorum", events)
}

fn credit(state: &mut Overlay<'_>, to: &Address, amount: u64) -> Result<(), Error> {
    if amount == 0 {
        return Ok(());
    }
    let mut account = state.account(to)?.unwrap_or_else(|| pb::Account {
        address: to.as_bytes().to_vec(),
        ..Default::default()
    });
    account.balance = account.balance.saturating_add(amount);
    state.put_account(&account)
}

fn scale_reputation(r: u64, ppm: u64) -> u64 {
    let scaled = u128::from(r) * u128::from(ppm) / PPM;
    u64::try_from(scaled)
        .unwrap_or(u64::MAX)
        .min(REPUTATION_MAX)
}

/// Applies one worker's verdict to its record: reputation, and the slash.
fn judge(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx,
    a: &mut pb::Assignment,
    verdict: pb::Verdict,
    events: &mut Vec<Event>,
) -> Result<(), Error> {
    a.verdict = verdict as i32;
    let addr = Address::from_bytes(&a.operator)
        .map_err(|e| corrupt("job assignment".into(), e.to_string()))?;
    let Some(mut w) = state.worker(&addr)? else {
        return Ok(());
    };
    match verdict {
        pb::Verdict::Agreed => {
            w.reputation = scale_reputation(w.reputation, ctx.params.reputation_reward_ppm);
        }
        pb::Verdict::Dissented => {
            w.reputation = scale_reputation(w.reputation, ctx.params.reputation_penalty_ppm);
            let slash = u64::try_from(u128::from(w.stake) * u128::from(ctx.params.slash_ppm) / PPM)
                .unwrap_or(w.stake);
            w.stake -= slash;
            a.slashed = slash;
            events.push(
                Event::new("worker_slashed")
                    .attr("worker", addr)
                    .attr("amount", slash),
            );
            events.push(Event::new("worker_penalized").attr("worker", addr));
            let pool = state.get_u64(state_key::FEE_POOL)?.unwrap_or(0);
            state.put_u64(state_key::FEE_POOL, pool.saturating_add(slash));
        }
        pb::Verdict::Absent => {
            w.reputation = scale_reputation(w.reputation, ctx.params.reputation_penalty_ppm);
            events.push(Event::new("worker_penalized").attr("worker", addr));
        }
        pb::Verdict::NoQuorum | pb::Verdict::Unspecified => {}
    }
    a.reputation_after = w.reputation;
    state.put(state_key::worker(&addr), &w);
    Ok(())
}

fn close(state: &mut Overlay<'_>, job: &mut pb::Job, ctx: &BlockCtx, status: pb::JobStatus) {
    state.delete_raw(state_key::open_job(job.id));
    job.status = status as i32;
    job.finalized_height = ctx.height;
    job.finalized_time_ns = ctx.time_ns;
}

fn finalize(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx,
    job: &mut pb::Job,
    model: &pb::Model,
    group: &[usize],
    events: &mut Vec<Event>,
) -> Result<(), Error> {
    let center = group[0];
    job.result = job.assignments[center].output.clone();
    let unanimous = group.len() == job.assignments.len();
    job.outcome = if unanimous { "unanimous" } else { "majority" }.into();
    // Where the first dissenting pipeline left the quorum's.
    let center_stages = job.assignments[center].stages.clone();
    job.diverged_stage = job
        .assignments
        .iter()
        .enumerate()
        .filter(|(i, a)| a.revealed && !group.contains(i) && !a.stages.is_empty())
        .find_map(|(_, a)| {
            a.stages
                .iter()
                .zip(&center_stages)
                .position(|(x, y)| x.output_hash != y.output_hash)
        })
        .map_or(0, |i| i as u32 + 1);

    let payout = model.price.saturating_mul(u64::from(job.k)).min(job.escrow);
    let share = payout / group.len() as u64;
    let mut paid = 0u64;
    let mut assignments = std::mem::take(&mut job.assignments);
    for (i, a) in assignments.iter_mut().enumerate() {
        let verdict = if group.contains(&i) {
            pb::Verdict::Agreed
        } else if a.revealed {
            pb::Verdict::Dissented
        } else {
            pb::Verdict::Absent
        };
        judge(state, ctx, a, verdict, events)?;
        if verdict != pb::Verdict::Agreed {
            continue;
        }
        let orchestrator = Address::from_bytes(&a.operator)
            .map_err(|e| corrupt(state_key::job(job.id), e.to_string()))?;
        let mut rest = share;
        for s in &a.stages {
            let Ok(op) = Address::from_bytes(&s.operator) else {
                continue;
            };
            if op == orchestrator || !serves_range(state, model, &op, s)? {
                continue;
            }
            let part = u64::try_from(
                u128::from(share) * u128::from(s.end_layer - s.start_layer)
                    / u128::from(model.total_layers.max(1)),
            )
            .unwrap_or(0)
            .min(rest);
            credit(state, &op, part)?;
            rest -= part;
        }
        credit(state, &orchestrator, rest)?;
        a.reward = share;
        paid += share;
    }
    job.assignments = assignments;
    refund_and_close(state, ctx, job, paid, pb::JobStatus::Finalized)?;
    let agreed: Vec<String> = group
        .iter()
        .map(|&i| hex::encode(&job.assignments[i].operator))
        .collect();
    events.push(
        Event::new("job_finalized")
            .attr("job_id", job.id)
            .attr("model_id", &job.model_id)
            .attr("outcome", &job.outcome)
            .attr("agreed", agreed.join(","))
            .attr("latency_blocks", ctx.height - job.submitted_height)
            .attr("submitted_time_ns", job.submitted_time_ns)
            .attr("diverged_stage", job.diverged_stage),
    );
    Ok(())
}

/// Whether `op` is a registered worker serving a shard of `model` with exactly the
/// stage's layer range.
fn serves_range(
    state: &Overlay<'_>,
    model: &pb::Model,
    op: &Address,
    stage: &pb::Stage,
) -> Result<bool, Error> {
    let Some(w) = state.worker(op)? else {
        return Ok(false);
    };
    Ok(w.serves.iter().any(|s| {
        s.model_id == model.model_id
            && model
                .shards
                .get(s.shard_index as usize)
                .is_some_and(|shard| {
                    shard.start_layer == stage.start_layer && shard.end_layer == stage.end_layer
                })
    }))
}

/// Returns to the client what of the escrow was not `paid` out, and closes the job with
/// `status`.
fn refund_and_close(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx,
    job: &mut pb::Job,
    paid: u64,
    status: pb::JobStatus,
) -> Result<(), Error> {
    job.refund = job.escrow - paid;
    let client = Address::from_bytes(&job.client)
        .map_err(|e| corrupt(state_key::job(job.id), e.to_string()))?;
    credit(state, &client, job.refund)?;
    close(state, job, ctx, status);
    Ok(())
}

fn fail(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx,
    job: &mut pb::Job,
    reason: &str,
    events: &mut Vec<Event>,
) -> Result<(), Error> {
    let mut assignments = std::mem::take(&mut job.assignments);
    for a in &mut assignments {
        let verdict = if a.revealed {
            pb::Verdict::NoQuorum
        } else {
            pb::Verdict::Absent
        };
        judge(state, ctx, a, verdict, events)?;
    }
    job.assignments = assignments;
    job.outcome = "no_quorum".into();
    job.failure = reason.into();
    refund_and_close(state, ctx, job, 0, pb::JobStatus::Failed)?;
    events.push(
        Event::new("job_failed")
            .attr("job_id", job.id)
            .attr("model_id", &job.model_id)
            .attr("reason", reason)
            .attr("refund", job.refund),
    );
    Ok(())
}

/// A job status as the CLI and the API name it.
pub fn status_name(status: i32) -> &'static str {
    match pb::JobStatus::try_from(status) {
        Ok(pb::JobStatus::Pending) => "pending",
        Ok(pb::JobStatus::Assigned) => "assigned",
        Ok(pb::JobStatus::Revealing) => "revealing",
        Ok(pb::JobStatus::Finalized) => "finalized",
        Ok(pb::JobStatus::Failed) => "failed",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn out(values: &[i64]) -> pb::JobOutput {
        pb::JobOutput {
            values: values.to_vec(),
            text: String::new(),
        }
    }

    #[test]
    fn equivalence_respects_tolerance_length_and_text() {
        assert!(equivalent(&out(&[1, 2]), &out(&[1, 2]), 0));
        assert!(!equivalent(&out(&[1, 2]), &out(&[1, 3]), 0));
        assert!(equivalent(&out(&[1, 2]), &out(&[1, 3]), 1));
        assert!(!equivalent(&out(&[1, 2]), &out(&[1, 2, 3]), 100));
        let mut t = out(&[1]);
        t.text = "a".into();
        assert!(!equivalent(&t, &out(&[1]), 100));
        assert!(equivalent(&out(&[i64::MIN]), &out(&[i64::MAX]), u64::MAX));
    }

    #[test]
    fn commitments_bind_output_salt_and_worker() {
        let fp = output_fingerprint(&out(&[7]), &[]);
        let a = Address([1; 20]);
        let b = Address([2; 20]);
        let c = result_commitment(&fp, &[0; 32], &a);
        assert_ne!(c, result_commitment(&fp, &[0; 32], &b));
        assert_ne!(c, result_commitment(&fp, &[1; 32], &a));
        assert_ne!(fp, output_fingerprint(&out(&[8]), &[]));
        assert_ne!(fp, output_fingerprint(&out(&[7, 0]), &[]));
    }

    #[test]
    fn draws_are_deterministic_distinct_and_weighted() {
        let cands: Vec<(Address, u128)> = (0..10u8).map(|i| (Address([i; 20]), 1)).collect();
        let a = draw(&[9; 32], 1, 0, cands.clone(), 3);
        assert_eq!(a, draw(&[9; 32], 1, 0, cands.clone(), 3));
        assert_eq!(a.len(), 3);
        assert!(a[0] != a[1] && a[1] != a[2] && a[0] != a[2]);
        assert_ne!(a, draw(&[9; 32], 2, 0, cands.clone(), 3));
        // A zero-weight candidate is never drawn; too few candidates give fewer.
        let skewed = vec![(Address([1; 20]), 0), (Address([2; 20]), 5)];
        assert_eq!(draw(&[0; 32], 1, 0, skewed, 2), vec![Address([2; 20])]);
        // Heavier candidates are drawn more often.
        let heavy = vec![(Address([1; 20]), 1), (Address([2; 20]), 99)];
        let wins = (0..200u64)
            .filter(|&j| draw(&[3; 32], j, 0, heavy.clone(), 1)[0] == Address([2; 20]))
            .count();
        assert!(wins > 180, "{wins}");
    }

    #[test]
    fn reputation_follows_the_papers_factors_and_is_capped() {
        assert_eq!(scale_reputation(REPUTATION_ONE, 800_000), 800_000);
        assert_eq!(scale_reputation(REPUTATION_ONE, 1_010_000), 1_010_000);
        assert_eq!(scale_reputation(REPUTATION_MAX, 1_010_000), REPUTATION_MAX);
    }
}
