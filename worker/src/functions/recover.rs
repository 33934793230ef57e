//! What [`DirStore::open`] mends after a crash of any process that used the store, under the
//! store's lock, in this order:
//! 1. staging directories no live operation holds (`.store/staging/*` whose `flock` can be
//!    taken): a refused or interrupted unpack, or code already replaced; removed;
//! 2. temporary files (`.tmp-*`) in `.store/functions/` and the layer directories: writes cut
//!    short before their rename; removed;
//! 3. every managed function whose `<registry>/<name>/` is missing or carries another
//!    revision marker than its metadata (a crash between the metadata and the exchange, or
//!    a settings change cut short): made again from its archive;
//! 4. every layer version whose record has no directory: unpacked again from its archive;
//! 5. archives no function or layer version refers to: removed.
//!
//! Metadata without its archive cannot happen: the archive is stored before the metadata
//! that names it, and removed only when nothing names it.

use super::durable::{io_err, sync_dir, try_lock_dir, Locked};
use super::store::{temp_files, DirStore};
use super::{code, record, StoreError};

/// What recovery did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Recovered {
    pub staging_removed: usize,
    pub temp_files_removed: usize,
    pub functions_restored: usize,
    pub layers_restored: usize,
    pub archives_removed: usize,
}

/// Removes the temporary files in `dir`; returns how many.
pub(super) fn remove_temp_files(dir: &std::path::Path) -> Result<usize, StoreError> {
    let files = temp_files(dir)?;
    for f in &files {
        std::fs::remove_file(f).map_err(io_err("remove", f))?;
    }
    if !files.is_empty() {
        sync_dir(dir)?;
    }
    Ok(files.len())
}

impl DirStore {
    pub(super) fn recover(&self, held: &Locked) -> Result<Recovered, StoreError> {
        let mut done = Recovered {
            staging_removed: self.remove_dead_staging()?,
            temp_files_removed: remove_temp_files(&self.store_dir().join("functions"))?,
            ..Recovered::default()
        };
        for stored in self.all_stored()? {
            let dir = self.registry_dir().join(&stored.record.name);
            if code::revision_of(&dir).as_deref() == Some(stored.record.revision_id.as_str()) {
                continue;
            }
            match self.rematerialize(held, &stored) {
                Ok(()) => done.functions_restored += 1,
                Err(e) => tracing::error!(
                    function = %stored.record.name,
                    "cannot restore the code directory from its archive: {e}"
                ),
            }
        }
        done.layers_restored = self.recover_layers(held)?;
        done.archives_removed = self.collect_garbage_locked(held)?;
        if done != Recovered::default() {
            tracing::info!(
                registry = %self.registry_dir().display(),
                staging = done.staging_removed,
                temp_files = done.temp_files_removed,
                functions = done.functions_restored,
                layers = done.layers_restored,
                archives = done.archives_removed,
                "function store recovered"
            );
        }
        Ok(done)
    }

    fn remove_dead_staging(&self) -> Result<usize, StoreError> {
        let root = self.staging_dir();
        let mut removed = 0;
        for entry in std::fs::read_dir(&root).map_err(io_err("read", &root))? {
            let entry = entry.map_err(io_err("read", &root))?;
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir {
                // Held by a live operation (of this or another process): not ours to remove.
                // Gone since it was listed: its operation removed it (which takes no lock).
                let _lock = match try_lock_dir(&path) {
                    Ok(Some(lock)) => lock,
                    Ok(None) => continue,
                    Err(StoreError::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        continue
                    }
                    Err(e) => return Err(e),
                };
                crate::cleanup::remove_dir_all_if_present(&path)
                    .map_err(io_err("remove", &path))?;
            } else {
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(io_err("remove", &path)(e))
                    }
                    _ => {}
                }
            }
            removed += 1;
        }
        Ok(removed)
    }

    /// Removes every archive no function or layer version refers to. Under the lock. Reads
    /// every record first: if one cannot be read, nothing is removed.
    pub(super) fn collect_garbage_locked(&self, _held: &Locked) -> Result<usize, StoreError> {
        let mut referenced = std::collections::HashSet::new();
        for stored in self.all_stored()? {
            referenced.insert(stored.record.code_sha256);
        }
        let layers = self.store_dir().join("layers");
        for entry in std::fs::read_dir(&layers).map_err(io_err("read", &layers))? {
            let entry = entry.map_err(io_err("read", &layers))?;
            let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|s| crate::name::LambdaName::parse(s).ok())
            else {
                continue;
            };
            for version in self.layer_version_numbers(&name)? {
                referenced.insert(self.read_layer(&name, version)?.record.code_sha256);
            }
        }
        let dir = self.archives_dir();
        let mut removed = 0;
        for entry in std::fs::read_dir(&dir).map_err(io_err("read", &dir))? {
            let entry = entry.map_err(io_err("read", &dir))?;
            let name = entry.file_name();
            let keep = name
                .to_str()
                .is_some_and(|n| record::is_sha256_hex(n) && referenced.contains(n));
            if !keep {
                let path = entry.path();
                std::fs::remove_file(&path).map_err(io_err("remove", &path))?;
                removed += 1;
            }
        }
        if removed > 0 {
            sync_dir(&dir)?;
        }
        Ok(removed)
    }
}
