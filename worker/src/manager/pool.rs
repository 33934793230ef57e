//! Pools: per lambda, its gate, its limits and setup (resolved once per handler version) and
//! its idle sandboxes, most recently used last; and the bounded map of pools.
//!
//! Rules:
//! - a call takes the most recently used idle sandbox of the current handler version whose
//!   process is alive; stale or dead ones met on the way are destroyed, except an older
//!   version's provisioned sandboxes while the current version's are not all ready (one of
//!   them serves the call then: `provision.rs`);
//! - provisioned sandboxes are never paused, reaped or evicted, and a GPU cold start ends the
//!   least recently used idle GPU sandbox that is not provisioned (`gpu_slots.rs`);
//! - idle lists are ordered by last use, so the candidates for pausing (idle for
//!   `pause_after_ms`), reaping (idle for `idle_timeout_s`) and eviction are at the front;
//!   paused sandboxes are the oldest of their pool;
//! - eviction takes the front of the pool whose front is least recently used, paused ones
//!   before running ones ([`lru_victim`]); a busy sandbox is in no pool, so it is never evicted;
//! - the map holds a pool for every lambda with a call or a sandbox, and at most
//!   [`max_pools`] in all: beyond that, unused pools (no call holds them, no idle sandbox) are
//!   forgotten, least recently entered first, with their counters.

use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::lambda_config::LambdaLimits;
use crate::manager::backend::{FunctionSetup, SandboxHandle};
use crate::manager::gate::Gate;
use crate::manager::instance::Instance;
use crate::manager::provision::ProvisionCount;
use crate::name::LambdaName;
use crate::registry::HandlerVersion;

/// The most pools kept: every lambda with a live sandbox has one (at most
/// `handler_cache_size`), and so has every lambda with a call under way.
pub(crate) fn max_pools(handler_cache_size: usize) -> usize {
    (2 * handler_cache_size).max(1024)
}

/// Call counters of one lambda.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) calls: AtomicU64,
    pub(crate) cold_starts: AtomicU64,
    pub(crate) zygote_starts: AtomicU64,
    pub(crate) warm_starts: AtomicU64,
    pub(crate) errors: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The limits and setup of the handler version last seen.
#[derive(Debug, Clone)]
struct CachedSetup {
    version: HandlerVersion,
    limits: LambdaLimits,
    setup: Arc<FunctionSetup>,
}

/// One lambda's pool (see the module docs).
pub(crate) struct Pool<S: SandboxHandle> {
    pub(crate) gate: Gate,
    setup: Mutex<Option<CachedSetup>>,
    /// Front: least recently used.
    idle: Mutex<VecDeque<Instance<S>>>,
    pub(crate) counters: Counters,
    /// Holders ([`PoolUse`]): calls of this lambda under way, and the pauser while it has
    /// sandboxes of this pool out. A pool with holders is never forgotten.
    users: AtomicUsize,
    /// When it was last entered (a tick of [`Pools`]).
    entered: AtomicU64,
    /// Provisioned concurrency: the count of the version last provisioned for.
    provision: Mutex<Option<Arc<ProvisionCount>>>,
}

impl<S: SandboxHandle> Pool<S> {
    fn new(max_concurrency: usize) -> Self {
        Self {
            gate: Gate::new(max_concurrency),
            setup: Mutex::new(None),
            idle: Mutex::new(VecDeque::new()),
            counters: Counters::default(),
            users: AtomicUsize::new(0),
            entered: AtomicU64::new(0),
            provision: Mutex::new(None),
        }
    }

    fn provision_lock(&self) -> MutexGuard<'_, Option<Arc<ProvisionCount>>> {
        self.provision.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The provisioned count of `version`, with `target`: the current one, or a new one when
    /// the version changed.
    pub(crate) fn provisioning(
        &self,
        version: HandlerVersion,
        target: usize,
    ) -> Arc<ProvisionCount> {
        let mut current = self.provision_lock();
        match current.as_ref() {
            Some(c) if c.version == version => {
                c.set_target(target);
                Arc::clone(c)
            }
            _ => {
                let c = Arc::new(ProvisionCount::new(version, target));
                *current = Some(Arc::clone(&c));
                c
            }
        }
    }

    /// The provisioned target last set, if any.
    pub(crate) fn provision_target(&self) -> Option<usize> {
        self.provision_lock().as_ref().map(|c| c.target())
    }

