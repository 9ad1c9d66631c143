//! Operators' metrics of the ledger, recorded through the `metrics` facade (the
//! node installs a Prometheus recorder; without one every call here is a no-op).
//!
//! Transactions execute in CheckTx, PrepareProposal and ProcessProposal as well as
//! in FinalizeBlock, so a counter bumped inside execution would count one job up to
//! four times. Chain and job metrics are therefore derived from what FinalizeBlock
//! returns, once per block: its tx results (kind, code) and the events of the block
//! and of its transactions. A subsystem that wants a job metric emits the event
//! documented next to it below ([`JOB_EVENTS`]); the [`job_submitted`],
//! [`job_finalized`] (...) functions are what the events are turned into, and may be
//! called directly only from code that runs in FinalizeBlock alone.
//!
//! Verification metrics ([`proof_verification`], [`attestation_verified`]) count
//! verification work wherever it happens (a proof checked in CheckTx and again at
//! FinalizeBlock is two verifications): they measure cost and failure rates, not
//! distinct proofs.
//!
//! Nothing here feeds back into state: timings use the monotonic clock and stay
//! out of the app hash.

use std::{
    collections::VecDeque,
    sync::Mutex,
    time::{Duration, Instant},
};

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use tendermint_proto::v0_38::abci;

use crate::{SignedTx, TxError, tx::action_kind};

/// What kind of Prometheus metric a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// One exported metric: its name, kind, labels, help text and (for histograms)
/// bucket bounds.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: MetricKind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
    pub buckets: &'static [f64],
}

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

/// Bounds of duration histograms of block execution and verification, seconds.
pub const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Bounds of the block interval histogram, seconds.
pub const INTERVAL_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Bounds of the transactions-per-block histogram.
pub const BLOCK_TXS_BUCKETS: &[f64] = &[
    0.0, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];
/// Bounds of the submit-to-final job latency histogram, seconds.
pub const JOB_LATENCY_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

pub const CHAIN_HEIGHT: &str = "vichain_chain_height";
pub const CHAIN_BLOCKS: &str = "vichain_chain_blocks_total";
pub const CHAIN_LAST_BLOCK_TIME: &str = "vichain_chain_last_block_timestamp_seconds";
pub const CHAIN_BLOCK_INTERVAL: &str = "vichain_chain_block_interval_seconds";
pub const CHAIN_BLOCK_TXS: &str = "vichain_chain_block_txs";
pub const CHAIN_TXS: &str = "vichain_chain_txs_total";
pub const CHAIN_CHECKTX_REJECTIONS: &str = "vichain_chain_checktx_rejections_total";
pub const CHAIN_FINALIZE_DURATION: &str = "vichain_chain_finalize_block_duration_seconds";
pub const CHAIN_COMMIT_DURATION: &str = "vichain_chain_commit_duration_seconds";
/// Rendered by the node from the committed state (one series, the hash as its
/// only label), not through the recorder: a label per block would grow without end.
pub const CHAIN_APP_HASH_INFO: &str = "vichain_chain_app_hash_info";

pub const JOBS_SUBMITTED: &str = "vichain_jobs_submitted_total";
pub const JOBS_ASSIGNED: &str = "vichain_jobs_assigned_total";
pub const JOBS_FINALIZED: &str = "vichain_jobs_finalized_total";
pub const JOBS_FAILED: &str = "vichain_jobs_failed_total";
pub const JOBS_ESCALATED: &str = "vichain_jobs_escalated_total";
pub const JOBS_LATENCY: &str = "vichain_jobs_latency_seconds";
pub const JOBS_AGREEMENT: &str = "vichain_jobs_agreement_total";
pub const WORKERS_SLASHED: &str = "vichain_workers_slashed_total";
pub const WORKERS_PENALIZED: &str = "vichain_workers_penalized_total";

pub const VERIFY_PROOF_DURATION: &str = "vichain_verification_proof_duration_seconds";
pub const VERIFY_PROOFS: &str = "vichain_verification_proofs_total";
pub const VERIFY_ATTESTATION_DURATION: &str = "vichain_verification_attestation_duration_seconds";
pub const VERIFY_ATTESTATIONS: &str = "vichain_verification_attestations_total";

pub const STATESYNC_SNAPSHOTS: &str = "vichain_statesync_snapshots_total";
pub const STATESYNC_SNAPSHOT_HEIGHT: &str = "vichain_statesync_snapshot_height";
pub const STATESYNC_CHUNKS_REJECTED: &str = "vichain_statesync_chunks_rejected_total";

