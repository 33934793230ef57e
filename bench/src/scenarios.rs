//! The scenarios: latency (with the per-phase breakdown), throughput, churn, density, scaling
//! (functions, the deploy scenario, is in `functions.rs`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;

use crate::cluster::{BenchCluster, WorkerProc};
use crate::fresh::FreshPython;
use crate::http::{self, BlockingConn};
use crate::local::Local;
use crate::machine::meminfo_kib;
use crate::oci::{self, OciKind};
use crate::stats::{Samples, Summary};
use crate::system::{FnSystem, System, EVENT, EXPECTED};

/// How much work each scenario does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Sequential calls per system in the latency table.
    pub calls: usize,
    /// Calls for systems that start a container per call (runc, crun).
    pub container_calls: usize,
    /// Calls before measuring (not counted).
    pub warmup: usize,
    /// Length of each throughput and churn run.
    pub duration: Duration,
    pub concurrency: Vec<usize>,
    pub density: Vec<usize>,
    pub scaling: Vec<usize>,
    /// Creates and code updates per side and archive in the functions scenario.
    pub deploys: usize,
    /// Asynchronous events queued in the invoke scenario.
    pub events: usize,
}

impl Plan {
    pub fn full(calls: usize, duration: Duration) -> Self {
        Self {
            calls,
            container_calls: calls,
            warmup: 5,
            duration,
            concurrency: vec![1, 8, 64],
            density: vec![10, 100, 500],
            scaling: vec![1, 100, 1000],
            deploys: 20,
            events: 2000,
        }
    }

    pub fn smoke() -> Self {
        Self {
            calls: 5,
            container_calls: 3,
            warmup: 1,
            duration: Duration::from_millis(500),
            concurrency: vec![1, 8],
            density: vec![2, 5],
            scaling: vec![1, 10],
            deploys: 2,
            events: 20,
        }
    }
}

/// Worker settings shared by the scenarios: no idle expiry during a run, quiet logs.
pub(crate) fn worker_patch(extra: serde_json::Value) -> serde_json::Value {
    let mut base = json!({
        "log_level": "warn",
        "idle_timeout_s": 3600,
        "max_sandboxes_per_lambda": std::thread::available_parallelism().map_or(4, |n| n.get().max(4)),
    });
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

// ---------------------------------------------------------------------------------------------
// Latency

/// One row of the latency table.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyRow {
    pub system: String,
    pub what: String,
    pub summary: Option<Summary>,
    /// p50 over lambdaworker warm's p50.
    pub x_warm: Option<f64>,
    /// p50 over lambdaworker cold's p50.
    pub x_cold: Option<f64>,
    /// Why the system did not run, or how its run differed.
    pub note: Option<String>,
    #[serde(skip)]
    pub samples: Samples,
}

/// Mean time per call of each worker phase over a measured row (from `/stats` timings).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Breakdown {
    pub calls: u64,
    /// Mean milliseconds per call by phase, largest first; includes `http+client` (the
    /// client's mean minus the worker's `request`) and `other` (the part of `request` no phase
    /// covers).
    pub phases: Vec<(String, f64)>,
    pub client_mean_ms: f64,
}

impl Breakdown {
    pub fn largest(&self) -> Option<&(String, f64)> {
        self.phases.first()
    }
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub rows: Vec<LatencyRow>,
    /// A cold call forked from a zygote (the import cache, on by default).
    pub cold: Breakdown,
    /// A cold call that starts a fresh interpreter (`import_cache: false`).
    pub cold_fresh: Breakdown,
    pub warm: Breakdown,
}

fn measure(system: &str, what: &str, sys: &mut dyn System, warmup: usize, n: usize) -> LatencyRow {
    let mut row = LatencyRow {
        system: system.to_owned(),
        what: what.to_owned(),
        summary: None,
        x_warm: None,
        x_cold: None,
        note: None,
        samples: Samples::with_capacity(n),
    };
    eprint!("  {system:<24} ");
    for _ in 0..warmup {
        if let Err(e) = sys.call() {
            row.note = Some(format!("failed in warm-up: {e:#}"));
            eprintln!("{}", row.note.as_deref().unwrap_or_default());
            return row;
        }
    }
    for _ in 0..n {
        if crate::interrupted() {
            row.note = Some("interrupted".to_owned());
            break;
        }
        let t = Instant::now();
        let r = sys.call();
        let took = t.elapsed();
        if let Err(e) = r {
            row.note = Some(format!("failed after {} calls: {e:#}", row.samples.len()));
            break;
        }
        row.samples.push(took);
    }
    row.summary = row.samples.summary();
    match (&row.summary, &row.note) {
        (Some(s), _) => eprintln!("n={} p50={:.2} ms", s.n, s.p50_ms),
        (None, Some(n)) => eprintln!("{n}"),
        (None, None) => eprintln!("no samples"),
    }
    row
}

