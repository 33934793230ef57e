//! The invoke scenario: the AWS Invoke API beside `/runLambda`, and the asynchronous queue.
//!
//! - warm calls: the hello function called one after the other through
//!   `POST /runLambda/hello` and `POST /2015-03-31/functions/hello/invocations`
//!   (RequestResponse), and the same answer from HTTP functions at `/run/<name>/greet` (a
//!   handler answering API Gateway's event, and a PEP 3333 app), each on its own keep-alive
//!   connection, one call of each in turn so that the machine's noise falls on all;
//! - asynchronous events: `events` events queued through `POST /runLambda/<name>?async=1` from
//!   8 connections (the 202 answers' latency: each waits for its durable commit), then the
//!   time from each event's acknowledgement to its completion (from its record's `created`
//!   and `finished`) and the events drained per second, from the first submission to the last
//!   completion.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

use crate::cluster::BenchCluster;
use crate::http::BlockingConn;
use crate::scenarios::{worker_patch, Plan};
use crate::stats::{Samples, Summary};
use crate::system::{check_answer, EVENT};

/// Connections queueing events at once.
const SENDERS: usize = 8;
/// How long the queue may take to drain before the row fails.
const DRAIN_LIMIT: Duration = Duration::from_secs(600);

/// One row of the invoke table.
#[derive(Debug, Clone, Serialize)]
pub struct InvokeRow {
    /// `warm call`, `queue (202)`, `202 to done`.
    pub measure: String,
    /// `/runLambda`, `Invoke API`, `/run handler`, `/run WSGI`, `?async=1`.
    pub through: String,
    pub summary: Option<Summary>,
    /// p50 over the `/runLambda` row's p50 (warm calls).
    pub x_run_lambda: Option<f64>,
    pub samples_ms: Vec<f64>,
}

/// What the invoke scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct Invoke {
    pub rows: Vec<InvokeRow>,
    /// Warm calls per block before switching to the other path.
    pub block: usize,
    /// Events queued.
    pub events: usize,
    /// Events per second, from the first submission to the last completion.
    pub drained_per_s: f64,
    /// Events per second acknowledged (202) while queueing.
    pub queued_per_s: f64,
}

fn row(measure: &str, through: &str, samples: &Samples, base: Option<f64>) -> InvokeRow {
    let summary = samples.summary();
    InvokeRow {
        measure: measure.to_owned(),
        through: through.to_owned(),
        summary,
        x_run_lambda: match (summary, base) {
            (Some(s), Some(b)) if b > 0.0 => Some(s.p50_ms / b),
            _ => None,
        },
        samples_ms: samples.as_ms().to_vec(),
    }
}

const INVOKE_PATH: &str = "/2015-03-31/functions/hello/invocations";

/// An HTTP function answering the hello event: a handler answering as API Gateway expects.
const HTTP_HANDLER: &str = r#"import json


def handler(event):
    name = json.loads(event["body"])["name"]
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": '"Hello, %s!"' % name}
"#;

/// The same as a PEP 3333 app.
const WSGI_APP: &str = r#"import json


def app(environ, start_response):
    size = int(environ.get("CONTENT_LENGTH") or 0)
    name = json.loads(environ["wsgi.input"].read(size))["name"]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [('"Hello, %s!"' % name).encode()]
"#;

/// The warm rows' paths: (row label, request path).
const WARM_PATHS: [(&str, &str); 4] = [
    ("/runLambda", "/runLambda/hello"),
    ("Invoke API", INVOKE_PATH),
    ("/run handler", "/run/hello-http/greet"),
    ("/run WSGI", "/run/hello-wsgi/greet"),
];

