//! Detached mounts: a clone of a host directory's mount, held by a file descriptor, that a
//! process in another mount namespace attaches with `move_mount`.
//!
//! A bind mount only takes its source from the caller's own mount namespace (`mount --bind
//! /proc/self/fd/N` with an fd from another namespace fails with `EINVAL`). A zygote's child lives
//! in a copy of the zygote's namespace, where the host's handler and scratch directories are not
//! visible, so the worker clones each directory with `open_tree(OPEN_TREE_CLONE)`, sets its
//! mount flags with `mount_setattr`, and passes the fd; the child attaches it with
//! `move_mount(fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH)`. A clone that is never
//! attached disappears with its last fd, so a failed start leaks no mount.
//!
//! nix has no wrapper for these (Linux 5.2 and 5.12) calls, hence the raw `syscall`s below.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_EMPTY_PATH: libc::c_uint = 0x1000;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` of `mount_setattr(2)` (version 0, 32 bytes).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A failed clone, naming the directory.
#[derive(Debug, thiserror::Error)]
#[error("cannot {what} {path}: {errno}")]
pub struct DetachError {
    pub path: PathBuf,
    pub what: &'static str,
    pub errno: Errno,
}

/// A detached clone of one directory's mount (not recursive), always `nosuid,nodev`.
#[derive(Debug)]
pub struct DetachedMount {
    fd: OwnedFd,
}

impl DetachedMount {
    /// Clones the mount at `path` (a directory), read-only unless `writable`.
    pub fn clone_of(path: &Path, writable: bool) -> Result<Self, DetachError> {
        Self::clone_mapped(path, writable, None)
    }

    /// Clones the mount at `path` like [`clone_of`](Self::clone_of), id-mapped through the
    /// user namespace `idmap` when given (`MOUNT_ATTR_IDMAP`, Linux 5.12, on file systems that
    /// support it): a file owned by id `i` on disk is seen as owned by the id that namespace
    /// maps `i` to, and files created there get the on-disk id that maps to their creator's.
    /// See [`crate::userns::mapping_namespace`].
    pub fn clone_mapped(
        path: &Path,
        writable: bool,
        idmap: Option<BorrowedFd<'_>>,
    ) -> Result<Self, DetachError> {
        let err = |what, errno| DetachError {
            path: path.to_owned(),
            what,
            errno,
        };
        let c =
            CString::new(path.as_os_str().as_bytes()).map_err(|_| err("name", Errno::EINVAL))?;
        // SAFETY: open_tree reads a NUL-terminated path and returns a new fd or -1; no memory
        // is shared with the kernel beyond the call.
        let raw = unsafe {
            libc::syscall(
                libc::SYS_open_tree,
                libc::AT_FDCWD,
                c.as_ptr(),
                OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
            )
        };
        if raw < 0 {
            return Err(err("clone the mount of", Errno::last()));
        }
        // SAFETY: open_tree returned a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw as libc::c_int) };
        let mut set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
        let mut clr = 0;
        if writable {
            clr |= MOUNT_ATTR_RDONLY;
        } else {
            set |= MOUNT_ATTR_RDONLY;
        }
        let mut userns_fd = 0;
        if let Some(ns) = idmap {
            set |= MOUNT_ATTR_IDMAP;
            userns_fd = std::os::fd::AsRawFd::as_raw_fd(&ns) as u64;
        }
        let attr = MountAttr {
            attr_set: set,
            attr_clr: clr,
            propagation: 0,
            userns_fd,
        };
        let empty = c"";
        // SAFETY: `attr` is a valid struct mount_attr of the size passed; the path is an empty
        // NUL-terminated string with AT_EMPTY_PATH, so the call acts on `fd` itself.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                empty.as_ptr(),
                AT_EMPTY_PATH,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if rc < 0 {
            let what = if idmap.is_some() {
                "id-map (or set the mount flags of)"
            } else {
                "set the mount flags of"
            };
            return Err(err(what, Errno::last()));
        }
        Ok(Self { fd })
    }
}

impl AsFd for DetachedMount {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_directory_is_named() {
        let err = DetachedMount::clone_of(Path::new("/nonexistent/dir"), false).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/dir"), "{err}");
    }
}
