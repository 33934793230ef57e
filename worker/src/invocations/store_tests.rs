use std::path::Path;
use std::time::Duration;

use redb::ReadableTableMetadata;

use super::*;
use crate::invocations::policy::{self, Next, RetryPolicy};
use crate::invocations::record::{Condition, ErrorInfo};
use crate::name::LambdaName;

pub(super) const T0: u64 = 1_700_000_000_000;

pub(super) fn limits() -> QueueLimits {
    QueueLimits {
        max_events: 100,
        max_payload_bytes: 1024,
        max_bytes: 1024 * 1024,
        retention: Duration::from_secs(3600),
        max_records: 100,
        retry_delay: Duration::from_secs(60),
    }
}

pub(super) fn open(dir: &Path, limits: QueueLimits) -> (Queue, Recovered) {
    let (q, r) = Queue::open(dir, limits).unwrap();
    check(&q);
    (q, r)
}

pub(super) fn ev(function: &str, payload: &str) -> NewEvent {
    NewEvent {
        function: LambdaName::parse(function).unwrap(),
        payload: payload.as_bytes().to_vec(),
        request_id: format!("req-{payload}"),
        id: None,
        source: None,
    }
}

pub(super) fn enqueue(q: &Queue, event: NewEvent, now: u64) -> Invocation {
    let mut out = q.enqueue(vec![event], now).unwrap();
    let inv = out.pop().unwrap().unwrap();
    check(q);
    inv
}

pub(super) fn never(_: &str) -> bool {
    false
}

pub(super) fn aws(_: &str) -> RetryPolicy {
    RetryPolicy::aws_default(Duration::from_secs(60))
}

pub(super) fn claim(q: &Queue, now: u64, max: usize) -> Vec<Invocation> {
    let c = q.claim(now, max, never, aws).unwrap();
    assert!(c.expired.is_empty(), "{:?}", c.expired);
    check(q);
    c.run
}

pub(super) fn finish(q: &Queue, id: &InvocationId, outcome: Outcome, now: u64) -> Invocation {
    let f = q.finish(id, outcome, Vec::new(), now).unwrap();
    check(q);
    f.invocation
}

pub(super) fn payloads(invs: &[Invocation]) -> Vec<String> {
    invs.iter()
        .map(|i| String::from_utf8(i.payload.clone()).unwrap())
        .collect()
}

pub(super) fn boom() -> ErrorInfo {
    ErrorInfo::new("Unhandled", "boom")
}

/// Checks the counters and every index against a scan of the records.
pub(super) fn check(q: &Queue) {
    let p = q.path();
    let txn = q.db.begin_read().unwrap();
    let records = txn.open_table(RECORDS).unwrap();
    let payloads = txn.open_table(PAYLOADS).unwrap();
    let results = txn.open_table(RESULTS).unwrap();
    let ids = txn.open_table(IDS).unwrap();
    let ready = txn.open_table(READY).unwrap();
    let running = txn.open_table(RUNNING).unwrap();
    let finished = txn.open_table(FINISHED).unwrap();
    let by_function = txn.open_table(BY_FUNCTION).unwrap();
    let functions = txn.open_table(FUNCTIONS).unwrap();
    let mut want = Counts::default();
    let mut queued_per_fn = std::collections::BTreeMap::<String, u64>::new();
    for entry in records.iter().unwrap() {
        let seq = entry.unwrap().0.value();
        let inv = load(&records, seq, p).unwrap();
        assert_eq!(inv.seq, seq);
        assert_eq!(ids.get(inv.id.as_str()).unwrap().unwrap().value(), seq);
        assert!(by_function
            .get((inv.function.as_str(), seq))
            .unwrap()
            .is_some());
        let payload = payloads.get(seq).unwrap().unwrap().value().len();
        assert_eq!(payload, inv.payload_bytes);
        let result = results.get(seq).unwrap().map_or(0, |r| r.value().len());
        want.bytes += (payload + result) as u64;
        match inv.status {
            Status::Queued => {
                want.queued += 1;
                *queued_per_fn.entry(inv.function.clone()).or_default() += 1;
                let key = (inv.function.as_str(), inv.not_before_ms, seq);
                assert!(ready.get(key).unwrap().is_some(), "{inv:?}");
            }
            Status::Running => {
                want.running += 1;
                assert!(running.get(seq).unwrap().is_some());
            }
            Status::Succeeded | Status::Failed => {
                if inv.status == Status::Succeeded {
                    want.succeeded += 1;
                } else {
                    want.failed += 1;
                }
                let key = (inv.finished_ms.unwrap(), seq);
                assert!(finished.get(key).unwrap().is_some());
            }
        }
    }
    assert_eq!(q.counts().unwrap(), want);
    assert_eq!(ready.len().unwrap(), want.queued);
    assert_eq!(running.len().unwrap(), want.running);
    assert_eq!(finished.len().unwrap(), want.finished());
    assert_eq!(ids.len().unwrap(), records.len().unwrap());
    assert_eq!(by_function.len().unwrap(), records.len().unwrap());
    assert_eq!(payloads.len().unwrap(), records.len().unwrap());
    let mut fns = std::collections::BTreeMap::new();
    for entry in functions.iter().unwrap() {
        let (f, n) = entry.unwrap();
        fns.insert(f.value().to_owned(), n.value());
    }
    assert_eq!(fns, queued_per_fn);
}

