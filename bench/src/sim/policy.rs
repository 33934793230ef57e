//! Where a balancer sends a call: the four policies the simulation compares.
//!
//! Each sees what a balancer in front of the workers sees: the function's name and the calls it
//! has in flight on each worker (sent and not yet answered, queued ones included). None sees
//! inside a worker.

use std::fmt;

/// Points per worker on the hash ring. HAProxy's `hash-type consistent` gives a server of weight
/// `w` about `16 * w` points, so this is close to weight 8; more points only smooth the shares.
const POINTS_PER_WORKER: u64 = 128;

/// A policy, with its parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Each call to the next worker in turn (`balance roundrobin`).
    RoundRobin,
    /// A hash ring of the function's name (`balance hash`, `hash-type consistent`).
    Consistent,
    /// The ring with bounded loads (`hash-balance-factor`): a worker is skipped while it has
    /// more than `factor` times the average in flight (`factor` 1.5 is HAProxy's 150).
    Bounded { factor: f64 },
    /// Locality-aware request distribution (Pai et al., ASPLOS 1998): a table sends each
    /// function to its worker until that worker has more than `high` calls in flight while
    /// another has fewer than `low`, or has `2 * high`; then the function moves to the least
    /// loaded worker.
    Lard { low: u32, high: u32 },
}

impl Kind {
    /// The four policies with the parameters the docs discuss, for workers of `slots`
    /// sandboxes: LARD's thresholds are those of the paper (25 and 65 connections for servers
    /// of about 100), scaled to the slots.
    pub fn all(slots: usize) -> [Kind; 4] {
        let slots = u32::try_from(slots).unwrap_or(u32::MAX);
        [
            Kind::RoundRobin,
            Kind::Consistent,
            Kind::Bounded { factor: 1.5 },
            Kind::Lard {
                low: (slots / 4).max(1),
                high: (slots * 65 / 100).max(2),
            },
        ]
    }

    /// A short name for tables and plots.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::RoundRobin => "round robin",
            Kind::Consistent => "consistent",
            Kind::Bounded { .. } => "bounded-load consistent",
            Kind::Lard { .. } => "LARD",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Bounded { factor } => write!(f, "{} ({factor})", self.name()),
            Kind::Lard { low, high } => write!(f, "{} ({low}/{high})", self.name()),
            _ => f.write_str(self.name()),
        }
    }
}

/// A policy's state for `workers` workers and functions `0..functions`.
#[derive(Debug)]
pub struct Balancer {
    kind: Kind,
    workers: usize,
    next: usize,
    /// (point, worker), sorted by point.
    ring: Vec<(u64, usize)>,
    /// LARD's table: the worker each function goes to.
    owner: Vec<Option<usize>>,
}

impl Balancer {
    pub fn new(kind: Kind, workers: usize, functions: usize) -> Balancer {
        let workers = workers.max(1);
        let mut ring = Vec::new();
        if matches!(kind, Kind::Consistent | Kind::Bounded { .. }) {
            for w in 0..workers as u64 {
                for p in 0..POINTS_PER_WORKER {
                    ring.push((mix(w << 32 | p), w as usize));
                }
            }
            ring.sort_unstable();
        }
        let owner = match kind {
            Kind::Lard { .. } => vec![None; functions],
            _ => Vec::new(),
        };
        Balancer {
            kind,
            workers,
            next: 0,
            ring,
            owner,
        }
    }

