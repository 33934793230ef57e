//! The "OCI runtime per call" rows: `runc run` (or `crun run`) of a one-shot container per call,
//! running the same Python driver and hello handler as the "fresh python" row, on the same base
//! root filesystem, with mounts and namespaces close to a lambdaworker sandbox's (read-only
//! root, tmpfs `/tmp`, the handler bound read-only on `/handler`, a scratch `/host`, fresh pid,
//! mount, ipc, uts and network namespaces, no user namespace).
//!
//! The bundle's `config.json` starts from `oci_spec`'s default spec (the one `runc spec`
//! writes: default capabilities, rlimits, `noNewPrivileges`, masked and read-only paths) and
//! changes only what the rows need.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use oci_spec::runtime::{
    LinuxDeviceCgroupBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, Mount, MountBuilder,
    RootBuilder, Spec, UserBuilder,
};

use crate::system::{check_answer, truncate, System, EVENT, PY_DRIVER};

/// Which OCI runtime a row runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OciKind {
    Runc,
    Crun,
}

impl OciKind {
    /// The runtime's binary name, also the row's name.
    pub fn name(self) -> &'static str {
        match self {
            OciKind::Runc => "runc",
            OciKind::Crun => "crun",
        }
    }
}

/// The hybrid-cgroup mount that Debian's crun 1.8 refuses to run beside.
const UNIFIED_MOUNT: &str = "/sys/fs/cgroup/unified";

/// Mount points the bundle's mounts need in the base (the root is read-only, so the runtime
/// cannot create them; checking first also keeps a runtime from writing into the base).
const MOUNT_POINTS: [&str; 5] = ["proc", "dev", "sys", "tmp", "handler"];

/// Where the container's scratch directory is mounted (read-write).
const HOST_MOUNT: &str = "host";

/// Numbers the containers of this process, so that ids never repeat, across systems too.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A prepared bundle for one runtime: each [`System::call`] is one `<runtime> run` of a fresh
/// container, removed when it exits.
#[derive(Debug)]
pub struct OciSystem {
    kind: OciKind,
    binary: PathBuf,
    bundle: PathBuf,
    /// Run the runtime in a private mount namespace without `/sys/fs/cgroup/unified`; see
    /// [`hide_unified_cgroup`].
    hide_unified: bool,
}

/// Builds the bundle under `work` (`work/bundle/config.json`, and `work/host` for the
/// container's `/host`), then makes one probe call.
///
/// `base` is the root filesystem (used read-only, in place) and `handler_dir` the directory
/// holding `lambda_func.py`. The error is a one-line reason to print in the table: the runtime
/// is not installed, the base lacks a mount point, or the runtime's own message.
pub fn prepare(
    kind: OciKind,
    base: &Path,
    handler_dir: &Path,
    work: &Path,
) -> Result<OciSystem, String> {
    let binary =
        find_binary(kind.name()).ok_or_else(|| format!("{} not installed", kind.name()))?;
    let bundle = write_bundle(base, handler_dir, work)?;
    let sys = OciSystem {
        kind,
        binary,
        bundle,
        hide_unified: kind == OciKind::Crun && unified_is_mounted(),
    };
    sys.attempt().map_err(|f| f.reason)?;
    Ok(sys)
}

