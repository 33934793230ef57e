//! A discrete-event simulation of many workers behind a balancer: which placement policy keeps
//! functions warm, and what each costs in tail latency, from 1 to 100 workers.
//!
//! The model, as `docs/scale-out.md` describes it:
//! - A worker holds at most `slots` live sandboxes (`handler_cache_size`) within a memory
//!   budget (`memory_budget_mb`), one call at a time each; each function's sandbox has a size.
//!   A call takes an idle sandbox of its function (a warm start); or starts a new one (a cold
//!   start) where there is room, evicting the least recently used idle sandboxes to make it; or,
//!   when that cannot make room, waits in the worker's queue. A worker's first call of a function
//!   also pulls its code from the registry server (the cache of code is not bounded).
//! - Start costs come from this project's bench (`docs/performance.md`): see [`Costs`].
//! - The balancer sees only its own calls in flight per worker (as HAProxy does).
//! - Each run starts with every worker empty; the first fifth of the calls warm the workers up
//!   and are not counted.

pub mod plot;
pub mod policy;
pub mod report;
pub mod trace;

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};

pub use policy::{Balancer, Kind};
pub use trace::{Call, Trace};

/// What starting a call costs, in ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Costs {
    /// An idle sandbox of the function: 0.12 ms (warm over HTTP).
    pub warm: f64,
    /// A new sandbox forked from the zygote: 4.4 ms; 64 ms for a function whose packages are
    /// imported by the handler (package zygotes off, the default).
    pub cold: f64,
    pub cold_heavy: f64,
    /// The worker's first call of a function adds the pull from the registry server: 6.9 ms for
    /// a small zip, about 100 ms for 5 MiB.
    pub pull: f64,
    pub pull_heavy: f64,
}

impl Default for Costs {
    fn default() -> Costs {
        Costs {
            warm: 0.12,
            cold: 4.4,
            cold_heavy: 64.0,
            pull: 6.9,
            pull_heavy: 100.0,
        }
    }
}

/// One simulated cluster.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Setup {
    pub workers: usize,
    /// Live sandboxes per worker (`handler_cache_size`).
    pub slots: usize,
    /// Memory for all of a worker's sandboxes, in MiB (`memory_budget_mb`).
    pub memory_mb: f64,
    /// An idle sandbox is destroyed after this long (`idle_timeout_s`: 300 s).
    pub idle_timeout_ms: f64,
    /// A call that waited this long for a sandbox gets a 503 (`timeout_s`: 60 s).
    pub queue_timeout_ms: f64,
    pub costs: Costs,
}

/// What a policy got on a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub policy: Kind,
    pub workers: usize,
    /// Calls counted (after the warm-up).
    pub calls: usize,
    pub warm: usize,
    pub cold: usize,
    /// Cold starts that also pulled the code.
    pub pulls: usize,
    /// Calls that waited `queue_timeout_ms` for a sandbox and got a 503 (counted in the
    /// percentiles at that wait).
    pub rejected: usize,
    /// Time the platform added to a call (queueing and start), p50 and p99, in ms.
    pub overhead_p50: f64,
    pub overhead_p99: f64,
    /// Whole latency (overhead and run time), p99, in ms.
    pub latency_p99: f64,
    /// Calls in flight on the busiest worker over the mean, at their peak.
    pub peak_imbalance: f64,
}

impl Outcome {
    pub fn warm_rate(&self) -> f64 {
        self.warm as f64 / (self.warm + self.cold).max(1) as f64
    }
}

/// Share of the calls that warm the workers up and are not counted.
const WARM_UP: f64 = 0.2;

#[derive(Debug)]
struct Sandbox {
    function: usize,
    mb: f64,
    busy: bool,
    /// When it last went idle: a sequence number for the LRU, and the time.
    idle_since: u64,
    idle_at_ns: u64,
}

