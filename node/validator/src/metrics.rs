//! The node's Prometheus exporter: installs the `metrics` recorder, describes every
//! metric (the ledger's, [`vichain_consensus::metrics::METRICS`], and the node's own,
//! [`METRICS`]), and renders `/metrics`, refreshing at each scrape the gauges that
//! are read from the committed state (workers, shard holders, reputation, app hash).
//!
//! Worker-side subsystems record through the helpers here ([`inference_forward`],
//! [`inference_tokens`], [`zk_proved`], [`record_split`]) so that names stay in one
//! table that the Grafana dashboard test checks against.

use std::{collections::BTreeMap, sync::OnceLock, time::Duration};

use anyhow::{Result, anyhow};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use prost::Message;
use vichain_consensus::{
    REPUTATION_ONE, StateReadExt, Storage, attestation_is_current,
    metrics::{self as ledger, MetricDef, MetricKind},
    state_key,
};
use vichain_proto::v1 as pb;

use MetricKind::{Counter, Gauge, Histogram};

pub const NODE_INFO: &str = "vichain_node_info";
pub const MEMPOOL_TXS: &str = "vichain_mempool_txs";
pub const MEMPOOL_BYTES: &str = "vichain_mempool_bytes";
pub const MODELS_REGISTERED: &str = "vichain_models_registered";
pub const WORKERS_REGISTERED: &str = "vichain_workers_registered";
pub const WORKERS_ATTESTED: &str = "vichain_workers_attested";
pub const WORKERS_REPUTATION: &str = "vichain_workers_reputation_ratio";
pub const WORKERS_STAKE: &str = "vichain_workers_stake";
pub const SHARD_HOLDERS: &str = "vichain_workers_shard_holders";
pub const HTTP_REQUESTS: &str = "vichain_http_requests_total";
pub const INFERENCE_FORWARD: &str = "vichain_inference_forward_duration_seconds";
pub const INFERENCE_TOKENS: &str = "vichain_inference_tokens_total";
pub const ZK_PROVE: &str = "vichain_zk_prove_duration_seconds";
pub const SPLIT_CONNECTED_PEERS: &str = "vichain_split_connected_peers";
pub const WORKER_ATTESTATION_EXPIRY: &str = "vichain_workers_attestation_expiry_seconds";
pub const COMET_PEERS: &str = "vichain_cometbft_peers";
pub const COMET_CATCHING_UP: &str = "vichain_cometbft_catching_up";
pub const VALIDATOR_MISSED: &str = "vichain_validator_missed_blocks";
pub const VALIDATORS: &str = "vichain_validators";

/// Bounds of inference and proving durations, seconds.
pub const COMPUTE_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

const fn def(
    name: &'static str,
    kind: MetricKind,
    labels: &'static [&'static str],
    help: &'static str,
    buckets: &'static [f64],
) -> MetricDef {
    MetricDef {
        name,
        kind,
        labels,
        help,
        buckets,
    }
}

/// The split worker network's counters (`vichain_split::MetricsSnapshot`), as
/// exported by `vichain_worker::metrics::record_split`: (metric, snapshot field, help).
pub const SPLIT_METRICS: &[(&str, &str, &str)] = &[
    (
        "vichain_split_requests_sent_total",
        "requests_sent",
        "Requests this node sent to other workers.",
    ),
    (
        "vichain_split_request_failures_total",
        "request_failures",
        "Requests that failed in transport (dial, timeout, connection closed).",
    ),
    (
        "vichain_split_sent_bytes_total",
        "bytes_sent",
        "Request and response payload bytes written (activations included).",
    ),
    (
        "vichain_split_received_bytes_total",
        "bytes_received",
        "Request and response payload bytes read (activations included).",
    ),
    (
        "vichain_split_requests_served_total",
        "requests_served",
        "Requests this worker answered with a result.",
    ),
    (
        "vichain_split_requests_refused_total",
        "requests_refused",
        "Requests this worker answered with an error.",
    ),
    (
        "vichain_split_inbound_failures_total",
        "inbound_failures",
        "Inbound requests that failed after being read.",
    ),
    (
        "vichain_split_stage_calls_total",
        "stage_calls",
        "Forward calls a client made to pipeline stages.",
    ),
    (
        "vichain_split_stage_latency_microseconds_total",
        "stage_latency_micros",
        "Total round-trip time of those stage calls, microseconds (the facade's counters are integers; divide by 1e6 and by stage calls for the mean in seconds).",
    ),
    (
        "vichain_split_failovers_total",
        "failovers",
        "Pipeline stages a client replaced mid-job.",
    ),
    (
        "vichain_split_announcements_received_total",
        "announcements_received",
        "Valid announcements received from allowed peers.",
    ),
    (
        "vichain_split_connections_denied_total",
        "connections_denied",
        "Connections refused because the peer is not allowed.",
    ),
];

