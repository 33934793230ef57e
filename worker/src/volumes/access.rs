//! An access point's directory, opened (and made on first use) without following any link: a
//! volume's contents are written by functions, so any name in it may have been replaced by a
//! link meant to lead the worker elsewhere.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, RenameFlags};
use nix::sys::stat::Mode;

use crate::lambda_config::AccessPoint;

/// An access point whose directory cannot be opened or made.
#[derive(Debug, thiserror::Error)]
#[error("volume {volume}: cannot {what} {}: {errno}", path.display())]
pub struct AccessError {
    pub volume: String,
    pub what: &'static str,
    /// The path inside the volume.
    pub path: PathBuf,
    pub errno: Errno,
}

/// Opens the directory `ap.path` of the volume whose root is `data` (`O_PATH`, for
/// `open_tree`), making what is missing: parents owned by root, mode 0755; the access point's
/// own directory owned by `ap.uid:ap.gid` with `ap.mode`, made under a temporary name and
/// renamed into place, so that no one ever sees it with other owners or permissions. No link
/// is followed at any step (`O_NOFOLLOW` on every name). Blocking.
pub fn open_access_point(data: &Path, ap: &AccessPoint) -> Result<OwnedFd, AccessError> {
    let fail = |what, path: &Path, errno| AccessError {
        volume: ap.volume.to_string(),
        what,
        path: Path::new("/").join(path),
        errno,
    };
    let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut dir = nix::fcntl::open(data, dir_flags, Mode::empty())
        .map_err(|e| fail("open the root of", Path::new(""), e))?;
    let names: Vec<_> = ap
        .path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let mut at = PathBuf::new();
    for (i, name) in names.iter().enumerate() {
        at.push(name);
        let last = i + 1 == names.len();
        dir = match nix::fcntl::openat(&dir, *name, dir_flags, Mode::empty()) {
            Ok(next) => next,
            Err(Errno::ENOENT) => {
                let (uid, gid, mode) = if last {
                    (ap.uid, ap.gid, ap.mode)
                } else {
                    (0, 0, 0o755)
                };
                make_dir(&dir, name.as_encoded_bytes(), (uid, gid, mode))
                    .map_err(|(what, e)| fail(what, &at, e))?;
                nix::fcntl::openat(&dir, *name, dir_flags, Mode::empty())
                    .map_err(|e| fail("open", &at, e))?
            }
            Err(Errno::ENOTDIR | Errno::ELOOP) => return Err(fail("open", &at, Errno::ENOTDIR)),
            Err(e) => return Err(fail("open", &at, e)),
        };
    }
    Ok(dir)
}

/// Makes directory `name` in `parent` with these owner and mode: made as a temporary entry,
/// set, then renamed into place unless someone made `name` meanwhile (then theirs stays).
fn make_dir(
    parent: &OwnedFd,
    name: &[u8],
    (uid, gid, mode): (u32, u32, u32),
) -> Result<(), (&'static str, Errno)> {
    let tmp = format!(".lw-new-{}-{}", std::process::id(), unique());
    nix::sys::stat::mkdirat(parent, tmp.as_str(), Mode::from_bits_truncate(0o700))
        .map_err(|e| ("make", e))?;
    let set = (|| {
        let fd = nix::fcntl::openat(
            parent,
            tmp.as_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ("open the new directory", e))?;
        nix::unistd::fchown(
            fd.as_fd(),
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(|e| ("set the owner of", e))?;
        nix::sys::stat::fchmod(fd.as_fd(), Mode::from_bits_truncate(mode))
            .map_err(|e| ("set the mode of", e))?;
        let name = std::ffi::OsStr::from_bytes(name);
        match nix::fcntl::renameat2(
            parent,
            tmp.as_str(),
            parent,
            name,
            RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => Ok(true),
            Err(Errno::EEXIST) => Ok(false),
            Err(e) => Err(("rename into place", e)),
        }
    })();
    if !matches!(set, Ok(true)) {
        let _ = nix::unistd::unlinkat(parent, tmp.as_str(), nix::unistd::UnlinkatFlags::RemoveDir);
    }
    set.map(|_| ())
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

use std::os::unix::ffi::OsStrExt as _;
