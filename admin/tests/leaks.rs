//! Nothing is leaked, proved through the real binaries (root only): `admin new`, `admin workers`,
//! HTTP calls, then either `admin kill` or `kill -9` of the worker and a restart.
//!
//! A [`Snapshot`] records what this one cluster could own: mount points under the cluster
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

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
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

// ---------------------------------------------------------------------------------------------
// Snapshot
// ---------------------------------------------------------------------------------------------

/// What a snapshot looks at: one cluster and its worker-0.
#[derive(Debug)]
struct Scope {
    /// The cluster directory, canonical (as the worker sees it).
    cluster: PathBuf,
    /// `cluster/workers/worker-0`.
    worker_dir: PathBuf,
    /// `lambdaworker/w-<hex>`, relative to each cgroup hierarchy's root.
    cgroup_parent: String,
}

impl Scope {
    /// The part of `path` (a cgroup path) below the cgroup parent: `"."` for the parent itself,
    /// `"zs-2"` for `/lambdaworker/w-<hex>/zs-2`; `None` when it is not at or below it.
    fn below_parent(&self, path: &str) -> Option<String> {
        let needle = format!("/{}", self.cgroup_parent);
        let at = path.find(&needle)?;
        let rest = &path[at + needle.len()..];
        if rest.is_empty() {
            Some(".".to_owned())
        } else {
            rest.strip_prefix('/').map(str::to_owned)
        }
    }

    /// `path` relative to the cluster directory, if it lies in it.
    fn in_cluster(&self, path: &Path) -> Option<String> {
        path.strip_prefix(&self.cluster)
            .ok()
            .map(|p| p.display().to_string())
    }
}

/// A process that belongs to the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Proc {
    comm: String,
    /// Start time (clock ticks after boot): a pid plus this names one process, even if the pid
    /// is reused.
    start: u64,
    /// Its cgroup below the cgroup parent, if it is in one (`zy-1`, `sb-3`, ...).
    cgroup: Option<String>,
    /// Why it counts: `cgroup`, `cmdline`, `child` or `ancestor` (see [`processes`]).
    why: &'static str,
}

/// Everything of one cluster that must be gone once its workers are stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    /// Mount points under the cluster directory (`/proc/self/mountinfo`).
    mounts: Vec<String>,
    /// Cgroup directories (full paths, every hierarchy) at or below the cgroup parent.
    cgroups: Vec<String>,
    /// Processes of the cluster, by pid.
    processes: BTreeMap<i32, Proc>,
    /// Entries under `workers/worker-0/handlers` and `.../import-cache`, relative to worker-0.
    scratch: Vec<String>,
    /// Open files into the cluster directory: (pid, fd) => (command, path in the cluster).
    fds: BTreeMap<(i32, i32), (String, String)>,
}

/// The parts of a snapshot that do not depend on pids or start times: two workers started the
/// same way on the same directory have the same shape.
#[derive(Debug, PartialEq, Eq)]
struct Shape {
    mounts: usize,
    cgroups: Vec<String>,
    scratch: Vec<String>,
    /// `comm [cgroup below the parent or why]`, sorted.
    processes: Vec<String>,
    /// `comm fd -> path in the cluster`, sorted.
    fds: Vec<String>,
}

impl Snapshot {
    fn take(scope: &Scope) -> Self {
        Self {
            mounts: mounts(scope),
            cgroups: cgroups(scope),
            processes: processes(scope),
            scratch: scratch(scope),
            fds: fds(scope),
        }
    }

    fn shape(&self) -> Shape {
        let mut processes: Vec<String> = self
            .processes
            .values()
            .map(|p| format!("{} [{}]", p.comm, p.cgroup.as_deref().unwrap_or(p.why)))
            .collect();
        processes.sort();
        let mut fds: Vec<String> = self
            .fds
            .iter()
            .map(|((_, fd), (comm, path))| format!("{comm} {fd} -> {path}"))
            .collect();
        fds.sort();
        Shape {
            mounts: self.mounts.len(),
            cgroups: self.cgroups.clone(),
            scratch: self.scratch.clone(),
            processes,
            fds,
        }
    }

