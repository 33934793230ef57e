//! `admin workers -cluster DIR [--num-workers N] [--port P] [--skip-checks] [--foreground]`:
//! starts N workers in the background (or, with `--foreground`, runs one in this process).
//!
//! First the quick checks of `admin doctor` (kernel, cgroups, base; `--skip-checks` skips
//! them): a failure refuses before anything starts. Then for worker i, in order: refuse if
//! `logs/worker-i.pid` names a live worker; write `config/worker-i.json` (template +
//! `worker_dir` + port P+i + `log_file` `logs/worker-i.out`, which the worker rotates by size);
//! create `workers/worker-i/`; refuse if the port is taken; start `admin worker-exec
//! --config=...` in a new session (it survives the terminal) with output appended to
//! `logs/worker-i.out`; write `logs/worker-i.pid`; wait until `GET /status` answers `ready`. If
//! a worker fails, it and the workers this command already started are stopped again, and the
//! error shows the last lines of its log.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use worker::config::Config;

use super::local_host;
use super::status::parse_stats;
use crate::background::{self, log_tail, port_in_use, stop_child, Spawned};
use crate::cluster_dir::ClusterDir;
use crate::process;
use worker::http_client as http;

/// How long a worker may take to answer `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of the worker's log shown when it fails to start.
const LOG_TAIL_LINES: usize = 20;

/// The cluster's workers: which cluster, how many, from which port (shared with
/// `install-service`).
#[derive(Debug, clap::Args)]
pub struct Fleet {
    /// The cluster directory
    #[arg(long, value_name = "DIR")]
    pub cluster: PathBuf,
    /// How many workers (on ports P, P+1, ...)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub num_workers: u16,
    /// Port of the first worker [default: the template's worker_port]
    #[arg(long, value_name = "P")]
    pub port: Option<u16>,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub fleet: Fleet,
    /// Start without the host checks of admin doctor that run first (kernel, cgroups, base)
    #[arg(long)]
    pub skip_checks: bool,
    /// Run the one worker in the foreground, logging to stderr, until SIGTERM or SIGINT (for
    /// containers and supervisors: `admin worker-exec` with the config this writes)
    #[arg(long)]
    pub foreground: bool,
}

