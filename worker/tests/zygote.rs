//! The import cache: handler sandboxes forked from zygotes (root only; the package test also
//! needs the package index). Handlers report from inside what they see; the tests compare that
//! with what the host sees.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{can_run, cgroup_dirs_containing, pid_alive, TestCluster};
use serde_json::{json, Value};

/// Reports what a forked handler sees, after leaving a mark in /tmp and /host.
const ISOLATION_HANDLER: &str = r#"import os, socket, sys

PRELOADED = sorted(m for m in ("six",) if m in sys.modules)

def can_create(path):
    try:
        open(path, "w").close()
        return True
    except OSError:
        return False

def handler(event):
    name = os.environ["LAMBDA_NAME"]
    for d in ("/tmp", "/host"):
        with open("%s/mark-%s" % (d, name), "w") as f:
            f.write(name)
    with open("/proc/self/cgroup") as f:
        cgroup = f.read()
    with open("/proc/self/mountinfo") as f:
        mounts = sorted(line.split()[4] for line in f)
    fds = sorted(int(x) for x in os.listdir("/proc/self/fd"))
    return {
        "pid": os.getpid(),
        "procs": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "cgroup": cgroup,
        "mounts": mounts,
        "tmp": sorted(os.listdir("/tmp")),
        "host": sorted(os.listdir("/host")),
        "hostname": socket.gethostname(),
        "fds": fds,
        "env": sorted(os.environ),
        "cwd": os.getcwd(),
        "preloaded": PRELOADED,
        "dev_writable": can_create("/dev/new-file"),
        "root_writable": can_create("/new-file"),
    }
"#;

