//! Plain counters of the worker network, cheap to update and to read, for the node to export.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared by a node, its worker and its clients.
#[derive(Debug, Default)]
pub struct Metrics {
    requests_sent: AtomicU64,
    request_failures: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    requests_served: AtomicU64,
    requests_refused: AtomicU64,
    inbound_failures: AtomicU64,
    stage_calls: AtomicU64,
    stage_latency_micros: AtomicU64,
    failovers: AtomicU64,
    announcements_received: AtomicU64,
    connections_denied: AtomicU64,
}

/// A reading of [`Metrics`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MetricsSnapshot {
    /// Requests this node sent.
    pub requests_sent: u64,
    /// Requests that failed in transport (dial, timeout, connection closed).
    pub request_failures: u64,
    /// Request and response payload bytes written by this node.
    pub bytes_sent: u64,
    /// Request and response payload bytes read by this node.
    pub bytes_received: u64,
    /// Requests this worker answered with a result.
    pub requests_served: u64,
    /// Requests this worker answered with an error.
    pub requests_refused: u64,
    /// Inbound requests that failed after being read (timeouts, closed connections). Frames
    /// refused while reading (oversize) are dropped by libp2p without an event.
    pub inbound_failures: u64,
    /// Forward calls a client made to stages.
    pub stage_calls: u64,
    /// Their total round-trip time, in microseconds.
    pub stage_latency_micros: u64,
    /// Stages a client replaced mid-job.
    pub failovers: u64,
    /// Valid announcements received from allowed peers.
    pub announcements_received: u64,
    /// Connections refused because the peer is not allowed.
    pub connections_denied: u64,
}

macro_rules! counters {
    ($($name:ident),*) => {
        impl Metrics {
            /// Reads every counter.
            pub fn snapshot(&self) -> MetricsSnapshot {
                MetricsSnapshot { $($name: self.$name.load(Ordering::Relaxed)),* }
            }
        }
    };
}

counters!(
    requests_sent,
    request_failures,
    bytes_sent,
    bytes_received,
    requests_served,
    requests_refused,
    inbound_failures,
    stage_calls,
    stage_latency_micros,
    failovers,
    announcements_received,
    connections_denied
);

impl Metrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sent(&self, bytes: usize) {
        Self::add(&self.bytes_sent, bytes as u64);
    }

    pub(crate) fn received(&self, bytes: usize) {
        Self::add(&self.bytes_received, bytes as u64);
    }

    pub(crate) fn request_sent(&self) {
        Self::add(&self.requests_sent, 1);
    }

    pub(crate) fn request_failed(&self) {
        Self::add(&self.request_failures, 1);
    }

    pub(crate) fn served(&self, ok: bool) {
        Self::add(
            if ok {
                &self.requests_served
            } else {
                &self.requests_refused
            },
            1,
        );
    }

    pub(crate) fn inbound_failed(&self) {
        Self::add(&self.inbound_failures, 1);
    }

    pub(crate) fn stage_call(&self, micros: u64) {
        Self::add(&self.stage_calls, 1);
        Self::add(&self.stage_latency_micros, micros);
    }

    pub(crate) fn failover(&self) {
        Self::add(&self.failovers, 1);
    }

    pub(crate) fn announcement(&self) {
        Self::add(&self.announcements_received, 1);
    }

    pub(crate) fn denied(&self) {
        Self::add(&self.connections_denied, 1);
    }
}
