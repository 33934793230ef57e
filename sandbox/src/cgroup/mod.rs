//! Cgroups: detecting the machine's setup ([`CgroupSetup`]), and one [`CgroupManager`] per
//! sandbox cgroup that creates it with [`Limits`], attaches processes, freezes, kills and removes
//! it. Cgroup v1 (`v1.rs`) and v2 (`v2.rs`) implementations are chosen at run time.
//!
//! Cgroup paths given to this module are relative (`lambdaworker/w-ab12/sb-7`); the managers
//! join them to the mount point of every hierarchy they use. On v1 those are memory, pids and
//! freezer (required) and cpu, cpuacct (when mounted); other hierarchies (name=systemd, devices,
//! blkio, cpuset, net_cls) are never touched. On v2, processes only ever go into leaves; parents
//! only get `cgroup.subtree_control` writes (the "no internal processes" rule).
//!
//! All file operations go through a small internal trait (`fs::CgroupFs`), so the tests below
//! run the v1 and v2 sequences against a fake cgroupfs in a temporary directory without root.

mod detect;
mod fs;
mod v1;
mod v2;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod real_tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use self::fs::{CgroupFs, KillPlan, RealFs};

/// Errors of cgroup operations. Each names the file or directory involved (and the value, for
/// writes).
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create cgroup {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot remove cgroup {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unexpected content in {path}: {content:?}")]
    Parse { path: PathBuf, content: String },
    #[error(transparent)]
    Mountinfo(#[from] crate::mountinfo::MountinfoError),
    #[error(transparent)]
    Devices(#[from] crate::devices::AttachError),
    #[error("no usable cgroup setup in {path}: {reason}")]
    NoSetup { path: PathBuf, reason: String },
    #[error("controller {controller} is not available for {path}")]
    Controller { path: PathBuf, controller: String },
    #[error("invalid cgroup path {path:?}: must be relative, normalized and not empty")]
    InvalidPath { path: PathBuf },
    #[error("cannot kill process {pid} of {path}: {source}")]
    Kill {
        path: PathBuf,
        pid: i32,
        source: nix::errno::Errno,
    },
    #[error("processes {pids:?} are still in {path} after {waited:?} of SIGKILL")]
    Alive {
        path: PathBuf,
        pids: Vec<i32>,
        waited: Duration,
    },
    #[error("{path} did not become {state} within {waited:?}")]
    Timeout {
        path: PathBuf,
        state: &'static str,
        waited: Duration,
    },
}

/// Result of cgroup operations.
pub type Result<T> = std::result::Result<T, CgroupError>;

/// The cgroup interface in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// Where the hierarchies are mounted; detected at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupSetup {
    /// controller name ("memory", "pids", "freezer", "cpu", "cpuacct") -> mount point of its hierarchy
    V1 {
        controllers: BTreeMap<String, PathBuf>,
    },
    V2 {
        root: PathBuf,
    },
}

impl CgroupSetup {
    /// Detects the setup from `/proc/self/mountinfo` (see `detect.rs` for the rules); on v2 also
    /// checks that the root's `cgroup.controllers` lists memory and pids.
    pub fn detect() -> Result<Self> {
        detect::detect()
    }

    /// The setup described by mountinfo `text`, without looking at any other file.
    pub fn from_mountinfo(text: &str) -> Result<Self> {
        detect::parse(text.as_bytes(), None)
    }

    pub fn version(&self) -> CgroupVersion {
        match self {
            Self::V1 { .. } => CgroupVersion::V1,
            Self::V2 { .. } => CgroupVersion::V2,
        }
    }

    /// A handle on the cgroup at `rel` (relative path like "lambdaworker/w-ab12/sb-7"); touches nothing.
    pub fn cgroup(&self, rel: &Path) -> Box<dyn CgroupManager> {
        self.cgroup_with(rel, Arc::new(RealFs))
    }

    pub(crate) fn cgroup_with(&self, rel: &Path, fs: Arc<dyn CgroupFs>) -> Box<dyn CgroupManager> {
        match self {
            Self::V1 { controllers } => Box::new(v1::V1Cgroup::new(controllers, rel, fs)),
            Self::V2 { root } => Box::new(v2::V2Cgroup::new(root, rel, fs)),
        }
    }

    /// Kills every process in every cgroup at or under `rel` (in every hierarchy), waits (bounded, ~2 s) until
    /// they are gone, then removes the cgroups bottom-up. Missing `rel` is fine (returns 0). Returns how many
    /// cgroup directories were removed (counting each hierarchy's directory). Used by shutdown, crash recovery
    /// and `admin kill`.
    pub fn remove_tree(&self, rel: &Path) -> Result<usize> {
        self.remove_tree_with(rel, &RealFs)
    }

    pub(crate) fn remove_tree_with(&self, rel: &Path, fs: &dyn CgroupFs) -> Result<usize> {
        check_rel(rel)?;
        let mounts = self.hierarchies();
        let mut dirs = Vec::new();
        for mount in &mounts {
            dirs.extend(fs::tree_post_order(fs, &mount.join(rel))?);
        }
        let plan = match self {
            Self::V1 { controllers } => {
                let top = controllers.get("freezer").map(|m| m.join(rel));
                let thaw: Vec<PathBuf> = match &top {
                    Some(top) => dirs
                        .iter()
                        .filter(|d| d.starts_with(top))
                        .map(|d| d.join("freezer.state"))
                        .filter(|f| fs.exists(f))
                        .collect(),
                    None => Vec::new(),
                };
                KillPlan {
                    dirs: &dirs,
                    kill_file: None,
                    freeze: top
                        .map(|t| t.join("freezer.state"))
                        .filter(|f| fs.exists(f)),
                    thaw,
                }
            }
            Self::V2 { root } => KillPlan {
                dirs: &dirs,
                kill_file: Some(root.join(rel).join("cgroup.kill")).filter(|f| fs.exists(f)),
                freeze: None,
                thaw: Vec::new(),
            },
        };
        fs::kill_and_wait(fs, &plan)?;
        let deadline = fs.now() + fs::RMDIR_TIMEOUT;
        let mut removed = 0;
        for dir in &dirs {
            if fs::rmdir_retry(fs, dir, deadline)? {
                removed += 1;
            }
        }
        tracing::debug!(cgroup = %rel.display(), removed, "removed cgroup tree");
        Ok(removed)
    }

    /// Mount points of the hierarchies this module uses, each once.
    fn hierarchies(&self) -> Vec<PathBuf> {
        match self {
            Self::V1 { controllers } => {
                unique(v1::CONTROLLERS.iter().filter_map(|c| controllers.get(*c)))
            }
            Self::V2 { root } => vec![root.clone()],
        }
    }
}

/// Resource limits of one cgroup; `None` leaves the kernel's default (unlimited).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    pub pids_max: Option<u64>,
    /// (quota_us, period_us)
    pub cpu_quota: Option<(u64, u64)>,
    /// The devices the cgroup's processes may use (all others refused); `None`: the parent's
    /// rules (v1 `devices.deny` `a` then `devices.allow` lines; v2 a device BPF program).
    pub devices: Option<Vec<crate::devices::DeviceRule>>,
}

/// One cgroup, in every hierarchy it lives in. Methods block (they poll the kernel for at most a
/// few seconds); call them off async executors.
pub trait CgroupManager: Send + Sync + std::fmt::Debug {
    /// The relative path.
    fn path(&self) -> &Path;
    /// mkdir -p in every used hierarchy; on v2 enable the needed controllers (+memory +pids, +cpu if available)
    /// in each ancestor's cgroup.subtree_control from the root down (skip ones already enabled); then write the limits
    /// (v1: memory.limit_in_bytes, and memory.memsw.limit_in_bytes equal to it if that file exists; pids.max; cpu.cfs_quota_us/cpu.cfs_period_us.
    ///  v2: memory.max, memory.swap.max = 0 if that file exists; pids.max; cpu.max "quota period").
    fn create(&self, limits: &Limits) -> Result<()>;
    /// Opens cgroup.procs of every used hierarchy write-only (O_CLOEXEC) so a freshly cloned child can attach itself
    /// by writing "0" to each before exec (no allocation needed in the child).
    fn open_procs(&self) -> Result<Vec<std::fs::File>>;
    /// Moves process `pid` into the cgroup (every hierarchy).
    fn add_task(&self, pid: i32) -> Result<()>;
    /// Pids in the cgroup (union over hierarchies on v1, deduplicated, sorted).
    fn pids(&self) -> Result<Vec<i32>>;
    /// SIGKILL every process (v2: write 1 to cgroup.kill when the file exists, else kill pid by pid); repeat until
    /// cgroup.procs is empty, bounded (~2 s), then error naming the cgroup and the remaining pids. A cgroup
    /// that does not exist has no processes.
    fn kill_all(&self) -> Result<()>;
    /// v1: freezer.state FROZEN / THAWED (wait until it reads FROZEN); v2: cgroup.freeze 1 / 0 (wait for "frozen 1" in cgroup.events).
    fn freeze(&self) -> Result<()>;
    fn thaw(&self) -> Result<()>;
    /// v1: memory.usage_in_bytes; v2: memory.current.
    fn memory_usage(&self) -> Result<u64>;
    /// The most memory the cgroup has used since it was made, in bytes: v1
    /// memory.max_usage_in_bytes; v2 memory.peak (Linux 5.19+; an error where it is missing).
    fn memory_peak(&self) -> Result<u64>;
    /// How many processes the OOM killer has killed in this cgroup: the `oom_kill` line of v1
    /// `memory.oom_control` (Linux 4.13+) or v2 `memory.events`; 0 when the line is missing.
    fn oom_kills(&self) -> Result<u64>;
    /// rmdir in every hierarchy; idempotent (a missing directory is success); retries EBUSY briefly (processes
    /// that were just killed may still be exiting).
    fn remove(&self) -> Result<()>;
}

/// Rejects paths that would escape or address a hierarchy's root (empty, absolute, `..`, `.`).
fn check_rel(rel: &Path) -> Result<()> {
    let normal = rel.components().all(|c| matches!(c, Component::Normal(_)));
    if rel.as_os_str().is_empty() || !normal {
        return Err(CgroupError::InvalidPath {
            path: rel.to_path_buf(),
        });
    }
    Ok(())
}

/// The paths in order of first appearance, without repeats (co-mounted controllers share one).
fn unique<'a>(paths: impl Iterator<Item = &'a PathBuf>) -> Vec<PathBuf> {
    let mut seen = BTreeSet::new();
    paths.filter(|p| seen.insert(*p)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::fake::{FakeFs, Op};
    use super::*;

    fn create(setup: &CgroupSetup, fake: &Arc<FakeFs>, rel: &str) {
        setup
            .cgroup_with(Path::new(rel), fake.clone())
            .create(&Limits::default())
            .unwrap();
    }

    #[test]
    fn remove_tree_v1_kills_everything_below_and_removes_bottom_up() {
        let tmp = tempfile::tempdir().unwrap();
        let (fake, setup) = FakeFs::v1_hybrid(tmp.path());
        let fake = Arc::new(fake);
        for rel in ["lw/w-1/sb-1", "lw/w-1/sb-2", "lw/w-2/sb-3"] {
            create(&setup, &fake, rel);
        }
        fake.set("memory/lw/w-1/sb-1/cgroup.procs", "101\n");
        fake.set("pids/lw/w-1/sb-1/cgroup.procs", "101\n");
        fake.set("freezer/lw/w-1/sb-2/cgroup.procs", "102\n");
        // sb-2 was paused on its own: it must be thawed for the kill to land.
        fake.set("freezer/lw/w-1/sb-2/freezer.state", "FROZEN\n");
        fake.take_ops();

        let removed = setup.remove_tree_with(Path::new("lw/w-1"), &*fake).unwrap();
        // w-1, sb-1, sb-2 in memory, pids, freezer, cpu, cpuacct and devices.
        assert_eq!(removed, 3 * 6);
        let ops = fake.take_ops();
        assert_eq!(
            ops[0],
            Op::Write("freezer/lw/w-1/freezer.state".into(), "FROZEN".into())
        );
        let kills: Vec<&Op> = ops.iter().filter(|o| matches!(o, Op::Kill(_))).collect();
        assert_eq!(kills, [&Op::Kill(101), &Op::Kill(102)]);
        let thawed: Vec<&str> = ops
            .iter()
            .filter_map(|o| match o {
                Op::Write(p, v) if v == "THAWED" => Some(p.as_str()),
                _ => None,
            })
            .take(3)
            .collect();
        assert_eq!(
            thawed,
            [
                "freezer/lw/w-1/sb-1/freezer.state",
                "freezer/lw/w-1/sb-2/freezer.state",
                "freezer/lw/w-1/freezer.state",
            ]
        );
        let rmdirs: Vec<&str> = ops
            .iter()
            .filter_map(|o| match o {
                Op::Rmdir(p) if p.starts_with("memory/") => Some(p.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            rmdirs,
            ["memory/lw/w-1/sb-1", "memory/lw/w-1/sb-2", "memory/lw/w-1"]
        );
        for h in ["memory", "pids", "freezer", "cpu", "cpuacct"] {
            assert!(!fake.path(&format!("{h}/lw/w-1")).exists(), "{h}");
            assert!(
                fake.path(&format!("{h}/lw/w-2/sb-3")).is_dir(),
                "{h}: sibling kept"
            );
        }
        assert_eq!(
            setup.remove_tree_with(Path::new("lw/w-1"), &*fake).unwrap(),
            0
        );
        assert_eq!(
            setup
                .remove_tree_with(Path::new("never/made"), &*fake)
                .unwrap(),
            0
        );
    }

    #[test]
    fn remove_tree_v2_uses_the_top_cgroup_kill() {
        let tmp = tempfile::tempdir().unwrap();
        let (fake, setup) = FakeFs::v2(tmp.path(), "cpu memory pids");
        let fake = Arc::new(fake);
        for rel in ["lw/w-1/sb-1", "lw/w-1/sb-2"] {
            create(&setup, &fake, rel);
        }
        fake.set("cgroup/lw/w-1/sb-1/cgroup.procs", "7\n8\n");
        fake.set("cgroup/lw/w-1/sb-2/cgroup.procs", "9\n");
        fake.take_ops();
        assert_eq!(setup.remove_tree_with(Path::new("lw"), &*fake).unwrap(), 4);
        let ops = fake.take_ops();
        assert_eq!(
            ops[0],
            Op::Write("cgroup/lw/cgroup.kill".into(), "1".into())
        );
        assert!(!ops.iter().any(|o| matches!(o, Op::Kill(_))), "{ops:?}");
        assert!(!fake.path("cgroup/lw").exists());
        assert!(fake.path("cgroup/cgroup.procs").exists(), "the root stays");
    }

    #[test]
    fn remove_tree_tolerates_a_cgroup_removed_meanwhile() {
        // Another thread removing a cgroup under the tree (a zygote destroying itself at
        // shutdown): its files answer ENODEV until the directory is gone.
        let tmp = tempfile::tempdir().unwrap();
        let (fake, setup) = FakeFs::v2(tmp.path(), "cpu memory pids");
        let fake = Arc::new(fake);
        for rel in ["lw/zy-1", "lw/sb-2"] {
            create(&setup, &fake, rel);
        }
        fake.fail_reads("cgroup/lw/zy-1/cgroup.procs", libc::ENODEV);
        fake.set("cgroup/lw/sb-2/cgroup.procs", "7\n");
        assert_eq!(setup.remove_tree_with(Path::new("lw"), &*fake).unwrap(), 3);
        assert!(!fake.path("cgroup/lw").exists());
    }

    #[test]
    fn remove_tree_names_survivors() {
        let tmp = tempfile::tempdir().unwrap();
        let (fake, setup) = FakeFs::v2(tmp.path(), "cpu memory pids");
        let fake = Arc::new(fake);
        create(&setup, &fake, "lw/sb-1");
        fake.set("cgroup/lw/sb-1/cgroup.procs", "5\n");
        fake.unkillable(5);
        let err = setup.remove_tree_with(Path::new("lw"), &*fake).unwrap_err();
        match &err {
            CgroupError::Alive { path, pids, .. } => {
                assert_eq!(pids, &[5]);
                assert_eq!(path, &fake.path("cgroup/lw/sb-1"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn remove_tree_refuses_a_hierarchy_root() {
        let setup = CgroupSetup::V2 {
            root: "/nonexistent".into(),
        };
        for bad in ["", "/", "/sys/fs/cgroup", ".."] {
            assert!(
                matches!(
                    setup.remove_tree(Path::new(bad)),
                    Err(CgroupError::InvalidPath { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn errors_name_the_path_and_value() {
        let err = CgroupError::Write {
            path: "/sys/fs/cgroup/x/pids.max".into(),
            value: "32".into(),
            source: std::io::Error::from_raw_os_error(libc::EINVAL),
        };
        let msg = err.to_string();
        assert!(
            msg.starts_with("cannot write \"32\" to /sys/fs/cgroup/x/pids.max: "),
            "{msg}"
        );
        assert!(!msg.ends_with('.'));
    }
}
