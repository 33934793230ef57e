//! Functions and layer versions as JSON: what the store keeps in `.store/functions/<name>.json`
//! and `.store/layers/<name>/<N>.json`, and what a registry server sends to workers that pull
//! code ([`FunctionRecord`], [`LayerRecord`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{FunctionInfo, LayerVersionInfo, StoreError};
use crate::lambda_config::{Entry, LambdaConfig};
use crate::name::LambdaName;

/// The on-disk format written; a record of a later one is refused.
pub(super) const FORMAT: u32 = 1;
/// Largest record read, in bytes.
pub(super) const MAX_RECORD_BYTES: u64 = 1024 * 1024;

/// A [`FunctionInfo`] as JSON; the configurations are `lambda.json` objects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionRecord {
    pub name: String,
    pub version: u64,
    pub revision_id: String,
    pub last_modified_ms: u64,
    pub code_sha256: String,
    pub code_size: u64,
    pub has_docs: bool,
    /// `module.function`.
    pub entry: String,
    /// The effective configuration: what `<name>/lambda.json` holds.
    pub config: Value,
    /// What the API set.
    pub settings: Value,
}

fn invalid(what: &str, message: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid {
        key: None,
        message: format!("{what}: {message}"),
    }
}

fn config_of(what: &str, field: &str, value: &Value) -> Result<LambdaConfig, StoreError> {
    LambdaConfig::from_value(value).map_err(|e| invalid(&format!("{what} {field}"), e))
}

impl FunctionRecord {
    pub fn from_info(info: &FunctionInfo) -> Self {
        Self {
            name: info.name.to_string(),
            version: info.version,
            revision_id: info.revision_id.clone(),
            last_modified_ms: info.last_modified_ms,
            code_sha256: info.code_sha256.clone(),
            code_size: info.code_size,
            has_docs: info.has_docs,
            entry: info.entry.to_string(),
            config: info.config.to_value(),
            settings: info.settings.to_value(),
        }
    }

    /// Validates every field back into a [`FunctionInfo`]; an error names the function and
    /// the field.
    pub fn into_info(self) -> Result<FunctionInfo, StoreError> {
        let what = format!("the record of function {:?}", self.name);
        let name = LambdaName::parse(&self.name).map_err(|e| invalid(&what, e))?;
        let entry = Entry::parse(&self.entry).map_err(|e| invalid(&what, format!("entry {e}")))?;
        if !is_sha256_hex(&self.code_sha256) {
            return Err(invalid(
                &what,
                "code_sha256 is not 64 lower-case hex digits",
            ));
        }
        Ok(FunctionInfo {
            config: config_of(&what, "config", &self.config)?,
            settings: config_of(&what, "settings", &self.settings)?,
            name,
            entry,
            code_sha256: self.code_sha256,
            code_size: self.code_size,
            version: self.version,
            revision_id: self.revision_id,
            last_modified_ms: self.last_modified_ms,
            has_docs: self.has_docs,
        })
    }

    /// The record as JSON text.
    pub fn to_json(&self) -> Result<String, StoreError> {
        serde_json::to_string(self).map_err(|e| invalid(&format!("function {}", self.name), e))
    }

    /// A record from JSON text (what [`Self::to_json`] wrote).
    pub fn from_json(text: &str) -> Result<Self, StoreError> {
        serde_json::from_str(text).map_err(|e| invalid("a function record", e))
    }
}

/// A [`LayerVersionInfo`] as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub name: String,
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub compatible_runtimes: Vec<String>,
    pub code_sha256: String,
    pub code_size: u64,
    pub created_ms: u64,
}

impl LayerRecord {
    pub fn from_info(info: &LayerVersionInfo) -> Self {
        Self {
            name: info.name.to_string(),
            version: info.version,
            description: info.description.clone(),
            compatible_runtimes: info.compatible_runtimes.clone(),
            code_sha256: info.code_sha256.clone(),
            code_size: info.code_size,
            created_ms: info.created_ms,
        }
    }

    pub fn into_info(self) -> Result<LayerVersionInfo, StoreError> {
        let what = format!(
            "the record of layer {:?} version {}",
            self.name, self.version
        );
        let name = LambdaName::parse(&self.name).map_err(|e| invalid(&what, e))?;
        if !is_sha256_hex(&self.code_sha256) {
            return Err(invalid(
                &what,
                "code_sha256 is not 64 lower-case hex digits",
            ));
        }
        Ok(LayerVersionInfo {
            name,
            version: self.version,
            description: self.description,
            compatible_runtimes: self.compatible_runtimes,
            code_sha256: self.code_sha256,
            code_size: self.code_size,
            created_ms: self.created_ms,
        })
    }
}

/// What `.store/functions/<name>.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredFunction {
    pub format: u32,
    #[serde(flatten)]
    pub record: FunctionRecord,
    /// The archive's own `lambda.json` (an empty object when it has none): the base the
    /// settings go over when they change.
    pub archive_config: Value,
}

/// What `.store/layers/<name>/<N>.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredLayer {
    pub format: u32,
    #[serde(flatten)]
    pub record: LayerRecord,
}

/// A stored record as the indented JSON written to disk.
pub(super) fn to_stored_json<T: Serialize>(what: &str, stored: &T) -> Result<Vec<u8>, StoreError> {
    let mut json = serde_json::to_vec_pretty(stored).map_err(|e| invalid(what, e))?;
    json.push(b'\n');
    Ok(json)
}

/// Parses a stored record, refusing a later format.
pub(super) fn parse_stored<T: serde::de::DeserializeOwned + HasFormat>(
    path: &std::path::Path,
    text: &str,
) -> Result<T, StoreError> {
    let what = format!("{}", path.display());
    let stored: T = serde_json::from_str(text).map_err(|e| invalid(&what, e))?;
    if stored.format() > FORMAT {
        return Err(invalid(
            &what,
            format!(
                "written in format {}, newer than this version reads ({FORMAT})",
                stored.format()
            ),
        ));
    }
    Ok(stored)
}

pub(super) trait HasFormat {
    fn format(&self) -> u32;
}

impl HasFormat for StoredFunction {
    fn format(&self) -> u32 {
        self.format
    }
}

impl HasFormat for StoredLayer {
    fn format(&self) -> u32 {
        self.format
    }
}

/// Whether `s` is a SHA-256 in lower-case hex (a content address).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_is_validated() {
        let info = FunctionInfo {
            name: LambdaName::parse("hello").unwrap(),
            config: LambdaConfig::parse(r#"{"memory_mb": 256, "layers": ["common:2"]}"#).unwrap(),
            settings: LambdaConfig::parse(r#"{"memory_mb": 256, "layers": ["common"]}"#).unwrap(),
            entry: Entry::luna(),
            code_sha256: "ab".repeat(32),
            code_size: 10,
            version: 3,
            revision_id: "r".into(),
            last_modified_ms: 5,
            has_docs: true,
        };
        let rec = FunctionRecord::from_info(&info);
        let back = FunctionRecord::from_json(&rec.to_json().unwrap()).unwrap();
        assert_eq!(back.clone().into_info().unwrap(), info);
        let mut bad = back.clone();
        bad.config = serde_json::json!({"memory_mb": 100});
        let e = bad.into_info().unwrap_err().to_string();
        assert!(
            e.contains("hello") && e.contains("config") && e.contains("memory_mb"),
            "{e}"
        );
        let mut bad = back;
        bad.code_sha256 = "AB".repeat(32);
        assert!(bad.into_info().is_err());
        assert!(FunctionRecord::from_json("{").is_err());
    }
}