/// Every metric the node adds to the ledger's.
pub const METRICS: &[MetricDef] = &[
    def(
        NODE_INFO,
        Gauge,
        &["version", "mode", "chain_id"],
        "The node's version, mode (dev, cometbft) and chain id; the value is always 1.",
        &[],
    ),
    def(
        MEMPOOL_TXS,
        Gauge,
        &[],
        "Transactions waiting in the dev mempool.",
        &[],
    ),
    def(
        MEMPOOL_BYTES,
        Gauge,
        &[],
        "Bytes of the transactions waiting in the dev mempool.",
        &[],
    ),
    def(
        MODELS_REGISTERED,
        Gauge,
        &[],
        "Models in the registry (committed state).",
        &[],
    ),
    def(
        WORKERS_REGISTERED,
        Gauge,
        &[],
        "Registered workers (committed state).",
        &[],
    ),
    def(
        WORKERS_ATTESTED,
        Gauge,
        &[],
        "Registered workers whose TEE attestation is current at the last block.",
        &[],
    ),
    def(
        WORKERS_REPUTATION,
        Gauge,
        &["stat"],
        "Reputation of registered workers (1.0 = neutral): min, median, mean and max.",
        &[],
    ),
    def(
        WORKERS_STAKE,
        Gauge,
        &[],
        "Total stake bonded by registered workers.",
        &[],
    ),
    def(
        SHARD_HOLDERS,
        Gauge,
        &["model", "shard"],
        "Registered workers serving each shard of each model.",
        &[],
    ),
    def(
        HTTP_REQUESTS,
        Counter,
        &["route", "status"],
        "Requests to the node's metrics, dashboard and JSON API server.",
        &[],
    ),
    def(
        INFERENCE_FORWARD,
        Histogram,
        &["model", "shard"],
        "Time of one forward pass of a shard on this worker, seconds.",
        COMPUTE_BUCKETS,
    ),
    def(
        INFERENCE_TOKENS,
        Counter,
        &["model"],
        "Tokens generated on this worker (rate: tokens per second).",
        &[],
    ),
    def(
        ZK_PROVE,
        Histogram,
        &[],
        "Groth16 proving time of one inference proof, seconds.",
        COMPUTE_BUCKETS,
    ),
    def(
        SPLIT_CONNECTED_PEERS,
        Gauge,
        &[],
        "Peers of the worker network this worker is connected to.",
        &[],
    ),
    def(
        WORKER_ATTESTATION_EXPIRY,
        Gauge,
        &["worker"],
        "Unix seconds at which each registered worker's TEE attestation expires.",
        &[],
    ),
    def(
        COMET_PEERS,
        Gauge,
        &[],
        "Peers of this validator's CometBFT (vichaind start; polled from its RPC).",
        &[],
    ),
    def(
        COMET_CATCHING_UP,
        Gauge,
        &[],
        "1 while this validator's CometBFT is catching up (block sync or state sync).",
        &[],
    ),
    def(
        VALIDATORS,
        Gauge,
        &[],
        "Validators in CometBFT's current set.",
        &[],
    ),
    def(
        VALIDATOR_MISSED,
        Gauge,
        &["validator"],
        "Blocks among the last 100 whose commit lacks this validator's signature.",
        &[],
    ),
];

