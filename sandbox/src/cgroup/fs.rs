//! The file operations the cgroup managers need, behind a small trait ([`CgroupFs`]) so that the
//! sequencing can be tested against a fake cgroupfs without root. Also the error-mapping helpers
//! shared by the v1 and v2 managers (every error names the path, and the value for writes) and the
//! bounded wait loops (kill, rmdir with `EBUSY` retries).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{CgroupError, Result};

/// How long a kill waits for processes to disappear from `cgroup.procs`.
pub(crate) const KILL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a freeze waits for the kernel to report the cgroup frozen.
pub(crate) const FREEZE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `rmdir` is retried while it fails with `EBUSY`.
pub(crate) const RMDIR_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest pause between two polls.
const MAX_POLL: Duration = Duration::from_millis(20);

/// File operations on a cgroup filesystem. The real implementation is [`RealFs`]; tests use a
/// fake that imitates the kernel's side effects on plain files.
pub(crate) trait CgroupFs: Send + Sync + fmt::Debug {
    fn read(&self, path: &Path) -> io::Result<String>;
    /// Writes `value` to an existing file (never creates one), in one `write`.
    fn write(&self, path: &Path, value: &str) -> io::Result<()>;
    /// Creates one directory (its parent must exist).
    fn mkdir(&self, path: &Path) -> io::Result<()>;
    /// Removes one cgroup directory.
    fn rmdir(&self, path: &Path) -> io::Result<()>;
    fn exists(&self, path: &Path) -> bool;
    /// The directories directly inside `path`.
    fn subdirs(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
    /// Sends `SIGKILL` to `pid` (always > 0).
    fn kill(&self, pid: i32) -> nix::Result<()>;
    fn now(&self) -> Instant;
    fn sleep(&self, d: Duration);
    /// Attaches the device program of `rules` to the v2 cgroup directory `dir`.
    fn attach_devices(
        &self,
        dir: &Path,
        rules: &[crate::devices::DeviceRule],
    ) -> std::result::Result<(), crate::devices::AttachError>;
}

/// The kernel's cgroupfs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RealFs;

impl CgroupFs for RealFs {
    fn attach_devices(
        &self,
        dir: &Path,
        rules: &[crate::devices::DeviceRule],
    ) -> std::result::Result<(), crate::devices::AttachError> {
        crate::devices::attach_v2(dir, rules)
    }

    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        // cgroupfs files take one value per write(2); the values here are a few bytes, so
        // write_all makes exactly one call.
        OpenOptions::new()
            .write(true)
            .open(path)?
            .write_all(value.as_bytes())
    }

    fn mkdir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }

    fn rmdir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn subdirs(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let mut dirs = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                dirs.push(entry.path());
            }
        }
        dirs.sort();
        Ok(dirs)
    }

    fn kill(&self, pid: i32) -> nix::Result<()> {
        kill(Pid::from_raw(pid), Signal::SIGKILL)
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// Reads a file, naming it in the error.
pub(crate) fn read(fs: &dyn CgroupFs, path: &Path) -> Result<String> {
    fs.read(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a value, naming the file and the value in the error.
pub(crate) fn write(fs: &dyn CgroupFs, path: &Path, value: &str) -> Result<()> {
    fs.write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

/// Reads a file holding one unsigned number.
pub(crate) fn read_u64(fs: &dyn CgroupFs, path: &Path) -> Result<u64> {
    let text = read(fs, path)?;
    text.trim().parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        content: text,
    })
}

/// The value of the `key value` line named `key` in a flat-keyed file (`memory.events`,
/// `memory.oom_control`); 0 when there is no such line.
pub(crate) fn read_keyed(fs: &dyn CgroupFs, path: &Path, key: &str) -> Result<u64> {
    let text = read(fs, path)?;
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if parts.next() == Some(key) {
            return parts
                .next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| CgroupError::Parse {
                    path: path.to_path_buf(),
                    content: line.to_owned(),
                });
        }
    }
    Ok(0)
}

/// How many times cgroup creation starts over when a directory on its path vanished.
const CREATE_ATTEMPTS: usize = 5;

