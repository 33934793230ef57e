//! Preflight (`admin doctor`): whether this host can run workers, checked before anything
//! starts, so that a missing kernel feature is a clear line with its fix rather than a worker
//! that fails at its first call. [`facts::gather`] probes the host; [`evaluate`] judges the
//! facts (pure, unit-tested against made-up hosts); a [`Report`] prints them.
//!
//! Each check is `OK`, `WARN` (the worker runs, with something lost, as the line says) or
//! `FAIL` (workers cannot run here, or fail their calls). [`Scope::Quick`] leaves out what takes
//! time or the network (the package index, the port): `admin workers` runs it first.

mod evaluate;
pub mod facts;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

pub use evaluate::evaluate;
pub use facts::{gather, Facts};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    pub fn label(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }
}

/// One check's result: what was seen and, unless it is OK, the fix in one sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// A short name (`kernel`, `syscall open_tree`, `cgroup memory`).
    pub check: String,
    pub level: Level,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    pub(crate) fn ok(check: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            check: check.into(),
            level: Level::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    pub(crate) fn warn(
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::with_fix(Level::Warn, check.into(), detail.into(), fix.into())
    }

    pub(crate) fn fail(
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::with_fix(Level::Fail, check.into(), detail.into(), fix.into())
    }

    fn with_fix(level: Level, check: String, detail: String, fix: String) -> Self {
        Self {
            check,
            level,
            detail,
            fix: Some(fix),
        }
    }

    /// `FAIL  cgroup memory    mkdir ...: Read-only file system. Fix: ...`
    pub fn line(&self) -> String {
        let mut line = format!(
            "{:<4}  {:<22} {}",
            self.level.label(),
            self.check,
            self.detail
        );
        if let Some(fix) = &self.fix {
            let _ = write!(line, ". Fix: {fix}");
        }
        line
    }
}

/// Which checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything.
    Full,
    /// The host and kernel only: no network, no port (what `admin workers` runs first).
    Quick,
}

/// What the checks are about: the cluster's (or the default) base, its directories, its
/// package index and port, and the settings that change what a missing feature costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub base_dir: PathBuf,
    /// Directories whose disk must have room, with what each is for.
    pub disks: Vec<(String, PathBuf)>,
    pub index_url: Option<String>,
    pub port: Option<(String, u16)>,
    /// `import_cache`: zygote forks need the new mount API and pidfds.
    pub import_cache: bool,
    /// `user_namespaces`.
    pub user_namespaces: bool,
    /// Whether `base_dir` is a cluster's base (it must exist, with the runtime installed), or
    /// the base cache's entry (`admin new` builds it when missing).
    pub cluster_base: bool,
    /// What creates the base, for the fix when it is missing (`admin new -cluster DIR`).
    pub base_fix: String,
}

/// The findings, in the order they were checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub checks: Vec<Finding>,
}

impl Report {
    /// Probes this host for `target` and judges what it found.
    pub fn run(target: &Target, scope: Scope) -> Self {
        let facts = gather(target, scope);
        Self {
            checks: evaluate(&facts, target),
        }
    }

    pub fn count(&self, level: Level) -> usize {
        self.checks.iter().filter(|c| c.level == level).count()
    }

    pub fn failed(&self) -> bool {
        self.count(Level::Fail) > 0
    }

    /// The findings at `level`.
    pub fn at(&self, level: Level) -> impl Iterator<Item = &Finding> {
        self.checks.iter().filter(move |c| c.level == level)
    }

    /// One line per finding and a summary line.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            out.push_str(&c.line());
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "{} OK, {} WARN, {} FAIL",
            self.count(Level::Ok),
            self.count(Level::Warn),
            self.count(Level::Fail)
        );
        out
    }

    /// `{"checks": [...], "ok": N, "warn": N, "fail": N}`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "checks": self.checks,
            "ok": self.count(Level::Ok),
            "warn": self.count(Level::Warn),
            "fail": self.count(Level::Fail),
        })
    }
}
