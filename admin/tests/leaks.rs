//! Nothing is leaked, proved through the real binaries (root only): `admin new`, `admin workers`,
//! HTTP calls, then either `admin kill` or `kill -9` of the worker and a restart.
//!
//! A [`Snapshot`] (`leaks/snapshot.rs`) records what this one cluster could own: mount points under the cluster
//! directory, cgroup directories below the worker's cgroup parent (every hierarchy), processes
//! that belong to the cluster, scratch entries under `workers/worker-0/{handlers,import-cache}`,
//! and open file descriptors (of any process) into the cluster directory. For both
//! `import_cache: true` (sandboxes forked from zygotes) and `false` (fresh interpreters):
//!
//! - A: start a worker, make calls (two sandboxes for one lambda, a file written to `/host` and
//!   `/tmp`, sandboxes paused by the freezer, one call still running), check that the live
//!   snapshot does show all that, `admin kill`: the snapshot equals the one taken before any
//!   worker ran.
//! - B: start a worker and record its snapshot at ready; make the same calls, `kill -9` the
//!   worker, check that leftovers are there (cgroups, scratch mounts, with fresh sandboxes their
//!   processes), start it again with `admin workers`: once ready, no process of the crashed run
//!   is alive and the worker looks exactly like the freshly started one (same mounts, cgroups,
//!   scratch entries, processes, open files, and the same number of worker fds); it serves; and
//!   after `admin kill` the snapshot again equals the one taken before any worker ran.
//! - C: start a worker, make the same calls, `kill -9` it, and run `admin kill` without a
//!   restart: the snapshot equals the one taken before any worker ran.
//!
//! Everything is scoped to this test's cluster, so tests of other binaries may run alongside.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const ADMIN: &str = env!("CARGO_BIN_EXE_admin");

/// One process: its pid and start time (see [`Proc::start`]).
type ProcId = (i32, u64);
/// A call running on a thread: its status and body, or why there is none.
type CallThread = JoinHandle<std::io::Result<(u16, String)>>;

/// The handlers every round uses. `long` is still running when the worker is stopped.
const HANDLERS: &[(&str, &str)] = &[
    (
        "hello",
        "def handler(event):\n    return 'hello ' + event.get('name', '?')\n",
    ),
    (
        "sleepy",
        "import time\n\ndef handler(event):\n    time.sleep(0.5)\n    return 'slept'\n",
    ),
    (
        "writer",
        "def handler(event):\n    for path in ('/host/written.txt', '/tmp/written.txt'):\n        with open(path, 'w') as f:\n            f.write('x' * 4096)\n    return 'written'\n",
    ),
    (
        "long",
        "import time\n\ndef handler(event):\n    time.sleep(120)\n    return 'too late'\n",
    ),
];

/// Sandboxes [`exercise`] leaves: hello, writer, sleepy twice (all paused), long (busy).
const SANDBOXES: usize = 5;
const PAUSED: usize = 4;

#[path = "leaks/snapshot.rs"]
mod snapshot;

use snapshot::{alive, fd_count, stat, Scope, Snapshot};

// ---------------------------------------------------------------------------------------------
// The cluster, admin and HTTP
// ---------------------------------------------------------------------------------------------

