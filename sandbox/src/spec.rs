//! The validated description of one sandbox: its root, mounts, devices, limits, process and where its
//! output goes ([`Output`]: host files, or fds such as the write end of a pipe).
//!
//! A [`SandboxSpec`] can only be built through [`SandboxSpec::builder`], which checks every path and
//! value, so the spawning code never sees an invalid spec.

use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::cgroup::Limits;

/// An invalid sandbox specification.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("sandbox root {0} is not an absolute path to a directory")]
    Root(PathBuf),
    #[error("mount source {0} does not exist or is not absolute")]
    MountSource(PathBuf),
    #[error("mount target {0} must be an absolute, normalized path other than /")]
    MountTarget(PathBuf),
    #[error("mount point {target} does not exist as a directory (or, for a file source, a regular file) in the sandbox root {root}")]
    MountPoint { root: PathBuf, target: PathBuf },
    #[error("invalid hostname {0:?}: 1-63 characters of [A-Za-z0-9-]")]
    Hostname(String),
    #[error("invalid cgroup path {0}: must be relative and normalized")]
    Cgroup(PathBuf),
    #[error("the sandbox needs a program to run")]
    NoProgram,
    #[error("{what} contains a NUL byte: {value:?}")]
    Nul { what: &'static str, value: String },
    #[error("tmp size must be between 1 and 65536 MiB, not {0}")]
    TmpSize(u64),
    #[error("view entry {0} must be a relative, normalized path")]
    ViewEntry(PathBuf),
    #[error("output file {0} must be an absolute path")]
    Output(PathBuf),
    #[error("device {0} must be a character device directly in /dev")]
    Device(PathBuf),
    #[error("attached view entries {0} and {1} nest: one would be made inside the other's mount")]
    Nested(PathBuf, PathBuf),
}

/// Network of the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetMode {
    /// A new network namespace with only the loopback interface (brought up).
    Isolated,
    /// The host's network namespace.
    Host,
}

/// Where the sandbox's stdout or stderr goes.
#[derive(Debug, Clone)]
pub enum Output {
    /// A host file (absolute path), created with mode 0644 if missing and appended to.
    File(PathBuf),
    /// An open fd, for example the write end of a pipe the caller reads; the child gets its
    /// own copy, the caller keeps this one (and may close it once the sandbox has started).
    Fd(Arc<OwnedFd>),
}

/// A bind mount of a host directory into the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Host directory.
    pub source: PathBuf,
    /// Absolute path inside the sandbox; must already exist as a directory in the (read-only) root.
    pub target: PathBuf,
    /// Read-write if true, read-only otherwise.
    pub writable: bool,
}

/// A read-only directory assembled for one sandbox: a small tmpfs at `target` holding only the
/// listed host directories, each bound read-only at `target/<rel>` (used for the packages a
/// lambda needs, so that it sees no other).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// Absolute path inside the sandbox; must already exist as a directory in the root.
    pub target: PathBuf,
    /// (host directory, relative path under `target`).
    pub entries: Vec<(PathBuf, PathBuf)>,
}

/// A directory assembled for one sandbox from detached mounts: a small read-only tmpfs at
/// `target` with each mount attached at `target/<rel>` with its own flags (used for the
/// volumes a function mounts under `/mnt`, each writable or not as its access point says).
#[derive(Debug, Clone)]
pub struct AttachedView {
    /// Absolute path inside the sandbox; must already exist as a directory in the root.
    pub target: PathBuf,
    /// (mount, relative path under `target`); no path is inside another.
    pub entries: Vec<(Arc<crate::DetachedMount>, PathBuf)>,
}