fn skipped(system: &str, what: &str, why: String) -> LatencyRow {
    eprintln!("  {system:<24} skipped: {why}");
    LatencyRow {
        system: system.to_owned(),
        what: what.to_owned(),
        summary: None,
        x_warm: None,
        x_cold: None,
        note: Some(why),
        samples: Samples::default(),
    }
}

fn timings(conn: &mut BlockingConn) -> Result<BTreeMap<String, (u64, f64)>> {
    let stats = conn.stats()?;
    let mut out = BTreeMap::new();
    if let Some(map) = stats["timings"].as_object() {
        for (k, v) in map {
            out.insert(
                k.clone(),
                (
                    v["count"].as_u64().unwrap_or(0),
                    v["total_ms"].as_f64().unwrap_or(0.0),
                ),
            );
        }
    }
    Ok(out)
}

/// Per-call means of the phases between two `/stats` snapshots.
fn breakdown(
    before: &BTreeMap<String, (u64, f64)>,
    after: &BTreeMap<String, (u64, f64)>,
    row: &LatencyRow,
) -> Breakdown {
    let delta = |k: &str| {
        let (c1, t1) = after.get(k).copied().unwrap_or((0, 0.0));
        let (c0, t0) = before.get(k).copied().unwrap_or((0, 0.0));
        (c1.saturating_sub(c0), t1 - t0)
    };
    let (calls, request_ms) = delta("request");
    if calls == 0 {
        return Breakdown::default();
    }
    let per_call = |k: &str| delta(k).1 / calls as f64;
    let leaves = [
        "read_body",
        "lookup",
        "queue",
        "take_idle",
        "capacity",
        "packages",
        "spawn.cgroup",
        "spawn.prepare_clone",
        "spawn.child_setup_exec",
        "spawn.zygote",
        "first_call",
        "call",
        "release",
    ];
    let mut phases: Vec<(String, f64)> = leaves
        .iter()
        .map(|k| ((*k).to_owned(), per_call(k)))
        .filter(|(_, v)| *v > 0.0)
        .collect();
    let spawn_parts = per_call("spawn.cgroup")
        + per_call("spawn.prepare_clone")
        + per_call("spawn.child_setup_exec")
        + per_call("spawn.zygote");
    let spawn_rest = per_call("spawn") - spawn_parts;
    if spawn_rest > 0.0 {
        phases.push(("spawn.socket_spec_other".to_owned(), spawn_rest));
    }
    let covered: f64 = leaves.iter().map(|k| per_call(k)).sum::<f64>() + spawn_rest.max(0.0);
    let request = request_ms / calls as f64;
    phases.push(("worker other".to_owned(), (request - covered).max(0.0)));
    let client_mean_ms = row.summary.map_or(0.0, |s| s.mean_ms);
    phases.push((
        "http+client".to_owned(),
        (client_mean_ms - request).max(0.0),
    ));
    phases.sort_by(|a, b| b.1.total_cmp(&a.1));
    Breakdown {
        calls,
        phases,
        client_mean_ms,
    }
}

