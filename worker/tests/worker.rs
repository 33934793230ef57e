//! Integration tests: a real worker on a temporary cluster (root only). The probe handler reports
//! from inside its sandbox; the tests assert on that report and on what the host sees.

mod common;

use std::time::Duration;

use common::{can_run, cgroup_dirs_containing, TestCluster};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_cold_then_warm() {
    if !can_run("hello_cold_then_warm") {
        return;
    }
    // A fresh interpreter per sandbox: the spawn phases are the sandbox crate's.
    let mut c = TestCluster::start(r#"{"import_cache": false}"#).await;
    c.add_quickstart("hello");
    assert_eq!(
        c.call("hello", r#"{"name": "Alice"}"#).await,
        (200, json!("Hello, Alice!"))
    );
    assert_eq!(
        c.call("hello", r#"{"name": "Bob"}"#).await,
        (200, json!("Hello, Bob!"))
    );
    assert_eq!(c.call("hello", "").await, (200, json!("Hello, World!")));
    let stats = c.stats().await;
    assert_eq!(stats["lambdas"]["hello"]["calls"], 3);
    assert_eq!(stats["lambdas"]["hello"]["cold_starts"], 1);
    assert_eq!(stats["lambdas"]["hello"]["warm_starts"], 2);
    let sandboxes = stats["sandboxes"].as_array().unwrap();
    assert_eq!(sandboxes.len(), 1, "{stats}");
    assert_eq!(sandboxes[0]["lambda"], "hello");
    assert_eq!(sandboxes[0]["state"], "idle");
    // Where the time went: one cold call (spawn, first_call) and two warm ones (call).
    let t = &stats["timings"];
    for (phase, count) in [
        ("request", 3),
        ("read_body", 3),
        ("lookup", 3),
        ("queue", 3),
        ("take_idle", 3),
        ("capacity", 1),
        ("spawn", 1),
        ("spawn.cgroup", 1),
        ("spawn.prepare_clone", 1),
        ("spawn.child_setup_exec", 1),
        ("first_call", 1),
        ("call", 2),
        ("release", 3),
    ] {
        assert_eq!(t[phase]["count"], count, "{phase}: {t}");
    }
    let ms = |phase: &str| t[phase]["total_ms"].as_f64().unwrap();
    assert!(
        ms("spawn") >= ms("spawn.cgroup") + ms("spawn.child_setup_exec"),
        "{t}"
    );
    assert!(
        ms("request") >= ms("first_call") + ms("call") + ms("spawn"),
        "{t}"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_reports_a_real_sandbox() {
    if !can_run("probe_reports_a_real_sandbox") {
        return;
    }
    // The same report whether the sandbox started a fresh interpreter or was forked from a
    // zygote of the import cache.
    for (patch, cgroup_prefix) in [(r#"{"import_cache": false}"#, "/sb-"), ("{}", "/zs-")] {
        probe_report(patch, cgroup_prefix).await;
    }
}

async fn probe_report(patch: &str, cgroup_prefix: &str) {
    let mut c = TestCluster::start(patch).await;
    c.add_quickstart("probe");
    let (status, r) = c
        .call(
            "probe",
            r#"{"write_host": "out.txt", "print": "hello from inside"}"#,
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        r["pid"], 1,
        "the runtime is pid 1 of its own pid namespace: {r}"
    );
    assert!(
        r["pids_visible"].as_array().unwrap().len() <= 3,
        "host processes visible: {r}"
    );
    assert_eq!(r["hostname"], "lambda");
    assert_eq!(r["cwd"], "/host");
    assert_eq!(r["lambda_name"], "probe");
    assert!(r["python"].as_str().unwrap() >= "3.12", "{r}");
    assert_eq!(r["net_interfaces"], json!(["lo"]), "net=none gives only lo");
    assert_eq!(
        r["dev"],
        json!(["fd", "null", "random", "shm", "stderr", "stdin", "stdout", "urandom", "zero"])
    );
    let w = &r["writable"];
    assert_eq!(w["/"], false, "root must be read-only: {r}");
    assert_eq!(w["/usr"], false);
    assert_eq!(w["/packages"], false);
    assert_eq!(w["/handler"], false);
    assert_eq!(w["/host"], true);
    assert_eq!(w["/tmp"], true);
    let mounts: Vec<&str> = r["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    for m in ["/", "/dev", "/proc", "/tmp", "/handler", "/host"] {
        assert!(mounts.contains(&m), "{m} not mounted: {mounts:?}");
    }
    // Without requirements nothing is mounted at /packages: it is the base's empty directory.
    assert!(!mounts.contains(&"/packages"), "{mounts:?}");
    // Its cgroup is the sandbox's own, under this worker's parent.
    let parent = c.cfg.cgroup_parent().display().to_string();
    let cgroups = r["cgroups"].to_string();
    assert!(
        cgroups.contains(&parent) && cgroups.contains(cgroup_prefix),
        "{patch}: {cgroups}"
    );
    // What the handler wrote to /host lands in its scratch directory on the host; what it
    // printed, in the function's log (not in the scratch directory).
    let stats = c.stats().await;
    let id = stats["sandboxes"][0]["id"].as_u64().unwrap();
    let pid = stats["sandboxes"][0]["pid"].as_i64().unwrap();
    let scratch = c.cfg.worker_dir.join(format!("handlers/probe/{id}"));
    assert!(scratch.join("server_pipe").exists());
    assert_eq!(
        std::fs::read_to_string(scratch.join("out.txt")).unwrap(),
        "written from the sandbox\n"
    );
    assert!(!scratch.join("stdout").exists() && !scratch.join("stderr").exists());
    let log = c.cfg.function_logs().join("probe/worker-0.log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("\thello from inside\n")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{patch}: not in {}",
            log.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let host_cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let own = stats["sandboxes"][0]["cgroup"].as_str().unwrap();
    assert!(own.starts_with(&parent), "{own}");
    assert!(
        host_cgroup.contains(&format!("/{own}\n")),
        "{patch}: {host_cgroup}"
    );
    assert!(cgroups.contains(&format!("/{own}\"")), "{patch}: {cgroups}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_handler_is_picked_up() {
    if !can_run("edited_handler_is_picked_up") {
        return;
    }
    let mut c = TestCluster::start("{}").await;
    c.add_handler("edit", "def handler(event):\n    return 'v1'\n");
    assert_eq!(c.call("edit", "{}").await, (200, json!("v1")));
    let first = c.stats().await["sandboxes"][0]["id"].clone();
    c.add_handler("edit", "def handler(event):\n    return 'version two'\n");
    assert_eq!(c.call("edit", "{}").await, (200, json!("version two")));
    let stats = c.stats().await;
    assert_eq!(stats["lambdas"]["edit"]["cold_starts"], 2);
    // The old sandbox is retired: destroyed off the request path, so wait for it to go.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let stats = c.stats().await;
        let ids: Vec<&serde_json::Value> = stats["sandboxes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| &s["id"])
            .collect();
        if ids.len() == 1 && ids[0] != &first {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the old sandbox must be retired: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_calls_to_five_lambdas() {
    if !can_run("fifty_concurrent_calls_to_five_lambdas") {
        return;
    }
    let c = TestCluster::start(r#"{"max_sandboxes_per_lambda": 3}"#).await;
    for i in 0..5 {
        c.add_handler(
            &format!("f{i}"),
            &format!("def handler(event):\n    return {{'lambda': {i}, 'n': event['n']}}\n"),
        );
    }
    let c = std::sync::Arc::new(c);
    let mut tasks = Vec::new();
    for n in 0..50 {
        let c = std::sync::Arc::clone(&c);
        tasks.push(tokio::spawn(async move {
            let i = n % 5;
            let got = c.call(&format!("f{i}"), &format!(r#"{{"n": {n}}}"#)).await;
            assert_eq!(got, (200, json!({"lambda": i, "n": n})));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = c.stats().await;
    for i in 0..5 {
        let l = &stats["lambdas"][format!("f{i}")];
        assert_eq!(l["calls"], 10);
        assert_eq!(l["errors"], 0);
        assert!(
            l["cold_starts"].as_u64().unwrap() <= 3,
            "per-lambda cap exceeded: {l}"
        );
    }
    let mut c = std::sync::Arc::into_inner(c).unwrap();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_status() {
    if !can_run("every_error_status") {
        return;
    }
    let mut c = TestCluster::start(r#"{"timeout_s": 2, "max_body_bytes": 1000}"#).await;
    c.add_quickstart("fail");
    c.add_quickstart("hello");
    c.add_handler("exits", "import os\ndef handler(event):\n    if event.get('die'):\n        os._exit(3)\n    return 'alive'\n");
    c.add_handler(
        "slow",
        "import time\ndef handler(event):\n    time.sleep(30)\n",
    );
    c.add_handler("syntax", "def handler(event) return 1\n");
    c.add_handler(
        "unserializable",
        "def handler(event):\n    return object()\n",
    );
    c.add_handler(
        "sysexit",
        "import sys\ndef handler(event):\n    sys.exit(1)\n",
    );
    std::fs::create_dir_all(c.registry().join("empty")).unwrap();

    let (s, b) = c.call("nope", "{}").await;
    assert_eq!(
        (s, b["error"].as_str()),
        (404, Some("unknown lambda")),
        "{b}"
    );
    assert_eq!(c.call("empty", "{}").await.0, 404);
    for bad in ["a..b", "%2e%2e", "a%2Fb", "-x", &"x".repeat(65), "a%00b"] {
        let (s, b) = c.call(bad, "{}").await;
        assert_eq!(
            (s, b["error"].as_str()),
            (400, Some("invalid lambda name")),
            "{bad}: {b}"
        );
    }
    let (s, b) = c.call("hello", "{not json").await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid JSON")), "{b}");
    let (s, b) = c
        .call("hello", &format!(r#"{{"name": "{}"}}"#, "x".repeat(2000)))
        .await;
    assert_eq!((s, b["limit_bytes"].as_u64()), (413, Some(1000)), "{b}");
    let (s, b) = c.call("fail", r#"{"a": 1}"#).await;
    assert_eq!(s, 500);
    assert_eq!(b["type"], "ValueError");
    assert!(
        b["exception"].as_str().unwrap().contains("always fails"),
        "{b}"
    );
    assert!(
        b["traceback"].as_str().unwrap().contains("lambda_func.py"),
        "{b}"
    );
    let (s, b) = c.call("syntax", "{}").await;
    assert_eq!((s, b["type"].as_str()), (500, Some("SyntaxError")), "{b}");
    let (s, b) = c.call("unserializable", "{}").await;
    assert_eq!((s, b["type"].as_str()), (500, Some("TypeError")), "{b}");
    assert_eq!(c.call("sysexit", "{}").await.1["type"], "SystemExit");
    // A handler that kills its interpreter: 502, and the next call gets a fresh sandbox.
    assert_eq!(c.call("exits", "{}").await, (200, json!("alive")));
    let (s, b) = c.call("exits", r#"{"die": true}"#).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (502, Some("sandbox failed")),
        "{b}"
    );
    assert_eq!(c.call("exits", "{}").await, (200, json!("alive")));
    assert_eq!(c.stats().await["lambdas"]["exits"]["cold_starts"], 2);
    // Timeout: 504 with the limit, sandbox destroyed.
    let (s, b) = c.call("slow", "{}").await;
    assert_eq!(
        (s, b["error"].as_str(), b["timeout_s"].as_u64()),
        (504, Some("timeout"), Some(2)),
        "{b}"
    );
    // Wrong method / path.
    let (s, _) = common::http(c.addr, "GET", "/runLambda/hello", b"").await;
    assert_eq!(s, 405);
    let (s, _) = common::http(c.addr, "GET", "/nowhere", b"").await;
    assert_eq!(s, 404);
    let (s, body) = common::http(c.addr, "GET", "/status", b"").await;
    assert_eq!((s, body.as_str()), (200, "ready"));
    // The worker still serves after all that.
    assert_eq!(
        c.call("hello", r#"{"name": "still here"}"#).await,
        (200, json!("Hello, still here!"))
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sandboxes_expire_and_capacity_is_capped() {
    if !can_run("idle_sandboxes_expire_and_capacity_is_capped") {
        return;
    }
    let mut c = TestCluster::start(r#"{"idle_timeout_s": 1, "handler_cache_size": 2}"#).await;
    for i in 0..3 {
        c.add_handler(
            &format!("l{i}"),
            &format!("def handler(event):\n    return {i}\n"),
        );
    }
    for i in 0..3 {
        assert_eq!(c.call(&format!("l{i}"), "{}").await, (200, json!(i)));
        let live = c.stats().await["sandboxes"].as_array().unwrap().len();
        assert!(live <= 2, "handler_cache_size exceeded: {live}");
    }
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let stats = c.stats().await;
    assert_eq!(
        stats["sandboxes"],
        json!([]),
        "idle sandboxes should have expired: {stats}"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_get_503_and_are_closed() {
    if !can_run("connections_beyond_max_connections_get_503_and_are_closed") {
        return;
    }
    let mut c = TestCluster::start(r#"{"max_connections": 2}"#).await;
    // Two idle keep-alive connections hold both slots.
    let first = tokio::net::TcpStream::connect(c.addr).await.unwrap();
    let second = tokio::net::TcpStream::connect(c.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = common::http(c.addr, "GET", "/status", b"").await;
    assert_eq!(status, 503, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "unavailable");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("2 connections open (max_connections)")),
        "{body}"
    );
    // A slot freed by a client that goes is used by the next one.
    drop(first);
    let mut status = 0;
    for _ in 0..100 {
        status = common::http(c.addr, "GET", "/status", b"").await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200);
    drop(second);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_nothing_behind() {
    if !can_run("shutdown_leaves_nothing_behind") {
        return;
    }
    let mut c = TestCluster::start("{}").await;
    c.add_quickstart("hello");
    c.add_quickstart("echo");
    assert_eq!(c.call("hello", "{}").await.0, 200);
    assert_eq!(c.call("echo", "[1]").await, (200, json!([1])));
    let stats = c.stats().await;
    let pids: Vec<i64> = stats["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["pid"].as_i64().unwrap())
        .collect();
    assert_eq!(pids.len(), 2);
    let parent = c.cfg.cgroup_parent().display().to_string();
    assert!(!cgroup_dirs_containing(&parent).is_empty());
    c.shutdown().await;
    for pid in pids {
        assert!(
            !common::pid_alive(pid),
            "sandbox pid {pid} survived shutdown"
        );
    }
    assert_eq!(
        cgroup_dirs_containing(&parent),
        Vec::<std::path::PathBuf>::new()
    );
    assert!(
        !c.cfg.worker_dir.join("handlers").exists(),
        "scratch directories left"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(c.dir.to_str().unwrap()),
        "a mount of the cluster is left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_a_crash_removes_leftovers() {
    if !can_run("restart_after_a_crash_removes_leftovers") {
        return;
    }
    for import_cache in [false, true] {
        crash_and_restart(import_cache).await;
    }
}

/// A worker process killed with SIGKILL leaves its fresh sandboxes running; zygotes see their
/// control socket close and exit, taking the sandboxes forked from them along (they live in
/// the zygote's pid namespace). Either way the cgroups stay until a restart removes them.
async fn crash_and_restart(import_cache: bool) {
    let patch = format!(r#"{{"import_cache": {import_cache}}}"#);
    let (_tmp, _dir, mut cfg) = common::new_cluster(&patch);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    cfg.worker_port = port;
    let cfg_path = cfg.worker_dir.join("../worker-0.json");
    cfg.save(&cfg_path).unwrap();
    std::fs::create_dir_all(cfg.registry_dir.join("hello")).unwrap();
    std::fs::write(
        cfg.registry_dir.join("hello/lambda_func.py"),
        "def handler(event):\n    return 'hi'\n",
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_worker"))
        .arg(format!("--config={}", cfg_path.display()))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(s) = tokio::net::TcpStream::connect(addr).await {
            drop(s);
            ready = common::http(addr, "GET", "/status", b"").await.0 == 200;
            if ready {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "worker process did not become ready");
    assert_eq!(
        common::http(addr, "POST", "/runLambda/hello", b"{}").await,
        (200, "\"hi\"".to_owned())
    );
    let (_, stats) = common::http(addr, "GET", "/stats", b"").await;
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    let pid = stats["sandboxes"][0]["pid"].as_i64().unwrap();
    let zygote = stats["import_cache"]["zygotes"][0]["pid"].as_i64();
    assert_eq!(zygote.is_some(), import_cache, "{stats}");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    if let Some(zygote) = zygote {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while common::pid_alive(zygote) || common::pid_alive(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "the zygote and its sandbox should end with the worker"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    } else {
        assert!(
            common::pid_alive(pid),
            "a fresh sandbox outlives a SIGKILLed worker"
        );
    }
    let parent = cfg.cgroup_parent().display().to_string();
    assert!(!cgroup_dirs_containing(&parent).is_empty());
    let handlers = cfg.worker_dir.join("handlers").display().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mounts.contains(&handlers),
        "the crashed run's scratch mount"
    );

    // A new worker on the same directory cleans up before it answers ready (this one without
    // an import cache, so that no cgroup of its own is expected).
    cfg.worker_port = 0;
    cfg.import_cache = false;
    let w = worker::Worker::start(cfg.clone()).await.unwrap();
    assert!(!common::pid_alive(pid), "leftover sandbox still running");
    assert!(!cfg.worker_dir.join("import-cache").exists());
    // The crashed run's scratch tmpfs mounts are gone too.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&handlers), "a scratch mount is left");
    assert_eq!(
        cgroup_dirs_containing(&parent),
        Vec::<std::path::PathBuf>::new()
    );
    w.shutdown().await.unwrap();
}

/// The freezer state of a sandbox's cgroup (`rel`, as `/stats` shows it), as the kernel reports it.
fn frozen(rel: &str) -> bool {
    match sandbox::cgroup::CgroupSetup::detect().unwrap() {
        sandbox::cgroup::CgroupSetup::V1 { controllers } => {
            let f = controllers["freezer"].join(rel).join("freezer.state");
            std::fs::read_to_string(f).unwrap().trim() == "FROZEN"
        }
        sandbox::cgroup::CgroupSetup::V2 { root } => {
            let f = root.join(rel).join("cgroup.freeze");
            std::fs::read_to_string(f).unwrap().trim() == "1"
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sandboxes_are_paused_and_keep_their_state() {
    if !can_run("idle_sandboxes_are_paused_and_keep_their_state") {
        return;
    }
    let mut c = TestCluster::start(r#"{"pause_after_ms": 100}"#).await;
    c.add_quickstart("counter");
    assert_eq!(c.call("counter", "{}").await, (200, json!({"calls": 1})));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let (id, cgroup) = loop {
        let stats = c.stats().await;
        let sb = &stats["sandboxes"][0];
        if sb["state"] == "paused" {
            break (
                sb["id"].as_u64().unwrap(),
                sb["cgroup"].as_str().unwrap().to_owned(),
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never paused: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        frozen(&cgroup),
        "the kernel does not report sandbox {id} frozen"
    );
    let counter = &c.stats().await["lambdas"]["counter"];
    assert_eq!(
        (&counter["live"], &counter["idle"], &counter["paused"]),
        (&json!(1), &json!(1), &json!(1))
    );
    // The next call thaws it: same sandbox, module state intact.
    assert_eq!(c.call("counter", "{}").await, (200, json!({"calls": 2})));
    let stats = c.stats().await;
    assert_eq!(stats["sandboxes"][0]["id"], id, "{stats}");
    assert!(stats["cache"]["pauses"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(stats["cache"]["unpauses"], 1, "{stats}");
    assert_eq!(stats["cache"]["hits"], 1, "{stats}");
    assert_eq!(stats["timings"]["unpause"]["count"], 1, "{stats}");
    // A paused sandbox is destroyed cleanly at shutdown.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(frozen(&cgroup));
    c.shutdown().await;
    assert!(cgroup_dirs_containing(&c.cfg.cgroup_parent().display().to_string()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_memory_budget_evicts_and_keeps_serving() {
    if !can_run("a_small_memory_budget_evicts_and_keeps_serving") {
        return;
    }
    let mut c = TestCluster::start(r#"{"memory_budget_mb": 16, "pause_after_ms": 100}"#).await;
    let n = 16;
    for i in 0..n {
        c.add_handler(
            &format!("m{i}"),
            "blob = bytearray(2 * 1024 * 1024)\ndef handler(event):\n    return len(blob)\n",
        );
    }
    for round in 0..2 {
        for i in 0..n {
            let (status, body) = c.call(&format!("m{i}"), "{}").await;
            assert_eq!(
                (status, &body),
                (200, &json!(2 * 1024 * 1024)),
                "round {round}"
            );
        }
    }
    let stats = c.stats().await;
    let cache = &stats["cache"];
    assert_eq!(cache["memory_budget_mb"], 16, "{stats}");
    assert!(cache["evictions"].as_u64().unwrap() > 0, "{stats}");
    let live = stats["sandboxes"].as_array().unwrap().len();
    assert!(live < n, "{live} sandboxes live: {stats}");
    // Once the reaper has had a tick, the idle sandboxes fit the budget again (at most one
    // sandbox over it, the one a call started last).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let used = c.stats().await["cache"]["memory_in_use_mb"]
        .as_f64()
        .unwrap();
    assert!(used <= 16.0 + 8.0, "{used} MiB in use");
    c.shutdown().await;
}
