//! The life of a job on four validators: assignment to k workers, commit-reveal,
//! output consensus, and settlement. One lying worker among three: the majority's
//! output is finalized, the liar slashed and penalized, honest workers paid, the
//! client refunded the rest. A copied commitment, a reveal of someone else's opening
//! and an early reveal are rejected with their codes. An absent worker is penalized
//! while the others finalize; with two absent, the job is escalated, then fails and
//! is refunded. Every block gives every instance the same app hash.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use tendermint_proto::{google::protobuf::Timestamp, v0_38::abci};
use vichain_consensus::{
    Address, REPUTATION_ONE, StateReadExt, TxError, output_fingerprint, result_commitment, sign_tx,
};
use vichain_proto::v1::{self as pb, tx_body::Action};
use vichain_tests::{BALANCE, Block, CHAIN_ID, Harness, address, init_chain_request, key};

const PRICE: u64 = 10;
const ESCROW: u64 = 100;
const STAKE: u64 = 5_000;
const FEE: u64 = 1;

fn authority() -> SigningKey {
    key(0)
}
fn client() -> SigningKey {
    key(9)
}
fn workers(n: u8) -> Vec<SigningKey> {
    (1..=n).map(key).collect()
}

struct Chain {
    h: Harness,
}

impl Chain {
    /// Four validators; `n` workers registered for model "exact" (k 3, quorum 2).
    fn new(n: u8) -> Self {
        let accounts: Vec<SigningKey> = (0..10).map(key).collect();
        let validators: Vec<SigningKey> = (100..104).map(key).collect();
        let h = Harness::new(4, &init_chain_request(&accounts, &validators)).unwrap();
        let mut c = Self { h };
        let model = Action::RegisterModel(pb::RegisterModel {
            model_id: "exact".into(),
            name: "an exact model".into(),
            family: "mlp".into(),
            total_layers: 2,
            shards: vec![pb::ShardSpec {
                start_layer: 0,
                end_layer: 2,
                sha256: vec![3; 32],
            }],
            policy: Some(pb::VerificationPolicy {
                k: 3,
                quorum: 2,
                ..Default::default()
            }),
            price: PRICE,
            ..Default::default()
        });
        c.ok(vec![c.tx(&authority(), model)]);
        let regs = workers(n)
            .iter()
            .map(|w| {
                c.tx(
                    w,
                    Action::RegisterWorker(pb::RegisterWorker {
                        peer_id: peer_id(w),
                        stake: STAKE,
                        serves: vec![pb::ServedShard {
                            model_id: "exact".into(),
                            shard_index: 0,
                        }],
                    }),
                )
            })
            .collect();
        c.ok(regs);
        c
    }

    fn tx(&self, k: &SigningKey, action: Action) -> Vec<u8> {
        let nonce = self
            .h
            .any()
            .app
            .store()
            .account(&address(k))
            .unwrap()
            .map_or(0, |a| a.nonce);
        sign_tx(k, CHAIN_ID, nonce, FEE, action)
    }

    /// Finalizes a block of exactly `txs` on every instance (the harness checks that
    /// app hashes and result codes agree).
    fn block(&mut self, txs: Vec<Vec<u8>>) -> abci::ResponseFinalizeBlock {
        let height = self.h.height() + 1;
        let block = Block {
            height,
            time: Timestamp {
                seconds: 1_700_000_000 + height as i64,
                nanos: 0,
            },
            txs: txs.into_iter().map(Bytes::from).collect(),
            hash: Sha256::digest(height.to_be_bytes()).to_vec(),
            app_hash: Vec::new(),
        };
        let r = self.h.finalize_and_commit(block).unwrap();
        let hashes = self.h.app_hashes();
        assert!(hashes.windows(2).all(|w| w[0] == w[1]));
        r
    }

