//! A fake cgroupfs for tests: plain files in a temporary directory, plus the kernel behaviour the
//! managers rely on. `mkdir` fills a new cgroup with the control files the kernel would create
//! (per v1 hierarchy, or per controller enabled in the v2 parent's `cgroup.subtree_control`);
//! writes to special files have their side effects (`cgroup.kill` empties the subtree,
//! `cgroup.freeze` updates `cgroup.events`, `subtree_control` only accepts available controllers,
//! v1 memory limits must stay <= memsw); `rmdir` refuses busy cgroups like the kernel and ignores
//! control files; `kill` removes the pid from every `cgroup.procs`. Time is virtual, so bounded
//! waits finish instantly. Every successful operation is logged for the tests to assert on.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::fs::CgroupFs;
use super::CgroupSetup;

/// One logged operation; paths are relative to the fake's base directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    Mkdir(String),
    Rmdir(String),
    Write(String, String),
    Kill(i32),
    /// A device program attached: the cgroup and its rules as v1 lines.
    Devices(String, Vec<String>),
}

#[derive(Debug)]
enum Layout {
    /// (mount point, controllers of that hierarchy)
    V1 {
        hierarchies: Vec<(PathBuf, Vec<String>)>,
    },
    V2 {
        root: PathBuf,
    },
}

#[derive(Debug)]
struct State {
    elapsed: Duration,
    log: Vec<Op>,
    unkillable: BTreeSet<i32>,
    stuck_freeze: bool,
    busy_rmdirs: usize,
    failures: BTreeMap<PathBuf, i32>,
    read_failures: BTreeMap<PathBuf, i32>,
    memsw: bool,
    swap: bool,
    kill_file: bool,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct FakeFs {
    base: PathBuf,
    start: Instant,
    layout: Layout,
    state: Mutex<State>,
}

const UNLIMITED_V1: &str = "9223372036854771712\n";

impl FakeFs {
    fn new(base: &Path, layout: Layout) -> Self {
        Self {
            base: base.to_path_buf(),
            start: Instant::now(),
            layout,
            state: Mutex::new(State {
                elapsed: Duration::ZERO,
                log: Vec::new(),
                unkillable: BTreeSet::new(),
                stuck_freeze: false,
                busy_rmdirs: 0,
                failures: BTreeMap::new(),
                read_failures: BTreeMap::new(),
                memsw: true,
                swap: true,
                kill_file: true,
            }),
        }
    }

    /// A hybrid machine like this one: every v1 controller in its own hierarchy (plus ones the
    /// managers must not touch) and an empty cgroup2 mount. The setup comes from mountinfo.
    pub(crate) fn v1_hybrid(base: &Path) -> (Self, CgroupSetup) {
        let names = [
            ("cpu", "cpu"),
            ("cpuacct", "cpuacct"),
            ("cpuset", "cpuset"),
            ("memory", "memory"),
            ("devices", "devices"),
            ("freezer", "freezer"),
            ("blkio", "blkio"),
            ("pids", "pids"),
            ("systemd", "name=systemd"),
        ];
        Self::v1_with(base, &names, true)
    }

    /// An older v1 machine: cpu and cpuacct co-mounted, no cgroup2.
    pub(crate) fn v1_comounted(base: &Path) -> (Self, CgroupSetup) {
        let names = [
            ("systemd", "name=systemd"),
            ("cpu,cpuacct", "cpu,cpuacct"),
            ("net_cls,net_prio", "net_cls,net_prio"),
            ("memory", "memory"),
            ("pids", "pids"),
            ("freezer", "freezer"),
        ];
        Self::v1_with(base, &names, false)
    }

