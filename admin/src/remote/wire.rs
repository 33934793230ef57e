//! The JSON the registry server answers, as far as the remote store reads it: AWS's shapes
//! (`ListFunctionsResponse`, `LayerVersion`, `ListLayersResponse`, ...; other members are
//! ignored) and the pull endpoint's function record ([`worker::functions::FunctionRecord`]).

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use worker::functions::{LayerVersionInfo, StoreError};
use worker::http_client::Response;
use worker::name::LambdaName;

const TIMESTAMP_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3][offset_hour sign:mandatory][offset_minute]"
);

/// An answer that is not what the operation returns.
fn bad_answer(what: &str, message: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid {
        key: None,
        message: format!("the registry server's answer to {what} is not valid: {message}"),
    }
}

/// The JSON body of `r` as `T`.
pub fn parse<T: DeserializeOwned>(r: &Response, what: &str) -> Result<T, StoreError> {
    serde_json::from_slice(&r.bytes).map_err(|e| bad_answer(what, e))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListFunctions {
    #[serde(default)]
    pub functions: Vec<FunctionName>,
    pub next_marker: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionName {
    pub function_name: String,
}

/// `FunctionConfiguration`, the member read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionConfiguration {
    pub function_arn: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerContent {
    pub code_sha256: String,
    pub code_size: u64,
}

/// `PublishLayerVersionResponse` and `GetLayerVersionResponse`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerVersion {
    pub content: LayerContent,
    pub version: u64,
    #[serde(default)]
    pub description: String,
    pub created_date: String,
    #[serde(default)]
    pub compatible_runtimes: Vec<String>,
}

impl LayerVersion {
    pub fn into_info(self, name: &LambdaName, what: &str) -> Result<LayerVersionInfo, StoreError> {
        Ok(LayerVersionInfo {
            name: name.clone(),
            version: self.version,
            description: Some(self.description).filter(|d| !d.is_empty()),
            compatible_runtimes: self.compatible_runtimes,
            code_sha256: sha256_hex(&self.content.code_sha256).map_err(|e| bad_answer(what, e))?,
            code_size: self.content.code_size,
            created_ms: timestamp_ms(&self.created_date).map_err(|e| bad_answer(what, e))?,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerVersionItem {
    pub version: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayersListItem {
    pub layer_name: String,
    pub latest_matching_version: LayerVersionItem,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListLayers {
    #[serde(default)]
    pub layers: Vec<LayersListItem>,
    pub next_marker: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListLayerVersions {
    #[serde(default)]
    pub layer_versions: Vec<LayerVersionItem>,
    pub next_marker: Option<String>,
}

/// A value in the server's answer that is not what AWS writes there.
#[derive(Debug, thiserror::Error)]
pub enum BadValue {
    #[error("CodeSha256 {value:?} is not base64: {source}")]
    NotBase64 {
        value: String,
        source: base64::DecodeError,
    },
    #[error("CodeSha256 {value:?} is not 32 bytes")]
    NotSha256 { value: String },
    #[error("{value:?} is not a timestamp like 2026-12-02T03:04:05.007+0000: {source}")]
    NotTimestamp {
        value: String,
        source: time::error::Parse,
    },
    #[error("{value:?} is before 1970")]
    BeforeEpoch { value: String },
}

/// AWS's base64 `CodeSha256` as the store's lower-case hex.
pub fn sha256_hex(base64: &str) -> Result<String, BadValue> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(base64)
        .map_err(|source| BadValue::NotBase64 {
            value: base64.to_owned(),
            source,
        })?;
    if bytes.len() != 32 {
        return Err(BadValue::NotSha256 {
            value: base64.to_owned(),
        });
    }
    Ok(worker::hex(&bytes))
}

/// `2026-12-02T03:04:05.007+0000` in milliseconds since the Unix epoch.
pub fn timestamp_ms(raw: &str) -> Result<u64, BadValue> {
    let t = time::OffsetDateTime::parse(raw, TIMESTAMP_FORMAT).map_err(|source| {
        BadValue::NotTimestamp {
            value: raw.to_owned(),
            source,
        }
    })?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| BadValue::BeforeEpoch {
        value: raw.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_timestamps_as_aws_writes_them() {
        assert_eq!(
            sha256_hex("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=").unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(sha256_hex("AAAA").is_err());
        assert!(sha256_hex("not base64!").is_err());
        assert_eq!(
            timestamp_ms("2026-12-02T03:04:05.007+0000").unwrap(),
            1_796_180_645_007
        );
        assert_eq!(timestamp_ms("1970-01-01T00:00:00.000+0000").unwrap(), 0);
        assert!(timestamp_ms("yesterday").is_err());
    }

    #[test]
    fn a_layer_version_answer_becomes_its_info() {
        let text = r#"{"Content": {"Location": "http://h/registry/archives/x",
            "CodeSha256": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", "CodeSize": 22},
            "LayerArn": "arn:aws:lambda:us-east-1:000000000000:layer:common",
            "LayerVersionArn": "arn:aws:lambda:us-east-1:000000000000:layer:common:3",
            "Description": "", "CreatedDate": "2026-12-02T03:04:05.007+0000", "Version": 3,
            "CompatibleRuntimes": ["python3.12"], "CompatibleArchitectures": ["x86_64"]}"#;
        let v: LayerVersion = serde_json::from_str(text).unwrap();
        let name = LambdaName::parse("common").unwrap();
        let info = v.into_info(&name, "PublishLayerVersion").unwrap();
        assert_eq!(info.version, 3);
        assert_eq!(info.description, None);
        assert_eq!(info.code_size, 22);
        assert_eq!(info.created_ms, 1_796_180_645_007);
        assert_eq!(info.compatible_runtimes, ["python3.12"]);
    }
}
