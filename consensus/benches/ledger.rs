//! Ledger throughput through the full ABCI path, state committed to disk (redb,
//! fsync) every block: FinalizeBlock + Commit for blocks of signed transfers,
//! Commit alone, and CheckTx with signature verification.
//!
//! `cargo bench -p vichain-consensus --bench ledger`

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use tendermint_proto::{google::protobuf::Timestamp, v0_38::abci};
use vichain_consensus::{App, Storage};
use vichain_tests_support::{funded_keys, init_chain_request, transfers};

const SENDERS: usize = 1000;

fn fresh(keys: &[SigningKey]) -> (tempfile::TempDir, App) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Storage::open(&dir.path().join("state.redb")).expect("store"));
    let mut app = App::new(store);
    app.init_chain(init_chain_request(keys, &[keys[0].clone()]))
        .expect("genesis");
    (dir, app)
}

fn block(txs: &[Bytes]) -> abci::RequestFinalizeBlock {
    abci::RequestFinalizeBlock {
        txs: txs.to_vec(),
        hash: vec![1; 32].into(),
        height: 1,
        time: Some(Timestamp {
            seconds: 1_700_000_001,
            nanos: 0,
        }),
        ..Default::default()
    }
}

/// With `VICHAIN_BENCH_METRICS=1`, the Prometheus recorder vichaind installs (same
/// histogram buckets) records every metric; without it each metrics call is a no-op.
fn install_recorder() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(install_recorder_once);
}

fn install_recorder_once() {
    if std::env::var("VICHAIN_BENCH_METRICS").as_deref() != Ok("1") {
        return;
    }
    let mut builder = metrics_exporter_prometheus::PrometheusBuilder::new();
    for m in vichain_consensus::metrics::METRICS {
        if !m.buckets.is_empty() {
            builder = builder
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(m.name.into()),
                    m.buckets,
                )
                .expect("buckets");
        }
    }
    builder.install_recorder().expect("recorder");
    vichain_consensus::metrics::describe();
}

fn ledger(c: &mut Criterion) {
    install_recorder();
    let keys = funded_keys(SENDERS);
    let mut g = c.benchmark_group("ledger");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    for n in [1_000usize, 10_000] {
        let txs = transfers(&keys, n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("finalize_commit/transfers/txs={n}"), |b| {
            b.iter_batched(
                || fresh(&keys),
                |(dir, mut app)| {
                    let r = app.finalize_block(&block(&txs)).expect("finalize");
                    assert!(r.tx_results.iter().all(|t| t.code == 0));
                    app.commit().expect("commit");
                    (dir, app)
                },
                BatchSize::PerIteration,
            )
        });
        g.bench_function(format!("commit/transfers/txs={n}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (_dir, mut app) = fresh(&keys);
                    app.finalize_block(&block(&txs)).expect("finalize");
                    let t = std::time::Instant::now();
                    app.commit().expect("commit");
                    total += t.elapsed();
                }
                total
            })
        });
        g.bench_function(format!("check_tx/transfers/txs={n}"), |b| {
            b.iter_batched(
                || fresh(&keys),
                |(dir, mut app)| {
                    for tx in &txs {
                        let r = app.check_tx(tx).expect("check");
                        assert_eq!(r.code, 0);
                    }
                    (dir, app)
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

/// What FinalizeBlock adds per transaction: one labelled counter increment (a no-op
/// without a recorder, a registry lookup and an atomic add with one).
fn metrics_cost(c: &mut Criterion) {
    install_recorder();
    let mut g = c.benchmark_group("metrics");
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("tx_counter/txs=10000", |b| {
        b.iter(|| {
            for _ in 0..10_000 {
                metrics::counter!(
                    vichain_consensus::metrics::CHAIN_TXS,
                    "kind" => "transfer",
                    "result" => "ok"
                )
                .increment(1);
            }
        })
    });
}

criterion_group!(benches, ledger, metrics_cost);
criterion_main!(benches);
