//! `admin doctor [-cluster DIR] [--port P] [--json]`: checks the kernel and the host before
//! anything starts (see docs/doctor.md for every check); one line per check, `OK`, `WARN` or
//! `FAIL` with its fix; exits non-zero when a check fails. Without `-cluster`, checks the host,
//! the base cache and the built-in template's settings.

use std::path::PathBuf;

use anyhow::bail;
use worker::config::Config;
use worker::preflight::{Level, Report, Scope};

use crate::cluster_dir::ClusterDir;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cluster to check (its base, disk, package index and port) [default: the host and the base cache only]
    #[arg(long, value_name = "DIR")]
    pub cluster: Option<PathBuf>,
    /// The port to check is free [default: the template's worker_port]
    #[arg(long, value_name = "P")]
    pub port: Option<u16>,
    /// Print the report as JSON ({"checks": [...], "ok": N, "warn": N, "fail": N})
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let (dir, template) = match &args.cluster {
        Some(c) => {
            let cluster = ClusterDir::open(c)?;
            let cfg = Config::load(&cluster.template())?;
            (Some(cluster.root().to_owned()), Some(cfg))
        }
        None => (None, None),
    };
    let target = admin::preflight::target(dir.as_deref(), template.as_ref(), args.port)?;
    let report = Report::run(&target, Scope::Full);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        print!("{}", report.text());
    }
    let failed = report.count(Level::Fail);
    if failed > 0 {
        bail!(
            "{failed} check{} failed: workers cannot run here until {} fixed",
            if failed == 1 { "" } else { "s" },
            if failed == 1 { "it is" } else { "they are" }
        );
    }
    Ok(())
}

/// The quick checks `admin workers` runs before it starts anything: warnings are printed, a
/// failure refuses with the same lines `admin doctor` prints.
pub fn before_workers(cluster: &ClusterDir, template: &Config) -> anyhow::Result<()> {
    let target = admin::preflight::target(Some(cluster.root()), Some(template), None)?;
    let report = Report::run(&target, worker::preflight::Scope::Quick);
    for w in report.at(Level::Warn) {
        eprintln!("admin: {}", w.line());
    }
    if report.failed() {
        let lines: Vec<String> = report.at(Level::Fail).map(|f| f.line()).collect();
        bail!(
            "this host cannot run workers (admin doctor -cluster {} shows every check; --skip-checks starts them anyway):\n{}",
            cluster.root().display(),
            lines.join("\n")
        );
    }
    Ok(())
}
