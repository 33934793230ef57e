//! The worker's configuration: one typed struct, read from `template.json` / `worker-N.json`.
//!
//! Unknown keys and wrong types are rejected with the key named (`deny_unknown_fields`), so a typo in
//! a config file is an error, never a silently ignored setting. Every key is documented in
//! `docs/config.md`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

/// Errors reading, parsing or validating a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write config {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, ConfigError>;

/// How the worker writes its log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// tracing's text lines: time, level, message, fields.
    #[default]
    Text,
    /// One JSON object a line (tracing-subscriber's JSON format), with the current span's
    /// fields (the request id and function of a request).
    Json,
}

/// Where function code comes from: `"local"` (the `registry_dir` directory, OpenLambda's
/// default) or the URL of a registry server (`"http://host:port"`, set by `admin registry`),
/// whose functions the worker unpacks into `<worker_dir>/registry-cache`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RegistryKind {
    #[default]
    Local,
    /// `http://host:port`, without a trailing slash.
    Server(String),
}

/// A `registry` value that is neither `"local"` nor a registry server's URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRegistry(pub String);

impl RegistryKind {
    /// Parses `"local"` or an `http://host[:port]` URL.
    pub fn parse(raw: &str) -> std::result::Result<Self, InvalidRegistry> {
        if raw == "local" {
            return Ok(Self::Local);
        }
        let Some(rest) = raw.strip_prefix("http://") else {
            return Err(InvalidRegistry(format!(
                "registry: {raw:?} is neither \"local\" nor an http:// URL of a registry server"
            )));
        };
        let host = rest.trim_end_matches('/');
        if host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) {
            return Err(InvalidRegistry(format!(
                "registry: {raw:?} must be http://host:port, with no path"
            )));
        }
        Ok(Self::Server(format!("http://{host}")))
    }

    /// The registry server's base URL, in registry mode.
    pub fn server(&self) -> Option<&str> {
        match self {
            Self::Local => None,
            Self::Server(url) => Some(url),
        }
    }
}

impl Serialize for RegistryKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Self::Local => s.serialize_str("local"),
            Self::Server(url) => s.serialize_str(url),
        }
    }
}

impl<'de> Deserialize<'de> for RegistryKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// The sandboxing engine. `sock` is lambdaworker's namespace + cgroup + pivot_root sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SandboxKind {
    #[default]
    Sock,
}

/// Network mode of handler sandboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NetMode {
    /// Own network namespace holding only `lo`.
    #[default]
    None,
    /// Share the host's network namespace.
    Host,
}

impl NetMode {
    /// The sandbox crate's mode for this setting.
    pub fn sandbox(self) -> sandbox::NetMode {
        match self {
            NetMode::None => sandbox::NetMode::Isolated,
            NetMode::Host => sandbox::NetMode::Host,
        }
    }
}

