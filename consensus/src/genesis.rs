//! Turning the genesis `app_state` into the first state of the ledger.

use sha2::{Digest, Sha256};
use vichain_config::AppState;
use vichain_proto::v1 as pb;

use crate::{
    Address, Error, Result,
    exec::{model_record, validate_model},
    state::Overlay,
    state_key,
};

/// A validator given to InitChain: (ed25519 public key, power).
pub type GenesisValidatorKey = (Vec<u8>, u64);

/// Writes the genesis state into `state`. Everything is validated first; a bad
/// genesis is an error naming the offending entry.
pub fn apply(
    state: &mut Overlay<'_>,
    chain_id: &str,
    app_state_bytes: &[u8],
    validators: &[GenesisValidatorKey],
    initial_height: u64,
) -> Result<()> {
    let app: AppState = serde_json::from_slice(app_state_bytes)
        .map_err(|e| Error::Genesis(format!("app_state is not valid JSON for vichain: {e}")))?;
    if chain_id.is_empty() {
        return Err(Error::Genesis("chain id is empty".into()));
    }
    let authority: Address = app
        .authority
        .parse()
        .map_err(|e| Error::Genesis(format!("authority: {e}")))?;
    let p = &app.params;
    let params = pb::Params {
        max_tx_bytes: p.max_tx_bytes,
        max_input_bytes: p.max_input_bytes,
        min_fee: p.min_fee,
        min_worker_stake: p.min_worker_stake,
        max_k: p.max_k,
        max_shards: p.max_shards,
        max_served_shards: p.max_served_shards,
        max_verifying_key_bytes: p.max_verifying_key_bytes,
        allow_simulated_tee: p.allow_simulated_tee,
        max_evidence_bytes: p.max_evidence_bytes,
        attestation_ttl_blocks: p.attestation_ttl_blocks,
        commit_window_blocks: p.commit_window_blocks,
        reveal_window_blocks: p.reveal_window_blocks,
        reputation_penalty_ppm: p.reputation_penalty_ppm,
        reputation_reward_ppm: p.reputation_reward_ppm,
        slash_ppm: p.slash_ppm,
        max_escalations: p.max_escalations,
        max_output_values: p.max_output_values,
    };
    if params.commit_window_blocks == 0 || params.reveal_window_blocks == 0 {
        return Err(Error::Genesis(
            "params: commit_window_blocks and reveal_window_blocks must be positive".into(),
        ));
    }
    if params.reputation_penalty_ppm > 1_000_000
        || params.reputation_reward_ppm < 1_000_000
        || params.slash_ppm > 1_000_000
    {
        return Err(Error::Genesis(format!(
            "params: reputation_penalty_ppm {} must be at most 1000000, reputation_reward_ppm {} at least 1000000, slash_ppm {} at most 1000000",
            params.reputation_penalty_ppm, params.reputation_reward_ppm, params.slash_ppm
        )));
    }
    if params.max_output_values == 0 {
        return Err(Error::Genesis(
            "params: max_output_values must be positive".into(),
        ));
    }
    if params.max_tx_bytes < 256 || params.max_input_bytes >= params.max_tx_bytes {
        return Err(Error::Genesis(format!(
            "params: max_tx_bytes {} must be at least 256 and above max_input_bytes {}",
            params.max_tx_bytes, params.max_input_bytes
        )));
    }
    if params.max_k == 0 || params.max_shards == 0 || params.max_served_shards == 0 {
        return Err(Error::Genesis(
            "params: max_k, max_shards and max_served_shards must be positive".into(),
        ));
    }

    state.put_raw(state_key::CHAIN_ID, chain_id.as_bytes().to_vec());
    state.put_raw(state_key::AUTHORITY, authority.as_bytes().to_vec());
    state.put(state_key::PARAMS, &params);
    // Genesis is stored one height below the first block.
    let genesis_height = initial_height
        .checked_sub(1)
        .ok_or_else(|| Error::Genesis("initial height 0: the first block is at least 1".into()))?;
    state.put_u64(state_key::HEIGHT, genesis_height);
    state.put_u64(state_key::NEXT_JOB_ID, 1);
    state.put_u64(state_key::FEE_POOL, 0);
    state.put_raw(
        state_key::GENESIS_DIGEST,
        digest(chain_id, app_state_bytes, validators, initial_height).to_vec(),
    );

    let mut seen = std::collections::BTreeSet::new();
    let mut total: u64 = 0;
    for a in &app.accounts {
        let address: Address = a
            .address
            .parse()
            .map_err(|e| Error::Genesis(format!("account {}: {e}", a.address)))?;
        if !seen.insert(address) {
            return Err(Error::Genesis(format!("account {address} is listed twice")));
        }
        total = total
            .checked_add(a.balance)
            .ok_or_else(|| Error::Genesis("total supply overflows u64".into()))?;
        state.put_account(&pb::Account {
            address: address.as_bytes().to_vec(),
            public_key: Vec::new(),
            balance: a.balance,
            nonce: 0,
        })?;
    }

    let mut model_ids = std::collections::BTreeSet::new();
    for m in &app.models {
        let hex_field = |s: &str, what: &str| {
            hex::decode(s).map_err(|e| Error::Genesis(format!("model {}: {what}: {e}", m.model_id)))
        };
        let shards = m
            .shards
            .iter()
            .map(|s| {
                Ok(pb::ShardSpec {
                    start_layer: s.start_layer,
                    end_layer: s.end_layer,
                    sha256: hex_field(&s.sha256, "shard sha256")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let reg = pb::RegisterModel {
            model_id: m.model_id.clone(),
            name: m.name.clone(),
            family: m.family.clone(),
            total_layers: m.total_layers,
            shards,
            policy: Some(
                policy_from_config(&m.policy)
                    .map_err(|e| Error::Genesis(format!("model {}: {e}", m.model_id)))?,
            ),
            verifying_key: hex_field(&m.verifying_key, "verifying_key")?,
            commitment: hex_field(&m.commitment, "commitment")?,
            price: m.price,
        };
        validate_model(&reg, &params)
            .map_err(|e| Error::Genesis(format!("model {}: {e}", m.model_id)))?;
        if !model_ids.insert(m.model_id.clone()) {
            return Err(Error::Genesis(format!(
                "model {} is listed twice",
                m.model_id
            )));
        }
        state.put(
            state_key::model(&m.model_id),
            &model_record(&reg, authority.as_bytes(), genesis_height),
        );
    }

    let mut keys = std::collections::BTreeSet::new();
    for (key, power) in validators {
        crate::crypto::parse_public_key(key, "genesis validator")
            .map_err(|e| Error::Genesis(e.to_string()))?;
        if !keys.insert(key.clone()) {
            return Err(Error::Genesis(format!(
                "validator {} is listed twice",
                hex::encode(key)
            )));
        }
        state.put(
            state_key::validator(key),
            &pb::Validator {
                pub_key: key.clone(),
                power: *power,
            },
        );
    }
    state.put_u64(state_key::VALIDATOR_COUNT, keys.len() as u64);
    Ok(())
}

/// The wire form of a model policy from its configuration (genesis, model specs).
pub fn policy_from_config(
    p: &vichain_config::PolicyConfig,
) -> std::result::Result<pb::VerificationPolicy, String> {
    let tee_measurements = p
        .tee_measurements
        .iter()
        .map(|m| {
            hex::decode(m.trim_start_matches("0x"))
                .map_err(|e| format!("tee measurement {m:?}: {e}"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(pb::VerificationPolicy {
        k: p.k,
        quorum: p.quorum,
        tolerance_ppm: p.tolerance_ppm,
        require_proof: p.require_proof,
        require_tee: p.require_tee,
        tee_kinds: p.tee_kinds.clone(),
        tee_measurements,
        min_tcb_status: p.min_tcb_status.clone(),
    })
}

/// Identifies a genesis, so a repeated InitChain can be recognised as the same one.
pub fn digest(
    chain_id: &str,
    app_state_bytes: &[u8],
    validators: &[GenesisValidatorKey],
    initial_height: u64,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((chain_id.len() as u64).to_be_bytes());
    h.update(chain_id.as_bytes());
    h.update((app_state_bytes.len() as u64).to_be_bytes());
    h.update(app_state_bytes);
    h.update(initial_height.to_be_bytes());
    for (k, p) in validators {
        h.update((k.len() as u64).to_be_bytes());
        h.update(k);
        h.update(p.to_be_bytes());
    }
    h.finalize().into()
}
