//! The local handler registry: `<registry_dir>/<name>/`, a function's code and its optional
//! `lambda.json`.
//!
//! A directory is a function when it holds the file of its entry's module (`lambda_func.py`
//! for the default entry, `pkg/app.py` or `pkg/app/__init__.py` for `pkg.app.run`; see
//! [`LambdaConfig::entry_in`] for the default), or a `lambda.json` (the entry's module may then
//! be missing: calls say so). A lookup reads `lambda.json` once and returns the directory, that
//! configuration, the entry, and a version: device, inode, size and mtime of the entry's module
//! file, of `lambda.json` and of the requirement files, so an edited function is noticed on the
//! next call without restarting. Lookups are remembered until the registry changes (`watch.rs`,
//! inotify): a warm call makes no `stat`, and an edit is still seen by the next call.

mod remote;
mod watch;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use remote::{Remote, RemoteError};
pub use watch::{watchable, MAX_REMEMBERED};

use crate::lambda_config::{Entry, LambdaConfig, LambdaConfigError, LAMBDA_CONFIG_FILE};
use crate::name::LambdaName;

/// The file of the default entry, `lambda_func.handler` (OpenLambda's).
pub const HANDLER_FILE: &str = "lambda_func.py";

/// Why a lambda cannot be found or served from the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("unknown lambda {lambda}")]
    Unknown { lambda: String },
    /// Neither the entry's module file nor a `lambda.json`.
    #[error("lambda {lambda} has no handler file {path}")]
    NoHandlerFile { lambda: String, path: PathBuf },
    #[error("lambda {lambda} cannot be served: {message}")]
    BadHandler { lambda: String, message: String },
    /// Boxed: a rare error, kept out of the size of every `Result` on the call path.
    #[error("{0}")]
    Remote(Box<RemoteError>),
    #[error("cannot open {path}: {}", open_reason(*.source))]
    OpenDir {
        path: PathBuf,
        source: nix::errno::Errno,
    },
    /// Its `lambda.json` is invalid.
    #[error("lambda {lambda} has an invalid {}: {source}", source.path.display())]
    Config {
        lambda: String,
        source: Box<LambdaConfigError>,
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

/// The identity of one file's content: device, inode, size, mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl FileId {
    fn of(md: &std::fs::Metadata) -> Self {
        Self {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime_ns: i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()),
        }
    }

    /// The identity of what `path` names (never through a final link), if anything.
    fn at(path: &Path) -> Option<Self> {
        std::fs::symlink_metadata(path).ok().map(|m| Self::of(&m))
    }
}

/// Identity of one version of a function's code and configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandlerVersion {
    /// The entry's module file; `None` when only `lambda.json` stands for the code.
    code: Option<FileId>,
    /// `requirements.txt`, `packages.txt` and `lambda.json`, when present: editing them also
    /// retires the lambda's sandboxes.
    deps: [Option<FileId>; 3],
}

impl HandlerVersion {
    /// Whether the lambda had a `requirements.txt` or `packages.txt` at lookup.
    pub fn has_requirements(&self) -> bool {
        self.deps[..2].iter().any(Option::is_some)
    }
}

/// A resolved function.
#[derive(Debug, Clone)]
pub struct Handler {
    pub dir: PathBuf,
    pub version: HandlerVersion,
    /// What its `lambda.json` says (empty without one), as read for this version.
    pub config: Arc<LambdaConfig>,
    /// The entry its calls run: the configured one, or the default for its files.
    pub entry: Entry,
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

/// Where the module of `entry` may be, in the order Python's import looks (a package's
/// `__init__.py`, then the module file).
fn module_candidates(dir: &Path, entry: &Entry) -> [PathBuf; 2] {
    let rel = entry.module.replace('.', "/");
    [
        dir.join(&rel).join("__init__.py"),
        dir.join(entry.module_file()),
    ]
}

/// The files of a lambda whose identity is part of its version, for `entry`.
fn versioned_files(dir: &Path, entry: &Entry) -> Vec<PathBuf> {
    let mut files = module_candidates(dir, entry).to_vec();
    files.extend([
        dir.join(crate::packages::REQUIREMENTS_FILES[0]),
        dir.join(crate::packages::REQUIREMENTS_FILES[1]),
        dir.join(LAMBDA_CONFIG_FILE),
    ]);
    files
}

/// The entry's module file and its identity; `None` when there is none. A symbolic link on the
/// way (a package directory or the file) or something else than a regular file is refused
/// with the reason.
fn entry_file(dir: &Path, entry: &Entry) -> Result<Option<(PathBuf, FileId)>, String> {
    let parts: Vec<&str> = entry.module.split('.').collect();
    let mut at = dir.to_path_buf();
    // Packages on the way, and the module's own directory if it is a package, must be real
    // directories.
    for (i, part) in parts.iter().enumerate() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!("{} is a symbolic link", at.display()))
            }
            Ok(m) if m.is_dir() => {}
            _ if i + 1 < parts.len() => return Ok(None),
            _ => break,
        }
    }
    for path in module_candidates(dir, entry) {
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!("{} is a symbolic link", path.display()))
            }
            Ok(m) if m.is_file() => return Ok(Some((path, FileId::of(&m)))),
            Ok(_) => return Err(format!("{} is not a regular file", path.display())),
            Err(_) => {}
        }
    }
    Ok(None)
}

