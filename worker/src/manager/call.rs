//! One call on a sandbox the manager holds, with its log.
//!
//! Steps, in order:
//! 1. the call's log begins: what the sandbox wrote since its last call is logged without a
//!    request id (`crate::logs::Capture::begin`);
//! 2. one request frame out and the answer back (an init report ahead of the first answer is
//!    read too), under the lambda's `timeout_s`, while the sandbox's output is read as it comes;
//! 3. the rest of its output is read without waiting (the runtime flushed before answering);
//!    the worker adds what AWS adds for a failed call (the `[ERROR]` line and traceback of an
//!    unhandled error, `Task timed out after N.00 seconds`, the exit of a runtime that died);
//! 4. the log's END and REPORT lines (with the peak memory read on the blocking pool when the
//!    caller asked for the log's tail; otherwise by the log writer);
//! 5. the sandbox goes back to its pool, or is destroyed (a timeout, a broken connection: its
//!    OOM count read on the blocking pool first).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::backend::{Backend, LambdaRef, SandboxHandle};
use super::error::RunError;
use super::instance::{Instance, SandboxState};
use super::invoke::CallReport;
use super::pool::PoolUse;
use super::{Manager, Start};
use crate::logs::aws::{self, Figures};
use crate::runtime_client::{self, Call, Deadline, Reply, RequestId, WireError};
use crate::timings::Phase;

/// What a call is, besides its sandbox and event.
pub(super) struct CallOf<'a, S: SandboxHandle> {
    pub lambda: &'a LambdaRef,
    pub pool: &'a PoolUse<S>,
    pub start: Start,
    pub request_id: &'a RequestId,
    /// Keep the log's tail for [`CallReport::log_tail`].
    pub tail: bool,
}

/// What the call's outcome makes of the sandbox.
enum Fate {
    Keep,
    Destroy,
    Failed(WireError),
}

impl<B: Backend> Manager<B> {
    /// Sends the event, reads the answer, logs the call, and keeps or destroys the sandbox
    /// (see the module docs).
    pub(super) async fn call(
        self: &Arc<Self>,
        c: CallOf<'_, B::Sandbox>,
        mut inst: Instance<B::Sandbox>,
        event: Bytes,
        report: &mut CallReport,
    ) -> Result<Bytes, RunError> {
        let (lambda, request_id) = (c.lambda, c.request_id);
        inst.set_state(SandboxState::Busy, 1);
        // 1. The log.
        inst.capture.begin(request_id, c.tail);
        // 2. The call, its output read meanwhile.
        let phase = match c.start {
            Start::Warm => Phase::Call,
            Start::Cold => Phase::FirstCall,
        };
        let timeout_s = lambda.limits.timeout_s;
        let timeout = Duration::from_secs(timeout_s);
        let header = Call {
            request_id,
            deadline: Deadline::after(timeout),
        };
        let t = Instant::now();
        let mut load = None;
        let outcome = {
            let (conn, capture) = (&mut inst.conn, &mut inst.capture);
            let answer = runtime_client::call_reporting(conn, &header, &event, &mut load);
            tokio::pin!(answer);
            tokio::time::timeout(timeout, async {
                loop {
                    tokio::select! {
                        biased;
                        replied = &mut answer => break replied,
                        () = capture.read_ready() => {}
                    }
                }
            })
            .await
        };
        report.duration = t.elapsed();
        self.timings.record(phase, report.duration);
        if let (Some(init), Some(load)) = (report.init, load) {
            // AWS's Init Duration: the sandbox's start and the runtime's load of the entry.
            report.init = Some(init + load);
        }
        if c.start == Start::Cold {
            if let Some(job) = inst
                .sandbox()
                .and_then(|s| self.backend.after_first_call(s))
            {
                tokio::task::spawn_blocking(job);
            }
        }
        // 3. The rest of the output, and what the worker adds.
        inst.capture.drain();
        inst.capture.end_call();
        let name = &lambda.name;
        let (result, fate) = match outcome {
            Err(_) => {
                tracing::warn!(lambda = %name, sandbox = inst.id, timeout_s, "call timed out; destroying its sandbox");
                let line = aws::timeout(SystemTime::now(), request_id, timeout_s);
                inst.capture.worker_line(line);
                let err = RunError::Timeout {
                    lambda: name.to_string(),
                    timeout_s,
                };
                (Err(err), Fate::Destroy)
            }
            // The error is made below, once the sandbox's OOM count is read.
            Ok(Err(wire)) => (Ok(Bytes::new()), Fate::Failed(wire)),
            Ok(Ok(Reply::Ok(body))) => (Ok(body), Fate::Keep),
            Ok(Ok(Reply::HandlerError(body))) => {
                let (kind, message) = (json_field(&body, "type"), json_field(&body, "message"));
                let traceback = json_field(&body, "traceback");
                for line in aws::error_lines(&kind, &message, &traceback) {
                    inst.capture.worker_line(line);
                }
                let err = RunError::HandlerRaised {
                    lambda: name.to_string(),
                    kind,
                    message,
                    traceback,
                };
                (Err(err), Fate::Keep)
            }
            Ok(Ok(Reply::RequestError(body))) => {
                let message = json_field(&body, "message");
                inst.capture
                    .worker_line(format!("[ERROR] BadRequest: {message}"));
                (Err(RunError::EventRefused { message }), Fate::Keep)
            }
        };
        match fate {
            Fate::Keep => {
                self.finish_log(&c, &mut inst, report).await;
                let t = Instant::now();
                self.release(c.pool, inst);
                self.timings.record(Phase::Release, t.elapsed());
                result
            }
            Fate::Destroy => {
                self.finish_log(&c, &mut inst, report).await;
                drop(inst);
                result
            }
            Fate::Failed(wire) => {
                let (err, back) = self.sandbox_failed(lambda, inst, wire).await;
                if let Some(mut inst) = back {
                    let why = match &err {
                        RunError::OutOfMemory { memory_mb, .. } => format!(
                            "Runtime exited with error: signal: killed (out of memory at memory_mb {memory_mb})"
                        ),
                        RunError::SandboxFailed { source, .. } => {
                            format!("Runtime exited without an answer: {source}")
                        }
                        other => other.to_string(),
                    };
                    inst.capture
                        .worker_line(format!("RequestId: {request_id} Error: {why}"));
                    inst.capture.worker_line("Runtime.ExitError".to_owned());
                    self.finish_log(&c, &mut inst, report).await;
                }
                Err(err)
            }
        }
    }

