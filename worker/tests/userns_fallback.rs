//! A kernel that refuses user namespaces (root only): the worker starts, says why at start
//! (its log and `/stats`), and runs the model it has without them: every handler as
//! `sandbox_uid`, package zygotes off, sandboxes still forked from the root zygote.
//!
//! They are refused with `user.max_user_namespaces` at 0 where this host lets root write it
//! (the value is put back when the test ends, even by a failed assertion). Where it does not
//! (root without `CAP_SYS_RESOURCE`, as in some VMs and containers), the worker is started
//! under a seccomp filter that answers `EPERM` to a new user namespace, as container
//! runtimes' default profiles do: the same refusal, seen by the worker the same way.

mod common;

use std::os::unix::process::CommandExt;

use common::process::{free_port, spawn_worker_with, terminate};
use common::{can_run, http, new_cluster};
use serde_json::Value;

const SYSCTL: &str = "/proc/sys/user/max_user_namespaces";

/// Puts the sysctl back on drop.
struct Restore(String);

impl Drop for Restore {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(SYSCTL, &self.0) {
            eprintln!("cannot restore {SYSCTL} to {}: {e}", self.0.trim());
        }
    }
}

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

const fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}
const LD_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JSET: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
const RET: u16 = 0x06; // BPF_RET | BPF_K
const ALLOW: u32 = 0x7fff_0000;
const ERRNO: u32 = 0x0005_0000;

/// `clone` and `unshare` with `CLONE_NEWUSER` answer `EPERM`; `clone3`, whose flags a filter
/// cannot read, `ENOSYS` (the C library falls back to `clone`); everything else is allowed.
static NO_USER_NS: [libc::sock_filter; 11] = [
    insn(LD_ABS, 0, 0, 4), // arch
    insn(JEQ, 0, 8, AUDIT_ARCH),
    insn(LD_ABS, 0, 0, 0), // syscall number
    insn(JEQ, 0, 1, libc::SYS_clone3 as u32),
    insn(RET, 0, 0, ERRNO | libc::ENOSYS as u32),
    insn(JEQ, 1, 0, libc::SYS_clone as u32),
    insn(JEQ, 0, 3, libc::SYS_unshare as u32),
    insn(LD_ABS, 0, 0, 16), // the flags: low half of the first argument
    insn(JSET, 0, 1, libc::CLONE_NEWUSER as u32),
    insn(RET, 0, 0, ERRNO | libc::EPERM as u32),
    insn(RET, 0, 0, ALLOW),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_user_namespaces_fall_back_and_say_so() {
    if !can_run("refused_user_namespaces_fall_back_and_say_so") {
        return;
    }
    let before = std::fs::read_to_string(SYSCTL).expect("read the sysctl");
    if before.trim() == "0" || sandbox::userns::probe().is_err() {
        eprintln!("skipping: user namespaces are refused here already; nothing to turn off");
        return;
    }
    let (restore, how) = match std::fs::write(SYSCTL, "0") {
        Ok(()) => (Some(Restore(before)), "user.max_user_namespaces 0"),
        Err(e) => {
            eprintln!("{SYSCTL} cannot be written here ({e}): refusing them by seccomp");
            (None, "a seccomp filter")
        }
    };
    let by_sysctl = restore.is_some();

    let (_tmp, dir, mut cfg) = new_cluster(r#"{"zygote_min_starts": 1}"#);
    cfg.worker_port = free_port();
    let fn_dir = dir.join("registry/whoami");
    std::fs::create_dir_all(&fn_dir).unwrap();
    std::fs::write(
        fn_dir.join("lambda_func.py"),
        "import os\n\ndef handler(event):\n    return {'uid': os.getuid(), 'gid': os.getgid()}\n",
    )
    .unwrap();
    let (mut child, addr) = spawn_worker_with(&cfg, &dir, |cmd| {
        if !by_sysctl {
            // SAFETY: between fork and exec the closure makes one prctl call on a static
            // program; nothing is allocated or locked.
            unsafe {
                cmd.pre_exec(|| {
                    let prog = libc::sock_fprog {
                        len: NO_USER_NS.len() as u16,
                        filter: NO_USER_NS.as_ptr().cast_mut(),
                    };
                    let rc = libc::prctl(
                        libc::PR_SET_SECCOMP,
                        libc::SECCOMP_MODE_FILTER,
                        &prog as *const libc::sock_fprog,
                        0,
                        0,
                    );
                    if rc == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
    })
    .await;

    let (status, text) = http(addr, "POST", "/runLambda/whoami", b"{}").await;
    let (_, stats) = http(addr, "GET", "/stats", b"").await;
    terminate(&mut child);
    drop(restore);
    assert!(
        sandbox::userns::probe().is_ok(),
        "user namespaces are back after the test"
    );

    assert_eq!(status, 200, "{how}: {text}");
    let r: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["uid"], cfg.sandbox_uid, "{how}: {r}");
    assert_eq!(r["gid"], cfg.sandbox_gid, "{how}: {r}");
    let stats: Value = serde_json::from_str(&stats).unwrap();
    let userns = &stats["user_namespaces"];
    assert_eq!(userns["enabled"], false, "{how}: {stats}");
    let why = userns["fallback"].as_str().unwrap_or_default();
    assert!(
        why.contains("the kernel refuses user namespaces"),
        "{how}: {stats}"
    );
    if by_sysctl {
        assert!(why.contains("max_user_namespaces is 0"), "{stats}");
    } else {
        assert!(why.contains("EPERM"), "{stats}");
    }
    // The config asks for package zygotes (the default); without user namespaces they are off.
    assert!(cfg.package_zygotes);
    assert_eq!(stats["import_cache"]["package_zygotes"], false, "{stats}");
    assert_eq!(stats["lambdas"]["whoami"]["zygote_starts"], 1, "{stats}");
    // The log says so, at start.
    let log = std::fs::read_to_string(dir.join("logs/worker-0.out")).unwrap();
    let warned = log
        .lines()
        .position(|l| l.contains("WARN") && l.contains("the kernel refuses user namespaces"));
    let ready = log.lines().position(|l| l.contains("worker ready"));
    assert!(
        warned.is_some() && warned < ready,
        "{how}: no warning before ready in:\n{log}"
    );
}
