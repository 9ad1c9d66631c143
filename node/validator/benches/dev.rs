//! `vichaind dev` throughput: transactions submitted to the in-process mempool
//! (CheckTx with signature verification), then one block produced through
//! PrepareProposal, ProcessProposal, FinalizeBlock and Commit (state fsynced).
//!
//! `cargo bench -p vichain-validator --bench dev`

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vichain_config::{DevConfig, MempoolConfig};
use vichain_consensus::{App, Storage};
use vichain_tests::{funded_keys, init_chain_request, transfers};
use vichain_validator::dev::DevChain;

fn dev(c: &mut Criterion) {
    let keys = funded_keys(1000);
    let mut g = c.benchmark_group("dev");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    for n in [1_000usize, 10_000] {
        let txs = transfers(&keys, n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("submit_and_produce_block/transfers/txs={n}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let store = Arc::new(Storage::open(&dir.path().join("s.redb")).expect("store"));
                    let mut app = App::new(store);
                    app.init_chain(init_chain_request(&keys, &[keys[0].clone()]))
                        .expect("genesis");
                    let chain = DevChain::new(
                        Arc::new(Mutex::new(app)),
                        DevConfig::default(),
                        MempoolConfig::default(),
                        vec![0; 20],
                    );
                    let t = Instant::now();
                    for tx in &txs {
                        assert_eq!(chain.submit(tx.to_vec()).expect("submit").code, 0);
                    }
                    let block = chain.produce_block().expect("block");
                    total += t.elapsed();
                    assert_eq!(block.txs, n);
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, dev);
criterion_main!(benches);
