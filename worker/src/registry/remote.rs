//! Registry mode: functions pulled from a registry server into a local cache, which the
//! worker then serves exactly like a local registry directory.
//!
//! The cache (`<worker_dir>/registry-cache`, the worker's `registry_dir` in this mode) holds,
//! per function, the code of the revision last pulled, made as the store makes it
//! ([`crate::functions::materialize`]: `<cache>/<name>/` with its effective `lambda.json` and
//! its revision's marker), and the layer versions functions use
//! (`<cache>/.store/layers/<name>/<N>/`, the layout of [`crate::functions::layout`]). A new
//! revision is made in a staging directory and exchanged with the old one in one `renameat2`,
//! so a lookup sees one revision or the other.
//!
//! Revalidation, so that a warm call never waits on the server:
//! - a function is *checked* (one `GET /registry/functions/<name>`) when it is first looked
//!   up, and then by a background thread every half `registry_revalidate_ms` while it is in
//!   use (called in the last [`ACTIVE_FOR`]), so a change on the server is running within the
//!   interval;
//! - a lookup of a function not checked for twice the interval (it was idle) checks it first,
//!   on the blocking pool; [`Remote::fresh`] says whether the remembered lookup may be used;
//! - when the server cannot be reached, a function already in the cache keeps being served
//!   (and is checked again after the interval); one never pulled is an error naming the server.
//!
//! Archives are checked against the SHA-256 the server names before they are unpacked. At most
//! [`MAX_TRACKED`] functions are tracked (least recently used first out).

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use http::Method;
use lru::LruCache;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::functions::layout::layer_root;
use crate::http_client::{self, Request};
use crate::lambda_config::LambdaConfig;
use crate::name::LambdaName;

/// The most functions tracked at once.
pub const MAX_TRACKED: usize = 4096;
/// A function called within this long is revalidated in the background.
pub const ACTIVE_FOR: Duration = Duration::from_secs(600);
/// Largest archive pulled, in bytes.
pub const MAX_ARCHIVE_BYTES: usize = 64 * 1024 * 1024;
const META_TIMEOUT: Duration = Duration::from_secs(10);
const ARCHIVE_TIMEOUT: Duration = Duration::from_secs(120);
const MAX_META_BYTES: usize = 1024 * 1024;

/// Why a function could not be pulled.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("registry server {server}: {message}")]
    Server { server: String, message: String },
    #[error("registry server {server}: invalid answer for {what}: {message}")]
    BadAnswer {
        server: String,
        what: String,
        message: String,
    },
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("registry server {server}: {what}: {source}")]
    Archive {
        server: String,
        what: String,
        source: crate::archive::ArchiveError,
    },
    #[error("registry server {server}: function {name}: {source}")]
    Materialize {
        server: String,
        name: String,
        source: crate::functions::StoreError,
    },
}

/// A function as the server describes it to workers.
#[derive(Debug, Clone, Deserialize)]
pub struct PulledFunction {
    pub name: String,
    pub revision_id: String,
    pub code_sha256: String,
    /// The effective `lambda.json`.
    pub config: serde_json::Value,
    #[serde(default)]
    pub layers: Vec<PulledLayer>,
}

/// A layer version a pulled function uses.
#[derive(Debug, Clone, Deserialize)]
pub struct PulledLayer {
    pub name: String,
    pub version: u64,
    pub code_sha256: String,
}

#[derive(Debug, Clone)]
struct Tracked {
    /// The revision in the cache; `None`: the server does not have the function.
    revision: Option<String>,
    checked: Instant,
    used: Instant,
}

/// A registry server and this worker's cache of it (see the module docs).
#[derive(Debug)]
pub struct Remote {
    server: String,
    host: String,
    port: u16,
    cache: PathBuf,
    revalidate: Duration,
    tracked: Mutex<LruCache<LambdaName, Tracked>>,
    /// Held while a revision is unpacked and swapped in (one pull at a time).
    pulling: Mutex<()>,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RemoteError + 'a {
    move |source| RemoteError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

impl Remote {
    /// A cache of `server` (`http://host:port`) in `cache`, checked every `revalidate`.
    pub fn new(server: &str, cache: &Path, revalidate: Duration) -> Result<Arc<Self>, RemoteError> {
        let (host, port) = http_client::split_url(server).map_err(|e| RemoteError::Server {
            server: server.to_owned(),
            message: e.to_string(),
        })?;
        std::fs::create_dir_all(cache).map_err(io_err("create", cache))?;
        Ok(Arc::new(Self {
            server: server.to_owned(),
            host,
            port,
            cache: cache.to_owned(),
            revalidate,
            tracked: Mutex::new(LruCache::new(
                NonZeroUsize::new(MAX_TRACKED).unwrap_or(NonZeroUsize::MIN),
            )),
            pulling: Mutex::new(()),
        }))
    }

