//! Starting a sandbox's first process: `clone` into new namespaces, then, in the child, a fixed
//! sequence of system calls ending in `execve`.
//!
//! The daemon that calls this is multi-threaded, so the child may only make system calls between
//! `clone` and `exec`: no allocation, no locks, no logging. Everything the child needs (C strings,
//! pointer arrays, file descriptors, the [`SetupPlan`]) is prepared by the parent first. A child
//! that fails writes `(stage, step, errno)` into a close-on-exec pipe and exits; a successful
//! `execve` closes the pipe, so the parent reads either a failure record or end-of-file.
//!
//! Child sequence (the same order as `docs/sandbox.md`):
//! 1. reset the signal mask and `SIGPIPE` (inherited from the daemon's thread)
//! 2. join the sandbox's cgroup by writing `0` to each pre-opened `cgroup.procs`
//!    - in a user namespace of its own (the spec's [`IdMap`](crate::IdMap)): wait until the
//!      parent has written the id maps, then become root of the namespace (`setresgid`,
//!      `setresuid` to 0, no supplementary groups), so that the rest runs as the mapped host
//!      id, with capabilities over the sandbox's own namespaces only
//! 3. `setsid`, so terminal signals to the daemon's process group never reach the sandbox
//! 4. run the [`SetupPlan`] (host name, loopback, mounts, `pivot_root`)
//! 5. wire stdin (`/dev/null`), stdout, stderr and the passed fds (3, 4, ...)
//! 6. when the spec asks for it, give up privileges (see [`crate::harden`]): empty the
//!    capability bounding set, drop supplementary groups, `setresgid`/`setresuid` to the
//!    unprivileged ids (which clears every remaining capability), `no_new_privs`, then the
//!    seccomp filters
//! 7. mark every other fd close-on-exec, then `execve` the program

use std::ffi::{c_char, CString};
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sched::CloneFlags;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use crate::mounts::SetupPlan;
use crate::spec::{NetMode, Output, SandboxSpec, SpecError};
use crate::syscall::LinuxSyscall;

/// Where in the child sequence a failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ChildStage {
    Signals = 1,
    Cgroup = 2,
    Session = 3,
    Setup = 4,
    Stdio = 5,
    Exec = 6,
    Harden = 7,
    UserNs = 8,
}

impl ChildStage {
    fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::Signals,
            2 => Self::Cgroup,
            3 => Self::Session,
            4 => Self::Setup,
            5 => Self::Stdio,
            6 => Self::Exec,
            7 => Self::Harden,
            8 => Self::UserNs,
            _ => return None,
        })
    }
}

/// Errors starting a sandbox process.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("invalid sandbox spec: {0}")]
    Spec(#[from] SpecError),
    #[error("cannot open {path}: {source}")]
    Open {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {errno}")]
    Sys { what: &'static str, errno: Errno },
    #[error("sandbox child {pid} failed to {what}: {errno}")]
    Child {
        pid: i32,
        what: String,
        errno: Errno,
    },
    #[error("sandbox child {pid} sent a malformed status ({len} bytes)")]
    Protocol { pid: i32, len: usize },
    #[error("sandbox child {pid}: {source}")]
    IdMap {
        pid: i32,
        source: crate::userns::IdMapError,
    },
}

/// Fds in the child are wired from copies at or above this number, so `dup2` onto 0.. never
/// clobbers a source.
const HIGH_FD: RawFd = 100;
const CHILD_STACK: usize = 256 * 1024;

/// Everything the child touches, prepared by the parent.
struct ChildPlan<'a> {
    setup: &'a SetupPlan,
    procs: Vec<RawFd>,
    /// Sources for fds 0, 1, 2, 3, ... in the child.
    fds: Vec<RawFd>,
    program: CString,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    err_fd: RawFd,
    empty_mask: libc::sigset_t,
    /// (uid, gid, filters) when the spec asks for hardening.
    harden: Option<(libc::uid_t, libc::gid_t, Vec<libc::sock_fprog>)>,
    /// In a user namespace: (read end, write end) of the pipe on which the parent says the id
    /// maps are written. The child closes its copy of the write end, then reads.
    user_ns: Option<(RawFd, RawFd)>,
}

/// A started (exec'd) sandbox process, not yet waited for.
#[derive(Debug)]
pub struct Started {
    pub pid: Pid,
    /// From the call until `clone` returned (preparation and clone).
    pub prepare_clone: std::time::Duration,
    /// From `clone` returning until the child exec'd (its setup steps and `execve`).
    pub child_setup_exec: std::time::Duration,
}

fn dup_high(fd: BorrowedFd<'_>) -> Result<OwnedFd, SpawnError> {
    let raw = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(HIGH_FD)).map_err(|errno| SpawnError::Sys {
        what: "duplicate fd for the sandbox",
        errno,
    })?;
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Opens (creating it, mode 0644) a file the sandbox's stdout or stderr is appended to,
/// close-on-exec.
pub fn open_output(path: &std::path::Path) -> Result<File, SpawnError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| SpawnError::Open {
            path: path.to_owned(),
            source,
        })
}

