//! `admin doctor` through the real binary (root only): on this host every check passes (the
//! report's lines and its JSON), a port held by another program fails with its fix and exit 1,
//! and `admin workers` runs the quick checks first: on a cluster whose base lost the runtime it
//! refuses with the doctor's line and starts nothing. No probe cgroup is left behind.

mod support;

use std::net::TcpListener;

use support::*;

/// The probe cgroups the checks make and remove, left anywhere under /sys/fs/cgroup.
fn leftover_probes() -> Vec<String> {
    walkdir::WalkDir::new("/sys/fs/cgroup")
        .max_depth(3)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_type().is_dir()
                && e.file_name()
                    .to_string_lossy()
                    .starts_with("lambdaworker-doctor-")
        })
        .map(|e| e.path().display().to_string())
        .collect()
}

#[test]
fn doctor_checks_the_host_and_workers_refuse_what_it_fails() {
    if !can_run("doctor_checks_the_host_and_workers_refuse_what_it_fails") {
        return;
    }
    let c = Cluster::new();
    let port = free_port();
    let port_flag = format!("--port={port}");

    let out = ok(&["doctor", &c.flag(), &port_flag]);
    let lines: Vec<&str> = out.lines().collect();
    for line in &lines[..lines.len() - 1] {
        assert!(
            ["OK ", "WARN ", "FAIL "]
                .iter()
                .any(|l| line.starts_with(l)),
            "{line}"
        );
    }
    for check in [
        "kernel",
        "syscall open_tree",
        "syscall pidfd_open",
        "cgroups",
        "cgroup memory",
        "cgroup pids",
        "user namespaces",
        "seccomp",
        "disk cluster",
        "base",
        "port",
    ] {
        let line = lines
            .iter()
            .find(|l| l[6..].starts_with(&format!("{check} ")))
            .unwrap_or_else(|| panic!("no {check} line in\n{out}"));
        assert!(line.starts_with("OK "), "{line}\n{out}");
    }
    let base = lines.iter().find(|l| l[6..].starts_with("base ")).unwrap();
    assert!(
        base.contains("Python 3.") && base.contains("runtime installed"),
        "{base}"
    );
    assert!(lines.last().unwrap().ends_with(" 0 FAIL"), "{out}");

    let json: serde_json::Value =
        serde_json::from_str(&ok(&["doctor", &c.flag(), &port_flag, "--json"])).unwrap();
    assert_eq!(json["fail"], 0, "{json:#}");
    let checks = json["checks"].as_array().unwrap();
    assert_eq!(
        json["ok"].as_u64().unwrap() + json["warn"].as_u64().unwrap(),
        checks.len() as u64
    );
    assert!(checks
        .iter()
        .all(|c| c["check"].is_string() && c["level"].is_string()));

    // A port another program holds: FAIL, its fix, exit 1.
    let held = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let held_port = held.local_addr().unwrap().port().to_string();
    let out = admin(&["doctor", &c.flag(), "--port", &held_port]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("FAIL  port"))
        .unwrap();
    assert!(line.contains("in use by another program. Fix: "), "{line}");
    assert!(
        text(&out.stderr).contains("1 check failed"),
        "{}",
        text(&out.stderr)
    );
    drop(held);

    // A base without the runtime: `admin workers` refuses before it starts anything.
    let zygote = c.path("base/usr/local/lib/lambdaworker/zygote.py");
    let kept = std::fs::read(&zygote).unwrap();
    std::fs::remove_file(&zygote).unwrap();
    let out = admin(&["workers", &c.flag(), &port_flag]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("this host cannot run workers"), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("FAIL  base") && l.contains("not lambdaworker's runtime. Fix: ")),
        "{err}"
    );
    assert!(!c.path("logs/worker-0.pid").exists());
    let doctor = admin(&["doctor", &c.flag(), &port_flag]);
    assert_eq!(doctor.status.code(), Some(1));
    std::fs::write(&zygote, kept).unwrap();

    assert!(leftover_probes().is_empty(), "{:?}", leftover_probes());
}
