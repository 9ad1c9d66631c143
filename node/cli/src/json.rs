//! The JSON the CLI prints for wire types.

use serde_json::{Value, json};
use vichain_consensus::Address;
use vichain_proto::v1::{self as pb};

pub(crate) fn model_json(m: &pb::Model) -> Value {
    let p = m.policy.clone().unwrap_or_default();
    json!({
        "model_id": m.model_id, "name": m.name, "family": m.family, "total_layers": m.total_layers,
        "shards": m.shards.iter().map(|s| json!({"start_layer": s.start_layer, "end_layer": s.end_layer, "sha256": hex::encode(&s.sha256)})).collect::<Vec<_>>(),
        "policy": {"k": p.k, "quorum": p.quorum, "tolerance_ppm": p.tolerance_ppm, "require_proof": p.require_proof, "require_tee": p.require_tee},
        "verifying_key_hash": hex::encode(&m.verifying_key_hash), "commitment": hex::encode(&m.commitment),
        "price": m.price, "registered_height": m.registered_height,
    })
}

pub(crate) fn worker_json(w: &pb::Worker) -> Value {
    json!({
        "operator": Address::from_bytes(&w.operator).map(|a| a.to_string()).unwrap_or_default(),
        "peer_id": w.peer_id, "stake": w.stake, "reputation": w.reputation as f64 / 1e6,
        "serves": w.serves.iter().map(|s| json!({"model_id": s.model_id, "shard_index": s.shard_index})).collect::<Vec<_>>(),
        "registered_height": w.registered_height, "last_seen_height": w.last_seen_height,
        "attestation": w.attestation.as_ref().map(|a| json!({
            "kind": a.kind, "simulated": a.simulated, "measurement": hex::encode(&a.measurement),
            "tcb_status": a.tcb_status, "debug": a.debug, "valid_until": a.valid_until,
            "attested_height": a.attested_height, "expiry_height": a.expiry_height,
            "encryption_key": hex::encode(&a.encryption_key),
        })),
    })
}

pub(crate) fn job_json(j: &pb::Job) -> Value {
    let status = pb::JobStatus::try_from(j.status)
        .map(|s| s.as_str_name())
        .unwrap_or("UNKNOWN");
    json!({
        "id": j.id, "model_id": j.model_id,
        "client": Address::from_bytes(&j.client).map(|a| a.to_string()).unwrap_or_default(),
        "input_hash": hex::encode(&j.input_hash), "input_bytes": j.input.len(), "k": j.k, "escrow": j.escrow,
        "status": status, "submitted_height": j.submitted_height, "tx_hash": hex::encode_upper(&j.tx_hash),
        "zk_proof_verified": j.proof_verified, "output": output_json(j.output.as_ref()),
        "input_commitment": hex::encode(&j.input_commitment),
        "prover": Address::from_bytes(&j.prover).map(|a| a.to_string()).unwrap_or_default(),
        "proof_height": j.proof_height,
        "round": j.round, "commit_deadline": j.commit_deadline, "reveal_deadline": j.reveal_deadline,
        "outcome": j.outcome, "finalized_height": j.finalized_height, "refund": j.refund,
        "failure": j.failure, "diverged_stage": j.diverged_stage,
        "privacy": pb::PrivacyMode::try_from(j.privacy).map(|p| p.as_str_name()).unwrap_or("UNKNOWN"),
        "output_hash": hex::encode(&j.output_hash),
        "pipeline": j.pipeline.iter().map(|s| json!({
            "worker": Address::from_bytes(&s.operator).map(|x| x.to_string()).unwrap_or_default(),
            "layers": format!("{}..{}", s.start_layer, s.end_layer),
            "input_hash": hex::encode(&s.input_hash), "output_hash": hex::encode(&s.output_hash),
        })).collect::<Vec<_>>(),
        "result": j.result.as_ref().map(|r| json!({"values": r.values, "text": r.text})),
        "assignments": j.assignments.iter().map(|a| json!({
            "worker": Address::from_bytes(&a.operator).map(|x| x.to_string()).unwrap_or_default(),
            "round": a.round, "committed": !a.commitment.is_empty(), "revealed": a.revealed,
            "proof_verified": a.proof_verified, "attestation_kind": a.attestation_kind,
            "verdict": pb::Verdict::try_from(a.verdict).map(|v| v.as_str_name()).unwrap_or("UNKNOWN"),
            "reward": a.reward, "slashed": a.slashed,
        })).collect::<Vec<_>>(),
    })
}

pub(crate) fn output_json(o: Option<&pb::InferenceOutput>) -> Value {
    use pb::inference_output::Value as V;
    match o.and_then(|o| o.value.as_ref()) {
        Some(V::Argmax(i)) => json!({"argmax": i}),
        Some(V::Logits(l)) => json!({"logits": l.values}),
        Some(V::Commitment(c)) => json!({"commitment": hex::encode(c)}),
        None => Value::Null,
    }
}
