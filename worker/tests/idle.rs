//! An idle warm sandbox burns no CPU (root only): OpenLambda's test of a background thread
//! that ticks every 10 ms, in a sandbox left idle for 1.5 s between two calls. With the default
//! `pause_after_ms` the sandbox is frozen soon after its call, and the thread barely ticks;
//! with the old default of 1000 ms it ticked for most of the idle time.

mod common;

use std::time::Duration;

use common::{can_run, TestCluster};

const TICKER: &str = r#"import threading, time

TICKS = [0]

def _tick():
    while True:
        time.sleep(0.01)
        TICKS[0] += 1

threading.Thread(target=_tick, daemon=True).start()

def handler(event):
    return {"ticks": TICKS[0]}
"#;

/// Ticks of the background thread while the sandbox sat idle for 1.5 s; and /stats after.
async fn idle_ticks(patch: &str) -> (u64, serde_json::Value) {
    let mut c = TestCluster::start(patch).await;
    c.add_handler("ticker", TICKER);
    let (status, first) = c.call("ticker", "{}").await;
    assert_eq!(status, 200, "{first}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, second) = c.call("ticker", "{}").await;
    assert_eq!(status, 200, "{second}");
    let stats = c.stats().await;
    c.shutdown().await;
    let ticks = second["ticks"].as_u64().unwrap() - first["ticks"].as_u64().unwrap();
    (ticks, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_warm_sandbox_barely_ticks() {
    if !can_run("an_idle_warm_sandbox_barely_ticks") {
        return;
    }
    let (ticks, stats) = idle_ticks("{}").await;
    let t = &stats["timings"];
    eprintln!(
        "default pause_after_ms: {ticks} ticks in 1.5 s idle; pause {} ms mean ({} max), thaw {} ms mean ({} max), {} pauses",
        t["pause"]["mean_ms"], t["pause"]["max_ms"], t["unpause"]["mean_ms"], t["unpause"]["max_ms"],
        stats["cache"]["pauses"]
    );
    assert_eq!(stats["cache"]["pauses"], 1, "{stats}");
    assert_eq!(stats["cache"]["unpauses"], 1, "{stats}");
    // Frozen within 150 ms of its call: at most ~15 ticks before, a few while thawing.
    assert!(
        ticks <= 30,
        "the idle sandbox ticked {ticks} times in 1.5 s"
    );

    // The measure is real: paused only after a second, it ticks most of the time.
    let (late, _) = idle_ticks(r#"{"pause_after_ms": 1000}"#).await;
    eprintln!("pause_after_ms 1000: {late} ticks in 1.5 s idle");
    assert!(
        late >= 60,
        "with pause_after_ms 1000 it ticked only {late} times"
    );
}
