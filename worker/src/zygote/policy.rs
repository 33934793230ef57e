//! The import cache's policy over zygotes, whatever makes them ([`Maker`]): which zygote a
//! cold start forks from, when the root is started and zygotes are made, which are retired,
//! and what cold starts are counted (the rules are in `mod.rs`). The lock over its [`State`] is
//! held only to decide and reserve: starting and forking zygotes happen outside it, so a cold
//! start never waits for another's zygote.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::{Fault, ForkError, StartError, DEMAND_LIMIT};

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;

/// What the policy needs of a zygote.
pub(crate) trait Handle: Send + Sync {
    fn id(&self) -> u64;
    fn pid(&self) -> i32;
    /// Sorted `name/version` entries (none for the root).
    fn packages(&self) -> &[String];
    fn parent_id(&self) -> Option<u64>;
    /// A fork from it succeeded (its own count and idle time).
    fn note_fork(&self);
    /// It forks no more (its stats say so).
    fn set_retired(&self);
}

/// How zygotes and handler sandboxes are made: `SandboxMaker` (`zygote.rs`) with the `sandbox`
/// crate, a recording fake in the tests.
pub(crate) trait Maker: Send + Sync {
    type Zygote: Handle;
    type Sandbox;
    type Request<'a>;
    /// Starts a root zygote (no packages).
    fn start_root(&self) -> Result<Arc<Self::Zygote>, StartError>;
    /// Forks a zygote for `packages` from `parent`.
    fn fork_zygote(
        &self,
        parent: &Arc<Self::Zygote>,
        packages: &[String],
    ) -> Result<Arc<Self::Zygote>, ForkError>;
    /// Forks a handler sandbox from `zygote`.
    fn fork_handler(
        &self,
        zygote: &Arc<Self::Zygote>,
        req: &Self::Request<'_>,
    ) -> Result<Self::Sandbox, ForkError>;
}

/// The rules the policy follows (from the worker's config).
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    /// Most zygotes at once, those being made and the root included.
    pub size: usize,
    /// Cold starts of one exact package set before it gets its own zygote.
    pub min_starts: u64,
    pub package_zygotes: bool,
    /// How long after a failed root start the next one may be tried.
    pub root_retry: Duration,
}

/// A handler sandbox made by `M`, and the zygote it was forked from.
type Made<M> = (<M as Maker>::Sandbox, Arc<<M as Maker>::Zygote>);

/// The zygotes that still exist: those in service, and the retired ones still alive.
pub(super) struct Zygotes<Z> {
    pub live: Vec<Arc<Z>>,
    pub retired: Vec<Arc<Z>>,
}

/// The policy over zygotes made by `M` (see the module docs).
pub(crate) struct Policy<M: Maker> {
    pub(super) maker: M,
    pub(super) rules: Rules,
    state: Mutex<State<M::Zygote>>,
    pub(super) counters: Counters,
}

impl<M: Maker + std::fmt::Debug> std::fmt::Debug for Policy<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("maker", &self.maker)
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub created: AtomicU64,
    pub retired: AtomicU64,
    pub forks: AtomicU64,
    pub fork_failures: AtomicU64,
}

/// Everything the policy decides on, under one lock held only to decide and reserve.
struct State<Z> {
    live: Vec<Live<Z>>,
    retired: Vec<Weak<Z>>,
    demand: Demand,
    /// Zygotes being forked now: (package set, id of the parent forked from).
    creating: Vec<(Vec<String>, u64)>,
    root: Root,
    closed: bool,
    /// Counts uses, for "most recently used" (deterministic, unlike clocks).
    uses: u64,
}

struct Live<Z> {
    zygote: Arc<Z>,
    /// The value of `State::uses` at its last fork.
    used: u64,
}

/// The root zygote's start.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Root {
    Idle,
    Starting,
    Failed(Instant),
}

