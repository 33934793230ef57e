//! [`DirStore`]: the [`FunctionStore`] over a registry directory (the layout of
//! [`super::layout`] and the module docs).
//!
//! Changing a function's code, in order:
//! 1. unpack the archive into a staging directory under `.store/staging/` (locked by this
//!    operation), read its own `lambda.json`, stage the archive beside it, `syncfs`: the heavy
//!    part, outside the store's lock;
//! 2. take the store's lock (`flock` on `.store/lock`, shared by every thread and process);
//!    check the function's state (exists, revision, how many functions);
//! 3. work out the effective configuration (the settings over the archive's `lambda.json`,
//!    layers resolved to versions) and write it and the revision marker into the staged code;
//! 4. move the archive to `.store/archives/<sha256>` (if not there), flush the directory;
//! 5. write `.store/functions/<name>.json` (temporary file, flush, rename, flush): the commit
//!    point, after which the change is acknowledged and survives a crash;
//! 6. exchange the staged code with `<registry>/<name>/` (`renameat2(RENAME_EXCHANGE)`, or a
//!    rename for a new function), flush the registry: readers see the old or the new code;
//! 7. release the lock; remove the old code (now in the staging directory) and archives no
//!    function or layer refers to.
//!
//! A crash after step 5 leaves metadata newer than the code directory: [`DirStore::open`]
//! finds the marker differing and makes the directory again from the archive.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::durable::{
    ensure_dir, io_err, lock, remove_file, replace_file, sync_dir, sync_filesystem, Locked,
    Scratch, TEMP_PREFIX,
};
use super::record::{self, FunctionRecord, StoredFunction};
use super::STORE_DIR;
use super::{code, handwritten, FunctionInfo, FunctionStore, LayerVersionInfo, StoreError};
use crate::archive::{self, Unpacked, MAX_ARCHIVE_BYTES};
use crate::lambda_config::{KeyError, LambdaConfig, LAMBDA_CONFIG_FILE};
use crate::name::LambdaName;

/// Most functions a registry holds (managed and hand-written together).
pub const MAX_FUNCTIONS: usize = 10_000;

/// The store over one registry directory. Cheap to clone; every method blocks.
#[derive(Debug, Clone)]
pub struct DirStore {
    registry: PathBuf,
}

/// What [`DirStore::upload`] did.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub info: FunctionInfo,
    pub unpacked: Unpacked,
    /// Whether there was a function (or directory) of that name before.
    pub replaced: bool,
}

