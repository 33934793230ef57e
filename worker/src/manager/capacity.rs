//! Capacity: at most `handler_cache_size` live sandboxes, and a memory budget
//! (`memory_budget_mb`) for all of them and the zygotes together.
//!
//! Rules:
//! - a cold start needs a capacity permit: a free one, or one freed by evicting the least
//!   recently used idle sandbox of any lambda, or by waiting for one (up to `timeout_s`, then
//!   503);
//! - memory is measured once a second by the reaper (one cgroup file read per sandbox) and by a
//!   cold start only when the last measurement plus `memory_mb` for every sandbox started since
//!   (an upper bound) could exceed 90% of the budget;
//! - while a measurement exceeds the budget, idle sandboxes are evicted (least recently used,
//!   paused first), each eviction finishing before the next measurement; with no idle sandbox
//!   left, the backend gives back shared memory (retires a zygote); a busy sandbox is never
//!   evicted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::config::Config;
use crate::manager::backend::Backend;
use crate::manager::error::{RunError, Unavailable};
use crate::manager::Manager;

/// The permits and the memory figures (see the module docs).
#[derive(Debug)]
pub(crate) struct Capacity {
    permits: Arc<Semaphore>,
    size: usize,
    budget: u64,
    /// The last measurement of the memory in use, in bytes.
    seen: AtomicU64,
    /// The memory limits (MiB) of the sandboxes started since that measurement.
    started_mb: AtomicU64,
}

impl Capacity {
    pub(crate) fn new(size: usize, budget: u64) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(size)),
            size,
            budget,
            seen: AtomicU64::new(0),
            started_mb: AtomicU64::new(0),
        }
    }

    pub(crate) fn budget(&self) -> u64 {
        self.budget
    }

    /// The last measurement of the memory in use, in bytes (no file is read).
    pub(crate) fn last_measured(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    /// Whether memory could be near the budget: the last measurement plus the limits of every
    /// sandbox started since is above 90% of it.
    pub(crate) fn maybe_near_budget(&self) -> bool {
        let bound = self
            .seen
            .load(Ordering::Relaxed)
            .saturating_add(self.started_mb.load(Ordering::Relaxed) << 20);
        bound > self.budget / 10 * 9
    }

    /// Records a measurement; whether it is over the budget.
    pub(crate) fn measured(&self, used: u64) -> bool {
        self.started_mb.store(0, Ordering::Relaxed);
        self.seen.store(used, Ordering::Relaxed);
        used > self.budget
    }

    /// Records a sandbox started with a limit of `memory_mb`.
    pub(crate) fn started(&self, memory_mb: u64) {
        self.started_mb.fetch_add(memory_mb, Ordering::Relaxed);
    }

    pub(crate) fn close(&self) {
        self.permits.close();
    }
}

/// The memory budget in bytes: `memory_budget_mb`, or half of the machine's memory when 0.
pub(crate) fn memory_budget_bytes(cfg: &Config) -> u64 {
    if cfg.memory_budget_mb > 0 {
        return cfg.memory_budget_mb * 1024 * 1024;
    }
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")?
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
        })
        .unwrap_or(4 * 1024 * 1024);
    total_kib * 1024 / 2
}

impl<B: Backend> Manager<B> {
    /// The memory in use at the last measurement (about once a second) and the budget, in
    /// bytes; reads no file.
    pub fn memory_measured(&self) -> (u64, u64) {
        (self.capacity.last_measured(), self.capacity.budget())
    }

    /// Memory charged to the cgroups of all live sandboxes and to what they share, in bytes.
    /// Blocking (one cgroup file read per sandbox).
    pub fn memory_in_use(&self) -> u64 {
        let sandboxes: u64 = self
            .live
            .cgroups()
            .iter()
            .map(|cg| self.backend.memory_of(cg))
            .sum();
        sandboxes + self.backend.shared_memory()
    }

    /// Measures memory and, if it is over the budget, evicts one idle sandbox (or, with none
    /// left, lets the backend give back shared memory). Blocking. Whether it freed something.
    pub fn enforce_memory_budget(&self) -> bool {
        let used = self.memory_in_use();
        if !self.capacity.measured(used) {
            return false;
        }
        match self.pools.evict_lru() {
            Some(victim) => {
                Self::count(&self.counters.evictions);
                tracing::debug!(
                    sandbox = victim.id,
                    used_mb = used / (1 << 20),
                    budget_mb = self.capacity.budget() / (1 << 20),
                    "over the memory budget: evicting the least recently used idle sandbox"
                );
                drop(victim);
                true
            }
            None => self.backend.reclaim_shared(),
        }
    }

    /// Evicts the least recently used idle sandbox of any lambda, if there is one.
    fn evict_one(&self) -> bool {
        match self.pools.evict_lru() {
            Some(victim) => {
                Self::count(&self.counters.evictions);
                tracing::debug!(
                    sandbox = victim.id,
                    "evicting the least recently used idle sandbox"
                );
                drop(victim);
                true
            }
            None => false,
        }
    }

    /// A capacity permit for a cold start (see the module docs).
    pub(crate) async fn acquire_capacity(
        self: &Arc<Self>,
    ) -> Result<OwnedSemaphorePermit, RunError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.cfg.timeout_s);
        // Memory first: evict while over the budget, letting each eviction finish so that the
        // next measurement sees its memory gone.
        let near = self.capacity.maybe_near_budget();
        while near && tokio::time::Instant::now() < deadline {
            let this = Arc::clone(self);
            let freed = tokio::task::spawn_blocking(move || this.enforce_memory_budget())
                .await
                .unwrap_or(false);
            if !freed {
                break;
            }
            self.live.destroys_done(deadline).await;
        }
        loop {
            let returned = self.live.idle_returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            match Arc::clone(&self.capacity.permits).try_acquire_owned() {
                Ok(p) => return Ok(p),
                Err(TryAcquireError::Closed) => return Err(RunError::shutting_down()),
                Err(TryAcquireError::NoPermits) => {}
            }
            self.evict_one();
            tokio::select! {
                permit = Arc::clone(&self.capacity.permits).acquire_owned() => {
                    return permit.map_err(|_| RunError::shutting_down());
                }
                () = &mut returned => continue,
                () = tokio::time::sleep_until(deadline) => {
                    return Err(RunError::Unavailable {
                        reason: Unavailable::Full {
                            handler_cache_size: self.capacity.size,
                        },
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cold_start_measures_only_near_the_budget() {
        let c = Capacity::new(4, 1000 << 20);
        assert!(!c.maybe_near_budget());
        // 800 MiB measured, then two 64 MiB sandboxes started: 928 > 900.
        assert!(!c.measured(800 << 20));
        c.started(64);
        assert!(!c.maybe_near_budget());
        c.started(64);
        assert!(c.maybe_near_budget());
        // A new measurement starts the count again.
        assert!(!c.measured(100 << 20));
        assert!(!c.maybe_near_budget());
        assert!(c.measured(1001 << 20));
    }

    #[test]
    fn the_budget_defaults_to_half_the_memory() {
        let cfg = Config {
            memory_budget_mb: 300,
            ..Config::default()
        };
        assert_eq!(memory_budget_bytes(&cfg), 300 << 20);
        let half = memory_budget_bytes(&Config::default());
        assert!(half > 0);
    }
}
