//! User namespaces: the id maps a sandbox's user namespace gets, and a probe of whether the
//! kernel lets this process make one at all.
//!
//! A sandbox started with an [`IdMap`] is cloned with `CLONE_NEWUSER`. Its capabilities then
//! hold over its own namespaces only, never over the host: root inside (the setup, a zygote) is
//! an unprivileged host uid, and so is every user the map names. The parent writes the maps
//! (`/proc/<pid>/uid_map`, `gid_map`) right after `clone`, while the child waits on a pipe;
//! the child's first act once released is to become root of its namespace, so that from then
//! on it acts as the mapped host uid, never as the host's root.

use std::fmt::Write as _;
use std::io::Write as _;

use nix::errno::Errno;

/// One line of an id map: `count` ids from `inside` map to host ids from `outside`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// The uid and gid maps of a sandbox's user namespace (the same lines for both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMap {
    ranges: Vec<IdRange>,
}

/// An id map the kernel would refuse.
#[derive(Debug, thiserror::Error)]
pub enum IdMapError {
    #[error("an id map needs root (inside id 0) mapped")]
    NoRoot,
    #[error("id map line {inside} {outside} {count} is empty or overflows")]
    Range {
        inside: u32,
        outside: u32,
        count: u32,
    },
    #[error("id map lines overlap ({0})")]
    Overlap(&'static str),
    #[error("an id map must not map host root (outside id 0)")]
    HostRoot,
    #[error("an id map has at most 340 lines, not {0}")]
    TooLong(usize),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

fn end(start: u32, count: u32) -> Option<u64> {
    (count > 0).then(|| u64::from(start) + u64::from(count))
}

impl IdMap {
    /// A map made of `ranges`: root inside must be mapped (the child becomes it first), no
    /// range may be empty, overlap another on either side, or reach host root.
    pub fn new(ranges: Vec<IdRange>) -> Result<Self, IdMapError> {
        if ranges.len() > 340 {
            return Err(IdMapError::TooLong(ranges.len()));
        }
        for r in &ranges {
            let bad = IdMapError::Range {
                inside: r.inside,
                outside: r.outside,
                count: r.count,
            };
            let (Some(i), Some(o)) = (end(r.inside, r.count), end(r.outside, r.count)) else {
                return Err(bad);
            };
            if i > u64::from(u32::MAX) || o > u64::from(u32::MAX) {
                return Err(bad);
            }
            if r.outside == 0 {
                return Err(IdMapError::HostRoot);
            }
        }
        for (n, a) in ranges.iter().enumerate() {
            for b in &ranges[n + 1..] {
                let overlaps = |x: u32, y: u32| {
                    u64::from(x) < u64::from(y) + u64::from(b.count)
                        && u64::from(y) < u64::from(x) + u64::from(a.count)
                };
                if overlaps(a.inside, b.inside) {
                    return Err(IdMapError::Overlap("inside"));
                }
                if overlaps(a.outside, b.outside) {
                    return Err(IdMapError::Overlap("outside"));
                }
            }
        }
        if !ranges.iter().any(|r| r.inside == 0) {
            return Err(IdMapError::NoRoot);
        }
        Ok(Self { ranges })
    }

    /// The lines.
    pub fn ranges(&self) -> &[IdRange] {
        &self.ranges
    }

    /// The host id that `inside` maps to, if the map has it.
    pub fn host_id(&self, inside: u32) -> Option<u32> {
        self.ranges.iter().find_map(|r| {
            let off = inside.checked_sub(r.inside)?;
            (off < r.count).then(|| r.outside + off)
        })
    }

    /// The text the kernel reads from `uid_map` / `gid_map`.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for r in &self.ranges {
            let _ = writeln!(s, "{} {} {}", r.inside, r.outside, r.count);
        }
        s
    }

    /// Writes this map as the uid and gid maps of `pid`'s user namespace. The caller is the
    /// namespace's parent (the worker), so `setgroups` stays allowed: the child drops its
    /// supplementary groups itself.
    pub fn write_for(&self, pid: i32) -> Result<(), IdMapError> {
        let text = self.text();
        for file in ["uid_map", "gid_map"] {
            let path = format!("/proc/{pid}/{file}");
            // One write(2) of the whole map: the kernel accepts exactly one.
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .map_err(|source| IdMapError::Write { path, source })?;
        }
        Ok(())
    }
}

/// Whether this process may create user namespaces: clones a child into a new one, which
/// exits at once. `Err` carries the kernel's answer (`ENOSPC` when `user.max_user_namespaces`
/// is 0, `EPERM` where a policy forbids them, `EINVAL` where the kernel lacks them).
pub fn probe() -> Result<(), Errno> {
    let mut stack = vec![0u8; 16 * 1024];
    let cb: nix::sched::CloneCb<'_> = Box::new(|| {
        // SAFETY: _exit has no preconditions; the child does nothing else.
        unsafe { libc::_exit(0) }
    });
    // SAFETY: the child only calls _exit, on its own copy of `stack` (no CLONE_VM).
    let pid = unsafe {
        nix::sched::clone(
            cb,
            &mut stack,
            nix::sched::CloneFlags::CLONE_NEWUSER,
            Some(libc::SIGCHLD),
        )
    }?;
    loop {
        match nix::sys::wait::waitpid(pid, None) {
            Err(Errno::EINTR) => continue,
            _ => return Ok(()),
        }
    }
}

