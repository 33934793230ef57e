//! What a load balancer learns from a worker (`docs/scale-out.md`): its load in two answer
//! headers on every HTTP answer (`X-Worker-Id`, `X-Worker-Load`), and an agent that answers
//! HAProxy's agent check on a port of its own ([`agent`]).
//!
//! The load is the larger of two fractions: calls in flight over the sandbox slots
//! (`handler_cache_size`), and memory in use at the last measurement over the memory budget.
//! Calls beyond the slots are `queued` (they wait for a slot inside the worker).
//!
//! The agent's weight stays 100% until the load passes [`FULL_WEIGHT_UP_TO`] percent, then falls
//! in steps of 10 to 10% at twice the slots. It moves in steps, and only under overload, on
//! purpose: with consistent hashing a server's weight sets its share of the hash ring, so each
//! change of weight moves functions to other workers, whose sandboxes are cold. Spilling a
//! hot function under a short burst is the balancer's bounded-load factor's work.

pub mod agent;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::WorkerManager;

/// Load (percent) up to which the agent reports full weight.
pub const FULL_WEIGHT_UP_TO: u64 = 80;
/// The lowest weight the agent reports while the worker is up (percent).
pub const MIN_WEIGHT: u64 = 10;

/// `X-Worker-Id`.
pub static WORKER_ID: HeaderName = HeaderName::from_static("x-worker-id");
/// `X-Worker-Load`.
pub static WORKER_LOAD: HeaderName = HeaderName::from_static("x-worker-load");

/// A worker's load at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Calls being served (running or waiting in the worker).
    pub in_flight: usize,
    /// Sandbox slots (`handler_cache_size`).
    pub slots: usize,
    /// Memory in use and the budget, in bytes.
    pub memory_used: u64,
    pub memory_budget: u64,
}

impl Load {
    /// The load in percent: the larger of calls over slots and memory over budget (may pass 100).
    pub fn percent(&self) -> u64 {
        let calls = (self.in_flight as u64).saturating_mul(100) / (self.slots.max(1) as u64);
        calls.max(self.memory_percent())
    }

    /// Memory in use over the budget, in percent.
    pub fn memory_percent(&self) -> u64 {
        self.memory_used.saturating_mul(100) / self.memory_budget.max(1)
    }

    /// Calls waiting for a slot.
    pub fn queued(&self) -> usize {
        self.in_flight.saturating_sub(self.slots)
    }

    /// The weight the agent reports, in percent (see the module docs).
    pub fn weight(&self) -> u64 {
        let load = self.percent();
        if load <= FULL_WEIGHT_UP_TO {
            return 100;
        }
        // From 100% at FULL_WEIGHT_UP_TO down to MIN_WEIGHT at 200%, in steps of 10.
        let over = (load - FULL_WEIGHT_UP_TO).min(200 - FULL_WEIGHT_UP_TO);
        let drop = over * (100 - MIN_WEIGHT) / (200 - FULL_WEIGHT_UP_TO);
        let weight = 100 - drop;
        (weight / 10 * 10).max(MIN_WEIGHT)
    }

    /// The `X-Worker-Load` value: the percent first, then its parts
    /// (`37; in_flight=3; slots=8; queued=0; memory=12`).
    pub fn header_value(&self) -> String {
        format!(
            "{}; in_flight={}; slots={}; queued={}; memory={}",
            self.percent(),
            self.in_flight,
            self.slots,
            self.queued(),
            self.memory_percent()
        )
    }

    /// The agent's answer line: `up N%` (HAProxy sets the server's weight to N% of its
    /// configured weight and marks it up), or `drain` while the worker drains or stops.
    pub fn agent_reply(&self, draining: bool) -> String {
        if draining {
            "drain\n".to_owned()
        } else {
            format!("up {}%\n", self.weight())
        }
    }
}

/// The worker's live load figures, shared by the HTTP handlers and the agent.
#[derive(Debug)]
pub struct Gauge {
    id: HeaderValue,
    id_text: String,
    slots: usize,
    in_flight: AtomicUsize,
    draining: AtomicBool,
    manager: Arc<WorkerManager>,
}

