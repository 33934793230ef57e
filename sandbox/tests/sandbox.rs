//! Real sandboxes (root only): the root is a temporary directory with the host's `/usr` mounted
//! read-only, so no base image is needed. Each test reports what the sandboxed shell saw.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sandbox::cgroup::{CgroupSetup, Limits};
use sandbox::{NetMode, Sandbox, SandboxSpec, State};

fn can_run(test: &str) -> Option<CgroupSetup> {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipping {test}: needs root (namespaces, mounts, cgroups)");
        return None;
    }
    match CgroupSetup::detect() {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("skipping {test}: no usable cgroups: {e}");
            None
        }
    }
}

/// A root with `usr` (host's, read-only) and the merged-/usr links.
fn make_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    for d in ["usr", "proc", "dev", "tmp", "host", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (link, target) in [
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
        ("sbin", "usr/sbin"),
    ] {
        std::os::unix::fs::symlink(target, root.join(link)).unwrap();
    }
    root
}

fn spec(dir: &Path, script: &str, cgroup: &str, net: NetMode) -> SandboxSpec {
    let root = make_root(dir);
    let scratch = dir.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    SandboxSpec::builder(&root, cgroup)
        .mount("/usr", "/usr", false)
        .mount(&scratch, "/host", true)
        .net(net)
        .limits(Limits {
            memory_bytes: Some(64 << 20),
            pids_max: Some(32),
            cpu_quota: None,
            devices: None,
        })
        .command(["/bin/sh", "-c", script])
        .env("PATH", "/usr/bin:/bin")
        .cwd("/host")
        .output(scratch.join("stdout"), scratch.join("stderr"))
        .build()
        .unwrap()
}

/// Removes the shared `lambdaworker-test` cgroup once no test uses it (rmdir fails harmlessly
/// while another test's cgroup lives below it; removing the tree would kill that test's sandbox).
fn prune_top(setup: &CgroupSetup) {
    let roots: Vec<PathBuf> = match setup {
        CgroupSetup::V1 { controllers } => controllers.values().cloned().collect(),
        CgroupSetup::V2 { root } => vec![root.clone()],
    };
    for r in roots {
        let _ = std::fs::remove_dir(r.join("lambdaworker-test"));
    }
}

fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(s) = std::fs::read_to_string(path) {
            if s.contains("END") {
                return s;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{} never completed", path.display());
}

fn cgroup_dirs(setup: &CgroupSetup, rel: &str) -> Vec<PathBuf> {
    let roots: Vec<PathBuf> = match setup {
        CgroupSetup::V1 { controllers } => controllers.values().cloned().collect(),
        CgroupSetup::V2 { root } => vec![root.clone()],
    };
    roots
        .into_iter()
        .map(|r| r.join(rel))
        .filter(|p| p.exists())
        .collect()
}

#[test]
fn sandbox_sees_its_own_world() {
    let Some(setup) = can_run("sandbox_sees_its_own_world") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cg = format!("lambdaworker-test/sb-{}", std::process::id());
    let script = "echo pid=$$; echo host=$(cat /proc/sys/kernel/hostname); echo maxpid=$(ls /proc | grep '^[0-9]' | sort -n | tail -1); \
        echo dev=$(ls /dev | tr '\\n' ,); echo net=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ,); \
        touch /usr/x 2>/dev/null && echo usr=rw || echo usr=ro; touch /x 2>/dev/null && echo root=rw || echo root=ro; \
        touch /host/x && echo hostdir=rw; touch /tmp/x && echo tmp=rw; echo END; sleep 30";
    let spec = spec(dir.path(), script, &cg, NetMode::Isolated);
    let mut sb = Sandbox::spawn(&spec, &setup, &[]).unwrap();
    let out = wait_for_file(&dir.path().join("scratch/stdout"));
    for want in [
        "pid=1\n",
        "host=lambda\n",
        "dev=fd,null,random,shm,stderr,stdin,stdout,urandom,zero,\n",
        "net=lo,\n",
        "usr=ro\n",
        "root=ro\n",
        "hostdir=rw\n",
        "tmp=rw\n",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let maxpid: u32 = out
        .lines()
        .find_map(|l| l.strip_prefix("maxpid="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(u32::MAX);
    assert!(
        maxpid < 20,
        "the sandbox sees pids up to {maxpid}: not its own pid namespace"
    );
    assert!(
        dir.path().join("scratch/x").exists(),
        "a write to /host lands in the scratch dir"
    );
    // The first process is in the sandbox's cgroup.
    let cgroup_file = std::fs::read_to_string(format!("/proc/{}/cgroup", sb.pid())).unwrap();
    assert!(cgroup_file.contains(&cg), "{cgroup_file}");
    assert!(!cgroup_dirs(&setup, &cg).is_empty());
    // Nothing of the sandbox is mounted in the host's namespace.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(dir.path().to_str().unwrap()),
        "sandbox mount leaked to the host"
    );

    sb.pause().unwrap();
    assert_eq!(sb.state(), State::Paused);
    sb.unpause().unwrap();
    assert!(sb.stats().memory_bytes > 0);
    let pid = sb.pid();
    sb.destroy().unwrap();
    sb.destroy().unwrap(); // idempotent
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "first process still exists"
    );
    assert!(cgroup_dirs(&setup, &cg).is_empty(), "cgroup left behind");
    prune_top(&setup);
}

#[test]
fn host_network_mode_shares_interfaces() {
    let Some(setup) = can_run("host_network_mode_shares_interfaces") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cg = format!("lambdaworker-test/net-{}", std::process::id());
    let script = "echo net=$(tail -n +3 /proc/net/dev | wc -l); echo END";
    let mut sb =
        Sandbox::spawn(&spec(dir.path(), script, &cg, NetMode::Host), &setup, &[]).unwrap();
    let out = wait_for_file(&dir.path().join("scratch/stdout"));
    let host_ifaces = std::fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .count()
        - 2;
    assert!(out.contains(&format!("net={host_ifaces}\n")), "{out}");
    sb.destroy().unwrap();
}

#[test]
fn failed_exec_is_reported_and_cleaned_up() {
    let Some(setup) = can_run("failed_exec_is_reported_and_cleaned_up") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cg = format!("lambdaworker-test/bad-{}", std::process::id());
    let root = make_root(dir.path());
    std::fs::create_dir_all(dir.path().join("scratch")).unwrap();
    let spec = SandboxSpec::builder(&root, &cg)
        .mount("/usr", "/usr", false)
        .command(["/no/such/program"])
        .output(dir.path().join("scratch/o"), dir.path().join("scratch/e"))
        .build()
        .unwrap();
    let err = Sandbox::spawn(&spec, &setup, &[]).unwrap_err().to_string();
    assert!(
        err.contains("execute /no/such/program") && err.contains("ENOENT"),
        "{err}"
    );
    assert!(
        cgroup_dirs(&setup, &cg).is_empty(),
        "cgroup left behind after a failed spawn"
    );
}

#[test]
fn destroy_kills_every_process_of_the_sandbox() {
    let Some(setup) = can_run("destroy_kills_every_process_of_the_sandbox") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cg = format!("lambdaworker-test/tree-{}", std::process::id());
    // A background child that would outlive a naive kill of the first process.
    let script = "sleep 300 & echo child=$!; echo END; wait";
    let mut sb = Sandbox::spawn(
        &spec(dir.path(), script, &cg, NetMode::Isolated),
        &setup,
        &[],
    )
    .unwrap();
    wait_for_file(&dir.path().join("scratch/stdout"));
    let cgroup = setup.cgroup(Path::new(&cg));
    let pids = cgroup.pids().unwrap();
    assert!(
        pids.len() >= 2,
        "expected shell and sleep in the cgroup, got {pids:?}"
    );
    sb.destroy().unwrap();
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} survived destroy"
        );
    }
}