/// A worker started by this command.
#[derive(Debug)]
struct Started {
    index: u32,
    child: Child,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let cluster = ClusterDir::open(&args.fleet.cluster)?;
    let template = Config::load(&cluster.template())?;
    let first_port = args.fleet.port.unwrap_or(template.worker_port);
    if first_port == 0 {
        bail!(
            "worker_port is 0 in {}: pass --port P",
            cluster.template().display()
        );
    }
    if args.foreground && args.fleet.num_workers != 1 {
        bail!("--foreground runs one worker: leave out --num-workers (or pass 1)");
    }
    if !args.skip_checks {
        super::doctor::before_workers(&cluster, &template)?;
    }
    if args.foreground {
        return run_foreground(&cluster, &template, first_port);
    }
    let exe = std::env::current_exe().context("cannot locate the admin binary")?;
    let mut started: Vec<Started> = Vec::new();
    for i in 0..u32::from(args.fleet.num_workers) {
        match start_worker(&cluster, &template, &exe, i, first_port) {
            Ok(s) => started.push(s),
            Err(e) => {
                for mut s in started.into_iter().rev() {
                    stop_child(&mut s.child);
                    let _ = process::remove_pid_file(&cluster.pid_file(s.index));
                    eprintln!("admin: stopped worker-{} again", s.index);
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

/// `--foreground`: writes `config/worker-0.json` (log to stderr) and runs that worker in this
/// process, with this process's pid in `logs/worker-0.pid` while it runs.
fn run_foreground(cluster: &ClusterDir, template: &Config, port: u16) -> anyhow::Result<()> {
    let pid_file = cluster.pid_file(0);
    if let Some(pid) = process::read_pid_file(&pid_file)? {
        if u32::try_from(pid).ok() != Some(std::process::id())
            && process::is_alive(pid)
            && process::is_worker_process(pid)
        {
            bail!(
                "worker-0 is already running (pid {pid}, {}); stop it first with `admin kill -cluster={}`",
                pid_file.display(),
                cluster.root().display()
            );
        }
    }
    let (cfg, cfg_path) = write_config(cluster, template, 0, port, Output::Stderr)?;
    if port_in_use(local_host(&cfg.worker_host), port) {
        bail!("worker-0: port {port} is already in use; choose another with --port P");
    }
    process::write_pid_file(&pid_file, std::process::id())?;
    let result = super::worker_exec::run(&super::worker_exec::Args { config: cfg_path });
    let _ = process::remove_pid_file(&pid_file);
    result
}

fn start_worker(
    cluster: &ClusterDir,
    template: &Config,
    exe: &Path,
    i: u32,
    first_port: u16,
) -> anyhow::Result<Started> {
    let name = format!("worker-{i}");
    let port = port_of(i, first_port)?;
    let pid_file = cluster.pid_file(i);
    if let Some(pid) = process::read_pid_file(&pid_file)? {
        if process::is_alive(pid) && process::is_worker_process(pid) {
            bail!(
                "{name} is already running (pid {pid}, {}); stop it first with `admin kill -cluster={}`",
                pid_file.display(),
                cluster.root().display()
            );
        }
        process::remove_pid_file(&pid_file)?;
    }

    let (cfg, cfg_path) = write_config(cluster, template, i, port, Output::LogFile)?;

    let host = local_host(&cfg.worker_host).to_owned();
    if port_in_use(&host, port) {
        bail!("{name}: port {port} is already in use; choose other ports with --port P");
    }

    let log_path = cluster.log_file(i);
    let mut config_arg = OsString::from("--config=");
    config_arg.push(&cfg_path);
    let started = Instant::now();
    let Spawned {
        mut child,
        log_start,
    } = background::spawn(
        exe,
        &["worker-exec".into(), config_arg],
        &log_path,
        &format!("admin workers: starting {name} on port {port}"),
    )?;
    let pid = child.id();
    if let Err(e) = process::write_pid_file(&pid_file, pid) {
        stop_child(&mut child);
        return Err(e);
    }

    match wait_ready(&mut child, &host, port) {
        Ok(()) => {
            println!(
                "{name}: pid {pid}, http://localhost:{port}/status => ready in {:.2} s (log: {})",
                started.elapsed().as_secs_f64(),
                log_path.display()
            );
            Ok(Started { index: i, child })
        }
        Err(reason) => {
            stop_child(&mut child);
            let _ = process::remove_pid_file(&pid_file);
            let tail = log_tail(&log_path, log_start, LOG_TAIL_LINES);
            bail!(
                "{name} {reason}; last lines of {}:\n{tail}",
                log_path.display()
            )
        }
    }
}

/// Where a worker's log goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// `logs/worker-i.out`, rotated by the worker (`admin workers`), unless the template names
    /// a `log_file`.
    LogFile,
    /// stderr, which systemd hands to its journal (`admin install-service`), unless the template
    /// names a `log_file`.
    Stderr,
}

/// Writes `config/worker-i.json`: the template with `worker_dir`, `port`, the cluster's places
/// for handler logs and the lambda uid table, and the log file per `output`; creates the
/// worker's directory. The config and its path.
pub fn write_config(
    cluster: &ClusterDir,
    template: &Config,
    i: u32,
    port: u16,
    output: Output,
) -> anyhow::Result<(Config, PathBuf)> {
    let name = format!("worker-{i}");
    let mut cfg = template.clone();
    cfg.worker_dir = cluster.worker_dir(i);
    cfg.worker_port = port;
    if template.agent_port != 0 {
        // The agent keeps the template's distance from the HTTP port (`docs/scale-out.md`).
        let offset = i32::from(template.agent_port) - i32::from(template.worker_port);
        cfg.agent_port = u16::try_from(i32::from(port) + offset)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| anyhow!("{name}: agent port {port} + {offset} is not a valid port"))?;
    }
    if cfg.function_log_dir.as_os_str().is_empty() {
        // A template from before handler logs: the cluster's place for them.
        cfg.function_log_dir = cluster.root().join("logs").join("functions");
    }
    if cfg.bases_dir.as_os_str().is_empty() {
        cfg.bases_dir = cluster.root().join("bases");
    }
    if cfg.volumes_dir.as_os_str().is_empty() {
        // A template from before volumes: every worker shares the cluster's.
        cfg.volumes_dir = cluster.root().join("volumes");
    }
    if cfg.log_file.as_os_str().is_empty() && output == Output::LogFile {
        // The worker writes and rotates the log this command starts it with.
        cfg.log_file = cluster.log_file(i);
    }
    if cfg.lambda_uids_file.as_os_str().is_empty() {
        // One table for the cluster: a lambda acts as the same host uid on every worker.
        cfg.lambda_uids_file = cluster.root().join("workers").join("lambda-uids");
    }
    std::fs::create_dir_all(&cfg.worker_dir)
        .with_context(|| format!("cannot create {}", cfg.worker_dir.display()))?;
    let cfg_path = cluster.worker_config(i);
    cfg.validate_for_worker()
        .with_context(|| format!("{name} (from {})", cluster.template().display()))?;
    cfg.save(&cfg_path)?;
    Ok((cfg, cfg_path))
}

/// The port of worker `i` when the first has `first_port`.
pub fn port_of(i: u32, first_port: u16) -> anyhow::Result<u16> {
    u16::try_from(i)
        .ok()
        .and_then(|i| first_port.checked_add(i))
        .ok_or_else(|| anyhow!("worker-{i}: port {first_port} + {i} is not a valid port"))
}

/// Polls `/status` until it answers 200 `ready`, the child exits, or [`READY_TIMEOUT`] passes;
/// then checks with `/stats` that the answer came from our child.
fn wait_ready(child: &mut Child, host: &str, port: u16) -> Result<(), String> {
    background::poll_ready(
        child,
        host,
        port,
        READY_TIMEOUT,
        || format!("ready on port {port}"),
        |r| r.status == 200 && r.body.trim() == "ready",
    )
    .map_err(|e| e.to_string())?;
    let ours = i64::from(child.id());
    match http::get(host, port, "/stats", Duration::from_secs(3)) {
        Ok(r) if r.status == 200 => match parse_stats(&r.body)
            .ok()
            .and_then(|s| s.worker)
            .and_then(|w| w.pid)
        {
            Some(pid) if pid != ours => Err(format!(
                "is not the process answering on port {port} (pid {pid} is)"
            )),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}
