//! A worker's TEE attestation is verified at block time, bound to its operator key,
//! the chain id, the hash of a recent block and its HPKE encryption key, checked
//! against the policy of the `require_tee` models it serves, and stored on its
//! record with that encryption key; every bad one is rejected with its code and
//! changes nothing. Simulated evidence counts only where the chain's params allow it.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use tendermint_proto::v0_38::abci;
use vichain_config::{AppState, GenesisModel, GenesisShard, PolicyConfig};
use vichain_consensus::{StateReadExt, TxError, attestation_is_current, sign_tx};
use vichain_proto::v1::{self as pb, tx_body::Action};
use vichain_tee::{EncryptionKey, EncryptionPublicKey, SimulatedAttester, expected_report_data};
use vichain_tests::{CHAIN_ID, Instance, address, init_chain_request, key};

const T0: i64 = 1_700_000_000;
const MEASUREMENT: [u8; 48] = [0xbb; 48];

fn genesis(allow_simulated: bool) -> abci::RequestInitChain {
    let keys: Vec<_> = (0..4).map(key).collect();
    let mut req = init_chain_request(&keys, &[key(100)]);
    let mut app: AppState = serde_json::from_slice(&req.app_state_bytes).unwrap();
    app.params.allow_simulated_tee = allow_simulated;
    app.params.max_evidence_bytes = 1024;
    app.params.attestation_ttl_blocks = 50;
    app.models.push(GenesisModel {
        model_id: "m2".into(),
        name: String::new(),
        family: "mlp".into(),
        total_layers: 1,
        shards: vec![GenesisShard {
            start_layer: 0,
            end_layer: 1,
            sha256: hex::encode([3u8; 32]),
        }],
        policy: PolicyConfig {
            require_tee: true,
            tee_kinds: vec!["sev-snp".into(), "tdx".into()],
            tee_measurements: vec![hex::encode([0xaa; 48])],
            ..PolicyConfig::default()
        },
        verifying_key: String::new(),
        commitment: String::new(),
        price: 1,
    });
    req.app_state_bytes = serde_json::to_vec(&app).unwrap().into();
    req
}

fn block(inst: &mut Instance, height: u64, txs: Vec<Vec<u8>>) -> abci::ResponseFinalizeBlock {
    let r = inst
        .app
        .finalize_block(&abci::RequestFinalizeBlock {
            txs: txs.into_iter().map(Bytes::from).collect(),
            hash: block_hash(height).to_vec().into(),
            height: height as i64,
            time: Some(tendermint_proto::google::protobuf::Timestamp {
                seconds: T0 + height as i64,
                nanos: 0,
            }),
            ..Default::default()
        })
        .unwrap();
    inst.app.commit().unwrap();
    r
}

fn block_hash(height: u64) -> [u8; 32] {
    let mut h = [0x5a; 32];
    h[..8].copy_from_slice(&height.to_be_bytes());
    h
}

fn register_worker(k: &SigningKey, model: &str) -> Vec<u8> {
    sign_tx(
        k,
        CHAIN_ID,
        0,
        1,
        Action::RegisterWorker(pb::RegisterWorker {
            peer_id: "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN".into(),
            stake: 5_000,
            serves: vec![pb::ServedShard {
                model_id: model.into(),
                shard_index: 0,
            }],
        }),
    )
}

/// Block 1: key 1 is a worker of m1 (no TEE policy), key 3 a worker of m2
/// (requires SNP or TDX with measurement aa..).
fn chain(allow_simulated: bool) -> (tempfile::TempDir, Instance) {
    let dir = tempfile::tempdir().unwrap();
    let mut inst = Instance::open(dir.path().to_path_buf()).unwrap();
    inst.app.init_chain(genesis(allow_simulated)).unwrap();
    let r = block(
        &mut inst,
        1,
        vec![
            register_worker(&key(1), "m1"),
            register_worker(&key(3), "m2"),
        ],
    );
    assert!(
        r.tx_results.iter().all(|t| t.code == 0),
        "{:?}",
        r.tx_results
    );
    (dir, inst)
}

/// The encryption key every worker here attests (another one where a case says so).
fn ek() -> EncryptionPublicKey {
    EncryptionKey::derive(&[0x77; 32]).unwrap().public_key()
}