    /// (ready, target) of the current provisioned count.
    pub(crate) fn provisioned(&self) -> (usize, usize) {
        self.provision_lock()
            .as_ref()
            .map_or((0, 0), |c| (c.ready(), c.target()))
    }

    /// Whether calls of `version` may be served by an older version's provisioned sandbox:
    /// provisioning was on and `version`'s sandboxes are not all ready yet.
    fn in_transition(&self, version: HandlerVersion) -> bool {
        self.provision_lock()
            .as_ref()
            .is_some_and(|c| c.target() > 0 && (c.version != version || !c.complete()))
    }

    /// Provisioning stops (the function is gone): every idle provisioned sandbox becomes an
    /// on-demand one.
    pub(crate) fn abandon_provisioning(&self) {
        if let Some(c) = self.provision_lock().as_ref() {
            c.set_target(0);
        }
        for inst in self.idle().iter_mut() {
            inst.set_provisioned(None);
        }
    }

    /// Takes out the idle sandboxes of other versions than `version`, unless calls still need
    /// them ([`Pool::in_transition`]); the caller drops them.
    pub(crate) fn retire_stale(&self, version: HandlerVersion) -> Vec<Instance<S>> {
        if self.in_transition(version) {
            return Vec::new();
        }
        let mut idle = self.idle();
        let (stale, keep): (Vec<_>, Vec<_>) = idle.drain(..).partition(|i| i.version != version);
        idle.extend(keep);
        stale
    }

    /// Idle provisioned sandboxes beyond `count`'s target, or of another count, become
    /// on-demand ones (the reaper ends them when they have been idle long enough).
    pub(crate) fn demote_excess(&self, count: &Arc<ProvisionCount>) {
        let mut excess = count.live().saturating_sub(count.target());
        for inst in self.idle().iter_mut() {
            let Some(slot) = inst.provisioned.as_ref() else {
                continue;
            };
            if !slot.of(count) {
                inst.set_provisioned(None);
            } else if excess > 0 {
                excess -= 1;
                inst.set_provisioned(None);
            }
        }
    }

    fn idle(&self) -> MutexGuard<'_, VecDeque<Instance<S>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The limits and setup recorded for `version`, if they are the ones last resolved.
    pub(crate) fn setup_for(
        &self,
        version: HandlerVersion,
    ) -> Option<(LambdaLimits, Arc<FunctionSetup>)> {
        let cached = self.setup.lock().unwrap_or_else(|p| p.into_inner());
        cached
            .as_ref()
            .filter(|c| c.version == version)
            .map(|c| (c.limits, Arc::clone(&c.setup)))
    }

    pub(crate) fn record_setup(
        &self,
        version: HandlerVersion,
        limits: LambdaLimits,
        setup: Arc<FunctionSetup>,
    ) {
        *self.setup.lock().unwrap_or_else(|p| p.into_inner()) = Some(CachedSetup {
            version,
            limits,
            setup,
        });
    }

    /// Takes the most recently used idle sandbox of `version` that is alive; the stale and
    /// dead ones met on the way come back in the second value, to be dropped (destroyed) by
    /// the caller once no lock is held.
    pub(crate) fn take_idle(
        &self,
        version: HandlerVersion,
    ) -> (Option<Instance<S>>, Vec<Instance<S>>) {
        let transition = self.in_transition(version);
        let mut discard = Vec::new();
        let mut older = Vec::new();
        let mut idle = self.idle();
        let mut found = None;
        while let Some(mut inst) = idle.pop_back() {
            if !inst.is_alive() {
                discard.push(inst);
            } else if inst.version == version {
                found = Some(inst);
                break;
            } else if transition && inst.provisioned.is_some() {
                // An older version's provisioned sandbox serves until the new ones are ready.
                older.push(inst);
            } else {
                discard.push(inst);
            }
        }
        if found.is_none() {
            found = older.pop();
        }
        for inst in older.into_iter().rev() {
            idle.push_back(inst);
        }
        (found, discard)
    }

    /// Puts a sandbox back after a call: the most recently used.
    pub(crate) fn put_back(&self, inst: Instance<S>) {
        self.idle().push_back(inst);
    }

    /// Takes out the idle sandboxes unused since `now - limit` (the reaper destroys them).
    pub(crate) fn take_expired(&self, now: Instant, limit: Duration) -> Vec<Instance<S>> {
        let mut idle = self.idle();
        let expired = |i: &Instance<S>| {
            i.provisioned.is_none() && now.saturating_duration_since(i.last_used) >= limit
        };
        if !idle.iter().any(expired) {
            return Vec::new();
        }
        let (out, keep): (Vec<_>, Vec<_>) = idle.drain(..).partition(expired);
        idle.extend(keep);
        out
    }

