//! Transaction execution: stateless checks, then stateful checks, then effects,
//! all on an overlay that the caller merges only on success (Penumbra's
//! `ActionHandler` order). Every function here is deterministic: integers and
//! bytes only, block time instead of the clock, ordered maps only.

use sha2::{Digest, Sha256};
use vichain_proto::v1::{self as pb, tx_body::Action};

use crate::{
    Address, Error, TxError, attest,
    crypto::parse_public_key,
    ctx::{BlockCtx, Event, TxOutcome},
    error::ExecResult,
    jobs::{self, REPUTATION_ONE},
    proofs,
    state::{Overlay, StateRead, StateReadExt},
    state_key,
    tx::SignedTx,
};

/// CometBFT's bound on total voting power is i64::MAX / 8; one validator stays well below.
pub const MAX_VALIDATOR_POWER: u64 = 1 << 50;
const MAX_MODEL_ID_LEN: usize = 64;
const MAX_NAME_LEN: usize = 128;
const MAX_FAMILY_LEN: usize = 32;
const MAX_PEER_ID_LEN: usize = 128;

/// Executes `tx` on `state`. On any error `state` must be discarded: a
/// [`ExecError::Rejected`] transaction is invalid, an [`ExecError::Halt`] means the
/// node is broken.
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

fn check_power(power: u64, field: &'static str) -> Result<(), TxError> {
    if power == 0 || power > MAX_VALIDATOR_POWER {
        return Err(TxError::invalid(
            field,
            format!("{power} is outside 1..={MAX_VALIDATOR_POWER}"),
        ));
    }
    Ok(())
}

fn check_id(id: &str, field: &'static str) -> Result<(), TxError> {
    if id.is_empty() || id.len() > MAX_MODEL_ID_LEN {
        return Err(TxError::invalid(
            field,
            format!("length {} is outside 1..={MAX_MODEL_ID_LEN}", id.len()),
        ));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(TxError::invalid(
            field,
            format!("{id:?} may only contain letters, digits, '-', '_' and '.'"),
        ));
    }
    Ok(())
}

fn check_model(m: &pb::RegisterModel, params: &pb::Params) -> Result<(), TxError> {
    check_id(&m.model_id, "register_model.model_id")?;
    if m.name.len() > MAX_NAME_LEN {
        return Err(TxError::invalid(
            "register_model.name",
            "longer than 128 bytes",
        ));
    }
    if m.family.is_empty() || m.family.len() > MAX_FAMILY_LEN {
        return Err(TxError::invalid(
            "register_model.family",
            "must be 1 to 32 bytes",
        ));
    }
    if m.total_layers == 0 {
        return Err(TxError::invalid(
            "register_model.total_layers",
            "must be positive",
        ));
    }
    if m.shards.is_empty() || m.shards.len() as u64 > u64::from(params.max_shards) {
        return Err(TxError::invalid(
            "register_model.shards",
            format!(
                "{} shards; between 1 and {} allowed",
                m.shards.len(),
                params.max_shards
            ),
        ));
    }
    let mut next = 0u32;
    for (i, s) in m.shards.iter().enumerate() {
        if s.start_layer != next || s.end_layer <= s.start_layer {
            return Err(TxError::invalid(
                "register_model.shards",
                format!(
                    "shard {i} covers {}..{}; shards must be non-empty, in order and contiguous from layer {next}",
                    s.start_layer, s.end_layer
                ),
            ));
        }
        if s.sha256.len() != 32 {
            return Err(TxError::invalid(
                "register_model.shards.sha256",
                format!("shard {i}: {} bytes, expected 32", s.sha256.len()),
            ));
        }
        next = s.end_layer;
    }
    if next != m.total_layers {
        return Err(TxError::invalid(
            "register_model.shards",
            format!(
                "shards end at layer {next}, the model has {}",
                m.total_layers
            ),
        ));
    }
    let policy = m
        .policy
        .as_ref()
        .ok_or_else(|| TxError::invalid("register_model.policy", "missing"))?;
    if policy.k == 0 || policy.k > params.max_k {
        return Err(TxError::invalid(
            "register_model.policy.k",
            format!("{} is outside 1..={}", policy.k, params.max_k),
        ));
    }
    if policy.quorum == 0 || policy.quorum > policy.k || policy.quorum * 2 <= policy.k {
        return Err(TxError::invalid(
            "register_model.policy.quorum",
            format!(
                "{} must be a strict majority of k={}",
                policy.quorum, policy.k
            ),
        ));
    }
    attest::check_policy(policy)?;
    if policy.tolerance_ppm > 1_000_000 {
        return Err(TxError::invalid(
            "register_model.policy.tolerance_ppm",
            format!("{} exceeds 1000000", policy.tolerance_ppm),
        ));
    }
    if m.verifying_key.len() as u64 > params.max_verifying_key_bytes {
        return Err(TxError::invalid(
            "register_model.verifying_key",
            format!(
                "{} bytes exceeds the limit of {}",
                m.verifying_key.len(),
                params.max_verifying_key_bytes
            ),
        ));
    }
    if policy.require_proof && m.verifying_key.is_empty() {
        return Err(TxError::invalid(
            "register_model.verifying_key",
            "required when the policy requires proofs",
        ));
    }
    if !m.commitment.is_empty() {
        vichain_zk::Commitment::from_bytes(&m.commitment).map_err(|e| {
            TxError::invalid(
                "register_model.commitment",
                format!(
                    "{} bytes: {e} (expected 32 bytes, a canonical BN254 scalar)",
                    m.commitment.len()
                ),
            )
        })?;
    }
    Ok(())
}

