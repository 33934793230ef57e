//! The printed table and `latest.json`.

use std::fmt::Write as _;

use serde::Serialize;

use crate::functions::{self, Functions};
use crate::invoke::{self, Invoke};
use crate::machine::Machine;
use crate::scenarios::{ChurnRow, DensityRow, Latency, ScalingRow, ThroughputRow};
use crate::stats::Summary;

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub smoke: bool,
    pub calls: usize,
    pub duration_s: f64,
    pub latency: Option<Latency>,
    pub throughput: Option<Vec<ThroughputRow>>,
    pub churn: Option<Vec<ChurnRow>>,
    pub density: Option<Vec<DensityRow>>,
    pub scaling: Option<Vec<ScalingRow>>,
    pub functions: Option<Functions>,
    pub invoke: Option<Invoke>,
    pub provisioned: Option<crate::provisioned::Provisioned>,
    pub bases: Option<crate::bases::Bases>,
    /// Scenarios that failed, with the error.
    pub failed: Vec<(String, String)>,
    pub elapsed_s: f64,
}

fn ms(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn ratio(x: Option<f64>) -> String {
    match x {
        Some(r) if r >= 10.0 => format!("{r:.0}x"),
        Some(r) if r < 0.1 => format!("{r:.3}x"),
        Some(r) => format!("{r:.1}x"),
        None => "-".to_owned(),
    }
}

fn percentiles(s: &Option<Summary>) -> String {
    match s {
        Some(s) => format!(
            "{:>8} {:>8} {:>8} {:>8}",
            ms(s.p50_ms),
            ms(s.p90_ms),
            ms(s.p99_ms),
            ms(s.min_ms)
        ),
        None => format!("{:>8} {:>8} {:>8} {:>8}", "-", "-", "-", "-"),
    }
}

impl Report {
    /// The human-readable report (markdown-friendly plain text).
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "{}", self.machine.line());
        let _ = writeln!(
            o,
            "mode: {}, {} calls per latency row, {:.1} s per throughput/churn run, took {:.0} s",
            if self.smoke { "smoke" } else { "full" },
            self.calls,
            self.duration_s,
            self.elapsed_s
        );
        if let Some(l) = &self.latency {
            let _ = writeln!(
                o,
                "\nlatency of one hello call (ms; x = p50 over lambdaworker's p50)"
            );
            let _ = writeln!(
                o,
                "{:<24} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}  note",
                "system", "n", "p50", "p90", "p99", "min", "x warm", "x cold"
            );
            for r in &l.rows {
                let _ = writeln!(
                    o,
                    "{:<24} {:>5} {} {:>8} {:>8}  {}",
                    r.system,
                    r.summary.map_or(0, |s| s.n),
                    percentiles(&r.summary),
                    ratio(r.x_warm),
                    ratio(r.x_cold),
                    r.note.as_deref().unwrap_or(&r.what)
                );
            }
            for (label, b) in [
                ("cold (zygote)", &l.cold),
                ("cold (fresh)", &l.cold_fresh),
                ("warm", &l.warm),
            ] {
                if b.calls == 0 {
                    continue;
                }
                let parts: Vec<String> = b
                    .phases
                    .iter()
                    .filter(|(_, v)| *v >= 0.005)
                    .map(|(k, v)| format!("{k} {}", ms(*v)))
                    .collect();
                let _ = writeln!(
                    o,
                    "where a {label} call's {} ms (mean) goes, largest first: {}",
                    ms(b.client_mean_ms),
                    parts.join(", ")
                );
            }
        }
        if let Some(rows) = &self.throughput {
            let _ = writeln!(
                o,
                "\nthroughput, warm hello, closed loop, one keep-alive connection per client"
            );
            let _ = writeln!(
                o,
                "{:>11} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}  errors",
                "concurrency", "req/s", "ok", "p50", "p90", "p99", "min"
            );
            for r in rows {
                let errors = if r.errors.is_empty() {
                    "0".to_owned()
                } else {
                    format!(
                        "{:?} first: {}",
                        r.errors,
                        r.first_error.as_deref().unwrap_or("")
                    )
                };
                let _ = writeln!(
                    o,
                    "{:>11} {:>9.0} {:>8} {}  {}",
                    r.concurrency,
                    r.req_per_s,
                    r.ok,
                    percentiles(&r.summary),
                    errors
                );
            }
        }
        if let Some(rows) = &self.churn {
            let _ = writeln!(o, "\nchurn: sandboxes created and destroyed");
            let _ = writeln!(
                o,
                "{:<14} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8}  what",
                "path", "cycles", "per s", "p50", "p90", "p99", "min"
            );
            for r in rows {
                let _ = writeln!(
                    o,
                    "{:<14} {:>7} {:>8.1} {}  {}",
                    r.path,
                    r.cycles,
                    r.per_second,
                    percentiles(&r.summary),
                    r.note.as_deref().unwrap_or(&r.what)
                );
            }
        }
        if let Some(rows) = &self.density {
            let _ = writeln!(
                o,
                "\ndensity: idle hello sandboxes kept alive (MiB per sandbox)"
            );
            let _ = writeln!(
                o,
                "{:>9} {:>8} {:>8} {:>8} {:>12} {:>9}",
                "sandboxes", "PSS", "cgroup", "host", "fit (est.)", "start s"
            );
            for r in rows {
                let _ = writeln!(
                    o,
                    "{:>9} {:>8.2} {:>8.2} {:>8.2} {:>12} {:>9.1}",
                    r.sandboxes,
                    r.pss_mib,
                    r.cgroup_mib,
                    r.host_mib,
                    r.fit_estimate,
                    r.start_seconds
                );
            }
        }
        if let Some(rows) = &self.scaling {
            let _ = writeln!(
                o,
                "\nscaling: warm-call latency by number of registered lambdas (ms)"
            );
            let _ = writeln!(
                o,
                "{:>10} {:>8} {:>8} {:>8} {:>8}",
                "registered", "p50", "p90", "p99", "min"
            );
            for r in rows {
                let _ = writeln!(o, "{:>10} {}", r.registered, percentiles(&r.summary));
            }
        }
        if let Some(f) = &self.functions {
            functions::render(&mut o, f, ms);
        }
        if let Some(i) = &self.invoke {
            invoke::render(&mut o, i, ms);
        }
        if let Some(p) = &self.provisioned {
            crate::provisioned::render(&mut o, p, ms);
        }
        if let Some(b) = &self.bases {
            crate::bases::render(&mut o, b, ms);
        }
        for (what, err) in &self.failed {
            let _ = writeln!(o, "\nFAILED {what}: {err}");
        }
        o
    }
}
