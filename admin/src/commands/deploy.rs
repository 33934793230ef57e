//! `admin create|update -cluster DIR NAME PATH... [--requirements F] [--memory M] [--timeout T]
//! [--layers L,...] [--env K=V ...] [--entry M.F] [--description D] [--tag K=V ...]
//! [--workers N]` (LambdaPool's shape): deploys the given files and directories as a function.
//!
//! Both commands check everything before anything is sent: the flags (as the `lambda.json`
//! keys they set, [`crate::settings_flags`]), the files (copied into a zip in memory,
//! [`crate::code_zip`]) and, for `update`, that the function and the layers named exist.
//! `create` refuses an existing function. `update` refuses an unknown one; with PATHs it
//! replaces the code (UpdateFunctionCode), with flags it merges them into the function's
//! settings (UpdateFunctionConfiguration): `--env` gives the whole environment, as AWS's
//! `Environment` does; `--tag` adds or changes tags, keeping the others, as TagResource does;
//! every other flag replaces its key. Code and settings are two changes, code first, each
//! conditional on the revision the previous step left (a concurrent change makes the second
//! fail instead of overwriting it).

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use worker::functions::{FunctionInfo, FunctionStore, StoreError};
use worker::lambda_config::LambdaConfig;
use worker::name::LambdaName;

use crate::cluster_dir::ClusterDir;
use crate::code_zip::{self, CodeZip};
use crate::settings_flags::{flag_of, SettingsFlags};
use crate::store::{self, KeyArgs};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cluster directory
    #[arg(long, value_name = "DIR")]
    pub cluster: PathBuf,
    /// The function's name
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Files and directories to deploy (a lone directory: its contents are the top)
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// A requirements file, deployed as requirements.txt
    #[arg(long, short = 'r', value_name = "FILE")]
    pub requirements: Option<PathBuf>,
    #[command(flatten)]
    pub settings: SettingsFlags,
    #[command(flatten)]
    pub keys: KeyArgs,
}

/// A store error as one line, naming the flag when a setting is at fault.
pub fn store_error(e: StoreError) -> anyhow::Error {
    match &e {
        StoreError::Invalid {
            key: Some(key),
            message,
        } if flag_of(key) != "a setting" => anyhow!("{} ({key}): {message}", flag_of(key)),
        _ => anyhow::Error::new(e),
    }
}

fn parse_name(raw: &str) -> anyhow::Result<LambdaName> {
    LambdaName::parse(raw).map_err(|reason| anyhow!("invalid function name {raw:?}: {reason}"))
}

/// `version 3, 2 files, code 512 bytes, sha256 ...`.
fn summary(info: &FunctionInfo, zip: Option<&CodeZip>) -> String {
    let files = zip
        .map(|z| format!("{} files ({} bytes), ", z.files, z.unpacked))
        .unwrap_or_default();
    format!(
        "version {}, entry {}, {files}code {} bytes, sha256 {}",
        info.version, info.entry, info.code_size, info.code_sha256
    )
}

pub fn run_create(args: &Args) -> anyhow::Result<()> {
    let cluster = ClusterDir::open(&args.cluster)?;
    let name = parse_name(&args.name)?;
    let settings = args.settings.to_config()?;
    if args.paths.is_empty() {
        bail!("{name} not created: give the files and directories to deploy (admin create -cluster DIR {name} PATH...)");
    }
    let zip = code_zip::build(&args.paths, args.requirements.as_deref())?;
    let opened = store::open(&cluster, &args.keys)?;
    let info = opened
        .store
        .create(&name, &zip.bytes, &settings)
        .map_err(store_error)
        .with_context(|| format!("{name} not created on {}", opened.place))?;
    println!(
        "created {name} on {}: {}",
        opened.place,
        summary(&info, Some(&zip))
    );
    Ok(())
}

