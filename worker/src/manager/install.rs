//! Installing a function's packages ahead of its first call (`POST /functions/<name>/install`,
//! which `admin install` sends), so that the first call finds them ready.
//!
//! In order: look the function up (the registry, or in registry mode the server), without
//! counting a call; a function without a requirement file is done; otherwise the backend makes
//! its packages ready exactly as a first call would (resolve once, install what is missing, under
//! the same locks), on the blocking pool.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::manager::backend::{Backend, FunctionSetup, LambdaRef};
use crate::manager::error::RunError;
use crate::manager::Manager;
use crate::name::LambdaName;
use crate::registry::RegistryError;

/// What an install ahead of the first call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The function's packages (`name==version`), all installed now; empty without a
    /// requirement file.
    pub packages: Vec<String>,
    /// Whether the function has a requirement file at all.
    pub has_requirements: bool,
    pub took: Duration,
}

impl<B: Backend> Manager<B> {
    /// Makes `name`'s packages ready (see the module docs). Errors as a call's would be:
    /// an unknown function, an invalid `lambda.json` or requirement file, a failed install.
    pub async fn install_packages(
        self: &Arc<Self>,
        name: &LambdaName,
    ) -> Result<Installed, RunError> {
        let this = Arc::clone(self);
        let name = name.clone();
        tokio::task::spawn_blocking(move || this.install_blocking(&name))
            .await
            .map_err(|source| RunError::Task {
                what: "package install",
                source,
            })?
    }

    fn install_blocking(&self, name: &LambdaName) -> Result<Installed, RunError> {
        let started = Instant::now();
        let handler = match self.registry.lookup(name) {
            Ok(h) => h,
            Err(RegistryError::Config { lambda, source }) => {
                return Err(RunError::LambdaConfig {
                    lambda,
                    source: *source,
                })
            }
            Err(e) => return Err(RunError::Registry(e)),
        };
        if !handler.version.has_requirements() {
            return Ok(Installed {
                packages: Vec::new(),
                has_requirements: false,
                took: started.elapsed(),
            });
        }
        tracing::info!(lambda = %name, "installing packages ahead of the first call");
        let lambda = LambdaRef {
            name: name.clone(),
            limits: handler.config.limits(&self.cfg),
            handler,
            setup: Arc::new(FunctionSetup::default()),
        };
        let dirs = self.backend.packages(&lambda)?;
        let packages = dirs
            .iter()
            .map(|d| {
                let mut parts = d.rel.iter().map(|c| c.to_string_lossy());
                match (parts.next(), parts.next()) {
                    (Some(n), Some(v)) => format!("{n}=={v}"),
                    _ => d.rel.display().to_string(),
                }
            })
            .collect();
        Ok(Installed {
            packages,
            has_requirements: true,
            took: started.elapsed(),
        })
    }
}
