//! The shipped Grafana dashboard (`contrib/grafana/lambdaworker.json`) asks only for metrics the
//! worker exports, as `docs/metrics.md` lists them, and is a dashboard Grafana can import.

use std::collections::BTreeSet;

const DASHBOARD: &str = include_str!("../../../contrib/grafana/lambdaworker.json");
const DOCS: &str = include_str!("../../../docs/metrics.md");

/// The metric names of the docs' table, with their types.
fn documented() -> Vec<(String, String)> {
    DOCS.lines()
        .filter_map(|l| {
            let mut cells = l.strip_prefix("| `")?.split('|');
            let name = cells.next()?.trim().trim_end_matches('`').to_owned();
            let kind = cells.next()?.trim().to_owned();
            Some((name, kind))
        })
        .collect()
}

/// Every PromQL expression in the dashboard (panel targets and variable queries).
fn expressions(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    ("query", serde_json::Value::Object(q)) => {
                        if let Some(s) = q.get("query").and_then(|s| s.as_str()) {
                            out.push(s.to_owned());
                        }
                    }
                    _ => expressions(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| expressions(v, out)),
        _ => {}
    }
}

/// The metric names an expression uses (identifiers of our two prefixes).
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("lambdaworker_") || t.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_dashboard_uses_only_documented_metrics() {
    let docs = documented();
    assert!(docs.len() > 25, "the docs' table: {docs:?}");
    let known = |name: &str| {
        docs.iter().any(|(n, kind)| {
            n == name
                || (kind == "histogram"
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name.strip_suffix(s) == Some(n.as_str())))
        })
    };
    let dashboard: serde_json::Value =
        serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    expressions(&dashboard, &mut exprs);
    assert!(exprs.len() > 20, "{exprs:?}");
    let mut used = BTreeSet::new();
    for e in &exprs {
        let names = metric_names(e);
        assert!(!names.is_empty(), "an expression with no metric: {e}");
        for n in names {
            assert!(known(&n), "{n} (in {e}) is not in docs/metrics.md");
            used.insert(n);
        }
    }
    // Histograms are read through their buckets.
    assert!(used.contains("lambdaworker_call_duration_seconds_bucket"));
    assert!(used.contains("lambdaworker_phase_duration_seconds_bucket"));
}

#[test]
fn the_dashboard_is_importable() {
    let d: serde_json::Value = serde_json::from_str(DASHBOARD).expect("JSON");
    assert_eq!(d["uid"], "lambdaworker");
    assert!(d["schemaVersion"].as_u64().is_some());
    let panels = d["panels"].as_array().expect("panels");
    let ids: BTreeSet<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
    assert_eq!(ids.len(), panels.len(), "each panel has an id of its own");
    for p in panels {
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap_or(99), g["w"].as_u64().unwrap_or(99));
        assert!(x + w <= 24 && g["h"].as_u64().is_some(), "{p}");
        if p["type"] != "row" {
            assert!(!p["targets"].as_array().is_none_or(|t| t.is_empty()), "{p}");
        }
    }
    let vars = d["templating"]["list"].as_array().expect("variables");
    assert!(vars.iter().any(|v| v["name"] == "instance"));
}
