//! `admin status -cluster DIR`: pings every worker of the cluster and lists its live sandboxes, in
//! the OpenLambda README's shape:
//! ```text
//! Worker Pings:
//! http://localhost:8080/status => ready [200 OK]
//! Cluster containers:
//!   hello  id=3  state=idle  pid=4567  uptime=12.3s  worker=worker-0
//! Import cache (zygotes):
//!   zygote 1  parent=-  pid=4560  forks=12  memory=7.1MiB  packages=-  worker=worker-0
//! Registry:
//! http://127.0.0.1:9000/status => ready [200 OK] pid=4550
//! ```
//! The registry section says `local directory <registry_dir>` when the template names no
//! registry server. `--json` prints the same as one JSON document, each worker with its whole
//! `/stats`; the exit status is the same (1 when a worker or the registry server does not
//! answer).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;
use serde_json::json;
use worker::config::Config;

use super::local_host;
use crate::cluster_dir::ClusterDir;
use crate::process;
use worker::http_client::{self as http, Response};

/// Timeout for connecting to and reading from a worker.
const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cluster directory
    #[arg(long, value_name = "DIR")]
    pub cluster: PathBuf,
    /// Print one JSON document: {"workers": [{name, port, url, status, http_status, error, stats}], "registry": {...}}
    #[arg(long)]
    pub json: bool,
}

/// The parts of a worker's `/stats` JSON that admin uses; other fields are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Stats {
    #[serde(default)]
    pub worker: Option<WorkerStats>,
    #[serde(default)]
    pub sandboxes: Vec<SandboxRow>,
    #[serde(default)]
    pub import_cache: ImportCache,
}

/// The import cache part of `/stats`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImportCache {
    #[serde(default)]
    pub zygotes: Vec<ZygoteRow>,
}

