//! Worker and registry server processes seen from outside: pid files, liveness, "is this really
//! our worker (or registry server)", and stopping one (SIGTERM, a grace period, then SIGKILL).

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How often liveness is polled while waiting for a process to exit.
const POLL: Duration = Duration::from_millis(50);
/// How long to wait for a process to disappear after SIGKILL.
const AFTER_KILL: Duration = Duration::from_secs(5);

/// Reads a pid file: `Ok(None)` if it does not exist.
pub fn read_pid_file(path: &Path) -> anyhow::Result<Option<i32>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let pid: i32 = text
        .trim()
        .parse()
        .with_context(|| format!("{} does not hold a pid: {:?}", path.display(), text.trim()))?;
    if pid <= 0 {
        bail!("{} holds an invalid pid {pid}", path.display());
    }
    Ok(Some(pid))
}

/// Writes a pid file atomically (temporary file, then rename).
pub fn write_pid_file(path: &Path, pid: u32) -> anyhow::Result<()> {
    let tmp = path.with_extension("pid.tmp");
    std::fs::write(&tmp, format!("{pid}\n"))
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Removes a pid file; a missing one is fine.
pub fn remove_pid_file(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

/// True if `pid` exists and is not a zombie.
pub fn is_alive(pid: i32) -> bool {
    match kill(Pid::from_raw(pid), None) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(_) => return false,
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat_state(&stat) != Some('Z'),
        Err(_) => false,
    }
}

/// The state letter of a `/proc/<pid>/stat` line (after the parenthesized command name).
fn stat_state(stat: &str) -> Option<char> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// True if `/proc/<pid>/cmdline` is a lambdaworker worker (see [`cmdline_is_worker`]).
pub fn is_worker_process(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| cmdline_is_worker(&c))
        .unwrap_or(false)
}

/// A worker is `admin worker-exec ...`, `admin workers --foreground ...` or the `worker`
/// binary.
pub fn cmdline_is_worker(cmdline: &[u8]) -> bool {
    let mut args = cmdline.split(|b| *b == 0).filter(|a| !a.is_empty());
    let Some(arg0) = args.next() else {
        return false;
    };
    let base = arg0.rsplit(|b| *b == b'/').next().unwrap_or(arg0);
    let args: Vec<&[u8]> = args.collect();
    base == b"worker"
        || args.contains(&&b"worker-exec"[..])
        || (args.first() == Some(&&b"workers"[..]) && args.contains(&&b"--foreground"[..]))
}

/// True if `cmdline` is a worker started with `config` (`--config=PATH`, `--config PATH`, or the
/// single-dash spellings), comparing canonical paths.
pub fn cmdline_serves_config(cmdline: &[u8], config: &Path) -> bool {
    cmdline_is_worker(cmdline) && cmdline_names_path(cmdline, "config", config)
}

/// A registry server is `admin registry-exec ...` or `admin registry --foreground ...`.
pub fn cmdline_is_registry(cmdline: &[u8]) -> bool {
    let mut args = cmdline.split(|b| *b == 0).filter(|a| !a.is_empty());
    if args.next().is_none() {
        return false;
    }
    let args: Vec<&[u8]> = args.collect();
    args.contains(&&b"registry-exec"[..])
        || (args.first() == Some(&&b"registry"[..]) && args.contains(&&b"--foreground"[..]))
}

/// True if `cmdline` is a registry server of the cluster `cluster` (`--cluster=DIR` or any
/// other spelling), comparing canonical paths.
pub fn cmdline_serves_cluster(cmdline: &[u8], cluster: &Path) -> bool {
    cmdline_is_registry(cmdline) && cmdline_names_path(cmdline, "cluster", cluster)
}

