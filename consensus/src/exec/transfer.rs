//! `Transfer`: tokens from the sender to any address, creating its account.

use vichain_proto::v1::{self as pb};

use crate::{
    Address, TxError,
    ctx::{Event, TxOutcome},
    error::ExecResult,
    state::{Overlay, StateReadExt},
};

pub(super) fn transfer(
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
    recipient.balance = recipient.balance.checked_add(t.amount).ok_or_else(|| {
        TxError::overflow(
            "recipient balance + amount",
            format!("{} + {}", recipient.balance, t.amount),
        )
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
