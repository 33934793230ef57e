//! Test support: a real worker on a temporary cluster, and a minimal HTTP client.

#![allow(dead_code)]

pub mod clients;
pub mod process;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use admin::cluster::{create_cluster, CreateOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use worker::config::Config;
use worker::Worker;

/// True when the test can run here; otherwise prints why it skips.
pub fn can_run(test: &str) -> bool {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipping {test}: needs root (namespaces, mounts, cgroups)");
        return false;
    }
    true
}

/// Writes credentials `key`/`secret` to `<dir>/credentials.json` (a `credentials_file` for
/// the worker's config, which then verifies signatures); its path.
pub fn credentials_file(dir: &Path, key: &str, secret: &str) -> PathBuf {
    let path = dir.join("credentials.json");
    worker::aws::Credentials::new(key, secret)
        .expect("credentials")
        .save(&path)
        .expect("save the credentials");
    path
}

/// The slot of the uid range the worker gave lambda `name` (its uid inside the sandbox; its
/// host uid is `uid_range_start` plus this).
pub fn lambda_slot(c: &TestCluster, name: &str) -> u32 {
    let path = c.cfg.lambda_uids();
    let table = std::fs::read_to_string(&path).expect("the lambda uid table");
    table
        .lines()
        .find_map(|l| {
            let (slot, n) = l.split_once(' ')?;
            (n == name).then(|| slot.parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("no slot for {name} in {table:?}"))
}

/// The real, effective, saved and filesystem uids of host process `pid`.
pub fn host_uids(pid: i64) -> [u32; 4] {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let ids: Vec<u32> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    [ids[0], ids[1], ids[2], ids[3]]
}

/// A temporary cluster with one in-process worker.
pub struct TestCluster {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub cfg: Config,
    pub worker: Option<Worker>,
    pub addr: SocketAddr,
}

/// The cluster's config with `patch` (JSON) merged and a worker dir set.
pub fn new_cluster(patch: &str) -> (tempfile::TempDir, PathBuf, Config) {
    let tmp = tempfile::Builder::new()
        .prefix("lw-test")
        .tempdir()
        .expect("tempdir");
    let dir = tmp.path().join("cluster");
    create_cluster(&dir, &CreateOptions::default()).expect("create cluster");
    let template = Config::load(&dir.join("config/template.json")).expect("template");
    let mut cfg = template.merge_json(patch).expect("config patch");
    cfg.worker_dir = dir.join("workers/worker-0");
    cfg.worker_port = 0;
    cfg.log_level = "debug".into();
    std::fs::create_dir_all(&cfg.worker_dir).expect("worker dir");
    (tmp, dir, cfg)
}

impl TestCluster {
    pub async fn start(patch: &str) -> Self {
        worker::init_tracing("info");
        let (tmp, dir, cfg) = new_cluster(patch);
        let worker = Worker::start(cfg.clone()).await.expect("worker starts");
        let addr = worker.local_addr();
        Self {
            tmp,
            dir,
            cfg,
            worker: Some(worker),
            addr,
        }
    }

    /// Shuts the worker down and starts another on the same cluster (its registry and package
    /// store kept) with the template's config and `patch` merged.
    pub async fn restart(&mut self, patch: &str) {
        self.shutdown().await;
        let template = Config::load(&self.dir.join("config/template.json")).expect("template");
        let mut cfg = template.merge_json(patch).expect("config patch");
        cfg.worker_dir = self.cfg.worker_dir.clone();
        cfg.worker_port = 0;
        cfg.log_level = "debug".into();
        let worker = Worker::start(cfg.clone()).await.expect("worker starts");
        self.addr = worker.local_addr();
        self.worker = Some(worker);
        self.cfg = cfg;
    }

    pub fn registry(&self) -> PathBuf {
        self.dir.join("registry")
    }

    /// Writes `registry/<name>/lambda_func.py`.
    pub fn add_handler(&self, name: &str, source: &str) {
        let d = self.registry().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("lambda_func.py"), source).unwrap();
    }

    /// Copies a handler from `quickstart/handlers/<name>`.
    pub fn add_quickstart(&self, name: &str) {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../quickstart/handlers")
            .join(name)
            .join("lambda_func.py");
        self.add_handler(name, &std::fs::read_to_string(src).unwrap());
    }

    pub async fn post(&self, path: &str, body: &str) -> (u16, String) {
        http(self.addr, "POST", path, body.as_bytes()).await
    }

    pub async fn call(&self, name: &str, body: &str) -> (u16, serde_json::Value) {
        let (status, text) = self.post(&format!("/runLambda/{name}"), body).await;
        let value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("non-JSON answer {text:?}: {e}"));
        (status, value)
    }

    pub async fn stats(&self) -> serde_json::Value {
        let (status, text) = http(self.addr, "GET", "/stats", b"").await;
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    pub async fn shutdown(&mut self) {
        if let Some(w) = self.worker.take() {
            w.shutdown().await.expect("clean shutdown");
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if self.worker.is_some() {
            // A test that failed before shutdown: still remove its sandboxes.
            let _ = worker::cleanup_leftovers(&self.cfg);
        }
    }
}

/// An answer as read off the wire: status, headers (lower-case names, in order), body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text()))
    }
}

/// One HTTP/1.1 request with `Connection: close`; the answer's body is read by its
/// Content-Length.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    // A body refused before it is read may meet a closed connection: the answer came first.
    let _ = s.write_all(body).await;
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if !raw.is_empty() => {
                eprintln!("connection ended with {e} after the answer");
                break;
            }
            Err(e) => panic!("{method} {target}: {e}"),
        }
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an answer head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns status and body.
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    parse_response(&buf)
}

/// Status and body of an HTTP/1.1 answer as read off the wire (status 0 when there is none).
pub fn parse_response(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}

/// The start of a Python handler that tries things: `libc` (ctypes, errno kept) and
/// `outcome(fn)`, which calls `fn` and names what happened: the errno's name (from an
/// `OSError`, or a negative return with `errno` set), or "allowed".
pub const PY_OUTCOME: &str = r#"import ctypes, errno, os

libc = ctypes.CDLL(None, use_errno=True)

def outcome(fn):
    try:
        rc = fn()
        if isinstance(rc, int) and rc < 0:
            return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
        return "allowed"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
"#;

/// Cgroup directories (any hierarchy) whose path contains `needle`.
pub fn cgroup_dirs_containing(needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new("/sys/fs/cgroup")
        .max_depth(5)
        .into_iter()
        .flatten()
    {
        if entry.file_type().is_dir() && entry.path().to_string_lossy().contains(needle) {
            found.push(entry.path().to_owned());
        }
    }
    found
}

/// True while `pid` is a live (not zombie) process.
pub fn pid_alive(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesized command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}
