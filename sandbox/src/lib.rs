//! Linux sandboxes for lambda handlers.
//!
//! A sandbox is one process tree in its own mount, pid, ipc, uts (and optionally network)
//! namespaces, rooted (via `pivot_root`) in a read-only base filesystem with a few extra mounts,
//! and confined by its own cgroup. This crate owns every kernel mechanism involved and exposes a
//! small contract: [`Sandbox::spawn`] from a validated [`SandboxSpec`], [`Sandbox::pause`],
//! [`Sandbox::unpause`], [`Sandbox::destroy`] (idempotent) and [`Sandbox::stats`].

pub mod cgroup;
pub mod detached;
pub mod devices;
pub mod harden;
pub mod mountinfo;
pub mod mounts;
pub mod process;
pub mod procmask;
pub mod spec;
pub mod syscall;
pub mod userns;

mod sandbox;

pub use detached::{DetachError, DetachedMount};
pub use harden::{HardenError, Hardening};
pub use procmask::{Mask, ProcMask};
pub use sandbox::{Sandbox, SandboxError, SandboxStats, StartTimings, State};
pub use spec::{BindMount, NetMode, Output, SandboxSpec, SpecError, View};
pub use userns::{mapping_namespace, IdMap, IdMapError, IdRange, MappingError};
