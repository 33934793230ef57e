//! The ordered list of steps a sandbox child runs to build its root filesystem and identity.
//!
//! [`SetupPlan::new`] turns a [`SandboxSpec`] into steps whose arguments are prepared C strings,
//! before the child is cloned; [`SetupPlan::run`] executes them in the child without allocating.
//! The order (documented in `docs/sandbox.md`) is:
//!
//! 1. set the host name; bring up `lo` when the sandbox has its own network namespace
//! 2. make every mount private, so nothing propagates back to the host
//! 3. bind the root onto itself (pivot_root needs a mount point)
//! 4. a small tmpfs at `/dev` with `null`, `zero`, `random`, `urandom` (made with `mknod`, or,
//!    in a user namespace, where no node can be made, the host's nodes bound onto empty files)
//!    and the `fd`/`std*` links, and the spec's extra devices (a GPU's) bound onto empty files,
//!    then remounted read-only (the nodes stay usable; nothing new can
//!    be created there); then a tmpfs of `/tmp`'s size at `/dev/shm` (POSIX shared memory and
//!    semaphores)
//! 5. a fresh `/proc` for the sandbox's pid namespace, then its sensitive paths masked as
//!    container runtimes mask them (see [`ProcMask`](crate::procmask::ProcMask)): files covered by `/dev/null`,
//!    directories by an empty read-only tmpfs, and the kernel's tunables made read-only
//! 6. a size-limited tmpfs at `/tmp`
//! 7. each bind mount (`/host`), then its remount read-only where asked, always `nosuid,nodev`;
//!    then each detached mount (`/handler`: the directory the worker opened and checked), attached
//!    with `move_mount` and the flags it was cloned with (read-only, `nosuid,nodev`)
//! 8. each view (the packages a lambda needs): a small tmpfs, a directory (or, for a file, an
//!    empty file) per entry, each entry bound read-only, then the tmpfs remounted read-only; then each attached view (the
//!    volumes under `/mnt`): a small tmpfs, a directory per entry, each entry's detached mount
//!    attached there with its own flags, then the tmpfs remounted read-only
//! 9. remount the root read-only, `nosuid,nodev`
//! 10. `pivot_root(".", ".")` inside the root, detach the old root, `chdir` to the working directory

use std::ffi::CString;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::MsFlags;

use crate::procmask::Mask;

use crate::spec::{NetMode, SandboxSpec, SpecError};
use crate::syscall::Syscall;

/// One prepared step.
#[derive(Debug)]
pub(crate) enum Step {
    Hostname(CString),
    LoopbackUp,
    Mount {
        what: &'static str,
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: MsFlags,
        data: Option<CString>,
    },
    Mkdir {
        path: CString,
        mode: u32,
    },
    CreateFile {
        path: CString,
        mode: u32,
    },
    Mknod {
        path: CString,
        perm: u32,
        major: u32,
        minor: u32,
    },
    Symlink {
        target: CString,
        link: CString,
    },
    MoveMount {
        fd: std::os::fd::RawFd,
        target: CString,
    },
    Chdir(CString),
    PivotRoot(CString),
    UmountDetach(CString),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Hostname(h) => write!(f, "sethostname {h:?}"),
            Step::LoopbackUp => write!(f, "bring up lo"),
            Step::Mount { what, target, .. } => write!(f, "mount {what} at {target:?}"),
            Step::Mkdir { path, .. } => write!(f, "mkdir {path:?}"),
            Step::CreateFile { path, .. } => write!(f, "create {path:?}"),
            Step::Mknod { path, .. } => write!(f, "mknod {path:?}"),
            Step::Symlink { link, .. } => write!(f, "symlink {link:?}"),
            Step::MoveMount { target, .. } => write!(f, "attach a detached mount at {target:?}"),
            Step::Chdir(p) => write!(f, "chdir {p:?}"),
            Step::PivotRoot(p) => write!(f, "pivot_root into {p:?}"),
            Step::UmountDetach(p) => write!(f, "detach old root at {p:?}"),
        }
    }
}

/// The devices of the minimal `/dev`: name, major, minor.
const DEVICES: [(&str, u32, u32); 4] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("random", 1, 8),
    ("urandom", 1, 9),
];
const DEV_LINKS: [(&str, &str); 4] = [
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
];

/// A remount of the bind mount (or mount) at `target` with exactly `flags` (and
/// `MS_BIND | MS_REMOUNT`): how each mount of the plan gets its final flags.
fn bind_remount(what: &'static str, target: CString, flags: MsFlags) -> Step {
    Step::Mount {
        what,
        source: None,
        target,
        fstype: None,
        flags: MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
        data: None,
    }
}

