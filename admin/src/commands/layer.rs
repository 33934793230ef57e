//! `admin layer publish -cluster DIR NAME PATH... [--description D] [--runtime R ...]` and
//! `admin layer list -cluster DIR`: shared read-only layers, in the local registry or on the
//! registry server. Publishing makes a new version (1 for a new layer) from the files and
//! directories given, copied into a zip as `admin create` does ([`crate::code_zip`]); put
//! Python packages under `python/` (AWS's layout) or at the top.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use worker::name::LambdaName;

use super::functions::{columns, format_ms};
use crate::cluster_dir::ClusterDir;
use crate::code_zip;
use crate::store::{self, KeyArgs};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: LayerCmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum LayerCmd {
    /// Publish a new version of a layer from files and directories
    Publish(PublishArgs),
    /// List the layers (latest version of each)
    List(ListArgs),
}

#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// The cluster directory
    #[arg(long, value_name = "DIR")]
    pub cluster: PathBuf,
    /// The layer's name
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Files and directories of the layer (a lone directory: its contents are the top)
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// A description of this version
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// A runtime the layer is meant for, e.g. python3.12 (repeat for more)
    #[arg(long = "runtime", value_name = "RUNTIME")]
    pub runtimes: Vec<String>,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The cluster directory
    #[arg(long, value_name = "DIR")]
    pub cluster: PathBuf,
    #[command(flatten)]
    pub keys: KeyArgs,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    match &args.command {
        LayerCmd::Publish(a) => publish(a),
        LayerCmd::List(a) => list(a),
    }
}

fn publish(args: &PublishArgs) -> anyhow::Result<()> {
    let cluster = ClusterDir::open(&args.cluster)?;
    let name = LambdaName::parse(&args.name)
        .map_err(|reason| anyhow!("invalid layer name {:?}: {reason}", args.name))?;
    let zip = code_zip::build(&args.paths, None)?;
    let opened = store::open(&cluster, &args.keys)?;
    let v = opened
        .store
        .publish_layer(
            &name,
            &zip.bytes,
            args.description.as_deref(),
            &args.runtimes,
        )
        .map_err(super::deploy::store_error)
        .with_context(|| format!("layer {name} not published on {}", opened.place))?;
    println!(
        "published layer {name} version {} on {}: {} files, code {} bytes, sha256 {}",
        v.version, opened.place, zip.files, v.code_size, v.code_sha256
    );
    Ok(())
}

fn list(args: &ListArgs) -> anyhow::Result<()> {
    let cluster = ClusterDir::open(&args.cluster)?;
    let opened = store::open(&cluster, &args.keys)?;
    let layers = opened
        .store
        .list_layers()
        .map_err(super::deploy::store_error)
        .with_context(|| format!("cannot list the layers of {}", opened.place))?;
    let mut rows = vec![[
        "NAME".to_owned(),
        "VERSION".to_owned(),
        "CODE".to_owned(),
        "CREATED (UTC)".to_owned(),
        "DESCRIPTION".to_owned(),
    ]];
    for l in &layers {
        rows.push([
            l.name.to_string(),
            l.version.to_string(),
            l.code_size.to_string(),
            format_ms(l.created_ms),
            l.description.clone().unwrap_or_default(),
        ]);
    }
    for line in columns(&rows) {
        println!("{line}");
    }
    println!("{} layer(s) in {}", layers.len(), opened.place);
    Ok(())
}
