//! What one invocation asks of the manager beyond its event, and what it gets back besides
//! its result: how it is admitted ([`Admission`]), whether it wants its log's tail, and the
//! figures of its `REPORT` line ([`CallReport`]).

use std::time::Duration;

use bytes::Bytes;

use super::RunError;
use crate::lambda_config::EventConfig;

/// How a call passes its lambda's gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Admission {
    /// Take a free slot or wait in the lambda's queue (`max_queue_per_lambda`); a full queue
    /// is 429. Synchronous calls.
    #[default]
    Queue,
    /// Take a slot only if one is free now and no call is waiting for one; otherwise
    /// [`RunError::TooManyRequests`] at once. Asynchronous events: they never wait in front
    /// of a synchronous call.
    FreeSlot,
}

/// Options of one invocation.
#[derive(Debug, Clone, Copy, Default)]
pub struct InvokeOptions {
    pub admission: Admission,
    /// Keep the end of the call's log (`X-Amz-Log-Type: Tail`) in [`CallReport::log_tail`].
    pub tail: bool,
}

/// What an invocation reports besides its result (AWS's `REPORT` line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallReport {
    /// From the event's send to the answer's arrival; zero when no sandbox was reached.
    pub duration: Duration,
    /// AWS's Init Duration, for the call that started its sandbox (cold): the worker's start of
    /// the sandbox, plus the runtime's load of the entry once its init report has come.
    pub init: Option<Duration>,
    /// The lambda's `memory_mb`.
    pub memory_mb: u64,
    /// The sandbox cgroup's peak memory, in MB, when it was measured: on the request's path
    /// only for a call that asked for its log's tail (the stored REPORT line always has it
    /// where the cgroup can be read).
    pub max_memory_used_mb: Option<u64>,
    /// The last 4 KB of the call's log in AWS's form (`START`, the handler's lines, `END`,
    /// `REPORT`, each ending with `\n`; no timestamps), when asked for
    /// ([`InvokeOptions::tail`]) and a sandbox was reached.
    pub log_tail: Option<String>,
}

/// An invocation's result and report.
#[derive(Debug)]
pub struct Invoked {
    pub result: Result<Bytes, RunError>,
    pub report: CallReport,
    /// How the function's asynchronous events are handled, when its configuration was read
    /// (`None`: the function was not found or its `lambda.json` is invalid).
    pub events: Option<EventConfig>,
}
