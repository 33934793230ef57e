//! A fake [`Backend`] for the manager's unit tests, needing no root.
//!
//! A fake sandbox is a thread that speaks the runtime's call protocol on one end of a
//! socketpair. What it does with a call is the first word of the lambda's `lambda_func.py`
//! (the registry is a real directory):
//! - `echo` (or anything else): answers `{"lambda", "sandbox", "event", "request_id",
//!   "remaining_ms", "entry", "layers"}` (what the call and the start request carried);
//! - `raise`: answers as a handler that raised `ValueError`;
//! - `sleep N`: answers after N milliseconds; `hang`: never answers;
//! - `die`: prints `Traceback: fake crash` and closes the connection without an answer;
//!   `oom`: closes it, and the OOM killer is said to have ended it;
//! - `print N`: prints N lines `line <i> of <request id>`, half to its stdout and half to its
//!   stderr (one pipe), then answers; `chatty N`: prints N bytes in lines of 1 KiB first;
//!   `partial`: prints `no newline` without one; `after`: answers, then prints `after <request
//!   id>` 50 ms later, as a background thread would.
//!
//! Before its first answer a fake sandbox sends an init report of 5 ms, as the runtime does.
//! The backend records what the manager asked of it (starts, destroys, pauses, kills) and can
//! be told to fail starts or pauses, to report memory, and to say its sandboxes were forked.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::manager::backend::{
    AfterFirstCall, Backend, LambdaRef, PackageDir, SandboxHandle, StartError, StartRequest,
    StartSteps, Started,
};
use crate::packages::{PackageError, PackageStats};
use crate::runtime_client;
use crate::zygote::ImportCacheStats;

/// What the fake saw, and what it is told to do.
#[derive(Debug, Default)]
pub(crate) struct Record {
    pub(crate) started: u64,
    pub(crate) destroyed: u64,
    /// Sandbox ids alive now (started, not destroyed).
    pub(crate) alive: BTreeSet<u64>,
    /// Sandbox ids that are frozen now.
    pub(crate) paused: BTreeSet<u64>,
    pub(crate) pauses: u64,
    pub(crate) unpauses: u64,
    pub(crate) package_installs: u64,
    pub(crate) first_call_jobs: u64,
    pub(crate) kills: Vec<PathBuf>,
    pub(crate) reclaims: u64,
    pub(crate) closed: bool,
    /// Memory per live sandbox, by cgroup.
    pub(crate) memory: BTreeMap<PathBuf, u64>,
    /// Told: these sandboxes' processes have ended.
    pub(crate) dead: BTreeSet<u64>,
    /// Told: the next start fails.
    pub(crate) fail_next_start: bool,
    /// Told: pausing fails.
    pub(crate) fail_pause: bool,
    /// Told: what each new sandbox uses, in bytes.
    pub(crate) memory_per_sandbox: u64,
    /// Told: what the shared part uses, in bytes.
    pub(crate) shared_memory: u64,
    /// Told: sandboxes are forked from a zygote.
    pub(crate) forked: bool,
    /// Told: the peak memory every sandbox's cgroup reports, in bytes.
    pub(crate) peak: Option<u64>,
}

/// The fake backend (see the module docs).
#[derive(Debug, Clone, Default)]
pub(crate) struct FakeBackend {
    record: Arc<Mutex<Record>>,
}