/// Everything needed to start a sandbox. Build it with [`SandboxSpec::builder`].
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    pub(crate) root: PathBuf,
    pub(crate) mounts: Vec<BindMount>,
    /// Detached mounts the child attaches with `move_mount` (after the bind mounts).
    pub(crate) attached: Vec<(std::sync::Arc<crate::DetachedMount>, PathBuf)>,
    pub(crate) views: Vec<View>,
    /// Mounted after the views.
    pub(crate) attached_views: Vec<AttachedView>,
    /// Host device nodes (`/dev/<name>`) bound at the same path in the sandbox's `/dev`.
    pub(crate) devices: Vec<PathBuf>,
    pub(crate) tmp_mb: u64,
    pub(crate) hostname: String,
    pub(crate) net: NetMode,
    pub(crate) cgroup: PathBuf,
    pub(crate) limits: Limits,
    pub(crate) argv: Vec<String>,
    pub(crate) env: Vec<String>,
    pub(crate) cwd: PathBuf,
    pub(crate) stdout: Output,
    pub(crate) stderr: Output,
    pub(crate) hardening: Option<crate::Hardening>,
    /// A user namespace of its own with these id maps (see [`crate::userns`]); `None`: the
    /// host's.
    pub(crate) user_ns: Option<crate::userns::IdMap>,
    /// Borrowed from [`ProcMask::host`](crate::procmask::ProcMask::host) unless a test sets one.
    pub(crate) proc_mask: std::borrow::Cow<'static, crate::procmask::ProcMask>,
}

impl SandboxSpec {
    /// Starts a spec rooted at `root` (the read-only base filesystem) whose cgroup is `cgroup`
    /// (relative to each hierarchy's root).
    pub fn builder(root: impl Into<PathBuf>, cgroup: impl Into<PathBuf>) -> SpecBuilder {
        SpecBuilder {
            spec: SandboxSpec {
                root: root.into(),
                mounts: Vec::new(),
                attached: Vec::new(),
                views: Vec::new(),
                attached_views: Vec::new(),
                devices: Vec::new(),
                tmp_mb: 64,
                hostname: "lambda".to_owned(),
                net: NetMode::Isolated,
                cgroup: cgroup.into(),
                limits: Limits::default(),
                argv: Vec::new(),
                env: Vec::new(),
                cwd: PathBuf::from("/"),
                stdout: Output::File(PathBuf::new()),
                stderr: Output::File(PathBuf::new()),
                hardening: None,
                user_ns: None,
                proc_mask: std::borrow::Cow::Borrowed(crate::procmask::ProcMask::host()),
            },
        }
    }

    /// The relative cgroup path of this sandbox.
    pub fn cgroup(&self) -> &Path {
        &self.cgroup
    }

    /// The root filesystem.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The id maps of the sandbox's own user namespace, if it has one.
    pub fn user_ns(&self) -> Option<&crate::userns::IdMap> {
        self.user_ns.as_ref()
    }
}

/// Builder for [`SandboxSpec`]; [`SpecBuilder::build`] validates.
#[derive(Debug)]
pub struct SpecBuilder {
    spec: SandboxSpec,
}

impl SpecBuilder {
    /// Adds a bind mount.
    pub fn mount(
        mut self,
        source: impl Into<PathBuf>,
        target: impl Into<PathBuf>,
        writable: bool,
    ) -> Self {
        self.spec.mounts.push(BindMount {
            source: source.into(),
            target: target.into(),
            writable,
        });
        self
    }
    /// Attaches a detached mount (see [`DetachedMount`](crate::DetachedMount)) at `target`,
    /// with the flags it was cloned with. Unlike a bind mount by path, what is mounted is the
    /// directory the caller opened and checked, whatever its path names by then.
    pub fn attach(
        mut self,
        mount: std::sync::Arc<crate::DetachedMount>,
        target: impl Into<PathBuf>,
    ) -> Self {
        self.spec.attached.push((mount, target.into()));
        self
    }

