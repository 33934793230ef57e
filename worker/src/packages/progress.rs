//! Installs under way: what `/stats` shows under `packages.in_progress`, and what `admin install`
//! follows to draw its progress bar.
//!
//! An entry exists while one [`super::Packages::ensure`] has work to do (a list to resolve, or a
//! package to install); an `ensure` that finds everything installed leaves no trace. The table is
//! bounded: beyond [`MAX_TRACKED`] installs at once, the extra ones run untracked.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use serde::Serialize;

use crate::name::LambdaName;

/// Installs tracked at once.
pub const MAX_TRACKED: usize = 256;

/// Which pip step an install is at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Asking pip for the exact versions of the requirement list.
    Resolve,
    /// Installing the resolved packages that are missing, one at a time.
    Install,
}

/// One install under way, as `/stats` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstallProgress {
    pub lambda: String,
    pub step: Step,
    /// The package being installed (`name==version`), in the install step.
    pub package: Option<String>,
    /// Packages of the resolved list that are ready (installed before or by this install).
    pub done: usize,
    /// Packages in the resolved list (0 while resolving).
    pub total: usize,
    /// Whether it waits for another call or worker installing the same list or package.
    pub waiting: bool,
    pub elapsed_s: f64,
}

#[derive(Debug)]
struct Entry {
    lambda: String,
    step: Step,
    package: Option<String>,
    done: usize,
    total: usize,
    waiting: bool,
    started: Instant,
}

/// The table of installs under way.
#[derive(Debug, Default)]
pub struct Tracker {
    entries: Mutex<BTreeMap<u64, Entry>>,
    next: AtomicU64,
}

impl Tracker {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts tracking an install of `lambda`'s packages at `step`; the entry goes when the
    /// returned handle is dropped.
    pub fn begin(&self, lambda: &LambdaName, step: Step) -> Tracked<'_> {
        let mut entries = self.lock();
        if entries.len() >= MAX_TRACKED {
            return Tracked {
                tracker: self,
                id: None,
            };
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        entries.insert(
            id,
            Entry {
                lambda: lambda.to_string(),
                step,
                package: None,
                done: 0,
                total: 0,
                waiting: false,
                started: Instant::now(),
            },
        );
        Tracked {
            tracker: self,
            id: Some(id),
        }
    }

    /// The installs under way, oldest first.
    pub fn snapshot(&self) -> Vec<InstallProgress> {
        self.lock()
            .values()
            .map(|e| InstallProgress {
                lambda: e.lambda.clone(),
                step: e.step,
                package: e.package.clone(),
                done: e.done,
                total: e.total,
                waiting: e.waiting,
                elapsed_s: (e.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            })
            .collect()
    }
}

/// One tracked install (or an untracked one, when the table was full).
#[derive(Debug)]
pub struct Tracked<'a> {
    tracker: &'a Tracker,
    id: Option<u64>,
}

impl Tracked<'_> {
    fn update(&self, f: impl FnOnce(&mut Entry)) {
        if let Some(id) = self.id {
            if let Some(e) = self.tracker.lock().get_mut(&id) {
                f(e);
            }
        }
    }

    /// Now installing `package`, with `done` of `total` ready.
    pub fn installing(&self, package: String, done: usize, total: usize) {
        self.update(|e| {
            e.step = Step::Install;
            e.package = Some(package);
            e.done = done;
            e.total = total;
        });
    }

    /// Waits for (`true`) or got (`false`) the lock another install holds.
    pub fn waiting(&self, waiting: bool) {
        self.update(|e| e.waiting = waiting);
    }
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.tracker.lock().remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_follow_the_install_and_go_with_it() {
        let t = Tracker::default();
        let name = LambdaName::parse("np").unwrap();
        {
            let a = t.begin(&name, Step::Resolve);
            let s = t.snapshot();
            assert_eq!(s.len(), 1);
            assert_eq!(
                (s[0].step, s[0].total, s[0].waiting),
                (Step::Resolve, 0, false)
            );
            a.waiting(true);
            assert!(t.snapshot()[0].waiting);
            a.installing("numpy==2.3.1".into(), 1, 3);
            let s = &t.snapshot()[0];
            assert_eq!(s.step, Step::Install);
            assert_eq!(s.package.as_deref(), Some("numpy==2.3.1"));
            assert_eq!((s.done, s.total), (1, 3));
            let json = serde_json::to_value(s).unwrap();
            assert_eq!(json["step"], "install");
            assert_eq!(json["lambda"], "np");
        }
        assert!(t.snapshot().is_empty());
    }

    #[test]
    fn the_table_is_bounded() {
        let t = Tracker::default();
        let name = LambdaName::parse("np").unwrap();
        let held: Vec<_> = (0..MAX_TRACKED + 10)
            .map(|_| t.begin(&name, Step::Resolve))
            .collect();
        assert_eq!(t.snapshot().len(), MAX_TRACKED);
        // Untracked handles update and drop without touching the table.
        held.last().unwrap().waiting(true);
        drop(held);
        assert!(t.snapshot().is_empty());
    }
}
