//! Judging the facts: which are fine, which cost something (WARN) and which stop workers
//! (FAIL), each with its fix. Pure: [`super::tests`] runs it on made-up hosts.

use super::facts::{
    CgroupFacts, Controller, Disk, Facts, PortState, Probe, Reach, Reading, Syscall, Writable,
};
use super::{Finding, Target};

/// Below this much free space, nothing can be installed or built.
pub const DISK_FAIL_BYTES: u64 = 256 << 20;
/// Below this much, a base build or a few package installs may fill the disk.
pub const DISK_WARN_BYTES: u64 = 2 << 30;

/// The kernel release every feature the worker uses is in (mount_setattr).
const FULL_KERNEL: (u32, u32) = (5, 12);

/// Judges `facts` about `target`, in the order the checks are listed in docs/doctor.md.
pub fn evaluate(facts: &Facts, target: &Target) -> Vec<Finding> {
    let mut out = vec![kernel(&facts.kernel)];
    out.extend(
        facts
            .syscalls
            .iter()
            .map(|&(call, probe)| syscall(call, probe, target.import_cache)),
    );
    cgroups(&facts.cgroups, &mut out);
    out.push(user_namespaces(facts, target));
    out.push(filesystems(&facts.filesystems));
    out.push(seccomp(facts));
    out.extend(facts.disks.iter().map(disk));
    out.push(base(facts, target));
    if let Some((url, reach)) = &facts.index {
        out.push(index(url, reach));
    }
    if let Some((host, port, state)) = &facts.port {
        out.push(port_check(host, *port, state));
    }
    out
}

/// `(6, 1)` from `6.1.0-28-amd64`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn kernel(release: &Reading<String>) -> Finding {
    let release = match release {
        Reading::Read(r) => r,
        Reading::Failed(e) => {
            return Finding::warn(
                "kernel",
                format!("cannot read the release ({e})"),
                "mount /proc, which the worker needs too",
            )
        }
    };
    match kernel_version(release) {
        Some(v) if v >= FULL_KERNEL => Finding::ok("kernel", format!("Linux {release}")),
        Some(_) => Finding::warn(
            "kernel",
            format!(
                "Linux {release} is older than {}.{}, which some features need (see the lines below)",
                FULL_KERNEL.0, FULL_KERNEL.1
            ),
            "run a kernel 5.12 or newer (Debian 12 ships 6.1)",
        ),
        None => Finding::warn(
            "kernel",
            format!("cannot read a version in the release {release:?}"),
            "check `uname -r`; the lines below say what this kernel has",
        ),
    }
}

fn syscall(call: Syscall, probe: Probe, import_cache: bool) -> Finding {
    let check = format!("syscall {}", call.name());
    if call == Syscall::Clone3 {
        // Not called by the worker; glibc's threads and spawns call it and fall back to clone
        // on ENOSYS only (sandboxes answer ENOSYS on purpose). Any other refusal breaks them.
        return match probe {
            Probe::Present => Finding::ok(check, "present"),
            Probe::Missing => Finding::ok(check, "absent (Linux < 5.3); glibc falls back to clone"),
            Probe::Denied(e) => Finding::fail(
                check,
                format!("refused with {e} by a policy: glibc falls back to clone only on ENOSYS, so threads and processes fail to start"),
                "run under a seccomp profile that answers ENOSYS for clone3 (Docker 20.10.10 or newer), or none",
            ),
        };
    }
    let why = if call == Syscall::PidfdOpen {
        "watching sandboxes forked from zygotes"
    } else {
        "attaching a sandbox's directories in a fork from a zygote"
    };
    let seen = match probe {
        Probe::Present => return Finding::ok(check, "present"),
        Probe::Missing => format!("absent (added in Linux {})", call.since()),
        Probe::Denied(e) => {
            format!("refused with {e} by a policy (a container's seccomp profile?)")
        }
    };
    if !import_cache {
        return Finding::ok(check, format!("{seen}; not needed with import_cache off"));
    }
    Finding::warn(
        check,
        format!("{seen}: it is needed for {why}, so every cold start falls back to a fresh sandbox (slower)"),
        format!(
            "run Linux {} or newer and allow the call, or set import_cache to false",
            call.since()
        ),
    )
}