/// A view shows exactly its entries, read-only; a file bind replaces one file; `wait_timeout`
/// returns the exit code of a sandbox that runs to completion.
#[test]
fn views_file_binds_and_exit_codes() {
    let Some(setup) = can_run("views_file_binds_and_exit_codes") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = make_root(dir);
    std::fs::create_dir_all(root.join("packages")).unwrap();
    std::fs::write(root.join("etc/resolv.conf"), "from the base\n").unwrap();
    let host_file = dir.join("resolv.conf");
    std::fs::write(&host_file, "from the host\n").unwrap();
    let (a, b, hidden) = (dir.join("a"), dir.join("b"), dir.join("hidden"));
    for (d, text) in [(&a, "A"), (&b, "B"), (&hidden, "H")] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("f"), text).unwrap();
    }
    let scratch = dir.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let script = "cat /packages/numpy/2.2.6/f /packages/six/1.17.0/f /etc/resolv.conf; \
                  ls /packages; \
                  touch /packages/x 2>/dev/null && echo view-writable; \
                  touch /packages/six/1.17.0/x 2>/dev/null && echo entry-writable; \
                  exit 7";
    let spec = SandboxSpec::builder(&root, "lambdaworker-test/view")
        .mount("/usr", "/usr", false)
        .mount(&scratch, "/host", true)
        .mount(&host_file, "/etc/resolv.conf", false)
        .view(
            "/packages",
            vec![
                (a.clone(), PathBuf::from("numpy/2.2.6")),
                (b.clone(), PathBuf::from("six/1.17.0")),
            ],
        )
        .command(["/bin/sh", "-c", script])
        .env("PATH", "/usr/bin:/bin")
        .cwd("/host")
        .output(scratch.join("stdout"), scratch.join("stderr"))
        .build()
        .unwrap();
    let mut sb = Sandbox::spawn(&spec, &setup, &[]).unwrap();
    assert_eq!(sb.wait_timeout(Duration::from_secs(10)), Some(7));
    let out = std::fs::read_to_string(scratch.join("stdout")).unwrap();
    let err = std::fs::read_to_string(scratch.join("stderr")).unwrap();
    assert_eq!(out, "ABfrom the host\nnumpy\nsix\n", "stderr: {err}");
    sb.destroy().unwrap();
    assert_eq!(sb.wait_timeout(Duration::ZERO), Some(7));
    assert!(cgroup_dirs(&setup, "lambdaworker-test/view").is_empty());
    prune_top(&setup);
    // Nothing was written to the host directories.
    assert!(!a.join("x").exists() && !b.join("x").exists());
}

/// An adopted process (started elsewhere, already in its cgroup) is watched through a pidfd and
/// destroyed through its cgroup; a pid outside the cgroup is refused. A detached clone of a
/// directory is read-only unless asked otherwise (checked after attaching it in a child's own
/// mount namespace with `move_mount`).
#[test]
fn adopted_processes_and_detached_mounts() {
    let Some(setup) = can_run("adopted_processes_and_detached_mounts") else {
        return;
    };
    let rel = format!("lambdaworker-test/adopt-{}", std::process::id());
    let cgroup = setup.cgroup(Path::new(&rel));
    cgroup.create(&Limits::default()).unwrap();
    let mut outsider = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let refused = Sandbox::adopt(outsider.id() as i32, setup.cgroup(Path::new(&rel)));
    assert!(refused.is_err(), "a process outside the cgroup was adopted");
    outsider.kill().unwrap();
    outsider.wait().unwrap();

    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    cgroup.add_task(pid).unwrap();
    let mut sb = Sandbox::adopt(pid, setup.cgroup(Path::new(&rel))).unwrap();
    assert!(sb.is_adopted());
    assert!(sb.is_alive());
    assert_eq!(sb.cgroup_path(), Path::new(&rel));
    sb.destroy().unwrap();
    // Not our sandbox's child, but ours here: reap it so the pidfd reports the exit.
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed, not exited");
    assert!(!sb.is_alive());
    assert!(cgroup_dirs(&setup, &rel).is_empty(), "cgroup left behind");
    prune_top(&setup);

    // Detached mounts, attached in a child's own mount namespace.
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::write(src.join("f"), "from the host").unwrap();
    for writable in [false, true] {
        let clone = sandbox::DetachedMount::clone_of(&src, writable).unwrap();
        let code = attach_in_child(&clone, &dst);
        // 1: attached, file readable, writable; 0: attached, readable, read-only.
        assert_eq!(code, i32::from(writable), "writable={writable}");
        // Nothing was attached in the host's namespace.
        assert!(!dst.join("f").exists());
    }
}

