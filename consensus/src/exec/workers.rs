//! `RegisterWorker`: an operator stakes and declares the shards it serves.

use vichain_proto::v1::{self as pb};

use super::models::check_id;
use crate::{
    TxError,
    ctx::{BlockCtx, Event, TxOutcome},
    error::ExecResult,
    jobs::{self, REPUTATION_ONE},
    state::{Overlay, StateReadExt},
    state_key,
    tx::SignedTx,
};

const MAX_PEER_ID_LEN: usize = 128;

pub(super) fn register_worker(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx,
    tx: &SignedTx,
    w: &pb::RegisterWorker,
    out: &mut TxOutcome,
) -> ExecResult<()> {
    if state.worker(&tx.sender)?.is_some() {
        return Err(TxError::AlreadyExists {
            what: "worker",
            id: tx.sender.to_string(),
        }
        .into());
    }
    for s in &w.serves {
        let Some(model) = state.model(&s.model_id)? else {
            return Err(TxError::UnknownModel {
                model_id: s.model_id.clone(),
            }
            .into());
        };
        if s.shard_index as usize >= model.shards.len() {
            return Err(TxError::invalid(
                "register_worker.serves.shard_index",
                format!(
                    "model {} has {} shards, no shard {}",
                    s.model_id,
                    model.shards.len(),
                    s.shard_index
                ),
            )
            .into());
        }
    }
    let worker = pb::Worker {
        operator: tx.sender.as_bytes().to_vec(),
        operator_key: tx.signer.as_bytes().to_vec(),
        peer_id: w.peer_id.clone(),
        stake: w.stake,
        reputation: REPUTATION_ONE,
        serves: w.serves.clone(),
        registered_height: ctx.height,
        attestation: None,
        last_seen_height: ctx.height,
    };
    state.put(state_key::worker(&tx.sender), &worker);
    for s in &w.serves {
        jobs::index_worker(state, &s.model_id, &tx.sender)?;
    }
    out.events.push(
        Event::new("worker_registered")
            .attr("operator", tx.sender)
            .attr("peer_id", &w.peer_id)
            .attr("stake", w.stake),
    );
    Ok(())
}

pub(super) fn check_worker(w: &pb::RegisterWorker, params: &pb::Params) -> Result<(), TxError> {
    const BASE58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    if w.peer_id.is_empty()
        || w.peer_id.len() > MAX_PEER_ID_LEN
        || !w.peer_id.bytes().all(|b| BASE58.contains(&b))
    {
        return Err(TxError::invalid(
            "register_worker.peer_id",
            format!("{:?} is not a base58 libp2p peer id", w.peer_id),
        ));
    }
    if w.stake < params.min_worker_stake {
        return Err(TxError::invalid(
            "register_worker.stake",
            format!(
                "{} is below the minimum stake {}",
                w.stake, params.min_worker_stake
            ),
        ));
    }
    if w.serves.is_empty() || w.serves.len() as u64 > u64::from(params.max_served_shards) {
        return Err(TxError::invalid(
            "register_worker.serves",
            format!(
                "{} shards; between 1 and {} allowed",
                w.serves.len(),
                params.max_served_shards
            ),
        ));
    }
    for (i, s) in w.serves.iter().enumerate() {
        check_id(&s.model_id, "register_worker.serves.model_id")?;
        if w.serves[..i]
            .iter()
            .any(|o| o.model_id == s.model_id && o.shard_index == s.shard_index)
        {
            return Err(TxError::invalid(
                "register_worker.serves",
                format!("shard {} of {} is listed twice", s.shard_index, s.model_id),
            ));
        }
    }
    Ok(())
}
