//! The node's HTTP server on the metrics address (default 127.0.0.1:26660), for
//! `vichaind start` and `vichaind dev` alike:
//!
//! - `GET /metrics`: Prometheus text format ([`crate::metrics`]).
//! - `GET /`: the dashboard, one page whose HTML, JavaScript and CSS are compiled
//!   into the binary (no network at run time); it polls the JSON API below.
//! - `GET /api/...`: a small, read-only JSON API over the committed state
//!   ([`api`] documents every field).
//!
//! Everything is read from the committed [`Storage`] the way the gRPC server
//! reads it, on blocking threads; list sizes are bounded and ids validated.

mod api;

use std::{net::SocketAddr, sync::Arc};

use anyhow::{Context, Result};
use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use metrics_exporter_prometheus::PrometheusHandle;
use tracing::info;
use vichain_consensus::Storage;

pub use api::{JobId, Limit, MAX_BLOCKS, MAX_JOBS, MAX_WORKERS, block_json, job_json, worker_json};

use vichain_config::MetricsConfig;

use crate::{
    comet::CometView,
    dev::DevChain,
    tasks::{Shutdown, TaskManager},
};

const INDEX_HTML: &str = include_str!("assets/index.html");
const DASHBOARD_JS: &str = include_str!("assets/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("assets/dashboard.css");

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct WebState {
    pub store: Arc<Storage>,
    pub metrics: PrometheusHandle,
    /// The in-process chain of `vichaind dev` (mempool size); `None` under CometBFT.
    pub dev: Option<Arc<DevChain>>,
    /// CometBFT's view (validator set, peers, sync state) in `vichaind start`.
    pub comet: Option<CometView>,
    /// The blocks the node's ledger committed since it started.
    pub recent: Arc<vichain_consensus::metrics::RecentBlocks>,
}

/// The routes, for serving or for tests.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/dashboard.js", get(script))
        .route("/assets/dashboard.css", get(style))
        .route("/metrics", get(metrics))
        .route("/api/status", get(status))
        .route("/api/blocks", get(blocks))
        .route("/api/workers", get(workers))
        .route("/api/jobs", get(jobs))
        .route("/api/jobs/{id}", get(job))
        .route("/api/validators", get(validators))
        .fallback(not_found)
        .with_state(Arc::new(state))
}

/// Installs the metrics recorder and spawns the server (and the exporter's upkeep)
/// as critical tasks, unless `config` disables them. `mode` is `dev` or `cometbft`.
pub fn spawn(
    tasks: &mut TaskManager,
    config: &MetricsConfig,
    store: Arc<Storage>,
    recent: Arc<vichain_consensus::metrics::RecentBlocks>,
    dev: Option<Arc<DevChain>>,
    comet: Option<CometView>,
    chain_id: &str,
) -> Result<()> {
    if !config.enabled {
        info!("metrics and dashboard server disabled ([metrics] enabled = false)");
        return Ok(());
    }
    let handle = crate::metrics::install()?;
    crate::metrics::node_info(if dev.is_some() { "dev" } else { "cometbft" }, chain_id);
    if let Err(e) = crate::metrics::refresh_state(&store) {
        tracing::warn!("reading state gauges: {e:#}");
    }
    tasks.spawn_critical(
        "metrics-upkeep",
        crate::metrics::upkeep(handle.clone(), tasks.shutdown()),
    );
    let state = WebState {
        store,
        metrics: handle,
        dev,
        comet,
        recent,
    };
    tasks.spawn_critical("http", serve(config.listen, state, tasks.shutdown()));
    Ok(())
}

/// Serves [`router`] on `addr` until shutdown.
pub async fn serve(addr: SocketAddr, state: WebState, shutdown: Shutdown) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics and dashboard server on {addr}"))?;
    info!(%addr, "metrics on http://{addr}/metrics, dashboard on http://{addr}/");
    serve_on(listener, router(state), shutdown).await
}

async fn serve_on(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: Shutdown,
) -> Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await
        .context("metrics server")
}

/// What `/metrics` reads in a process without a ledger.
#[derive(Clone)]
struct ExporterState {
    metrics: PrometheusHandle,
    on_scrape: Option<ScrapeHook>,
}

/// Called before each `/metrics` render of an exporter, to record readings kept outside
/// the recorder (a worker's split-network counters).
pub type ScrapeHook = Arc<dyn Fn() + Send + Sync>;

impl std::fmt::Debug for ExporterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExporterState")
            .field("on_scrape", &self.on_scrape.is_some())
            .finish_non_exhaustive()
    }
}

