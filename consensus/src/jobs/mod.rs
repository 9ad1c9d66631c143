//! The life of a job on chain: deterministic assignment, commit-reveal, output
//! consensus, and settlement (payment, reputation, slashing, escalation, refund).
//!
//! - `SubmitJob` escrows the fee and assigns `k` workers drawn without replacement
//!   from those serving the model, weighted by stake x reputation, seeded by the
//!   block hash and the job id: every validator draws the same set, and one operator
//!   holds one worker record, so no operator is drawn twice for one job.
//! - Assigned workers send `CommitResult` until the commit deadline; once every
//!   worker of the round committed (or the deadline passed with at least one
//!   commitment) the job moves to revealing. No reveal is accepted before that, so
//!   nobody can copy an output it has seen; a commitment binds its worker's address,
//!   so nobody can reuse another's.
//! - `RevealResult` opens the commitment, with a proof when the model requires one
//!   (verified against the registered key, and its output must be the revealed one)
//!   and a current attestation when the model requires TEE.
//! - When every committed worker revealed, or at the reveal deadline, reveals are
//!   grouped by equivalence; the largest group (first revealer breaks ties) that
//!   reaches the quorum finalizes the job. Agreeing workers share `price * k` and
//!   gain reputation; workers that revealed a different output are slashed and
//!   penalized; absent ones are penalized. Without a quorum the job is escalated to
//!   `k` fresh workers (`max_escalations` times), then fails and is refunded.
//!
//! One module per phase: `assign`, `seal` (sealed inputs), `commit_reveal`,
//! `pipeline` (split-mode jobs the client ran), `settle` (tally and payments) and
//! `deadlines` (end of block); `output` holds what workers agree on and `lookup` the
//! reads every phase shares.

mod assign;
mod commit_reveal;
mod deadlines;
mod lookup;
mod output;
mod pipeline;
mod seal;
mod settle;

pub(crate) use assign::{add_deadline, assign, available, deadlines, index_worker};
pub(crate) use commit_reveal::{check_commit, check_reveal, commit_result, reveal_result};
pub(crate) use deadlines::end_block;
pub use lookup::status_name;
pub use output::{
    COMMIT_DOMAIN, FIXED_POINT_ONE, MAX_OUTPUT_TEXT, equivalent, output_fingerprint,
    result_commitment,
};
pub(crate) use pipeline::{check_record, record_pipeline};
pub(crate) use seal::{check_seal, seal_inputs};
pub use settle::{REPUTATION_MAX, REPUTATION_ONE};
