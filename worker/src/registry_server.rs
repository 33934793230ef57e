//! The registry server (`admin registry`): stores a cluster's functions and layers, serves
//! the AWS Lambda management API over them, and the code that workers in registry mode pull.
//!
//! Start, in order: open the store (which recovers from a crash: see
//! [`crate::functions::DirStore::open`]), bind the port, serve until stopped. Routes:
//! `GET /status`; the management API, archive downloads, the pull protocol and docs of
//! [`crate::management`]. Everything else is a JSON 404.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::aws::{Credentials, LambdaApi};
use crate::error::ApiError;
use crate::functions::{DirStore, StoreError};
use crate::lambda_config::LambdaLimits;
use crate::management::{self, Functions};
use crate::serve;

/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 512;
/// Seconds open connections get to finish at shutdown.
const DRAIN_S: u64 = 10;

/// What a registry server serves, and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// The cluster's registry directory.
    pub registry_dir: PathBuf,
    pub host: String,
    /// `0` picks a free port.
    pub port: u16,
    /// `None`: no credentials; changes only from loopback.
    pub credentials: Option<Credentials>,
    pub region: String,
    pub account_id: String,
    /// What functions that set no limits get (the cluster template's), as reported.
    pub defaults: LambdaLimits,
}

/// Why the registry server cannot start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{what} task failed: {source}")]
    Task {
        what: &'static str,
        source: tokio::task::JoinError,
    },
    #[error("cannot watch {name}: {source}")]
    Signal {
        name: &'static str,
        source: std::io::Error,
    },
}

/// A running registry server.
#[derive(Debug)]
pub struct RegistryServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RegistryServer {
    /// Opens the store, binds and starts serving.
    pub async fn start(opts: Options) -> Result<Self, ServerError> {
        let dir = opts.registry_dir.clone();
        let store = tokio::task::spawn_blocking(move || DirStore::open(&dir))
            .await
            .map_err(|source| ServerError::Task {
                what: "store recovery",
                source,
            })??;
        let store = Arc::new(store);
        let api = Arc::new(LambdaApi::new(
            Arc::clone(&store) as Arc<dyn crate::functions::FunctionStore>,
            opts.credentials.clone(),
            &opts.region,
            &opts.account_id,
            opts.defaults,
        ));
        let functions = Arc::new(Functions::Local { api, store });
        let bind = format!("{}:{}", opts.host, opts.port);
        let listener = TcpListener::bind((opts.host.as_str(), opts.port))
            .await
            .map_err(|source| ServerError::Bind {
                addr: bind.clone(),
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr: bind, source })?;
        let (stop, stop_rx) = watch::channel(false);
        let handler = move |req, peer| handle(Arc::clone(&functions), req, peer);
        let task = tokio::spawn(serve::accept_loop(
            listener,
            handler,
            stop_rx,
            serve::Limits {
                drain_s: DRAIN_S,
                max_connections: MAX_CONNECTIONS,
            },
        ));
        tracing::info!(%addr, registry = %opts.registry_dir.display(), credentials = opts.credentials.is_some(), "registry server ready");
        Ok(Self { addr, stop, task })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and lets open requests finish (for at most 10 s).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        tracing::info!("registry server stopped");
    }
}

/// Starts a registry server and runs it until SIGTERM or SIGINT.
pub async fn run_until_signal(opts: Options) -> Result<(), ServerError> {
    use tokio::signal::unix::{signal, SignalKind};
    let watch = |kind: SignalKind, name: &'static str| {
        signal(kind).map_err(|source| ServerError::Signal { name, source })
    };
    let mut term = watch(SignalKind::terminate(), "SIGTERM")?;
    let mut int = watch(SignalKind::interrupt(), "SIGINT")?;
    let server = RegistryServer::start(opts).await?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    server.shutdown().await;
    Ok(())
}

async fn handle(
    functions: Arc<Functions>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let result = match (path.as_str(), management::route(&path)) {
        ("/status", _) if method == Method::GET || method == Method::HEAD => Ok(ready()),
        (_, Some(Ok(route))) => management::serve(&functions, route, req, peer).await,
        (_, Some(Err(e))) => Err(e),
        (_, None) => Err(ApiError::NotFound { path: path.clone() }),
    };
    let resp = result.unwrap_or_else(|e| {
        if e.status().is_server_error() {
            tracing::warn!(%method, %path, error = %e, "request failed");
        }
        e.into_response()
    });
    tracing::debug!(%method, %path, status = resp.status().as_u16(), "request");
    Ok(resp)
}

fn ready() -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(b"ready")));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}