    /// One line of counts, for the log.
    fn counts(&self) -> String {
        format!(
            "{} mounts, {} cgroup dirs, {} processes, {} scratch entries, {} open files",
            self.mounts.len(),
            self.cgroups.len(),
            self.processes.len(),
            self.scratch.len(),
            self.fds.len()
        )
    }
}

/// Mount points under the cluster directory, as the test's (the host's) mount namespace lists
/// them: the worker mounts each scratch tmpfs there; sandbox mounts live in their own namespaces.
fn mounts(scope: &Scope) -> Vec<String> {
    let mut found: Vec<String> = sandbox::mountinfo::mount_points()
        .expect("read mountinfo")
        .iter()
        .filter_map(|p| scope.in_cluster(p))
        .collect();
    found.sort();
    found
}

/// Cgroup directories at or below the cgroup parent, in every hierarchy under `/sys/fs/cgroup`
/// (v1 controllers, the named `systemd` one, `unified`), wherever they are nested.
fn cgroups(scope: &Scope) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::from("/sys/fs/cgroup")];
    while let Some(dir) = stack.pop() {
        // A cgroup can vanish while we walk (the worker removes one): skip it.
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            // Not following links: `cpu,cpuacct`-style aliases would list a hierarchy twice.
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = entry.path();
            let text = path.display().to_string();
            if scope.below_parent(&text).is_some() {
                found.push(text);
            }
            stack.push(path);
        }
    }
    found.sort();
    found
}

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug)]
struct Stat {
    comm: String,
    state: char,
    ppid: i32,
    start: u64,
}

fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_owned();
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    Some(Stat {
        comm,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        // Field 22 of stat(5); `fields` starts at field 3.
        start: fields.get(19)?.parse().ok()?,
    })
}

/// How many pid namespaces `/proc/<pid>` is in (the `NSpid` line of its status: one pid per
/// namespace, from /proc's own down to the process's).
fn pid_ns_depth(pid: &str) -> Option<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    Some(line.split_whitespace().count() - 1)
}

/// Pids listed in `/proc` (thread group leaders), except this test process.
fn all_pids() -> Vec<i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .filter(|pid| *pid != me)
        .collect()
}