/// Exports what the CometBFT poller saw (`vichaind start`).
pub fn comet_view(s: &crate::comet::CometSnapshot) {
    gauge!(COMET_PEERS).set(s.peers.len() as f64);
    if let Some(st) = &s.status {
        gauge!(COMET_CATCHING_UP).set(if st.catching_up { 1.0 } else { 0.0 });
    }
    gauge!(VALIDATORS).set(s.validators.len() as f64);
    for v in &s.validators {
        gauge!(VALIDATOR_MISSED, "validator" => v.address.clone()).set(v.missed_blocks as f64);
    }
}

/// Sets the connected-peers gauge of a worker.
pub fn split_connected_peers(n: usize) {
    metrics::gauge!(SPLIT_CONNECTED_PEERS).set(n as f64);
}

/// Every metric name this node can export, with its kind: ledger, node and split.
pub fn all_metrics() -> Vec<(&'static str, MetricKind)> {
    ledger::METRICS
        .iter()
        .chain(METRICS)
        .map(|m| (m.name, m.kind))
        .chain(SPLIT_METRICS.iter().map(|(n, _, _)| (*n, Counter)))
        .collect()
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return the same
/// handle) and describes every metric.
pub fn install() -> Result<PrometheusHandle> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let mut builder = PrometheusBuilder::new();
    for m in ledger::METRICS.iter().chain(METRICS) {
        if m.kind == Histogram {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(m.name.into()), m.buckets)
                .map_err(|e| anyhow!("buckets of {}: {e}", m.name))?;
        }
    }
    let handle = builder
        .install_recorder()
        .map_err(|e| anyhow!("installing the metrics recorder: {e}"))?;
    let handle = HANDLE.get_or_init(|| handle).clone();
    ledger::describe();
    for m in METRICS {
        match m.kind {
            Counter => describe_counter!(m.name, m.help),
            Gauge => describe_gauge!(m.name, m.help),
            Histogram => describe_histogram!(m.name, m.help),
        }
    }
    for (name, _, help) in SPLIT_METRICS {
        describe_counter!(*name, *help);
    }
    // Label-free series exist from the start, so a scrape lists them at once.
    for m in METRICS.iter().filter(|m| m.labels.is_empty()) {
        match m.kind {
            Counter => counter!(m.name).absolute(0),
            Gauge => gauge!(m.name).increment(0.0),
            Histogram => drop(histogram!(m.name)),
        }
    }
    Ok(handle)
}

/// Records the node's identity as an info metric.
pub fn node_info(mode: &'static str, chain_id: &str) {
    gauge!(NODE_INFO, "version" => crate::VERSION, "mode" => mode, "chain_id" => chain_id.to_owned())
        .set(1.0);
}

/// Keeps histogram memory bounded between scrapes (the exporter buffers samples
/// until it renders or runs upkeep).
pub async fn upkeep(handle: PrometheusHandle, shutdown: crate::tasks::Shutdown) -> Result<()> {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.wait() => return Ok(()),
            _ = tick.tick() => handle.run_upkeep(),
        }
    }
}

/// The dev mempool's size.
pub fn mempool(txs: usize, bytes: u64) {
    gauge!(MEMPOOL_TXS).set(txs as f64);
    gauge!(MEMPOOL_BYTES).set(bytes as f64);
}

/// One forward pass of `shard` of `model` on this worker.
pub fn inference_forward(model: &str, shard: u32, elapsed: Duration) {
    histogram!(INFERENCE_FORWARD, "model" => model.to_owned(), "shard" => shard.to_string())
        .record(elapsed.as_secs_f64());
}

/// Tokens generated by `model` on this worker.
pub fn inference_tokens(model: &str, tokens: u64) {
    counter!(INFERENCE_TOKENS, "model" => model.to_owned()).increment(tokens);
}

/// One Groth16 inference proof made on this node.
pub fn zk_proved(elapsed: Duration) {
    histogram!(ZK_PROVE).record(elapsed.as_secs_f64());
}