use MetricKind::{Counter, Gauge, Histogram};

/// Every metric the ledger exports.
pub const METRICS: &[MetricDef] = &[
    def(
        CHAIN_HEIGHT,
        Gauge,
        &[],
        "Height of the last committed block.",
        &[],
    ),
    def(
        CHAIN_BLOCKS,
        Counter,
        &[],
        "Blocks committed by this process.",
        &[],
    ),
    def(
        CHAIN_LAST_BLOCK_TIME,
        Gauge,
        &[],
        "Block time of the last committed block, unix seconds.",
        &[],
    ),
    def(
        CHAIN_BLOCK_INTERVAL,
        Histogram,
        &[],
        "Block time difference between consecutive blocks, seconds.",
        INTERVAL_BUCKETS,
    ),
    def(
        CHAIN_BLOCK_TXS,
        Histogram,
        &[],
        "Transactions per finalized block.",
        BLOCK_TXS_BUCKETS,
    ),
    def(
        CHAIN_TXS,
        Counter,
        &["kind", "result"],
        "Transactions in finalized blocks by kind (transfer, submit_job, ...; invalid when undecodable) and result (ok or the rejection code's name).",
        &[],
    ),
    def(
        CHAIN_CHECKTX_REJECTIONS,
        Counter,
        &["reason"],
        "Transactions refused by CheckTx (or by the dev mempool) by reason, the rejection code's name.",
        &[],
    ),
    def(
        CHAIN_FINALIZE_DURATION,
        Histogram,
        &[],
        "Time to execute FinalizeBlock, seconds.",
        DURATION_BUCKETS,
    ),
    def(
        CHAIN_COMMIT_DURATION,
        Histogram,
        &[],
        "Time to persist a block at Commit, seconds.",
        DURATION_BUCKETS,
    ),
    def(
        CHAIN_APP_HASH_INFO,
        Gauge,
        &["app_hash"],
        "App hash (hex) of the last committed block; the value is always 1.",
        &[],
    ),
    def(
        JOBS_SUBMITTED,
        Counter,
        &["model"],
        "Jobs accepted on chain, by model.",
        &[],
    ),
    def(
        JOBS_ASSIGNED,
        Counter,
        &["model"],
        "Jobs assigned to workers, by model.",
        &[],
    ),
    def(
        JOBS_FINALIZED,
        Counter,
        &["model", "outcome"],
        "Jobs finalized with an agreed output, by model and agreement (unanimous, majority).",
        &[],
    ),
    def(
        JOBS_FAILED,
        Counter,
        &["model", "reason"],
        "Jobs that failed (refunded), by model and reason.",
        &[],
    ),
    def(
        JOBS_ESCALATED,
        Counter,
        &["model"],
        "Jobs escalated to more workers for lack of a quorum, by model.",
        &[],
    ),
    def(
        JOBS_LATENCY,
        Histogram,
        &["model"],
        "Block time from a job's submission to its finalization, seconds.",
        JOB_LATENCY_BUCKETS,
    ),
    def(
        JOBS_AGREEMENT,
        Counter,
        &["outcome"],
        "Output consensus outcomes: unanimous, majority or no_quorum.",
        &[],
    ),
    def(
        WORKERS_SLASHED,
        Counter,
        &[],
        "Workers slashed for a proven-wrong result.",
        &[],
    ),
    def(
        WORKERS_PENALIZED,
        Counter,
        &[],
        "Reputation penalties of dissenting or absent workers.",
        &[],
    ),
    def(
        VERIFY_PROOF_DURATION,
        Histogram,
        &["mode"],
        "Groth16 verification time, seconds: one proof (single) or one batch (batch).",
        DURATION_BUCKETS,
    ),
    def(
        VERIFY_PROOFS,
        Counter,
        &["mode", "result"],
        "Groth16 proofs verified, by mode (single, batch) and result (ok, invalid); every verification counts, in CheckTx as in blocks.",
        &[],
    ),
    def(
        VERIFY_ATTESTATION_DURATION,
        Histogram,
        &["kind"],
        "TEE evidence verification time, seconds, by kind.",
        DURATION_BUCKETS,
    ),
    def(
        VERIFY_ATTESTATIONS,
        Counter,
        &["kind", "result"],
        "TEE evidence verifications by kind (sev-snp, tdx, sgx, simulated) and result (ok, invalid).",
        &[],
    ),
    def(
        STATESYNC_SNAPSHOTS,
        Counter,
        &["result"],
        "State-sync snapshots this node took, by result (ok, failed; a snapshot skipped while the previous one is still being written counts as failed).",
        &[],
    ),
    def(
        STATESYNC_SNAPSHOT_HEIGHT,
        Gauge,
        &[],
        "Height of the newest state-sync snapshot this node wrote (0: none yet).",
        &[],
    ),
    def(
        STATESYNC_CHUNKS_REJECTED,
        Counter,
        &[],
        "Snapshot chunks received while restoring by state sync that did not match their hash (refetched from another peer).",
        &[],
    ),
];

