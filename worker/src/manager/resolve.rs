//! Resolving a call's lambda once into a [`LambdaRef`]: its name, its registry entry (directory,
//! handler version, `lambda.json` and entry), its limits and its setup (environment, layers).
//!
//! A warm lambda resolves without any file access: the registry remembers its lookup until an
//! inotify event says it changed, and its pool the limits and setup of that handler version.
//! Otherwise the lookup (`lambda.json` and a few `lstat`s) and the layers' directories are read
//! on the blocking pool, so a slow disk stalls only the calls that wait for it.
//!
//! Layers are resolved with the setup, once per handler version: `name:N` to version N, `name`
//! to the highest version published at that moment. Every sandbox of one version of a function
//! sees the same layer versions; a layer version published later reaches a function with its
//! next version (an update of its code or `lambda.json`) or the worker's next start.

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::lambda_config::{EventConfig, LambdaConfig, LambdaConfigError, LAMBDA_CONFIG_FILE};
use crate::manager::backend::{Backend, FunctionSetup, LambdaRef, LayerDir, VolumeMount};
use crate::manager::error::RunError;
use crate::manager::pool::{Counters, PoolUse};
use crate::manager::Manager;
use crate::name::LambdaName;
use crate::registry::{Handler, RegistryError};

impl<B: Backend> Manager<B> {
    /// Looks up `name`, holds its pool (counting the call), and resolves its limits and setup
    /// unless they are known for this handler version. Blocking.
    pub(crate) fn resolve(
        &self,
        name: &LambdaName,
    ) -> Result<(LambdaRef, PoolUse<B::Sandbox>), RunError> {
        self.resolve_counting(name, true)
    }

    /// [`Manager::resolve`] without counting a call (the provisioner's). Blocking.
    pub(crate) fn resolve_quiet(
        &self,
        name: &LambdaName,
    ) -> Result<(LambdaRef, PoolUse<B::Sandbox>), RunError> {
        self.resolve_counting(name, false)
    }

    fn resolve_counting(
        &self,
        name: &LambdaName,
        count: bool,
    ) -> Result<(LambdaRef, PoolUse<B::Sandbox>), RunError> {
        let add = |c: &std::sync::atomic::AtomicU64| {
            if count {
                Counters::add(c);
            }
        };
        let t = std::time::Instant::now();
        let found = self.registry.lookup(name);
        self.timings
            .record(crate::timings::Phase::Lookup, t.elapsed());
        let handler = match found {
            Ok(handler) => handler,
            // The function exists: the failed call is counted as its own.
            Err(RegistryError::Config { lambda, source }) => {
                let pool = self.pools.enter(name, self.cfg.max_sandboxes_per_lambda);
                add(&pool.counters.calls);
                add(&pool.counters.errors);
                return Err(RunError::LambdaConfig {
                    lambda,
                    source: *source,
                });
            }
            Err(e) => return Err(RunError::Registry(e)),
        };
        let pool = self.pools.enter(name, self.cfg.max_sandboxes_per_lambda);
        add(&pool.counters.calls);
        let (limits, setup) = match pool.setup_for(handler.version) {
            Some(known) => known,
            None => match function_setup(&handler, &self.cfg, self.gpu_host.as_deref()) {
                Ok(setup) => {
                    let limits = handler.config.limits(&self.cfg);
                    let setup = Arc::new(setup);
                    pool.record_setup(handler.version, limits, Arc::clone(&setup));
                    (limits, setup)
                }
                Err(source) => {
                    add(&pool.counters.errors);
                    return Err(RunError::LambdaConfig {
                        lambda: name.to_string(),
                        source,
                    });
                }
            },
        };
        let lambda = LambdaRef {
            name: name.clone(),
            handler,
            limits,
            setup,
        };
        Ok((lambda, pool))
    }

    /// From what is remembered, when the registry has not changed and the limits and setup of
    /// this version are known; `None` otherwise. Never blocks.
    fn resolve_remembered(&self, name: &LambdaName) -> Option<(LambdaRef, PoolUse<B::Sandbox>)> {
        let t = std::time::Instant::now();
        let handler = self.registry.cached(name)?;
        let pool = self.pools.enter(name, self.cfg.max_sandboxes_per_lambda);
        let (limits, setup) = pool.setup_for(handler.version)?;
        Counters::add(&pool.counters.calls);
        self.timings
            .record(crate::timings::Phase::Lookup, t.elapsed());
        let lambda = LambdaRef {
            name: name.clone(),
            handler,
            limits,
            setup,
        };
        Some((lambda, pool))
    }

    /// How `name`'s asynchronous events are handled, if it is a function this worker can run
    /// (found in the registry, its `lambda.json` valid), without counting a call: what a dry
    /// run and a queued event check. The lookup runs on the blocking pool unless it is
    /// remembered.
    pub async fn check_function(
        self: &Arc<Self>,
        name: &LambdaName,
    ) -> Result<EventConfig, RunError> {
        Ok(self.function_config(name).await?.events())
    }

