//! Each `lambda.json` key: its check, and its place in the written file.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{KeyError, LambdaConfig};
use crate::name::LambdaName;

/// Luna's entry file.
pub(crate) const LUNA_FILE: &str = "lambda_main.py";
/// Most layers a function may use (as AWS).
pub const MAX_LAYERS: usize = 5;
/// Largest environment: the sum of every name and value, in bytes (AWS's 4 KB).
pub const ENV_MAX_BYTES: usize = 4096;
/// Most sandboxes one function keeps provisioned.
pub const MAX_PROVISIONED: u64 = 64;
/// Most tags on a function (as AWS).
pub const MAX_TAGS: usize = 50;
const MAX_DESCRIPTION: usize = 256;
const MAX_ENTRY: usize = 128;
/// Environment names the platform sets itself.
const RESERVED_ENV_PREFIXES: [&str; 2] = ["LAMBDA_", "AWS_LAMBDA_"];
const RESERVED_ENV: [&str; 6] = [
    "_HANDLER",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "PYTHONHOME",
    "PYTHONSTARTUP",
];

/// Every key, in the order [`to_map`] writes them.
pub(crate) const KNOWN: &[&str] = &[
    "entry",
    "type",
    "payload_format",
    "triggers",
    "runtime",
    "description",
    "memory_mb",
    "timeout_s",
    "max_procs",
    "cpu_percent",
    "max_concurrency",
    "workers",
    "tmp_mb",
    "provisioned_concurrency",
    "base",
    "enable_gpu",
    "gpus",
    "environment",
    "layers",
    "volumes",
    "tags",
    "retry_attempts",
    "max_event_age_s",
    "on_success",
    "on_failure",
];

/// The numeric keys with their ranges (inclusive); `cpu_percent`'s upper bound is 100 per CPU
/// of this machine.
const RANGES: [(&str, u64, u64); 10] = [
    ("memory_mb", 128, 3008),
    ("timeout_s", 1, 900),
    ("max_procs", 4, 4096),
    ("cpu_percent", 1, 0),
    ("max_concurrency", 1, 1000),
    ("workers", 1, 32),
    ("tmp_mb", 1, 10240),
    ("provisioned_concurrency", 0, MAX_PROVISIONED),
    ("retry_attempts", 0, 2),
    ("max_event_age_s", 60, 21600),
];

/// A value that does not parse (an entry, a layer reference), with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

/// How a function is called: `module.function` (AWS's `Handler`) or `module:function` (the
/// form of WSGI and ASGI servers, `app:app`), the module a dotted path of identifiers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    pub module: String,
    pub function: String,
    /// Written `module:function`; kept so that the entry reads back as it was given.
    pub colon: bool,
}

impl Default for Entry {
    /// `lambda_func.handler`, OpenLambda's.
    fn default() -> Self {
        Self {
            module: "lambda_func".to_owned(),
            function: "handler".to_owned(),
            colon: false,
        }
    }
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sep = if self.colon { ':' } else { '.' };
        write!(f, "{}{sep}{}", self.module, self.function)
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Entry {
    /// `lambda_main.main`, Luna's: called with a request object whose `.json` is the event.
    pub fn luna() -> Self {
        Self {
            module: "lambda_main".to_owned(),
            function: "main".to_owned(),
            colon: false,
        }
    }

    /// `app:app`, the entry of a WSGI or ASGI app that names none (Flask's and FastAPI's
    /// usual names).
    pub fn app() -> Self {
        Self {
            module: "app".to_owned(),
            function: "app".to_owned(),
            colon: true,
        }
    }

    /// Whether this is Luna's entry.
    pub fn is_luna(&self) -> bool {
        self.module == "lambda_main" && self.function == "main"
    }

    /// Parses `module.function` (AWS's `Handler`) or `module:function`; the error is a human
    /// explanation.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let bad = |m: String| Err(InvalidValue(m));
        if raw.len() > MAX_ENTRY {
            return bad(format!("must be at most {MAX_ENTRY} characters"));
        }
        let (split, colon) = match raw.split_once(':') {
            Some(parts) => (Some(parts), true),
            None => (raw.rsplit_once('.'), false),
        };
        let Some((module, function)) = split else {
            return bad(format!(
                "must be module.function or module:function, not {raw:?}"
            ));
        };
        if !module.split('.').all(is_identifier) || !is_identifier(function) {
            return bad(format!(
                "must be module.function or module:function made of Python identifiers, not {raw:?}"
            ));
        }
        Ok(Self {
            module: module.to_owned(),
            function: function.to_owned(),
            colon,
        })
    }

