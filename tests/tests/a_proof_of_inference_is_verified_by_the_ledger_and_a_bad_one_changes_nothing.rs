//! A Groth16 proof of the digits model's inference, made for a job, is verified by
//! the ledger against the model's registered verifying key and stored on the job;
//! a wrong proof, another job's proof, a wrong output, oversize proof bytes or an
//! unknown job are each rejected with their code in CheckTx and in FinalizeBlock,
//! leaving the app hash of an empty block. Several proofs in one block are
//! batch-verified with the same results as one at a time.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use rand::SeedableRng;
use sha2::{Digest, Sha256};
use tendermint_proto::v0_38::abci;
use vichain_consensus::{StateReadExt, TxError, sign_tx};
use vichain_proto::v1::{self as pb, tx_body::Action};
use vichain_tests::{CHAIN_ID, Harness, Instance, address, init_chain_request, key};
use vichain_zk::{
    InferenceCircuit, InferencePrivate, InferencePublic, JobId, OutputMode, PublicOutput,
    QuantizedMlp, Salt, WeightMode,
};

const MODEL_FILE: &[u8] = include_bytes!("../../inference/data/digits-mlp.vqmlp");
const SALT: Salt = Salt([7; 32]);

/// Everything the scenario needs, set up once per test (Groth16 setup and proving
/// dominate the test's time).
struct Fixture {
    model: Arc<QuantizedMlp>,
    vk: Vec<u8>,
    /// Proof for job 1 (the on-chain input) and its public inputs.
    job1: (InferencePublic, Vec<u8>),
    /// Proof for job 2 (same input, delivered off chain).
    job2: (InferencePublic, Vec<u8>),
    /// A valid proof for job 1 about another input.
    other_input: (InferencePublic, Vec<u8>),
}

fn input(seed: u8) -> Vec<i8> {
    (0..64)
        .map(|i| ((i as u8).wrapping_mul(seed).wrapping_add(3) % 120) as i8)
        .collect()
}

fn input_bytes(seed: u8) -> Vec<u8> {
    input(seed).iter().map(|&v| v as u8).collect()
}

fn fixture() -> Fixture {
    let model = Arc::new(QuantizedMlp::from_bytes(MODEL_FILE).unwrap());
    let circuit =
        InferenceCircuit::for_setup(model.clone(), WeightMode::Public, OutputMode::Argmax).unwrap();
    let keys = vichain_zk::setup(circuit, Some([9; 32])).unwrap();
    let vk = vichain_zk::encode_verifying_key(&keys.verifying_key).unwrap();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let mut prove = |seed: u8, job: u64| {
        vichain_zk::prove_inference(
            &keys.proving_key,
            model.clone(),
            WeightMode::Public,
            OutputMode::Argmax,
            InferencePrivate {
                input: input(seed),
                input_salt: SALT,
                output_salt: Salt::default(),
            },
            JobId::from_u64(job),
            &mut rng,
        )
        .unwrap()
    };
    let job1 = prove(5, 1);
    let job2 = prove(5, 2);
    let other_input = prove(11, 1);
    Fixture {
        model,
        vk,
        job1,
        job2,
        other_input,
    }
}

fn authority() -> SigningKey {
    key(0)
}
fn worker() -> SigningKey {
    key(1)
}
fn client() -> SigningKey {
    key(2)
}

