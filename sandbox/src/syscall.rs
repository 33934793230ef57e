//! The kernel calls a sandbox child makes while it assembles its root, behind a trait.
//!
//! [`LinuxSyscall`] performs them; [`RecordingSyscall`] records them so the order of steps can be
//! unit-tested without root. Implementations used in a freshly cloned child must not allocate or
//! take locks: every argument arrives as a prepared `&CStr`.

use std::ffi::CStr;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

/// Kernel operations used to assemble a sandbox's root filesystem and identity.
pub trait Syscall: Sync {
    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: MsFlags,
        data: Option<&CStr>,
    ) -> Result<(), Errno>;
    /// Creates a character device node with permissions `perm` (umask is not applied).
    fn mknod_char(&self, path: &CStr, perm: u32, major: u32, minor: u32) -> Result<(), Errno>;
    /// mkdir with exactly `mode`; an existing directory is success.
    fn mkdir(&self, path: &CStr, mode: u32) -> Result<(), Errno>;
    /// Creates an empty regular file with exactly `mode` (a mount point for a bound file).
    fn create_file(&self, path: &CStr, mode: u32) -> Result<(), Errno>;
    fn symlink(&self, target: &CStr, linkpath: &CStr) -> Result<(), Errno>;
    fn chdir(&self, path: &CStr) -> Result<(), Errno>;
    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> Result<(), Errno>;
    fn umount_detach(&self, target: &CStr) -> Result<(), Errno>;
    /// Attaches the detached mount `fd` at `target` (`move_mount` with `MOVE_MOUNT_F_EMPTY_PATH`).
    fn move_mount(&self, fd: std::os::fd::RawFd, target: &CStr) -> Result<(), Errno>;
    fn sethostname(&self, name: &CStr) -> Result<(), Errno>;
    /// Brings up the loopback interface of the current network namespace.
    fn loopback_up(&self) -> Result<(), Errno>;
}

/// The real implementation: direct system calls, no allocation.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxSyscall;

impl Syscall for LinuxSyscall {
    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: MsFlags,
        data: Option<&CStr>,
    ) -> Result<(), Errno> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn mknod_char(&self, path: &CStr, perm: u32, major: u32, minor: u32) -> Result<(), Errno> {
        let dev = libc::makedev(major, minor);
        // SAFETY: `path` is a valid NUL-terminated string; mknod only reads it.
        let rc = unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | perm, dev) };
        Errno::result(rc)?;
        // mknod applies the umask; set the permissions exactly.
        // SAFETY: as above, chmod only reads the path.
        let rc = unsafe { libc::chmod(path.as_ptr(), perm) };
        Errno::result(rc).map(drop)
    }

    fn symlink(&self, target: &CStr, linkpath: &CStr) -> Result<(), Errno> {
        nix::unistd::symlinkat(target, nix::fcntl::AT_FDCWD, linkpath)
    }

    fn mkdir(&self, path: &CStr, mode: u32) -> Result<(), Errno> {
        // SAFETY: `path` is a valid NUL-terminated string; mkdir only reads it.
        let rc = unsafe { libc::mkdir(path.as_ptr(), mode) };
        match Errno::result(rc) {
            Ok(_) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
        // mkdir applies the umask; set the permissions exactly.
        // SAFETY: as above, chmod only reads the path.
        let rc = unsafe { libc::chmod(path.as_ptr(), mode) };
        Errno::result(rc).map(drop)
    }

    fn create_file(&self, path: &CStr, mode: u32) -> Result<(), Errno> {
        // SAFETY: `path` is a valid NUL-terminated string; open only reads it.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                mode,
            )
        };
        let fd = Errno::result(fd)?;
        // SAFETY: `fd` was just opened here and nothing else owns it. open applies the umask,
        // so the mode is then set exactly (chmod only reads the path).
        unsafe {
            libc::close(fd);
            Errno::result(libc::chmod(path.as_ptr(), mode))?;
        }
        Ok(())
    }

    fn chdir(&self, path: &CStr) -> Result<(), Errno> {
        nix::unistd::chdir(path)
    }

    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> Result<(), Errno> {
        nix::unistd::pivot_root(new_root, put_old)
    }

    fn umount_detach(&self, target: &CStr) -> Result<(), Errno> {
        nix::mount::umount2(target, MntFlags::MNT_DETACH)
    }

    fn move_mount(&self, fd: std::os::fd::RawFd, target: &CStr) -> Result<(), Errno> {
        const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
        // SAFETY: both strings are NUL-terminated and outlive the call; with
        // MOVE_MOUNT_F_EMPTY_PATH the kernel acts on `fd` itself. No allocation.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                fd,
                c"".as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        Errno::result(rc).map(drop)
    }

    fn sethostname(&self, name: &CStr) -> Result<(), Errno> {
        // SAFETY: `name` is valid for `len` bytes; sethostname only reads them.
        let rc = unsafe { libc::sethostname(name.as_ptr(), name.to_bytes().len()) };
        Errno::result(rc).map(drop)
    }

    fn loopback_up(&self) -> Result<(), Errno> {
        // SAFETY: plain socket(2) call; the fd is closed below on every path.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        Errno::result(fd)?;
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        // SAFETY: `req` is a valid ifreq naming "lo"; SIOCGIFFLAGS fills ifru_flags.
        let mut rc = unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) };
        if rc == 0 {
            // SAFETY: reading the union member SIOCGIFFLAGS just wrote.
            unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
            // SAFETY: as above; SIOCSIFFLAGS reads the flags.
            rc = unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) };
        }
        let err = Errno::last();
        // SAFETY: fd was returned by socket() above and is not used afterwards.
        unsafe { libc::close(fd) };
        if rc == 0 {
            Ok(())
        } else {
            Err(err)
        }
    }
}