impl OciSystem {
    /// The runtime binary with stdin closed and, for crun on a hybrid cgroup host, the
    /// workaround of [`hide_unified_cgroup`] applied.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.stdin(Stdio::null());
        if self.hide_unified {
            // SAFETY: `hide_unified_cgroup` runs in the forked child before exec and only makes
            // async-signal-safe system calls (unshare, mount, umount2) on static C strings: it
            // allocates nothing and takes no lock.
            unsafe {
                cmd.pre_exec(hide_unified_cgroup);
            }
        }
        cmd
    }

    /// Removes a container a failed call may have left behind (state and cgroups); errors are
    /// ignored, since the container usually is gone already.
    fn force_delete(&self, id: &str) {
        let _ = self
            .command()
            .args(["delete", "-f", id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// One container run: `Err` carries a short reason (for the table) and the full detail.
    fn attempt(&self) -> Result<(), Failure> {
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let id = format!("lwbench-{}-{n}", std::process::id());
        let result = self.run_once(&id);
        if result.is_err() {
            self.force_delete(&id);
        }
        result
    }

    fn run_once(&self, id: &str) -> Result<(), Failure> {
        let name = self.kind.name();
        let out = self
            .command()
            .arg("run")
            .arg("--bundle")
            .arg(&self.bundle)
            .arg(id)
            .output()
            .map_err(|e| {
                let detail = format!("cannot start {}: {e}", self.binary.display());
                Failure {
                    reason: detail.clone(),
                    detail,
                }
            })?;
        let tail = stderr_tail(&out.stderr);
        if !out.status.success() {
            let reason = match reason_line(&tail) {
                Some(line) => line,
                None => format!("{name} run exited with {}", out.status),
            };
            return Err(Failure {
                reason,
                detail: format!("{name} run {id} exited with {}: {tail}", out.status),
            });
        }
        if let Err(e) = check_answer(name, &out.stdout) {
            let detail = if tail.is_empty() {
                e.to_string()
            } else {
                format!("{e}; stderr: {tail}")
            };
            return Err(Failure {
                reason: truncate(&detail, 200).to_owned(),
                detail,
            });
        }
        Ok(())
    }
}

/// Why a call failed: `reason` is one short line for the table, `detail` the whole story.
#[derive(Debug)]
struct Failure {
    reason: String,
    detail: String,
}

impl System for OciSystem {
    fn call(&mut self) -> Result<()> {
        self.attempt().map_err(|f| anyhow::anyhow!(f.detail))
    }
}

/// Runs in the forked runtime process before exec (crun only, and only where
/// `/sys/fs/cgroup/unified` is a mount point): moves it into a private mount namespace and
/// detaches the cgroup v2 mount there, so that crun 1.8 sees plain cgroup v1 instead of the
/// "hybrid" layout it refuses ("cgroups in hybrid mode not supported"). The host's mounts are
/// untouched, and nothing propagates back since the namespace's mounts are made private first.
/// This is why crun's row pays for one extra `unshare(CLONE_NEWNS)` per call.
fn hide_unified_cgroup() -> std::io::Result<()> {
    // SAFETY: only async-signal-safe system calls, on C strings that are static data (built at
    // compile time, before the fork): nothing is allocated and no lock is taken.
    // `io::Error::last_os_error` only reads errno.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        if libc::umount2(c"/sys/fs/cgroup/unified".as_ptr(), libc::MNT_DETACH) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether [`UNIFIED_MOUNT`] is a mount point in this process's mount namespace.
fn unified_is_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|text| mountinfo_has(&text, UNIFIED_MOUNT))
        .unwrap_or(false)
}

/// Whether a `/proc/self/mountinfo` text lists `mount_point` (the fifth field).
fn mountinfo_has(mountinfo: &str, mount_point: &str) -> bool {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|mp| mp == mount_point)
}

/// `name` in `PATH`, then in the usual system directories; only executable files count.
fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let fallback = [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ];
    std::env::split_paths(&path)
        .chain(fallback.iter().map(PathBuf::from))
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Writes `work/bundle/config.json` and creates `work/host`; returns the bundle directory.
fn write_bundle(base: &Path, handler_dir: &Path, work: &Path) -> Result<PathBuf, String> {
    let root = std::fs::canonicalize(base)
        .map_err(|e| format!("base rootfs {} unusable: {e}", base.display()))?;
    let python = root.join("usr/bin/python3");
    if !python.exists() {
        return Err(format!("{} not found", python.display()));
    }
    for mp in MOUNT_POINTS.iter().chain([&HOST_MOUNT]) {
        if !root.join(mp).is_dir() {
            return Err(format!(
                "the base {} has no /{mp} mount point",
                root.display()
            ));
        }
    }
    let handler = std::fs::canonicalize(handler_dir)
        .map_err(|e| format!("handler directory {} unusable: {e}", handler_dir.display()))?;
    let bundle = work.join("bundle");
    let host = work.join("host");
    for dir in [&bundle, &host] {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let host = std::fs::canonicalize(&host)
        .map_err(|e| format!("cannot resolve {}: {e}", host.display()))?;
    let spec = build_spec(&root, &handler, &host)
        .map_err(|e| format!("cannot build the OCI spec: {e}"))?;
    let config = bundle.join("config.json");
    spec.save(&config)
        .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
    Ok(bundle)
}

/// The bundle's spec: `root` read-only as the root, the handler and scratch dirs bound in.
fn build_spec(root: &Path, handler: &Path, host: &Path) -> Result<Spec, oci_spec::OciSpecError> {
    let mut spec = Spec::default();
    spec.set_hostname(Some("lambda".to_owned()));
    spec.set_root(Some(
        RootBuilder::default().path(root).readonly(true).build()?,
    ));

    let mut process = spec.process().clone().unwrap_or_default();
    process
        .set_terminal(Some(false))
        .set_user(UserBuilder::default().uid(0u32).gid(0u32).build()?)
        .set_cwd(PathBuf::from("/"))
        .set_env(Some(
            [
                "PATH=/usr/local/bin:/usr/bin:/bin",
                "HOME=/tmp",
                "LANG=C.UTF-8",
                "PYTHONDONTWRITEBYTECODE=1",
            ]
            .map(String::from)
            .to_vec(),
        ))
        .set_args(Some(
            [
                "/usr/bin/python3",
                "-B",
                "-S",
                "-c",
                PY_DRIVER,
                "/handler",
                EVENT,
            ]
            .map(String::from)
            .to_vec(),
        ));
    spec.set_process(Some(process));

    let mut mounts: Vec<Mount> = spec.mounts().clone().unwrap_or_default();
    mounts.push(mount(
        "/tmp",
        "tmpfs",
        Path::new("tmpfs"),
        &["nosuid", "nodev", "size=64m"],
    )?);
    mounts.push(mount(
        "/handler",
        "bind",
        handler,
        &["rbind", "ro", "nosuid", "nodev"],
    )?);
    mounts.push(mount(
        "/host",
        "bind",
        host,
        &["rbind", "rw", "nosuid", "nodev"],
    )?);
    spec.set_mounts(Some(mounts));

    let mut linux = spec.linux().clone().unwrap_or_default();
    let namespaces = [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Network,
    ]
    .into_iter()
    .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
    .collect::<Result<Vec<_>, _>>()?;
    linux.set_namespaces(Some(namespaces));
    // As `runc spec`: the device cgroup denies everything but the runtime's default devices.
    let mut resources = linux.resources().clone().unwrap_or_default();
    resources.set_devices(Some(vec![LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()?]));
    linux.set_resources(Some(resources));
    spec.set_linux(Some(linux));
    Ok(spec)
}

fn mount(
    destination: &str,
    typ: &str,
    source: &Path,
    options: &[&str],
) -> Result<Mount, oci_spec::OciSpecError> {
    MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| (*o).to_owned()).collect::<Vec<_>>())
        .build()
}

