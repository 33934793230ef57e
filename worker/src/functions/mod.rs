//! Functions and layers as the platform stores them: code (an archive) plus configuration,
//! versioned.
//!
//! A [`FunctionStore`] creates, reads, updates and deletes them. Every front end goes through
//! it: the AWS Lambda management API (on the registry server and on every worker), the
//! `admin` commands, and `admin upload`. The store over a registry directory keeps the
//! layout workers read (see [`layout`]):
//!
//! ```text
//! <registry>/<name>/                      the function's code, unpacked, with its effective lambda.json
//! <registry>/.store/archives/<sha256>     archives as uploaded, content-addressed
//! <registry>/.store/functions/<name>.json metadata: version, settings, code hash and size
//! <registry>/.store/layers/<name>/<N>/    layer version N, unpacked (read-only in sandboxes)
//! <registry>/.store/layers/<name>/<N>.json
//! <registry>/.store/staging/              one directory per operation in progress
//! <registry>/.store/lock                  flock'ed while anything changes
//! ```
//!
//! [`DirStore`] is the store over a registry directory (`store.rs`; `change.rs`: the steps of
//! a change; `recover.rs`: what opening mends after a crash; `code.rs`: the code directory and
//! its revision marker; `handwritten.rs`: directories placed by hand; `layers.rs`).
//!
//! The effective configuration of a function is what the API set ([`FunctionInfo::settings`],
//! key by key) over the archive's own `lambda.json`.

mod change;
mod code;
mod durable;
mod handwritten;
mod layers;
pub mod layout;
mod record;
mod recover;
mod store;

#[cfg(test)]
mod concurrency_tests;
#[cfg(test)]
mod recover_tests;
#[cfg(test)]
mod store_tests;

use crate::lambda_config::{Entry, LambdaConfig};
use crate::name::LambdaName;

pub use code::{materialize, revision_of, REVISION_FILE};
pub use layers::{MAX_LAYERS as MAX_STORED_LAYERS, MAX_LAYER_VERSIONS};
pub use layout::{layer_dir, LayerDirError, STORE_DIR};
pub use record::{is_sha256_hex, FunctionRecord, LayerRecord};
pub use store::{DirStore, Uploaded, MAX_FUNCTIONS};

/// One function as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionInfo {
    pub name: LambdaName,
    /// The effective configuration (what `<registry>/<name>/lambda.json` holds).
    pub config: LambdaConfig,
    /// What the API set (CreateFunction, UpdateFunctionConfiguration, `admin create` flags).
    pub settings: LambdaConfig,
    /// The entry called (the configured one, or the default for the code's files).
    pub entry: Entry,
    /// Lower-case hex SHA-256 of the archive as uploaded (AWS reports it base64).
    pub code_sha256: String,
    /// The archive's size in bytes.
    pub code_size: u64,
    /// 1 at creation, one more at every change of code or configuration.
    pub version: u64,
    /// Changes with every version (AWS's `RevisionId`).
    pub revision_id: String,
    /// When the last change was acknowledged, in milliseconds since the Unix epoch.
    pub last_modified_ms: u64,
    /// Whether the code carries `docs/lambda.html` and `docs/lambda.yml`.
    pub has_docs: bool,
}

/// One version of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerVersionInfo {
    pub name: LambdaName,
    /// 1, 2, ... in publishing order.
    pub version: u64,
    pub description: Option<String>,
    pub compatible_runtimes: Vec<String>,
    pub code_sha256: String,
    pub code_size: u64,
    pub created_ms: u64,
}

/// Why a store operation failed; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("function not found: {name}")]
    FunctionNotFound { name: String },
    #[error("layer version not found: {name}{}", .version.map(|v| format!(":{v}")).unwrap_or_default())]
    LayerNotFound { name: String, version: Option<u64> },
    #[error("function already exists: {name}")]
    Exists { name: String },
    #[error("function {name} has revision {actual}, not {expected}")]
    RevisionMismatch {
        name: String,
        expected: String,
        actual: String,
    },
    /// A configuration value or reference the store refuses (a layer that does not exist).
    #[error("{}{message}", .key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default())]
    Invalid {
        key: Option<String>,
        message: String,
    },
    #[error("{0}")]
    Archive(#[from] crate::archive::ArchiveError),
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Functions and layers (see the module docs). Every method blocks (file system, fsync):
/// call it off the async executor. What a method returns `Ok` for is durable.
pub trait FunctionStore: Send + Sync + std::fmt::Debug + 'static {
    /// A new function from an archive (`.zip` or `.tar.gz` bytes) and settings.
    /// `Exists` if there is one of that name.
    fn create(
        &self,
        name: &LambdaName,
        archive: &[u8],
        settings: &LambdaConfig,
    ) -> Result<FunctionInfo, StoreError>;

    fn get(&self, name: &LambdaName) -> Result<FunctionInfo, StoreError>;

    /// Every function, sorted by name (including directories placed in the registry by hand).
    fn list(&self) -> Result<Vec<FunctionInfo>, StoreError>;

    /// New code, same settings. With `expected_revision`, refused unless it is the current one.
    fn update_code(
        &self,
        name: &LambdaName,
        archive: &[u8],
        expected_revision: Option<&str>,
    ) -> Result<FunctionInfo, StoreError>;

    /// Replaces the settings (the caller merges what it changes into [`FunctionInfo::settings`]).
    fn update_settings(
        &self,
        name: &LambdaName,
        settings: &LambdaConfig,
        expected_revision: Option<&str>,
    ) -> Result<FunctionInfo, StoreError>;

    fn delete(&self, name: &LambdaName) -> Result<(), StoreError>;

    /// A new version of a layer (1 for a new layer).
    fn publish_layer(
        &self,
        name: &LambdaName,
        archive: &[u8],
        description: Option<&str>,
        compatible_runtimes: &[String],
    ) -> Result<LayerVersionInfo, StoreError>;

    /// The latest version of every layer, sorted by name.
    fn list_layers(&self) -> Result<Vec<LayerVersionInfo>, StoreError>;

    /// Every version of one layer, oldest first; `LayerNotFound` if it has none.
    fn layer_versions(&self, name: &LambdaName) -> Result<Vec<LayerVersionInfo>, StoreError>;
}