/// The latency table: every system runs the hello handler `plan.calls` times, one after the
/// other.
pub fn latency(cluster: &mut BenchCluster, plan: &Plan) -> Result<Latency> {
    let hello_dir = cluster.add_hello("hello")?;
    let cold_names = plan.warmup + plan.calls;
    for i in 0..cold_names {
        cluster.add_hello(&format!("cold-{i}"))?;
    }
    let mut rows = Vec::new();

    // 1. fresh python per call.
    match FreshPython::new(&cluster.base(), &hello_dir) {
        Ok(mut sys) => rows.push(measure(
            "fresh python",
            "python3 per call (chroot into the base)",
            &mut sys,
            plan.warmup,
            plan.calls,
        )),
        Err(e) => rows.push(skipped("fresh python", "", format!("{e:#}"))),
    }

    // 2. OCI runtimes per call.
    for kind in [OciKind::Runc, OciKind::Crun] {
        let what = format!("`{} run` per call, same base and mounts", kind.name());
        let work = cluster.root.join(format!("oci-{}", kind.name()));
        if let Err(e) = std::fs::create_dir_all(&work) {
            rows.push(skipped(kind.name(), &what, e.to_string()));
            continue;
        }
        match oci::prepare(kind, &cluster.base(), &hello_dir, &work) {
            Ok(mut sys) => {
                let mut row = measure(
                    kind.name(),
                    &what,
                    &mut sys,
                    plan.warmup.min(2),
                    plan.container_calls,
                );
                if plan.container_calls < plan.calls {
                    row.note.get_or_insert_with(|| {
                        format!("{} calls (slow per call)", plan.container_calls)
                    });
                }
                rows.push(row);
            }
            Err(why) => rows.push(skipped(kind.name(), &what, why)),
        }
    }

    // 3 and 4. lambdaworker cold (forked from a zygote) and warm, through HTTP.
    let cache_size = cold_names + plan.calls.min(50) + 16;
    // The default configuration (package zygotes on where user namespaces work): the numpy
    // row measures what a new numpy lambda gets by default.
    let worker = cluster.start_worker(&worker_patch(json!({
        "handler_cache_size": cache_size,
    })))?;
    let mut conn = BlockingConn::connect(worker.addr)?;
    let (cold_row, cold) = cold_rows(
        &mut conn,
        plan,
        "lambdaworker cold",
        "HTTP, no warm sandbox: forked from the root zygote",
    )?;
    let warm_call = |conn: &mut BlockingConn| {
        let body = conn.run("hello", EVENT)?;
        crate::system::check_answer("lambdaworker warm", &body)
    };
    // The warm row is measured before the numpy row starts its 50 sandboxes.
    warm_call(&mut conn)?;
    let before = timings(&mut conn)?;
    let warm_row = measure(
        "lambdaworker warm",
        "HTTP keep-alive, warm sandbox",
        &mut FnSystem(|| warm_call(&mut conn)),
        plan.warmup,
        plan.calls,
    );
    let after = timings(&mut conn)?;
    let warm = breakdown(&before, &after, &warm_row);
    // 3b. Cold calls of a handler that imports numpy, forked from a numpy zygote.
    let numpy_row = numpy_cold(cluster, &mut conn, plan, true);
    drop(conn);
    drop(worker);

    // 3c. The same cold rows without the import cache: a fresh interpreter per sandbox.
    let worker = cluster.start_worker(&worker_patch(json!({
        "handler_cache_size": cache_size,
        "import_cache": false,
    })))?;
    let mut conn = BlockingConn::connect(worker.addr)?;
    let (fresh_row, cold_fresh) = cold_rows(
        &mut conn,
        plan,
        "lambdaworker cold fresh",
        "HTTP, no warm sandbox: fresh interpreter (import_cache off)",
    )?;
    let numpy_fresh_row = numpy_cold(cluster, &mut conn, plan, false);
    drop(conn);
    drop(worker);

    // 5. The same sandbox setup, called over its socket by the bench itself.
    let cfg = cluster.worker_config(&worker_patch(json!({})))?;
    let mut local = Local::new(cfg)?;
    match local.direct("hello", &hello_dir) {
        Ok(mut sys) => rows.push(measure(
            "direct socket",
            "the worker's sandbox, its socket called directly",
            &mut sys,
            plan.warmup,
            plan.calls,
        )),
        Err(e) => rows.push(skipped("direct socket", "", format!("{e:#}"))),
    }
    drop(local);

    for row in [cold_row, fresh_row, numpy_row, numpy_fresh_row, warm_row] {
        rows.insert(rows.len().saturating_sub(1), row);
    }
    let p50 = |name: &str| {
        rows.iter()
            .find(|r| r.system == name)
            .and_then(|r| r.summary)
            .map(|s| s.p50_ms)
    };
    let (warm_p50, cold_p50) = (p50("lambdaworker warm"), p50("lambdaworker cold"));
    for row in &mut rows {
        if let Some(s) = row.summary {
            row.x_warm = warm_p50.map(|w| s.p50_ms / w);
            row.x_cold = cold_p50.map(|c| s.p50_ms / c);
        }
    }
    Ok(Latency {
        rows,
        cold,
        cold_fresh,
        warm,
    })
}

