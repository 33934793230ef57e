//! The header of every report: what machine, kernel, cgroup mode and revision the figures
//! come from.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub memory_gib: f64,
    pub kernel: String,
    pub cgroup: String,
    pub revision: String,
    pub base_python: String,
    pub date_utc: String,
}

impl Machine {
    /// Reads the machine's facts; `repo` is where `git` is asked for the revision, `base` the
    /// cluster's root filesystem.
    pub fn probe(repo: &Path, base: &Path) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, v)| v.trim().to_owned());
        let memory_kib = meminfo_kib("MemTotal").unwrap_or(0);
        Self {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            memory_gib: (memory_kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_else(|_| "unknown".to_owned()),
            cgroup: cgroup_mode(),
            revision: revision(repo),
            base_python: base_python(base),
            date_utc: output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M"]))
                .unwrap_or_default(),
        }
    }

    /// One line for the report's header.
    pub fn line(&self) -> String {
        format!(
            "machine: {} cores ({}), {} GiB, kernel {}, cgroup {}, base {}, revision {}, {} UTC",
            self.cores,
            self.cpu,
            self.memory_gib,
            self.kernel,
            self.cgroup,
            self.base_python,
            self.revision,
            self.date_utc
        )
    }
}

/// A field of `/proc/meminfo`, in KiB.
pub fn meminfo_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

fn cgroup_mode() -> String {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let has_v2 = mountinfo.lines().any(|l| l.contains(" - cgroup2 "));
    let has_v1 = mountinfo.lines().any(|l| l.contains(" - cgroup "));
    let used = match sandbox::cgroup::CgroupSetup::detect() {
        Ok(setup) => format!("{:?}", setup.version()).to_lowercase(),
        Err(e) => format!("unusable ({e})"),
    };
    let mode = match (has_v1, has_v2) {
        (true, true) => "hybrid",
        (true, false) => "v1 only",
        (false, true) => "pure v2",
        (false, false) => "none",
    };
    format!("{mode}, lambdaworker uses {used}")
}

/// The short revision, with `+changes` when tracked files differ from it (the bench's own
/// results aside).
fn revision(repo: &Path) -> String {
    let Some(rev) =
        output(
            Command::new("git")
                .arg("-C")
                .arg(repo)
                .args(["rev-parse", "--short", "HEAD"]),
        )
    else {
        return "unknown".to_owned();
    };
    let dirty = output(Command::new("git").arg("-C").arg(repo).args([
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        ".",
        ":!bench/results",
    ]))
    .is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{rev}+changes")
    } else {
        rev
    }
}

/// The base's Python version, from the name its `python3` link points to.
fn base_python(base: &Path) -> String {
    std::fs::read_link(base.join("usr/bin/python3"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "python3".to_owned())
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