/// `/metrics` alone, for a process without a ledger (`vichaind worker`): what it
/// recorded (inference, proving) plus what `on_scrape` records at each scrape.
pub fn exporter_router(metrics: PrometheusHandle, on_scrape: Option<ScrapeHook>) -> Router {
    Router::new()
        .route("/metrics", get(exporter_metrics))
        .fallback(not_found)
        .with_state(ExporterState { metrics, on_scrape })
}

/// Installs the recorder and serves [`exporter_router`] on `addr` as critical tasks.
pub async fn spawn_exporter(
    tasks: &mut TaskManager,
    addr: SocketAddr,
    on_scrape: Option<ScrapeHook>,
) -> Result<SocketAddr> {
    let handle = crate::metrics::install()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics server on {addr}"))?;
    let bound = listener.local_addr()?;
    info!(addr = %bound, "metrics on http://{bound}/metrics");
    tasks.spawn_critical(
        "metrics-upkeep",
        crate::metrics::upkeep(handle.clone(), tasks.shutdown()),
    );
    tasks.spawn_critical(
        "http",
        serve_on(
            listener,
            exporter_router(handle, on_scrape),
            tasks.shutdown(),
        ),
    );
    Ok(bound)
}

async fn exporter_metrics(State(s): State<ExporterState>) -> Response {
    if let Some(hook) = &s.on_scrape {
        hook();
    }
    counted(
        "/metrics",
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            s.metrics.render(),
        )
            .into_response(),
    )
}

type Shared = State<Arc<WebState>>;

fn counted(route: &'static str, response: Response) -> Response {
    metrics::counter!(
        crate::metrics::HTTP_REQUESTS,
        "route" => route,
        "status" => response.status().as_u16().to_string()
    )
    .increment(1);
    response
}

fn asset(route: &'static str, content_type: &'static str, body: &'static str) -> Response {
    counted(
        route,
        (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response(),
    )
}

async fn index() -> Response {
    asset("/", "text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> Response {
    asset("/assets", "text/javascript; charset=utf-8", DASHBOARD_JS)
}

async fn style() -> Response {
    asset("/assets", "text/css; charset=utf-8", DASHBOARD_CSS)
}

/// A JSON body with a status.
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        value.to_string(),
    )
        .into_response()
}

/// `{"error": message}` with a status.
pub(crate) fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    json(
        status,
        &serde_json::json!({"error": message.to_string(), "status": status.as_u16()}),
    )
}

/// Runs a state read on a blocking thread; an error is a 500 with its message.
async fn blocking(
    route: &'static str,
    f: impl FnOnce() -> std::result::Result<Response, api::ApiError> + Send + 'static,
) -> Response {
    let response = match tokio::task::spawn_blocking(f).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => e.into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    counted(route, response)
}

