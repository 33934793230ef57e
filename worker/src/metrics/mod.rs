//! `GET /metrics`: the worker's metrics in the OpenMetrics text format (which Prometheus
//! scrapes), encoded with the `prometheus-client` crate, or in the text format 0.0.4 for
//! clients that do not ask for OpenMetrics (`format.rs`). Every metric is in `docs/metrics.md`.
//!
//! Most numbers already exist for `/stats` and are read at scrape time (`export.rs`); what
//! `/stats` lacked is kept here: latency histograms (`histogram.rs`: per phase in
//! [`crate::timings::Timings`], per function and start here) and calls by function, path kind
//! and status (`functions.rs`), with the number of function labels bounded by
//! `metrics_max_functions`. The worker process's own metrics come from `/proc/self`
//! (`process.rs`).

mod export;
pub mod format;
pub mod functions;
pub mod histogram;
pub mod process;

pub use export::render;
pub use format::Format;
pub use functions::{FunctionMetrics, Functions, Kind, OTHER};
pub use histogram::{Histogram, Snapshot};

tokio::task_local! {
    /// Whether the call the current request made was a cold start (`Some(true)`), warm
    /// (`Some(false)`), or reached no sandbox (`None`): set by the manager, read by the
    /// access log of the request's task.
    pub static CALL_START: std::cell::Cell<Option<bool>>;
}

/// Notes the start of the current request's call, when the request runs inside
/// [`CALL_START`]'s scope (calls from the asynchronous queue do not).
pub fn note_start(cold: bool) {
    let _ = CALL_START.try_with(|c| c.set(Some(cold)));
}

#[cfg(test)]
mod grafana_tests;