/// In a forked child: a private mount namespace, `move_mount` of `clone` onto `dst`, read
/// `dst/f`, try to create `dst/probe`. Returns the child's exit code (see the caller; 10+ are
/// failures).
fn attach_in_child(clone: &sandbox::DetachedMount, dst: &Path) -> i32 {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: PathBuf| CString::new(p.as_os_str().as_bytes()).unwrap();
    let (dst_c, file_c, probe_c) = (c(dst.to_owned()), c(dst.join("f")), c(dst.join("probe")));
    let fd = std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(clone));
    // SAFETY: the child only makes system calls on data prepared above, then _exits.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            // SAFETY: plain system calls with NUL-terminated strings that outlive them.
            unsafe {
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    libc::_exit(10);
                }
                let private = libc::MS_REC | libc::MS_PRIVATE;
                let none = std::ptr::null();
                if libc::mount(none, c"/".as_ptr(), none, private, std::ptr::null()) != 0 {
                    libc::_exit(11);
                }
                let rc = libc::syscall(
                    libc::SYS_move_mount,
                    fd,
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    dst_c.as_ptr(),
                    4, // MOVE_MOUNT_F_EMPTY_PATH
                );
                if rc != 0 {
                    libc::_exit(12);
                }
                if libc::open(file_c.as_ptr(), libc::O_RDONLY) < 0 {
                    libc::_exit(13);
                }
                let w = libc::open(probe_c.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644);
                libc::_exit(i32::from(w >= 0));
            }
        }
        nix::unistd::ForkResult::Parent { child } => {
            match nix::sys::wait::waitpid(child, None).unwrap() {
                nix::sys::wait::WaitStatus::Exited(_, code) => code,
                other => panic!("attach child: {other:?}"),
            }
        }
    }
}

