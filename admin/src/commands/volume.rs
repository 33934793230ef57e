//! `admin volume create -cluster DIR NAME [--size-mb N]`, `admin volume list -cluster DIR` and
//! `admin volume delete -cluster DIR NAME [--force]`: the cluster's shared volumes
//! (`docs/volumes.md`), which functions mount through the access points of their `volumes` key.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use worker::config::Config;
use worker::lambda_config::LambdaConfig;
use worker::volumes::{VolumeInfo, Volumes};

use super::functions::{columns, format_ms};
use crate::cluster_dir::ClusterDir;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: VolumeCmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum VolumeCmd {
    /// Create a volume (size-limited with --size-mb: an ext4 image, loop-mounted)
    Create(CreateArgs),
    /// List the volumes, their size limits and the space they use
    List(ListArgs),
    /// Delete a volume and everything on it
    Delete(DeleteArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The cluster directory
    #[arg(long, value_name = "DIR")]
    pub cluster: PathBuf,
    /// The volume's name (letters, digits, '_' and '-')
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Its size limit in MiB (16 to 1048576); without it, the host file system's space
    #[arg(long, value_name = "MB")]
    pub size_mb: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The cluster directory
    #[arg(long, value_name = "DIR")]
    pub cluster: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// The cluster directory
    #[arg(long, value_name = "DIR")]
    pub cluster: PathBuf,
    /// The volume's name
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Delete it even though functions still name it in their `volumes`
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    match &args.command {
        VolumeCmd::Create(a) => create(a),
        VolumeCmd::List(a) => list(a),
        VolumeCmd::Delete(a) => delete(a),
    }
}

/// The cluster's volumes and its local registry directory.
fn open(dir: &Path) -> anyhow::Result<(Volumes, PathBuf)> {
    let cluster = ClusterDir::open(dir)?;
    let template = Config::load(&cluster.template())?;
    let dir = if template.volumes_dir.as_os_str().is_empty() {
        cluster.root().join("volumes")
    } else {
        template.volumes_dir.clone()
    };
    Ok((Volumes::new(dir), template.registry_dir))
}

fn create(args: &CreateArgs) -> anyhow::Result<()> {
    let (volumes, _) = open(&args.cluster)?;
    let info = volumes.create(&args.name, args.size_mb)?;
    let data = volumes.data_dir(&info.name)?;
    println!(
        "created volume {} ({}) at {}",
        info.name,
        limit(&info),
        data.display()
    );
    Ok(())
}

fn list(args: &ListArgs) -> anyhow::Result<()> {
    let (volumes, registry) = open(&args.cluster)?;
    let all = volumes.list()?;
    let users = users_of(&registry);
    let mut rows = vec![[
        "NAME".to_owned(),
        "LIMIT".to_owned(),
        "USED".to_owned(),
        "CREATED (UTC)".to_owned(),
        "FUNCTIONS".to_owned(),
    ]];
    for v in &all {
        let used = volumes
            .data_dir(&v.name)
            .map(|d| format!("{} KiB", disk_usage(&d) / 1024))
            .unwrap_or_else(|e| format!("? ({e})"));
        let fns: Vec<&str> = users
            .iter()
            .filter(|(_, vol)| *vol == v.name)
            .map(|(f, _)| f.as_str())
            .collect();
        rows.push([
            v.name.clone(),
            limit(v),
            used,
            format_ms(v.created.saturating_mul(1000)),
            if fns.is_empty() {
                "-".to_owned()
            } else {
                fns.join(",")
            },
        ]);
    }
    for line in columns(&rows) {
        println!("{line}");
    }
    println!("{} volume(s) in {}", all.len(), volumes.dir().display());
    Ok(())
}

fn delete(args: &DeleteArgs) -> anyhow::Result<()> {
    let (volumes, registry) = open(&args.cluster)?;
    volumes.info(&args.name)?;
    let users: Vec<String> = users_of(&registry)
        .into_iter()
        .filter(|(_, v)| *v == args.name)
        .map(|(f, _)| f)
        .collect();
    if !users.is_empty() && !args.force {
        bail!(
            "volume {} is used by function(s) {}: change their `volumes` first, or delete with --force",
            args.name,
            users.join(", ")
        );
    }
    volumes
        .delete(&args.name)
        .with_context(|| format!("volume {} not deleted", args.name))?;
    println!("deleted volume {}", args.name);
    Ok(())
}

fn limit(v: &VolumeInfo) -> String {
    v.size_mb
        .map_or_else(|| "no limit".to_owned(), |mb| format!("{mb} MiB"))
}

/// (function, volume) for each access point of each function in the local registry whose
/// `lambda.json` reads.
fn users_of(registry: &Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(registry) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.filter_map(Result::ok) {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if let Ok(cfg) = LambdaConfig::load(&e.path()) {
            for p in cfg.volumes.iter().flatten() {
                out.push((name.clone(), p.volume.to_string()));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Bytes allocated under `dir`, never following a link or leaving its file system.
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let Ok(md) = e.metadata() else { continue };
            if md.dev() != top.dev() {
                continue;
            }
            total += md.blocks() * 512;
            if md.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}
