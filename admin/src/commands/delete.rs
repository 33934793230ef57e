//! `admin delete -cluster DIR NAME`: deletes a function (its code, settings and metadata) from
//! the local registry or the registry server. Running workers stop serving it at their next
//! look-up.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use worker::name::LambdaName;

use crate::cluster_dir::ClusterDir;
use crate::store::{self, KeyArgs};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cluster directory
    #[arg(long, value_name = "DIR")]
    pub cluster: PathBuf,
    /// The function's name
    #[arg(value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub keys: KeyArgs,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let cluster = ClusterDir::open(&args.cluster)?;
    let name = LambdaName::parse(&args.name)
        .map_err(|reason| anyhow!("invalid function name {:?}: {reason}", args.name))?;
    let opened = store::open(&cluster, &args.keys)?;
    opened
        .store
        .delete(&name)
        .map_err(super::deploy::store_error)
        .with_context(|| format!("{name} not deleted from {}", opened.place))?;
    println!("deleted {name} from {}", opened.place);
    Ok(())
}