fn zygotes(stats: &Value) -> &Vec<Value> {
    stats["import_cache"]["zygotes"].as_array().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forked_sandboxes_are_isolated_from_the_zygote_and_each_other() {
    if !can_run("forked_sandboxes_are_isolated_from_the_zygote_and_each_other") {
        return;
    }
    let mut c = TestCluster::start("{}").await;
    for name in ["iso-a", "iso-b"] {
        c.add_handler(name, ISOLATION_HANDLER);
    }
    let (a, b) = tokio::join!(c.call("iso-a", "{}"), c.call("iso-b", "{}"));
    assert_eq!(a.0, 200, "{}", a.1);
    assert_eq!(b.0, 200, "{}", b.1);
    let stats = c.stats().await;
    let zs = zygotes(&stats);
    assert_eq!(zs.len(), 1, "only the root zygote: {stats}");
    let zygote_pid = zs[0]["pid"].as_i64().unwrap();
    assert_eq!(zs[0]["forks"], 2, "{stats}");
    let parent = c.cfg.cgroup_parent().display().to_string();
    let zygote_cgroup = std::fs::read_to_string(format!("/proc/{zygote_pid}/cgroup")).unwrap();
    assert!(
        zygote_cgroup.contains(&format!("{parent}/zy-")),
        "{zygote_cgroup}"
    );

    let sandboxes = stats["sandboxes"].as_array().unwrap();
    for (name, r) in [("iso-a", &a.1), ("iso-b", &b.1)] {
        assert_eq!(stats["lambdas"][name]["zygote_starts"], 1, "{stats}");
        let sb = sandboxes.iter().find(|s| s["lambda"] == name).unwrap();
        let own = sb["cgroup"].as_str().unwrap();
        // Its own pid namespace: pid 1, and neither the zygote nor the other sandbox in view.
        assert_eq!(r["pid"], 1, "{name}: {r}");
        assert!(
            r["procs"].as_array().unwrap().len() <= 2,
            "{name} sees other processes: {r}"
        );
        // Its own cgroup, not the zygote's.
        let inside = r["cgroup"].as_str().unwrap();
        assert!(
            inside.contains(&format!("/{own}\n")) && own.contains("/zs-"),
            "{name}: {inside}"
        );
        assert!(!inside.contains("/zy-"), "{name}: {inside}");
        let host_pid = sb["pid"].as_i64().unwrap();
        let seen = std::fs::read_to_string(format!("/proc/{host_pid}/cgroup")).unwrap();
        assert!(seen.contains(&format!("/{own}\n")), "{seen}");
        // Its own /tmp and /host: only its own marks.
        assert_eq!(r["tmp"], json!([format!("mark-{name}")]), "{r}");
        let host: BTreeSet<&str> = r["host"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let expect: BTreeSet<&str> = ["server_pipe"]
            .into_iter()
            .chain([format!("mark-{name}").leak() as &str])
            .collect();
        assert_eq!(host, expect, "{name}: {r}");
        let scratch = c
            .cfg
            .worker_dir
            .join(format!("handlers/{name}/{}", sb["id"]));
        assert!(scratch.join(format!("mark-{name}")).is_file());
        // The same identity, mounts, environment and fds as a fresh sandbox.
        assert_eq!(r["hostname"], "lambda");
        assert_eq!(r["cwd"], "/host");
        assert_eq!(
            r["env"],
            json!([
                "AWS_DEFAULT_REGION",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                "AWS_LAMBDA_FUNCTION_NAME",
                "AWS_LAMBDA_FUNCTION_VERSION",
                "AWS_LAMBDA_LOG_GROUP_NAME",
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "AWS_REGION",
                "HOME",
                "LAMBDA_ENTRY_TYPE",
                "LAMBDA_FUNCTION_ARN",
                "LAMBDA_LAYERS",
                "LAMBDA_NAME",
                "LAMBDA_PACKAGES",
                "LAMBDA_TASK_ROOT",
                "LANG",
                "PATH",
                "PYTHONDONTWRITEBYTECODE",
                "_HANDLER"
            ])
        );
        let mounts: Vec<&str> = r["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        // The masked /proc paths are mounts too (see sandbox::ProcMask).
        let mut expect = vec![
            "/", "/dev", "/dev/shm", "/handler", "/host", "/proc", "/tmp",
        ];
        // In a user namespace the devices are the host's nodes, bound (sandbox::mounts).
        if stats["user_namespaces"]["enabled"] == true {
            expect.extend(["/dev/null", "/dev/random", "/dev/urandom", "/dev/zero"]);
        }
        let masks: Vec<String> = sandbox::ProcMask::host()
            .entries
            .iter()
            .map(|(p, _)| format!("/proc/{p}"))
            .collect();
        expect.extend(masks.iter().map(String::as_str));
        expect.sort_unstable();
        assert_eq!(mounts, expect, "{name}: {r}");
        // stdin, stdout, stderr, the listening socket, its connection, and listdir's own fd:
        // nothing of the zygote's.
        assert!(
            r["fds"].as_array().unwrap().len() <= 6,
            "{name} holds fds it should not: {r}"
        );
        assert_eq!(r["dev_writable"], false, "{r}");
        assert_eq!(r["root_writable"], false, "{r}");
    }
    // Nothing of the handlers in the zygote's own directory.
    let zdir = c.cfg.worker_dir.join("import-cache");
    for entry in walkdir::WalkDir::new(&zdir) {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy();
        assert!(!name.starts_with("mark-"), "{}", entry.path().display());
    }
    c.shutdown().await;
    assert!(!pid_alive(zygote_pid), "the zygote outlived the worker");
    assert!(cgroup_dirs_containing(&parent).is_empty());
    assert!(!zdir.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_zygote_costs_time_not_calls() {
    if !can_run("a_dead_zygote_costs_time_not_calls") {
        return;
    }
    let mut c = TestCluster::start("{}").await;
    for name in ["dz-a", "dz-b"] {
        c.add_handler(name, "def handler(event):\n    return event['n'] * 2\n");
    }
    assert_eq!(c.call("dz-a", r#"{"n": 1}"#).await, (200, json!(2)));
    let stats = c.stats().await;
    let zygote_pid = zygotes(&stats)[0]["pid"].as_i64().unwrap();
    let sandbox_pid = stats["sandboxes"][0]["pid"].as_i64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(zygote_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // Its sandboxes live in its pid namespace and die with it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while pid_alive(zygote_pid) || pid_alive(sandbox_pid) {
        assert!(std::time::Instant::now() < deadline, "still alive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The dead sandbox is noticed and replaced; the dead zygote is retired and this start
    // falls back to a fresh interpreter.
    assert_eq!(c.call("dz-a", r#"{"n": 2}"#).await, (200, json!(4)));
    // The next cold start gets a new root zygote.
    assert_eq!(c.call("dz-b", r#"{"n": 3}"#).await, (200, json!(6)));
    let stats = c.stats().await;
    let cache = &stats["import_cache"];
    assert!(cache["fork_failures"].as_u64().unwrap() >= 1, "{stats}");
    assert!(cache["retired"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(cache["created"], 2, "{stats}");
    assert_eq!(stats["lambdas"]["dz-a"]["cold_starts"], 2, "{stats}");
    assert_eq!(stats["lambdas"]["dz-a"]["zygote_starts"], 1, "{stats}");
    assert_eq!(stats["lambdas"]["dz-b"]["zygote_starts"], 1, "{stats}");
    let live = zygotes(&stats);
    assert!(
        live.iter()
            .any(|z| z["pid"] != zygote_pid && z["retired"] == false),
        "{stats}"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_cache_off_starts_fresh_interpreters() {
    if !can_run("import_cache_off_starts_fresh_interpreters") {
        return;
    }
    let mut c = TestCluster::start(r#"{"import_cache": false}"#).await;
    c.add_handler("fresh", ISOLATION_HANDLER);
    let (status, r) = c.call("fresh", "{}").await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["pid"], 1);
    let stats = c.stats().await;
    assert_eq!(stats["import_cache"]["enabled"], false, "{stats}");
    assert!(zygotes(&stats).is_empty(), "{stats}");
    assert_eq!(stats["lambdas"]["fresh"]["cold_starts"], 1);
    assert_eq!(stats["lambdas"]["fresh"]["zygote_starts"], 0);
    assert!(!c.cfg.worker_dir.join("import-cache").exists());
    c.shutdown().await;
}

/// Lambdas that need `six` fork from the root zygote until the set has had
/// `zygote_min_starts` cold starts; then the set gets a zygote of its own (a child of the
/// root) that has `six` imported before any handler runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_set_gets_a_zygote_of_its_own() {
    if !can_run("a_package_set_gets_a_zygote_of_its_own") {
        return;
    }
    let mut c = TestCluster::start(
        r#"{"timeout_s": 120, "zygote_min_starts": 2, "package_zygotes": true}"#,
    )
    .await;
    let handler = format!("{ISOLATION_HANDLER}\nimport six  # importable, whichever the start\n");
    for name in ["six-1", "six-2", "six-3"] {
        c.add_handler(name, &handler);
        std::fs::write(c.registry().join(name).join("requirements.txt"), "six\n").unwrap();
    }
    let mut preloaded = Vec::new();
    for name in ["six-1", "six-2", "six-3"] {
        let (status, r) = c.call(name, "{}").await;
        assert_eq!(status, 200, "{name}: {r}");
        preloaded.push(r["preloaded"].clone());
        let mounts = r["mounts"].to_string();
        assert!(mounts.contains("/packages/six/"), "{name}: {mounts}");
    }
    // six-1 forked from the root; six-2's start made the six zygote; six-3 forked from it.
    assert_eq!(preloaded, [json!([]), json!(["six"]), json!(["six"])]);
    let stats = c.stats().await;
    let zs = zygotes(&stats);
    assert_eq!(zs.len(), 2, "{stats}");
    let root = &zs[0];
    let six = &zs[1];
    assert_eq!(root["packages"], json!([]));
    assert_eq!(six["parent"], root["id"], "{stats}");
    let pkgs = six["packages"].as_array().unwrap();
    assert!(
        pkgs.len() == 1 && pkgs[0].as_str().unwrap().starts_with("six/"),
        "{stats}"
    );
    assert_eq!(six["forks"], 2, "{stats}");
    // The zygote's log names what it imported.
    let log = std::fs::read_to_string(
        c.cfg
            .worker_dir
            .join(format!("import-cache/zy-{}/stderr", six["id"])),
    )
    .unwrap();
    assert!(log.contains("imported six"), "{log}");
    c.shutdown().await;
}

/// Without user namespaces no zygote imports a lambda's packages (their import code would run
/// with the zygote's root on the host), whatever `package_zygotes` says; and `package_zygotes:
/// false` turns them off anyway. Lambdas needing `six` then all fork from the root zygote and
/// import `six` themselves, unprivileged, however often the set is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn package_zygotes_are_off_without_user_namespaces_or_when_switched_off() {
    if !can_run("package_zygotes_are_off_without_user_namespaces_or_when_switched_off") {
        return;
    }
    for patch in [
        r#"{"timeout_s": 120, "zygote_min_starts": 1, "user_namespaces": false}"#,
        r#"{"timeout_s": 120, "zygote_min_starts": 1, "package_zygotes": false}"#,
    ] {
        let mut c = TestCluster::start(patch).await;
        let handler =
            format!("{ISOLATION_HANDLER}\nimport six  # imported by the handler itself\n");
        for name in ["six-a", "six-b", "six-c"] {
            c.add_handler(name, &handler);
            std::fs::write(c.registry().join(name).join("requirements.txt"), "six\n").unwrap();
            let (status, r) = c.call(name, "{}").await;
            assert_eq!(status, 200, "{patch}: {name}: {r}");
            assert_eq!(r["preloaded"], json!([]), "{patch}: {name}: {r}");
        }
        let stats = c.stats().await;
        assert_eq!(stats["import_cache"]["package_zygotes"], false, "{stats}");
        let zs = zygotes(&stats);
        assert_eq!(zs.len(), 1, "{patch}: only the root zygote: {stats}");
        assert_eq!(zs[0]["packages"], json!([]), "{stats}");
        for name in ["six-a", "six-b", "six-c"] {
            assert_eq!(stats["lambdas"][name]["zygote_starts"], 1, "{stats}");
        }
        c.shutdown().await;
    }
}

/// With room for one zygote besides the root, a second package set retires the first set's
/// zygote (the least recently used leaf); the retired one lives on while a sandbox forked from
/// it does, and forks no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_import_cache_retires_the_least_recently_used_leaf() {
    if !can_run("a_full_import_cache_retires_the_least_recently_used_leaf") {
        return;
    }
    let mut c =
        TestCluster::start(r#"{"timeout_s": 120, "zygote_min_starts": 1, "import_cache_size": 2, "package_zygotes": true}"#)
            .await;
    for (name, package) in [("with-six", "six"), ("with-idna", "idna")] {
        c.add_handler(
            name,
            &format!("import {package}\n\ndef handler(event):\n    return {package}.__name__\n"),
        );
        std::fs::write(c.registry().join(name).join("requirements.txt"), package).unwrap();
    }
    assert_eq!(c.call("with-six", "{}").await, (200, json!("six")));
    let stats = c.stats().await;
    let six = zygotes(&stats)
        .iter()
        .find(|z| z["packages"].to_string().contains("six/"))
        .cloned()
        .unwrap_or_else(|| panic!("no six zygote: {stats}"));
    assert_eq!(c.call("with-idna", "{}").await, (200, json!("idna")));
    let stats = c.stats().await;
    let zs = zygotes(&stats);
    let live: Vec<&Value> = zs.iter().filter(|z| z["retired"] == false).collect();
    assert_eq!(live.len(), 2, "root and idna: {stats}");
    assert!(
        live.iter()
            .any(|z| z["packages"].to_string().contains("idna/")),
        "{stats}"
    );
    // The six zygote is retired, still alive for the with-six sandbox forked from it.
    let retired: Vec<&Value> = zs.iter().filter(|z| z["retired"] == true).collect();
    assert_eq!(retired.len(), 1, "{stats}");
    assert_eq!(retired[0]["id"], six["id"], "{stats}");
    assert!(pid_alive(six["pid"].as_i64().unwrap()));
    assert_eq!(stats["import_cache"]["retired"], 1, "{stats}");
    // The warm with-six sandbox still answers.
    assert_eq!(c.call("with-six", "{}").await, (200, json!("six")));
    c.shutdown().await;
    assert!(!pid_alive(six["pid"].as_i64().unwrap()));
}
