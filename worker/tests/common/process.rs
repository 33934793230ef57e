//! The worker binary as a process of its own: started on a saved config, asked over HTTP,
//! stopped with SIGTERM.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use worker::config::Config;

/// Starts the worker binary on `cfg` (saved next to the cluster's configs); returns it once
/// `/status` answers.
pub async fn spawn_worker(cfg: &Config, dir: &Path) -> (Child, SocketAddr) {
    spawn_worker_with(cfg, dir, |_| {}).await
}

/// [`spawn_worker`], with `configure` applied to the command first.
pub async fn spawn_worker_with(
    cfg: &Config,
    dir: &Path,
    configure: impl FnOnce(&mut Command),
) -> (Child, SocketAddr) {
    let path = dir.join("config/worker-0.json");
    let addr: SocketAddr = format!("127.0.0.1:{}", cfg.worker_port).parse().unwrap();
    cfg.save(&path).unwrap();
    let log = std::fs::File::create(dir.join("logs/worker-0.out")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_worker"));
    cmd.arg(format!("--config={}", path.display()))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    configure(&mut cmd);
    let mut child = cmd.spawn().expect("spawn the worker");
    if !ready(addr, Duration::from_secs(60)).await {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the worker did not start: see {}",
            dir.join("logs/worker-0.out").display()
        );
    }
    (child, addr)
}

/// Whether `GET /status` at `addr` answers 200 within `limit`.
pub async fn ready(addr: SocketAddr, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let up = tokio::net::TcpStream::connect(addr).await.is_ok()
            && try_get(addr, "/status")
                .await
                .is_some_and(|(code, _)| code == 200);
        if up {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn try_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    try_request(addr, "GET", path, b"").await
}

pub async fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.ok()?;
    s.write_all(body).await.ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.ok()?;
    let (status, text) = super::parse_response(&raw);
    (status != 0).then_some((status, text))
}

/// Stops a spawned worker with SIGTERM and waits for it.
pub fn terminate(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = child.wait();
}
