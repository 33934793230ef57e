//! Removing what a worker left behind: its sandboxes' and zygotes' processes and cgroups, and
//! their scratch directories. Run at start (after a crash), at shutdown, and by `admin kill`.
//!
//! Sandbox mounts need no cleanup: they live in the sandbox's own mount namespace, which
//! disappears with its last process. The one exception is each scratch directory, a size-limited
//! tmpfs mounted in the worker's namespace ([`mount_scratch`]): it is unmounted when its sandbox
//! is destroyed, and leftovers of a crashed run are found in `/proc/self/mountinfo`.

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
    let unmounted = unmount_under(&handlers);
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
        "removed {removed} cgroup directories and scratch space of {scratch} lambdas ({unmounted} mounts)"
    ))
}

/// Mounts a tmpfs of `size_mb` on `dir` (an empty scratch directory), its root owned by
/// `uid`:`gid`: the sandbox's `/host`, bounded, and charged to the memory cgroup of whoever
/// writes to it.
pub fn mount_scratch(dir: &Path, size_mb: u64, uid: u32, gid: u32) -> nix::Result<()> {
    use nix::mount::{mount, MsFlags};
    let data = format!("size={size_mb}m,nr_inodes=16384,mode=0755,uid={uid},gid={gid}");
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(data.as_str()),
    )
}

/// Unmounts a scratch directory's tmpfs (if mounted) and removes the directory.
pub fn remove_scratch(dir: &Path) -> std::io::Result<()> {
    use nix::mount::{umount2, MntFlags};
    match umount2(dir, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (already unmounted); ENOENT: gone.
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(std::io::Error::from(e)),
    }
    remove_dir_all_if_present(dir)
}

/// Detaches every mount at or below `dir` (deepest first), as `/proc/self/mountinfo` lists
/// them (a mount point that is not UTF-8 included); returns how many.
pub fn unmount_under(dir: &Path) -> usize {
    let Ok(mut points) = sandbox::mountinfo::mount_points() else {
        return 0;
    };
    points.retain(|p| p.starts_with(dir));
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    let mut n = 0;
    for p in points {
        if nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH).is_ok() {
            n += 1;
        }
    }
    n
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
