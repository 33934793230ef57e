//! One sandbox's output: the read end of the pipe its stdout and stderr write to, and what
//! becomes of the bytes (attribution, caps, the kept tails).
//!
//! A call, in order: [`Capture::begin`] reads what was written since the last call without
//! waiting (a background thread's output: logged without a request id, `-`) and ends a partial
//! line there; while the call runs, the manager awaits [`Capture::read_ready`] next to the
//! answer, so a handler printing more than the pipe holds never blocks; once the answer is in,
//! [`Capture::drain`] reads what is left without waiting (the runtime flushes before it
//! answers); [`Capture::end_call`] ends a partial line and says how many bytes past
//! `function_log_call_bytes` were dropped; the manager adds its own lines
//! ([`Capture::worker_line`]) and hands the call's end to the writer ([`Capture::finish`]).
//!
//! The drains are plain non-blocking `read(2)`s on the pipe: the reactor's idea of the pipe's
//! readiness may lag behind the answer's. Lines go to the writer as they are complete, each
//! with the time it was read. The last [`OUTPUT_TAIL`] bytes of output are kept for the
//! message of a sandbox that failed; a call that asked for its log's tail keeps it too.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use nix::errno::Errno;
use tokio::net::unix::pipe;

use super::aws::{self, Figures, TAIL_BYTES};
use super::lines::{Lines, OutputTail};
use super::writer::{CallEnd, Entry, LogWriter};
use crate::runtime_client::RequestId;

/// Bytes of output kept for a failed sandbox's message.
pub const OUTPUT_TAIL: usize = 1024;
/// Bytes one read takes from the pipe.
const CHUNK: usize = 64 * 1024;
/// The most one drain reads: the pipe's 64 KiB and more that a background writer adds
/// meanwhile; the rest waits for the next read.
const MAX_DRAIN: usize = 4 * CHUNK;

/// One sandbox's output (see the module docs).
#[derive(Debug)]
pub(crate) struct Capture {
    rx: pipe::Receiver,
    logs: Arc<LogWriter>,
    function: Arc<str>,
    cgroup: Arc<Path>,
    call_bytes: u64,
    lines: Lines,
    output_tail: OutputTail,
    buf: Vec<u8>,
    /// Every writer has closed its end.
    eof: bool,
    call: Option<CallLog>,
}

/// The call being served.
#[derive(Debug)]
pub(crate) struct CallLog {
    pub request: RequestId,
    pub start: SystemTime,
    start_written: bool,
    kept: u64,
    dropped: u64,
    /// The call's log in AWS's form, when its tail was asked for.
    tail: Option<String>,
}

impl Capture {
    /// The capture of a sandbox of `function` whose output is the pipe `read` (registered with
    /// the runtime's reactor: call within it).
    pub(crate) fn new(
        read: OwnedFd,
        logs: Arc<LogWriter>,
        function: Arc<str>,
        cgroup: Arc<Path>,
        call_bytes: u64,
    ) -> std::io::Result<Self> {
        Ok(Self {
            rx: pipe::Receiver::from_owned_fd(read)?,
            logs,
            function,
            cgroup,
            call_bytes,
            lines: Lines::default(),
            output_tail: OutputTail::new(OUTPUT_TAIL),
            buf: Vec::new(),
            eof: false,
            call: None,
        })
    }

    /// Starts the log of the call `request`, after what was written since the last one.
    pub(crate) fn begin(&mut self, request: &RequestId, tail: bool) {
        self.drain();
        self.end_partial();
        self.call = Some(CallLog {
            request: request.clone(),
            start: SystemTime::now(),
            start_written: false,
            kept: 0,
            dropped: 0,
            tail: tail.then(|| {
                let mut t = String::with_capacity(2 * TAIL_BYTES);
                aws::start(&mut t, request);
                t.push('\n');
                t
            }),
        });
    }

