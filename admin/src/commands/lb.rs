//! `admin lb -cluster DIR --port L [--host H] [--workers HOST:PORT[:AGENT],...] [--balance
//! consistent|roundrobin] [--hash-balance-factor F]`: runs HAProxy in front of the cluster's
//! workers (`docs/scale-out.md`).
//!
//! In order: refuse if the cluster's balancer runs (`logs/lb.pid`) or the port is taken; find
//! the workers (`--workers`, else each `config/worker-N.json` with its agent port); write
//! `config/haproxy.cfg` ([`admin::balancer::render`]) and have `haproxy -c` check it; start
//! `haproxy -W -db -f config/haproxy.cfg` in a new session, output appended to `logs/lb.out`;
//! write `logs/lb.pid` and `config/lb.json` (what `admin status` shows); wait until `GET /status`
//! through the balancer answers 200. If it does not, HAProxy is stopped again and the error
//! shows the last lines of its log.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use admin::balancer::{self, Backend, Balance, Spec};
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use worker::config::Config;

use super::local_host;
use crate::background::{self, log_tail, port_in_use, stop_child, Spawned};
use crate::cluster_dir::ClusterDir;
use crate::process;

/// How long the balancer may take to answer `/status` through a worker.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Lines of the log shown when it fails to start.
const LOG_TAIL_LINES: usize = 20;
/// Where Debian's package puts HAProxy, when it is not on `PATH`.
const HAPROXY_FALLBACK: &str = "/usr/sbin/haproxy";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cluster directory
    #[arg(long, value_name = "DIR")]
    pub cluster: PathBuf,
    /// The port the balancer listens on
    #[arg(long, value_name = "L", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// The address it listens on; 0.0.0.0 (or ::) serves other hosts too
    #[arg(long, value_name = "HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Workers on other hosts (or here), HOST:PORT[:AGENT_PORT],... [default: this cluster's
    /// workers, from config/worker-N.json]
    #[arg(long, value_name = "LIST")]
    pub workers: Option<String>,
    /// How calls are spread over the workers
    #[arg(long, value_enum, default_value_t = Balance::Consistent)]
    pub balance: Balance,
    /// A worker takes at most this percent of the average load before a function spills to
    /// the next worker (bounded-load consistent hashing; 0: no bound)
    #[arg(long, value_name = "F", default_value_t = 150,
          value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub hash_balance_factor: u32,
}

/// `config/lb.json`: what the running balancer was started with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LbRecord {
    pub host: IpAddr,
    pub port: u16,
    pub balance: String,
    pub hash_balance_factor: u32,
    /// `name address [agent port]` per worker.
    pub workers: Vec<String>,
}

impl LbRecord {
    /// The record of `cluster`, if `admin lb` wrote one.
    pub fn load(cluster: &ClusterDir) -> anyhow::Result<Option<Self>> {
        let path = record_path(cluster);
        match worker::files::read_regular_file(&path, 64 * 1024) {
            Ok(Some(text)) => serde_json::from_str(&text)
                .map(Some)
                .with_context(|| format!("invalid {}", path.display())),
            Ok(None) => Ok(None),
            Err(e) => bail!("cannot read {}: {e}", path.display()),
        }
    }
}

/// `config/lb.json`.
pub fn record_path(cluster: &ClusterDir) -> PathBuf {
    cluster.root().join("config").join("lb.json")
}

/// `logs/lb.pid`.
pub fn pid_path(cluster: &ClusterDir) -> PathBuf {
    cluster.root().join("logs").join("lb.pid")
}

/// `logs/lb.sock`: HAProxy's runtime API.
pub fn socket_path(cluster: &ClusterDir) -> PathBuf {
    cluster.root().join("logs").join("lb.sock")
}

