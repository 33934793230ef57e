//! `admin kill -cluster DIR`: stops the cluster's balancer (`admin lb`), then every worker of the cluster (SIGTERM, a grace period, then
//! SIGKILL) and removes what they leave behind: pid files, sandbox processes, cgroups and scratch
//! directories (via `worker::cleanup_leftovers`); then stops the cluster's registry server, if
//! one runs (`logs/registry.pid`, or any `admin registry-exec` naming the cluster).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use worker::config::Config;

use crate::cluster_dir::ClusterDir;
use crate::process::{self, Stopped};

/// How long a worker gets between SIGTERM and SIGKILL (it drains calls for `shutdown_timeout_s`).
const GRACE: Duration = Duration::from_secs(15);
/// How long HAProxy gets between SIGTERM and SIGKILL.
const LB_GRACE: Duration = Duration::from_secs(5);
/// How long the registry server gets between SIGTERM and SIGKILL.
const REGISTRY_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cluster directory
    #[arg(long, value_name = "DIR")]
    pub cluster: PathBuf,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let cluster = ClusterDir::open(&args.cluster)?;
    // The balancer first: it stops sending calls to workers that are about to go.
    if let Some((line, ok)) = stop_balancer(&cluster) {
        say(format_args!("lb: {line}"));
        if !ok {
            bail!("the balancer could not be stopped: {line}");
        }
    }
    let failures = stop_workers(&cluster)?;
    let registry_ok = match stop_registry(&cluster) {
        Some((line, ok)) => {
            say(format_args!("registry: {line}"));
            ok
        }
        None => true,
    };
    match (failures, registry_ok) {
        (0, true) => Ok(()),
        (0, false) => bail!("the registry server could not be stopped"),
        (n, true) => bail!("{n} worker(s) could not be cleaned up completely"),
        (n, false) => bail!(
            "{n} worker(s) could not be cleaned up completely, and the registry server could not be stopped"
        ),
    }
}

/// Stops and cleans up every worker; returns how many failed.
fn stop_workers(cluster: &ClusterDir) -> anyhow::Result<usize> {
    let mut indexes: BTreeSet<u32> = cluster.pid_files()?.into_iter().collect();
    indexes.extend(cluster.worker_configs()?);
    if indexes.is_empty() {
        say(format_args!("no workers in {}", cluster.root().display()));
        return Ok(0);
    }
    let mut failures = 0;
    for i in indexes {
        let (mut process, mut ok_process) = stop_worker(cluster, i);
        let (others, ok_others) = stop_unrecorded_workers(cluster, i);
        if !others.is_empty() {
            process.push_str("; ");
            process.push_str(&others);
        }
        ok_process &= ok_others;
        let still_running = process::workers_serving(&cluster.worker_config(i));
        let (leftovers, ok_leftovers) = if still_running.is_empty() {
            clean_worker(cluster, i)
        } else {
            // Never pull sandboxes out from under a worker that is still serving.
            (
                format!("worker pid(s) {still_running:?} still running, leftovers not touched"),
                false,
            )
        };
        if !(ok_process && ok_leftovers) {
            failures += 1;
        }
        say(format_args!("worker-{i}: {process}; {leftovers}"));
    }
    Ok(failures)
}

/// Stops the HAProxy `admin lb` started (`logs/lb.pid`); `None` when there is none.
fn stop_balancer(cluster: &ClusterDir) -> Option<(String, bool)> {
    let pid_file = super::lb::pid_path(cluster);
    let config = cluster.root().join("config").join("haproxy.cfg");
    let pid = match process::read_pid_file(&pid_file) {
        Ok(None) => return None,
        Ok(Some(pid)) => pid,
        Err(e) => return Some((format!("{e:#}"), false)),
    };
    let mut line = if !process::is_alive(pid) {
        format!("not running (stale pid {pid})")
    } else if !super::lb::is_balancer_process(pid, &config) {
        format!("pid {pid} is not the cluster's HAProxy, left alone")
    } else {
        match describe_stop(pid, LB_GRACE, "") {
            Ok(what) => what,
            Err(e) => return Some((e, false)),
        }
    };
    let mut ok = true;
    if let Err(e) = process::remove_pid_file(&pid_file) {
        ok = false;
        line.push_str(&format!("; {e:#}"));
    }
    let _ = std::fs::remove_file(super::lb::record_path(cluster));
    Some((line, ok))
}

