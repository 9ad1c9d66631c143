//! Four ledger instances fed identical blocks by the harness that plays CometBFT:
//! PrepareProposal on the proposer, ProcessProposal, FinalizeBlock and Commit (state
//! fsynced) on every instance, app hashes compared. Throughput counts each block's
//! transactions once.
//!
//! `cargo bench -p vichain-tests --bench harness`

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use vichain_tests::{Harness, funded_keys, init_chain_request, transfers};

fn harness(c: &mut Criterion) {
    let keys = funded_keys(1000);
    let validators: Vec<SigningKey> = keys[..4].to_vec();
    let mut g = c.benchmark_group("harness");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    for n in [1_000usize, 10_000] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("four_instances/block/transfers/txs={n}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut h =
                        Harness::new(4, &init_chain_request(&keys, &validators)).expect("harness");
                    let txs = transfers(&keys, n);
                    let t = Instant::now();
                    let r = h.step(txs).expect("block");
                    total += t.elapsed();
                    assert_eq!(r.tx_results.len(), n);
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, harness);
criterion_main!(benches);
