//! The manager's policy against the fake backend ([`super::fake`]): gates, pools, capacity,
//! eviction, the memory budget, pausing, reaping, failures and shutdown. No root needed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::fake::FakeBackend;
use super::*;
use crate::registry::RegistryError;

pub(super) struct Harness {
    pub(super) tmp: tempfile::TempDir,
    pub(super) manager: Arc<Manager<FakeBackend>>,
    pub(super) fake: FakeBackend,
}

pub(super) fn harness(patch: impl FnOnce(&mut Config)) -> Harness {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = Config {
        registry_dir: tmp.path().join("registry"),
        worker_dir: tmp.path().join("worker"),
        memory_budget_mb: 100_000,
        ..Config::default()
    };
    std::fs::create_dir_all(&cfg.registry_dir).unwrap();
    patch(&mut cfg);
    let fake = FakeBackend::default();
    let manager = Arc::new(Manager::new(Arc::new(cfg), fake.clone()));
    Harness { tmp, manager, fake }
}

impl Harness {
    /// A lambda whose fake sandboxes behave as `behaviour` says (see `fake.rs`).
    pub(super) fn add(&self, name: &str, behaviour: &str) {
        let dir = self.tmp.path().join("registry").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("lambda_func.py"), behaviour).unwrap();
    }

    pub(super) fn add_file(&self, name: &str, file: &str, text: &str) {
        let dir = self.tmp.path().join("registry").join(name);
        std::fs::write(dir.join(file), text).unwrap();
    }

    async fn call(&self, name: &str) -> Result<serde_json::Value, RunError> {
        self.call_with(name, &RequestId::new()).await
    }

    async fn call_with(
        &self,
        name: &str,
        request_id: &RequestId,
    ) -> Result<serde_json::Value, RunError> {
        let name = LambdaName::parse(name).unwrap();
        let body = self
            .manager
            .run(&name, Bytes::from_static(b"{\"n\": 1}"), request_id)
            .await?;
        Ok(serde_json::from_slice(&body).unwrap())
    }

    /// A call running on its own task.
    fn spawn_call(&self, name: &str) -> tokio::task::JoinHandle<Result<Bytes, RunError>> {
        let m = Arc::clone(&self.manager);
        let name = LambdaName::parse(name).unwrap();
        tokio::spawn(async move {
            m.run(&name, Bytes::from_static(b"{}"), &RequestId::new())
                .await
        })
    }

    /// The sandbox id that answered a call.
    async fn served_by(&self, name: &str) -> u64 {
        let answer = self.call(name).await.unwrap();
        assert_eq!(answer["lambda"], name);
        answer["sandbox"].as_u64().unwrap()
    }

    /// Waits until no destroy is under way.
    pub(super) async fn settle(&self) {
        assert!(
            self.manager
                .live
                .destroys_done_within(Duration::from_secs(10))
                .await
        );
    }

    fn stats(&self, name: &str) -> LambdaStats {
        self.manager.lambda_stats()[name].clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_call_is_served_warm_by_the_same_sandbox() {
    let h = harness(|_| {});
    h.add("hello", "echo");
    let first = h.served_by("hello").await;
    let second = h.served_by("hello").await;
    assert_eq!(first, second);
    let s = h.stats("hello");
    assert_eq!(
        (s.calls, s.cold_starts, s.warm_starts, s.errors),
        (2, 1, 1, 0)
    );
    assert_eq!((s.live, s.idle), (1, 1));
    let c = h.manager.cache_stats();
    assert_eq!((c.hits, c.misses), (1, 1));
    assert_eq!(h.fake.record().started, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_handler_retires_its_sandboxes() {
    let h = harness(|_| {});
    h.add("hello", "echo");
    let first = h.served_by("hello").await;
    h.add("hello", "echo, edited");
    let second = h.served_by("hello").await;
    assert_ne!(first, second);
    h.settle().await;
    let r = h.fake.record();
    assert_eq!((r.started, r.destroyed), (2, 1));
    assert!(!r.alive.contains(&first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_idle_sandbox_is_destroyed_not_reused() {
    let h = harness(|_| {});
    h.add("hello", "echo");
    let first = h.served_by("hello").await;
    h.fake.record().dead.insert(first);
    let second = h.served_by("hello").await;
    assert_ne!(first, second);
    h.settle().await;
    assert_eq!(h.fake.record().destroyed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_bounds_concurrent_calls_and_the_queue() {
    let h = harness(|c| c.max_queue_per_lambda = 1);
    h.add("slow", "sleep 400");
    h.add_file("slow", "lambda.json", r#"{"max_concurrency": 1}"#);
    let calls: Vec<_> = (0..3).map(|_| h.spawn_call("slow")).collect();
    let mut ok = 0;
    let mut refused = Vec::new();
    for c in calls {
        match c.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => refused.push(e),
        }
    }
    // One runs, one waits for it, the third finds the queue full.
    assert_eq!(ok, 2, "{refused:?}");
    assert!(matches!(
        refused[..],
        [RunError::TooManyRequests {
            max_concurrency: 1,
            queued: 1,
            ..
        }]
    ));
    // One sandbox served both: max_concurrency 1 means one at a time.
    assert_eq!(h.fake.record().started, 1);
    assert_eq!(h.stats("slow").errors, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_worker_evicts_the_least_recently_used_idle_sandbox() {
    let h = harness(|c| c.handler_cache_size = 2);
    for name in ["a", "b", "c"] {
        h.add(name, "echo");
    }
    let a = h.served_by("a").await;
    let b = h.served_by("b").await;
    // a is used again: b is now the least recently used.
    assert_eq!(h.served_by("a").await, a);
    let c = h.served_by("c").await;
    h.settle().await;
    {
        let r = h.fake.record();
        assert_eq!(r.alive.iter().copied().collect::<Vec<_>>(), vec![a, c]);
        assert!(!r.alive.contains(&b));
        drop(r);
    }

    assert_eq!(h.manager.cache_stats().evictions, 1);
    assert_eq!(h.manager.live_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_sandbox_is_never_evicted_and_a_cold_start_waits_then_gives_up() {
    let h = harness(|c| {
        c.handler_cache_size = 1;
        c.timeout_s = 1;
    });
    h.add("busy", "sleep 2500");
    h.add_file("busy", "lambda.json", r#"{"timeout_s": 10}"#);
    h.add("other", "echo");
    let busy = h.spawn_call("busy");
    while h.manager.live_count() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let t = Instant::now();
    let err = h.call("other").await.unwrap_err();
    assert!(
        matches!(
            err,
            RunError::Unavailable {
                reason: Unavailable::Full {
                    handler_cache_size: 1
                }
            }
        ),
        "{err}"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "waited timeout_s"
    );
    assert!(busy.await.unwrap().is_ok(), "the busy call was left alone");
    // Now that it is idle, the other lambda evicts it.
    h.served_by("other").await;
    h.settle().await;
    assert_eq!(h.fake.record().destroyed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_waiting_for_capacity_takes_the_sandbox_a_call_returns() {
    let h = harness(|c| c.handler_cache_size = 1);
    h.add("busy", "sleep 300");
    h.add("other", "echo");
    let busy = h.spawn_call("busy");
    while h.manager.live_count() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Waits until the busy call is done, then evicts its sandbox.
    h.served_by("other").await;
    assert!(busy.await.unwrap().is_ok());
    h.settle().await;
    let r = h.fake.record();
    assert_eq!((r.started, r.destroyed), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_memory_budget_idle_sandboxes_go_then_shared_memory() {
    let h = harness(|c| c.memory_budget_mb = 50);
    h.fake.record().memory_per_sandbox = 20 << 20;
    for name in ["a", "b", "c"] {
        h.add(name, "echo");
    }
    let a = h.served_by("a").await;
    h.served_by("b").await;
    assert!(!h.manager.enforce_memory_budget(), "40 MiB fit in 50");
    // The third cold start measures (near the budget) but 40 MiB still fit: 60 MiB after it.
    h.served_by("c").await;
    assert_eq!(h.manager.memory_in_use(), 60 << 20);
    assert!(h.manager.enforce_memory_budget(), "60 MiB: the LRU goes");
    h.settle().await;
    assert!(!h.fake.record().alive.contains(&a));
    assert!(!h.manager.enforce_memory_budget());
    assert_eq!(h.manager.cache_stats().evictions, 1);
    // Nothing idle to evict: the shared part gives memory back.
    let h = harness(|c| c.memory_budget_mb = 50);
    h.fake.record().shared_memory = 80 << 20;
    assert!(h.manager.enforce_memory_budget());
    assert_eq!(h.fake.record().reclaims, 1);
    assert!(!h.manager.enforce_memory_budget());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_over_the_budget_evicts_before_it_starts() {
    let h = harness(|c| c.memory_budget_mb = 50);
    h.fake.record().memory_per_sandbox = 30 << 20;
    for name in ["a", "b", "c"] {
        h.add(name, "echo");
    }
    let a = h.served_by("a").await;
    let b = h.served_by("b").await;
    // 60 MiB in use (no reaper measured it): c's cold start measures, since the limits of the
    // sandboxes started since the last measurement could exceed 90% of the budget, and evicts
    // a, waiting for it to be gone, before it starts.
    let c = h.served_by("c").await;
    {
        let r = h.fake.record();
        assert_eq!(r.alive.iter().copied().collect::<Vec<_>>(), vec![b, c]);
        assert!(!r.alive.contains(&a));
        drop(r);
    }

    assert_eq!(h.manager.cache_stats().evictions, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sandboxes_are_paused_then_thawed_by_the_next_call() {
    let h = harness(|c| c.pause_after_ms = 1000);
    h.add("hello", "echo");
    let id = h.served_by("hello").await;
    assert_eq!(
        h.manager.pause_idle(Instant::now()),
        0,
        "not idle long enough"
    );
    let later = Instant::now() + Duration::from_secs(2);
    assert_eq!(h.manager.pause_idle(later), 1);
    assert_eq!(h.manager.pause_idle(later), 0, "already paused");
    assert!(h.fake.record().paused.contains(&id));
    assert_eq!(h.manager.live()[0].state, SandboxState::Paused);
    assert_eq!((h.stats("hello").idle, h.stats("hello").paused), (1, 1));
    assert_eq!(h.served_by("hello").await, id, "thawed, not replaced");
    {
        let r = h.fake.record();
        assert!(r.paused.is_empty());
        assert_eq!((r.pauses, r.unpauses), (1, 1));
        drop(r);
    }

    let c = h.manager.cache_stats();
    assert_eq!((c.pauses, c.unpauses, c.hits), (1, 1, 1));
    assert_eq!(h.manager.live()[0].state, SandboxState::Idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_that_cannot_be_paused_is_destroyed() {
    let h = harness(|_| {});
    h.add("hello", "echo");
    let id = h.served_by("hello").await;
    h.fake.record().fail_pause = true;
    assert_eq!(
        h.manager
            .pause_idle(Instant::now() + Duration::from_secs(5)),
        0
    );
    h.settle().await;
    assert!(!h.fake.record().alive.contains(&id));
    assert_ne!(h.served_by("hello").await, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sandboxes_are_reaped_after_idle_timeout() {
    let h = harness(|c| c.idle_timeout_s = 300);
    h.add("hello", "echo");
    h.served_by("hello").await;
    assert_eq!(h.manager.reap_idle(Instant::now()), 0);
    assert_eq!(
        h.manager
            .reap_idle(Instant::now() + Duration::from_secs(301)),
        1
    );
    h.settle().await;
    assert_eq!(h.manager.live_count(), 0);
    assert_eq!(h.fake.record().destroyed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_timeout_destroys_its_sandbox() {
    let h = harness(|_| {});
    h.add("stuck", "hang");
    h.add_file("stuck", "lambda.json", r#"{"timeout_s": 1}"#);
    let err = h.call("stuck").await.unwrap_err();
    assert!(
        matches!(err, RunError::Timeout { timeout_s: 1, .. }),
        "{err}"
    );
    h.settle().await;
    assert_eq!(h.fake.record().destroyed, 1);
    assert_eq!(h.manager.live_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_that_dies_or_runs_out_of_memory_is_said_so_and_destroyed() {
    let h = harness(|_| {});
    h.add("dies", "die");
    h.add("oom", "oom");
    h.add_file("oom", "lambda.json", r#"{"memory_mb": 128}"#);
    let err = h.call("dies").await.unwrap_err();
    match &err {
        RunError::SandboxFailed { stderr, .. } => {
            // The end of its output, read from its pipe.
            assert!(stderr.contains("Traceback: fake crash"), "{err}");
        }
        other => panic!("{other}"),
    }
    assert!(
        err.to_string()
            .contains("the sandbox closed the connection"),
        "{err}"
    );
    let err = h.call("oom").await.unwrap_err();
    assert!(
        matches!(err, RunError::OutOfMemory { memory_mb: 128, .. }),
        "{err}"
    );
    h.settle().await;
    assert_eq!(h.fake.record().destroyed, 2);
    assert_eq!(h.stats("dies").errors, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_raised_keeps_its_sandbox() {
    let h = harness(|_| {});
    h.add("raises", "raise");
    for _ in 0..2 {
        let err = h.call("raises").await.unwrap_err();
        match err {
            RunError::HandlerRaised { kind, message, .. } => {
                assert_eq!((kind.as_str(), message.as_str()), ("ValueError", "boom"));
            }
            other => panic!("{other}"),
        }
    }
    let s = h.stats("raises");
    assert_eq!((s.cold_starts, s.warm_starts, s.errors), (1, 1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_gives_its_capacity_back() {
    let h = harness(|c| c.handler_cache_size = 1);
    h.add("hello", "echo");
    h.fake.record().fail_next_start = true;
    let err = h.call("hello").await.unwrap_err();
    assert!(matches!(err, RunError::StartFailed { .. }), "{err}");
    assert!(
        err.to_string().contains("the fake was told to fail"),
        "{err}"
    );
    // The one permit is free again.
    h.served_by("hello").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_lambdas_and_bad_configs_are_refused_with_what_is_wrong() {
    let h = harness(|_| {});
    let err = h.call("nope").await.unwrap_err();
    assert!(
        matches!(err, RunError::Registry(RegistryError::Unknown { .. })),
        "{err}"
    );
    assert_eq!(
        h.manager.pool_count(),
        0,
        "no pool for a lambda that does not exist"
    );
    h.add("bad", "echo");
    h.add_file("bad", "lambda.json", r#"{"memroy_mb": 256}"#);
    let err = h.call("bad").await.unwrap_err();
    match &err {
        RunError::LambdaConfig { source, .. } => {
            assert_eq!(source.key.as_deref(), Some("memroy_mb"));
        }
        other => panic!("{other}"),
    }
    assert_eq!(h.stats("bad").errors, 1);
    assert_eq!(h.fake.record().started, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_carries_its_request_id_and_deadline_to_the_sandbox() {
    let h = harness(|_| {});
    h.add("hello", "echo");
    h.add_file("hello", "lambda.json", r#"{"timeout_s": 7}"#);
    let (a, b) = (RequestId::new(), RequestId::new());
    let first = h.call_with("hello", &a).await.unwrap();
    let second = h.call_with("hello", &b).await.unwrap();
    assert_eq!(first["sandbox"], second["sandbox"], "the same warm sandbox");
    assert_eq!(first["request_id"], a.to_string());
    assert_eq!(second["request_id"], b.to_string());
    for answer in [&first, &second] {
        let left = answer["remaining_ms"].as_u64().unwrap();
        assert!(left > 6000 && left <= 7000, "timeout_s is 7: {answer}");
    }
    assert_eq!(first["event"], serde_json::json!({"n": 1}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_entry_and_layers_are_resolved_once_per_version() {
    let h = harness(|_| {});
    h.add("aws", "echo");
    h.add_file(
        "aws",
        "lambda.json",
        r#"{"entry": "lambda_func.run", "layers": ["common"]}"#,
    );
    // No such layer: 400 naming the key, every call until it exists.
    for _ in 0..2 {
        match h.call("aws").await.unwrap_err() {
            RunError::LambdaConfig { source, .. } => {
                assert_eq!(source.key.as_deref(), Some("layers"));
                assert!(
                    source.message.contains("layer common does not exist"),
                    "{source}"
                );
            }
            other => panic!("{other}"),
        }
    }
    assert_eq!(h.fake.record().started, 0);
    let layers = h.tmp.path().join("registry/.store/layers/common");
    std::fs::create_dir_all(layers.join("1/python")).unwrap();
    let answer = h.call("aws").await.unwrap();
    assert_eq!(answer["entry"], "lambda_func.run");
    assert_eq!(
        answer["layers"],
        serde_json::json!(["common:1 /opt/common/python"])
    );
    // A newer version of the layer does not change this version of the function.
    std::fs::create_dir_all(layers.join("2")).unwrap();
    let again = h.call("aws").await.unwrap();
    assert_eq!(
        (&again["sandbox"], &again["layers"]),
        (&answer["sandbox"], &answer["layers"])
    );
    // Its next version gets the newest layer, in a new sandbox.
    h.add_file(
        "aws",
        "lambda.json",
        r#"{"entry": "lambda_func.run", "layers": ["common"], "timeout_s": 9}"#,
    );
    let next = h.call("aws").await.unwrap();
    assert_ne!(next["sandbox"], answer["sandbox"]);
    assert_eq!(next["layers"], serde_json::json!(["common:2 /opt/common"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_are_made_ready_only_for_lambdas_that_need_them() {
    let h = harness(|_| {});
    h.add("plain", "echo");
    h.add("numpy", "echo");
    h.add_file("numpy", "requirements.txt", "numpy==2.2.6\n");
    h.served_by("plain").await;
    assert_eq!(h.fake.record().package_installs, 0);
    h.served_by("numpy").await;
    assert_eq!(h.fake.record().package_installs, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installing_ahead_makes_packages_ready_without_counting_a_call() {
    let h = harness(|_| {});
    h.add("plain", "echo");
    h.add("numpy", "echo");
    h.add_file("numpy", "requirements.txt", "numpy==2.2.6\n");
    let name = |n: &str| LambdaName::parse(n).unwrap();
    let plain = h.manager.install_packages(&name("plain")).await.unwrap();
    assert!(!plain.has_requirements && plain.packages.is_empty());
    assert_eq!(h.fake.record().package_installs, 0);
    let numpy = h.manager.install_packages(&name("numpy")).await.unwrap();
    assert!(numpy.has_requirements);
    assert_eq!(h.fake.record().package_installs, 1);
    assert!(h.manager.lambda_stats().is_empty(), "no call was counted");
    assert!(matches!(
        h.manager.install_packages(&name("nope")).await,
        Err(RunError::Registry(RegistryError::Unknown { .. }))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_sandbox_gets_its_after_first_call_work_once() {
    let h = harness(|_| {});
    h.fake.record().forked = true;
    h.add("hello", "echo");
    h.served_by("hello").await;
    h.served_by("hello").await;
    for _ in 0..200 {
        if h.fake.record().first_call_jobs > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(h.fake.record().first_call_jobs, 1);
    assert_eq!(h.stats("hello").zygote_starts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_lambdas_keep_the_manager_bounded() {
    let h = harness(|c| c.handler_cache_size = 4);
    let n = 10_000;
    for i in 0..n {
        h.add(&format!("l{i}"), "echo");
    }
    let bound = pool::max_pools(4);
    let mut rss_after_first_thousands = 0;
    for i in 0..n {
        h.served_by(&format!("l{i}")).await;
        assert!(h.manager.pool_count() <= bound, "pools unbounded at {i}");
        assert!(h.manager.live_count() <= 4);
        if i == 3000 {
            rss_after_first_thousands = rss_kib();
        }
    }
    h.settle().await;
    {
        let r = h.fake.record();
        assert!(r.alive.len() <= 4);
        assert_eq!(r.started - r.destroyed, r.alive.len() as u64);
        drop(r);
    }

    let grown = rss_kib().saturating_sub(rss_after_first_thousands);
    eprintln!(
        "10 000 lambdas: {} pools kept (bound {bound}), RSS grew {grown} KiB over the last 7 000",
        h.manager.pool_count()
    );
    // The most recent lambdas keep their counters; the oldest were forgotten.
    assert!(h.manager.lambda_stats().contains_key("l9999"));
    assert!(!h.manager.lambda_stats().contains_key("l0"));
}

/// This process's resident memory, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_calls_destroys_idle_and_ends_calls_past_the_deadline() {
    let h = harness(|_| {});
    h.add("idle", "echo");
    h.add("stuck", "hang");
    h.add_file("stuck", "lambda.json", r#"{"timeout_s": 30}"#);
    h.served_by("idle").await;
    let stuck = h.spawn_call("stuck");
    while h.manager.live_count() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h.manager.shutdown(Duration::from_millis(200)).await;
    {
        let r = h.fake.record();
        assert!(r.closed);
        assert_eq!(r.destroyed, 1, "the idle one");
        assert_eq!(r.kills.len(), 1, "the stuck call's sandbox is killed");
    }
    assert!(matches!(
        h.call("idle").await.unwrap_err(),
        RunError::Unavailable {
            reason: Unavailable::ShuttingDown
        }
    ));
    stuck.abort();
}