/// Block-level and transaction events turned into job metrics, and the
/// attributes read from each. Unknown attribute values are counted as `other`.
pub const JOB_EVENTS: &[(&str, &str)] = &[
    ("job_submitted", "model_id"),
    ("job_assigned", "model_id"),
    (
        "job_finalized",
        "model_id, outcome (unanimous|majority), submitted_time_ns (block time of the submission)",
    ),
    ("job_failed", "model_id, reason (no_quorum|timeout|...)"),
    ("job_escalated", "model_id"),
    ("worker_slashed", "-"),
    ("worker_penalized", "-"),
];

/// Registers the help text of every ledger metric with the installed recorder.
pub fn describe() {
    for m in METRICS {
        match m.kind {
            Counter => describe_counter!(m.name, m.help),
            Gauge => describe_gauge!(m.name, m.help),
            Histogram => describe_histogram!(m.name, m.help),
        }
    }
    // Label-free series exist from the start, so a scrape before the first block
    // already lists them.
    for m in METRICS.iter().filter(|m| m.labels.is_empty()) {
        match m.kind {
            Counter => counter!(m.name).absolute(0),
            Gauge => gauge!(m.name).increment(0.0),
            Histogram => drop(histogram!(m.name)),
        }
    }
}

/// The name of a rejection code, as the `reason`/`result` label.
pub fn code_name(code: u32) -> &'static str {
    match code {
        0 => "ok",
        2 => "malformed",
        3 => "too_large",
        4 => "unknown_kind",
        5 => "bad_signature",
        6 => "wrong_chain_id",
        7 => "nonce_replayed",
        8 => "nonce_gap",
        9 => "insufficient_funds",
        10 => "fee_too_low",
        11 => "unknown_model",
        12 => "oversize_input",
        13 => "unauthorized",
        14 => "invalid_field",
        15 => "already_exists",
        16 => "unknown_validator",
        17 => "unknown_account",
        18 => "overflow",
        19 => "unknown_job",
        20 => "proof_invalid",
        21 => "oversize_proof",
        22 => "unknown_worker",
        23 => "not_serving",
        24 => "no_verifying_key",
        25 => "attestation_invalid",
        26 => "oversize_evidence",
        100 => "mempool_full",
        101 => "duplicate",
        _ => "other",
    }
}

/// The `kind` label of each decoded transaction of a block.
pub(crate) fn tx_kinds(decoded: &[Result<SignedTx, TxError>]) -> Vec<&'static str> {
    decoded
        .iter()
        .map(|d| d.as_ref().map_or("invalid", |tx| action_kind(&tx.action)))
        .collect()
}

/// A transaction refused before reaching a block (CheckTx, or the dev mempool).
pub fn check_tx_rejected(code: u32) {
    counter!(CHAIN_CHECKTX_REJECTIONS, "reason" => code_name(code)).increment(1);
}