    /// The file holding the module, relative to the function's directory
    /// (`pkg/mod.py` for `pkg.mod`; a package's `__init__.py` also serves).
    pub fn module_file(&self) -> String {
        format!("{}.py", self.module.replace('.', "/"))
    }
}

/// A layer a function uses: its name, and a version (`None`: the latest when resolved).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LayerRef {
    pub name: LambdaName,
    pub version: Option<u64>,
}

impl std::fmt::Display for LayerRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.version {
            Some(v) => write!(f, "{}:{v}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

impl LayerRef {
    /// Parses `name` or `name:version` (version 1 or more).
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let (name, version) = match raw.split_once(':') {
            Some((name, v)) => match v.parse::<u64>() {
                Ok(n) if n >= 1 => (name, Some(n)),
                _ => {
                    return Err(InvalidValue(format!(
                        "layer {raw:?}: the version must be a number from 1"
                    )))
                }
            },
            None => (raw, None),
        };
        let name = LambdaName::parse(name)
            .map_err(|reason| InvalidValue(format!("layer {raw:?}: {reason}")))?;
        Ok(Self { name, version })
    }
}

fn string_map(key: &str, value: &Value) -> Result<BTreeMap<String, String>, KeyError> {
    let Value::Object(map) = value else {
        return Err(KeyError::new(
            key,
            format!("must be an object of strings, not {value}"),
        ));
    };
    map.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            _ => Err(KeyError::new(
                key,
                format!("{k:?} must be a string, not {v}"),
            )),
        })
        .collect()
}

fn check_environment(env: &BTreeMap<String, String>) -> Result<(), KeyError> {
    let key = "environment";
    let mut total = 0;
    for (name, value) in env {
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(KeyError::new(
                key,
                format!("{name:?} is not a valid name (a letter, then letters, digits and '_')"),
            ));
        }
        if RESERVED_ENV.contains(&name.as_str())
            || RESERVED_ENV_PREFIXES.iter().any(|p| name.starts_with(p))
        {
            return Err(KeyError::new(
                key,
                format!("{name:?} is reserved for the platform"),
            ));
        }
        if value.contains('\0') {
            return Err(KeyError::new(
                key,
                format!("the value of {name:?} holds a NUL byte"),
            ));
        }
        total += name.len() + value.len();
    }
    if total > ENV_MAX_BYTES {
        return Err(KeyError::new(
            key,
            format!("names and values total {total} bytes, more than {ENV_MAX_BYTES}"),
        ));
    }
    Ok(())
}

fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), KeyError> {
    if tags.len() > MAX_TAGS {
        return Err(KeyError::new(
            "tags",
            format!("at most {MAX_TAGS} tags, not {}", tags.len()),
        ));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
            return Err(KeyError::new(
                "tags",
                format!("tag {k:?}: keys are 1 to 128 characters, values at most 256"),
            ));
        }
    }
    Ok(())
}

fn number(key: &str, value: &Value) -> Result<u64, KeyError> {
    let &(_, min, max) = RANGES
        .iter()
        .find(|(k, _, _)| *k == key)
        .unwrap_or(&("", 0, 0));
    let max = if key == "cpu_percent" {
        100 * std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
    } else {
        max
    };
    let Some(n) = value.as_u64() else {
        return Err(KeyError::new(
            key,
            format!("must be a whole number from {min} to {max}, not {value}"),
        ));
    };
    if n < min || n > max {
        return Err(KeyError::new(
            key,
            format!("must be from {min} to {max}, not {n}"),
        ));
    }
    if key == "memory_mb" && n % 64 != 0 {
        return Err(KeyError::new(
            key,
            format!("must be a multiple of 64, not {n}"),
        ));
    }
    Ok(n)
}