/// A spec's [`Output`], opened: a file we opened, or the caller's fd.
enum Opened<'a> {
    File(File),
    Fd(BorrowedFd<'a>),
}

impl<'a> Opened<'a> {
    fn of(output: &'a Output) -> Result<Self, SpawnError> {
        Ok(match output {
            Output::File(path) => Self::File(open_output(path)?),
            Output::Fd(fd) => Self::Fd(fd.as_fd()),
        })
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::File(f) => f.as_fd(),
            Self::Fd(fd) => *fd,
        }
    }
}

/// Clones the sandbox's first process and waits until it has exec'd the program (or failed).
///
/// `procs` are the cgroup's `cgroup.procs` files opened for writing; `pass` become fds 3, 4, ...
/// in the child.
pub fn spawn(
    spec: &SandboxSpec,
    procs: &[File],
    pass: &[BorrowedFd<'_>],
) -> Result<Started, SpawnError> {
    let t0 = std::time::Instant::now();
    let setup = SetupPlan::new(spec)?;
    let devnull = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/null")
        .map_err(|source| SpawnError::Open {
            path: "/dev/null".into(),
            source,
        })?;
    let stdout = Opened::of(&spec.stdout)?;
    let stderr = Opened::of(&spec.stderr)?;
    let mut owned = Vec::with_capacity(3 + pass.len());
    for fd in [devnull.as_fd(), stdout.as_fd(), stderr.as_fd()]
        .into_iter()
        .chain(pass.iter().copied())
    {
        owned.push(dup_high(fd)?);
    }
    let to_c = |s: &str| {
        CString::new(s).map_err(|_| {
            SpawnError::Spec(SpecError::Nul {
                what: "argument",
                value: s.to_owned(),
            })
        })
    };
    let program = to_c(&spec.argv[0])?;
    let argv_c: Vec<CString> = spec
        .argv
        .iter()
        .map(|a| to_c(a))
        .collect::<Result<_, _>>()?;
    let env_c: Vec<CString> = spec.env.iter().map(|a| to_c(a)).collect::<Result<_, _>>()?;
    let mut argv: Vec<*const c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const c_char> = env_c.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());

    let (err_read, err_write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|errno| SpawnError::Sys {
            what: "create the status pipe",
            errno,
        })?;
    // SAFETY: sigset_t is plain data; sigemptyset initializes it fully below.
    let mut empty_mask: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `empty_mask` is a valid, writable sigset_t.
    unsafe { libc::sigemptyset(&mut empty_mask) };

    let harden = spec.hardening.as_ref().map(|h| {
        let progs = h
            .filters
            .iter()
            .map(|p| libc::sock_fprog {
                len: p.len() as libc::c_ushort,
                // The same 8-byte layout as libc's struct sock_filter; the kernel only reads it.
                filter: p.as_ptr() as *mut libc::sock_filter,
            })
            .collect::<Vec<_>>();
        (h.uid, h.gid, progs)
    });

    let user_ns = match spec.user_ns {
        Some(_) => Some(
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|errno| SpawnError::Sys {
                what: "create the id map pipe",
                errno,
            })?,
        ),
        None => None,
    };

    let plan = ChildPlan {
        setup: &setup,
        procs: procs.iter().map(AsRawFd::as_raw_fd).collect(),
        fds: owned.iter().map(AsRawFd::as_raw_fd).collect(),
        program,
        argv,
        envp,
        err_fd: err_write.as_raw_fd(),
        empty_mask,
        harden,
        user_ns: user_ns
            .as_ref()
            .map(|(r, w)| (r.as_raw_fd(), w.as_raw_fd())),
    };

    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS;
    if spec.net == NetMode::Isolated {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if spec.user_ns.is_some() {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    let mut stack = vec![0u8; CHILD_STACK];
    let cb: nix::sched::CloneCb<'_> = Box::new(|| child_main(&plan));
    // SAFETY: the child runs `child_main`, which only makes system calls on data prepared above
    // (no allocation, locks or unwinding) and ends in execve or _exit; its stack is `stack`,
    // which outlives the call in the parent and is a private copy in the child (no CLONE_VM).
    let pid = unsafe { nix::sched::clone(cb, &mut stack, flags, Some(libc::SIGCHLD)) }.map_err(
        |errno| SpawnError::Sys {
            what: "clone the sandbox process",
            errno,
        },
    )?;
    let cloned = t0.elapsed();
    // Close our copy of the write end now: once the child execs (closing its copy), the read
    // below sees end-of-file.
    drop(err_write);
    drop(owned);
    if let (Some(map), Some((wait_read, wait_write))) = (&spec.user_ns, user_ns) {
        drop(wait_read);
        let written = map
            .write_for(pid.as_raw())
            .map_err(|source| SpawnError::IdMap {
                pid: pid.as_raw(),
                source,
            });
        let released = written.and_then(|()| {
            nix::unistd::write(&wait_write, b"1").map_err(|errno| SpawnError::Sys {
                what: "release the sandbox child after its id maps",
                errno,
            })
        });
        // Without its maps the child reads end-of-file when `wait_write` closes, and fails.
        if let Err(e) = released {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return Err(e);
        }
    }

    let mut buf = [0u8; 12];
    let mut got = 0;
    let read_result = loop {
        match nix::unistd::read(&err_read, &mut buf[got..]) {
            Ok(0) => break Ok(got),
            Ok(n) => {
                got += n;
                if got == buf.len() {
                    break Ok(got);
                }
            }
            Err(Errno::EINTR) => continue,
            Err(e) => break Err(e),
        }
    };
    let fail = |err: SpawnError| {
        // The child exits on failure; reap it so no zombie is left.
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(pid, None);
        Err(err)
    };
    match read_result {
        Ok(0) => Ok(Started {
            pid,
            prepare_clone: cloned,
            child_setup_exec: t0.elapsed() - cloned,
        }),
        Ok(12) => {
            let word = |i: usize| u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
            let stage = ChildStage::from_u32(word(0));
            let index = word(4) as usize;
            let errno = Errno::from_raw(word(8) as i32);
            let what = match stage {
                Some(ChildStage::Signals) => "reset its signal mask".to_owned(),
                Some(ChildStage::Cgroup) => format!("join cgroup {}", spec.cgroup.display()),
                Some(ChildStage::Session) => "start a new session".to_owned(),
                Some(ChildStage::UserNs) => [
                    "wait for its id maps",
                    "set the group ids to root of its user namespace",
                    "set the user ids to root of its user namespace",
                    "drop supplementary groups",
                ]
                .get(index)
                .copied()
                .unwrap_or("enter its user namespace")
                .to_owned(),
                Some(ChildStage::Setup) => setup.describe(index),
                Some(ChildStage::Stdio) => format!("set up fd {index}"),
                Some(ChildStage::Exec) => format!("execute {}", spec.argv[0]),
                Some(ChildStage::Harden) => format!(
                    "give up privileges ({})",
                    [
                        "drop the capability bounding set",
                        "drop supplementary groups",
                        "set the group ids",
                        "set the user ids",
                        "set no_new_privs",
                        "forbid core dumps",
                    ]
                    .get(index)
                    .copied()
                    .unwrap_or("install the seccomp filter")
                ),
                None => format!("run stage {}", word(0)),
            };
            fail(SpawnError::Child {
                pid: pid.as_raw(),
                what,
                errno,
            })
        }
        Ok(len) => fail(SpawnError::Protocol {
            pid: pid.as_raw(),
            len,
        }),
        Err(errno) => fail(SpawnError::Sys {
            what: "read the sandbox child's status",
            errno,
        }),
    }
}

/// Writes a failure record to the status pipe and exits. Child only.
fn child_fail(err_fd: RawFd, stage: ChildStage, index: usize, errno: Errno) -> isize {
    let mut rec = [0u8; 12];
    rec[..4].copy_from_slice(&(stage as u32).to_ne_bytes());
    rec[4..8].copy_from_slice(&(index as u32).to_ne_bytes());
    rec[8..].copy_from_slice(&(errno as i32 as u32).to_ne_bytes());
    // SAFETY: writing a stack buffer to an fd we own; a short or failed write only loses detail.
    unsafe {
        libc::write(err_fd, rec.as_ptr().cast(), rec.len());
        libc::_exit(127)
    }
}

/// Step 6 of the child: see the module docs. Returns (step, errno) on failure. Child only.
fn give_up_privileges(
    uid: libc::uid_t,
    gid: libc::gid_t,
    progs: &[libc::sock_fprog],
) -> Result<(), (usize, Errno)> {
    // Not the `caps` crate: its `clear` builds a HashSet and its errors are formatted Strings,
    // and this child of a multi-threaded process must not allocate before `execve`. Emptying
    // the bounding set is one prctl per capability; leaving uid 0 (without SECBIT_KEEP_CAPS)
    // then clears the permitted, effective and ambient sets.
    // Raw system calls, not the C library's setgroups/setresgid/setresuid: those apply the
    // change to every thread the library knows of (glibc's "setxid" broadcast), and after
    // `clone` in a multi-threaded daemon the child has one thread while the library's list,
    // copied from the parent, names them all: the call would wait for them forever.
    // SAFETY: prctl and the id system calls take plain integers (setgroups a null list of
    // length 0) and touch no memory of ours; prlimit64 reads a stack rlimit valid for the call.
    unsafe {
        for cap in 0..=63 {
            // EINVAL: no such capability on this kernel (past CAP_LAST_CAP).
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0
                && Errno::last() != Errno::EINVAL
            {
                return Err((0, Errno::last()));
            }
        }
        if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0 {
            return Err((1, Errno::last()));
        }
        if libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0 {
            return Err((2, Errno::last()));
        }
        // From root to a non-zero uid without SECBIT_KEEP_CAPS: the permitted, effective and
        // ambient sets are cleared.
        if libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0 {
            return Err((3, Errno::last()));
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err((4, Errno::last()));
        }
        // No core dumps, and no raising the limit again: a crash must not hand the host's
        // core_pattern helper (often a root program outside any namespace) a dump to handle.
        let zero = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        let no_old = std::ptr::null_mut::<libc::rlimit>();
        if libc::syscall(libc::SYS_prlimit64, 0, libc::RLIMIT_CORE, &zero, no_old) != 0 {
            return Err((5, Errno::last()));
        }
    }
    for (i, prog) in progs.iter().enumerate() {
        // SAFETY: `prog` points at a BPF program owned by the parent's spec, valid for the
        // whole call; the kernel copies it.
        let rc = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                prog as *const libc::sock_fprog,
                0,
                0,
            )
        };
        if rc != 0 {
            return Err((6 + i, Errno::last()));
        }
    }
    Ok(())
}

