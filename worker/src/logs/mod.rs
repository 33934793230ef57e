//! Handler logs, as AWS Lambda users get them from CloudWatch Logs (`docs/logs.md`): what a
//! handler prints, captured per sandbox through a pipe, attributed to the call that printed it,
//! framed by AWS's `START`, `END` and `REPORT` lines, and kept in
//! `<function_logs>/<function>/<worker>.log`.
//!
//! In the order a line travels:
//! 1. `lines.rs`: bytes become lines (split on `\n`, at most 256 KiB, invalid UTF-8 replaced);
//! 2. `capture.rs`: one sandbox's pipe, read while its call runs and drained once it answered;
//!    attribution to the call (or `-` between calls), the per-call cap, the kept tails;
//! 3. `aws.rs`: the `START`, `END`, `REPORT`, `[ERROR]` and timeout lines, and the 4 KB tail of
//!    `X-Amz-Log-Result`;
//! 4. `writer.rs`: the bounded channel and the thread that appends, flushes and rotates;
//! 5. `retention.rs`: the sweep that removes old files and keeps the worker under its total;
//! 6. `store.rs`: the on-disk line format, and the reader `admin logs` uses.

pub mod aws;
mod capture;
mod lines;
mod retention;
pub mod store;
mod writer;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

pub(crate) use capture::Capture;
pub use lines::MAX_LINE;
pub use writer::{LogWriter, Settings, FILE_MODE, MAX_OPEN};

/// Reads a sandbox cgroup's peak memory in bytes (blocking: a cgroupfs read); `None` when it
/// cannot be read. The backend's ([`crate::manager::Backend::peak_reader`]).
pub type PeakReader = Arc<dyn Fn(&Path) -> Option<u64> + Send + Sync>;