fn evidence(worker: &SigningKey, chain_id: &str, nonce: [u8; 32], expires_at: u64) -> Vec<u8> {
    evidence_for_key(worker, chain_id, nonce, expires_at, &ek())
}

fn evidence_for_key(
    worker: &SigningKey,
    chain_id: &str,
    nonce: [u8; 32],
    expires_at: u64,
    encryption_key: &EncryptionPublicKey,
) -> Vec<u8> {
    SimulatedAttester::from_secret([9; 32])
        .attest(
            &MEASUREMENT,
            expected_report_data(
                worker.verifying_key().as_bytes(),
                chain_id,
                &nonce,
                encryption_key,
            ),
            expires_at,
        )
        .encode()
}

fn attest(from: &SigningKey, nonce: u64, evidence: Vec<u8>, nonce_height: u64) -> Vec<u8> {
    attest_with_key(from, nonce, evidence, nonce_height, ek().as_bytes())
}

fn attest_with_key(
    from: &SigningKey,
    nonce: u64,
    evidence: Vec<u8>,
    nonce_height: u64,
    encryption_key: &[u8],
) -> Vec<u8> {
    sign_tx(
        from,
        CHAIN_ID,
        nonce,
        1,
        Action::SubmitAttestation(pb::SubmitAttestation {
            evidence,
            nonce_height,
            encryption_key: encryption_key.to_vec(),
        }),
    )
}

