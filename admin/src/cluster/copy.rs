//! Hardlink copy of a root filesystem tree (the base cache into `<cluster>/base`).
//!
//! Directories are created anew with the source's mode and owner (so a cluster can add files such
//! as the runtime without touching the cache); symlinks are recreated; files, device nodes and
//! fifos are hard-linked. Hard-linked files share their inode with the cache, which is why sandboxes
//! mount `base/` read-only. When source and target are on different file systems (`EXDEV`),
//! regular files are copied and device nodes and fifos recreated instead.

use std::fs::Permissions;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::ClusterError;

/// What [`hardlink_tree`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    pub dirs: u64,
    pub symlinks: u64,
    /// Files, device nodes and fifos linked.
    pub linked: u64,
    /// Files copied or nodes recreated because the target is on another file system.
    pub copied: u64,
}

impl CopyStats {
    /// All entries created.
    pub fn entries(&self) -> u64 {
        self.dirs + self.symlinks + self.linked + self.copied
    }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ClusterError {
    let path = path.to_owned();
    move |source| ClusterError::Io { op, path, source }
}

/// Sets the owner of `path` (not following symlinks) if it differs from the current one.
fn chown_like(path: &Path, meta: &std::fs::Metadata) -> Result<(), ClusterError> {
    let cur = std::fs::symlink_metadata(path).map_err(io_err("stat", path))?;
    if cur.uid() == meta.uid() && cur.gid() == meta.gid() {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()))
        .map_err(io_err("chown", path))
}

/// Copies `src` to `dst` (which must not exist) as described in the module documentation.
pub fn hardlink_tree(src: &Path, dst: &Path) -> Result<CopyStats, ClusterError> {
    let mut stats = CopyStats::default();
    // Directory modes are applied last, children first, so read-only directories (e.g. `proc`,
    // mode 0555) can still be filled when not running as root.
    let mut dir_modes: Vec<(std::path::PathBuf, u32)> = Vec::new();
    let mut cross_device = false;
    for entry in walkdir::WalkDir::new(src).follow_links(false) {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(src).to_owned();
            ClusterError::Io {
                op: "read",
                path,
                source: e.into(),
            }
        })?;
        let rel = entry
            .path()
            .strip_prefix(src)
            .map_err(|_| ClusterError::Io {
                op: "walk",
                path: entry.path().to_owned(),
                source: std::io::Error::other("entry outside the source tree"),
            })?;
        let target = if rel.as_os_str().is_empty() {
            dst.to_owned()
        } else {
            dst.join(rel)
        };
        let meta = entry.metadata().map_err(|e| ClusterError::Io {
            op: "stat",
            path: entry.path().to_owned(),
            source: e.into(),
        })?;
        let ft = meta.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&target).map_err(io_err("create directory", &target))?;
            chown_like(&target, &meta)?;
            dir_modes.push((target, meta.mode() & 0o7777));
            stats.dirs += 1;
        } else if ft.is_symlink() {
            let link =
                std::fs::read_link(entry.path()).map_err(io_err("read link", entry.path()))?;
            std::os::unix::fs::symlink(&link, &target)
                .map_err(io_err("create symlink", &target))?;
            chown_like(&target, &meta)?;
            stats.symlinks += 1;
        } else {
            if !cross_device {
                match std::fs::hard_link(entry.path(), &target) {
                    Ok(()) => {
                        stats.linked += 1;
                        continue;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EXDEV) => cross_device = true,
                    Err(e) => return Err(io_err("hard-link", &target)(e)),
                }
            }
            copy_node(entry.path(), &target, &meta)?;
            stats.copied += 1;
        }
    }
    for (dir, mode) in dir_modes.into_iter().rev() {
        std::fs::set_permissions(&dir, Permissions::from_mode(mode))
            .map_err(io_err("chmod", &dir))?;
    }
    Ok(stats)
}

