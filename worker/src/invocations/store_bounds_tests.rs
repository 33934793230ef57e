//! The store's bounds: sweeping by age, count and bytes, truncated results, lists, compaction.

use std::path::Path;
use std::time::Duration;

use super::tests::{check, claim, enqueue, ev, finish, limits, open, T0};
use super::*;
use crate::invocations::record::MAX_STORED_RESULT;

/// A store with one success per millisecond from T0, and one queued and one running event.
fn finished_store(dir: &Path, limits: QueueLimits, n: u64) -> Queue {
    let (q, _) = open(dir, limits);
    for i in 0..n {
        let inv = enqueue(&q, ev("f", &format!("{i:03}")), T0 + i);
        claim(&q, T0 + i, 1);
        let result = format!("\"{i}\"").into_bytes();
        finish(&q, &inv.id, Outcome::Succeeded { result }, T0 + i);
    }
    enqueue(&q, ev("g", "queued"), T0);
    enqueue(&q, ev("g", "running"), T0);
    claim(&q, T0, 1);
    q
}

fn unfinished(q: &Queue) -> u64 {
    q.counts().unwrap().unfinished()
}

#[test]
fn sweep_removes_old_finished_records_only() {
    let dir = tempfile::tempdir().unwrap();
    let lim = QueueLimits {
        retention: Duration::from_millis(5),
        ..limits()
    };
    let q = finished_store(dir.path(), lim, 10);
    // At T0+9 the records finished at T0..T0+3 are more than 5 ms old.
    assert_eq!(q.sweep(T0 + 9).unwrap(), 4);
    check(&q);
    assert_eq!(q.counts().unwrap().succeeded, 6);
    assert_eq!(q.sweep(T0 + 9).unwrap(), 0);
    assert_eq!(q.sweep(T0 + 1_000_000).unwrap(), 6);
    check(&q);
    assert_eq!(q.counts().unwrap().finished(), 0);
    assert_eq!(unfinished(&q), 2, "never queued or running ones");
}

#[test]
fn sweep_and_finish_keep_the_record_count() {
    let dir = tempfile::tempdir().unwrap();
    let q = finished_store(
        dir.path(),
        QueueLimits {
            max_records: 4,
            ..limits()
        },
        10,
    );
    // Each finish already removed the oldest beyond the bound.
    assert_eq!(q.counts().unwrap().succeeded, 4);
    let (left, _) = q
        .list(&ListFilter {
            status: Some(Status::Succeeded),
            ..ListFilter::default()
        })
        .unwrap();
    let left_out = |i: &Invocation| i.payload.is_empty() && i.payload_bytes == 3;
    assert!(left.iter().all(left_out), "payloads are left out of lists");
    let results: Vec<_> = left.iter().map(|i| i.result.clone().unwrap()).collect();
    assert_eq!(
        results,
        [
            b"\"9\"".to_vec(),
            b"\"8\"".to_vec(),
            b"\"7\"".to_vec(),
            b"\"6\"".to_vec()
        ]
    );
    assert_eq!(q.sweep(T0 + 20).unwrap(), 0);
    assert_eq!(unfinished(&q), 2);
}

#[test]
fn sweep_and_finish_keep_the_byte_bound() {
    let dir = tempfile::tempdir().unwrap();
    // Each finished record holds 3 + 3 bytes (payload and result), the unfinished ones 6 + 7.
    let q = finished_store(
        dir.path(),
        QueueLimits {
            max_bytes: 40,
            ..limits()
        },
        10,
    );
    let c = q.counts().unwrap();
    assert!(c.bytes <= 40, "{c:?}");
    assert_eq!(c.succeeded, (40 - 13) / 6);
    assert_eq!(unfinished(&q), 2);
    // A store over its bound (a smaller limit on reopen) is brought under it by sweep.
    drop(q);
    let (q, _) = open(
        dir.path(),
        QueueLimits {
            max_bytes: 20,
            ..limits()
        },
    );
    assert_eq!(q.sweep(T0 + 20).unwrap(), 3);
    check(&q);
    let c = q.counts().unwrap();
    assert_eq!((c.succeeded, c.bytes), (1, 19));
    assert_eq!(unfinished(&q), 2);
}