/// Cold calls of `cold-<i>` lambdas (each has no sandbox yet) through `conn`, and where their
/// time went.
fn cold_rows(
    conn: &mut BlockingConn,
    plan: &Plan,
    system: &str,
    what: &str,
) -> Result<(LatencyRow, Breakdown)> {
    let cold_call = |conn: &mut BlockingConn, i: usize| {
        let body = conn.run(&format!("cold-{i}"), EVENT)?;
        crate::system::check_answer(system, &body)
    };
    // Warm-up calls go to names of their own too.
    for i in 0..plan.warmup {
        cold_call(conn, i)?;
    }
    let before = timings(conn)?;
    let mut next = plan.warmup;
    let row = measure(
        system,
        what,
        &mut FnSystem(|| {
            next += 1;
            cold_call(conn, next - 1)
        }),
        0,
        plan.calls,
    );
    let after = timings(conn)?;
    let b = breakdown(&before, &after, &row);
    Ok((row, b))
}

/// The numpy handler: the hello answer, after `import numpy` at load time.
const NUMPY_HELLO: &str = "import numpy\n\ndef handler(event):\n    return \"Hello, %s!\" % event.get(\"name\", \"World\")\n";
const NUMPY_REQUIREMENT: &str = "numpy==2.2.6\n";

/// Cold calls of distinct lambdas that each need numpy. Not measured first: the call that
/// installs numpy, and with a zygote the call that makes the numpy zygote (the second cold
/// start of that package set, with `zygote_min_starts` 2).
fn numpy_cold(
    cluster: &BenchCluster,
    conn: &mut BlockingConn,
    plan: &Plan,
    zygote: bool,
) -> LatencyRow {
    let (system, what) = if zygote {
        (
            "lambdaworker cold numpy",
            "HTTP, no warm sandbox, handler imports numpy 2.2.6, default configuration: forked from a numpy zygote",
        )
    } else {
        (
            "lambdaworker numpy fresh",
            "the same with a fresh interpreter (import_cache off)",
        )
    };
    let n = plan.calls.min(50);
    let unmeasured = if zygote { 2 } else { 1 };
    let total = n + unmeasured;
    for i in 0..total {
        let dir = cluster.registry().join(format!("numpy-{i}"));
        let made = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("requirements.txt"), NUMPY_REQUIREMENT))
            .and_then(|()| std::fs::write(dir.join("lambda_func.py"), NUMPY_HELLO));
        if let Err(e) = made {
            return skipped(system, what, format!("{}: {e}", dir.display()));
        }
    }
    let t = Instant::now();
    for i in 0..unmeasured {
        if let Err(e) = conn.run(&format!("numpy-{i}"), EVENT) {
            return skipped(system, what, format!("numpy-{i} failed: {e:#}"));
        }
    }
    let setup_s = t.elapsed().as_secs_f64();
    let mut next = unmeasured;
    let mut row = measure(
        system,
        what,
        &mut FnSystem(|| {
            next += 1;
            let body = conn.run(&format!("numpy-{}", next - 1), EVENT)?;
            crate::system::check_answer(system, &body)
        }),
        0,
        n,
    );
    if row.note.is_none() {
        row.note = Some(if zygote {
            format!("{n} calls; before them, not counted ({setup_s:.1} s): numpy installed (first run), its zygote made")
        } else {
            format!(
                "{n} calls; numpy already installed; one unmeasured call first ({setup_s:.1} s)"
            )
        });
    }
    row
}

// ---------------------------------------------------------------------------------------------
// Throughput

#[derive(Debug, Clone, Serialize)]
pub struct ThroughputRow {
    pub concurrency: usize,
    pub seconds: f64,
    pub ok: usize,
    pub req_per_s: f64,
    pub summary: Option<Summary>,
    pub errors: BTreeMap<u16, u64>,
    pub first_error: Option<String>,
}

