//! Transaction execution: stateless checks, then stateful checks, then effects,
//! all on an overlay that the caller merges only on success (Penumbra's
//! `ActionHandler` order). Every function here is deterministic: integers and
//! bytes only, block time instead of the clock, ordered maps only.
//!
//! This module checks what every transaction shares (chain id, fee, nonce, funds)
//! and dispatches the action to its module; the job actions after submission live
//! in [`crate::jobs`].

mod attestation;
mod authority;
mod models;
mod submit_job;
mod submit_proof;
mod transfer;
mod validators;
mod workers;

pub(crate) use models::{model_record, validate_model};
pub use validators::MAX_VALIDATOR_POWER;

use vichain_proto::v1::tx_body::Action;

use crate::{
    Address, TxError, attest,
    crypto::parse_public_key,
    ctx::{BlockCtx, Event, TxOutcome},
    error::ExecResult,
    jobs, proofs,
    state::{Overlay, StateReadExt},
    state_key,
    tx::SignedTx,
};

use self::{
    attestation::submit_attestation,
    models::{check_model, register_model},
    submit_job::{check_job, submit_job},
    submit_proof::submit_proof,
    transfer::transfer,
    validators::{add_validator, check_power, remove_validator, update_power},
    workers::{check_worker, register_worker},
};

/// Executes `tx` on `state`. On any error `state` must be discarded: a
/// [`Rejected`](crate::error::ExecError::Rejected) transaction is invalid, a
/// [`Halt`](crate::error::ExecError::Halt) means the node is broken.
pub fn execute(state: &mut Overlay<'_>, ctx: &BlockCtx, tx: &SignedTx) -> ExecResult<TxOutcome> {
    check_stateless(ctx, tx)?;
    execute_stateful(state, ctx, tx)
}

/// Checks that need no state beyond the block context.
fn check_stateless(ctx: &BlockCtx, tx: &SignedTx) -> Result<(), TxError> {
    if tx.body.chain_id != ctx.chain_id {
        return Err(TxError::WrongChainId {
            expected: ctx.chain_id.clone(),
            got: tx.body.chain_id.clone(),
        });
    }
    if tx.body.fee < ctx.params.min_fee {
        return Err(TxError::FeeTooLow {
            fee: tx.body.fee,
            min_fee: ctx.params.min_fee,
        });
    }
    match &tx.action {
        Action::Transfer(t) => {
            Address::from_bytes(&t.to).map_err(|_| {
                TxError::invalid("transfer.to", format!("{} bytes, expected 20", t.to.len()))
            })?;
            if t.amount == 0 {
                return Err(TxError::invalid("transfer.amount", "must be positive"));
            }
        }
        Action::AddValidator(v) => {
            parse_public_key(&v.pub_key, "add_validator.pub_key")?;
            check_power(v.power, "add_validator.power")?;
        }
        Action::RemoveValidator(v) => {
            parse_public_key(&v.pub_key, "remove_validator.pub_key")?;
        }
        Action::UpdatePower(v) => {
            parse_public_key(&v.pub_key, "update_power.pub_key")?;
            check_power(v.power, "update_power.power")?;
        }
        Action::RegisterModel(m) => check_model(m, &ctx.params)?,
        Action::RegisterWorker(w) => check_worker(w, &ctx.params)?,
        Action::SubmitJob(j) => check_job(j, &ctx.params)?,
        Action::SubmitProof(p) => proofs::check_submit_proof(p)?,
        Action::SubmitAttestation(a) => {
            attest::check_submit_attestation(a, &ctx.params)?;
        }
        Action::CommitResult(c) => jobs::check_commit(c)?,
        Action::RevealResult(r) => jobs::check_reveal(r, &ctx.params)?,
        Action::SealInputs(s) => jobs::check_seal(s, &ctx.params)?,
        Action::RecordPipeline(r) => jobs::check_record(r, &ctx.params)?,
    }
    Ok(())
}

fn execute_stateful(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx,
    tx: &SignedTx,
) -> ExecResult<TxOutcome> {
    let sender = tx.sender;
    let Some(mut account) = state.account(&sender)? else {
        return Err(TxError::UnknownAccount {
            address: sender.to_string(),
        }
        .into());
    };
    let nonce = tx.body.nonce;
    if nonce < account.nonce {
        return Err(TxError::NonceReplayed {
            address: sender.to_string(),
            expected: account.nonce,
            got: nonce,
        }
        .into());
    }
    if nonce > account.nonce {
        return Err(TxError::NonceGap {
            address: sender.to_string(),
            expected: account.nonce,
            got: nonce,
        }
        .into());
    }
    // Everything the sender must pay up front: the fee plus what the action spends.
    let spend = match &tx.action {
        Action::Transfer(t) => t.amount,
        Action::RegisterWorker(w) => w.stake,
        Action::SubmitJob(j) => j.max_fee,
        _ => 0,
    };
    let Some(needed) = tx.body.fee.checked_add(spend) else {
        return Err(TxError::overflow("fee + amount", format!("{} + {spend}", tx.body.fee)).into());
    };
    let Some(balance) = account.balance.checked_sub(needed) else {
        return Err(TxError::InsufficientFunds {
            address: sender.to_string(),
            balance: account.balance,
            needed,
        }
        .into());
    };
    let Some(next_nonce) = nonce.checked_add(1) else {
        return Err(TxError::overflow("nonce + 1", format!("{nonce} + 1")).into());
    };
    account.balance = balance;
    account.nonce = next_nonce;
    if account.public_key.is_empty() {
        account.public_key = tx.signer.as_bytes().to_vec();
    }
    state.put_account(&account)?;
    let pool = state.get_u64(state_key::FEE_POOL)?.unwrap_or(0);
    let Some(pool) = pool.checked_add(tx.body.fee) else {
        return Err(
            TxError::overflow("fee pool + fee", format!("{pool} + {}", tx.body.fee)).into(),
        );
    };
    state.put_u64(state_key::FEE_POOL, pool);

    let mut outcome = TxOutcome::default();
    match &tx.action {
        Action::Transfer(t) => transfer(state, &sender, t, &mut outcome),
        Action::AddValidator(v) => add_validator(state, &sender, v, &mut outcome),
        Action::RemoveValidator(v) => remove_validator(state, &sender, v, &mut outcome),
        Action::UpdatePower(v) => update_power(state, &sender, v, &mut outcome),
        Action::RegisterModel(m) => register_model(state, ctx, tx, m, &mut outcome),
        Action::RegisterWorker(w) => register_worker(state, ctx, tx, w, &mut outcome),
        Action::SubmitJob(j) => submit_job(state, ctx, tx, j, &mut outcome),
        Action::SubmitProof(p) => submit_proof(state, ctx, tx, p, &mut outcome),
        Action::SubmitAttestation(a) => submit_attestation(state, ctx, tx, a, &mut outcome),
        Action::CommitResult(c) => jobs::commit_result(state, ctx, tx, c, &mut outcome),
        Action::RevealResult(r) => jobs::reveal_result(state, ctx, tx, r, &mut outcome),
        Action::SealInputs(s) => jobs::seal_inputs(state, ctx, tx, s, &mut outcome),
        Action::RecordPipeline(r) => jobs::record_pipeline(state, ctx, tx, r, &mut outcome),
    }?;
    outcome.events.insert(
        0,
        Event::new("tx")
            .attr("kind", tx.kind())
            .attr("sender", sender)
            .attr("nonce", nonce)
            .attr("fee", tx.body.fee),
    );
    Ok(outcome)
}
