//! lambdaworker's benchmark harness: `./bench/run.sh` (see `docs/performance.md`).
//!
//! One run creates a temporary cluster (from the base cache), runs each scenario against fresh
//! worker processes and against the peers (fresh python, runc, crun), prints one report, and
//! writes `latest.json` and `latest.svg` to the output directory. A benchmark is not a test:
//! nothing here passes or fails on timing; a run fails only when a scenario cannot run at all
//! or lambdaworker answers wrongly.

pub mod bases;
pub mod cluster;
pub mod fresh;
pub mod functions;
pub mod http;
pub mod invoke;
pub mod local;
pub mod machine;
pub mod oci;
pub mod plot;
pub mod provisioned;
pub mod report;
pub mod scenarios;
pub mod sim;
pub mod stats;
pub mod system;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::cluster::BenchCluster;
use crate::machine::Machine;
use crate::report::Report;
use crate::scenarios::Plan;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM set a flag instead of ending the process, so that a run stopped with
/// Ctrl-C ends its loops early and still stops its workers and removes its sandboxes, cgroups
/// and temporary cluster on the way out.
pub fn catch_interrupts() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(sig, &action) }.with_context(|| format!("cannot catch {sig}"))?;
    }
    Ok(())
}

/// Whether SIGINT or SIGTERM arrived since [`catch_interrupts`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// An error once SIGINT or SIGTERM arrived, so that a long row stops.
pub fn check_interrupt() -> Result<()> {
    if interrupted() {
        anyhow::bail!("interrupted");
    }
    Ok(())
}

/// The scenarios, in the order they run.
pub const SCENARIOS: [&str; 9] = [
    "latency",
    "throughput",
    "churn",
    "density",
    "scaling",
    "functions",
    "invoke",
    "provisioned",
    "bases",
];

/// What to run and where to put the results.
#[derive(Debug, Clone)]
pub struct Options {
    pub plan: Plan,
    pub smoke: bool,
    pub only: Vec<String>,
    pub out_dir: PathBuf,
    pub worker_bin: PathBuf,
    pub tmp_dir: PathBuf,
    pub repo: PathBuf,
}

/// Runs the benchmark; the report is printed and written even when a scenario fails, and the
/// error then names the failed scenarios.
pub fn run(opts: &Options) -> Result<Report> {
    for s in &opts.only {
        if !SCENARIOS.contains(&s.as_str()) {
            anyhow::bail!("unknown scenario {s:?} (known: {})", SCENARIOS.join(", "));
        }
    }
    let wanted = |s: &str| opts.only.is_empty() || opts.only.iter().any(|o| o == s);
    let started = Instant::now();
    eprintln!(
        "bench: creating a temporary cluster under {}",
        opts.tmp_dir.display()
    );
    let mut cluster = BenchCluster::create(&opts.tmp_dir, &opts.worker_bin)?;
    let machine = Machine::probe(&opts.repo, &cluster.base());
    eprintln!("{}", machine.line());
    let plan = &opts.plan;
    let mut report = Report {
        machine,
        smoke: opts.smoke,
        calls: plan.calls,
        duration_s: plan.duration.as_secs_f64(),
        latency: None,
        throughput: None,
        churn: None,
        density: None,
        scaling: None,
        functions: None,
        invoke: None,
        provisioned: None,
        bases: None,
        failed: Vec::new(),
        elapsed_s: 0.0,
    };
    macro_rules! scenario {
        ($name:literal, $field:ident, $f:expr) => {
            if wanted($name) && !interrupted() {
                eprintln!("bench: {}", $name);
                match $f(&mut cluster, plan) {
                    Ok(v) => report.$field = Some(v),
                    Err(e) => report.failed.push(($name.to_owned(), format!("{e:#}"))),
                }
            }
        };
    }
    scenario!("latency", latency, scenarios::latency);
    scenario!("throughput", throughput, scenarios::throughput);
    scenario!("churn", churn, scenarios::churn);
    scenario!("density", density, scenarios::density);
    scenario!("scaling", scaling, scenarios::scaling);
    scenario!("functions", functions, functions::functions);
    scenario!("invoke", invoke, invoke::invoke);
    scenario!("provisioned", provisioned, provisioned::provisioned);
    scenario!("bases", bases, bases::bases);
    drop(cluster);
    if interrupted() {
        report
            .failed
            .push(("run".to_owned(), "interrupted".to_owned()));
    }
    if let Some(l) = &report.latency {
        for row in &l.rows {
            // The numpy row needs the package index: like a peer, it may be unable to run here.
            let ours = [
                "lambdaworker cold",
                "lambdaworker cold fresh",
                "lambdaworker warm",
                "direct socket",
            ]
            .contains(&row.system.as_str());
            if ours && row.summary.is_none() {
                let why = row.note.clone().unwrap_or_else(|| "no samples".to_owned());
                report
                    .failed
                    .push((format!("latency: {}", row.system), why));
            }
        }
    }
    if let Some(rows) = &report.throughput {
        for r in rows.iter().filter(|r| !r.errors.is_empty()) {
            report.failed.push((
                format!("throughput at concurrency {}", r.concurrency),
                format!("errors {:?}", r.errors),
            ));
        }
    }
    if let Some(rows) = &report.churn {
        for r in rows {
            if let Some(note) = r.note.as_deref().filter(|n| n.starts_with("stopped")) {
                report
                    .failed
                    .push((format!("churn through the {}", r.path), note.to_owned()));
            }
        }
    }
    report.elapsed_s = started.elapsed().as_secs_f64();
    if !interrupted() {
        write_results(opts, &report)?;
    }
    Ok(report)
}

fn write_results(opts: &Options, report: &Report) -> Result<()> {
    let out = &opts.out_dir;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let json_path = out.join("latest.json");
    let mut value = serde_json::to_value(report)?;
    // Raw samples go into the JSON too, for plots made elsewhere.
    if let (Some(l), Some(rows)) = (&report.latency, value["latency"]["rows"].as_array_mut()) {
        for (row, v) in l.rows.iter().zip(rows.iter_mut()) {
            v["samples_ms"] = serde_json::json!(row.samples.as_ms());
        }
    }
    let text = serde_json::to_string_pretty(&value)? + "\n";
    std::fs::write(&json_path, text)
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    let title = format!(
        "hello latency: {} cores, kernel {}, rev {}",
        report.machine.cores, report.machine.kernel, report.machine.revision
    );
    if let Some(l) = &report.latency {
        let series: Vec<plot::Series> = l
            .rows
            .iter()
            .filter(|r| !r.samples.is_empty())
            .map(|r| plot::Series {
                label: r.system.clone(),
                samples_ms: r.samples.as_ms().to_vec(),
            })
            .collect();
        plot::latency_cdf(&out.join("latest.svg"), &title, &series)?;
    }
    if let Some(rows) = &report.throughput {
        let points: Vec<(u32, f64)> = rows
            .iter()
            .map(|r| (r.concurrency as u32, r.req_per_s))
            .collect();
        let title = format!(
            "warm hello throughput: {} cores, rev {}",
            report.machine.cores, report.machine.revision
        );
        plot::throughput(&out.join("latest-throughput.svg"), &title, &points)?;
    }
    eprintln!(
        "bench: wrote {} and the plots beside it",
        json_path.display()
    );
    Ok(())
}