#[derive(Debug, Default)]
struct Worker {
    /// Sandboxes by index; evicted ones' indexes are in `free` for the next.
    sandboxes: Vec<Sandbox>,
    free: Vec<usize>,
    live: usize,
    used_mb: f64,
    /// Idle sandboxes by function, the most recently used last.
    idle: HashMap<usize, Vec<usize>>,
    /// Idle sandboxes, the least recently used first: (idle_since, sandbox).
    lru: BTreeSet<(u64, usize)>,
    /// Functions whose code this worker has pulled.
    code: HashSet<usize>,
    /// Calls waiting for a sandbox (indexes into the trace).
    queue: VecDeque<usize>,
    /// Calls sent here and not answered (running or queued): the balancer's view.
    in_flight: u32,
}

/// The start a call got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    Warm,
    Cold { pulled: bool },
}

impl Worker {
    /// Gives a call of `function` (a sandbox of `mb` MiB) a sandbox now, or `None` when the
    /// idle ones that could be evicted would not make room.
    fn start(
        &mut self,
        function: usize,
        mb: f64,
        now_ns: u64,
        limits: &Setup,
    ) -> Option<(usize, Start)> {
        let idle_timeout = ns(limits.idle_timeout_ms);
        while let Some(s) = self.idle.get_mut(&function).and_then(Vec::pop) {
            self.lru.remove(&(self.sandboxes[s].idle_since, s));
            if now_ns.saturating_sub(self.sandboxes[s].idle_at_ns) > idle_timeout {
                // The reaper destroyed it (`idle_timeout_s`), and the older ones too.
                self.destroy(s);
                continue;
            }
            self.sandboxes[s].busy = true;
            return Some((s, Start::Warm));
        }
        let mb = mb.min(limits.memory_mb);
        while self.live >= limits.slots || self.used_mb + mb > limits.memory_mb {
            let (_, s) = self.lru.pop_first()?;
            let old = self.sandboxes[s].function;
            if let Some(list) = self.idle.get_mut(&old) {
                list.retain(|&i| i != s);
            }
            self.destroy(s);
        }
        let sandbox = Sandbox {
            function,
            mb,
            busy: true,
            idle_since: 0,
            idle_at_ns: 0,
        };
        let s = match self.free.pop() {
            Some(s) => {
                self.sandboxes[s] = sandbox;
                s
            }
            None => {
                self.sandboxes.push(sandbox);
                self.sandboxes.len() - 1
            }
        };
        self.live += 1;
        self.used_mb += mb;
        let pulled = self.code.insert(function);
        Some((s, Start::Cold { pulled }))
    }

    /// Frees the room of sandbox `s` (already out of `idle` and `lru`).
    fn destroy(&mut self, s: usize) {
        self.used_mb -= self.sandboxes[s].mb;
        self.live -= 1;
        self.free.push(s);
    }

    fn release(&mut self, s: usize, seq: u64, now_ns: u64) {
        let sb = &mut self.sandboxes[s];
        sb.busy = false;
        sb.idle_since = seq;
        sb.idle_at_ns = now_ns;
        self.idle.entry(sb.function).or_default().push(s);
        self.lru.insert((seq, s));
    }
}