/// True if `cmdline` gives the flag `name` (`--name=PATH`, `--name PATH`, `-name=PATH`,
/// `-name PATH`) a path that is `want` once both are canonicalized.
fn cmdline_names_path(cmdline: &[u8], name: &str, want: &Path) -> bool {
    let want = std::fs::canonicalize(want).unwrap_or_else(|_| want.to_owned());
    let args: Vec<&[u8]> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .collect();
    let same = |raw: &[u8]| {
        let p = Path::new(std::ffi::OsStr::from_bytes(raw));
        std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned()) == want
    };
    let long = format!("--{name}");
    let short = format!("-{name}");
    args.iter().enumerate().any(|(i, a)| {
        for flag in [long.as_bytes(), short.as_bytes()] {
            if let Some(v) = a.strip_prefix(flag).and_then(|r| r.strip_prefix(b"=")) {
                if same(v) {
                    return true;
                }
            }
            if *a == flag && args.get(i + 1).is_some_and(|v| same(v)) {
                return true;
            }
        }
        false
    })
}

/// Live worker processes started with `config`, found by scanning `/proc` (workers started by
/// hand with `worker-exec` have no pid file).
pub fn workers_serving(config: &Path) -> Vec<i32> {
    processes_matching(|c| cmdline_serves_config(c, config))
}

/// Live registry servers of the cluster `cluster` (`admin registry-exec -cluster DIR`), found by
/// scanning `/proc`.
pub fn registries_serving(cluster: &Path) -> Vec<i32> {
    processes_matching(|c| cmdline_serves_cluster(c, cluster))
}

/// True if `/proc/<pid>/cmdline` is a registry server (see [`cmdline_is_registry`]).
pub fn is_registry_process(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| cmdline_is_registry(&c))
        .unwrap_or(false)
}

/// Live processes other than this one whose command line satisfies `matches`, ascending.
fn processes_matching(matches: impl Fn(&[u8]) -> bool) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| *pid != std::process::id() as i32)
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| matches(&c)))
        .filter(|pid| is_alive(*pid))
        .collect();
    pids.sort_unstable();
    pids
}

/// How a process was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It exited after SIGTERM, within the grace period.
    Terminated(Duration),
    /// It had to be killed with SIGKILL.
    Killed,
    /// It was not running.
    NotRunning,
}

/// Sends SIGTERM, waits up to `grace`, then SIGKILL. For processes that are not our children
/// (a child must be reaped by its parent; see `workers` for that case).
pub fn stop(pid: i32, grace: Duration) -> anyhow::Result<Stopped> {
    let started = Instant::now();
    match kill(Pid::from_raw(pid), Signal::SIGTERM) {
        Ok(()) => {}
        Err(Errno::ESRCH) => return Ok(Stopped::NotRunning),
        Err(e) => bail!("cannot send SIGTERM to pid {pid}: {e}"),
    }
    if wait_gone(pid, grace) {
        return Ok(Stopped::Terminated(started.elapsed()));
    }
    match kill(Pid::from_raw(pid), Signal::SIGKILL) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => bail!("cannot send SIGKILL to pid {pid}: {e}"),
    }
    if wait_gone(pid, AFTER_KILL) {
        Ok(Stopped::Killed)
    } else {
        bail!("pid {pid} is still alive {AFTER_KILL:?} after SIGKILL")
    }
}