    fn v1_with(base: &Path, names: &[(&str, &str)], unified: bool) -> (Self, CgroupSetup) {
        let mut mountinfo = format!(
            "31 23 0:28 / {} rw,relatime - tmpfs tmpfs rw,mode=755\n",
            base.display()
        );
        let mut hierarchies = Vec::new();
        for (i, (dir, opts)) in names.iter().enumerate() {
            let mount = base.join(dir);
            std::fs::create_dir(&mount).unwrap();
            mountinfo += &format!(
                "{} 31 0:{} / {} rw,relatime - cgroup cgroup rw,{opts}\n",
                32 + i,
                29 + i,
                mount.display()
            );
            hierarchies.push((mount, opts.split(',').map(String::from).collect::<Vec<_>>()));
        }
        if unified {
            let mount = base.join("unified");
            std::fs::create_dir(&mount).unwrap();
            std::fs::write(mount.join("cgroup.controllers"), "hugetlb\n").unwrap();
            mountinfo += &format!(
                "60 31 0:60 / {} rw,relatime - cgroup2 cgroup2 rw\n",
                mount.display()
            );
        }
        let fake = Self::new(base, Layout::V1 { hierarchies });
        if let Layout::V1 { hierarchies } = &fake.layout {
            for (mount, controllers) in hierarchies {
                fake.populate_v1(mount, controllers, true);
            }
        }
        let setup = CgroupSetup::from_mountinfo(&mountinfo).unwrap();
        (fake, setup)
    }

    /// A pure v2 machine whose root offers `controllers` (e.g. "cpuset cpu io memory pids").
    pub(crate) fn v2(base: &Path, controllers: &str) -> (Self, CgroupSetup) {
        let root = base.join("cgroup");
        std::fs::create_dir(&root).unwrap();
        for (file, content) in [
            ("cgroup.controllers", format!("{controllers}\n")),
            ("cgroup.subtree_control", "\n".to_string()),
            ("cgroup.procs", "1\n".to_string()),
            ("cgroup.threads", "1\n".to_string()),
            ("cgroup.max.depth", "max\n".to_string()),
            ("cgroup.stat", "nr_descendants 0\n".to_string()),
            ("memory.stat", "anon 0\n".to_string()),
            ("cpu.stat", "usage_usec 0\n".to_string()),
        ] {
            std::fs::write(root.join(file), content).unwrap();
        }
        let setup = CgroupSetup::V2 { root: root.clone() };
        (Self::new(base, Layout::V2 { root }), setup)
    }

    /// New v1 memory cgroups have no `memory.memsw.*` (swap accounting off).
    pub(crate) fn without_memsw(self) -> Self {
        self.state.lock().unwrap().memsw = false;
        self
    }

    /// New v2 cgroups have no `memory.swap.max` (no swap controller).
    pub(crate) fn without_swap(self) -> Self {
        self.state.lock().unwrap().swap = false;
        self
    }

    /// New v2 cgroups have no `cgroup.kill` (kernel older than 5.14).
    pub(crate) fn without_kill_file(self) -> Self {
        self.state.lock().unwrap().kill_file = false;
        self
    }

    /// `pid` survives SIGKILL (like a task stuck in uninterruptible sleep).
    pub(crate) fn unkillable(&self, pid: i32) {
        self.state.lock().unwrap().unkillable.insert(pid);
    }

    /// Freezing never completes (v1 stays FREEZING, v2 events keep `frozen 0`).
    pub(crate) fn stuck_freeze(&self) {
        self.state.lock().unwrap().stuck_freeze = true;
    }

    /// The next `n` rmdirs fail with EBUSY (tasks still exiting).
    pub(crate) fn busy_rmdirs(&self, n: usize) {
        self.state.lock().unwrap().busy_rmdirs = n;
    }

    /// Writes to `rel` (relative to the base) fail with `errno`.
    pub(crate) fn fail_writes(&self, rel: &str, errno: i32) {
        self.state
            .lock()
            .unwrap()
            .failures
            .insert(self.base.join(rel), errno);
    }

    /// Reads of `rel` (relative to the base) fail with `errno`.
    pub(crate) fn fail_reads(&self, rel: &str, errno: i32) {
        self.state
            .lock()
            .unwrap()
            .read_failures
            .insert(self.base.join(rel), errno);
    }

    /// Sets a file's content directly (what the kernel would report).
    pub(crate) fn set(&self, rel: &str, content: &str) {
        std::fs::write(self.base.join(rel), content).unwrap();
    }

    /// A file's content.
    pub(crate) fn get(&self, rel: &str) -> String {
        std::fs::read_to_string(self.base.join(rel)).unwrap()
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.base.join(rel)
    }