/// Runs `create` (which must be idempotent) again when it failed because a directory on its path
/// vanished: another process may remove an empty shared ancestor (a worker's cleanup prunes
/// `lambdaworker/`) between two of our `mkdir`s or before a `cgroup.subtree_control` write.
pub(crate) fn retry_if_parent_vanished(mut create: impl FnMut() -> Result<()>) -> Result<()> {
    let mut attempt = 1;
    loop {
        match create() {
            Err(e) if attempt < CREATE_ATTEMPTS && parent_vanished(&e) => attempt += 1,
            other => return other,
        }
    }
}

fn parent_vanished(e: &CgroupError) -> bool {
    match e {
        CgroupError::Create { source, .. } | CgroupError::Write { source, .. } => {
            source.kind() == io::ErrorKind::NotFound
        }
        _ => false,
    }
}

/// `mkdir -p base/rel`, assuming `base` exists.
pub(crate) fn mkdir_p(fs: &dyn CgroupFs, base: &Path, rel: &Path) -> Result<()> {
    let mut dir = base.to_path_buf();
    for component in rel.components() {
        dir.push(component);
        mkdir(fs, &dir)?;
    }
    Ok(())
}

/// Creates one directory; one that exists already is fine.
pub(crate) fn mkdir(fs: &dyn CgroupFs, dir: &Path) -> Result<()> {
    match fs.mkdir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(CgroupError::Create {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Parses a `cgroup.procs` file. Non-positive entries (a v2 kernel prints 0 for processes outside
/// the reader's pid namespace) are dropped: they cannot be signalled from here.
pub(crate) fn parse_procs(path: &Path, text: &str) -> Result<Vec<i32>> {
    let mut pids = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let pid: i32 = line.parse().map_err(|_| CgroupError::Parse {
            path: path.to_path_buf(),
            content: text.to_string(),
        })?;
        if pid > 0 {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// Pids in `dir/cgroup.procs`.
pub(crate) fn procs(fs: &dyn CgroupFs, dir: &Path) -> Result<Vec<i32>> {
    let path = dir.join("cgroup.procs");
    parse_procs(&path, &read(fs, &path)?)
}

/// True for the errors of a cgroup that does not exist, or is being removed as we look
/// (its files then answer `ENODEV`).
fn gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV)
}

/// Pids in `dir/cgroup.procs`; a cgroup that does not exist (any more) has none.
pub(crate) fn procs_if_exists(fs: &dyn CgroupFs, dir: &Path) -> Result<Vec<i32>> {
    let path = dir.join("cgroup.procs");
    match fs.read(&path) {
        Ok(text) => parse_procs(&path, &text),
        Err(e) if gone(&e) => Ok(Vec::new()),
        Err(source) => Err(CgroupError::Read { path, source }),
    }
}

/// Union of the pids of several cgroup directories, sorted.
pub(crate) fn pids_of(fs: &dyn CgroupFs, dirs: &[PathBuf]) -> Result<Vec<i32>> {
    let mut all = BTreeSet::new();
    for dir in dirs {
        all.extend(procs(fs, dir)?);
    }
    Ok(all.into_iter().collect())
}

/// Sends `SIGKILL` to `pid`; a process that is already gone is fine.
pub(crate) fn kill_pid(fs: &dyn CgroupFs, cgroup: &Path, pid: i32) -> Result<()> {
    if pid <= 0 {
        // kill(0) and kill(-1) would signal whole process groups; never let a parse slip do that.
        return Ok(());
    }
    match fs.kill(pid) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(source) => Err(CgroupError::Kill {
            path: cgroup.to_path_buf(),
            pid,
            source,
        }),
    }
}

/// Exponential back-off between polls, capped at [`MAX_POLL`].
#[derive(Debug)]
pub(crate) struct Backoff(Duration);

impl Backoff {
    pub(crate) fn new() -> Self {
        Self(Duration::from_millis(1))
    }

    pub(crate) fn wait(&mut self, fs: &dyn CgroupFs) {
        fs.sleep(self.0);
        self.0 = (self.0 * 2).min(MAX_POLL);
    }
}

/// What a kill loop works on: the cgroup directories whose `cgroup.procs` must become empty, and
/// the kernel's helpers for the hierarchy.
#[derive(Debug)]
pub(crate) struct KillPlan<'a> {
    /// Every `cgroup.procs` directory to empty (all hierarchies, possibly a whole subtree).
    pub dirs: &'a [PathBuf],
    /// v2: the top cgroup's `cgroup.kill`, when the kernel has it (kills the whole subtree).
    pub kill_file: Option<PathBuf>,
    /// v1: the top cgroup's `freezer.state`, frozen (the v1 freezer is hierarchical) before
    /// listing and killing so no process forks past the kill.
    pub freeze: Option<PathBuf>,
    /// v1: every `freezer.state` in the plan, thawed after each round: a frozen v1 task does not
    /// act on SIGKILL until thawed, and a cgroup paused on its own stays frozen when its parent
    /// thaws.
    pub thaw: Vec<PathBuf>,
}

/// Kills every process in `plan.dirs` and waits (bounded by [`KILL_TIMEOUT`]) until they are gone.
/// Cgroups that do not exist count as empty.
pub(crate) fn kill_and_wait(fs: &dyn CgroupFs, plan: &KillPlan<'_>) -> Result<()> {
    let deadline = fs.now() + KILL_TIMEOUT;
    let mut backoff = Backoff::new();
    // Nothing left (the usual case, once the first process of a sandbox is gone): no freeze.
    let mut empty = true;
    for dir in plan.dirs {
        empty &= procs_if_exists(fs, dir)?.is_empty();
    }
    if empty {
        return Ok(());
    }
    loop {
        if let Some(state) = &plan.freeze {
            freeze_v1_briefly(fs, state, deadline);
        }
        let result = kill_round(fs, plan, deadline);
        for state in &plan.thaw {
            // The directory may already be gone; anything else leaves processes frozen forever.
            match fs.write(state, "THAWED") {
                Ok(()) => {}
                Err(e) if gone(&e) => {}
                Err(source) => {
                    return Err(CgroupError::Write {
                        path: state.clone(),
                        value: "THAWED".into(),
                        source,
                    })
                }
            }
        }
        if result? {
            return Ok(());
        }
        backoff.wait(fs);
    }
}

/// One round of a kill loop: true when every cgroup is empty. Errors when the deadline passed
/// with processes left.
fn kill_round(fs: &dyn CgroupFs, plan: &KillPlan<'_>, deadline: Instant) -> Result<bool> {
    if let Some(kill_file) = &plan.kill_file {
        match fs.write(kill_file, "1") {
            Ok(()) => {}
            Err(e) if gone(&e) => {}
            Err(source) => {
                return Err(CgroupError::Write {
                    path: kill_file.clone(),
                    value: "1".into(),
                    source,
                })
            }
        }
    }
    // Each pid once (on v1 it is listed in every hierarchy), with the first cgroup that holds it.
    let mut left: BTreeMap<i32, &Path> = BTreeMap::new();
    for dir in plan.dirs {
        for pid in procs_if_exists(fs, dir)? {
            left.entry(pid).or_insert(dir);
        }
    }
    let Some((_, first)) = left.first_key_value() else {
        return Ok(true);
    };
    if fs.now() >= deadline {
        return Err(CgroupError::Alive {
            path: first.to_path_buf(),
            pids: left.into_keys().collect(),
            waited: KILL_TIMEOUT,
        });
    }
    for (pid, dir) in left {
        kill_pid(fs, dir, pid)?;
    }
    Ok(false)
}

/// Asks the v1 freezer to freeze and waits a little (at most 100 ms) for it; best effort, since
/// killing works without it and the next round catches any process that forked meanwhile.
fn freeze_v1_briefly(fs: &dyn CgroupFs, state: &Path, deadline: Instant) {
    if fs.write(state, "FROZEN").is_err() {
        return;
    }
    let until = deadline.min(fs.now() + Duration::from_millis(100));
    let mut backoff = Backoff::new();
    while fs.now() < until {
        match fs.read(state) {
            Ok(s) if s.trim() == "FROZEN" => return,
            Ok(_) => backoff.wait(fs),
            Err(_) => return,
        }
    }
}

/// Removes one cgroup directory, retrying while it is busy (processes that were just killed may
/// still be exiting) until `deadline`. Returns whether this call removed it (false: it was gone).
pub(crate) fn rmdir_retry(fs: &dyn CgroupFs, dir: &Path, deadline: Instant) -> Result<bool> {
    let mut backoff = Backoff::new();
    loop {
        match fs.rmdir(dir) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && fs.now() < deadline => {
                backoff.wait(fs);
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Every cgroup directory at or under `top`, children before their parents. A missing `top`
/// gives an empty list.
pub(crate) fn tree_post_order(fs: &dyn CgroupFs, top: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if fs.exists(top) {
        walk(fs, top, &mut out)?;
    }
    Ok(out)
}

fn walk(fs: &dyn CgroupFs, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let children = match fs.subdirs(dir) {
        Ok(c) => c,
        // Removed by someone else meanwhile.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    for child in children {
        walk(fs, &child, out)?;
    }
    out.push(dir.to_path_buf());
    Ok(())
}

/// Polls `path` until `check` accepts its content; false if that did not happen within
/// `timeout`. With `rewrite`, writes that value to that file again before every new poll (the v1
/// freezer can stall in FREEZING while tasks fork; writing FROZEN again retries).
pub(crate) fn wait_for(
    fs: &dyn CgroupFs,
    path: &Path,
    check: impl Fn(&str) -> bool,
    rewrite: Option<(&Path, &str)>,
    timeout: Duration,
) -> Result<bool> {
    let deadline = fs.now() + timeout;
    let mut backoff = Backoff::new();
    loop {
        if check(&read(fs, path)?) {
            return Ok(true);
        }
        if fs.now() >= deadline {
            return Ok(false);
        }
        backoff.wait(fs);
        if let Some((file, value)) = rewrite {
            write(fs, file, value)?;
        }
    }
}

/// Opens `cgroup.procs` of each directory write-only and close-on-exec.
pub(crate) fn open_procs(dirs: &[PathBuf]) -> Result<Vec<File>> {
    dirs.iter()
        .map(|dir| {
            let path = dir.join("cgroup.procs");
            OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&path)
                .map_err(|source| CgroupError::Open { path, source })
        })
        .collect()
}

/// Writes `pid` to `cgroup.procs` of each directory.
pub(crate) fn add_task(fs: &dyn CgroupFs, dirs: &[PathBuf], pid: i32) -> Result<()> {
    let value = pid.to_string();
    for dir in dirs {
        write(fs, &dir.join("cgroup.procs"), &value)?;
    }
    Ok(())
}

/// Removes each directory (missing ones are fine), retrying `EBUSY` for [`RMDIR_TIMEOUT`] in all.
pub(crate) fn remove_dirs(fs: &dyn CgroupFs, dirs: &[PathBuf]) -> Result<()> {
    let deadline = fs.now() + RMDIR_TIMEOUT;
    for dir in dirs {
        rmdir_retry(fs, dir, deadline)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vanished(path: &str) -> CgroupError {
        CgroupError::Create {
            path: path.into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        }
    }

    #[test]
    fn creation_starts_over_when_a_parent_vanished() {
        let mut calls = 0;
        let result = retry_if_parent_vanished(|| {
            calls += 1;
            if calls < 3 {
                Err(vanished("/sys/fs/cgroup/pids/lambdaworker/w-1"))
            } else {
                Ok(())
            }
        });
        assert!(result.is_ok());
        assert_eq!(calls, 3);
    }

    #[test]
    fn retries_are_bounded_and_other_errors_are_not_retried() {
        let mut calls = 0;
        let err = retry_if_parent_vanished(|| {
            calls += 1;
            Err(vanished("/x"))
        })
        .unwrap_err();
        assert!(parent_vanished(&err));
        assert_eq!(calls, CREATE_ATTEMPTS);
        let mut calls = 0;
        let err = retry_if_parent_vanished(|| {
            calls += 1;
            Err(CgroupError::Create {
                path: "/x".into(),
                source: io::Error::from_raw_os_error(libc::EACCES),
            })
        })
        .unwrap_err();
        assert!(!parent_vanished(&err));
        assert_eq!(calls, 1);
    }
}
