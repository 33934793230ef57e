//! The sweep over worker counts and policies, and its table.

use std::fmt::Write as _;

use super::{simulate, trace, Costs, Kind, Outcome, Setup};

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    pub workers: Vec<usize>,
    /// Functions per worker: the cluster grows because there are more functions to serve.
    pub functions_per_worker: usize,
    pub slots: usize,
    pub memory_mb: f64,
    /// Mean share of a worker's slots that the calls keep busy.
    pub utilization: f64,
    /// Calls per worker (at least `min_calls` per run).
    pub calls_per_worker: usize,
    pub min_calls: usize,
    pub zipf_s: f64,
    pub seed: u64,
    pub costs: Costs,
}

impl Default for Sweep {
    fn default() -> Sweep {
        Sweep {
            workers: vec![1, 2, 5, 10, 20, 50, 100],
            functions_per_worker: 40,
            slots: 64,
            memory_mb: 12_288.0,
            utilization: 0.25,
            calls_per_worker: 5000,
            min_calls: 50_000,
            zipf_s: 1.0,
            seed: 2019,
            costs: Costs::default(),
        }
    }
}

/// One trace at one worker count: an outcome per policy, in [`Kind::all`]'s order.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub trace: &'static str,
    pub workers: usize,
    pub functions: usize,
    pub outcomes: Vec<Outcome>,
}

/// Runs the sweep: both traces, every worker count, every policy; the policies of a row run
/// on threads of their own.
pub fn run(sweep: &Sweep) -> Vec<Row> {
    let mut rows = Vec::new();
    for which in ["zipf", "azure-like"] {
        for &workers in &sweep.workers {
            let workers = workers.max(1);
            let functions = (sweep.functions_per_worker * workers).max(1);
            let calls = (sweep.calls_per_worker * workers).max(sweep.min_calls);
            let busy = sweep.utilization * (sweep.slots * workers) as f64;
            let seed = sweep.seed ^ (workers as u64) << 8;
            let t = match which {
                "zipf" => trace::zipf(functions, calls, sweep.zipf_s, busy, seed),
                _ => trace::azure_like(functions, calls, busy, seed),
            };
            let setup = Setup {
                workers,
                slots: sweep.slots,
                memory_mb: sweep.memory_mb,
                idle_timeout_ms: 300_000.0,
                queue_timeout_ms: 60_000.0,
                costs: sweep.costs,
            };
            let outcomes = std::thread::scope(|scope| {
                let handles: Vec<_> = Kind::all(sweep.slots)
                    .into_iter()
                    .map(|k| {
                        let (t, setup) = (&t, &setup);
                        scope.spawn(move || simulate(t, setup, k))
                    })
                    .collect();
                handles.into_iter().filter_map(|h| h.join().ok()).collect()
            });
            rows.push(Row {
                trace: t.name,
                workers,
                functions,
                outcomes,
            });
        }
    }
    rows
}

/// The table, one block per trace: per policy the warm-hit rate and the p99 of the time the
/// platform added (queueing and start).
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::new();
    let mut last = "";
    for r in rows {
        if r.trace != last {
            last = r.trace;
            let _ = write!(out, "\n{}: warm-hit rate / p99 of queueing + start (ms); (503s: calls that waited 60 s for a sandbox)\n\n| workers | functions | calls |", r.trace);
            for o in &r.outcomes {
                let _ = write!(out, " {} |", o.policy.name());
            }
            out.push_str("\n|---:|---:|---:|");
            out.push_str(&"---:|".repeat(r.outcomes.len()));
            out.push('\n');
        }
        let calls = r.outcomes.first().map(|o| o.calls).unwrap_or(0);
        let _ = write!(out, "| {} | {} | {} |", r.workers, r.functions, calls);
        for o in &r.outcomes {
            let _ = write!(
                out,
                " {:.1}% / {}",
                o.warm_rate() * 100.0,
                fmt_ms(o.overhead_p99)
            );
            if o.rejected > 0 {
                let share = o.rejected as f64 * 100.0 / o.calls.max(1) as f64;
                if share < 0.1 {
                    let _ = write!(out, " ({} 503)", o.rejected);
                } else {
                    let _ = write!(out, " ({share:.1}% 503)");
                }
            }
            out.push_str(" |");
        }
        out.push('\n');
    }
    out
}

/// Every figure of every run, for `sim.json`.
pub fn json(sweep: &Sweep, rows: &[Row]) -> serde_json::Value {
    let runs: Vec<_> = rows
        .iter()
        .flat_map(|r| {
            r.outcomes.iter().map(move |o| {
                serde_json::json!({
                    "trace": r.trace,
                    "workers": r.workers,
                    "functions": r.functions,
                    "policy": o.policy.to_string(),
                    "calls": o.calls,
                    "warm": o.warm,
                    "cold": o.cold,
                    "pulls": o.pulls,
                    "rejected": o.rejected,
                    "warm_rate": o.warm_rate(),
                    "overhead_p50_ms": o.overhead_p50,
                    "overhead_p99_ms": o.overhead_p99,
                    "latency_p99_ms": o.latency_p99,
                    "peak_imbalance": o.peak_imbalance,
                })
            })
        })
        .collect();
    serde_json::json!({
        "sweep": {
            "workers": sweep.workers,
            "functions_per_worker": sweep.functions_per_worker,
            "slots": sweep.slots,
            "memory_mb": sweep.memory_mb,
            "utilization": sweep.utilization,
            "calls_per_worker": sweep.calls_per_worker,
            "min_calls": sweep.min_calls,
            "zipf_s": sweep.zipf_s,
            "seed": sweep.seed,
            "costs_ms": {
                "warm": sweep.costs.warm,
                "cold": sweep.costs.cold,
                "cold_heavy": sweep.costs.cold_heavy,
                "pull": sweep.costs.pull,
                "pull_heavy": sweep.costs.pull_heavy,
            },
        },
        "runs": runs,
    })
}

fn fmt_ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_sweep_has_a_row_per_trace_and_worker_count() {
        let sweep = Sweep {
            workers: vec![1, 4],
            functions_per_worker: 20,
            calls_per_worker: 1000,
            min_calls: 2000,
            slots: 8,
            ..Sweep::default()
        };
        let rows = run(&sweep);
        assert_eq!(rows.len(), 4);
        assert!(rows.iter().all(|r| r.outcomes.len() == 4));
        assert_eq!(rows[1].functions, 80);
        let table = markdown(&rows);
        assert_eq!(table.matches("| 4 | 80 |").count(), 2, "{table}");
        assert!(table.contains("| round robin | consistent | bounded-load consistent | LARD |"));
        let j = json(&sweep, &rows);
        assert_eq!(j["runs"].as_array().map(Vec::len), Some(16));
    }
}