pub fn run_update(args: &Args) -> anyhow::Result<()> {
    let cluster = ClusterDir::open(&args.cluster)?;
    let name = parse_name(&args.name)?;
    let changes = args.settings.to_config()?;
    if args.paths.is_empty() && args.requirements.is_some() {
        bail!("{name} not updated: --requirements goes into the code, give the files and directories to deploy too");
    }
    if args.paths.is_empty() && !args.settings.any() {
        bail!("{name} not updated: give files and directories to deploy, or settings flags (--memory, --timeout, ...)");
    }
    let zip = if args.paths.is_empty() {
        None
    } else {
        Some(code_zip::build(&args.paths, args.requirements.as_deref())?)
    };
    let opened = store::open(&cluster, &args.keys)?;
    let store = opened.store.as_ref();
    let not_updated = || format!("{name} not updated on {}", opened.place);
    let current = store
        .get(&name)
        .map_err(store_error)
        .with_context(not_updated)?;
    let merged = merge(&changes, &current.settings);
    check_layers(store, &changes).with_context(not_updated)?;
    let mut info = current;
    let mut what = Vec::new();
    if let Some(zip) = &zip {
        info = store
            .update_code(&name, &zip.bytes, Some(&info.revision_id))
            .map_err(store_error)
            .with_context(not_updated)?;
        what.push("code replaced".to_owned());
    }
    if args.settings.any() {
        info = store
            .update_settings(&name, &merged, Some(&info.revision_id))
            .map_err(store_error)
            .with_context(|| {
                if zip.is_some() {
                    format!(
                        "{name}: code replaced (version {}), settings not changed on {}",
                        info.version, opened.place
                    )
                } else {
                    not_updated()
                }
            })?;
        what.push(format!("settings: {}", changed_keys(&changes)));
    }
    println!(
        "updated {name} on {} ({}): {}",
        opened.place,
        what.join("; "),
        summary(&info, zip.as_ref())
    );
    Ok(())
}

/// `changes` over `settings`: each key given replaces the function's, but tags are merged key
/// by key (see the module docs).
fn merge(changes: &LambdaConfig, settings: &LambdaConfig) -> LambdaConfig {
    let mut merged = changes.over(settings);
    if let (Some(new), Some(old)) = (&changes.tags, &settings.tags) {
        let mut tags = old.clone();
        tags.extend(new.iter().map(|(k, v)| (k.clone(), v.clone())));
        merged.tags = Some(tags);
    }
    merged
}

/// The keys `changes` sets, for the summary line.
fn changed_keys(changes: &LambdaConfig) -> String {
    match changes.to_value() {
        serde_json::Value::Object(m) => m.keys().cloned().collect::<Vec<_>>().join(", "),
        _ => String::new(),
    }
}

/// Every layer `changes` names exists (in the version named), so the settings step does not
/// fail after the code step.
fn check_layers(store: &dyn FunctionStore, changes: &LambdaConfig) -> anyhow::Result<()> {
    for layer in changes.layers.iter().flatten() {
        let versions = store
            .layer_versions(&layer.name)
            .map_err(store_error)
            .with_context(|| format!("--layers {layer}"))?;
        if let Some(v) = layer.version {
            if !versions.iter().any(|l| l.version == v) {
                bail!("--layers {layer}: layer {} has no version {v}", layer.name);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_merge_and_other_keys_replace() {
        let settings = LambdaConfig::parse(
            r#"{"memory_mb": 256, "environment": {"A": "1"}, "tags": {"a": "1", "b": "2"}}"#,
        )
        .unwrap();
        let changes =
            LambdaConfig::parse(r#"{"environment": {"B": "2"}, "tags": {"b": "3", "c": "4"}}"#)
                .unwrap();
        let m = merge(&changes, &settings);
        assert_eq!(
            m.to_value(),
            serde_json::json!({"memory_mb": 256, "environment": {"B": "2"},
                "tags": {"a": "1", "b": "3", "c": "4"}})
        );
        assert_eq!(changed_keys(&changes), "environment, tags");
    }

    #[test]
    fn setting_errors_name_the_flag() {
        let e = store_error(StoreError::Invalid {
            key: Some("max_concurrency".into()),
            message: "cannot be set here".into(),
        });
        assert_eq!(
            e.to_string(),
            "--workers (max_concurrency): cannot be set here"
        );
        let e = store_error(StoreError::Exists { name: "f".into() });
        assert_eq!(e.to_string(), "function already exists: f");
    }
}