/// A destination of asynchronous outcomes: a function of the cluster, by name or by its ARN
/// (`arn:aws:lambda:<region>:<account>:function:<name>`, optionally `:$LATEST`).
pub fn destination(raw: &str) -> Result<LambdaName, InvalidValue> {
    let name = match raw.strip_prefix("arn:") {
        Some(_) => {
            let parts: Vec<&str> = raw.split(':').collect();
            match parts.as_slice() {
                ["arn", _, "lambda", _, _, "function", name]
                | ["arn", _, "lambda", _, _, "function", name, "$LATEST"] => *name,
                _ => {
                    return Err(InvalidValue(format!(
                        "{raw:?} is not a function ARN (arn:aws:lambda:<region>:<account>:function:<name>)"
                    )))
                }
            }
        }
        None => raw.strip_suffix(":$LATEST").unwrap_or(raw),
    };
    LambdaName::parse(name).map_err(|reason| InvalidValue(format!("destination {raw:?}: {reason}")))
}

fn text(key: &str, value: &Value) -> Result<String, KeyError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        _ => Err(KeyError::new(key, format!("must be a string, not {value}"))),
    }
}

/// Validates every key of `map`.
pub(crate) fn parse_map(map: &Map<String, Value>) -> Result<LambdaConfig, KeyError> {
    let mut c = LambdaConfig::default();
    if map.contains_key("workers") && map.contains_key("max_concurrency") {
        return Err(KeyError::new(
            "workers",
            "is another name for max_concurrency: give one of them",
        ));
    }
    for (key, value) in map {
        match key.as_str() {
            "entry" => {
                let raw = text(key, value)?;
                c.entry = Some(Entry::parse(&raw).map_err(|m| KeyError::new(key, m.0))?);
            }
            "type" => c.entry_type = Some(super::http_keys::parse_type(key, value)?),
            "payload_format" => {
                c.payload_format = Some(super::http_keys::parse_payload_format(key, value)?);
            }
            "triggers" => c.http_methods = Some(super::http_keys::parse_triggers(key, value)?),
            "runtime" => {
                let raw = text(key, value)?;
                let ok = raw.strip_prefix("python3.").is_some_and(|v| {
                    !v.is_empty() && v.len() <= 3 && v.bytes().all(|b| b.is_ascii_digit())
                });
                if !ok {
                    return Err(KeyError::new(
                        key,
                        format!("must be python3.N, not {raw:?}"),
                    ));
                }
                c.runtime = Some(raw);
            }
            "description" => {
                let raw = text(key, value)?;
                if raw.chars().count() > MAX_DESCRIPTION {
                    return Err(KeyError::new(
                        key,
                        format!("must be at most {MAX_DESCRIPTION} characters"),
                    ));
                }
                c.description = Some(raw);
            }
            "memory_mb" => c.memory_mb = Some(number(key, value)?),
            "timeout_s" => c.timeout_s = Some(number(key, value)?),
            "max_procs" => c.max_procs = Some(number(key, value)?),
            "cpu_percent" => c.cpu_percent = Some(number(key, value)?),
            "max_concurrency" | "workers" => c.max_concurrency = Some(number(key, value)?),
            "tmp_mb" => c.tmp_mb = Some(number(key, value)?),
            "provisioned_concurrency" => c.provisioned_concurrency = Some(number(key, value)?),
            "base" => {
                let raw = text(key, value)?;
                let name = LambdaName::parse(&raw)
                    .map_err(|m| KeyError::new(key, format!("{raw:?}: {m}")))?;
                c.base = Some(name);
            }
            "enable_gpu" => match value {
                Value::Bool(b) => c.enable_gpu = Some(*b),
                _ => {
                    return Err(KeyError::new(
                        key,
                        format!("must be true or false, not {value}"),
                    ))
                }
            },
            "gpus" => c.gpus = Some(super::gpu_keys::parse_gpus(key, value)?),
            "retry_attempts" => c.retry_attempts = Some(number(key, value)?),
            "max_event_age_s" => c.max_event_age_s = Some(number(key, value)?),
            "on_success" | "on_failure" => {
                let raw = text(key, value)?;
                let name = destination(&raw).map_err(|m| KeyError::new(key, m.0))?;
                if key == "on_success" {
                    c.on_success = Some(name);
                } else {
                    c.on_failure = Some(name);
                }
            }
            "environment" => {
                let env = string_map(key, value)?;
                check_environment(&env)?;
                c.environment = Some(env);
            }
            "layers" => {
                let Value::Array(items) = value else {
                    return Err(KeyError::new(
                        key,
                        format!("must be a list of layer names, not {value}"),
                    ));
                };
                if items.len() > MAX_LAYERS {
                    return Err(KeyError::new(
                        key,
                        format!("at most {MAX_LAYERS} layers, not {}", items.len()),
                    ));
                }
                let mut layers = Vec::with_capacity(items.len());
                for item in items {
                    let raw = text(key, item)?;
                    let layer = LayerRef::parse(&raw).map_err(|m| KeyError::new(key, m.0))?;
                    if layers.iter().any(|l: &LayerRef| l.name == layer.name) {
                        return Err(KeyError::new(
                            key,
                            format!("layer {} is listed twice", layer.name),
                        ));
                    }
                    layers.push(layer);
                }
                c.layers = Some(layers);
            }
            "volumes" => c.volumes = Some(super::volume_keys::parse(value)?),
            "tags" => {
                let tags = string_map(key, value)?;
                check_tags(&tags)?;
                c.tags = Some(tags);
            }
            _ => {
                return Err(KeyError::new(
                    key,
                    format!("unknown key (known: {})", KNOWN.join(", ")),
                ))
            }
        }
    }
    super::gpu_keys::check(c.enable_gpu, c.gpus.as_ref())?;
    Ok(c)
}

