//! Test support for the `admin` binary's integration tests: a cluster made with `admin new`
//! (stopped with `admin kill` when dropped), running the binary, archives, signed requests.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use worker::aws::Credentials;
use worker::http_client;

pub const ADMIN: &str = env!("CARGO_BIN_EXE_admin");
pub const KEY: &str = "AKIDADMINTEST01";
pub const SECRET: &str = "admin-test-secret-0123456789";

/// True when the test can run here; otherwise prints why it skips.
pub fn can_run(test: &str) -> bool {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipping {test}: needs root (namespaces, mounts, cgroups)");
        return false;
    }
    true
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `admin args...`.
pub fn admin(args: &[&str]) -> Output {
    Command::new(ADMIN)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run admin {args:?}: {e}"))
}

/// Runs `admin args...`, which must succeed; its stdout.
pub fn ok(args: &[&str]) -> String {
    let out = admin(args);
    assert!(
        out.status.success(),
        "admin {args:?}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs `admin args...`, which must fail with exit 1 and one line on stderr; that line.
pub fn fails(args: &[&str]) -> String {
    let out = admin(args);
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "admin {args:?} should fail: stdout:\n{}\nstderr:\n{err}",
        text(&out.stdout)
    );
    assert!(err.starts_with("admin: "), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    err.trim_end().to_owned()
}

/// A port nothing listens on (right now).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local addr").port()
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A temporary cluster made with `admin new`; dropping it runs `admin kill`.
#[derive(Debug)]
pub struct Cluster {
    pub dir: PathBuf,
    pub tmp: tempfile::TempDir,
}

impl Cluster {
    pub fn new() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("lw-admin")
            .tempdir()
            .expect("tempdir");
        let dir = tmp.path().join("cluster");
        ok(&["new", "-cluster", &dir.display().to_string()]);
        let dir = std::fs::canonicalize(&dir).expect("canonical cluster dir");
        Self { dir, tmp }
    }

    /// `-cluster=DIR`.
    pub fn flag(&self) -> String {
        format!("-cluster={}", self.dir.display())
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// A file in the test's scratch directory (beside the cluster).
    pub fn scratch(&self, rel: &str) -> PathBuf {
        let p = self.tmp.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("scratch dir");
        }
        p
    }

    /// Writes `files` under the scratch directory `rel`; returns its path.
    pub fn files(&self, rel: &str, files: &[(&str, &str)]) -> PathBuf {
        let root = self.scratch(rel);
        for (name, contents) in files {
            let p = root.join(name);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
            std::fs::write(&p, contents).expect("write");
        }
        root
    }

    pub fn template(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.path("config/template.json")).expect("template");
        serde_json::from_str(&text).expect("template JSON")
    }

    /// The function records in the local registry's store, by name.
    pub fn stored_functions(&self) -> Vec<String> {
        let mut names: Vec<String> = match std::fs::read_dir(self.path("registry/.store/functions"))
        {
            Ok(entries) => entries
                .flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".json"))
                        .map(str::to_owned)
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }

    /// The pid in `logs/registry.pid`, if any.
    pub fn registry_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.path("logs/registry.pid"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let out = admin(&["kill", &self.flag()]);
        if !out.status.success() {
            eprintln!(
                "cleanup: admin kill failed ({}): {}{}",
                out.status,
                text(&out.stdout),
                text(&out.stderr)
            );
        }
    }
}

/// A gzip-compressed tar of `files`, as `tar czf F -C dir .` makes it.
pub fn tar_gz(files: &[(&str, &str)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (name, contents) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(contents.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, name, contents.as_bytes())
            .expect("tar entry");
    }
    tar.into_inner().expect("tar").finish().expect("gzip")
}

/// A deflated zip of `files` (name, bytes).
pub fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in files {
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        w.start_file(*name, opts).expect("zip entry");
        w.write_all(data).expect("zip data");
    }
    w.finish().expect("zip").into_inner()
}

pub fn creds() -> Credentials {
    Credentials::new(KEY, SECRET).expect("credentials")
}

/// A management request to `127.0.0.1:port`, signed as boto3 signs; status and body.
pub fn signed(
    port: u16,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<(u16, Vec<u8>)> {
    let host = format!("127.0.0.1:{port}");
    let url = format!("http://{host}{path}");
    let headers = worker::aws::sigv4::sign(
        method,
        &url,
        &[("host", &host)],
        body,
        &creds(),
        "us-east-1",
        SystemTime::now(),
    )
    .map_err(std::io::Error::other)?;
    let mut req = http_client::Request::new(
        method.parse().map_err(std::io::Error::other)?,
        "127.0.0.1",
        port,
        path,
        timeout,
    );
    req.headers
        .insert("host", host.parse().map_err(std::io::Error::other)?);
    for (name, value) in headers {
        req.headers
            .insert(name, value.parse().map_err(std::io::Error::other)?);
    }
    req.body = body.to_vec().into();
    let r = http_client::send_blocking(req)?;
    Ok((r.status, r.bytes.to_vec()))
}

/// `GET http://127.0.0.1:port/path`: status and body.
pub fn get(port: u16, path: &str) -> (u16, String) {
    let r = http_client::get("127.0.0.1", port, path, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (r.status, r.body)
}

/// `POST /runLambda/<name>` on a worker.
pub fn call(port: u16, name: &str, body: &str) -> (u16, String) {
    let mut req = http_client::Request::new(
        http::Method::POST,
        "127.0.0.1",
        port,
        &format!("/runLambda/{name}"),
        Duration::from_secs(60),
    );
    req.body = body.as_bytes().to_vec().into();
    let r = http_client::send_blocking(req).unwrap_or_else(|e| panic!("call {name}: {e}"));
    (r.status, r.body)
}

/// Whether `path` exists (without following a link).
pub fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}