/// The last lines of a runtime's stderr (at most three non-empty ones), joined with " | ".
fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    truncate(&tail, 600).to_owned()
}

/// A reason for the table from a [`stderr_tail`]: its last line, runc's `msg="..."` unwrapped
/// and crun's `crun: ` prefix dropped, at most 200 bytes; `None` when stderr was empty.
fn reason_line(tail: &str) -> Option<String> {
    let last = tail.rsplit(" | ").next().filter(|l| !l.is_empty())?;
    let last = match last.find("msg=\"") {
        Some(i) => last[i + 5..].trim_end_matches('"'),
        None => last.strip_prefix("crun: ").unwrap_or(last),
    };
    Some(truncate(last, 200).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temporary directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(what: &str) -> Self {
            let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("lwbench-oci-{what}-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn fake_base(dir: &Path) -> PathBuf {
        let base = dir.join("base");
        for d in [
            "usr/bin", "proc", "dev", "sys", "tmp", "handler", "host", "packages",
        ] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        std::fs::write(base.join("usr/bin/python3"), "").unwrap();
        base
    }

    #[test]
    fn config_parses_back_with_the_expected_settings() {
        let tmp = TempDir::new("spec");
        let base = fake_base(&tmp.0);
        let handler = tmp.0.join("hello");
        std::fs::create_dir_all(&handler).unwrap();
        let work = tmp.0.join("work");
        let bundle = write_bundle(&base, &handler, &work).unwrap();
        let spec = Spec::load(bundle.join("config.json")).unwrap();

        let root = spec.root().as_ref().unwrap();
        assert_eq!(root.readonly(), Some(true));
        assert_eq!(root.path(), &std::fs::canonicalize(&base).unwrap());
        assert_eq!(spec.hostname().as_deref(), Some("lambda"));

        let mounts = spec.mounts().as_ref().unwrap();
        let find = |dest: &str| {
            mounts
                .iter()
                .find(|m| m.destination() == Path::new(dest))
                .unwrap_or_else(|| panic!("no {dest} mount"))
        };
        let handler_mount = find("/handler");
        assert_eq!(handler_mount.typ().as_deref(), Some("bind"));
        assert_eq!(
            handler_mount.source().as_deref(),
            Some(std::fs::canonicalize(&handler).unwrap().as_path())
        );
        let opts = handler_mount.options().as_ref().unwrap();
        assert!(opts.iter().any(|o| o == "ro"), "{opts:?}");
        assert!(!opts.iter().any(|o| o == "rw"), "{opts:?}");
        let host_mount = find("/host");
        assert_eq!(
            host_mount.source().as_deref(),
            Some(std::fs::canonicalize(work.join("host")).unwrap().as_path())
        );
        assert!(host_mount
            .options()
            .as_ref()
            .unwrap()
            .iter()
            .any(|o| o == "rw"));
        assert_eq!(find("/tmp").typ().as_deref(), Some("tmpfs"));
        assert_eq!(find("/proc").typ().as_deref(), Some("proc"));
        assert_eq!(find("/dev").typ().as_deref(), Some("tmpfs"));

        let linux = spec.linux().as_ref().unwrap();
        let types: Vec<LinuxNamespaceType> = linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|ns| ns.typ())
            .collect();
        for want in [
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Mount,
        ] {
            assert!(types.contains(&want), "{types:?}");
        }
        assert!(!types.contains(&LinuxNamespaceType::User), "{types:?}");
        assert!(!linux.masked_paths().as_ref().unwrap().is_empty());
        assert!(!linux.readonly_paths().as_ref().unwrap().is_empty());

        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.terminal(), Some(false));
        assert_eq!(process.user().uid(), 0);
        assert_eq!(process.no_new_privileges(), Some(true));
        let args = process.args().as_ref().unwrap();
        assert_eq!(args.first().map(String::as_str), Some("/usr/bin/python3"));
        assert_eq!(
            args[args.len() - 2..],
            ["/handler".to_owned(), EVENT.to_owned()]
        );
        let env = process.env().as_ref().unwrap();
        assert!(
            env.iter().any(|e| e == "PYTHONDONTWRITEBYTECODE=1"),
            "{env:?}"
        );
        assert!(env.iter().any(|e| e == "HOME=/tmp"), "{env:?}");
    }

    #[test]
    fn a_missing_mount_point_is_the_reason() {
        let tmp = TempDir::new("nomp");
        let base = fake_base(&tmp.0);
        std::fs::remove_dir(base.join("handler")).unwrap();
        let err = write_bundle(&base, &tmp.0, &tmp.0.join("work")).unwrap_err();
        assert!(err.contains("no /handler mount point"), "{err}");
    }

    #[test]
    fn mountinfo_is_parsed() {
        let text = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
                    32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n";
        assert!(mountinfo_has(text, UNIFIED_MOUNT));
        assert!(!mountinfo_has(text, "/sys/fs/cgroup"));
    }

    #[test]
    fn reasons_are_one_line() {
        let runc = "time=\"x\" level=error msg=\"runc run failed: no such file\"";
        assert_eq!(reason_line(runc).unwrap(), "runc run failed: no such file");
        let crun = stderr_tail(b"a\nb\ncrun: cgroups in hybrid mode not supported\n");
        assert_eq!(
            reason_line(&crun).unwrap(),
            "cgroups in hybrid mode not supported"
        );
        assert_eq!(reason_line(""), None);
        assert_eq!(stderr_tail(b"1\n2\n\n3\n4\n"), "2 | 3 | 4");
    }

    #[test]
    fn kinds_are_named() {
        assert_eq!(OciKind::Runc.name(), "runc");
        assert_eq!(OciKind::Crun.name(), "crun");
    }

    /// Needs root, runc (`bench/peers.sh`), and a base rootfs: `LAMBDAWORKER_BENCH_BASE`, else
    /// the base cache entry of the embedded recipe (test-all builds it before the tests).
    #[test]
    fn runc_runs_the_hello_handler() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: not running as root");
            return;
        }
        if find_binary("runc").is_none() {
            eprintln!("skipped: runc not installed");
            return;
        }
        let base = match std::env::var_os("LAMBDAWORKER_BENCH_BASE") {
            Some(b) => PathBuf::from(b),
            None => {
                let recipe = admin::cluster::Recipe::from_json(
                    admin::cluster::BASE_RECIPE_JSON,
                    "cluster-template/base.json",
                )
                .unwrap();
                admin::cluster::base::default_cache_dir().join(recipe.entry_name())
            }
        };
        if !base.join("usr/bin/python3").exists() {
            eprintln!(
                "skipped: no base rootfs at {} (run `./bin/admin new` once, or set LAMBDAWORKER_BENCH_BASE)",
                base.display()
            );
            return;
        }
        let tmp = TempDir::new("runc");
        let handler = tmp.0.join("hello");
        std::fs::create_dir_all(&handler).unwrap();
        std::fs::write(
            handler.join("lambda_func.py"),
            "def handler(event):\n    return f\"Hello, {event['name']}!\"\n",
        )
        .unwrap();
        let mut sys = prepare(
            OciKind::Runc,
            Path::new(&base),
            &handler,
            &tmp.0.join("work"),
        )
        .unwrap_or_else(|why| panic!("runc cannot run: {why}"));
        for _ in 0..3 {
            sys.call().unwrap();
        }
    }
}
