//! Sandboxes the benchmark starts itself, with the `sandbox` crate and the worker's own spawn
//! function, without a worker process: the direct-socket row and the churn scenario.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use sandbox::cgroup::{CgroupSetup, Limits};
use sandbox::{Sandbox, SandboxSpec};
use worker::config::Config;
use worker::name::LambdaName;
use worker::runtime_client::{self, Call, Deadline, Reply, RequestId};

use crate::system::{check_answer, System, EVENT};

/// A pseudo-worker directory and cgroup parent for sandboxes started by the bench; everything
/// under them is removed on drop.
#[derive(Debug)]
pub struct Local {
    pub cfg: Config,
    pub cgroups: CgroupSetup,
    hardening: sandbox::Hardening,
    /// The user namespace a worker would give a lambda here (its maps, and the sandbox
    /// user's host uid), when the worker would give one.
    user_ns: Option<(sandbox::IdMap, u32)>,
    next: u64,
}

impl Local {
    /// `cfg` is a worker config whose `worker_dir` exists (from `BenchCluster::worker_config`).
    pub fn new(cfg: Config) -> Result<Self> {
        let cgroups = CgroupSetup::detect().context("cannot find the cgroup hierarchies")?;
        let mut hardening = sandbox::Hardening::new(cfg.sandbox_uid, cfg.sandbox_gid)
            .context("cannot build the sandbox hardening")?;
        let mut user_ns = None;
        if cfg.user_namespaces && sandbox::userns::probe().is_ok() {
            // As the worker does for a lambda: the first lambda slot of the range.
            let ids = worker::identity::HostIds::new(
                cfg.uid_range_start,
                cfg.uid_range_size,
                cfg.lambda_uids(),
            );
            let slot = ids.lambda_slot("bench-direct")?;
            (hardening.uid, hardening.gid) = (slot, slot);
            user_ns = Some((ids.sandbox_map(slot)?, ids.host_id(slot)));
        }
        Ok(Self {
            cfg,
            cgroups,
            hardening,
            user_ns,
            next: 1,
        })
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next;
        self.next += 1;
        id
    }

    fn cgroup(&self, id: u64) -> PathBuf {
        self.cfg.cgroup_parent().join(format!("sb-{id}"))
    }

    /// A lambda sandbox started exactly as the worker starts one, called over its socket.
    pub fn direct(&mut self, name: &str, handler_dir: &Path) -> Result<DirectSystem> {
        let id = self.next_id();
        let scratch = self.cfg.worker_dir.join("direct").join(id.to_string());
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("cannot create {}", scratch.display()))?;
        let owner = self
            .user_ns
            .as_ref()
            .map_or((self.hardening.uid, self.hardening.gid), |(_, host)| {
                (*host, *host)
            });
        std::os::unix::fs::chown(&scratch, Some(owner.0), Some(owner.1))
            .with_context(|| format!("cannot chown {}", scratch.display()))?;
        let lambda = LambdaName::parse(name).map_err(|e| anyhow::anyhow!("{e}"))?;
        let limits = worker::lambda_config::LambdaLimits::defaults(&self.cfg);
        let setup = worker::manager::FunctionSetup::default();
        let env = worker::launch::sandbox_env(&self.cfg, &lambda, &limits, &setup, &[]);
        // The handler prints nothing: its output goes nowhere.
        let devnull = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .context("cannot open /dev/null")?;
        let fresh = worker::launch::FreshSandbox {
            cgroup: self.cgroup(id),
            name: &lambda,
            handler_dir,
            scratch: &scratch,
            packages: &[],
            layers: &[],
            volumes: &[],
            gpu: None,
            base: None,
            env: &env,
            limits: &limits,
            hardening: &self.hardening,
            user_ns: self.user_ns.as_ref().map(|(map, _)| map),
            output: std::os::fd::AsFd::as_fd(&devnull),
        };
        let (sandbox, conn) = worker::launch::spawn_fresh(&self.cfg, &self.cgroups, &fresh)
            .map_err(|e| anyhow::anyhow!("direct sandbox for {name}: {e}"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start a tokio runtime")?;
        let conn = {
            let _guard = rt.enter();
            tokio::net::UnixStream::from_std(conn)
        }
        .with_context(|| format!("connection to the direct sandbox of {name}"))?;
        Ok(DirectSystem { rt, conn, sandbox })
    }

    /// A minimal sandbox (base read-only, `/tmp`, limits as the worker's) running `argv`: what
    /// the churn scenario creates and destroys.
    pub fn spawn_plain(&mut self, argv: &[&str]) -> Result<Sandbox> {
        let id = self.next_id();
        let mut spec = SandboxSpec::builder(&self.cfg.base_dir, self.cgroup(id))
            .tmp_mb(self.cfg.tmp_mb)
            .hostname("lambda")
            .limits(Limits {
                memory_bytes: Some(self.cfg.memory_mb * 1024 * 1024),
                pids_max: Some(self.cfg.max_procs),
                cpu_quota: None,
                devices: None,
            })
            .command(argv.iter().copied())
            .env("PATH", "/usr/bin:/bin")
            .output("/dev/null", "/dev/null");
        if let Some((map, _)) = &self.user_ns {
            spec = spec.user_ns(map.clone());
        }
        let spec = spec.build().context("churn sandbox spec")?;
        Sandbox::spawn(&spec, &self.cgroups, &[]).with_context(|| format!("churn sandbox {id}"))
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        // The worker's own cleanup: kills what is left, removes the cgroup tree and the shared
        // top cgroup when no worker uses it any more.
        if let Err(e) = worker::cleanup::remove_leftovers(&self.cfg, &self.cgroups) {
            eprintln!("bench: cannot remove the bench's sandboxes: {e}");
        }
        if let Err(e) = worker::cleanup::remove_dir_all_if_present(&self.cfg.worker_dir) {
            eprintln!(
                "bench: cannot remove {}: {e}",
                self.cfg.worker_dir.display()
            );
        }
    }
}

/// The direct-socket row: one warm sandbox, one frame per call, through the worker's own
/// runtime client code.
pub struct DirectSystem {
    rt: tokio::runtime::Runtime,
    conn: tokio::net::UnixStream,
    sandbox: Sandbox,
}

impl std::fmt::Debug for DirectSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectSystem")
            .field("pid", &self.sandbox.pid())
            .finish()
    }
}

impl System for DirectSystem {
    fn call(&mut self) -> Result<()> {
        let reply = self.rt.block_on(async {
            let timeout = Duration::from_secs(30);
            let call = Call {
                request_id: &RequestId::new(),
                deadline: Deadline::after(timeout),
            };
            tokio::time::timeout(
                timeout,
                runtime_client::call(&mut self.conn, &call, EVENT.as_bytes()),
            )
            .await
        });
        match reply {
            Ok(Ok(Reply::Ok(body))) => check_answer("direct socket", &body),
            Ok(Ok(other)) => anyhow::bail!("direct socket: the handler failed: {other:?}"),
            Ok(Err(e)) => anyhow::bail!("direct socket: {e}"),
            Err(_) => anyhow::bail!("direct socket: no answer within 30 s"),
        }
    }
}

impl Drop for DirectSystem {
    fn drop(&mut self) {
        if let Err(e) = self.sandbox.destroy() {
            eprintln!("bench: cannot destroy the direct sandbox: {e}");
        }
    }
}
