//! Each App keeps the summaries of the blocks it committed for the node's
//! dashboard; two ledgers in one process (the harness runs several) keep theirs apart.

use vichain_tests_support::{Harness, init_chain_request, key};

#[test]
fn each_app_keeps_its_own_recent_blocks() {
    let keys: Vec<_> = (0..2).map(key).collect();
    let mut h = Harness::new(2, &init_chain_request(&keys, &[key(50)])).unwrap();
    for _ in 0..3 {
        h.step(Vec::new()).unwrap();
    }
    for instance in h.instances.iter().flatten() {
        let recent = instance.app.recent_blocks().latest(10);
        let heights: Vec<u64> = recent.iter().map(|b| b.height).collect();
        assert_eq!(heights, vec![3, 2, 1], "newest first, this App's only");
        assert_eq!(recent[0].app_hash.to_vec(), h.blocks[2].app_hash);
    }
}