    /// Step 4: the log's END and REPORT lines, and the report's peak memory and log tail when
    /// the caller asked for the tail.
    async fn finish_log(
        &self,
        c: &CallOf<'_, B::Sandbox>,
        inst: &mut Instance<B::Sandbox>,
        report: &mut CallReport,
    ) {
        let max_memory_used_mb = if c.tail {
            let (peak, cgroup) = (Arc::clone(&self.peak), Arc::clone(inst.capture.cgroup()));
            tokio::task::spawn_blocking(move || peak(&cgroup))
                .await
                .ok()
                .flatten()
                .map(aws::megabytes)
        } else {
            None
        };
        report.max_memory_used_mb = max_memory_used_mb;
        report.log_tail = inst.capture.finish(Figures {
            duration: report.duration,
            memory_mb: c.lambda.limits.memory_mb,
            max_memory_used_mb,
            init: report.init,
        });
    }

    /// What became of a sandbox whose connection broke: killed by the OOM killer, or failed
    /// (with the end of its output). Its cgroup is read on the blocking pool; the instance
    /// comes back to finish its log, then goes (dropping it destroys the sandbox).
    async fn sandbox_failed(
        &self,
        lambda: &LambdaRef,
        mut inst: Instance<B::Sandbox>,
        wire: WireError,
    ) -> (RunError, Option<Instance<B::Sandbox>>) {
        let id = inst.id;
        let name = lambda.name.to_string();
        let memory_mb = lambda.limits.memory_mb;
        let output = inst.capture.output_tail();
        let read = tokio::task::spawn_blocking(move || {
            let sandbox = inst.sandbox();
            let oom = sandbox.map_or(0, SandboxHandle::oom_kills);
            let pid = sandbox.map_or(0, SandboxHandle::pid);
            (oom, pid, inst)
        })
        .await;
        let (oom, pid, inst) = match read {
            Ok(found) => found,
            Err(source) => {
                let err = RunError::Task {
                    what: "sandbox failure",
                    source,
                };
                return (err, None);
            }
        };
        if oom > 0 {
            tracing::warn!(lambda = %name, sandbox = id, memory_mb, "sandbox ran out of memory; destroying it");
            let err = RunError::OutOfMemory {
                lambda: name,
                memory_mb,
            };
            return (err, Some(inst));
        }
        let err = RunError::SandboxFailed {
            lambda: name,
            id,
            pid,
            source: wire,
            stderr: output,
        };
        tracing::warn!(lambda = %lambda.name, sandbox = id, error = %err, "sandbox failed; destroying it");
        (err, Some(inst))
    }
}

/// The string `key` of a JSON object, or the whole text when it is not one.
fn json_field(body: &[u8], key: &str) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get(key).and_then(|m| m.as_str().map(str::to_owned)))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}
