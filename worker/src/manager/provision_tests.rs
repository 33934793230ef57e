//! Provisioned concurrency against the fake backend: sandboxes started without a call, never
//! paused, reaped or evicted, replaced when they die or the code changes (the old ones serving
//! until the new ones are ready), refused when the worker cannot hold them. No root needed.

use std::time::{Duration, Instant};

use super::tests::{harness, Harness};
use super::*;

fn provisioned(h: &Harness, name: &str, n: u64, behaviour: &str) {
    h.add(name, behaviour);
    h.add_file(
        name,
        "lambda.json",
        &format!(r#"{{"provisioned_concurrency": {n}, "max_concurrency": 4}}"#),
    );
}

/// Runs provisioner passes until `name` has `n` ready provisioned sandboxes.
async fn until_ready(h: &Harness, name: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        h.manager.provision().await;
        let s = h.manager.lambda_stats();
        if s.get(name)
            .is_some_and(|s| s.provisioned == n && s.idle >= n)
        {
            return;
        }
        assert!(Instant::now() < deadline, "{name}: {:?}", s.get(name));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn call(h: &Harness, name: &str) -> serde_json::Value {
    let name = LambdaName::parse(name).unwrap();
    let body = h
        .manager
        .run(&name, bytes::Bytes::from_static(b"{}"), &RequestId::new())
        .await
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioned_sandboxes_start_before_any_call_and_serve_it_warm() {
    let h = harness(|_| {});
    provisioned(&h, "ready", 2, "echo");
    until_ready(&h, "ready", 2).await;
    assert_eq!(h.fake.record().started, 2);
    let s = &h.manager.lambda_stats()["ready"];
    assert_eq!((s.calls, s.cold_starts, s.provisioned_target), (0, 0, 2));
    call(&h, "ready").await;
    let s = &h.manager.lambda_stats()["ready"];
    assert_eq!((s.calls, s.cold_starts, s.warm_starts), (1, 0, 1));
    // The live table says which sandboxes are provisioned.
    let live = h.manager.live();
    assert_eq!(live.iter().filter(|l| l.provisioned).count(), 2);
    // Another pass starts nothing more.
    assert_eq!(h.manager.provision().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioned_sandboxes_are_never_paused_reaped_or_evicted() {
    let h = harness(|c| {
        c.pause_after_ms = 1;
        c.idle_timeout_s = 1;
        c.handler_cache_size = 3;
    });
    provisioned(&h, "kept", 2, "echo");
    h.add("other", "echo");
    until_ready(&h, "kept", 2).await;
    call(&h, "other").await;
    let later = Instant::now() + Duration::from_secs(5);
    assert_eq!(h.manager.pause_idle(later), 1, "only the on-demand one");
    assert_eq!(h.manager.reap_idle(later), 1, "only the on-demand one");
    h.settle().await;
    // The cache is full of provisioned sandboxes plus one: a cold start evicts an on-demand one.
    h.add("third", "echo");
    call(&h, "other").await;
    call(&h, "third").await;
    h.settle().await;
    let s = h.manager.lambda_stats();
    assert_eq!((s["kept"].live, s["kept"].provisioned), (2, 2));
    assert!(h.manager.cache_stats().evictions >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_provisioned_sandbox_is_replaced() {
    let h = harness(|_| {});
    provisioned(&h, "phoenix", 1, "echo");
    until_ready(&h, "phoenix", 1).await;
    let first = *h.fake.record().alive.iter().next().unwrap();
    h.fake.record().dead.insert(first);
    // A call meets the dead one, discards it and starts another; the next pass restores the
    // provisioned one.
    call(&h, "phoenix").await;
    h.settle().await;
    until_ready(&h, "phoenix", 1).await;
    assert!(!h.fake.record().alive.contains(&first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_update_never_makes_a_call_wait_for_a_cold_start() {
    let h = harness(|_| {});
    provisioned(&h, "app", 2, "echo");
    until_ready(&h, "app", 2).await;
    let old: Vec<u64> = h.fake.record().alive.iter().copied().collect();
    h.add("app", "echo, version 2");
    // Before the new version's sandboxes exist, calls go to the old ones.
    let answer = call(&h, "app").await;
    assert!(
        old.contains(&answer["sandbox"].as_u64().unwrap()),
        "{answer}"
    );
    until_ready(&h, "app", 2).await;
    // Ready: the next pass retires the old ones, and calls go to the new ones.
    h.manager.provision().await;
    h.settle().await;
    let alive: Vec<u64> = h.fake.record().alive.iter().copied().collect();
    assert!(
        old.iter().all(|id| !alive.contains(id)),
        "{old:?} {alive:?}"
    );
    let answer = call(&h, "app").await;
    assert!(alive.contains(&answer["sandbox"].as_u64().unwrap()));
    let s = &h.manager.lambda_stats()["app"];
    assert_eq!(
        (s.cold_starts, s.warm_starts),
        (0, 2),
        "no call met a cold start"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lowered_target_keeps_only_that_many() {
    let h = harness(|_| {});
    provisioned(&h, "shrink", 3, "echo");
    until_ready(&h, "shrink", 3).await;
    h.add_file("shrink", "lambda.json", r#"{"provisioned_concurrency": 1}"#);
    // A new lambda.json is a new version: one new provisioned sandbox, the old three retired.
    until_ready(&h, "shrink", 1).await;
    h.manager.provision().await;
    h.settle().await;
    let s = &h.manager.lambda_stats()["shrink"];
    assert_eq!((s.live, s.provisioned, s.provisioned_target), (1, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_the_worker_cannot_hold_is_refused_with_the_reason() {
    let h = harness(|c| {
        c.memory_budget_mb = 1024;
        c.handler_cache_size = 8;
    });
    for (config, want) in [
        (
            r#"{"provisioned_concurrency": 4, "memory_mb": 512}"#,
            "memory budget (1024 MiB)",
        ),
        (
            r#"{"provisioned_concurrency": 9, "max_concurrency": 10}"#,
            "handler_cache_size (8)",
        ),
        (
            r#"{"provisioned_concurrency": 3, "max_concurrency": 2}"#,
            "max_concurrency (2)",
        ),
        (r#"{"provisioned_concurrency": 65}"#, "65"),
    ] {
        h.add("big", "echo");
        h.add_file("big", "lambda.json", config);
        let name = LambdaName::parse("big").unwrap();
        let err = h
            .manager
            .run(&name, bytes::Bytes::from_static(b"{}"), &RequestId::new())
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("provisioned_concurrency"), "{text}");
        assert!(text.contains(want), "{config}: {text}");
    }
    assert_eq!(h.manager.provision().await, 0);
    assert_eq!(h.fake.record().started, 0);
}