/// The configuration of one worker (and, with `worker_dir` unset, the cluster's template).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// TCP port of the HTTP API (a string, as OpenLambda writes it, or a number). `0` picks a free port.
    #[serde(deserialize_with = "port_from_string_or_number")]
    pub worker_port: u16,
    /// Address the HTTP API binds to.
    pub worker_host: String,
    /// TCP port of the load agent a balancer's agent check reads (HAProxy's agent protocol:
    /// one line, `up N%` or `drain`; `docs/scale-out.md`), on `worker_host`; `0`: none.
    pub agent_port: u16,
    /// This worker's name in the `X-Worker-Id` answer header and the agent; empty: the host's
    /// name and the worker directory's (`host/worker-0`).
    pub worker_id: String,
    /// After SIGTERM, how long the worker keeps serving while it reports `drain` (so that a
    /// balancer stops sending it calls) before it stops accepting, in milliseconds.
    pub drain_delay_ms: u64,
    /// This worker's state directory (`<cluster>/workers/worker-N`); set by `admin workers`.
    pub worker_dir: PathBuf,
    /// Where function code comes from: `local` or a registry server's URL.
    pub registry: RegistryKind,
    /// In registry mode, how long a function's version fetched from the server is used before
    /// it is checked again, in milliseconds (calls in between never wait on the server).
    pub registry_revalidate_ms: u64,
    /// The access key and secret that sign changes through the management API (a 0600 JSON
    /// file written by `admin registry`); empty: no credentials, changes only from loopback.
    pub credentials_file: PathBuf,
    /// Region and account in the ARNs the AWS-compatible API reports.
    pub aws_region: String,
    pub aws_account_id: String,
    /// Local registry directory: `<registry_dir>/<name>/lambda_func.py`.
    pub registry_dir: PathBuf,
    /// Sandbox engine (`sock`).
    pub sandbox: SandboxKind,
    /// Read-only root filesystem of every sandbox.
    pub base_dir: PathBuf,
    /// Package directory, mounted read-only at `/packages` in every sandbox.
    pub packages_dir: PathBuf,
    /// Shared volumes, `<name>/` each (`admin` sets `<cluster>/volumes`); empty:
    /// `<worker_dir>/volumes`.
    pub volumes_dir: PathBuf,
    /// Custom bases, `<name>/` each (`admin` sets `<cluster>/bases`); empty:
    /// `<worker_dir>/bases`.
    pub bases_dir: PathBuf,
    /// Network of handler sandboxes: `none` (own netns, only `lo`) or `host`.
    pub net: NetMode,
    /// Memory limit of one handler sandbox, in MiB.
    pub memory_mb: u64,
    /// Maximum number of processes (and threads) in one handler sandbox.
    pub max_procs: u64,
    /// Size of the tmpfs mounted at `/tmp` in each sandbox, in MiB.
    pub tmp_mb: u64,
    /// Seconds a call may run before its sandbox is killed and the caller gets 504.
    pub timeout_s: u64,
    /// At most this many sandboxes (and so concurrent calls) per lambda; further calls wait.
    pub max_sandboxes_per_lambda: usize,
    /// At most this many live handler sandboxes in the whole worker (busy and idle).
    pub handler_cache_size: usize,
    /// Idle sandboxes are destroyed after this many seconds without a call.
    pub idle_timeout_s: u64,
    /// Largest accepted request body, in bytes (larger ones get 413).
    pub max_body_bytes: usize,
    /// Seconds a request body may take to arrive after its head (slower ones get 408).
    pub body_timeout_s: u64,
    /// On SIGTERM/SIGINT, in-flight calls get this many seconds to finish.
    pub shutdown_timeout_s: u64,
    /// An idle sandbox is paused (cgroup freezer) after this many milliseconds without a call,
    /// and thawed by the next call.
    pub pause_after_ms: u64,
    /// Memory budget of all sandboxes together, in MiB; above it, cold starts first evict
    /// the least recently used idle sandboxes (paused ones first). `0`: half of the machine's memory.
    pub memory_budget_mb: u64,
    /// Package index for `requirements.txt` installs (pip's `--index-url`); empty: PyPI.
    pub pip_index_url: String,
    /// Seconds one pip step (resolving, or installing one package) may take.
    pub install_timeout_s: u64,
    /// Start handler sandboxes by forking a zygote of the import cache (`docs/import-cache.md`);
    /// `false`: every sandbox starts a fresh interpreter.
    pub import_cache: bool,
    /// Most zygotes kept at once (the root zygote included); the least recently used leaf
    /// goes first.
    pub import_cache_size: usize,
    /// Cold starts needing one exact package set before it gets a zygote of its own.
    pub zygote_min_starts: u64,
    /// Zygotes that import a lambda's packages (`false`: only the root zygote, which imports
    /// nothing but the runtime). A zygote runs in a user namespace of its own, with no
    /// capability over the host, so package import code gains nothing there; without user
    /// namespaces (`user_namespaces` off, or refused by the kernel) they are off whatever this
    /// says (`docs/security.md`).
    pub package_zygotes: bool,
    /// Sandboxes and zygotes in user namespaces of their own, each lambda acting as a host
    /// uid of its own from `uid_range_start` (`docs/security.md`); `false`, or a kernel that
    /// refuses them: every handler runs as `sandbox_uid` in the host's user namespace.
    pub user_namespaces: bool,
    /// The first host uid (and gid) of the range user namespaces map to: this one is root of
    /// every sandbox's namespace, the next the package installer, then one per lambda.
    pub uid_range_start: u32,
    /// How many host uids the range holds (at least 3), so how many lambdas can have one
    /// (`uid_range_size - 2`).
    pub uid_range_size: u32,
    /// The table of each lambda's host uid, shared by a cluster's workers (`admin` sets
    /// `<cluster>/workers/lambda-uids`); empty: `<worker_dir>/lambda-uids`.
    pub lambda_uids_file: PathBuf,
    /// CPU quota of one sandbox in percent of one CPU (`0`: none); a lambda's `lambda.json`
    /// may set its own.
    pub cpu_percent: u64,
    /// Size of each sandbox's `/host` (its scratch directory, a tmpfs), in MiB.
    pub host_mb: u64,
    /// The unprivileged user and group handler code runs as (never 0).
    pub sandbox_uid: u32,
    pub sandbox_gid: u32,
    /// Calls of one lambda that may wait for a free slot (`max_sandboxes_per_lambda`, or the
    /// lambda's `max_concurrency`); one more gets 429.
    pub max_queue_per_lambda: usize,
    /// Open HTTP connections the worker serves at once; a connection beyond them gets one 503
    /// answer and is closed.
    pub max_connections: usize,
    /// Log filter (`error`, `warn`, `info`, `debug`, `trace`, or a tracing-subscriber directive).
    pub log_level: String,
    /// How log lines are written: `text` (for people) or `json` (one object a line, for log
    /// collectors; `docs/logging.md`).
    pub log_format: LogFormat,
    /// One info line per HTTP request: method, path, status, duration, cold or warm start.
    pub access_log: bool,
    /// The worker's log file (`admin workers` sets `<cluster>/logs/worker-N.out`); empty: the
    /// log goes to stderr only (journald under systemd).
    pub log_file: PathBuf,
    /// The log file is rotated once it holds this many bytes (`X` becomes `X.1`, ...).
    pub log_file_bytes: u64,
    /// Rotated log files kept (`X.1` .. `X.N`).
    pub log_files: u32,
    /// GPU sandboxes (of functions with `enable_gpu`) alive at once, worker-wide; a cold start
    /// beyond them first ends an idle GPU sandbox, else waits for one (`docs/gpu.md`).
    pub gpu_sandboxes: usize,
    /// The NVIDIA driver libraries GPU sandboxes get; empty: found with `ldconfig -p`.
    pub gpu_libraries: Vec<PathBuf>,
    /// Functions that get a label of their own in `/metrics`; calls of functions beyond them
    /// share the label `other` (`docs/metrics.md`).
    pub metrics_max_functions: usize,
    /// Where handler logs are kept: `<function_log_dir>/<name>/<worker>.log` (`admin` sets
    /// `<cluster>/logs/functions`); empty: `<worker_dir>/function-logs`.
    pub function_log_dir: PathBuf,
    /// A function's log file of this worker is rotated once it holds this many bytes.
    pub function_log_file_bytes: u64,
    /// Rotated log files kept per function and worker (`<worker>.log.1`, ...).
    pub function_log_files: u32,
    /// Log files not written for this many seconds are removed.
    pub function_log_retention_s: u64,
    /// All of this worker's log files together, in MiB; above it the oldest files go first.
    pub function_log_total_mb: u64,
    /// Bytes of one call's output kept in its log; beyond them lines are dropped and counted.
    pub function_log_call_bytes: u64,
    /// Asynchronous events run at once, worker-wide (`0`: half the CPUs, at least 1).
    pub async_concurrency: usize,
    /// Events queued or running at most; one more `Event` invocation gets 429.
    pub async_queue_max: usize,
    /// Largest event of an asynchronous invocation, in bytes (AWS: 256 KB).
    pub async_payload_bytes: usize,
    /// Bytes of queued payloads and stored results together, in MiB; above it the oldest
    /// finished records go first, and an event that still does not fit gets 429.
    pub async_queue_mb: u64,
    /// Wait before an asynchronous event's first retry, in milliseconds; the second waits
    /// twice as long (AWS: one and two minutes).
    pub async_retry_delay_ms: u64,
    /// Finished invocation records (results, errors, dead letters) are kept this many seconds.
    pub invocation_retention_s: u64,
    /// At most this many finished invocation records are kept; the oldest go first.
    pub invocation_records_max: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            worker_port: 8080,
            worker_host: "127.0.0.1".to_owned(),
            agent_port: 0,
            worker_id: String::new(),
            drain_delay_ms: 0,
            worker_dir: PathBuf::new(),
            registry: RegistryKind::Local,
            registry_revalidate_ms: 1000,
            credentials_file: PathBuf::new(),
            aws_region: "us-east-1".to_owned(),
            aws_account_id: "000000000000".to_owned(),
            registry_dir: PathBuf::new(),
            sandbox: SandboxKind::Sock,
            base_dir: PathBuf::new(),
            packages_dir: PathBuf::new(),
            volumes_dir: PathBuf::new(),
            bases_dir: PathBuf::new(),
            net: NetMode::None,
            memory_mb: 256,
            max_procs: 64,
            tmp_mb: 64,
            timeout_s: 60,
            max_sandboxes_per_lambda: 4,
            handler_cache_size: 64,
            idle_timeout_s: 300,
            max_body_bytes: 6 * 1024 * 1024,
            body_timeout_s: 30,
            shutdown_timeout_s: 10,
            pause_after_ms: 100,
            memory_budget_mb: 0,
            pip_index_url: String::new(),
            install_timeout_s: 600,
            import_cache: true,
            import_cache_size: 8,
            zygote_min_starts: 2,
            package_zygotes: true,
            user_namespaces: true,
            uid_range_start: 524_288,
            uid_range_size: 65_536,
            lambda_uids_file: PathBuf::new(),
            cpu_percent: 0,
            host_mb: 64,
            sandbox_uid: 65534,
            sandbox_gid: 65534,
            max_queue_per_lambda: 256,
            max_connections: 1024,
            log_level: "info".to_owned(),
            log_format: LogFormat::Text,
            access_log: true,
            log_file: PathBuf::new(),
            log_file_bytes: 64 << 20,
            log_files: 5,
            gpu_sandboxes: 1,
            gpu_libraries: Vec::new(),
            metrics_max_functions: 100,
            function_log_dir: PathBuf::new(),
            function_log_file_bytes: 8 * 1024 * 1024,
            function_log_files: 2,
            function_log_retention_s: 7 * 24 * 3600,
            function_log_total_mb: 1024,
            function_log_call_bytes: 1024 * 1024,
            async_concurrency: 0,
            async_queue_max: 100_000,
            async_payload_bytes: 256 * 1024,
            async_queue_mb: 1024,
            async_retry_delay_ms: 60_000,
            invocation_retention_s: 24 * 3600,
            invocation_records_max: 100_000,
        }
    }
}

