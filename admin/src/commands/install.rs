//! `admin install -cluster DIR NAME [--worker N]`: installs a function's packages
//! (`requirements.txt` or `packages.txt`) ahead of its first call, so that call finds them ready.
//!
//! In order: check the name; find a running worker of the cluster (worker N, or the first that
//! answers `/status`); send it `POST /functions/NAME/install`, which resolves and installs as a
//! first call would (the package store is the cluster's, so every worker then finds them); while
//! it runs, follow the install in the worker's `/stats` (`packages.in_progress`) as a progress bar
//! on a terminal, plain lines otherwise; print what is ready.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ::http::Method;
use anyhow::{anyhow, bail};
use serde::Deserialize;
use worker::config::Config;
use worker::http_client as http;
use worker::name::LambdaName;

use super::local_host;
use crate::cluster_dir::ClusterDir;
use crate::progress::Progress;

/// Timeout of the `/status` and `/stats` requests.
const PING_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the install's progress is read.
const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cluster directory
    #[arg(long, value_name = "DIR")]
    pub cluster: PathBuf,
    /// The function whose packages to install
    pub name: String,
    /// The worker that installs them [default: the first running worker]
    #[arg(long, value_name = "N")]
    pub worker: Option<u32>,
}

/// The worker's answer to `POST /functions/NAME/install`.
#[derive(Debug, Deserialize)]
struct Installed {
    has_requirements: bool,
    packages: Vec<String>,
    took_ms: u64,
}

/// One install under way in the worker's `/stats`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
struct InProgress {
    lambda: String,
    step: String,
    #[serde(default)]
    package: Option<String>,
    #[serde(default)]
    done: u64,
    #[serde(default)]
    total: u64,
    #[serde(default)]
    waiting: bool,
}

#[derive(Debug, Default, Deserialize)]
struct Stats {
    #[serde(default)]
    packages: PackageStats,
}

#[derive(Debug, Default, Deserialize)]
struct PackageStats {
    #[serde(default)]
    in_progress: Vec<InProgress>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let name = LambdaName::parse(&args.name)
        .map_err(|reason| anyhow!("invalid function name {:?}: {reason}", args.name))?;
    let cluster = ClusterDir::open(&args.cluster)?;
    let (host, port, cfg) = pick_worker(&cluster, args.worker)?;
    // One pip step may take `install_timeout_s`; a list has a resolve and a step per package.
    let timeout = Duration::from_secs(cfg.install_timeout_s.saturating_mul(64).max(600));
    let started = Instant::now();
    let (tx, rx) = mpsc::channel();
    {
        let (host, path) = (host.clone(), format!("/functions/{name}/install"));
        std::thread::spawn(move || {
            let req = http::Request::new(Method::POST, &host, port, &path, timeout);
            let _ = tx.send(http::send_blocking(req));
        });
    }
    let progress = Progress::new("install:");
    progress.stage(name.as_str(), None);
    progress.message("looking the function up");
    let mut last: Option<InProgress> = None;
    let mut installing = false;
    let answer = loop {
        match rx.recv_timeout(POLL) {
            Ok(answer) => break answer,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                bail!("the request to the worker on port {port} ended without an answer")
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        let now = in_progress(&host, port, &name);
        if now.is_some() && now != last {
            if let Some(p) = &now {
                installing = show(&progress, p, installing);
            }
            last = now;
        }
    };
    progress.finish();
    let resp = answer.map_err(|e| {
        anyhow!(
            "worker on port {port}: {} (the install may still finish in the worker)",
            http::describe_error(&e)
        )
    })?;
    if resp.status != 200 {
        bail!("{name}: {}", error_message(&resp));
    }
    let installed: Installed = serde_json::from_str(&resp.body)
        .map_err(|e| anyhow!("worker on port {port} gave an unreadable answer: {e}"))?;
    if !installed.has_requirements {
        println!("{name} has no requirements.txt or packages.txt: nothing to install");
        return Ok(());
    }
    println!(
        "{name}: {} package{} ready in {:.1} s (worker {:.1} s){}{}",
        installed.packages.len(),
        if installed.packages.len() == 1 {
            ""
        } else {
            "s"
        },
        started.elapsed().as_secs_f64(),
        installed.took_ms as f64 / 1000.0,
        if installed.packages.is_empty() {
            ""
        } else {
            ": "
        },
        installed.packages.join(" ")
    );
    Ok(())
}

/// Worker `only`, or the first worker of the cluster that answers `/status`: its address and
/// config.
fn pick_worker(cluster: &ClusterDir, only: Option<u32>) -> anyhow::Result<(String, u16, Config)> {
    let mut tried = Vec::new();
    for i in cluster.worker_configs()? {
        if only.is_some_and(|n| n != i) {
            continue;
        }
        let Ok(cfg) = Config::load(&cluster.worker_config(i)) else {
            continue;
        };
        let host = local_host(&cfg.worker_host).to_owned();
        match http::get(&host, cfg.worker_port, "/status", PING_TIMEOUT) {
            Ok(r) if r.status == 200 => return Ok((host, cfg.worker_port, cfg)),
            Ok(r) => tried.push(format!("worker-{i} answered {}", r.status_text())),
            Err(e) => tried.push(format!("worker-{i}: {}", http::describe_error(&e))),
        }
    }
    let which = match only {
        Some(n) => format!("worker-{n} of {}", cluster.root().display()),
        None => format!("no worker of {}", cluster.root().display()),
    };
    let tried = if tried.is_empty() {
        String::new()
    } else {
        format!(" ({})", tried.join("; "))
    };
    bail!(
        "{which} is running{tried}; the install runs in a worker: start one with `admin workers -cluster={}`",
        cluster.root().display()
    )
}

/// This function's install under way in the worker, if any.
fn in_progress(host: &str, port: u16, name: &LambdaName) -> Option<InProgress> {
    let resp = http::get(host, port, "/stats", PING_TIMEOUT).ok()?;
    let stats: Stats = serde_json::from_str(&resp.body).ok()?;
    stats
        .packages
        .in_progress
        .into_iter()
        .find(|p| p.lambda == name.as_str())
}

/// Shows one state of the install; `installing`: whether the install stage is shown already
/// (returned updated).
fn show(progress: &Progress, p: &InProgress, installing: bool) -> bool {
    let waiting = if p.waiting {
        " (waiting for an install in progress)"
    } else {
        ""
    };
    match (p.step.as_str(), &p.package) {
        ("install", Some(package)) => {
            if !installing {
                progress.stage("packages", Some(p.total));
            }
            progress.step(p.done, &format!("{package}{waiting}"));
            true
        }
        _ => {
            progress.message(&format!("resolving the requirements{waiting}"));
            installing
        }
    }
}

/// The `message` of the worker's JSON error, else its body.
fn error_message(resp: &http::Response) -> String {
    serde_json::from_str::<serde_json::Value>(&resp.body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{}: {}", resp.status_text(), resp.body.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workers_progress_entries_parse() {
        let body = r#"{"packages": {"resolves": 1, "in_progress": [
            {"lambda": "np", "step": "install", "package": "numpy==2.3.1", "done": 1,
             "total": 3, "waiting": false, "elapsed_s": 2.5}]}}"#;
        let stats: Stats = serde_json::from_str(body).unwrap();
        assert_eq!(
            stats.packages.in_progress[0].package.as_deref(),
            Some("numpy==2.3.1")
        );
        assert_eq!(stats.packages.in_progress[0].total, 3);
        let empty: Stats = serde_json::from_str("{}").unwrap();
        assert!(empty.packages.in_progress.is_empty());
    }
}