/// What the code change is, checked under the lock.
#[derive(Debug, Clone, Copy)]
enum Put<'a> {
    Create(&'a LambdaConfig),
    UpdateCode(Option<&'a str>),
    /// Create or replace code, keeping settings (`admin upload`); `true`: the entry's module
    /// must be in the code.
    Upload(bool),
    /// A hand-written function becoming managed with new settings.
    Adopt(&'a LambdaConfig),
}

/// The state of a name in the registry.
#[derive(Debug)]
enum Current {
    Managed(Box<StoredFunction>),
    HandWritten,
    /// A directory that is not a function (no function files).
    OtherDir,
    /// A file or link of that name.
    NotDir,
    Absent,
}

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    crate::hex(&Sha256::digest(bytes))
}

pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A new revision id, UUID-shaped (as AWS's `RevisionId`): unique per process, time and call.
fn new_revision(name: &LambdaName) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = format!("{name}\0{nanos}\0{}", super::durable::unique());
    let h = crate::hex(&Sha256::digest(seed.as_bytes())[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn key_error(e: KeyError) -> StoreError {
    StoreError::Invalid {
        key: e.key,
        message: e.message,
    }
}

fn not_found(name: &LambdaName) -> StoreError {
    StoreError::FunctionNotFound {
        name: name.to_string(),
    }
}

fn check_revision(
    name: &LambdaName,
    expected: Option<&str>,
    actual: &str,
) -> Result<(), StoreError> {
    match expected {
        Some(e) if e != actual => Err(StoreError::RevisionMismatch {
            name: name.to_string(),
            expected: e.to_owned(),
            actual: actual.to_owned(),
        }),
        _ => Ok(()),
    }
}

impl DirStore {
    /// The store of `registry_dir` (an existing directory): creates `.store/` as needed and
    /// recovers from a crash of any process that used it (see [`super::recover`]).
    pub fn open(registry_dir: &Path) -> Result<Self, StoreError> {
        let md = std::fs::metadata(registry_dir).map_err(io_err("open registry", registry_dir))?;
        if !md.is_dir() {
            return Err(io_err("open registry", registry_dir)(std::io::Error::from(
                std::io::ErrorKind::NotADirectory,
            )));
        }
        let store = Self {
            registry: registry_dir.to_owned(),
        };
        ensure_dir(&store.store_dir(), 0o700)?;
        for sub in ["archives", "functions", "layers", "staging"] {
            ensure_dir(&store.store_dir().join(sub), 0o700)?;
        }
        let held = store.lock()?;
        store.recover(&held)?;
        Ok(store)
    }

    pub fn registry_dir(&self) -> &Path {
        &self.registry
    }

    pub(super) fn store_dir(&self) -> PathBuf {
        self.registry.join(STORE_DIR)
    }

    fn functions_dir(&self) -> PathBuf {
        self.store_dir().join("functions")
    }

    pub(super) fn archives_dir(&self) -> PathBuf {
        self.store_dir().join("archives")
    }

    pub(super) fn staging_dir(&self) -> PathBuf {
        self.store_dir().join("staging")
    }

    pub(super) fn lock(&self) -> Result<Locked, StoreError> {
        lock(&self.store_dir().join("lock"))
    }

    /// A staging directory for one operation (takes the lock briefly).
    pub(super) fn scratch(&self) -> Result<Scratch, StoreError> {
        let held = self.lock()?;
        Scratch::new(&self.staging_dir(), &held)
    }

    pub(super) fn scratch_locked(&self, held: &Locked) -> Result<Scratch, StoreError> {
        Scratch::new(&self.staging_dir(), held)
    }

    /// The stored archive with content hash `sha256_hex` (64 lower-case hex digits):
    /// `Invalid` for another string, `Io` with [`std::io::ErrorKind::NotFound`] when there is
    /// none.
    pub fn archive_path(&self, sha256_hex: &str) -> Result<PathBuf, StoreError> {
        if !record::is_sha256_hex(sha256_hex) {
            return Err(StoreError::Invalid {
                key: Some("sha256".to_owned()),
                message: format!("{sha256_hex:?} is not 64 lower-case hex digits"),
            });
        }
        let path = self.archives_dir().join(sha256_hex);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_file() => Ok(path),
            Ok(_) => Err(io_err("find archive", &path)(std::io::Error::from(
                std::io::ErrorKind::NotFound,
            ))),
            Err(e) => Err(io_err("find archive", &path)(e)),
        }
    }

    /// The archive's bytes, checked against its hash.
    pub(super) fn read_archive(&self, sha: &str) -> Result<Vec<u8>, StoreError> {
        use std::io::Read;
        let path = self.archive_path(sha)?;
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .and_then(|f| f.take(MAX_ARCHIVE_BYTES as u64 + 1).read_to_end(&mut bytes))
            .map_err(io_err("read", &path))?;
        if sha256_hex(&bytes) != sha {
            return Err(StoreError::Invalid {
                key: None,
                message: format!("archive {} does not match its hash", path.display()),
            });
        }
        Ok(bytes)
    }

    /// Moves a staged archive to its content address unless it is there. Under the lock (so
    /// that garbage collection, also under it, never removes one about to be referred to).
    pub(super) fn store_archive(
        &self,
        _held: &Locked,
        staged: &Path,
        sha: &str,
    ) -> Result<(), StoreError> {
        let target = self.archives_dir().join(sha);
        if std::fs::symlink_metadata(&target).is_ok_and(|m| m.file_type().is_file()) {
            return Ok(());
        }
        std::fs::rename(staged, &target).map_err(io_err("store archive", &target))?;
        sync_dir(&self.archives_dir())
    }

    fn function_file(name: &LambdaName) -> String {
        format!("{name}.json")
    }

    /// The stored metadata of `name`, if managed.
    pub(super) fn read_stored(
        &self,
        name: &LambdaName,
    ) -> Result<Option<StoredFunction>, StoreError> {
        let path = self.functions_dir().join(Self::function_file(name));
        match crate::files::read_regular_file(&path, record::MAX_RECORD_BYTES) {
            Ok(Some(text)) => record::parse_stored(&path, &text).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(StoreError::Invalid {
                key: None,
                message: format!("{}: {e}", path.display()),
            }),
        }
    }

    fn write_stored(&self, stored: &StoredFunction) -> Result<(), StoreError> {
        let json = serde_json::to_vec_pretty(stored).unwrap_or_default();
        replace_file(
            &self.functions_dir(),
            &format!("{}.json", stored.record.name),
            &json,
        )
    }

    fn current(&self, name: &LambdaName) -> Result<Current, StoreError> {
        if let Some(stored) = self.read_stored(name)? {
            return Ok(Current::Managed(Box::new(stored)));
        }
        let dir = self.registry.join(name.as_str());
        Ok(match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_dir() => {
                if handwritten::is_function_dir(&dir) {
                    Current::HandWritten
                } else {
                    Current::OtherDir
                }
            }
            Ok(_) => Current::NotDir,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Current::Absent,
            Err(e) => return Err(io_err("inspect", &dir)(e)),
        })
    }

    /// Names of the registry's entries that could be functions (bounded).
    fn registry_names(&self) -> Result<Vec<LambdaName>, StoreError> {
        let mut names = Vec::new();
        let entries = std::fs::read_dir(&self.registry).map_err(io_err("read", &self.registry))?;
        for entry in entries {
            let entry = entry.map_err(io_err("read", &self.registry))?;
            if let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|s| LambdaName::parse(s).ok())
            {
                names.push(name);
            }
            if names.len() > 2 * MAX_FUNCTIONS {
                return Err(StoreError::Invalid {
                    key: None,
                    message: format!(
                        "registry {} holds more than {} entries",
                        self.registry.display(),
                        2 * MAX_FUNCTIONS
                    ),
                });
            }
        }
        Ok(names)
    }

    /// Refuses a new function when the registry is full.
    fn check_room(&self) -> Result<(), StoreError> {
        if self.registry_names()?.len() >= MAX_FUNCTIONS {
            return Err(StoreError::Invalid {
                key: None,
                message: format!(
                    "the registry already holds {MAX_FUNCTIONS} functions, the most it may"
                ),
            });
        }
        Ok(())
    }

    /// The effective configuration: `settings` over the archive's, every layer resolved to a
    /// version (the latest now, for a reference without one), the whole validated again.
    pub(super) fn effective(
        &self,
        settings: &LambdaConfig,
        archive_config: &LambdaConfig,
    ) -> Result<LambdaConfig, StoreError> {
        let mut eff = settings.over(archive_config);
        if let Some(layers) = &mut eff.layers {
            for layer in layers.iter_mut() {
                layer.version = Some(self.resolve_layer(layer)?);
            }
        }
        LambdaConfig::from_value(&eff.to_value()).map_err(key_error)
    }

    /// Steps 1 to 7 of the module docs.
    fn put_code(
        &self,
        name: &LambdaName,
        archive_bytes: &[u8],
        put: Put<'_>,
    ) -> Result<Uploaded, StoreError> {
        let sha = sha256_hex(archive_bytes);
        let scratch = self.scratch()?;
        let code = scratch.subdir("code")?;
        let unpacked = archive::unpack(archive_bytes, &code)?;
        code::check_reserved(&code)?;
        let archive_config = code::archive_config(&code)?;
        let has_docs = code::has_docs(&code);
        let staged_archive = scratch.path().join("archive");
        super::durable::write_new_file(&staged_archive, archive_bytes, 0o600)?;
        sync_filesystem(scratch.path())?;

        let held = self.lock()?;
        let current = self.current(name)?;
        let target = self.registry.join(name.as_str());
        let (previous, replaced) = match (&current, put) {
            (Current::Absent, Put::Create(_) | Put::Upload(_)) => {
                self.check_room()?;
                (None, false)
            }
            (_, Put::Create(_)) => {
                return Err(StoreError::Exists {
                    name: name.to_string(),
                })
            }
            (Current::Managed(s), Put::UpdateCode(expected)) => {
                check_revision(name, expected, &s.record.revision_id)?;
                (Some(s.as_ref()), true)
            }
            (Current::Managed(s), Put::Upload(_)) => (Some(s.as_ref()), true),
            (Current::HandWritten, Put::UpdateCode(Some(expected))) => {
                let actual = handwritten::info_for_listing(name, &target)?.revision_id;
                check_revision(name, Some(expected), &actual)?;
                (None, true)
            }
            (Current::HandWritten, Put::UpdateCode(None) | Put::Upload(_) | Put::Adopt(_)) => {
                (None, true)
            }
            (Current::OtherDir, Put::Upload(_)) => (None, true),
            (Current::NotDir, Put::Upload(_)) => {
                return Err(StoreError::Invalid {
                    key: None,
                    message: format!(
                        "registry entry {} is not a directory: remove it first",
                        target.display()
                    ),
                })
            }
            (Current::Managed(_), Put::Adopt(_)) => {
                // Became managed since the caller looked: its settings change must be redone.
                return Err(StoreError::RevisionMismatch {
                    name: name.to_string(),
                    expected: "a hand-written function".to_owned(),
                    actual: "a managed one".to_owned(),
                });
            }
            (_, Put::UpdateCode(_) | Put::Adopt(_)) => return Err(not_found(name)),
        };
        let settings = match put {
            Put::Create(s) | Put::Adopt(s) => s.clone(),
            Put::UpdateCode(_) | Put::Upload(_) => match previous {
                Some(p) => LambdaConfig::from_value(&p.record.settings).map_err(key_error)?,
                None => LambdaConfig::default(),
            },
        };
        let config = self.effective(&settings, &archive_config)?;
        let entry = config.entry_in(&code);
        if let Put::Upload(true) = put {
            check_entry_file(&code, &config, &entry)?;
        }
        let revision_id = new_revision(name);
        code::finish(&code, &config, &revision_id)?;
        self.store_archive(&held, &staged_archive, &sha)?;
        let info = FunctionInfo {
            name: name.clone(),
            config,
            settings,
            entry,
            code_sha256: sha,
            code_size: archive_bytes.len() as u64,
            version: previous.map_or(1, |p| p.record.version + 1),
            revision_id,
            last_modified_ms: now_ms(),
            has_docs,
        };
        let stored = StoredFunction {
            format: record::FORMAT,
            record: FunctionRecord::from_info(&info),
            archive_config: archive_config.to_value(),
        };
        self.write_stored(&stored)?;
        if let Err(e) = self.swap_in(&code, &target, replaced) {
            self.roll_back(name, previous);
            return Err(e);
        }
        drop(held);
        if previous.is_some_and(|p| p.record.code_sha256 != info.code_sha256) {
            self.collect_garbage_quietly();
        }
        Ok(Uploaded {
            info,
            unpacked,
            replaced,
        })
    }

    /// Puts the prepared directory `fresh` at `target`: an exchange when `target` exists (the
    /// old code lands at `fresh`), a rename otherwise; then flushes the registry.
    pub(super) fn swap_in(
        &self,
        fresh: &Path,
        target: &Path,
        exists: bool,
    ) -> Result<(), StoreError> {
        if exists {
            nix::fcntl::renameat2(
                nix::fcntl::AT_FDCWD,
                fresh,
                nix::fcntl::AT_FDCWD,
                target,
                nix::fcntl::RenameFlags::RENAME_EXCHANGE,
            )
            .map_err(|e| io_err("exchange code into", target)(std::io::Error::from(e)))?;
        } else {
            std::fs::rename(fresh, target).map_err(io_err("move code into", target))?;
        }
        sync_dir(&self.registry)
    }

    /// After a failed swap: the metadata goes back to what it was (best effort; recovery at
    /// the next open mends what this cannot).
    fn roll_back(&self, name: &LambdaName, previous: Option<&StoredFunction>) {
        let result = match previous {
            Some(p) => self.write_stored(p),
            None => remove_file(&self.functions_dir(), &Self::function_file(name)),
        };
        if let Err(e) = result {
            tracing::error!(function = %name, "cannot take back a change that failed: {e}");
        }
    }

    /// Creates or replaces `name`'s code from `archive`, keeping its settings (`admin upload`).
    /// With `require_entry_file`, code without its entry's module (and no layers that could
    /// hold it) is refused.
    pub fn upload(
        &self,
        name: &LambdaName,
        archive: &[u8],
        require_entry_file: bool,
    ) -> Result<Uploaded, StoreError> {
        self.put_code(name, archive, Put::Upload(require_entry_file))
    }

    /// The function's record (for a worker that pulls code).
    pub fn record(&self, name: &LambdaName) -> Result<FunctionRecord, StoreError> {
        Ok(FunctionRecord::from_info(&self.get(name)?))
    }

    fn update_managed_settings(
        &self,
        held: &Locked,
        stored: StoredFunction,
        settings: &LambdaConfig,
    ) -> Result<FunctionInfo, StoreError> {
        let name = LambdaName::parse(&stored.record.name).map_err(|e| StoreError::Invalid {
            key: None,
            message: format!("stored function {:?}: {e}", stored.record.name),
        })?;
        let archive_config = LambdaConfig::from_value(&stored.archive_config).map_err(key_error)?;
        let config = self.effective(settings, &archive_config)?;
        let dir = self.registry.join(name.as_str());
        if code::revision_of(&dir).as_deref() != Some(stored.record.revision_id.as_str()) {
            // The directory is not what the metadata says (edited or removed by hand): make it
            // again first, so the settings go onto the right code.
            self.rematerialize(held, &stored)?;
        }
        let revision_id = new_revision(&name);
        let mut info = stored.record.clone().into_info()?;
        info.entry = config.entry_in(&dir);
        info.config = config;
        info.settings = settings.clone();
        info.version += 1;
        info.revision_id = revision_id.clone();
        info.last_modified_ms = now_ms();
        let new = StoredFunction {
            format: record::FORMAT,
            record: FunctionRecord::from_info(&info),
            archive_config: stored.archive_config.clone(),
        };
        self.write_stored(&new)?;
        // Each file replaced by one rename from the staging directory: a reader sees the old
        // or the new lambda.json, never part of one.
        let scratch = self.scratch_locked(held)?;
        let staged_config = scratch.path().join(LAMBDA_CONFIG_FILE);
        let staged_marker = scratch.path().join(code::REVISION_FILE);
        let result = super::durable::write_new_file(
            &staged_config,
            info.config.to_json_pretty().as_bytes(),
            0o644,
        )
        .and_then(|()| {
            super::durable::write_new_file(
                &staged_marker,
                format!("{revision_id}\n").as_bytes(),
                0o644,
            )
        })
        .and_then(|()| {
            let target = dir.join(LAMBDA_CONFIG_FILE);
            std::fs::rename(&staged_config, &target).map_err(io_err("replace", &target))
        })
        .and_then(|()| {
            let target = dir.join(code::REVISION_FILE);
            std::fs::rename(&staged_marker, &target).map_err(io_err("replace", &target))
        })
        .and_then(|()| sync_dir(&dir));
        if let Err(e) = result {
            self.roll_back(&name, Some(&stored));
            return Err(e);
        }
        Ok(info)
    }

    /// Makes `<registry>/<name>/` again from the function's archive and metadata, replacing
    /// whatever is there. Under the lock.
    pub(super) fn rematerialize(
        &self,
        held: &Locked,
        stored: &StoredFunction,
    ) -> Result<(), StoreError> {
        let bytes = self.read_archive(&stored.record.code_sha256)?;
        let config = LambdaConfig::from_value(&stored.record.config).map_err(key_error)?;
        let scratch = self.scratch_locked(held)?;
        let code = scratch.subdir("code")?;
        code::materialize(&bytes, &config, &stored.record.revision_id, &code)?;
        sync_filesystem(&code)?;
        let target = self.registry.join(&stored.record.name);
        let exists = std::fs::symlink_metadata(&target).is_ok();
        self.swap_in(&code, &target, exists)
    }

    /// Removes archives nothing refers to; logs instead of failing.
    fn collect_garbage_quietly(&self) {
        match self
            .lock()
            .and_then(|held| self.collect_garbage_locked(&held))
        {
            Ok(_) => {}
            Err(e) => tracing::warn!(
                registry = %self.registry.display(),
                "cannot remove unused archives: {e}"
            ),
        }
    }

    /// Removes archives no function or layer version refers to; returns how many.
    pub fn collect_garbage(&self) -> Result<usize, StoreError> {
        let held = self.lock()?;
        self.collect_garbage_locked(&held)
    }

    /// Every managed function's stored metadata, sorted by name (bounded).
    pub(super) fn all_stored(&self) -> Result<Vec<StoredFunction>, StoreError> {
        let dir = self.functions_dir();
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io_err("read", &dir))? {
            let entry = entry.map_err(io_err("read", &dir))?;
            let file_name = entry.file_name();
            let Some(name) = file_name
                .to_str()
                .and_then(|s| s.strip_suffix(".json"))
                .and_then(|s| LambdaName::parse(s).ok())
            else {
                continue;
            };
            if out.len() >= MAX_FUNCTIONS {
                return Err(StoreError::Invalid {
                    key: None,
                    message: format!(
                        "{} holds more than {MAX_FUNCTIONS} functions",
                        dir.display()
                    ),
                });
            }
            if let Some(stored) = self.read_stored(&name)? {
                out.push(stored);
            }
        }
        out.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        Ok(out)
    }
}

