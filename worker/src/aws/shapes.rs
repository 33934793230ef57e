//! The JSON the API answers with, member for member as botocore's `lambda` model names them
//! (`FunctionConfiguration`, `GetFunctionResponse`, `LayerVersionsListItem`, ...), built from
//! the store's [`FunctionInfo`] and [`LayerVersionInfo`].

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde::Serialize;

use super::arn::{Arns, LATEST};
use crate::functions::{FunctionInfo, LayerVersionInfo};
use crate::lambda_config::{LambdaLimits, LayerRef};

const TIMESTAMP_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]+0000"
);

/// `2026-12-02T03:04:05.000+0000`, as AWS writes `LastModified` and `CreatedDate`.
pub fn timestamp(ms_since_epoch: u64) -> String {
    let t = SystemTime::UNIX_EPOCH + Duration::from_millis(ms_since_epoch);
    time::OffsetDateTime::from(t)
        .format(TIMESTAMP_FORMAT)
        .unwrap_or_default()
}

/// A SHA-256 in lower-case hex as AWS reports it: base64 of the 32 bytes; "" for one that is
/// not 64 hex digits (a function placed in the registry by hand has no archive).
pub fn sha256_base64(hex: &str) -> String {
    if hex.len() != 64 {
        return String::new();
    }
    let mut bytes = Vec::with_capacity(32);
    for pair in hex.as_bytes().chunks(2) {
        let Some(b) = std::str::from_utf8(pair)
            .ok()
            .and_then(|p| u8::from_str_radix(p, 16).ok())
        else {
            return String::new();
        };
        bytes.push(b);
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The URL of an archive, served at `/registry/archives/<sha256 hex>` by the host the request
/// was sent to; `None` when the request named no usable host or the code has no archive.
pub fn archive_location(host: Option<&str>, sha256_hex: &str) -> Option<String> {
    let host = host?;
    let host_ok = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b));
    let sha_ok = sha256_hex.len() == 64 && sha256_hex.bytes().all(|b| b.is_ascii_hexdigit());
    (host_ok && sha_ok).then(|| format!("http://{host}/registry/archives/{sha256_hex}"))
}

/// What the answers need beyond the stored records.
#[derive(Debug)]
pub struct Context<'a> {
    pub arns: &'a Arns,
    /// The worker's limits, for what a function does not set.
    pub defaults: &'a LambdaLimits,
    /// `Runtime` of a function that does not name one.
    pub default_runtime: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnvironmentResponse {
    pub variables: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerReference {
    pub arn: String,
    pub code_size: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TracingConfig {
    pub mode: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EphemeralStorage {
    pub size: u64,
}

/// `FunctionConfiguration`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionConfiguration {
    pub function_name: String,
    pub function_arn: String,
    pub runtime: String,
    pub role: String,
    pub handler: String,
    pub code_size: u64,
    pub description: String,
    pub timeout: u64,
    pub memory_size: u64,
    pub last_modified: String,
    pub code_sha256: String,
    pub version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<EnvironmentResponse>,
    pub tracing_config: TracingConfig,
    pub revision_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerReference>,
    pub state: &'static str,
    pub last_update_status: &'static str,
    pub package_type: &'static str,
    pub architectures: [&'static str; 1],
    pub ephemeral_storage: EphemeralStorage,
}

impl FunctionConfiguration {
    /// The configuration of `info`; `layer` resolves a layer reference to its version and
    /// code size (`None` for one that no longer exists: reported with size 0).
    pub fn new(
        info: &FunctionInfo,
        ctx: &Context<'_>,
        layer: &mut dyn FnMut(&LayerRef) -> Option<(u64, u64)>,
    ) -> Self {
        let c = &info.config;
        let environment =
            c.environment
                .as_ref()
                .filter(|e| !e.is_empty())
                .map(|e| EnvironmentResponse {
                    variables: e.clone(),
                });
        let layers = c
            .layers
            .iter()
            .flatten()
            .map(|r| {
                let (version, size) = match layer(r) {
                    Some((v, size)) => (Some(v), size),
                    None => (r.version, 0),
                };
                let arn = match version {
                    Some(v) => ctx.arns.layer_version(&r.name, v),
                    None => ctx.arns.layer(&r.name),
                };
                LayerReference {
                    arn,
                    code_size: size,
                }
            })
            .collect();
        Self {
            function_name: info.name.to_string(),
            function_arn: ctx.arns.function(&info.name),
            runtime: c
                .runtime
                .clone()
                .unwrap_or_else(|| ctx.default_runtime.to_owned()),
            role: ctx.arns.role(),
            handler: info.entry.to_string(),
            code_size: info.code_size,
            description: c.description.clone().unwrap_or_default(),
            timeout: c.timeout_s.unwrap_or(ctx.defaults.timeout_s),
            memory_size: c.memory_mb.unwrap_or(ctx.defaults.memory_mb),
            last_modified: timestamp(info.last_modified_ms),
            code_sha256: sha256_base64(&info.code_sha256),
            version: LATEST,
            environment,
            tracing_config: TracingConfig {
                mode: "PassThrough",
            },
            revision_id: info.revision_id.clone(),
            layers,
            state: "Active",
            last_update_status: "Successful",
            package_type: "Zip",
            architectures: ["x86_64"],
            ephemeral_storage: EphemeralStorage {
                size: c.tmp_mb.unwrap_or(ctx.defaults.tmp_mb),
            },
        }
    }
}

/// `FunctionCodeLocation`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionCodeLocation {
    pub repository_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// `GetFunctionResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetFunctionResponse {
    pub configuration: FunctionConfiguration,
    pub code: FunctionCodeLocation,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
}

/// `ListFunctionsResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListFunctionsResponse {
    pub functions: Vec<FunctionConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

/// `ListTagsResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsResponse {
    pub tags: BTreeMap<String, String>,
}

/// `LayerVersionContentOutput`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerVersionContent {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    pub code_sha256: String,
    pub code_size: u64,
}

