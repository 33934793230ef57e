//! `admin functions -cluster DIR [--tag K=V ...]`: the cluster's functions as a table (name,
//! entry, memory, timeout, code size, version, last modified), from the local registry or the
//! registry server; with `--tag`, only those carrying every tag given (as LambdaPool lists its
//! own). Memory and timeout a function does not set are the template's, as its sandboxes get
//! them.

use std::path::PathBuf;

use anyhow::Context;
use worker::functions::FunctionInfo;
use worker::lambda_config::LambdaLimits;

use crate::cluster_dir::ClusterDir;
use crate::store::{self, KeyArgs};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cluster directory
    #[arg(long, value_name = "DIR")]
    pub cluster: PathBuf,
    /// Only functions with this tag (KEY=VALUE); repeat for more
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    #[command(flatten)]
    pub keys: KeyArgs,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let wanted = args
        .tags
        .iter()
        .map(|t| match t.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => anyhow::bail!("--tag {t}: must be KEY=VALUE"),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cluster = ClusterDir::open(&args.cluster)?;
    let opened = store::open(&cluster, &args.keys)?;
    let mut functions = opened
        .store
        .list()
        .map_err(super::deploy::store_error)
        .with_context(|| format!("cannot list the functions of {}", opened.place))?;
    functions.retain(|f| has_tags(f, &wanted));
    let defaults = LambdaLimits::defaults(&opened.template);
    for line in table(&functions, &defaults) {
        println!("{line}");
    }
    println!("{} function(s) in {}", functions.len(), opened.place);
    Ok(())
}

/// Whether `f` carries every tag in `wanted`.
pub fn has_tags(f: &FunctionInfo, wanted: &[(String, String)]) -> bool {
    let tags = f.config.tags.as_ref();
    wanted
        .iter()
        .all(|(k, v)| tags.and_then(|t| t.get(k)) == Some(v))
}

/// `2026-12-02 03:04:05` (UTC) for milliseconds since the Unix epoch.
pub fn format_ms(ms: u64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    time::OffsetDateTime::from(t)
        .format(FORMAT)
        .unwrap_or_else(|_| "-".to_owned())
}

/// The header and one row per function, in columns.
pub fn table(functions: &[FunctionInfo], defaults: &LambdaLimits) -> Vec<String> {
    let mut rows = vec![[
        "NAME".to_owned(),
        "ENTRY".to_owned(),
        "MEMORY".to_owned(),
        "TIMEOUT".to_owned(),
        "CODE".to_owned(),
        "VERSION".to_owned(),
        "LAST MODIFIED (UTC)".to_owned(),
    ]];
    for f in functions {
        rows.push([
            f.name.to_string(),
            f.entry.to_string(),
            format!("{}MB", f.config.memory_mb.unwrap_or(defaults.memory_mb)),
            format!("{}s", f.config.timeout_s.unwrap_or(defaults.timeout_s)),
            f.code_size.to_string(),
            f.version.to_string(),
            format_ms(f.last_modified_ms),
        ]);
    }
    columns(&rows)
}

/// Rows padded into columns two spaces apart (numbers right-aligned past the header row).
pub fn columns<const N: usize>(rows: &[[String; N]]) -> Vec<String> {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, w)| format!("{cell:w$}"))
                .collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use worker::config::Config;
    use worker::lambda_config::{Entry, LambdaConfig};
    use worker::name::LambdaName;

    fn info(name: &str, config: &str, version: u64) -> FunctionInfo {
        FunctionInfo {
            name: LambdaName::parse(name).unwrap(),
            config: LambdaConfig::parse(config).unwrap(),
            settings: LambdaConfig::default(),
            entry: Entry::default(),
            code_sha256: "ab".repeat(32),
            code_size: 1234,
            version,
            revision_id: "r".into(),
            last_modified_ms: 1_796_180_645_007,
            has_docs: false,
        }
    }

    #[test]
    fn the_table_shows_defaults_for_what_a_function_does_not_set() {
        let cfg = Config::default();
        let d = LambdaLimits::defaults(&cfg);
        let lines = table(
            &[
                info("hello", "{}", 1),
                info(
                    "resize-images",
                    r#"{"memory_mb": 1024, "timeout_s": 30}"#,
                    12,
                ),
            ],
            &d,
        );
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("NAME           ENTRY"), "{lines:?}");
        assert!(
            lines[1].contains(&format!("{}MB", d.memory_mb)),
            "{lines:?}"
        );
        assert!(lines[2].contains("1024MB"), "{lines:?}");
        assert!(lines[2].contains("30s"), "{lines:?}");
        assert!(
            lines[2].ends_with("  12       2026-12-02 03:04:05"),
            "{lines:?}"
        );
    }
}
