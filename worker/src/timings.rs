//! Where a call's time goes: per-phase counters, cheap enough to keep always on (four relaxed
//! atomic adds and a compare-exchange loop per phase), shown by `/stats` under `timings` and by
//! `/metrics` as `lambdaworker_phase_duration_seconds`.
//!
//! Phases of a call, in the order they happen (a cold call has `packages`, `capacity`, `spawn`
//! and `first_call`; a warm one `take_idle`, maybe `unpause`, and `call`):
//!
//! | phase | what it covers |
//! |---|---|
//! | `request` | the whole `runLambda` request inside the worker, from routing to the response |
//! | `read_body` | reading and checking the JSON body |
//! | `lookup` | finding the handler and its limits: a remembered lookup (no file access, unless an inotify event says the lambda changed), else five `lstat`s on the blocking pool (the lambda's directory, `lambda_func.py`, and `requirements.txt`, `packages.txt`, `lambda.json` for its version) |
//! | `queue` | waiting for the lambda's gate (its `max_concurrency`, then its queue) |
//! | `take_idle` | picking a warm sandbox from the lambda's pool |
//! | `unpause` | warm only, when the sandbox was paused: thawing its cgroup |
//! | `packages` | cold only, with a requirement file: reading it, installing what is missing (pip) |
//! | `capacity` | cold only: a slot under `handler_cache_size` and the memory budget, evicting if needed |
//! | `spawn` | cold only: scratch directory, socket, spec and the sandbox's start |
//! | `spawn.cgroup` | part of `spawn`: creating the cgroup and writing its limits |
//! | `spawn.prepare_clone` | part of `spawn`: preparing the child and `clone` |
//! | `spawn.child_setup_exec` | part of `spawn`: the child's setup (cgroup join, mounts, pivot) until `execve` |
//! | `spawn.zygote` | part of `spawn`, instead of the three above when a zygote forks the sandbox: cgroup, detached mounts, the request and the child's report |
//! | `first_call` | cold only: Python's start, the runtime's imports, the handler's import and the call |
//! | `call` | warm only: the call over the sandbox's socket, the handler's run included |
//! | `release` | returning the sandbox to its pool |

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::metrics::{Histogram, Snapshot};

/// One measured phase (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Request,
    ReadBody,
    Lookup,
    Queue,
    TakeIdle,
    Unpause,
    Packages,
    Capacity,
    Spawn,
    SpawnCgroup,
    SpawnPrepareClone,
    SpawnChildSetupExec,
    SpawnZygote,
    FirstCall,
    Call,
    Release,
    /// Freezing an idle sandbox (the reaper's, off any call's path).
    Pause,
}

impl Phase {
    pub const ALL: [Phase; 17] = [
        Phase::Request,
        Phase::ReadBody,
        Phase::Lookup,
        Phase::Queue,
        Phase::TakeIdle,
        Phase::Unpause,
        Phase::Packages,
        Phase::Capacity,
        Phase::Spawn,
        Phase::SpawnCgroup,
        Phase::SpawnPrepareClone,
        Phase::SpawnChildSetupExec,
        Phase::SpawnZygote,
        Phase::FirstCall,
        Phase::Call,
        Phase::Release,
        Phase::Pause,
    ];

    /// The name `/stats` uses.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Request => "request",
            Phase::ReadBody => "read_body",
            Phase::Lookup => "lookup",
            Phase::Queue => "queue",
            Phase::TakeIdle => "take_idle",
            Phase::Unpause => "unpause",
            Phase::Packages => "packages",
            Phase::Capacity => "capacity",
            Phase::Spawn => "spawn",
            Phase::SpawnCgroup => "spawn.cgroup",
            Phase::SpawnPrepareClone => "spawn.prepare_clone",
            Phase::SpawnChildSetupExec => "spawn.child_setup_exec",
            Phase::SpawnZygote => "spawn.zygote",
            Phase::FirstCall => "first_call",
            Phase::Call => "call",
            Phase::Release => "release",
            Phase::Pause => "pause",
        }
    }
}

#[derive(Debug, Default)]
struct Slot {
    count: AtomicU64,
    total_ns: AtomicU64,
    max_ns: AtomicU64,
}

/// Totals of one phase as shown by `/stats` (times in milliseconds; the percentiles
/// estimated from the phase's histogram, as Prometheus's `histogram_quantile` would).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct PhaseTotals {
    pub count: u64,
    pub total_ms: f64,
    pub mean_ms: f64,
    pub max_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Per-phase counters of one worker, and a latency histogram per phase (`/metrics`).
#[derive(Debug, Default)]
pub struct Timings {
    slots: [Slot; Phase::ALL.len()],
    histograms: [Histogram; Phase::ALL.len()],
}

impl Timings {
    /// Adds one occurrence of `phase` that took `took`.
    pub fn record(&self, phase: Phase, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let slot = &self.slots[phase as usize];
        slot.count.fetch_add(1, Ordering::Relaxed);
        slot.total_ns.fetch_add(ns, Ordering::Relaxed);
        slot.max_ns.fetch_max(ns, Ordering::Relaxed);
        self.histograms[phase as usize].record(took);
    }

    /// The histogram of `phase`.
    pub fn histogram(&self, phase: Phase) -> Snapshot {
        self.histograms[phase as usize].snapshot()
    }

    /// Totals of every phase seen at least once, by name.
    pub fn snapshot(&self) -> BTreeMap<&'static str, PhaseTotals> {
        Phase::ALL
            .iter()
            .filter_map(|&phase| {
                let slot = &self.slots[phase as usize];
                let count = slot.count.load(Ordering::Relaxed);
                if count == 0 {
                    return None;
                }
                let total_ms = slot.total_ns.load(Ordering::Relaxed) as f64 / 1e6;
                let h = self.histogram(phase);
                let max_ms = round3(slot.max_ns.load(Ordering::Relaxed) as f64 / 1e6);
                // A quantile is estimated within its bucket; it is never above the largest
                // duration seen, which is known exactly.
                let ms = |q: f64| round3(h.quantile(q).unwrap_or(0.0) * 1e3).min(max_ms);
                Some((
                    phase.name(),
                    PhaseTotals {
                        count,
                        total_ms: round3(total_ms),
                        mean_ms: round3(total_ms / count as f64),
                        max_ms,
                        p50_ms: ms(0.5),
                        p99_ms: ms(0.99),
                    },
                ))
            })
            .collect()
    }
}

fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_indexed_in_order() {
        for (i, p) in Phase::ALL.iter().enumerate() {
            assert_eq!(*p as usize, i, "{}", p.name());
        }
    }

    #[test]
    fn records_count_total_mean_and_max() {
        let t = Timings::default();
        assert!(t.snapshot().is_empty());
        t.record(Phase::Call, Duration::from_micros(500));
        t.record(Phase::Call, Duration::from_micros(1500));
        t.record(Phase::Spawn, Duration::from_millis(3));
        let s = t.snapshot();
        assert_eq!(s.len(), 2);
        assert_eq!(
            s["call"],
            PhaseTotals {
                count: 2,
                total_ms: 2.0,
                mean_ms: 1.0,
                max_ms: 1.5,
                // In the (0.25 ms, 0.5 ms] and (1 ms, 2.5 ms] buckets: p99 is estimated at
                // 2.47 ms within its bucket, and shown as the largest seen, 1.5 ms.
                p50_ms: 0.5,
                p99_ms: 1.5,
            }
        );
        assert_eq!(s["spawn"].count, 1);
    }
}
