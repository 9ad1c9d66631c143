//! `RegisterModel`: the authority registers a model, its shards and its
//! verification policy.

use sha2::{Digest, Sha256};
use vichain_proto::v1::{self as pb};

use super::authority::require_authority;
use crate::{
    TxError, attest,
    ctx::{BlockCtx, Event, TxOutcome},
    error::ExecResult,
    state::{Overlay, StateReadExt},
    state_key,
    tx::SignedTx,
};

const MAX_MODEL_ID_LEN: usize = 64;

const MAX_NAME_LEN: usize = 128;

const MAX_FAMILY_LEN: usize = 32;

pub(super) fn register_model(
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

pub(super) fn check_model(m: &pb::RegisterModel, params: &pb::Params) -> Result<(), TxError> {
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
    if policy.quorum == 0 || policy.quorum > policy.k
        // 2 x quorum <= k, where an overflowing 2 x quorum exceeds any u32 k.
        || policy.quorum.checked_mul(2).is_some_and(|q2| q2 <= policy.k)
    {
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

pub(super) fn check_id(id: &str, field: &'static str) -> Result<(), TxError> {
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