    /// Everything logged so far; clears the log.
    pub(crate) fn take_ops(&self) -> Vec<Op> {
        std::mem::take(&mut self.state.lock().unwrap().log)
    }

    /// Virtual time spent sleeping.
    pub(crate) fn elapsed(&self) -> Duration {
        self.state.lock().unwrap().elapsed
    }

    fn rel(&self, path: &Path) -> String {
        path.strip_prefix(&self.base).unwrap().display().to_string()
    }

    fn log(&self, op: Op) {
        self.state.lock().unwrap().log.push(op);
    }

    /// Control files of a v1 cgroup in a hierarchy with `controllers`.
    fn populate_v1(&self, dir: &Path, controllers: &[String], root: bool) {
        let memsw = self.state.lock().unwrap().memsw;
        let mut files = vec![
            ("cgroup.procs", if root { "1\n" } else { "" }),
            ("tasks", if root { "1\n" } else { "" }),
            ("notify_on_release", "0\n"),
            ("cgroup.clone_children", "0\n"),
        ];
        if root {
            files.extend([("cgroup.sane_behavior", "0\n"), ("release_agent", "\n")]);
        }
        for c in controllers {
            match c.as_str() {
                "memory" => {
                    files.extend([
                        ("memory.limit_in_bytes", UNLIMITED_V1),
                        ("memory.usage_in_bytes", "0\n"),
                        ("memory.max_usage_in_bytes", "0\n"),
                        ("memory.stat", "cache 0\n"),
                    ]);
                    if memsw {
                        files.push(("memory.memsw.limit_in_bytes", UNLIMITED_V1));
                    }
                }
                "pids" => files.extend([("pids.max", "max\n"), ("pids.current", "0\n")]),
                "freezer" if !root => files.extend([
                    ("freezer.state", "THAWED\n"),
                    ("freezer.self_freezing", "0\n"),
                ]),
                "devices" => files.extend([
                    ("devices.allow", ""),
                    ("devices.deny", ""),
                    ("devices.list", "a *:* rwm\n"),
                ]),
                "cpu" => files.extend([
                    ("cpu.cfs_period_us", "100000\n"),
                    ("cpu.cfs_quota_us", "-1\n"),
                    ("cpu.shares", "1024\n"),
                ]),
                "cpuacct" => files.push(("cpuacct.usage", "0\n")),
                _ => {}
            }
        }
        for (name, content) in files {
            std::fs::write(dir.join(name), content).unwrap();
        }
    }

    /// Control files of a new v2 cgroup: the core files plus those of each controller the parent
    /// enabled for its children.
    fn populate_v2(&self, dir: &Path) {
        let (swap, kill_file) = {
            let s = self.state.lock().unwrap();
            (s.swap, s.kill_file)
        };
        let parent = dir.parent().unwrap();
        let enabled = std::fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap();
        let mut files = vec![
            (
                "cgroup.controllers".to_string(),
                format!("{}\n", enabled.trim()),
            ),
            ("cgroup.subtree_control".into(), "\n".into()),
            ("cgroup.procs".into(), String::new()),
            ("cgroup.threads".into(), String::new()),
            ("cgroup.type".into(), "domain\n".into()),
            ("cgroup.events".into(), "populated 0\nfrozen 0\n".into()),
            ("cgroup.freeze".into(), "0\n".into()),
        ];
        if kill_file {
            files.push(("cgroup.kill".into(), String::new()));
        }
        for c in enabled.split_whitespace() {
            match c {
                "memory" => {
                    files.extend([
                        ("memory.max".into(), "max\n".into()),
                        ("memory.high".into(), "max\n".into()),
                        ("memory.current".into(), "0\n".into()),
                        ("memory.peak".into(), "0\n".into()),
                    ]);
                    if swap {
                        files.push(("memory.swap.max".into(), "max\n".into()));
                    }
                }
                "pids" => files.extend([
                    ("pids.max".into(), "max\n".into()),
                    ("pids.current".into(), "0\n".into()),
                ]),
                "cpu" => files.extend([
                    ("cpu.max".into(), "max 100000\n".into()),
                    ("cpu.weight".into(), "100\n".into()),
                ]),
                _ => {}
            }
        }
        for (name, content) in files {
            std::fs::write(dir.join(name), content).unwrap();
        }
    }

