//! Per-lambda limits from `lambda.json` (root only): what the kernel enforces, read back from
//! the sandbox's cgroup and from inside; bad files; the concurrency gate and its queue.

mod common;

use std::time::{Duration, Instant};

use common::{can_run, TestCluster};
use sandbox::cgroup::CgroupSetup;
use serde_json::json;

const REPORT: &str = r#"import os, time

def handler(event):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    st = os.statvfs("/tmp")
    return {"tmp_mb": st.f_blocks * st.f_frsize // (1024 * 1024)}
"#;

/// A cgroup file of `rel` in the hierarchy that holds `controller` (v1), or the v2 tree.
fn cgroup_file(rel: &str, controller: &str, v1: &str, v2: &str) -> String {
    let path = match CgroupSetup::detect().unwrap() {
        CgroupSetup::V1 { controllers } => controllers[controller].join(rel).join(v1),
        CgroupSetup::V2 { root } => root.join(rel).join(v2),
    };
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_json_limits_reach_the_kernel() {
    if !can_run("lambda_json_limits_reach_the_kernel") {
        return;
    }
    for patch in [r#"{"import_cache": false}"#, "{}"] {
        let mut c = TestCluster::start(patch).await;
        c.add_handler("limited", REPORT);
        std::fs::write(
            c.registry().join("limited/lambda.json"),
            r#"{"memory_mb": 192, "max_procs": 24, "cpu_percent": 50, "tmp_mb": 16, "timeout_s": 1}"#,
        )
        .unwrap();
        let (status, r) = c.call("limited", "{}").await;
        assert_eq!(status, 200, "{patch}: {r}");
        // /tmp's size, seen from inside.
        assert_eq!(r["tmp_mb"], 16, "{patch}: {r}");
        let stats = c.stats().await;
        let rel = stats["sandboxes"][0]["cgroup"].as_str().unwrap().to_owned();
        assert_eq!(
            cgroup_file(&rel, "memory", "memory.limit_in_bytes", "memory.max"),
            (192u64 << 20).to_string(),
            "{patch}"
        );
        assert_eq!(cgroup_file(&rel, "pids", "pids.max", "pids.max"), "24");
        let cpu = cgroup_file(&rel, "cpu", "cpu.cfs_quota_us", "cpu.max");
        assert!(
            cpu == "50000" || cpu == "50000 100000",
            "{patch}: cpu {cpu}"
        );
        // The lambda's own timeout, not the worker's (60 s).
        let t = Instant::now();
        let (status, r) = c.call("limited", r#"{"sleep": 5}"#).await;
        assert_eq!(status, 504, "{patch}: {r}");
        assert_eq!(r["error"], "timeout");
        assert_eq!(r["timeout_s"], 1);
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
        // Without lambda.json: the worker's defaults.
        c.add_handler("plain", REPORT);
        let (status, r) = c.call("plain", "{}").await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(r["tmp_mb"], c.cfg.tmp_mb, "{patch}: {r}");
        c.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_lambda_json_names_the_key_until_fixed() {
    if !can_run("a_bad_lambda_json_names_the_key_until_fixed") {
        return;
    }
    let mut c = TestCluster::start("{}").await;
    c.add_handler("cfg", REPORT);
    let file = c.registry().join("cfg/lambda.json");
    for (text, key) in [
        (r#"{"memory_mb": 100}"#, json!("memory_mb")),
        (r#"{"memory_mb": 200}"#, json!("memory_mb")),
        (r#"{"timeout_s": 1000}"#, json!("timeout_s")),
        (r#"{"timeout_s": "5"}"#, json!("timeout_s")),
        (r#"{"memroy_mb": 256}"#, json!("memroy_mb")),
        ("{broken", json!(null)),
    ] {
        std::fs::write(&file, text).unwrap();
        let (status, r) = c.call("cfg", "{}").await;
        assert_eq!(status, 400, "{text}: {r}");
        assert_eq!(r["error"], "invalid lambda config", "{text}: {r}");
        assert_eq!(r["key"], key, "{text}: {r}");
        assert_eq!(r["lambda"], "cfg");
        assert!(
            r["path"].as_str().unwrap().ends_with("cfg/lambda.json"),
            "{r}"
        );
    }
    // No sandbox was started for a bad file; a fixed one works at once.
    assert!(c.stats().await["sandboxes"].as_array().unwrap().is_empty());
    std::fs::write(&file, r#"{"memory_mb": 256, "timeout_s": 30}"#).unwrap();
    assert_eq!(c.call("cfg", "{}").await.0, 200);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrency_queues_and_then_refuses_with_429() {
    if !can_run("max_concurrency_queues_and_then_refuses_with_429") {
        return;
    }
    let c = TestCluster::start(r#"{"max_queue_per_lambda": 1}"#).await;
    c.add_handler("one", REPORT);
    std::fs::write(
        c.registry().join("one/lambda.json"),
        r#"{"max_concurrency": 1}"#,
    )
    .unwrap();
    assert_eq!(c.call("one", "{}").await.0, 200); // warm it up
    let c = std::sync::Arc::new(c);
    let slow =
        |c: std::sync::Arc<TestCluster>| async move { c.call("one", r#"{"sleep": 1}"#).await };
    // One runs, one waits in the queue (size 1), the third is refused at once.
    let first = tokio::spawn(slow(c.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = tokio::spawn(slow(c.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    let (status, r) = c.call("one", "{}").await;
    assert_eq!(status, 429, "{r}");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "429 must not wait"
    );
    assert_eq!(r["error"], "too many requests");
    assert_eq!(r["max_concurrency"], 1);
    assert_eq!(r["retry_after_s"], 1);
    assert_eq!(first.await.unwrap().0, 200);
    assert_eq!(second.await.unwrap().0, 200);
    // Never more than one sandbox for this lambda.
    let stats = c.stats().await;
    assert_eq!(stats["lambdas"]["one"]["cold_starts"], 1, "{stats}");
    let mut c = std::sync::Arc::try_unwrap(c).unwrap_or_else(|_| panic!("still shared"));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory_says_so_and_the_next_call_gets_a_fresh_sandbox() {
    if !can_run("out_of_memory_says_so_and_the_next_call_gets_a_fresh_sandbox") {
        return;
    }
    const HOG: &str = r#"def handler(event):
    if event.get("mb"):
        hog = b"x" * (event["mb"] << 20)
        return len(hog)
    return "fine"
"#;
    for patch in [r#"{"import_cache": false}"#, "{}"] {
        let mut c = TestCluster::start(patch).await;
        c.add_handler("hog", HOG);
        std::fs::write(
            c.registry().join("hog/lambda.json"),
            r#"{"memory_mb": 128}"#,
        )
        .unwrap();
        let (status, r) = c.call("hog", r#"{"mb": 400}"#).await;
        assert_eq!(status, 502, "{patch}: {r}");
        assert_eq!(r["error"], "out of memory", "{patch}: {r}");
        assert_eq!(r["memory_mb"], 128);
        assert_eq!(c.call("hog", "{}").await, (200, json!("fine")), "{patch}");
        let stats = c.stats().await;
        assert_eq!(
            stats["lambdas"]["hog"]["cold_starts"], 2,
            "{patch}: {stats}"
        );
        assert_eq!(stats["lambdas"]["hog"]["errors"], 1, "{patch}: {stats}");
        c.shutdown().await;
    }
}
