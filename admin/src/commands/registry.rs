//! `admin registry -cluster DIR --port P --access-key K --secret-key S [--host H]
//! [--foreground]`: starts the cluster's registry server in the background (or, with
//! `--foreground`, serves in this process) and points the cluster's template at it.
//!
//! In order: check the keys; refuse if a registry server of this cluster runs (its pid file or
//! any `admin registry-exec` naming the cluster) or the port is taken; write
//! `config/credentials.json` (0600), `config/registry.json` (host and port) and the template's
//! `registry` (the server's URL) and `credentials_file`; start `admin registry-exec
//! -cluster DIR` in a new session, output appended to `logs/registry.out`; write
//! `logs/registry.pid`; wait until `GET /status` answers 200. If the server does not come up,
//! it is stopped, its pid file removed and the three files put back as they were; the error
//! shows the last lines of its log.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use worker::aws::Credentials;
use worker::config::{Config, RegistryKind};

use crate::background::{self, log_tail, port_in_use, stop_child, Spawned};
use crate::cluster_dir::ClusterDir;
use crate::process;
use crate::registry_record::RegistryRecord;

/// How long the server may take to answer `/status`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of the log shown when it fails to start.
const LOG_TAIL_LINES: usize = 20;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cluster directory
    #[arg(long, value_name = "DIR")]
    pub cluster: PathBuf,
    /// The port to listen on
    #[arg(long, value_name = "P", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// The access key clients sign with (3 to 128 printable characters)
    #[arg(long, value_name = "KEY")]
    pub access_key: String,
    /// The secret key clients sign with (8 to 128 printable characters)
    #[arg(long, value_name = "SECRET")]
    pub secret_key: String,
    /// The address to listen on; 0.0.0.0 (or ::) serves other hosts too
    #[arg(long, value_name = "HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Run the server in the foreground, logging to stderr, until SIGTERM or SIGINT (for
    /// containers and supervisors)
    #[arg(long)]
    pub foreground: bool,
}

/// What a failed start puts back.
#[derive(Debug)]
struct Saved {
    template: Config,
    credentials: Option<Vec<u8>>,
    record: Option<Vec<u8>>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let cluster = ClusterDir::open(&args.cluster)?;
    let template = Config::load(&cluster.template())?;
    let creds = Credentials::new(&args.access_key, &args.secret_key)?;
    let record = RegistryRecord::new(&args.host, args.port)?;
    refuse_if_running(&cluster)?;
    if port_in_use(record.reach_host(), record.port) {
        bail!(
            "port {} is already in use on {}; choose another with --port P",
            record.port,
            record.host
        );
    }
    let saved = Saved {
        template: template.clone(),
        credentials: read_optional(&cluster.credentials())?,
        record: read_optional(&cluster.registry_record())?,
    };
    let url = record.url();
    if let Err(e) = write_settings(&cluster, &template, &creds, &record) {
        restore(&cluster, &saved);
        return Err(e);
    }
    if args.foreground {
        return run_foreground(&cluster, &url, &saved);
    }
    match start(&cluster, &record) {
        Ok((pid, elapsed)) => {
            println!(
                "registry: pid {pid}, {url}/status => ready in {:.2} s (log: {})",
                elapsed.as_secs_f64(),
                cluster.registry_log().display()
            );
            println!(
                "updated {}: registry=\"{url}\", credentials_file=\"{}\"",
                cluster.template().display(),
                cluster.credentials().display()
            );
            if is_loopback(&record.host) {
                println!(
                    "note: it serves this machine only; to serve other hosts, start it with --host 0.0.0.0"
                );
            }
            if !cluster.worker_configs()?.is_empty() {
                println!(
                    "note: workers read the template when started: workers started before this one still use the local registry"
                );
            }
            Ok(())
        }
        Err(e) => {
            restore(&cluster, &saved);
            Err(e)
        }
    }
}

/// `--foreground`: serves in this process (its pid in `logs/registry.pid` while it runs). If
/// the server cannot start, the settings are put back as they were.
fn run_foreground(cluster: &ClusterDir, url: &str, saved: &Saved) -> anyhow::Result<()> {
    let pid_file = cluster.registry_pid_file();
    if let Err(e) = process::write_pid_file(&pid_file, std::process::id()) {
        restore(cluster, saved);
        return Err(e);
    }
    eprintln!(
        "registry: serving {url} in the foreground; updated {}",
        cluster.template().display()
    );
    let result = super::registry_exec::run(&super::registry_exec::Args {
        cluster: cluster.root().to_owned(),
    });
    let _ = process::remove_pid_file(&pid_file);
    result
}

