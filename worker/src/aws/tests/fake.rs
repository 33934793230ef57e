//! An in-memory [`FunctionStore`] with the real one's contract: names unique, revisions
//! checked, layers referenced must exist, an archive starting with `BAD` refused as the
//! archive reader refuses one, and nothing changed by a refused call.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::archive::ArchiveError;
use crate::functions::{FunctionInfo, FunctionStore, LayerVersionInfo, StoreError};
use crate::lambda_config::LambdaConfig;
use crate::name::LambdaName;

#[derive(Debug, Default)]
struct State {
    functions: BTreeMap<LambdaName, FunctionInfo>,
    layers: BTreeMap<LambdaName, Vec<LayerVersionInfo>>,
    /// Every change counts one: revisions and times.
    changes: u64,
}

#[derive(Debug, Default)]
pub struct FakeStore {
    state: Mutex<State>,
    /// Every call fails with an I/O error while set.
    pub fail_io: AtomicBool,
    /// The next `update_settings` fails with a revision mismatch (another writer came first).
    pub race_once: AtomicBool,
}

fn check_archive(archive: &[u8]) -> Result<(String, u64), StoreError> {
    if archive.starts_with(b"BAD") {
        return Err(StoreError::Archive(ArchiveError::BadEntry {
            entry: "../x".to_owned(),
            why: "outside the archive".to_owned(),
        }));
    }
    Ok((crate::hex(&Sha256::digest(archive)), archive.len() as u64))
}

impl State {
    fn tick(&mut self) -> (String, u64) {
        self.changes += 1;
        (
            format!("rev-{}", self.changes),
            1_796_180_645_000 + self.changes,
        )
    }

    fn check_layers(&self, settings: &LambdaConfig) -> Result<(), StoreError> {
        for l in settings.layers.iter().flatten() {
            let found = self
                .layers
                .get(&l.name)
                .is_some_and(|vs| l.version.is_none_or(|v| vs.iter().any(|x| x.version == v)));
            if !found {
                return Err(StoreError::Invalid {
                    key: Some("layers".to_owned()),
                    message: format!("layer {l} does not exist"),
                });
            }
        }
        Ok(())
    }
}

impl FakeStore {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, StoreError> {
        if self.fail_io.load(Ordering::SeqCst) {
            return Err(StoreError::Io {
                op: "write",
                path: "/registry/.store/functions".into(),
                source: std::io::Error::other("disk full"),
            });
        }
        Ok(self.state.lock().unwrap())
    }

    /// The functions stored, for checking that a refused call changed nothing.
    pub fn snapshot(&self) -> Vec<FunctionInfo> {
        self.state
            .lock()
            .unwrap()
            .functions
            .values()
            .cloned()
            .collect()
    }
}

fn not_found(name: &LambdaName) -> StoreError {
    StoreError::FunctionNotFound {
        name: name.to_string(),
    }
}

fn check_revision(info: &FunctionInfo, expected: Option<&str>) -> Result<(), StoreError> {
    match expected {
        Some(e) if e != info.revision_id => Err(StoreError::RevisionMismatch {
            name: info.name.to_string(),
            expected: e.to_owned(),
            actual: info.revision_id.clone(),
        }),
        _ => Ok(()),
    }
}

impl FunctionStore for FakeStore {
    fn create(
        &self,
        name: &LambdaName,
        archive: &[u8],
        settings: &LambdaConfig,
    ) -> Result<FunctionInfo, StoreError> {
        let mut s = self.lock()?;
        if s.functions.contains_key(name) {
            return Err(StoreError::Exists {
                name: name.to_string(),
            });
        }
        let (sha, size) = check_archive(archive)?;
        s.check_layers(settings)?;
        let (revision_id, ms) = s.tick();
        let info = FunctionInfo {
            name: name.clone(),
            config: settings.clone(),
            settings: settings.clone(),
            entry: settings.entry.clone().unwrap_or_default(),
            code_sha256: sha,
            code_size: size,
            version: 1,
            revision_id,
            last_modified_ms: ms,
            has_docs: false,
        };
        s.functions.insert(name.clone(), info.clone());
        Ok(info)
    }

