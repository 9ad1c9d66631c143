//! Reading a stored job: its status's name, its model, a worker's assignment in
//! its current round, and the error for a record that does not hold together.

use vichain_proto::v1 as pb;

use crate::{
    Address, Error,
    state::{Overlay, StateReadExt},
    state_key,
};

/// A job status as the CLI and the API name it.
pub fn status_name(status: i32) -> &'static str {
    match pb::JobStatus::try_from(status) {
        Ok(pb::JobStatus::Pending) => "pending",
        Ok(pb::JobStatus::Assigned) => "assigned",
        Ok(pb::JobStatus::Revealing) => "revealing",
        Ok(pb::JobStatus::Finalized) => "finalized",
        Ok(pb::JobStatus::Failed) => "failed",
        _ => "unknown",
    }
}

pub(super) fn model_of(state: &Overlay<'_>, job: &pb::Job) -> Result<pb::Model, Error> {
    state.model(&job.model_id)?.ok_or_else(|| {
        corrupt(
            state_key::job(job.id),
            format!("job of unknown model {}", job.model_id),
        )
    })
}

pub(super) fn find_assignment(job: &pb::Job, who: &Address) -> Option<usize> {
    job.assignments
        .iter()
        .position(|a| a.round == job.round && a.operator == who.as_bytes())
}

pub(super) fn corrupt(key: String, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        key,
        reason: reason.into(),
    }
}
