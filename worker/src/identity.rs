//! Host ids for user namespaces: the range `uid_range_start .. + uid_range_size`, and which
//! lambda acts as which of its ids.
//!
//! Slot `k` of the range is host uid (and gid) `uid_range_start + k`, and id `k` inside every
//! user namespace the worker makes (the maps are offsets, the same for all):
//! - slot 0 is root of each namespace: a sandbox's setup, and the zygotes;
//! - slot 1 is the package installer (pip's sandboxes);
//! - slots 2 and up go to lambdas, one each, on their first cold start, and stay theirs.
//!
//! The table of lambda slots is a text file shared by the cluster's workers
//! (`lambda_uids_file`), one line `<slot> <name>` per lambda, only ever appended to. A worker
//! takes an exclusive `flock` on it, reads what other workers appended since it last looked,
//! and appends the new lambda's line (one `write` with `O_APPEND`). It keeps the table in
//! memory: lines are never changed, so a slot once read stays that lambda's. A line that does
//! not parse (a write torn by a crash of the machine) or that names a slot already taken is
//! skipped, with a warning; its lambda gets a slot again at its next cold start (nothing of a
//! sandbox outlives it).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::PathBuf;
use std::sync::Mutex;

use sandbox::{IdMap, IdRange};
use serde::Serialize;

use crate::config::Config;

/// Root of every user namespace: a sandbox's setup, and the zygotes.
pub const ROOT_SLOT: u32 = 0;
/// The package installer.
pub const INSTALLER_SLOT: u32 = 1;
/// The first slot a lambda can get.
const FIRST_LAMBDA_SLOT: u32 = 2;

/// A failure reading or extending the table.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no host uid left for lambda {lambda}: the {lambdas} of the range (uid_range_size {size}) are all taken; raise uid_range_size")]
    Exhausted {
        lambda: String,
        lambdas: u32,
        size: u32,
    },
    #[error("invalid id map: {0}")]
    Map(#[from] sandbox::IdMapError),
}

/// The table as this worker knows it.
#[derive(Debug, Default)]
struct Table {
    by_name: HashMap<String, u32>,
    taken: HashSet<u32>,
    /// Bytes of the file read so far (whole lines).
    read: u64,
    /// The file, open for reading and appending, once opened.
    file: Option<File>,
}

/// Why sandboxes run without user namespaces.
#[derive(Debug, thiserror::Error)]
pub enum NoUserNs {
    #[error("user_namespaces: false")]
    Off,
    #[error("the kernel refuses user namespaces ({errno}; user.max_user_namespaces is {max})")]
    Refused {
        errno: nix::errno::Errno,
        /// The sysctl's value, or `unknown`.
        max: String,
    },
    #[error("{path} (mode {mode:04o}) is not searchable by others: a sandbox's setup runs as an unprivileged host uid and must reach {what} by path; chmod o+x it, or set user_namespaces: false")]
    Unreachable {
        path: PathBuf,
        mode: u32,
        what: &'static str,
    },
}

/// The first directory on the way to `dir` (itself included) that others may not search, with
/// its mode. A sandbox's setup, as root of its user namespace, is "others" to every host
/// directory: the host ids it would need to be are not mapped.
pub fn unsearchable_ancestor(dir: &std::path::Path) -> Option<(PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut path = PathBuf::new();
    for part in dir.components() {
        path.push(part);
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() && mode & 0o001 == 0 {
            return Some((path, mode));
        }
    }
    None
}

/// What `/stats` shows of user namespaces.
#[derive(Debug, Default, Clone, Serialize)]
pub struct UserNsStats {
    pub enabled: bool,
    pub uid_range_start: Option<u32>,
    pub uid_range_size: Option<u32>,
    /// Lambdas this worker knows the host uid of.
    pub lambdas: usize,
    /// Why sandboxes run without them, when they do.
    pub fallback: Option<String>,
}

/// The range and the table (see the module docs).
#[derive(Debug)]
pub struct HostIds {
    start: u32,
    size: u32,
    path: PathBuf,
    /// Slots read or given so far; at most `size` entries, as the range.
    table: Mutex<Table>,
}

impl HostIds {
    /// The range `start .. start + size` (checked by the config: `size >= 3`, no overflow),
    /// with its table at `path`.
    pub fn new(start: u32, size: u32, path: PathBuf) -> Self {
        Self {
            start,
            size,
            path,
            table: Mutex::new(Table::default()),
        }
    }

