//! Assignment: `k` workers drawn without replacement from those eligible for the
//! model, weighted by stake x reputation and seeded by the block hash, and the
//! deadlines of their round.

use sha2::{Digest, Sha256};
use vichain_proto::v1 as pb;

use super::lookup::corrupt;
use crate::{
    Address, Error, TxError,
    attest::attestation_is_current,
    ctx::BlockCtx,
    state::{Overlay, StateReadExt},
    state_key,
};

const ASSIGN_DOMAIN: &[u8] = b"vichain/assign/v1";

/// The commit and reveal deadlines of a round that starts at the block's height.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    pub(crate) commit: u64,
    pub(crate) reveal: u64,
}

/// The deadlines of a round starting now: `height + commit window`, then `+ reveal
/// window`. The windows come from the params, so a sum past u64 rejects the
/// transaction that would open the round.
pub(crate) fn deadlines(ctx: &BlockCtx) -> Result<Deadlines, TxError> {
    let p = &ctx.params;
    let commit = ctx.height.checked_add(p.commit_window_blocks);
    match commit.and_then(|c| Some((c, c.checked_add(p.reveal_window_blocks)?))) {
        Some((commit, reveal)) => Ok(Deadlines { commit, reveal }),
        None => Err(TxError::overflow(
            "height + commit window + reveal window",
            format!(
                "{} + {} + {}",
                ctx.height, p.commit_window_blocks, p.reveal_window_blocks
            ),
        )),
    }
}

/// Assigns a new round of up to `count` workers to `job` (not yet stored) and sets
/// its `deadlines`. Returns how many were assigned.
pub(crate) fn assign(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx,
    job: &mut pb::Job,
    model: &pb::Model,
    count: usize,
    deadlines: Deadlines,
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
    job.commit_deadline = deadlines.commit;
    job.reveal_deadline = deadlines.reveal;
    add_deadline(state, job.commit_deadline, job.id)?;
    add_deadline(state, job.reveal_deadline, job.id)?;
    Ok(chosen.len())
}

/// How many workers could take a job on `model` now.
pub(crate) fn available(
    state: &Overlay<'_>,
    ctx: &BlockCtx,
    model: &pb::Model,
) -> Result<usize, Error> {
    Ok(eligible(state, ctx, model, &[])?.len())
}

/// Workers that may be given a job on `model` now, with their draw weights, in
/// operator order; `exclude` are operators already in the job.
pub(super) fn eligible(
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
        // At most 2^48 x 2^32 = 2^80: the product never saturates a u128.
        let weight =
            u128::from(w.stake.min(1 << 48)).saturating_mul(u128::from(w.reputation.min(1 << 32)));
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
        // Each weight is at most 2^80 (see `eligible`): the sum never saturates.
        let total = candidates
            .iter()
            .fold(0u128, |sum, (_, w)| sum.saturating_add(*w));
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
        let Some(mut r) =
            u128::from_be_bytes(digest[..16].try_into().unwrap_or([0; 16])).checked_rem(total)
        else {
            break;
        };
        // A positive total means at least one candidate.
        let Some(mut pick) = candidates.len().checked_sub(1) else {
            break;
        };
        for (j, (_, w)) in candidates.iter().enumerate() {
            match r.checked_sub(*w) {
                Some(rest) => r = rest,
                None => {
                    pick = j;
                    break;
                }
            }
        }
        chosen.push(candidates.remove(pick).0);
    }
    chosen
}

/// Whether `w`'s attestation satisfies `policy` now.
pub(super) fn attested(w: &pb::Worker, policy: &pb::VerificationPolicy, ctx: &BlockCtx) -> bool {
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

pub(crate) fn add_deadline(state: &mut Overlay<'_>, height: u64, job_id: u64) -> Result<(), Error> {
    let key = state_key::deadlines(height);
    let mut ids: pb::JobIds = state.get_msg(&key)?.unwrap_or_default();
    if let Err(at) = ids.ids.binary_search(&job_id) {
        ids.ids.insert(at, job_id);
        state.put(key, &ids);
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
}