    fn get(&self, name: &LambdaName) -> Result<FunctionInfo, StoreError> {
        self.lock()?
            .functions
            .get(name)
            .cloned()
            .ok_or_else(|| not_found(name))
    }

    fn list(&self) -> Result<Vec<FunctionInfo>, StoreError> {
        Ok(self.lock()?.functions.values().cloned().collect())
    }

    fn update_code(
        &self,
        name: &LambdaName,
        archive: &[u8],
        expected_revision: Option<&str>,
    ) -> Result<FunctionInfo, StoreError> {
        let mut s = self.lock()?;
        let info = s
            .functions
            .get(name)
            .cloned()
            .ok_or_else(|| not_found(name))?;
        check_revision(&info, expected_revision)?;
        let (sha, size) = check_archive(archive)?;
        let (revision_id, ms) = s.tick();
        let info = FunctionInfo {
            code_sha256: sha,
            code_size: size,
            version: info.version + 1,
            revision_id,
            last_modified_ms: ms,
            ..info
        };
        s.functions.insert(name.clone(), info.clone());
        Ok(info)
    }

    fn update_settings(
        &self,
        name: &LambdaName,
        settings: &LambdaConfig,
        expected_revision: Option<&str>,
    ) -> Result<FunctionInfo, StoreError> {
        let mut s = self.lock()?;
        let info = s
            .functions
            .get(name)
            .cloned()
            .ok_or_else(|| not_found(name))?;
        if self.race_once.swap(false, Ordering::SeqCst) {
            // Another writer's change lands first.
            let (revision_id, _) = s.tick();
            let raced = FunctionInfo {
                revision_id,
                ..info.clone()
            };
            s.functions.insert(name.clone(), raced.clone());
            return Err(StoreError::RevisionMismatch {
                name: name.to_string(),
                expected: expected_revision.unwrap_or_default().to_owned(),
                actual: raced.revision_id,
            });
        }
        check_revision(&info, expected_revision)?;
        s.check_layers(settings)?;
        let (revision_id, ms) = s.tick();
        let info = FunctionInfo {
            config: settings.clone(),
            settings: settings.clone(),
            entry: settings.entry.clone().unwrap_or_default(),
            version: info.version + 1,
            revision_id,
            last_modified_ms: ms,
            ..info
        };
        s.functions.insert(name.clone(), info.clone());
        Ok(info)
    }

    fn delete(&self, name: &LambdaName) -> Result<(), StoreError> {
        let mut s = self.lock()?;
        s.functions
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| not_found(name))
    }

    fn publish_layer(
        &self,
        name: &LambdaName,
        archive: &[u8],
        description: Option<&str>,
        compatible_runtimes: &[String],
    ) -> Result<LayerVersionInfo, StoreError> {
        let mut s = self.lock()?;
        let (sha, size) = check_archive(archive)?;
        let (_, ms) = s.tick();
        let versions = s.layers.entry(name.clone()).or_default();
        let v = LayerVersionInfo {
            name: name.clone(),
            version: versions.len() as u64 + 1,
            description: description.map(str::to_owned),
            compatible_runtimes: compatible_runtimes.to_vec(),
            code_sha256: sha,
            code_size: size,
            created_ms: ms,
        };
        versions.push(v.clone());
        Ok(v)
    }

    fn list_layers(&self) -> Result<Vec<LayerVersionInfo>, StoreError> {
        Ok(self
            .lock()?
            .layers
            .values()
            .filter_map(|vs| vs.last().cloned())
            .collect())
    }

    fn layer_versions(&self, name: &LambdaName) -> Result<Vec<LayerVersionInfo>, StoreError> {
        self.lock()?
            .layers
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::LayerNotFound {
                name: name.to_string(),
                version: None,
            })
    }
}
