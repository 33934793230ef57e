//! A function's configuration: the optional `lambda.json` beside its code.
//!
//! ```json
//! {"entry": "app.handler", "runtime": "python3.13", "memory_mb": 512, "timeout_s": 30,
//!  "environment": {"TORCH_HOME": "/tmp/torch"}, "layers": ["common:2"],
//!  "volumes": [{"volume": "msg", "path": "/message", "mount": "/mnt/msg", "uid": 1001,
//!               "gid": 1001, "mode": "0750"}],
//!  "description": "resize images", "tags": {"lambdapool": "yes"},
//!  "retry_attempts": 1, "max_event_age_s": 3600, "on_failure": "alerts"}
//! ```
//!
//! Every key is optional. The limits (`memory_mb`, `timeout_s`, `max_procs`, `cpu_percent`,
//! `max_concurrency` or its alias `workers`, `tmp_mb`) take the worker's value from
//! `template.json` when missing ([`LambdaLimits`]); `entry` defaults to `lambda_func.handler`,
//! or `lambda_main.main` for a function that has a `lambda_main.py` and no `lambda_func.py`.
//! The file is checked on every cold start and whenever it changes: an unknown key, a value of
//! the wrong type or out of range is an error naming the key (HTTP 400 on the call), never a
//! silent fallback. Editing the file retires the function's sandboxes like editing its code.

mod gpu_keys;
mod http_keys;
mod keys;
mod limits;
mod volume_keys;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

pub use gpu_keys::{GpuRequest, MAX_GPUS};
pub use http_keys::{allows as allows_method, EntryType, PayloadFormat};
pub use keys::{
    destination, Entry, InvalidValue, LayerRef, ENV_MAX_BYTES, MAX_LAYERS, MAX_PROVISIONED,
    MAX_TAGS,
};
pub use limits::{LambdaLimits, CPU_PERIOD_US};
pub use volume_keys::{AccessPoint, MAX_VOLUMES, VOLUMES_MOUNT_DIR};

use crate::config::Config;
use crate::name::LambdaName;

/// The file name in a function's directory.
pub const LAMBDA_CONFIG_FILE: &str = "lambda.json";
/// Largest `lambda.json` read, in bytes.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

/// An invalid `lambda.json`, naming the file and, when one is at fault, the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", key.as_ref().map(|k| format!("key {k:?}: ")).unwrap_or_default())]
pub struct LambdaConfigError {
    pub path: PathBuf,
    pub key: Option<String>,
    pub message: String,
}

/// Everything `lambda.json` may say; `None` (or an absent map) where it says nothing.
///
/// Values are validated when parsed ([`LambdaConfig::from_value`]), so a `LambdaConfig` always
/// holds values in range. [`LambdaConfig::to_value`] writes the keys that are set, in a fixed
/// order, and parsing that again gives the same config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LambdaConfig {
    /// `module.function` (or `module:function`) to call; see [`LambdaConfig::entry_in`] for
    /// the default.
    pub entry: Option<Entry>,
    /// `type`: a handler (the default), or a WSGI or ASGI app.
    pub entry_type: Option<EntryType>,
    /// `payload_format`: the event an HTTP request at `/run/<name>` becomes (default 2.0).
    pub payload_format: Option<PayloadFormat>,
    /// `triggers.http.methods`: the methods `/run/<name>` takes (`None`: every method), in
    /// upper case, `*` for any.
    pub http_methods: Option<Vec<String>>,
    /// A `python3.N` name, reported as given (the base's Python runs every function).
    pub runtime: Option<String>,
    pub memory_mb: Option<u64>,
    pub timeout_s: Option<u64>,
    pub max_procs: Option<u64>,
    pub cpu_percent: Option<u64>,
    /// `max_concurrency`, or Luna's `workers` (1 to 32).
    pub max_concurrency: Option<u64>,
    pub tmp_mb: Option<u64>,
    /// Sandboxes kept started and initialized at all times (`docs/provisioned.md`).
    pub provisioned_concurrency: Option<u64>,
    /// The root filesystem its sandboxes run on: a custom base (`docs/bases.md`), or
    /// `default`.
    pub base: Option<LambdaName>,
    /// Sandboxes get NVIDIA GPUs (`docs/gpu.md`).
    pub enable_gpu: Option<bool>,
    /// Which GPUs, with `enable_gpu` (default: one).
    pub gpus: Option<GpuRequest>,
    /// Set in the sandbox before the function's module is imported.
    pub environment: Option<BTreeMap<String, String>>,
    /// Shared read-only layers, in `sys.path` order.
    pub layers: Option<Vec<LayerRef>>,
    /// Shared volumes, each through an access point (`docs/volumes.md`).
    pub volumes: Option<Vec<AccessPoint>>,
    pub description: Option<String>,
    pub tags: Option<BTreeMap<String, String>>,
    /// Asynchronous invocation: retries after a failed attempt (0 to 2; default 2).
    pub retry_attempts: Option<u64>,
    /// Asynchronous invocation: an event older than this is not run (60 to 21 600 s; default
    /// 21 600).
    pub max_event_age_s: Option<u64>,
    /// Asynchronous invocation: the function given each success's record.
    pub on_success: Option<LambdaName>,
    /// Asynchronous invocation: the function given each failure's record.
    pub on_failure: Option<LambdaName>,
}