    /// Waits until the pipe has output, and reads it. Cancel-safe: nothing is read while
    /// waiting. Never returns once every writer is gone.
    pub(crate) async fn read_ready(&mut self) {
        loop {
            if self.eof {
                return std::future::pending().await;
            }
            if self.rx.readable().await.is_err() {
                self.eof = true;
                continue;
            }
            self.ensure_buf();
            match self.rx.try_read(&mut self.buf) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    let chunk = std::mem::take(&mut self.buf);
                    self.feed(&chunk[..n]);
                    self.buf = chunk;
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => self.eof = true,
            }
        }
    }

    /// Reads what the pipe holds now, without waiting (a bounded amount).
    pub(crate) fn drain(&mut self) {
        let mut total = 0;
        while !self.eof && total < MAX_DRAIN {
            self.ensure_buf();
            match nix::unistd::read(self.rx.as_fd(), &mut self.buf) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    total += n;
                    let chunk = std::mem::take(&mut self.buf);
                    self.feed(&chunk[..n]);
                    self.buf = chunk;
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => break,
                Err(_) => self.eof = true,
            }
        }
    }

    fn ensure_buf(&mut self) {
        if self.buf.len() != CHUNK {
            self.buf = vec![0; CHUNK];
        }
    }

    /// The end of the call: its partial line ended, a line for what was dropped. What the
    /// manager then adds goes to the call until [`Capture::finish`].
    pub(crate) fn end_call(&mut self) {
        self.end_partial();
        let Some(call) = &self.call else {
            return;
        };
        if call.dropped > 0 {
            let line = format!(
                "[lambdaworker] {} bytes of this call's output were dropped: it printed more than function_log_call_bytes ({} bytes)",
                call.dropped, self.call_bytes
            );
            self.worker_line(line);
        }
    }

    /// A line in the current call's log: the worker's own (an error, a timeout), or the
    /// sandbox's partial last line, ended there.
    pub(crate) fn worker_line(&mut self, text: String) {
        let Self {
            logs,
            function,
            call,
            ..
        } = self;
        emit(logs, function, call.as_mut(), text);
    }

    /// Hands the call's end to the writer (START if no line came, END, REPORT with `figures`;
    /// its peak memory read by the writer when `figures` lacks it); the call's log tail in
    /// AWS's form, when it was asked for.
    pub(crate) fn finish(&mut self, figures: Figures) -> Option<String> {
        let call = self.call.take()?;
        let at = SystemTime::now();
        let tail = call.tail.map(|mut t| {
            aws::end(&mut t, &call.request);
            t.push('\n');
            aws::report(&mut t, &call.request, &figures);
            t.push('\n');
            aws::cut_tail(&t, TAIL_BYTES).to_owned()
        });
        self.logs.send(Entry::End(Box::new(CallEnd {
            function: Arc::clone(&self.function),
            start: (!call.start_written).then_some(call.start),
            request: call.request,
            at,
            figures,
            cgroup: Some(Arc::clone(&self.cgroup)),
        })));
        tail
    }

    /// The last bytes the sandbox wrote, after reading what the pipe holds.
    pub(crate) fn output_tail(&mut self) -> String {
        self.drain();
        self.output_tail.text()
    }

    /// The sandbox's cgroup.
    pub(crate) fn cgroup(&self) -> &Arc<Path> {
        &self.cgroup
    }

    fn end_partial(&mut self) {
        if let Some(text) = self.lines.end() {
            self.worker_line(text);
        }
    }

    /// Output read from the pipe: kept whole in the failure tail; in lines up to the call's cap.
    fn feed(&mut self, chunk: &[u8]) {
        self.output_tail.push(chunk);
        let Self {
            logs,
            function,
            call,
            lines,
            call_bytes,
            ..
        } = self;
        let take = match call.as_mut() {
            Some(c) => {
                let room = call_bytes.saturating_sub(c.kept);
                let take = (chunk.len() as u64).min(room);
                c.kept += take;
                c.dropped += chunk.len() as u64 - take;
                take as usize
            }
            None => chunk.len(),
        };
        if take == 0 {
            return;
        }
        lines.feed(&chunk[..take], &mut |text| {
            emit(logs, function, call.as_mut(), text)
        });
    }
}

impl Drop for Capture {
    /// What the sandbox wrote and nobody read yet is logged before it goes.
    fn drop(&mut self) {
        self.drain();
        self.end_partial();
    }
}

/// One line to the writer, the call's (with its START line first) or between calls (`-`).
fn emit(logs: &LogWriter, function: &Arc<str>, call: Option<&mut CallLog>, text: String) {
    let at = SystemTime::now();
    let request = match call {
        Some(call) => {
            if !call.start_written {
                call.start_written = true;
                let mut start = String::with_capacity(64);
                aws::start(&mut start, &call.request);
                logs.send(Entry::Line {
                    function: Arc::clone(function),
                    at: call.start,
                    request: Some(call.request.clone()),
                    text: start,
                });
            }
            if let Some(t) = &mut call.tail {
                t.push_str(&text);
                t.push('\n');
                if t.len() > 4 * TAIL_BYTES {
                    let keep = aws::cut_tail(t, TAIL_BYTES).len();
                    t.drain(..t.len() - keep);
                }
            }
            Some(call.request.clone())
        }
        None => None,
    };
    logs.send(Entry::Line {
        function: Arc::clone(function),
        at,
        request,
        text,
    });
}