/// A registry directory: the local registry, or in registry mode the worker's cache of a
/// registry server ([`Remote`]).
#[derive(Debug, Clone)]
pub struct Registry {
    dir: PathBuf,
    /// Remembered lookups; `None` where the registry cannot be watched.
    watch: Option<Arc<watch::Watch<Handler>>>,
    /// In registry mode, the server the directory caches.
    remote: Option<Arc<Remote>>,
}

impl Registry {
    /// The local registry directory `dir`.
    pub fn new(dir: PathBuf) -> Self {
        let watch = watch::Watch::new(&dir).map(Arc::new);
        Self {
            dir,
            watch,
            remote: None,
        }
    }

    /// `dir` as the cache of a registry server.
    pub fn cache_of(dir: PathBuf, remote: Arc<Remote>) -> Self {
        Self {
            remote: Some(remote),
            ..Self::new(dir)
        }
    }

    /// The handler of `name` as last looked up, if nothing of the registry changed since.
    /// Never blocks (no `stat`: one non-blocking read of the registry's event queue).
    pub fn cached(&self, name: &LambdaName) -> Option<Handler> {
        if let Some(remote) = &self.remote {
            if !remote.fresh(name) {
                return None;
            }
        }
        self.watch.as_ref()?.cached(name)
    }

    /// (lambdas remembered, watches held for them).
    pub fn remembered(&self) -> (usize, usize) {
        self.watch.as_ref().map_or((0, 0), |w| w.size())
    }

    /// Finds a function (blocking: `lambda.json` read, a few `lstat`s) and remembers it. The
    /// function's directory, its entry's module file and `lambda.json` must be a real directory
    /// and regular files: symbolic links are refused so that a registry entry cannot expose
    /// files from outside the registry to a sandbox.
    pub fn lookup(&self, name: &LambdaName) -> Result<Handler, RegistryError> {
        if let Some(remote) = &self.remote {
            if !remote
                .ensure(name)
                .map_err(|e| RegistryError::Remote(Box::new(e)))?
            {
                return Err(RegistryError::Unknown {
                    lambda: name.to_string(),
                });
            }
        }
        let Some(watch) = &self.watch else {
            return self.look(name);
        };
        let dir = self.dir.join(name.as_str());
        // The files to watch depend on the entry lambda.json names, read here first. A lookup
        // that finds another entry (lambda.json changed before its watches were added) is made
        // again with that entry's files, so that what is remembered is watched.
        let entry = LambdaConfig::load(&dir)
            .map(|c| c.entry_in(&dir))
            .unwrap_or_default();
        let mut files = versioned_files(&dir, &entry);
        let mut tries = 0;
        loop {
            let found = watch.remember(name, &dir, &files, || self.look(name))?;
            let watched = versioned_files(&dir, &found.entry);
            tries += 1;
            if watched == files || tries == 3 {
                return Ok(found);
            }
            files = watched;
        }
    }

