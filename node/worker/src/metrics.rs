//! The worker network's counters, exported through the node's Prometheus recorder
//! (names and help in [`vichain_validator::metrics::SPLIT_METRICS`]).

use std::{collections::BTreeMap, sync::Arc};

use vichain_validator::{metrics::SPLIT_METRICS, web::ScrapeHook};

/// Exports a reading of the split network's counters (they are cumulative, so the
/// Prometheus counters take their absolute values).
pub fn record_split(s: &vichain_split::MetricsSnapshot) {
    let fields: BTreeMap<&str, u64> = [
        ("requests_sent", s.requests_sent),
        ("request_failures", s.request_failures),
        ("bytes_sent", s.bytes_sent),
        ("bytes_received", s.bytes_received),
        ("requests_served", s.requests_served),
        ("requests_refused", s.requests_refused),
        ("inbound_failures", s.inbound_failures),
        ("stage_calls", s.stage_calls),
        ("stage_latency_micros", s.stage_latency_micros),
        ("failovers", s.failovers),
        ("announcements_received", s.announcements_received),
        ("connections_denied", s.connections_denied),
    ]
    .into_iter()
    .collect();
    for (name, field, _) in SPLIT_METRICS {
        metrics::counter!(*name).absolute(fields.get(field).copied().unwrap_or(0));
    }
}

/// A scrape hook that exports `split`'s counters at every scrape of `/metrics`.
pub fn split_scrape_hook(split: Arc<vichain_split::Metrics>) -> ScrapeHook {
    Arc::new(move || record_split(&split.snapshot()))
}

#[cfg(test)]
mod tests {
    use vichain_validator::{metrics::inference_forward, tasks::TaskManager, web::spawn_exporter};

    use super::*;

    #[tokio::test]
    async fn a_worker_exports_the_split_counters_and_what_it_recorded() {
        let mut tasks = TaskManager::new();
        let split = Arc::new(vichain_split::Metrics::default());
        let addr = spawn_exporter(
            &mut tasks,
            "127.0.0.1:0".parse().unwrap(),
            Some(split_scrape_hook(split)),
        )
        .await
        .unwrap();
        inference_forward("minilm", 1, std::time::Duration::from_millis(12));
        let text = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for (name, _, _) in SPLIT_METRICS {
            assert!(text.contains(&format!("{name} 0\n")), "{name}:\n{text}");
        }
        assert!(
            text.contains(
                "vichain_inference_forward_duration_seconds_bucket{model=\"minilm\",shard=\"1\",le=\"0.025\"} 1"
            ),
            "{text}"
        );
    }
}
