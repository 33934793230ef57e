//! Reading and handing over files that sandboxed code could have placed or replaced: a
//! sandbox's scratch directory (its `/host`, where its `stdout` and `stderr` live) and pip's
//! staging directory belong to the sandbox user, so anything in them may be a symbolic link to
//! a host file, or a FIFO. The worker runs as root on the host: it must never follow such a
//! link, never block on such a FIFO, and never hand ownership across one.

use std::fs::File;
use std::path::Path;

/// Why a file that sandboxed code or a lambda's author could have placed is not read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("it is a symbolic link")]
    Link,
    #[error("it is not a regular file")]
    NotRegular,
    #[error("it is larger than {max} bytes")]
    TooLarge { max: u64 },
    #[error("cannot read it: {0}")]
    Read(#[source] std::io::Error),
}

/// Opens `path` for reading without following a final symbolic link and without blocking
/// (on a FIFO).
fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// Reads a small file as the worker must read anything a lambda's author or its code could
/// have placed (`lambda.json`, `requirements.txt`, pip's report): never through a symbolic
/// link (`O_NOFOLLOW`, so a link swapped in after a check is refused too), never blocking on a
/// FIFO, only a regular file of at most `max` bytes. `Ok(None)` when it does not exist; `Err`
/// says why it cannot be used.
pub fn read_regular_file(path: &Path, max: u64) -> Result<Option<String>, FileError> {
    use std::io::Read;
    let file = match open_no_follow(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(FileError::Link),
        Err(e) => return Err(FileError::Read(e)),
    };
    let md = file.metadata().map_err(FileError::Read)?;
    if !md.is_file() {
        return Err(FileError::NotRegular);
    }
    if md.len() > max {
        return Err(FileError::TooLarge { max });
    }
    let mut text = String::new();
    file.take(max + 1)
        .read_to_string(&mut text)
        .map_err(FileError::Read)?;
    if text.len() as u64 > max {
        return Err(FileError::TooLarge { max });
    }
    Ok(Some(text))
}