/// Step 2b of the child: waits until the parent has written the id maps (one byte on
/// `read_fd`; end-of-file means it could not), then becomes root of the new user namespace.
/// Until then the child still holds the host's root uid, unmapped: it does nothing else first.
/// Child only.
fn enter_user_ns(read_fd: RawFd, write_fd: RawFd) -> Result<(), (usize, Errno)> {
    let mut byte = [0u8; 1];
    // SAFETY: closing our copy of the pipe's write end (so a parent that dies means EOF), then
    // reading one byte into a stack buffer, from fds prepared by the parent. The raw id calls
    // take plain integers (setgroups a null list of length 0); see give_up_privileges for why
    // they are raw system calls.
    unsafe {
        libc::close(write_fd);
        loop {
            let n = libc::read(read_fd, byte.as_mut_ptr().cast(), 1);
            match n {
                1 => break,
                0 => return Err((0, Errno::EPIPE)),
                _ if Errno::last() == Errno::EINTR => continue,
                _ => return Err((0, Errno::last())),
            }
        }
        if libc::syscall(libc::SYS_setresgid, 0, 0, 0) != 0 {
            return Err((1, Errno::last()));
        }
        if libc::syscall(libc::SYS_setresuid, 0, 0, 0) != 0 {
            return Err((2, Errno::last()));
        }
        if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0 {
            return Err((3, Errno::last()));
        }
    }
    Ok(())
}