    /// The uid range, if sandboxes get user namespaces: `user_namespaces` on and the kernel
    /// willing (checked by making one); else why not. Says at start which model the worker runs,
    /// and why.
    pub fn for_config(cfg: &Config) -> Result<Self, NoUserNs> {
        if !cfg.user_namespaces {
            tracing::info!(
                sandbox_uid = cfg.sandbox_uid,
                "user namespaces off (user_namespaces: false): every handler runs as sandbox_uid, package zygotes off"
            );
            return Err(NoUserNs::Off);
        }
        for (what, dir) in [
            ("the base", &cfg.base_dir),
            ("the package store", &cfg.packages_dir),
            ("the worker's directory", &cfg.worker_dir),
        ] {
            if let Some((path, mode)) = unsearchable_ancestor(dir) {
                let why = NoUserNs::Unreachable { path, mode, what };
                tracing::warn!(
                    sandbox_uid = cfg.sandbox_uid,
                    "{why}: falling back to sandboxes in the host's user namespace, every handler as sandbox_uid, package zygotes off"
                );
                return Err(why);
            }
        }
        match sandbox::userns::probe() {
            Ok(()) => {
                tracing::info!(
                    uid_range_start = cfg.uid_range_start,
                    uid_range_size = cfg.uid_range_size,
                    "sandboxes and zygotes in user namespaces: one host uid per lambda"
                );
                Ok(Self::new(
                    cfg.uid_range_start,
                    cfg.uid_range_size,
                    cfg.lambda_uids(),
                ))
            }
            Err(errno) => {
                let max = sandbox::userns::max_user_namespaces();
                tracing::warn!(
                    error = %errno,
                    max_user_namespaces = max,
                    sandbox_uid = cfg.sandbox_uid,
                    "the kernel refuses user namespaces: falling back to sandboxes in the host's user namespace, every handler as sandbox_uid, package zygotes off"
                );
                Err(NoUserNs::Refused {
                    errno,
                    max: max.map_or_else(|| "unknown".to_owned(), |m| m.to_string()),
                })
            }
        }
    }

    /// The host uid (and gid) of `slot`.
    pub fn host_id(&self, slot: u32) -> u32 {
        self.start + slot
    }

    /// The first host id of the range.
    pub fn start(&self) -> u32 {
        self.start
    }

    /// How many ids the range holds.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// For `/stats`.
    pub fn stats(&self) -> UserNsStats {
        UserNsStats {
            enabled: true,
            uid_range_start: Some(self.start),
            uid_range_size: Some(self.size),
            lambdas: self.table().by_name.len(),
            fallback: None,
        }
    }