/// Warm hello at each concurrency for `plan.duration`, one keep-alive connection per client.
pub fn throughput(cluster: &mut BenchCluster, plan: &Plan) -> Result<Vec<ThroughputRow>> {
    cluster.add_hello("hello")?;
    let worker = cluster.start_worker(&worker_patch(json!({})))?;
    // Warm the pool up to max_sandboxes_per_lambda sandboxes first.
    let max = worker.cfg.max_sandboxes_per_lambda;
    http::load(
        worker.addr,
        "hello",
        EVENT,
        EXPECTED,
        max,
        Duration::from_millis(500),
    )?;
    let mut rows = Vec::new();
    for &c in &plan.concurrency {
        let r = http::load(worker.addr, "hello", EVENT, EXPECTED, c, plan.duration)?;
        eprintln!(
            "  concurrency {c:>3}: {:.0} req/s, {} ok, {} errors",
            r.per_second(),
            r.ok(),
            r.error_count()
        );
        rows.push(ThroughputRow {
            concurrency: c,
            seconds: r.elapsed.as_secs_f64(),
            ok: r.ok(),
            req_per_s: r.per_second(),
            summary: r.samples.summary(),
            errors: r.errors.clone(),
            first_error: r.first_error.clone(),
        });
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------------------------
// Churn

#[derive(Debug, Clone, Serialize)]
pub struct ChurnRow {
    pub path: String,
    pub what: String,
    pub cycles: usize,
    pub seconds: f64,
    pub per_second: f64,
    /// Time of one create+destroy (sandbox crate) or one cold call with an eviction (worker).
    pub summary: Option<Summary>,
    pub note: Option<String>,
}

/// Sandboxes created and destroyed per second, through the sandbox crate and through the worker.
pub fn churn(cluster: &mut BenchCluster, plan: &Plan) -> Result<Vec<ChurnRow>> {
    let mut rows = Vec::new();

    // Through the sandbox crate: spawn (cgroup, namespaces, mounts, exec) then destroy.
    let cfg = cluster.worker_config(&worker_patch(json!({})))?;
    let mut local = Local::new(cfg)?;
    rows.push(churn_loop(
        "sandbox crate",
        "Sandbox::spawn of `sleep` then destroy, one at a time",
        plan.duration,
        usize::MAX,
        |_| {
            local
                .spawn_plain(&["/usr/bin/sleep", "3600"])
                .and_then(|mut sb| sb.destroy().context("destroy"))
        },
    ));
    drop(local);

    // Through the worker: every call goes to a lambda with no sandbox while the cache holds
    // only 4, so each call creates one sandbox and evicts (destroys) another.
    let names = 4000;
    for i in 0..names {
        cluster.add_hello(&format!("churn-{i}"))?;
    }
    let worker = cluster.start_worker(&worker_patch(json!({"handler_cache_size": 4})))?;
    let mut conn = BlockingConn::connect(worker.addr)?;
    let mut row = churn_loop(
        "worker",
        "cold calls with handler_cache_size 4: one sandbox created and one evicted per call",
        plan.duration,
        names,
        |i| conn.run(&format!("churn-{i}"), EVENT).map(drop),
    );
    let live = conn.stats()?["worker"]["sandboxes_live"]
        .as_u64()
        .unwrap_or(0);
    drop(conn);
    drop(worker);
    if row.note.is_none() && live > 4 {
        row.note = Some(format!("{live} sandboxes live at the end (cap 4)"));
    }
    rows.push(row);
    Ok(rows)
}

/// Runs `cycle(0)`, `cycle(1)`, ... one at a time for `duration` (at most `max_cycles`, until
/// an interrupt, or until the first error, which becomes the row's note) and times each.
fn churn_loop(
    path: &str,
    what: &str,
    duration: Duration,
    max_cycles: usize,
    mut cycle: impl FnMut(usize) -> Result<()>,
) -> ChurnRow {
    let mut samples = Samples::default();
    let mut note = None;
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < duration && i < max_cycles && !crate::interrupted() {
        let t = Instant::now();
        if let Err(e) = cycle(i) {
            note = Some(format!("stopped after an error: {e:#}"));
            break;
        }
        samples.push(t.elapsed());
        i += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cycles = samples.len();
    let per_second = cycles as f64 / seconds.max(1e-9);
    eprintln!("  {path:<14} {cycles} cycles, {per_second:.1}/s");
    ChurnRow {
        path: path.to_owned(),
        what: what.to_owned(),
        cycles,
        seconds,
        per_second,
        summary: samples.summary(),
        note,
    }
}

// ---------------------------------------------------------------------------------------------
// Density

#[derive(Debug, Clone, Serialize)]
pub struct DensityRow {
    pub sandboxes: usize,
    /// Mean proportional set size of a sandbox's processes.
    pub pss_mib: f64,
    /// Mean memory charged to a sandbox's cgroup (page cache included).
    pub cgroup_mib: f64,
    /// Drop of the host's MemAvailable per sandbox since before the first one.
    pub host_mib: f64,
    /// MemAvailable (before the first sandbox) over the largest of the three per-sandbox
    /// figures: how many such sandboxes would fit.
    pub fit_estimate: u64,
    pub start_seconds: f64,
}

/// Idle sandboxes kept alive, and what each costs, at each count of `plan.density`.
pub fn density(cluster: &mut BenchCluster, plan: &Plan) -> Result<Vec<DensityRow>> {
    let max = plan.density.iter().copied().max().unwrap_or(0);
    for i in 0..max {
        cluster.add_hello(&format!("dense-{i}"))?;
    }
    let worker = cluster.start_worker(&worker_patch(json!({"handler_cache_size": max + 8})))?;
    let mut conn = BlockingConn::connect(worker.addr)?;
    let avail0 = meminfo_kib("MemAvailable").context("no MemAvailable in /proc/meminfo")?;
    let cgroups = sandbox::cgroup::CgroupSetup::detect()?;
    let mut rows = Vec::new();
    let mut live = 0;
    let started = Instant::now();
    for &target in &plan.density {
        while live < target {
            if crate::interrupted() {
                anyhow::bail!("interrupted");
            }
            conn.run(&format!("dense-{live}"), EVENT)
                .with_context(|| format!("starting sandbox {} of {target}", live + 1))?;
            live += 1;
        }
        let start_seconds = started.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_millis(500));
        let stats = conn.stats()?;
        let sandboxes = stats["sandboxes"].as_array().cloned().unwrap_or_default();
        let (mut pss_kib, mut cgroup_bytes, mut n) = (0u64, 0u64, 0usize);
        for sb in &sandboxes {
            let (Some(rel), Some(pid)) = (sb["cgroup"].as_str(), sb["pid"].as_i64()) else {
                continue;
            };
            let cg = cgroups.cgroup(std::path::Path::new(rel));
            for p in cg.pids().unwrap_or_else(|_| vec![pid as i32]) {
                pss_kib += pss_kib_of(p).unwrap_or(0);
            }
            cgroup_bytes += cg.memory_usage().unwrap_or(0);
            n += 1;
        }
        // The zygotes' share: their processes, and what their cgroups are charged for the
        // sandboxes forked from them.
        for z in stats["import_cache"]["zygotes"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(pid) = z["pid"].as_i64() {
                pss_kib += pss_kib_of(pid as i32).unwrap_or(0);
            }
            cgroup_bytes += (z["memory_mb"].as_f64().unwrap_or(0.0) * 1048576.0) as u64;
        }
        let avail = meminfo_kib("MemAvailable").unwrap_or(avail0);
        let n_f = n.max(1) as f64;
        let pss_mib = pss_kib as f64 / 1024.0 / n_f;
        let cgroup_mib = cgroup_bytes as f64 / 1048576.0 / n_f;
        let host_mib = avail0.saturating_sub(avail) as f64 / 1024.0 / n_f;
        let worst = pss_mib.max(cgroup_mib).max(host_mib).max(0.01);
        let fit_estimate = (avail0 as f64 / 1024.0 / worst) as u64;
        eprintln!(
            "  {n:>4} sandboxes: PSS {pss_mib:.2} MiB, cgroup {cgroup_mib:.2} MiB, host {host_mib:.2} MiB each; ~{fit_estimate} would fit"
        );
        rows.push(DensityRow {
            sandboxes: n,
            pss_mib,
            cgroup_mib,
            host_mib,
            fit_estimate,
            start_seconds,
        });
    }
    drop(conn);
    drop(worker);
    Ok(rows)
}

fn pss_kib_of(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix("Pss:")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

// ---------------------------------------------------------------------------------------------
// Scaling

#[derive(Debug, Clone, Serialize)]
pub struct ScalingRow {
    pub registered: usize,
    pub summary: Option<Summary>,
}

/// Warm-call latency of one lambda while 1, 100, 1000 lambdas are registered.
pub fn scaling(cluster: &mut BenchCluster, plan: &Plan) -> Result<Vec<ScalingRow>> {
    cluster.add_hello("hello")?;
    let worker: WorkerProc = cluster.start_worker(&worker_patch(json!({})))?;
    let mut conn = BlockingConn::connect(worker.addr)?;
    let mut registered = 1;
    let mut rows = Vec::new();
    for &target in &plan.scaling {
        while registered < target {
            cluster.add_hello(&format!("scale-{registered}"))?;
            registered += 1;
        }
        let mut sys = FnSystem(|| {
            let body = conn.run("hello", EVENT)?;
            crate::system::check_answer("lambdaworker warm", &body)
        });
        let row = measure(
            &format!("{target} registered"),
            "",
            &mut sys,
            plan.warmup,
            plan.calls,
        );
        if let Some(note) = row.note {
            anyhow::bail!("scaling with {target} lambdas: {note}");
        }
        rows.push(ScalingRow {
            registered: target,
            summary: row.summary,
        });
    }
    Ok(rows)
}
