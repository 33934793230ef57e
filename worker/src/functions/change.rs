//! Changing a function: its code (create, update, upload), its settings, and making its
//! code directory again from its archive.
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
//!
//! Changing only the settings writes the metadata (the commit point), then replaces the code
//! directory's `lambda.json` and marker, each by one rename from the staging directory.
//! Deleting moves the code directory away first, then removes the metadata.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::durable::{io_err, remove_file, sync_dir, sync_filesystem, Locked};
use super::record::{self, FunctionRecord, StoredFunction};
use super::store::{
    check_revision, key_error, not_found, now_ms, sha256_hex, Current, DirStore, Uploaded,
};
use super::{code, handwritten, FunctionInfo, StoreError};
use crate::archive;
use crate::lambda_config::{LambdaConfig, LAMBDA_CONFIG_FILE};
use crate::name::LambdaName;

/// What the code change is, checked under the lock.
#[derive(Debug, Clone, Copy)]
pub(super) enum Put<'a> {
    Create(&'a LambdaConfig),
    UpdateCode(Option<&'a str>),
    /// Create or replace code, keeping settings (`admin upload`); `true`: the entry's module
    /// must be in the code.
    Upload(bool),
    /// A hand-written function becoming managed with new settings.
    Adopt(&'a LambdaConfig),
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

impl DirStore {
    /// Steps 1 to 7 of the module docs.
    pub(super) fn put_code(
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
        // A managed function's directory may be missing (removed by hand): then a rename.
        let exists = std::fs::symlink_metadata(&target).is_ok();
        if let Err(e) = self.swap_in(&code, &target, exists) {
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
    /// old code lands at `fresh`), a rename otherwise; then flushes the registry. An error
    /// means nothing was moved.
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
        // Moved: a failure to flush now is not a reason to take the change back (the
        // metadata already says it happened, and recovery makes the directory if need be).
        if let Err(e) = sync_dir(&self.registry) {
            tracing::warn!(registry = %self.registry.display(), "{e}");
        }
        Ok(())
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

    pub(super) fn update_managed_settings(
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
        // or the new lambda.json, never part of one. lambda.json goes first: a crash before
        // the marker follows leaves the old marker, and recovery makes the directory again.
        let scratch = self.scratch_locked(held)?;
        let staged_config = scratch.path().join(LAMBDA_CONFIG_FILE);
        let staged_marker = scratch.path().join(code::REVISION_FILE);
        let config_target = dir.join(LAMBDA_CONFIG_FILE);
        let before_any_rename = super::durable::write_new_file(
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
            std::fs::rename(&staged_config, &config_target)
                .map_err(io_err("replace", &config_target))
        });
        if let Err(e) = before_any_rename {
            // Nothing of the directory changed: the change is taken back.
            self.roll_back(&name, Some(&stored));
            return Err(e);
        }
        let marker_target = dir.join(code::REVISION_FILE);
        if let Err(e) = std::fs::rename(&staged_marker, &marker_target) {
            // lambda.json is the new one already: finish the change by making the directory
            // again; failing that, recovery does at the next open (the marker is the old one).
            tracing::warn!(function = %name, "cannot replace {}: {e}", marker_target.display());
            self.rematerialize(held, &new)?;
        }
        if let Err(e) = sync_dir(&dir) {
            tracing::warn!(function = %name, "{e}");
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
