//! Hostile handlers (root only): each attack fails or is contained, its caller gets a clear
//! answer, and the worker keeps serving everyone else. Runs with the import cache on (the
//! default); `hardening.rs` shows the fresh path answers alike.

mod common;

use std::time::{Duration, Instant};

use common::{can_run, cgroup_dirs_containing, TestCluster};
use serde_json::json;

const HELLO: &str = "def handler(event):\n    return 'still here'\n";

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

    // Filling /host, or printing without end: its scratch tmpfs is full at host_mb (here 8);
    // nothing reaches the host's disk beyond that.
    add(
        &c,
        "fillhost",
        "import errno, sys\n\ndef handler(event):\n    try:\n        with open('/host/fill', 'wb') as f:\n            while True:\n                f.write(b'x' * (1 << 20))\n    except OSError as exc:\n        return errno.errorcode[exc.errno]\n",
        "{}",
    );
    assert_eq!(c.call("fillhost", "{}").await, (200, json!("ENOSPC")));
    add(
        &c,
        "chatty",
        "def handler(event):\n    line = 'y' * 1023\n    while True:\n        print(line)\n",
        r#"{"timeout_s": 5}"#,
    );
    let (status, r) = c.call("chatty", "{}").await;
    assert_eq!(status, 500, "the print fails with ENOSPC: {r}");
    assert!(r["exception"].to_string().contains("No space left"), "{r}");
    let stats = c.stats().await;
    for sb in stats["sandboxes"].as_array().unwrap() {
        if sb["lambda"] == "chatty" {
            let dir = c
                .cfg
                .worker_dir
                .join(format!("handlers/chatty/{}", sb["id"]));
            let size = std::fs::metadata(dir.join("stdout")).unwrap().len();
            assert!(size <= 8 << 20, "stdout grew to {size} bytes");
        }
    }
    still_serving(&c).await;

    // No network with net "none", no raw sockets, no modules, nothing of the worker's files.
    let worker_config = c.dir.join("config/template.json");
    add(
        &c,
        "reach",
        &format!(
            r#"import ctypes, errno, os, socket

libc = ctypes.CDLL(None, use_errno=True)

def outcome(fn):
    try:
        rc = fn()
        if isinstance(rc, int) and rc < 0:
            return errno.errorcode[ctypes.get_errno()]
        return "allowed"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc))

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