/// For `admin upload`: the entry's module must be in the code, unless a layer may hold it.
fn check_entry_file(
    code: &Path,
    config: &LambdaConfig,
    entry: &crate::lambda_config::Entry,
) -> Result<(), StoreError> {
    if config.layers.as_ref().is_some_and(|l| !l.is_empty()) {
        return Ok(());
    }
    let module = entry.module_file();
    let package = format!("{}/__init__.py", entry.module.replace('.', "/"));
    let is_file = |f: &str| std::fs::symlink_metadata(code.join(f)).is_ok_and(|m| m.is_file());
    if is_file(&module) || is_file(&package) {
        return Ok(());
    }
    Err(StoreError::Invalid {
        key: Some("entry".to_owned()),
        message: format!(
            "the archive has no {module} at its top (or in its single top-level directory) for entry {entry}"
        ),
    })
}

impl FunctionStore for DirStore {
    fn create(
        &self,
        name: &LambdaName,
        archive: &[u8],
        settings: &LambdaConfig,
    ) -> Result<FunctionInfo, StoreError> {
        Ok(self.put_code(name, archive, Put::Create(settings))?.info)
    }

    fn get(&self, name: &LambdaName) -> Result<FunctionInfo, StoreError> {
        match self.current(name)? {
            Current::Managed(s) => s.record.into_info(),
            Current::HandWritten => handwritten::info(name, &self.registry.join(name.as_str())),
            _ => Err(not_found(name)),
        }
    }

