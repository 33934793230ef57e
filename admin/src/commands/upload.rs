//! `admin upload -cluster DIR -handler NAME -file BUNDLE.tar.gz`: installs a handler bundle (a
//! `.tar.gz` with `lambda_func.py` at its top) into the cluster's local registry, atomically
//! replacing an earlier version. Running workers pick it up on the next call.

use std::path::PathBuf;

use anyhow::{bail, Context};
use worker::config::Config;
use worker::name::LambdaName;

use crate::cluster_dir::ClusterDir;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cluster directory
    #[arg(long, value_name = "DIR")]
    pub cluster: PathBuf,
    /// The lambda's name
    #[arg(long, value_name = "NAME")]
    pub handler: String,
    /// The bundle: a .tar.gz holding lambda_func.py (and packages.txt or requirements.txt)
    #[arg(long, value_name = "BUNDLE")]
    pub file: PathBuf,
    /// Only for a remote registry server, which lambdaworker does not provide
    #[arg(long, value_name = "KEY", hide = true)]
    pub access_key: Option<String>,
    /// Only for a remote registry server, which lambdaworker does not provide
    #[arg(long, value_name = "SECRET", hide = true)]
    pub secret_key: Option<String>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let cluster = ClusterDir::open(&args.cluster)?;
    let cfg = Config::load(&cluster.template())?;
    if args.access_key.is_some() || args.secret_key.is_some() {
        bail!(
            "--access-key and --secret-key are for a registry server, which lambdaworker does not provide; \
             this cluster's registry is the local directory {}",
            cfg.registry_dir.display()
        );
    }
    let name = LambdaName::parse(&args.handler)
        .map_err(|reason| anyhow::anyhow!("invalid handler name {:?}: {reason}", args.handler))?;
    let installed = worker::bundle::install(&cfg.registry_dir, &name, &args.file)
        .with_context(|| format!("{name} not uploaded"))?;
    println!(
        "{} {name}: {} files, {} bytes in {}",
        if installed.replaced {
            "replaced"
        } else {
            "uploaded"
        },
        installed.files,
        installed.bytes,
        installed.dir.display()
    );
    Ok(())
}
