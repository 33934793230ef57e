//! What a sandbox's first process gives up before it runs untrusted code: every capability
//! (the bounding set is emptied, then the switch from root to an unprivileged uid clears the
//! rest), supplementary groups, the ability to gain privileges (`no_new_privs`), and a set of
//! system calls (seccomp).
//!
//! The seccomp filters are built with `seccompiler` (Firecracker's BPF compiler), once, and
//! kept as plain BPF programs so that a child can install them without allocating, and so that
//! a zygote's children can be handed the same policy as bytes (see below).
//!
//! The policy is a denylist: the calls below answer `EPERM`, everything else is allowed.
//! `clone3` answers `ENOSYS`: its flags sit in memory a filter cannot read, and C libraries fall
//! back to `clone`, whose flags the filter does check (no new user namespace).
//!
//! Installing a filter costs the kernel a compile proportional to its length (0.3 ms and more
//! for the whole denylist here), so a zygote's children split it in two
//! ([`Hardening::spare_filter_bytes`], [`Hardening::handler_filter_bytes`]): a spare installs
//! everything but the few calls it and a zygote still need ([`SPARE_NEEDS`]) while it
//! prepares, before any call waits; a handler's child installs only those few, after its
//! mounts. Together they deny exactly what the single filter of a fresh sandbox denies.

use std::collections::BTreeMap;
use std::sync::Arc;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// System calls a handler never needs and an escape would: mounts and namespaces, tracing
/// other processes, the kernel's keyring, modules, BPF, kexec, swap, clocks, reboot,
/// accounting, raw I/O ports, and file handles that bypass path checks.
const DENIED: &[(&str, libc::c_long)] = &[
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("open_tree", libc::SYS_open_tree),
    ("move_mount", libc::SYS_move_mount),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("kcmp", libc::SYS_kcmp),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("acct", libc::SYS_acct),
    ("quotactl", libc::SYS_quotactl),
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("adjtimex", libc::SYS_adjtimex),
    ("syslog", libc::SYS_syslog),
    ("vhangup", libc::SYS_vhangup),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("personality", libc::SYS_personality),
    // io_uring: a large kernel surface whose queued operations seccomp cannot see.
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    // Reaching into another process, as ptrace does.
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    ("process_madvise", libc::SYS_process_madvise),
    ("fanotify_init", libc::SYS_fanotify_init),
    #[cfg(target_arch = "x86_64")]
    ("iopl", libc::SYS_iopl),
    #[cfg(target_arch = "x86_64")]
    ("ioperm", libc::SYS_ioperm),
];

/// Denied calls a zygote's spare still makes after it prepared (it attaches the request's
/// mounts, and may become a zygote that makes spares of its own): its handler child denies
/// them once those mounts are in place.
pub const SPARE_NEEDS: [&str; 5] = ["mount", "umount2", "move_mount", "unshare", "setns"];

/// The system calls a sandbox's handler cannot make (for docs and tests).
pub fn denied_syscalls() -> Vec<&'static str> {
    let mut v: Vec<&str> = DENIED.iter().map(|(n, _)| *n).collect();
    v.extend(["clone (with CLONE_NEWUSER)", "clone3 (ENOSYS)"]);
    v
}

/// A failure building the filters.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the seccomp filter: {0}")]
pub struct HardenError(String);

/// The identity and filters a sandbox's process takes before it runs handler code.
#[derive(Debug, Clone)]
pub struct Hardening {
    pub uid: u32,
    pub gid: u32,
    /// Installed in order; each is a complete BPF program.
    pub(crate) filters: Arc<Vec<BpfProgram>>,
    /// The same policy in two parts, for a zygote's children (see the module docs).
    spare_filters: Arc<Vec<BpfProgram>>,
    handler_filters: Arc<Vec<BpfProgram>>,
}

/// A filter answering `EPERM` to `denied` (and to `clone` with `CLONE_NEWUSER` when `clone_rule`).
// `i64::from` of a `c_long`: the same type on 64-bit targets, a widening on 32-bit ones.
#[allow(clippy::useless_conversion)]
fn deny_filter(
    denied: &[(&str, libc::c_long)],
    clone_rule: bool,
    arch: TargetArch,
) -> Result<SeccompFilter, HardenError> {
    let eperm = SeccompAction::Errno(libc::EPERM as u32);
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = denied
        .iter()
        .map(|(_, nr)| (i64::from(*nr), Vec::new()))
        .collect();
    if clone_rule {
        // clone(flags, ...) with CLONE_NEWUSER: a new user namespace would hand back capabilities.
        let newuser = libc::CLONE_NEWUSER as u64;
        let cond = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(newuser),
            newuser,
        )
        .map_err(|e| HardenError(format!("{e:?}")))?;
        let rule = SeccompRule::new(vec![cond]).map_err(|e| HardenError(format!("{e:?}")))?;
        rules.insert(i64::from(libc::SYS_clone), vec![rule]);
    }
    SeccompFilter::new(rules, SeccompAction::Allow, eperm, arch)
        .map_err(|e| HardenError(format!("{e:?}")))
}

