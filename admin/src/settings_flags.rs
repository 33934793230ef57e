//! The settings flags of `admin create` and `admin update` (`--memory`, `--timeout`,
//! `--layers`, `--env`, `--entry`, `--description`, `--tag`, `--workers`) as `lambda.json` keys,
//! validated by [`LambdaConfig`] itself, so a flag is held to exactly the rules of the key it
//! sets; an error names the flag, the value given and the key's rule
//! (`--memory 100: memory_mb must be from 128 to 3008, not 100`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use worker::lambda_config::{KeyError, LambdaConfig};

/// The flags (every one optional).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SettingsFlags {
    /// Memory in MB: 128 to 3008, a multiple of 64
    #[arg(long, value_name = "MB")]
    pub memory: Option<String>,
    /// Timeout in seconds: 1 to 900
    #[arg(long, value_name = "S")]
    pub timeout: Option<String>,
    /// Layers, in sys.path order (at most 5): NAME, NAME:VERSION or a layer version ARN
    #[arg(long, value_name = "L,...", value_delimiter = ',')]
    pub layers: Option<Vec<String>>,
    /// An environment variable (repeat for more)
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// The function to call: module.function (default: lambda_func.handler)
    #[arg(long, value_name = "MODULE.FUNCTION")]
    pub entry: Option<String>,
    /// A description (at most 256 characters)
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// A tag (repeat for more)
    #[arg(long = "tag", value_name = "K=V")]
    pub tags: Vec<String>,
    /// Concurrent sandboxes of the function: 1 to 32
    #[arg(long, value_name = "N")]
    pub workers: Option<String>,
}

/// A flag's value that the key it sets refuses; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag} {value}: {message}")]
pub struct FlagError {
    pub flag: &'static str,
    pub value: String,
    pub message: String,
}

/// The flag that sets a `lambda.json` key.
pub fn flag_of(key: &str) -> &'static str {
    match key {
        "memory_mb" => "--memory",
        "timeout_s" => "--timeout",
        "layers" => "--layers",
        "environment" => "--env",
        "entry" => "--entry",
        "description" => "--description",
        "tags" => "--tag",
        "workers" | "max_concurrency" => "--workers",
        _ => "a setting",
    }
}

/// `K=V` pairs of a repeated flag; a pair without `=`, or a key given twice, is refused.
fn pairs(flag: &'static str, raw: &[String]) -> Result<BTreeMap<String, String>, FlagError> {
    let mut map = BTreeMap::new();
    for item in raw {
        let Some((k, v)) = item.split_once('=') else {
            return Err(FlagError {
                flag,
                value: item.clone(),
                message: "must be KEY=VALUE".to_owned(),
            });
        };
        if map.insert(k.to_owned(), v.to_owned()).is_some() {
            return Err(FlagError {
                flag,
                value: item.clone(),
                message: format!("{k} is given twice"),
            });
        }
    }
    Ok(map)
}

/// A whole number as JSON, or the text itself (which the key then refuses, naming its rule).
fn number(raw: &str) -> Value {
    raw.trim()
        .parse::<u64>()
        .map(Value::from)
        .unwrap_or_else(|_| Value::String(raw.to_owned()))
}

/// A layer as `lambda.json` takes it: `name` or `name:N`; a layer version ARN
/// (`arn:aws:lambda:<region>:<account>:layer:<name>:<N>`) is taken by its name and version.
fn layer(raw: &str) -> String {
    match raw.split_once(":layer:") {
        Some((prefix, rest)) if prefix.starts_with("arn:") => rest.to_owned(),
        _ => raw.to_owned(),
    }
}

impl SettingsFlags {
    /// Whether any flag is given.
    pub fn any(&self) -> bool {
        self.memory.is_some()
            || self.timeout.is_some()
            || self.layers.is_some()
            || !self.env.is_empty()
            || self.entry.is_some()
            || self.description.is_some()
            || !self.tags.is_empty()
            || self.workers.is_some()
    }

