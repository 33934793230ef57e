//! Which `/proc` paths every sandbox masks, and how, as container runtimes mask them: files
//! covered by `/dev/null`, directories by an empty read-only tmpfs, the kernel's tunables bound
//! read-only. Only the entries this kernel has are listed; fresh sandboxes apply the mask as
//! setup steps (`mounts.rs`), zygote spares from `LAMBDA_PROC_MASK` ([`ProcMask::to_env`]).

use std::path::Path;

/// Paths of `/proc` a sandbox must not see: kernel memory and keys, the host's timers and
/// interrupts, hardware lists. Hidden where this kernel has them.
const PROC_MASKED: [&str; 10] = [
    "acpi",
    "asound",
    "interrupts",
    "kcore",
    "keys",
    "latency_stats",
    "sched_debug",
    "scsi",
    "timer_list",
    "timer_stats",
];
/// Paths of `/proc` a sandbox may read but never write: the kernel's tunables and triggers.
const PROC_READ_ONLY: [&str; 5] = ["bus", "fs", "irq", "sys", "sysrq-trigger"];

/// How one `/proc` path is masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mask {
    /// A file, covered by a bind mount of `/dev/null`.
    File,
    /// A directory, covered by an empty read-only tmpfs.
    Dir,
    /// Bound onto itself, then remounted read-only.
    ReadOnly,
}

impl Mask {
    fn tag(self) -> &'static str {
        match self {
            Mask::File => "file",
            Mask::Dir => "dir",
            Mask::ReadOnly => "ro",
        }
    }
}

/// The `/proc` paths masked in every sandbox, with how, as present on this kernel (a new
/// procfs shows the same global entries as the host's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcMask {
    pub entries: Vec<(&'static str, Mask)>,
}

impl ProcMask {
    /// The mask for this host's kernel, looked up once.
    pub fn host() -> &'static ProcMask {
        static MASK: std::sync::OnceLock<ProcMask> = std::sync::OnceLock::new();
        MASK.get_or_init(|| ProcMask::under(Path::new("/proc")))
    }

    /// The mask for the procfs mounted at `proc`.
    pub fn under(proc: &Path) -> ProcMask {
        let mut entries = Vec::new();
        for name in PROC_MASKED {
            match std::fs::symlink_metadata(proc.join(name)) {
                Ok(m) if m.is_dir() => entries.push((name, Mask::Dir)),
                Ok(_) => entries.push((name, Mask::File)),
                Err(_) => {}
            }
        }
        for name in PROC_READ_ONLY {
            if std::fs::symlink_metadata(proc.join(name)).is_ok() {
                entries.push((name, Mask::ReadOnly));
            }
        }
        ProcMask { entries }
    }

    /// `name:kind` pairs joined by commas, for a zygote to apply the same mask in the children
    /// it forks (`kind` is `file`, `dir` or `ro`).
    pub fn to_env(&self) -> String {
        let pairs: Vec<String> = self
            .entries
            .iter()
            .map(|(name, mask)| format!("{name}:{}", mask.tag()))
            .collect();
        pairs.join(",")
    }
}
