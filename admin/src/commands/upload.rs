//! `admin upload -cluster DIR -handler NAME -file BUNDLE [--access-key K --secret-key S]`:
//! deploys a handler bundle (a `.tar.gz` or `.zip` with `lambda_func.py`, or the module of the
//! entry its `lambda.json` names, at its top or in its single top-level directory).
//!
//! Local registry: [`worker::bundle::install`] creates the function or replaces its code,
//! keeping its settings, atomically; running workers pick it up on the next call. Registry
//! server (the template's `registry` is a URL): CreateFunction, or UpdateFunctionCode when the
//! function exists, signed with the keys given or else the cluster's `credentials_file`.

use std::path::PathBuf;

use anyhow::Context;
use worker::config::Config;
use worker::functions::StoreError;
use worker::name::LambdaName;

use crate::cluster_dir::ClusterDir;
use crate::code_zip;
use crate::store::{self, KeyArgs};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cluster directory
    #[arg(long, value_name = "DIR")]
    pub cluster: PathBuf,
    /// The lambda's name
    #[arg(long, value_name = "NAME")]
    pub handler: String,
    /// The bundle: a .tar.gz or .zip holding lambda_func.py (and packages.txt or requirements.txt)
    #[arg(long, value_name = "BUNDLE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub keys: KeyArgs,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let cluster = ClusterDir::open(&args.cluster)?;
    let name = LambdaName::parse(&args.handler)
        .map_err(|reason| anyhow::anyhow!("invalid handler name {:?}: {reason}", args.handler))?;
    let template = Config::load(&cluster.template())?;
    if template.registry.server().is_none() && !has_keys(&args.keys) {
        return upload_local(&template, &name, args);
    }
    let opened = store::open(&cluster, &args.keys)?;
    let bytes = code_zip::read_archive_file(&args.file)?;
    let not_uploaded = || format!("{name} not uploaded to {}", opened.place);
    let (verb, info) = match opened.store.create(&name, &bytes, &Default::default()) {
        Ok(info) => ("uploaded", info),
        Err(StoreError::Exists { .. }) => (
            "replaced",
            opened
                .store
                .update_code(&name, &bytes, None)
                .with_context(not_uploaded)?,
        ),
        Err(e) => return Err(e).with_context(not_uploaded),
    };
    println!(
        "{verb} {name} on {}: version {}, code {} bytes, sha256 {}",
        opened.place, info.version, info.code_size, info.code_sha256
    );
    Ok(())
}

fn has_keys(keys: &KeyArgs) -> bool {
    keys.access_key.is_some() || keys.secret_key.is_some()
}

/// Today's local upload, through [`worker::bundle::install`].
fn upload_local(template: &Config, name: &LambdaName, args: &Args) -> anyhow::Result<()> {
    let installed = worker::bundle::install(&template.registry_dir, name, &args.file)
        .with_context(|| format!("{name} not uploaded"))?;
    println!(
        "{} {name}: version {}, {} files, {} bytes in {} (sha256 {})",
        if installed.replaced {
            "replaced"
        } else {
            "uploaded"
        },
        installed.info.version,
        installed.files,
        installed.bytes,
        installed.dir.display(),
        installed.info.code_sha256
    );
    Ok(())
}