/// Block 1: the authority registers the digits model with its key, key 1 registers
/// as a worker for it, key 2 submits job 1 (input on chain) and job 2 (input hash).
fn setup_txs(f: &Fixture) -> Vec<Vec<u8>> {
    let register = Action::RegisterModel(pb::RegisterModel {
        model_id: "digits".into(),
        name: "8x8 digits MLP".into(),
        family: "mlp".into(),
        total_layers: 2,
        shards: vec![pb::ShardSpec {
            start_layer: 0,
            end_layer: 2,
            sha256: Sha256::digest(MODEL_FILE).to_vec(),
        }],
        policy: Some(pb::VerificationPolicy {
            k: 1,
            quorum: 1,
            require_proof: true,
            ..Default::default()
        }),
        verifying_key: f.vk.clone(),
        commitment: vichain_zk::model_commitment(&f.model).to_bytes().to_vec(),
        price: 1,
    });
    let worker_tx = Action::RegisterWorker(pb::RegisterWorker {
        peer_id: "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN".into(),
        stake: 5_000,
        serves: vec![pb::ServedShard {
            model_id: "digits".into(),
            shard_index: 0,
        }],
    });
    let job = |payload| {
        Action::SubmitJob(pb::SubmitJob {
            model_id: "digits".into(),
            payload: Some(payload),
            k: 1,
            max_fee: 10,
            privacy: 0,
        })
    };
    vec![
        sign_tx(&authority(), CHAIN_ID, 0, 1, register),
        sign_tx(&worker(), CHAIN_ID, 0, 1, worker_tx),
        sign_tx(
            &client(),
            CHAIN_ID,
            0,
            1,
            job(pb::submit_job::Payload::Input(input_bytes(5))),
        ),
        sign_tx(
            &client(),
            CHAIN_ID,
            1,
            1,
            job(pb::submit_job::Payload::InputHash(
                Sha256::digest(input_bytes(5)).to_vec(),
            )),
        ),
    ]
}

fn output(o: &PublicOutput) -> pb::InferenceOutput {
    use pb::inference_output::Value;
    let value = match o {
        PublicOutput::Argmax(i) => Value::Argmax(*i),
        PublicOutput::Logits(l) => Value::Logits(pb::Logits { values: l.clone() }),
        PublicOutput::Commitment(c) => Value::Commitment(c.to_bytes().to_vec()),
    };
    pb::InferenceOutput { value: Some(value) }
}

fn submit(job_id: u64, public: &InferencePublic, proof: &[u8]) -> pb::SubmitProof {
    pb::SubmitProof {
        job_id,
        proof: proof.to_vec(),
        input_commitment: public.input_commitment.to_bytes().to_vec(),
        output: Some(output(&public.output)),
        input_salt: SALT.0.to_vec(),
    }
}

fn proof_tx(from: &SigningKey, nonce: u64, p: pb::SubmitProof) -> Vec<u8> {
    sign_tx(from, CHAIN_ID, nonce, 1, Action::SubmitProof(p))
}

fn block(inst: &mut Instance, height: u64, txs: Vec<Vec<u8>>) -> abci::ResponseFinalizeBlock {
    let r = inst
        .app
        .finalize_block(&abci::RequestFinalizeBlock {
            txs: txs.into_iter().map(Bytes::from).collect(),
            hash: vec![height as u8; 32].into(),
            height: height as i64,
            time: Some(tendermint_proto::google::protobuf::Timestamp {
                seconds: 1_700_000_000 + height as i64,
                nanos: 0,
            }),
            ..Default::default()
        })
        .unwrap();
    inst.app.commit().unwrap();
    r
}

/// A chain after block 1 (model, worker, two jobs).
fn chain(f: &Fixture) -> (tempfile::TempDir, Instance) {
    let dir = tempfile::tempdir().unwrap();
    let mut inst = Instance::open(dir.path().to_path_buf()).unwrap();
    let keys: Vec<_> = (0..3).map(key).collect();
    inst.app
        .init_chain(init_chain_request(&keys, &[key(100)]))
        .unwrap();
    let r = block(&mut inst, 1, setup_txs(f));
    for t in &r.tx_results {
        assert_eq!(t.code, 0, "setup: {}", t.log);
    }
    (dir, inst)
}

fn job(inst: &Instance, id: u64) -> pb::Job {
    inst.app.store().job(id).unwrap().unwrap()
}