/// True if `/proc/<pid>/cmdline` is HAProxy run with `config`.
pub fn is_balancer_process(pid: i32, config: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        let mut args = c.split(|b| *b == 0);
        let exe_is_haproxy = args
            .next()
            .is_some_and(|a| Path::new(std::ffi::OsStr::from_bytes(a)).ends_with("haproxy"));
        exe_is_haproxy && args.any(|a| a == config.as_os_str().as_bytes())
    })
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let cluster = ClusterDir::open(&args.cluster)?;
    let template = Config::load(&cluster.template())?;
    let cfg_path = cluster.root().join("config").join("haproxy.cfg");
    let pid_file = pid_path(&cluster);
    if let Some(pid) = process::read_pid_file(&pid_file)? {
        if process::is_alive(pid) && is_balancer_process(pid, &cfg_path) {
            bail!(
                "the balancer is already running (pid {pid}, {}); stop it first with `admin kill -cluster={}`",
                pid_file.display(),
                cluster.root().display()
            );
        }
        process::remove_pid_file(&pid_file)?;
    }
    let bind = SocketAddr::new(args.host, args.port);
    if port_in_use(local_host(&args.host.to_string()), args.port) {
        bail!(
            "port {} is already in use; choose another with --port",
            args.port
        );
    }
    let backends = match &args.workers {
        Some(list) => {
            let offset = (template.agent_port != 0)
                .then(|| i32::from(template.agent_port) - i32::from(template.worker_port));
            balancer::parse_workers(list, offset)?
        }
        None => local_workers(&cluster)?,
    };
    let haproxy = haproxy_binary()?;
    let spec = Spec {
        bind,
        backends: backends.clone(),
        balance: args.balance,
        balance_factor: args.hash_balance_factor,
        call_timeout_s: template.timeout_s,
        stats_socket: socket_path(&cluster),
        discovery: None,
    };
    std::fs::write(&cfg_path, balancer::render(&spec))
        .with_context(|| format!("cannot write {}", cfg_path.display()))?;
    let check = Command::new(&haproxy)
        .args(["-c", "-q", "-f"])
        .arg(&cfg_path)
        .output()
        .with_context(|| format!("cannot run {}", haproxy.display()))?;
    if !check.status.success() {
        bail!(
            "haproxy refused {}: {}",
            cfg_path.display(),
            String::from_utf8_lossy(&check.stderr).trim()
        );
    }

    let log_path = cluster.root().join("logs").join("lb.out");
    let started = Instant::now();
    let Spawned {
        mut child,
        log_start,
    } = background::spawn(
        &haproxy,
        &[
            "-W".into(),
            "-db".into(),
            "-f".into(),
            cfg_path.clone().into(),
        ],
        &log_path,
        &format!("admin lb: HAProxy on {bind}"),
    )?;
    let pid = child.id();
    if let Err(e) = process::write_pid_file(&pid_file, pid) {
        stop_child(&mut child);
        return Err(e);
    }
    let host = local_host(&args.host.to_string()).to_owned();
    let ready = background::poll_ready(
        &mut child,
        &host,
        args.port,
        READY_TIMEOUT,
        || format!("a worker answering /status through port {}", args.port),
        |r| r.status == 200,
    );
    if let Err(e) = ready {
        stop_child(&mut child);
        let _ = process::remove_pid_file(&pid_file);
        let tail = log_tail(&log_path, log_start, LOG_TAIL_LINES);
        bail!(
            "the balancer did not come up: {e} (are the workers running?); last lines of {}:\n{tail}",
            log_path.display()
        );
    }
    let record = LbRecord {
        host: args.host,
        port: args.port,
        balance: format!("{:?}", args.balance).to_lowercase(),
        hash_balance_factor: args.hash_balance_factor,
        workers: backends.iter().map(describe).collect(),
    };
    let path = record_path(&cluster);
    std::fs::write(&path, serde_json::to_vec_pretty(&record)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "lb: pid {pid}, http://{host}:{} => {} worker(s), balance {} in {:.2} s (config: {}, log: {})",
        args.port,
        backends.len(),
        record.balance,
        started.elapsed().as_secs_f64(),
        cfg_path.display(),
        log_path.display()
    );
    Ok(())
}

/// `worker-0 127.0.0.1:5000 agent 6000`.
fn describe(b: &Backend) -> String {
    match b.agent_port {
        Some(a) => format!("{} {} agent {a}", b.name, b.addr),
        None => format!("{} {}", b.name, b.addr),
    }
}

