//! What `/stats` shows of the manager: per-lambda counters, the cache counters, the live table.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::manager::backend::Backend;
use crate::manager::instance::LiveInfo;
use crate::manager::Manager;

/// Counters of one lambda as shown by `/stats`.
#[derive(Debug, Clone, Serialize)]
pub struct LambdaStats {
    pub calls: u64,
    /// Calls that started a sandbox (fresh or forked from a zygote).
    pub cold_starts: u64,
    /// Of `cold_starts`, those forked from a zygote.
    pub zygote_starts: u64,
    pub warm_starts: u64,
    pub errors: u64,
    /// Sandboxes of this lambda, busy, idle or starting.
    pub live: usize,
    pub idle: usize,
    /// Of `idle`, how many are paused.
    pub paused: usize,
    /// Calls waiting at the lambda's gate (`max_concurrency` reached).
    pub waiting: usize,
    /// Provisioned sandboxes of its current version that are ready, and how many it should
    /// have (`provisioned_concurrency`); `live - provisioned` are on-demand ones.
    pub provisioned: usize,
    pub provisioned_target: usize,
}

/// Worker-wide cache counters as shown by `/stats`.
#[derive(Debug, Clone, Serialize)]
pub struct CacheStats {
    /// Calls served by a warm sandbox.
    pub hits: u64,
    /// Calls that started a sandbox.
    pub misses: u64,
    pub evictions: u64,
    pub pauses: u64,
    pub unpauses: u64,
    pub memory_in_use_mb: f64,
    pub memory_budget_mb: u64,
}

impl<B: Backend> Manager<B> {
    /// The live-sandbox table, ordered by id.
    pub fn live(&self) -> Vec<LiveInfo> {
        self.live.snapshot()
    }

    /// Number of live sandboxes.
    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    /// Number of lambdas the manager keeps a pool (and counters) for.
    pub fn pool_count(&self) -> usize {
        self.pools.len()
    }

    /// Per-lambda counters, of the lambdas that have a pool.
    pub fn lambda_stats(&self) -> BTreeMap<String, LambdaStats> {
        let live = self.live.count_by_lambda();
        self.pools
            .all()
            .into_iter()
            .map(|(name, pool)| {
                let c = &pool.counters;
                let (idle, paused) = pool.idle_counts();
                let (provisioned, provisioned_target) = pool.provisioned();
                let stats = LambdaStats {
                    provisioned,
                    provisioned_target,
                    calls: c.calls.load(Ordering::Relaxed),
                    cold_starts: c.cold_starts.load(Ordering::Relaxed),
                    zygote_starts: c.zygote_starts.load(Ordering::Relaxed),
                    warm_starts: c.warm_starts.load(Ordering::Relaxed),
                    errors: c.errors.load(Ordering::Relaxed),
                    live: live.get(name.as_str()).copied().unwrap_or(0),
                    idle,
                    paused,
                    waiting: pool.gate.waiting(),
                };
                (name.to_string(), stats)
            })
            .collect()
    }

    /// Cache counters and memory. Blocking (reads every sandbox's cgroup).
    pub fn cache_stats(&self) -> CacheStats {
        let c = &self.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
            pauses: c.pauses.load(Ordering::Relaxed),
            unpauses: c.unpauses.load(Ordering::Relaxed),
            memory_in_use_mb: (self.memory_in_use() as f64 / 1048576.0 * 10.0).round() / 10.0,
            memory_budget_mb: self.capacity.budget() / (1 << 20),
        }
    }
}
