//! The worker's own log through the worker binary (root only): `log_format: "json"` lines that
//! parse, each request's access line with its function, request id (the answer's
//! `x-amzn-RequestId`), status, duration and cold or warm start; `log_file` rotated by size
//! with whole lines, the number of files kept; and the systemd notifications a `Type=notify`
//! unit waits for, READY=1 and STOPPING=1, on a real `NOTIFY_SOCKET` datagram socket.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::process::{free_port, spawn_worker_with, terminate};
use common::{can_run, new_cluster, request};

/// The messages systemd would have got on `socket`, until one contains `until` (10 s at most).
fn notifications(socket: &UnixDatagram, until: &str) -> Vec<String> {
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.iter().any(|m: &String| m.contains(until)) {
        match socket.recv(&mut buf) {
            Ok(n) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) => panic!("no {until} from the worker ({e}); got {got:?}"),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_carry_the_request_and_the_file_rotates() {
    if !can_run("json_lines_carry_the_request_and_the_file_rotates") {
        return;
    }
    let (tmp, dir, mut cfg) = new_cluster("{}");
    cfg.worker_port = free_port();
    cfg.log_level = "info".into();
    cfg.log_format = worker::config::LogFormat::Json;
    cfg.log_file = dir.join("logs/worker-0.log");
    cfg.log_file_bytes = 4096;
    cfg.log_files = 2;
    let registry = dir.join("registry/hello");
    std::fs::create_dir_all(&registry).unwrap();
    std::fs::write(
        registry.join("lambda_func.py"),
        "def handler(event):\n    return 'hi'\n",
    )
    .unwrap();

    let notify_path = tmp.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let socket_env = notify_path.clone();
    let (mut child, addr) = spawn_worker_with(&cfg, &dir, move |cmd| {
        cmd.env("NOTIFY_SOCKET", &socket_env);
    })
    .await;
    let ready = notifications(&notify, "READY=1");
    assert!(
        ready
            .iter()
            .any(|m| m.contains(&format!("STATUS=serving on {addr}"))),
        "{ready:?}"
    );

    let mut ids = Vec::new();
    for _ in 0..40 {
        let a = request(addr, "POST", "/runLambda/hello", &[], b"{}").await;
        assert_eq!(a.status, 200, "{}", a.text());
        ids.push(
            a.header("x-amzn-requestid")
                .expect("a request id")
                .to_owned(),
        );
    }
    terminate(&mut child);
    let stopping = notifications(&notify, "STOPPING=1");
    assert!(!stopping.is_empty());

    // Rotated: the file and at most two older ones, each within the limit, lines whole.
    let log = &cfg.log_file;
    let rotated = |n: u32| worker::logging::rotated(log, n);
    assert!(rotated(1).exists(), "40 calls of access lines fill 4 KiB");
    assert!(!rotated(3).exists());
    let mut lines = Vec::new();
    for n in [2, 1, 0] {
        let Ok(text) = std::fs::read_to_string(rotated(n)) else {
            continue;
        };
        assert!(
            text.len() <= 4096,
            "{} holds {} bytes",
            rotated(n).display(),
            text.len()
        );
        assert!(text.is_empty() || text.ends_with('\n'));
        lines.extend(text.lines().map(str::to_owned));
    }
    let json: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    // The newest calls' access lines are all there, with their request's span.
    let access: Vec<&serde_json::Value> = json
        .iter()
        .filter(|j| j["fields"]["message"] == "access")
        .collect();
    let last = ids.last().unwrap();
    let line = access
        .iter()
        .find(|j| j["span"]["request_id"] == last.as_str())
        .unwrap_or_else(|| panic!("no access line of {last}: {access:?}"));
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["span"]["function"], "hello");
    assert_eq!(line["fields"]["method"], "POST");
    assert_eq!(line["fields"]["path"], "/runLambda/hello");
    assert_eq!(line["fields"]["status"], 200);
    assert_eq!(line["fields"]["start"], "warm");
    assert!(line["fields"]["duration_ms"].as_f64().is_some(), "{line}");
    assert!(line["timestamp"].as_str().is_some(), "{line}");
    // The shutdown was logged after the last call, in the current file.
    let current = std::fs::read_to_string(log).unwrap();
    assert!(current.contains("SIGTERM received"), "{current}");
}
