//! Host ids for user namespaces: the range `uid_range_start .. + uid_range_size`, and which
//! lambda acts as which of its ids.
//!
//! Slot `k` of the range is host uid (and gid) `uid_range_start + k`, and id `k` inside every
//! user namespace the worker makes (the maps are offsets, the same for all):
//! - slot 0 is root of each namespace: a sandbox's setup, and the zygotes;
//! - slot 1 is the package installer (pip's sandboxes);
//! - slots 2 and up go to lambdas, one each, on their first cold start, and stay theirs.
//!
//! The table of lambda slots is a JSON file shared by the cluster's workers
//! (`lambda_uids_file`); a lock file next to it serializes changes, and each change is written
//! to a temporary file then renamed, so a crash never leaves half a table. A worker keeps the
//! slots it has seen in memory: the table only grows, so a slot once read never changes.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sandbox::{IdMap, IdRange};
use serde::{Deserialize, Serialize};

use crate::files::FileLock;

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
    #[error("{path} is not a table of lambda uids: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("no host uid left for lambda {lambda}: the {lambdas} of the range (uid_range_size {size}) are all taken; raise uid_range_size")]
    Exhausted {
        lambda: String,
        lambdas: u32,
        size: u32,
    },
    #[error("invalid id map: {0}")]
    Map(#[from] sandbox::IdMapError),
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    /// Lambda name to slot.
    lambdas: HashMap<String, u32>,
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
    /// Slots read or given so far; at most `size` entries, as the table.
    known: Mutex<HashMap<String, u32>>,
}

impl HostIds {
    /// The range `start .. start + size` (checked by the config: `size >= 3`, no overflow),
    /// with its table at `path`.
    pub fn new(start: u32, size: u32, path: PathBuf) -> Self {
        Self {
            start,
            size,
            path,
            known: Mutex::new(HashMap::new()),
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
            lambdas: self.known().len(),
            fallback: None,
        }
    }

    /// The slot of lambda `name`, given it now if it has none. Blocking (the table's lock and
    /// file).
    pub fn lambda_slot(&self, name: &str) -> Result<u32, IdentityError> {
        if let Some(slot) = self.known().get(name) {
            return Ok(*slot);
        }
        let lock_path = lock_path(&self.path);
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| IdentityError::Io {
                what: "create",
                path: dir.to_owned(),
                source,
            })?;
        }
        let _lock = FileLock::take(&lock_path).map_err(|source| IdentityError::Io {
            what: "lock",
            path: lock_path.clone(),
            source,
        })?;
        let mut table = self.read()?;
        let slot = match table.lambdas.get(name) {
            Some(slot) => *slot,
            None => {
                let taken: std::collections::HashSet<u32> =
                    table.lambdas.values().copied().collect();
                let slot = (FIRST_LAMBDA_SLOT..self.size)
                    .find(|s| !taken.contains(s))
                    .ok_or_else(|| IdentityError::Exhausted {
                        lambda: name.to_owned(),
                        lambdas: self.size - FIRST_LAMBDA_SLOT,
                        size: self.size,
                    })?;
                table.lambdas.insert(name.to_owned(), slot);
                self.write(&table)?;
                slot
            }
        };
        let mut known = self.known();
        for (n, s) in table.lambdas {
            known.insert(n, s);
        }
        Ok(slot)
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

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read(&self) -> Result<Table, IdentityError> {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Table::default()),
            Err(source) => {
                return Err(IdentityError::Io {
                    what: "read",
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let table: Table = serde_json::from_slice(&text).map_err(|e| IdentityError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        let mut seen = std::collections::HashSet::new();
        for (name, slot) in &table.lambdas {
            if *slot < FIRST_LAMBDA_SLOT || !seen.insert(*slot) {
                return Err(IdentityError::Corrupt {
                    path: self.path.clone(),
                    message: format!("lambda {name:?} has slot {slot}, reserved or taken twice"),
                });
            }
        }
        Ok(table)
    }

    fn write(&self, table: &Table) -> Result<(), IdentityError> {
        let tmp = self.path.with_extension("json.tmp");
        let io = |what: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| IdentityError::Io { what, path, source }
        };
        let text = serde_json::to_vec_pretty(table).map_err(|e| IdentityError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(&text).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("sync", &tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(io("rename", &tmp))?;
        Ok(())
    }
}

fn lock_path(table: &Path) -> PathBuf {
    table.with_extension("lock")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambdas_get_distinct_slots_that_last_across_workers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("workers/lambda-uids.json");
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
        let ids = HostIds::new(1000, 4, dir.path().join("t.json"));
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
    fn a_damaged_table_is_refused_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        for text in [
            "not json",
            r#"{"lambdas": {"a": 1}}"#,
            r#"{"lambdas": {"a": 5, "b": 5}}"#,
        ] {
            std::fs::write(&path, text).unwrap();
            let ids = HostIds::new(1000, 16, path.clone());
            let err = ids.lambda_slot("x").unwrap_err();
            assert!(matches!(err, IdentityError::Corrupt { .. }), "{err}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        }
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
