//! Tests against this machine's real cgroups. They need root and a setup `detect()` accepts;
//! anywhere else they print why they skip and pass. Each uses its own cgroup under
//! `lambdaworker-test/` and removes it, even when an assertion fails.

use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{CgroupSetup, CgroupVersion, Limits};

fn setup_or_skip(test: &str) -> Option<CgroupSetup> {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipping {test}: needs root to create cgroups");
        return None;
    }
    match CgroupSetup::detect() {
        Ok(setup) => Some(setup),
        Err(e) => {
            eprintln!("skipping {test}: no usable cgroup setup: {e}");
            None
        }
    }
}

/// `lambdaworker-test/<random>`, distinct across tests and runs.
fn unique_rel(tag: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    PathBuf::from(format!(
        "lambdaworker-test/{tag}-{}-{nanos:x}-{n}",
        std::process::id()
    ))
}

/// This cgroup's directory in every hierarchy the module uses.
fn dirs(setup: &CgroupSetup, rel: &Path) -> Vec<PathBuf> {
    setup
        .hierarchies()
        .into_iter()
        .map(|m| m.join(rel))
        .collect()
}

fn sleeper() -> Child {
    Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep")
}

/// Kills the children and removes the tree on every exit path.
struct Cleanup {
    setup: CgroupSetup,
    rel: PathBuf,
    children: Vec<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Err(e) = self.setup.remove_tree(&self.rel) {
            eprintln!("cleanup of {} failed: {e}", self.rel.display());
        }
    }
}

#[test]
fn real_cgroup_lifecycle() {
    let Some(setup) = setup_or_skip("real_cgroup_lifecycle") else {
        return;
    };
    let rel = unique_rel("life");
    let mut guard = Cleanup {
        setup: setup.clone(),
        rel: rel.clone(),
        children: Vec::new(),
    };
    let cg = setup.cgroup(&rel);
    let limits = Limits {
        memory_bytes: Some(64 << 20),
        pids_max: Some(16),
        cpu_quota: Some((50_000, 100_000)),
        devices: None,
    };
    cg.create(&limits).unwrap();
    for dir in dirs(&setup, &rel) {
        assert!(dir.is_dir(), "{} was not created", dir.display());
    }
    let (memory_file, pids_file) = match &setup {
        CgroupSetup::V1 { controllers } => (
            controllers["memory"]
                .join(&rel)
                .join("memory.limit_in_bytes"),
            controllers["pids"].join(&rel).join("pids.max"),
        ),
        CgroupSetup::V2 { root } => (
            root.join(&rel).join("memory.max"),
            root.join(&rel).join("pids.max"),
        ),
    };
    assert_eq!(
        std::fs::read_to_string(&memory_file).unwrap().trim(),
        "67108864"
    );
    assert_eq!(std::fs::read_to_string(&pids_file).unwrap().trim(), "16");

    guard.children.push(sleeper());
    let pid = guard.children[0].id() as i32;
    cg.add_task(pid).unwrap();
    assert!(cg.pids().unwrap().contains(&pid));
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(own.contains(rel.to_str().unwrap()), "{own}");

    cg.freeze().unwrap();
    if setup.version() == CgroupVersion::V1 {
        let state = dirs(&setup, &rel)
            .into_iter()
            .map(|d| d.join("freezer.state"))
            .find(|f| f.exists())
            .unwrap();
        assert_eq!(std::fs::read_to_string(state).unwrap().trim(), "FROZEN");
    }
    cg.thaw().unwrap();
    let usage = cg.memory_usage().unwrap();
    // memory.peak is missing before Linux 5.19 (v2); where it is read, it is at least the usage.
    if let Ok(peak) = cg.memory_peak() {
        assert!(peak >= usage, "peak {peak} < usage {usage}");
    }

    // kill_all works on a frozen cgroup too (a paused sandbox being destroyed).
    cg.freeze().unwrap();
    cg.kill_all().unwrap();
    assert!(cg.pids().unwrap().is_empty());
    let status = guard.children[0].wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");

    cg.remove().unwrap();
    for dir in dirs(&setup, &rel) {
        assert!(!dir.exists(), "{} is still there", dir.display());
    }
    cg.remove().unwrap();
}

#[test]
fn real_child_attaches_itself_through_open_procs() {
    let Some(setup) = setup_or_skip("real_child_attaches_itself_through_open_procs") else {
        return;
    };
    let rel = unique_rel("fd");
    let mut guard = Cleanup {
        setup: setup.clone(),
        rel: rel.clone(),
        children: Vec::new(),
    };
    let cg = setup.cgroup(&rel);
    cg.create(&Limits::default()).unwrap();
    let procs = cg.open_procs().unwrap();
    let fds: Vec<i32> = procs.iter().map(|f| f.as_raw_fd()).collect();
    let mut cmd = Command::new("sleep");
    cmd.arg("30");
    // SAFETY: the closure only calls write(2) on fds that stay open in the parent until spawn
    // returns, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        })
    };
    guard.children.push(cmd.spawn().unwrap());
    drop(procs);
    let pid = guard.children[0].id() as i32;
    assert_eq!(cg.pids().unwrap(), [pid]);
    cg.kill_all().unwrap();
    guard.children[0].wait().unwrap();
    cg.remove().unwrap();
}

