//! The checks' judgement on made-up hosts: no root, no kernel involved.

use std::path::PathBuf;
use std::time::Duration;

use nix::errno::Errno;

use super::facts::{
    host_port, Base, CgroupFacts, Controller, Disk, Facts, PortState, Probe, Reach, Reading,
    Syscall, Writable, V1_CONTROLLERS,
};
use super::{evaluate, Finding, Level, Report, Target};

fn target() -> Target {
    Target {
        base_dir: PathBuf::from("/cache/base-1"),
        disks: vec![("cluster".into(), PathBuf::from("/srv/c"))],
        index_url: Some("https://pypi.org/simple".into()),
        port: Some(("127.0.0.1".into(), 8080)),
        import_cache: true,
        user_namespaces: true,
        cluster_base: true,
        base_fix: "run admin new -cluster /srv/c".into(),
    }
}

/// A Debian 12 machine like ours: hybrid cgroups (v1), everything present.
fn healthy() -> Facts {
    Facts {
        kernel: Reading::Read("6.1.0-28-amd64".into()),
        syscalls: Syscall::ALL.iter().map(|&s| (s, Probe::Present)).collect(),
        cgroups: CgroupFacts::V1 {
            controllers: V1_CONTROLLERS
                .iter()
                .map(|&name| Controller {
                    name,
                    mount: Some(PathBuf::from(format!("/sys/fs/cgroup/{name}"))),
                    writable: Some(Writable::Yes),
                })
                .collect(),
        },
        user_namespaces: Ok(()),
        filesystems: Reading::Read(vec!["tmpfs".into(), "overlay".into(), "proc".into()]),
        seccomp_mode: Ok(0),
        seccomp_actions: Some(
            ["kill_process", "kill_thread", "trap", "errno", "allow"]
                .map(String::from)
                .to_vec(),
        ),
        disks: vec![Disk {
            what: "cluster".into(),
            path: PathBuf::from("/srv/c"),
            available: Reading::Read(40 << 30),
        }],
        base: Base {
            dir: PathBuf::from("/cache/base-1"),
            exists: true,
            python: Some("3.13".into()),
            runtime: true,
        },
        index: Some((
            "https://pypi.org/simple".into(),
            Reach::Connected(
                "151.101.0.223:443".parse().unwrap(),
                Duration::from_millis(12),
            ),
        )),
        port: Some(("127.0.0.1".into(), 8080, PortState::Free)),
    }
}

fn find<'a>(findings: &'a [Finding], check: &str) -> &'a Finding {
    findings
        .iter()
        .find(|f| f.check == check)
        .unwrap_or_else(|| panic!("no check {check} in {findings:#?}"))
}

fn not_ok(findings: &[Finding]) -> Vec<&Finding> {
    findings.iter().filter(|f| f.level != Level::Ok).collect()
}

#[test]
fn a_healthy_host_passes_every_check_in_order() {
    let f = evaluate(&healthy(), &target());
    assert!(not_ok(&f).is_empty(), "{f:#?}");
    let names: Vec<&str> = f.iter().map(|f| f.check.as_str()).collect();
    assert_eq!(
        names,
        [
            "kernel",
            "syscall open_tree",
            "syscall move_mount",
            "syscall mount_setattr",
            "syscall clone3",
            "syscall pidfd_open",
            "cgroups",
            "cgroup memory",
            "cgroup pids",
            "cgroup freezer",
            "cgroup cpu",
            "user namespaces",
            "filesystems",
            "seccomp",
            "disk cluster",
            "base",
            "package index",
            "port",
        ]
    );
    assert!(f.iter().all(|f| f.fix.is_none()));
    assert_eq!(
        find(&f, "base").detail,
        "/cache/base-1: Python 3.13, runtime installed"
    );
}

#[test]
fn a_read_only_cgroup_hierarchy_fails_with_its_fix() {
    let mut h = healthy();
    if let CgroupFacts::V1 { controllers } = &mut h.cgroups {
        controllers[0].writable = Some(Writable::No(
            "mkdir /sys/fs/cgroup/memory/x: Read-only file system (os error 30)".into(),
        ));
        controllers[3].mount = None;
    }
    let f = evaluate(&h, &target());
    let memory = find(&f, "cgroup memory");
    assert_eq!(memory.level, Level::Fail);
    assert!(memory.detail.contains("Read-only"));
    assert!(memory
        .fix
        .as_deref()
        .unwrap()
        .contains("/sys/fs/cgroup/memory writable"));
    // cpu is optional: its absence costs cpu_percent only.
    let cpu = find(&f, "cgroup cpu");
    assert_eq!(cpu.level, Level::Warn);
    assert!(cpu.detail.contains("cpu_percent"));
}

