//! The function store a command works on: the cluster's registry directory
//! ([`DirStore`], the `local` registry) or, when the template's `registry` is a server's URL,
//! that server ([`RemoteStore`]), signed with the keys given on the command line or else the
//! cluster's `credentials_file`.

use anyhow::{bail, Context};
use worker::aws::Credentials;
use worker::config::{Config, RegistryKind};
use worker::functions::{DirStore, FunctionStore};

use crate::cluster_dir::ClusterDir;
use crate::remote::RemoteStore;

/// `--access-key` and `--secret-key`, for a registry server.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KeyArgs {
    /// Access key to sign with [default: the cluster's credentials_file]
    #[arg(long, value_name = "KEY", requires = "secret_key")]
    pub access_key: Option<String>,
    /// Secret key to sign with [default: the cluster's credentials_file]
    #[arg(long, value_name = "SECRET", requires = "access_key")]
    pub secret_key: Option<String>,
}

impl KeyArgs {
    fn given(&self) -> bool {
        self.access_key.is_some() || self.secret_key.is_some()
    }
}

/// The store, and where it is for messages.
#[derive(Debug)]
pub struct Opened {
    pub store: Box<dyn FunctionStore>,
    /// `the local registry /srv/c/registry` or `the registry server http://127.0.0.1:9000`.
    pub place: String,
    pub template: Config,
}

/// Opens the cluster's store (see the module docs). Keys given in local mode are refused:
/// they would be ignored.
pub fn open(cluster: &ClusterDir, keys: &KeyArgs) -> anyhow::Result<Opened> {
    let template = Config::load(&cluster.template())?;
    match &template.registry {
        RegistryKind::Local => {
            if keys.given() {
                bail!(
                    "--access-key and --secret-key are for a registry server; this cluster's registry is the local directory {} (start a registry server with `admin registry`)",
                    template.registry_dir.display()
                );
            }
            let store = DirStore::open(&template.registry_dir).with_context(|| {
                format!(
                    "cannot open the registry {}",
                    template.registry_dir.display()
                )
            })?;
            Ok(Opened {
                place: format!("the local registry {}", template.registry_dir.display()),
                store: Box::new(store),
                template,
            })
        }
        RegistryKind::Server(url) => {
            let credentials = match (&keys.access_key, &keys.secret_key) {
                (Some(a), Some(s)) => Some(Credentials::new(a, s)?),
                _ if template.credentials_file.as_os_str().is_empty() => None,
                _ => Some(Credentials::load(&template.credentials_file)?),
            };
            let store = RemoteStore::new(url, credentials, &template.aws_region)
                .with_context(|| format!("registry {url:?} in {}", cluster.template().display()))?;
            Ok(Opened {
                place: format!("the registry server {url}"),
                store: Box::new(store),
                template,
            })
        }
    }
}