    fn ok(&mut self, txs: Vec<Vec<u8>>) -> abci::ResponseFinalizeBlock {
        let r = self.block(txs);
        for t in &r.tx_results {
            assert_eq!(t.code, 0, "{}", t.log);
        }
        r
    }

    /// One transaction that must fail with `code`; returns its log.
    fn rejected(&mut self, tx: Vec<u8>, code: u32) -> String {
        // CheckTx rejects it too.
        let checked = self.h.live().next().unwrap().app.check_tx(&tx).unwrap();
        assert_eq!(checked.code, code, "CheckTx: {}", checked.log);
        let r = self.block(vec![tx]);
        assert_eq!(r.tx_results[0].code, code, "{}", r.tx_results[0].log);
        r.tx_results[0].log.clone()
    }

    fn job(&self, id: u64) -> pb::Job {
        self.h.any().app.store().job(id).unwrap().unwrap()
    }

    fn worker(&self, k: &SigningKey) -> pb::Worker {
        self.h
            .any()
            .app
            .store()
            .worker(&address(k))
            .unwrap()
            .unwrap()
    }

    fn balance(&self, k: &SigningKey) -> u64 {
        self.h
            .any()
            .app
            .store()
            .account(&address(k))
            .unwrap()
            .unwrap()
            .balance
    }

    fn submit(&mut self) -> u64 {
        let tx = self.tx(
            &client(),
            Action::SubmitJob(pb::SubmitJob {
                model_id: "exact".into(),
                payload: Some(pb::submit_job::Payload::Input(b"an input".to_vec())),
                k: 0,
                max_fee: ESCROW,
                privacy: 0,
            }),
        );
        let r = self.ok(vec![tx]);
        u64::from_be_bytes(r.tx_results[0].data.as_ref().try_into().unwrap())
    }

    /// Idle blocks until the chain's height is `height`.
    fn advance_to(&mut self, height: u64) {
        while self.h.height() < height {
            self.ok(Vec::new());
        }
    }
}

/// A base58 stand-in for the worker's libp2p peer id.
fn peer_id(w: &SigningKey) -> String {
    const BASE58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let tail: String = address(w)
        .as_bytes()
        .iter()
        .map(|b| BASE58[*b as usize % 58] as char)
        .collect();
    format!("12D3KooW{tail}")
}

fn output(values: &[i64]) -> pb::JobOutput {
    pb::JobOutput {
        values: values.to_vec(),
        text: String::new(),
    }
}

fn salt(w: &SigningKey) -> [u8; 32] {
    Sha256::digest(w.verifying_key().as_bytes()).into()
}

fn commitment(w: &SigningKey, out: &pb::JobOutput) -> Vec<u8> {
    result_commitment(&output_fingerprint(out, &[]), &salt(w), &address(w)).to_vec()
}

fn commit(c: &Chain, job: u64, w: &SigningKey, out: &pb::JobOutput) -> Vec<u8> {
    c.tx(
        w,
        Action::CommitResult(pb::CommitResult {
            job_id: job,
            commitment: commitment(w, out),
        }),
    )
}

fn reveal_as(
    c: &Chain,
    job: u64,
    sender: &SigningKey,
    opener: &SigningKey,
    out: &pb::JobOutput,
) -> Vec<u8> {
    c.tx(
        sender,
        Action::RevealResult(pb::RevealResult {
            job_id: job,
            output: Some(out.clone()),
            salt: salt(opener).to_vec(),
            proof: None,
            stages: Vec::new(),
        }),
    )
}

fn reveal(c: &Chain, job: u64, w: &SigningKey, out: &pb::JobOutput) -> Vec<u8> {
    reveal_as(c, job, w, w, out)
}

fn code(e: TxError) -> u32 {
    e.code()
}

fn assigned(job: &pb::Job, round: u32) -> Vec<Address> {
    job.assignments
        .iter()
        .filter(|a| a.round == round)
        .map(|a| Address::from_bytes(&a.operator).unwrap())
        .collect()
}