/// Polls until `pid` is gone or `limit` passed; true if gone.
fn wait_gone(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if !is_alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_match_accepts_every_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("worker-0.json");
        std::fs::write(&cfg, "{}").unwrap();
        let other = dir.path().join("worker-1.json");
        let c = cfg.display().to_string();
        for cmd in [
            format!("/x/admin\0worker-exec\0--config={c}\0"),
            format!("/x/admin\0worker-exec\0--config\0{c}\0"),
            format!("/x/worker\0-config={c}\0"),
        ] {
            assert!(cmdline_serves_config(cmd.as_bytes(), &cfg), "{cmd:?}");
            assert!(!cmdline_serves_config(cmd.as_bytes(), &other), "{cmd:?}");
        }
        let not_worker = format!("/bin/cat\0--config={c}\0");
        assert!(!cmdline_serves_config(not_worker.as_bytes(), &cfg));
    }

    #[test]
    fn registry_cmdlines_are_recognized() {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().display().to_string();
        for cmd in [
            format!("/x/admin\0registry-exec\0--cluster={c}\0"),
            format!("/x/admin\0registry-exec\0-cluster\0{c}/.\0"),
        ] {
            assert!(cmdline_is_registry(cmd.as_bytes()), "{cmd:?}");
            assert!(
                cmdline_serves_cluster(cmd.as_bytes(), dir.path()),
                "{cmd:?}"
            );
            assert!(
                !cmdline_serves_cluster(cmd.as_bytes(), Path::new("/")),
                "{cmd:?}"
            );
            assert!(!cmdline_is_worker(cmd.as_bytes()), "{cmd:?}");
        }
        let worker = format!("/x/admin\0worker-exec\0--cluster={c}\0");
        assert!(!cmdline_serves_cluster(worker.as_bytes(), dir.path()));
        assert!(!cmdline_is_registry(b"registry-exec\0"));
        assert!(cmdline_is_registry(
            b"/x/admin\0registry\0--cluster=/c\0--port=9000\0--foreground\0"
        ));
        assert!(!cmdline_is_registry(b"/x/admin\0registry\0--cluster=/c\0"));
        assert!(!cmdline_is_registry(b""));
    }

    #[test]
    fn worker_cmdlines_are_recognized() {
        assert!(cmdline_is_worker(
            b"/x/bin/admin\0worker-exec\0--config=/c/config/worker-0.json\0"
        ));
        assert!(cmdline_is_worker(b"./bin/worker\0--config=w.json\0"));
        assert!(cmdline_is_worker(b"worker\0"));
        assert!(cmdline_is_worker(
            b"/usr/local/bin/admin\0workers\0--cluster=/c\0--foreground\0"
        ));
        assert!(!cmdline_is_worker(b"/x/admin\0workers\0--cluster=/c\0"));
        assert!(!cmdline_is_worker(b"/usr/bin/python3\0worker-exec.py\0"));
        assert!(!cmdline_is_worker(b"/usr/sbin/sshd\0-D\0"));
        assert!(!cmdline_is_worker(b"/x/networker\0"));
        assert!(!cmdline_is_worker(b""));
    }

    #[test]
    fn stat_state_skips_odd_command_names() {
        assert_eq!(stat_state("123 (worker) S 1 2 3"), Some('S'));
        assert_eq!(stat_state("123 (a) b) Z 1 2 3"), Some('Z'));
        assert_eq!(stat_state("garbage"), None);
    }

    #[test]
    fn pid_files_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("worker-0.pid");
        assert_eq!(read_pid_file(&p).unwrap(), None);
        write_pid_file(&p, 4242).unwrap();
        assert_eq!(read_pid_file(&p).unwrap(), Some(4242));
        std::fs::write(&p, "nonsense").unwrap();
        let err = read_pid_file(&p).unwrap_err().to_string();
        assert!(err.contains("worker-0.pid"), "{err}");
        std::fs::write(&p, "-1").unwrap();
        assert!(read_pid_file(&p).is_err());
        remove_pid_file(&p).unwrap();
        remove_pid_file(&p).unwrap();
    }

    #[test]
    fn liveness_and_stop() {
        assert!(is_alive(std::process::id() as i32));
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        assert!(is_alive(pid));
        // Reap in the background so the child does not linger as a zombie.
        let reaper = std::thread::spawn(move || child.wait());
        let how = stop(pid, Duration::from_secs(5)).unwrap();
        assert!(matches!(how, Stopped::Terminated(_)), "{how:?}");
        reaper.join().unwrap().unwrap();
        assert!(!is_alive(pid));
        assert_eq!(
            stop(pid, Duration::from_secs(1)).unwrap(),
            Stopped::NotRunning
        );
    }
}