/// Stops the registry server named by `logs/registry.pid` and any other `admin registry-exec`
/// of this cluster; `None` when there was none and the template names no registry server.
fn stop_registry(cluster: &ClusterDir) -> Option<(String, bool)> {
    let pid_file = cluster.registry_pid_file();
    let mut notes = Vec::new();
    let mut ok = true;
    match process::read_pid_file(&pid_file) {
        Ok(None) => {}
        Ok(Some(pid)) => {
            if !process::is_alive(pid) {
                notes.push(format!("not running (stale pid {pid})"));
            } else if !process::is_registry_process(pid) {
                notes.push(format!("pid {pid} is not a registry server, left alone"));
            } else {
                match describe_stop(pid, REGISTRY_GRACE, "") {
                    Ok(what) => notes.push(what),
                    Err(e) => {
                        ok = false;
                        notes.push(e);
                    }
                }
            }
            if let Err(e) = process::remove_pid_file(&pid_file) {
                ok = false;
                notes.push(format!("{e:#}"));
            }
        }
        Err(e) => match process::remove_pid_file(&pid_file) {
            Ok(()) => notes.push(format!("{e:#} (removed)")),
            Err(e2) => {
                ok = false;
                notes.push(format!("{e:#}; {e2:#}"));
            }
        },
    }
    for pid in process::registries_serving(cluster.root()) {
        match describe_stop(pid, REGISTRY_GRACE, "unrecorded registry server ") {
            Ok(what) => notes.push(what),
            Err(e) => {
                ok = false;
                notes.push(e);
            }
        }
    }
    if notes.is_empty() {
        let named = Config::load(&cluster.template())
            .ok()
            .and_then(|c| c.registry.server().map(str::to_owned));
        return named.map(|url| (format!("{url} not running"), true));
    }
    Some((notes.join("; "), ok))
}

/// Stops `pid` and says how, `what` naming it (`""` or `"unrecorded worker "`).
fn describe_stop(pid: i32, grace: Duration, what: &str) -> Result<String, String> {
    match process::stop(pid, grace) {
        Ok(Stopped::Terminated(t)) => Ok(format!(
            "stopped {what}pid {pid} (SIGTERM, {:.1} s)",
            t.as_secs_f64()
        )),
        Ok(Stopped::Killed) => Ok(format!(
            "killed {what}pid {pid} (no exit {} s after SIGTERM)",
            grace.as_secs()
        )),
        Ok(Stopped::NotRunning) => Ok(format!("not running ({what}pid {pid} exited)")),
        Err(e) => Err(format!("{e:#}")),
    }
}

/// Stops the process named by the worker's pid file; returns a description and success.
fn stop_worker(cluster: &ClusterDir, i: u32) -> (String, bool) {
    let pid_file = cluster.pid_file(i);
    let pid = match process::read_pid_file(&pid_file) {
        Ok(Some(pid)) => pid,
        Ok(None) => return ("no pid file".to_owned(), true),
        Err(e) => {
            // An unreadable pid file names no process we could stop; remove it if possible.
            return match process::remove_pid_file(&pid_file) {
                Ok(()) => (format!("{e:#} (removed)"), true),
                Err(e2) => (format!("{e:#}; {e2:#}"), false),
            };
        }
    };
    let what = if !process::is_alive(pid) {
        format!("not running (stale pid {pid})")
    } else if !process::is_worker_process(pid) {
        format!("pid {pid} is not a lambdaworker worker, left alone")
    } else {
        match process::stop(pid, GRACE) {
            Ok(Stopped::Terminated(t)) => {
                format!("stopped pid {pid} (SIGTERM, {:.1} s)", t.as_secs_f64())
            }
            Ok(Stopped::Killed) => format!(
                "killed pid {pid} (no exit {} s after SIGTERM)",
                GRACE.as_secs()
            ),
            Ok(Stopped::NotRunning) => format!("not running (pid {pid} exited)"),
            Err(e) => return (format!("{e:#}"), false),
        }
    };
    match process::remove_pid_file(&pid_file) {
        Ok(()) => (what, true),
        Err(e) => (format!("{what}; {e:#}"), false),
    }
}

/// Stops workers serving this worker's config that no pid file records (for example one started
/// by hand with `admin worker-exec --config=config/worker-N.json`).
fn stop_unrecorded_workers(cluster: &ClusterDir, i: u32) -> (String, bool) {
    let mut notes = Vec::new();
    let mut ok = true;
    for pid in process::workers_serving(&cluster.worker_config(i)) {
        match process::stop(pid, GRACE) {
            Ok(Stopped::Terminated(t)) => notes.push(format!(
                "stopped unrecorded worker pid {pid} (SIGTERM, {:.1} s)",
                t.as_secs_f64()
            )),
            Ok(Stopped::Killed) => notes.push(format!("killed unrecorded worker pid {pid}")),
            Ok(Stopped::NotRunning) => {}
            Err(e) => {
                ok = false;
                notes.push(format!("{e:#}"));
            }
        }
    }
    (notes.join("; "), ok)
}

/// Removes the worker's leftover sandboxes, cgroups and scratch directories.
fn clean_worker(cluster: &ClusterDir, i: u32) -> (String, bool) {
    let path = cluster.worker_config(i);
    if !path.is_file() {
        return ("no config, nothing to clean".to_owned(), true);
    }
    let cfg = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => return (format!("cannot clean up: {e}"), false),
    };
    if cfg.worker_dir.as_os_str().is_empty() {
        return (
            format!("cannot clean up: {} sets no worker_dir", path.display()),
            false,
        );
    }
    match worker::cleanup_leftovers(&cfg) {
        Ok(summary) => (summary, true),
        Err(e) => (format!("cleanup failed: {e}"), false),
    }
}

/// Prints a line of the report. A reader that went away (`admin kill | head -1`) must not stop
/// the kill half-way, so write errors are ignored, unlike `println!`'s panic.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}