/// Records a finalized block: its transactions, duration, interval and the job
/// events it carries; returns its summary, which the App keeps until Commit.
pub(crate) fn block_finalized(
    height: u64,
    time_ns: i64,
    prev_time_ns: Option<u64>,
    kinds: &[&'static str],
    response: &abci::ResponseFinalizeBlock,
    started: Instant,
) -> BlockRecord {
    let elapsed = started.elapsed();
    histogram!(CHAIN_FINALIZE_DURATION).record(elapsed.as_secs_f64());
    histogram!(CHAIN_BLOCK_TXS).record(response.tx_results.len() as f64);
    if let Some(prev) = prev_time_ns.filter(|p| *p > 0 && time_ns as u64 > *p) {
        // The filter keeps `time_ns` above `prev`: the difference never saturates.
        let interval = (time_ns as u64).saturating_sub(prev);
        histogram!(CHAIN_BLOCK_INTERVAL).record(interval as f64 / 1e9);
    }
    // Metrics only, counting a block's transactions: saturating (never reached) is
    // better than a panic in the node's accounting.
    let mut failed = 0u64;
    for (kind, r) in kinds.iter().zip(&response.tx_results) {
        if r.code != 0 {
            failed = failed.saturating_add(1);
        }
        counter!(CHAIN_TXS, "kind" => *kind, "result" => code_name(r.code)).increment(1);
    }
    let mut jobs = JobCounts::default();
    let events = response
        .tx_results
        .iter()
        .filter(|r| r.code == 0)
        .flat_map(|r| &r.events)
        .chain(&response.events);
    for e in events {
        job_event(e, time_ns, &mut jobs);
    }
    BlockRecord {
        height,
        time_ns,
        txs: response.tx_results.len() as u64,
        failed_txs: failed,
        app_hash: response.app_hash.to_vec().try_into().unwrap_or([0; 32]),
        finalize_seconds: elapsed.as_secs_f64(),
        jobs_submitted: jobs.submitted,
        jobs_finalized: jobs.finalized,
        jobs_failed: jobs.failed,
        job_latency_seconds_sum: jobs.latency_sum,
    }
}

/// Records a committed block (with its summary, when it was finalized by this App).
pub(crate) fn block_committed(height: u64, started: Instant, record: Option<&BlockRecord>) {
    histogram!(CHAIN_COMMIT_DURATION).record(started.elapsed().as_secs_f64());
    gauge!(CHAIN_HEIGHT).set(height as f64);
    counter!(CHAIN_BLOCKS).increment(1);
    if let Some(record) = record {
        gauge!(CHAIN_LAST_BLOCK_TIME).set(record.time_ns as f64 / 1e9);
    }
}

#[derive(Debug, Default)]
struct JobCounts {
    submitted: u64,
    finalized: u64,
    failed: u64,
    latency_sum: f64,
}

fn attr<'a>(e: &'a abci::Event, key: &str) -> Option<&'a str> {
    e.attributes
        .iter()
        .find(|a| a.key == key)
        .map(|a| a.value.as_str())
}

/// Counts a block's job events for the dashboard; the counts saturate (a block holds
/// far fewer events than u64::MAX) rather than panic in metrics.
fn job_event(e: &abci::Event, time_ns: i64, jobs: &mut JobCounts) {
    let model = attr(e, "model_id").unwrap_or("");
    match e.r#type.as_str() {
        "job_submitted" => {
            jobs.submitted = jobs.submitted.saturating_add(1);
            job_submitted(model);
        }
        "job_assigned" => job_assigned(model),
        "job_finalized" => {
            let outcome = match attr(e, "outcome") {
                Some("unanimous") => Agreement::Unanimous,
                _ => Agreement::Majority,
            };
            let latency = attr(e, "submitted_time_ns")
                .and_then(|s| s.parse::<i64>().ok())
                .filter(|s| *s > 0 && *s <= time_ns)
                // 0 < s <= time_ns (the filter): the difference never saturates.
                .map(|s| Duration::from_nanos(time_ns.saturating_sub(s) as u64));
            jobs.finalized = jobs.finalized.saturating_add(1);
            if let Some(l) = latency {
                jobs.latency_sum += l.as_secs_f64();
            }
            job_finalized(model, outcome, latency);
        }
        "job_failed" => {
            jobs.failed = jobs.failed.saturating_add(1);
            job_failed(model, attr(e, "reason").unwrap_or("other"));
        }
        "job_escalated" => job_escalated(model),
        "worker_slashed" => worker_slashed(),
        "worker_penalized" => worker_penalized(),
        _ => {}
    }
}

/// How output consensus settled a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agreement {
    /// Every revealed output agreed.
    Unanimous,
    /// The largest group reached the quorum, with dissent.
    Majority,
    /// No group reached the quorum (the job fails or is escalated).
    NoQuorum,
}

impl Agreement {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unanimous => "unanimous",
            Self::Majority => "majority",
            Self::NoQuorum => "no_quorum",
        }
    }
}

/// Model ids are bounded by the registry, but a label must not be arbitrary text.
fn model_label(model: &str) -> String {
    if model.is_empty() || model.len() > 64 {
        "other".into()
    } else {
        model.to_owned()
    }
}

pub fn job_submitted(model: &str) {
    counter!(JOBS_SUBMITTED, "model" => model_label(model)).increment(1);
}

pub fn job_assigned(model: &str) {
    counter!(JOBS_ASSIGNED, "model" => model_label(model)).increment(1);
}

