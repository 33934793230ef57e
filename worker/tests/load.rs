//! Load and leaks (root only): 10 000 calls at concurrency 64 over 100 lambdas, some slow and
//! some failing; every answer is checked and counted. Afterwards nothing the worker made is
//! left: no cgroup, mount, process, scratch directory or file descriptor.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use common::{can_run, cgroup_dirs_containing, TestCluster};
use serde_json::json;

const LAMBDAS: usize = 100;
const CALLS: usize = 10_000;
const CONCURRENCY: usize = 64;

/// What lambda `i` is: most answer at once, every 20th sleeps 50 ms, every 20th (offset 10)
/// raises.
fn kind(i: usize) -> &'static str {
    match i % 20 {
        0 => "slow",
        10 => "fail",
        _ => "ok",
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn mounts_under(dir: &str) -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map_or(0, |m| m.lines().filter(|l| l.contains(dir)).count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_calls_then_nothing_left() {
    if !can_run("ten_thousand_calls_then_nothing_left") {
        return;
    }
    let fds_before = open_fds();
    let c = TestCluster::start(
        r#"{"handler_cache_size": 160, "max_sandboxes_per_lambda": 2, "pause_after_ms": 200}"#,
    )
    .await;
    for i in 0..LAMBDAS {
        let source = match kind(i) {
            "slow" => format!(
                "import time\n\ndef handler(event):\n    time.sleep(0.05)\n    return {{'lambda': {i}, 'n': event['n']}}\n"
            ),
            "fail" => "def handler(event):\n    raise ValueError('failing on purpose: %d' % event['n'])\n".to_owned(),
            _ => format!("def handler(event):\n    return {{'lambda': {i}, 'n': event['n']}}\n"),
        };
        c.add_handler(&format!("load-{i}"), &source);
    }
    let c = Arc::new(c);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..CONCURRENCY {
        let c = Arc::clone(&c);
        tasks.push(tokio::spawn(async move {
            let mut seen: BTreeMap<String, usize> = BTreeMap::new();
            let mut n = t;
            while n < CALLS {
                let i = n % LAMBDAS;
                let (status, body) = c
                    .call(&format!("load-{i}"), &format!(r#"{{"n": {n}}}"#))
                    .await;
                let outcome = match (kind(i), status) {
                    ("fail", 500) if body["type"] == "ValueError" => "failed as expected",
                    ("ok" | "slow", 200) if body == json!({"lambda": i, "n": n}) => "answered",
                    _ => {
                        panic!("call {n} to load-{i} ({}): {status} {body}", kind(i));
                    }
                };
                *seen.entry(format!("{} {outcome}", kind(i))).or_default() += 1;
                n += CONCURRENCY;
            }
            seen
        }));
    }
    let mut totals: BTreeMap<String, usize> = BTreeMap::new();
    for task in tasks {
        for (k, v) in task.await.expect("a client task panicked") {
            *totals.entry(k).or_default() += v;
        }
    }
    let took = started.elapsed();
    let stats = c.stats().await;
    eprintln!(
        "load: {CALLS} calls at concurrency {CONCURRENCY} over {LAMBDAS} lambdas in {:.1} s ({:.0}/s): {totals:?}; cold starts {}, evictions {}",
        took.as_secs_f64(),
        CALLS as f64 / took.as_secs_f64(),
        stats["cache"]["misses"],
        stats["cache"]["evictions"],
    );
    assert_eq!(totals.values().sum::<usize>(), CALLS, "{totals:?}");
    assert_eq!(totals["fail failed as expected"], CALLS / 20);
    assert_eq!(totals["slow answered"], CALLS / 20);
    assert_eq!(totals["ok answered"], CALLS - CALLS / 10);
    // The worker counted the same.
    let (mut calls, mut errors) = (0, 0);
    for (_, l) in stats["lambdas"].as_object().unwrap() {
        calls += l["calls"].as_u64().unwrap();
        errors += l["errors"].as_u64().unwrap();
    }
    assert_eq!((calls, errors), (CALLS as u64, (CALLS / 20) as u64));

    // Nothing left once it stops.
    let mut c = Arc::try_unwrap(c).unwrap_or_else(|_| panic!("cluster still shared"));
    let parent = c.cfg.cgroup_parent().display().to_string();
    let worker_dir = c.cfg.worker_dir.display().to_string();
    c.shutdown().await;
    assert!(cgroup_dirs_containing(&parent).is_empty(), "cgroups left");
    assert_eq!(mounts_under(&worker_dir), 0, "mounts left");
    assert!(!c.cfg.worker_dir.join("handlers").exists(), "scratch left");
    assert!(!c.cfg.worker_dir.join("import-cache").exists());
    let sandbox_procs = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read_to_string(e.path().join("cgroup")).is_ok_and(|cg| cg.contains(&parent))
        })
        .count();
    assert_eq!(sandbox_procs, 0, "processes left in the worker's cgroups");
    assert_eq!(open_fds(), fds_before, "file descriptors left open");
}
