//! The lines AWS Lambda adds to every invocation's log, as it prints them: `START`, `END` and
//! `REPORT` (with its figures, [`Figures`]), the `[ERROR]` line and traceback of an unhandled
//! error, the `Task timed out` line; and [`cut_tail`], the end of a log as `X-Amz-Log-Result`
//! carries it.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use crate::runtime_client::RequestId;

/// The figures of one `REPORT` line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    /// From the event's send to the answer's arrival.
    pub duration: Duration,
    /// The lambda's `memory_mb`.
    pub memory_mb: u64,
    /// The sandbox's peak memory in MB, when known.
    pub max_memory_used_mb: Option<u64>,
    /// Init Duration, on the call that started the sandbox.
    pub init: Option<Duration>,
}

/// The most bytes of log `X-Amz-Log-Result` carries (AWS: the last 4 KB).
pub const TAIL_BYTES: usize = 4096;

/// `START RequestId: <id> Version: $LATEST`
pub fn start(out: &mut String, id: &RequestId) {
    let _ = write!(out, "START RequestId: {id} Version: $LATEST");
}

/// `END RequestId: <id>`
pub fn end(out: &mut String, id: &RequestId) {
    let _ = write!(out, "END RequestId: {id}");
}

/// `REPORT RequestId: <id>\tDuration: 12.34 ms\tBilled Duration: 13 ms\tMemory Size: 256
/// MB\tMax Memory Used: 41 MB\tInit Duration: 123.45 ms` (the last two only when known).
pub fn report(out: &mut String, id: &RequestId, f: &Figures) {
    let _ = write!(
        out,
        "REPORT RequestId: {id}\tDuration: {:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB",
        ms(f.duration),
        billed_ms(f.duration),
        f.memory_mb
    );
    if let Some(mb) = f.max_memory_used_mb {
        let _ = write!(out, "\tMax Memory Used: {mb} MB");
    }
    if let Some(init) = f.init {
        let _ = write!(out, "\tInit Duration: {:.2} ms", ms(init));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Whole milliseconds, rounded up, at least 1.
pub fn billed_ms(d: Duration) -> u128 {
    d.as_nanos().div_ceil(1_000_000).max(1)
}

/// Bytes as AWS's MB (MiB), rounded up.
pub fn megabytes(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

/// The lines AWS's Python runtime prints for an unhandled error: `[ERROR] <type>: <message>`,
/// then the traceback's lines (a message of several lines gives several lines).
pub fn error_lines(kind: &str, message: &str, traceback: &str) -> Vec<String> {
    let head = format!("[ERROR] {kind}: {message}");
    head.split('\n')
        .chain(traceback.trim_end_matches('\n').split('\n'))
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `<timestamp> <request id> Task timed out after 3.00 seconds`
pub fn timeout(at: SystemTime, id: &RequestId, timeout_s: u64) -> String {
    let mut out = String::with_capacity(96);
    super::store::push_timestamp(&mut out, at);
    let _ = write!(out, " {id} Task timed out after {timeout_s}.00 seconds");
    out
}

/// The end of `log` in at most `max` bytes, starting at a line's start when one begins within
/// those bytes (else at a character boundary).
pub fn cut_tail(log: &str, max: usize) -> &str {
    if log.len() <= max {
        return log;
    }
    let mut start = log.len() - max;
    while !log.is_char_boundary(start) {
        start += 1;
    }
    if log.as_bytes()[start - 1] != b'\n' {
        if let Some(i) = log[start..].find('\n') {
            if start + i + 1 < log.len() {
                start += i + 1;
            }
        }
    }
    &log[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> RequestId {
        RequestId::given("8f5c-1").unwrap()
    }

    #[test]
    fn the_lines_read_as_awss() {
        let mut s = String::new();
        start(&mut s, &id());
        assert_eq!(s, "START RequestId: 8f5c-1 Version: $LATEST");
        s.clear();
        end(&mut s, &id());
        assert_eq!(s, "END RequestId: 8f5c-1");
        s.clear();
        let f = Figures {
            duration: Duration::from_micros(12_341),
            memory_mb: 256,
            max_memory_used_mb: Some(41),
            init: Some(Duration::from_micros(123_454)),
        };
        report(&mut s, &id(), &f);
        assert_eq!(
            s,
            "REPORT RequestId: 8f5c-1\tDuration: 12.34 ms\tBilled Duration: 13 ms\tMemory Size: 256 MB\tMax Memory Used: 41 MB\tInit Duration: 123.45 ms"
        );
        s.clear();
        let warm = Figures {
            max_memory_used_mb: None,
            init: None,
            ..f
        };
        report(&mut s, &id(), &warm);
        assert_eq!(
            s,
            "REPORT RequestId: 8f5c-1\tDuration: 12.34 ms\tBilled Duration: 13 ms\tMemory Size: 256 MB"
        );
    }

    #[test]
    fn billing_rounds_up_to_whole_milliseconds() {
        assert_eq!(billed_ms(Duration::ZERO), 1);
        assert_eq!(billed_ms(Duration::from_micros(10)), 1);
        assert_eq!(billed_ms(Duration::from_millis(3)), 3);
        assert_eq!(billed_ms(Duration::from_nanos(3_000_001)), 4);
        assert_eq!(megabytes(0), 0);
        assert_eq!(megabytes(1), 1);
        assert_eq!(megabytes(41 << 20), 41);
        assert_eq!(megabytes((41 << 20) + 1), 42);
    }

    #[test]
    fn an_unhandled_error_is_its_line_then_the_traceback() {
        let lines = error_lines(
            "ValueError",
            "boom",
            "Traceback (most recent call last):\n  File \"/handler/lambda_func.py\", line 2, in handler\nValueError: boom\n",
        );
        assert_eq!(
            lines,
            [
                "[ERROR] ValueError: boom",
                "Traceback (most recent call last):",
                "  File \"/handler/lambda_func.py\", line 2, in handler",
                "ValueError: boom",
            ]
        );
        assert_eq!(error_lines("E", "a\nb", ""), ["[ERROR] E: a", "b"]);
    }

    #[test]
    fn the_timeout_line_names_the_call() {
        let at = std::time::UNIX_EPOCH + Duration::from_millis(1_735_689_600_123);
        assert_eq!(
            timeout(at, &id(), 3),
            "2025-01-01T00:00:00.123Z 8f5c-1 Task timed out after 3.00 seconds"
        );
    }

    #[test]
    fn the_tail_starts_at_a_line_when_it_can() {
        assert_eq!(cut_tail("a\nb\n", 10), "a\nb\n");
        assert_eq!(cut_tail("aaaa\nbb\ncc\n", 7), "bb\ncc\n");
        assert_eq!(cut_tail("aaaa\nbb\ncc\n", 6), "bb\ncc\n");
        assert_eq!(cut_tail("aaaa\nbb\ncc\n", 5), "cc\n");
        // The cut falls right after a newline: kept as it is.
        assert_eq!(cut_tail("aaaa\nbb\n", 3), "bb\n");
        // One long line: the raw cut, at a character boundary.
        assert_eq!(cut_tail("xxxxxxxxxx\n", 4), "xxx\n");
        assert_eq!(cut_tail("ééé", 3), "é");
        let big: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        let tail = cut_tail(&big, TAIL_BYTES);
        assert!(
            tail.len() <= TAIL_BYTES && tail.starts_with("line "),
            "{tail:.20}"
        );
        assert!(tail.ends_with("line 999\n"));
    }
}
