//! Every kind of invalid transaction is rejected in CheckTx and in FinalizeBlock
//! with its own code, and a block holding it has exactly the app hash of the same
//! block without it.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use ed25519_dalek::Signer;
use prost::Message;
use tendermint_proto::v0_38::abci;
use vichain_consensus::{TxError, sign_bytes, sign_tx};
use vichain_proto::v1::{self as pb, tx_body::Action};
use vichain_tests::{CHAIN_ID, Instance, address, init_chain_request, key};

fn fresh() -> (tempfile::TempDir, Instance) {
    let dir = tempfile::tempdir().unwrap();
    let mut inst = Instance::open(dir.path().to_path_buf()).unwrap();
    let keys: Vec<_> = (0..3).map(key).collect();
    inst.app
        .init_chain(init_chain_request(&keys, &[key(100)]))
        .unwrap();
    (dir, inst)
}

fn finalize(inst: &mut Instance, txs: Vec<Vec<u8>>) -> abci::ResponseFinalizeBlock {
    let r = inst
        .app
        .finalize_block(&abci::RequestFinalizeBlock {
            txs: txs.into_iter().map(Bytes::from).collect(),
            hash: vec![1; 32].into(),
            height: 1,
            time: Some(tendermint_proto::google::protobuf::Timestamp {
                seconds: 1_700_000_001,
                nanos: 0,
            }),
            ..Default::default()
        })
        .unwrap();
    inst.app.commit().unwrap();
    r
}

fn transfer(amount: u64) -> Action {
    Action::Transfer(pb::Transfer {
        to: address(&key(1)).as_bytes().to_vec(),
        amount,
    })
}

fn job(model: &str, input: Vec<u8>) -> Action {
    Action::SubmitJob(pb::SubmitJob {
        model_id: model.into(),
        payload: Some(pb::submit_job::Payload::Input(input)),
        k: 0,
        max_fee: 1_000,
        privacy: 0,
    })
}

/// Each case: a name, the tx bytes, and the expected code.
fn cases() -> Vec<(&'static str, Vec<u8>, u32)> {
    let authority = key(0);
    let user = key(1);
    let stranger = key(50);
    let e = |err: TxError| err.code();
    let unknown_kind = {
        let body = pb::TxBody {
            chain_id: CHAIN_ID.into(),
            signer: user.verifying_key().to_bytes().to_vec(),
            nonce: 0,
            fee: 1,
            action: None,
        }
        .encode_to_vec();
        let signature = user.sign(&sign_bytes(&body)).to_bytes().to_vec();
        pb::Tx { body, signature }.encode_to_vec()
    };
    let bad_signature = {
        let mut tx =
            pb::Tx::decode(sign_tx(&user, CHAIN_ID, 0, 1, transfer(5)).as_slice()).unwrap();
        tx.signature[0] ^= 0xff;
        tx.encode_to_vec()
    };
    let forged_signer = {
        // Signed by the stranger, claiming to be the user.
        let body = pb::TxBody {
            chain_id: CHAIN_ID.into(),
            signer: user.verifying_key().to_bytes().to_vec(),
            nonce: 0,
            fee: 1,
            action: Some(transfer(5)),
        }
        .encode_to_vec();
        let signature = stranger.sign(&sign_bytes(&body)).to_bytes().to_vec();
        pb::Tx { body, signature }.encode_to_vec()
    };
    vec![
        (
            "malformed bytes",
            vec![0xff, 0xff, 0xff],
            e(TxError::Malformed(String::new())),
        ),
        (
            "truncated tx",
            sign_tx(&user, CHAIN_ID, 0, 1, transfer(5))[..40].to_vec(),
            e(TxError::Malformed(String::new())),
        ),
        (
            "oversize tx",
            vec![0u8; 64 * 1024 + 1],
            e(TxError::TooLarge { size: 0, max: 0 }),
        ),
        ("unknown kind", unknown_kind, e(TxError::UnknownKind)),
        (
            "bad signature",
            bad_signature,
            e(TxError::BadSignature {
                signer: String::new(),
            }),
        ),
        (
            "forged signer",
            forged_signer,
            e(TxError::BadSignature {
                signer: String::new(),
            }),
        ),
        (
            "wrong chain id",
            sign_tx(&user, "other", 0, 1, transfer(5)),
            e(TxError::WrongChainId {
                expected: String::new(),
                got: String::new(),
            }),
        ),
        (
            "nonce gap",
            sign_tx(&user, CHAIN_ID, 3, 1, transfer(5)),
            e(TxError::NonceGap {
                address: String::new(),
                expected: 0,
                got: 0,
            }),
        ),
        (
            "insufficient funds",
            sign_tx(&user, CHAIN_ID, 0, 1, transfer(vichain_tests::BALANCE)),
            e(TxError::InsufficientFunds {
                address: String::new(),
                balance: 0,
                needed: 0,
            }),
        ),
        (
            "fee too low",
            sign_tx(&user, CHAIN_ID, 0, 0, transfer(5)),
            e(TxError::FeeTooLow { fee: 0, min_fee: 0 }),
        ),
        (
            "unknown model",
            sign_tx(&user, CHAIN_ID, 0, 1, job("nope", vec![1])),
            e(TxError::UnknownModel {
                model_id: String::new(),
            }),
        ),
        (
            "oversize input",
            sign_tx(&user, CHAIN_ID, 0, 1, job("m1", vec![0; 4097])),
            e(TxError::OversizeInput { size: 0, max: 0 }),
        ),
        (
            "non-authority adds a validator",
            sign_tx(
                &user,
                CHAIN_ID,
                0,
                1,
                Action::AddValidator(pb::AddValidator {
                    pub_key: key(9).verifying_key().to_bytes().to_vec(),
                    power: 5,
                }),
            ),
            e(TxError::Unauthorized {
                address: String::new(),
                action: "",
            }),
        ),
        (
            "non-authority registers a model",
            sign_tx(&user, CHAIN_ID, 0, 1, Action::RegisterModel(model("m2"))),
            e(TxError::Unauthorized {
                address: String::new(),
                action: "",
            }),
        ),
        (
            "zero transfer",
            sign_tx(&user, CHAIN_ID, 0, 1, transfer(0)),
            e(TxError::InvalidField {
                field: "",
                reason: String::new(),
            }),
        ),
        (
            "model id taken",
            sign_tx(
                &authority,
                CHAIN_ID,
                0,
                1,
                Action::RegisterModel(model("m1")),
            ),
            e(TxError::AlreadyExists {
                what: "",
                id: String::new(),
            }),
        ),
        (
            "unknown validator",
            sign_tx(
                &authority,
                CHAIN_ID,
                0,
                1,
                Action::RemoveValidator(pb::RemoveValidator {
                    pub_key: key(9).verifying_key().to_bytes().to_vec(),
                }),
            ),
            e(TxError::UnknownValidator {
                pub_key: String::new(),
            }),
        ),
        (
            "unknown account",
            sign_tx(&stranger, CHAIN_ID, 0, 1, transfer(5)),
            e(TxError::UnknownAccount {
                address: String::new(),
            }),
        ),
        (
            "worker serving an unknown model",
            sign_tx(
                &user,
                CHAIN_ID,
                0,
                1,
                Action::RegisterWorker(pb::RegisterWorker {
                    peer_id: "12D3KooWabc".into(),
                    stake: 5_000,
                    serves: vec![pb::ServedShard {
                        model_id: "nope".into(),
                        shard_index: 0,
                    }],
                }),
            ),
            e(TxError::UnknownModel {
                model_id: String::new(),
            }),
        ),
    ]
}