fn compile(filters: Vec<SeccompFilter>) -> Result<Arc<Vec<BpfProgram>>, HardenError> {
    filters
        .into_iter()
        .map(|f| BpfProgram::try_from(f).map_err(|e| HardenError(format!("{e:?}"))))
        .collect::<Result<Vec<_>, _>>()
        .map(Arc::new)
}

/// Raw `struct sock_filter` arrays (8 bytes per instruction, native byte order).
fn to_bytes(progs: &[BpfProgram]) -> Vec<Vec<u8>> {
    progs
        .iter()
        .map(|prog| {
            let mut out = Vec::with_capacity(prog.len() * 8);
            for ins in prog {
                out.extend_from_slice(&ins.code.to_ne_bytes());
                out.push(ins.jt);
                out.push(ins.jf);
                out.extend_from_slice(&ins.k.to_ne_bytes());
            }
            out
        })
        .collect()
}

fn target() -> Result<TargetArch, HardenError> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|e| HardenError(format!("{e:?}")))
}

impl Hardening {
    /// Running as `uid`/`gid` (never 0: refused) with the default filters.
    // `i64::from` of a `c_long`: the same type on 64-bit targets, a widening on 32-bit ones.
    #[allow(clippy::useless_conversion)]
    pub fn new(uid: u32, gid: u32) -> Result<Self, HardenError> {
        if uid == 0 || gid == 0 {
            return Err(HardenError(
                "sandboxes must not run as uid or gid 0".to_owned(),
            ));
        }
        let arch = target()?;
        let nosys = || {
            let mut clone3 = BTreeMap::new();
            clone3.insert(i64::from(libc::SYS_clone3), Vec::new());
            SeccompFilter::new(
                clone3,
                SeccompAction::Allow,
                SeccompAction::Errno(libc::ENOSYS as u32),
                arch,
            )
            .map_err(|e| HardenError(format!("{e:?}")))
        };
        let (later, early): (Vec<_>, Vec<_>) = DENIED
            .iter()
            .copied()
            .partition(|(name, _)| SPARE_NEEDS.contains(name));
        Ok(Self {
            uid,
            gid,
            filters: compile(vec![deny_filter(DENIED, true, arch)?, nosys()?])?,
            spare_filters: compile(vec![deny_filter(&early, true, arch)?, nosys()?])?,
            handler_filters: compile(vec![deny_filter(&later, false, arch)?])?,
        })
    }

    /// What a zygote's spare installs while it prepares: the policy without [`SPARE_NEEDS`].
    pub fn spare_filter_bytes(&self) -> Vec<Vec<u8>> {
        to_bytes(&self.spare_filters)
    }

    /// What a zygote's handler child adds once its mounts are in place: [`SPARE_NEEDS`] denied.
    pub fn handler_filter_bytes(&self) -> Vec<Vec<u8>> {
        to_bytes(&self.handler_filters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_refused_and_filters_build() {
        assert!(Hardening::new(0, 1000).is_err());
        assert!(Hardening::new(1000, 0).is_err());
        let h = Hardening::new(65534, 65534).unwrap();
        assert_eq!(h.filters.len(), 2);
        let bytes = to_bytes(&h.filters);
        assert_eq!(bytes.len(), 2);
        for (b, p) in bytes.iter().zip(h.filters.iter()) {
            assert_eq!(b.len(), p.len() * 8);
            assert!(!p.is_empty());
        }
        assert!(denied_syscalls().contains(&"mount"));
    }

    #[test]
    fn the_two_parts_deny_exactly_what_the_whole_denies() {
        for name in SPARE_NEEDS {
            assert!(
                DENIED.iter().any(|(n, _)| *n == name),
                "{name} is not denied"
            );
        }
        let h = Hardening::new(65534, 65534).unwrap();
        assert_eq!(h.spare_filter_bytes().len(), 2);
        assert_eq!(h.handler_filter_bytes().len(), 1);
        // The handler's part is short: it is installed while a call waits.
        let whole: usize = h.filters.iter().map(Vec::len).sum();
        let handler: usize = h.handler_filters.iter().map(Vec::len).sum();
        assert!(handler * 4 < whole, "{handler} of {whole} instructions");
    }
}