/// How asynchronous events of a function are retried and where their outcomes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventConfig {
    pub retry_attempts: u32,
    pub max_event_age_s: u64,
    pub on_success: Option<LambdaName>,
    pub on_failure: Option<LambdaName>,
}

impl Default for EventConfig {
    /// AWS's: two retries, events kept six hours, no destinations.
    fn default() -> Self {
        Self {
            retry_attempts: DEFAULT_RETRY_ATTEMPTS,
            max_event_age_s: DEFAULT_MAX_EVENT_AGE_S,
            on_success: None,
            on_failure: None,
        }
    }
}

/// Retries of a failed asynchronous event when the function says nothing (AWS's).
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 2;
/// Age after which an asynchronous event is dropped, when the function says nothing (AWS's).
pub const DEFAULT_MAX_EVENT_AGE_S: u64 = 21_600;

/// A key-level problem, before a path is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    pub key: Option<String>,
    pub message: String,
}

impl KeyError {
    pub(crate) fn new(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: Some(key.to_owned()),
            message: message.into(),
        }
    }

    /// The error for the file at `path`.
    pub fn at(self, path: &Path) -> LambdaConfigError {
        LambdaConfigError {
            path: path.to_owned(),
            key: self.key,
            message: self.message,
        }
    }
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(k) => write!(f, "key {k:?}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl LambdaConfig {
    /// Parses and validates the text of a `lambda.json`.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let value: Value = serde_json::from_str(text).map_err(|e| KeyError {
            key: None,
            message: format!("it is not valid JSON: {e}"),
        })?;
        Self::from_value(&value)
    }

    /// Validates a JSON object holding `lambda.json` keys.
    pub fn from_value(value: &Value) -> Result<Self, KeyError> {
        let Value::Object(map) = value else {
            return Err(KeyError {
                key: None,
                message: "it must hold a JSON object".to_owned(),
            });
        };
        keys::parse_map(map)
    }

    /// Reads `<dir>/lambda.json`; the empty config when there is none.
    pub fn load(dir: &Path) -> Result<Self, LambdaConfigError> {
        let path = dir.join(LAMBDA_CONFIG_FILE);
        let text = crate::files::read_regular_file(&path, MAX_FILE_BYTES).map_err(|e| {
            LambdaConfigError {
                path: path.clone(),
                key: None,
                message: e.to_string(),
            }
        })?;
        match text {
            Some(text) => Self::parse(&text).map_err(|e| e.at(&path)),
            None => Ok(Self::default()),
        }
    }

    /// The keys that are set, as a JSON object in a fixed order.
    pub fn to_value(&self) -> Value {
        keys::to_map(self).into()
    }

    /// [`Self::to_value`] as indented text with a final newline, as written to `lambda.json`.
    pub fn to_json_pretty(&self) -> String {
        let mut text = serde_json::to_string_pretty(&self.to_value()).unwrap_or_default();
        text.push('\n');
        text
    }

    /// `self` with every key it does not set taken from `base`.
    pub fn over(&self, base: &LambdaConfig) -> LambdaConfig {
        LambdaConfig {
            entry: self.entry.clone().or_else(|| base.entry.clone()),
            entry_type: self.entry_type.or(base.entry_type),
            payload_format: self.payload_format.or(base.payload_format),
            http_methods: self
                .http_methods
                .clone()
                .or_else(|| base.http_methods.clone()),
            runtime: self.runtime.clone().or_else(|| base.runtime.clone()),
            memory_mb: self.memory_mb.or(base.memory_mb),
            timeout_s: self.timeout_s.or(base.timeout_s),
            max_procs: self.max_procs.or(base.max_procs),
            cpu_percent: self.cpu_percent.or(base.cpu_percent),
            max_concurrency: self.max_concurrency.or(base.max_concurrency),
            tmp_mb: self.tmp_mb.or(base.tmp_mb),
            provisioned_concurrency: self
                .provisioned_concurrency
                .or(base.provisioned_concurrency),
            base: self.base.clone().or_else(|| base.base.clone()),
            enable_gpu: self.enable_gpu.or(base.enable_gpu),
            gpus: self.gpus.clone().or_else(|| base.gpus.clone()),
            environment: self
                .environment
                .clone()
                .or_else(|| base.environment.clone()),
            layers: self.layers.clone().or_else(|| base.layers.clone()),
            volumes: self.volumes.clone().or_else(|| base.volumes.clone()),
            description: self
                .description
                .clone()
                .or_else(|| base.description.clone()),
            tags: self.tags.clone().or_else(|| base.tags.clone()),
            retry_attempts: self.retry_attempts.or(base.retry_attempts),
            max_event_age_s: self.max_event_age_s.or(base.max_event_age_s),
            on_success: self.on_success.clone().or_else(|| base.on_success.clone()),
            on_failure: self.on_failure.clone().or_else(|| base.on_failure.clone()),
        }
    }

    /// How the function's asynchronous events are handled: these values over AWS's defaults.
    pub fn events(&self) -> EventConfig {
        EventConfig {
            retry_attempts: self
                .retry_attempts
                .map_or(DEFAULT_RETRY_ATTEMPTS, |n| n as u32),
            max_event_age_s: self.max_event_age_s.unwrap_or(DEFAULT_MAX_EVENT_AGE_S),
            on_success: self.on_success.clone(),
            on_failure: self.on_failure.clone(),
        }
    }

    /// Whether any key of asynchronous invocation is set (AWS's `EventInvokeConfig` exists).
    pub fn has_event_config(&self) -> bool {
        self.retry_attempts.is_some()
            || self.max_event_age_s.is_some()
            || self.on_success.is_some()
            || self.on_failure.is_some()
    }

    /// The GPUs the function's sandboxes get, if `enable_gpu` is true.
    pub fn gpu_request(&self) -> Option<GpuRequest> {
        (self.enable_gpu == Some(true)).then(|| self.gpus.clone().unwrap_or_default())
    }

    /// The limits of the function's sandboxes: these values over the worker's defaults.
    pub fn limits(&self, cfg: &Config) -> LambdaLimits {
        let d = LambdaLimits::defaults(cfg);
        LambdaLimits {
            memory_mb: self.memory_mb.unwrap_or(d.memory_mb),
            timeout_s: self.timeout_s.unwrap_or(d.timeout_s),
            max_procs: self.max_procs.unwrap_or(d.max_procs),
            cpu_percent: self.cpu_percent.or(d.cpu_percent),
            max_concurrency: self
                .max_concurrency
                .map_or(d.max_concurrency, |n| n as usize),
            tmp_mb: self.tmp_mb.unwrap_or(d.tmp_mb),
        }
    }

    /// The entry to call for a function whose code is in `dir`: the configured one, else
    /// `app:app` for a WSGI or ASGI app, else `lambda_main.main` when `dir` has a
    /// `lambda_main.py` but no `lambda_func.py` (Luna's layout), else `lambda_func.handler`.
    /// Blocking (up to two `lstat`s).
    pub fn entry_in(&self, dir: &Path) -> Entry {
        if let Some(entry) = &self.entry {
            return entry.clone();
        }
        if matches!(self.entry_type, Some(EntryType::Wsgi | EntryType::Asgi)) {
            return Entry::app();
        }
        let is_file = |name: &str| {
            std::fs::symlink_metadata(dir.join(name)).is_ok_and(|m| m.file_type().is_file())
        };
        if !is_file(crate::registry::HANDLER_FILE) && is_file(keys::LUNA_FILE) {
            Entry::luna()
        } else {
            Entry::default()
        }
    }
}

/// The keys `lambda.json` may hold, for messages.
pub fn known_keys() -> &'static [&'static str] {
    keys::KNOWN
}

/// A JSON object from a map of strings (environment, tags).
pub(crate) fn string_map(map: &BTreeMap<String, String>) -> Value {
    Value::Object(
        map.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<Map<String, Value>>(),
    )
}

#[cfg(test)]
mod tests;