/// `GetLayerVersionResponse` and `PublishLayerVersionResponse` (the same members).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerVersion {
    pub content: LayerVersionContent,
    pub layer_arn: String,
    pub layer_version_arn: String,
    pub description: String,
    pub created_date: String,
    pub version: u64,
    pub compatible_runtimes: Vec<String>,
    pub compatible_architectures: [&'static str; 1],
}

impl LayerVersion {
    pub fn new(v: &LayerVersionInfo, arns: &Arns, host: Option<&str>) -> Self {
        Self {
            content: LayerVersionContent {
                location: archive_location(host, &v.code_sha256),
                code_sha256: sha256_base64(&v.code_sha256),
                code_size: v.code_size,
            },
            layer_arn: arns.layer(&v.name),
            layer_version_arn: arns.layer_version(&v.name, v.version),
            description: v.description.clone().unwrap_or_default(),
            created_date: timestamp(v.created_ms),
            version: v.version,
            compatible_runtimes: v.compatible_runtimes.clone(),
            compatible_architectures: ["x86_64"],
        }
    }
}

/// `LayerVersionsListItem`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerVersionsListItem {
    pub layer_version_arn: String,
    pub version: u64,
    pub description: String,
    pub created_date: String,
    pub compatible_runtimes: Vec<String>,
    pub compatible_architectures: [&'static str; 1],
}

impl LayerVersionsListItem {
    pub fn new(v: &LayerVersionInfo, arns: &Arns) -> Self {
        Self {
            layer_version_arn: arns.layer_version(&v.name, v.version),
            version: v.version,
            description: v.description.clone().unwrap_or_default(),
            created_date: timestamp(v.created_ms),
            compatible_runtimes: v.compatible_runtimes.clone(),
            compatible_architectures: ["x86_64"],
        }
    }
}

/// `LayersListItem`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayersListItem {
    pub layer_name: String,
    pub layer_arn: String,
    pub latest_matching_version: LayerVersionsListItem,
}

/// `ListLayersResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListLayersResponse {
    pub layers: Vec<LayersListItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

/// `ListLayerVersionsResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListLayerVersionsResponse {
    pub layer_versions: Vec<LayerVersionsListItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_hashes_as_aws_writes_them() {
        assert_eq!(timestamp(1_796_180_645_007), "2026-12-02T03:04:05.007+0000");
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000+0000");
        // sha256("") in hex and in base64.
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            sha256_base64(empty),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert_eq!(sha256_base64(""), "");
        assert_eq!(sha256_base64(&"z".repeat(64)), "");
    }

    #[test]
    fn archive_locations_use_the_request_host() {
        let sha = "ab".repeat(32);
        assert_eq!(
            archive_location(Some("127.0.0.1:9000"), &sha).unwrap(),
            format!("http://127.0.0.1:9000/registry/archives/{sha}")
        );
        assert_eq!(archive_location(None, &sha), None);
        assert_eq!(archive_location(Some("evil/path"), &sha), None);
        assert_eq!(archive_location(Some("h"), "not-a-hash"), None);
    }
}
