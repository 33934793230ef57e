//! `admin invocations` through the real binary on a cluster made with `admin new` (root only):
//! the table of the running workers' asynchronous invocations, filtered by function and by
//! failure, and its errors.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// Queues an event with `?async=1`; its invocation id.
fn queue(port: u16, name: &str, body: &str) -> String {
    let (status, text) = call(port, &format!("{name}?async=1"), body);
    assert_eq!(status, 202, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["invocation_id"].as_str().unwrap().to_owned()
}

/// Waits until the worker has nothing queued or running.
fn drained(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, text) = get(port, "/invocations?limit=1");
        assert_eq!(status, 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        if v["counts"]["queued"] == 0 && v["counts"]["running"] == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "not drained: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn invocations_lists_what_the_workers_hold() {
    if !can_run("invocations_lists_what_the_workers_hold") {
        return;
    }
    let c = Cluster::new();
    let f = c.flag();
    for (name, code) in [
        ("fine", "def handler(event):\n    return event\n"),
        (
            "broken",
            "def handler(event):\n    raise ValueError('broken on purpose')\n",
        ),
    ] {
        let dir = c.path(&format!("registry/{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("lambda_func.py"), code).unwrap();
    }
    ok(&["setconf", &f, r#"{"async_retry_delay_ms": 100}"#]);
    let port = free_port();
    ok(&["workers", &f, &format!("--port={port}")]);
    let fine = [
        queue(port, "fine", "{}"),
        queue(port, "fine", r#"{"n": 2}"#),
    ];
    let broken = queue(port, "broken", "{}");
    drained(port);

    let out = ok(&["invocations", &f]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("ID"), "{out}");
    for id in fine.iter().chain([&broken]) {
        assert!(out.contains(id.as_str()), "{id} listed: {out}");
    }
    assert!(out.contains("3 invocation(s) on 1 worker(s)"), "{out}");

    let out = ok(&["invocations", &f, "broken", "--failed"]);
    assert!(out.contains(&broken), "{out}");
    assert!(!out.contains(&fine[0]), "{out}");
    assert!(out.contains("ValueError: broken on purpose"), "{out}");
    assert!(out.contains(" 3 "), "three attempts: {out}");
    assert!(out.contains("1 invocation(s) on 1 worker(s)"), "{out}");

    let out = ok(&["invocations", &f, "fine", "--failed"]);
    assert!(out.contains("0 invocation(s)"), "{out}");

    let e = fails(&["invocations", &f, "../x"]);
    assert!(e.contains("../x"), "{e}");
    let e = fails(&["invocations", &f, "--limit", "0"]);
    assert!(e.contains("--limit"), "{e}");

    // With the workers stopped, it says so and fails.
    ok(&["kill", &f]);
    let e = fails(&["invocations", &f]);
    assert!(e.contains("worker-0"), "{e}");
    assert!(e.contains("does not answer"), "{e}");
}
