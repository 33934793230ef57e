//! Layers in the store: `.store/layers/<name>/<N>.json` (the record, written first: the commit
//! point) and `.store/layers/<name>/<N>/` (the unpacked files, renamed into place after), so
//! a worker resolving a layer only ever finds a complete, acknowledged version.

use std::path::PathBuf;

use super::durable::{ensure_dir, io_err, replace_file, sync_dir, sync_filesystem, Locked};
use super::record::{self, LayerRecord, StoredLayer};
use super::store::{now_ms, sha256_hex, DirStore};
use super::{layout, LayerVersionInfo, StoreError};
use crate::archive;
use crate::lambda_config::LayerRef;
use crate::name::LambdaName;

/// Most layers (names) a store holds.
pub const MAX_LAYERS: usize = 1000;
/// Most versions one layer may have.
pub const MAX_LAYER_VERSIONS: u64 = 1000;
/// Most compatible runtimes listed on a layer version (as AWS).
const MAX_RUNTIMES: usize = 15;
const MAX_DESCRIPTION: usize = 256;

impl DirStore {
    fn layers_root(&self) -> PathBuf {
        self.store_dir().join("layers")
    }

    /// The versions of `name` that have a record, sorted; empty when none.
    pub(super) fn layer_version_numbers(&self, name: &LambdaName) -> Result<Vec<u64>, StoreError> {
        let root = layout::layer_root(self.registry_dir(), name);
        let entries = match std::fs::read_dir(&root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read", &root)(e)),
        };
        let mut versions = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("read", &root))?;
            let file_name = entry.file_name();
            let n = file_name
                .to_str()
                .and_then(|s| s.strip_suffix(".json"))
                .and_then(|s| s.parse::<u64>().ok());
            if let Some(n) = n.filter(|&n| n >= 1) {
                versions.push(n);
            }
            if versions.len() as u64 > MAX_LAYER_VERSIONS {
                break;
            }
        }
        versions.sort_unstable();
        Ok(versions)
    }

    /// The record of version `version` of `name`.
    pub(super) fn read_layer(
        &self,
        name: &LambdaName,
        version: u64,
    ) -> Result<StoredLayer, StoreError> {
        let path = layout::layer_root(self.registry_dir(), name).join(format!("{version}.json"));
        match crate::files::read_regular_file(&path, record::MAX_RECORD_BYTES) {
            Ok(Some(text)) => record::parse_stored(&path, &text),
            Ok(None) => Err(StoreError::LayerNotFound {
                name: name.to_string(),
                version: Some(version),
            }),
            Err(e) => Err(StoreError::Invalid {
                key: None,
                message: format!("{}: {e}", path.display()),
            }),
        }
    }

    /// The version a function's reference means now: its own, which must exist, or the latest.
    pub(super) fn resolve_layer(&self, layer: &LayerRef) -> Result<u64, StoreError> {
        let versions = self.layer_version_numbers(&layer.name)?;
        let refuse = |message: String| StoreError::Invalid {
            key: Some("layers".to_owned()),
            message,
        };
        match layer.version {
            Some(v) if versions.contains(&v) => Ok(v),
            Some(v) if versions.is_empty() => Err(refuse(format!(
                "layer {} does not exist (wanted version {v})",
                layer.name
            ))),
            Some(v) => Err(refuse(format!(
                "layer {} has no version {v} (it has {})",
                layer.name,
                versions
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            None => versions
                .last()
                .copied()
                .ok_or_else(|| refuse(format!("layer {} does not exist", layer.name))),
        }
    }

    /// Every layer name with at least one directory in the store, sorted (bounded).
    fn layer_names(&self) -> Result<Vec<LambdaName>, StoreError> {
        let root = self.layers_root();
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&root).map_err(io_err("read", &root))? {
            let entry = entry.map_err(io_err("read", &root))?;
            if let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|s| LambdaName::parse(s).ok())
            {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    names.push(name);
                }
            }
            if names.len() > MAX_LAYERS {
                return Err(StoreError::Invalid {
                    key: None,
                    message: format!("{} holds more than {MAX_LAYERS} layers", root.display()),
                });
            }
        }
        names.sort();
        Ok(names)
    }

    pub(super) fn publish(
        &self,
        name: &LambdaName,
        archive_bytes: &[u8],
        description: Option<&str>,
        compatible_runtimes: &[String],
    ) -> Result<LayerVersionInfo, StoreError> {
        check_layer_fields(description, compatible_runtimes)?;
        let sha = sha256_hex(archive_bytes);
        let scratch = self.scratch()?;
        let code = scratch.subdir("code")?;
        archive::unpack(archive_bytes, &code)?;
        let staged_archive = scratch.path().join("archive");
        super::durable::write_new_file(&staged_archive, archive_bytes, 0o600)?;
        sync_filesystem(scratch.path())?;

        let held = self.lock()?;
        let root = layout::layer_root(self.registry_dir(), name);
        let versions = self.layer_version_numbers(name)?;
        if versions.is_empty() && !root.exists() && self.layer_names()?.len() >= MAX_LAYERS {
            return Err(StoreError::Invalid {
                key: None,
                message: format!("the store already holds {MAX_LAYERS} layers, the most it may"),
            });
        }
        if versions.len() as u64 >= MAX_LAYER_VERSIONS {
            return Err(StoreError::Invalid {
                key: None,
                message: format!(
                    "layer {name} already has {MAX_LAYER_VERSIONS} versions, the most it may"
                ),
            });
        }
        ensure_dir(&root, 0o755)?;
        // A number no record and no directory has taken.
        let taken_dir = std::fs::read_dir(&root)
            .map_err(io_err("read", &root))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        let version = versions.last().copied().unwrap_or(0).max(taken_dir) + 1;
        self.store_archive(&held, &staged_archive, &sha)?;
        let info = LayerVersionInfo {
            name: name.clone(),
            version,
            description: description.map(str::to_owned),
            compatible_runtimes: compatible_runtimes.to_vec(),
            code_sha256: sha,
            code_size: archive_bytes.len() as u64,
            created_ms: now_ms(),
        };
        let stored = StoredLayer {
            format: record::FORMAT,
            record: LayerRecord::from_info(&info),
        };
        let json = record::to_stored_json(&format!("layer {name} version {version}"), &stored)?;
        replace_file(&root, &format!("{version}.json"), &json)?;
        let target = root.join(version.to_string());
        if let Err(e) = std::fs::rename(&code, &target) {
            // Not acknowledged: take the record back.
            let _ = super::durable::remove_file(&root, &format!("{version}.json"));
            return Err(io_err("move into", &target)(e));
        }
        sync_dir(&root)?;
        drop(held);
        Ok(info)
    }

    pub(super) fn all_layers(&self) -> Result<Vec<LayerVersionInfo>, StoreError> {
        let mut out = Vec::new();
        for name in self.layer_names()? {
            if let Some(&latest) = self.layer_version_numbers(&name)?.last() {
                out.push(self.read_layer(&name, latest)?.record.into_info()?);
            }
        }
        Ok(out)
    }

    pub(super) fn versions_of(
        &self,
        name: &LambdaName,
    ) -> Result<Vec<LayerVersionInfo>, StoreError> {
        let versions = self.layer_version_numbers(name)?;
        if versions.is_empty() {
            return Err(StoreError::LayerNotFound {
                name: name.to_string(),
                version: None,
            });
        }
        versions
            .into_iter()
            .map(|v| self.read_layer(name, v)?.record.into_info())
            .collect()
    }

    /// Re-creates the directory of every layer version whose record has none (a crash
    /// between the two steps of publishing). Under the store's lock.
    pub(super) fn recover_layers(&self, held: &Locked) -> Result<usize, StoreError> {
        let mut fixed = 0;
        for name in self.layer_names()? {
            let root = layout::layer_root(self.registry_dir(), &name);
            super::recover::remove_temp_files(&root)?;
            for version in self.layer_version_numbers(&name)? {
                let dir = root.join(version.to_string());
                if std::fs::symlink_metadata(&dir).is_ok() {
                    continue;
                }
                let stored = self.read_layer(&name, version)?;
                let bytes = match self.read_archive(&stored.record.code_sha256) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        tracing::error!(layer = %name, version, "cannot restore a layer version: {e}");
                        continue;
                    }
                };
                let scratch = self.scratch_locked(held)?;
                let code = scratch.subdir("code")?;
                archive::unpack(&bytes, &code)?;
                sync_filesystem(&code)?;
                std::fs::rename(&code, &dir).map_err(io_err("move into", &dir))?;
                sync_dir(&root)?;
                fixed += 1;
            }
        }
        Ok(fixed)
    }
}

fn check_layer_fields(description: Option<&str>, runtimes: &[String]) -> Result<(), StoreError> {
    if description.is_some_and(|d| d.chars().count() > MAX_DESCRIPTION) {
        return Err(StoreError::Invalid {
            key: Some("description".to_owned()),
            message: format!("must be at most {MAX_DESCRIPTION} characters"),
        });
    }
    if runtimes.len() > MAX_RUNTIMES {
        return Err(StoreError::Invalid {
            key: Some("compatible_runtimes".to_owned()),
            message: format!("at most {MAX_RUNTIMES}, not {}", runtimes.len()),
        });
    }
    if let Some(bad) = runtimes
        .iter()
        .find(|r| r.is_empty() || r.len() > 64 || !r.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(StoreError::Invalid {
            key: Some("compatible_runtimes".to_owned()),
            message: format!("{bad:?} is not a runtime name"),
        });
    }
    Ok(())
}