    /// [`Registry::lookup`] without remembering.
    fn look(&self, name: &LambdaName) -> Result<Handler, RegistryError> {
        let dir = self.dir.join(name.as_str());
        let lambda = || name.to_string();
        let dir_md = std::fs::symlink_metadata(&dir)
            .map_err(|_| RegistryError::Unknown { lambda: lambda() })?;
        if dir_md.file_type().is_symlink() {
            return Err(RegistryError::BadHandler {
                lambda: lambda(),
                message: format!("registry entry {} is a symbolic link", dir.display()),
            });
        }
        if !dir_md.is_dir() {
            return Err(RegistryError::Unknown { lambda: lambda() });
        }
        // lambda.json's identity before its content: a change after the stat is a newer version.
        let config_file = dir.join(LAMBDA_CONFIG_FILE);
        let config_id = FileId::at(&config_file);
        let config = LambdaConfig::load(&dir).map_err(|source| RegistryError::Config {
            lambda: lambda(),
            source: Box::new(source),
        })?;
        let entry = config.entry_in(&dir);
        let code = entry_file(&dir, &entry).map_err(|message| RegistryError::BadHandler {
            lambda: lambda(),
            message,
        })?;
        if code.is_none() && config_id.is_none() {
            return Err(RegistryError::NoHandlerFile {
                lambda: lambda(),
                path: dir.join(entry.module_file()),
            });
        }
        let deps = [
            FileId::at(&dir.join(crate::packages::REQUIREMENTS_FILES[0])),
            FileId::at(&dir.join(crate::packages::REQUIREMENTS_FILES[1])),
            config_id,
        ];
        Ok(Handler {
            dir_id: (dir_md.dev(), dir_md.ino()),
            dir,
            version: HandlerVersion {
                code: code.map(|(_, id)| id),
                deps,
            },
            config: Arc::new(config),
            entry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> LambdaName {
        LambdaName::parse(n).unwrap()
    }

    /// A registry in a temporary directory, watched (the test directory is on a local file
    /// system).
    fn watched() -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::new(dir.path().to_owned());
        assert!(
            reg.watch.is_some(),
            "{} is not watched",
            dir.path().display()
        );
        (dir, reg)
    }

    fn add(dir: &Path, lambda: &str, source: &str) {
        std::fs::create_dir_all(dir.join(lambda)).unwrap();
        std::fs::write(dir.join(lambda).join(HANDLER_FILE), source).unwrap();
    }

    #[test]
    fn a_remembered_lookup_lasts_until_the_lambda_changes() {
        let (dir, reg) = watched();
        let hello = name("hello");
        add(dir.path(), "hello", "v1");
        assert!(reg.cached(&hello).is_none(), "never looked up");
        let v1 = reg.lookup(&hello).unwrap().version;
        assert!(
            reg.cached(&hello).is_none(),
            "remembered from the second lookup on"
        );
        assert_eq!(reg.remembered(), (0, 0));
        assert_eq!(reg.lookup(&hello).unwrap().version, v1);
        assert_eq!(reg.cached(&hello).unwrap().version, v1);
        assert_eq!(reg.remembered(), (1, 2), "the directory and lambda_func.py");
        // Each kind of change is seen by the very next call: no waiting.
        let file = dir.path().join("hello").join(HANDLER_FILE);
        type Change<'a> = (&'static str, Box<dyn Fn() + 'a>);
        let changes: [Change; 5] = [
            (
                "an edit",
                Box::new(|| std::fs::write(&file, "v2 longer").unwrap()),
            ),
            (
                "a new lambda.json",
                Box::new(|| std::fs::write(dir.path().join("hello/lambda.json"), "{}").unwrap()),
            ),
            (
                "an edit of lambda.json",
                Box::new(|| {
                    std::fs::write(dir.path().join("hello/lambda.json"), r#"{"timeout_s": 5}"#)
                        .unwrap()
                }),
            ),
            (
                "a touched mtime",
                Box::new(|| {
                    let t = nix::sys::time::TimeSpec::new(1_000_000, 0);
                    nix::sys::stat::utimensat(
                        nix::fcntl::AT_FDCWD,
                        &file,
                        &t,
                        &t,
                        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
                    )
                    .unwrap()
                }),
            ),
            (
                "a new requirements.txt",
                Box::new(|| {
                    std::fs::write(dir.path().join("hello/requirements.txt"), "six\n").unwrap()
                }),
            ),
        ];
        let mut last = v1;
        for (what, change) in changes {
            change();
            assert!(reg.cached(&hello).is_none(), "{what} was not seen");
            let now = reg.lookup(&hello).unwrap().version;
            assert_ne!(now, last, "{what}");
            assert_eq!(reg.cached(&hello).unwrap().version, now, "{what}");
            last = now;
        }
        // The directory replaced by another (an upload's rename), then deleted.
        add(dir.path(), "staged", "v3");
        std::fs::rename(dir.path().join("hello"), dir.path().join("old")).unwrap();
        std::fs::rename(dir.path().join("staged"), dir.path().join("hello")).unwrap();
        assert!(
            reg.cached(&hello).is_none(),
            "a replaced directory was not seen"
        );
        let replaced = reg.lookup(&hello).unwrap();
        assert!(replaced.open_dir().unwrap().1, "the new directory");
        std::fs::remove_dir_all(dir.path().join("hello")).unwrap();
        assert!(
            reg.cached(&hello).is_none(),
            "a deleted lambda was not seen"
        );
        assert!(matches!(
            reg.lookup(&hello),
            Err(RegistryError::Unknown { .. })
        ));
        assert_eq!(
            reg.remembered(),
            (0, 0),
            "what is not remembered holds no watch"
        );
    }

    #[test]
    fn a_change_during_the_lookup_is_not_remembered() {
        let (dir, reg) = watched();
        let hello = name("hello");
        add(dir.path(), "hello", "v1");
        let watch = reg.watch.as_ref().unwrap();
        reg.lookup(&hello).unwrap();
        let lambda_dir = dir.path().join("hello");
        let found = watch.remember(
            &hello,
            &lambda_dir,
            &versioned_files(&lambda_dir, &Entry::default()),
            || {
                let before = reg.look(&hello);
                // An upload lands after the stats, before the result is kept.
                std::fs::write(lambda_dir.join(HANDLER_FILE), "v2 longer").unwrap();
                before
            },
        );
        assert!(found.is_ok());
        assert!(
            reg.cached(&hello).is_none(),
            "a stale lookup was remembered"
        );
        let now = reg.lookup(&hello).unwrap();
        assert_ne!(now.version, found.unwrap().version);
        assert_eq!(reg.cached(&hello).unwrap().version, now.version);
    }

    #[test]
    fn a_file_two_lambdas_share_is_watched_for_one() {
        let (dir, reg) = watched();
        add(dir.path(), "a", "shared");
        std::fs::create_dir(dir.path().join("b")).unwrap();
        std::fs::hard_link(
            dir.path().join("a").join(HANDLER_FILE),
            dir.path().join("b").join(HANDLER_FILE),
        )
        .unwrap();
        for _ in 0..2 {
            reg.lookup(&name("a")).unwrap();
            reg.lookup(&name("b")).unwrap();
        }
        assert!(reg.cached(&name("a")).is_some());
        assert!(
            reg.cached(&name("b")).is_none(),
            "b shares a's watch: looked up each time"
        );
        // An edit through b's path is an edit of a's file too.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("b").join(HANDLER_FILE))
            .and_then(|mut f| std::io::Write::write_all(&mut f, b" more"))
            .unwrap();
        assert!(reg.cached(&name("a")).is_none());
    }

    #[test]
    fn at_most_max_remembered_lambdas_with_their_watches() {
        let (dir, reg) = watched();
        let n = MAX_REMEMBERED + 50;
        for i in 0..n {
            add(dir.path(), &format!("l{i}"), "x");
        }
        for i in 0..n {
            reg.lookup(&name(&format!("l{i}"))).unwrap();
        }
        assert_eq!(reg.remembered(), (0, 0), "each looked up once: no watch");
        for i in 0..n {
            reg.lookup(&name(&format!("l{i}"))).unwrap();
        }
        assert_eq!(reg.remembered(), (MAX_REMEMBERED, 2 * MAX_REMEMBERED));
        assert!(
            reg.cached(&name("l0")).is_none(),
            "the least recently used went first"
        );
        assert!(reg.cached(&name(&format!("l{}", n - 1))).is_some());
    }

    #[test]
    fn only_local_file_systems_are_watched() {
        use nix::sys::statfs as fs;
        for local in [
            fs::EXT4_SUPER_MAGIC,
            fs::XFS_SUPER_MAGIC,
            fs::TMPFS_MAGIC,
            fs::BTRFS_SUPER_MAGIC,
        ] {
            assert!(watchable(local), "{local:?}");
        }
        for remote in [
            fs::NFS_SUPER_MAGIC,
            fs::SMB_SUPER_MAGIC,
            fs::FUSE_SUPER_MAGIC,
            fs::CODA_SUPER_MAGIC,
        ] {
            assert!(!watchable(remote), "{remote:?}");
        }
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
    fn a_function_is_its_entrys_module_or_its_lambda_json() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::new(dir.path().to_owned());
        let write = |rel: &str, text: &str| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        // Luna's layout: lambda_main.py alone.
        write(
            "luna/lambda_main.py",
            "async def main(request): return {}\n",
        );
        let h = reg.lookup(&name("luna")).unwrap();
        assert_eq!(h.entry, Entry::luna());
        assert_eq!(*h.config, LambdaConfig::default());
        // A dotted entry in lambda.json: its module file is the code, as a module or a package.
        write(
            "aws/lambda.json",
            r#"{"entry": "pkg.app.run", "timeout_s": 5}"#,
        );
        write("aws/pkg/__init__.py", "");
        let first = reg.lookup(&name("aws")).unwrap();
        assert_eq!(first.entry.to_string(), "pkg.app.run");
        assert_eq!(first.config.timeout_s, Some(5));
        let without_code = first.version;
        write("aws/pkg/app.py", "def run(event, context): return 1\n");
        let module = reg.lookup(&name("aws")).unwrap().version;
        assert_ne!(
            module, without_code,
            "the module file is part of the version"
        );
        write("aws/pkg/app.py", "def run(event, context): return 22\n");
        let edited = reg.lookup(&name("aws")).unwrap().version;
        assert_ne!(edited, module, "an edit of the module is a new version");
        std::fs::remove_file(dir.path().join("aws/pkg/app.py")).unwrap();
        write(
            "aws/pkg/app/__init__.py",
            "def run(event, context): return 3\n",
        );
        let package = reg.lookup(&name("aws")).unwrap().version;
        assert_ne!(package, edited);
        // Nothing but lambda.json: served (a call then says the module is missing).
        write("only-config/lambda.json", r#"{"entry": "app.handler"}"#);
        assert_eq!(
            reg.lookup(&name("only-config")).unwrap().entry.to_string(),
            "app.handler"
        );
        // Neither: not a function, naming the file the default entry needs.
        std::fs::create_dir_all(dir.path().join("empty/sub")).unwrap();
        match reg.lookup(&name("empty")) {
            Err(RegistryError::NoHandlerFile { path, .. }) => {
                assert_eq!(path, dir.path().join("empty/lambda_func.py"))
            }
            other => panic!("{other:?}"),
        }
        // An invalid lambda.json is an error naming its key.
        write("bad/lambda_func.py", "def handler(e): return 1\n");
        write("bad/lambda.json", r#"{"entry": "not a module"}"#);
        match reg.lookup(&name("bad")) {
            Err(RegistryError::Config { source, .. }) => {
                assert_eq!(source.key.as_deref(), Some("entry"), "{source}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_entry_module_in_a_package_is_watched() {
        let (dir, reg) = watched();
        let lambda = dir.path().join("pkgd");
        std::fs::create_dir_all(lambda.join("pkg")).unwrap();
        std::fs::write(lambda.join("lambda.json"), r#"{"entry": "pkg.app.run"}"#).unwrap();
        std::fs::write(lambda.join("pkg/app.py"), "v1").unwrap();
        let pkgd = name("pkgd");
        reg.lookup(&pkgd).unwrap();
        let v1 = reg.lookup(&pkgd).unwrap().version;
        assert_eq!(reg.cached(&pkgd).unwrap().version, v1);
        // An edit inside the package directory (which the function's directory watch does
        // not see) is seen through the module file's own watch.
        std::fs::write(lambda.join("pkg/app.py"), "v2 longer").unwrap();
        assert!(
            reg.cached(&pkgd).is_none(),
            "the module's edit was not seen"
        );
        assert_ne!(reg.lookup(&pkgd).unwrap().version, v1);
        // A new entry in lambda.json: the new module is the one watched from then on.
        std::fs::write(lambda.join("pkg/other.py"), "w1").unwrap();
        std::fs::write(lambda.join("lambda.json"), r#"{"entry": "pkg.other.run"}"#).unwrap();
        assert!(reg.cached(&pkgd).is_none());
        reg.lookup(&pkgd).unwrap();
        let w1 = reg.lookup(&pkgd).unwrap();
        assert_eq!(w1.entry.to_string(), "pkg.other.run");
        assert!(reg.cached(&pkgd).is_some());
        std::fs::write(lambda.join("pkg/other.py"), "w2 longer").unwrap();
        assert!(
            reg.cached(&pkgd).is_none(),
            "the new module's edit was not seen"
        );
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
        // A package directory on the entry's way that is a link.
        std::fs::create_dir(dir.path().join("pkglink")).unwrap();
        std::fs::write(
            dir.path().join("pkglink/lambda.json"),
            r#"{"entry": "pkg.app.run"}"#,
        )
        .unwrap();
        std::os::unix::fs::symlink("/usr", dir.path().join("pkglink/pkg")).unwrap();
        match reg.lookup(&name("pkglink")) {
            Err(RegistryError::BadHandler { message, .. }) => {
                assert!(
                    message.contains("pkglink/pkg is a symbolic link"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