    fn list(&self) -> Result<Vec<FunctionInfo>, StoreError> {
        let mut out = std::collections::BTreeMap::new();
        for stored in self.all_stored()? {
            let info = stored.record.into_info()?;
            out.insert(info.name.clone(), info);
        }
        for name in self.registry_names()? {
            if out.contains_key(&name) {
                continue;
            }
            let dir = self.registry.join(name.as_str());
            if handwritten::is_function_dir(&dir) {
                out.insert(name.clone(), handwritten::info_for_listing(&name, &dir)?);
            }
        }
        Ok(out.into_values().collect())
    }

    fn update_code(
        &self,
        name: &LambdaName,
        archive: &[u8],
        expected_revision: Option<&str>,
    ) -> Result<FunctionInfo, StoreError> {
        Ok(self
            .put_code(name, archive, Put::UpdateCode(expected_revision))?
            .info)
    }

    fn update_settings(
        &self,
        name: &LambdaName,
        settings: &LambdaConfig,
        expected_revision: Option<&str>,
    ) -> Result<FunctionInfo, StoreError> {
        // A hand-written function is packed (outside the lock) and adopted; if it became
        // managed meanwhile, the managed path runs on the next turn.
        for _ in 0..2 {
            let held = self.lock()?;
            match self.current(name)? {
                Current::Managed(stored) => {
                    check_revision(name, expected_revision, &stored.record.revision_id)?;
                    return self.update_managed_settings(&held, *stored, settings);
                }
                Current::HandWritten => {}
                _ => return Err(not_found(name)),
            }
            drop(held);
            let dir = self.registry.join(name.as_str());
            let actual = handwritten::info_for_listing(name, &dir)?.revision_id;
            check_revision(name, expected_revision, &actual)?;
            let packed = handwritten::pack(name, &dir)?;
            match self.put_code(name, &packed, Put::Adopt(settings)) {
                Err(StoreError::RevisionMismatch { .. }) if expected_revision.is_none() => {}
                other => return other.map(|u| u.info),
            }
        }
        Err(StoreError::RevisionMismatch {
            name: name.to_string(),
            expected: expected_revision.unwrap_or("any").to_owned(),
            actual: "one changing concurrently".to_owned(),
        })
    }

