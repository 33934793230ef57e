//! What makes the store's writes survive `kill -9` and power loss, and keeps processes apart:
//! files written to a temporary name, flushed, renamed, their directory flushed; the store's
//! lock (`flock` on `.store/lock`); and per-operation staging directories that recovery can
//! tell from a live operation's (each is `flock`ed by the process using it).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{Flock, FlockArg};

use super::StoreError;

/// Prefix of temporary files in the store's directories (never a valid name there).
pub(super) const TEMP_PREFIX: &str = ".tmp-";

/// An I/O error naming what was done to which path.
pub(super) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io { op, path, source }
}

/// A name no other operation of any process uses: pid, a counter, and the time.
pub(super) fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}-{n}-{nanos:08x}", std::process::id())
}

/// Flushes a directory's entries (a rename or removal in it) to disk.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("flush directory", dir))
}

/// Flushes everything written to the file system holding `path` (one `syncfs`, instead of an
/// `fsync` per unpacked file).
pub(super) fn sync_filesystem(path: &Path) -> Result<(), StoreError> {
    let dir = File::open(path).map_err(io_err("open", path))?;
    nix::unistd::syncfs(&dir)
        .map_err(|e| io_err("flush the file system of", path)(std::io::Error::from(e)))
}

/// Creates `path` (mode `mode`) if missing.
pub(super) fn ensure_dir(path: &Path, mode: u32) -> Result<(), StoreError> {
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        // The mode regardless of the umask.
        Ok(()) => {
            std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .map_err(io_err("set the mode of", path))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let md = std::fs::symlink_metadata(path).map_err(io_err("inspect", path))?;
            if md.is_dir() {
                Ok(())
            } else {
                Err(io_err("use as a directory", path)(e))
            }
        }
        Err(e) => Err(io_err("create directory", path)(e)),
    }
}

/// Writes `bytes` to a new file `path` with `mode` and flushes it (not its directory).
pub(super) fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err("create", path))?;
    f.write_all(bytes).map_err(io_err("write", path))?;
    f.sync_all().map_err(io_err("flush", path))
}

/// Replaces `dir/name` with `bytes`, durably and atomically for readers: a temporary file in
/// `dir`, flushed, renamed over `name`, and `dir` flushed.
pub(super) fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = dir.join(format!("{TEMP_PREFIX}{name}-{}", unique()));
    let target = dir.join(name);
    let result = write_new_file(&tmp, bytes, 0o600)
        .and_then(|()| std::fs::rename(&tmp, &target).map_err(io_err("rename into", &target)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir)
}

/// Removes `dir/name` if present and flushes `dir`.
pub(super) fn remove_file(dir: &Path, name: &str) -> Result<(), StoreError> {
    let path = dir.join(name);
    match std::fs::remove_file(&path) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", &path)(e)),
    }
}

/// The store's lock, held while anything of the store changes.
#[derive(Debug)]
pub(super) struct Locked {
    _lock: Flock<File>,
}

/// Takes the store's lock (`flock` on `lock_file`), waiting for other threads and processes.
pub(super) fn lock(lock_file: &Path) -> Result<Locked, StoreError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(lock_file)
        .map_err(io_err("open", lock_file))?;
    let lock = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| io_err("lock", lock_file)(std::io::Error::from(e)))?;
    Ok(Locked { _lock: lock })
}

/// One operation's staging directory under `.store/staging/`, locked while it lives and
/// removed (with whatever it holds: a refused unpack, the code it replaced) when dropped.
#[derive(Debug)]
pub(super) struct Scratch {
    dir: PathBuf,
    _lock: Flock<File>,
}

impl Scratch {
    /// Creates and locks a new staging directory in `root`. Under the store's lock, so that
    /// recovery (also under it) never sees one created but not yet locked.
    pub(super) fn new(root: &Path, _held: &Locked) -> Result<Self, StoreError> {
        let dir = root.join(unique());
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(io_err("create directory", &dir))?;
        let lock = match try_lock_dir(&dir) {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                return Err(io_err("lock", &dir)(std::io::Error::from(
                    std::io::ErrorKind::WouldBlock,
                )))
            }
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                return Err(e);
            }
        };
        Ok(Self { dir, _lock: lock })
    }

    pub(super) fn path(&self) -> &Path {
        &self.dir
    }

    /// `<scratch>/<name>`, created empty with mode 0755 (an unpack's destination).
    pub(super) fn subdir(&self, name: &str) -> Result<PathBuf, StoreError> {
        let path = self.dir.join(name);
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&path)
            .map_err(io_err("create directory", &path))?;
        // The mode regardless of the umask.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(io_err("set the mode of", &path))?;
        Ok(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = crate::cleanup::remove_dir_all_if_present(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), "cannot remove a staging directory: {e}");
        }
    }
}

/// Locks directory `dir` without waiting: `None` when another open file holds it (a live
/// operation's staging directory).
pub(super) fn try_lock_dir(dir: &Path) -> Result<Option<Flock<File>>, StoreError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
        .map_err(io_err("open", dir))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(io_err("lock", dir)(std::io::Error::from(e))),
    }
}
