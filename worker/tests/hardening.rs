//! What handler code may not do, tried from inside a sandbox started fresh and one forked from a
//! zygote (root only): the same answers on both paths.

mod common;

use common::{can_run, TestCluster, PY_OUTCOME};
use serde_json::Value;

/// Tries each forbidden thing and reports the outcome (the errno name, or "allowed"); follows
/// [`PY_OUTCOME`].
const ATTEMPTS: &str = r#"import resource, subprocess, threading

def write(path):
    with open(path, "w") as f:
        f.write("1")

def size(path):
    try:
        with open(path, "rb") as f:
            return len(f.read())
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))

def read_only_under_proc():
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4].startswith("/proc/") and "ro" in fields[5].split(","):
                found.append(fields[4])
    return sorted(found)

def status():
    with open("/proc/self/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)

def handler(event):
    s = status()
    t = threading.Thread(target=lambda: None)
    t.start()
    t.join()
    return {
        "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
        "caps": {k: s[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")},
        "no_new_privs": s["NoNewPrivs"].strip(), "seccomp": s["Seccomp"].strip(),
        "core_limit": list(resource.getrlimit(resource.RLIMIT_CORE)),
        "raise_core_limit": outcome(lambda: libc.setrlimit(resource.RLIMIT_CORE, ctypes.byref((ctypes.c_ulong * 2)(1 << 20, 1 << 20)))),
        "thread": "ok",
        "subprocess": subprocess.run(["/bin/true"]).returncode,
        "mount": outcome(lambda: libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)),
        "unshare_user": outcome(lambda: libc.unshare(0x10000000)),
        "unshare_mount": outcome(lambda: libc.unshare(0x00020000)),
        "chroot": outcome(lambda: os.chroot("/tmp")),
        "setuid_root": outcome(lambda: os.setuid(0)),
        "mknod": outcome(lambda: os.mknod("/tmp/dev-null", 0o20666, os.makedev(1, 3))),
        "sysrq": outcome(lambda: write("/proc/sysrq-trigger")),
        "proc_sys": outcome(lambda: write("/proc/sys/kernel/hostname")),
        "shadow": outcome(lambda: open("/etc/shadow").read()),
        "handler_dir": outcome(lambda: write("/handler/new-file")),
        "root_dir": outcome(lambda: write("/new-file")),
        "host_dir": outcome(lambda: write("/host/own-file")),
        "proc_masked": {p: size("/proc/" + p) for p in ("kcore", "keys", "timer_list", "interrupts")},
        "proc_acpi": os.listdir("/proc/acpi") if os.path.isdir("/proc/acpi") else None,
        "proc_read_only": read_only_under_proc(),
        "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "dev": sorted(os.listdir("/dev")),
        "sys": os.listdir("/sys"),
    }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_code_runs_unprivileged_on_both_paths() {
    if !can_run("handler_code_runs_unprivileged_on_both_paths") {
        return;
    }
    let mut reports = Vec::new();
    // Fresh and forked, with user namespaces (the default) and without (the fallback).
    for (patch, userns) in [
        (r#"{"import_cache": false}"#, true),
        ("{}", true),
        (
            r#"{"import_cache": false, "user_namespaces": false}"#,
            false,
        ),
        (r#"{"user_namespaces": false}"#, false),
    ] {
        let mut c = TestCluster::start(patch).await;
        c.add_handler("attempts", &format!("{PY_OUTCOME}{ATTEMPTS}"));
        let (status, r) = c.call("attempts", "{}").await;
        assert_eq!(status, 200, "{patch}: {r}");
        let stats = c.stats().await;
        let forked = stats["lambdas"]["attempts"]["zygote_starts"] == 1;
        assert_eq!(forked, !patch.contains("import_cache"), "{patch}: {stats}");
        assert_eq!(
            stats["user_namespaces"]["enabled"], userns,
            "{patch}: {stats}"
        );
        // With user namespaces the handler runs as its lambda's slot of the uid range, which
        // is that slot's host uid outside; without, as sandbox_uid.
        let (inside, host) = if userns {
            let slot = common::lambda_slot(&c, "attempts");
            (slot, c.cfg.uid_range_start + slot)
        } else {
            (c.cfg.sandbox_uid, c.cfg.sandbox_uid)
        };
        assert_eq!(r["uid"], inside, "{patch}: {r}");
        assert_eq!(r["euid"], inside);
        assert_eq!(r["gid"], inside);
        assert_eq!(r["groups"], serde_json::json!([]), "{patch}: {r}");
        for (set, value) in r["caps"].as_object().unwrap() {
            assert_eq!(value, "0000000000000000", "{patch}: {set} in {r}");
        }
        assert_eq!(r["no_new_privs"], "1", "{patch}: {r}");
        assert_eq!(r["seccomp"], "2", "{patch}: seccomp filter mode: {r}");
        // No core dumps, for good: the limit is 0 and cannot be raised.
        assert_eq!(r["core_limit"], serde_json::json!([0, 0]), "{patch}: {r}");
        assert_eq!(r["raise_core_limit"], "EPERM", "{patch}: {r}");
        // What still works: threads (clone3 falls back to clone), fork and exec, its own /host.
        assert_eq!(r["thread"], "ok");
        assert_eq!(r["subprocess"], 0, "{patch}: {r}");
        assert_eq!(r["host_dir"], "allowed", "{patch}: {r}");
        // What does not.
        for (attempt, expected) in [
            ("mount", "EPERM"),
            ("unshare_user", "EPERM"),
            ("unshare_mount", "EPERM"),
            ("chroot", "EPERM"),
            ("setuid_root", "EPERM"),
            ("mknod", "EPERM"),
            ("shadow", "EACCES"),
        ] {
            assert_eq!(r[attempt], expected, "{patch}: {attempt} in {r}");
        }
        for attempt in ["proc_sys", "handler_dir", "root_dir"] {
            let v = r[attempt].as_str().unwrap();
            assert!(v == "EACCES" || v == "EROFS", "{patch}: {attempt} was {v}");
        }
        // Root-only, or absent from kernels built without magic SysRq.
        let v = r["sysrq"].as_str().unwrap();
        assert!(v == "EACCES" || v == "ENOENT", "{patch}: sysrq was {v}");
        // /proc as container runtimes leave it: the host's kernel memory, keys, timers and
        // interrupts read as empty, the tunables are mounted read-only; no /sys, no device
        // beyond the minimal set, and no process but its own (pid 1; a thread is not listed).
        for (name, size) in r["proc_masked"].as_object().unwrap() {
            if std::path::Path::new("/proc").join(name).exists() {
                assert_eq!(size, 0, "{patch}: /proc/{name} in {r}");
            }
        }
        if std::path::Path::new("/proc/acpi").exists() {
            assert_eq!(r["proc_acpi"], serde_json::json!([]), "{patch}: {r}");
        }
        for name in ["sys", "sysrq-trigger", "bus", "fs", "irq"] {
            if std::path::Path::new("/proc").join(name).exists() {
                let path = format!("/proc/{name}");
                assert!(
                    r["proc_read_only"]
                        .as_array()
                        .unwrap()
                        .contains(&Value::from(path.as_str())),
                    "{patch}: {path} is not read-only: {r}"
                );
            }
        }
        assert_eq!(r["processes"], serde_json::json!([1]), "{patch}: {r}");
        assert_eq!(
            r["dev"],
            serde_json::json!([
                "fd", "null", "random", "shm", "stderr", "stdin", "stdout", "urandom", "zero"
            ]),
            "{patch}: {r}"
        );
        assert_eq!(r["sys"], serde_json::json!([]), "{patch}: {r}");
        // Files it makes in /host belong to the sandbox user's host uid, and so does its
        // process, seen from the host.
        let sb = &stats["sandboxes"][0];
        let scratch = c
            .cfg
            .worker_dir
            .join(format!("handlers/attempts/{}", sb["id"]));
        let md = std::fs::metadata(scratch.join("own-file")).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&md), host, "{patch}");
        assert_eq!(std::os::unix::fs::MetadataExt::gid(&md), host, "{patch}");
        assert_eq!(
            common::host_uids(sb["pid"].as_i64().unwrap()),
            [host; 4],
            "{patch}"
        );
        let mut r = r.clone();
        if let Some(o) = r.as_object_mut() {
            o.remove("subprocess");
        }
        reports.push(r);
        c.shutdown().await;
    }
    // Fresh and forked sandboxes answer alike, in each model (the ids aside, the same).
    assert_eq!(reports[0], reports[1]);
    assert_eq!(reports[2], reports[3]);
    for r in &mut reports {
        if let Some(o) = r.as_object_mut() {
            for key in ["uid", "euid", "gid"] {
                o.remove(key);
            }
        }
    }
    assert_eq!(reports[0], reports[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_is_refused_as_the_sandbox_user() {
    if !can_run("root_is_refused_as_the_sandbox_user") {
        return;
    }
    let (_tmp, _dir, mut cfg) = common::new_cluster("{}");
    cfg.sandbox_uid = 0;
    let err = worker::Worker::start(cfg)
        .await
        .err()
        .map(|e| e.to_string());
    let err: Value = err.into();
    assert!(
        err.as_str().unwrap_or_default().contains("sandbox_uid"),
        "{err}"
    );
}
