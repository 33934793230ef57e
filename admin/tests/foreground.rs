//! `admin workers --foreground` and `admin registry --foreground` (what containers run, as in
//! `contrib/k8s`): they serve in the process that ran them, with its pid in the pid file, so
//! that `admin status` sees them and `admin kill` (or SIGTERM) stops them; the pid file goes
//! when they exit. `admin kill` stops them even when nobody reads what it prints.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{call, fails, free_port, ok, tar_gz, Cluster, KEY, SECRET};

fn spawn(args: &[&str]) -> Child {
    Command::new(support::ADMIN)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn admin")
}

fn wait_for(port: u16, what: &str, child: &mut Child) {
    let t = Instant::now();
    let up = || {
        worker::http_client::get("127.0.0.1", port, "/status", Duration::from_secs(2))
            .is_ok_and(|r| r.status == 200)
    };
    while !up() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited: {status}");
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{what} not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "still running");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn foreground_worker_and_registry_serve_until_stopped() {
    if !support::can_run("foreground") {
        return;
    }
    let c = Cluster::new();
    let (reg_port, worker_port) = (free_port(), free_port());
    let mut registry = spawn(&[
        "registry",
        &c.flag(),
        &format!("--port={reg_port}"),
        &format!("--access-key={KEY}"),
        &format!("--secret-key={SECRET}"),
        "--foreground",
    ]);
    wait_for(reg_port, "the registry", &mut registry);
    assert_eq!(c.registry_pid(), Some(registry.id() as i32));
    // A second one of the same cluster is refused while it serves.
    let again = fails(&[
        "registry",
        &c.flag(),
        &format!("--port={}", free_port()),
        &format!("--access-key={KEY}"),
        &format!("--secret-key={SECRET}"),
        "--foreground",
    ]);
    assert!(again.contains("already running"), "{again}");

    let bundle = c.scratch("hi.tar.gz");
    std::fs::write(
        &bundle,
        tar_gz(&[("lambda_func.py", "def handler(event):\n    return 'hi'\n")]),
    )
    .unwrap();
    ok(&[
        "upload",
        &c.flag(),
        "--handler=hi",
        &format!("--file={}", bundle.display()),
    ]);

    let refused = fails(&["workers", &c.flag(), "--num-workers=2", "--foreground"]);
    assert!(
        refused.contains("--foreground runs one worker"),
        "{refused}"
    );
    let mut worker = spawn(&[
        "workers",
        &c.flag(),
        &format!("--port={worker_port}"),
        "--foreground",
    ]);
    wait_for(worker_port, "the worker", &mut worker);
    let pid: u32 = std::fs::read_to_string(c.path("logs/worker-0.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, worker.id());
    let (status, body) = call(worker_port, "hi", "{}");
    assert_eq!(
        (status, body.trim()),
        (200, "\"hi\""),
        "pulled from the registry"
    );
    let st = ok(&["status", &c.flag()]);
    assert!(st.contains("worker-0"), "{st}");

    // `admin kill` with nobody reading its output (as in `admin kill | head -0`): every line
    // it prints fails with EPIPE, and it still stops everything.
    let mut kill = Command::new(support::ADMIN)
        .args(["kill", &c.flag()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn admin kill");
    drop(kill.stdout.take());
    let killed = kill.wait_with_output().expect("admin kill");
    assert!(killed.status.success(), "{}", support::text(&killed.stderr));
    assert!(wait_exit(&mut worker).success());
    assert!(wait_exit(&mut registry).success());
    assert!(!c.path("logs/worker-0.pid").exists());
    assert!(!c.path("logs/registry.pid").exists());
}
