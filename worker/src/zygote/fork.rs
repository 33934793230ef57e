//! One fork from a zygote, in the order of `docs/import-cache.md` ("In the worker"): the
//! detached mounts, the request with its fds, waiting for and reading the child's report,
//! adopting the child. And [`ForkError`], which says whose fault a failed fork is.

use std::collections::BTreeMap;
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::cmsg_space;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags};
use sandbox::cgroup::CgroupError;
use sandbox::process::SpawnError;
use sandbox::{DetachError, DetachedMount, Sandbox, SandboxError};

use super::protocol::{Fork, Harden, Outgoing, ProtocolError, Report, Role, MAX_REPORT};
use super::zygote::{seqpacket_pair, SandboxMaker, Zygote};
use super::{zygote_env, HandlerRequest, FORK_TIMEOUT};
use crate::config::NetMode;
use crate::lambda_config::LambdaLimits;

/// Whose fault a failed fork is, which decides what becomes of the zygote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The worker could not prepare the fork; the zygote stays.
    Worker,
    /// The zygote did not do its part; it is retired.
    Zygote,
    /// The forked child failed; the zygote stays.
    Child,
}

/// A failed fork.
#[derive(Debug, thiserror::Error)]
pub enum ForkError {
    /// Ours: the worker could not prepare it.
    #[error("{0}")]
    Prepare(#[from] PrepareError),
    /// The zygote's: it could not be reached, or its child never reported.
    #[error("zygote {zygote} (pid {pid}): {source}")]
    Zygote {
        zygote: u64,
        pid: i32,
        source: ZygoteFault,
    },
    /// The child's: it reported a failed step, or an unreadable report.
    #[error("fork from zygote {zygote}: the child {source}")]
    Child { zygote: u64, source: ChildFault },
    /// The child reported ready but is not there to adopt (gone, or not in its cgroup).
    #[error("cannot adopt process {pid} forked by zygote {zygote}: {source}")]
    Adopt {
        zygote: u64,
        pid: i32,
        source: SandboxError,
    },
}

impl ForkError {
    pub fn fault(&self) -> Fault {
        match self {
            Self::Prepare(_) => Fault::Worker,
            Self::Zygote { .. } => Fault::Zygote,
            Self::Child { .. } | Self::Adopt { .. } => Fault::Child,
        }
    }
}

/// What the worker could not prepare for a fork.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("package path {rel:?} is not UTF-8")]
    PackageName { rel: PathBuf },
    #[error(transparent)]
    Mount(#[from] DetachError),
    #[error(transparent)]
    Output(#[from] SpawnError),
    #[error("cannot {what}: {errno}")]
    Socket { what: &'static str, errno: Errno },
    #[error("a spare's cgroup for zygote {zygote}: {source}")]
    Cgroup { zygote: u64, source: CgroupError },
    #[error("cannot create {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

/// What a zygote failed to do.
#[derive(Debug, thiserror::Error)]
pub enum ZygoteFault {
    #[error("cannot be sent {what}: {errno}")]
    Send { what: &'static str, errno: Errno },
    #[error("no report from the forked child within {0:?}")]
    Timeout(Duration),
    #[error("cannot wait for the forked child's report: {0}")]
    Wait(Errno),
    #[error("cannot read the forked child's report: {0}")]
    Read(Errno),
    #[error("closed the reply without a report; its stderr ends: {tail}")]
    NoReport { tail: String },
}

/// What a forked child did wrong.
#[derive(Debug, thiserror::Error)]
pub enum ChildFault {
    #[error("failed to {step}: {reason}")]
    Failed { step: String, reason: String },
    #[error("sent an unreadable report {text:?}: {source}")]
    BadReport {
        text: String,
        source: serde_json::Error,
    },
    #[error("reported ready, but the report carried no pid")]
    NoPid,
}

/// Forks a handler sandbox for `req` from `zygote`.
pub(super) fn handler(
    maker: &SandboxMaker,
    zygote: &Zygote,
    req: &HandlerRequest<'_>,
) -> Result<Sandbox, ForkError> {
    // 1. Detached mounts: its /host, /handler, packages and layers.
    let mounts = ForkMounts::new(Some(req.handler_dir), req.scratch, req.packages, req.layers)?;
    let volumes: Vec<(&str, BorrowedFd<'_>)> = req
        .volumes
        .iter()
        .map(|(m, fd)| (m.as_str(), *fd))
        .collect();
    fork(
        maker,
        zygote,
        &Job {
            role: Role::Handler,
            handler: Some((req.limits, req.hardening)),
            mounts: &mounts,
            volumes: &volumes,
            listen: req.listen,
            output: JobOutput::Pipe(req.output),
            env: req.env,
        },
    )
}

/// Forks a zygote for `packages` (sorted `name/version` entries) from `parent`, and hands the
/// parent and the new zygote their spares' cgroups.
pub(super) fn zygote(
    maker: &SandboxMaker,
    parent: &Arc<Zygote>,
    packages: &[String],
) -> Result<Arc<Zygote>, ForkError> {
    let id = maker.next_id();
    let dir = maker.zygote_dir(id);
    std::fs::create_dir_all(&dir).map_err(|source| PrepareError::Dir {
        path: dir.clone(),
        source,
    })?;
    let started = (|| {
        let host_dirs: Vec<(PathBuf, PathBuf)> = packages
            .iter()
            .map(|rel| (maker.cfg.packages_dir.join(rel), PathBuf::from(rel)))
            .collect();
        // 1. Detached mounts: its /host and its packages.
        let mounts = ForkMounts::new(None, &dir, &host_dirs, &[])?;
        let (control, theirs) = seqpacket_pair().map_err(|errno| PrepareError::Socket {
            what: "create a zygote control socket",
            errno,
        })?;
        let sandbox = fork(
            maker,
            parent,
            &Job {
                role: Role::Zygote,
                handler: None,
                mounts: &mounts,
                volumes: &[],
                listen: theirs.as_fd(),
                output: JobOutput::Files(&dir),
                env: &zygote_env(packages),
            },
        )?;
        // A handler's caller refills later, off its path (`ImportCache::refill`); a zygote's now.
        maker.refill_or_log(parent);
        // It runs in a spare's cgroup, made with a sandbox's limits: raise them.
        maker
            .cgroups
            .cgroup(sandbox.cgroup_path())
            .create(&maker.zygote_limits())
            .map_err(|source| PrepareError::Cgroup { zygote: id, source })?;
        Ok::<_, ForkError>((sandbox, control))
    })();
    match started {
        Ok((sandbox, control)) => {
            let parent_ref = Some(Arc::clone(parent));
            let z = maker.register(id, packages.to_vec(), parent_ref, sandbox, control, dir);
            tracing::info!(zygote = id, parent = parent.id(), pid = z.pid(), packages = ?packages, "zygote started");
            Ok(z)
        }
        Err(e) => {
            let _ = crate::cleanup::remove_dir_all_if_present(&dir);
            Err(e)
        }
    }
}

/// The detached mounts of one fork, made in the worker's mount namespace.
struct ForkMounts {
    host: DetachedMount,
    handler: Option<DetachedMount>,
    /// One per `name/version`, sorted.
    packages: Vec<(String, DetachedMount)>,
    /// One per layer, by name, in the function's order.
    layers: Vec<(String, DetachedMount)>,
}

impl ForkMounts {
    /// `packages` are (host directory, `name/version`); a path listed twice is cloned once.
    /// `layers` are (host directory, name).
    fn new(
        handler: Option<&Path>,
        host: &Path,
        packages: &[(PathBuf, PathBuf)],
        layers: &[(PathBuf, String)],
    ) -> Result<Self, PrepareError> {
        let mut by_rel: BTreeMap<&str, &Path> = BTreeMap::new();
        for (dir, rel) in packages {
            let rel = rel
                .to_str()
                .ok_or_else(|| PrepareError::PackageName { rel: rel.clone() })?;
            by_rel.entry(rel).or_insert(dir);
        }
        Ok(Self {
            host: DetachedMount::clone_of(host, true)?,
            handler: handler
                .map(|h| DetachedMount::clone_of(h, false))
                .transpose()?,
            packages: by_rel
                .into_iter()
                .map(|(rel, dir)| Ok((rel.to_owned(), DetachedMount::clone_of(dir, false)?)))
                .collect::<Result<_, DetachError>>()?,
            layers: layers
                .iter()
                .map(|(dir, name)| Ok((name.clone(), DetachedMount::clone_of(dir, false)?)))
                .collect::<Result<_, DetachError>>()?,
        })
    }
}

/// What one fork is for.
struct Job<'a> {
    role: Role,
    /// A handler's limits (its cgroup and `/tmp`) and what it gives up.
    handler: Option<(&'a LambdaLimits, &'a sandbox::Hardening)>,
    mounts: &'a ForkMounts,
    /// (path under `/mnt`, detached mount) of each access point (a handler's only).
    volumes: &'a [(&'a str, BorrowedFd<'a>)],
    listen: BorrowedFd<'a>,
    output: JobOutput<'a>,
    env: &'a [(String, String)],
}

/// Where a forked child's stdout and stderr go.
#[derive(Clone, Copy)]
enum JobOutput<'a> {
    /// A zygote's: `stdout` and `stderr` files in this directory.
    Files(&'a Path),
    /// A handler's: the worker's output pipe (named twice in the request, as stdout and as
    /// stderr: each fd is named once, so the message carries it at two indices).
    Pipe(BorrowedFd<'a>),
}

/// A job's output, ready to send.
enum Opened<'a> {
    Files(std::fs::File, std::fs::File),
    Pipe(BorrowedFd<'a>),
}

impl Opened<'_> {
    /// (stdout, stderr).
    fn fds(&self) -> (BorrowedFd<'_>, BorrowedFd<'_>) {
        match self {
            Self::Files(out, err) => (out.as_fd(), err.as_fd()),
            Self::Pipe(fd) => (*fd, *fd),
        }
    }
}

/// One fork: the request with its fds; the child's report; the new sandbox, adopted in the
/// cgroup its spare joined. The next spare's cgroup comes from a refill.
fn fork(maker: &SandboxMaker, zygote: &Zygote, job: &Job<'_>) -> Result<Sandbox, ForkError> {
    let t0 = Instant::now();
    // 2. The request. Our part first (its files, the reply socket, the message), so that a
    // failure there takes no spare's cgroup out of turn.
    let files = match job.output {
        JobOutput::Files(dir) => Opened::Files(
            sandbox::process::open_output(&dir.join("stdout")).map_err(PrepareError::from)?,
            sandbox::process::open_output(&dir.join("stderr")).map_err(PrepareError::from)?,
        ),
        JobOutput::Pipe(fd) => Opened::Pipe(fd),
    };
    let (stdout, stderr) = files.fds();
    let socket = |what| move |errno| PrepareError::Socket { what, errno };
    let (reply, reply_child) = seqpacket_pair().map_err(socket("create the reply socket"))?;
    setsockopt(&reply, sockopt::PassCred, &true)
        .map_err(socket("set SO_PASSCRED on the reply socket"))?;
    let limits = job.handler.map(|(l, _)| l.cgroup());
    let packages: Vec<(&str, BorrowedFd<'_>)> = job
        .mounts
        .packages
        .iter()
        .map(|(rel, m)| (rel.as_str(), m.as_fd()))
        .collect();
    let layers: Vec<(&str, BorrowedFd<'_>)> = job
        .mounts
        .layers
        .iter()
        .map(|(name, m)| (name.as_str(), m.as_fd()))
        .collect();
    let cgroup = {
        let out = Outgoing::fork(&Fork {
            role: job.role,
            reply: reply_child.as_fd(),
            host: job.mounts.host.as_fd(),
            handler: job.mounts.handler.as_ref().map(AsFd::as_fd),
            packages: &packages,
            layers: &layers,
            volumes: job.volumes,
            listen: job.listen,
            stdout,
            stderr,
            env: job.env,
            net_ns: maker.cfg.net == NetMode::None,
            tmp_mb: job.handler.map_or(maker.cfg.tmp_mb, |(l, _)| l.tmp_mb),
            harden: job.handler.map(|(_, h)| Harden {
                uid: h.uid,
                gid: h.gid,
            }),
        })
        .map_err(PrepareError::from)?;
        // The next spare, with its cgroup; its request goes to it directly.
        let spare = {
            let mut spares = zygote.spares();
            match spares.pop_front() {
                Some(spare) => spare,
                // The last refill failed: hand one over now.
                None => maker.hand_cgroup(zygote)?,
            }
        };
        // The spare's cgroup was made with the defaults; a lambda may have its own.
        if let Some(limits) = limits.filter(|l| *l != maker.limits()) {
            if let Err(source) = spare.cgroup.create(&limits) {
                // Nothing was sent: the spare stays first in line.
                zygote.spares().push_front(spare);
                return Err(PrepareError::Cgroup {
                    zygote: zygote.id(),
                    source,
                }
                .into());
            }
        }
        match spare.send(zygote, &out) {
            Ok(()) => spare.cgroup,
            Err(e) => {
                remove_cgroup(spare.cgroup.as_ref());
                return Err(e);
            }
        }
    };
    // The child holds its copies now; ours must go so that a dead child reads as EOF.
    drop((reply_child, files));
    let sent = t0.elapsed();
    // 3. The report.
    let pid = match wait_report(zygote, &reply) {
        Ok(pid) => pid,
        Err(e) => {
            remove_cgroup(cgroup.as_ref());
            return Err(e);
        }
    };
    let reported = t0.elapsed();
    // 4. Adoption. A process that vanished since its report leaves its cgroup to remove.
    let path = cgroup.path().to_owned();
    let adopted = Sandbox::adopt(pid, cgroup);
    tracing::debug!(
        zygote = zygote.id(),
        pid,
        send_ms = sent.as_secs_f64() * 1e3,
        report_ms = (reported - sent).as_secs_f64() * 1e3,
        adopt_ms = (t0.elapsed() - reported).as_secs_f64() * 1e3,
        "fork steps"
    );
    adopted.map_err(|source| {
        remove_cgroup(maker.cgroups.cgroup(&path).as_ref());
        ForkError::Adopt {
            zygote: zygote.id(),
            pid,
            source,
        }
    })
}

fn remove_cgroup(cgroup: &dyn sandbox::cgroup::CgroupManager) {
    if let Err(e) = cgroup.kill_all().and_then(|()| cgroup.remove()) {
        tracing::error!(cgroup = %cgroup.path().display(), error = %e, "cannot remove the cgroup of a failed fork");
    }
}

/// Waits for the child's report on `reply` and returns the child's pid, as the kernel gave it.
fn wait_report(zygote: &Zygote, reply: &OwnedFd) -> Result<i32, ForkError> {
    let zygote_fault = |source| ForkError::Zygote {
        zygote: zygote.id(),
        pid: zygote.pid(),
        source,
    };
    let child_fault = |source| ForkError::Child {
        zygote: zygote.id(),
        source,
    };
    let Some(RawReport { bytes, pid }) =
        receive_report(reply, FORK_TIMEOUT).map_err(zygote_fault)?
    else {
        let tail = crate::files::read_tail(&zygote.dir().join("stderr"), 2048);
        return Err(zygote_fault(ZygoteFault::NoReport {
            tail: tail.trim_end().to_owned(),
        }));
    };
    match Report::decode(&bytes) {
        Ok(Report::Ready) => pid
            .filter(|p| *p > 0)
            .ok_or_else(|| child_fault(ChildFault::NoPid)),
        Ok(Report::Failed { step, reason }) => {
            Err(child_fault(ChildFault::Failed { step, reason }))
        }
        Err(source) => Err(child_fault(ChildFault::BadReport {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            source,
        })),
    }
}

/// A report as it came: its bytes and the writer's pid, as the kernel gave it.
#[derive(Debug)]
pub(super) struct RawReport {
    pub bytes: Vec<u8>,
    pub pid: Option<i32>,
}

/// One report from `reply` (which has `SO_PASSCRED`), waiting at most `timeout`; `None` when
/// the other end closed without writing.
pub(super) fn receive_report(
    reply: &OwnedFd,
    timeout: Duration,
) -> Result<Option<RawReport>, ZygoteFault> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(reply.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) if left.is_zero() => return Err(ZygoteFault::Timeout(timeout)),
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => break,
            Err(e) => return Err(ZygoteFault::Wait(e)),
        }
    }
    let mut buf = vec![0u8; MAX_REPORT];
    let mut space = cmsg_space!(nix::sys::socket::UnixCredentials);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        reply.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(ZygoteFault::Read)?;
    let mut pid = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmCredentials(creds) = c {
                pid = Some(creds.pid());
            }
        }
    }
    let len = msg.bytes;
    if len == 0 {
        return Ok(None);
    }
    buf.truncate(len);
    Ok(Some(RawReport { bytes: buf, pid }))
}
