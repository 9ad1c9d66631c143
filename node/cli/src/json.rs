//! The JSON the CLI prints for wire types is their one generated view
//! (`vichain_proto::json::view`, the same the dashboard's API serves); a job adds the
//! derived field named here.

use serde_json::Value;
use vichain_proto::{json::view, v1 as pb};

/// A job as the wire view shows it, plus `input_bytes` (the input's length).
pub(crate) fn job_json(j: &pb::Job) -> Value {
    let mut v = view(j);
    v["input_bytes"] = j.input.len().into();
    v
}