#[test]
fn a_simulated_attestation_is_stored_and_every_bad_one_is_rejected_with_its_code() {
    let w = key(1);
    let later = (T0 + 3600) as u64;
    let good = evidence(&w, CHAIN_ID, block_hash(1), later);
    let invalid = TxError::AttestationInvalid {
        reason: String::new(),
    }
    .code();
    let invalid_field = TxError::InvalidField {
        field: "",
        reason: String::new(),
    }
    .code();
    let other_ek = EncryptionKey::derive(&[0x78; 32]).unwrap().public_key();
    let cases: Vec<(&str, Vec<u8>, u32, &str)> = vec![
        (
            "another worker's evidence",
            attest(&w, 1, evidence(&key(3), CHAIN_ID, block_hash(1), later), 1),
            invalid,
            "encryption key",
        ),
        (
            "evidence bound to another encryption key than the transaction names",
            attest_with_key(&w, 1, good.clone(), 1, other_ek.as_bytes()),
            invalid,
            "does not bind this worker key, chain id, nonce and encryption key",
        ),
        (
            "the transaction's encryption key, evidence bound to another",
            attest(
                &w,
                1,
                evidence_for_key(&w, CHAIN_ID, block_hash(1), later, &other_ek),
                1,
            ),
            invalid,
            "does not bind",
        ),
        (
            "an encryption key of 31 bytes",
            attest_with_key(&w, 1, good.clone(), 1, &[7; 31]),
            invalid_field,
            "submit_attestation.encryption_key",
        ),
        (
            "no encryption key",
            attest_with_key(&w, 1, good.clone(), 1, &[]),
            invalid_field,
            "expected 32",
        ),
        (
            "an all-zero (small-order) encryption key",
            attest_with_key(&w, 1, good.clone(), 1, &[0; 32]),
            invalid_field,
            "small-order",
        ),
        (
            "evidence for another chain",
            attest(&w, 1, evidence(&w, "other-chain", block_hash(1), later), 1),
            invalid,
            "",
        ),
        (
            "evidence bound to another block than the nonce height",
            attest(&w, 1, evidence(&w, CHAIN_ID, [0; 32], later), 1),
            invalid,
            "",
        ),
        (
            "a nonce height that is no recent block",
            attest(&w, 1, good.clone(), 7),
            invalid_field,
            "",
        ),
        (
            "evidence expired at block time",
            attest(&w, 1, evidence(&w, CHAIN_ID, block_hash(1), T0 as u64), 1),
            invalid,
            "",
        ),
        (
            "garbage evidence",
            attest(&w, 1, vec![0x42; 100], 1),
            invalid,
            "",
        ),
        (
            "oversize evidence",
            attest(&w, 1, vec![0x42; 1025], 1),
            TxError::OversizeEvidence { size: 0, max: 0 }.code(),
            "",
        ),
        (
            "a sender that is no worker",
            attest(
                &key(2),
                0,
                evidence(&key(2), CHAIN_ID, block_hash(1), later),
                1,
            ),
            TxError::UnknownWorker {
                address: String::new(),
            }
            .code(),
            "",
        ),
        (
            "a measurement that a served model's policy does not allow",
            attest(
                &key(3),
                1,
                evidence(&key(3), CHAIN_ID, block_hash(1), later),
                1,
            ),
            invalid,
            "",
        ),
    ];
    let (_d, mut empty) = chain(true);
    let empty_hash = block(&mut empty, 2, vec![]).app_hash;
    for (name, tx, code, reason) in &cases {
        let (_dir, mut inst) = chain(true);
        let r = inst.app.check_tx(tx).unwrap();
        assert_eq!(r.code, *code, "{name}: CheckTx: {}", r.log);
        assert!(r.log.contains(reason), "{name}: {}", r.log);
        let r = block(&mut inst, 2, vec![tx.clone()]);
        assert_eq!(
            r.tx_results[0].code, *code,
            "{name}: FinalizeBlock: {}",
            r.tx_results[0].log
        );
        assert_eq!(r.app_hash, empty_hash, "{name} changed the state");
    }

    // The good one is stored, labelled simulated, with its expiry.
    let (_dir, mut inst) = chain(true);
    let tx = attest(&w, 1, good.clone(), 1);
    assert_eq!(inst.app.check_tx(&tx).unwrap().code, 0);
    let r = block(&mut inst, 2, vec![tx]);
    assert_eq!(r.tx_results[0].code, 0, "{}", r.tx_results[0].log);
    let worker = inst.app.store().worker(&address(&w)).unwrap().unwrap();
    let a = worker.attestation.unwrap();
    assert_eq!(a.kind, "simulated");
    assert!(a.simulated);
    assert_eq!(a.measurement, MEASUREMENT.to_vec());
    assert_eq!(a.tcb_status, "Unrated");
    assert_eq!(a.valid_until, later);
    assert_eq!((a.attested_height, a.expiry_height), (2, 52));
    assert_eq!(a.encryption_key, ek().as_bytes().to_vec());
    assert!(
        r.tx_results[0]
            .events
            .iter()
            .flat_map(|e| &e.attributes)
            .any(|at| at.key == "encryption_key" && at.value == ek().to_hex()),
        "attestation_verified event names the encryption key"
    );
    let now = (T0 + 2) * 1_000_000_000;
    assert!(attestation_is_current(&a, 2, now));
    assert!(!attestation_is_current(&a, 53, now));
    assert!(!attestation_is_current(
        &a,
        3,
        (later as i64 + 1) * 1_000_000_000
    ));

    // The same evidence is not accepted on a chain without simulated TEEs.
    let (_dir, mut strict) = chain(false);
    let r = strict.app.check_tx(&attest(&w, 1, good, 1)).unwrap();
    assert_eq!(r.code, invalid, "{}", r.log);
    assert!(r.log.contains("simulated"), "{}", r.log);
}

#[test]
fn only_the_last_hundred_block_hashes_are_nonces() {
    let w = key(1);
    let (_dir, mut inst) = chain(true);
    for h in 2..=103 {
        block(&mut inst, h, vec![]);
    }
    let later = (T0 + 3600) as u64;
    let stale = attest(&w, 1, evidence(&w, CHAIN_ID, block_hash(3), later), 3);
    let r = inst.app.check_tx(&stale).unwrap();
    assert_eq!(
        r.code,
        TxError::InvalidField {
            field: "",
            reason: String::new()
        }
        .code(),
        "{}",
        r.log
    );
    let fresh = attest(&w, 1, evidence(&w, CHAIN_ID, block_hash(4), later), 4);
    let r = block(&mut inst, 104, vec![fresh]);
    assert_eq!(r.tx_results[0].code, 0, "{}", r.tx_results[0].log);
}

