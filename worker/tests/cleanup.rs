//! `cleanup::unmount_under` on real mounts: scratch tmpfs mounts whose paths are not UTF-8 or
//! need escapes in mountinfo are found and detached. Needs root (it mounts); skips otherwise.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Detaches its mount on drop, so a failing test leaves nothing mounted.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn mount_tmpfs(dir: &Path) -> Mounted {
    std::fs::create_dir(dir).expect("create mount point");
    worker::cleanup::mount_scratch(dir, 1, 0, 0).expect("mount tmpfs");
    Mounted(dir.to_owned())
}

fn mounted_under(dir: &Path) -> Vec<PathBuf> {
    sandbox::mountinfo::mount_points()
        .expect("read mountinfo")
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect()
}

#[test]
fn unmount_under_detaches_mount_points_that_are_not_utf8() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipping unmount_under_detaches_mount_points_that_are_not_utf8: needs root (mounts a tmpfs)");
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("lw-cleanup")
        .tempdir()
        .expect("tempdir");
    let odd = tmp.path().join(OsStr::from_bytes(b"scratch-\xff\xfe"));
    let nested = odd.join("with space");
    let _outer = mount_tmpfs(&odd);
    let _inner = mount_tmpfs(&nested);
    assert!(odd.to_str().is_none(), "the test needs a non-UTF-8 path");

    let before = mounted_under(tmp.path());
    assert_eq!(
        before,
        [odd.clone(), nested.clone()],
        "mountinfo lists both"
    );

    assert_eq!(worker::cleanup::unmount_under(tmp.path()), 2);
    assert_eq!(mounted_under(tmp.path()), Vec::<PathBuf>::new());
    // The nested mount point lived in the outer tmpfs; the outer one is a plain directory again.
    assert!(!nested.exists());
    std::fs::remove_dir(&odd).expect("remove the non-UTF-8 mount point");
}