/// The small tmpfs a view is assembled in (`nosuid,nodev,noexec`).
fn view_tmpfs(what: &'static str, target: CString) -> Result<Step, SpecError> {
    Ok(Step::Mount {
        what,
        source: Some(cstr("tmpfs", "fstype")?),
        target,
        fstype: Some(cstr("tmpfs", "fstype")?),
        flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        data: Some(cstr("mode=755,size=1m,nr_inodes=4096", "data")?),
    })
}

/// A view's tmpfs remounted read-only once its entries are in place.
fn view_remount(what: &'static str, target: CString) -> Step {
    Step::Mount {
        what,
        source: None,
        target,
        fstype: None,
        flags: MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC,
        data: None,
    }
}

/// `/dev`'s final flags: read-only, `nosuid,noexec` (its device nodes must work).
const DEV_FLAGS: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NOEXEC);

/// The child's setup steps for one spec.
#[derive(Debug)]
pub struct SetupPlan {
    steps: Vec<Step>,
}

fn cstr(p: impl AsRef<[u8]>, what: &'static str) -> Result<CString, SpecError> {
    CString::new(p.as_ref()).map_err(|_| SpecError::Nul {
        what,
        value: String::from_utf8_lossy(p.as_ref()).into_owned(),
    })
}

fn path_c(p: &Path) -> Result<CString, SpecError> {
    cstr(p.as_os_str().as_bytes(), "path")
}

