//! Crash recovery: an instance killed after FinalizeBlock but before Commit, and
//! one killed in the middle of a run, restart from their directories, report their
//! last committed height in Info, replay the missing blocks and agree again.

#![allow(clippy::unwrap_used)]

use vichain_tests::{Harness, TxGen, init_chain_request, key};

#[test]
fn an_instance_killed_between_finalize_and_commit_replays_the_block() {
    let keys: Vec<_> = (0..4).map(key).collect();
    let init = init_chain_request(&keys, &[key(100)]);
    let mut h = Harness::new(2, &init).unwrap();
    let mut txgen = TxGen::new(7, keys);
    for _ in 0..20 {
        let txs = txgen.block(&h.any().app.store().clone(), 8);
        h.step(txs).unwrap();
    }
    // Instance 1 finalizes block 21 but dies before Commit.
    let txs = txgen.block(&h.any().app.store().clone(), 8);
    let mut inst1 = h.instances[1].take().unwrap();
    let prepared = h.instances[0]
        .as_mut()
        .unwrap()
        .app
        .prepare_proposal(&tendermint_proto::v0_38::abci::RequestPrepareProposal {
            max_tx_bytes: 1 << 20,
            txs,
            height: 21,
            ..Default::default()
        })
        .unwrap();
    let block = vichain_tests::Block {
        height: 21,
        time: tendermint_proto::google::protobuf::Timestamp {
            seconds: 1_700_000_021,
            nanos: 0,
        },
        txs: prepared.txs,
        hash: vec![21; 32],
        app_hash: vec![],
    };
    let before = inst1.app.finalize_block(&block.finalize_request()).unwrap();
    drop(inst1); // crash: no Commit
    h.finalize_and_commit(block).unwrap();
    assert_eq!(before.app_hash.to_vec(), h.blocks[20].app_hash);

    let resumed_from = h.restart(1).unwrap();
    assert_eq!(
        resumed_from, 20,
        "the uncommitted block must not be on disk"
    );
    let hashes = h.app_hashes();
    assert_eq!(hashes[0], hashes[1]);
    // And the chain goes on together.
    for _ in 0..5 {
        let txs = txgen.block(&h.any().app.store().clone(), 8);
        h.step(txs).unwrap();
    }
}

#[test]
fn an_instance_killed_mid_run_catches_up_through_the_handshake() {
    let keys: Vec<_> = (0..6).map(key).collect();
    let init = init_chain_request(&keys, &[key(100), key(101), key(102)]);
    let mut h = Harness::new(3, &init).unwrap();
    let mut txgen = TxGen::new(11, keys);
    for _ in 0..30 {
        let txs = txgen.block(&h.any().app.store().clone(), 10);
        h.step(txs).unwrap();
    }
    h.kill(2);
    for _ in 0..40 {
        let txs = txgen.block(&h.any().app.store().clone(), 10);
        h.step(txs).unwrap();
    }
    let resumed_from = h.restart(2).unwrap();
    assert_eq!(resumed_from, 30);
    let hashes = h.app_hashes();
    assert!(hashes.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(h.instances[2].as_ref().unwrap().last_height(), 70);
}

#[test]
fn a_repeated_init_chain_before_the_first_block_is_answered_the_same() {
    let keys: Vec<_> = (0..2).map(key).collect();
    let init = init_chain_request(&keys, &[key(100)]);
    let dir = tempfile::tempdir().unwrap();
    let mut a = vichain_tests::Instance::open(dir.path().to_path_buf()).unwrap();
    let first = a.app.init_chain(init.clone()).unwrap();
    drop(a);
    let mut b = vichain_tests::Instance::open(dir.path().to_path_buf()).unwrap();
    let info = b.app.info(&Default::default()).unwrap();
    assert_eq!(
        info.last_block_height, 0,
        "genesis alone is height 0 so CometBFT re-runs InitChain"
    );
    let again = b.app.init_chain(init.clone()).unwrap();
    assert_eq!(first.app_hash, again.app_hash);
    let mut other = init;
    other.chain_id = "another-chain".into();
    assert!(
        b.app.init_chain(other).is_err(),
        "a different genesis on the same store is refused"
    );
}