/// Runs `trace` through `setup`'s workers with `policy`.
pub fn simulate(trace: &Trace, setup: &Setup, policy: Kind) -> Outcome {
    let n = setup.workers.max(1);
    let limits = Setup {
        slots: setup.slots.max(1),
        ..*setup
    };
    let mut balancer = Balancer::new(policy, n, trace.functions);
    let mut workers: Vec<Worker> = (0..n).map(|_| Worker::default()).collect();
    let mut load = vec![0u32; n];
    // Finishing calls: (time in ns, call, worker, sandbox), the earliest first.
    let mut finishing: BinaryHeap<Reverse<(u64, usize, usize, usize)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let skip = (trace.calls.len() as f64 * WARM_UP) as usize;
    let mut overhead = Vec::with_capacity(trace.calls.len() - skip.min(trace.calls.len()));
    let mut latency = Vec::with_capacity(overhead.capacity());
    let (mut warm, mut cold, mut pulls, mut rejected) = (0, 0, 0, 0);
    let mut peak_imbalance = 1.0f64;

    // Starts call `i` on worker `w` at `now_ns`, if it has a sandbox to give.
    let mut begin = |i: usize,
                     w: usize,
                     now_ns: u64,
                     workers: &mut [Worker],
                     finishing: &mut BinaryHeap<Reverse<(u64, usize, usize, usize)>>|
     -> bool {
        let call = &trace.calls[i];
        let mb = trace.memory_mb.get(call.function).copied().unwrap_or(0.0);
        let Some((s, start)) = workers[w].start(call.function, mb, now_ns, &limits) else {
            return false;
        };
        let heavy = trace.heavy.get(call.function).copied().unwrap_or(false);
        let c = &setup.costs;
        let cost = match start {
            Start::Warm => c.warm,
            Start::Cold { pulled } => {
                let cold = if heavy { c.cold_heavy } else { c.cold };
                let pull = if heavy { c.pull_heavy } else { c.pull };
                cold + if pulled { pull } else { 0.0 }
            }
        };
        if i >= skip {
            match start {
                Start::Warm => warm += 1,
                Start::Cold { pulled } => {
                    cold += 1;
                    pulls += usize::from(pulled);
                }
            }
        }
        finishing.push(Reverse((now_ns + ns(cost + call.exec_ms), i, w, s)));
        true
    };

    let mut next = 0;
    loop {
        let arrival = trace.calls.get(next).map(|c| ns(c.at_ms));
        let finish = finishing.peek().map(|Reverse((t, ..))| *t);
        match (arrival, finish) {
            (None, None) => break,
            // Answers first at equal times: their sandboxes are free for the arrival.
            (Some(a), Some(f)) if f <= a => {}
            (Some(a), _) => {
                let i = next;
                next += 1;
                let w = balancer.pick(trace.calls[i].function, &load);
                load[w] += 1;
                workers[w].in_flight += 1;
                if !begin(i, w, a, &mut workers, &mut finishing) {
                    workers[w].queue.push_back(i);
                }
                let mean = load.iter().map(|&l| f64::from(l)).sum::<f64>() / n as f64;
                if i >= skip && mean >= 1.0 {
                    peak_imbalance = peak_imbalance.max(f64::from(load[w]) / mean);
                }
                continue;
            }
            (None, Some(_)) => {}
        }
        let Some(Reverse((t, i, w, s))) = finishing.pop() else {
            break;
        };
        let call = &trace.calls[i];
        if i >= skip {
            let total = t as f64 / 1e6 - call.at_ms;
            latency.push(total);
            overhead.push((total - call.exec_ms).max(0.0));
        }
        load[w] -= 1;
        workers[w].in_flight -= 1;
        seq += 1;
        workers[w].release(s, seq, t);
        // The queue's head starts if the released sandbox (and the idle ones) make room for
        // it; else it waits for the next answer (first come, first served).
        while let Some(q) = workers[w].queue.pop_front() {
            let waited = t as f64 / 1e6 - trace.calls[q].at_ms;
            if waited > setup.queue_timeout_ms {
                // Answered 503 at the timeout (the worker's queue gives up on it).
                load[w] -= 1;
                workers[w].in_flight -= 1;
                if q >= skip {
                    rejected += 1;
                    latency.push(setup.queue_timeout_ms);
                    overhead.push(setup.queue_timeout_ms);
                }
                continue;
            }
            if !begin(q, w, t, &mut workers, &mut finishing) {
                workers[w].queue.push_front(q);
            }
            break;
        }
    }
    overhead.sort_by(f64::total_cmp);
    latency.sort_by(f64::total_cmp);
    Outcome {
        policy,
        workers: n,
        calls: latency.len(),
        warm,
        cold,
        pulls,
        rejected,
        overhead_p50: quantile(&overhead, 0.50),
        overhead_p99: quantile(&overhead, 0.99),
        latency_p99: quantile(&latency, 0.99),
        peak_imbalance,
    }
}

/// Milliseconds as whole nanoseconds (the event queue's clock).
fn ns(ms: f64) -> u64 {
    (ms * 1e6).max(0.0) as u64
}