    /// What the function's `lambda.json` says, from what is remembered, else looked up on the
    /// blocking pool (errors as [`Manager::check_function`]'s).
    pub async fn function_config(
        self: &Arc<Self>,
        name: &LambdaName,
    ) -> Result<Arc<LambdaConfig>, RunError> {
        if let Some(handler) = self.registry.cached(name) {
            return Ok(handler.config);
        }
        let this = Arc::clone(self);
        let name = name.clone();
        tokio::task::spawn_blocking(move || match this.registry.lookup(&name) {
            Ok(handler) => Ok(handler.config),
            Err(RegistryError::Config { lambda, source }) => Err(RunError::LambdaConfig {
                lambda,
                source: *source,
            }),
            Err(e) => Err(RunError::Registry(e)),
        })
        .await
        .map_err(|source| RunError::Task {
            what: "lookup",
            source,
        })?
    }

    /// The call's lambda: from what is remembered, else resolved on the blocking pool.
    pub(crate) async fn resolve_call(
        self: &Arc<Self>,
        name: &LambdaName,
    ) -> Result<(LambdaRef, PoolUse<B::Sandbox>), RunError> {
        if let Some(resolved) = self.resolve_remembered(name) {
            return Ok(resolved);
        }
        let this = Arc::clone(self);
        let name = name.clone();
        tokio::task::spawn_blocking(move || this.resolve(&name))
            .await
            .map_err(|source| RunError::Task {
                what: "lookup",
                source,
            })?
    }
}

/// The setup of the function `handler` found: its entry and environment, its layers'
/// directories in the registry, its volumes' roots, its GPUs (from `gpu_host`, the machine's). A layer or volume that does not exist is
/// an error of the `layers` or `volumes` key. Blocking (a directory read and two `lstat`s per
/// layer; a size-limited volume not mounted yet is mounted).
pub(crate) fn function_setup(
    handler: &Handler,
    cfg: &Config,
    gpu_host: Option<&crate::gpu::GpuHost>,
) -> Result<FunctionSetup, LambdaConfigError> {
    let registry: &Path = &cfg.registry_dir;
    let config = &handler.config;
    let mut layers = Vec::new();
    for layer in config.layers.iter().flatten() {
        let (version, host) =
            crate::functions::layer_dir(registry, layer).map_err(|e| LambdaConfigError {
                path: handler.dir.join(LAMBDA_CONFIG_FILE),
                key: Some("layers".to_owned()),
                message: e.to_string(),
            })?;
        let python = std::fs::symlink_metadata(host.join("python")).is_ok_and(|m| m.is_dir());
        layers.push(LayerDir {
            name: layer.name.clone(),
            version,
            host,
            python,
        });
    }
    check_provisioned(handler, cfg)?;
    let volumes = crate::volumes::Volumes::new(cfg.volumes());
    let mut mounts = Vec::new();
    for point in config.volumes.iter().flatten() {
        let data = volumes
            .data_dir(point.volume.as_str())
            .map_err(|e| LambdaConfigError {
                path: handler.dir.join(LAMBDA_CONFIG_FILE),
                key: Some("volumes".to_owned()),
                message: e.to_string(),
            })?;
        mounts.push(VolumeMount {
            point: point.clone(),
            data,
        });
    }
    let gpu = match config.gpu_request() {
        None => None,
        Some(request) => {
            let key = if config.gpus.is_some() {
                "gpus"
            } else {
                "enable_gpu"
            };
            let selected = gpu_host
                .ok_or(crate::gpu::GpuError::NoGpu)
                .and_then(|h| h.select(&request));
            Some(selected.map_err(|e| LambdaConfigError {
                path: handler.dir.join(LAMBDA_CONFIG_FILE),
                key: Some(key.to_owned()),
                message: e.to_string(),
            })?)
        }
    };
    let base = match &config.base {
        Some(name) if name.as_str() != "default" => Some(
            crate::bases::find(&cfg.bases(), name).map_err(|e| LambdaConfigError {
                path: handler.dir.join(LAMBDA_CONFIG_FILE),
                key: Some("base".to_owned()),
                message: e.to_string(),
            })?,
        ),
        _ => None,
    };
    Ok(FunctionSetup {
        base,
        gpu,
        volumes: mounts,
        entry: handler.entry.clone(),
        entry_type: config.entry_type.unwrap_or_default(),
        environment: config.environment.clone().unwrap_or_default(),
        layers,
    })
}

/// A function's provisioned concurrency fits its own concurrency, the worker's sandbox cache
/// and its memory budget; otherwise an error of the `provisioned_concurrency` key.
fn check_provisioned(handler: &Handler, cfg: &Config) -> Result<(), LambdaConfigError> {
    let Some(n) = handler.config.provisioned_concurrency.filter(|n| *n > 0) else {
        return Ok(());
    };
    let limits = handler.config.limits(cfg);
    let budget_mb = super::capacity::memory_budget_bytes(cfg) / (1024 * 1024);
    let need_mb = n * limits.memory_mb;
    let problem = if n as usize > limits.max_concurrency {
        Some(format!(
            "{n} is more than the function's max_concurrency ({})",
            limits.max_concurrency
        ))
    } else if n as usize > cfg.handler_cache_size {
        Some(format!(
            "{n} is more than the worker's handler_cache_size ({})",
            cfg.handler_cache_size
        ))
    } else if need_mb > budget_mb {
        Some(format!(
            "{n} sandboxes of {} MiB need {need_mb} MiB, more than the worker's memory budget ({budget_mb} MiB)",
            limits.memory_mb
        ))
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(message) => Err(LambdaConfigError {
            path: handler.dir.join(LAMBDA_CONFIG_FILE),
            key: Some("provisioned_concurrency".to_owned()),
            message,
        }),
    }
}