/// A job finalized with an agreed output; `latency` is block time from submission.
pub fn job_finalized(model: &str, outcome: Agreement, latency: Option<Duration>) {
    let model = model_label(model);
    counter!(JOBS_FINALIZED, "model" => model.clone(), "outcome" => outcome.as_str()).increment(1);
    counter!(JOBS_AGREEMENT, "outcome" => outcome.as_str()).increment(1);
    if let Some(l) = latency {
        histogram!(JOBS_LATENCY, "model" => model).record(l.as_secs_f64());
    }
}

/// A job failed; `reason` "no_quorum" also counts as an agreement outcome.
pub fn job_failed(model: &str, reason: &str) {
    let reason = match reason {
        "no_quorum" | "timeout" | "no_workers" | "invalid" => reason.to_owned(),
        _ => "other".to_owned(),
    };
    if reason == "no_quorum" {
        counter!(JOBS_AGREEMENT, "outcome" => Agreement::NoQuorum.as_str()).increment(1);
    }
    counter!(JOBS_FAILED, "model" => model_label(model), "reason" => reason).increment(1);
}

/// A job escalated to more workers for lack of a quorum.
pub fn job_escalated(model: &str) {
    counter!(JOBS_AGREEMENT, "outcome" => Agreement::NoQuorum.as_str()).increment(1);
    counter!(JOBS_ESCALATED, "model" => model_label(model)).increment(1);
}

pub fn worker_slashed() {
    counter!(WORKERS_SLASHED).increment(1);
}

pub fn worker_penalized() {
    counter!(WORKERS_PENALIZED).increment(1);
}

/// Runs one proof verification and records its duration and result.
pub(crate) fn proof_verification<T, E>(f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    let started = Instant::now();
    let r = f();
    histogram!(VERIFY_PROOF_DURATION, "mode" => "single").record(started.elapsed().as_secs_f64());
    let result = if r.is_ok() { "ok" } else { "invalid" };
    counter!(VERIFY_PROOFS, "mode" => "single", "result" => result).increment(1);
    r
}

/// Runs one batch verification and records its duration and per-proof results.
pub(crate) fn proof_batch<E>(f: impl FnOnce() -> Vec<Result<(), E>>) -> Vec<Result<(), E>> {
    let started = Instant::now();
    let results = f();
    histogram!(VERIFY_PROOF_DURATION, "mode" => "batch").record(started.elapsed().as_secs_f64());
    let ok = results.iter().filter(|r| r.is_ok()).count() as u64;
    counter!(VERIFY_PROOFS, "mode" => "batch", "result" => "ok").increment(ok);
    counter!(VERIFY_PROOFS, "mode" => "batch", "result" => "invalid")
        // `ok` counts some of the results: never saturates.
        .increment((results.len() as u64).saturating_sub(ok));
    results
}

/// Runs one TEE evidence verification of `kind` and records its duration and result.
pub(crate) fn attestation_verification<T, E>(
    kind: &'static str,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    let started = Instant::now();
    let r = f();
    histogram!(VERIFY_ATTESTATION_DURATION, "kind" => kind).record(started.elapsed().as_secs_f64());
    let result = if r.is_ok() { "ok" } else { "invalid" };
    counter!(VERIFY_ATTESTATIONS, "kind" => kind, "result" => result).increment(1);
    r
}

/// A snapshot written at `height`, or (`None`) one that failed or was skipped.
pub(crate) fn snapshot_written(height: Option<u64>) {
    match height {
        Some(h) => {
            counter!(STATESYNC_SNAPSHOTS, "result" => "ok").increment(1);
            gauge!(STATESYNC_SNAPSHOT_HEIGHT).set(h as f64);
        }
        None => counter!(STATESYNC_SNAPSHOTS, "result" => "failed").increment(1),
    }
}

/// A snapshot chunk that did not match its hash while restoring.
pub(crate) fn snapshot_chunk_rejected() {
    counter!(STATESYNC_CHUNKS_REJECTED).increment(1);
}

/// A committed block as the dashboard shows it (kept in memory, not in state).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BlockRecord {
    pub height: u64,
    /// Block time, unix nanoseconds.
    pub time_ns: i64,
    pub txs: u64,
    /// Transactions that were included but rejected at execution.
    pub failed_txs: u64,
    #[serde(serialize_with = "hex_bytes")]
    pub app_hash: [u8; 32],
    pub finalize_seconds: f64,
    pub jobs_submitted: u64,
    pub jobs_finalized: u64,
    pub jobs_failed: u64,
    /// Sum of the submit-to-final latencies of the jobs finalized in this block.
    pub job_latency_seconds_sum: f64,
}

