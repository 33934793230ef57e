//! The durable store of asynchronous invocations (`X-Amz-Invocation-Type: Event`) and the retry
//! policy it applies.
//!
//! # What is stored
//! One record per event ([`Invocation`]): its function, the request id of the `Invoke` call that
//! queued it, its payload (exactly the bytes given), its [`Status`], attempts, failures and
//! times, and once finished its result (up to [`MAX_STORED_RESULT`]) or its last error and the
//! [`Condition`] it was dead-lettered with. Destination records (an `on_success` / `on_failure`
//! event about another invocation) are events too, with [`Invocation::source`] set.
//!
//! # States
//! `queued` → (claim) `running` → `succeeded`, or `failed` (dead letter), or back to `queued`
//! (a retry, a throttled attempt, or a worker that stopped while it ran). Queued and running
//! records are never removed; finished ones are removed by age, count and bytes
//! ([`Queue::sweep`], and the oldest first whenever a transaction would exceed the bounds).
//!
//! # Guarantees
//! - An event is durable (fsync'd) before [`Queue::enqueue`] or [`Committer::enqueue`] returns
//!   it: the worker answers 202 only then.
//! - At-least-once: a claim is committed without an fsync, so a crash may forget it (the event
//!   is still queued); a worker that stops while an event runs finds it running on open and
//!   queues it again. An attempt so interrupted is not counted as a failure.
//! - Finishing an attempt and queueing its destination record are one transaction
//!   ([`Queue::finish`]'s `also`).
//! - Every table is bounded: unfinished events by `async_queue_max`, finished records by
//!   `invocation_retention_s` and `invocation_records_max`, payloads and results together by
//!   `async_queue_mb`, one payload by `async_payload_bytes` ([`QueueLimits`]).
//!
//! # Order of the work
//! 1. [`Queue::open`]: create `<worker_dir>/invocations/queue.redb`, put running records back in
//!    the queue, compact a sparse file.
//! 2. [`Committer::start`]: the thread that groups writes into one transaction and one fsync.
//! 3. [`Committer::enqueue`] per `Event` request; the dispatcher's loop: [`Committer::claim`],
//!    run each event, ask [`policy`] what follows a failure or a throttle, and
//!    [`Committer::finish`] with the [`Outcome`] and the destination records; sleep until
//!    [`Queue::next_ready_ms`]; from time to time [`Committer::sweep`].
//! 4. [`Committer::shutdown`]: the requests already submitted are committed and answered.
//!
//! # Why redb
//! [redb](https://docs.rs/redb) is an embedded key-value store in pure Rust (no C toolchain),
//! with ACID transactions: each commit is checksummed and, when durable, fsync'd; a crash rolls
//! back to the last durable commit and the allocator is repaired on open; freed pages are
//! reused, and `compact()` shrinks the file. It is one file, with readers concurrent beside one
//! writer. So recovery and compaction are not this module's to get wrong; it keeps only the
//! tables (records, payloads, results, and the `ready`, `running`, `finished` and per-function
//! indexes, so that claiming, counting, sweeping and `next_ready_ms` scan nothing) and the
//! counters, updated in each transaction.

mod committer;
pub mod policy;
mod record;
mod store;
mod writer;

pub use committer::Committer;
pub use policy::{Next, PolicyError, RetryPolicy};
pub use record::{
    Claimed, Condition, Counts, Cursor, ErrorInfo, Finished, InvalidId, Invocation, InvocationId,
    ListFilter, NewEvent, Outcome, QueueLimits, Recovered, Rejected, Status, MAX_STORED_RESULT,
};
pub use store::{Queue, QueueError, DB_FILE, LIST_MAX, LIST_SCAN, SWEEP_MAX};

/// Milliseconds since the Unix epoch, the store's clock (0 for a clock before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
