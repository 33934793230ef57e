//! The sandbox handle: spawn, pause, unpause, stats and idempotent destroy.
//!
//! Contract: [`Sandbox::destroy`] kills every process of the sandbox, reaps the first one, and
//! removes the cgroup; it may be called any number of times, and `Drop` calls it for a sandbox that
//! was not destroyed explicitly. Mounts need no unmounting: they live only in the sandbox's own
//! mount namespace, which the kernel discards when its last process exits.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
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
    /// For an adopted sandbox (first process not our child): a pidfd of that process.
    adopted: Option<OwnedFd>,
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
                    adopted: None,
                })
            }
            Err(e) => {
                let _ = cgroup.kill_all();
                let _ = cgroup.remove();
                Err(e.into())
            }
        }
    }

    /// Takes charge of a sandbox whose first process `pid` was started by someone else (a
    /// zygote's fork) and already lives in `cgroup`, which was created for it. The process is
    /// not our child: liveness comes from a pidfd, and [`Sandbox::destroy`] kills through the
    /// cgroup without waiting for an exit status (the process's parent reaps it).
    pub fn adopt(pid: i32, cgroup: Box<dyn CgroupManager>) -> Result<Self, SandboxError> {
        let started = Instant::now();
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if raw < 0 {
            return Err(SandboxError::Sys {
                pid,
                what: "open a pidfd",
                errno: Errno::last(),
            });
        }
        // SAFETY: pidfd_open returned a new (close-on-exec) fd that nothing else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(raw as libc::c_int) };
        // The pid must be the process the cgroup was made for, not a recycled number.
        if !cgroup.pids()?.contains(&pid) {
            return Err(SandboxError::Sys {
                pid,
                what: "find the process in its cgroup",
                errno: Errno::ESRCH,
            });
        }
        Ok(Self {
            pid: Pid::from_raw(pid),
            cgroup,
            state: State::Running,
            reaped: false,
            started,
            timings: StartTimings::default(),
            exit_code: None,
            adopted: Some(pidfd),
        })
    }

    /// True for a sandbox made by [`Sandbox::adopt`].
    pub fn is_adopted(&self) -> bool {
        self.adopted.is_some()
    }

    /// How long the steps of the spawn took (zero for an adopted sandbox).
    pub fn start_timings(&self) -> StartTimings {
        self.timings
    }

    /// Pid (in the daemon's pid namespace) of the sandbox's first process.
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// The sandbox's cgroup (relative to each hierarchy's root).
    pub fn cgroup_path(&self) -> &std::path::Path {
        self.cgroup.path()
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
        if let Some(pidfd) = &self.adopted {
            if pidfd_exited(pidfd.as_fd(), 0) {
                self.reaped = true;
            }
            return !self.reaped;
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
    /// For sandboxes that run a task to completion (package installs). Blocking. An adopted
    /// sandbox's status belongs to its parent: its exit is reported as code -1.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<i32> {
        if let Some(code) = self.exit_code {
            return Some(code);
        }
        if let Some(pidfd) = &self.adopted {
            let ms = limit.as_millis().min(i32::MAX as u128) as i32;
            if self.reaped || pidfd_exited(pidfd.as_fd(), ms) {
                self.reaped = true;
                self.exit_code = Some(-1);
            }
            return self.exit_code;
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

    /// How many of the sandbox's processes the OOM killer has killed (0 if unknown).
    pub fn oom_kills(&self) -> u64 {
        self.cgroup.oom_kills().unwrap_or(0)
    }

    /// Sends the first process `SIGKILL` (thawing the sandbox first if it is paused), without
    /// waiting: as pid 1 of its pid namespace, the kernel then kills the rest. [`destroy`]
    /// (which calls this) waits and removes the cgroup.
    ///
    /// [`destroy`]: Sandbox::destroy
    pub fn kill(&mut self) -> Result<(), SandboxError> {
        if self.state == State::Destroyed || self.reaped {
            return Ok(());
        }
        if self.state == State::Paused {
            // A frozen v1 task does not die from SIGKILL until it is thawed: thaw first.
            let _ = self.cgroup.thaw();
            self.state = State::Running;
        }
        let sent = match &self.adopted {
            // Not our child: through its pidfd, which cannot reach a reused pid.
            // SAFETY: pidfd_send_signal takes the pidfd we hold, a signal number and a null
            // siginfo; it touches no memory of ours.
            Some(pidfd) => Errno::result(unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    pidfd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            })
            .map(drop),
            None => kill(self.pid, Signal::SIGKILL),
        };
        match sent {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(errno) => Err(SandboxError::Sys {
                pid: self.pid(),
                what: "kill the first process",
                errno,
            }),
        }
    }

    /// Kills every process, reaps the first, removes the cgroup. Idempotent. Blocking.
    pub fn destroy(&mut self) -> Result<(), SandboxError> {
        if self.state == State::Destroyed {
            return Ok(());
        }
        self.kill()?;
        if !self.reaped {
            if let Some(pidfd) = &self.adopted {
                // Not our child: wait (briefly) until it has exited, which as pid 1 of its
                // namespace it does once every other process there is gone; the cgroup below
                // confirms it.
                pidfd_exited(pidfd.as_fd(), 1000);
                self.reaped = true;
            }
        }
        if !self.reaped {
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
        let t = Instant::now();
        self.cgroup.kill_all()?;
        let killed = t.elapsed();
        self.cgroup.remove()?;
        tracing::debug!(
            pid = self.pid(),
            kill_ms = killed.as_secs_f64() * 1e3,
            remove_ms = (t.elapsed() - killed).as_secs_f64() * 1e3,
            "sandbox cgroup emptied and removed"
        );
        self.state = State::Destroyed;
        Ok(())
    }
}

/// True when the process behind `pidfd` has exited, waiting up to `timeout_ms` (0: just look).
fn pidfd_exited(pidfd: BorrowedFd<'_>, timeout_ms: i32) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(pidfd, PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(timeout_ms).unwrap_or(PollTimeout::MAX);
    loop {
        match poll(&mut fds, timeout) {
            Ok(n) => return n > 0,
            Err(Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Err(e) = self.destroy() {
            tracing::error!(pid = self.pid(), error = %e, "destroying a dropped sandbox failed");
        }
    }
}