/// A temporary cluster. Dropping it runs `admin kill` (which also removes leftovers of a crashed
/// worker) before the directory goes, so a failed assertion leaks nothing into later tests.
#[derive(Debug)]
struct Cluster {
    scope: Scope,
    port: u16,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    fn new() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("lw-leaks")
            .tempdir()
            .expect("tempdir");
        let dir = tmp.path().join("cluster");
        admin(&["new", "-cluster", &dir.display().to_string()]);
        let cluster = std::fs::canonicalize(&dir).expect("canonical cluster dir");
        let worker_dir = cluster.join("workers/worker-0");
        // It does not exist yet: canonicalize in cgroup_parent_for falls back to the path as
        // given, which is canonical already; checked again once the worker made it.
        let cgroup_parent = worker::config::cgroup_parent_for(&worker_dir)
            .display()
            .to_string();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("local addr").port()
        };
        Self {
            scope: Scope {
                cluster,
                worker_dir,
                cgroup_parent,
            },
            port,
            _tmp: tmp,
        }
    }

    fn flag(&self) -> String {
        format!("-cluster={}", self.scope.cluster.display())
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot::take(&self.scope)
    }

    fn add_handler(&self, name: &str, source: &str) {
        let d = self.scope.cluster.join("registry").join(name);
        std::fs::create_dir_all(&d).expect("handler dir");
        std::fs::write(d.join("lambda_func.py"), source).expect("write handler");
    }

    fn setconf(&self, json: &str) {
        admin(&["setconf", &self.flag(), json]);
    }

    /// `admin workers`; returns the worker's pid (from its pid file) and start time.
    fn start_worker(&self) -> ProcId {
        let started = Instant::now();
        admin(&["workers", &self.flag(), &format!("--port={}", self.port)]);
        eprintln!(
            "  admin workers: ready after {:.2} s",
            started.elapsed().as_secs_f64()
        );
        let pid_file = self.scope.cluster.join("logs/worker-0.pid");
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid in the pid file");
        let start = stat(pid).expect("the worker runs").start;
        (pid, start)
    }

    /// `admin kill`, which must succeed.
    fn kill(&self) {
        let started = Instant::now();
        let out = admin(&["kill", &self.flag()]);
        eprintln!(
            "  admin kill ({:.2} s): {}",
            started.elapsed().as_secs_f64(),
            out.trim()
        );
        assert!(
            !self.scope.cluster.join("logs/worker-0.pid").exists(),
            "admin kill left the pid file"
        );
    }

    /// The snapshot once it stopped changing (unchanged over 3 looks 100 ms apart), and the
    /// worker's fd count then. At ready the root zygote may still be forking its spares.
    fn settled(&self, worker: i32) -> (Snapshot, usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = (self.snapshot(), fd_count(worker));
        let mut same = 0;
        while same < 3 {
            assert!(
                Instant::now() < deadline,
                "the worker's state does not settle: {last:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
            let now = (self.snapshot(), fd_count(worker));
            if now == last {
                same += 1;
            } else {
                same = 0;
                last = now;
            }
        }
        last
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        match Command::new(ADMIN).arg("kill").arg(self.flag()).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "cleanup: admin kill failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("cleanup: cannot run admin kill: {e}"),
        }
    }
}