/// The cluster's workers, from `config/worker-N.json`.
fn local_workers(cluster: &ClusterDir) -> anyhow::Result<Vec<Backend>> {
    let mut out = Vec::new();
    for i in cluster.worker_configs()? {
        let cfg = Config::load(&cluster.worker_config(i))?;
        let host = local_host(&cfg.worker_host);
        let ip: IpAddr = host.parse().with_context(|| {
            format!(
                "worker-{i}: worker_host {:?} is not an IP address; pass --workers",
                cfg.worker_host
            )
        })?;
        out.push(Backend {
            name: format!("worker-{i}"),
            addr: SocketAddr::new(ip, cfg.worker_port),
            agent_port: (cfg.agent_port != 0).then_some(cfg.agent_port),
        });
    }
    if out.is_empty() {
        bail!(
            "{} has no workers: start them with `admin workers -cluster={}`, or pass --workers",
            cluster.root().display(),
            cluster.root().display()
        );
    }
    Ok(out)
}

/// HAProxy's binary: `haproxy` on `PATH`, else Debian's place for it.
fn haproxy_binary() -> anyhow::Result<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("haproxy"))
            .find(|p| p.is_file())
    });
    let found = on_path.or_else(|| {
        let p = PathBuf::from(HAPROXY_FALLBACK);
        p.is_file().then_some(p)
    });
    found.ok_or_else(|| {
        anyhow::anyhow!(
            "haproxy is not installed: run quickstart/deps.sh (or apt-get install haproxy)"
        )
    })
}

/// What `admin status` shows of the balancer: its lines, its JSON, and whether it is fine;
/// `None` when the cluster has none.
pub fn status(cluster: &ClusterDir) -> Option<(Vec<String>, serde_json::Value, bool)> {
    let pid_file = pid_path(cluster);
    let pid = process::read_pid_file(&pid_file).ok().flatten();
    let record = match LbRecord::load(cluster) {
        Ok(r) => r,
        Err(e) => {
            return Some((
                vec![format!("{e:#}")],
                serde_json::json!({"error": format!("{e:#}")}),
                false,
            ))
        }
    };
    let record = match (record, pid) {
        (Some(r), _) => r,
        (None, None) => return None,
        (None, Some(pid)) => {
            let line = format!(
                "pid {pid} in {} but no {}",
                pid_file.display(),
                record_path(cluster).display()
            );
            return Some((
                vec![line.clone()],
                serde_json::json!({"error": line}),
                false,
            ));
        }
    };
    let config = cluster.root().join("config").join("haproxy.cfg");
    let running = pid.filter(|p| process::is_alive(*p) && is_balancer_process(*p, &config));
    let host = local_host(&record.host.to_string()).to_owned();
    let url = format!("http://{host}:{}", record.port);
    let ping = worker::http_client::get(&host, record.port, "/status", Duration::from_secs(3))
        .map_err(|e| worker::http_client::describe_error(&e));
    let ok = running.is_some() && matches!(&ping, Ok(r) if r.status == 200);
    let pid_text = running.map_or_else(|| "- (not running)".to_owned(), |p| p.to_string());
    let mut lines = vec![format!(
        "{} pid={pid_text} balance={} hash-balance-factor={}",
        super::status::url_ping_line(&url, &ping),
        record.balance,
        record.hash_balance_factor
    )];
    let servers = running
        .and_then(|_| show_stat(&socket_path(cluster)).ok())
        .map(|csv| balancer::parse_show_stat(&csv))
        .unwrap_or_default();
    for s in &servers {
        lines.push(format!(
            "  {}  {}  weight={}  in_flight={}  total={}  retries={}  redispatched={}  agent={:?}",
            s.name, s.status, s.weight, s.current, s.total, s.retries, s.redispatches, s.agent
        ));
    }
    let json = serde_json::json!({
        "url": url,
        "pid": running,
        "ok": ok,
        "balance": record.balance,
        "hash_balance_factor": record.hash_balance_factor,
        "workers": record.workers,
        "servers": servers,
    });
    Some((lines, json, ok))
}

/// `show stat` through HAProxy's runtime API socket.
fn show_stat(socket: &Path) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(b"show stat\n")?;
    let mut out = String::new();
    s.take(1 << 20).read_to_string(&mut out)?;
    Ok(out)
}