impl SetupPlan {
    /// Prepares the steps for `spec`.
    pub fn new(spec: &SandboxSpec) -> Result<Self, SpecError> {
        let root = &spec.root;
        let inside = |p: &str| path_c(&root.join(p.trim_start_matches('/')));
        let mut steps = vec![Step::Hostname(cstr(&spec.hostname, "hostname")?)];
        if spec.net == NetMode::Isolated {
            steps.push(Step::LoopbackUp);
        }
        let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        steps.push(Step::Mount {
            what: "private propagation",
            source: None,
            target: cstr("/", "path")?,
            fstype: None,
            flags: MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            data: None,
        });
        steps.push(Step::Mount {
            what: "root bind",
            source: Some(path_c(root)?),
            target: path_c(root)?,
            fstype: None,
            flags: MsFlags::MS_BIND,
            data: None,
        });
        steps.push(Step::Mount {
            what: "dev tmpfs",
            source: Some(cstr("tmpfs", "fstype")?),
            target: inside("/dev")?,
            fstype: Some(cstr("tmpfs", "fstype")?),
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            data: Some(cstr("mode=755,size=64k,nr_inodes=64", "data")?),
        });
        for (name, major, minor) in DEVICES {
            let path = inside(&format!("/dev/{name}"))?;
            if spec.user_ns.is_some() {
                // No device nodes can be made in a user namespace: the host's own nodes are
                // bound onto empty files instead (the same devices, opened through them).
                steps.push(Step::CreateFile {
                    path: path.clone(),
                    mode: 0o666,
                });
                steps.push(Step::Mount {
                    what: "device bind",
                    source: Some(cstr(format!("/dev/{name}"), "path")?),
                    target: path.clone(),
                    fstype: None,
                    flags: MsFlags::MS_BIND,
                    data: None,
                });
                // Read-only as the rest of /dev (what is bound over a /proc file with it too).
                steps.push(bind_remount(
                    "device bind remount read-only",
                    path,
                    DEV_FLAGS,
                ));
            } else {
                steps.push(Step::Mknod {
                    path,
                    perm: 0o666,
                    major,
                    minor,
                });
            }
        }
        // Extra host devices (a GPU's nodes): bound onto empty files, in a user namespace or
        // not (what may open them is the device cgroup's rules).
        for dev in &spec.devices {
            let name = dev.strip_prefix("/dev").unwrap_or(dev);
            let path = path_c(
                &root
                    .join("dev")
                    .join(name.strip_prefix("/").unwrap_or(name)),
            )?;
            steps.push(Step::CreateFile {
                path: path.clone(),
                mode: 0o666,
            });
            steps.push(Step::Mount {
                what: "device bind",
                source: Some(path_c(dev)?),
                target: path.clone(),
                fstype: None,
                flags: MsFlags::MS_BIND,
                data: None,
            });
            steps.push(bind_remount(
                "device bind remount read-only",
                path,
                DEV_FLAGS,
            ));
        }
        for (target, name) in DEV_LINKS {
            steps.push(Step::Symlink {
                target: cstr(target, "path")?,
                link: inside(&format!("/dev/{name}"))?,
            });
        }
        // POSIX shared memory and semaphores (multiprocessing's locks and queues) live here.
        steps.push(Step::Mkdir {
            path: inside("/dev/shm")?,
            mode: 0o1777,
        });
        steps.push(bind_remount(
            "dev remount read-only",
            inside("/dev")?,
            DEV_FLAGS,
        ));
        steps.push(Step::Mount {
            what: "dev/shm tmpfs",
            source: Some(cstr("tmpfs", "fstype")?),
            target: inside("/dev/shm")?,
            fstype: Some(cstr("tmpfs", "fstype")?),
            flags: nosuid_nodev | MsFlags::MS_NOEXEC,
            data: Some(cstr(format!("mode=1777,size={}m", spec.tmp_mb), "data")?),
        });
        steps.push(Step::Mount {
            what: "proc",
            source: Some(cstr("proc", "fstype")?),
            target: inside("/proc")?,
            fstype: Some(cstr("proc", "fstype")?),
            flags: nosuid_nodev | MsFlags::MS_NOEXEC,
            data: None,
        });
        for (name, mask) in &spec.proc_mask.entries {
            let target = inside(&format!("/proc/{name}"))?;
            match mask {
                Mask::File => steps.push(Step::Mount {
                    what: "proc mask (file)",
                    source: Some(inside("/dev/null")?),
                    target,
                    fstype: None,
                    flags: MsFlags::MS_BIND,
                    data: None,
                }),
                Mask::Dir => steps.push(Step::Mount {
                    what: "proc mask (directory)",
                    source: Some(cstr("tmpfs", "fstype")?),
                    target,
                    fstype: Some(cstr("tmpfs", "fstype")?),
                    flags: MsFlags::MS_RDONLY | nosuid_nodev | MsFlags::MS_NOEXEC,
                    data: Some(cstr("size=4k,nr_inodes=4,mode=555", "data")?),
                }),
                Mask::ReadOnly => {
                    steps.push(Step::Mount {
                        what: "proc read-only bind",
                        source: Some(target.clone()),
                        target: target.clone(),
                        fstype: None,
                        flags: MsFlags::MS_BIND | MsFlags::MS_REC,
                        data: None,
                    });
                    steps.push(bind_remount(
                        "proc remount read-only",
                        target,
                        MsFlags::MS_RDONLY | nosuid_nodev | MsFlags::MS_NOEXEC,
                    ));
                }
            }
        }
        steps.push(Step::Mount {
            what: "tmp tmpfs",
            source: Some(cstr("tmpfs", "fstype")?),
            target: inside("/tmp")?,
            fstype: Some(cstr("tmpfs", "fstype")?),
            flags: nosuid_nodev,
            data: Some(cstr(format!("mode=1777,size={}m", spec.tmp_mb), "data")?),
        });
        for m in &spec.mounts {
            let target = path_c(&root.join(m.target.strip_prefix("/").unwrap_or(&m.target)))?;
            steps.push(Step::Mount {
                what: "bind",
                source: Some(path_c(&m.source)?),
                target: target.clone(),
                fstype: None,
                flags: MsFlags::MS_BIND,
                data: None,
            });
            steps.push(if m.writable {
                bind_remount("bind remount", target, nosuid_nodev)
            } else {
                bind_remount(
                    "bind remount read-only",
                    target,
                    MsFlags::MS_RDONLY | nosuid_nodev,
                )
            });
        }
        for (mount, target) in &spec.attached {
            use std::os::fd::{AsFd, AsRawFd};
            steps.push(Step::MoveMount {
                fd: mount.as_fd().as_raw_fd(),
                target: path_c(&root.join(target.strip_prefix("/").unwrap_or(target)))?,
            });
        }
        for v in &spec.views {
            let base = root.join(v.target.strip_prefix("/").unwrap_or(&v.target));
            let target = path_c(&base)?;
            steps.push(view_tmpfs("view tmpfs", target.clone())?);
            let mut made = std::collections::HashSet::new();
            for (source, rel) in &v.entries {
                let mut dir = base.clone();
                let file = !source.is_dir();
                let count = rel.components().count();
                for (i, comp) in rel.components().enumerate() {
                    dir.push(comp);
                    if file && i + 1 == count {
                        // A file entry (a driver library): an empty file to bind it onto.
                        steps.push(Step::CreateFile {
                            path: path_c(&dir)?,
                            mode: 0o644,
                        });
                    } else if made.insert(dir.clone()) {
                        steps.push(Step::Mkdir {
                            path: path_c(&dir)?,
                            mode: 0o755,
                        });
                    }
                }
                let entry = path_c(&dir)?;
                steps.push(Step::Mount {
                    what: "view bind",
                    source: Some(path_c(source)?),
                    target: entry.clone(),
                    fstype: None,
                    flags: MsFlags::MS_BIND,
                    data: None,
                });
                steps.push(bind_remount(
                    "view bind remount read-only",
                    entry,
                    MsFlags::MS_RDONLY | nosuid_nodev,
                ));
            }
            steps.push(view_remount("view remount read-only", target));
        }
        for v in &spec.attached_views {
            use std::os::fd::{AsFd, AsRawFd};
            let base = root.join(v.target.strip_prefix("/").unwrap_or(&v.target));
            let target = path_c(&base)?;
            steps.push(view_tmpfs("attached view tmpfs", target.clone())?);
            let mut made = std::collections::HashSet::new();
            for (mount, rel) in &v.entries {
                let mut dir = base.clone();
                for comp in rel.components() {
                    dir.push(comp);
                    if made.insert(dir.clone()) {
                        steps.push(Step::Mkdir {
                            path: path_c(&dir)?,
                            mode: 0o755,
                        });
                    }
                }
                steps.push(Step::MoveMount {
                    fd: mount.as_fd().as_raw_fd(),
                    target: path_c(&dir)?,
                });
            }
            steps.push(view_remount("attached view remount read-only", target));
        }
        steps.push(bind_remount(
            "root remount read-only",
            path_c(root)?,
            MsFlags::MS_RDONLY | nosuid_nodev,
        ));
        steps.push(Step::Chdir(path_c(root)?));
        steps.push(Step::PivotRoot(cstr(".", "path")?));
        steps.push(Step::UmountDetach(cstr(".", "path")?));
        steps.push(Step::Chdir(path_c(&spec.cwd)?));
        Ok(Self { steps })
    }

