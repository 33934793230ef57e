//! One scrape: every number read once into a list of metric families, then encoded by
//! `prometheus-client` through a [`Collector`] over that list.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::format::Format;
use super::histogram::Snapshot;
use super::process;
use crate::api::ApiState;
use crate::manager::{Backend, SandboxState};
use crate::timings::Phase;

#[derive(Debug, Clone)]
enum Value {
    Counter(f64),
    Gauge(f64),
    Histogram(Snapshot),
}

type Labels = Vec<(&'static str, String)>;

/// One metric family: its name (counters without `_total`, which the encoder adds), help,
/// type and samples.
#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Labels, Value)>,
}

impl Family {
    fn new(name: &'static str, kind: MetricType, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    fn with(mut self, labels: Labels, value: Value) -> Self {
        self.samples.push((labels, value));
        self
    }

    fn one(name: &'static str, kind: MetricType, help: &'static str, v: f64) -> Self {
        let value = match kind {
            MetricType::Counter => Value::Counter(v),
            _ => Value::Gauge(v),
        };
        Self::new(name, kind, help).with(Vec::new(), value)
    }
}

/// The families of one scrape.
#[derive(Debug)]
struct Scrape(Vec<Family>);

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.0 {
            if family.samples.is_empty() {
                continue;
            }
            let mut metric =
                encoder.encode_descriptor(family.name, family.help, None, family.kind)?;
            for (labels, value) in &family.samples {
                if labels.is_empty() {
                    encode_value(&mut metric, value)?;
                } else {
                    let mut sample = metric.encode_family(labels)?;
                    encode_value(&mut sample, value)?;
                }
            }
        }
        Ok(())
    }
}

fn encode_value(
    e: &mut prometheus_client::encoding::MetricEncoder<'_>,
    value: &Value,
) -> Result<(), std::fmt::Error> {
    match value {
        Value::Counter(v) => e.encode_counter::<NoLabelSet, f64, f64>(v, None),
        Value::Gauge(v) => e.encode_gauge(v),
        Value::Histogram(s) => {
            // The encoder wants each bucket's own count (it sums them) and writes the bucket
            // whose bound is `f64::MAX` as `le="+Inf"`; the snapshot's are cumulative.
            let mut below = 0;
            let mut buckets: Vec<(f64, u64)> = s
                .buckets
                .iter()
                .map(|&(bound, cumulative)| {
                    let own = cumulative - below;
                    below = cumulative;
                    (bound, own)
                })
                .collect();
            buckets.push((f64::MAX, s.count - below));
            e.encode_histogram::<NoLabelSet>(s.sum_s, s.count, &buckets, None)
        }
    }
}

/// The worker's metrics as text in `format`. Blocking: reads cgroup files and `/proc/self`.
pub fn render(state: &ApiState, format: Format) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(gather(state))));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(match format {
        Format::OpenMetrics => out,
        Format::Text => super::format::to_text(&out),
    })
}