/// The processes of the cluster. A process counts if
/// - `cgroup`: `/proc/<pid>/cgroup` names a cgroup at or below the worker's cgroup parent. Every
///   sandbox and zygote process joins its cgroup before it runs anything (a fork of a zygote
///   joins its spare's cgroup), and an unprivileged sandbox cannot move itself out, so this
///   finds them all, in whatever pid namespace, also after the worker is gone;
/// - `cmdline`: an argument names a path in the cluster directory: the worker itself
///   (`admin worker-exec --config=<cluster>/config/worker-0.json`);
/// - `child`: it descends from a process counted above (anything else the worker starts, for as
///   long as it has not been reparented);
/// - `ancestor`: it is the parent of a process counted above and lives in a deeper pid namespace
///   than this test: a sandbox's own pid namespace. This is the one the others miss: a zygote
///   killed with its worker (`kill -9`) stays in its exit, outside any cgroup and with an empty
///   cmdline, until the frozen (paused) sandboxes forked from it are thawed and die.
///
/// The cgroup parent is a hash of this cluster's worker directory, and the cluster directory is
/// a fresh temporary one, so other tests' workers never match. Left out: this test process (it
/// holds nothing but its own handles), `admin` commands (none runs while a snapshot is taken),
/// and zombies: a zombie holds no resource but its pid, and a worker that died (`kill -9`, or
/// after `admin kill`) is reaped by init, not by anything of the cluster.
fn processes(scope: &Scope) -> BTreeMap<i32, Proc> {
    let cluster = scope.cluster.as_os_str().as_bytes();
    let own_depth = pid_ns_depth("self").expect("NSpid of this process");
    let mut candidates: BTreeMap<i32, (Stat, Option<String>, Option<&'static str>)> =
        BTreeMap::new();
    for pid in all_pids() {
        let Some(st) = stat(pid) else { continue };
        if st.state == 'Z' || st.state == 'X' {
            continue;
        }
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .ok()
            .and_then(|text| {
                text.lines()
                    .filter_map(|line| line.splitn(3, ':').nth(2))
                    .find_map(|path| scope.below_parent(path))
            });
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let names_cluster = cmdline
            .split(|b| *b == 0)
            .any(|arg| arg.windows(cluster.len()).any(|w| w == cluster));
        let why = if cgroup.is_some() {
            Some("cgroup")
        } else if names_cluster {
            Some("cmdline")
        } else {
            None
        };
        candidates.insert(pid, (st, cgroup, why));
    }
    // Children, and parents inside sandbox pid namespaces, of what matched, until nothing
    // changes.
    loop {
        let matched: BTreeSet<i32> = candidates
            .iter()
            .filter(|(_, (_, _, why))| why.is_some())
            .map(|(pid, _)| *pid)
            .collect();
        let parents: BTreeSet<i32> = candidates
            .iter()
            .filter(|(_, (_, _, why))| why.is_some())
            .map(|(_, (st, _, _))| st.ppid)
            .collect();
        let mut grew = false;
        for (pid, (st, _, why)) in candidates.iter_mut() {
            if why.is_some() {
                continue;
            }
            if matched.contains(&st.ppid) {
                *why = Some("child");
                grew = true;
            } else if parents.contains(pid)
                && pid_ns_depth(&pid.to_string()).is_some_and(|d| d > own_depth)
            {
                *why = Some("ancestor");
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    candidates
        .into_iter()
        .filter_map(|(pid, (st, cgroup, why))| {
            why.map(|why| {
                (
                    pid,
                    Proc {
                        comm: st.comm,
                        start: st.start,
                        cgroup,
                        why,
                    },
                )
            })
        })
        .collect()
}

/// Every entry (recursive, relative to worker-0) under `handlers/` and `import-cache/`.
fn scratch(scope: &Scope) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack: Vec<PathBuf> = ["handlers", "import-cache"]
        .iter()
        .map(|d| scope.worker_dir.join(d))
        .collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if let Ok(rel) = path.strip_prefix(&scope.worker_dir) {
                found.push(rel.display().to_string());
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Open file descriptors, of any process but this test, whose target is in the cluster.
fn fds(scope: &Scope) -> BTreeMap<(i32, i32), (String, String)> {
    let mut found = BTreeMap::new();
    for pid in all_pids() {
        let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for entry in entries.flatten() {
            let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let Ok(target) = std::fs::read_link(entry.path()) else {
                continue;
            };
            if let Some(rel) = scope.in_cluster(&target) {
                let comm = stat(pid).map(|s| s.comm).unwrap_or_default();
                found.insert((pid, fd), (comm, rel));
            }
        }
    }
    found
}

/// Number of open file descriptors of `pid`.
fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("cannot list the fds of pid {pid}: {e}"))
        .count()
}

/// True while the process (pid and start time) lives and is not a zombie.
fn alive(pid: i32, start: u64) -> bool {
    stat(pid).is_some_and(|s| s.start == start && s.state != 'Z' && s.state != 'X')
}

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
    assert!(
        live.fds
            .values()
            .any(|(_, path)| path.contains("handlers/")),
        "sandboxes' open stdout/stderr: {:?}",
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

/// SIGKILL of the worker, and its end (within 5 s).
fn kill_9((worker, start): ProcId) {
    kill(Pid::from_raw(worker), Signal::SIGKILL).expect("SIGKILL the worker");
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(worker, start) {
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