fn key_of(a: &Address, keys: &[SigningKey]) -> SigningKey {
    keys.iter().find(|k| address(k) == *a).unwrap().clone()
}

#[test]
fn one_liar_among_three_is_outvoted_slashed_and_unpaid_while_the_honest_are_paid() {
    let mut c = Chain::new(3);
    let ws = workers(3);
    let client_before = c.balance(&client());
    let id = c.submit();
    let job = c.job(id);
    assert_eq!(job.status, pb::JobStatus::Assigned as i32);
    assert_eq!(job.k, 3);
    let mut chosen = assigned(&job, 0);
    chosen.sort();
    let mut all: Vec<Address> = ws.iter().map(address).collect();
    all.sort();
    assert_eq!(chosen, all, "all three eligible workers are assigned");

    let truth = output(&[1, -2, 3]);
    let lie = output(&[9, 9, 9]);
    let (w1, w2, liar) = (&ws[0], &ws[1], &ws[2]);
    c.ok(vec![commit(&c, id, w1, &truth), commit(&c, id, w2, &truth)]);
    assert_eq!(c.job(id).status, pb::JobStatus::Assigned as i32);

    // No reveal while a worker has yet to commit: it could copy the output.
    let log = c.rejected(
        reveal(&c, id, w1, &truth),
        code(TxError::WrongPhase {
            job_id: 0,
            reason: String::new(),
        }),
    );
    assert!(log.contains("commit phase is open"), "{log}");
    // Reusing another worker's commitment is refused.
    let copied = c.tx(
        liar,
        Action::CommitResult(pb::CommitResult {
            job_id: id,
            commitment: commitment(w1, &truth),
        }),
    );
    let log = c.rejected(
        copied,
        code(TxError::InvalidField {
            field: "",
            reason: String::new(),
        }),
    );
    assert!(log.contains("another worker's commitment"), "{log}");
    // A stranger cannot commit.
    let stranger = c.tx(
        &client(),
        Action::CommitResult(pb::CommitResult {
            job_id: id,
            commitment: vec![1; 32],
        }),
    );
    c.rejected(
        stranger,
        code(TxError::NotAssigned {
            job_id: 0,
            address: String::new(),
        }),
    );

    c.ok(vec![commit(&c, id, liar, &lie)]);
    assert_eq!(c.job(id).status, pb::JobStatus::Revealing as i32);
    // Committing twice is refused.
    c.rejected(
        commit(&c, id, w1, &truth),
        code(TxError::WrongPhase {
            job_id: 0,
            reason: String::new(),
        }),
    );
    // The liar cannot reveal the honest worker's opening: its commitment binds itself.
    c.rejected(
        reveal_as(&c, id, liar, w1, &truth),
        code(TxError::BadOpening {
            job_id: 0,
            address: String::new(),
        }),
    );

    c.ok(vec![reveal(&c, id, w1, &truth), reveal(&c, id, w2, &truth)]);
    assert_eq!(c.job(id).status, pb::JobStatus::Revealing as i32);
    let r = c.ok(vec![reveal(&c, id, liar, &lie)]);
    let finalized = r.tx_results[0]
        .events
        .iter()
        .any(|e| e.r#type == "job_finalized");
    assert!(finalized, "the last reveal finalizes the job");

    let job = c.job(id);
    assert_eq!(job.status, pb::JobStatus::Finalized as i32);
    assert_eq!(job.result, Some(truth));
    assert_eq!(job.outcome, "majority");
    let share = PRICE * 3 / 2;
    assert_eq!(job.refund, ESCROW - 2 * share);
    for a in &job.assignments {
        let is_liar = a.operator == address(liar).as_bytes();
        let verdict = if is_liar {
            pb::Verdict::Dissented
        } else {
            pb::Verdict::Agreed
        };
        assert_eq!(a.verdict, verdict as i32);
        assert_eq!(a.reward, if is_liar { 0 } else { share });
    }
    let liar_record = c.worker(liar);
    assert_eq!(liar_record.stake, STAKE - STAKE / 10);
    assert_eq!(liar_record.reputation, REPUTATION_ONE * 8 / 10);
    for w in [w1, w2] {
        assert_eq!(c.worker(w).reputation, REPUTATION_ONE * 101 / 100);
        assert_eq!(c.worker(w).stake, STAKE);
    }
    // Honest workers: balance after registration, minus 2 fees (commit, reveal), plus the share.
    let registered = BALANCE - FEE - STAKE;
    assert_eq!(c.balance(w1), registered - 2 * FEE + share);
    assert_eq!(c.balance(liar), registered - 2 * FEE);
    assert_eq!(
        c.balance(&client()),
        client_before - FEE - ESCROW + job.refund
    );
    // A closed job takes no more reveals.
    c.rejected(
        reveal(&c, id, w1, &output(&[1])),
        code(TxError::WrongPhase {
            job_id: 0,
            reason: String::new(),
        }),
    );
}

#[test]
fn an_absent_worker_is_penalized_while_the_quorum_finalizes() {
    let mut c = Chain::new(3);
    let ws = workers(3);
    let id = c.submit();
    let truth = output(&[42]);
    let (w1, w2, absent) = (&ws[0], &ws[1], &ws[2]);
    c.ok(vec![commit(&c, id, w1, &truth), commit(&c, id, w2, &truth)]);
    let deadline = c.job(id).commit_deadline;
    c.advance_to(deadline - 1);
    assert_eq!(c.job(id).status, pb::JobStatus::Assigned as i32);
    c.advance_to(deadline);
    assert_eq!(c.job(id).status, pb::JobStatus::Revealing as i32);
    // Too late to commit.
    c.rejected(
        commit(&c, id, absent, &truth),
        code(TxError::WrongPhase {
            job_id: 0,
            reason: String::new(),
        }),
    );
    c.ok(vec![reveal(&c, id, w1, &truth), reveal(&c, id, w2, &truth)]);
    let job = c.job(id);
    assert_eq!(job.status, pb::JobStatus::Finalized as i32);
    assert_eq!(job.outcome, "majority");
    let a = job
        .assignments
        .iter()
        .find(|a| a.operator == address(absent).as_bytes())
        .unwrap();
    assert_eq!(a.verdict, pb::Verdict::Absent as i32);
    assert_eq!(c.worker(absent).reputation, REPUTATION_ONE * 8 / 10);
    assert_eq!(c.worker(absent).stake, STAKE, "absence is not slashed");
}

#[test]
fn without_a_quorum_a_job_is_escalated_once_then_fails_with_a_refund() {
    let mut c = Chain::new(4);
    let ws = workers(4);
    let client_before = c.balance(&client());
    let id = c.submit();
    let job = c.job(id);
    let first = assigned(&job, 0);
    assert_eq!(first.len(), 3);
    let present = key_of(&first[0], &ws);
    let truth = output(&[7]);
    c.ok(vec![commit(&c, id, &present, &truth)]);
    c.advance_to(job.commit_deadline);
    assert_eq!(c.job(id).status, pb::JobStatus::Revealing as i32);
    // The only committed worker reveals: one vote, quorum two: escalation.
    let r = c.ok(vec![reveal(&c, id, &present, &truth)]);
    assert!(
        r.tx_results[0]
            .events
            .iter()
            .any(|e| e.r#type == "job_escalated")
    );
    let job = c.job(id);
    assert_eq!(job.round, 1);
    assert_eq!(job.status, pb::JobStatus::Assigned as i32);
    let second = assigned(&job, 1);
    assert_eq!(second.len(), 1, "only the one unassigned worker is left");
    assert!(!first.contains(&second[0]));
    // The escalated worker stays silent too: the job fails and is refunded in full.
    c.advance_to(job.commit_deadline);
    let job = c.job(id);
    assert_eq!(job.status, pb::JobStatus::Failed as i32);
    assert_eq!(job.outcome, "no_quorum");
    assert_eq!(job.refund, ESCROW);
    assert_eq!(c.balance(&client()), client_before - FEE);
    for a in &job.assignments {
        let addr = Address::from_bytes(&a.operator).unwrap();
        if addr == address(&present) {
            assert_eq!(a.verdict, pb::Verdict::NoQuorum as i32);
            assert_eq!(c.worker(&present).reputation, REPUTATION_ONE);
        } else {
            assert_eq!(a.verdict, pb::Verdict::Absent as i32);
            let k = key_of(&addr, &ws);
            assert_eq!(c.worker(&k).reputation, REPUTATION_ONE * 8 / 10);
        }
    }
}

#[test]
fn a_job_asking_for_more_workers_than_serve_the_model_is_rejected_and_stores_nothing() {
    let mut c = Chain::new(2);
    let tx = c.tx(
        &client(),
        Action::SubmitJob(pb::SubmitJob {
            model_id: "exact".into(),
            payload: Some(pb::submit_job::Payload::Input(b"x".to_vec())),
            k: 3,
            max_fee: ESCROW,
            privacy: 0,
        }),
    );
    let log = c.rejected(
        tx,
        code(TxError::InvalidField {
            field: "",
            reason: String::new(),
        }),
    );
    assert!(log.contains("only 2 eligible workers"), "{log}");
    assert!(c.h.any().app.store().job(1).unwrap().is_none());
    let cheap = c.tx(
        &client(),
        Action::SubmitJob(pb::SubmitJob {
            model_id: "exact".into(),
            payload: Some(pb::submit_job::Payload::Input(b"x".to_vec())),
            k: 2,
            max_fee: PRICE,
            privacy: 0,
        }),
    );
    let log = c.rejected(
        cheap,
        code(TxError::InvalidField {
            field: "",
            reason: String::new(),
        }),
    );
    assert!(log.contains("below price"), "{log}");
}

#[test]
fn the_same_blocks_assign_the_same_workers_on_every_validator_and_seeds_differ_per_job() {
    let mut c = Chain::new(6);
    let mut sets = Vec::new();
    for _ in 0..4 {
        let id = c.submit();
        let mut per_instance =
            c.h.instances
                .iter()
                .flatten()
                .map(|i| i.app.store().job(id).unwrap().unwrap().assignments);
        let first = per_instance.next().unwrap();
        assert!(per_instance.all(|a| a == first));
        let mut ops: Vec<Vec<u8>> = first.iter().map(|a| a.operator.clone()).collect();
        ops.sort();
        ops.dedup();
        assert_eq!(ops.len(), 3, "no operator twice in one job");
        sets.push(ops);
    }
    sets.dedup();
    assert!(sets.len() > 1, "different jobs draw different workers");
}

/// Split mode: the client runs the pipeline itself and records it. Only the client may,
/// only with stages that cover the layers, each held by a registered worker serving
/// exactly that range; the stage workers are paid by layer share and the rest refunded.
/// A split job nobody records fails at its deadline with a full refund.
#[test]
fn a_client_recorded_pipeline_pays_its_stage_workers_by_layer_share() {
    let mut c = Chain::new(0);
    let (a, b) = (key(1), key(2));
    let model = Action::RegisterModel(pb::RegisterModel {
        model_id: "split".into(),
        name: "a two-stage model".into(),
        family: "llama".into(),
        total_layers: 4,
        shards: vec![
            pb::ShardSpec {
                start_layer: 0,
                end_layer: 1,
                sha256: vec![5; 32],
            },
            pb::ShardSpec {
                start_layer: 1,
                end_layer: 4,
                sha256: vec![6; 32],
            },
        ],
        policy: Some(pb::VerificationPolicy {
            k: 1,
            quorum: 1,
            ..Default::default()
        }),
        price: 40,
        ..Default::default()
    });
    c.ok(vec![c.tx(&authority(), model)]);
    let reg = |c: &Chain, w: &SigningKey, shard: u32| {
        c.tx(
            w,
            Action::RegisterWorker(pb::RegisterWorker {
                peer_id: peer_id(w),
                stake: STAKE,
                serves: vec![pb::ServedShard {
                    model_id: "split".into(),
                    shard_index: shard,
                }],
            }),
        )
    };
    c.ok(vec![reg(&c, &a, 0), reg(&c, &b, 1)]);
    let submit = |c: &Chain| {
        c.tx(
            &client(),
            Action::SubmitJob(pb::SubmitJob {
                model_id: "split".into(),
                payload: Some(pb::submit_job::Payload::InputHash(vec![9; 32])),
                k: 0,
                max_fee: ESCROW,
                privacy: pb::PrivacyMode::Split as i32,
            }),
        )
    };
    let r = c.ok(vec![submit(&c)]);
    let id = u64::from_be_bytes(r.tx_results[0].data.as_ref().try_into().unwrap());
    let job = c.job(id);
    assert_eq!(job.status, pb::JobStatus::Pending as i32);
    assert!(
        job.assignments.is_empty(),
        "the client runs the pipeline itself"
    );

    let stage = |w: &SigningKey, start: u32, end: u32| pb::Stage {
        operator: address(w).as_bytes().to_vec(),
        start_layer: start,
        end_layer: end,
        input_hash: vec![start as u8; 32],
        output_hash: vec![end as u8; 32],
    };
    let record = |c: &Chain, from: &SigningKey, stages: Vec<pb::Stage>| {
        c.tx(
            from,
            Action::RecordPipeline(pb::RecordPipeline {
                job_id: id,
                stages,
                output_hash: vec![7; 32],
            }),
        )
    };
    c.rejected(
        record(&c, &a, vec![stage(&a, 0, 1), stage(&b, 1, 4)]),
        code(TxError::Unauthorized {
            address: String::new(),
            action: "",
        }),
    );
    let invalid = code(TxError::InvalidField {
        field: "",
        reason: String::new(),
    });
    let log = c.rejected(record(&c, &client(), vec![stage(&a, 0, 1)]), invalid);
    assert!(log.contains("cover layers 0..4"), "{log}");
    let log = c.rejected(
        record(&c, &client(), vec![stage(&b, 0, 1), stage(&a, 1, 4)]),
        invalid,
    );
    assert!(log.contains("not held by"), "{log}");

    let (a0, b0, c0) = (c.balance(&a), c.balance(&b), c.balance(&client()));
    c.ok(vec![record(
        &c,
        &client(),
        vec![stage(&a, 0, 1), stage(&b, 1, 4)],
    )]);
    let job = c.job(id);
    assert_eq!(job.status, pb::JobStatus::Finalized as i32);
    assert_eq!(job.outcome, "client_pipeline");
    assert_eq!(job.pipeline.len(), 2);
    assert_eq!(job.output_hash, vec![7; 32]);
    // price 40 x k 1, by layer share: 1/4 and 3/4.
    assert_eq!(c.balance(&a), a0 + 10);
    assert_eq!(c.balance(&b), b0 + 30);
    assert_eq!(c.balance(&client()), c0 - FEE + ESCROW - 40);
    assert_eq!(job.refund, ESCROW - 40);

    // A split job nobody records: refunded in full at its deadline.
    let r = c.ok(vec![submit(&c)]);
    let id2 = u64::from_be_bytes(r.tx_results[0].data.as_ref().try_into().unwrap());
    let deadline = c.job(id2).reveal_deadline;
    c.advance_to(deadline);
    let job = c.job(id2);
    assert_eq!(job.status, pb::JobStatus::Failed as i32);
    assert_eq!(job.refund, ESCROW);
}