#[test]
fn cgroup_v2_needs_memory_and_pids_and_a_writable_root() {
    let mut h = healthy();
    h.cgroups = CgroupFacts::V2 {
        root: PathBuf::from("/sys/fs/cgroup"),
        available: vec!["pids".into(), "io".into()],
        writable: Writable::Yes,
        freeze: false,
    };
    let f = evaluate(&h, &target());
    assert_eq!(find(&f, "cgroups").detail, "v2 at /sys/fs/cgroup");
    assert_eq!(find(&f, "cgroup memory").level, Level::Fail);
    assert_eq!(find(&f, "cgroup pids").level, Level::Ok);
    assert_eq!(find(&f, "cgroup cpu").level, Level::Warn);
    assert_eq!(find(&f, "cgroup freezer").level, Level::Warn);

    h.cgroups = CgroupFacts::V2 {
        root: PathBuf::from("/sys/fs/cgroup"),
        available: vec!["memory".into(), "pids".into(), "cpu".into()],
        writable: Writable::No("mkdir /sys/fs/cgroup/x: Read-only file system".into()),
        freeze: false,
    };
    let f = evaluate(&h, &target());
    assert_eq!(find(&f, "cgroup write").level, Level::Fail);
    assert!(f.iter().all(|f| f.check != "cgroup freezer"));

    h.cgroups = CgroupFacts::Undetected("no cgroup hierarchy holds memory".into());
    let f = evaluate(&h, &target());
    let c = find(&f, "cgroups");
    assert_eq!(
        (c.level, c.detail.as_str()),
        (Level::Fail, "no cgroup hierarchy holds memory")
    );
}

#[test]
fn missing_mount_calls_cost_the_import_cache_only() {
    let mut h = healthy();
    h.kernel = Reading::Read("5.10.0-21-amd64".into());
    h.syscalls = Syscall::ALL
        .iter()
        .map(|&s| {
            let p = if s == Syscall::MountSetattr {
                Probe::Missing
            } else {
                Probe::Present
            };
            (s, p)
        })
        .collect();
    let f = evaluate(&h, &target());
    assert_eq!(find(&f, "kernel").level, Level::Warn);
    let m = find(&f, "syscall mount_setattr");
    assert_eq!(m.level, Level::Warn);
    assert!(
        m.detail.contains("5.12") && m.detail.contains("fresh sandbox"),
        "{m:?}"
    );
    assert!(m.fix.as_deref().unwrap().contains("import_cache"));

    let off = Target {
        import_cache: false,
        ..target()
    };
    let f = evaluate(&h, &off);
    assert_eq!(find(&f, "syscall mount_setattr").level, Level::Ok);
}

#[test]
fn clone3_refused_with_eperm_fails_but_enosys_is_fine() {
    let with = |probe| {
        let mut h = healthy();
        h.syscalls = vec![(Syscall::Clone3, probe)];
        evaluate(&h, &target())
    };
    assert_eq!(
        find(&with(Probe::Missing), "syscall clone3").level,
        Level::Ok
    );
    let f = with(Probe::Denied(Errno::EPERM));
    let c = find(&f, "syscall clone3");
    assert_eq!(c.level, Level::Fail);
    assert!(c.detail.contains("EPERM"), "{c:?}");
}

#[test]
fn user_namespaces_refused_warn_with_the_sysctl() {
    let mut h = healthy();
    h.user_namespaces = Err((Errno::ENOSPC, Some(0)));
    let f = evaluate(&h, &target());
    let u = find(&f, "user namespaces");
    assert_eq!(u.level, Level::Warn);
    assert!(u.detail.contains("max_user_namespaces is 0"));
    assert!(u
        .fix
        .as_deref()
        .unwrap()
        .contains("sysctl user.max_user_namespaces"));
    let off = Target {
        user_namespaces: false,
        ..target()
    };
    assert_eq!(
        find(&evaluate(&h, &off), "user namespaces").level,
        Level::Ok
    );
}

#[test]
fn no_seccomp_or_no_tmpfs_fails() {
    let mut h = healthy();
    h.seccomp_mode = Err(Errno::EINVAL);
    h.filesystems = Reading::Read(vec!["proc".into()]);
    let f = evaluate(&h, &target());
    assert_eq!(find(&f, "seccomp").level, Level::Fail);
    let fs = find(&f, "filesystems");
    assert_eq!(fs.level, Level::Fail);
    assert!(fs.detail.contains("overlay absent"));

    let mut h = healthy();
    h.seccomp_mode = Ok(2);
    h.seccomp_actions = Some(vec!["allow".into()]);
    let s = evaluate(&h, &target());
    let s = find(&s, "seccomp");
    assert_eq!(s.level, Level::Fail);
    assert!(s.detail.contains("errno"));
}

#[test]
fn disk_space_thresholds() {
    let at = |bytes: u64| {
        let mut h = healthy();
        h.disks[0].available = Reading::Read(bytes);
        find(&evaluate(&h, &target()), "disk cluster").clone()
    };
    assert_eq!(at(100 << 20).level, Level::Fail);
    assert!(at(100 << 20).detail.starts_with("100 MiB free at /srv/c"));
    assert_eq!(at(1 << 30).level, Level::Warn);
    assert_eq!(at(3 << 30).level, Level::Ok);
    assert_eq!(at(3 << 30).detail, "3.0 GiB free at /srv/c");
}

