//! The leak test's snapshot: what one cluster could own (mounts under its directory, cgroups
//! below its worker's cgroup parent, its processes, its scratch entries, open files into it),
//! read from `/proc` and the cgroup file systems.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What a snapshot looks at: one cluster and its worker-0.
#[derive(Debug)]
pub(crate) struct Scope {
    /// The cluster directory, canonical (as the worker sees it).
    pub(crate) cluster: PathBuf,
    /// `cluster/workers/worker-0`.
    pub(crate) worker_dir: PathBuf,
    /// `lambdaworker/w-<hex>`, relative to each cgroup hierarchy's root.
    pub(crate) cgroup_parent: String,
}

impl Scope {
    /// The part of `path` (a cgroup path) below the cgroup parent: `"."` for the parent itself,
    /// `"zs-2"` for `/lambdaworker/w-<hex>/zs-2`; `None` when it is not at or below it.
    pub(crate) fn below_parent(&self, path: &str) -> Option<String> {
        let needle = format!("/{}", self.cgroup_parent);
        let at = path.find(&needle)?;
        let rest = &path[at + needle.len()..];
        if rest.is_empty() {
            Some(".".to_owned())
        } else {
            rest.strip_prefix('/').map(str::to_owned)
        }
    }

    /// `path` relative to the cluster directory, if it lies in it.
    pub(crate) fn in_cluster(&self, path: &Path) -> Option<String> {
        path.strip_prefix(&self.cluster)
            .ok()
            .map(|p| p.display().to_string())
    }
}

/// A process that belongs to the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Proc {
    pub(crate) comm: String,
    /// Start time (clock ticks after boot): a pid plus this names one process, even if the pid
    /// is reused.
    pub(crate) start: u64,
    /// Its cgroup below the cgroup parent, if it is in one (`zy-1`, `sb-3`, ...).
    pub(crate) cgroup: Option<String>,
    /// Why it counts: `cgroup`, `cmdline`, `child` or `ancestor` (see [`processes`]).
    pub(crate) why: &'static str,
}

/// Everything of one cluster that must be gone once its workers are stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// Mount points under the cluster directory (`/proc/self/mountinfo`).
    pub(crate) mounts: Vec<String>,
    /// Cgroup directories (full paths, every hierarchy) at or below the cgroup parent.
    pub(crate) cgroups: Vec<String>,
    /// Processes of the cluster, by pid.
    pub(crate) processes: BTreeMap<i32, Proc>,
    /// Entries under `workers/worker-0/handlers` and `.../import-cache`, relative to worker-0.
    pub(crate) scratch: Vec<String>,
    /// Open files into the cluster directory: (pid, fd) => (command, path in the cluster).
    pub(crate) fds: BTreeMap<(i32, i32), (String, String)>,
}

/// The parts of a snapshot that do not depend on pids or start times: two workers started the
/// same way on the same directory have the same shape.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    pub(crate) mounts: usize,
    pub(crate) cgroups: Vec<String>,
    pub(crate) scratch: Vec<String>,
    /// `comm [cgroup below the parent or why]`, sorted.
    pub(crate) processes: Vec<String>,
    /// `comm fd -> path in the cluster`, sorted.
    pub(crate) fds: Vec<String>,
}

impl Snapshot {
    pub(crate) fn take(scope: &Scope) -> Self {
        Self {
            mounts: mounts(scope),
            cgroups: cgroups(scope),
            processes: processes(scope),
            scratch: scratch(scope),
            fds: fds(scope),
        }
    }

    pub(crate) fn shape(&self) -> Shape {
        let mut processes: Vec<String> = self
            .processes
            .values()
            .map(|p| format!("{} [{}]", p.comm, p.cgroup.as_deref().unwrap_or(p.why)))
            .collect();
        processes.sort();
        let mut fds: Vec<String> = self
            .fds
            .iter()
            .map(|((_, fd), (comm, path))| format!("{comm} {fd} -> {path}"))
            .collect();
        fds.sort();
        Shape {
            mounts: self.mounts.len(),
            cgroups: self.cgroups.clone(),
            scratch: self.scratch.clone(),
            processes,
            fds,
        }
    }

    /// One line of counts, for the log.
    pub(crate) fn counts(&self) -> String {
        format!(
            "{} mounts, {} cgroup dirs, {} processes, {} scratch entries, {} open files",
            self.mounts.len(),
            self.cgroups.len(),
            self.processes.len(),
            self.scratch.len(),
            self.fds.len()
        )
    }
}

/// Mount points under the cluster directory, as the test's (the host's) mount namespace lists
/// them: the worker mounts each scratch tmpfs there; sandbox mounts live in their own namespaces.
pub(crate) fn mounts(scope: &Scope) -> Vec<String> {
    let mut found: Vec<String> = sandbox::mountinfo::mount_points()
        .expect("read mountinfo")
        .iter()
        .filter_map(|p| scope.in_cluster(p))
        .collect();
    found.sort();
    found
}

/// Cgroup directories at or below the cgroup parent, in every hierarchy under `/sys/fs/cgroup`
/// (v1 controllers, the named `systemd` one, `unified`), wherever they are nested.
pub(crate) fn cgroups(scope: &Scope) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::from("/sys/fs/cgroup")];
    while let Some(dir) = stack.pop() {
        // A cgroup can vanish while we walk (the worker removes one): skip it.
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            // Not following links: `cpu,cpuacct`-style aliases would list a hierarchy twice.
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = entry.path();
            let text = path.display().to_string();
            if scope.below_parent(&text).is_some() {
                found.push(text);
            }
            stack.push(path);
        }
    }
    found.sort();
    found
}

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug)]
pub(crate) struct Stat {
    pub(crate) comm: String,
    pub(crate) state: char,
    pub(crate) ppid: i32,
    pub(crate) start: u64,
}

