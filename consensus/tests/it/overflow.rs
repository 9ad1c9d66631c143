//! Overflow attacks: transactions whose values would overflow u64 (a panic in a
//! debug build, a wrapped balance or deadline in a release build without overflow
//! checks) are rejected with code 18, a message naming the values, and no effect:
//! the block that holds one has the app hash of the same block without it.

use bytes::Bytes;
use tendermint_proto::{google::protobuf::Timestamp, v0_38::abci};
use vichain_config::AppState;
use vichain_consensus::{TxError, sign_tx};
use vichain_proto::v1::{self as pb, tx_body::Action};
use vichain_tests_support::{BALANCE, CHAIN_ID, Instance, address, init_chain_request, key};

const OVERFLOW: u32 = 18;

/// Genesis with keys 0..3 funded (key 0 the authority) and model `m1` (price 10,
/// k 3), changed by `edit`.
fn genesis(edit: impl FnOnce(&mut AppState)) -> abci::RequestInitChain {
    let keys: Vec<_> = (0..3).map(key).collect();
    let mut req = init_chain_request(&keys, &[key(100)]);
    let mut app: AppState = serde_json::from_slice(&req.app_state_bytes).unwrap();
    edit(&mut app);
    req.app_state_bytes = serde_json::to_vec(&app).unwrap().into();
    req
}

/// Finalizes and commits block 1 with `txs` on a fresh chain; returns the results
/// and the app hash.
fn block_1(
    init: &abci::RequestInitChain,
    txs: &[Vec<u8>],
    check: impl FnOnce(&mut Instance),
) -> (Vec<abci::ExecTxResult>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let mut inst = Instance::open(dir.path().to_path_buf()).unwrap();
    inst.app.init_chain(init.clone()).unwrap();
    check(&mut inst);
    let r = inst
        .app
        .finalize_block(&abci::RequestFinalizeBlock {
            txs: txs.iter().cloned().map(Bytes::from).collect(),
            hash: vec![1; 32].into(),
            height: 1,
            time: Some(Timestamp {
                seconds: 1_700_000_001,
                nanos: 0,
            }),
            ..Default::default()
        })
        .unwrap();
    inst.app.commit().unwrap();
    (r.tx_results, r.app_hash.to_vec())
}

/// `tx` is rejected in CheckTx and in FinalizeBlock with the overflow code and a
/// log holding every one of `names`, and changes nothing.
fn rejected_without_effect(init: &abci::RequestInitChain, tx: Vec<u8>, names: &[&str]) {
    let expect = |code: u32, log: &str| {
        assert_eq!(code, OVERFLOW, "{log}");
        for n in names {
            assert!(log.contains(n), "{log:?} does not name {n:?}");
        }
    };
    let (results, with_tx) = block_1(init, std::slice::from_ref(&tx), |inst| {
        let r = inst.app.check_tx(&tx).unwrap();
        expect(r.code, &r.log);
    });
    expect(results[0].code, &results[0].log);
    let (_, without) = block_1(init, &[], |_| {});
    assert_eq!(
        with_tx, without,
        "the rejected transaction changed the state"
    );
}

fn split_job(max_fee: u64) -> Action {
    Action::SubmitJob(pb::SubmitJob {
        model_id: "m1".into(),
        payload: Some(pb::submit_job::Payload::InputHash(vec![7; 32])),
        k: 0,
        max_fee,
        privacy: pb::PrivacyMode::Split as i32,
    })
}

#[test]
fn overflow_attack_transfer_of_u64_max_to_a_funded_account_is_rejected() {
    let init = genesis(|_| {});
    let to = address(&key(1)).as_bytes().to_vec();
    let tx = sign_tx(
        &key(0),
        CHAIN_ID,
        0,
        1,
        Action::Transfer(pb::Transfer {
            to,
            amount: u64::MAX,
        }),
    );
    rejected_without_effect(&init, tx, &["fee + amount", "1 + 18446744073709551615"]);
}

#[test]
fn overflow_attack_fee_plus_escrow_is_rejected() {
    let init = genesis(|_| {});
    let tx = sign_tx(&key(1), CHAIN_ID, 0, 2, split_job(u64::MAX - 1));
    rejected_without_effect(&init, tx, &["fee + amount", "2 + 18446744073709551614"]);
}

#[test]
fn overflow_attack_price_times_k_is_rejected() {
    // A model priced at u64::MAX: price x k (k = 3) overflows.
    let init = genesis(|app| app.models[0].price = u64::MAX);
    let tx = sign_tx(&key(1), CHAIN_ID, 0, 1, split_job(BALANCE / 2));
    rejected_without_effect(&init, tx, &["price * k", "18446744073709551615 x 3"]);
}

#[test]
fn overflow_attack_deadline_past_u64_is_rejected() {
    // Windows from the params that put the deadline past u64: the job that would
    // open such a round is rejected instead of wrapping its deadline into the past.
    let init = genesis(|app| app.params.commit_window_blocks = u64::MAX);
    let tx = sign_tx(&key(1), CHAIN_ID, 0, 1, split_job(1_000));
    rejected_without_effect(
        &init,
        tx,
        &[
            "height + commit window + reveal window",
            "1 + 18446744073709551615 + 10",
        ],
    );
}

#[test]
fn overflow_attack_message_names_the_values_and_keeps_code_18() {
    let e = TxError::Overflow {
        what: "price * k",
        values: "18446744073709551615 x 3".into(),
    };
    assert_eq!(e.code(), OVERFLOW);
    assert_eq!(
        e.to_string(),
        "arithmetic overflow in price * k: 18446744073709551615 x 3"
    );
}