fn check_worker(w: &pb::RegisterWorker, params: &pb::Params) -> Result<(), TxError> {
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

fn check_job(j: &pb::SubmitJob, params: &pb::Params) -> Result<(), TxError> {
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
        return Err(TxError::Overflow {
            what: "fee + amount",
        }
        .into());
    };
    if account.balance < needed {
        return Err(TxError::InsufficientFunds {
            address: sender.to_string(),
            balance: account.balance,
            needed,
        }
        .into());
    }
    account.balance -= needed;
    account.nonce += 1;
    if account.public_key.is_empty() {
        account.public_key = tx.signer.as_bytes().to_vec();
    }
    state.put_account(&account)?;
    let pool = state.get_u64(state_key::FEE_POOL)?.unwrap_or(0);
    let Some(pool) = pool.checked_add(tx.body.fee) else {
        return Err(TxError::Overflow { what: "fee pool" }.into());
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

fn require_authority(
    state: &Overlay<'_>,
    sender: &Address,
    action: &'static str,
) -> ExecResult<()> {
    if state.authority()? != *sender {
        return Err(TxError::Unauthorized {
            address: sender.to_string(),
            action,
        }
        .into());
    }
    Ok(())
}

fn transfer(
    state: &mut Overlay<'_>,
    sender: &Address,
    t: &pb::Transfer,
    out: &mut TxOutcome,
) -> ExecResult<()> {
    let to = Address::from_bytes(&t.to)?;
    let mut recipient = state.account(&to)?.unwrap_or_else(|| pb::Account {
        address: to.as_bytes().to_vec(),
        ..Default::default()
    });
    recipient.balance = recipient
        .balance
        .checked_add(t.amount)
        .ok_or(TxError::Overflow {
            what: "recipient balance",
        })?;
    state.put_account(&recipient)?;
    out.events.push(
        Event::new("transfer")
            .attr("from", sender)
            .attr("to", to)
            .attr("amount", t.amount),
    );
    Ok(())
}

fn validator_count(state: &Overlay<'_>) -> Result<u64, Error> {
    Ok(state.get_u64(state_key::VALIDATOR_COUNT)?.unwrap_or(0))
}

fn add_validator(
    state: &mut Overlay<'_>,
    sender: &Address,
    v: &pb::AddValidator,
    out: &mut TxOutcome,
) -> ExecResult<()> {
    require_authority(state, sender, "add validators")?;
    if state.validator(&v.pub_key)?.is_some() {
        return Err(TxError::AlreadyExists {
            what: "validator",
            id: hex::encode(&v.pub_key),
        }
        .into());
    }
    let record = pb::Validator {
        pub_key: v.pub_key.clone(),
        power: v.power,
    };
    state.put(state_key::validator(&v.pub_key), &record);
    let count = validator_count(state)? + 1;
    state.put_u64(state_key::VALIDATOR_COUNT, count);
    out.validator_updates.push((v.pub_key.clone(), v.power));
    out.events.push(
        Event::new("validator_added")
            .attr("pub_key", hex::encode(&v.pub_key))
            .attr("power", v.power),
    );
    Ok(())
}

fn remove_validator(
    state: &mut Overlay<'_>,
    sender: &Address,
    v: &pb::RemoveValidator,
    out: &mut TxOutcome,
) -> ExecResult<()> {
    require_authority(state, sender, "remove validators")?;
    if state.validator(&v.pub_key)?.is_none() {
        return Err(TxError::UnknownValidator {
            pub_key: hex::encode(&v.pub_key),
        }
        .into());
    }
    let count = validator_count(state)?;
    if count <= 1 {
        return Err(TxError::invalid(
            "remove_validator.pub_key",
            "cannot remove the last validator",
        )
        .into());
    }
    state.delete_raw(state_key::validator(&v.pub_key));
    state.put_u64(state_key::VALIDATOR_COUNT, count - 1);
    out.validator_updates.push((v.pub_key.clone(), 0));
    out.events
        .push(Event::new("validator_removed").attr("pub_key", hex::encode(&v.pub_key)));
    Ok(())
}

fn update_power(
    state: &mut Overlay<'_>,
    sender: &Address,
    v: &pb::UpdatePower,
    out: &mut TxOutcome,
) -> ExecResult<()> {
    require_authority(state, sender, "change validator power")?;
    let Some(mut record) = state.validator(&v.pub_key)? else {
        return Err(TxError::UnknownValidator {
            pub_key: hex::encode(&v.pub_key),
        }
        .into());
    };
    record.power = v.power;
    state.put(state_key::validator(&v.pub_key), &record);
    out.validator_updates.push((v.pub_key.clone(), v.power));
    out.events.push(
        Event::new("validator_power")
            .attr("pub_key", hex::encode(&v.pub_key))
            .attr("power", v.power),
    );
    Ok(())
}

fn register_model(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx,
    tx: &SignedTx,
    m: &pb::RegisterModel,
    out: &mut TxOutcome,
) -> ExecResult<()> {
    require_authority(state, &tx.sender, "register models")?;
    if state.model(&m.model_id)?.is_some() {
        return Err(TxError::AlreadyExists {
            what: "model",
            id: m.model_id.clone(),
        }
        .into());
    }
    let model = model_record(m, tx.sender.as_bytes(), ctx.height);
    state.put(state_key::model(&m.model_id), &model);
    out.events.push(
        Event::new("model_registered")
            .attr("model_id", &m.model_id)
            .attr("shards", m.shards.len()),
    );
    Ok(())
}

/// The stored record of a model; shared by RegisterModel and genesis.
pub(crate) fn model_record(m: &pb::RegisterModel, owner: &[u8], height: u64) -> pb::Model {
    let verifying_key_hash = if m.verifying_key.is_empty() {
        Vec::new()
    } else {
        Sha256::digest(&m.verifying_key).to_vec()
    };
    pb::Model {
        model_id: m.model_id.clone(),
        name: m.name.clone(),
        family: m.family.clone(),
        total_layers: m.total_layers,
        shards: m.shards.clone(),
        policy: m.policy.clone(),
        verifying_key: m.verifying_key.clone(),
        verifying_key_hash,
        commitment: m.commitment.clone(),
        price: m.price,
        owner: owner.to_vec(),
        registered_height: height,
    }
}

pub(crate) fn validate_model(m: &pb::RegisterModel, params: &pb::Params) -> Result<(), TxError> {
    check_model(m, params)
}

fn register_worker(
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

fn submit_job(
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
        return Err(TxError::Overflow { what: "price * k" }.into());
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
    state.put_u64(state_key::NEXT_JOB_ID, id + 1);
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
        job.reveal_deadline =
            ctx.height + ctx.params.commit_window_blocks + ctx.params.reveal_window_blocks;
        jobs::add_deadline(state, job.reveal_deadline, id)?;
    } else {
        jobs::assign(state, ctx, &mut job, &model, k as usize)?;
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

fn submit_proof(
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

fn submit_attestation(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx,
    tx: &SignedTx,
    a: &pb::SubmitAttestation,
    out: &mut TxOutcome,
) -> ExecResult<()> {
    let Some(mut worker) = state.worker(&tx.sender)? else {
        return Err(TxError::UnknownWorker {
            address: tx.sender.to_string(),
        }
        .into());
    };
    let nonce = match state.get_raw(state_key::recent_block_hash(a.nonce_height).as_bytes())? {
        Some(h) => <[u8; 32]>::try_from(h.as_slice()).map_err(|_| Error::Corrupt {
            key: state_key::recent_block_hash(a.nonce_height),
            reason: format!("{} bytes, expected 32", h.len()),
        })?,
        None => {
            return Err(TxError::invalid(
                "submit_attestation.nonce_height",
                format!(
                    "block {} is not among the last {} blocks",
                    a.nonce_height,
                    state_key::RECENT_BLOCK_HASHES
                ),
            )
            .into());
        }
    };
    let (evidence, encryption_key) = attest::check_submit_attestation(a, &ctx.params)?;
    let verified = attest::verify(&evidence, &ctx.params, ctx.time_ns)?;
    if let Err(e) = vichain_tee::check_binding(
        &verified,
        &worker.operator_key,
        &ctx.chain_id,
        &nonce,
        &encryption_key,
    ) {
        return Err(TxError::AttestationInvalid {
            reason: e.to_string(),
        }
        .into());
    }
    let mut checked = std::collections::BTreeSet::new();
    for s in &worker.serves {
        if !checked.insert(s.model_id.clone()) {
            continue;
        }
        let Some(model) = state.model(&s.model_id)? else {
            continue;
        };
        let policy = model.policy.unwrap_or_default();
        if !policy.require_tee {
            continue;
        }
        if let Err(e) = attest::tee_policy(&policy, &ctx.params).check(&verified) {
            return Err(TxError::AttestationInvalid {
                reason: format!("model {}: {e}", s.model_id),
            }
            .into());
        }
    }
    let record = attest::record(
        &verified,
        &a.evidence,
        &encryption_key,
        ctx.height,
        ctx.params.attestation_ttl_blocks,
    );
    out.events.push(
        Event::new("attestation_verified")
            .attr("operator", tx.sender)
            .attr("kind", &record.kind)
            .attr("measurement", hex::encode(&record.measurement))
            .attr("tcb_status", &record.tcb_status)
            .attr("simulated", record.simulated)
            .attr("encryption_key", hex::encode(&record.encryption_key))
            .attr("expiry_height", record.expiry_height),
    );
    worker.attestation = Some(record);
    worker.last_seen_height = ctx.height;
    state.put(state_key::worker(&tx.sender), &worker);
    Ok(())
}