    /// Takes out, for freezing, the running idle sandboxes unused since `now - after`, with a
    /// hold on this pool until they are back ([`Pool::put_back_paused`]): no call can take
    /// one half-frozen, and the pool is not forgotten meanwhile.
    pub(crate) fn take_to_pause(
        self: &Arc<Self>,
        now: Instant,
        after: Duration,
    ) -> Option<(PoolUse<S>, Vec<Instance<S>>)> {
        let mut idle = self.idle();
        let due = |i: &Instance<S>| {
            !i.paused
                && i.provisioned.is_none()
                && now.saturating_duration_since(i.last_used) >= after
        };
        if !idle.iter().any(due) {
            return None;
        }
        // The hold is taken under the idle lock, so that a prune (which checks under it) never
        // sees this pool empty and unheld while its sandboxes are out.
        let hold = PoolUse::new(Arc::clone(self));
        let (todo, keep): (Vec<_>, Vec<_>) = idle.drain(..).partition(due);
        idle.extend(keep);
        Some((hold, todo))
    }

    /// Puts frozen sandboxes back at the front (the oldest), keeping their order.
    pub(crate) fn put_back_paused(&self, paused: Vec<Instance<S>>) {
        let mut idle = self.idle();
        for inst in paused.into_iter().rev() {
            idle.push_front(inst);
        }
    }

    /// The eviction key of the front sandbox: (running, last used); the smallest goes first.
    fn front_key(&self) -> Option<(bool, Instant)> {
        self.idle()
            .iter()
            .find(|i| i.provisioned.is_none())
            .map(|i| (!i.paused, i.last_used))
    }

    /// Takes the least recently used idle sandbox that is not provisioned.
    fn pop_evictable(&self) -> Option<Instance<S>> {
        let mut idle = self.idle();
        let at = idle.iter().position(|i| i.provisioned.is_none())?;
        idle.remove(at)
    }

    /// Every idle sandbox (shutdown).
    pub(crate) fn drain(&self) -> Vec<Instance<S>> {
        self.idle().drain(..).collect()
    }

    /// (idle, paused) counts.
    pub(crate) fn idle_counts(&self) -> (usize, usize) {
        let idle = self.idle();
        (idle.len(), idle.iter().filter(|i| i.paused).count())
    }

    /// Neither held nor holding a sandbox. Checked under the idle lock (see
    /// [`Pool::take_to_pause`]).
    fn unused(&self) -> bool {
        let idle = self.idle();
        idle.is_empty() && self.users.load(Ordering::SeqCst) == 0
    }
}

/// A hold on a pool (see [`Pool::users`]); derefs to the pool.
pub(crate) struct PoolUse<S: SandboxHandle> {
    pool: Arc<Pool<S>>,
}

impl<S: SandboxHandle> PoolUse<S> {
    fn new(pool: Arc<Pool<S>>) -> Self {
        pool.users.fetch_add(1, Ordering::SeqCst);
        Self { pool }
    }

    /// Another hold on the same pool.
    pub(crate) fn clone_of(other: &Self) -> Self {
        Self::new(Arc::clone(&other.pool))
    }
}

impl<S: SandboxHandle> Deref for PoolUse<S> {
    type Target = Arc<Pool<S>>;
    fn deref(&self) -> &Self::Target {
        &self.pool
    }
}

impl<S: SandboxHandle> Drop for PoolUse<S> {
    fn drop(&mut self) {
        self.pool.users.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Which of the pools' fronts to evict: the paused ones before the running ones, then the
/// least recently used. `fronts` yields each pool's [`Pool::front_key`].
pub(crate) fn lru_victim<I: IntoIterator<Item = (bool, Instant)>>(fronts: I) -> Option<usize> {
    fronts
        .into_iter()
        .enumerate()
        .min_by_key(|(_, key)| *key)
        .map(|(i, _)| i)
}

/// The pools of every lambda, bounded (see the module docs).
pub(crate) struct Pools<S: SandboxHandle> {
    map: DashMap<LambdaName, Arc<Pool<S>>>,
    max: usize,
    tick: AtomicU64,
}

impl<S: SandboxHandle> Pools<S> {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            map: DashMap::new(),
            max,
            tick: AtomicU64::new(0),
        }
    }

