//! Provisioned concurrency with real sandboxes (root only): a handler whose module-level init
//! sleeps 2 s answers its first call without that wait when it is provisioned, and with it
//! when it is not; a code update under a steady stream of calls makes none of them wait for a
//! cold start.

mod common;

use std::time::{Duration, Instant};

use common::{can_run, TestCluster};

const INIT_S: f64 = 2.0;

fn slow_init(tag: &str) -> String {
    format!("import time\ntime.sleep({INIT_S})\n\ndef handler(event):\n    return '{tag}'\n")
}

async fn wait_provisioned(c: &TestCluster, name: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = c.stats().await;
        let s = &stats["lambdas"][name];
        if s["provisioned"].as_u64() == Some(n) && s["idle"].as_u64() >= Some(n) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} not provisioned: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn timed_call(c: &TestCluster, name: &str) -> (f64, serde_json::Value) {
    let t = Instant::now();
    let (status, v) = c.call(name, "{}").await;
    assert_eq!(status, 200, "{v}");
    (t.elapsed().as_secs_f64(), v)
}

#[tokio::test(flavor = "multi_thread")]
async fn provisioned_sandboxes_take_the_init_off_the_first_call() {
    if !can_run("provisioned_sandboxes_take_the_init_off_the_first_call") {
        return;
    }
    let mut c = TestCluster::start("{}").await;
    c.add_handler("warm", &slow_init("v1"));
    std::fs::write(
        c.registry().join("warm/lambda.json"),
        r#"{"provisioned_concurrency": 2, "max_concurrency": 4}"#,
    )
    .unwrap();
    c.add_handler("cold", &slow_init("cold"));
    wait_provisioned(&c, "warm", 2).await;

    let (warm_s, v) = timed_call(&c, "warm").await;
    assert_eq!(v, "v1");
    let (cold_s, v) = timed_call(&c, "cold").await;
    assert_eq!(v, "cold");
    eprintln!(
        "first call: provisioned {:.1} ms, on demand {:.1} ms",
        warm_s * 1e3,
        cold_s * 1e3
    );
    assert!(
        cold_s > INIT_S,
        "the on-demand first call waits for the init: {cold_s}"
    );
    assert!(
        warm_s < INIT_S,
        "the provisioned first call does not: {warm_s}"
    );
    let stats = c.stats().await;
    assert_eq!(stats["lambdas"]["warm"]["cold_starts"], 0, "{stats}");
    let provisioned: Vec<&serde_json::Value> = stats["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["lambda"] == "warm" && s["provisioned"] == true)
        .collect();
    assert_eq!(provisioned.len(), 2, "{stats}");

    // A code update under constant load: calls keep coming, none waits for a cold start.
    let addr = c.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = std::sync::Arc::clone(&stop);
        tokio::spawn(async move {
            let mut worst: f64 = 0.0;
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let t = Instant::now();
                let (status, body) = common::http(addr, "POST", "/runLambda/warm", b"{}").await;
                assert_eq!(status, 200, "{body}");
                worst = worst.max(t.elapsed().as_secs_f64());
                if seen.last() != Some(&body) {
                    seen.push(body);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (worst, seen)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.add_handler("warm", &slow_init("v2"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = c.call("warm", "{}").await;
        if v == "v2" {
            break;
        }
        assert!(Instant::now() < deadline, "v2 never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (worst, seen) = load.await.unwrap();
    eprintln!(
        "code update under load: slowest call {:.1} ms, answers {seen:?}",
        worst * 1e3
    );
    assert_eq!(
        seen,
        [r#""v1""#, r#""v2""#],
        "v1 until v2 was ready, then v2"
    );
    assert!(worst < INIT_S, "a call waited for a cold start: {worst} s");
    let stats = c.stats().await;
    assert_eq!(stats["lambdas"]["warm"]["cold_starts"], 0, "{stats}");
    wait_provisioned(&c, "warm", 2).await;
    c.shutdown().await;
}