    /// The server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    fn tracked(&self) -> MutexGuard<'_, LruCache<LambdaName, Tracked>> {
        self.tracked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the thread that revalidates functions in use; it ends when `self` is dropped.
    pub fn start_revalidating(self: &Arc<Self>) -> std::io::Result<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        let interval = self.revalidate / 2;
        std::thread::Builder::new()
            .name("registry-revalidate".into())
            .spawn(move || loop {
                std::thread::sleep(interval);
                let Some(remote) = weak.upgrade() else { return };
                remote.revalidate_active();
            })
            .map(drop)
    }

    /// One round of background checks: every function used within [`ACTIVE_FOR`] and not
    /// checked within half the interval.
    fn revalidate_active(&self) {
        let half = self.revalidate / 2;
        let now = Instant::now();
        let due: Vec<LambdaName> = self
            .tracked()
            .iter()
            .filter(|(_, t)| {
                now.duration_since(t.used) < ACTIVE_FOR && now.duration_since(t.checked) >= half
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            if let Err(e) = self.check(&name) {
                tracing::warn!(lambda = %name, error = %e, "registry revalidation failed; serving the cached revision");
            }
        }
    }

    /// Whether the cached revision of `name` may be used without checking the server (it was
    /// checked within twice the interval). Never blocks on the network.
    pub fn fresh(&self, name: &LambdaName) -> bool {
        let now = Instant::now();
        let mut tracked = self.tracked();
        match tracked.get_mut(name) {
            Some(t)
                if t.revision.is_some() && now.duration_since(t.checked) < 2 * self.revalidate =>
            {
                t.used = now;
                true
            }
            _ => false,
        }
    }

    /// Makes sure the cache holds the server's current revision of `name`, checking the server
    /// unless it was checked within the interval; whether the function exists. Blocking.
    pub fn ensure(&self, name: &LambdaName) -> Result<bool, RemoteError> {
        let now = Instant::now();
        if let Some(t) = self.tracked().get_mut(name) {
            t.used = now;
            if now.duration_since(t.checked) < self.revalidate {
                return Ok(t.revision.is_some());
            }
        }
        match self.check(name) {
            Ok(exists) => Ok(exists),
            Err(e) if self.cached_revision(name).is_some() => {
                tracing::warn!(lambda = %name, error = %e, "registry server unreachable; serving the cached revision");
                self.record(name, self.cached_revision(name));
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    fn record(&self, name: &LambdaName, revision: Option<String>) {
        let now = Instant::now();
        self.tracked().put(
            name.clone(),
            Tracked {
                revision,
                checked: now,
                used: now,
            },
        );
    }

    /// The revision in the cache, as its marker says.
    fn cached_revision(&self, name: &LambdaName) -> Option<String> {
        crate::functions::revision_of(&self.cache.join(name.as_str()))
    }

    /// Asks the server for `name` and pulls a new revision if there is one.
    fn check(&self, name: &LambdaName) -> Result<bool, RemoteError> {
        let path = format!("/registry/functions/{name}");
        let resp = self.get(&path, META_TIMEOUT, MAX_META_BYTES)?;
        match resp.status {
            200 => {}
            404 => {
                let _guard = self.pulling.lock().unwrap_or_else(|p| p.into_inner());
                self.forget(name)?;
                self.record(name, None);
                return Ok(false);
            }
            s => {
                return Err(RemoteError::Server {
                    server: self.server.clone(),
                    message: format!("GET {path} answered {s}: {}", resp.body.trim()),
                })
            }
        }
        let bad = |message: String| RemoteError::BadAnswer {
            server: self.server.clone(),
            what: path.clone(),
            message,
        };
        let pulled: PulledFunction =
            serde_json::from_slice(&resp.bytes).map_err(|e| bad(e.to_string()))?;
        if pulled.name != name.as_str() {
            return Err(bad(format!("it describes {:?}", pulled.name)));
        }
        let config = LambdaConfig::from_value(&pulled.config).map_err(|e| bad(e.to_string()))?;
        let _guard = self.pulling.lock().unwrap_or_else(|p| p.into_inner());
        if self.cached_revision(name).as_deref() != Some(pulled.revision_id.as_str()) {
            self.pull(name, &pulled, &config)?;
        }
        self.record(name, Some(pulled.revision_id));
        Ok(true)
    }

    fn get(
        &self,
        path: &str,
        timeout: Duration,
        limit: usize,
    ) -> Result<http_client::Response, RemoteError> {
        let mut req = Request::new(Method::GET, &self.host, self.port, path, timeout);
        req.limit = limit;
        http_client::send_blocking(req).map_err(|e| RemoteError::Server {
            server: self.server.clone(),
            message: format!("GET {path}: {}", http_client::describe_error(&e)),
        })
    }

    /// The archive with this SHA-256, checked.
    fn archive(&self, sha256: &str) -> Result<bytes::Bytes, RemoteError> {
        let path = format!("/registry/archives/{sha256}");
        let resp = self.get(&path, ARCHIVE_TIMEOUT, MAX_ARCHIVE_BYTES)?;
        if resp.status != 200 {
            return Err(RemoteError::Server {
                server: self.server.clone(),
                message: format!("GET {path} answered {}", resp.status),
            });
        }
        let got = crate::hex(&Sha256::digest(&resp.bytes));
        if got != sha256 {
            return Err(RemoteError::BadAnswer {
                server: self.server.clone(),
                what: path,
                message: format!("the archive's SHA-256 is {got}"),
            });
        }
        Ok(resp.bytes)
    }

    /// Unpacks `archive` into a new staging directory `<parent>/.pull-<tag>-<pid>`.
    fn unpack(&self, parent: &Path, tag: &str, sha256: &str) -> Result<PathBuf, RemoteError> {
        let bytes = self.archive(sha256)?;
        let staging = parent.join(format!(".pull-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(io_err("create", &staging))?;
        if let Err(source) = crate::archive::unpack(&bytes, &staging) {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(RemoteError::Archive {
                server: self.server.clone(),
                what: format!("archive {sha256}"),
                source,
            });
        }
        Ok(staging)
    }

    /// Pulls the layers, then the code, of a new revision into the cache.
    fn pull(
        &self,
        name: &LambdaName,
        f: &PulledFunction,
        config: &LambdaConfig,
    ) -> Result<(), RemoteError> {
        for layer in &f.layers {
            let layer_name =
                LambdaName::parse(&layer.name).map_err(|reason| RemoteError::BadAnswer {
                    server: self.server.clone(),
                    what: format!("/registry/functions/{name}"),
                    message: format!("layer name {:?}: {reason}", layer.name),
                })?;
            let root = layer_root(&self.cache, &layer_name);
            let dest = root.join(layer.version.to_string());
            if dest.is_dir() {
                continue; // layer versions never change
            }
            std::fs::create_dir_all(&root).map_err(io_err("create", &root))?;
            let staging = self.unpack(&root, &layer.version.to_string(), &layer.code_sha256)?;
            if let Err(e) = std::fs::rename(&staging, &dest) {
                let _ = std::fs::remove_dir_all(&staging);
                if !dest.is_dir() {
                    return Err(io_err("install", &dest)(e));
                }
            }
        }
        let bytes = self.archive(&f.code_sha256)?;
        let staging = self
            .cache
            .join(format!(".pull-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(io_err("create", &staging))?;
        let dest = self.cache.join(name.as_str());
        let result = crate::functions::materialize(&bytes, config, &f.revision_id, &staging)
            .map_err(|source| RemoteError::Materialize {
                server: self.server.clone(),
                name: name.to_string(),
                source,
            })
            .and_then(|_| {
                crate::files::replace_dir(&staging, &dest).map_err(io_err("install", &dest))
            });
        let _ = std::fs::remove_dir_all(&staging);
        result?;
        tracing::info!(lambda = %name, revision = %f.revision_id, server = %self.server, "pulled a new revision");
        Ok(())
    }

    /// Removes a function the server no longer has from the cache.
    fn forget(&self, name: &LambdaName) -> Result<(), RemoteError> {
        let dir = self.cache.join(name.as_str());
        if std::fs::symlink_metadata(&dir).is_ok() {
            let gone = self
                .cache
                .join(format!(".gone-{name}-{}", std::process::id()));
            std::fs::rename(&dir, &gone).map_err(io_err("remove", &dir))?;
            let _ = std::fs::remove_dir_all(&gone);
        }
        Ok(())
    }
}