/// The keys `c` sets, in [`KNOWN`]'s order (`max_concurrency`, never `workers`).
pub(crate) fn to_map(c: &LambdaConfig) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_owned(), v);
        }
    };
    put("entry", c.entry.as_ref().map(|e| e.to_string().into()));
    put("type", c.entry_type.map(|t| t.as_str().into()));
    put(
        "payload_format",
        c.payload_format.map(|f| f.as_str().into()),
    );
    put(
        "triggers",
        c.http_methods
            .as_deref()
            .map(super::http_keys::triggers_value),
    );
    put("runtime", c.runtime.clone().map(Value::from));
    put("description", c.description.clone().map(Value::from));
    put("memory_mb", c.memory_mb.map(Value::from));
    put("timeout_s", c.timeout_s.map(Value::from));
    put("max_procs", c.max_procs.map(Value::from));
    put("cpu_percent", c.cpu_percent.map(Value::from));
    put("max_concurrency", c.max_concurrency.map(Value::from));
    put("tmp_mb", c.tmp_mb.map(Value::from));
    put(
        "provisioned_concurrency",
        c.provisioned_concurrency.map(Value::from),
    );
    put("base", c.base.as_ref().map(|b| b.to_string().into()));
    put("enable_gpu", c.enable_gpu.map(Value::from));
    put(
        "gpus",
        c.gpus.as_ref().map(super::gpu_keys::GpuRequest::to_value),
    );
    put("environment", c.environment.as_ref().map(super::string_map));
    put(
        "layers",
        c.layers
            .as_ref()
            .map(|l| l.iter().map(|l| Value::from(l.to_string())).collect()),
    );
    put(
        "volumes",
        c.volumes.as_deref().map(super::volume_keys::to_value),
    );
    put("tags", c.tags.as_ref().map(super::string_map));
    put("retry_attempts", c.retry_attempts.map(Value::from));
    put("max_event_age_s", c.max_event_age_s.map(Value::from));
    put(
        "on_success",
        c.on_success.as_ref().map(|n| n.to_string().into()),
    );
    put(
        "on_failure",
        c.on_failure.as_ref().map(|n| n.to_string().into()),
    );
    m
}
