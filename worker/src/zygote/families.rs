//! Zygotes per custom base: each base a function names gets a family of its own (a [`Policy`]
//! over a maker whose zygotes run on that base, rooted in a root zygote started by the first
//! cold start on it), kept for the [`BASE_FAMILIES`] most recently used bases. The rules of
//! one family are those of the default base's (`mod.rs`); between families:
//! - a base is known by its root and its `created` stamp: a base deleted and made again under
//!   the same name gets a new family, and the old one is closed;
//! - a base whose `zygote.py` does not speak [`super::PROTOCOL`] (made by another admin) has no
//!   family: its sandboxes start fresh, as with the cache off;
//! - a base past [`BASE_FAMILIES`] closes the least recently used family (its zygotes are
//!   retired, and end with their last sandbox);
//! - when memory needs a zygote retired, the least recently used family gives first (the
//!   default base's taking its turn by its last use): its least recently used leaf, else its
//!   root, which closes the family. The default base's root is never retired.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::policy::{Handle, Maker, Policy, Rules};

#[cfg(test)]
#[path = "families_tests.rs"]
mod tests;

/// A [`Maker`] that can make the maker of a custom base's zygotes.
pub(crate) trait BaseMaker: Maker + Sized {
    /// A maker of zygotes on `base`, sharing this one's ids and settings; `None`: the base's
    /// zygote program speaks another protocol. Blocking (may read the base's files).
    fn for_base(&self, base: &crate::bases::BaseRef) -> Option<Self>;
}

/// Bases whose zygotes are kept at once.
pub const BASE_FAMILIES: usize = 4;

/// How a base is told apart from another with the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BaseKey {
    name: String,
    root: std::path::PathBuf,
    created: u64,
}

struct Family<M: Maker> {
    key: BaseKey,
    /// `None`: the base's zygote program speaks another protocol.
    policy: Option<Arc<Policy<M>>>,
    used: u64,
}

struct State<M: Maker> {
    families: Vec<Family<M>>,
    /// Closed families whose zygotes may still be alive (they end with their last sandbox):
    /// still counted in memory and stats until they are gone.
    closing: Vec<Arc<Policy<M>>>,
    closed: bool,
}

/// The families of the custom bases (see the module docs).
pub(super) struct Families<M: Maker> {
    state: Mutex<State<M>>,
    /// Stamps "most recently used" across the families and the default base.
    stamp: AtomicU64,
    /// The default base's family's last use.
    default_used: AtomicU64,
}

impl<M: Maker> std::fmt::Debug for Families<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Families").finish_non_exhaustive()
    }
}

impl<M: Maker> Default for Families<M> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                families: Vec::new(),
                closing: Vec::new(),
                closed: false,
            }),
            stamp: AtomicU64::new(0),
            default_used: AtomicU64::new(0),
        }
    }
}

/// A family to retire from, oldest use first.
enum Victim<M: Maker> {
    Default,
    Base(Arc<Policy<M>>),
}

impl<M: BaseMaker> Families<M> {
    fn lock(&self) -> MutexGuard<'_, State<M>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next_stamp(&self) -> u64 {
        self.stamp.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The default base's family was used.
    pub(super) fn used_default(&self) {
        self.default_used
            .store(self.next_stamp(), Ordering::Relaxed);
    }

    /// The family of `base`, made on first use with a maker from `maker`; `None`: the base's
    /// zygote program speaks another protocol, or the cache is closed. Blocking (reads the
    /// base's `zygote.py` once).
    pub(super) fn policy(
        &self,
        base: &crate::bases::BaseRef,
        maker: &M,
        rules: &Rules,
    ) -> Option<Arc<Policy<M>>> {
        let key = BaseKey {
            name: base.name.to_string(),
            root: base.root.clone(),
            created: base.info.created,
        };
        let stamp = self.next_stamp();
        let mut dropped = Vec::new();
        let found = {
            let mut s = self.lock();
            if s.closed {
                return None;
            }
            if let Some(f) = s.families.iter_mut().find(|f| f.key == key) {
                f.used = stamp;
                return f.policy.clone();
            }
            // The same name made again: its old family goes.
            let (old, kept): (Vec<Family<M>>, Vec<Family<M>>) = std::mem::take(&mut s.families)
                .into_iter()
                .partition(|f| f.key.name == key.name);
            s.families = kept;
            dropped.extend(old);
            while s.families.len() >= BASE_FAMILIES {
                let Some(at) = (0..s.families.len()).min_by_key(|&i| s.families[i].used) else {
                    break;
                };
                dropped.push(s.families.remove(at));
            }
            let policy = maker
                .for_base(base)
                .map(|m| Arc::new(Policy::new(m, rules.clone())));
            s.families.push(Family {
                key,
                policy: policy.clone(),
                used: stamp,
            });
            policy
        };
        // Closed outside the lock: each zygote ends with its last sandbox.
        for f in dropped {
            if let Some(p) = f.policy {
                tracing::info!(base = %f.key.name, "the zygotes of a base are retired");
                self.closing(p);
            }
        }
        found
    }

    /// Closes `policy` and keeps it while any of its zygotes is alive.
    fn closing(&self, policy: Arc<Policy<M>>) {
        policy.close();
        self.lock().closing.push(policy);
    }

    /// Every family's policy, closed ones whose zygotes are still alive included.
    pub(super) fn policies(&self) -> Vec<Arc<Policy<M>>> {
        let mut s = self.lock();
        s.closing.retain(|p| {
            let z = p.zygotes();
            !z.live.is_empty() || !z.retired.is_empty()
        });
        s.families
            .iter()
            .filter_map(|f| f.policy.clone())
            .chain(s.closing.iter().cloned())
            .collect()
    }

    /// Retires the least recently used leaf (other than `keep`) of the least recently used
    /// family that has one, else that family's root (closing it); the default base's family
    /// takes its turn by its last use, and gives leaves only. Returns the retired zygote's id.
    pub(super) fn retire_lru(&self, default: &Policy<M>, keep: Option<u64>) -> Option<u64> {
        let mut order: Vec<(u64, Victim<M>)> = self
            .lock()
            .families
            .iter()
            .filter_map(|f| f.policy.clone().map(|p| (f.used, Victim::Base(p))))
            .collect();
        order.push((self.default_used.load(Ordering::Relaxed), Victim::Default));
        order.sort_by_key(|(used, _)| *used);
        for (_, victim) in order {
            match victim {
                Victim::Default => {
                    if let Some(id) = default.retire_lru(keep) {
                        return Some(id);
                    }
                }
                Victim::Base(p) => {
                    if let Some(id) = p.retire_lru(keep) {
                        return Some(id);
                    }
                    let live = p.zygotes().live;
                    let Some(root) = live.iter().find(|z| z.parent_id().is_none()) else {
                        continue;
                    };
                    let id = root.id();
                    if Some(id) == keep || live.len() > 1 {
                        continue;
                    }
                    drop(live);
                    self.lock()
                        .families
                        .retain(|f| f.policy.as_ref().is_none_or(|fp| !Arc::ptr_eq(fp, &p)));
                    tracing::info!(
                        zygote = id,
                        "a base's root zygote retired: least recently used"
                    );
                    self.closing(p);
                    return Some(id);
                }
            }
        }
        None
    }

    /// Closes every family; no new one is made.
    pub(super) fn close(&self) {
        let all: Vec<Family<M>> = {
            let mut s = self.lock();
            s.closed = true;
            std::mem::take(&mut s.families)
        };
        for f in all {
            if let Some(p) = f.policy {
                self.closing(p);
            }
        }
    }
}
