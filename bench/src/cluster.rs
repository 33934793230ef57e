//! The benchmark's own temporary cluster and worker processes.
//!
//! The cluster is made by the same code as `admin new` (so it shares the base cache); each
//! scenario starts a fresh `worker` process on it (the release binary, as users run it) with a
//! config of its own, and stops it with SIGTERM afterwards.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use admin::cluster::{create_cluster, CreateOptions};
use anyhow::{bail, Context, Result};
use worker::config::Config;

/// The hello handler every system runs.
pub const HELLO: &str =
    "def handler(event):\n    return \"Hello, %s!\" % event.get(\"name\", \"World\")\n";

/// A temporary cluster, removed on drop.
#[derive(Debug)]
pub struct BenchCluster {
    /// The temporary directory holding the cluster and the bench's scratch space.
    pub root: PathBuf,
    /// The cluster directory (`root/cluster`).
    pub dir: PathBuf,
    template: Config,
    worker_bin: PathBuf,
    next_worker: u32,
}

impl BenchCluster {
    /// Creates the cluster under a new directory in `parent` (the base comes from the cache,
    /// built first if missing).
    pub fn create(parent: &Path, worker_bin: &Path) -> Result<Self> {
        if !worker_bin.is_file() {
            bail!(
                "worker binary {} not found (build it with `cargo build --release -p worker`)",
                worker_bin.display()
            );
        }
        let root = parent.join(format!("lambdaworker-bench-{}", std::process::id()));
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        let dir = root.join("cluster");
        let mut me = Self {
            root: root.clone(),
            dir: dir.clone(),
            template: Config::default(),
            worker_bin: worker_bin.to_owned(),
            next_worker: 0,
        };
        create_cluster(&dir, &CreateOptions::default())
            .with_context(|| format!("cannot create the cluster {}", dir.display()))?;
        me.template = Config::load(&dir.join("config/template.json"))?;
        Ok(me)
    }

    /// The cluster's worker template (`config/template.json`).
    pub fn template(&self) -> &Config {
        &self.template
    }

    pub fn base(&self) -> PathBuf {
        self.dir.join("base")
    }

    pub fn registry(&self) -> PathBuf {
        self.dir.join("registry")
    }

    /// Writes the hello handler as `registry/<name>`.
    pub fn add_hello(&self, name: &str) -> Result<PathBuf> {
        let d = self.registry().join(name);
        std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        let f = d.join("lambda_func.py");
        std::fs::write(&f, HELLO).with_context(|| format!("cannot write {}", f.display()))?;
        Ok(d)
    }

    /// Writes a function of the given files (name, text) into the registry.
    pub fn add_files(&self, name: &str, files: &[(&str, &str)]) -> Result<PathBuf> {
        let d = self.registry().join(name);
        std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        for (file, text) in files {
            let f = d.join(file);
            std::fs::write(&f, text).with_context(|| format!("cannot write {}", f.display()))?;
        }
        Ok(d)
    }

    /// A config for a new worker directory, with `patch` (JSON) merged over the template.
    pub fn worker_config(&mut self, patch: &serde_json::Value) -> Result<Config> {
        let mut cfg = self.template.merge_json(&patch.to_string())?;
        cfg.worker_dir = self
            .dir
            .join("workers")
            .join(format!("worker-{}", self.next_worker));
        self.next_worker += 1;
        std::fs::create_dir_all(&cfg.worker_dir)
            .with_context(|| format!("cannot create {}", cfg.worker_dir.display()))?;
        Ok(cfg)
    }

    /// Starts a worker process with `patch` merged over the template; waits until it is ready.
    pub fn start_worker(&mut self, patch: &serde_json::Value) -> Result<WorkerProc> {
        let mut cfg = self.worker_config(patch)?;
        cfg.worker_port = free_port()?;
        let config_path = cfg.worker_dir.join("config.json");
        cfg.save(&config_path)?;
        let log_path = cfg.worker_dir.join("worker.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let log_err = log.try_clone()?;
        let child = Command::new(&self.worker_bin)
            .arg(format!("--config={}", config_path.display()))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .with_context(|| format!("cannot start {}", self.worker_bin.display()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], cfg.worker_port));
        let mut proc = WorkerProc {
            child: Some(child),
            addr,
            cfg,
            log: log_path,
        };
        proc.wait_ready(Duration::from_secs(30))?;
        Ok(proc)
    }
}

impl Drop for BenchCluster {
    fn drop(&mut self) {
        if let Err(e) = worker::cleanup::remove_dir_all_if_present(&self.root) {
            eprintln!("bench: cannot remove {}: {e}", self.root.display());
        }
    }
}

/// A free TCP port on loopback (bound and released; the worker binds it right after).
fn free_port() -> Result<u16> {
    let l = TcpListener::bind(("127.0.0.1", 0)).context("cannot find a free port")?;
    Ok(l.local_addr()?.port())
}

/// A running worker process; stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct WorkerProc {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub cfg: Config,
    log: PathBuf,
}

impl WorkerProc {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "the worker exited ({status}) before it was ready; its log:\n{}",
                        self.log_tail()
                    );
                }
            }
            if let Ok(mut s) = std::net::TcpStream::connect(self.addr) {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                if s.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .is_ok()
                {
                    let mut answer = String::new();
                    let _ = s.read_to_string(&mut answer);
                    if answer.starts_with("HTTP/1.1 200") {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the worker at {} was not ready within {limit:?}; its log:\n{}",
                    self.addr,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the worker (SIGTERM, then SIGKILL after 20 s) and checks it exited cleanly.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!(
                        "the worker exited with {status}; its log:\n{}",
                        self.log_tail()
                    );
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the worker did not stop within 20 s after SIGTERM; killed it");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("bench: {e:#}");
        }
    }
}