    fn v1_controllers_of(&self, path: &Path) -> Option<Vec<String>> {
        match &self.layout {
            Layout::V1 { hierarchies } => hierarchies
                .iter()
                .find(|(mount, _)| path.starts_with(mount))
                .map(|(_, c)| c.clone()),
            Layout::V2 { .. } => None,
        }
    }

    fn is_v2_root(&self, dir: &Path) -> bool {
        matches!(&self.layout, Layout::V2 { root } if root == dir)
    }

    /// Every `cgroup.procs` at or under `dir`.
    fn procs_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                Self::procs_files(&path, out);
            } else if path.file_name().is_some_and(|n| n == "cgroup.procs") {
                out.push(path);
            }
        }
    }

    /// Removes the (killable) pids from every `cgroup.procs` at or under `dir`; true if `pid`
    /// (when given) was found anywhere.
    fn remove_pids(&self, dir: &Path, only: Option<i32>) -> bool {
        let unkillable = self.state.lock().unwrap().unkillable.clone();
        let mut files = Vec::new();
        Self::procs_files(dir, &mut files);
        let mut found = false;
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| {
                    let pid: i32 = l.trim().parse().unwrap_or(0);
                    let target = only.is_none_or(|p| p == pid);
                    found |= target && only.is_some();
                    !target || unkillable.contains(&pid)
                })
                .collect();
            let mut new = kept.join("\n");
            if !new.is_empty() {
                new.push('\n');
            }
            std::fs::write(&file, new).unwrap();
        }
        found
    }

    fn special_write(&self, path: &Path, value: &str) -> io::Result<()> {
        let dir = path.parent().unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        let stuck = self.state.lock().unwrap().stuck_freeze;
        let einval = || io::Error::from_raw_os_error(libc::EINVAL);
        match name {
            "cgroup.procs" => {
                let pid: i32 = value.trim().parse().map_err(|_| einval())?;
                let mut text = std::fs::read_to_string(path)?;
                if !text.lines().any(|l| l.trim() == value.trim()) {
                    text += &format!("{pid}\n");
                }
                std::fs::write(path, text)
            }
            "memory.limit_in_bytes" | "memory.memsw.limit_in_bytes" => {
                let new: u64 = value.trim().parse().map_err(|_| einval())?;
                let read = |f: &str| -> Option<u64> {
                    std::fs::read_to_string(dir.join(f))
                        .ok()?
                        .trim()
                        .parse()
                        .ok()
                };
                let ok = match (
                    name,
                    read("memory.limit_in_bytes"),
                    read("memory.memsw.limit_in_bytes"),
                ) {
                    ("memory.limit_in_bytes", _, Some(memsw)) => new <= memsw,
                    ("memory.memsw.limit_in_bytes", Some(limit), _) => new >= limit,
                    _ => true,
                };
                if !ok {
                    return Err(einval());
                }
                std::fs::write(path, format!("{new}\n"))
            }
            "freezer.state" => match value {
                "FROZEN" => std::fs::write(path, if stuck { "FREEZING\n" } else { "FROZEN\n" }),
                "THAWED" => std::fs::write(path, "THAWED\n"),
                _ => Err(einval()),
            },
            "cgroup.subtree_control" => {
                let available = std::fs::read_to_string(dir.join("cgroup.controllers"))?;
                let mut enabled: BTreeSet<String> = std::fs::read_to_string(path)?
                    .split_whitespace()
                    .map(String::from)
                    .collect();
                for token in value.split_whitespace() {
                    let (add, c) = match token.split_at(1) {
                        ("+", c) => (true, c),
                        ("-", c) => (false, c),
                        _ => return Err(einval()),
                    };
                    if !available.split_whitespace().any(|a| a == c) {
                        return Err(io::Error::from_raw_os_error(libc::ENOENT));
                    }
                    if add {
                        enabled.insert(c.to_string());
                    } else {
                        enabled.remove(c);
                    }
                }
                let procs = std::fs::read_to_string(dir.join("cgroup.procs"))?;
                if !self.is_v2_root(dir) && !procs.trim().is_empty() {
                    // No internal processes.
                    return Err(io::Error::from_raw_os_error(libc::EBUSY));
                }
                let ordered: Vec<&str> = available
                    .split_whitespace()
                    .filter(|a| enabled.contains(*a))
                    .collect();
                std::fs::write(path, format!("{}\n", ordered.join(" ")))
            }
            "cgroup.freeze" => {
                let frozen = match value {
                    "1" => !stuck,
                    "0" => false,
                    _ => return Err(einval()),
                };
                std::fs::write(path, format!("{value}\n"))?;
                let events = std::fs::read_to_string(dir.join("cgroup.events"))?;
                let events: String = events
                    .lines()
                    .map(|l| {
                        if l.starts_with("frozen ") {
                            format!("frozen {}\n", u8::from(frozen))
                        } else {
                            format!("{l}\n")
                        }
                    })
                    .collect();
                std::fs::write(dir.join("cgroup.events"), events)
            }
            "cgroup.kill" => {
                if value != "1" {
                    return Err(einval());
                }
                self.remove_pids(dir, None);
                Ok(())
            }
            _ => std::fs::write(path, value),
        }
    }
}

