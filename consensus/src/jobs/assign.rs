//! Assignment: `k` workers drawn without replacement from those eligible for the
//! model, weighted by stake x reputation and seeded by the block hash, and the
//! deadlines of their round.

use sha2::{Digest, Sha256};
use vichain_proto::v1 as pb;

use super::lookup::corrupt;
use crate::{
    Address, Error,
    attest::attestation_is_current,
    ctx::BlockCtx,
    state::{Overlay, StateReadExt},
    state_key,
};

const ASSIGN_DOMAIN: &[u8] = b"vichain/assign/v1";

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
