//! The policy checked two ways: by running its BPF programs here, call by call, as the kernel
//! combines them; and by installing them in a forked child and making real calls.

// `i64::from` of a `c_long`: the same type on 64-bit targets, a widening on 32-bit ones.
#![allow(clippy::useless_conversion)]

use std::collections::BTreeSet;

use seccompiler::sock_filter;

use super::*;

const NR_SPACE: i64 = 1024;
const RET_ACTION_FULL: u32 = 0xffff_0000;
/// AUDIT_ARCH_* of this architecture (what every filter checks first).
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 183 | 0x8000_0000 | 0x4000_0000;

/// What the kernel does with one call: the program's return value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allow,
    Errno(u32),
    Kill,
}

fn verdict(ret: u32) -> Verdict {
    match ret & RET_ACTION_FULL {
        libc::SECCOMP_RET_ALLOW => Verdict::Allow,
        libc::SECCOMP_RET_ERRNO => Verdict::Errno(ret & libc::SECCOMP_RET_DATA),
        libc::SECCOMP_RET_KILL_PROCESS => Verdict::Kill,
        other => panic!("unexpected action {other:#x}"),
    }
}

/// `struct seccomp_data` as the kernel lays it out (native byte order).
fn seccomp_data(nr: i64, arch: u32, args: [u64; 6]) -> [u8; 64] {
    let mut d = [0u8; 64];
    d[0..4].copy_from_slice(&(nr as i32).to_ne_bytes());
    d[4..8].copy_from_slice(&arch.to_ne_bytes());
    for (i, a) in args.iter().enumerate() {
        d[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
    }
    d
}

/// A classic BPF interpreter for the instructions seccompiler emits.
fn run(prog: &[sock_filter], data: &[u8; 64]) -> u32 {
    const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS
    const ALU_AND_K: u16 = 0x04 | 0x50;
    const JMP: u16 = 0x05;
    const RET_K: u16 = 0x06;
    let mut a: u32 = 0;
    let mut pc = 0usize;
    loop {
        let i = &prog[pc];
        pc += 1;
        match i.code {
            LD_W_ABS => {
                let k = i.k as usize;
                a = u32::from_ne_bytes(data[k..k + 4].try_into().unwrap());
            }
            ALU_AND_K => a &= i.k,
            RET_K => return i.k,
            c if c & 0x07 == JMP => {
                let taken = match c & 0xf0 {
                    0x00 => {
                        pc += i.k as usize;
                        continue;
                    }
                    0x10 => a == i.k,
                    0x20 => a > i.k,
                    0x30 => a >= i.k,
                    0x40 => a & i.k != 0,
                    op => panic!("unexpected jump {op:#x}"),
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            c => panic!("unexpected instruction {c:#x}"),
        }
    }
}

/// The answer of `progs` (in the order installed) as the kernel combines them: every filter
/// runs, newest first, and the most restrictive action wins (the newest among equals).
fn judge(progs: &[&BpfProgram], nr: i64, args: [u64; 6]) -> Verdict {
    let data = seccomp_data(nr, AUDIT_ARCH, args);
    let mut ret = libc::SECCOMP_RET_ALLOW;
    for prog in progs.iter().rev() {
        let cur = run(prog, &data);
        if ((cur & RET_ACTION_FULL) as i32) < ((ret & RET_ACTION_FULL) as i32) {
            ret = cur;
        }
    }
    verdict(ret)
}

fn whole(h: &Hardening) -> Vec<&BpfProgram> {
    h.filters.iter().collect()
}

fn two_parts(h: &Hardening) -> Vec<&BpfProgram> {
    h.spare_filters
        .iter()
        .chain(h.handler_filters.iter())
        .collect()
}

/// Arguments that matter to the policy: none, clone's flags with and without a new user
/// namespace, and all bits set.
fn arg_cases() -> Vec<[u64; 6]> {
    let newuser = libc::CLONE_NEWUSER as u64;
    let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
    vec![
        [0; 6],
        [libc::SIGCHLD as u64, 0, 0, 0, 0, 0],
        [thread, 1, 2, 3, 4, 5],
        [newuser, 0, 0, 0, 0, 0],
        [newuser | libc::SIGCHLD as u64, 0, 0, 0, 0, 0],
        [u64::MAX; 6],
        [!newuser, 0, 0, 0, 0, 0],
    ]
}

fn numbers(table: &[(&str, libc::c_long)]) -> BTreeSet<i64> {
    table.iter().map(|(_, nr)| i64::from(*nr)).collect()
}

fn hardening() -> Hardening {
    Hardening::new(65534, 65534).unwrap()
}

#[test]
fn root_is_refused_and_filters_build() {
    assert!(Hardening::new(0, 1000).is_err());
    assert!(Hardening::new(1000, 0).is_err());
    let h = hardening();
    assert_eq!(h.filters.len(), 2);
    let bytes = to_bytes(&h.filters);
    assert_eq!(bytes.len(), 2);
    for (b, p) in bytes.iter().zip(h.filters.iter()) {
        assert_eq!(b.len(), p.len() * 8);
        assert!(!p.is_empty());
    }
    assert_eq!(h.spare_filter_bytes().len(), 2);
    assert_eq!(h.handler_filter_bytes().len(), 1);
    assert!(denied_syscalls().contains(&"mount"));
    assert!(allowed_syscalls().contains(&"openat"));
}

#[test]
fn the_tables_are_consistent_and_nothing_denied_is_allowed() {
    let allowed: BTreeSet<&str> = allow::ALLOWED.iter().map(|(n, _)| *n).collect();
    assert_eq!(allowed.len(), allow::ALLOWED.len(), "a name twice");
    assert_eq!(
        numbers(allow::ALLOWED).len(),
        allow::ALLOWED.len(),
        "a number twice"
    );
    assert!(!allowed.contains("clone"), "clone has its own rule");
    assert!(
        allowed.contains("clone3"),
        "clone3's ENOSYS comes from the second filter"
    );
    for (name, nr) in deny::DENIED {
        assert!(!allowed.contains(name), "{name} is denied by name");
        assert!(!numbers(allow::ALLOWED).contains(&i64::from(*nr)), "{name}");
    }
    for (name, nr) in SPARE_NEEDS {
        assert!(
            !allowed.contains(name),
            "{name}: the handler part would deny an allowed call"
        );
        assert!(!numbers(allow::ALLOWED).contains(&i64::from(*nr)), "{name}");
    }
    // The calls a handler cannot make whatever it is: mounts, namespaces, ptrace, BPF...
    for name in [
        "mount",
        "unshare",
        "setns",
        "ptrace",
        "bpf",
        "io_uring_setup",
        "keyctl",
    ] {
        assert!(denied_syscalls().contains(&name), "{name}");
    }
}

#[test]
fn the_whole_policy_allows_exactly_the_allowlist() {
    let h = hardening();
    let progs = whole(&h);
    let allowed = numbers(allow::ALLOWED);
    let eperm = Verdict::Errno(libc::EPERM as u32);
    let (mut allow, mut deny) = (0, 0);
    for nr in 0..NR_SPACE {
        for args in arg_cases() {
            let got = judge(&progs, nr, args);
            let want = if nr == i64::from(libc::SYS_clone3) {
                Verdict::Errno(libc::ENOSYS as u32)
            } else if nr == i64::from(libc::SYS_clone) {
                if args[0] & libc::CLONE_NEWUSER as u64 == 0 {
                    Verdict::Allow
                } else {
                    eperm
                }
            } else if allowed.contains(&nr) {
                Verdict::Allow
            } else {
                eperm
            };
            assert_eq!(got, want, "call {nr} with {args:x?}");
        }
        match judge(&progs, nr, [0; 6]) {
            Verdict::Allow => allow += 1,
            _ => deny += 1,
        }
    }
    // The table but clone3 (ENOSYS), and clone (whose flags here ask for nothing).
    assert_eq!(allow, allow::ALLOWED.len(), "{allow} allowed, {deny} not");
    for (name, nr) in deny::DENIED {
        assert_eq!(judge(&progs, i64::from(*nr), [0; 6]), eperm, "{name}");
    }
    // Numbers past the table, x32's (bit 30 set) and negative ones are refused too.
    for nr in [
        NR_SPACE,
        0x4000_0000,
        0x4000_0000 + i64::from(libc::SYS_getpid),
        0x4000_0000 + i64::from(libc::SYS_mount),
        -1,
    ] {
        assert_eq!(judge(&progs, nr, [0; 6]), eperm, "call {nr:#x}");
    }
}

#[test]
fn another_architecture_ends_the_process() {
    let h = hardening();
    let foreign = seccomp_data(i64::from(libc::SYS_getpid), 0x4000_0003, [0; 6]); // i386
    for prog in h.filters.iter().chain(h.handler_filters.iter()) {
        assert_eq!(verdict(run(prog, &foreign)), Verdict::Kill);
    }
}

#[test]
fn the_two_parts_compose_to_exactly_the_whole() {
    let h = hardening();
    let (one, two) = (whole(&h), two_parts(&h));
    let spare: Vec<&BpfProgram> = h.spare_filters.iter().collect();
    let needs = numbers(SPARE_NEEDS);
    for nr in -1..NR_SPACE {
        for args in arg_cases() {
            assert_eq!(
                judge(&two, nr, args),
                judge(&one, nr, args),
                "call {nr} with {args:x?}"
            );
            // The spare's part alone: the whole policy plus what a spare still needs.
            let want = if needs.contains(&nr) {
                Verdict::Allow
            } else {
                judge(&one, nr, args)
            };
            assert_eq!(judge(&spare, nr, args), want, "spare part: call {nr}");
        }
    }
    // The handler's part is short: it is installed while a call waits.
    let whole_len: usize = h.filters.iter().map(Vec::len).sum();
    let handler_len: usize = h.handler_filters.iter().map(Vec::len).sum();
    assert!(
        handler_len * 4 < whole_len,
        "{handler_len} of {whole_len} instructions"
    );
}

/// One call a forked child makes under the filters: `nr` with up to five arguments.
struct Probe {
    name: &'static str,
    nr: libc::c_long,
    args: [libc::c_long; 5],
    /// The result wanted: the return value, or minus the errno; `None`: any non-negative one.
    want: Option<i64>,
}

fn probe(name: &'static str, nr: libc::c_long, args: [libc::c_long; 5], want: i64) -> Probe {
    Probe {
        name,
        nr,
        args,
        want: Some(want),
    }
}

/// Forks a child that sets `no_new_privs`, installs `progs` and makes each call of `probes`;
/// returns what each returned (minus the errno on failure).
///
/// The test process has other threads, so the child only makes system calls: everything it
/// touches (the programs, the probes, the results) is prepared before the fork, and it ends
/// with `_exit`. A `clone` probe that succeeds makes a grandchild, which leaves at once.
fn in_child(progs: &[&BpfProgram], probes: &[Probe]) -> Vec<i64> {
    let fprogs: Vec<libc::sock_fprog> = progs
        .iter()
        .map(|p| libc::sock_fprog {
            len: p.len() as libc::c_ushort,
            filter: p.as_ptr() as *mut libc::sock_filter,
        })
        .collect();
    let mut results = vec![0i64; probes.len()];
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe to fill.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (rd, wr) = (fds[0], fds[1]);
    // SAFETY: the child below makes system calls only (no allocation, no locks), on memory
    // prepared before the fork, and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: plain system calls on fds and memory this process owns; `fprogs` points at
        // programs that live for the whole call; the grandchild of a clone probe only exits.
        unsafe {
            libc::close(rd);
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                libc::_exit(100);
            }
            for p in &fprogs {
                let p: *const libc::sock_fprog = p;
                if libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, p, 0, 0) != 0 {
                    libc::_exit(101);
                }
            }
            for (slot, p) in results.iter_mut().zip(probes) {
                let [a, b, c, d, e] = p.args;
                let rc = libc::syscall(p.nr, a, b, c, d, e);
                *slot = if rc < 0 {
                    -i64::from(nix::errno::Errno::last_raw())
                } else {
                    rc as i64
                };
                if p.nr == libc::SYS_clone && rc == 0 {
                    libc::_exit(0);
                }
                if p.nr == libc::SYS_clone && rc > 0 {
                    libc::waitpid(rc as libc::pid_t, std::ptr::null_mut(), 0);
                }
            }
            let len = results.len() * 8;
            let ok = libc::write(wr, results.as_ptr().cast(), len) == len as isize;
            libc::_exit(if ok { 0 } else { 102 });
        }
    }
    // SAFETY: closing our copy of the write end, which nothing else uses.
    unsafe { libc::close(wr) };
    let mut buf = vec![0u8; probes.len() * 8];
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reading into the unfilled rest of `buf`.
        let n = unsafe { libc::read(rd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        if n <= 0 {
            break;
        }
        got += n as usize;
    }
    let mut status = 0;
    // SAFETY: waiting for our own child; `status` is a valid int.
    unsafe {
        libc::close(rd);
        libc::waitpid(pid, &mut status, 0);
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child failed: status {status:#x}"
    );
    assert_eq!(got, buf.len());
    buf.chunks(8)
        .map(|c| i64::from_ne_bytes(c.try_into().unwrap()))
        .collect()
}

fn check(progs: &[&BpfProgram], probes: &[Probe]) {
    let results = in_child(progs, probes);
    for (p, got) in probes.iter().zip(results) {
        match p.want {
            Some(want) => assert_eq!(got, want, "{}: got {got}, want {want}", p.name),
            None => assert!(got >= 0, "{}: got {got}", p.name),
        }
    }
}

fn errno(e: libc::c_int) -> i64 {
    -i64::from(e)
}

/// Calls whose answer shows whether the filter let them through: each fails differently, or
/// does nothing, without the filter (and none harms the test process if it did pass).
fn kernel_probes(needs_allowed: bool) -> Vec<Probe> {
    let eperm = errno(libc::EPERM);
    let newuser = libc::CLONE_NEWUSER as libc::c_long | libc::CLONE_FS as libc::c_long;
    let mut v = vec![
        Probe {
            name: "getpid",
            nr: libc::SYS_getpid,
            args: [0; 5],
            want: None,
        },
        // Without the filter: ENOSYS (no such call).
        probe("call 1000", 1000, [0; 5], eperm),
        probe("lookup_dcookie", libc::SYS_lookup_dcookie, [0; 5], eperm),
        // Without the filter: EINVAL (no arguments).
        probe("clone3", libc::SYS_clone3, [0; 5], errno(libc::ENOSYS)),
        // Without the filter: EINVAL (a new user namespace cannot share the fs).
        probe(
            "clone (CLONE_NEWUSER)",
            libc::SYS_clone,
            [newuser, 0, 0, 0, 0],
            eperm,
        ),
        Probe {
            name: "clone (a child)",
            nr: libc::SYS_clone,
            args: [libc::SIGCHLD as libc::c_long, 0, 0, 0, 0],
            want: None,
        },
    ];
    if needs_allowed {
        v.extend([
            probe("unshare(0)", libc::SYS_unshare, [0; 5], 0),
            probe(
                "setns(-1)",
                libc::SYS_setns,
                [-1, 0, 0, 0, 0],
                errno(libc::EBADF),
            ),
        ]);
    } else {
        v.extend([
            // Without the filter: EFAULT or EPERM (no path, or no capability).
            probe("mount", libc::SYS_mount, [0; 5], eperm),
            probe("unshare(0)", libc::SYS_unshare, [0; 5], eperm),
            probe("setns(-1)", libc::SYS_setns, [-1, 0, 0, 0, 0], eperm),
            probe(
                "sethostname",
                libc::SYS_sethostname,
                [0, -1, 0, 0, 0],
                eperm,
            ),
        ]);
    }
    v
}

#[test]
fn the_kernel_enforces_the_whole_policy() {
    let h = hardening();
    check(&whole(&h), &kernel_probes(false));
}

#[test]
fn the_kernel_enforces_the_two_parts() {
    let h = hardening();
    let spare: Vec<&BpfProgram> = h.spare_filters.iter().collect();
    check(&spare, &kernel_probes(true));
    check(&two_parts(&h), &kernel_probes(false));
}