impl CgroupFs for FakeFs {
    fn attach_devices(
        &self,
        dir: &Path,
        rules: &[crate::devices::DeviceRule],
    ) -> std::result::Result<(), crate::devices::AttachError> {
        let lines = rules
            .iter()
            .map(crate::devices::DeviceRule::v1_line)
            .collect();
        self.log(Op::Devices(self.rel(dir), lines));
        Ok(())
    }

    fn read(&self, path: &Path) -> io::Result<String> {
        if let Some(&errno) = self.state.lock().unwrap().read_failures.get(path) {
            return Err(io::Error::from_raw_os_error(errno));
        }
        if path.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
        }
        std::fs::read_to_string(path)
    }

    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        if let Some(&errno) = self.state.lock().unwrap().failures.get(path) {
            return Err(io::Error::from_raw_os_error(errno));
        }
        if !path.is_file() {
            // The kernel never lets a write create a file.
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        self.special_write(path, value)?;
        self.log(Op::Write(self.rel(path), value.to_string()));
        Ok(())
    }

    fn mkdir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)?;
        if let Some(controllers) = self.v1_controllers_of(path) {
            self.populate_v1(path, &controllers, false);
        } else {
            self.populate_v2(path);
        }
        self.log(Op::Mkdir(self.rel(path)));
        Ok(())
    }

    fn rmdir(&self, path: &Path) -> io::Result<()> {
        {
            let mut state = self.state.lock().unwrap();
            if state.busy_rmdirs > 0 && path.is_dir() {
                state.busy_rmdirs -= 1;
                return Err(io::Error::from_raw_os_error(libc::EBUSY));
            }
        }
        if !path.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        let has_children = std::fs::read_dir(path)?
            .flatten()
            .any(|e| e.path().is_dir());
        let procs = std::fs::read_to_string(path.join("cgroup.procs")).unwrap_or_default();
        if has_children || !procs.trim().is_empty() {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        // Control files vanish with the cgroup.
        std::fs::remove_dir_all(path)?;
        self.log(Op::Rmdir(self.rel(path)));
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn subdirs(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        super::fs::RealFs.subdirs(path)
    }

    fn kill(&self, pid: i32) -> nix::Result<()> {
        assert!(pid > 0, "kill({pid}) would signal a process group");
        self.log(Op::Kill(pid));
        let unkillable = self.state.lock().unwrap().unkillable.contains(&pid);
        if unkillable || self.remove_pids(&self.base, Some(pid)) {
            Ok(())
        } else {
            Err(Errno::ESRCH)
        }
    }

    fn now(&self) -> Instant {
        self.start + self.state.lock().unwrap().elapsed
    }

    fn sleep(&self, d: Duration) {
        self.state.lock().unwrap().elapsed += d;
    }
}
