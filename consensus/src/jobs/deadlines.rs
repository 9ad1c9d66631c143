//! The end of a block: jobs whose commit or reveal deadline is this height move on
//! to revealing, are tallied, or fail.

use vichain_proto::v1 as pb;

use super::{
    lookup::model_of,
    settle::{fail, tally},
};
use crate::{
    Error,
    ctx::{BlockCtx, Event},
    state::{Overlay, StateReadExt},
    state_key,
};

/// Processes the deadlines at the block's height; returns the block's events.
pub(crate) fn end_block(state: &mut Overlay<'_>, ctx: &BlockCtx) -> Result<Vec<Event>, Error> {
    let key = state_key::deadlines(ctx.height);
    let Some(ids) = state.get_msg::<pb::JobIds>(&key)? else {
        return Ok(Vec::new());
    };
    state.delete_raw(key);
    let mut events = Vec::new();
    for id in ids.ids {
        let Some(mut job) = state.job(id)? else {
            continue;
        };
        let assigned = job.status == pb::JobStatus::Assigned as i32;
        let revealing = job.status == pb::JobStatus::Revealing as i32;
        if assigned && job.commit_deadline == ctx.height {
            let committed = job
                .assignments
                .iter()
                .any(|a| a.round == job.round && !a.commitment.is_empty());
            if committed {
                job.status = pb::JobStatus::Revealing as i32;
                events.push(
                    Event::new("job_revealing")
                        .attr("job_id", job.id)
                        .attr("reveal_deadline", job.reveal_deadline),
                );
            } else {
                let model = model_of(state, &job)?;
                tally(state, ctx, &mut job, &model, &mut events)?;
            }
        } else if job.status == pb::JobStatus::Pending as i32 && job.reveal_deadline == ctx.height {
            fail(state, ctx, &mut job, "no_pipeline_recorded", &mut events)?;
        } else if (assigned || revealing) && job.reveal_deadline == ctx.height {
            let model = model_of(state, &job)?;
            tally(state, ctx, &mut job, &model, &mut events)?;
        } else {
            continue;
        }
        state.put(state_key::job(job.id), &job);
    }
    Ok(events)
}