/// Runs `admin ARGS`, which must exit 0; returns its stdout.
fn admin(args: &[&str]) -> String {
    let out = Command::new(ADMIN)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run admin {args:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "admin {args:?}: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// One HTTP/1.1 request with `Connection: close`; status and body.
fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

fn call(port: u16, name: &str, body: &str) -> (u16, String) {
    http(port, "POST", &format!("/runLambda/{name}"), body)
        .unwrap_or_else(|e| panic!("call {name}: {e}"))
}

fn stats(port: u16) -> Value {
    let (status, text) = http(port, "GET", "/stats", "").expect("GET /stats");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).expect("/stats is JSON")
}

/// Makes the calls of a round and waits until the worker holds [`SANDBOXES`] sandboxes,
/// [`PAUSED`] of them paused and `long`'s busy. Returns the stats then and the call to `long`,
/// which is still running.
fn exercise(port: u16) -> (Value, CallThread) {
    let long = std::thread::spawn(move || http(port, "POST", "/runLambda/long", "{}"));
    assert_eq!(
        call(port, "hello", r#"{"name": "a"}"#),
        (200, "\"hello a\"".to_owned())
    );
    assert_eq!(
        call(port, "hello", r#"{"name": "b"}"#),
        (200, "\"hello b\"".to_owned())
    );
    assert_eq!(call(port, "writer", "{}"), (200, "\"written\"".to_owned()));
    // Two calls at once: two sandboxes of one lambda.
    let sleepers: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || call(port, "sleepy", "{}")))
        .collect();
    for s in sleepers {
        assert_eq!(
            s.join().expect("sleepy call"),
            (200, "\"slept\"".to_owned())
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = stats(port);
        let sandboxes = st["sandboxes"].as_array().cloned().unwrap_or_default();
        let count = |key: &str, value: &str| sandboxes.iter().filter(|s| s[key] == value).count();
        let long_busy = sandboxes
            .iter()
            .any(|s| s["lambda"] == "long" && s["state"] == "busy");
        if sandboxes.len() == SANDBOXES
            && count("lambda", "sleepy") == 2
            && count("state", "paused") == PAUSED
            && long_busy
        {
            return (st, long);
        }
        assert!(
            Instant::now() < deadline,
            "expected {SANDBOXES} sandboxes ({PAUSED} paused, long busy): {st:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pids (with start times) of the sandboxes and zygotes in `/stats`.
fn sandbox_and_zygote_pids(st: &Value) -> (Vec<ProcId>, Vec<ProcId>) {
    let ids = |list: &Value| -> Vec<ProcId> {
        list.as_array()
            .into_iter()
            .flatten()
            .map(|x| {
                let pid = x["pid"].as_i64().expect("a pid in /stats") as i32;
                let start = stat(pid)
                    .unwrap_or_else(|| panic!("pid {pid} from /stats is not running"))
                    .start;
                (pid, start)
            })
            .collect()
    };
    (ids(&st["sandboxes"]), ids(&st["import_cache"]["zygotes"]))
}

/// The live snapshot shows what the worker made: the checks below can fail.
fn assert_visible(live: &Snapshot, s0: &Snapshot, worker: i32, pids: &[ProcId]) {
    assert_ne!(live, s0, "the snapshot does not see the worker");
    assert!(live.processes.contains_key(&worker), "worker not seen");
    for (pid, _) in pids {
        let p = live
            .processes
            .get(pid)
            .unwrap_or_else(|| panic!("sandbox/zygote pid {pid} not seen: {live:#?}"));
        assert!(
            p.cgroup.is_some(),
            "pid {pid} not seen in its cgroup: {p:?}"
        );
    }
    assert!(
        live.mounts.len() >= SANDBOXES,
        "one scratch tmpfs per sandbox: {:?}",
        live.mounts
    );
    assert!(live.cgroups.len() > SANDBOXES, "{:?}", live.cgroups);
    assert!(
        live.scratch
            .iter()
            .any(|e| e.starts_with("handlers/writer/") && e.ends_with("/written.txt")),
        "writer's /host file: {:?}",
        live.scratch
    );
    // Sandboxes write their output into the worker's pipes; the worker holds the functions'
    // log files open.
    assert!(
        live.fds
            .values()
            .any(|(_, path)| path.starts_with("logs/functions/") && path.ends_with("/worker-0.log")),
        "the worker's open function logs: {:?}",
        live.fds
    );
}

/// Waits (up to 5 s) for the call that was in flight when the worker stopped to end, and says
/// how it ended.
fn finish_long_call(long: CallThread) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !long.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the in-flight call did not end with the worker"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    match long.join().expect("long call thread") {
        Ok((0, _)) => "connection closed without an answer".to_owned(),
        Ok((status, body)) => format!("{status} {}", body.trim()),
        Err(e) => format!("connection error ({e})"),
    }
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

/// SIGKILL of the worker, and its end (within 5 s): its main thread dead and every other
/// thread gone too. A killed process's leader turns zombie before its other threads have
/// exited, and its files (the listening socket among them) are closed only by the last one.
fn kill_9((worker, start): ProcId) {
    kill(Pid::from_raw(worker), Signal::SIGKILL).expect("SIGKILL the worker");
    let deadline = Instant::now() + Duration::from_secs(5);
    let threads = || std::fs::read_dir(format!("/proc/{worker}/task")).map_or(0, |d| d.count());
    while alive(worker, start) || threads() > 1 {
        assert!(Instant::now() < deadline, "the worker survived SIGKILL");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn nothing_left_after_admin_kill_or_kill_9_and_restart() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!(
            "skipping nothing_left_after_admin_kill_or_kill_9_and_restart: needs root (namespaces, mounts, cgroups)"
        );
        return;
    }
    let test_started = Instant::now();
    let c = Cluster::new();
    for (name, source) in HANDLERS {
        c.add_handler(name, source);
    }
    // Idle sandboxes are frozen soon; a call still running gets 1 s at shutdown.
    c.setconf(r#"{"pause_after_ms": 200, "shutdown_timeout_s": 1}"#);
    let s0 = c.snapshot();
    eprintln!(
        "cluster {} (cgroup parent {}, port {})",
        c.scope.cluster.display(),
        c.scope.cgroup_parent,
        c.port
    );
    eprintln!("S0 before any worker: {}", s0.counts());

    for import_cache in [true, false] {
        eprintln!("== import_cache: {import_cache}");
        c.setconf(&format!(r#"{{"import_cache": {import_cache}}}"#));

        // A: admin kill.
        eprintln!("-- A: admin kill");
        let (worker, _) = c.start_worker();
        let cfg = worker::config::Config::load(&c.scope.cluster.join("config/worker-0.json"))
            .expect("worker-0.json");
        assert_eq!(cfg.worker_dir, c.scope.worker_dir);
        assert_eq!(
            cfg.cgroup_parent().display().to_string(),
            c.scope.cgroup_parent
        );
        let (st, long) = exercise(c.port);
        let (sandboxes, zygotes) = sandbox_and_zygote_pids(&st);
        assert_eq!(zygotes.is_empty(), !import_cache, "zygotes: {st:#}");
        let pids: Vec<ProcId> = sandboxes.iter().chain(&zygotes).copied().collect();
        let live = c.snapshot();
        eprintln!(
            "  live: {} sandboxes ({PAUSED} paused, 1 busy), {} zygotes; snapshot: {}",
            sandboxes.len(),
            zygotes.len(),
            live.counts()
        );
        assert_visible(&live, &s0, worker, &pids);
        c.kill();
        let after = c.snapshot();
        eprintln!("  after admin kill: {}", after.counts());
        assert_eq!(after, s0, "admin kill left something behind");
        for (pid, start) in &pids {
            assert!(!alive(*pid, *start), "pid {pid} outlived admin kill");
        }
        eprintln!("  in-flight call ended: {}", finish_long_call(long));

        // B: kill -9, then a restart.
        eprintln!("-- B: kill -9 and restart");
        let (worker, worker_start) = c.start_worker();
        let (r0, fds0) = c.settled(worker);
        eprintln!("  R0 at ready: {}; worker has {fds0} fds", r0.counts());
        let (st, long) = exercise(c.port);
        let (sandboxes, zygotes) = sandbox_and_zygote_pids(&st);
        let mut crashed_pids: Vec<ProcId> = sandboxes.iter().chain(&zygotes).copied().collect();
        assert_visible(&c.snapshot(), &s0, worker, &crashed_pids);
        crashed_pids.push((worker, worker_start));
        kill_9((worker, worker_start));
        eprintln!("  in-flight call ended: {}", finish_long_call(long));
        let left = c.snapshot();
        let sandboxes_alive = sandboxes.iter().filter(|(p, s)| alive(*p, *s)).count();
        let zygotes_alive = zygotes.iter().filter(|(p, s)| alive(*p, *s)).count();
        eprintln!(
            "  left by the crash: {}; {sandboxes_alive}/{} sandboxes and {zygotes_alive}/{} zygotes still alive",
            left.counts(),
            sandboxes.len(),
            zygotes.len()
        );
        for (pid, start) in sandboxes.iter().chain(&zygotes) {
            if alive(*pid, *start) {
                assert!(
                    left.processes.contains_key(pid),
                    "pid {pid}, left by the crash, not seen by the snapshot: {left:#?}"
                );
            }
        }
        assert_ne!(
            left, s0,
            "a crash leaves something (else this proves nothing)"
        );
        assert!(!left.cgroups.is_empty(), "the crashed run's cgroups");
        assert!(
            left.mounts.len() >= SANDBOXES,
            "the crashed run's scratch mounts"
        );
        assert!(!left.processes.contains_key(&worker));
        if !import_cache {
            assert_eq!(
                sandboxes_alive,
                sandboxes.len(),
                "fresh sandboxes outlive a SIGKILLed worker"
            );
        }

        let (restarted, _) = c.start_worker();
        // Right at ready: the crashed run is gone.
        let at_ready = c.snapshot();
        for (pid, start) in &crashed_pids {
            assert!(
                !alive(*pid, *start),
                "pid {pid} of the crashed run is alive after the restart"
            );
        }
        for m in &left.mounts {
            assert!(!at_ready.mounts.contains(m), "crashed run's mount {m} left");
        }
        assert!(
            !at_ready.scratch.iter().any(|e| e.starts_with("handlers/")),
            "crashed run's scratch left: {:?}",
            at_ready.scratch
        );
        let (r1, fds1) = c.settled(restarted);
        eprintln!(
            "  restarted at ready: {}; worker has {fds1} fds",
            r1.counts()
        );
        assert_eq!(
            r1.shape(),
            r0.shape(),
            "the restarted worker differs from a freshly started one"
        );
        assert_eq!(fds1, fds0, "worker fds at ready: restarted vs fresh");
        assert_eq!(
            call(c.port, "hello", r#"{"name": "again"}"#),
            (200, "\"hello again\"".to_owned())
        );
        c.kill();
        let after = c.snapshot();
        eprintln!("  after admin kill: {}", after.counts());
        assert_eq!(
            after, s0,
            "admin kill after a restart left something behind"
        );

        // C: kill -9, then admin kill without a restart: it cleans up what the crash left.
        eprintln!("-- C: kill -9, then admin kill");
        let (worker, worker_start) = c.start_worker();
        let (st, long) = exercise(c.port);
        let (sandboxes, zygotes) = sandbox_and_zygote_pids(&st);
        kill_9((worker, worker_start));
        eprintln!("  in-flight call ended: {}", finish_long_call(long));
        let left = c.snapshot();
        eprintln!("  left by the crash: {}", left.counts());
        assert_ne!(
            left, s0,
            "a crash leaves something (else this proves nothing)"
        );
        c.kill();
        let after = c.snapshot();
        eprintln!("  after admin kill: {}", after.counts());
        assert_eq!(after, s0, "admin kill after a crash left something behind");
        for (pid, start) in sandboxes.iter().chain(&zygotes) {
            assert!(!alive(*pid, *start), "pid {pid} outlived admin kill");
        }
    }
    eprintln!(
        "leaks: passed in {:.1} s",
        test_started.elapsed().as_secs_f64()
    );
}