/// A sandbox in a user namespace of its own: root inside is an unprivileged host uid, the
/// hardened user is another, and what it writes in `/host` belongs to that host uid.
#[test]
fn user_namespace_maps_root_and_the_user_to_host_ids() {
    let Some(setup) = can_run("user_namespace_maps_root_and_the_user_to_host_ids") else {
        return;
    };
    if let Err(e) = sandbox::userns::probe() {
        eprintln!("skipping: this kernel refuses user namespaces ({e})");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (root_host, user_host) = (3_100_000u32, 3_100_007u32);
    let map = sandbox::IdMap::new(vec![
        sandbox::IdRange {
            inside: 0,
            outside: root_host,
            count: 1,
        },
        sandbox::IdRange {
            inside: 7,
            outside: user_host,
            count: 1,
        },
    ])
    .unwrap();
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    std::os::unix::fs::chown(&scratch, Some(user_host), Some(user_host)).unwrap();
    let script = "echo uid=$(id -u) gid=$(id -g); grep -E '^(CapEff|CapBnd)' /proc/self/status | tr -s '\\t' ' '; \
        echo map=$(cat /proc/self/uid_map | tr -s ' ' | tr '\\n' ,); echo dev=$(ls /dev | tr '\\n' ,); \
        echo x > /dev/null && echo devnull=ok; head -c 4 /dev/urandom | wc -c | sed 's/^/urandom=/'; \
        touch /host/mine && echo host=rw; echo END; sleep 30";
    let root = make_root(dir.path());
    let cg = format!("lambdaworker-test/userns-{}", std::process::id());
    let spec = SandboxSpec::builder(&root, &cg)
        .mount("/usr", "/usr", false)
        .mount(&scratch, "/host", true)
        .command(["/bin/sh", "-c", script])
        .env("PATH", "/usr/bin:/bin")
        .cwd("/host")
        .user_ns(map)
        .harden(sandbox::Hardening::new(7, 7).unwrap())
        .output(dir.path().join("stdout"), dir.path().join("stderr"))
        .build()
        .unwrap();
    let mut sb = Sandbox::spawn(&spec, &setup, &[]).unwrap();
    let out = wait_for_file(&dir.path().join("stdout"));
    for want in [
        "uid=7 gid=7\n",
        "CapEff: 0000000000000000\n",
        "CapBnd: 0000000000000000\n",
        "devnull=ok\n",
        "urandom=4\n",
        "host=rw\n",
        "dev=fd,null,random,shm,stderr,stdin,stdout,urandom,zero,\n",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(
        out.contains(&format!("map= 0 {root_host} 1, 7 {user_host} 1,"))
            || out.contains(&format!("map=0 {root_host} 1,7 {user_host} 1,")),
        "{out}"
    );
    // Seen from the host: the process runs as the mapped uid, its file belongs to it.
    let status = std::fs::read_to_string(format!("/proc/{}/status", sb.pid())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|u| u == user_host.to_string()),
        "{uid_line}"
    );
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(scratch.join("mine")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (user_host, user_host));
    sb.destroy().unwrap();
    assert!(cgroup_dirs(&setup, &cg).is_empty(), "cgroup left behind");
    prune_top(&setup);
}

/// What a GPU sandbox gets, with a stand-in for the GPU (`/dev/full`, which every host has):
/// the host's node bound into `/dev`, a file view (a driver library's place), and device rules
/// that let it open only its own devices.
#[test]
fn a_bound_device_a_file_view_and_device_rules() {
    let Some(setup) = can_run("a_bound_device_a_file_view_and_device_rules") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cg = format!("lambdaworker-test/dev-{}", std::process::id());
    let root = make_root(dir.path());
    std::fs::create_dir_all(root.join("opt")).unwrap();
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let lib = dir.path().join("libfake.so.1");
    std::fs::write(&lib, "driver bytes").unwrap();
    let mut rules = sandbox::devices::default_rules();
    rules.retain(|r| r.minor != Some(5)); // not /dev/zero
    rules.push(sandbox::devices::DeviceRule::char_rw(1, Some(7))); // /dev/full
    let script =
        "echo dev=$(ls /dev | tr '\\n' ,); (: > /dev/full) 2>/dev/null && echo full=open; \
        (: < /dev/zero) 2>/dev/null && echo zero=open || echo zero=refused; \
        echo lib=$(cat /opt/lib64/libfake.so.1); echo END";
    let spec = SandboxSpec::builder(&root, cg.clone())
        .mount("/usr", "/usr", false)
        .mount(&scratch, "/host", true)
        .device("/dev/full")
        .view(
            "/opt",
            vec![(lib.clone(), PathBuf::from("lib64/libfake.so.1"))],
        )
        .limits(Limits {
            devices: Some(rules),
            ..Limits::default()
        })
        .command(["/bin/sh", "-c", script])
        .env("PATH", "/usr/bin:/bin")
        .cwd("/host")
        .output(scratch.join("stdout"), scratch.join("stderr"))
        .build()
        .unwrap();
    let mut sb = Sandbox::spawn(&spec, &setup, &[]).unwrap();
    let out = wait_for_file(&scratch.join("stdout"));
    sb.destroy().unwrap();
    prune_top(&setup);
    assert!(out.contains("dev=fd,full,null,"), "{out}");
    assert!(out.contains("full=open\n"), "{out}");
    assert!(out.contains("zero=refused\n"), "{out}");
    assert!(out.contains("lib=driver bytes\n"), "{out}");
}