    /// Adds a read-only view at `target` made of `entries` (host directory, relative path);
    /// see [`View`]. Views are mounted after the bind mounts.
    pub fn view(mut self, target: impl Into<PathBuf>, entries: Vec<(PathBuf, PathBuf)>) -> Self {
        self.spec.views.push(View {
            target: target.into(),
            entries,
        });
        self
    }

    /// Adds a view at `target` made of detached mounts, each at its relative path; see
    /// [`AttachedView`]. Attached views are mounted after the views.
    pub fn attach_view(
        mut self,
        target: impl Into<PathBuf>,
        entries: Vec<(Arc<crate::DetachedMount>, PathBuf)>,
    ) -> Self {
        self.spec.attached_views.push(AttachedView {
            target: target.into(),
            entries,
        });
        self
    }

    /// Binds the host device node `path` (`/dev/<name>`, a character device) at the same path
    /// in the sandbox's `/dev` (the device cgroup decides what may open it).
    pub fn device(mut self, path: impl Into<PathBuf>) -> Self {
        self.spec.devices.push(path.into());
        self
    }

    /// The `/proc` paths to mask (by default [`ProcMask::host`](crate::procmask::ProcMask::host)).
    pub fn proc_mask(mut self, mask: crate::procmask::ProcMask) -> Self {
        self.spec.proc_mask = std::borrow::Cow::Owned(mask);
        self
    }