pub(crate) fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_owned();
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    Some(Stat {
        comm,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        // Field 22 of stat(5); `fields` starts at field 3.
        start: fields.get(19)?.parse().ok()?,
    })
}

/// How many pid namespaces `/proc/<pid>` is in (the `NSpid` line of its status: one pid per
/// namespace, from /proc's own down to the process's).
pub(crate) fn pid_ns_depth(pid: &str) -> Option<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    Some(line.split_whitespace().count() - 1)
}

/// Pids listed in `/proc` (thread group leaders), except this test process.
pub(crate) fn all_pids() -> Vec<i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .filter(|pid| *pid != me)
        .collect()
}

/// The processes of the cluster. A process counts if
/// - `cgroup`: `/proc/<pid>/cgroup` names a cgroup at or below the worker's cgroup parent. Every
///   sandbox and zygote process joins its cgroup before it runs anything (a fork of a zygote
///   joins its spare's cgroup), and an unprivileged sandbox cannot move itself out, so this
///   finds them all, in whatever pid namespace, also after the worker is gone;
/// - `cmdline`: an argument names a path in the cluster directory: the worker itself
///   (`admin worker-exec --config=<cluster>/config/worker-0.json`);
/// - `child`: it descends from a process counted above (anything else the worker starts, for as
///   long as it has not been reparented);
/// - `ancestor`: it is the parent of a process counted above and lives in a deeper pid namespace
///   than this test: a sandbox's own pid namespace. This is the one the others miss: a zygote
///   killed with its worker (`kill -9`) stays in its exit, outside any cgroup and with an empty
///   cmdline, until the frozen (paused) sandboxes forked from it are thawed and die.
///
/// The cgroup parent is a hash of this cluster's worker directory, and the cluster directory is
/// a fresh temporary one, so other tests' workers never match. Left out: this test process (it
/// holds nothing but its own handles), `admin` commands (none runs while a snapshot is taken),
/// and zombies: a zombie holds no resource but its pid, and a worker that died (`kill -9`, or
/// after `admin kill`) is reaped by init, not by anything of the cluster.
pub(crate) fn processes(scope: &Scope) -> BTreeMap<i32, Proc> {
    let cluster = scope.cluster.as_os_str().as_bytes();
    let own_depth = pid_ns_depth("self").expect("NSpid of this process");
    let mut candidates: BTreeMap<i32, (Stat, Option<String>, Option<&'static str>)> =
        BTreeMap::new();
    for pid in all_pids() {
        let Some(st) = stat(pid) else { continue };
        if st.state == 'Z' || st.state == 'X' {
            continue;
        }
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .ok()
            .and_then(|text| {
                text.lines()
                    .filter_map(|line| line.splitn(3, ':').nth(2))
                    .find_map(|path| scope.below_parent(path))
            });
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let names_cluster = cmdline
            .split(|b| *b == 0)
            .any(|arg| arg.windows(cluster.len()).any(|w| w == cluster));
        let why = if cgroup.is_some() {
            Some("cgroup")
        } else if names_cluster {
            Some("cmdline")
        } else {
            None
        };
        candidates.insert(pid, (st, cgroup, why));
    }
    // Children, and parents inside sandbox pid namespaces, of what matched, until nothing
    // changes.
    loop {
        let matched: BTreeSet<i32> = candidates
            .iter()
            .filter(|(_, (_, _, why))| why.is_some())
            .map(|(pid, _)| *pid)
            .collect();
        let parents: BTreeSet<i32> = candidates
            .iter()
            .filter(|(_, (_, _, why))| why.is_some())
            .map(|(_, (st, _, _))| st.ppid)
            .collect();
        let mut grew = false;
        for (pid, (st, _, why)) in candidates.iter_mut() {
            if why.is_some() {
                continue;
            }
            if matched.contains(&st.ppid) {
                *why = Some("child");
                grew = true;
            } else if parents.contains(pid)
                && pid_ns_depth(&pid.to_string()).is_some_and(|d| d > own_depth)
            {
                *why = Some("ancestor");
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    candidates
        .into_iter()
        .filter_map(|(pid, (st, cgroup, why))| {
            why.map(|why| {
                (
                    pid,
                    Proc {
                        comm: st.comm,
                        start: st.start,
                        cgroup,
                        why,
                    },
                )
            })
        })
        .collect()
}

/// Every entry (recursive, relative to worker-0) under `handlers/` and `import-cache/`.
pub(crate) fn scratch(scope: &Scope) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack: Vec<PathBuf> = ["handlers", "import-cache"]
        .iter()
        .map(|d| scope.worker_dir.join(d))
        .collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if let Ok(rel) = path.strip_prefix(&scope.worker_dir) {
                found.push(rel.display().to_string());
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Open file descriptors, of any process but this test, whose target is in the cluster.
pub(crate) fn fds(scope: &Scope) -> BTreeMap<(i32, i32), (String, String)> {
    let mut found = BTreeMap::new();
    for pid in all_pids() {
        let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for entry in entries.flatten() {
            let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let Ok(target) = std::fs::read_link(entry.path()) else {
                continue;
            };
            if let Some(rel) = scope.in_cluster(&target) {
                let comm = stat(pid).map(|s| s.comm).unwrap_or_default();
                found.insert((pid, fd), (comm, rel));
            }
        }
    }
    found
}

/// Number of open file descriptors of `pid`.
pub(crate) fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("cannot list the fds of pid {pid}: {e}"))
        .count()
}

/// True while the process (pid and start time) lives and is not a zombie.
pub(crate) fn alive(pid: i32, start: u64) -> bool {
    stat(pid).is_some_and(|s| s.start == start && s.state != 'Z' && s.state != 'X')
}
