//! What the host is like, gathered by probing it: the facts [`super::evaluate`] judges.
//! Every probe here leaves nothing behind (a cgroup made to prove a hierarchy writable is
//! removed again, a socket bound to prove a port free is closed) and changes no setting.

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use sandbox::cgroup::CgroupSetup;

use super::{Scope, Target};

/// How long the package index may take to accept a connection.
pub const INDEX_TIMEOUT: Duration = Duration::from_secs(3);

/// A system call the worker relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syscall {
    OpenTree,
    MoveMount,
    MountSetattr,
    Clone3,
    PidfdOpen,
}

impl Syscall {
    pub const ALL: [Syscall; 5] = [
        Syscall::OpenTree,
        Syscall::MoveMount,
        Syscall::MountSetattr,
        Syscall::Clone3,
        Syscall::PidfdOpen,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Syscall::OpenTree => "open_tree",
            Syscall::MoveMount => "move_mount",
            Syscall::MountSetattr => "mount_setattr",
            Syscall::Clone3 => "clone3",
            Syscall::PidfdOpen => "pidfd_open",
        }
    }

    /// The kernel release that added it.
    pub fn since(self) -> &'static str {
        match self {
            Syscall::OpenTree | Syscall::MoveMount => "5.2",
            Syscall::MountSetattr => "5.12",
            Syscall::Clone3 | Syscall::PidfdOpen => "5.3",
        }
    }
}

/// What calling a system call with arguments it must reject told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// It exists (it rejected the arguments).
    Present,
    /// `ENOSYS`: this kernel lacks it.
    Missing,
    /// `EPERM` or `EACCES`: a policy (a container's seccomp filter, an LSM) forbids it.
    Denied(Errno),
}

/// Whether a directory could be made (and removed) in a cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writable {
    Yes,
    No(String),
}

/// One v1 controller the worker uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    pub name: &'static str,
    /// Its hierarchy's mount point; `None` when no hierarchy holds it.
    pub mount: Option<PathBuf>,
    pub writable: Option<Writable>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupFacts {
    /// Detection failed: the reason.
    Undetected(String),
    V1 {
        controllers: Vec<Controller>,
    },
    V2 {
        root: PathBuf,
        /// The root's `cgroup.controllers`.
        available: Vec<String>,
        writable: Writable,
        /// Whether a new cgroup has `cgroup.freeze` (pausing idle sandboxes).
        freeze: bool,
    },
}

/// A value read from the host, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading<T> {
    Read(T),
    Failed(String),
}

impl<T> Reading<T> {
    fn of<E: std::fmt::Display>(what: &str, r: Result<T, E>) -> Self {
        match r {
            Ok(v) => Reading::Read(v),
            Err(e) => Reading::Failed(format!("{what}: {e}")),
        }
    }
}

/// What `statvfs` says of a directory (or of its nearest existing ancestor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// What the directory is for ("cluster", "base cache").
    pub what: String,
    pub path: PathBuf,
    /// Bytes available to unprivileged users.
    pub available: Reading<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    pub dir: PathBuf,
    pub exists: bool,
    /// `3.13` for a base whose `/usr/bin/python3` is Python 3.13.
    pub python: Option<String>,
    /// Whether lambdaworker's runtime is installed in it.
    pub runtime: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Connected to this address after this long.
    Connected(SocketAddr, Duration),
    /// The URL has no host and port we can read.
    BadUrl(String),
    /// The host name did not resolve.
    Unresolved(String),
    /// No address accepted a connection: the last error.
    Unreachable(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortState {
    Free,
    /// Something listens there; `worker` when it answers `GET /status` with `ready`.
    InUse {
        worker: bool,
    },
    /// The address cannot be bound for another reason.
    Error(String),
}

/// Everything the checks look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: Reading<String>,
    pub syscalls: Vec<(Syscall, Probe)>,
    pub cgroups: CgroupFacts,
    /// Whether a user namespace could be made, with the kernel's error and
    /// `user.max_user_namespaces` otherwise.
    pub user_namespaces: Result<(), (Errno, Option<u64>)>,
    /// `/proc/filesystems`' names.
    pub filesystems: Reading<Vec<String>>,
    /// `prctl(PR_GET_SECCOMP)`: the mode this process runs in, or the error.
    pub seccomp_mode: Result<i32, Errno>,
    /// `/proc/sys/kernel/seccomp/actions_avail`.
    pub seccomp_actions: Option<Vec<String>>,
    pub disks: Vec<Disk>,
    pub base: Base,
    /// `None` when the scope skips it.
    pub index: Option<(String, Reach)>,
    pub port: Option<(String, u16, PortState)>,
}