/// A chain with model m3 (require_tee, k 2, quorum 2) and workers keys 1, 2, 3 serving
/// it, of which 1 and 2 hold a current simulated attestation (blocks 1 and 2).
fn tee_chain() -> (tempfile::TempDir, Instance, [SigningKey; 3]) {
    let mut req = genesis(true);
    let mut app: AppState = serde_json::from_slice(&req.app_state_bytes).unwrap();
    app.models.push(GenesisModel {
        model_id: "m3".into(),
        name: String::new(),
        family: "mlp".into(),
        total_layers: 1,
        shards: vec![GenesisShard {
            start_layer: 0,
            end_layer: 1,
            sha256: hex::encode([4u8; 32]),
        }],
        policy: PolicyConfig {
            k: 2,
            quorum: 2,
            require_tee: true,
            ..PolicyConfig::default()
        },
        verifying_key: String::new(),
        commitment: String::new(),
        price: 1,
    });
    req.app_state_bytes = serde_json::to_vec(&app).unwrap().into();
    let dir = tempfile::tempdir().unwrap();
    let mut inst = Instance::open(dir.path().to_path_buf()).unwrap();
    inst.app.init_chain(req).unwrap();
    let workers = [key(1), key(2), key(3)];
    let r = block(
        &mut inst,
        1,
        workers.iter().map(|w| register_worker(w, "m3")).collect(),
    );
    assert!(
        r.tx_results.iter().all(|t| t.code == 0),
        "{:?}",
        r.tx_results
    );
    let far = (T0 + 1_000_000) as u64;
    let r = block(
        &mut inst,
        2,
        workers[..2]
            .iter()
            .map(|w| attest(w, 1, evidence(w, CHAIN_ID, block_hash(1), far), 1))
            .collect(),
    );
    assert!(
        r.tx_results.iter().all(|t| t.code == 0),
        "{:?}",
        r.tx_results
    );

    (dir, inst, workers)
}

/// Jobs on a `require_tee` model go only to workers whose attestation counts now: of
/// three workers, the two attested ones are assigned; asking for three is refused; once
/// the attestations expire (50 blocks here) nobody is eligible.
#[test]
fn only_workers_with_a_current_attestation_are_assigned_require_tee_jobs() {
    let (_dir, mut inst, workers) = tee_chain();
    let client = key(0);
    let job = |nonce: u64, k: u32| {
        sign_tx(
            &client,
            CHAIN_ID,
            nonce,
            1,
            Action::SubmitJob(pb::SubmitJob {
                model_id: "m3".into(),
                payload: Some(pb::submit_job::Payload::Input(b"x".to_vec())),
                k,
                max_fee: 10,
                privacy: 0,
            }),
        )
    };
    let r = block(&mut inst, 3, vec![job(0, 2), job(1, 3)]);
    assert_eq!(r.tx_results[0].code, 0, "{}", r.tx_results[0].log);
    assert!(
        r.tx_results[1].log.contains("only 2 eligible workers"),
        "{}",
        r.tx_results[1].log
    );
    let assigned: Vec<Vec<u8>> = inst
        .app
        .store()
        .job(1)
        .unwrap()
        .unwrap()
        .assignments
        .iter()
        .map(|a| a.operator.clone())
        .collect();
    for w in &workers[..2] {
        assert!(assigned.contains(&address(w).as_bytes().to_vec()));
    }
    assert!(!assigned.contains(&address(&workers[2]).as_bytes().to_vec()));

    // attestation_ttl_blocks = 50: from height 53 the attestations no longer count.
    for h in 4..=53 {
        block(&mut inst, h, Vec::new());
    }
    let r = block(&mut inst, 54, vec![job(1, 2)]);
    assert!(
        r.tx_results[0].log.contains("only 0 eligible workers"),
        "{}",
        r.tx_results[0].log
    );
}