#[test]
fn a_real_proof_is_accepted_and_stored_and_every_bad_one_is_rejected_with_its_code() {
    let f = fixture();
    let (public, proof) = &f.job1;
    let expected = f.model.forward(&input(5)).unwrap().argmax as u32;
    assert_eq!(public.output, PublicOutput::Argmax(expected));

    let code = |e: TxError| e.code();
    let proof_invalid = code(TxError::ProofInvalid {
        job_id: 0,
        reason: String::new(),
    });
    let mut flipped = proof.clone();
    flipped[40] ^= 1;
    let wrong_output = {
        let mut p = submit(1, public, proof);
        p.output = Some(output(&PublicOutput::Argmax((expected + 1) % 10)));
        p
    };
    let wrong_commitment = {
        // A valid proof about another input, claimed for job 1's on-chain input.
        let (other, other_proof) = &f.other_input;
        let mut p = submit(1, other, other_proof);
        p.input_commitment = public.input_commitment.to_bytes().to_vec();
        p
    };
    let without_salt = {
        let mut p = submit(1, public, proof);
        p.input_salt.clear();
        p
    };
    let cases: Vec<(&str, Vec<u8>, u32)> = vec![
        (
            "a flipped proof byte",
            proof_tx(&worker(), 1, submit(1, public, &flipped)),
            proof_invalid,
        ),
        (
            "a proof about another input",
            proof_tx(&worker(), 1, submit(1, &f.other_input.0, &f.other_input.1)),
            proof_invalid,
        ),
        (
            "another input's proof with this input's commitment",
            proof_tx(&worker(), 1, wrong_commitment),
            proof_invalid,
        ),
        (
            "job 2's proof replayed for job 1",
            proof_tx(&worker(), 1, submit(1, &f.job2.0, &f.job2.1)),
            proof_invalid,
        ),
        (
            "job 1's proof replayed for job 2",
            proof_tx(&worker(), 1, submit(2, public, proof)),
            proof_invalid,
        ),
        (
            "a wrong output",
            proof_tx(&worker(), 1, wrong_output),
            proof_invalid,
        ),
        (
            "oversize proof bytes",
            proof_tx(
                &worker(),
                1,
                submit(1, public, &[proof.as_slice(), &[0]].concat()),
            ),
            code(TxError::OversizeProof { size: 0, max: 0 }),
        ),
        (
            "an unknown job",
            proof_tx(&worker(), 1, submit(99, public, proof)),
            code(TxError::UnknownJob { job_id: 0 }),
        ),
        (
            "a sender that is not a worker",
            proof_tx(&client(), 2, submit(1, public, proof)),
            code(TxError::UnknownWorker {
                address: String::new(),
            }),
        ),
        (
            "no salt for an on-chain input",
            proof_tx(&worker(), 1, without_salt),
            code(TxError::InvalidField {
                field: "",
                reason: String::new(),
            }),
        ),
    ];

    // The same block 2 without the transaction.
    let (_d, mut empty) = chain(&f);
    let empty_hash = block(&mut empty, 2, vec![]).app_hash;
    for (name, tx, expected_code) in &cases {
        let (_dir, mut inst) = chain(&f);
        let before = inst.app_hash();
        let r = inst.app.check_tx(tx).unwrap();
        assert_eq!(r.code, *expected_code, "{name}: CheckTx: {}", r.log);
        assert!(!r.log.is_empty(), "{name}: a rejection explains itself");
        assert_eq!(inst.app_hash(), before, "{name}");
        let r = block(&mut inst, 2, vec![tx.clone()]);
        assert_eq!(
            r.tx_results[0].code, *expected_code,
            "{name}: FinalizeBlock: {}",
            r.tx_results[0].log
        );
        assert_eq!(r.app_hash, empty_hash, "{name} changed the state");
        assert!(!job(&inst, 1).proof_verified, "{name}");
    }

    // The real proof is accepted in CheckTx and FinalizeBlock and stored on the job.
    let (_dir, mut inst) = chain(&f);
    let good = proof_tx(&worker(), 1, submit(1, public, proof));
    let r = inst.app.check_tx(&good).unwrap();
    assert_eq!(r.code, 0, "{}", r.log);
    let r = block(&mut inst, 2, vec![good]);
    assert_eq!(r.tx_results[0].code, 0, "{}", r.tx_results[0].log);
    assert!(
        r.tx_results[0]
            .events
            .iter()
            .any(|e| e.r#type == "proof_verified")
    );
    let stored = job(&inst, 1);
    assert!(stored.proof_verified);
    assert_eq!(stored.output, Some(output(&public.output)));
    assert_eq!(
        stored.input_commitment,
        public.input_commitment.to_bytes().to_vec()
    );
    assert_eq!(stored.prover, address(&worker()).as_bytes().to_vec());
    assert_eq!(stored.proof_height, 2);
    assert_eq!(stored.proof_hash, Sha256::digest(proof).to_vec());
    assert!(!job(&inst, 2).proof_verified);

    // A second proof for the same job is refused.
    let again = proof_tx(&worker(), 2, submit(1, public, proof));
    let r = inst.app.check_tx(&again).unwrap();
    assert_eq!(
        r.code,
        code(TxError::AlreadyExists {
            what: "",
            id: String::new()
        }),
        "{}",
        r.log
    );
}

#[test]
fn proofs_in_one_block_are_batch_verified_with_the_results_of_single_verification() {
    let f = fixture();
    let mut h = Harness::new(
        2,
        &init_chain_request(&(0..3).map(key).collect::<Vec<_>>(), &[key(100)]),
    )
    .unwrap();
    let setup: Vec<Bytes> = setup_txs(&f).into_iter().map(Bytes::from).collect();
    let r = h
        .finalize_and_commit(vichain_tests::Block {
            height: 1,
            time: tendermint_proto::google::protobuf::Timestamp {
                seconds: 1_700_000_001,
                nanos: 0,
            },
            txs: setup,
            hash: vec![1; 32],
            app_hash: Vec::new(),
        })
        .unwrap();
    assert!(r.tx_results.iter().all(|t| t.code == 0));

    // A block with a forgery between two valid proofs: the batch fails, the fallback
    // singles out the forgery, and both valid proofs are accepted.
    let mut forged = f.job2.1.clone();
    forged[70] ^= 1;
    let txs = vec![
        proof_tx(&worker(), 1, submit(1, &f.job1.0, &f.job1.1)),
        proof_tx(&worker(), 2, submit(2, &f.job2.0, &forged)),
        proof_tx(&worker(), 2, submit(2, &f.job2.0, &f.job2.1)),
    ];
    let r = h
        .finalize_and_commit(vichain_tests::Block {
            height: 2,
            time: tendermint_proto::google::protobuf::Timestamp {
                seconds: 1_700_000_002,
                nanos: 0,
            },
            txs: txs.into_iter().map(Bytes::from).collect(),
            hash: vec![2; 32],
            app_hash: Vec::new(),
        })
        .unwrap();
    let codes: Vec<u32> = r.tx_results.iter().map(|t| t.code).collect();
    let invalid = TxError::ProofInvalid {
        job_id: 0,
        reason: String::new(),
    }
    .code();
    assert_eq!(codes, vec![0, invalid, 0], "{:?}", r.tx_results);
    let store = h.any().app.store();
    assert!(store.job(1).unwrap().unwrap().proof_verified);
    assert!(store.job(2).unwrap().unwrap().proof_verified);
    assert!(h.app_hashes().windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn a_model_without_a_verifying_key_accepts_no_proof() {
    // Model m1 of the test genesis has no key; its worker's proof is refused with
    // its own code before any verification.
    let keys: Vec<_> = (0..4).map(key).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut inst = Instance::open(dir.path().to_path_buf()).unwrap();
    inst.app
        .init_chain(init_chain_request(&keys, &[key(100)]))
        .unwrap();
    let worker_tx = Action::RegisterWorker(pb::RegisterWorker {
        peer_id: "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN".into(),
        stake: 5_000,
        serves: vec![pb::ServedShard {
            model_id: "m1".into(),
            shard_index: 0,
        }],
    });
    let job_tx = Action::SubmitJob(pb::SubmitJob {
        model_id: "m1".into(),
        payload: Some(pb::submit_job::Payload::InputHash(vec![5; 32])),
        k: 2,
        max_fee: 100,
        privacy: 0,
    });
    let r = block(
        &mut inst,
        1,
        vec![
            sign_tx(&worker(), CHAIN_ID, 0, 1, worker_tx.clone()),
            // Model m1's quorum is 2: a second worker serves it.
            sign_tx(&key(3), CHAIN_ID, 0, 1, worker_tx),
            sign_tx(&client(), CHAIN_ID, 0, 1, job_tx),
        ],
    );
    assert!(r.tx_results.iter().all(|t| t.code == 0));
    let p = pb::SubmitProof {
        job_id: 1,
        proof: vec![0; 128],
        input_commitment: vec![0; 32],
        output: Some(pb::InferenceOutput {
            value: Some(pb::inference_output::Value::Argmax(3)),
        }),
        input_salt: Vec::new(),
    };
    let r = inst
        .app
        .check_tx(&proof_tx(&worker(), 1, p.clone()))
        .unwrap();
    assert_eq!(
        r.code,
        TxError::NoVerifyingKey {
            model_id: String::new(),
            missing: ""
        }
        .code(),
        "{}",
        r.log
    );
    // And an account that is no worker may not submit proofs at all.
    let r = inst.app.check_tx(&proof_tx(&client(), 1, p)).unwrap();
    assert_eq!(
        r.code,
        TxError::UnknownWorker {
            address: String::new()
        }
        .code()
    );
}

/// The job lifecycle on a require_proof model: the worker's reveal must carry a
/// proof of this job whose output is the revealed one. A tampered proof, a proof of
/// another class than revealed, or no proof is refused and leaves the job open; the
/// real one finalizes the job with the proven class.
#[test]
fn a_reveal_needs_a_valid_proof_of_the_revealed_output_to_finalize() {
    use vichain_consensus::{output_fingerprint, result_commitment};
    let f = fixture();
    let (public, proof) = &f.job1;
    let PublicOutput::Argmax(class) = public.output else {
        panic!("argmax circuit");
    };
    let (_dir, mut inst) = chain(&f);
    assert_eq!(job(&inst, 1).status, pb::JobStatus::Assigned as i32);
    let out = pb::JobOutput {
        values: vec![i64::from(class)],
        text: String::new(),
    };
    let salt = [5u8; 32];
    let commitment = result_commitment(&output_fingerprint(&out, &[]), &salt, &address(&worker()));
    let commit = sign_tx(
        &worker(),
        CHAIN_ID,
        1,
        1,
        Action::CommitResult(pb::CommitResult {
            job_id: 1,
            commitment: commitment.to_vec(),
        }),
    );
    let r = block(&mut inst, 2, vec![commit]);
    assert_eq!(r.tx_results[0].code, 0, "{}", r.tx_results[0].log);
    assert_eq!(job(&inst, 1).status, pb::JobStatus::Revealing as i32);

    let reveal = |output: &pb::JobOutput, p: Option<pb::SubmitProof>| {
        sign_tx(
            &worker(),
            CHAIN_ID,
            2,
            1,
            Action::RevealResult(pb::RevealResult {
                job_id: 1,
                output: Some(output.clone()),
                salt: salt.to_vec(),
                proof: p,
                stages: Vec::new(),
            }),
        )
    };
    let mut flipped = proof.clone();
    flipped[40] ^= 1;
    let other_class = {
        let mut p = submit(1, public, proof);
        p.output = Some(output(&PublicOutput::Argmax((class + 1) % 10)));
        p
    };
    let proof_invalid = TxError::ProofInvalid {
        job_id: 0,
        reason: String::new(),
    }
    .code();
    let mut height = 3;
    for (name, tx) in [
        (
            "a flipped proof byte",
            reveal(&out, Some(submit(1, public, &flipped))),
        ),
        ("a proof of another class", reveal(&out, Some(other_class))),
        (
            "job 2's proof",
            reveal(&out, Some(submit(1, &f.job2.0, &f.job2.1))),
        ),
        ("no proof", reveal(&out, None)),
    ] {
        let r = inst.app.check_tx(&tx).unwrap();
        assert_eq!(r.code, proof_invalid, "{name}: CheckTx {}", r.log);
        let r = block(&mut inst, height, vec![tx]);
        height += 1;
        assert_eq!(
            r.tx_results[0].code, proof_invalid,
            "{name}: {}",
            r.tx_results[0].log
        );
        assert_eq!(
            job(&inst, 1).status,
            pb::JobStatus::Revealing as i32,
            "{name}"
        );
    }
    let r = block(
        &mut inst,
        height,
        vec![reveal(&out, Some(submit(1, public, proof)))],
    );
    assert_eq!(r.tx_results[0].code, 0, "{}", r.tx_results[0].log);
    let j = job(&inst, 1);
    assert_eq!(j.status, pb::JobStatus::Finalized as i32);
    assert_eq!(j.result, Some(out));
    assert!(j.assignments[0].proof_verified);
    assert_eq!(j.assignments[0].verdict, pb::Verdict::Agreed as i32);
}
