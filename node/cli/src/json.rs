//! The JSON the CLI prints for wire types: their one generated view
//! (`vichain_proto::json`, the same the dashboard's API serves), plus a few derived
//! fields named here.

use serde_json::Value;
use vichain_proto::{json::view, v1 as pb};

/// A model as the wire view shows it.
pub(crate) fn model_json(m: &pb::Model) -> Value {
    view(m)
}

/// A worker as the wire view shows it (`reputation` in millionths, as on chain).
pub(crate) fn worker_json(w: &pb::Worker) -> Value {
    view(w)
}

/// A job as the wire view shows it, plus `input_bytes` (the input's length).
pub(crate) fn job_json(j: &pb::Job) -> Value {
    let mut v = view(j);
    v["input_bytes"] = j.input.len().into();
    v
}
