//! [`DirStore`]: the [`FunctionStore`] over a registry directory (the layout of
//! [`super::layout`] and the module docs).
//!
//! The steps of a change are in `change.rs`, recovery in `recover.rs`.
//!
//! What is stored:
//! - the effective configuration is the settings over the archive's own `lambda.json`, key by
//!   key ([`LambdaConfig::over`]), validated as a whole; a layer named without a version is
//!   pinned to its latest version at the time of the change and written as `name:N` into the
//!   effective configuration (the settings keep the name as given); a layer or version that
//!   does not exist is refused (`Invalid`, key `layers`);
//! - the entry is the configured one, or the default for the code's files
//!   ([`LambdaConfig::entry_in`]); `has_docs` when the code has `docs/lambda.html` and
//!   `docs/lambda.yml`;
//! - `version` is 1 at creation and one more at every change of code or settings;
//!   `revision_id` is a new UUID-shaped id at each; `code_sha256` and `code_size` describe the
//!   archive as uploaded.
//!
//! Reads (`get`, `list`) take no lock: every file they read is replaced by a rename.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::change::Put;
use super::durable::{
    ensure_dir, io_err, lock, remove_file, replace_file, sync_dir, Locked, Scratch, TEMP_PREFIX,
};
use super::record::{self, FunctionRecord, StoredFunction};
use super::STORE_DIR;
use super::{handwritten, FunctionInfo, FunctionStore, LayerVersionInfo, StoreError};
use crate::archive::{Unpacked, MAX_ARCHIVE_BYTES};
use crate::lambda_config::{KeyError, LambdaConfig};
use crate::name::LambdaName;

/// Most functions a registry holds (managed and hand-written together).
pub const MAX_FUNCTIONS: usize = 10_000;

/// The store over one registry directory. Cheap to clone; every method blocks.
#[derive(Debug, Clone)]
pub struct DirStore {
    pub(super) registry: PathBuf,
    /// Whether this machine has an NVIDIA GPU: a function with `enable_gpu` is refused at
    /// deploy where it has none.
    pub(super) gpu: bool,
}

/// What [`DirStore::upload`] did.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub info: FunctionInfo,
    pub unpacked: Unpacked,
    /// Whether there was a function (or directory) of that name before.
    pub replaced: bool,
}

/// The state of a name in the registry.
#[derive(Debug)]
pub(super) enum Current {
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

pub(super) fn key_error(e: KeyError) -> StoreError {
    StoreError::Invalid {
        key: e.key,
        message: e.message,
    }
}

pub(super) fn not_found(name: &LambdaName) -> StoreError {
    StoreError::FunctionNotFound {
        name: name.to_string(),
    }
}

pub(super) fn check_revision(
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
    /// Says whether this machine has a GPU, instead of looking (tests).
    pub fn with_gpu(mut self, present: bool) -> Self {
        self.gpu = present;
        self
    }

    /// The store of `registry_dir` (an existing directory): creates `.store/` as needed and
    /// recovers from a crash of any process that used it (see `recover.rs`).
    pub fn open(registry_dir: &Path) -> Result<Self, StoreError> {
        let md = std::fs::metadata(registry_dir).map_err(io_err("open registry", registry_dir))?;
        if !md.is_dir() {
            return Err(io_err("open registry", registry_dir)(std::io::Error::from(
                std::io::ErrorKind::NotADirectory,
            )));
        }
        let store = Self {
            registry: registry_dir.to_owned(),
            gpu: crate::gpu::GpuHost::present(),
        };
        // Metadata (environment variables), archives and staging for root only; layers are
        // read by sandboxes, so their path stays traversable.
        ensure_dir(&store.store_dir(), 0o755)?;
        for (sub, mode) in [
            ("archives", 0o700),
            ("functions", 0o700),
            ("staging", 0o700),
            ("layers", 0o755),
        ] {
            ensure_dir(&store.store_dir().join(sub), mode)?;
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

    pub(super) fn functions_dir(&self) -> PathBuf {
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

    pub(super) fn function_file(name: &LambdaName) -> String {
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

    pub(super) fn write_stored(&self, stored: &StoredFunction) -> Result<(), StoreError> {
        let json = record::to_stored_json(&format!("function {}", stored.record.name), stored)?;
        replace_file(
            &self.functions_dir(),
            &format!("{}.json", stored.record.name),
            &json,
        )
    }

    pub(super) fn current(&self, name: &LambdaName) -> Result<Current, StoreError> {
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
    pub(super) fn registry_names(&self) -> Result<Vec<LambdaName>, StoreError> {
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
    pub(super) fn check_room(&self) -> Result<(), StoreError> {
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
        if eff.enable_gpu == Some(true) && !self.gpu {
            return Err(StoreError::Invalid {
                key: Some("enable_gpu".to_owned()),
                message: crate::gpu::GpuError::NoGpu.to_string(),
            });
        }
        if let Some(layers) = &mut eff.layers {
            for layer in layers.iter_mut() {
                layer.version = Some(self.resolve_layer(layer)?);
            }
        }
        LambdaConfig::from_value(&eff.to_value()).map_err(key_error)
    }

    /// The function's record (for a worker that pulls code).
    pub fn record(&self, name: &LambdaName) -> Result<FunctionRecord, StoreError> {
        Ok(FunctionRecord::from_info(&self.get(name)?))
    }

    /// Removes archives nothing refers to; logs instead of failing.
    pub(super) fn collect_garbage_quietly(&self) {
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
