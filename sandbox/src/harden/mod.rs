//! What a sandbox's first process gives up before it runs untrusted code: every capability
//! (the bounding set is emptied, then the switch from root to an unprivileged uid clears the
//! rest), supplementary groups, the ability to gain privileges (`no_new_privs`), and every
//! system call not on an allowlist (seccomp).
//!
//! The seccomp filters are built with `seccompiler` (Firecracker's BPF compiler), once, and
//! kept as plain BPF programs so that a child can install them without allocating, and so that
//! a zygote's children can be handed the same policy as bytes (see below).
//!
//! The policy is an allowlist ([`allow::ALLOWED`]): a call not on it answers `EPERM`, and so
//! does a call of another ABI than the native one's numbers (x32's, which set bit 30; i386's
//! `int 0x80` ends the process, as every filter first checks the architecture). Two calls are
//! special:
//! - `clone` is allowed unless its flags ask for `CLONE_NEWUSER`: a new user namespace would
//!   hand back capabilities;
//! - `clone3` answers `ENOSYS`: its flags sit in memory a filter cannot read, and C libraries
//!   fall back to `clone`, whose flags the filter does check. `clone3` is on the allowlist, and
//!   a second, two-line filter gives the answer, so that exactly one filter says no.
//!
//! The allowlist was drawn up from what the runtime and common packages call (numpy, pandas,
//! requests, Flask under the HTTP runtime, threads, subprocesses, multiprocessing, asyncio,
//! sockets of every family, file I/O, signals, timers, inotify, memfd; traced on both start
//! paths and on the host's interpreter) and widened with the calls of the same kind a runtime
//! may make (the ones container runtimes allow by default without capabilities). What was
//! denied by name before ([`deny::DENIED`]: mounts and namespaces, tracing, the keyring,
//! modules, BPF, io_uring...) stays out of it (tested).
//!
//! Installing a filter costs the kernel time in proportion to its length (it checks the
//! program, translates it and works out which calls it always allows), so a zygote's children
//! split the policy in two ([`Hardening::spare_filter_bytes`],
//! [`Hardening::handler_filter_bytes`]): a spare installs the allowlist plus the few calls it
//! and a zygote still need ([`SPARE_NEEDS`]) while it prepares, before any call waits; a
//! handler's child installs a short filter denying those few, after its mounts. Together they
//! allow exactly what the single policy of a fresh sandbox allows (tested, call by call).

mod allow;
mod deny;

use std::collections::BTreeMap;
use std::sync::Arc;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

pub use deny::SPARE_NEEDS;

/// The system calls a sandbox's handler may make (for docs and tests), `clone` with its
/// condition.
pub fn allowed_syscalls() -> Vec<&'static str> {
    let mut v: Vec<&str> = allow::ALLOWED.iter().map(|(n, _)| *n).collect();
    v.push("clone (without CLONE_NEWUSER)");
    v
}

/// The system calls denied by name (for docs and tests); every other call not on the
/// allowlist ([`allowed_syscalls`]) is denied as well.
pub fn denied_syscalls() -> Vec<&'static str> {
    let mut v: Vec<&str> = deny::DENIED.iter().map(|(n, _)| *n).collect();
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

fn err(e: impl std::fmt::Debug) -> HardenError {
    HardenError(format!("{e:?}"))
}

/// The allowlist filter: [`allow::ALLOWED`] and `extra` allowed, `clone` without
/// `CLONE_NEWUSER` allowed, everything else `EPERM`.
// `i64::from` of a `c_long`: the same type on 64-bit targets, a widening on 32-bit ones.
#[allow(clippy::useless_conversion)]
fn allow_filter(
    extra: &[(&str, libc::c_long)],
    arch: TargetArch,
) -> Result<SeccompFilter, HardenError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = allow::ALLOWED
        .iter()
        .chain(extra)
        .map(|(_, nr)| (i64::from(*nr), Vec::new()))
        .collect();
    // clone(flags, ...): allowed when the flags do not ask for a new user namespace.
    let newuser = libc::CLONE_NEWUSER as u64;
    let cond = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(newuser),
        0,
    )
    .map_err(err)?;
    let rule = SeccompRule::new(vec![cond]).map_err(err)?;
    rules.insert(i64::from(libc::SYS_clone), vec![rule]);
    SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )
    .map_err(err)
}

/// `clone3` answers `ENOSYS`, everything else passes (to the allowlist's answer).
// `i64::from` of a `c_long`: the same type on 64-bit targets, a widening on 32-bit ones.
#[allow(clippy::useless_conversion)]
fn nosys_filter(arch: TargetArch) -> Result<SeccompFilter, HardenError> {
    let mut clone3 = BTreeMap::new();
    clone3.insert(i64::from(libc::SYS_clone3), Vec::new());
    SeccompFilter::new(
        clone3,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(err)
}

/// `denied` answers `EPERM`, everything else passes: the handler's part.
// `i64::from` of a `c_long`: the same type on 64-bit targets, a widening on 32-bit ones.
#[allow(clippy::useless_conversion)]
fn deny_filter(
    denied: &[(&str, libc::c_long)],
    arch: TargetArch,
) -> Result<SeccompFilter, HardenError> {
    let rules = denied
        .iter()
        .map(|(_, nr)| (i64::from(*nr), Vec::new()))
        .collect();
    SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(err)
}

fn compile(filters: Vec<SeccompFilter>) -> Result<Arc<Vec<BpfProgram>>, HardenError> {
    filters
        .into_iter()
        .map(|f| BpfProgram::try_from(f).map_err(err))
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
    TargetArch::try_from(std::env::consts::ARCH).map_err(err)
}

impl Hardening {
    /// Running as `uid`/`gid` (never 0: refused) with the default filters.
    pub fn new(uid: u32, gid: u32) -> Result<Self, HardenError> {
        if uid == 0 || gid == 0 {
            return Err(HardenError(
                "sandboxes must not run as uid or gid 0".to_owned(),
            ));
        }
        let arch = target()?;
        Ok(Self {
            uid,
            gid,
            filters: compile(vec![allow_filter(&[], arch)?, nosys_filter(arch)?])?,
            spare_filters: compile(vec![allow_filter(SPARE_NEEDS, arch)?, nosys_filter(arch)?])?,
            handler_filters: compile(vec![deny_filter(SPARE_NEEDS, arch)?])?,
        })
    }

    /// What a zygote's spare installs while it prepares: the allowlist plus [`SPARE_NEEDS`].
    pub fn spare_filter_bytes(&self) -> Vec<Vec<u8>> {
        to_bytes(&self.spare_filters)
    }

    /// What a zygote's handler child adds once its mounts are in place: [`SPARE_NEEDS`] denied.
    pub fn handler_filter_bytes(&self) -> Vec<Vec<u8>> {
        to_bytes(&self.handler_filters)
    }
}

#[cfg(test)]
mod tests;
