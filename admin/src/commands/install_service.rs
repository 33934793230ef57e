//! `admin install-service -cluster DIR [--num-workers N] [--port P] [--unit-dir DIR]
//! [--no-enable]`: runs the cluster's workers under systemd instead of `admin workers`.
//!
//! In order: write `config/worker-i.json` for each worker (as `admin workers` does, the log to
//! stderr: the journal keeps it); write the template unit `lambdaworker@.service` into the unit
//! directory with this admin binary in `ExecStart`; unless `--no-enable`, check that systemd
//! runs here and the ports are free, then `systemctl daemon-reload` and
//! `systemctl enable --now` one instance per worker (each start waits for the worker's READY=1).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use worker::config::Config;

use super::local_host;
use super::workers::{port_of, write_config, Fleet, Output};
use crate::background::port_in_use;
use crate::cluster_dir::ClusterDir;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub fleet: Fleet,
    /// Where the unit file goes
    #[arg(long, value_name = "DIR", default_value = "/etc/systemd/system")]
    pub unit_dir: PathBuf,
    /// Only write the configs and the unit file; do not reload systemd or start the units
    #[arg(long)]
    pub no_enable: bool,
}

/// Where systemd keeps its runtime state when it is the init system (sd_booted(3)).
const SYSTEMD_RUNNING: &str = "/run/systemd/system";

pub fn run(args: &Args) -> anyhow::Result<()> {
    let cluster = ClusterDir::open(&args.fleet.cluster)?;
    let template = Config::load(&cluster.template())?;
    let first_port = args.fleet.port.unwrap_or(template.worker_port);
    if first_port == 0 {
        bail!(
            "worker_port is 0 in {}: pass --port P",
            cluster.template().display()
        );
    }
    let mut units = Vec::new();
    let mut ports = Vec::new();
    for i in 0..u32::from(args.fleet.num_workers) {
        let port = port_of(i, first_port)?;
        let (_, path) = write_config(&cluster, &template, i, port, Output::Stderr)?;
        let path = std::path::absolute(&path)
            .with_context(|| format!("cannot make {} absolute", path.display()))?;
        units.push(admin::service::instance(&path));
        ports.push(port);
    }
    let admin = std::env::current_exe().context("cannot locate the admin binary")?;
    let unit_path = write_unit(&args.unit_dir, &admin, template.shutdown_timeout_s)?;
    println!(
        "wrote {} (ExecStart: {})",
        unit_path.display(),
        admin.display()
    );
    for (unit, port) in units.iter().zip(&ports) {
        println!("  {unit} (port {port})");
    }
    let quoted: Vec<String> = units.iter().map(|u| format!("'{u}'")).collect();
    if args.no_enable {
        println!(
            "start them with: systemctl daemon-reload && systemctl enable --now {}",
            quoted.join(" ")
        );
        return Ok(());
    }
    if !Path::new(SYSTEMD_RUNNING).is_dir() {
        bail!(
            "systemd is not the init system here (no {SYSTEMD_RUNNING}): the configs and {} are written, but nothing can enable them; run `admin workers` instead, or pass --no-enable to only write the files",
            unit_path.display()
        );
    }
    let host = local_host(&template.worker_host);
    for port in &ports {
        if port_in_use(host, *port) {
            bail!("port {port} is already in use (a worker from `admin workers`? stop it with `admin kill`); choose other ports with --port P");
        }
    }
    systemctl(&["daemon-reload"])?;
    let mut enable = vec!["enable", "--now"];
    enable.extend(units.iter().map(String::as_str));
    systemctl(&enable)?;
    println!("enabled and started; logs: journalctl -u 'lambdaworker@*'");
    Ok(())
}

/// Writes the template unit for `admin` into `dir`; its path.
fn write_unit(dir: &Path, admin: &Path, shutdown_timeout_s: u64) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(admin::service::UNIT_FILE);
    // The worker's own shutdown, then time to remove its sandboxes.
    let unit = admin::service::render_unit(admin, shutdown_timeout_s.saturating_add(30));
    let tmp = dir.join(format!(".{}.tmp", admin::service::UNIT_FILE));
    std::fs::write(&tmp, unit).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn systemctl(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("systemctl")
        .args(args)
        .status()
        .context("cannot run systemctl")?;
    if !status.success() {
        bail!(
            "systemctl {} failed ({status}); see `systemctl status 'lambdaworker@*'`",
            args.join(" ")
        );
    }
    Ok(())
}