/// Records calls instead of making them (tests only; allocates).
#[derive(Debug, Default)]
pub struct RecordingSyscall {
    calls: std::sync::Mutex<Vec<String>>,
    /// Fail the call whose record starts with this text.
    fail_on: Option<String>,
}

impl RecordingSyscall {
    /// A recorder that fails the first call whose record starts with `prefix` with EPERM.
    pub fn failing_on(prefix: &str) -> Self {
        Self {
            calls: Default::default(),
            fail_on: Some(prefix.to_owned()),
        }
    }

    /// The calls recorded so far, one line each.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn record(&self, line: String) -> Result<(), Errno> {
        let fail = self.fail_on.as_deref().is_some_and(|p| line.starts_with(p));
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(line);
        }
        if fail {
            Err(Errno::EPERM)
        } else {
            Ok(())
        }
    }
}

fn s(c: Option<&CStr>) -> String {
    c.map_or_else(|| "-".to_owned(), |c| c.to_string_lossy().into_owned())
}

impl Syscall for RecordingSyscall {
    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: MsFlags,
        data: Option<&CStr>,
    ) -> Result<(), Errno> {
        self.record(format!(
            "mount {} {} {} {:?} {}",
            s(source),
            s(Some(target)),
            s(fstype),
            flags,
            s(data)
        ))
    }
    fn mknod_char(&self, path: &CStr, perm: u32, major: u32, minor: u32) -> Result<(), Errno> {
        self.record(format!("mknod {} {perm:o} {major}:{minor}", s(Some(path))))
    }
    fn symlink(&self, target: &CStr, linkpath: &CStr) -> Result<(), Errno> {
        self.record(format!("symlink {} {}", s(Some(target)), s(Some(linkpath))))
    }
    fn mkdir(&self, path: &CStr, mode: u32) -> Result<(), Errno> {
        self.record(format!("mkdir {} {mode:o}", s(Some(path))))
    }
    fn create_file(&self, path: &CStr, mode: u32) -> Result<(), Errno> {
        self.record(format!("create {} {mode:o}", path.to_string_lossy()))
    }
    fn chdir(&self, path: &CStr) -> Result<(), Errno> {
        self.record(format!("chdir {}", s(Some(path))))
    }
    fn move_mount(&self, fd: std::os::fd::RawFd, target: &CStr) -> Result<(), Errno> {
        self.record(format!("move_mount fd {fd} {}", s(Some(target))))
    }
    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> Result<(), Errno> {
        self.record(format!(
            "pivot_root {} {}",
            s(Some(new_root)),
            s(Some(put_old))
        ))
    }
    fn umount_detach(&self, target: &CStr) -> Result<(), Errno> {
        self.record(format!("umount {}", s(Some(target))))
    }
    fn sethostname(&self, name: &CStr) -> Result<(), Errno> {
        self.record(format!("sethostname {}", s(Some(name))))
    }
    fn loopback_up(&self) -> Result<(), Errno> {
        self.record("loopback_up".to_owned())
    }
}