    /// The slot of lambda `name`, given it now if it has none. Blocking (the table's lock and
    /// file, on a lambda this worker has not seen).
    pub fn lambda_slot(&self, name: &str) -> Result<u32, IdentityError> {
        let mut table = self.table();
        if let Some(slot) = table.by_name.get(name) {
            return Ok(*slot);
        }
        let mut file = match table.file.take() {
            Some(file) => file,
            None => self.open()?,
        };
        let mut locked = loop {
            match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive) {
                Ok(locked) => break locked,
                Err((back, nix::errno::Errno::EINTR)) => file = back,
                Err((back, errno)) => {
                    table.file = Some(back);
                    return Err(IdentityError::Io {
                        what: "lock",
                        path: self.path.clone(),
                        source: errno.into(),
                    });
                }
            }
        };
        let result = self.read_and_append(&mut table, &mut locked, name);
        match locked.unlock() {
            Ok(file) => table.file = Some(file),
            // The lock goes with the fd; the next call opens the file again.
            Err((_, errno)) => {
                tracing::warn!(path = %self.path.display(), error = %errno, "cannot unlock the lambda uid table")
            }
        }
        result
    }

    fn open(&self) -> Result<File, IdentityError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| IdentityError::Io {
                what: "create",
                path: dir.to_owned(),
                source,
            })?;
        }
        File::options()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(|source| IdentityError::Io {
                what: "open",
                path: self.path.clone(),
                source,
            })
    }

    /// Under the lock: the lines appended since the last read, then `name`'s own if it still
    /// has none.
    fn read_and_append(
        &self,
        table: &mut Table,
        file: &mut File,
        name: &str,
    ) -> Result<u32, IdentityError> {
        let io = |what: &'static str| {
            let path = self.path.clone();
            move |source| IdentityError::Io { what, path, source }
        };
        let mut new = Vec::new();
        file.seek(SeekFrom::Start(table.read))
            .and_then(|_| file.read_to_end(&mut new))
            .map_err(io("read"))?;
        let whole = new.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        for line in new[..whole]
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
        {
            self.learn(table, line);
        }
        table.read += whole as u64;
        if let Some(slot) = table.by_name.get(name) {
            return Ok(*slot);
        }
        let slot = (FIRST_LAMBDA_SLOT..self.size)
            .find(|s| !table.taken.contains(s))
            .ok_or_else(|| IdentityError::Exhausted {
                lambda: name.to_owned(),
                lambdas: self.size - FIRST_LAMBDA_SLOT,
                size: self.size,
            })?;
        // A torn last line (no newline) is closed first as a line no reader accepts (no lambda
        // name has a space), so that every worker skips it alike.
        let torn = if whole < new.len() { " (torn)\n" } else { "" };
        let line = format!("{torn}{slot} {name}\n");
        file.write_all(line.as_bytes()).map_err(io("append to"))?;
        table.read += (new.len() - whole + line.len()) as u64;
        table.by_name.insert(name.to_owned(), slot);
        table.taken.insert(slot);
        Ok(slot)
    }

    /// One line of the file into `table`, unless it is damaged or its slot is taken.
    fn learn(&self, table: &mut Table, line: &[u8]) {
        let parsed = std::str::from_utf8(line).ok().and_then(|text| {
            let (slot, name) = text.split_once(' ')?;
            let slot: u32 = slot.parse().ok()?;
            crate::name::LambdaName::parse(name).ok()?;
            (FIRST_LAMBDA_SLOT..self.size)
                .contains(&slot)
                .then(|| (slot, name.to_owned()))
        });
        let Some((slot, name)) = parsed else {
            tracing::warn!(path = %self.path.display(), line = %String::from_utf8_lossy(line), "skipping a damaged line of the lambda uid table");
            return;
        };
        if table.by_name.contains_key(&name) || table.taken.contains(&slot) {
            tracing::warn!(path = %self.path.display(), slot, lambda = %name, "skipping a line of the lambda uid table whose lambda or slot is taken");
            return;
        }
        table.taken.insert(slot);
        table.by_name.insert(name, slot);
    }

    /// The maps of one sandbox's namespace: its root, and `slot` (the user it runs as).
    pub fn sandbox_map(&self, slot: u32) -> Result<IdMap, IdentityError> {
        let one = |inside: u32| IdRange {
            inside,
            outside: self.host_id(inside),
            count: 1,
        };
        Ok(IdMap::new(vec![one(ROOT_SLOT), one(slot)])?)
    }

    /// The maps of a zygote's namespace: the whole range, since its children act as any
    /// lambda.
    pub fn zygote_map(&self) -> Result<IdMap, IdentityError> {
        Ok(IdMap::new(vec![IdRange {
            inside: 0,
            outside: self.start,
            count: self.size,
        }])?)
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambdas_get_distinct_slots_that_last_across_workers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("workers/lambda-uids");
        let a = HostIds::new(524288, 8, path.clone());
        let b = HostIds::new(524288, 8, path.clone());
        let hello = a.lambda_slot("hello").unwrap();
        let echo = b.lambda_slot("echo").unwrap();
        assert_eq!(hello, 2);
        assert_eq!(echo, 3);
        // Another worker (another table reader) sees the same slots.
        assert_eq!(b.lambda_slot("hello").unwrap(), hello);
        assert_eq!(a.lambda_slot("echo").unwrap(), echo);
        assert_eq!(a.host_id(hello), 524290);
        // A restarted worker reads them back.
        let c = HostIds::new(524288, 8, path);
        assert_eq!(c.lambda_slot("echo").unwrap(), echo);
    }

    #[test]
    fn a_full_range_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let ids = HostIds::new(1000, 4, dir.path().join("t"));
        ids.lambda_slot("a").unwrap();
        ids.lambda_slot("b").unwrap();
        let err = ids.lambda_slot("c").unwrap_err().to_string();
        assert!(
            err.contains("lambda c") && err.contains("uid_range_size"),
            "{err}"
        );
        // Those that have one keep it.
        assert_eq!(ids.lambda_slot("a").unwrap(), 2);
    }

    #[test]
    fn damaged_lines_are_skipped_and_their_slots_never_given_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        // A good line, junk, a reserved slot, a slot taken twice, and a torn last line.
        std::fs::write(&path, "2 a\nnot a line\n1 b\n2 c\n3 d\n4 e").unwrap();
        let ids = HostIds::new(1000, 16, path.clone());
        assert_eq!(ids.lambda_slot("a").unwrap(), 2);
        assert_eq!(ids.lambda_slot("d").unwrap(), 3);
        // c's line named a taken slot, b's a reserved one, e's was torn: new slots.
        let c = ids.lambda_slot("c").unwrap();
        let e = ids.lambda_slot("e").unwrap();
        assert!(c >= 4 && e >= 4 && c != e, "{c} {e}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("2 a\nnot a line\n1 b\n2 c\n3 d\n4 e (torn)\n"),
            "{text:?}"
        );
        // Another reader agrees.
        let other = HostIds::new(1000, 16, path);
        assert_eq!(other.lambda_slot("c").unwrap(), c);
        assert_eq!(other.lambda_slot("e").unwrap(), e);
    }

    #[test]
    fn a_directory_others_cannot_search_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open/deeper");
        std::fs::create_dir_all(&open).unwrap();
        for d in [dir.path(), &dir.path().join("open"), &open] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        assert_eq!(unsearchable_ancestor(&open), None);
        let closed = dir.path().join("open");
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o750)).unwrap();
        assert_eq!(unsearchable_ancestor(&open), Some((closed, 0o750)));
    }

    #[test]
    fn maps_give_root_and_the_lambda_or_the_whole_range() {
        let ids = HostIds::new(524288, 65536, PathBuf::from("/nonexistent"));
        assert_eq!(
            ids.sandbox_map(9).unwrap().text(),
            "0 524288 1\n9 524297 1\n"
        );
        assert_eq!(ids.zygote_map().unwrap().text(), "0 524288 65536\n");
    }
}
