//! Starting `admin` itself as a background process (a worker, the registry server): a new
//! session with its output appended to a log file, and the helpers around it (is the port free,
//! the log's last lines, stopping a child again).

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long a child stopped after a failed start gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A child started by [`spawn`] and where its log started.
#[derive(Debug)]
pub struct Spawned {
    pub child: Child,
    /// The log's length before this start: [`log_tail`] from here shows only this run.
    pub log_start: u64,
}

/// Starts `exe args...` in a new session (it survives the terminal: no SIGHUP or Ctrl-C from
/// it), stdin `/dev/null`, stdout and stderr appended to `log` after a line `marker`, and
/// `NO_COLOR=1` (the log is a file: no colour codes).
pub fn spawn(
    exe: &Path,
    args: &[OsString],
    log_path: &Path,
    marker: &str,
) -> anyhow::Result<Spawned> {
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    writeln!(log, "--- {marker} ---")
        .with_context(|| format!("cannot write {}", log_path.display()))?;
    let log_err: File = log
        .try_clone()
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    // SAFETY: the closure runs in the forked child before exec and only calls setsid(2), which is
    // async-signal-safe; it neither allocates nor takes locks.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    Ok(Spawned { child, log_start })
}

/// True if something accepts connections on `host:port`.
pub fn port_in_use(host: &str, port: u16) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let Ok(addrs) = (bare, port).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok())
}

/// Stops a child of ours: SIGTERM, [`STOP_GRACE`], SIGKILL; reaps it.
pub fn stop_child(child: &mut Child) {
    let Ok(pid) = i32::try_from(child.id()) else {
        return;
    };
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The last `n` lines of the log written since `offset`.
pub fn log_tail(path: &Path, offset: u64, n: usize) -> String {
    let text = match std::fs::read(path) {
        Ok(bytes) => {
            let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => return format!("  (cannot read the log: {e})"),
    };
    last_lines(&text, n)
}

/// The last `n` non-empty lines of `text`, indented.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let from = lines.len().saturating_sub(n);
    lines[from..]
        .iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_of_a_log() {
        let text = "a\nb\n\nc\nd\n";
        assert_eq!(last_lines(text, 2), "  c\n  d");
        assert_eq!(last_lines(text, 10), "  a\n  b\n  c\n  d");
        assert_eq!(last_lines("", 3), "");
    }

    #[test]
    fn log_tail_starts_at_the_offset() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("worker-0.out");
        std::fs::write(&p, "old run\nnew 1\nnew 2\n").unwrap();
        assert_eq!(log_tail(&p, 8, 20), "  new 1\n  new 2");
        assert!(log_tail(&tmp.path().join("none"), 0, 20).contains("cannot read"));
    }

    #[test]
    fn used_port_is_detected() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(port_in_use("127.0.0.1", port));
        drop(listener);
        // Another test may take the released port at once: a released port must read as
        // free, so try a few until one was not taken again in between.
        let mut freed = vec![port];
        while port_in_use("127.0.0.1", *freed.last().unwrap()) {
            assert!(
                freed.len() < 20,
                "released ports still read as in use: {freed:?}"
            );
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            freed.push(l.local_addr().unwrap().port());
        }
    }

    #[test]
    fn spawned_child_logs_after_the_marker_in_its_own_session() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("x.out");
        std::fs::write(&log, "earlier\n").unwrap();
        let mut s = spawn(
            Path::new("/bin/sh"),
            &[
                "-c".into(),
                "echo out; echo err >&2; cut -d' ' -f6 /proc/$$/stat".into(),
            ],
            &log,
            "starting x",
        )
        .unwrap();
        assert!(s.child.wait().unwrap().success());
        let tail = log_tail(&log, s.log_start, 10);
        let lines: Vec<&str> = tail.lines().map(str::trim).collect();
        assert_eq!(lines[..3], ["--- starting x ---", "out", "err"], "{tail}");
        // The session id is the child's own pid.
        assert_eq!(lines[3], s.child.id().to_string(), "{tail}");
    }
}

/// Why a started child never answered as ready.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("exited ({0}) before it was ready")]
    Exited(std::process::ExitStatus),
    #[error("cannot be waited for: {0}")]
    Wait(std::io::Error),
    /// `what`: what it did not answer (`ready on port 8080`, `http://.../status`).
    #[error("did not answer {what} within {} s", .limit.as_secs())]
    Timeout { what: String, limit: Duration },
}

/// Polls `GET /status` on `host:port` every 100 ms until `ready` accepts an answer, the child
/// exits, or `limit` passes (`what` names the wait in the timeout's message).
pub fn poll_ready(
    child: &mut Child,
    host: &str,
    port: u16,
    limit: Duration,
    what: impl FnOnce() -> String,
    ready: impl Fn(&worker::http_client::Response) -> bool,
) -> Result<(), NotReady> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Err(NotReady::Exited(status)),
            Ok(None) => {}
            Err(e) => return Err(NotReady::Wait(e)),
        }
        if let Ok(r) = worker::http_client::get(host, port, "/status", Duration::from_secs(1)) {
            if ready(&r) {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(NotReady::Timeout {
                what: what(),
                limit,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
