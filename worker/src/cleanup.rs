//! Removing what a worker left behind: its sandboxes' and zygotes' processes and cgroups, and
//! their scratch directories. Run at start (after a crash), at shutdown, and by `admin kill`.
//!
//! Mounts need no cleanup: every sandbox mount lives in the sandbox's own mount namespace, which
//! disappears with its last process.

use std::path::Path;

use sandbox::cgroup::CgroupSetup;

use crate::config::Config;
use crate::WorkerError;

/// Kills leftover sandbox processes, removes their cgroups (under [`Config::cgroup_parent`]) and
/// the worker's scratch directories. Returns a one-line summary.
pub fn remove_leftovers(cfg: &Config, cgroups: &CgroupSetup) -> Result<String, WorkerError> {
    let parent = cfg.cgroup_parent();
    let removed = cgroups.remove_tree(&parent)?;
    remove_empty_top(cgroups, parent.parent());
    let handlers = cfg.worker_dir.join("handlers");
    let scratch = match std::fs::read_dir(&handlers) {
        Ok(entries) => entries.count(),
        Err(_) => 0,
    };
    remove_dir_all_if_present(&handlers).map_err(|source| WorkerError::Io {
        path: handlers,
        source,
    })?;
    let zygotes = cfg.worker_dir.join("import-cache");
    remove_dir_all_if_present(&zygotes).map_err(|source| WorkerError::Io {
        path: zygotes,
        source,
    })?;
    Ok(format!(
        "removed {removed} cgroup directories and scratch space of {scratch} lambdas"
    ))
}

/// `remove_dir_all` where a directory that is already gone counts as removed.
pub fn remove_dir_all_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Removes the shared top cgroup (`lambdaworker`) if no other worker uses it.
fn remove_empty_top(cgroups: &CgroupSetup, top: Option<&Path>) {
    let Some(top) = top.filter(|t| !t.as_os_str().is_empty()) else {
        return;
    };
    let roots: Vec<&Path> = match cgroups {
        CgroupSetup::V1 { controllers } => controllers.values().map(|p| p.as_path()).collect(),
        CgroupSetup::V2 { root } => vec![root.as_path()],
    };
    for root in roots {
        // rmdir fails (harmlessly) while another worker's cgroups live below it.
        let _ = std::fs::remove_dir(root.join(top));
    }
}

/// [`remove_leftovers`] with cgroups detected now (for `admin kill`).
pub fn cleanup_leftovers(cfg: &Config) -> Result<String, WorkerError> {
    let cgroups = CgroupSetup::detect()?;
    remove_leftovers(cfg, &cgroups)
}