/// A sealed job carries only its input hash; its client then seals the input to each
/// assigned worker's attested key. Only the client may, only to assigned workers, only
/// for this job, once per worker; the worker opens its copy and gets the input.
#[test]
fn sealed_inputs_reach_only_the_assigned_attested_workers() {
    use sha2::{Digest, Sha256};
    use vichain_tee::{SealedInput, SealedInputContext};
    let (_dir, mut inst, workers) = tee_chain();
    let client = key(0);
    let input = b"a private input".to_vec();
    let sealed_job = |nonce: u64, model: &str, payload| {
        sign_tx(
            &client,
            CHAIN_ID,
            nonce,
            1,
            Action::SubmitJob(pb::SubmitJob {
                model_id: model.into(),
                payload: Some(payload),
                k: 0,
                max_fee: 100,
                privacy: pb::PrivacyMode::Sealed as i32,
            }),
        )
    };
    let hash = pb::submit_job::Payload::InputHash(Sha256::digest(&input).to_vec());
    let r = block(
        &mut inst,
        3,
        vec![
            sealed_job(0, "m3", pb::submit_job::Payload::Input(input.clone())),
            sealed_job(0, "m1", hash.clone()),
            sealed_job(0, "m3", hash),
        ],
    );
    assert!(
        r.tx_results[0].log.contains("only its input hash"),
        "{}",
        r.tx_results[0].log
    );
    assert!(
        r.tx_results[1].log.contains("does not require TEE"),
        "{}",
        r.tx_results[1].log
    );
    assert_eq!(r.tx_results[2].code, 0, "{}", r.tx_results[2].log);
    let job = inst.app.store().job(1).unwrap().unwrap();
    assert!(job.input.is_empty());

    let copy = |w: &SigningKey, job_id: u64| {
        let addr = address(w);
        let ctx = SealedInputContext {
            chain_id: CHAIN_ID,
            job_id,
            worker: addr.as_bytes(),
        };
        pb::SealedCopy {
            operator: address(w).as_bytes().to_vec(),
            sealed: ctx.seal(&ek(), &input).unwrap().encode(),
        }
    };
    let seal = |from: &SigningKey, nonce: u64, copies: Vec<pb::SealedCopy>| {
        sign_tx(
            from,
            CHAIN_ID,
            nonce,
            1,
            Action::SealInputs(pb::SealInputs { job_id: 1, copies }),
        )
    };
    let code = |e: TxError| e.code();
    let cases = [
        (
            "from someone else than the client",
            seal(&workers[0], 2, vec![copy(&workers[0], 1)]),
            code(TxError::Unauthorized {
                address: String::new(),
                action: "",
            }),
        ),
        (
            "to a worker not assigned",
            seal(&client, 1, vec![copy(&workers[2], 1)]),
            code(TxError::NotAssigned {
                job_id: 0,
                address: String::new(),
            }),
        ),
        (
            "sealed for another job",
            seal(&client, 1, vec![copy(&workers[0], 2)]),
            code(TxError::InvalidField {
                field: "",
                reason: String::new(),
            }),
        ),
    ];
    let mut height = 4;
    for (name, tx, expected) in cases {
        let r = block(&mut inst, height, vec![tx]);
        height += 1;
        assert_eq!(
            r.tx_results[0].code, expected,
            "{name}: {}",
            r.tx_results[0].log
        );
    }
    let both = vec![copy(&workers[0], 1), copy(&workers[1], 1)];
    let r = block(&mut inst, height, vec![seal(&client, 1, both)]);
    assert_eq!(r.tx_results[0].code, 0, "{}", r.tx_results[0].log);
    let r = block(
        &mut inst,
        height + 1,
        vec![seal(&client, 2, vec![copy(&workers[0], 1)])],
    );
    assert_eq!(
        r.tx_results[0].code,
        code(TxError::AlreadyExists {
            what: "",
            id: String::new()
        }),
        "{}",
        r.tx_results[0].log
    );
    // The worker opens its stored copy with the key its attestation binds.
    let job = inst.app.store().job(1).unwrap().unwrap();
    let mine = job
        .assignments
        .iter()
        .find(|a| a.operator == address(&workers[0]).as_bytes())
        .unwrap();
    let addr = address(&workers[0]);
    let ctx = SealedInputContext {
        chain_id: CHAIN_ID,
        job_id: 1,
        worker: addr.as_bytes(),
    };
    let opened = ctx
        .open(
            &EncryptionKey::derive(&[0x77; 32]).unwrap(),
            &SealedInput::decode(&mine.sealed_input).unwrap(),
        )
        .unwrap();
    assert_eq!(opened, input);
}
