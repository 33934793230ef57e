//! Cold start: a new sandbox for a lambda, connected and ready to take its first call.
//!
//! Steps, in order:
//! 1. the lambda's packages (only with a requirement file), without holding a capacity permit:
//!    an install may take minutes;
//! 2. a capacity permit ([`super::capacity`]), evicting if needed; for a GPU function, a GPU
//!    slot too (`gpu_slots.rs`);
//! 3. [`Backend::start`] on the blocking pool (the real backend: scratch directory, socket, a
//!    fork from a zygote or a fresh sandbox);
//! 4. the sandbox enters the live table as `starting`, with its connection and the read end
//!    of its output pipe registered with the runtime's reactor.

use std::sync::Arc;
use std::time::Instant;

use tokio::net::UnixStream;

use crate::logs::Capture;
use crate::manager::backend::{
    Backend, LambdaRef, SandboxHandle, StartError, StartRequest, StartSteps,
};
use crate::manager::error::RunError;
use crate::manager::instance::{Instance, LiveInfo, SandboxState};
use crate::manager::Manager;
use crate::timings::Phase;

impl<B: Backend> Manager<B> {
    /// Starts a sandbox for `lambda` (see the module docs).
    pub(crate) async fn cold_start(
        self: &Arc<Self>,
        lambda: &LambdaRef,
    ) -> Result<Instance<B::Sandbox>, RunError> {
        // 1. Packages.
        let t = Instant::now();
        let packages = if lambda.handler.version.has_requirements() {
            let (this, l) = (Arc::clone(self), lambda.clone());
            tokio::task::spawn_blocking(move || this.backend.packages(&l))
                .await
                .map_err(|source| RunError::Task {
                    what: "package",
                    source,
                })??
        } else {
            Vec::new()
        };
        self.timings.record(Phase::Packages, t.elapsed());
        // 2. Capacity.
        let t = Instant::now();
        let permit = self.acquire_capacity().await?;
        self.capacity.started(lambda.limits.memory_mb);
        let gpu_slot = match lambda.setup.gpu {
            Some(_) => Some(self.acquire_gpu().await?),
            None => None,
        };
        self.timings.record(Phase::Capacity, t.elapsed());
        // 3. The sandbox.
        let id = self.next_id();
        let started = Instant::now();
        let (this, l) = (Arc::clone(self), lambda.clone());
        let spawned = tokio::task::spawn_blocking(move || {
            this.backend.start(&StartRequest {
                id,
                lambda: &l,
                packages: &packages,
            })
        })
        .await
        .map_err(|source| RunError::Task {
            what: "sandbox start",
            source,
        })?
        .map_err(|source| RunError::StartFailed {
            lambda: lambda.name.to_string(),
            id,
            source,
        })?;
        self.timings.record(Phase::Spawn, started.elapsed());
        match spawned.steps {
            StartSteps::Forked(took) => self.timings.record(Phase::SpawnZygote, took),
            StartSteps::Fresh(steps) => {
                self.timings.record(Phase::SpawnCgroup, steps.cgroup);
                self.timings
                    .record(Phase::SpawnPrepareClone, steps.prepare_clone);
                self.timings
                    .record(Phase::SpawnChildSetupExec, steps.child_setup_exec);
            }
        }
        // 4. Registered.
        let sandbox = spawned.sandbox;
        let capture = Capture::new(
            spawned.output,
            Arc::clone(&self.logs),
            Arc::from(lambda.name.as_str()),
            Arc::from(sandbox.cgroup()),
            self.cfg.function_log_call_bytes,
        )
        .map_err(StartError::RegisterOutput);
        let registered = UnixStream::from_std(spawned.conn)
            .map_err(StartError::Register)
            .and_then(|conn| Ok((conn, capture?)));
        let (conn, capture) = match registered {
            Ok(both) => both,
            Err(source) => {
                self.live.destroy(sandbox, id, Some(permit), gpu_slot);
                return Err(RunError::StartFailed {
                    lambda: lambda.name.to_string(),
                    id,
                    source,
                });
            }
        };
        let pid = sandbox.pid();
        self.live.insert(LiveInfo {
            lambda: lambda.name.to_string(),
            id,
            state: SandboxState::Starting,
            pid,
            uptime_s: 0.0,
            calls: 0,
            provisioned: false,
            created: Instant::now(),
            cgroup: sandbox.cgroup().to_owned(),
        });
        tracing::debug!(lambda = %lambda.name, sandbox = id, pid, spawn_ms = started.elapsed().as_secs_f64() * 1e3, "sandbox started");
        let mut inst = Instance::new(
            id,
            lambda.handler.version,
            sandbox,
            conn,
            capture,
            permit,
            Arc::clone(&self.live),
        );
        inst.gpu_slot = gpu_slot;
        Ok(inst)
    }
}
