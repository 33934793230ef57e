//! `admin setconf -cluster DIR '{json}'`: merges keys into the cluster's `config/template.json`.
//! Unknown keys and wrong types are rejected with the key named.

use std::path::PathBuf;

use anyhow::Context;
use worker::config::Config;

use crate::cluster_dir::ClusterDir;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cluster directory
    #[arg(long, value_name = "DIR")]
    pub cluster: PathBuf,
    /// A JSON object of keys to set, e.g. '{"memory_mb": 512}'
    #[arg(value_name = "JSON")]
    pub overrides: String,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let cluster = ClusterDir::open(&args.cluster)?;
    let path = cluster.template();
    let cfg = Config::load(&path)?;
    let merged = cfg
        .merge_json(&args.overrides)
        .with_context(|| format!("{} not changed", path.display()))?;
    let keys = changed_keys(&args.overrides);
    if keys.is_empty() {
        println!("no keys given: {} not changed", path.display());
        return Ok(());
    }
    merged.save(&path)?;
    println!("updated {}: {}", path.display(), keys.join(", "));
    if !cluster.worker_configs()?.is_empty() {
        println!(
            "note: workers read it when started: run `admin kill` and `admin workers` to apply it"
        );
    }
    Ok(())
}

/// The keys of a JSON object as `key=value`, sorted by key (empty for anything else).
fn changed_keys(overrides: &str) -> Vec<String> {
    match serde_json::from_str::<serde_json::Value>(overrides) {
        Ok(serde_json::Value::Object(map)) => {
            map.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn changed_keys_are_listed() {
        assert_eq!(
            super::changed_keys(r#"{"memory_mb": 512, "net": "host"}"#),
            ["memory_mb=512", "net=\"host\""]
        );
        assert!(super::changed_keys("[]").is_empty());
    }
}
