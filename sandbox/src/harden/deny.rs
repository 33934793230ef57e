//! Calls named for what they are: the ones a handler never needs and an escape would, and the
//! ones a zygote's spare still makes after it installed its part of the policy.
//!
//! None of [`DENIED`] is on the allowlist ([`super::allow::ALLOWED`]), so the allowlist's
//! default answers them all with `EPERM`; the table says why, keeps them out of the allowlist
//! for good (tested), and names them in the docs.

/// System calls a handler never needs and an escape would: mounts and namespaces, tracing
/// other processes, the kernel's keyring, modules, BPF, kexec, swap, clocks, reboot,
/// accounting, raw I/O ports, and file handles that bypass path checks.
pub(super) const DENIED: &[(&str, libc::c_long)] = &[
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

/// Calls a zygote's spare still makes after it installed its part of the policy (it attaches
/// the request's mounts, and may become a zygote that makes spares of its own: new namespaces,
/// a host name, `/proc` and `/tmp` mounts): the spare's part allows them on top of the
/// allowlist, and its handler child denies them once those mounts are in place. Everything
/// else a spare or a zygote calls after that point (`setgroups`, `setresgid`, `setresuid`,
/// `prctl`, `prlimit64`, `ioctl` for `lo`, `socket`, `fork`, `mkdir`, `dup2`, `chdir`...) is
/// on the allowlist.
pub const SPARE_NEEDS: &[(&str, libc::c_long)] = &[
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("move_mount", libc::SYS_move_mount),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    ("sethostname", libc::SYS_sethostname),
];
