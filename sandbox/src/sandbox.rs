//! The sandbox handle: spawn, pause, unpause, stats and idempotent destroy.
//!
//! Contract: [`Sandbox::destroy`] kills every process of the sandbox, reaps the first one, and
//! removes the cgroup; it may be called any number of times, and `Drop` calls it for a sandbox that
//! was not destroyed explicitly. Mounts need no unmounting: they live only in the sandbox's own
//! mount namespace, which the kernel discards when its last process exits.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::cgroup::{CgroupError, CgroupManager, CgroupSetup};
use crate::process::{self, SpawnError};
use crate::spec::SandboxSpec;

/// Errors of sandbox lifecycle operations; each names the sandbox's cgroup or pid.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cgroup: {0}")]
    Cgroup(#[from] CgroupError),
    #[error("{0}")]
    Spawn(#[from] SpawnError),
    #[error("sandbox {pid}: cannot {what}: {errno}")]
    Sys {
        pid: i32,
        what: &'static str,
        errno: Errno,
    },
    #[error("sandbox {pid} is {state:?}, cannot {what}")]
    State {
        pid: i32,
        state: State,
        what: &'static str,
    },
}

/// Lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    Paused,
    Destroyed,
}

/// Point-in-time figures of one sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxStats {
    pub pid: i32,
    pub memory_bytes: u64,
    pub uptime: Duration,
    pub state: State,
}

/// A live sandbox (see the module docs for the contract).
#[derive(Debug)]
pub struct Sandbox {
    pid: Pid,
    cgroup: Box<dyn CgroupManager>,
    state: State,
    reaped: bool,
    started: Instant,
    timings: StartTimings,
    exit_code: Option<i32>,
}

/// How long the steps of [`Sandbox::spawn`] took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StartTimings {
    /// Creating the cgroup and writing its limits.
    pub cgroup: Duration,
    /// Preparing the child (plan, fds) and `clone`.
    pub prepare_clone: Duration,
    /// The child's setup (cgroup join, hostname, mounts, pivot) until `execve` succeeded.
    pub child_setup_exec: Duration,
}

impl Sandbox {
    /// Creates the cgroup, clones the first process into new namespaces, builds its root and
    /// executes the spec's program. `pass` become fds 3, 4, ... inside. Blocking.
    pub fn spawn(
        spec: &SandboxSpec,
        cgroups: &CgroupSetup,
        pass: &[BorrowedFd<'_>],
    ) -> Result<Self, SandboxError> {
        let started = Instant::now();
        let cgroup = cgroups.cgroup(spec.cgroup());
        cgroup.create(&spec.limits)?;
        let cgroup_done = started.elapsed();
        let procs = match cgroup.open_procs() {
            Ok(p) => p,
            Err(e) => {
                let _ = cgroup.remove();
                return Err(e.into());
            }
        };
        match process::spawn(spec, &procs, pass) {
            Ok(child) => {
                tracing::debug!(
                    pid = child.pid.as_raw(),
                    cgroup_ms = cgroup_done.as_secs_f64() * 1e3,
                    prepare_clone_ms = child.prepare_clone.as_secs_f64() * 1e3,
                    child_setup_exec_ms = child.child_setup_exec.as_secs_f64() * 1e3,
                    "sandbox process started"
                );
                Ok(Self {
                    pid: child.pid,
                    cgroup,
                    state: State::Running,
                    reaped: false,
                    started,
                    timings: StartTimings {
                        cgroup: cgroup_done,
                        prepare_clone: child.prepare_clone,
                        child_setup_exec: child.child_setup_exec,
                    },
                    exit_code: None,
                })
            }
            Err(e) => {
                let _ = cgroup.kill_all();
                let _ = cgroup.remove();
                Err(e.into())
            }
        }
    }

    /// How long the steps of the spawn took.
    pub fn start_timings(&self) -> StartTimings {
        self.timings
    }

    /// Pid (in the daemon's pid namespace) of the sandbox's first process.
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// Current lifecycle state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Freezes every process of the sandbox (cgroup freezer).
    pub fn pause(&mut self) -> Result<(), SandboxError> {
        match self.state {
            State::Running => {
                self.cgroup.freeze()?;
                self.state = State::Paused;
                Ok(())
            }
            State::Paused => Ok(()),
            State::Destroyed => Err(self.bad_state("pause")),
        }
    }

    /// Thaws a paused sandbox.
    pub fn unpause(&mut self) -> Result<(), SandboxError> {
        match self.state {
            State::Paused => {
                self.cgroup.thaw()?;
                self.state = State::Running;
                Ok(())
            }
            State::Running => Ok(()),
            State::Destroyed => Err(self.bad_state("unpause")),
        }
    }

    fn bad_state(&self, what: &'static str) -> SandboxError {
        SandboxError::State {
            pid: self.pid(),
            state: self.state,
            what,
        }
    }

    /// True while the first process has not exited. Reaps it if it has.
    pub fn is_alive(&mut self) -> bool {
        if self.reaped || self.state == State::Destroyed {
            return false;
        }
        match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => true,
            Ok(_) | Err(Errno::ECHILD) => {
                self.reaped = true;
                false
            }
            Err(_) => true,
        }
    }

    /// Waits up to `limit` for the first process to exit (polling every 10 ms) and returns its
    /// exit code (128 + signal number when killed by a signal), or `None` if it still runs.
    /// For sandboxes that run a task to completion (package installs). Blocking.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<i32> {
        if let Some(code) = self.exit_code {
            return Some(code);
        }
        let deadline = Instant::now() + limit;
        loop {
            if self.reaped || self.state == State::Destroyed {
                return self.exit_code;
            }
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => {
                    self.reaped = true;
                    self.exit_code = Some(code);
                    return Some(code);
                }
                Ok(WaitStatus::Signaled(_, sig, _)) => {
                    self.reaped = true;
                    self.exit_code = Some(128 + sig as i32);
                    return self.exit_code;
                }
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => {
                    self.reaped = true;
                    return None;
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Memory use, pid, uptime and state.
    pub fn stats(&self) -> SandboxStats {
        SandboxStats {
            pid: self.pid(),
            memory_bytes: self.cgroup.memory_usage().unwrap_or(0),
            uptime: self.started.elapsed(),
            state: self.state,
        }
    }

    /// Kills every process, reaps the first, removes the cgroup. Idempotent. Blocking.
    pub fn destroy(&mut self) -> Result<(), SandboxError> {
        if self.state == State::Destroyed {
            return Ok(());
        }
        if self.state == State::Paused {
            // A frozen v1 task does not die from SIGKILL until it is thawed: thaw first.
            let _ = self.cgroup.thaw();
        }
        if !self.reaped {
            match kill(self.pid, Signal::SIGKILL) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(errno) => {
                    return Err(SandboxError::Sys {
                        pid: self.pid(),
                        what: "kill the first process",
                        errno,
                    })
                }
            }
            // When pid 1 of a pid namespace exits, the kernel kills and waits for the rest.
            loop {
                match waitpid(self.pid, None) {
                    Ok(_) | Err(Errno::ECHILD) => break,
                    Err(Errno::EINTR) => continue,
                    Err(errno) => {
                        return Err(SandboxError::Sys {
                            pid: self.pid(),
                            what: "wait for the first process",
                            errno,
                        })
                    }
                }
            }
            self.reaped = true;
        }
        self.cgroup.kill_all()?;
        self.cgroup.remove()?;
        self.state = State::Destroyed;
        Ok(())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Err(e) = self.destroy() {
            tracing::error!(pid = self.pid(), error = %e, "destroying a dropped sandbox failed");
        }
    }
}
