//! Four ledger instances fed identical blocks of random valid and invalid
//! transactions, with proposer rotation, compute the same app hash at every height.

#![allow(clippy::unwrap_used)]

use vichain_tests::{Harness, TxGen, init_chain_request, key};

#[test]
fn four_validators_agree_on_every_app_hash_over_500_random_blocks() {
    let keys: Vec<_> = (0..8).map(key).collect();
    let validators = vec![keys[0].clone(), key(100), key(101), key(102)];
    let init = init_chain_request(&keys, &validators);
    let mut h = Harness::new(4, &init).unwrap();
    let mut txgen = TxGen::new(42, keys);
    let mut included = 0usize;
    let mut rejected_in_block = 0usize;
    for height in 1..=500u64 {
        let candidates = txgen.block(&h.any().app.store().clone(), 12);
        let r = if height % 10 == 0 {
            // A block straight to FinalizeBlock with every candidate, invalid ones
            // included: results must still agree, and invalid txs change nothing.
            let block = vichain_tests::Block {
                height,
                time: tendermint_proto::google::protobuf::Timestamp {
                    seconds: 1_800_000_000 + height as i64,
                    nanos: 0,
                },
                txs: candidates,
                hash: vec![height as u8; 32],
                app_hash: vec![],
            };
            h.finalize_and_commit(block).unwrap()
        } else {
            h.step(candidates).unwrap()
        };
        included += r.tx_results.iter().filter(|t| t.code == 0).count();
        rejected_in_block += r.tx_results.iter().filter(|t| t.code != 0).count();
        let hashes = h.app_hashes();
        assert!(
            hashes.windows(2).all(|w| w[0] == w[1]),
            "divergence at height {height}"
        );
    }
    assert_eq!(h.height(), 500);
    // The run exercised both paths for real.
    assert!(included > 2000, "only {included} transactions succeeded");
    assert!(
        rejected_in_block > 50,
        "only {rejected_in_block} rejections in blocks"
    );
}
