//! Hostile handlers (root only): each attack fails or is contained, its caller gets a clear
//! answer, and the worker keeps serving everyone else. Runs with the import cache on (the
//! default); `hardening.rs` shows the fresh path answers alike.

mod common;

use std::time::{Duration, Instant};

use common::{can_run, cgroup_dirs_containing, TestCluster, PY_OUTCOME};
use serde_json::json;

const HELLO: &str = "def handler(event):\n    return 'still here'\n";

/// The function's stored log, once a line containing `needle` is in it (within 10 s).
async fn wait_for_log(
    c: &TestCluster,
    name: &str,
    needle: &str,
) -> Vec<worker::logs::store::Stored> {
    let dir = c.cfg.function_logs().join(name);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = worker::logs::store::read_function(&dir).unwrap();
        if lines.iter().any(|l| l.text.contains(needle)) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The bystander lambda still answers, quickly.
async fn still_serving(c: &TestCluster) {
    let t = Instant::now();
    assert_eq!(c.call("bystander", "{}").await, (200, json!("still here")));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

fn add(c: &TestCluster, name: &str, source: &str, limits: &str) {
    c.add_handler(name, source);
    std::fs::write(c.registry().join(name).join("lambda.json"), limits).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_handlers_are_contained() {
    if !can_run("hostile_handlers_are_contained") {
        return;
    }
    let mut c = TestCluster::start(r#"{"host_mb": 8}"#).await;
    c.add_handler("bystander", HELLO);
    still_serving(&c).await;

    // An infinite loop: stopped at timeout_s, answered 504.
    add(
        &c,
        "spin",
        "def handler(event):\n    while True:\n        pass\n",
        r#"{"timeout_s": 1}"#,
    );
    let (status, r) = c.call("spin", "{}").await;
    assert_eq!((status, &r["error"]), (504, &json!("timeout")), "{r}");
    still_serving(&c).await;

    // 10 GB: the OOM killer ends it at memory_mb (or the allocation fails in Python).
    add(
        &c,
        "hog",
        "def handler(event):\n    return len(b'x' * (10 << 30))\n",
        r#"{"memory_mb": 128}"#,
    );
    let (status, r) = c.call("hog", "{}").await;
    assert!(
        (status == 502 && r["error"] == "out of memory")
            || (status == 500 && r["type"] == "MemoryError"),
        "{status} {r}"
    );
    still_serving(&c).await;

    // A fork bomb: the pids cgroup stops it at max_procs; the timeout ends it.
    add(
        &c,
        "bomb",
        "import os\n\ndef handler(event):\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass\n",
        r#"{"timeout_s": 2, "max_procs": 32}"#,
    );
    let (status, r) = c.call("bomb", "{}").await;
    assert_eq!((status, &r["error"]), (504, &json!("timeout")), "{r}");
    still_serving(&c).await;

    // Filling /tmp: ENOSPC at tmp_mb, reported by the handler itself.
    add(
        &c,
        "filltmp",
        "import errno\n\ndef handler(event):\n    try:\n        with open('/tmp/fill', 'wb') as f:\n            while True:\n                f.write(b'x' * (1 << 20))\n    except OSError as exc:\n        return errno.errorcode[exc.errno]\n",
        r#"{"tmp_mb": 8}"#,
    );
    assert_eq!(c.call("filltmp", "{}").await, (200, json!("ENOSPC")));
    still_serving(&c).await;

    // Filling /host: its scratch tmpfs is full at host_mb (here 8); nothing reaches the host's
    // disk beyond that.
    add(
        &c,
        "fillhost",
        "import errno, sys\n\ndef handler(event):\n    try:\n        with open('/host/fill', 'wb') as f:\n            while True:\n                f.write(b'x' * (1 << 20))\n    except OSError as exc:\n        return errno.errorcode[exc.errno]\n",
        "{}",
    );
    assert_eq!(c.call("fillhost", "{}").await, (200, json!("ENOSPC")));
    // Printing 200 MB, then answering: the worker reads it all (the handler never blocks for
    // good) and keeps function_log_call_bytes of it, plus a line saying what was dropped.
    add(
        &c,
        "chatty",
        "import sys\n\ndef handler(event):\n    line = 'y' * 1023 + '\\n'\n    for _ in range(200 * 1024):\n        sys.stdout.write(line)\n    return 'printed 200 MB'\n",
        r#"{"timeout_s": 60}"#,
    );
    let t = Instant::now();
    assert_eq!(c.call("chatty", "{}").await, (200, json!("printed 200 MB")));
    eprintln!("chatty: 200 MB printed and answered in {:?}", t.elapsed());
    let cap = c.cfg.function_log_call_bytes;
    let log = wait_for_log(&c, "chatty", "were dropped").await;
    let dropped = log
        .iter()
        .find(|l| l.text.contains("were dropped"))
        .unwrap();
    let kept: u64 = log
        .iter()
        .filter(|l| l.request_id == dropped.request_id && l.text.starts_with('y'))
        .map(|l| l.text.len() as u64 + 1)
        .sum();
    assert!(
        kept <= cap + 1 && kept + 1024 >= cap,
        "kept {kept} of a {cap}-byte cap"
    );
    let printed = 200u64 << 20;
    assert!(
        dropped.text.contains(&format!("{} bytes", printed - cap)),
        "{}",
        dropped.text
    );
    // Printing without end: stopped at timeout_s, and its log is bounded all the same.
    add(
        &c,
        "endless",
        "def handler(event):\n    line = 'z' * 1023\n    while True:\n        print(line)\n",
        r#"{"timeout_s": 3}"#,
    );
    let (status, r) = c.call("endless", "{}").await;
    assert_eq!((status, &r["error"]), (504, &json!("timeout")), "{r}");
    wait_for_log(&c, "endless", "Task timed out after 3.00 seconds").await;
    let on_disk: u64 = walkdir::WalkDir::new(c.cfg.function_logs())
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(
        on_disk < 3 * cap + (1 << 20),
        "function logs hold {on_disk} bytes"
    );
    // Nothing of it in the scratch tmpfs.
    let stats = c.stats().await;
    for sb in stats["sandboxes"].as_array().unwrap() {
        let dir = c.cfg.worker_dir.join(format!(
            "handlers/{}/{}",
            sb["lambda"].as_str().unwrap(),
            sb["id"]
        ));
        assert!(!dir.join("stdout").exists(), "{}", dir.display());
    }
    still_serving(&c).await;

    // No network with net "none", no raw sockets, no modules, nothing of the worker's files.
    let worker_config = c.dir.join("config/template.json");
    add(
        &c,
        "reach",
        &format!(
            r#"{PY_OUTCOME}import socket

def connect():
    s = socket.socket()
    s.settimeout(2)
    s.connect(("1.1.1.1", 53))

def handler(event):
    return {{
        "connect": outcome(connect),
        "raw_socket": outcome(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)),
        "finit_module": outcome(lambda: libc.syscall({finit}, 0, b"", 0)),
        "worker_config": outcome(lambda: open("{cfg}").read()),
        "kill_1": outcome(lambda: os.kill(1, 0)),
    }}
"#,
            cfg = worker_config.display(),
            finit = libc::SYS_finit_module,
        ),
        "{}",
    );
    let (status, r) = c.call("reach", "{}").await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["connect"], "ENETUNREACH", "{r}");
    assert_eq!(r["raw_socket"], "EPERM", "{r}");
    assert_eq!(r["finit_module"], "EPERM", "{r}");
    assert_eq!(r["worker_config"], "ENOENT", "{r}");
    // pid 1 is the runtime itself, in its own pid namespace.
    assert_eq!(r["kill_1"], "allowed", "{r}");
    still_serving(&c).await;

    // After all that: a clean shutdown leaves no cgroup and no scratch directory.
    let parent = c.cfg.cgroup_parent().display().to_string();
    c.shutdown().await;
    assert!(cgroup_dirs_containing(&parent).is_empty());
    assert!(!c.cfg.worker_dir.join("handlers").exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let worker_dir = c.cfg.worker_dir.display().to_string();
    assert!(!mounts.contains(&worker_dir), "a scratch mount is left");
}

/// Sends `head` and `body` raw on a new connection, half-closes when `close` is set, and
/// returns the status and body of the answer (status 0 when the connection closed without one).
async fn raw(c: &TestCluster, head: &str, body: &[u8], close: bool) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(c.addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    // The worker may answer and close before it has read everything (413).
    let _ = s.write_all(body).await;
    if close {
        let _ = s.shutdown().await;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    common::parse_response(&buf)
}

/// What a hostile client can send: each gets a clear answer (a status, and a JSON body naming
/// the problem wherever the worker, not hyper's parser, answers), and the worker keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_clear_answers() {
    if !can_run("hostile_requests_get_clear_answers") {
        return;
    }
    let mut c = TestCluster::start(r#"{"max_body_bytes": 1048576, "body_timeout_s": 1}"#).await;
    c.add_handler("bystander", HELLO);
    c.add_handler("echo", "def handler(event):\n    return event\n");
    still_serving(&c).await;

    // Names: `..`, `/`, NUL, bytes that are not UTF-8, 1 000 characters.
    let long = "a".repeat(1000);
    for name in [
        "..",
        "%2e%2e",
        "a/b",
        "a%2Fb",
        "..%2F..%2Fetc",
        "%00",
        "a%00b",
        "%ff",
        &long,
    ] {
        let (status, body) = c.post(&format!("/runLambda/{name}"), "{}").await;
        let r: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {body}"));
        assert_eq!(status, 400, "{name}: {r}");
        assert_eq!(r["error"], "invalid lambda name", "{name}: {r}");
    }
    // A 100 000-character path is refused by the HTTP parser itself, before any handler: 414.
    let (status, _) = c
        .post(&format!("/runLambda/{}", "a".repeat(100_000)), "{}")
        .await;
    assert_eq!(status, 414);
    still_serving(&c).await;

    // Malformed bodies: 400 with the reason.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for (what, body) in [
        ("not JSON", b"{not json".to_vec()),
        ("not UTF-8", b"\xff\xfe{\"a\": 1}".to_vec()),
        ("two values", b"{} {}".to_vec()),
        ("nested 100 000 deep", deep.into_bytes()),
    ] {
        let (status, text) = raw(
            &c,
            &format!(
                "POST /runLambda/echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            ),
            &body,
            false,
        )
        .await;
        let r: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (status, &r["error"]),
            (400, &json!("invalid JSON")),
            "{what}: {r}"
        );
    }
    // Nested 500 deep is fine: within the limit, the handler gets it and returns it.
    let nested = format!("{}{}", "[".repeat(500), "]".repeat(500));
    let (status, text) = c.post("/runLambda/echo", &nested).await;
    assert_eq!((status, text.len()), (200, 1000), "{text}");

    // Huge bodies: 413 at once when Content-Length says so (nothing is read), and after
    // 1 MiB when the body comes chunked.
    let t = Instant::now();
    let (status, text) = raw(
        &c,
        "POST /runLambda/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000000\r\n\r\n",
        b"[",
        false,
    )
    .await;
    assert_eq!(status, 413, "{text}");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let chunk = format!("100000\r\n{}\r\n", "1".repeat(0x100000));
    let (status, text) = raw(
        &c,
        "POST /runLambda/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        chunk.repeat(20).as_bytes(),
        false,
    )
    .await;
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (status, r["limit_bytes"].as_u64()),
        (413, Some(1 << 20)),
        "{r}"
    );

    // A body that stops arriving: 408 after body_timeout_s (here 1 s).
    let (status, text) = raw(
        &c,
        "POST /runLambda/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
        b"{\"a\"",
        false,
    )
    .await;
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!((status, &r["error"]), (408, &json!("body timeout")), "{r}");
    // A client that hangs up halfway: no answer to give, and nothing breaks.
    let (status, _) = raw(
        &c,
        "POST /runLambda/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
        b"{\"a\"",
        true,
    )
    .await;
    assert!(status == 0 || status == 400, "{status}");
    // Garbage instead of HTTP: hyper answers 400 and closes.
    let (status, _) = raw(&c, "\x00\x01\x02 nonsense\r\n\r\n", b"", false).await;
    assert_eq!(status, 400);
    still_serving(&c).await;
    assert_eq!(c.stats().await["lambdas"]["echo"]["cold_starts"], 1);
    c.shutdown().await;
}

/// Handlers that go after the worker, other sandboxes, the registry and the host: each attempt
/// fails, its caller gets a clear answer, and the worker keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_handlers_cannot_reach_the_worker_or_each_other() {
    if !can_run("hostile_handlers_cannot_reach_the_worker_or_each_other") {
        return;
    }
    let mut c = TestCluster::start("{}").await;
    c.add_handler("bystander", HELLO);
    still_serving(&c).await;
    let worker_pid = std::process::id();

    // The worker: not in view, not signalable, not traceable, its memory not readable.
    add(
        &c,
        "stalker",
        &format!(
            r#"{PY_OUTCOME}
def handler(event):
    pid = event["worker_pid"]
    buf = ctypes.create_string_buffer(8)
    iov = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 8)
    return {{
        "in_view": os.path.exists("/proc/%d" % pid),
        "kill": outcome(lambda: os.kill(pid, 9)),
        "ptrace_attach": outcome(lambda: libc.ptrace(16, pid, 0, 0)),
        "ptrace_traceme": outcome(lambda: libc.ptrace(0, 0, 0, 0)),
        "process_vm_readv": outcome(lambda: libc.process_vm_readv(pid, iov, 1, iov, 1, 0)),
        "setns_mnt": outcome(lambda: libc.setns(os.open("/proc/1/ns/mnt", os.O_RDONLY), 0)),
        "io_uring_setup": outcome(lambda: libc.syscall({io_uring_setup}, 1, ctypes.create_string_buffer(120))),
        "pidfd_getfd": outcome(lambda: libc.syscall({pidfd_getfd}, 0, 0, 0)),
        "write_packages": outcome(lambda: open("/packages/x", "w")),
        "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    }}
"#,
            io_uring_setup = libc::SYS_io_uring_setup,
            pidfd_getfd = libc::SYS_pidfd_getfd,
        ),
        "{}",
    );
    let (status, r) = c
        .call("stalker", &json!({"worker_pid": worker_pid}).to_string())
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["in_view"], false, "{r}");
    assert_eq!(r["kill"], "ESRCH", "{r}");
    for attempt in [
        "ptrace_attach",
        "ptrace_traceme",
        "process_vm_readv",
        "setns_mnt",
        "io_uring_setup",
        "pidfd_getfd",
    ] {
        assert_eq!(r[attempt], "EPERM", "{attempt}: {r}");
    }
    assert_eq!(r["write_packages"], "EROFS", "{r}");
    assert_eq!(r["processes"], json!([1]), "{r}");
    still_serving(&c).await;

    // SIGKILL to every process it may signal reaches only its own child; pid 1 of its
    // namespace (its own runtime) ignores it.
    add(
        &c,
        "killall",
        &format!(
            r#"{PY_OUTCOME}import signal, subprocess

def handler(event):
    child = subprocess.Popen(["/bin/sleep", "60"])
    result = {{"kill_all": outcome(lambda: os.kill(-1, signal.SIGKILL))}}
    result["child"] = child.wait()
    result["kill_self"] = outcome(lambda: os.kill(1, signal.SIGKILL))
    return result
"#
        ),
        "{}",
    );
    let (status, r) = c.call("killall", "{}").await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        r,
        json!({"kill_all": "allowed", "child": -9, "kill_self": "allowed"})
    );
    still_serving(&c).await;

    // A segfault, a hard exit: 502, then a fresh sandbox.
    add(
        &c,
        "crash",
        "import ctypes, os\n\ndef handler(event):\n    if event.get('how') == 'segv':\n        ctypes.string_at(0)\n    if event.get('how') == 'exit':\n        os._exit(7)\n    return 'alive'\n",
        "{}",
    );
    for how in ["segv", "exit"] {
        let (status, r) = c.call("crash", &json!({"how": how}).to_string()).await;
        assert_eq!(
            (status, &r["error"]),
            (502, &json!("sandbox failed")),
            "{how}: {r}"
        );
        assert_eq!(c.call("crash", "{}").await, (200, json!("alive")), "{how}");
    }
    assert_eq!(c.stats().await["lambdas"]["crash"]["cold_starts"], 3);
    still_serving(&c).await;

    // Return values JSON cannot carry, or too big to take: clear errors, the worker unharmed.
    add(
        &c,
        "returns",
        "def handler(event):\n    how = event['how']\n    if how == 'nan':\n        return float('nan')\n    if how == 'cycle':\n        x = []\n        x.append(x)\n        return x\n    if how == 'bytes':\n        return b'raw'\n    if how == 'huge':\n        return 'x' * (65 << 20)\n",
        r#"{"memory_mb": 640}"#,
    );
    for how in ["nan", "cycle", "bytes"] {
        let (status, r) = c.call("returns", &json!({"how": how}).to_string()).await;
        assert_eq!(status, 500, "{how}: {r}");
        assert!(
            r["exception"].to_string().contains("not JSON-serializable"),
            "{how}: {r}"
        );
    }
    let (status, r) = c.call("returns", r#"{"how": "huge"}"#).await;
    assert_eq!(
        (status, &r["error"]),
        (502, &json!("sandbox failed")),
        "{r}"
    );
    assert!(r["message"].to_string().contains("limit"), "{r}");
    still_serving(&c).await;

    // A sandbox that dies in the middle of a call: the 502 carries the end of what it printed
    // (read from its pipe), and so does its log.
    add(
        &c,
        "crasher",
        "import os, sys\n\ndef handler(event):\n    print('Traceback (most recent call last): crash 4c2f', file=sys.stderr)\n    os._exit(1)\n",
        "{}",
    );
    let t = Instant::now();
    let (status, r) = c.call("crasher", "{}").await;
    assert_eq!(
        (status, &r["error"]),
        (502, &json!("sandbox failed")),
        "{r}"
    );
    assert!(r.to_string().contains("crash 4c2f"), "{r}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    wait_for_log(&c, "crasher", "Runtime.ExitError").await;
    still_serving(&c).await;

    // Another sandbox's scratch: one lambda leaves a secret in its /host and /tmp; another
    // looks for it everywhere it can see, and at its path on the host.
    add(
        &c,
        "keeper",
        "def handler(event):\n    for d in ('/host', '/tmp'):\n        with open(d + '/secret-7f3a', 'w') as f:\n            f.write('the secret')\n    return 'kept'\n",
        "{}",
    );
    assert_eq!(c.call("keeper", "{}").await, (200, json!("kept")));
    let stats = c.stats().await;
    let keeper = stats["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["lambda"] == "keeper")
        .unwrap()
        .clone();
    let on_host = c
        .cfg
        .worker_dir
        .join(format!("handlers/keeper/{}/secret-7f3a", keeper["id"]));
    assert!(on_host.is_file(), "the secret is where the host sees it");
    add(
        &c,
        "snoop",
        &format!(
            r#"{PY_OUTCOME}
def handler(event):
    found = []
    for top in os.listdir("/"):
        if top in ("proc", "sys"):
            continue
        for d, _, files in os.walk("/" + top):
            found += [os.path.join(d, f) for f in files if f.startswith("secret-")]
    return {{
        "found": found,
        "host_path": outcome(lambda: open(event["path"]).read()),
        "keeper_pid": outcome(lambda: os.kill(event["pid"], 0)),
    }}
"#
        ),
        "{}",
    );
    let (status, r) = c
        .call(
            "snoop",
            &json!({"path": on_host, "pid": keeper["pid"]}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["found"], json!([]), "{r}");
    assert_eq!(r["host_path"], "ENOENT", "{r}");
    assert_eq!(r["keeper_pid"], "ESRCH", "{r}");
    still_serving(&c).await;

    // The registry: symbolic links to files outside it are refused, never followed.
    let outside = c.dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("lambda_func.py"), HELLO).unwrap();
    std::fs::write(outside.join("notes.txt"), "six==1.17.0\n").unwrap();
    let reg = c.registry();
    std::os::unix::fs::symlink(&outside, reg.join("linkdir")).unwrap();
    std::fs::create_dir_all(reg.join("linkfile")).unwrap();
    std::os::unix::fs::symlink(
        outside.join("lambda_func.py"),
        reg.join("linkfile/lambda_func.py"),
    )
    .unwrap();
    for (name, file, status, kind) in [
        ("linkreq", "requirements.txt", 400, "invalid requirements"),
        ("linkcfg", "lambda.json", 400, "invalid lambda config"),
    ] {
        c.add_handler(name, HELLO);
        std::os::unix::fs::symlink(outside.join("notes.txt"), reg.join(name).join(file)).unwrap();
        let (s, r) = c.call(name, "{}").await;
        assert_eq!((s, &r["error"]), (status, &json!(kind)), "{name}: {r}");
        assert!(
            !r.to_string().contains("six=="),
            "{name} leaks the file: {r}"
        );
    }
    for name in ["linkdir", "linkfile"] {
        let (s, r) = c.call(name, "{}").await;
        assert_eq!(
            (s, &r["error"]),
            (403, &json!("bad handler")),
            "{name}: {r}"
        );
    }
    // A link inside a lambda's directory resolves inside the sandbox, where the host's paths
    // do not exist.
    add(
        &c,
        "innerlink",
        &format!("{PY_OUTCOME}\ndef handler(event):\n    return outcome(lambda: open('/handler/notes').read())\n"),
        "{}",
    );
    std::os::unix::fs::symlink(outside.join("notes.txt"), reg.join("innerlink/notes")).unwrap();
    assert_eq!(c.call("innerlink", "{}").await, (200, json!("ENOENT")));
    still_serving(&c).await;

    let parent = c.cfg.cgroup_parent().display().to_string();
    c.shutdown().await;
    assert!(cgroup_dirs_containing(&parent).is_empty());
    assert!(!c.cfg.worker_dir.join("handlers").exists());
}
