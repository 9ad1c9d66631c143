//! The operator's view of a running `vichaind dev`: Prometheus `/metrics`, the
//! dashboard's JSON API, and the dashboard page itself in headless Chromium driven
//! over WebDriver (Debian's `chromium` and `chromium-driver`).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use vichain_tests::{DevNode, Process, free_port};

use super::{VICHAIND, cli, json, wait_for_height};

/// The worker's HPKE public key its attestation binds (a valid X25519 point).
const ENCRYPTION_KEY: &str = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
const PEER_ID: &str = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";

/// A blocking HTTP client for the tests (reqwest on a private runtime).
pub struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Http {
    pub fn new() -> Self {
        Self {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }

    fn send(&self, req: reqwest::RequestBuilder) -> (u16, String) {
        self.rt.block_on(async {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    }

    pub fn get(&self, url: &str) -> (u16, String) {
        self.send(self.client.get(url))
    }

    pub fn get_json(&self, url: &str) -> (u16, Value) {
        let (status, body) = self.get(url);
        (
            status,
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}")),
        )
    }
}

/// `vichaind dev` with its metrics server on `metrics` and `workers` dev workers.
pub fn dev_with_metrics(home: &Path, grpc: u16, metrics: u16, workers: usize) -> Process {
    DevNode::new(home, grpc)
        .metrics(metrics)
        .workers(workers)
        .spawn(Path::new(VICHAIND))
}

/// The hash of block `height`, as the state keeps it (the nonce TEE evidence binds),
/// read with `vichain query block-hash` (Merkle proof checked).
fn recent_block_hash(grpc: u16, height: u64) -> String {
    let v = json(&cli(
        grpc,
        Path::new("/nonexistent-keyring"),
        &["query", "block-hash", &height.to_string(), "--json"],
    ));
    assert_eq!(v["proof_verified"], true, "{v}");
    v["block_hash"].as_str().unwrap().to_owned()
}

/// Registers a model `digits` (one shard, k = 1) and a worker serving it with a
/// (simulated) TEE attestation, and submits job 1, each through the `vichain` CLI,
/// waiting for inclusion.
fn register_worker_and_submit_job(dir: &Path, grpc: u16, keys: &Path) {
    let spec = dir.join("digits.json");
    std::fs::write(
        &spec,
        json!({
            "model_id": "digits",
            "family": "mlp",
            "total_layers": 2,
            "shards": [{"start_layer": 0, "end_layer": 2, "sha256": "11".repeat(32)}],
            "policy": {"k": 1, "quorum": 1},
            "price": 1,
        })
        .to_string(),
    )
    .unwrap();
    let tx = |args: &[&str]| {
        let v = json(&cli(grpc, keys, args));
        assert_eq!(v["code"], 0, "{v}");
        assert_eq!(v["included"], true, "{v}");
    };
    tx(&[
        "tx",
        "register-model",
        "--spec",
        spec.to_str().unwrap(),
        "--json",
    ]);
    tx(&[
        "tx",
        "register-worker",
        "--peer-id",
        PEER_ID,
        "--stake",
        "5000",
        "--serves",
        "digits:0",
        "--json",
    ]);
    // The dev attester's evidence, bound to the dev key and a recent block.
    let dev_key = json(&cli(grpc, keys, &["keys", "show", "dev", "--json"]));
    let height = wait_for_height(grpc, keys, 1)["height"].as_u64().unwrap();
    let evidence = dir.join("worker.vtee");
    let made = Command::new(VICHAIND)
        .args(["tee", "simulate", "--secret", &"09".repeat(32)])
        .args(["--measurement", &"bb".repeat(48), "--operator-key"])
        .arg(dev_key["public_key"].as_str().unwrap())
        .args(["--chain-id", "vichain-dev", "--nonce"])
        .arg(recent_block_hash(grpc, height))
        .args(["--encryption-key", ENCRYPTION_KEY])
        .arg("--out")
        .arg(&evidence)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    tx(&[
        "tx",
        "submit-attestation",
        "--evidence",
        evidence.to_str().unwrap(),
        "--nonce-height",
        &height.to_string(),
        "--encryption-key",
        ENCRYPTION_KEY,
        "--json",
    ]);
    tx(&[
        "tx",
        "submit-job",
        "--model",
        "digits",
        "--text",
        "seven",
        "--max-fee",
        "10",
        "--json",
    ]);
}

/// The value of a label-free sample, or of the sample with exactly `labels`.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let series = if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{labels}}}")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn metrics_and_the_json_api_follow_transactions_and_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("client");
    let (grpc, port) = (free_port(), free_port());
    let _node = dev_with_metrics(&dir.path().join("node"), grpc, port, 0);
    let base = format!("http://127.0.0.1:{port}");
    let http = Http::new();
    wait_for_height(grpc, &keys, 2);

    let (code, before) = http.get(&format!("{base}/metrics"));
    assert_eq!(code, 200);
    // Every label-free metric of the ledger and the node is described and present.
    let names = vichain_consensus::metrics::METRICS
        .iter()
        .chain(vichain_validator::metrics::METRICS)
        .filter(|m| m.labels.is_empty());
    for m in names {
        assert!(
            before.contains(&format!("# HELP {} ", m.name)),
            "{} missing:\n{before}",
            m.name
        );
    }
    assert!(before.contains("# TYPE vichain_chain_finalize_block_duration_seconds histogram"));
    assert!(before.contains("vichain_chain_finalize_block_duration_seconds_bucket{le=\"0.001\"}"));
    let blocks_before = sample(&before, "vichain_chain_blocks_total", "").unwrap();
    assert!(blocks_before >= 2.0, "{before}");
    assert_eq!(sample(&before, "vichain_workers_registered", ""), Some(0.0));

    register_worker_and_submit_job(dir.path(), grpc, &keys);
    // A rejection in CheckTx: more than the dev account holds.
    let broke = cli(
        grpc,
        &keys,
        &[
            "tx",
            "transfer",
            "--to",
            "vichain1y9zkcwapp5n33pv3z0j5dsul6eh42flhgqg5j7",
            "--amount",
            "1000000000000000000",
            "--json",
        ],
    );
    assert!(!broke.status.success());
    let broke: Value = serde_json::from_slice(&broke.stdout).unwrap();
    assert_eq!(broke["code"], 9, "insufficient funds: {broke}");
    let status = wait_for_height(grpc, &keys, 1);

    let (_, after) = http.get(&format!("{base}/metrics"));
    let txs = |kind: &str| {
        sample(
            &after,
            "vichain_chain_txs_total",
            &format!("kind=\"{kind}\",result=\"ok\""),
        )
    };
    assert_eq!(txs("register_model"), Some(1.0), "{after}");
    assert_eq!(txs("register_worker"), Some(1.0), "{after}");
    assert_eq!(txs("submit_job"), Some(1.0), "{after}");
    assert_eq!(
        sample(&after, "vichain_jobs_submitted_total", "model=\"digits\""),
        Some(1.0),
        "{after}"
    );
    assert!(
        sample(
            &after,
            "vichain_chain_checktx_rejections_total",
            "reason=\"insufficient_funds\""
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{after}"
    );
    assert!(
        sample(
            &after,
            "vichain_verification_attestations_total",
            "kind=\"simulated\",result=\"ok\""
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{after}"
    );
    assert_eq!(sample(&after, "vichain_workers_attested", ""), Some(1.0));
    assert!(sample(&after, "vichain_chain_blocks_total", "").unwrap() > blocks_before);
    assert!(sample(&after, "vichain_chain_height", "").unwrap() >= 3.0);
    assert_eq!(sample(&after, "vichain_workers_registered", ""), Some(1.0));
    assert_eq!(
        sample(
            &after,
            "vichain_workers_shard_holders",
            "model=\"digits\",shard=\"0\""
        ),
        Some(1.0),
        "{after}"
    );
    let info = after
        .lines()
        .find(|l| l.starts_with("vichain_chain_app_hash_info{"))
        .unwrap();
    assert_eq!(
        info.len(),
        "vichain_chain_app_hash_info{app_hash=\"\"} 1".len() + 64
    );

    // The JSON API.
    let (code, st) = http.get_json(&format!("{base}/api/status"));
    assert_eq!(code, 200);
    assert_eq!(st["chain_id"], "vichain-dev");
    assert_eq!(st["mode"], "dev");
    assert_eq!(st["workers"], 1);
    assert_eq!(st["models"], 1);
    assert!(st["height"].as_u64().unwrap() >= status["height"].as_u64().unwrap());
    assert_eq!(st["app_hash"].as_str().unwrap().len(), 64);

    let (_, workers) = http.get_json(&format!("{base}/api/workers"));
    let w = &workers["workers"][0];
    assert_eq!(w["peer_id"], PEER_ID, "{workers}");
    assert_eq!(w["stake"], 5000);
    assert_eq!(w["reputation"], 1_000_000, "in millionths, as on chain");
    assert_eq!(
        w["serves"],
        json!([{"model_id": "digits", "shard_index": 0}])
    );
    assert_eq!(w["attestation"]["kind"], "simulated", "{w}");
    assert_eq!(w["attestation"]["simulated"], true);
    assert_eq!(w["attestation"]["current"], true);
    assert_eq!(w["attestation"]["measurement"], "bb".repeat(48));

    let (_, jobs) = http.get_json(&format!("{base}/api/jobs?limit=10"));
    let j = &jobs["jobs"][0];
    assert_eq!(j["id"], 1, "{jobs}");
    assert_eq!(j["model_id"], "digits");
    assert_eq!(j["status"], "JOB_STATUS_ASSIGNED");
    assert!(
        j.get("input").is_none(),
        "lists carry the input's length only"
    );
    assert_eq!(j["input_bytes"], 5);
    assert_eq!(j["verification"]["proof_verified"], false);
    let (code, one) = http.get_json(&format!("{base}/api/jobs/1"));
    assert_eq!(code, 200);
    assert_eq!(one, *j);

    // Blocks this process committed, newest first, one of them with the job.
    let (_, blocks) = http.get_json(&format!("{base}/api/blocks?limit=512"));
    let blocks = blocks["blocks"].as_array().unwrap();
    assert!(blocks.len() >= 3);
    assert!(blocks[0]["height"].as_u64() > blocks[1]["height"].as_u64());
    let submitted: u64 = blocks
        .iter()
        .map(|b| b["jobs_submitted"].as_u64().unwrap())
        .sum();
    assert_eq!(submitted, 1);

    // Errors are JSON with the status; sizes and ids are bounded.
    let (code, missing) = http.get_json(&format!("{base}/api/jobs/999"));
    assert_eq!(code, 404);
    assert_eq!(missing["error"], "job 999 does not exist");
    for bad in [
        "/api/jobs/abc",
        "/api/jobs/0",
        "/api/jobs/123456789012345678901234",
        "/api/workers?limit=100000",
        "/api/jobs?limit=0",
    ] {
        let (code, e) = http.get_json(&format!("{base}{bad}"));
        assert_eq!(code, 400, "{bad}: {e}");
        assert!(e["error"].is_string(), "{bad}: {e}");
    }
    let (code, e) = http.get_json(&format!("{base}/api/nothing"));
    assert_eq!((code, e["status"].as_u64()), (404, Some(404)));

    // The page and its assets come from the binary.
    let (code, page) = http.get(&format!("{base}/"));
    assert_eq!(code, 200);
    assert!(page.contains("id=\"height\"") && page.contains("/assets/dashboard.js"));
    assert!(!page.contains("http://") && !page.contains("https://"));
    let (code, js) = http.get(&format!("{base}/assets/dashboard.js"));
    assert_eq!(code, 200);
    assert!(js.contains("/api/status"));
}

/// A browser session driven through chromedriver (W3C WebDriver) by fantoccini, with
/// the blocking calls this test wants.
struct WebDriver {
    rt: tokio::runtime::Runtime,
    client: Option<fantoccini::Client>,
}

impl WebDriver {
    fn start(base: &str, chromium: &Path) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1100"],
            },
        });
        let caps = caps.as_object().unwrap().clone();
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = rt
            .block_on(
                fantoccini::ClientBuilder::new(connector)
                    .capabilities(caps)
                    .connect(base),
            )
            .unwrap_or_else(|e| panic!("new WebDriver session at {base}: {e}"));
        Self {
            rt,
            client: Some(client),
        }
    }

    fn client(&self) -> &fantoccini::Client {
        self.client.as_ref().unwrap()
    }

    fn goto(&self, url: &str) {
        self.rt
            .block_on(self.client().goto(url))
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// Runs `script` (a function body) in the page and returns its value.
    fn eval(&self, script: &str) -> Value {
        self.rt
            .block_on(self.client().execute(script, Vec::new()))
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// Polls `script` until it returns something other than null/false.
    fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.eval(script);
            if !v.is_null() && v != Value::Bool(false) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; page error: {}",
                self.eval("return document.getElementById('error').textContent")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn screenshot(&self, path: &Path) {
        let png = self.rt.block_on(self.client().screenshot()).unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for WebDriver {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = self.rt.block_on(c.close());
        }
    }
}

fn find_binary(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p));
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