/// The `q` quantile of sorted `v` (nearest rank); 0 when empty.
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(workers: usize, slots: usize) -> Setup {
        Setup {
            workers,
            slots,
            memory_mb: 1e9,
            idle_timeout_ms: 300_000.0,
            queue_timeout_ms: 60_000.0,
            costs: Costs::default(),
        }
    }

    fn calls(list: &[(f64, usize, f64)]) -> Trace {
        Trace {
            name: "test",
            functions: 4,
            heavy: vec![false; 4],
            memory_mb: vec![100.0, 100.0, 300.0, 50.0],
            calls: list
                .iter()
                .map(|&(at_ms, function, exec_ms)| Call {
                    at_ms,
                    function,
                    exec_ms,
                })
                .collect(),
        }
    }

    #[test]
    fn a_second_call_is_warm_a_busy_worker_queues_and_lru_evicts() {
        // One worker of one slot. 10 calls, the first 2 are warm-up (WARM_UP = 0.2).
        let t = calls(&[
            (0.0, 0, 10.0),   // cold + pull (warm-up)
            (100.0, 0, 10.0), // warm (warm-up)
            (200.0, 0, 10.0), // warm
            (201.0, 1, 10.0), // waits for the slot, then evicts f0: cold + pull
            (300.0, 0, 10.0), // cold (code already pulled)
            (400.0, 0, 10.0), // warm
            (500.0, 0, 10.0),
            (600.0, 0, 10.0),
            (700.0, 0, 10.0),
            (800.0, 0, 10.0),
        ]);
        let o = simulate(&t, &setup(1, 1), Kind::RoundRobin);
        assert_eq!((o.calls, o.warm, o.cold, o.pulls), (8, 6, 2, 1));
        // f1 waited for f0 (until 210.12), then cold and pull: 4.4 + 6.9.
        let f1 = 210.12 + 4.4 + 6.9 + 10.0 - 201.0;
        assert!((o.latency_p99 - f1).abs() < 1e-3, "{}", o.latency_p99);
        assert!((o.overhead_p50 - 0.12).abs() < 1e-6);
    }

    #[test]
    fn the_memory_budget_evicts_idle_sandboxes_and_queues_when_all_are_busy() {
        // 250 MiB: f0 (100) and f1 (100) fit together; f2 (300, clamped to 250) needs both gone.
        let t = calls(&[
            (0.0, 0, 10.0),
            (0.0, 1, 10.0),
            (1.0, 2, 10.0), // waits for both to end
            (50.0, 0, 10.0),
            (100.0, 3, 10.0),
        ]);
        let mut s = setup(1, 64);
        s.memory_mb = 250.0;
        let o = simulate(&t, &s, Kind::RoundRobin);
        // Counted from call 1 (WARM_UP of 5 is 1): f1 cold, f2 cold, f0 cold again, f3 cold.
        assert_eq!((o.calls, o.warm, o.cold), (4, 0, 4));
        // f2 waited for f0 and f1 (both end at 10 + 4.4 + 6.9 = 21.3).
        let f2 = 21.3 + 4.4 + 6.9 + 10.0 - 1.0;
        assert!((o.latency_p99 - f2).abs() < 1e-3, "{}", o.latency_p99);
    }

    #[test]
    fn policies_agree_on_one_worker_and_locality_wins_on_many() {
        let t = trace::zipf(400, 40_000, 1.0, 40.0, 3);
        let one: Vec<_> = Kind::all(16)
            .iter()
            .map(|&k| simulate(&t, &setup(1, 64), k).warm)
            .collect();
        assert!(one.windows(2).all(|w| w[0] == w[1]), "{one:?}");
        let many = |k| simulate(&t, &setup(8, 16), k);
        let rr = many(Kind::RoundRobin);
        let bounded = many(Kind::Bounded { factor: 1.5 });
        assert!(
            bounded.warm_rate() > rr.warm_rate() + 0.1,
            "bounded {} vs rr {}",
            bounded.warm_rate(),
            rr.warm_rate()
        );
        assert!(rr.pulls > bounded.pulls);
        assert_eq!(rr.calls, bounded.calls);
    }
}