#[test]
fn claims_are_fifo_by_not_before_then_seq_across_functions() {
    let dir = tempfile::tempdir().unwrap();
    let (q, r) = open(dir.path(), limits());
    assert_eq!(r, Recovered::default());
    enqueue(&q, ev("b", "1"), T0 + 2);
    enqueue(&q, ev("a", "2"), T0 + 1);
    enqueue(&q, ev("b", "3"), T0 + 1);
    enqueue(&q, ev("a", "4"), T0 + 3);
    enqueue(&q, ev("c", "5"), T0 + 3);
    let first = claim(&q, T0 + 10, 3);
    assert_eq!(payloads(&first), ["2", "3", "1"]);
    for inv in &first {
        assert_eq!(inv.status, Status::Running);
        assert_eq!((inv.attempts, inv.started_ms), (1, Some(T0 + 10)));
        assert_eq!(q.get(&inv.id).unwrap().unwrap(), *inv);
    }
    assert_eq!(payloads(&claim(&q, T0 + 10, 10)), ["4", "5"]);
    assert!(claim(&q, T0 + 10, 10).is_empty());
    assert!(claim(&q, T0 + 10, 0).is_empty());
    let c = q.counts().unwrap();
    assert_eq!((c.queued, c.running), (0, 5));
}

#[test]
fn not_before_and_skip_are_respected() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _) = open(dir.path(), limits());
    assert_eq!(q.next_ready_ms().unwrap(), None);
    let a = enqueue(&q, ev("a", "a1"), T0);
    enqueue(&q, ev("b", "b1"), T0 + 5);
    assert_eq!(q.next_ready_ms().unwrap(), Some(T0));
    assert!(claim(&q, T0 - 1, 10).is_empty(), "nothing ready before T0");
    let run = q.claim(T0 + 10, 10, |f| f == "a", aws).unwrap().run;
    assert_eq!(payloads(&run), ["b1"]);
    assert_eq!(q.next_ready_ms().unwrap(), Some(T0));
    let run = claim(&q, T0 + 10, 10);
    assert_eq!(payloads(&run), ["a1"]);
    let next = Next::Retry { at_ms: T0 + 1000 };
    let inv = finish(
        &q,
        &a.id,
        Outcome::Failed {
            error: boom(),
            next,
        },
        T0 + 20,
    );
    assert_eq!((inv.status, inv.not_before_ms), (Status::Queued, T0 + 1000));
    assert_eq!(q.next_ready_ms().unwrap(), Some(T0 + 1000));
    assert!(claim(&q, T0 + 999, 10).is_empty());
    let run = claim(&q, T0 + 1000, 10);
    assert_eq!(payloads(&run), ["a1"]);
    assert_eq!((run[0].attempts, run[0].failures), (2, 1));
    assert_eq!(run[0].error, Some(boom()));
    assert_eq!(q.next_ready_ms().unwrap(), None);
}