fn model(id: &str) -> pb::RegisterModel {
    pb::RegisterModel {
        model_id: id.into(),
        name: String::new(),
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
        verifying_key: vec![],
        commitment: vec![],
        price: 1,
    }
}

#[test]
fn every_rejection_has_its_own_code_in_check_tx_and_changes_nothing() {
    let mut seen = std::collections::BTreeSet::new();
    for (name, tx, code) in cases() {
        let (_dir, mut inst) = fresh();
        let before = inst.app_hash();
        let r = inst.app.check_tx(&tx).unwrap();
        assert_eq!(r.code, code, "{name}: {}", r.log);
        assert_eq!(r.codespace, "vichain", "{name}");
        assert!(!r.log.is_empty(), "{name}: a rejection explains itself");
        assert_eq!(inst.app_hash(), before, "{name}");
        // The mempool state did not move either: the user's nonce 0 is still free.
        let ok = inst
            .app
            .check_tx(&sign_tx(&key(1), CHAIN_ID, 0, 1, transfer(5)))
            .unwrap();
        assert_eq!(ok.code, 0, "{name}: {}", ok.log);
        seen.insert(code);
    }
    // Distinct codes for distinct problems.
    assert!(seen.len() >= 15, "only {} distinct codes", seen.len());
}

#[test]
fn every_rejection_in_finalize_block_leaves_the_app_hash_of_an_empty_block() {
    let (_d, mut empty) = fresh();
    let expected = finalize(&mut empty, vec![]).app_hash;
    for (name, tx, code) in cases() {
        let (_dir, mut inst) = fresh();
        let r = finalize(&mut inst, vec![tx]);
        assert_eq!(
            r.tx_results[0].code, code,
            "{name}: {}",
            r.tx_results[0].log
        );
        assert_eq!(r.app_hash, expected, "{name} changed the state");
    }
}

#[test]
fn a_replayed_transaction_is_rejected_after_its_block() {
    let (_dir, mut inst) = fresh();
    let tx = sign_tx(&key(1), CHAIN_ID, 0, 1, transfer(5));
    let r = finalize(&mut inst, vec![tx.clone()]);
    assert_eq!(r.tx_results[0].code, 0);
    let replay = inst.app.check_tx(&tx).unwrap();
    assert_eq!(
        replay.code,
        TxError::NonceReplayed {
            address: String::new(),
            expected: 0,
            got: 0
        }
        .code(),
        "{}",
        replay.log
    );
    assert!(replay.log.contains("already used"), "{}", replay.log);
}

#[test]
fn proposals_with_an_invalid_transaction_are_rejected_and_proposers_leave_them_out() {
    let (_dir, mut inst) = fresh();
    let good = Bytes::from(sign_tx(&key(1), CHAIN_ID, 0, 1, transfer(5)));
    let bad = Bytes::from(sign_tx(&key(1), "other", 1, 1, transfer(5)));
    let r = inst
        .app
        .process_proposal(&abci::RequestProcessProposal {
            txs: vec![good.clone(), bad.clone()],
            height: 1,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        r.status,
        abci::response_process_proposal::ProposalStatus::Reject as i32
    );
    let p = inst
        .app
        .prepare_proposal(&abci::RequestPrepareProposal {
            max_tx_bytes: 1 << 20,
            txs: vec![good.clone(), bad],
            height: 1,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(p.txs, vec![good.clone()]);
    // And the size limit is respected.
    let p = inst
        .app
        .prepare_proposal(&abci::RequestPrepareProposal {
            max_tx_bytes: good.len() as i64 - 1,
            txs: vec![good],
            height: 1,
            ..Default::default()
        })
        .unwrap();
    assert!(p.txs.is_empty());
}