    /// Runs every step in order; on failure returns the index of the failed step and the errno.
    /// Allocation-free: safe to call between clone and exec.
    pub fn run(&self, sys: &dyn Syscall) -> Result<(), (usize, Errno)> {
        for (i, step) in self.steps.iter().enumerate() {
            let r = match step {
                Step::Hostname(h) => sys.sethostname(h),
                Step::LoopbackUp => sys.loopback_up(),
                Step::Mount {
                    source,
                    target,
                    fstype,
                    flags,
                    data,
                    ..
                } => sys.mount(
                    source.as_deref(),
                    target,
                    fstype.as_deref(),
                    *flags,
                    data.as_deref(),
                ),
                Step::Mknod {
                    path,
                    perm,
                    major,
                    minor,
                } => sys.mknod_char(path, *perm, *major, *minor),
                Step::Mkdir { path, mode } => sys.mkdir(path, *mode),
                Step::CreateFile { path, mode } => sys.create_file(path, *mode),
                Step::Symlink { target, link } => sys.symlink(target, link),
                Step::MoveMount { fd, target } => sys.move_mount(*fd, target),
                Step::Chdir(p) => sys.chdir(p),
                Step::PivotRoot(p) => sys.pivot_root(p, p),
                Step::UmountDetach(p) => sys.umount_detach(p),
            };
            r.map_err(|e| (i, e))?;
        }
        Ok(())
    }