    fn delete(&self, name: &LambdaName) -> Result<(), StoreError> {
        let held = self.lock()?;
        let managed = match self.current(name)? {
            Current::Managed(s) => Some(s),
            Current::HandWritten => None,
            _ => return Err(not_found(name)),
        };
        let scratch = self.scratch_locked(&held)?;
        let dir = self.registry.join(name.as_str());
        // The code goes first, then the metadata: a crash between leaves metadata without
        // code, which recovery makes again (not acknowledged, so nothing is lost), never a
        // directory without metadata (which would come back as hand-written).
        if std::fs::symlink_metadata(&dir).is_ok() {
            let away = scratch.path().join("deleted");
            std::fs::rename(&dir, &away).map_err(io_err("remove", &dir))?;
            sync_dir(&self.registry)?;
        }
        if managed.is_some() {
            remove_file(&self.functions_dir(), &Self::function_file(name))?;
        }
        drop(held);
        drop(scratch);
        if managed.is_some() {
            self.collect_garbage_quietly();
        }
        Ok(())
    }

    fn publish_layer(
        &self,
        name: &LambdaName,
        archive: &[u8],
        description: Option<&str>,
        compatible_runtimes: &[String],
    ) -> Result<LayerVersionInfo, StoreError> {
        self.publish(name, archive, description, compatible_runtimes)
    }

    fn list_layers(&self) -> Result<Vec<LayerVersionInfo>, StoreError> {
        self.all_layers()
    }

    fn layer_versions(&self, name: &LambdaName) -> Result<Vec<LayerVersionInfo>, StoreError> {
        self.versions_of(name)
    }
}

/// Temporary files left in `dir` by a crash (names starting with [`TEMP_PREFIX`]).
pub(super) fn temp_files(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err("read", dir))? {
        let entry = entry.map_err(io_err("read", dir))?;
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(TEMP_PREFIX))
        {
            out.push(entry.path());
        }
    }
    Ok(out)
}
