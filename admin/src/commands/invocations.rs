//! `admin invocations -cluster DIR [NAME] [--failed] [--limit N]`: the asynchronous
//! invocations the cluster's running workers hold (each worker keeps its own queue), newest
//! first: id, function, status, attempts, when it was queued and finished, and the last error.
//! With `NAME`, only that function's; with `--failed`, only dead letters (events that failed
//! for good). The workers that answered are listed; those that did not are named in the one
//! error line on stderr (exit 1).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use serde_json::Value;
use worker::config::Config;
use worker::http_client as http;
use worker::name::LambdaName;

use super::local_host;
use crate::cluster_dir::ClusterDir;

const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cluster directory
    #[arg(long, value_name = "DIR")]
    pub cluster: PathBuf,
    /// Only this function's invocations
    pub name: Option<String>,
    /// Only invocations that failed for good (the dead-letter store)
    #[arg(long)]
    pub failed: bool,
    /// At most this many per worker (1 to 1000)
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

/// The query of `GET /invocations` for these arguments.
pub fn query(args: &Args) -> anyhow::Result<String> {
    if !(1..=1000).contains(&args.limit) {
        bail!("--limit must be from 1 to 1000, not {}", args.limit);
    }
    let mut q = format!("/invocations?limit={}", args.limit);
    if let Some(raw) = &args.name {
        let name = LambdaName::parse(raw).map_err(|reason| anyhow::anyhow!("{raw:?}: {reason}"))?;
        q.push_str(&format!("&function={name}"));
    }
    if args.failed {
        q.push_str("&status=failed");
    }
    Ok(q)
}

/// `2026-12-02 03:04:05` from an RFC 3339 time, `-` for none.
fn short_time(v: &Value) -> String {
    v.as_str()
        .map(|t| t.replace('T', " ").chars().take(19).collect())
        .unwrap_or_else(|| "-".to_owned())
}

/// One row per record of a worker's answer.
pub fn rows(worker: &str, body: &Value) -> Vec<[String; 8]> {
    let Some(list) = body["invocations"].as_array() else {
        return Vec::new();
    };
    list.iter()
        .map(|r| {
            let error = match (&r["error"]["type"], &r["error"]["message"]) {
                (Value::String(t), Value::String(m)) => {
                    let m: String = m.chars().take(60).collect();
                    format!("{t}: {m}")
                }
                _ => "-".to_owned(),
            };
            [
                r["id"].as_str().unwrap_or("-").to_owned(),
                r["function"].as_str().unwrap_or("-").to_owned(),
                worker.to_owned(),
                r["status"].as_str().unwrap_or("-").to_owned(),
                r["attempts"]
                    .as_u64()
                    .map_or("-".to_owned(), |n| n.to_string()),
                short_time(&r["created"]),
                short_time(&r["finished"]),
                error,
            ]
        })
        .collect()
}

/// The rows as aligned columns under a header.
pub fn table(rows: &[[String; 8]]) -> Vec<String> {
    let header = [
        "ID",
        "FUNCTION",
        "WORKER",
        "STATUS",
        "ATTEMPTS",
        "QUEUED (UTC)",
        "FINISHED (UTC)",
        "LAST ERROR",
    ]
    .map(str::to_owned);
    let all: Vec<&[String; 8]> = std::iter::once(&header).chain(rows.iter()).collect();
    let widths: Vec<usize> = (0..8)
        .map(|c| all.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    all.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(i, cell)| {
                    if i == 7 {
                        cell.clone()
                    } else {
                        format!("{cell:<w$}", w = widths[i])
                    }
                })
                .collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect()
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let path = query(args)?;
    let cluster = ClusterDir::open(&args.cluster)?;
    let mut rows_all = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    let mut workers = 0;
    for i in cluster.worker_configs()? {
        let name = format!("worker-{i}");
        let cfg = match Config::load(&cluster.worker_config(i)) {
            Ok(c) => c,
            Err(e) => {
                problems.push(format!("{name}: {e}"));
                continue;
            }
        };
        let host = local_host(&cfg.worker_host);
        match http::get(host, cfg.worker_port, &path, TIMEOUT) {
            Ok(r) if r.status == 200 => match serde_json::from_str::<Value>(&r.body) {
                Ok(body) => {
                    workers += 1;
                    rows_all.extend(rows(&name, &body));
                }
                Err(e) => problems.push(format!(
                    "{name}: /invocations answered something not JSON: {e}"
                )),
            },
            Ok(r) => problems.push(format!(
                "{name}: /invocations answered {}: {}",
                r.status_text(),
                r.body.trim()
            )),
            Err(e) => problems.push(format!(
                "{name} (port {}) does not answer: {}",
                cfg.worker_port,
                http::describe_error(&e)
            )),
        }
    }
    // Newest first across workers (the queued time, then the id).
    rows_all.sort_by(|a, b| b[5].cmp(&a[5]).then_with(|| a[0].cmp(&b[0])));
    for line in table(&rows_all) {
        println!("{line}");
    }
    println!("{} invocation(s) on {workers} worker(s)", rows_all.len());
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_query_names_the_function_and_the_status() {
        let mut args = Args {
            cluster: PathBuf::from("/c"),
            name: Some("hello".into()),
            failed: true,
            limit: 10,
        };
        assert_eq!(
            query(&args).unwrap(),
            "/invocations?limit=10&function=hello&status=failed"
        );
        args.name = Some("../x".into());
        assert!(query(&args).is_err());
        args.name = None;
        args.limit = 0;
        assert!(query(&args).is_err());
    }

    #[test]
    fn records_become_rows_and_a_table() {
        let body = json!({"invocations": [
            {"id": "a1", "function": "f", "status": "failed", "attempts": 3,
             "created": "2026-12-02T03:04:05.123Z", "finished": "2026-12-02T03:04:09.000Z",
             "error": {"type": "ValueError", "message": "bad"}},
            {"id": "b2", "function": "g", "status": "queued", "attempts": 0,
             "created": "2026-12-02T03:04:06.000Z", "finished": null, "error": null}
        ]});
        let rows = rows("worker-0", &body);
        assert_eq!(rows[0][7], "ValueError: bad");
        assert_eq!(rows[0][5], "2026-12-02 03:04:05");
        assert_eq!(rows[1][6], "-");
        let lines = table(&rows);
        assert!(lines[0].starts_with("ID  FUNCTION  WORKER"), "{}", lines[0]);
        assert_eq!(lines.len(), 3);
    }
}