/// What a cold start does, as decided under the lock.
enum Plan<Z> {
    /// Start a fresh sandbox: no zygote now.
    NoZygote,
    /// This call starts the root zygote (marked as being started).
    StartRoot,
    /// Fork the handler from this zygote.
    Use(Arc<Z>),
    /// This call forks a zygote for the set from `parent` (marked as being made); `retired`
    /// made room for it, to drop outside the lock.
    Create {
        parent: Arc<Z>,
        retired: Option<Arc<Z>>,
    },
}

impl<M: Maker> Policy<M> {
    pub(crate) fn new(maker: M, rules: Rules) -> Self {
        Self {
            maker,
            rules,
            state: Mutex::new(State {
                live: Vec::new(),
                retired: Vec::new(),
                demand: Demand::default(),
                creating: Vec::new(),
                root: Root::Idle,
                closed: false,
                uses: 0,
            }),
            counters: Counters::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<M::Zygote>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the root zygote unless it is live.
    pub(crate) fn start(&self) -> Result<(), StartError> {
        {
            let mut s = self.lock();
            if s.closed {
                return Err(StartError::Closed);
            }
            if s.best(&[]).is_some() {
                return Ok(());
            }
            s.claim_root(self.rules.root_retry)?;
        }
        self.start_root().map(|_| ())
    }

    /// Starts the root zygote, claimed by this call.
    fn start_root(&self) -> Result<Arc<M::Zygote>, StartError> {
        let started = self.maker.start_root();
        let mut s = self.lock();
        match started {
            Ok(z) => {
                s.root = Root::Idle;
                self.counters.created.fetch_add(1, Ordering::Relaxed);
                if s.closed {
                    s.retired.push(Arc::downgrade(&z));
                    z.set_retired();
                } else {
                    s.add(Arc::clone(&z));
                }
                Ok(z)
            }
            Err(e) => {
                s.root = Root::Failed(Instant::now());
                drop(s);
                tracing::warn!(error = %e, "cannot start the root zygote");
                Err(e)
            }
        }
    }

    /// Forks a handler sandbox for the package set `want` (sorted, distinct); `Ok(None)`:
    /// no zygote to fork from now.
    pub(crate) fn fork_handler(
        &self,
        want: &[String],
        req: &M::Request<'_>,
    ) -> Result<Option<Made<M>>, ForkError> {
        let Some(zygote) = self.zygote_for(want) else {
            return Ok(None);
        };
        match self.maker.fork_handler(&zygote, req) {
            Ok(sandbox) => {
                self.forked(&zygote);
                Ok(Some((sandbox, zygote)))
            }
            Err(e) => {
                self.fork_failed(&zygote, &e);
                Err(e)
            }
        }
    }

    /// The zygote to fork `want` from, starting the root or making an exact zygote where the
    /// rules say so; `None`: no zygote now.
    fn zygote_for(&self, want: &[String]) -> Option<Arc<M::Zygote>> {
        // At most twice: once more after this call started the root.
        for _ in 0..2 {
            let plan = self.lock().plan(want, &self.rules, &self.counters);
            match plan {
                Plan::NoZygote => return None,
                Plan::Use(z) => return Some(z),
                Plan::StartRoot => {
                    self.start_root().ok()?;
                }
                Plan::Create { parent, retired } => {
                    drop(retired);
                    return self.create(want, parent);
                }
            }
        }
        None
    }

    /// Forks the zygote for `want` that this call reserved; returns the zygote to fork the
    /// handler from: the new one, or its parent if that failed (`None` if the parent was
    /// retired for it).
    fn create(&self, want: &[String], parent: Arc<M::Zygote>) -> Option<Arc<M::Zygote>> {
        let made = self.maker.fork_zygote(&parent, want);
        let mut s = self.lock();
        s.creating.retain(|(set, _)| set != want);
        match made {
            Ok(z) => {
                self.counters.created.fetch_add(1, Ordering::Relaxed);
                s.used(&parent, &self.counters);
                // Counting starts again if this zygote is ever retired.
                s.demand.remove(want);
                if s.closed {
                    s.retired.push(Arc::downgrade(&z));
                    z.set_retired();
                    // Dropped (maybe destroyed) outside the lock.
                    drop(s);
                    drop(z);
                    return None;
                }
                s.add(Arc::clone(&z));
                Some(z)
            }
            Err(e) => {
                self.counters.fork_failures.fetch_add(1, Ordering::Relaxed);
                let retired = (e.fault() == Fault::Zygote)
                    .then(|| s.retire(parent.id(), "it failed to fork", &self.counters))
                    .flatten();
                drop(s);
                tracing::warn!(packages = ?want, error = %e, "cannot create a zygote; forking from its parent");
                let usable = retired.is_none();
                drop(retired);
                usable.then_some(parent)
            }
        }
    }

    fn forked(&self, zygote: &Arc<M::Zygote>) {
        self.lock().used(zygote, &self.counters);
    }

    fn fork_failed(&self, zygote: &Arc<M::Zygote>, e: &ForkError) {
        self.counters.fork_failures.fetch_add(1, Ordering::Relaxed);
        if e.fault() == Fault::Zygote {
            drop(self.retire(zygote.id(), "it failed to fork"));
        }
    }

    /// Retires the zygote `id`; returns it, to drop outside the lock.
    pub(super) fn retire(&self, id: u64, why: &str) -> Option<Arc<M::Zygote>> {
        self.lock().retire(id, why, &self.counters)
    }

    pub(crate) fn retire_lru(&self, keep: Option<u64>) -> Option<u64> {
        let retired = {
            let mut s = self.lock();
            let victim = s.lru_leaf(keep)?;
            s.retire(victim, "least recently used", &self.counters)
        };
        retired.map(|z| z.id())
    }

    /// The live zygotes and the retired ones still alive. The `Arc`s are taken outside the
    /// lock, so that dropping the last one never destroys a zygote under it.
    pub(super) fn zygotes(&self) -> Zygotes<M::Zygote> {
        let (live, retired) = {
            let mut s = self.lock();
            s.retired.retain(|w| w.strong_count() > 0);
            let live: Vec<_> = s.live.iter().map(|l| Arc::clone(&l.zygote)).collect();
            (live, s.retired.clone())
        };
        Zygotes {
            live,
            retired: retired.iter().filter_map(Weak::upgrade).collect(),
        }
    }

    pub(crate) fn close(&self) {
        let all: Vec<Arc<M::Zygote>> = {
            let mut s = self.lock();
            s.closed = true;
            let all: Vec<_> = s.live.drain(..).map(|l| l.zygote).collect();
            for z in &all {
                z.set_retired();
            }
            s.retired.extend(all.iter().map(Arc::downgrade));
            all
        };
        drop(all);
    }
}

impl<Z: Handle> State<Z> {
    /// The live zygote with the largest package set that is a subset of `want` (sorted), the
    /// most recently used among equals.
    fn best(&self, want: &[String]) -> Option<Arc<Z>> {
        self.live
            .iter()
            .filter(|l| {
                l.zygote
                    .packages()
                    .iter()
                    .all(|p| want.binary_search(p).is_ok())
            })
            .max_by_key(|l| (l.zygote.packages().len(), l.used))
            .map(|l| Arc::clone(&l.zygote))
    }

    /// Marks the root as being started by the caller, if the rules allow it now.
    fn claim_root(&mut self, retry: Duration) -> Result<(), StartError> {
        match self.root {
            Root::Starting => return Err(StartError::Starting),
            Root::Failed(at) if at.elapsed() < retry => {
                return Err(StartError::RecentlyFailed {
                    ago: at.elapsed(),
                    left: retry.saturating_sub(at.elapsed()),
                })
            }
            Root::Idle | Root::Failed(_) => {}
        }
        self.root = Root::Starting;
        Ok(())
    }

    /// What a cold start of `want` does (see the module docs); reserves what it claims.
    fn plan(&mut self, want: &[String], rules: &Rules, counters: &Counters) -> Plan<Z> {
        if self.closed {
            return Plan::NoZygote;
        }
        let Some(best) = self.best(want) else {
            return match self.claim_root(rules.root_retry) {
                Ok(()) => Plan::StartRoot,
                Err(_) => Plan::NoZygote,
            };
        };
        if best.packages().len() == want.len() || !rules.package_zygotes {
            return Plan::Use(best);
        }
        if self.demand.count(want) < rules.min_starts
            || self.creating.iter().any(|(set, _)| set == want)
        {
            return Plan::Use(best);
        }
        let mut retired = None;
        if self.live.len() + self.creating.len() >= rules.size {
            let Some(victim) = self.lru_leaf(Some(best.id())) else {
                tracing::warn!(
                    packages = ?want,
                    "the import cache is full ({} zygotes, none retirable): forking from zygote {}",
                    rules.size,
                    best.id()
                );
                return Plan::Use(best);
            };
            retired = self.retire(victim, "least recently used", counters);
        }
        self.creating.push((want.to_vec(), best.id()));
        Plan::Create {
            parent: best,
            retired,
        }
    }

    /// The least recently used leaf other than the root, `keep` and any zygote being forked
    /// from.
    fn lru_leaf(&self, keep: Option<u64>) -> Option<u64> {
        let busy = |id: u64| Some(id) == keep || self.creating.iter().any(|(_, p)| *p == id);
        self.live
            .iter()
            .filter(|l| l.zygote.parent_id().is_some() && !busy(l.zygote.id()))
            .filter(|l| {
                !self
                    .live
                    .iter()
                    .any(|c| c.zygote.parent_id() == Some(l.zygote.id()))
            })
            .min_by_key(|l| l.used)
            .map(|l| l.zygote.id())
    }

    fn add(&mut self, zygote: Arc<Z>) {
        self.uses += 1;
        self.live.push(Live {
            zygote,
            used: self.uses,
        });
    }

    /// A fork from `zygote` succeeded.
    fn used(&mut self, zygote: &Arc<Z>, counters: &Counters) {
        self.uses += 1;
        if let Some(l) = self.live.iter_mut().find(|l| l.zygote.id() == zygote.id()) {
            l.used = self.uses;
        }
        zygote.note_fork();
        counters.forks.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes zygote `id` out of service; returns it, for the caller to drop outside the lock.
    fn retire(&mut self, id: u64, why: &str, counters: &Counters) -> Option<Arc<Z>> {
        let at = self.live.iter().position(|l| l.zygote.id() == id)?;
        let z = self.live.remove(at).zygote;
        z.set_retired();
        counters.retired.fetch_add(1, Ordering::Relaxed);
        tracing::info!(zygote = id, pid = z.pid(), why, "zygote retired");
        self.retired.push(Arc::downgrade(&z));
        Some(z)
    }
}

/// Cold starts per package set that had no exact zygote, kept for the [`DEMAND_LIMIT`] most
/// recently counted sets.
#[derive(Debug, Default)]
struct Demand {
    /// Set -> (cold starts, stamp of its last count).
    counts: HashMap<Vec<String>, (u64, u64)>,
    /// Stamp -> set, oldest first.
    order: BTreeMap<u64, Vec<String>>,
    stamp: u64,
}

impl Demand {
    /// Counts one more cold start of `set`; returns its count.
    fn count(&mut self, set: &[String]) -> u64 {
        self.stamp += 1;
        let stamp = self.stamp;
        if let Some((n, last)) = self.counts.get_mut(set) {
            self.order.remove(last);
            *last = stamp;
            *n += 1;
            self.order.insert(stamp, set.to_vec());
            return *n;
        }
        if self.counts.len() >= DEMAND_LIMIT {
            if let Some((_, oldest)) = self.order.pop_first() {
                self.counts.remove(&oldest);
            }
        }
        self.counts.insert(set.to_vec(), (1, stamp));
        self.order.insert(stamp, set.to_vec());
        1
    }

    fn remove(&mut self, set: &[String]) {
        if let Some((_, stamp)) = self.counts.remove(set) {
            self.order.remove(&stamp);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.counts.len()
    }
}