impl Gauge {
    /// A gauge for the worker named `id` (see [`worker_id`]) with `slots` sandbox slots.
    pub fn new(id: &str, slots: usize, manager: Arc<WorkerManager>) -> Arc<Self> {
        Arc::new(Self {
            id: HeaderValue::from_str(id).unwrap_or_else(|_| HeaderValue::from_static("worker")),
            id_text: id.to_owned(),
            slots,
            in_flight: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            manager,
        })
    }

    /// The worker's name.
    pub fn id(&self) -> &str {
        &self.id_text
    }

    /// Counts a call as in flight until the guard drops.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// The load now (no file is read).
    pub fn load(&self) -> Load {
        let (memory_used, memory_budget) = self.manager.memory_measured();
        Load {
            in_flight: self.in_flight.load(Ordering::Relaxed),
            slots: self.slots,
            memory_used,
            memory_budget,
        }
    }

    /// From now on the agent says `drain` and `/status` answers 503.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the worker drains: asked to, or shutting down.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst) || self.manager.is_closing()
    }

    /// Adds `X-Worker-Id` and `X-Worker-Load` to an answer's headers.
    pub fn stamp(&self, headers: &mut HeaderMap) {
        headers.insert(WORKER_ID.clone(), self.id.clone());
        if let Ok(v) = HeaderValue::from_str(&self.load().header_value()) {
            headers.insert(WORKER_LOAD.clone(), v);
        }
    }
}

/// A call in flight (see [`Gauge::enter`]).
#[derive(Debug)]
pub struct InFlight(Arc<Gauge>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The worker's name: `worker_id`, else `<host name>/<worker directory's name>`.
pub fn worker_id(configured: &str, worker_dir: &std::path::Path) -> String {
    if !configured.is_empty() {
        return configured.to_owned();
    }
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_owned());
    let dir = worker_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "worker".to_owned());
    let id: String = format!("{host}/{dir}")
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(128)
        .collect();
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(in_flight: usize, slots: usize, used: u64, budget: u64) -> Load {
        Load {
            in_flight,
            slots,
            memory_used: used,
            memory_budget: budget,
        }
    }

    #[test]
    fn the_load_is_the_larger_of_calls_and_memory() {
        assert_eq!(load(2, 8, 10, 100).percent(), 25);
        assert_eq!(load(2, 8, 60, 100).percent(), 60);
        assert_eq!(load(12, 8, 0, 100).percent(), 150);
        assert_eq!(load(12, 8, 0, 100).queued(), 4);
        assert_eq!(
            load(0, 0, 0, 0).percent(),
            0,
            "no slots, no budget: no division by 0"
        );
    }

    #[test]
    fn the_weight_is_full_until_overload_then_falls_in_steps() {
        assert_eq!(load(0, 8, 0, 100).weight(), 100);
        assert_eq!(
            load(6, 8, 80, 100).weight(),
            100,
            "80% is still full weight"
        );
        assert_eq!(load(7, 8, 0, 100).weight(), 90, "87%");
        assert_eq!(load(12, 8, 0, 100).weight(), 40, "150%");
        assert_eq!(load(16, 8, 0, 100).weight(), MIN_WEIGHT, "200%");
        assert_eq!(load(1000, 8, 0, 100).weight(), MIN_WEIGHT);
        for n in 0..40 {
            let w = load(n, 8, 0, 100).weight();
            assert!(
                w.is_multiple_of(10) && (MIN_WEIGHT..=100).contains(&w),
                "{n}: {w}"
            );
        }
    }

    #[test]
    fn the_agent_says_up_with_a_weight_or_drain() {
        assert_eq!(load(1, 8, 0, 100).agent_reply(false), "up 100%\n");
        assert_eq!(load(12, 8, 0, 100).agent_reply(false), "up 40%\n");
        assert_eq!(load(1, 8, 0, 100).agent_reply(true), "drain\n");
    }

    #[test]
    fn the_header_names_the_percent_first_then_its_parts() {
        assert_eq!(
            load(3, 8, 12, 100).header_value(),
            "37; in_flight=3; slots=8; queued=0; memory=12"
        );
    }

    #[test]
    fn a_configured_id_wins_and_the_default_names_host_and_directory() {
        assert_eq!(
            worker_id("w-7", std::path::Path::new("/c/workers/worker-0")),
            "w-7"
        );
        let id = worker_id("", std::path::Path::new("/c/workers/worker-3"));
        assert!(id.ends_with("/worker-3"), "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_graphic()));
    }
}
