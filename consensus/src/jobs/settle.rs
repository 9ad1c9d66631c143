//! Settlement: reveals grouped by equivalence; a quorum finalizes the job (agreeing
//! workers paid and rewarded, dissenters slashed, absent ones penalized), otherwise
//! it is escalated to fresh workers or fails and is refunded.

use vichain_proto::v1 as pb;

use super::{
    assign::{assign, deadlines, eligible},
    lookup::corrupt,
    output::equivalent,
};
use crate::{
    Address, Error,
    ctx::{BlockCtx, Event},
    state::{Overlay, StateReadExt},
    state_key,
};

/// Reputation is fixed point with this scale (1.0).
pub const REPUTATION_ONE: u64 = 1_000_000;

/// Reputation never grows above this (10.0), so that no long-lived worker's weight
/// crowds out the others.
pub const REPUTATION_MAX: u64 = 10 * REPUTATION_ONE;

const PPM: u64 = 1_000_000;

/// Decides the job if it can be decided: finalize, escalate, or fail.
pub(super) fn tally(
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
        // A round whose deadlines would pass u64 (windows near u64::MAX in the params)
        // cannot be opened: the job fails instead of escalating.
        if let Ok(deadlines) = deadlines(ctx) {
            // round < max_escalations, a u32: the next round fits.
            job.round = job.round.checked_add(1).ok_or_else(|| {
                corrupt(
                    state_key::job(job.id),
                    format!("round {} + 1 overflows", job.round),
                )
            })?;
            let assigned = assign(state, ctx, job, model, job.k as usize, deadlines)?;
            events.push(
                Event::new("job_escalated")
                    .attr("job_id", job.id)
                    .attr("model_id", &job.model_id)
                    .attr("round", job.round)
                    .attr("workers", assigned),
            );
            return Ok(());
        }
    }
    fail(state, ctx, job, "no_quorum", events)
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
        // A position among one reveal's stages, bounded by the transaction's size.
        .map_or(0, |i| (i as u32).saturating_add(1));

    // SubmitJob checked that price x k fits and is escrowed; the escrow bounds the payout.
    let payout = model.price.saturating_mul(u64::from(job.k)).min(job.escrow);
    let share = payout.checked_div(group.len() as u64).ok_or_else(|| {
        corrupt(
            state_key::job(job.id),
            "finalized without an agreeing group",
        )
    })?;
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
            let part = mul_div(
                share,
                u64::from(stage_layers(model, s)?),
                u64::from(model.total_layers.max(1)),
            )
            .unwrap_or(0)
            .min(rest);
            credit(state, &op, part)?;
            rest = rest.checked_sub(part).ok_or_else(|| {
                corrupt(
                    state_key::job(job.id),
                    format!("stage part {part} exceeds the rest {rest} of a share"),
                )
            })?;
        }
        credit(state, &orchestrator, rest)?;
        a.reward = share;
        // The shares add up to at most the payout, itself at most the escrow.
        paid = paid.checked_add(share).ok_or_else(|| {
            corrupt(
                state_key::job(job.id),
                format!("paid {paid} + share {share} overflows"),
            )
        })?;
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
            .attr("latency_blocks", latency(ctx, job))
            .attr("submitted_time_ns", job.submitted_time_ns)
            .attr("diverged_stage", job.diverged_stage),
    );
    Ok(())
}