fn hex_bytes<S: serde::Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(b))
}

/// How many committed blocks [`RecentBlocks`] remembers.
pub const RECENT_CAPACITY: usize = 512;

/// The summaries of the last blocks one [`crate::App`] committed, for the node's
/// dashboard (kept in memory, not in state). Each App has its own: several Apps in
/// one process (the test harness runs four) keep theirs apart.
#[derive(Debug, Default)]
pub struct RecentBlocks {
    pending: Mutex<Option<BlockRecord>>,
    committed: Mutex<VecDeque<BlockRecord>>,
}

impl RecentBlocks {
    /// Keeps the summary of a finalized block until it is committed.
    pub(crate) fn finalized(&self, record: BlockRecord) {
        *lock(&self.pending) = Some(record);
    }

    /// Moves the pending summary of block `height` to the committed ones, and
    /// returns it.
    pub(crate) fn committed(&self, height: u64) -> Option<BlockRecord> {
        let record = lock(&self.pending).take().filter(|r| r.height == height)?;
        let mut recent = lock(&self.committed);
        if recent.len() >= RECENT_CAPACITY {
            recent.pop_front();
        }
        recent.push_back(record.clone());
        Some(record)
    }

    /// The last `limit` committed blocks, newest first.
    pub fn latest(&self, limit: usize) -> Vec<BlockRecord> {
        lock(&self.committed)
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The data stays valid whatever a panicking holder was doing.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rejection_code_has_a_distinct_name() {
        let mut names = std::collections::BTreeSet::new();
        for code in (2..=26).chain([100, 101]) {
            let name = code_name(code);
            assert_ne!(name, "other", "code {code}");
            assert!(names.insert(name), "{name} twice");
        }
        assert_eq!(code_name(9999), "other");
        // The codes are those of TxError.
        assert_eq!(
            code_name(TxError::UnknownJob { job_id: 1 }.code()),
            "unknown_job"
        );
        assert_eq!(
            code_name(TxError::OversizeEvidence { size: 1, max: 0 }.code()),
            "oversize_evidence"
        );
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        let mut seen = std::collections::BTreeSet::new();
        for m in METRICS {
            assert!(seen.insert(m.name), "{} twice", m.name);
            assert!(m.name.starts_with("vichain_"), "{}", m.name);
            assert!(
                m.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                m.name
            );
            assert_eq!(
                m.kind == Counter,
                m.name.ends_with("_total"),
                "{}: counters, and only counters, end in _total",
                m.name
            );
            assert_eq!(
                m.kind == Histogram,
                !m.buckets.is_empty(),
                "{}: histograms have buckets",
                m.name
            );
            assert!(m.buckets.windows(2).all(|w| w[0] < w[1]), "{}", m.name);
        }
    }

    fn event(kind: &str, attrs: &[(&str, &str)]) -> abci::Event {
        abci::Event {
            r#type: kind.into(),
            attributes: attrs
                .iter()
                .map(|(k, v)| abci::EventAttribute {
                    key: (*k).into(),
                    value: (*v).into(),
                    index: true,
                })
                .collect(),
        }
    }

    #[test]
    fn job_events_are_counted_with_their_latency() {
        let mut jobs = JobCounts::default();
        let t = 10_000_000_000;
        job_event(&event("job_submitted", &[("model_id", "m")]), t, &mut jobs);
        job_event(
            &event(
                "job_finalized",
                &[
                    ("model_id", "m"),
                    ("outcome", "unanimous"),
                    ("submitted_time_ns", "7500000000"),
                ],
            ),
            t,
            &mut jobs,
        );
        // A submission time after the block's is ignored, not a negative latency.
        job_event(
            &event(
                "job_finalized",
                &[("model_id", "m"), ("submitted_time_ns", "20000000000")],
            ),
            t,
            &mut jobs,
        );
        job_event(
            &event("job_failed", &[("model_id", "m"), ("reason", "no_quorum")]),
            t,
            &mut jobs,
        );
        job_event(&event("transfer", &[]), t, &mut jobs);
        assert_eq!(jobs.submitted, 1);
        assert_eq!(jobs.finalized, 2);
        assert_eq!(jobs.failed, 1);
        assert!(
            (jobs.latency_sum - 2.5).abs() < 1e-9,
            "{}",
            jobs.latency_sum
        );
    }
}