/// Refuses when a registry server of this cluster is alive; removes a stale pid file.
fn refuse_if_running(cluster: &ClusterDir) -> anyhow::Result<()> {
    let pid_file = cluster.registry_pid_file();
    if let Some(pid) = process::read_pid_file(&pid_file)? {
        // Not this process: a container restarted keeps the pid file of its last run, often
        // with the same pid.
        let this = u32::try_from(pid).ok() == Some(std::process::id());
        if !this && process::is_alive(pid) && process::is_registry_process(pid) {
            bail!(
                "the registry server is already running (pid {pid}, {}); stop it first with `admin kill -cluster={}`",
                pid_file.display(),
                cluster.root().display()
            );
        }
        process::remove_pid_file(&pid_file)?;
    }
    if let Some(pid) = process::registries_serving(cluster.root()).first() {
        bail!(
            "a registry server of this cluster is already running (pid {pid}, started by hand); stop it first with `admin kill -cluster={}`",
            cluster.root().display()
        );
    }
    Ok(())
}

/// A file's bytes, `None` if it does not exist.
fn read_optional(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes the credentials, the record and the template's two keys.
fn write_settings(
    cluster: &ClusterDir,
    template: &Config,
    creds: &Credentials,
    record: &RegistryRecord,
) -> anyhow::Result<()> {
    creds.save(&cluster.credentials())?;
    record.save(&cluster.registry_record())?;
    let mut cfg = template.clone();
    cfg.registry = RegistryKind::parse(&record.url()).map_err(anyhow::Error::msg)?;
    cfg.credentials_file = cluster.credentials();
    cfg.save(&cluster.template())?;
    Ok(())
}

/// Puts the template, credentials and record back as they were before this command; problems
/// are reported on stderr (the start's own error is the one returned).
fn restore(cluster: &ClusterDir, saved: &Saved) {
    if let Err(e) = saved.template.save(&cluster.template()) {
        eprintln!(
            "admin: could not restore {}: {e}",
            cluster.template().display()
        );
    }
    for (path, old) in [
        (cluster.credentials(), &saved.credentials),
        (cluster.registry_record(), &saved.record),
    ] {
        let result = match old {
            Some(bytes) => write_private(&path, bytes),
            None => remove_if_present(&path),
        };
        if let Err(e) = result {
            eprintln!("admin: could not restore {}: {e:#}", path.display());
        }
    }
}

/// Whether `host` names this machine only.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

/// Writes `bytes` to `path` as a 0600 file, atomically.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Starts `admin registry-exec` and waits until it answers; returns its pid and how long that
/// took.
fn start(cluster: &ClusterDir, record: &RegistryRecord) -> anyhow::Result<(u32, Duration)> {
    let exe = std::env::current_exe().context("cannot locate the admin binary")?;
    let mut cluster_arg = std::ffi::OsString::from("--cluster=");
    cluster_arg.push(cluster.root());
    let log_path = cluster.registry_log();
    let started = Instant::now();
    let Spawned {
        mut child,
        log_start,
    } = background::spawn(
        &exe,
        &["registry-exec".into(), cluster_arg],
        &log_path,
        &format!(
            "admin registry: starting the registry server on {}:{}",
            record.host, record.port
        ),
    )?;
    let pid = child.id();
    let pid_file = cluster.registry_pid_file();
    if let Err(e) = process::write_pid_file(&pid_file, pid) {
        stop_child(&mut child);
        return Err(e);
    }
    match wait_ready(&mut child, record) {
        Ok(()) => Ok((pid, started.elapsed())),
        Err(reason) => {
            stop_child(&mut child);
            let _ = process::remove_pid_file(&pid_file);
            let tail = log_tail(&log_path, log_start, LOG_TAIL_LINES);
            bail!(
                "the registry server {reason}; last lines of {}:\n{tail}",
                log_path.display()
            )
        }
    }
}

/// Polls `/status` until it answers 200, the child exits, or [`READY_TIMEOUT`] passes.
fn wait_ready(child: &mut Child, record: &RegistryRecord) -> Result<(), background::NotReady> {
    background::poll_ready(
        child,
        record.reach_host(),
        record.port,
        READY_TIMEOUT,
        || format!("{}/status", record.url()),
        |r| r.status == 200,
    )
}
