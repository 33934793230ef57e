//! Resolving a call's lambda once into a [`LambdaRef`]: its name, its registry entry (directory
//! and handler version) and its limits.
//!
//! A warm lambda resolves without any file access: the registry remembers its lookup until an
//! inotify event says it changed, and its pool the limits of that handler version. Otherwise
//! the lookup (five `lstat`s) and `lambda.json` are read on the blocking pool, so a slow disk
//! stalls only the calls that wait for it.

use std::sync::Arc;

use crate::lambda_config::LambdaLimits;
use crate::manager::backend::{Backend, LambdaRef};
use crate::manager::error::RunError;
use crate::manager::pool::{Counters, PoolUse};
use crate::manager::Manager;
use crate::name::LambdaName;

impl<B: Backend> Manager<B> {
    /// Looks up `name`, holds its pool (counting the call), and reads its limits unless they
    /// are known for this handler version. Blocking.
    pub(crate) fn resolve(
        &self,
        name: &LambdaName,
    ) -> Result<(LambdaRef, PoolUse<B::Sandbox>), RunError> {
        let t = std::time::Instant::now();
        let handler = self.registry.lookup(name)?;
        self.timings
            .record(crate::timings::Phase::Lookup, t.elapsed());
        let pool = self.pools.enter(name, self.cfg.max_sandboxes_per_lambda);
        Counters::add(&pool.counters.calls);
        let limits = match pool.limits_for(handler.version) {
            Some(limits) => limits,
            None => match LambdaLimits::load(&handler.dir, &self.cfg) {
                Ok(limits) => {
                    pool.record_limits(handler.version, limits);
                    limits
                }
                Err(source) => {
                    Counters::add(&pool.counters.errors);
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
        };
        Ok((lambda, pool))
    }

    /// From what is remembered, when the registry has not changed and the limits of this
    /// version are known; `None` otherwise. Never blocks.
    fn resolve_remembered(&self, name: &LambdaName) -> Option<(LambdaRef, PoolUse<B::Sandbox>)> {
        let t = std::time::Instant::now();
        let handler = self.registry.cached(name)?;
        let pool = self.pools.enter(name, self.cfg.max_sandboxes_per_lambda);
        let limits = pool.limits_for(handler.version)?;
        Counters::add(&pool.counters.calls);
        self.timings
            .record(crate::timings::Phase::Lookup, t.elapsed());
        let lambda = LambdaRef {
            name: name.clone(),
            handler,
            limits,
        };
        Some((lambda, pool))
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