    /// Size of the `/tmp` tmpfs in MiB.
    pub fn tmp_mb(mut self, mb: u64) -> Self {
        self.spec.tmp_mb = mb;
        self
    }
    /// Host name seen inside the sandbox.
    pub fn hostname(mut self, name: impl Into<String>) -> Self {
        self.spec.hostname = name.into();
        self
    }
    /// Network mode.
    pub fn net(mut self, net: NetMode) -> Self {
        self.spec.net = net;
        self
    }
    /// Cgroup limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.spec.limits = limits;
        self
    }
    /// The program (absolute path inside the sandbox) and its arguments.
    pub fn command<I, S>(mut self, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.spec.argv = argv.into_iter().map(Into::into).collect();
        self
    }
    /// Adds an environment variable (the environment starts empty).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.spec.env.push(format!("{key}={value}"));
        self
    }
    /// Working directory inside the sandbox.
    pub fn cwd(mut self, cwd: impl Into<PathBuf>) -> Self {
        self.spec.cwd = cwd.into();
        self
    }
    /// Runs the program unprivileged: the child drops every capability, its groups, root (for
    /// `hardening`'s uid and gid), sets `no_new_privs` and installs the seccomp filters, right
    /// before `execve`.
    pub fn harden(mut self, hardening: crate::Hardening) -> Self {
        self.spec.hardening = Some(hardening);
        self
    }
    /// Starts the sandbox in a user namespace of its own, with `map` as its uid and gid maps:
    /// its setup runs as root of that namespace (the host id `map` gives inside id 0), and
    /// [`harden`](Self::harden)'s ids are then ids inside it.
    pub fn user_ns(mut self, map: crate::userns::IdMap) -> Self {
        self.spec.user_ns = Some(map);
        self
    }
    /// Host files receiving the sandbox's stdout and stderr (created, appended to).
    pub fn output(mut self, stdout: impl Into<PathBuf>, stderr: impl Into<PathBuf>) -> Self {
        self.spec.stdout = Output::File(stdout.into());
        self.spec.stderr = Output::File(stderr.into());
        self
    }

    /// Where the sandbox's stdout and stderr go, files or fds (both may be the same pipe:
    /// its two streams then arrive in the order they were written).
    pub fn stdio(mut self, stdout: Output, stderr: Output) -> Self {
        self.spec.stdout = stdout;
        self.spec.stderr = stderr;
        self
    }

    /// Validates and returns the spec.
    pub fn build(self) -> Result<SandboxSpec, SpecError> {
        let s = self.spec;
        if !s.root.is_absolute() || !s.root.is_dir() {
            return Err(SpecError::Root(s.root));
        }
        for (_, target) in &s.attached {
            let inside = s.root.join(target.strip_prefix("/").unwrap_or(target));
            let is_dir = std::fs::symlink_metadata(&inside).is_ok_and(|m| m.is_dir());
            if !is_normal_absolute(target) || !is_dir {
                return Err(SpecError::MountPoint {
                    root: s.root.clone(),
                    target: target.clone(),
                });
            }
        }
        for m in &s.mounts {
            if !m.source.is_absolute() || !m.source.exists() {
                return Err(SpecError::MountSource(m.source.clone()));
            }
            if !is_normal_absolute(&m.target) {
                return Err(SpecError::MountTarget(m.target.clone()));
            }
            let inside = s.root.join(m.target.strip_prefix("/").unwrap_or(&m.target));
            // A directory is bound on a directory, a file on a regular file. symlink_metadata:
            // a symlink in the base must not redirect a mount point.
            let source_is_dir = m.source.is_dir();
            match std::fs::symlink_metadata(&inside) {
                Ok(md) if md.is_dir() && source_is_dir => {}
                Ok(md) if md.is_file() && !source_is_dir => {}
                _ => {
                    return Err(SpecError::MountPoint {
                        root: s.root.clone(),
                        target: m.target.clone(),
                    })
                }
            }
        }
        for v in &s.views {
            if !is_normal_absolute(&v.target) {
                return Err(SpecError::MountTarget(v.target.clone()));
            }
            let inside = s.root.join(v.target.strip_prefix("/").unwrap_or(&v.target));
            match std::fs::symlink_metadata(&inside) {
                Ok(md) if md.is_dir() => {}
                _ => {
                    return Err(SpecError::MountPoint {
                        root: s.root.clone(),
                        target: v.target.clone(),
                    })
                }
            }
            for (source, rel) in &v.entries {
                let kind = std::fs::metadata(source).map(|m| m.file_type());
                let usable = kind.is_ok_and(|t| t.is_dir() || t.is_file());
                if !source.is_absolute() || !usable {
                    return Err(SpecError::MountSource(source.clone()));
                }
                let normal = rel.components().count() > 0
                    && rel.components().all(|c| matches!(c, Component::Normal(_)));
                if !normal {
                    return Err(SpecError::ViewEntry(rel.clone()));
                }
            }
        }
        for dev in &s.devices {
            use std::os::unix::fs::FileTypeExt;
            let one_name = dev.parent() == Some(Path::new("/dev")) && is_normal_absolute(dev);
            let is_char = std::fs::metadata(dev).is_ok_and(|m| m.file_type().is_char_device());
            if !one_name || !is_char {
                return Err(SpecError::Device(dev.clone()));
            }
        }
        for v in &s.attached_views {
            check_view_target(&s.root, &v.target)?;
            for (i, (_, rel)) in v.entries.iter().enumerate() {
                if !is_normal_relative(rel) {
                    return Err(SpecError::ViewEntry(rel.clone()));
                }
                if let Some((_, other)) = v.entries[..i]
                    .iter()
                    .find(|(_, o)| o.starts_with(rel) || rel.starts_with(o))
                {
                    return Err(SpecError::Nested(other.clone(), rel.clone()));
                }
            }
        }
        for fixed in ["/tmp", "/proc", "/dev"] {
            let inside = s.root.join(&fixed[1..]);
            match std::fs::symlink_metadata(&inside) {
                Ok(md) if md.is_dir() => {}
                _ => {
                    return Err(SpecError::MountPoint {
                        root: s.root.clone(),
                        target: PathBuf::from(fixed),
                    })
                }
            }
        }
        let host_ok = !s.hostname.is_empty()
            && s.hostname.len() <= 63
            && s.hostname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !host_ok {
            return Err(SpecError::Hostname(s.hostname));
        }
        if s.cgroup.as_os_str().is_empty()
            || !s
                .cgroup
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(SpecError::Cgroup(s.cgroup));
        }
        if s.argv.is_empty() || !s.argv[0].starts_with('/') {
            return Err(SpecError::NoProgram);
        }
        for (what, values) in [("argument", &s.argv), ("environment", &s.env)] {
            if let Some(v) = values.iter().find(|v| v.contains('\0')) {
                return Err(SpecError::Nul {
                    what,
                    value: v.clone(),
                });
            }
        }
        if !is_normal_absolute(&s.cwd) && s.cwd != Path::new("/") {
            return Err(SpecError::MountTarget(s.cwd));
        }
        if s.tmp_mb == 0 || s.tmp_mb > 65536 {
            return Err(SpecError::TmpSize(s.tmp_mb));
        }
        for out in [&s.stdout, &s.stderr] {
            if let Output::File(path) = out {
                if !path.is_absolute() {
                    return Err(SpecError::Output(path.clone()));
                }
            }
        }
        Ok(s)
    }
}