#[test]
fn reopening_requeues_running_events_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    // Reopening takes the real clock: the events must be younger than their maximum age then.
    let t0 = super::super::now_ms() - 1000;
    let (before, running) = {
        let (q, _) = open(dir.path(), limits());
        for i in 0..5 {
            enqueue(&q, ev("f", &i.to_string()), t0 + i);
        }
        let running = claim(&q, t0 + 10, 2);
        let done = &claim(&q, t0 + 10, 1)[0];
        let outcome = Outcome::Succeeded {
            result: b"{\"ok\":1}".to_vec(),
        };
        finish(&q, &done.id, outcome, t0 + 20);
        let (all, _) = q.list(&ListFilter::default()).unwrap();
        let before: Vec<Invocation> = all.iter().map(|i| q.get(&i.id).unwrap().unwrap()).collect();
        (before, running)
    };
    let (q, r) = open(dir.path(), limits());
    assert_eq!(
        r,
        Recovered {
            queued: 4,
            requeued: 2,
            finished: 1,
            compacted: false
        }
    );
    for old in &before {
        let now = q.get(&old.id).unwrap().unwrap();
        if running.iter().any(|r| r.id == old.id) {
            assert_eq!(now.status, Status::Queued);
            // The interrupted attempt is given back: neither charged nor a failure.
            assert_eq!((now.attempts, now.failures), (0, 0));
            assert!(now.not_before_ms >= t0 + 1000);
            assert_eq!(
                Invocation {
                    status: Status::Running,
                    not_before_ms: old.not_before_ms,
                    attempts: 1,
                    ..now
                },
                *old
            );
        } else {
            assert_eq!(now, *old);
        }
    }
    // The requeued events are ready from the reopening on, after those that were queued.
    let run = claim(&q, super::super::now_ms(), 10);
    assert_eq!(payloads(&run), ["3", "4", "0", "1"]);
}

#[test]
fn a_caller_given_id_is_enqueued_once() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _) = open(dir.path(), limits());
    let id = InvocationId::new();
    let with_id = |payload: &str| NewEvent {
        id: Some(id.clone()),
        ..ev("f", payload)
    };
    let first = enqueue(&q, with_id("one"), T0);
    assert_eq!(first.id, id);
    let again = q.enqueue(vec![with_id("two"), with_id("three")], T0 + 1);
    for answer in again.unwrap() {
        assert_eq!(answer, Err(Rejected::Exists(Box::new(first.clone()))));
    }
    // The same id twice in one batch: the second answers the first.
    let other = InvocationId::new();
    let twice = vec![
        NewEvent {
            id: Some(other.clone()),
            ..ev("f", "x")
        },
        NewEvent {
            id: Some(other.clone()),
            ..ev("f", "y")
        },
    ];
    let out = q.enqueue(twice, T0 + 2).unwrap();
    let made = out[0].clone().unwrap();
    assert_eq!(out[1], Err(Rejected::Exists(Box::new(made))));
    assert_eq!(q.counts().unwrap().queued, 2);
    check(&q);
    // A finished record still answers its id.
    claim(&q, T0 + 5, 1);
    let done = finish(&q, &id, Outcome::NotFound { error: boom() }, T0 + 6);
    let out = q.enqueue(vec![with_id("four")], T0 + 7).unwrap();
    assert_eq!(out, [Err(Rejected::Exists(Box::new(done)))]);
}

#[test]
fn every_rejection() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _) = open(
        dir.path(),
        QueueLimits {
            max_events: 3,
            max_payload_bytes: 400,
            max_bytes: 1000,
            ..limits()
        },
    );
    let big = "x".repeat(401);
    let out = q.enqueue(vec![ev("f", &big)], T0).unwrap();
    assert_eq!(
        out,
        [Err(Rejected::TooLarge {
            bytes: 401,
            max: 400
        })]
    );
    let fill = "x".repeat(400);
    let a = enqueue(&q, ev("f", &fill), T0);
    enqueue(&q, ev("f", &fill), T0);
    // 800 of 1000 bytes: 201 more do not fit.
    let out = q.enqueue(vec![ev("f", &"y".repeat(201))], T0).unwrap();
    assert_eq!(out, [Err(Rejected::StoreFull { max_bytes: 1000 })]);
    enqueue(&q, ev("f", "z"), T0);
    let out = q.enqueue(vec![ev("f", "w")], T0).unwrap();
    assert_eq!(out, [Err(Rejected::QueueFull { max: 3 })]);
    assert_eq!(q.counts().unwrap().queued, 3);
    // A finished record is no longer counted against async_queue_max, and its bytes are given up
    // for a new event rather than the event refused.
    claim(&q, T0, 1);
    finish(&q, &a.id, Outcome::NotFound { error: boom() }, T0 + 1);
    let b = enqueue(&q, ev("f", &"y".repeat(300)), T0 + 2);
    assert!(q.get(&a.id).unwrap().is_none(), "the dead letter made room");
    assert_eq!(q.counts().unwrap().bytes, 400 + 1 + 300);
    assert_eq!(
        q.get(&b.id).unwrap().unwrap().payload,
        "y".repeat(300).as_bytes()
    );
    for r in [
        Rejected::QueueFull { max: 3 },
        Rejected::StoreFull { max_bytes: 1000 },
    ] {
        assert!(!r.to_string().is_empty());
    }
}