fn port_from_string_or_number<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<u16, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Port {
        Num(u16),
        Str(String),
    }
    match Port::deserialize(d)? {
        Port::Num(n) => Ok(n),
        Port::Str(s) => s.trim().parse::<u16>().map_err(|_| {
            serde::de::Error::custom(format!("worker_port: {s:?} is not a port number"))
        }),
    }
}

impl Config {
    /// Parses a config from JSON text; `origin` names the source in errors.
    pub fn from_json(text: &str, origin: &Path) -> Result<Self> {
        let cfg: Config = serde_json::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        Ok(cfg)
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&text, path)
    }

    /// Writes the config as pretty JSON (atomically: temp file + rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| ConfigError::Invalid(format!("cannot serialize config: {e}")))?;
        text.push('\n');
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(|source| ConfigError::Write {
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, path).map_err(|source| ConfigError::Write {
            path: path.to_owned(),
            source,
        })
    }

    /// Merges JSON keys into this config (`admin setconf`): each key must exist and have the right type.
    pub fn merge_json(&self, overrides: &str) -> Result<Self> {
        let patch: serde_json::Value = serde_json::from_str(overrides)
            .map_err(|e| ConfigError::Invalid(format!("overrides are not valid JSON: {e}")))?;
        let serde_json::Value::Object(patch) = patch else {
            return Err(ConfigError::Invalid(
                "overrides must be a JSON object".to_owned(),
            ));
        };
        let mut merged = serde_json::to_value(self)
            .map_err(|e| ConfigError::Invalid(format!("cannot serialize config: {e}")))?;
        let obj = merged
            .as_object_mut()
            .ok_or_else(|| ConfigError::Invalid("config is not an object".to_owned()))?;
        for (key, value) in patch {
            if !obj.contains_key(&key) {
                return Err(ConfigError::Invalid(format!("unknown key {key:?}")));
            }
            // Check the type key by key so the error names the key.
            let mut single = obj.clone();
            single.insert(key.clone(), value.clone());
            serde_json::from_value::<Config>(serde_json::Value::Object(single))
                .map_err(|e| ConfigError::Invalid(format!("key {key:?}: {e}")))?;
            obj.insert(key, value);
        }
        let cfg: Config =
            serde_json::from_value(merged).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        cfg.validate_limits()?;
        Ok(cfg)
    }

    /// Checks value ranges that the type system cannot express.
    pub fn validate_limits(&self) -> Result<()> {
        let bad = |key: &str, why: &str| Err(ConfigError::Invalid(format!("key {key:?}: {why}")));
        if self.memory_mb < 16 {
            return bad("memory_mb", "must be at least 16");
        }
        if self.max_procs < 4 {
            return bad("max_procs", "must be at least 4");
        }
        if self.tmp_mb == 0 {
            return bad("tmp_mb", "must be at least 1");
        }
        if self.timeout_s == 0 {
            return bad("timeout_s", "must be at least 1");
        }
        if self.max_sandboxes_per_lambda == 0 {
            return bad("max_sandboxes_per_lambda", "must be at least 1");
        }
        if self.handler_cache_size == 0 {
            return bad("handler_cache_size", "must be at least 1");
        }
        if !self.log_file.as_os_str().is_empty() && self.log_file_bytes < 4096 {
            return bad("log_file_bytes", "must be at least 4096");
        }
        if self.gpu_sandboxes == 0 {
            return bad("gpu_sandboxes", "must be at least 1");
        }
        if let Some(p) = self.gpu_libraries.iter().find(|p| !p.is_absolute()) {
            return bad(
                "gpu_libraries",
                &format!("{} is not an absolute path", p.display()),
            );
        }
        if self.metrics_max_functions == 0 {
            return bad("metrics_max_functions", "must be at least 1");
        }
        if self.max_body_bytes == 0 {
            return bad("max_body_bytes", "must be at least 1");
        }
        if self.body_timeout_s == 0 {
            return bad("body_timeout_s", "must be at least 1");
        }
        if self.install_timeout_s == 0 {
            return bad("install_timeout_s", "must be at least 1");
        }
        if self.import_cache_size == 0 {
            return bad("import_cache_size", "must be at least 1");
        }
        if self.zygote_min_starts == 0 {
            return bad("zygote_min_starts", "must be at least 1");
        }
        if self.max_connections == 0 {
            return bad("max_connections", "must be at least 1");
        }
        if self.agent_port != 0 && self.agent_port == self.worker_port {
            return bad("agent_port", "must differ from worker_port");
        }
        if self.worker_id.len() > 128 || !self.worker_id.bytes().all(|b| b.is_ascii_graphic()) {
            return bad(
                "worker_id",
                "must be at most 128 printable ASCII characters without spaces",
            );
        }
        if self.host_mb == 0 {
            return bad("host_mb", "must be at least 1");
        }
        if self.sandbox_uid == 0 {
            return bad(
                "sandbox_uid",
                "must not be 0: handler code never runs as root",
            );
        }
        if self.sandbox_gid == 0 {
            return bad(
                "sandbox_gid",
                "must not be 0: handler code never runs as root",
            );
        }
        if self.registry_revalidate_ms == 0 {
            return bad("registry_revalidate_ms", "must be at least 1");
        }
        if self.uid_range_start == 0 {
            return bad(
                "uid_range_start",
                "must not be 0: the range must not include the host's root",
            );
        }
        if self.uid_range_size < 3 {
            return bad(
                "uid_range_size",
                "must be at least 3 (root of the namespaces, the installer, one lambda)",
            );
        }
        if u64::from(self.uid_range_start) + u64::from(self.uid_range_size) > u64::from(u32::MAX) {
            return bad(
                "uid_range_size",
                "uid_range_start + uid_range_size must stay below 4294967295",
            );
        }
        for (key, value) in [
            ("function_log_file_bytes", self.function_log_file_bytes),
            ("function_log_retention_s", self.function_log_retention_s),
            ("function_log_total_mb", self.function_log_total_mb),
            ("function_log_call_bytes", self.function_log_call_bytes),
            ("async_queue_max", self.async_queue_max as u64),
            ("async_payload_bytes", self.async_payload_bytes as u64),
            ("async_queue_mb", self.async_queue_mb),
            ("invocation_retention_s", self.invocation_retention_s),
            ("invocation_records_max", self.invocation_records_max as u64),
        ] {
            if value == 0 {
                return bad(key, "must be at least 1");
            }
        }
        if self.function_log_file_bytes < 4096 {
            return bad("function_log_file_bytes", "must be at least 4096");
        }
        let region_ok = !self.aws_region.is_empty()
            && self
                .aws_region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return bad(
                "aws_region",
                "must be lower-case letters, digits and '-' (us-east-1)",
            );
        }
        if self.aws_account_id.len() != 12
            || !self.aws_account_id.bytes().all(|b| b.is_ascii_digit())
        {
            return bad("aws_account_id", "must be 12 digits");
        }
        let url = &self.pip_index_url;
        if !(url.is_empty() || url.starts_with("https://") || url.starts_with("http://")) {
            return bad(
                "pip_index_url",
                "must be an http:// or https:// URL, or empty for PyPI",
            );
        }
        Ok(())
    }

    /// Checks that a worker can run with this config (paths set and present).
    pub fn validate_for_worker(&self) -> Result<()> {
        self.validate_limits()?;
        for (key, path) in [
            ("worker_dir", &self.worker_dir),
            ("registry_dir", &self.registry_dir),
            ("base_dir", &self.base_dir),
            ("packages_dir", &self.packages_dir),
        ] {
            if path.as_os_str().is_empty() {
                return Err(ConfigError::Invalid(format!("key {key:?} is not set")));
            }
            if !path.is_absolute() {
                return Err(ConfigError::Invalid(format!(
                    "key {key:?}: {} is not an absolute path",
                    path.display()
                )));
            }
        }
        for (key, path) in [
            ("registry_dir", &self.registry_dir),
            ("base_dir", &self.base_dir),
            ("packages_dir", &self.packages_dir),
        ] {
            if !path.is_dir() {
                return Err(ConfigError::Invalid(format!(
                    "key {key:?}: {} is not a directory",
                    path.display()
                )));
            }
        }
        Ok(())
    }

    /// The cgroup (relative to each hierarchy's root) under which this worker puts its sandboxes:
    /// `lambdaworker/w-<hash of worker_dir>`. Derived, not configured, so that `admin kill` and a
    /// restarted worker find what a crashed worker left behind.
    pub fn cgroup_parent(&self) -> PathBuf {
        cgroup_parent_for(&self.worker_dir)
    }

    /// Where this worker keeps handler logs (`function_log_dir`, or `<worker_dir>/function-logs`).
    pub fn function_logs(&self) -> PathBuf {
        if self.function_log_dir.as_os_str().is_empty() {
            self.worker_dir.join("function-logs")
        } else {
            self.function_log_dir.clone()
        }
    }

    /// Where the cluster's custom bases are (`bases_dir`, or `<worker_dir>/bases`).
    pub fn bases(&self) -> PathBuf {
        if self.bases_dir.as_os_str().is_empty() {
            self.worker_dir.join("bases")
        } else {
            self.bases_dir.clone()
        }
    }

    /// Where the cluster's volumes are (`volumes_dir`, or `<worker_dir>/volumes`).
    pub fn volumes(&self) -> PathBuf {
        if self.volumes_dir.as_os_str().is_empty() {
            self.worker_dir.join("volumes")
        } else {
            self.volumes_dir.clone()
        }
    }

    /// The table of each lambda's host uid (`lambda_uids_file`, or
    /// `<worker_dir>/lambda-uids`).
    pub fn lambda_uids(&self) -> PathBuf {
        if self.lambda_uids_file.as_os_str().is_empty() {
            self.worker_dir.join("lambda-uids")
        } else {
            self.lambda_uids_file.clone()
        }
    }

    /// Asynchronous events run at once (`async_concurrency`, or half the CPUs, at least 1).
    pub fn async_slots(&self) -> usize {
        if self.async_concurrency > 0 {
            return self.async_concurrency;
        }
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        (cpus / 2).max(1)
    }

    /// The worker's own state: its asynchronous queue and invocation records
    /// (`<worker_dir>/invocations`), kept across restarts.
    pub fn invocations_dir(&self) -> PathBuf {
        self.worker_dir.join("invocations")
    }
}