fn cgroups(facts: &CgroupFacts, out: &mut Vec<Finding>) {
    match facts {
        CgroupFacts::Undetected(reason) => out.push(Finding::fail(
            "cgroups",
            reason.clone(),
            "mount the cgroup hierarchies read-write (v2 at /sys/fs/cgroup, or v1 memory, pids and freezer); in a container, run privileged with the host's cgroups",
        )),
        CgroupFacts::V1 { controllers } => {
            let mounts: Vec<String> = controllers
                .iter()
                .filter_map(|c| Some(format!("{} at {}", c.name, c.mount.as_ref()?.display())))
                .collect();
            out.push(Finding::ok(
                "cgroups",
                format!("v1: {}", mounts.join(", ")),
            ));
            out.extend(controllers.iter().map(v1_controller));
        }
        CgroupFacts::V2 {
            root,
            available,
            writable,
            freeze,
        } => {
            out.push(Finding::ok("cgroups", format!("v2 at {}", root.display())));
            let controllers = root.join("cgroup.controllers");
            for name in ["memory", "pids"] {
                out.push(if available.iter().any(|a| a == name) {
                    Finding::ok(format!("cgroup {name}"), "available")
                } else {
                    Finding::fail(
                        format!("cgroup {name}"),
                        format!("not in {}", controllers.display()),
                        format!("enable the {name} controller (kernel command line, or delegate it to this cgroup)"),
                    )
                });
            }
            out.push(if available.iter().any(|a| a == "cpu") {
                Finding::ok("cgroup cpu", "available")
            } else {
                Finding::warn(
                    "cgroup cpu",
                    format!("not in {}: cpu_percent is not enforced", controllers.display()),
                    "enable the cpu controller for this cgroup",
                )
            });
            match writable {
                Writable::Yes if *freeze => {
                    out.push(Finding::ok(
                        "cgroup write",
                        format!("made and removed a cgroup under {}", root.display()),
                    ));
                    out.push(Finding::ok("cgroup freezer", "cgroup.freeze present"));
                }
                Writable::Yes => {
                    out.push(Finding::ok(
                        "cgroup write",
                        format!("made and removed a cgroup under {}", root.display()),
                    ));
                    out.push(Finding::warn(
                        "cgroup freezer",
                        "a new cgroup has no cgroup.freeze (Linux < 5.2): idle sandboxes cannot be paused",
                        "run Linux 5.2 or newer, or set pause_after_ms to 0",
                    ));
                }
                Writable::No(e) => out.push(Finding::fail(
                    "cgroup write",
                    e.clone(),
                    format!("make {} writable for root (remount it read-write; in a container, give it the host's cgroups read-write)", root.display()),
                )),
            }
        }
    }
}

fn v1_controller(c: &Controller) -> Finding {
    let check = format!("cgroup {}", c.name);
    let optional = c.name == "cpu";
    match (&c.mount, &c.writable) {
        (None, _) if optional => Finding::warn(
            check,
            "no cpu hierarchy: cpu_percent is not enforced",
            "mount the cpu controller (a cpu,cpuacct hierarchy under /sys/fs/cgroup)",
        ),
        (None, _) => Finding::fail(
            check,
            "no hierarchy holds it",
            format!("mount the {} controller under /sys/fs/cgroup", c.name),
        ),
        (Some(m), Some(Writable::Yes)) => Finding::ok(check, format!("writable ({})", m.display())),
        (Some(m), Some(Writable::No(e))) => {
            let fix = format!(
                "make {} writable for root (remount it read-write; in a container, give it the host's cgroups read-write)",
                m.display()
            );
            if optional {
                Finding::warn(check, format!("{e}: cpu_percent is not enforced"), fix)
            } else {
                Finding::fail(check, e.clone(), fix)
            }
        }
        (Some(m), None) => Finding::ok(check, format!("at {}", m.display())),
    }
}

fn user_namespaces(facts: &Facts, target: &Target) -> Finding {
    const CHECK: &str = "user namespaces";
    if !target.user_namespaces {
        return Finding::ok(
            CHECK,
            "off (user_namespaces: false): every handler runs as sandbox_uid",
        );
    }
    match &facts.user_namespaces {
        Ok(()) => Finding::ok(CHECK, "available: one host uid per function"),
        Err((errno, max)) => {
            let max_text = max.map_or_else(|| "unknown".to_owned(), |m| m.to_string());
            let fix = if *max == Some(0) {
                "raise the limit (sysctl user.max_user_namespaces=15000), or set user_namespaces to false"
            } else {
                "allow user namespaces for root (a container's seccomp profile or an LSM forbids them), or set user_namespaces to false"
            };
            Finding::warn(
                CHECK,
                format!("the kernel refuses them ({errno}; user.max_user_namespaces is {max_text}): workers fall back to one sandbox_uid for every handler, without package zygotes"),
                fix,
            )
        }
    }
}

fn filesystems(names: &Reading<Vec<String>>) -> Finding {
    const CHECK: &str = "filesystems";
    let names = match names {
        Reading::Read(n) => n,
        Reading::Failed(e) => {
            return Finding::warn(CHECK, format!("cannot list them ({e})"), "mount /proc")
        }
    };
    let has = |fs: &str| names.iter().any(|n| n == fs);
    let overlay = if has("overlay") {
        "overlay present"
    } else {
        "overlay absent (not used by sandboxes)"
    };
    if has("tmpfs") {
        Finding::ok(CHECK, format!("tmpfs present (sandbox scratch); {overlay}"))
    } else {
        Finding::fail(
            CHECK,
            format!(
                "no tmpfs in /proc/filesystems: sandboxes cannot get /tmp and /host; {overlay}"
            ),
            "use a kernel with CONFIG_TMPFS (every distribution kernel has it)",
        )
    }
}