#[test]
fn real_remove_tree_kills_and_removes_nested_cgroups() {
    let Some(setup) = setup_or_skip("real_remove_tree_kills_and_removes_nested_cgroups") else {
        return;
    };
    let top = unique_rel("tree");
    let mut guard = Cleanup {
        setup: setup.clone(),
        rel: top.clone(),
        children: Vec::new(),
    };
    let leaves = ["w-1/sb-1", "w-1/sb-2", "w-2/sb-3"];
    for leaf in leaves {
        let cg = setup.cgroup(&top.join(leaf));
        cg.create(&Limits {
            pids_max: Some(8),
            ..Limits::default()
        })
        .unwrap();
        let child = sleeper();
        cg.add_task(child.id() as i32).unwrap();
        guard.children.push(child);
    }
    // A paused sandbox dies too (a frozen v1 task only acts on SIGKILL once thawed).
    setup.cgroup(&top.join("w-1/sb-2")).freeze().unwrap();
    // top, w-1, sb-1, sb-2, w-2, sb-3 in every hierarchy.
    let expected = 6 * setup.hierarchies().len();
    assert_eq!(setup.remove_tree(&top).unwrap(), expected);
    for child in &mut guard.children {
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    }
    for dir in dirs(&setup, &top) {
        assert!(!dir.exists(), "{} is still there", dir.display());
    }
    assert_eq!(setup.remove_tree(&top).unwrap(), 0);
}

/// A worker's cleanup prunes empty shared parents while another worker creates sandbox cgroups
/// below them: creation must start over, not fail, when a parent vanishes under it.
#[test]
fn real_create_survives_a_concurrent_prune_of_its_parents() {
    let Some(setup) = setup_or_skip("real_create_survives_a_concurrent_prune_of_its_parents")
    else {
        return;
    };
    let top = unique_rel("prune");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pruner = {
        let (top_dirs, mid_dirs) = (dirs(&setup, &top), dirs(&setup, &top.join("w")));
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut pruned = 0u32;
            while !stop.load(Ordering::Relaxed) {
                for d in mid_dirs.iter().chain(&top_dirs) {
                    if std::fs::remove_dir(d).is_ok() {
                        pruned += 1;
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            pruned
        })
    };
    let mut failure = None;
    for i in 0..300 {
        let cg = setup.cgroup(&top.join(format!("w/sb-{i}")));
        if let Err(e) = cg.create(&Limits::default()) {
            failure = Some(format!("create {i}: {e}"));
            break;
        }
        if let Err(e) = cg.remove() {
            failure = Some(format!("remove {i}: {e}"));
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let pruned = pruner.join().expect("pruner thread");
    let _ = setup.remove_tree(&top);
    assert_eq!(failure, None);
    assert!(
        pruned > 0,
        "the pruner never removed a parent: the test raced nothing"
    );
}

/// Device rules for real (v1 `devices.allow`, v2 a device program): a process in the cgroup
/// opens what the rules list and nothing else.
#[test]
fn real_device_rules_refuse_unlisted_devices() {
    let Some(setup) = setup_or_skip("real_device_rules_refuse_unlisted_devices") else {
        return;
    };
    let rel = unique_rel("dev");
    let mut guard = Cleanup {
        setup: setup.clone(),
        rel: rel.clone(),
        children: Vec::new(),
    };
    let cg = setup.cgroup(&rel);
    let only_null = vec![crate::devices::DeviceRule::char_rw(1, Some(3))];
    // (No mknod rule: the child makes no node.)
    if let Err(e) = cg.create(&Limits {
        devices: Some(only_null),
        ..Limits::default()
    }) {
        if matches!(&setup, CgroupSetup::V1 { controllers } if !controllers.contains_key("devices"))
        {
            eprintln!("skipping real_device_rules_refuse_unlisted_devices: no v1 devices controller ({e})");
            return;
        }
        panic!("device rules: {e}");
    }
    // The child waits on stdin until it is in the cgroup, then opens two devices.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("read x; (: < /dev/null) 2>/dev/null && echo null-ok; (: < /dev/zero) 2>/dev/null && echo zero-ok; true")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn sh");
    cg.add_task(child.id() as i32).unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("null-ok"), "{text}");
    assert!(!text.contains("zero-ok"), "/dev/zero was opened: {text}");
    guard.children.clear();
}