    /// A human description of step `index` (for error messages).
    pub fn describe(&self, index: usize) -> String {
        self.steps
            .get(index)
            .map_or_else(|| format!("setup step {index}"), ToString::to_string)
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// True when there are no steps (never, for a valid spec).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procmask::ProcMask;
    use crate::syscall::RecordingSyscall;

    fn spec(net: NetMode) -> (tempfile::TempDir, SandboxSpec) {
        let dir = tempfile::tempdir().unwrap();
        for d in ["tmp", "proc", "dev", "host", "handler", "packages"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        let spec = SandboxSpec::builder(dir.path(), "lw/sb-1")
            .command(["/usr/bin/python3"])
            .output("/o", "/e")
            .net(net)
            .tmp_mb(32)
            .proc_mask(ProcMask {
                entries: vec![
                    ("kcore", Mask::File),
                    ("acpi", Mask::Dir),
                    ("sys", Mask::ReadOnly),
                ],
            })
            .mount("/usr", "/packages", false)
            .mount("/tmp", "/host", true)
            .cwd("/host")
            .build()
            .unwrap();
        (dir, spec)
    }

    #[test]
    fn steps_run_in_documented_order() {
        let (dir, spec) = spec(NetMode::Isolated);
        let root = dir.path().display().to_string();
        let plan = SetupPlan::new(&spec).unwrap();
        let rec = RecordingSyscall::default();
        plan.run(&rec).unwrap();
        let calls = rec.calls();
        let pos = |needle: &str| {
            calls
                .iter()
                .position(|c| c.starts_with(needle))
                .unwrap_or_else(|| panic!("{needle} not in {calls:#?}"))
        };
        assert_eq!(calls[0], "sethostname lambda");
        assert_eq!(calls[1], "loopback_up");
        assert!(
            calls[2].starts_with("mount - / - MsFlags(MS_REC | MS_PRIVATE)"),
            "{}",
            calls[2]
        );
        assert!(pos(&format!("mount {root} {root} - MsFlags(MS_BIND)")) > 2);
        assert!(
            pos(&format!("mknod {root}/dev/null 666 1:3"))
                > pos(&format!("mount tmpfs {root}/dev"))
        );
        // /proc is mounted, then masked: a file under /dev/null, a directory under an empty
        // read-only tmpfs, the tunables bound read-only; all before the root goes read-only.
        let proc = pos(&format!("mount proc {root}/proc proc"));
        let kcore = pos(&format!(
            "mount {root}/dev/null {root}/proc/kcore - MsFlags(MS_BIND)"
        ));
        let acpi = pos(&format!(
            "mount tmpfs {root}/proc/acpi tmpfs MsFlags(MS_RDONLY"
        ));
        let sys = pos(&format!("mount - {root}/proc/sys - MsFlags(MS_RDONLY"));
        assert!(proc < kcore && kcore < acpi && acpi < sys, "{calls:#?}");
        assert!(pos(&format!("mknod {root}/dev/null")) < kcore);
        assert!(calls
            .iter()
            .any(|c| c.starts_with(&format!("mount tmpfs {root}/tmp tmpfs"))
                && c.ends_with("mode=1777,size=32m")));
        // read-only packages, writable host, both nosuid/nodev
        let ro = pos(&format!("mount - {root}/packages - MsFlags(MS_RDONLY"));
        assert!(calls[ro].contains("MS_NOSUID") && calls[ro].contains("MS_BIND"));
        let rw = pos(&format!("mount - {root}/host - MsFlags(MS_NOSUID"));
        assert!(!calls[rw].contains("MS_RDONLY"));
        // the root goes read-only after every submount, then pivot
        let root_ro = pos(&format!("mount - {root} - MsFlags(MS_RDONLY"));
        assert!(root_ro > rw && root_ro > ro);
        assert_eq!(calls[calls.len() - 4], format!("chdir {root}"));
        assert_eq!(calls[calls.len() - 3], "pivot_root . .");
        assert_eq!(calls[calls.len() - 2], "umount .");
        assert_eq!(calls[calls.len() - 1], "chdir /host");
    }

    #[test]
    fn in_a_user_namespace_devices_are_bound_not_made() {
        let (dir, spec) = spec(NetMode::Isolated);
        let root = dir.path().display().to_string();
        let map = crate::IdMap::new(vec![crate::IdRange {
            inside: 0,
            outside: 524288,
            count: 1,
        }])
        .unwrap();
        let spec = SandboxSpec {
            user_ns: Some(map),
            ..spec
        };
        let rec = RecordingSyscall::default();
        SetupPlan::new(&spec).unwrap().run(&rec).unwrap();
        let calls = rec.calls();
        assert!(!calls.iter().any(|c| c.starts_with("mknod")), "{calls:#?}");
        let create = calls
            .iter()
            .position(|c| *c == format!("create {root}/dev/urandom 666"))
            .unwrap();
        assert!(calls[create + 1].starts_with(&format!(
            "mount /dev/urandom {root}/dev/urandom - MsFlags(MS_BIND)"
        )));
        let ro = calls
            .iter()
            .position(|c| c.starts_with(&format!("mount - {root}/dev - MsFlags(MS_RDONLY")))
            .unwrap();
        assert!(ro > create);
    }

    #[test]
    fn host_network_skips_loopback() {
        let (_dir, spec) = spec(NetMode::Host);
        let rec = RecordingSyscall::default();
        SetupPlan::new(&spec).unwrap().run(&rec).unwrap();
        assert!(!rec.calls().iter().any(|c| c == "loopback_up"));
    }

    #[test]
    fn failure_reports_the_step() {
        let (_dir, spec) = spec(NetMode::Isolated);
        let plan = SetupPlan::new(&spec).unwrap();
        let rec = RecordingSyscall::failing_on("pivot_root");
        let (idx, errno) = plan.run(&rec).unwrap_err();
        assert_eq!(errno, Errno::EPERM);
        assert_eq!(plan.describe(idx), "pivot_root into \".\"");
        // nothing after the failed step ran
        assert_eq!(
            rec.calls().last().map(String::as_str),
            Some("pivot_root . .")
        );
    }
}