    /// A hold on the pool of `name`, made now (with a gate of `max_concurrency`) if it has none.
    pub(crate) fn enter(&self, name: &LambdaName, max_concurrency: usize) -> PoolUse<S> {
        let tick = self.tick.fetch_add(1, Ordering::Relaxed);
        // The hold is taken while the map's shard is locked, so a prune (which removes under
        // the shard's write lock) cannot take the pool away in between.
        if let Some(pool) = self.map.get(name) {
            pool.entered.store(tick, Ordering::Relaxed);
            return PoolUse::new(Arc::clone(&pool));
        }
        let hold = {
            let pool = self
                .map
                .entry(name.clone())
                .or_insert_with(|| Arc::new(Pool::new(max_concurrency)));
            pool.entered.store(tick, Ordering::Relaxed);
            PoolUse::new(Arc::clone(&pool))
        };
        if self.map.len() > self.max {
            self.prune();
        }
        hold
    }

    /// Forgets unused pools, least recently entered first, down to three quarters of the bound
    /// (so that a stream of new lambdas prunes once in a while, not at every call).
    fn prune(&self) {
        let target = self.max / 4 * 3;
        let mut unused: Vec<(u64, LambdaName)> = self
            .map
            .iter()
            .filter(|e| e.value().unused())
            .map(|e| (e.value().entered.load(Ordering::Relaxed), e.key().clone()))
            .collect();
        unused.sort_unstable();
        let excess = self.map.len().saturating_sub(target);
        let mut removed = 0;
        for (_, name) in unused.into_iter().take(excess) {
            if self.map.remove_if(&name, |_, pool| pool.unused()).is_some() {
                removed += 1;
            }
        }
        tracing::debug!(removed, left = self.map.len(), "forgot unused lambda pools");
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The pool of `name`, if it has one (no hold is taken).
    pub(crate) fn get(&self, name: &LambdaName) -> Option<Arc<Pool<S>>> {
        self.map.get(name).map(|p| Arc::clone(&p))
    }

    /// Every pool with its lambda's name (copied out: no map lock is held while they are used).
    pub(crate) fn all(&self) -> Vec<(LambdaName, Arc<Pool<S>>)> {
        self.map
            .iter()
            .map(|e| (e.key().clone(), Arc::clone(e.value())))
            .collect()
    }

    /// Takes the least recently used idle GPU sandbox that is not provisioned, if any.
    pub(crate) fn evict_lru_gpu(&self) -> Option<Instance<S>> {
        let pools: Vec<Arc<Pool<S>>> = self.map.iter().map(|e| Arc::clone(e.value())).collect();
        let evictable = |i: &Instance<S>| i.gpu_slot.is_some() && i.provisioned.is_none();
        let oldest = pools
            .iter()
            .enumerate()
            .filter_map(|(n, p)| {
                let idle = p.idle();
                idle.iter()
                    .filter(|i| evictable(i))
                    .map(|i| i.last_used)
                    .min()
                    .map(|t| (t, n))
            })
            .min()?;
        let mut idle = pools[oldest.1].idle();
        let at = idle
            .iter()
            .enumerate()
            .filter(|(_, i)| evictable(i))
            .min_by_key(|(_, i)| i.last_used)?
            .0;
        idle.remove(at)
    }

    /// Takes the idle sandbox to evict, if any (see [`lru_victim`]).
    pub(crate) fn evict_lru(&self) -> Option<Instance<S>> {
        let pools: Vec<Arc<Pool<S>>> = self.map.iter().map(|e| Arc::clone(e.value())).collect();
        let fronts: Vec<(usize, (bool, Instant))> = pools
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.front_key().map(|k| (i, k)))
            .collect();
        let at = lru_victim(fronts.iter().map(|(_, k)| *k))?;
        pools[fronts[at].0].pop_evictable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paused_fronts_go_first_then_the_least_recently_used() {
        let t0 = Instant::now();
        let t = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(lru_victim(Vec::<(bool, Instant)>::new()), None);
        // (running, last used): the paused one (false) goes first, however recent.
        assert_eq!(
            lru_victim([(true, t(1)), (false, t(9)), (true, t(0))]),
            Some(1)
        );
        assert_eq!(
            lru_victim([(true, t(5)), (true, t(2)), (true, t(3))]),
            Some(1)
        );
        assert_eq!(lru_victim([(false, t(5)), (false, t(2))]), Some(1));
    }

    #[test]
    fn the_pool_bound_leaves_room_for_every_live_sandbox() {
        assert_eq!(max_pools(64), 1024);
        assert_eq!(max_pools(3000), 6000);
    }
}