/// The cgroup parent of the worker whose state directory is `worker_dir` (see [`Config::cgroup_parent`]).
pub fn cgroup_parent_for(worker_dir: &Path) -> PathBuf {
    let canon = std::fs::canonicalize(worker_dir).unwrap_or_else(|_| worker_dir.to_owned());
    let digest = Sha256::digest(canon.as_os_str().as_encoded_bytes());
    let hex = crate::hex(&digest[..8]);
    PathBuf::from("lambdaworker").join(format!("w-{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_accepts_string_and_number() {
        let a = Config::from_json(r#"{"worker_port": "8081"}"#, Path::new("t")).unwrap();
        let b = Config::from_json(r#"{"worker_port": 8081}"#, Path::new("t")).unwrap();
        assert_eq!(a.worker_port, 8081);
        assert_eq!(b.worker_port, 8081);
        let err = Config::from_json(r#"{"worker_port": "http"}"#, Path::new("t")).unwrap_err();
        assert!(err.to_string().contains("worker_port"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Config::from_json(r#"{"worker_prot": 1}"#, Path::new("t.json")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("worker_prot") && msg.contains("t.json"),
            "{msg}"
        );
    }

    #[test]
    fn merge_names_the_bad_key() {
        let base = Config::default();
        let merged = base
            .merge_json(r#"{"sandbox": "sock", "registry": "local", "memory_mb": 512}"#)
            .unwrap();
        assert_eq!(merged.memory_mb, 512);
        let err = base
            .merge_json(r#"{"memroy_mb": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("memroy_mb"), "{err}");
        let err = base
            .merge_json(r#"{"memory_mb": "lots"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("memory_mb"), "{err}");
        let err = base
            .merge_json(r#"{"net": "bridge"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("net"), "{err}");
        let err = base
            .merge_json(r#"{"timeout_s": 0}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("timeout_s"), "{err}");
        assert!(base.merge_json("[1]").is_err());
    }

    #[test]
    fn registry_is_local_or_a_server_url() {
        let c = Config::from_json(r#"{"registry": "local"}"#, Path::new("t")).unwrap();
        assert_eq!(c.registry, RegistryKind::Local);
        let c =
            Config::from_json(r#"{"registry": "http://10.0.0.1:9000/"}"#, Path::new("t")).unwrap();
        assert_eq!(c.registry.server(), Some("http://10.0.0.1:9000"));
        let text = serde_json::to_string(&c).unwrap();
        assert!(
            text.contains(r#""registry":"http://10.0.0.1:9000""#),
            "{text}"
        );
        for bad in ["s3", "https://x", "http://", "http://x/path"] {
            let e = Config::from_json(&format!(r#"{{"registry": "{bad}"}}"#), Path::new("t"));
            assert!(e.unwrap_err().to_string().contains("registry"), "{bad}");
        }
        let base = Config::default();
        assert!(base.merge_json(r#"{"aws_account_id": "12"}"#).is_err());
        assert!(base.merge_json(r#"{"aws_region": "US"}"#).is_err());
        assert!(base.merge_json(r#"{"registry_revalidate_ms": 0}"#).is_err());
    }

    #[test]
    fn cgroup_parent_is_stable_and_distinct() {
        let a = cgroup_parent_for(Path::new("/nonexistent/a/workers/worker-0"));
        let b = cgroup_parent_for(Path::new("/nonexistent/b/workers/worker-0"));
        assert_eq!(
            a,
            cgroup_parent_for(Path::new("/nonexistent/a/workers/worker-0"))
        );
        assert_ne!(a, b);
        assert!(a.starts_with("lambdaworker"));
    }
}