/// Writes `bytes` to the new file `path` (mode 0644, never through a link), flushes it and
/// its directory: once this returns, the file survives a crash.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The last `max` bytes of a sandbox's output file, or "" when it is missing, empty, or not a
/// regular file (a link or FIFO the sandbox put in its place is never followed or read).
pub fn read_tail(path: &Path, max: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = open_no_follow(path) else {
        return String::new();
    };
    let Ok(md) = f.metadata() else {
        return String::new();
    };
    if !md.is_file() {
        return String::new();
    }
    let _ = f.seek(SeekFrom::Start(md.len().saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = f.take(max).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// `lchown` of the directory `dir` and everything under it. `dir` itself must be a real
/// directory (a link there is refused), and no link below it is followed.
pub fn chown_tree(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    let md = std::fs::symlink_metadata(dir)?;
    if !md.is_dir() {
        return Err(std::io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let walk = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .follow_root_links(false);
    for entry in walk {
        let entry = entry.map_err(std::io::Error::other)?;
        std::os::unix::fs::lchown(entry.path(), Some(uid), Some(gid))?;
    }
    Ok(())
}

/// An exclusive `flock` on a lock file, released on drop.
#[derive(Debug)]
pub struct FileLock {
    _lock: nix::fcntl::Flock<File>,
}

impl FileLock {
    /// Waits for the lock on `path` (created if missing).
    pub fn take(path: &Path) -> std::io::Result<Self> {
        let mut f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        loop {
            match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive) {
                Ok(lock) => return Ok(Self { _lock: lock }),
                Err((back, nix::errno::Errno::EINTR)) => f = back,
                Err((_, errno)) => return Err(std::io::Error::from(errno)),
            }
        }
    }

    /// The lock on `path` if nobody holds it now (`None` if another holder does).
    pub fn try_take(path: &Path) -> std::io::Result<Option<Self>> {
        let mut f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        loop {
            match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(Some(Self { _lock: lock })),
                Err((back, nix::errno::Errno::EINTR)) => f = back,
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Ok(None),
                Err((_, errno)) => return Err(std::io::Error::from(errno)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_take_says_when_another_holder_has_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = FileLock::take(&path).unwrap();
        assert!(FileLock::try_take(&path).unwrap().is_none());
        drop(held);
        let again = FileLock::try_take(&path).unwrap();
        assert!(again.is_some());
    }

    #[test]
    fn lambda_files_are_read_only_when_regular_and_small() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("ok.json"), "{}").unwrap();
        std::fs::write(p("big.json"), "x".repeat(11)).unwrap();
        std::os::unix::fs::symlink(p("ok.json"), p("link.json")).unwrap();
        nix::unistd::mkfifo(&p("fifo.json"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        std::fs::create_dir(p("dir.json")).unwrap();
        assert_eq!(
            read_regular_file(&p("ok.json"), 10).unwrap(),
            Some("{}".to_owned())
        );
        assert_eq!(read_regular_file(&p("missing.json"), 10).unwrap(), None);
        let err = |n: &str| read_regular_file(&p(n), 10).unwrap_err().to_string();
        assert_eq!(err("big.json"), "it is larger than 10 bytes");
        assert_eq!(err("link.json"), "it is a symbolic link");
        // A FIFO is neither read nor waited on.
        assert_eq!(err("fifo.json"), "it is not a regular file");
        assert_eq!(err("dir.json"), "it is not a regular file");
    }

    #[test]
    fn a_tail_is_never_read_through_a_link_or_from_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("secret"), "host secret").unwrap();
        std::fs::write(p("stderr"), "0123456789").unwrap();
        assert_eq!(read_tail(&p("stderr"), 4), "6789");
        assert_eq!(read_tail(&p("missing"), 4), "");
        std::os::unix::fs::symlink(p("secret"), p("linked")).unwrap();
        assert_eq!(read_tail(&p("linked"), 100), "");
        nix::unistd::mkfifo(&p("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(read_tail(&p("fifo"), 100), "");
    }

    #[test]
    fn chown_tree_follows_no_link() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "x").unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::fs::write(tree.join("sub/file"), "y").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("sub/link")).unwrap();
        let (uid, gid) = (4242, 4343);
        chown_tree(&tree, uid, gid).unwrap();
        let owner = |p: &Path| {
            let md = std::fs::symlink_metadata(p).unwrap();
            (md.uid(), md.gid())
        };
        for p in [
            &tree,
            &tree.join("sub"),
            &tree.join("sub/file"),
            &tree.join("sub/link"),
        ] {
            assert_eq!(owner(p), (uid, gid), "{}", p.display());
        }
        let outside_owner = std::fs::metadata(&outside).unwrap();
        assert_ne!(outside_owner.uid(), uid, "the link's target was changed");
        // A link as the tree itself is refused, and its target left alone.
        let linked = dir.path().join("linked-tree");
        std::os::unix::fs::symlink(dir.path().join("tree"), &linked).unwrap();
        assert!(chown_tree(&linked, 0, 0).is_err());
        assert_eq!(owner(&tree), (uid, gid));
    }
}

/// Puts the directory `staging` at `dest` in one step: exchanged with what `dest` holds
/// (`renameat2(RENAME_EXCHANGE)`, so a reader sees the old or the new tree, never a mix; the
/// old tree is then at `staging`, for the caller to remove), or renamed there when `dest` does
/// not exist. Blocking.
pub fn replace_dir(staging: &Path, dest: &Path) -> std::io::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    match renameat2(
        AT_FDCWD,
        staging,
        AT_FDCWD,
        dest,
        RenameFlags::RENAME_EXCHANGE,
    ) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::ENOENT) if staging.exists() => std::fs::rename(staging, dest),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod replace_tests {
    use super::*;

    #[test]
    fn replace_dir_exchanges_or_renames() {
        let tmp = tempfile::tempdir().unwrap();
        let (staging, dest) = (tmp.path().join(".s"), tmp.path().join("d"));
        std::fs::create_dir(&staging).unwrap();
        std::fs::write(staging.join("v"), "1").unwrap();
        replace_dir(&staging, &dest).unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("v")).unwrap(), "1");
        assert!(!staging.exists());
        std::fs::create_dir(&staging).unwrap();
        std::fs::write(staging.join("v"), "2").unwrap();
        replace_dir(&staging, &dest).unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("v")).unwrap(), "2");
        assert_eq!(std::fs::read_to_string(staging.join("v")).unwrap(), "1");
        assert!(replace_dir(&tmp.path().join("none"), &dest).is_err());
    }
}