/// Copies a regular file, or recreates a device node or fifo, keeping mode and owner.
fn copy_node(src: &Path, dst: &Path, meta: &std::fs::Metadata) -> Result<(), ClusterError> {
    use nix::sys::stat::{mknod, Mode, SFlag};
    let ft = meta.file_type();
    if ft.is_file() {
        std::fs::copy(src, dst).map_err(io_err("copy", dst))?;
    } else {
        let kind = SFlag::from_bits_truncate(meta.mode() & libc::S_IFMT);
        let perm = Mode::from_bits_truncate(meta.mode() & 0o7777);
        mknod(dst, kind, perm, meta.rdev()).map_err(|e| io_err("mknod", dst)(e.into()))?;
    }
    chown_like(dst, meta)?;
    // chown may clear setuid/setgid bits: set the mode after it.
    std::fs::set_permissions(dst, Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(io_err("chmod", dst))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::stat::Mode;
    use std::os::unix::fs::{symlink, FileTypeExt};

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn tree_is_hardlinked_with_modes_and_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("usr/bin")).unwrap();
        std::fs::create_dir(src.join("tmp")).unwrap();
        std::fs::create_dir(src.join("proc")).unwrap();
        std::fs::write(src.join("usr/bin/python3"), b"#!fake").unwrap();
        std::fs::set_permissions(src.join("usr/bin/python3"), Permissions::from_mode(0o755))
            .unwrap();
        std::fs::write(src.join("usr/secret"), b"x").unwrap();
        std::fs::set_permissions(src.join("usr/secret"), Permissions::from_mode(0o600)).unwrap();
        symlink("usr/bin", src.join("bin")).unwrap();
        symlink("/does/not/exist", src.join("dangling")).unwrap();
        nix::unistd::mkfifo(&src.join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
        std::fs::set_permissions(src.join("tmp"), Permissions::from_mode(0o1777)).unwrap();
        std::fs::set_permissions(src.join("proc"), Permissions::from_mode(0o555)).unwrap();
        std::fs::set_permissions(&src, Permissions::from_mode(0o751)).unwrap();

        let dst = tmp.path().join("dst");
        let stats = hardlink_tree(&src, &dst).unwrap();
        assert_eq!(stats.dirs, 5, "{stats:?}");
        assert_eq!(stats.symlinks, 2);
        assert_eq!(stats.linked + stats.copied, 3);
        assert_eq!(stats.entries(), 10);

        for f in ["usr/bin/python3", "usr/secret", "fifo"] {
            let a = std::fs::symlink_metadata(src.join(f)).unwrap();
            let b = std::fs::symlink_metadata(dst.join(f)).unwrap();
            assert_eq!(
                (a.dev(), a.ino()),
                (b.dev(), b.ino()),
                "{f} is not the same inode"
            );
        }
        assert!(std::fs::symlink_metadata(dst.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
        assert_eq!(
            std::fs::read_link(dst.join("bin")).unwrap(),
            Path::new("usr/bin")
        );
        assert_eq!(
            std::fs::read_link(dst.join("dangling")).unwrap(),
            Path::new("/does/not/exist")
        );
        assert_eq!(std::fs::read(dst.join("bin/python3")).unwrap(), b"#!fake");
        assert_eq!(mode(&dst), 0o751);
        assert_eq!(mode(&dst.join("tmp")), 0o1777);
        assert_eq!(mode(&dst.join("proc")), 0o555);
        assert_eq!(mode(&dst.join("usr/secret")), 0o600);
        // Directories are new: adding a file to the copy leaves the source untouched.
        assert_ne!(
            std::fs::metadata(src.join("usr")).unwrap().ino(),
            std::fs::metadata(dst.join("usr")).unwrap().ino()
        );
        std::fs::write(dst.join("usr/new"), b"").unwrap();
        assert!(!src.join("usr/new").exists());
    }

    #[test]
    fn existing_target_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let dst = tmp.path().join("dst");
        std::fs::create_dir(&dst).unwrap();
        let err = hardlink_tree(&src, &dst).unwrap_err().to_string();
        assert!(err.contains("dst"), "{err}");
    }

    #[test]
    fn cross_device_fallback_copies_nodes() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("f");
        std::fs::write(&src, b"data").unwrap();
        std::fs::set_permissions(&src, Permissions::from_mode(0o640)).unwrap();
        let dst = tmp.path().join("g");
        copy_node(&src, &dst, &std::fs::metadata(&src).unwrap()).unwrap();
        assert_eq!(std::fs::read(&dst).unwrap(), b"data");
        assert_eq!(mode(&dst), 0o640);
        assert_ne!(
            std::fs::metadata(&src).unwrap().ino(),
            std::fs::metadata(&dst).unwrap().ino()
        );
        let fifo = tmp.path().join("fifo");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
        let fifo2 = tmp.path().join("fifo2");
        copy_node(&fifo, &fifo2, &std::fs::symlink_metadata(&fifo).unwrap()).unwrap();
        assert!(std::fs::symlink_metadata(&fifo2)
            .unwrap()
            .file_type()
            .is_fifo());
        assert_eq!(mode(&fifo2), 0o600);
    }
}