/// One warm call through `path`, checked.
fn warm_call(conn: &mut BlockingConn, label: &str, path: &str) -> Result<Duration> {
    let t = Instant::now();
    let (status, body) = conn.send("POST", path, EVENT)?;
    let took = t.elapsed();
    if status != 200 {
        bail!(
            "{label} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    check_answer(label, &body)?;
    Ok(took)
}

/// The warm rows, each path on its own keep-alive connection, in blocks taken in turn (the
/// order turning each round).
fn warm_calls(addr: SocketAddr, plan: &Plan) -> Result<(Vec<InvokeRow>, usize)> {
    let mut conns = Vec::with_capacity(WARM_PATHS.len());
    for _ in WARM_PATHS {
        conns.push(BlockingConn::connect(addr)?);
    }
    for _ in 0..plan.warmup.max(1) {
        for (conn, (label, path)) in conns.iter_mut().zip(WARM_PATHS) {
            warm_call(conn, label, path)?;
        }
    }
    // One call of each path in turn: a pair of rows sees the same moment of the machine.
    let block = 1;
    let mut samples: Vec<Samples> = WARM_PATHS
        .iter()
        .map(|_| Samples::with_capacity(plan.calls))
        .collect();
    let (mut done, mut round) = (0, 0);
    while done < plan.calls {
        crate::check_interrupt()?;
        let n = block.min(plan.calls - done);
        for k in 0..WARM_PATHS.len() {
            let side = (k + round) % WARM_PATHS.len();
            let (label, path) = WARM_PATHS[side];
            for _ in 0..n {
                let took = warm_call(&mut conns[side], label, path)?;
                samples[side].push(took);
            }
        }
        round += 1;
        done += n;
    }
    let base = samples[0].summary().map(|s| s.p50_ms);
    let rows = WARM_PATHS
        .iter()
        .zip(&samples)
        .map(|((label, _), s)| row("warm call", label, s, base))
        .collect();
    Ok((rows, block))
}

/// Milliseconds since the epoch of an RFC 3339 time.
fn epoch_ms(v: &Value) -> Option<f64> {
    let t =
        time::OffsetDateTime::parse(v.as_str()?, &time::format_description::well_known::Rfc3339)
            .ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as f64)
}

/// Queues `events` events of `name` from [`SENDERS`] connections; the 202 latencies and the
/// ids.
fn queue_events(addr: SocketAddr, name: &str, events: usize) -> Result<(Samples, Vec<String>)> {
    let path = format!("/runLambda/{name}?async=1");
    let threads: Vec<_> = (0..SENDERS)
        .map(|s| {
            let path = path.clone();
            std::thread::spawn(move || -> Result<(Samples, Vec<String>)> {
                let mut conn = BlockingConn::connect(addr)?;
                let mut samples = Samples::default();
                let mut ids = Vec::new();
                for i in (s..events).step_by(SENDERS) {
                    let t = Instant::now();
                    let (status, body) = conn.send("POST", &path, &format!(r#"{{"n": {i}}}"#))?;
                    samples.push(t.elapsed());
                    if status != 202 {
                        bail!(
                            "{path} answered {status}: {}",
                            String::from_utf8_lossy(&body)
                        );
                    }
                    let v: Value = serde_json::from_slice(&body).context("202 body")?;
                    ids.push(v["invocation_id"].as_str().unwrap_or_default().to_owned());
                }
                Ok((samples, ids))
            })
        })
        .collect();
    let mut samples = Samples::default();
    let mut ids = Vec::new();
    for t in threads {
        let (s, i) = t
            .join()
            .map_err(|_| anyhow::anyhow!("a sender thread panicked"))??;
        samples.extend(s);
        ids.extend(i);
    }
    Ok((samples, ids))
}

/// Every record of `name`, following the list's cursors.
fn records(conn: &mut BlockingConn, name: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("/invocations?function={name}&limit=1000");
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let (status, body) = conn.send("GET", &path, "")?;
        if status != 200 {
            bail!(
                "{path} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let v: Value = serde_json::from_slice(&body).context("/invocations: not JSON")?;
        out.extend(v["invocations"].as_array().cloned().unwrap_or_default());
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => return Ok(out),
        }
    }
}

/// The asynchronous rows.
fn async_events(addr: SocketAddr, events: usize) -> Result<(Vec<InvokeRow>, f64, f64)> {
    let mut conn = BlockingConn::connect(addr)?;
    check_answer("async warm-up", &conn.run("hello", EVENT)?)?;
    let name = "hello";
    let started = Instant::now();
    let (acks, ids) = queue_events(addr, name, events)?;
    let queued_per_s = events as f64 / started.elapsed().as_secs_f64().max(1e-9);
    let deadline = Instant::now() + DRAIN_LIMIT;
    loop {
        crate::check_interrupt()?;
        let (status, body) = conn.send("GET", "/invocations?limit=1", "")?;
        if status != 200 {
            bail!("/invocations answered {status}");
        }
        let v: Value = serde_json::from_slice(&body)?;
        let c = &v["counts"];
        if c["queued"] == 0 && c["running"] == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the queue did not drain within {DRAIN_LIMIT:?}: {c}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let all = records(&mut conn, name)?;
    let wanted: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
    let mut done = Samples::default();
    let mut last_finish = 0.0f64;
    let mut first_created = f64::MAX;
    for r in all
        .iter()
        .filter(|r| wanted.contains(r["id"].as_str().unwrap_or("")))
    {
        if r["status"] != "succeeded" {
            bail!("event {} ended {}: {}", r["id"], r["status"], r["error"]);
        }
        if let (Some(c), Some(f)) = (epoch_ms(&r["created"]), epoch_ms(&r["finished"])) {
            done.push(Duration::from_secs_f64(((f - c).max(0.0)) / 1e3));
            last_finish = last_finish.max(f);
            first_created = first_created.min(c);
        }
    }
    if done.len() != events {
        bail!("{} of {events} events have records", done.len());
    }
    let span_s = ((last_finish - first_created) / 1e3).max(1e-3);
    let rows = vec![
        row("queue (202)", "?async=1", &acks, None),
        row("202 to done", "?async=1", &done, None),
    ];
    Ok((rows, events as f64 / span_s, queued_per_s))
}

/// Runs the scenario on a worker of its own.
pub fn invoke(cluster: &mut BenchCluster, plan: &Plan) -> Result<Invoke> {
    cluster.add_hello("hello")?;
    cluster.add_files("hello-http", &[("lambda_func.py", HTTP_HANDLER)])?;
    cluster.add_files(
        "hello-wsgi",
        &[
            ("app.py", WSGI_APP),
            ("lambda.json", r#"{"entry": "app:app", "type": "wsgi"}"#),
        ],
    )?;
    let events = plan.events;
    let mut w = cluster.start_worker(&worker_patch(json!({})))?;
    let (mut rows, block) = warm_calls(w.addr, plan)?;
    for r in &rows {
        if let Some(s) = r.summary {
            eprintln!(
                "  warm, {:<11} n={} p50={:.3} ms p99={:.3} ms",
                r.through, s.n, s.p50_ms, s.p99_ms
            );
        }
    }
    let (async_rows, drained_per_s, queued_per_s) = async_events(w.addr, events)?;
    eprintln!("  {events} events: {queued_per_s:.0}/s queued, {drained_per_s:.0}/s drained");
    rows.extend(async_rows);
    w.stop()?;
    Ok(Invoke {
        rows,
        block,
        events,
        drained_per_s,
        queued_per_s,
    })
}

/// The invoke table of the printed report.
pub fn render(o: &mut String, r: &Invoke, ms: fn(f64) -> String) {
    let _ = writeln!(
        o,
        "\ninvoke: the Invoke API and HTTP functions beside /runLambda (warm hello), and {} asynchronous events (ms)",
        r.events
    );
    let _ = writeln!(
        o,
        "{:<12} {:<12} {:>6} {:>8} {:>8} {:>8} {:>8} {:>12}",
        "measure", "through", "n", "p50", "p90", "p99", "max", "x runLambda"
    );
    for row in &r.rows {
        let figures = match &row.summary {
            Some(s) => format!(
                "{:>6} {:>8} {:>8} {:>8} {:>8}",
                s.n,
                ms(s.p50_ms),
                ms(s.p90_ms),
                ms(s.p99_ms),
                ms(s.max_ms)
            ),
            None => format!("{:>6} {:>8} {:>8} {:>8} {:>8}", 0, "-", "-", "-", "-"),
        };
        let x = row
            .x_run_lambda
            .map_or("-".to_owned(), |x| format!("{x:.2}x"));
        let _ = writeln!(
            o,
            "{:<12} {:<12} {figures} {x:>12}",
            row.measure, row.through
        );
    }
    let _ = writeln!(
        o,
        "events: {:.0}/s acknowledged from {SENDERS} connections, {:.0}/s drained (first 202 to last done); warm blocks of {} calls, taken in turn",
        r.queued_per_s, r.drained_per_s, r.block
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_become_milliseconds() {
        let a = epoch_ms(&json!("2026-12-02T10:00:00.000Z")).unwrap();
        let b = epoch_ms(&json!("2026-12-02T10:00:01.250Z")).unwrap();
        assert_eq!(b - a, 1250.0);
        assert!(epoch_ms(&json!("yesterday")).is_none());
        assert!(epoch_ms(&Value::Null).is_none());
    }

    #[test]
    fn rows_compare_with_run_lambda() {
        let mut s = Samples::default();
        s.push(Duration::from_millis(2));
        let r = row("warm call", "Invoke API", &s, Some(1.0));
        assert_eq!(r.x_run_lambda, Some(2.0));
        let out = {
            let mut o = String::new();
            render(
                &mut o,
                &Invoke {
                    rows: vec![r],
                    block: 10,
                    events: 5,
                    drained_per_s: 100.0,
                    queued_per_s: 50.0,
                },
                |v| format!("{v:.2}"),
            );
            o
        };
        assert!(out.contains("Invoke API"), "{out}");
        assert!(out.contains("2.00x"), "{out}");
    }
}
