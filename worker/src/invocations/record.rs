//! The types of the asynchronous queue: an invocation's id, status and record, what is enqueued
//! and why an event is refused, an attempt's outcome, the limits, counts and list filters.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::policy::Next;
use crate::config::Config;
use crate::name::LambdaName;

/// The most bytes of a result that a record keeps (256 KiB, AWS's asynchronous limit); a bigger
/// result is replaced by `{"truncated": true, "bytes": N}` and [`Invocation::result_truncated`].
pub const MAX_STORED_RESULT: usize = 256 * 1024;

/// An invocation's id: a UUID in its lower-case hyphenated form
/// (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`). New ids are random (version 4); a caller-given id
/// may be of any UUID version, so that callers can use their own generators.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InvocationId(String);

/// A caller-given invocation id that is not a hyphenated UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invocation id {0:?} is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")]
pub struct InvalidId(pub String);

impl InvocationId {
    /// A new random (version 4) id.
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4().hyphenated().to_string())
    }

    /// Validates a caller-given id: exactly 36 characters, a hyphenated UUID; upper-case hex
    /// digits are accepted and stored in lower case.
    pub fn parse(raw: &str) -> Result<Self, InvalidId> {
        if raw.len() != uuid::fmt::Hyphenated::LENGTH {
            return Err(InvalidId(raw.to_owned()));
        }
        let id = uuid::Uuid::try_parse(raw).map_err(|_| InvalidId(raw.to_owned()))?;
        Ok(Self(id.hyphenated().to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for InvocationId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for InvocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for InvocationId {
    type Error = InvalidId;
    fn try_from(raw: String) -> Result<Self, InvalidId> {
        Self::parse(&raw)
    }
}

impl From<InvocationId> for String {
    fn from(id: InvocationId) -> String {
        id.0
    }
}

/// Where an invocation stands. `Queued` and `Running` are unfinished (bounded by
/// `async_queue_max`); `Succeeded` and `Failed` are finished records (bounded by retention, count
/// and bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for `not_before_ms`, or for a free slot.
    Queued,
    /// Claimed by the dispatcher; an attempt is running.
    Running,
    /// An attempt succeeded; the record holds its result.
    Succeeded,
    /// Dead-lettered: the record holds the last error and its [`Condition`].
    Failed,
}

impl Status {
    /// The status as it is serialized ("queued", "running", "succeeded", "failed").
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
        }
    }

    /// Whether the invocation is over (succeeded or failed).
    pub fn is_finished(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a failed invocation was dead-lettered, spelled as AWS's destination records spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Condition {
    /// Every allowed attempt failed (`retry_attempts + 1` of them).
    RetriesExhausted,
    /// The event was older than its function's maximum event age before it could (re)start.
    EventAgeExceeded,
    /// The function no longer exists: dead-lettered at once, without retries.
    FunctionNotFound,
}

impl Condition {
    /// The condition as AWS spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::RetriesExhausted => "RetriesExhausted",
            Condition::EventAgeExceeded => "EventAgeExceeded",
            Condition::FunctionNotFound => "FunctionNotFound",
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last error of an invocation, serialized `{"type": ..., "message": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    #[serde(rename = "type")]
    pub error_type: String,
    pub message: String,
}

impl ErrorInfo {
    /// An error of `error_type` saying `message`.
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error_type: error_type.into(),
            message: message.into(),
        }
    }
}

/// One asynchronous invocation, as the store keeps it.
///
/// Serialized (JSON) without `payload` and `result`: the store keeps those bytes in tables of
/// their own, exactly as given, and fills them in on [`Queue::get`](super::Queue::get)
/// ([`Queue::list`](super::Queue::list)(super::Queue::list) leaves `payload` empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    pub id: InvocationId,
    /// Enqueue order, unique and increasing: the FIFO tie-break and the list cursor.
    pub seq: u64,
    /// The function, a valid [`LambdaName`] as it displays.
    pub function: String,
    /// The request id of the `Invoke` call that queued the event; every attempt uses it too.
    pub request_id: String,
    /// The event, exactly the bytes given.
    #[serde(skip)]
    pub payload: Vec<u8>,
    /// `payload.len()`, also where `payload` is left out.
    pub payload_bytes: usize,
    pub status: Status,
    /// Attempts started (a claim counts one). An attempt that could not start (throttled), an
    /// expired event's claim, and an attempt cut short by a worker crash are given back.
    pub attempts: u32,
    /// Attempts that failed: what the retry policy counts. An attempt interrupted by a worker
    /// crash is not a failure.
    pub failures: u32,
    /// Attempts put back because the function or the worker was busy (429/503); they set the
    /// next throttle delay ([`super::policy::after_throttle`]).
    pub throttles: u32,
    pub created_ms: u64,
    /// Earliest start of the next attempt (while queued).
    pub not_before_ms: u64,
    /// When the last attempt started.
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    /// The result (JSON bytes) of a success, at most [`MAX_STORED_RESULT`] bytes.
    #[serde(skip)]
    pub result: Option<Vec<u8>>,
    /// The result was bigger than [`MAX_STORED_RESULT`]: `result` is
    /// `{"truncated": true, "bytes": N}`.
    pub result_truncated: bool,
    /// The last error (kept across retries, and on a dead letter).
    pub error: Option<ErrorInfo>,
    /// Why a failed record was dead-lettered.
    pub condition: Option<Condition>,
    /// For a destination record: the invocation whose outcome it carries.
    pub source: Option<InvocationId>,
}

impl Invocation {
    /// The bytes this record charges to `async_queue_mb`: its payload and its stored result.
    pub fn stored_bytes(&self) -> u64 {
        (self.payload_bytes + self.result.as_ref().map_or(0, Vec::len)) as u64
    }
}

/// An event to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub function: LambdaName,
    /// The event (JSON bytes, kept exactly).
    pub payload: Vec<u8>,
    /// The request id of the `Invoke` call.
    pub request_id: String,
    /// A caller-given id: enqueueing it again answers the existing record
    /// ([`Rejected::Exists`]). `None`: a new random id.
    pub id: Option<InvocationId>,
    /// For a destination record: the invocation whose outcome it carries.
    pub source: Option<InvocationId>,
}

/// Why an event was not enqueued. Nothing was written for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// `async_queue_max` events are queued or running already.
    #[error("the asynchronous queue is full ({max} events queued or running)")]
    QueueFull { max: usize },
    /// The payload is bigger than `async_payload_bytes`.
    #[error("the event is {bytes} bytes, more than the {max} allowed")]
    TooLarge { bytes: usize, max: usize },
    /// Unfinished payloads alone fill `async_queue_mb` (finished records were removed first).
    #[error("the asynchronous queue's store is full ({max_bytes} bytes of events and results)")]
    StoreFull { max_bytes: u64 },
    /// The caller-given id is taken: this is its record (idempotent enqueue; not a duplicate).
    #[error("invocation {} already exists", .0.id)]
    Exists(Box<Invocation>),
}

/// The bounds of the store, from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueLimits {
    /// Events queued or running at most (`async_queue_max`).
    pub max_events: u64,
    /// Largest payload (`async_payload_bytes`).
    pub max_payload_bytes: usize,
    /// Payloads and stored results together (`async_queue_mb`).
    pub max_bytes: u64,
    /// Finished records are kept this long (`invocation_retention_s`).
    pub retention: Duration,
    /// Finished records kept at most (`invocation_records_max`).
    pub max_records: u64,
    /// Wait before a failed event's first retry (`async_retry_delay_ms`), for
    /// [`RetryPolicy::first_delay`](super::RetryPolicy::first_delay).
    pub retry_delay: Duration,
}

impl QueueLimits {
    /// The limits that `cfg` sets.
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            max_events: cfg.async_queue_max as u64,
            max_payload_bytes: cfg.async_payload_bytes,
            max_bytes: cfg.async_queue_mb.saturating_mul(1024 * 1024),
            retention: Duration::from_secs(cfg.invocation_retention_s),
            max_records: cfg.invocation_records_max as u64,
            retry_delay: Duration::from_millis(cfg.async_retry_delay_ms),
        }
    }
}

/// How many records are in each state, and the bytes of payloads and results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub queued: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Payloads and stored results, all records together.
    pub bytes: u64,
}

impl Counts {
    pub(super) fn of(&mut self, status: Status) -> &mut u64 {
        match status {
            Status::Queued => &mut self.queued,
            Status::Running => &mut self.running,
            Status::Succeeded => &mut self.succeeded,
            Status::Failed => &mut self.failed,
        }
    }

    pub(super) fn moved(&mut self, from: Status, to: Status) {
        let from = self.of(from);
        *from = from.saturating_sub(1);
        *self.of(to) += 1;
    }

    /// Finished records.
    pub fn finished(&self) -> u64 {
        self.succeeded + self.failed
    }

    /// Unfinished records.
    pub fn unfinished(&self) -> u64 {
        self.queued + self.running
    }
}

/// What [`Queue::open`](super::Queue::open) found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Records queued after recovery (the requeued ones included).
    pub queued: u64,
    /// Records that were running when the worker stopped, queued again to start now.
    pub requeued: u64,
    /// Finished records.
    pub finished: u64,
    /// Whether the file was compacted.
    pub compacted: bool,
}

/// How an attempt ended, for [`Queue::finish`](super::Queue::finish).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The function returned `result` (JSON bytes; stored up to
    /// [`MAX_STORED_RESULT`](super::MAX_STORED_RESULT)).
    Succeeded { result: Vec<u8> },
    /// The function failed; `next` is [`after_failure`](super::policy::after_failure)'s
    /// answer. Counts a failure; a retry goes back to the queue.
    Failed { error: ErrorInfo, next: Next },
    /// The attempt could not start (429/503); `next` is
    /// [`after_throttle`](super::policy::after_throttle)'s answer. Neither the attempt nor a
    /// failure is counted; `error` is kept only if `next` dead-letters.
    Throttled { error: ErrorInfo, next: Next },
    /// The function no longer exists: dead-lettered at once ([`Condition::FunctionNotFound`]),
    /// counted as a failure.
    NotFound { error: ErrorInfo },
    /// An event that [`Queue::claim`](super::Queue::claim) returned as expired: dead-lettered
    /// ([`Condition::EventAgeExceeded`]), its claim's attempt given back, no failure counted,
    /// the last error (if any) kept.
    Expired,
}

/// What [`Queue::claim`](super::Queue::claim) took, all marked running.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claimed {
    /// Events to run: their attempt is counted and `started_ms` set.
    pub run: Vec<Invocation>,
    /// Events older than their function's maximum age: not to run, but to finish with
    /// [`Outcome::Expired`] (and their destination), which gives their claim's attempt back
    /// (`started_ms` is left as it was).
    pub expired: Vec<Invocation>,
}

/// What [`Queue::finish`](super::Queue::finish) wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The record after the outcome.
    pub invocation: Invocation,
    /// The events of `also`, each enqueued or rejected (in the same transaction).
    pub also: Vec<Result<Invocation, Rejected>>,
}

/// Where [`Queue::list`](super::Queue::list) goes on: records older than this one (by enqueue order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cursor(pub u64);

impl Cursor {
    /// Reads a cursor that [`Cursor`]'s `Display` wrote.
    pub fn parse(raw: &str) -> Option<Self> {
        raw.parse().ok().map(Cursor)
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Which records [`Queue::list`](super::Queue::list) returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub function: Option<String>,
    pub status: Option<Status>,
    /// Most records (at most [`LIST_MAX`](super::LIST_MAX); `0`: that many).
    pub limit: usize,
    /// The previous page's cursor.
    pub after: Option<Cursor>,
}

/// Results bigger than [`MAX_STORED_RESULT`] become `{"truncated": true, "bytes": N}`; returns
/// the bytes to store and whether they were truncated.
pub(super) fn stored_result(result: Vec<u8>) -> (Vec<u8>, bool) {
    if result.len() <= MAX_STORED_RESULT {
        return (result, false);
    }
    let marker = serde_json::json!({ "truncated": true, "bytes": result.len() });
    (marker.to_string().into_bytes(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuids_normalized_to_lower_case() {
        let id = InvocationId::new();
        assert_eq!(InvocationId::parse(id.as_str()).unwrap(), id);
        let upper = "6F1C8E1A-3B2D-4C5E-8F90-A1B2C3D4E5F6";
        assert_eq!(
            InvocationId::parse(upper).unwrap().as_str(),
            upper.to_lowercase()
        );
        for bad in [
            "",
            "x",
            "6f1c8e1a3b2d4c5e8f90a1b2c3d4e5f6",
            "{6f1c8e1a-3b2d-4c5e-8f90-a1b2c3d4e5f6}",
            "6f1c8e1a-3b2d-4c5e-8f90-a1b2c3d4e5fg",
            "../../etc/passwd-aaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(InvocationId::parse(bad).is_err(), "{bad:?}");
        }
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<InvocationId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<InvocationId>("\"nope\"").is_err());
    }

    #[test]
    fn enums_serialize_as_documented() {
        let statuses = [
            Status::Queued,
            Status::Running,
            Status::Succeeded,
            Status::Failed,
        ];
        for s in statuses {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        let conditions = [
            Condition::RetriesExhausted,
            Condition::EventAgeExceeded,
            Condition::FunctionNotFound,
        ];
        for c in conditions {
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{c}\""));
        }
        let e = ErrorInfo::new("Unhandled", "boom");
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"type":"Unhandled","message":"boom"}"#
        );
    }

    #[test]
    fn big_results_are_replaced_by_a_marker() {
        let small = vec![b'1'; MAX_STORED_RESULT];
        assert_eq!(stored_result(small.clone()), (small, false));
        let (bytes, truncated) = stored_result(vec![b'1'; MAX_STORED_RESULT + 1]);
        assert!(truncated);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"truncated": true, "bytes": MAX_STORED_RESULT + 1})
        );
    }
}