/// Probes this host for `target`.
pub fn gather(target: &Target, scope: Scope) -> Facts {
    Facts {
        kernel: Reading::of(
            "/proc/sys/kernel/osrelease",
            std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()),
        ),
        syscalls: Syscall::ALL
            .iter()
            .map(|&s| (s, probe_syscall(s)))
            .collect(),
        cgroups: cgroups(),
        user_namespaces: sandbox::userns::probe()
            .map_err(|e| (e, sandbox::userns::max_user_namespaces())),
        filesystems: Reading::of(
            "/proc/filesystems",
            std::fs::read_to_string("/proc/filesystems").map(|t| {
                t.lines()
                    .filter_map(|l| l.split_whitespace().last())
                    .map(str::to_owned)
                    .collect()
            }),
        ),
        seccomp_mode: seccomp_mode(),
        seccomp_actions: std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail")
            .ok()
            .map(|t| t.split_whitespace().map(str::to_owned).collect()),
        disks: target
            .disks
            .iter()
            .map(|(what, path)| disk(what, path))
            .collect(),
        base: base(&target.base_dir),
        index: match (&target.index_url, scope) {
            (Some(url), Scope::Full) => Some((url.clone(), reach(url))),
            _ => None,
        },
        port: match (&target.port, scope) {
            (Some((host, port)), Scope::Full) => {
                Some((host.clone(), *port, port_state(host, *port)))
            }
            _ => None,
        },
    }
}

fn probe_syscall(call: Syscall) -> Probe {
    let null = std::ptr::null::<libc::c_void>();
    // SAFETY: each call gets arguments the kernel rejects before it acts (fd -1, null
    // pointers, a zero size, pid 0), so nothing is created, attached or changed; only the
    // error is read. Should one succeed anyway, the fd it returns is closed below.
    let ret = unsafe {
        match call {
            Syscall::OpenTree => libc::syscall(libc::SYS_open_tree, -1, null, 0),
            Syscall::MoveMount => libc::syscall(libc::SYS_move_mount, -1, null, -1, null, 0),
            Syscall::MountSetattr => {
                libc::syscall(libc::SYS_mount_setattr, -1, null, 0, null, 0usize)
            }
            Syscall::Clone3 => libc::syscall(libc::SYS_clone3, null, 0usize),
            Syscall::PidfdOpen => libc::syscall(libc::SYS_pidfd_open, 0, 0),
        }
    };
    if ret >= 0 {
        if let Ok(fd) = libc::c_int::try_from(ret) {
            // SAFETY: the call returned a new fd that nothing else owns.
            unsafe { libc::close(fd) };
        }
        return Probe::Present;
    }
    match Errno::last() {
        Errno::ENOSYS => Probe::Missing,
        e @ (Errno::EPERM | Errno::EACCES) => Probe::Denied(e),
        _ => Probe::Present,
    }
}

fn seccomp_mode() -> Result<i32, Errno> {
    // SAFETY: PR_GET_SECCOMP takes no pointer and only returns this thread's mode.
    let mode = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    if mode < 0 {
        Err(Errno::last())
    } else {
        Ok(mode)
    }
}

/// The controllers a v1 machine is checked for, in order.
pub const V1_CONTROLLERS: [&str; 4] = ["memory", "pids", "freezer", "cpu"];

