//! `admin registry-exec -cluster DIR`: runs the cluster's registry server in the foreground,
//! logging to the terminal, until SIGTERM or SIGINT (Ctrl-C). `admin registry` starts it in
//! the background.
//!
//! Its options come from the cluster: the address from `config/registry.json` (written by
//! `admin registry`), the registry directory, region, account and limits from
//! `config/template.json`, the credentials from the template's `credentials_file`.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use worker::aws::Credentials;
use worker::config::Config;
use worker::lambda_config::LambdaLimits;
use worker::registry_server::{self, Options};

use crate::cluster_dir::ClusterDir;
use crate::registry_record::RegistryRecord;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cluster directory
    #[arg(long, value_name = "DIR")]
    pub cluster: PathBuf,
}

/// The server's options for `cluster` (see the module docs).
pub fn options(cluster: &ClusterDir) -> anyhow::Result<(Options, Config)> {
    let template = Config::load(&cluster.template())?;
    let record = RegistryRecord::load(&cluster.registry_record())?.ok_or_else(|| {
        anyhow!(
            "{} does not exist: start the registry server with `admin registry -cluster={} --port=P --access-key=K --secret-key=S`",
            cluster.registry_record().display(),
            cluster.root().display()
        )
    })?;
    let credentials = if template.credentials_file.as_os_str().is_empty() {
        None
    } else {
        Some(Credentials::load(&template.credentials_file)?)
    };
    let opts = Options {
        registry_dir: template.registry_dir.clone(),
        host: record.host,
        port: record.port,
        credentials,
        region: template.aws_region.clone(),
        account_id: template.aws_account_id.clone(),
        defaults: LambdaLimits::defaults(&template),
    };
    Ok((opts, template))
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let cluster = ClusterDir::open(&args.cluster)?;
    let (opts, template) = options(&cluster)?;
    worker::init_tracing(&template.log_level);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(registry_server::run_until_signal(opts))?;
    Ok(())
}