pub(super) fn fail(
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
            let slash = mul_div(w.stake, ctx.params.slash_ppm, PPM).unwrap_or(w.stake);
            // Genesis bounds slash_ppm by 1000000, so the slash is at most the stake.
            w.stake = w.stake.checked_sub(slash).ok_or_else(|| {
                corrupt(
                    state_key::PARAMS.into(),
                    format!(
                        "slash_ppm {} slashes {slash}, more than the stake {} of {addr}",
                        ctx.params.slash_ppm, w.stake
                    ),
                )
            })?;
            a.slashed = slash;
            events.push(
                Event::new("worker_slashed")
                    .attr("worker", addr)
                    .attr("amount", slash),
            );
            events.push(Event::new("worker_penalized").attr("worker", addr));
            let pool = state.get_u64(state_key::FEE_POOL)?.unwrap_or(0);
            // The slash left a stake, and the pool and all stakes together are part of
            // the total supply, which genesis bounds by u64::MAX.
            let pool = pool.checked_add(slash).ok_or_else(|| {
                corrupt(
                    state_key::FEE_POOL.into(),
                    format!("fee pool {pool} + slash {slash} overflows"),
                )
            })?;
            state.put_u64(state_key::FEE_POOL, pool);
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

/// Reputation is clamped to [`REPUTATION_MAX`], so a product past u64 saturates:
/// it would be clamped anyway.
fn scale_reputation(r: u64, ppm: u64) -> u64 {
    mul_div(r, ppm, PPM).unwrap_or(u64::MAX).min(REPUTATION_MAX)
}

/// `a x b / d` rounded down, computed in u128 (where a product of two u64 always
/// fits); `None` where `d` is 0 or the quotient does not fit a u64.
pub(super) fn mul_div(a: u64, b: u64, d: u64) -> Option<u64> {
    let product = u128::from(a).checked_mul(u128::from(b))?;
    u64::try_from(product.checked_div(u128::from(d))?).ok()
}

/// How many layers a stage holds: it matches a shard of `model`, and shards are
/// non-empty (checked at registration), so only a corrupt model gives none.
pub(super) fn stage_layers(model: &pb::Model, s: &pb::Stage) -> Result<u32, Error> {
    s.end_layer.checked_sub(s.start_layer).ok_or_else(|| {
        corrupt(
            state_key::model(&model.model_id),
            format!(
                "stage {}..{} ends before it starts",
                s.start_layer, s.end_layer
            ),
        )
    })
}

/// Blocks from a job's submission to `ctx`, for its events; a job is never settled
/// below the height it was submitted at, so this never saturates.
pub(super) fn latency(ctx: &BlockCtx, job: &pb::Job) -> u64 {
    ctx.height.saturating_sub(job.submitted_height)
}

pub(super) fn credit(state: &mut Overlay<'_>, to: &Address, amount: u64) -> Result<(), Error> {
    if amount == 0 {
        return Ok(());
    }
    let mut account = state.account(to)?.unwrap_or_else(|| pb::Account {
        address: to.as_bytes().to_vec(),
        ..Default::default()
    });
    // What is credited was debited elsewhere (an escrow, a stake), and genesis bounds
    // the total supply by u64::MAX: only a corrupt state overflows a balance.
    account.balance = account.balance.checked_add(amount).ok_or_else(|| {
        corrupt(
            state_key::account(to),
            format!("balance {} + {amount} overflows", account.balance),
        )
    })?;
    state.put_account(&account)
}

/// Returns to the client what of the escrow was not `paid` out, and closes the job with
/// `status`.
pub(super) fn refund_and_close(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx,
    job: &mut pb::Job,
    paid: u64,
    status: pb::JobStatus,
) -> Result<(), Error> {
    job.refund = job.escrow.checked_sub(paid).ok_or_else(|| {
        corrupt(
            state_key::job(job.id),
            format!("paid {paid} exceeds the escrow {}", job.escrow),
        )
    })?;
    let client = Address::from_bytes(&job.client)
        .map_err(|e| corrupt(state_key::job(job.id), e.to_string()))?;
    credit(state, &client, job.refund)?;
    close(state, job, ctx, status);
    Ok(())
}

fn close(state: &mut Overlay<'_>, job: &mut pb::Job, ctx: &BlockCtx, status: pb::JobStatus) {
    state.delete_raw(state_key::open_job(job.id));
    job.status = status as i32;
    job.finalized_height = ctx.height;
    job.finalized_time_ns = ctx.time_ns;
}

/// Whether `op` is a registered worker serving a shard of `model` with exactly the
/// stage's layer range.
pub(super) fn serves_range(
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn overflow_attack_reputation_and_stake_at_the_bounds_saturate_or_stay_exact() {
        // Reputation saturates to its cap, whatever the factor.
        assert_eq!(scale_reputation(u64::MAX, u64::MAX), REPUTATION_MAX);
        assert_eq!(scale_reputation(u64::MAX, 0), 0);
        // A slash of the largest stake at 100% is exact; one past 100% does not fit.
        assert_eq!(mul_div(u64::MAX, PPM, PPM), Some(u64::MAX));
        assert_eq!(mul_div(u64::MAX, 1_000_001, PPM), None);
        assert_eq!(mul_div(u64::MAX, u64::MAX, u64::MAX), Some(u64::MAX));
        assert_eq!(mul_div(1, 1, 0), None);
    }

    #[test]
    fn overflow_attack_credit_past_u64_halts_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Storage::open(&dir.path().join("state.redb")).unwrap();
        let mut state = Overlay::new(&store);
        let to = Address([5; 20]);
        let rich = pb::Account {
            address: to.as_bytes().to_vec(),
            balance: u64::MAX - 1,
            ..Default::default()
        };
        state.put_account(&rich).unwrap();
        credit(&mut state, &to, 1).unwrap();
        assert_eq!(state.account(&to).unwrap().unwrap().balance, u64::MAX);
        // Only a broken supply invariant gets here: halt, rather than burn tokens by
        // saturating or mint them by wrapping.
        let err = credit(&mut state, &to, 1).unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { reason, .. } if reason.contains("18446744073709551615 + 1")),
            "{err}"
        );
        assert_eq!(state.account(&to).unwrap().unwrap().balance, u64::MAX);
    }

    #[test]
    fn reputation_follows_the_papers_factors_and_is_capped() {
        assert_eq!(scale_reputation(REPUTATION_ONE, 800_000), 800_000);
        assert_eq!(scale_reputation(REPUTATION_ONE, 1_010_000), 1_010_000);
        assert_eq!(scale_reputation(REPUTATION_MAX, 1_010_000), REPUTATION_MAX);
    }
}