fn cgroups() -> CgroupFacts {
    match CgroupSetup::detect() {
        Err(e) => CgroupFacts::Undetected(e.to_string()),
        Ok(CgroupSetup::V1 { controllers }) => CgroupFacts::V1 {
            controllers: V1_CONTROLLERS
                .iter()
                .map(|&name| {
                    let mount = controllers.get(name).cloned();
                    let writable = mount.as_deref().map(|m| try_mkdir(m).0);
                    Controller {
                        name,
                        mount,
                        writable,
                    }
                })
                .collect(),
        },
        Ok(CgroupSetup::V2 { root }) => {
            let available = std::fs::read_to_string(root.join("cgroup.controllers"))
                .map(|t| t.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default();
            let (writable, freeze) = try_mkdir(&root);
            CgroupFacts::V2 {
                root,
                available,
                writable,
                freeze,
            }
        }
    }
}

/// Makes and removes a cgroup under `mount`; says whether the new one had `cgroup.freeze`.
fn try_mkdir(mount: &Path) -> (Writable, bool) {
    let dir = mount.join(format!("lambdaworker-doctor-{}", std::process::id()));
    match std::fs::create_dir(&dir) {
        Ok(()) => {
            let freeze = dir.join("cgroup.freeze").exists();
            let removed = std::fs::remove_dir(&dir);
            match removed {
                Ok(()) => (Writable::Yes, freeze),
                Err(e) => (
                    Writable::No(format!("made {} but cannot remove it: {e}", dir.display())),
                    freeze,
                ),
            }
        }
        Err(e) => (Writable::No(format!("mkdir {}: {e}", dir.display())), false),
    }
}

fn disk(what: &str, path: &Path) -> Disk {
    // A directory not made yet (a cluster before `admin new`) will be on its parent's disk.
    let existing = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
        .to_owned();
    // The block counts are u64 on 64-bit targets but not on every target.
    #[allow(clippy::useless_conversion)]
    let available = Reading::of(
        &format!("statvfs {}", existing.display()),
        nix::sys::statvfs::statvfs(&existing)
            .map(|s| u64::from(s.blocks_available()).saturating_mul(u64::from(s.fragment_size()))),
    );
    Disk {
        what: what.to_owned(),
        path: path.to_owned(),
        available,
    }
}

fn base(dir: &Path) -> Base {
    let exists = dir.join("usr").is_dir();
    Base {
        dir: dir.to_owned(),
        exists,
        python: exists.then(|| python_version(dir)).flatten(),
        runtime: dir
            .join(crate::zygote::ZYGOTE_PATH.trim_start_matches('/'))
            .is_file(),
    }
}

/// `3.13` from the base's `/usr/bin/python3 -> python3.13` link, else from its
/// `/usr/lib/python3.N` directory. Read, never run: the base's binaries are for its own libc.
fn python_version(base: &Path) -> Option<String> {
    let from_name = |name: &str| {
        let v = name.strip_prefix("python")?;
        let mut parts = v.split('.');
        let major: u32 = parts.next()?.parse().ok()?;
        let minor: u32 = parts.next()?.parse().ok()?;
        (major == 3 && parts.next().is_none()).then(|| format!("{major}.{minor}"))
    };
    if let Ok(target) = std::fs::read_link(base.join("usr/bin/python3")) {
        if let Some(v) = target
            .file_name()
            .and_then(|n| from_name(&n.to_string_lossy()))
        {
            return Some(v);
        }
    }
    let mut found: Vec<String> = std::fs::read_dir(base.join("usr/lib"))
        .ok()?
        .filter_map(|e| from_name(&e.ok()?.file_name().to_string_lossy()))
        .collect();
    found.sort_by_key(|v| v.split('.').nth(1).and_then(|m| m.parse::<u32>().ok()));
    found.pop()
}

/// Opens a TCP connection to the URL's host (no TLS, no HTTP: whether pip could get there).
fn reach(url: &str) -> Reach {
    let Some((host, port)) = host_port(url) else {
        return Reach::BadUrl(url.to_owned());
    };
    let addrs: Vec<SocketAddr> = match (host.as_str(), port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => return Reach::Unresolved(format!("{host}: {e}")),
    };
    let mut last = format!("{host} has no address");
    for addr in addrs {
        let started = Instant::now();
        match TcpStream::connect_timeout(&addr, INDEX_TIMEOUT) {
            Ok(_) => return Reach::Connected(addr, started.elapsed()),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Reach::Unreachable(last)
}

/// The host and port of an `http://` or `https://` URL (user info dropped, IPv6 brackets
/// removed), the scheme's port when none is given.
pub fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let default = match scheme.to_ascii_lowercase().as_str() {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default,
    };
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

fn port_state(host: &str, port: u16) -> PortState {
    match TcpListener::bind((host, port)) {
        Ok(listener) => {
            drop(listener);
            PortState::Free
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let worker = crate::http_client::get(host, port, "/status", Duration::from_secs(2))
                .is_ok_and(|r| r.status == 200);
            PortState::InUse { worker }
        }
        Err(e) => PortState::Error(format!("bind {host}:{port}: {e}")),
    }
}