/// The child side: system calls only, then exec. Never returns on success.
fn child_main(p: &ChildPlan<'_>) -> isize {
    // 1. signals: the mask is inherited from the cloning thread; SIGPIPE is ignored by Rust.
    // SAFETY: `empty_mask` is an initialized sigset_t; a null old-set pointer is allowed.
    let rc = unsafe { libc::sigprocmask(libc::SIG_SETMASK, &p.empty_mask, std::ptr::null_mut()) };
    if rc != 0 {
        return child_fail(p.err_fd, ChildStage::Signals, 0, Errno::last());
    }
    // SAFETY: restoring the default disposition of SIGPIPE has no memory-safety preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };

    // 2. cgroup: "0" attaches the writing process.
    for (i, &fd) in p.procs.iter().enumerate() {
        // SAFETY: writing a static byte string to an fd the parent opened for us.
        let rc = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
        if rc != 1 {
            return child_fail(p.err_fd, ChildStage::Cgroup, i, Errno::last());
        }
    }

    // 2b. the user namespace: wait for the maps, then act as its root (a mapped host id).
    if let Some((read_fd, write_fd)) = p.user_ns {
        if let Err((step, errno)) = enter_user_ns(read_fd, write_fd) {
            return child_fail(p.err_fd, ChildStage::UserNs, step, errno);
        }
    }

    // 3. own session (and process group).
    if let Err(e) = nix::unistd::setsid() {
        return child_fail(p.err_fd, ChildStage::Session, 0, e);
    }

    // 4. host name, network, mounts, pivot_root.
    if let Err((index, errno)) = p.setup.run(&LinuxSyscall) {
        return child_fail(p.err_fd, ChildStage::Setup, index, errno);
    }

    // 5. stdio and passed fds; dup2 clears close-on-exec on the target.
    for (target, &src) in p.fds.iter().enumerate() {
        // SAFETY: both are valid fd numbers; sources are >= HIGH_FD so no target clobbers one.
        let rc = unsafe { libc::dup2(src, target as RawFd) };
        if rc < 0 {
            return child_fail(p.err_fd, ChildStage::Stdio, target, Errno::last());
        }
    }
    // 6. privileges.
    if let Some((uid, gid, progs)) = &p.harden {
        if let Err((step, errno)) = give_up_privileges(*uid, *gid, progs) {
            return child_fail(p.err_fd, ChildStage::Harden, step, errno);
        }
    }

    // 7. Anything else still open without close-on-exec must not leak into the sandbox; then
    // exec.
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes fd flags; errors (old kernels)
    // are ignored because every fd the daemon opens is already close-on-exec.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            p.fds.len() as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    };

    // SAFETY: program, argv and envp are NUL-terminated strings and null-terminated pointer
    // arrays owned by the parent's plan, valid for the whole call.
    unsafe { libc::execve(p.program.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr()) };
    child_fail(p.err_fd, ChildStage::Exec, 0, Errno::last())
}