#[test]
fn every_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _) = open(dir.path(), limits());
    let ids: Vec<InvocationId> = (0..6)
        .map(|i| enqueue(&q, ev("f", &i.to_string()), T0).id)
        .collect();
    assert_eq!(claim(&q, T0 + 1, 10).len(), 6);

    let ok = finish(
        &q,
        &ids[0],
        Outcome::Succeeded {
            result: b"[1,2]".to_vec(),
        },
        T0 + 2,
    );
    assert_eq!(ok.status, Status::Succeeded);
    assert_eq!(
        (ok.finished_ms, ok.result.as_deref()),
        (Some(T0 + 2), Some(&b"[1,2]"[..]))
    );
    assert_eq!((ok.attempts, ok.failures, ok.condition), (1, 0, None));

    let dead = Next::DeadLetter(Condition::RetriesExhausted);
    let failed = finish(
        &q,
        &ids[1],
        Outcome::Failed {
            error: boom(),
            next: dead,
        },
        T0 + 3,
    );
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(failed.condition, Some(Condition::RetriesExhausted));
    assert_eq!((failed.failures, failed.error), (1, Some(boom())));

    let busy = ErrorInfo::new("TooManyRequestsException", "busy");
    let retry = Next::Retry { at_ms: T0 + 100 };
    let throttled = finish(
        &q,
        &ids[2],
        Outcome::Throttled {
            error: busy.clone(),
            next: retry,
        },
        T0 + 4,
    );
    assert_eq!(throttled.status, Status::Queued);
    assert_eq!(
        (throttled.attempts, throttled.failures, throttled.throttles),
        (0, 0, 1)
    );
    assert_eq!(
        (throttled.not_before_ms, throttled.error.as_ref()),
        (T0 + 100, None)
    );

    let too_old = Next::DeadLetter(Condition::EventAgeExceeded);
    let gave_up = finish(
        &q,
        &ids[3],
        Outcome::Throttled {
            error: busy.clone(),
            next: too_old,
        },
        T0 + 5,
    );
    assert_eq!(gave_up.status, Status::Failed);
    assert_eq!(gave_up.condition, Some(Condition::EventAgeExceeded));
    assert_eq!((gave_up.attempts, gave_up.failures), (0, 0));
    assert_eq!(gave_up.error, Some(busy));

    let gone = finish(&q, &ids[4], Outcome::NotFound { error: boom() }, T0 + 6);
    assert_eq!(gone.condition, Some(Condition::FunctionNotFound));
    assert_eq!((gone.status, gone.failures), (Status::Failed, 1));

    let expired = finish(&q, &ids[5], Outcome::Expired, T0 + 7);
    assert_eq!(expired.condition, Some(Condition::EventAgeExceeded));
    assert_eq!(
        (expired.status, expired.failures, expired.error),
        (Status::Failed, 0, None)
    );

    // Only a running record can be finished; the error names the id and the file.
    let err = q
        .finish(&ids[0], Outcome::Expired, Vec::new(), T0 + 8)
        .unwrap_err();
    assert!(
        matches!(
            err,
            QueueError::NotRunning {
                status: Status::Succeeded,
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(ids[0].as_str()) && msg.contains("queue.redb"),
        "{msg}"
    );
    let unknown = InvocationId::new();
    let err = q
        .finish(&unknown, Outcome::Expired, Vec::new(), T0 + 8)
        .unwrap_err();
    assert!(matches!(err, QueueError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains(unknown.as_str()), "{err}");
    let c = q.counts().unwrap();
    assert_eq!((c.queued, c.running, c.succeeded, c.failed), (1, 0, 1, 4));
}

#[test]
fn a_destination_is_queued_in_the_finishing_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _) = open(dir.path(), limits());
    let inv = enqueue(&q, ev("f", "event"), T0);
    claim(&q, T0, 1);
    let commits = q.commits();
    let destination = NewEvent {
        source: Some(inv.id.clone()),
        ..ev("dest", "{\"requestContext\":{}}")
    };
    let too_big = ev("dest", &"x".repeat(2000));
    let done = q
        .finish(
            &inv.id,
            Outcome::Succeeded {
                result: b"1".to_vec(),
            },
            vec![destination, too_big],
            T0 + 1,
        )
        .unwrap();
    assert_eq!(q.commits(), commits + 1, "one durable commit for both");
    assert_eq!(done.invocation.status, Status::Succeeded);
    let queued = done.also[0].clone().unwrap();
    assert_eq!(queued.source, Some(inv.id.clone()));
    assert_eq!(q.get(&queued.id).unwrap().unwrap(), queued);
    assert!(matches!(done.also[1], Err(Rejected::TooLarge { .. })));
    check(&q);
    // A finish that fails writes no destination either.
    let again = q.finish(&inv.id, Outcome::Expired, vec![ev("dest", "no")], T0 + 2);
    assert!(again.is_err());
    assert_eq!(q.counts().unwrap().queued, 1);
    check(&q);
}