/// One zygote.
#[derive(Debug, Clone, Deserialize)]
pub struct ZygoteRow {
    pub id: u64,
    #[serde(default)]
    pub parent: Option<u64>,
    #[serde(default)]
    pub pid: Option<i64>,
    #[serde(default)]
    pub packages: Vec<String>,
    #[serde(default)]
    pub forks: u64,
    #[serde(default)]
    pub memory_mb: f64,
    #[serde(default)]
    pub retired: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct WorkerStats {
    #[serde(default)]
    pub pid: Option<i64>,
}

/// One live sandbox.
#[derive(Debug, Clone, Deserialize)]
pub struct SandboxRow {
    pub lambda: String,
    pub id: u64,
    pub state: String,
    #[serde(default)]
    pub pid: Option<i64>,
    #[serde(default)]
    pub uptime_s: f64,
    /// Kept by the function's provisioned concurrency (else on demand).
    #[serde(default)]
    pub provisioned: bool,
}

/// Parses a `/stats` body.
pub fn parse_stats(body: &str) -> Result<Stats, String> {
    parse_stats_json(body).map(|(_, stats)| stats)
}

/// Parses a `/stats` body once: the whole document (what `--json` prints) and the parts admin
/// reads from it.
fn parse_stats_json(body: &str) -> Result<(serde_json::Value, Stats), String> {
    let invalid = |e: serde_json::Error| format!("invalid /stats JSON: {e}");
    let value: serde_json::Value = serde_json::from_str(body).map_err(invalid)?;
    let stats = Stats::deserialize(&value).map_err(invalid)?;
    Ok((value, stats))
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let cluster = ClusterDir::open(&args.cluster)?;
    let mut pings = Vec::new();
    let mut rows: Vec<(String, SandboxRow)> = Vec::new();
    let mut zygotes: Vec<(String, ZygoteRow)> = Vec::new();
    let mut problems = 0;
    let mut workers_json = Vec::new();
    for i in cluster.worker_configs()? {
        let name = format!("worker-{i}");
        let cfg = match Config::load(&cluster.worker_config(i)) {
            Ok(c) => c,
            Err(e) => {
                pings.push(format!("{name}: {e}"));
                workers_json
                    .push(json!({"name": name, "status": "invalid", "error": e.to_string()}));
                problems += 1;
                continue;
            }
        };
        let host = local_host(&cfg.worker_host);
        let ping = http::get(host, cfg.worker_port, "/status", TIMEOUT)
            .map_err(|e| http::describe_error(&e));
        if !matches!(&ping, Ok(r) if r.status == 200) {
            problems += 1;
        }
        pings.push(ping_line(cfg.worker_port, &ping));
        let header = |r: &Response, name: &str| {
            r.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (load, id) = match &ping {
            Ok(r) => (header(r, "x-worker-load"), header(r, "x-worker-id")),
            Err(_) => (None, None),
        };
        if let Some(load) = &load {
            pings.push(format!(
                "  {name} ({}): load {load}",
                id.as_deref().unwrap_or("-")
            ));
        }
        let mut entry = json!({
            "id": id,
            "load": load,
            "name": name,
            "port": cfg.worker_port,
            "url": format!("http://localhost:{}", cfg.worker_port),
            "status": match &ping {
                Ok(r) => short_body(&r.body),
                Err(_) => "unreachable".to_owned(),
            },
            "http_status": ping.as_ref().ok().map(|r| r.status),
            "error": ping.as_ref().err(),
            "stats": null,
        });
        if ping.is_err() {
            workers_json.push(entry);
            continue;
        }
        let problem = match http::get(host, cfg.worker_port, "/stats", TIMEOUT) {
            Ok(r) if r.status == 200 => match parse_stats_json(&r.body) {
                Ok((value, stats)) => {
                    entry["stats"] = value;
                    rows.extend(stats.sandboxes.into_iter().map(|s| (name.clone(), s)));
                    let z = stats.import_cache.zygotes.into_iter();
                    zygotes.extend(z.map(|z| (name.clone(), z)));
                    None
                }
                Err(e) => Some(e),
            },
            Ok(r) => Some(format!("/stats answered {}", r.status_text())),
            Err(e) => Some(format!("/stats: {}", http::describe_error(&e))),
        };
        if let Some(problem) = problem {
            pings.push(format!("  ({name}: {problem})"));
            entry["stats_error"] = json!(problem);
        }
        workers_json.push(entry);
    }
    let registry = registry(&cluster);
    let balancer = super::lb::status(&cluster);
    let balancer_ok = balancer.as_ref().is_none_or(|(_, _, ok)| *ok);
    if args.json {
        let doc = json!({
            "cluster": cluster.root(),
            "workers": workers_json,
            "registry": registry,
            "balancer": balancer.as_ref().map(|(_, j, _)| j),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return verdict(problems, registry.ok, balancer_ok);
    }
    println!("Worker Pings:");
    for line in &pings {
        println!("{line}");
    }
    println!("Cluster containers:");
    for line in container_lines(&rows) {
        println!("{line}");
    }
    println!("Import cache (zygotes):");
    for line in zygote_lines(&zygotes) {
        println!("{line}");
    }
    println!("Registry:");
    println!("{}", registry.line);
    if let Some((lines, _, _)) = &balancer {
        println!("Balancer:");
        for line in lines {
            println!("{line}");
        }
    }
    verdict(problems, registry.ok, balancer_ok)
}

/// The exit status: an error naming what did not answer.
fn verdict(problems: usize, registry_ok: bool, balancer_ok: bool) -> anyhow::Result<()> {
    let mut wrong = Vec::new();
    if problems > 0 {
        wrong.push(format!("{problems} worker(s) not ready"));
    }
    if !registry_ok {
        wrong.push("the registry server is not reachable".to_owned());
    }
    if !balancer_ok {
        wrong.push("the balancer is not running or not answering".to_owned());
    }
    match wrong.split_first() {
        None => Ok(()),
        Some((first, [])) => bail!("{first}"),
        Some(_) => {
            let last = wrong.pop().unwrap_or_default();
            bail!("{}, and {last}", wrong.join(", "))
        }
    }
}

/// The registry: the local directory, or the server's `/status` answer and its pid.
#[derive(Debug, serde::Serialize)]
struct Registry {
    /// The line `admin status` prints.
    line: String,
    /// Whether it is fine (a local directory always is).
    ok: bool,
    /// `local` or `server`.
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<String>,
}

fn registry(cluster: &ClusterDir) -> Registry {
    let template = match Config::load(&cluster.template()) {
        Ok(c) => c,
        Err(e) => {
            return Registry {
                line: e.to_string(),
                ok: false,
                kind: "unknown",
                dir: None,
                url: None,
                pid: None,
            }
        }
    };
    let Some(url) = template.registry.server() else {
        return Registry {
            line: format!("local directory {}", template.registry_dir.display()),
            ok: true,
            kind: "local",
            dir: Some(template.registry_dir.clone()),
            url: None,
            pid: None,
        };
    };
    let pid = match process::read_pid_file(&cluster.registry_pid_file()) {
        Ok(Some(pid)) if process::is_alive(pid) && process::is_registry_process(pid) => {
            pid.to_string()
        }
        Ok(Some(pid)) => format!("- (stale pid {pid})"),
        Ok(None) => process::registries_serving(cluster.root())
            .first()
            .map_or_else(|| "-".to_owned(), |p| format!("{p} (unrecorded)")),
        Err(e) => format!("- ({e:#})"),
    };
    let ping = http::split_url(url)
        .and_then(|(host, port)| http::get(&host, port, "/status", TIMEOUT))
        .map_err(|e| http::describe_error(&e));
    Registry {
        line: format!("{} pid={pid}", url_ping_line(url, &ping)),
        ok: matches!(&ping, Ok(r) if r.status == 200),
        kind: "server",
        dir: None,
        url: Some(url.to_owned()),
        pid: Some(pid),
    }
}

/// `http://127.0.0.1:9000/status => ready [200 OK]`, or `=> unreachable: <reason>`.
pub fn url_ping_line(url: &str, result: &Result<Response, String>) -> String {
    match result {
        Ok(r) => format!(
            "{url}/status => {} [{}]",
            short_body(&r.body),
            r.status_text()
        ),
        Err(reason) => format!("{url}/status => unreachable: {reason}"),
    }
}

/// A body with white space collapsed, cut at 100 characters.
fn short_body(body: &str) -> String {
    let body: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match body.char_indices().nth(100) {
        Some((cut, _)) => format!("{}...", &body[..cut]),
        None => body,
    }
}

/// `http://localhost:8080/status => ready [200 OK]`, or `=> unreachable: <reason>`.
pub fn ping_line(port: u16, result: &Result<Response, String>) -> String {
    match result {
        Ok(r) => format!(
            "http://localhost:{port}/status => {} [{}]",
            short_body(&r.body),
            r.status_text()
        ),
        Err(reason) => format!("http://localhost:{port}/status => unreachable: {reason}"),
    }
}

/// One line per sandbox, the lambda names padded to a column.
pub fn container_lines(rows: &[(String, SandboxRow)]) -> Vec<String> {
    let width = rows.iter().map(|(_, r)| r.lambda.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(worker, r)| {
            let pid = r.pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
            format!(
                "  {:width$}  id={}  state={}  kind={}  pid={}  uptime={}  worker={}",
                r.lambda,
                r.id,
                r.state,
                if r.provisioned {
                    "provisioned"
                } else {
                    "on-demand"
                },
                pid,
                format_uptime(r.uptime_s),
                worker
            )
        })
        .collect()
}

/// One line per zygote.
pub fn zygote_lines(rows: &[(String, ZygoteRow)]) -> Vec<String> {
    rows.iter()
        .map(|(worker, z)| {
            let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
            let packages = if z.packages.is_empty() {
                "-".to_owned()
            } else {
                z.packages.join(",")
            };
            format!(
                "  zygote {}  parent={}  pid={}  forks={}  memory={:.1}MiB  packages={}{}  worker={}",
                z.id,
                or_dash(z.parent.map(|p| p.to_string())),
                or_dash(z.pid.map(|p| p.to_string())),
                z.forks,
                z.memory_mb,
                packages,
                if z.retired { "  (retired)" } else { "" },
                worker
            )
        })
        .collect()
}

/// `12.3s`, `5m03s`, `2h05m`.
pub fn format_uptime(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".to_owned();
    }
    if secs < 60.0 {
        return format!("{secs:.1}s");
    }
    let whole = secs as u64;
    if whole < 3600 {
        format!("{}m{:02}s", whole / 60, whole % 60)
    } else {
        format!("{}h{:02}m", whole / 3600, (whole % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATS: &str = r#"{"worker": {"pid": 123, "uptime_s": 1.5, "cgroup_version": "v1"},
        "sandboxes": [
          {"lambda": "hello", "id": 3, "state": "idle", "pid": 4567, "uptime_s": 12.3, "calls": 5, "provisioned": true},
          {"lambda": "echo-long-name", "id": 4, "state": "busy", "pid": 4570, "uptime_s": 3723, "calls": 1}
        ],
        "lambdas": {"hello": {"calls": 5, "cold_starts": 1, "warm_starts": 4, "errors": 0}},
        "import_cache": {"enabled": true, "zygotes": [
          {"id": 1, "parent": null, "pid": 4560, "packages": [], "forks": 12, "memory_mb": 7.1, "retired": false},
          {"id": 5, "parent": 1, "pid": 4601, "packages": ["numpy/2.2.6", "six/1.17.0"], "forks": 3, "memory_mb": 31.25, "retired": true}
        ]}}"#;

    #[test]
    fn zygotes_become_lines() {
        let stats = parse_stats(STATS).unwrap();
        let rows: Vec<(String, ZygoteRow)> = stats
            .import_cache
            .zygotes
            .into_iter()
            .map(|z| ("worker-0".to_owned(), z))
            .collect();
        assert_eq!(
            zygote_lines(&rows),
            [
                "  zygote 1  parent=-  pid=4560  forks=12  memory=7.1MiB  packages=-  worker=worker-0",
                "  zygote 5  parent=1  pid=4601  forks=3  memory=31.2MiB  packages=numpy/2.2.6,six/1.17.0  (retired)  worker=worker-0",
            ]
        );
    }

    #[test]
    fn stats_json_becomes_the_container_table() {
        let stats = parse_stats(STATS).unwrap();
        assert_eq!(stats.worker.unwrap().pid, Some(123));
        let rows: Vec<(String, SandboxRow)> = stats
            .sandboxes
            .into_iter()
            .map(|s| ("worker-0".to_owned(), s))
            .collect();
        let lines = container_lines(&rows);
        assert_eq!(
            lines,
            [
                "  hello           id=3  state=idle  kind=provisioned  pid=4567  uptime=12.3s  worker=worker-0",
                "  echo-long-name  id=4  state=busy  kind=on-demand  pid=4570  uptime=1h02m  worker=worker-0",
            ]
        );
    }

    #[test]
    fn stats_tolerate_missing_and_extra_fields() {
        let stats = parse_stats(
            r#"{"sandboxes": [{"lambda": "a", "id": 1, "state": "idle", "new": true}]}"#,
        )
        .unwrap();
        let lines = container_lines(&[("w".to_owned(), stats.sandboxes[0].clone())]);
        assert_eq!(
            lines,
            ["  a  id=1  state=idle  kind=on-demand  pid=-  uptime=0.0s  worker=w"]
        );
        assert!(parse_stats("{}").unwrap().sandboxes.is_empty());
        assert!(parse_stats("not json").is_err());
        assert!(container_lines(&[]).is_empty());
    }

    #[test]
    fn ping_lines_match_the_readme() {
        let ok = Response {
            status: 200,
            reason: "OK".into(),
            body: "ready".into(),
            bytes: Default::default(),
            headers: Default::default(),
        };
        assert_eq!(
            ping_line(8080, &Ok(ok)),
            "http://localhost:8080/status => ready [200 OK]"
        );
        assert_eq!(
            ping_line(8081, &Err("connection refused".into())),
            "http://localhost:8081/status => unreachable: connection refused"
        );
        assert_eq!(
            url_ping_line("http://127.0.0.1:9000", &Err("connection refused".into())),
            "http://127.0.0.1:9000/status => unreachable: connection refused"
        );
        let busy = Response {
            status: 503,
            reason: "Service Unavailable".into(),
            body: "{\"error\":\n \"the worker is shutting down\"}\n".into(),
            bytes: Default::default(),
            headers: Default::default(),
        };
        assert_eq!(
            ping_line(8080, &Ok(busy)),
            "http://localhost:8080/status => {\"error\": \"the worker is shutting down\"} [503 Service Unavailable]"
        );
    }

    #[test]
    fn uptimes() {
        assert_eq!(format_uptime(0.04), "0.0s");
        assert_eq!(format_uptime(59.94), "59.9s");
        assert_eq!(format_uptime(303.0), "5m03s");
        assert_eq!(format_uptime(7500.0), "2h05m");
        assert_eq!(format_uptime(f64::NAN), "-");
    }
}