/// The dashboard in a real browser: it shows the height advancing, the registered
/// worker and the submitted job, and a job's detail view; screenshots are saved to
/// `artifacts/dashboard.png` and `artifacts/dashboard-job.png`. Fails when Chromium is missing, unless
/// `VICHAIN_SKIP_BROWSER=1`.
#[test]
fn the_dashboard_shows_the_chain_workers_and_jobs_in_chromium() {
    if std::env::var("VICHAIN_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("VICHAIN_SKIP_BROWSER=1: skipping the browser test");
        return;
    }
    let chromium = find_binary("CHROME_BIN", &["/usr/bin/chromium", "/usr/bin/chromium-browser"])
        .expect("chromium not found: apt-get install -y chromium chromium-driver (or set VICHAIN_SKIP_BROWSER=1)");
    let driver_bin = find_binary("CHROMEDRIVER", &["/usr/bin/chromedriver"])
        .expect("chromedriver not found: apt-get install -y chromium-driver (or set VICHAIN_SKIP_BROWSER=1)");

    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("client");
    let (grpc, port, driver_port) = (free_port(), free_port(), free_port());
    let _node = dev_with_metrics(&dir.path().join("node"), grpc, port, 3);
    wait_for_height(grpc, &keys, 1);
    super::jobs::wait_for_workers(grpc, &keys, "digits", 3);
    // Job 1: the dev workers prove, commit and reveal; the ledger finalizes it.
    let job = json(&cli(
        grpc,
        &keys,
        &[
            "submit", "--model", "digits", "--digit", "2", "--wait", "--json",
        ],
    ));
    assert_eq!(job["status"], "JOB_STATUS_FINALIZED", "{job:#}");
    let workers = json(&cli(grpc, &keys, &["workers", "--json"]));
    let peer_id = workers["workers"][0]["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let _driver = Process(
        Command::new(driver_bin)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = Http::new();
    let driver_base = format!("http://127.0.0.1:{driver_port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let url = format!("{driver_base}/status");
        let ready = http
            .rt
            .block_on(async { http.client.get(url).send().await })
            .ok()
            .map(|r| r.status().is_success());
        if ready == Some(true) {
            break;
        }
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let browser = WebDriver::start(&driver_base, &chromium);
    let page = format!("http://127.0.0.1:{port}/");
    browser.goto(&page);

    // The displayed height advances without a reload.
    let height = |b: &WebDriver| {
        b.eval("const t = document.getElementById('height').textContent; return /^[0-9]+$/.test(t) ? Number(t) : null;")
            .as_u64()
    };
    let first = browser
        .wait_for("a height", "const t = document.getElementById('height').textContent; return /^[0-9]+$/.test(t) ? Number(t) : null;")
        .as_u64()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while height(&browser).unwrap_or(0) <= first {
        assert!(Instant::now() < deadline, "the height stayed at {first}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        browser.eval("return document.getElementById('chain-id').textContent"),
        "vichain-dev"
    );

    // The worker table: the three dev workers.
    let row = browser.wait_for(
        "the worker row",
        &format!(
            "const r = document.querySelector('#workers tbody tr[data-peer-id=\"{peer_id}\"]'); \
             return r ? r.innerText : null;"
        ),
    );
    let row = row.as_str().unwrap();
    assert!(row.contains("digits:0"), "{row}");
    assert!(row.contains("10000"), "{row}");
    // Last seen: the height of its reveal for job 1, at least.
    let last_seen = browser.eval(&format!(
        "return Number(document.querySelector('#workers tbody tr[data-peer-id=\"{peer_id}\"] td.last-seen').textContent)"
    ));
    assert!(last_seen.as_u64().unwrap() > 1, "{last_seen}");
    assert_eq!(
        browser.eval("return document.querySelectorAll('#workers tbody tr').length"),
        3
    );

    // The jobs table: job 1, finalized, with the workers who agreed and their proofs.
    let agreed = browser.wait_for(
        "the finalized job row",
        "const r = document.querySelector('#jobs tbody tr[data-job-id=\"1\"][data-status=\"finalized\"]'); \
         return r ? r.querySelector('td.agreed').textContent : null;",
    );
    let agreed = agreed.as_str().unwrap();
    assert!(
        agreed.ends_with("/3 unanimous") || agreed.ends_with("/3 majority"),
        "{agreed}"
    );
    assert_eq!(
        browser.eval(
            "return document.querySelector('#jobs tbody tr[data-job-id=\"1\"] td.proof').textContent"
        ),
        "verified"
    );
    assert_eq!(
        browser.eval(
            "return document.querySelector('#jobs tbody tr[data-job-id=\"1\"] td:nth-child(2)').textContent"
        ),
        "digits"
    );
    // Charts have drawn the blocks.
    browser.wait_for(
        "the blocks chart",
        "return Number(document.getElementById('blocks-chart').getAttribute('data-points')) > 1",
    );

    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../artifacts/dashboard.png");
    browser.screenshot(&shot);

    // The job link opens its detail view, read from /api/jobs/1.
    browser.eval(
        "document.querySelector('#jobs tbody tr[data-job-id=\"1\"] a').click(); return null;",
    );
    let model = browser.wait_for(
        "the job detail",
        "const d = document.querySelector('#job-fields dd[data-field=\"model_id\"]'); \
         return d && !document.getElementById('job-detail').hidden ? d.textContent : null;",
    );
    assert_eq!(model, "digits");
    assert_eq!(
        browser.eval("return document.getElementById('job-fields').getAttribute('data-status')"),
        "finalized"
    );
    assert!(browser.eval("return document.getElementById('overview').hidden") == true);
    browser.screenshot(&shot.with_file_name("dashboard-job.png"));
    // An unknown job shows the API's error.
    browser.goto(&format!("{page}#/jobs/999"));
    let err = browser.wait_for(
        "the unknown-job error",
        "const d = document.querySelector('#job-fields dd[data-field=\"error\"]'); return d ? d.textContent : null;",
    );
    assert_eq!(err, "job 999 does not exist");
}

/// `--log-format json`: one JSON object per line, with the spans around block
/// execution; `RUST_LOG` chooses what is logged.
#[test]
fn json_logs_carry_the_block_execution_spans() {
    use std::io::Read as _;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("client");
    let grpc = free_port();
    let mut node = Process(
        Command::new(VICHAIND)
            .args([
                "--log-format",
                "json",
                "dev",
                "--workers",
                "0",
                "--block-time",
                "200ms",
            ])
            .arg("--grpc")
            .arg(format!("127.0.0.1:{grpc}"))
            .args(["--metrics-addr", "127.0.0.1:0", "--home"])
            .arg(dir.path().join("node"))
            .env("RUST_LOG", "info,vichain_consensus=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_height(grpc, &keys, 2);
    assert!(node.terminate().success());
    let mut logs = String::new();
    node.0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["fields"].is_object())
    );
    let finalize = lines
        .iter()
        .find(|l| l["fields"]["message"] == "FinalizeBlock")
        .unwrap_or_else(|| panic!("no FinalizeBlock debug line:\n{logs}"));
    assert_eq!(finalize["span"]["name"], "finalize_block", "{finalize}");
    let spans: Vec<&str> = finalize["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(spans, ["block", "finalize_block"]);
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "Commit" && l["span"]["name"] == "commit")
    );
}