impl FakeBackend {
    pub(crate) fn record(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One fake sandbox.
#[derive(Debug)]
pub(crate) struct FakeSandbox {
    id: u64,
    cgroup: PathBuf,
    forked: bool,
    /// Cleared when the serving thread ends (the sandbox "died").
    alive: Arc<AtomicBool>,
    oom: Arc<AtomicU64>,
    record: Arc<Mutex<Record>>,
}

impl FakeSandbox {
    fn record(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a fake sandbox does with each call (see the module docs).
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    Echo,
    Raise,
    Sleep(u64),
    Hang,
    Die,
    Oom,
    Print(u64),
    Chatty(u64),
    Partial,
    After,
}

/// How long a fake runtime says loading its entry took.
pub(crate) const FAKE_LOAD: Duration = Duration::from_millis(5);

fn behaviour_of(dir: &Path) -> Behaviour {
    let text = std::fs::read_to_string(dir.join("lambda_func.py")).unwrap_or_default();
    let mut words = text.split_whitespace();
    let first = words.next();
    let n = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    match first {
        Some("raise") => Behaviour::Raise,
        Some("sleep") => Behaviour::Sleep(n),
        Some("print") => Behaviour::Print(n),
        Some("chatty") => Behaviour::Chatty(n),
        Some("partial") => Behaviour::Partial,
        Some("after") => Behaviour::After,
        Some("hang") => Behaviour::Hang,
        Some("die") => Behaviour::Die,
        Some("oom") => Behaviour::Oom,
        _ => Behaviour::Echo,
    }
}

/// One request frame in (4-byte length, then the frame); `None` at the end of the connection.
fn read_frame(conn: &mut UnixStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    conn.read_exact(&mut len).ok()?;
    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
    conn.read_exact(&mut frame).ok()?;
    Some(frame)
}

fn write_reply(conn: &mut UnixStream, kind: u8, payload: &[u8]) -> std::io::Result<()> {
    let mut frame = vec![kind];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    conn.write_all(&frame)
}

/// What a fake sandbox prints before it answers a call with `id`.
fn print(out: &mut std::fs::File, behaviour: Behaviour, id: &str) -> std::io::Result<()> {
    match behaviour {
        Behaviour::Print(n) => {
            for i in 0..n {
                out.write_all(format!("line {i} of {id}\n").as_bytes())?;
            }
        }
        Behaviour::Chatty(n) => {
            let mut line = vec![b'y'; 1023];
            line.push(b'\n');
            let mut left = n as usize;
            while left > 0 {
                let k = left.min(line.len());
                out.write_all(&line[..k])?;
                left -= k;
            }
        }
        Behaviour::Partial => out.write_all(b"no newline")?,
        Behaviour::Die => out.write_all(b"Traceback: fake crash\n")?,
        _ => {}
    }
    Ok(())
}

/// The fake runtime: serves calls until the manager closes its end or the behaviour ends it.
fn serve(
    mut conn: UnixStream,
    mut out: std::fs::File,
    started: serde_json::Value,
    behaviour: Behaviour,
    alive: &AtomicBool,
    oom: &AtomicU64,
) {
    let mut init_due = true;
    while let Some(frame) = read_frame(&mut conn) {
        if frame.is_empty() {
            // A probe: the init report alone.
            init_due = false;
            let ns = (FAKE_LOAD.as_nanos() as u64).to_be_bytes();
            if write_reply(&mut conn, runtime_client::INIT_REPORT, &ns).is_err() {
                break;
            }
            continue;
        }
        let Some(req) = runtime_client::decode_request(&frame) else {
            let refused =
                serde_json::json!({"type": "BadRequest", "message": "not a request frame"});
            if write_reply(&mut conn, 2, refused.to_string().as_bytes()).is_err() {
                break;
            }
            continue;
        };
        let event: serde_json::Value = serde_json::from_slice(req.event).unwrap_or_default();
        let remaining_ms = req
            .deadline_ns
            .saturating_sub(runtime_client::monotonic_ns())
            / 1_000_000;
        let mut answer = started.clone();
        answer["event"] = event;
        answer["request_id"] = req.request_id.into();
        answer["remaining_ms"] = remaining_ms.into();
        if print(&mut out, behaviour, req.request_id).is_err() {
            break;
        }
        if std::mem::take(&mut init_due) {
            let ns = (FAKE_LOAD.as_nanos() as u64).to_be_bytes();
            if write_reply(&mut conn, runtime_client::INIT_REPORT, &ns).is_err() {
                break;
            }
        }
        let sent = match behaviour {
            Behaviour::Echo | Behaviour::Print(_) | Behaviour::Chatty(_) | Behaviour::Partial => {
                write_reply(&mut conn, 0, answer.to_string().as_bytes())
            }
            Behaviour::After => {
                let sent = write_reply(&mut conn, 0, answer.to_string().as_bytes());
                std::thread::sleep(Duration::from_millis(50));
                let _ = out.write_all(format!("after {}\n", req.request_id).as_bytes());
                sent
            }
            Behaviour::Raise => {
                let raised = serde_json::json!({"type": "ValueError", "message": "boom", "traceback": "Traceback: boom"});
                write_reply(&mut conn, 1, raised.to_string().as_bytes())
            }
            Behaviour::Sleep(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                write_reply(&mut conn, 0, answer.to_string().as_bytes())
            }
            Behaviour::Hang => {
                // Until the manager gives up and closes its end.
                let _ = read_frame(&mut conn);
                break;
            }
            Behaviour::Die => break,
            Behaviour::Oom => {
                oom.store(1, Ordering::SeqCst);
                break;
            }
        };
        if sent.is_err() {
            break;
        }
    }
    alive.store(false, Ordering::SeqCst);
}

impl Backend for FakeBackend {
    type Sandbox = FakeSandbox;

    fn packages(&self, _lambda: &LambdaRef) -> Result<Vec<PackageDir>, PackageError> {
        self.record().package_installs += 1;
        Ok(Vec::new())
    }

    fn start(&self, req: &StartRequest<'_>) -> Result<Started<FakeSandbox>, StartError> {
        let mut record = self.record();
        if std::mem::take(&mut record.fail_next_start) {
            return Err(StartError::Io {
                what: "create",
                path: PathBuf::from(format!("fake/{}", req.id)),
                source: std::io::Error::other("the fake was told to fail"),
            });
        }
        let (ours, theirs) = UnixStream::pair().map_err(|source| StartError::Io {
            what: "pair",
            path: PathBuf::from("fake"),
            source,
        })?;
        ours.set_nonblocking(true).map_err(StartError::Register)?;
        let (output, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(StartError::OutputPipe)?;
        let write = std::fs::File::from(write);
        let cgroup = PathBuf::from(format!("fake/sb-{}", req.id));
        let alive = Arc::new(AtomicBool::new(true));
        let oom = Arc::new(AtomicU64::new(0));
        let behaviour = behaviour_of(&req.lambda.handler.dir);
        let setup = &req.lambda.setup;
        let layers: Vec<String> = setup
            .layers
            .iter()
            .map(|l| format!("{}:{} {}", l.name, l.version, l.sys_path()))
            .collect();
        let started = serde_json::json!({
            "lambda": req.lambda.name.to_string(),
            "sandbox": req.id,
            "entry": setup.entry.to_string(),
            "layers": layers,
        });
        let (a, o) = (Arc::clone(&alive), Arc::clone(&oom));
        std::thread::spawn(move || serve(theirs, write, started, behaviour, &a, &o));
        record.started += 1;
        record.alive.insert(req.id);
        let memory = record.memory_per_sandbox;
        record.memory.insert(cgroup.clone(), memory);
        Ok(Started {
            sandbox: FakeSandbox {
                id: req.id,
                cgroup,
                forked: record.forked,
                alive,
                oom,
                record: Arc::clone(&self.record),
            },
            conn: ours,
            output,
            steps: StartSteps::Forked(Duration::ZERO),
        })
    }

    fn after_first_call(&self, sandbox: &FakeSandbox) -> Option<AfterFirstCall> {
        if !sandbox.forked {
            return None;
        }
        let record = Arc::clone(&self.record);
        Some(Box::new(move || {
            record
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .first_call_jobs += 1;
        }))
    }

    fn memory_of(&self, cgroup: &Path) -> u64 {
        self.record().memory.get(cgroup).copied().unwrap_or(0)
    }

    fn peak_reader(&self) -> crate::logs::PeakReader {
        let record = Arc::clone(&self.record);
        Arc::new(move |_cgroup: &Path| record.lock().unwrap_or_else(|p| p.into_inner()).peak)
    }

    fn kill(&self, cgroup: &Path) {
        self.record().kills.push(cgroup.to_owned());
    }

    fn shared_memory(&self) -> u64 {
        self.record().shared_memory
    }

    fn reclaim_shared(&self) -> bool {
        let mut record = self.record();
        record.reclaims += 1;
        let had = record.shared_memory > 0;
        record.shared_memory = 0;
        had
    }

    fn start_shared(&self) {}

    fn close(&self) {
        self.record().closed = true;
    }

    fn shared_alive(&self) -> bool {
        false
    }

    fn remove_stale_package_staging(&self) -> usize {
        0
    }

    fn user_namespace_stats(&self) -> crate::identity::UserNsStats {
        crate::identity::UserNsStats::default()
    }

    fn import_cache_stats(&self) -> ImportCacheStats {
        ImportCacheStats {
            enabled: false,
            package_zygotes: false,
            zygotes: Vec::new(),
            created: 0,
            retired: 0,
            forks: 0,
            fork_failures: 0,
            memory_mb: 0.0,
        }
    }

    fn package_stats(&self) -> PackageStats {
        PackageStats::default()
    }
}

impl SandboxHandle for FakeSandbox {
    fn pid(&self) -> i32 {
        1000 + self.id as i32
    }

    fn cgroup(&self) -> &Path {
        &self.cgroup
    }

    fn forked(&self) -> bool {
        self.forked
    }

    fn is_alive(&mut self) -> bool {
        self.alive.load(Ordering::SeqCst) && !self.record().dead.contains(&self.id)
    }

    fn set_paused(&mut self, paused: bool) -> Result<(), sandbox::SandboxError> {
        let mut record = self.record();
        if paused && record.fail_pause {
            return Err(sandbox::SandboxError::Sys {
                pid: self.pid(),
                what: "freeze",
                errno: nix::errno::Errno::EIO,
            });
        }
        if paused {
            record.pauses += 1;
            record.paused.insert(self.id);
        } else {
            record.unpauses += 1;
            record.paused.remove(&self.id);
        }
        Ok(())
    }

    fn oom_kills(&self) -> u64 {
        self.oom.load(Ordering::SeqCst)
    }

    fn destroy(self) {
        let mut record = self.record();
        record.destroyed += 1;
        record.alive.remove(&self.id);
        record.paused.remove(&self.id);
        record.memory.remove(&self.cgroup);
    }
}