/// A user namespace made to id-map a mount, which could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot make a user namespace mapping uid {uid:?} and gid {gid:?} (inside, host): {what}: {errno}")]
pub struct MappingError {
    pub uid: (u32, u32),
    pub gid: (u32, u32),
    pub what: &'static str,
    pub errno: Errno,
}

/// A user namespace whose uid map is the one line `uid.0 uid.1 1` and gid map `gid.0 gid.1 1`,
/// held by an fd of `/proc/<pid>/ns/user`: what `MOUNT_ATTR_IDMAP` takes
/// ([`DetachedMount::clone_mapped`](crate::DetachedMount::clone_mapped)). Through such a mount
/// a file owned by `uid.0` on disk is seen as owned by host uid `uid.1`, and what host uid
/// `uid.1` creates is stored as `uid.0`.
///
/// A child is cloned into a new user namespace and waits on a pipe; once the maps are written
/// and the namespace opened, the pipe closes and the child exits (the namespace lives on with
/// the fd). Blocking, about a millisecond.
pub fn mapping_namespace(
    uid: (u32, u32),
    gid: (u32, u32),
) -> Result<std::os::fd::OwnedFd, MappingError> {
    use std::os::fd::{AsRawFd, OwnedFd};
    let fail = |what, errno| MappingError {
        uid,
        gid,
        what,
        errno,
    };
    let (wait_read, wait_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| fail("make a pipe", e))?;
    let (r, w) = (wait_read.as_raw_fd(), wait_write.as_raw_fd());
    let mut stack = vec![0u8; 16 * 1024];
    let cb: nix::sched::CloneCb<'_> = Box::new(move || {
        // SAFETY: only async-signal-safe calls on fds this copy of the process owns: close
        // its copy of the write end, wait for EOF on the read end, exit.
        unsafe {
            libc::close(w);
            let mut byte = 0u8;
            while libc::read(r, (&mut byte as *mut u8).cast(), 1) < 0 {}
            libc::_exit(0)
        }
    });
    // SAFETY: the child runs only the callback above, on its own copy of `stack` (no CLONE_VM).
    let pid = unsafe {
        nix::sched::clone(
            cb,
            &mut stack,
            nix::sched::CloneFlags::CLONE_NEWUSER,
            Some(libc::SIGCHLD),
        )
    }
    .map_err(|e| fail("clone a child into a new user namespace", e))?;
    let opened = (|| {
        for (file, (inside, outside)) in [("uid_map", uid), ("gid_map", gid)] {
            let path = format!("/proc/{pid}/{file}");
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|mut f| f.write_all(format!("{inside} {outside} 1\n").as_bytes()))
                .map_err(|e| fail("write its id map", io_errno(&e)))?;
        }
        std::fs::File::open(format!("/proc/{pid}/ns/user"))
            .map(OwnedFd::from)
            .map_err(|e| fail("open its namespace", io_errno(&e)))
    })();
    drop(wait_write);
    while let Err(Errno::EINTR) = nix::sys::wait::waitpid(pid, None) {}
    opened
}

fn io_errno(e: &std::io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::EIO, Errno::from_raw)
}

/// `user.max_user_namespaces`, for messages (None when the file cannot be read).
pub fn max_user_namespaces() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(inside: u32, outside: u32, count: u32) -> IdRange {
        IdRange {
            inside,
            outside,
            count,
        }
    }

    #[test]
    fn a_valid_map_writes_one_line_per_range() {
        let m = IdMap::new(vec![r(0, 524288, 1), r(1, 524289, 65535)]).unwrap();
        assert_eq!(m.text(), "0 524288 1\n1 524289 65535\n");
        assert_eq!(m.host_id(0), Some(524288));
        assert_eq!(m.host_id(7), Some(524295));
        assert_eq!(m.host_id(65536), None);
    }

    #[test]
    fn maps_the_kernel_would_refuse_are_refused_here() {
        assert!(matches!(
            IdMap::new(vec![r(5, 1000, 1)]),
            Err(IdMapError::NoRoot)
        ));
        assert!(matches!(
            IdMap::new(vec![r(0, 0, 1)]),
            Err(IdMapError::HostRoot)
        ));
        assert!(matches!(
            IdMap::new(vec![r(0, 1000, 0)]),
            Err(IdMapError::Range { .. })
        ));
        assert!(matches!(
            IdMap::new(vec![r(0, u32::MAX, 2)]),
            Err(IdMapError::Range { .. })
        ));
        assert!(matches!(
            IdMap::new(vec![r(0, 1000, 10), r(5, 2000, 1)]),
            Err(IdMapError::Overlap("inside"))
        ));
        assert!(matches!(
            IdMap::new(vec![r(0, 1000, 1), r(5, 1000, 1)]),
            Err(IdMapError::Overlap("outside"))
        ));
        assert!(IdMap::new(vec![r(0, 1000, 1); 341]).is_err());
    }
}
