//! The validator set: `AddValidator`, `RemoveValidator` and `UpdatePower`, by the
//! authority only; each change goes to CometBFT as a validator update.

use vichain_proto::v1::{self as pb};

use super::authority::require_authority;
use crate::{
    Address, Error, TxError,
    ctx::{Event, TxOutcome},
    error::ExecResult,
    state::{Overlay, StateReadExt},
    state_key,
};

/// CometBFT's bound on total voting power is i64::MAX / 8; one validator stays well below.
pub const MAX_VALIDATOR_POWER: u64 = 1 << 50;

pub(super) fn add_validator(
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
    let count = validator_count(state)?;
    // Every validator holds a distinct key: the count cannot reach u64::MAX.
    let count = count
        .checked_add(1)
        .ok_or_else(|| corrupt_count(count, "+ 1"))?;
    state.put_u64(state_key::VALIDATOR_COUNT, count);
    out.validator_updates.push((v.pub_key.clone(), v.power));
    out.events.push(
        Event::new("validator_added")
            .attr("pub_key", hex::encode(&v.pub_key))
            .attr("power", v.power),
    );
    Ok(())
}

pub(super) fn remove_validator(
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
    let rest = count
        .checked_sub(1)
        .ok_or_else(|| corrupt_count(count, "- 1"))?;
    state.put_u64(state_key::VALIDATOR_COUNT, rest);
    out.validator_updates.push((v.pub_key.clone(), 0));
    out.events
        .push(Event::new("validator_removed").attr("pub_key", hex::encode(&v.pub_key)));
    Ok(())
}

pub(super) fn update_power(
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

pub(super) fn check_power(power: u64, field: &'static str) -> Result<(), TxError> {
    if power == 0 || power > MAX_VALIDATOR_POWER {
        return Err(TxError::invalid(
            field,
            format!("{power} is outside 1..={MAX_VALIDATOR_POWER}"),
        ));
    }
    Ok(())
}

fn validator_count(state: &Overlay<'_>) -> Result<u64, Error> {
    Ok(state.get_u64(state_key::VALIDATOR_COUNT)?.unwrap_or(0))
}

fn corrupt_count(count: u64, op: &str) -> Error {
    Error::Corrupt {
        key: state_key::VALIDATOR_COUNT.into(),
        reason: format!("validator count {count} {op} overflows"),
    }
}