/// Drives always-failing events through the policy and the store, as the dispatcher will.
fn attempts_until_dead(retries: u32) -> Invocation {
    let dir = tempfile::tempdir().unwrap();
    let (q, _) = open(dir.path(), limits());
    let p = RetryPolicy::new(
        retries,
        Duration::from_secs(6 * 3600),
        Duration::from_secs(60),
    )
    .unwrap();
    let inv = enqueue(&q, ev("f", "e"), T0);
    let mut now = T0;
    for _ in 0..10 {
        let Some(wake) = q.next_ready_ms().unwrap() else {
            break;
        };
        now = now.max(wake);
        let run = q.claim(now, 10, never, move |_| p).unwrap().run;
        assert_eq!(run.len(), 1);
        let next = policy::after_failure(&run[0], &p, now);
        finish(
            &q,
            &inv.id,
            Outcome::Failed {
                error: boom(),
                next,
            },
            now,
        );
    }
    q.get(&inv.id).unwrap().unwrap()
}

#[test]
fn retries_end_after_exactly_retry_attempts_plus_one_attempts() {
    for retries in 0..=2 {
        let dead = attempts_until_dead(retries);
        assert_eq!(dead.status, Status::Failed);
        assert_eq!(dead.condition, Some(Condition::RetriesExhausted));
        assert_eq!((dead.attempts, dead.failures), (retries + 1, retries + 1));
    }
    // One and then two minutes apart.
    let dead = attempts_until_dead(2);
    assert_eq!(dead.finished_ms, Some(T0 + 3 * 60_000));
}

#[test]
fn expired_events_are_returned_apart_and_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _) = open(dir.path(), limits());
    let short = RetryPolicy::new(2, Duration::from_secs(60), Duration::from_secs(1)).unwrap();
    let old = enqueue(&q, ev("short", "old"), T0);
    let young = enqueue(&q, ev("short", "young"), T0 + 30_000);
    let other = enqueue(&q, ev("long", "other"), T0);
    let policy_of = move |f: &str| if f == "short" { short } else { aws(f) };
    let c = q.claim(T0 + 60_001, 10, never, policy_of).unwrap();
    check(&q);
    assert_eq!(payloads(&c.expired), ["old"]);
    assert_eq!(payloads(&c.run), ["other", "young"]);
    let e = &c.expired[0];
    assert_eq!(
        (e.status, e.attempts, e.started_ms),
        (Status::Running, 1, None)
    );
    assert!(policy::expired(e, &short, T0 + 60_001));
    let dead = finish(&q, &old.id, Outcome::Expired, T0 + 60_002);
    assert_eq!(dead.condition, Some(Condition::EventAgeExceeded));
    assert_eq!(dead.attempts, 0);
    assert_eq!(q.get(&young.id).unwrap().unwrap().attempts, 1);
    assert_eq!(q.get(&other.id).unwrap().unwrap().attempts, 1);
}

#[test]
fn a_second_open_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_q, _) = open(dir.path(), limits());
    let err = Queue::open(dir.path(), limits()).unwrap_err();
    assert!(err.to_string().contains("queue.redb"), "{err}");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let err = Queue::open(&file, limits()).unwrap_err();
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

#[test]
fn limits_come_from_the_config() {
    let cfg = crate::config::Config::default();
    let l = QueueLimits::from_config(&cfg);
    assert_eq!(
        l,
        QueueLimits {
            max_events: 100_000,
            max_payload_bytes: 256 * 1024,
            max_bytes: 1024 << 20,
            retention: Duration::from_secs(86_400),
            max_records: 100_000,
            retry_delay: Duration::from_secs(60),
        }
    );
    assert!(cfg.merge_json(r#"{"async_queue_mb": 0}"#).is_err());
    assert_eq!(
        cfg.merge_json(r#"{"async_queue_mb": 2}"#)
            .unwrap()
            .async_queue_mb,
        2
    );
}