/// A view's target: a normalized absolute path naming a directory (never a link) in `root`.
fn check_view_target(root: &Path, target: &Path) -> Result<(), SpecError> {
    if !is_normal_absolute(target) {
        return Err(SpecError::MountTarget(target.to_owned()));
    }
    let inside = root.join(target.strip_prefix("/").unwrap_or(target));
    match std::fs::symlink_metadata(&inside) {
        Ok(md) if md.is_dir() => Ok(()),
        _ => Err(SpecError::MountPoint {
            root: root.to_owned(),
            target: target.to_owned(),
        }),
    }
}

/// True for `a/b` style paths: relative, not empty, only normal components.
fn is_normal_relative(p: &Path) -> bool {
    p.components().count() > 0 && p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// True for `/a/b` style paths: absolute, not `/` itself, no `.`/`..` components.
fn is_normal_absolute(p: &Path) -> bool {
    let mut comps = p.components();
    comps.next() == Some(Component::RootDir)
        && p.components().count() > 1
        && comps.all(|c| matches!(c, Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for d in ["tmp", "proc", "dev", "host", "handler", "packages"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        dir
    }

    fn base(root: &Path) -> SpecBuilder {
        SandboxSpec::builder(root, "lw/sb-1")
            .command(["/usr/bin/python3", "-c", "pass"])
            .output("/tmp/o", "/tmp/e")
    }

    #[test]
    fn views_and_file_binds_are_checked() {
        let root = fake_root();
        let pkg = tempfile::tempdir().unwrap();
        let ok = |rel: &str| {
            base(root.path())
                .view(
                    "/packages",
                    vec![(pkg.path().to_owned(), PathBuf::from(rel))],
                )
                .build()
        };
        assert!(ok("numpy/2.2.6").is_ok());
        for bad in ["../x", "/abs", "", "a/../b", "."] {
            assert!(matches!(ok(bad), Err(SpecError::ViewEntry(_))), "{bad:?}");
        }
        // The view's target must exist in the root; its entries must be host directories.
        let missing = base(root.path()).view("/nope", vec![]).build();
        assert!(matches!(missing, Err(SpecError::MountPoint { .. })));
        let file_entry = base(root.path())
            .view(
                "/packages",
                vec![(PathBuf::from("/etc/hostname"), PathBuf::from("a"))],
            )
            .build();
        assert!(file_entry.is_ok(), "a file is bound onto an empty file");
        let missing_entry = base(root.path())
            .view(
                "/packages",
                vec![(PathBuf::from("/nonexistent"), PathBuf::from("a"))],
            )
            .build();
        assert!(matches!(missing_entry, Err(SpecError::MountSource(_))));
        assert!(base(root.path()).device("/dev/null").build().is_ok());
        for bad in [
            "/dev/../etc/passwd",
            "/etc/hostname",
            "/dev/nonexistent",
            "/tmp",
        ] {
            let err = base(root.path()).device(bad).build();
            assert!(matches!(err, Err(SpecError::Device(_))), "{bad}");
        }
        // A file binds over a regular file only, a directory over a directory only.
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(root.path().join("etc/resolv.conf"), "x").unwrap();
        let host_file = pkg.path().join("f");
        std::fs::write(&host_file, "y").unwrap();
        assert!(base(root.path())
            .mount(&host_file, "/etc/resolv.conf", false)
            .build()
            .is_ok());
        assert!(base(root.path())
            .mount(&host_file, "/host", false)
            .build()
            .is_err());
        assert!(base(root.path())
            .mount(pkg.path(), "/etc/resolv.conf", false)
            .build()
            .is_err());
    }

    #[test]
    fn attached_views_are_checked() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped attached_views_are_checked: open_tree needs root");
            return;
        }
        let root = fake_root();
        std::fs::create_dir(root.path().join("mnt")).unwrap();
        let src = tempfile::tempdir().unwrap();
        let mount = || Arc::new(crate::DetachedMount::clone_of(src.path(), true).unwrap());
        let with = |rels: &[&str]| {
            let entries = rels.iter().map(|r| (mount(), PathBuf::from(r))).collect();
            base(root.path()).attach_view("/mnt", entries).build()
        };
        assert!(with(&["msg", "data/models"]).is_ok());
        assert!(matches!(with(&["a", "a/b"]), Err(SpecError::Nested(..))));
        assert!(matches!(with(&["a/b", "a"]), Err(SpecError::Nested(..))));
        assert!(matches!(with(&["x", "x"]), Err(SpecError::Nested(..))));
        assert!(matches!(with(&["../x"]), Err(SpecError::ViewEntry(_))));
        let missing = base(root.path()).attach_view("/nope", vec![]).build();
        assert!(matches!(missing, Err(SpecError::MountPoint { .. })));
    }

    #[test]
    fn valid_spec_builds() {
        let root = fake_root();
        let spec = base(root.path())
            .mount("/tmp", "/host", true)
            .build()
            .unwrap();
        assert_eq!(spec.mounts.len(), 1);
    }

    #[test]
    fn bad_targets_are_rejected() {
        let root = fake_root();
        for target in ["host", "/", "/host/../etc", "/missing", "/handler/.."] {
            let err = base(root.path()).mount("/tmp", target, true).build();
            assert!(err.is_err(), "{target} accepted");
        }
    }

    #[test]
    fn symlinked_mount_point_is_rejected() {
        let root = fake_root();
        std::os::unix::fs::symlink("/etc", root.path().join("evil")).unwrap();
        let err = base(root.path())
            .mount("/tmp", "/evil", false)
            .build()
            .unwrap_err();
        assert!(matches!(err, SpecError::MountPoint { .. }), "{err}");
    }

    #[test]
    fn other_fields_are_checked() {
        let root = fake_root();
        assert!(base(root.path()).hostname("a b").build().is_err());
        assert!(base(root.path()).hostname("").build().is_err());
        assert!(base(root.path()).command(["python3"]).build().is_err());
        assert!(base(root.path()).env("A", "b\0c").build().is_err());
        assert!(base(root.path()).tmp_mb(0).build().is_err());
        assert!(SandboxSpec::builder(root.path(), "../x")
            .command(["/bin/true"])
            .output("/o", "/e")
            .build()
            .is_err());
        assert!(SandboxSpec::builder("relative", "x")
            .command(["/bin/true"])
            .build()
            .is_err());
        // Output files must be absolute; fds need no check.
        assert!(matches!(
            base(root.path()).output("o", "/e").build(),
            Err(SpecError::Output(_))
        ));
        let (_read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let write = Arc::new(write);
        assert!(base(root.path())
            .stdio(Output::Fd(Arc::clone(&write)), Output::Fd(write))
            .build()
            .is_ok());
    }
}