    /// The worker for a call to `function`, given the calls in flight on each worker
    /// (`load.len()` is the number of workers).
    pub fn pick(&mut self, function: usize, load: &[u32]) -> usize {
        debug_assert_eq!(load.len(), self.workers);
        match self.kind {
            Kind::RoundRobin => {
                let w = self.next;
                self.next = (self.next + 1) % self.workers;
                w
            }
            Kind::Consistent => self.ring[self.start(function)].1,
            Kind::Bounded { factor } => {
                // HAProxy's rule: a server may take the request while its load after it is at
                // most ceil(factor * (total + 1) / servers).
                let total: u64 = load.iter().map(|&l| u64::from(l)).sum();
                let cap = (factor * (total + 1) as f64 / self.workers as f64).ceil();
                let start = self.start(function);
                (0..self.ring.len())
                    .map(|i| self.ring[(start + i) % self.ring.len()].1)
                    .find(|&w| f64::from(load[w] + 1) <= cap)
                    .unwrap_or(self.ring[start].1)
            }
            Kind::Lard { low, high } => {
                let least = least_loaded(load);
                let w = match self.owner[function] {
                    None => least,
                    Some(w) if (load[w] > high && load[least] < low) || load[w] >= 2 * high => {
                        least
                    }
                    Some(w) => w,
                };
                self.owner[function] = Some(w);
                w
            }
        }
    }

    /// The ring position of `function`'s hash.
    fn start(&self, function: usize) -> usize {
        let key = mix(0x5eed_0000_0000_0000 ^ function as u64);
        self.ring.partition_point(|&(p, _)| p < key) % self.ring.len()
    }
}

/// The first worker with the fewest calls in flight.
fn least_loaded(load: &[u32]) -> usize {
    load.iter()
        .enumerate()
        .min_by_key(|&(_, l)| *l)
        .map(|(w, _)| w)
        .unwrap_or(0)
}

/// splitmix64's finalizer: a well-spread 64-bit hash of `x`.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_takes_the_workers_in_turn() {
        let mut b = Balancer::new(Kind::RoundRobin, 3, 10);
        let picks: Vec<_> = (0..6).map(|_| b.pick(7, &[0, 0, 0])).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn consistent_hashing_keeps_a_function_on_one_worker_and_moves_few_when_one_is_added() {
        let mut b = Balancer::new(Kind::Consistent, 10, 1000);
        let before: Vec<_> = (0..1000).map(|f| b.pick(f, &[99; 10])).collect();
        assert!(
            (0..1000).all(|f| b.pick(f, &[0; 10]) == before[f]),
            "load is ignored"
        );
        let mut shares = [0; 10];
        for &w in &before {
            shares[w] += 1;
        }
        assert!(
            shares.iter().all(|&s| (50..=160).contains(&s)),
            "{shares:?}"
        );
        let mut b11 = Balancer::new(Kind::Consistent, 11, 1000);
        let after: Vec<_> = (0..1000).map(|f| b11.pick(f, &[0; 11])).collect();
        let moved: Vec<_> = (0..1000).filter(|&f| after[f] != before[f]).collect();
        // Only the functions the new worker takes move: about 1/11 of them.
        assert!(moved.iter().all(|&f| after[f] == 10));
        assert!((40..=160).contains(&moved.len()), "{}", moved.len());
    }

    #[test]
    fn bounded_loads_spill_a_hot_function_past_its_loaded_worker() {
        let mut b = Balancer::new(Kind::Bounded { factor: 1.5 }, 4, 100);
        let home = b.pick(3, &[0; 4]);
        let mut load = [1; 4];
        assert_eq!(b.pick(3, &load), home, "at the average it stays");
        load[home] = 10; // total 13: cap = ceil(1.5 * 14 / 4) = 6
        let spill = b.pick(3, &load);
        assert_ne!(spill, home);
        assert_eq!(
            b.pick(3, &load),
            spill,
            "the spill is the ring's next worker, every time"
        );
    }

    #[test]
    fn lard_moves_a_function_only_when_its_worker_is_loaded() {
        let mut b = Balancer::new(Kind::Lard { low: 2, high: 5 }, 3, 10);
        assert_eq!(b.pick(4, &[3, 1, 2]), 1, "first call: the least loaded");
        assert_eq!(b.pick(4, &[0, 4, 0]), 1, "it stays below high");
        assert_eq!(
            b.pick(4, &[3, 6, 2]),
            1,
            "above high, but nobody is below low"
        );
        assert_eq!(
            b.pick(4, &[3, 6, 1]),
            2,
            "above high and a worker below low"
        );
        assert_eq!(b.pick(4, &[9, 9, 10]), 0, "at twice high it moves anyway");
    }
}
