//! The authority: the one account that may change the validator set and register
//! models.

use crate::{
    Address, TxError,
    error::ExecResult,
    state::{Overlay, StateReadExt},
};

pub(super) fn require_authority(
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