async fn metrics(State(s): Shared) -> Response {
    blocking("/metrics", move || {
        let text = crate::metrics::render(&s.metrics, &s.store);
        Ok((
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response())
    })
    .await
}

async fn status(State(s): Shared) -> Response {
    blocking("/api/status", move || {
        let v = api::status(&s.store, s.dev.as_deref())?;
        Ok(json(StatusCode::OK, &v))
    })
    .await
}

async fn validators(State(s): Shared) -> Response {
    counted(
        "/api/validators",
        json(StatusCode::OK, &api::validators(s.comet.as_ref())),
    )
}

// A rejected parameter is taken as a `Result` so that its 400 is counted under the
// route like any other response.
type Extracted<T> = std::result::Result<T, api::ApiError>;

async fn blocks(State(s): Shared, limit: Extracted<Limit<100, MAX_BLOCKS>>) -> Response {
    blocking("/api/blocks", move || {
        let Limit(limit) = limit?;
        Ok(json(StatusCode::OK, &api::blocks(&s.recent, limit)))
    })
    .await
}

async fn workers(State(s): Shared, limit: Extracted<Limit<200, MAX_WORKERS>>) -> Response {
    blocking("/api/workers", move || {
        let Limit(limit) = limit?;
        Ok(json(StatusCode::OK, &api::workers(&s.store, limit)?))
    })
    .await
}

async fn jobs(State(s): Shared, limit: Extracted<Limit<50, MAX_JOBS>>) -> Response {
    blocking("/api/jobs", move || {
        let Limit(limit) = limit?;
        Ok(json(StatusCode::OK, &api::jobs(&s.store, limit)?))
    })
    .await
}

async fn job(State(s): Shared, id: Extracted<JobId>) -> Response {
    blocking("/api/jobs/{id}", move || {
        let JobId(id) = id?;
        Ok(json(StatusCode::OK, &api::job(&s.store, id)?))
    })
    .await
}

async fn not_found() -> Response {
    counted("other", error(StatusCode::NOT_FOUND, "no such route"))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use serde_json::Value;

    use super::*;

    #[tokio::test]
    async fn bad_parameters_are_json_400s_that_name_them() {
        let dir = tempfile::tempdir().unwrap();
        let state = WebState {
            store: Arc::new(Storage::open(&dir.path().join("state.redb")).unwrap()),
            metrics: metrics_exporter_prometheus::PrometheusBuilder::new()
                .build_recorder()
                .handle(),
            dev: None,
            comet: None,
            recent: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_on(listener, router(state), Shutdown::default()));
        let get = |path: String| async move {
            let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
            let status = r.status().as_u16();
            let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
            (status, body)
        };

        for ok in [
            "/api/jobs",
            "/api/jobs?limit=7",
            "/api/jobs?x=1&limit=7&y",
            "/api/blocks?limit=512",
            "/api/workers?limit=1000",
        ] {
            let (status, body) = get(ok.into()).await;
            assert_eq!(status, 200, "{ok}: {body}");
        }
        let long = format!("/api/jobs?{}", "a".repeat(300));
        let bad = [
            (
                "/api/jobs?limit=0",
                "limit must be an integer from 1 to 200, got \"0\"",
            ),
            (
                "/api/jobs?limit=201",
                "limit must be an integer from 1 to 200, got \"201\"",
            ),
            (
                "/api/jobs?limit=-1",
                "limit must be an integer from 1 to 200, got \"-1\"",
            ),
            (
                "/api/jobs?x=1&limit=abc",
                "limit must be an integer from 1 to 200, got \"abc\"",
            ),
            (
                "/api/jobs?limit=",
                "limit must be an integer from 1 to 200, got \"\"",
            ),
            (
                "/api/blocks?limit=513",
                "limit must be an integer from 1 to 512, got \"513\"",
            ),
            (
                "/api/workers?limit=100000",
                "limit must be an integer from 1 to 1000, got \"100000\"",
            ),
            (&long, "query string longer than 256 bytes"),
            (
                "/api/jobs/abc",
                "job id must be a positive integer, got \"abc\"",
            ),
            (
                "/api/jobs/-1",
                "job id must be a positive integer, got \"-1\"",
            ),
            (
                "/api/jobs/1e3",
                "job id must be a positive integer, got \"1e3\"",
            ),
            (
                "/api/jobs/%201",
                "job id must be a positive integer, got \" 1\"",
            ),
            (
                "/api/jobs/123456789012345678901234",
                "job id must be a positive integer, got \"123456789012345678901234\"",
            ),
            ("/api/jobs/0", "job id 0 is out of range"),
            (
                "/api/jobs/99999999999999999999",
                "job id 99999999999999999999 is out of range",
            ),
        ];
        for (path, error) in bad {
            let (status, body) = get(path.to_string()).await;
            assert_eq!(status, 400, "{path}: {body}");
            assert_eq!(
                body,
                serde_json::json!({"error": error, "status": 400}),
                "{path}"
            );
        }
        // The first of two limits used to win; the query extractor refuses both.
        let (status, body) = get("/api/jobs?limit=1&limit=2".into()).await;
        assert_eq!(status, 400, "{body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains("duplicate field `limit`"), "{error}");
        let (status, body) = get("/api/jobs/42".into()).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"], "job 42 does not exist");
    }

    #[tokio::test]
    async fn an_exporter_records_its_scrape_hook_and_serves_only_metrics() {
        let mut tasks = TaskManager::new();
        let scrapes = Arc::new(AtomicU64::new(0));
        let seen = scrapes.clone();
        let hook: ScrapeHook = Arc::new(move || {
            let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
            metrics::counter!("vichain_split_failovers_total").absolute(n);
        });
        let addr = spawn_exporter(&mut tasks, "127.0.0.1:0".parse().unwrap(), Some(hook))
            .await
            .unwrap();
        crate::metrics::inference_tokens("smollm2", 40);
        let scrape = || async {
            reqwest::get(format!("http://{addr}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        };
        let first = scrape().await;
        assert!(
            first.contains("vichain_split_failovers_total 1\n"),
            "{first}"
        );
        assert!(
            first.contains("vichain_inference_tokens_total{model=\"smollm2\"} 40"),
            "{first}"
        );
        let second = scrape().await;
        assert!(
            second.contains("vichain_split_failovers_total 2\n"),
            "{second}"
        );
        assert_eq!(scrapes.load(Ordering::SeqCst), 2);
        let missing = reqwest::get(format!("http://{addr}/api/status"))
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
    }
}