fn gather(state: &ApiState) -> Vec<Family> {
    use MetricType::{Counter, Gauge};
    let m = &state.manager;
    let mut out = Vec::new();

    // Calls and their latency, per function (bounded: see functions.rs).
    let functions = m.metrics().all();
    let mut calls = Family::new(
        "lambdaworker_calls",
        Counter,
        "Calls answered, by function, path kind (sync, async, http) and HTTP status.",
    );
    let mut starts = Family::new(
        "lambdaworker_starts",
        Counter,
        "Calls that reached a sandbox, by function and start (cold: a sandbox was started for it; warm: an idle one served it).",
    );
    let mut latency = Family::new(
        "lambdaworker_call_duration_seconds",
        MetricType::Histogram,
        "Time from a call's start in the manager to its answer, by function and start.",
    );
    for (name, f) in &functions {
        for ((kind, status), n) in f.calls() {
            let labels = vec![
                ("function", name.clone()),
                ("kind", kind.as_str().to_owned()),
                ("status", status.to_string()),
            ];
            calls.samples.push((labels, Value::Counter(n as f64)));
        }
        for (start, h) in [("cold", &f.cold), ("warm", &f.warm)] {
            let s = h.snapshot();
            let labels = || vec![("function", name.clone()), ("start", start.to_owned())];
            starts
                .samples
                .push((labels(), Value::Counter(s.count as f64)));
            latency.samples.push((labels(), Value::Histogram(s)));
        }
    }
    out.extend([calls, starts, latency]);

    let mut phases = Family::new(
        "lambdaworker_phase_duration_seconds",
        MetricType::Histogram,
        "Time of each phase of a call (docs/performance.md has what each covers).",
    );
    for phase in Phase::ALL {
        let s = m.timings().histogram(phase);
        if s.count > 0 {
            phases.samples.push((
                vec![("phase", phase.name().to_owned())],
                Value::Histogram(s),
            ));
        }
    }
    out.push(phases);

    // Sandboxes, gates, memory.
    let mut by_state = [0u64; 4];
    for s in m.live() {
        let i = match s.state {
            SandboxState::Starting => 0,
            SandboxState::Busy => 1,
            SandboxState::Idle => 2,
            SandboxState::Paused => 3,
        };
        by_state[i] += 1;
    }
    let mut sandboxes = Family::new(
        "lambdaworker_sandboxes",
        Gauge,
        "Live handler sandboxes by state.",
    );
    for (i, name) in ["starting", "busy", "idle", "paused"].iter().enumerate() {
        sandboxes.samples.push((
            vec![("state", (*name).to_owned())],
            Value::Gauge(by_state[i] as f64),
        ));
    }
    out.push(sandboxes);
    let mut waiting = Family::new(
        "lambdaworker_queue_waiting",
        Gauge,
        "Calls waiting at a function's gate (its max_concurrency reached), by function.",
    );
    let mut other_waiting = 0usize;
    for (name, s) in m.lambda_stats() {
        if m.metrics().get(&name).is_some() {
            waiting
                .samples
                .push((vec![("function", name)], Value::Gauge(s.waiting as f64)));
        } else {
            other_waiting += s.waiting;
        }
    }
    if other_waiting > 0 {
        waiting.samples.push((
            vec![("function", super::OTHER.to_owned())],
            Value::Gauge(other_waiting as f64),
        ));
    }
    out.push(waiting);
    let cache = m.cache_stats();
    out.push(Family::one(
        "lambdaworker_memory_in_use_bytes",
        Gauge,
        "Memory the live sandboxes use (their cgroups), in bytes.",
        m.memory_in_use() as f64,
    ));
    out.push(Family::one(
        "lambdaworker_memory_budget_bytes",
        Gauge,
        "The memory budget of all sandboxes (memory_budget_mb), in bytes.",
        (cache.memory_budget_mb * (1 << 20)) as f64,
    ));
    for (name, help, v) in [
        (
            "lambdaworker_cache_hits",
            "Calls served by a warm sandbox.",
            cache.hits,
        ),
        (
            "lambdaworker_cache_misses",
            "Calls that started a sandbox.",
            cache.misses,
        ),
        (
            "lambdaworker_evictions",
            "Idle sandboxes destroyed to make room (handler_cache_size, memory budget).",
            cache.evictions,
        ),
        (
            "lambdaworker_pauses",
            "Idle sandboxes frozen (pause_after_ms).",
            cache.pauses,
        ),
        (
            "lambdaworker_unpauses",
            "Paused sandboxes thawed for a call.",
            cache.unpauses,
        ),
    ] {
        out.push(Family::one(name, Counter, help, v as f64));
    }

    // The import cache.
    let zygotes = m.backend().import_cache_stats();
    let live_zygotes = zygotes.zygotes.iter().filter(|z| !z.retired).count();
    out.push(Family::one(
        "lambdaworker_zygotes",
        Gauge,
        "Live zygotes of the import cache.",
        live_zygotes as f64,
    ));
    out.push(Family::one(
        "lambdaworker_zygote_memory_bytes",
        Gauge,
        "Memory the zygotes use, in bytes.",
        zygotes.memory_mb * 1048576.0,
    ));
    out.push(Family::one(
        "lambdaworker_zygote_forks",
        Counter,
        "Sandboxes forked from a zygote.",
        zygotes.forks as f64,
    ));
    out.push(Family::one(
        "lambdaworker_zygote_fork_failures",
        Counter,
        "Forks from a zygote that failed (the call started a fresh sandbox).",
        zygotes.fork_failures as f64,
    ));
    out.push(Family::one(
        "lambdaworker_zygotes_created",
        Counter,
        "Zygotes started.",
        zygotes.created as f64,
    ));

    // Packages.
    let packages = m.backend().package_stats();
    out.push(Family::one(
        "lambdaworker_package_resolves",
        Counter,
        "Requirement lists resolved by pip.",
        packages.resolves as f64,
    ));
    out.push(Family::one(
        "lambdaworker_package_installs",
        Counter,
        "Packages installed by pip.",
        packages.installs as f64,
    ));
    out.push(Family::one(
        "lambdaworker_package_install_failures",
        Counter,
        "Package installs that failed.",
        packages.install_failures as f64,
    ));
    out.push(Family::one(
        "lambdaworker_package_installs_in_progress",
        Gauge,
        "Package installs under way.",
        packages.in_progress.len() as f64,
    ));

    // The asynchronous queue.
    if let Some(counts) = state
        .invoke
        .queue
        .as_ref()
        .and_then(|q| q.store().counts().ok())
    {
        let mut f = Family::new(
            "lambdaworker_async_invocations",
            Gauge,
            "Asynchronous invocations the worker holds, by status.",
        );
        for (status, n) in [
            ("queued", counts.queued),
            ("running", counts.running),
            ("succeeded", counts.succeeded),
            ("failed", counts.failed),
        ] {
            f.samples
                .push((vec![("status", status.to_owned())], Value::Gauge(n as f64)));
        }
        out.push(f);
    }

    // The worker process.
    let p = process::read();
    let mut push = |name, kind, help, v: Option<f64>| {
        if let Some(v) = v {
            out.push(Family::one(name, kind, help, v));
        }
    };
    push(
        "process_cpu_seconds",
        Counter,
        "Total user and system CPU time spent in seconds.",
        p.cpu_seconds,
    );
    push(
        "process_resident_memory_bytes",
        Gauge,
        "Resident memory size in bytes.",
        p.resident_bytes.map(|v| v as f64),
    );
    push(
        "process_virtual_memory_bytes",
        Gauge,
        "Virtual memory size in bytes.",
        p.virtual_bytes.map(|v| v as f64),
    );
    push(
        "process_threads",
        Gauge,
        "Number of OS threads in the process.",
        p.threads.map(|v| v as f64),
    );
    push(
        "process_open_fds",
        Gauge,
        "Number of open file descriptors.",
        p.open_fds.map(|v| v as f64),
    );
    push(
        "process_max_fds",
        Gauge,
        "Maximum number of open file descriptors.",
        p.max_fds.map(|v| v as f64),
    );
    push(
        "process_start_time_seconds",
        Gauge,
        "Start time of the process since unix epoch in seconds.",
        p.start_time_seconds,
    );
    out
}
