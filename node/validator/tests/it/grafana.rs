//! The Grafana dashboard in `config/grafana/vichain.json` queries only metrics the
//! node exports, shows every one of them, and takes its datasource from a variable.

use std::collections::BTreeSet;

use serde_json::Value;
use vichain_consensus::metrics::MetricKind;

fn dashboard() -> Value {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/grafana/vichain.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Every `vichain_*` identifier in a PromQL expression.
fn names_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("vichain_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

#[test]
fn the_grafana_dashboard_uses_exactly_the_exported_metrics() {
    let d = dashboard();
    let exported = vichain_validator::metrics::all_metrics();
    let mut used = BTreeSet::new();
    let mut ids = BTreeSet::new();
    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() > 10);
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "panel id twice");
        let grid = &p["gridPos"];
        assert!(grid["w"].as_u64().unwrap() <= 24 && grid["h"].as_u64().unwrap() > 0);
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], "${datasource}");
            let expr = t["expr"].as_str().unwrap();
            for name in names_in(expr) {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|b| {
                        exported
                            .iter()
                            .any(|(n, k)| n == b && *k == MetricKind::Histogram)
                    })
                    .unwrap_or(&name)
                    .to_owned();
                assert!(
                    exported.iter().any(|(n, _)| *n == base),
                    "panel {:?} queries {name}, which the node does not export",
                    p["title"]
                );
                used.insert(base);
            }
        }
    }
    let vars = d["templating"]["list"].as_array().unwrap();
    assert!(vars.iter().any(|v| v["type"] == "datasource"
        && v["query"] == "prometheus"
        && v["name"] == "datasource"));
    for v in vars {
        if let Some(q) = v["definition"].as_str() {
            used.extend(names_in(q));
        }
    }
    let missing: Vec<_> = exported
        .iter()
        .filter(|(n, _)| !used.contains(*n))
        .map(|(n, _)| *n)
        .collect();
    assert!(missing.is_empty(), "no panel shows {missing:?}");
}
