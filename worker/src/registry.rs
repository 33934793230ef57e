//! The local handler registry: `<registry_dir>/<name>/lambda_func.py`.
//!
//! A lookup returns the handler's directory and a version (device, inode, size, mtime of
//! `lambda_func.py`), so an edited handler is noticed on the next call without restarting.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::name::LambdaName;

/// The handler file every lambda directory must hold.
pub const HANDLER_FILE: &str = "lambda_func.py";

/// Why a lambda cannot be found or served from the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("unknown lambda {lambda}")]
    Unknown { lambda: String },
    #[error("lambda {lambda} has no handler file {path}")]
    NoHandlerFile { lambda: String, path: PathBuf },
    #[error("lambda {lambda} cannot be served: {message}")]
    BadHandler { lambda: String, message: String },
    #[error("cannot open {path}: {}", open_reason(*.source))]
    OpenDir {
        path: PathBuf,
        source: nix::errno::Errno,
    },
}

/// Why the lambda's directory could not be opened for mounting.
fn open_reason(e: nix::errno::Errno) -> String {
    if e == nix::errno::Errno::ENOTDIR || e == nix::errno::Errno::ELOOP {
        "not a directory (a symbolic link is never followed)".to_owned()
    } else {
        e.to_string()
    }
}

/// Identity of one version of a handler's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandlerVersion {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    /// The same identity of `requirements.txt`, `packages.txt` and `lambda.json`, when
    /// present: editing them also retires the lambda's sandboxes.
    deps: [Option<(u64, u64, i128)>; 3],
}

impl HandlerVersion {
    /// Whether the lambda had a `requirements.txt` or `packages.txt` at lookup.
    pub fn has_requirements(&self) -> bool {
        self.deps[..2].iter().any(Option::is_some)
    }
}

/// A resolved handler.
#[derive(Debug, Clone)]
pub struct Handler {
    pub dir: PathBuf,
    pub version: HandlerVersion,
    /// Device and inode of `dir` when it was looked up.
    dir_id: (u64, u64),
}

impl Handler {
    /// Opens the lambda's directory for mounting: `O_PATH|O_NOFOLLOW|O_DIRECTORY`, so only a
    /// real directory of the registry, never a symbolic link. Sandboxes mount what this fd
    /// holds (through `/proc/self/fd/N`), so an entry swapped for a link after the lookup is
    /// refused rather than followed out of the registry.
    ///
    /// An entry replaced by another real directory (an upload in between) is used: its version
    /// is newer than the one recorded, so the next call retires this sandbox. The bool says
    /// whether it is still the directory that was looked up.
    pub fn open_dir(&self) -> Result<(std::os::fd::OwnedFd, bool), RegistryError> {
        use nix::fcntl::{open, OFlag};
        let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let opened = open(&self.dir, flags, nix::sys::stat::Mode::empty())
            .and_then(|fd| nix::sys::stat::fstat(&fd).map(|st| (fd, st)));
        let (fd, st) = opened.map_err(|source| RegistryError::OpenDir {
            path: self.dir.clone(),
            source,
        })?;
        Ok((fd, (st.st_dev, st.st_ino) == self.dir_id))
    }
}

/// A local-directory registry.
#[derive(Debug, Clone)]
pub struct Registry {
    dir: PathBuf,
}

impl Registry {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Finds a lambda's handler. The lambda directory and its `lambda_func.py` must be a real
    /// directory and a regular file: symbolic links are refused so that a registry entry cannot
    /// expose files from outside the registry to a sandbox.
    pub fn lookup(&self, name: &LambdaName) -> Result<Handler, RegistryError> {
        let dir = self.dir.join(name.as_str());
        let unknown = || RegistryError::Unknown {
            lambda: name.to_string(),
        };
        let dir_md = std::fs::symlink_metadata(&dir).map_err(|_| unknown())?;
        if dir_md.file_type().is_symlink() {
            return Err(RegistryError::BadHandler {
                lambda: name.to_string(),
                message: format!("registry entry {} is a symbolic link", dir.display()),
            });
        }
        if !dir_md.is_dir() {
            return Err(unknown());
        }
        let file = dir.join(HANDLER_FILE);
        let md = std::fs::symlink_metadata(&file).map_err(|_| RegistryError::NoHandlerFile {
            lambda: name.to_string(),
            path: file.clone(),
        })?;
        if !md.is_file() {
            return Err(RegistryError::BadHandler {
                lambda: name.to_string(),
                message: format!("{} is not a regular file", file.display()),
            });
        }
        let mtime_ns = i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec());
        let dep = |f: &str| {
            std::fs::symlink_metadata(dir.join(f)).ok().map(|m| {
                let t = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
                (m.ino(), m.size(), t)
            })
        };
        let deps = [
            dep(crate::packages::REQUIREMENTS_FILES[0]),
            dep(crate::packages::REQUIREMENTS_FILES[1]),
            dep(crate::lambda_config::LAMBDA_CONFIG_FILE),
        ];
        Ok(Handler {
            dir,
            dir_id: (dir_md.dev(), dir_md.ino()),
            version: HandlerVersion {
                dev: md.dev(),
                ino: md.ino(),
                size: md.size(),
                mtime_ns,
                deps,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> LambdaName {
        LambdaName::parse(n).unwrap()
    }

    #[test]
    fn lookup_and_versions() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::new(dir.path().to_owned());
        assert!(matches!(
            reg.lookup(&name("hello")),
            Err(RegistryError::Unknown { .. })
        ));
        std::fs::create_dir(dir.path().join("hello")).unwrap();
        assert!(matches!(
            reg.lookup(&name("hello")),
            Err(RegistryError::NoHandlerFile { .. })
        ));
        let file = dir.path().join("hello/lambda_func.py");
        std::fs::write(&file, "def handler(e): return 1\n").unwrap();
        let v1 = reg.lookup(&name("hello")).unwrap().version;
        assert_eq!(v1, reg.lookup(&name("hello")).unwrap().version);
        std::fs::write(&file, "def handler(e): return 22\n").unwrap();
        assert_ne!(v1, reg.lookup(&name("hello")).unwrap().version);
    }

    #[test]
    fn an_entry_swapped_after_lookup_is_not_mounted() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::new(dir.path().to_owned());
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join(HANDLER_FILE), "x").unwrap();
        let lambda = dir.path().join("swapped");
        std::fs::create_dir(&lambda).unwrap();
        std::fs::write(lambda.join(HANDLER_FILE), "x").unwrap();
        let handler = reg.lookup(&name("swapped")).unwrap();
        assert!(handler.open_dir().unwrap().1, "the same directory");
        // Replaced by a link to a directory elsewhere: refused, not followed.
        std::fs::rename(&lambda, dir.path().join("old")).unwrap();
        std::os::unix::fs::symlink(&outside, &lambda).unwrap();
        let err = handler.open_dir().unwrap_err().to_string();
        assert!(err.contains("a symbolic link is never followed"), "{err}");
        // Replaced by another real directory (an upload): used, and said to be another.
        std::fs::remove_file(&lambda).unwrap();
        std::fs::create_dir(&lambda).unwrap();
        assert!(!handler.open_dir().unwrap().1, "another directory");
    }

    #[test]
    fn symlinks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("evil")).unwrap();
        let reg = Registry::new(dir.path().to_owned());
        assert!(matches!(
            reg.lookup(&name("evil")),
            Err(RegistryError::BadHandler { .. })
        ));
        std::fs::create_dir(dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link/lambda_func.py")).unwrap();
        assert!(matches!(
            reg.lookup(&name("link")),
            Err(RegistryError::BadHandler { .. })
        ));
    }
}