#[test]
fn big_results_are_stored_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _) = open(dir.path(), limits());
    let a = enqueue(&q, ev("f", "a"), T0);
    let b = enqueue(&q, ev("f", "b"), T0);
    claim(&q, T0, 2);
    let exact = vec![b'7'; MAX_STORED_RESULT];
    let kept = finish(
        &q,
        &a.id,
        Outcome::Succeeded {
            result: exact.clone(),
        },
        T0,
    );
    assert_eq!((kept.result, kept.result_truncated), (Some(exact), false));
    let huge = vec![b'7'; MAX_STORED_RESULT + 10];
    let cut = finish(&q, &b.id, Outcome::Succeeded { result: huge }, T0);
    assert!(cut.result_truncated);
    let stored = q.get(&b.id).unwrap().unwrap();
    let v: serde_json::Value = serde_json::from_slice(stored.result.as_ref().unwrap()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"truncated": true, "bytes": MAX_STORED_RESULT + 10})
    );
    assert!(stored.result_truncated);
    assert_eq!(
        q.counts().unwrap().bytes,
        2 + MAX_STORED_RESULT as u64 + stored.result.unwrap().len() as u64
    );
}

#[test]
fn payloads_round_trip_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _) = open(dir.path(), limits());
    for payload in [&b""[..], b"{ \"a\" :  1.50e3 }\n", b"\xff\x00not json"] {
        let event = NewEvent {
            payload: payload.to_vec(),
            ..ev("f", "x")
        };
        let inv = enqueue(&q, event, T0);
        assert_eq!(q.get(&inv.id).unwrap().unwrap().payload, payload);
    }
}

#[test]
fn lists_are_newest_first_and_page_with_a_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _) = open(dir.path(), limits());
    for i in 0..7 {
        enqueue(
            &q,
            ev(if i % 2 == 0 { "even" } else { "odd" }, &i.to_string()),
            T0,
        );
    }
    claim(&q, T0, 1);
    let page = |function: Option<&str>, status, after| {
        q.list(&ListFilter {
            function: function.map(str::to_owned),
            status,
            limit: 2,
            after,
        })
        .unwrap()
    };
    let seqs = |v: &[Invocation]| v.iter().map(|i| i.seq).collect::<Vec<_>>();
    let (p1, c1) = page(None, None, None);
    assert_eq!(seqs(&p1), [7, 6]);
    let (p2, c2) = page(None, None, c1);
    assert_eq!(seqs(&p2), [5, 4]);
    let (p3, c3) = page(None, None, c2);
    assert_eq!(seqs(&p3), [3, 2]);
    let (p4, c4) = page(None, None, c3);
    assert_eq!(seqs(&p4), [1]);
    assert_eq!(c4, None);
    let (odd, c) = page(Some("odd"), None, None);
    assert_eq!(seqs(&odd), [6, 4]);
    assert_eq!(seqs(&page(Some("odd"), None, c).0), [2]);
    let (running, _) = page(None, Some(Status::Running), None);
    assert_eq!(seqs(&running), [1]);
    assert!(page(Some("nope"), None, None).0.is_empty());
    assert_eq!(Cursor::parse(&Cursor(42).to_string()), Some(Cursor(42)));
    assert_eq!(Cursor::parse("x"), None);
}

#[test]
fn a_sparse_file_is_compacted_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let lim = QueueLimits {
        max_payload_bytes: 256 * 1024,
        max_bytes: 1 << 30,
        retention: Duration::ZERO,
        ..limits()
    };
    let file = dir.path().join(DB_FILE);
    {
        let (q, _) = open(dir.path(), lim.clone());
        let events = (0..100)
            .map(|i| NewEvent {
                payload: vec![b'x'; 256 * 1024],
                ..ev("f", &i.to_string())
            })
            .collect();
        assert!(q.enqueue(events, T0).unwrap().iter().all(Result::is_ok));
        let run = claim(&q, T0, 100);
        q.write(|w| {
            for inv in &run {
                let outcome = Outcome::Succeeded { result: Vec::new() };
                w.finish(&inv.id, outcome, Vec::new(), T0)?;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(q.sweep(T0 + 1).unwrap(), 100);
        check(&q);
    }
    let big = std::fs::metadata(&file).unwrap().len();
    assert!(big > 25 << 20, "{big}");
    let (q, r) = open(dir.path(), lim.clone());
    assert!(r.compacted);
    drop(q);
    let small = std::fs::metadata(&file).unwrap().len();
    assert!(small < big / 4, "{small} after {big}");
    let (_, r) = open(dir.path(), lim);
    assert!(!r.compacted, "a compact file is left alone");
}