/// Gauges read from the committed state, refreshed before each render.
pub fn refresh_state(store: &Storage) -> Result<()> {
    let models = store.prefix(state_key::MODELS.as_bytes(), crate::grpc::MAX_LIST)?;
    gauge!(MODELS_REGISTERED).set(models.len() as f64);
    let height = store.get_u64(state_key::HEIGHT)?.unwrap_or(0);
    let time_ns = store.get_u64(state_key::BLOCK_TIME)?.unwrap_or(0) as i64;
    let mut holders: BTreeMap<(String, u32), u64> = BTreeMap::new();
    for (_, v) in &models {
        let m = pb::Model::decode(v.as_slice())?;
        for i in 0..m.shards.len() as u32 {
            holders.insert((m.model_id.clone(), i), 0);
        }
    }
    let workers = store.prefix(state_key::WORKERS.as_bytes(), crate::grpc::MAX_LIST)?;
    let mut reputations = Vec::with_capacity(workers.len());
    let (mut attested, mut stake) = (0u64, 0u64);
    for (_, v) in &workers {
        let w = pb::Worker::decode(v.as_slice())?;
        reputations.push(w.reputation);
        stake = stake.saturating_add(w.stake);
        if w.attestation
            .as_ref()
            .is_some_and(|a| attestation_is_current(a, height, time_ns))
        {
            attested += 1;
        }
        if let Some(a) = &w.attestation {
            let worker = vichain_consensus::Address::from_bytes(&w.operator)
                .map_or_else(|_| hex::encode(&w.operator), |a| a.to_string());
            gauge!(WORKER_ATTESTATION_EXPIRY, "worker" => worker).set(a.valid_until as f64);
        }
        for s in &w.serves {
            if let Some(n) = holders.get_mut(&(s.model_id.clone(), s.shard_index)) {
                *n += 1;
            }
        }
    }
    gauge!(WORKERS_REGISTERED).set(workers.len() as f64);
    gauge!(WORKERS_ATTESTED).set(attested as f64);
    gauge!(WORKERS_STAKE).set(stake as f64);
    reputations.sort_unstable();
    let one = REPUTATION_ONE as f64;
    if let (Some(min), Some(max)) = (reputations.first(), reputations.last()) {
        let mean = reputations.iter().map(|r| *r as f64).sum::<f64>() / reputations.len() as f64;
        gauge!(WORKERS_REPUTATION, "stat" => "min").set(*min as f64 / one);
        gauge!(WORKERS_REPUTATION, "stat" => "median")
            .set(reputations[reputations.len() / 2] as f64 / one);
        gauge!(WORKERS_REPUTATION, "stat" => "mean").set(mean / one);
        gauge!(WORKERS_REPUTATION, "stat" => "max").set(*max as f64 / one);
    }
    for ((model, shard), n) in holders {
        gauge!(SHARD_HOLDERS, "model" => model, "shard" => shard.to_string()).set(n as f64);
    }
    if let Some(c) = store.committed()? {
        gauge!(ledger::CHAIN_HEIGHT).set(c.height as f64);
    }
    Ok(())
}

/// The Prometheus text of every metric, plus the app hash info line (rendered
/// here from the committed state: one series whose label is the current hash).
pub fn render(handle: &PrometheusHandle, store: &Storage) -> String {
    if let Err(e) = refresh_state(store) {
        tracing::warn!("refreshing state gauges: {e:#}");
    }
    let mut text = handle.render();
    if let Ok(Some(c)) = store.committed() {
        let help = ledger::METRICS
            .iter()
            .find(|m| m.name == ledger::CHAIN_APP_HASH_INFO)
            .map_or("", |m| m.help);
        text.push_str(&format!(
            "# HELP {0} {help}\n# TYPE {0} gauge\n{0}{{app_hash=\"{1}\"}} 1\n",
            ledger::CHAIN_APP_HASH_INFO,
            hex::encode(c.app_hash)
        ));
    }
    text
}