fn seccomp(facts: &Facts) -> Finding {
    const CHECK: &str = "seccomp";
    if let Err(e) = facts.seccomp_mode {
        return Finding::fail(
            CHECK,
            format!("prctl(PR_GET_SECCOMP) failed ({e}): this kernel has no seccomp, so sandboxes cannot be hardened"),
            "use a kernel built with CONFIG_SECCOMP_FILTER (every distribution kernel is)",
        );
    }
    let Some(actions) = &facts.seccomp_actions else {
        return Finding::warn(
            CHECK,
            "cannot read /proc/sys/kernel/seccomp/actions_avail",
            "mount /proc read-only at least; the sandbox's filter is checked when it starts",
        );
    };
    let missing: Vec<&str> = ["allow", "errno"]
        .into_iter()
        .filter(|a| !actions.iter().any(|x| x == a))
        .collect();
    let under = if facts.seccomp_mode == Ok(2) {
        "; this process already runs under a filter"
    } else {
        ""
    };
    if missing.is_empty() {
        Finding::ok(CHECK, format!("filters available{under}"))
    } else {
        Finding::fail(
            CHECK,
            format!("the kernel lacks the filter actions {}", missing.join(", ")),
            "use a kernel built with CONFIG_SECCOMP_FILTER",
        )
    }
}

fn disk(d: &Disk) -> Finding {
    let check = format!("disk {}", d.what);
    let bytes = match &d.available {
        Reading::Read(b) => *b,
        Reading::Failed(e) => {
            return Finding::warn(
                check,
                e.clone(),
                "check that the directory's file system is mounted",
            )
        }
    };
    let seen = format!("{} free at {}", human(bytes), d.path.display());
    let fix = format!(
        "free space on the file system of {}, or put it on a larger one",
        d.path.display()
    );
    if bytes < DISK_FAIL_BYTES {
        Finding::fail(
            check,
            format!("{seen}: too little to build or install anything"),
            fix,
        )
    } else if bytes < DISK_WARN_BYTES {
        Finding::warn(
            check,
            format!("{seen}: a base build or a few installs may fill it"),
            fix,
        )
    } else {
        Finding::ok(check, seen)
    }
}

fn human(bytes: u64) -> String {
    let gib = bytes as f64 / f64::from(1u32 << 30);
    if gib >= 1.0 {
        format!("{gib:.1} GiB")
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

fn base(facts: &Facts, target: &Target) -> Finding {
    const CHECK: &str = "base";
    let b = &facts.base;
    let dir = b.dir.display();
    if !b.exists && !target.cluster_base {
        return Finding::warn(
            CHECK,
            format!("not built yet at {dir}: the first admin new builds it (about a minute, with debootstrap and a Debian mirror)"),
            target.base_fix.clone(),
        );
    }
    if !b.exists {
        return Finding::fail(CHECK, format!("no base at {dir}"), target.base_fix.clone());
    }
    let Some(python) = &b.python else {
        return Finding::fail(
            CHECK,
            format!("{dir} has no Python 3 (/usr/bin/python3)"),
            format!("rebuild it: {}", target.base_fix),
        );
    };
    if !target.cluster_base {
        return Finding::ok(CHECK, format!("{dir}: Python {python} (the cache's base)"));
    }
    if !b.runtime {
        return Finding::fail(
            CHECK,
            format!("{dir} has Python {python} but not lambdaworker's runtime"),
            format!("install it: {}", target.base_fix),
        );
    }
    Finding::ok(CHECK, format!("{dir}: Python {python}, runtime installed"))
}

fn index(url: &str, reach: &Reach) -> Finding {
    const CHECK: &str = "package index";
    let fix = "set pip_index_url (admin setconf) to an index this host can reach; functions without requirements are not affected";
    match reach {
        Reach::Connected(addr, took) => Finding::ok(
            CHECK,
            format!(
                "{url}: {addr} accepted a connection in {} ms",
                took.as_millis()
            ),
        ),
        Reach::BadUrl(u) => Finding::fail(
            CHECK,
            format!("pip_index_url {u:?} is not an http:// or https:// URL"),
            "set pip_index_url (admin setconf) to the index's URL, such as https://pypi.org/simple",
        ),
        Reach::Unresolved(e) => Finding::warn(
            CHECK,
            format!("{url}: cannot resolve {e}: functions with requirements cannot install"),
            fix,
        ),
        Reach::Unreachable(e) => Finding::warn(
            CHECK,
            format!("{url}: {e}: functions with requirements cannot install"),
            fix,
        ),
    }
}

fn port_check(host: &str, port: u16, state: &PortState) -> Finding {
    const CHECK: &str = "port";
    match state {
        PortState::Free => Finding::ok(CHECK, format!("{host}:{port} is free")),
        PortState::InUse { worker: true } => Finding::warn(
            CHECK,
            format!("a lambdaworker worker already answers on {host}:{port}"),
            "stop it (admin kill -cluster DIR) or pass --port to check another port",
        ),
        PortState::InUse { worker: false } => Finding::fail(
            CHECK,
            format!("{host}:{port} is in use by another program"),
            "stop that program or choose another port (--port, or worker_port with admin setconf)",
        ),
        PortState::Error(e) => Finding::fail(
            CHECK,
            e.clone(),
            "set worker_host to an address of this host (admin setconf)",
        ),
    }
}
