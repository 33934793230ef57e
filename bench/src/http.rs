//! The HTTP client of the benchmark: hyper 1 over one keep-alive TCP connection, as a user's
//! client pool would hold it.
//!
//! Why our own client rather than `wrk` or `oha`: hyper is already the worker's HTTP stack, so
//! no extra tool has to be installed or parsed; every request's latency is recorded exactly (not
//! a histogram approximation), errors are counted by status, and the same code drives both the
//! sequential latency rows and the concurrent load of the throughput scenario.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::stats::Samples;

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("addr", &self.addr).finish()
    }
}

impl Conn {
    /// Connects to `addr` (TCP_NODELAY, as HTTP clients set it).
    pub async fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to the worker at {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("HTTP handshake with {addr}"))?;
        tokio::spawn(async move {
            // The connection ends when the sender is dropped or the worker closes it.
            let _ = conn.await;
        });
        Ok(Self { addr, sender })
    }

    /// Sends one request; returns the status and the body.
    pub async fn send(&mut self, method: &str, path: &str, body: &str) -> Result<(u16, Bytes)> {
        self.sender
            .ready()
            .await
            .with_context(|| format!("connection to {} closed", self.addr))?;
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.addr.to_string())
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .context("building the request")?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the answer of {method} {path}"))?
            .to_bytes();
        Ok((status, body))
    }

    /// `POST /runLambda/<name>` with `event`; fails unless the answer is 200.
    pub async fn run(&mut self, name: &str, event: &str) -> Result<Bytes> {
        let (status, body) = self
            .send("POST", &format!("/runLambda/{name}"), event)
            .await?;
        if status != 200 {
            anyhow::bail!(
                "runLambda/{name} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body)
    }
}

/// A blocking wrapper: a current-thread runtime driving one [`Conn`], so that a latency row can
/// time each call from the caller's side with nothing else running.
pub struct BlockingConn {
    rt: tokio::runtime::Runtime,
    conn: Conn,
}

impl std::fmt::Debug for BlockingConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.conn.fmt(f)
    }
}

impl BlockingConn {
    pub fn connect(addr: SocketAddr) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start a tokio runtime")?;
        let conn = rt.block_on(Conn::connect(addr))?;
        Ok(Self { rt, conn })
    }

    pub fn run(&mut self, name: &str, event: &str) -> Result<Bytes> {
        self.rt.block_on(self.conn.run(name, event))
    }

    /// One request; the status and the body, whatever the status.
    pub fn send(&mut self, method: &str, path: &str, body: &str) -> Result<(u16, Bytes)> {
        self.rt.block_on(self.conn.send(method, path, body))
    }

    /// `GET /stats` as JSON.
    pub fn stats(&mut self) -> Result<serde_json::Value> {
        let (status, body) = self.rt.block_on(self.conn.send("GET", "/stats", ""))?;
        if status != 200 {
            anyhow::bail!("GET /stats answered {status}");
        }
        serde_json::from_slice(&body).context("GET /stats: not JSON")
    }
}

/// What a load run measured.
#[derive(Debug, Default)]
pub struct LoadResult {
    pub samples: Samples,
    pub elapsed: Duration,
    /// Answers other than 200 with the expected body, by status (0: transport error).
    pub errors: std::collections::BTreeMap<u16, u64>,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
}

impl LoadResult {
    pub fn ok(&self) -> usize {
        self.samples.len()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn per_second(&self) -> f64 {
        self.ok() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// `concurrency` connections, each calling `name` in a closed loop for `duration`; every
/// answer is checked against `expected`.
pub fn load(
    addr: SocketAddr,
    name: &str,
    event: &str,
    expected: &str,
    concurrency: usize,
    duration: Duration,
) -> Result<LoadResult> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("cannot start a tokio runtime")?;
    rt.block_on(async {
        let mut conns = Vec::with_capacity(concurrency);
        for _ in 0..concurrency {
            conns.push(Conn::connect(addr).await?);
        }
        let started = Instant::now();
        let deadline = started + duration;
        let mut tasks = Vec::with_capacity(concurrency);
        for mut conn in conns {
            let path = format!("/runLambda/{name}");
            let event = event.to_owned();
            let expected = expected.to_owned();
            tasks.push(tokio::spawn(async move {
                let mut part = LoadResult::default();
                while Instant::now() < deadline && !crate::interrupted() {
                    let t = Instant::now();
                    match conn.send("POST", &path, &event).await {
                        Ok((200, body)) if body.trim_ascii() == expected.as_bytes() => {
                            part.samples.push(t.elapsed())
                        }
                        Ok((status, body)) => {
                            *part.errors.entry(status).or_default() += 1;
                            part.first_error.get_or_insert_with(|| {
                                format!("{status}: {}", String::from_utf8_lossy(&body))
                            });
                        }
                        Err(e) => {
                            *part.errors.entry(0).or_default() += 1;
                            part.first_error.get_or_insert_with(|| format!("{e:#}"));
                            // A broken connection is not retried: the error is the result.
                            break;
                        }
                    }
                }
                part
            }));
        }
        let mut total = LoadResult::default();
        for task in tasks {
            let part = task.await.context("a load task panicked")?;
            total.samples.extend(part.samples);
            for (k, v) in part.errors {
                *total.errors.entry(k).or_default() += v;
            }
            if total.first_error.is_none() {
                total.first_error = part.first_error;
            }
        }
        total.elapsed = started.elapsed();
        Ok(total)
    })
}