    /// The keys the flags set (and only those), validated.
    pub fn to_config(&self) -> Result<LambdaConfig, FlagError> {
        let mut keys = Map::new();
        let mut given: BTreeMap<&str, String> = BTreeMap::new();
        if let Some(m) = &self.memory {
            keys.insert("memory_mb".into(), number(m));
            given.insert("memory_mb", m.clone());
        }
        if let Some(t) = &self.timeout {
            keys.insert("timeout_s".into(), number(t));
            given.insert("timeout_s", t.clone());
        }
        if let Some(w) = &self.workers {
            keys.insert("workers".into(), number(w));
            given.insert("workers", w.clone());
        }
        if let Some(layers) = &self.layers {
            let list: Vec<Value> = layers
                .iter()
                .filter(|l| !l.trim().is_empty())
                .map(|l| Value::String(layer(l.trim())))
                .collect();
            keys.insert("layers".into(), Value::Array(list));
            given.insert("layers", layers.join(","));
        }
        if !self.env.is_empty() {
            let env = pairs("--env", &self.env)?;
            keys.insert("environment".into(), string_map(&env));
            given.insert("environment", self.env.join(" "));
        }
        if !self.tags.is_empty() {
            let tags = pairs("--tag", &self.tags)?;
            keys.insert("tags".into(), string_map(&tags));
            given.insert("tags", self.tags.join(" "));
        }
        if let Some(e) = &self.entry {
            keys.insert("entry".into(), Value::String(e.clone()));
            given.insert("entry", e.clone());
        }
        if let Some(d) = &self.description {
            keys.insert("description".into(), Value::String(d.clone()));
            given.insert("description", format!("{d:?}"));
        }
        LambdaConfig::from_value(&Value::Object(keys)).map_err(|KeyError { key, message }| {
            let key = key.unwrap_or_default();
            FlagError {
                flag: flag_of(&key),
                value: given.get(key.as_str()).cloned().unwrap_or_default(),
                message: if message.starts_with("must ") {
                    format!("{key} {message}")
                } else {
                    format!("{key}: {message}")
                },
            }
        })
    }
}

fn string_map(map: &BTreeMap<String, String>) -> Value {
    Value::Object(
        map.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> SettingsFlags {
        SettingsFlags::default()
    }

    #[test]
    fn flags_become_keys() {
        let f = SettingsFlags {
            memory: Some("512".into()),
            timeout: Some("30".into()),
            layers: Some(vec![
                "common".into(),
                "arn:aws:lambda:us-east-1:000000000000:layer:numpy:3".into(),
            ]),
            env: vec!["A=1".into(), "B=x=y".into()],
            entry: Some("app.handler".into()),
            description: Some("d".into()),
            tags: vec!["lambdapool=yes".into()],
            workers: Some("4".into()),
        };
        assert!(f.any());
        let c = f.to_config().unwrap();
        assert_eq!(
            c.to_value(),
            serde_json::json!({"entry": "app.handler", "description": "d", "memory_mb": 512,
                "timeout_s": 30, "max_concurrency": 4, "environment": {"A": "1", "B": "x=y"},
                "layers": ["common", "numpy:3"], "tags": {"lambdapool": "yes"}})
        );
        assert!(!flags().any());
        assert_eq!(flags().to_config().unwrap(), LambdaConfig::default());
    }

    #[test]
    fn bad_values_name_the_flag_and_the_rule() {
        let e = SettingsFlags {
            memory: Some("100".into()),
            ..flags()
        }
        .to_config()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--memory 100: memory_mb must be from 128 to 3008, not 100"
        );
        let e = SettingsFlags {
            memory: Some("200".into()),
            ..flags()
        }
        .to_config()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--memory 200: memory_mb must be a multiple of 64, not 200"
        );
        let e = SettingsFlags {
            timeout: Some("901".into()),
            ..flags()
        }
        .to_config()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--timeout 901: timeout_s must be from 1 to 900, not 901"
        );
        let e = SettingsFlags {
            timeout: Some("ten".into()),
            ..flags()
        }
        .to_config()
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--timeout ten: timeout_s must be a whole number"),
            "{e}"
        );
        let e = SettingsFlags {
            layers: Some(["a", "b", "c", "d", "e", "f"].map(String::from).to_vec()),
            ..flags()
        }
        .to_config()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--layers a,b,c,d,e,f: layers: at most 5 layers, not 6"
        );
        let e = SettingsFlags {
            workers: Some("33".into()),
            ..flags()
        }
        .to_config()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--workers 33: workers must be from 1 to 32, not 33"
        );
        let e = SettingsFlags {
            env: vec!["NOEQUALS".into()],
            ..flags()
        }
        .to_config()
        .unwrap_err();
        assert_eq!(e.to_string(), "--env NOEQUALS: must be KEY=VALUE");
        let e = SettingsFlags {
            env: vec!["1A=x".into()],
            ..flags()
        }
        .to_config()
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--env 1A=x: environment: \"1A\" is not a valid name"),
            "{e}"
        );
        let e = SettingsFlags {
            entry: Some("nodot".into()),
            ..flags()
        }
        .to_config()
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--entry nodot: entry must be module.function"),
            "{e}"
        );
        let e = SettingsFlags {
            tags: vec!["a=1".into(), "a=2".into()],
            ..flags()
        }
        .to_config()
        .unwrap_err();
        assert_eq!(e.to_string(), "--tag a=2: a is given twice");
    }
}
