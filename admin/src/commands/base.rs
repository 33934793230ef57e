//! `admin base create -cluster DIR NAME --from BASE --packages P,...`,
//! `admin base import -cluster DIR NAME IMAGE.tar`, `admin base list -cluster DIR` and
//! `admin base delete -cluster DIR NAME`: the cluster's custom bases (`docs/bases.md`), which
//! functions name with `"base": "NAME"`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use worker::config::Config;

use super::functions::{columns, format_ms};
use crate::cluster_dir::ClusterDir;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: BaseCmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum BaseCmd {
    /// Build a base that extends another (`default`, or a custom base) with Debian packages
    Create(CreateArgs),
    /// Import an OCI image layout or a `docker save` archive (a tar) as a base
    Import(ImportArgs),
    /// List the custom bases
    List(ListArgs),
    /// Delete a custom base
    Delete(DeleteArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The cluster directory
    #[arg(long, value_name = "DIR")]
    pub cluster: PathBuf,
    /// The base's name (letters, digits, '_' and '-')
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The base it extends: `default` (the cluster's own) or a custom base
    #[arg(long, value_name = "BASE", default_value = "default")]
    pub from: String,
    /// Debian packages to install, comma-separated (the option may be repeated)
    #[arg(long, value_name = "P,...", required = true)]
    pub packages: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The cluster directory
    #[arg(long, value_name = "DIR")]
    pub cluster: PathBuf,
    /// The base's name (letters, digits, '_' and '-')
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The image: a tar of an OCI image layout, or what `docker save` writes
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
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
    /// The base's name
    #[arg(value_name = "NAME")]
    pub name: String,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    match &args.command {
        BaseCmd::Create(a) => create(a),
        BaseCmd::Import(a) => import(a),
        BaseCmd::List(a) => list(a),
        BaseCmd::Delete(a) => delete(a),
    }
}

fn bases_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    Ok(dirs(dir)?.0)
}

/// The cluster's bases directory and its default base.
fn dirs(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cluster = ClusterDir::open(dir)?;
    let template = Config::load(&cluster.template())?;
    let bases = if template.bases_dir.as_os_str().is_empty() {
        cluster.root().join("bases")
    } else {
        template.bases_dir
    };
    Ok((bases, template.base_dir))
}

fn create(args: &CreateArgs) -> anyhow::Result<()> {
    use admin::bases::recipe;
    let (bases, default_root) = dirs(&args.cluster)?;
    let not_made = || format!("base {} not created", args.name);
    let plan = recipe::Recipe::new(&args.from, &args.packages).with_context(not_made)?;
    let from = recipe::source(&bases, &default_root, &args.from).with_context(not_made)?;
    let progress = |line: &str| eprintln!("base {}: {line}", args.name);
    let cache = admin::cluster::base::default_cache_dir();
    let done = recipe::create(&bases, &cache, &args.name, &plan, &from, &progress)
        .with_context(not_made)?;
    println!(
        "created base {} from {} + {} ({} {}), python {}, in {:.1} s",
        done.info.name,
        plan.from,
        plan.packages.join(","),
        if done.built { "built" } else { "cached" },
        done.entry.display(),
        done.info.python,
        done.seconds
    );
    Ok(())
}

fn import(args: &ImportArgs) -> anyhow::Result<()> {
    let dir = bases_dir(&args.cluster)?;
    let progress = |line: &str| eprintln!("base {}: {line}", args.name);
    let done = admin::bases::import(&dir, &args.name, &args.image, &progress)
        .with_context(|| format!("base {} not imported", args.name))?;
    println!(
        "imported base {} from {} ({}): {} layers, {} MiB, python {}, in {:.1} s",
        done.info.name,
        args.image.display(),
        done.info.origin,
        done.layers,
        done.bytes / (1024 * 1024),
        done.info.python,
        done.seconds
    );
    Ok(())
}

fn list(args: &ListArgs) -> anyhow::Result<()> {
    let dir = bases_dir(&args.cluster)?;
    let all = admin::bases::list(&dir)?;
    let mut rows = vec![[
        "NAME".to_owned(),
        "ORIGIN".to_owned(),
        "PYTHON".to_owned(),
        "CREATED (UTC)".to_owned(),
    ]];
    for b in &all {
        rows.push([
            b.name.clone(),
            b.origin.clone(),
            b.python.clone(),
            format_ms(b.created.saturating_mul(1000)),
        ]);
    }
    for line in columns(&rows) {
        println!("{line}");
    }
    println!(
        "{} base(s) in {} (and the default one)",
        all.len(),
        dir.display()
    );
    Ok(())
}

fn delete(args: &DeleteArgs) -> anyhow::Result<()> {
    let dir = bases_dir(&args.cluster)?;
    admin::bases::delete(&dir, &args.name)?;
    println!("deleted base {}", args.name);
    Ok(())
}
