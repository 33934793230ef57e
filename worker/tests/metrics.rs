//! `GET /metrics` through a real worker (root only): after cold, warm, failing and unknown
//! calls, the scrape counts each by function, path kind and status, and cold and warm starts;
//! it has latency histograms per phase and per function; names beyond `metrics_max_functions`
//! share `other`; `promtool check metrics` accepts the text; and a real Prometheus (Debian's,
//! installed by tests/tools/setup.sh) scrapes the worker and answers `lambdaworker_calls_total`
//! through its HTTP API.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{can_run, request, TestCluster};

/// A sample's key with its labels sorted: `name{a="1",b="2"}` (label values here hold no
/// commas).
fn canonical(key: &str) -> String {
    let Some((name, labels)) = key.split_once('{') else {
        return key.to_owned();
    };
    let mut labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
    labels.sort_unstable();
    format!("{name}{{{}}}", labels.join(","))
}

/// The samples of a scrape: canonical `name{labels}` to value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((canonical(key), value.parse().ok()?))
        })
        .collect()
}

fn sample(all: &HashMap<String, f64>, key: &str) -> f64 {
    *all.get(&canonical(key))
        .unwrap_or_else(|| panic!("no sample {key} in the scrape: {:#?}", all.keys()))
}

/// What Prometheus sends.
const OPENMETRICS: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";

/// A scrape in OpenMetrics, as Prometheus asks for it: its text and samples.
async fn scrape(addr: SocketAddr) -> (String, HashMap<String, f64>) {
    let a = request(addr, "GET", "/metrics", &[("Accept", OPENMETRICS)], b"").await;
    assert_eq!(a.status, 200, "{}", a.text());
    let kind = a.header("content-type").unwrap_or_default();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    let text = a.text();
    assert!(text.ends_with("# EOF\n"), "{text}");
    let all = samples(&text);
    (text, all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_scrape_counts_calls_and_prometheus_reads_it() {
    if !can_run("the_scrape_counts_calls_and_prometheus_reads_it") {
        return;
    }
    let c = TestCluster::start(r#"{"metrics_max_functions": 2}"#).await;
    c.add_handler("hello", "def handler(event):\n    return 'hi'\n");
    c.add_handler(
        "boom",
        "def handler(event):\n    raise ValueError('on purpose')\n",
    );
    c.add_handler("third", "def handler(event):\n    return 3\n");
    for _ in 0..2 {
        let (status, body) = c.call("hello", "{}").await;
        assert_eq!((status, body), (200, serde_json::json!("hi")));
    }
    let (boom_status, _) = c.call("boom", "{}").await;
    assert_ne!(boom_status, 200);
    // Beyond the bound of two functions: `third` and a name that does not exist share `other`.
    assert_eq!(c.call("third", "{}").await.0, 200);
    let (missing, _) = c.post("/runLambda/nosuch", "{}").await;
    assert_eq!(missing, 404);

    let (text, all) = scrape(c.addr).await;
    let calls = |f: &str, s: u16| {
        format!(r#"lambdaworker_calls_total{{function="{f}",kind="sync",status="{s}"}}"#)
    };
    assert_eq!(sample(&all, &calls("hello", 200)), 2.0, "{text}");
    assert_eq!(sample(&all, &calls("boom", boom_status)), 1.0, "{text}");
    assert_eq!(sample(&all, &calls("other", 200)), 1.0, "{text}");
    assert_eq!(sample(&all, &calls("other", 404)), 1.0, "{text}");
    assert!(
        !text.contains("nosuch") && !text.contains(r#"function="third""#),
        "{text}"
    );
    let starts =
        |f: &str, s: &str| format!(r#"lambdaworker_starts_total{{function="{f}",start="{s}"}}"#);
    assert_eq!(sample(&all, &starts("hello", "cold")), 1.0, "{text}");
    assert_eq!(sample(&all, &starts("hello", "warm")), 1.0, "{text}");
    // Histograms: each call's latency is in the per-function one, the phases have theirs.
    let count = sample(
        &all,
        r#"lambdaworker_call_duration_seconds_count{function="hello",start="warm"}"#,
    );
    assert_eq!(count, 1.0);
    let inf = sample(
        &all,
        r#"lambdaworker_call_duration_seconds_bucket{function="hello",start="cold",le="+Inf"}"#,
    );
    assert_eq!(inf, 1.0);
    assert!(
        sample(
            &all,
            r#"lambdaworker_phase_duration_seconds_count{phase="request"}"#
        ) >= 5.0,
        "{text}"
    );
    assert!(
        sample(&all, r#"lambdaworker_sandboxes{state="idle"}"#) >= 1.0,
        "{text}"
    );
    assert!(sample(&all, "lambdaworker_memory_budget_bytes") > 0.0);
    assert!(sample(&all, "process_resident_memory_bytes") > 0.0);
    assert!(sample(&all, "process_open_fds") > 0.0);
    // HEAD answers the head alone.
    let head = request(c.addr, "HEAD", "/metrics", &[], b"").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());

    // Without OpenMetrics in Accept: the text format 0.0.4, the same samples.
    let plain = request(c.addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(
        plain.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let plain = plain.text();
    assert!(
        plain.contains("# TYPE lambdaworker_calls_total counter\n"),
        "{plain}"
    );
    assert!(!plain.contains("# EOF"), "{plain}");
    assert_eq!(
        sample(&samples(&plain), &calls("hello", 200)),
        2.0,
        "{plain}"
    );
    promtool_accepts(&plain);
    every_family_is_documented(&plain);
    prometheus_scrapes(&c).await;
}

/// `promtool check metrics` (Prometheus's own linter of the text format) finds no problem.
fn promtool_accepts(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (tests/tools/setup.sh installs Debian's prometheus)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
}

/// A real Prometheus server scrapes the worker every second; its query API then answers
/// `lambdaworker_calls_total` for `hello` with the count the worker holds.
async fn prometheus_scrapes(c: &TestCluster) {
    let dir = c.tmp.path().join("prometheus");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: lambdaworker\n    static_configs:\n      - targets: ['{}']\n",
        c.addr
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = common::process::free_port();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let mut server = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("prometheus (tests/tools/setup.sh installs Debian's package)");
    let api: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let query = "/api/v1/query?query=lambdaworker_calls_total%7Bfunction%3D%22hello%22%7D";
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    let found = loop {
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some((200, body)) = common::process::try_get(api, query).await else {
            continue;
        };
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        last = body;
        if let Some(first) = answer["data"]["result"].as_array().and_then(|r| r.first()) {
            break Some(first.clone());
        }
    };
    let _ = server.kill();
    let _ = server.wait();
    let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
    let found = found.unwrap_or_else(|| panic!("prometheus found no calls: {last}\n{log}"));
    assert_eq!(found["metric"]["kind"], "sync", "{found}");
    assert_eq!(found["metric"]["status"], "200", "{found}");
    assert_eq!(found["metric"]["job"], "lambdaworker", "{found}");
    assert_eq!(found["value"][1], "2", "{found}");
}

/// Each family of the scrape has its row, with its type, in docs/metrics.md.
fn every_family_is_documented(text: &str) {
    let docs = include_str!("../../docs/metrics.md");
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .collect();
    assert!(families.len() > 25, "{text}");
    for family in families {
        let (name, kind) = family.split_once(' ').expect("a type line");
        let row = format!("| `{name}` | {kind} |");
        assert!(docs.contains(&row), "docs/metrics.md has no row {row}");
    }
}