#[test]
fn a_missing_or_incomplete_base_fails_with_the_command_that_makes_it() {
    let mut h = healthy();
    h.base.exists = false;
    h.base.python = None;
    let f = evaluate(&h, &target());
    let b = find(&f, "base");
    assert_eq!(b.level, Level::Fail);
    assert_eq!(b.fix.as_deref(), Some("run admin new -cluster /srv/c"));

    h.base.exists = true;
    assert!(find(&evaluate(&h, &target()), "base")
        .detail
        .contains("no Python 3"));
    h.base.python = Some("3.13".into());
    h.base.runtime = false;
    assert_eq!(find(&evaluate(&h, &target()), "base").level, Level::Fail);

    // Without a cluster, the cache's base: missing is a warning (admin new builds it), and
    // the runtime is installed in a cluster's copy only.
    let cache = Target {
        cluster_base: false,
        base_fix: "run admin new -cluster DIR".into(),
        ..target()
    };
    let b = find(&evaluate(&h, &cache), "base").clone();
    assert_eq!(
        (b.level, b.detail.as_str()),
        (Level::Ok, "/cache/base-1: Python 3.13 (the cache's base)")
    );
    h.base.exists = false;
    assert_eq!(find(&evaluate(&h, &cache), "base").level, Level::Warn);
}

#[test]
fn an_unreachable_index_warns_and_a_bad_url_fails() {
    let mut h = healthy();
    h.index = Some((
        "https://pypi.org/simple".into(),
        Reach::Unreachable("151.101.0.223:443: connection timed out".into()),
    ));
    let f = evaluate(&h, &target());
    assert_eq!(find(&f, "package index").level, Level::Warn);
    h.index = Some(("ftp://x".into(), Reach::BadUrl("ftp://x".into())));
    assert_eq!(
        find(&evaluate(&h, &target()), "package index").level,
        Level::Fail
    );
    // The quick scope gathers neither: no line.
    h.index = None;
    h.port = None;
    let f = evaluate(&h, &target());
    assert!(f
        .iter()
        .all(|f| f.check != "package index" && f.check != "port"));
}

#[test]
fn a_port_held_by_another_program_fails_by_a_worker_warns() {
    let mut h = healthy();
    h.port = Some(("127.0.0.1".into(), 8080, PortState::InUse { worker: false }));
    assert_eq!(find(&evaluate(&h, &target()), "port").level, Level::Fail);
    h.port = Some(("127.0.0.1".into(), 8080, PortState::InUse { worker: true }));
    assert_eq!(find(&evaluate(&h, &target()), "port").level, Level::Warn);
}

#[test]
fn kernel_versions_and_urls_parse() {
    use super::evaluate::kernel_version;
    assert_eq!(kernel_version("6.1.0-28-amd64"), Some((6, 1)));
    assert_eq!(
        kernel_version("5.15.167.4-microsoft-standard-WSL2"),
        Some((5, 15))
    );
    assert_eq!(kernel_version("6.8"), Some((6, 8)));
    assert_eq!(kernel_version("weird"), None);
    assert_eq!(
        host_port("https://pypi.org/simple"),
        Some(("pypi.org".into(), 443))
    );
    assert_eq!(
        host_port("http://user:pw@mirror.local:3141/root/pypi/+simple/"),
        Some(("mirror.local".into(), 3141))
    );
    assert_eq!(
        host_port("http://[::1]:8000/simple"),
        Some(("::1".into(), 8000))
    );
    assert_eq!(
        host_port("HTTP://Example.org"),
        Some(("Example.org".into(), 80))
    );
    assert_eq!(host_port("ftp://x/"), None);
    assert_eq!(host_port("https://:443/"), None);
    assert_eq!(host_port("https://h:99999/"), None);
}

#[test]
fn the_report_prints_a_line_per_check_and_counts() {
    let mut h = healthy();
    h.port = Some(("127.0.0.1".into(), 8080, PortState::InUse { worker: false }));
    h.disks[0].available = Reading::Read(1 << 30);
    let r = Report {
        checks: evaluate(&h, &target()),
    };
    assert!(r.failed());
    let text = r.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), r.checks.len() + 1);
    assert!(lines[0].starts_with("OK    kernel "), "{text}");
    let port = lines.iter().find(|l| l.contains(" port ")).unwrap();
    assert!(port.starts_with("FAIL  port"), "{port}");
    assert!(
        port.contains("in use by another program. Fix: stop that program"),
        "{port}"
    );
    assert_eq!(*lines.last().unwrap(), "16 OK, 1 WARN, 1 FAIL");
    let j = r.json();
    assert_eq!(
        (j["ok"].as_u64(), j["warn"].as_u64(), j["fail"].as_u64()),
        (Some(16), Some(1), Some(1))
    );
    assert_eq!(j["checks"][0]["level"], "ok");
    assert!(j["checks"][0].get("fix").is_none());
    assert_eq!(r.at(Level::Fail).count(), 1);
}
