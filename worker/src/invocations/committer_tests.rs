use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::invocations::record::{ErrorInfo, QueueLimits, Status};
use crate::name::LambdaName;

fn limits() -> QueueLimits {
    QueueLimits {
        max_events: 100_000,
        max_payload_bytes: 256 * 1024,
        max_bytes: 1 << 30,
        retention: Duration::from_secs(3600),
        max_records: 100_000,
        retry_delay: Duration::from_secs(60),
    }
}

fn ev(function: &str, i: usize) -> NewEvent {
    NewEvent {
        function: LambdaName::parse(function).unwrap(),
        payload: format!("{{\"i\":{i}}}").into_bytes(),
        request_id: format!("req-{i}"),
        id: None,
        source: None,
    }
}

fn start(dir: &std::path::Path) -> Arc<Committer> {
    let (queue, _) = Queue::open(dir, limits()).unwrap();
    Arc::new(Committer::start(Arc::new(queue)).unwrap())
}

fn aws(_: &str) -> RetryPolicy {
    RetryPolicy::aws_default(Duration::from_secs(60))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueues_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path());
    let before = c.queue().commits();
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let c = Arc::clone(&c);
            tokio::spawn(async move { c.enqueue(ev("f", i)).await })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap().unwrap().unwrap().id);
    }
    let commits = c.queue().commits() - before;
    println!("1000 concurrent enqueues: {commits} durable commits");
    assert!(commits <= 100, "{commits} commits for 1000 events");
    let q = Arc::clone(c.queue());
    tokio::task::spawn_blocking(move || {
        assert_eq!(q.counts().unwrap().queued, 1000);
        for id in &ids {
            assert_eq!(q.get(id).unwrap().unwrap().status, Status::Queued);
        }
    })
    .await
    .unwrap();
    c.shutdown().await;
}

#[tokio::test]
async fn claim_finish_and_sweep_go_through_the_thread() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path());
    let a = c.enqueue(ev("a", 1)).await.unwrap().unwrap();
    c.enqueue(ev("b", 2)).await.unwrap().unwrap();
    let now = crate::invocations::now_ms();
    let claimed = c.claim(now, 10, |f| f == "b", aws).await.unwrap();
    assert_eq!(claimed.run.len(), 1);
    assert_eq!(claimed.run[0].id, a.id);
    // A request's own error answers it alone; the other requests of its group commit.
    let unknown = InvocationId::new();
    let (lost, kept) = tokio::join!(
        c.finish(unknown.clone(), Outcome::Expired, Vec::new()),
        c.enqueue(ev("c", 3)),
    );
    assert!(matches!(lost, Err(QueueError::NotFound { id, .. }) if id == unknown));
    let kept = kept.unwrap().unwrap();
    let destination = NewEvent {
        source: Some(a.id.clone()),
        ..ev("dest", 4)
    };
    let outcome = Outcome::NotFound {
        error: ErrorInfo::new("ResourceNotFoundException", "gone"),
    };
    let done = c
        .finish(a.id.clone(), outcome, vec![destination])
        .await
        .unwrap();
    assert_eq!(done.invocation.status, Status::Failed);
    assert_eq!(done.also[0].as_ref().unwrap().source, Some(a.id.clone()));
    assert_eq!(c.sweep().await.unwrap(), 0);
    let q = Arc::clone(c.queue());
    let counts = tokio::task::spawn_blocking(move || q.counts().unwrap())
        .await
        .unwrap();
    assert_eq!((counts.queued, counts.failed), (3, 1));
    assert_eq!(
        c.queue().get(&kept.id).unwrap().unwrap().status,
        Status::Queued
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_what_was_submitted_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path());
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let c = Arc::clone(&c);
            tokio::spawn(async move { c.enqueue(ev("f", i)).await })
        })
        .collect();
    tokio::task::yield_now().await;
    c.shutdown().await;
    let mut acknowledged = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(answer) => {
                answer.unwrap();
                acknowledged += 1;
            }
            Err(QueueError::Stopped { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    let err = c.enqueue(ev("f", 0)).await.unwrap_err();
    assert!(matches!(err, QueueError::Stopped { .. }), "{err}");
    assert!(err.to_string().contains("queue.redb"), "{err}");
    // Every acknowledged event is in the store, and no other.
    drop(c);
    let (q, _) = Queue::open(dir.path(), limits()).unwrap();
    assert_eq!(q.counts().unwrap().queued, acknowledged);
}

/// Enqueue throughput through the committer, with 1 and 16 producers (printed, not asserted).
/// `cargo test -p worker --lib committer_throughput -- --ignored --nocapture`
#[test]
#[ignore = "a measurement: prints enqueue throughput"]
fn committer_throughput() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for (producers, per_producer) in [(1, 500), (16, 250)] {
        let dir = tempfile::tempdir().unwrap();
        let c = start(dir.path());
        let before = c.queue().commits();
        let started = Instant::now();
        rt.block_on(async {
            let tasks: Vec<_> = (0..producers)
                .map(|p| {
                    let c = Arc::clone(&c);
                    tokio::spawn(async move {
                        for i in 0..per_producer {
                            c.enqueue(ev("f", p * per_producer + i))
                                .await
                                .unwrap()
                                .unwrap();
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        });
        let elapsed = started.elapsed();
        let events = producers * per_producer;
        let commits = c.queue().commits() - before;
        println!(
            "{producers:>2} producer(s): {events} events in {:.2} s = {:.0} events/s, {commits} commits ({:.1} events per commit), {:.2} ms per commit",
            elapsed.as_secs_f64(),
            events as f64 / elapsed.as_secs_f64(),
            events as f64 / commits as f64,
            elapsed.as_secs_f64() * 1000.0 / commits as f64,
        );
        rt.block_on(c.shutdown());
    }
}
