//! lambdaworker's admin library: what `admin new` does, kept apart from the CLI so the
//! benchmarks and the worker's integration tests make clusters with the same code.
//!
//! [`cluster`] owns the cluster directory layout, its template config, the cached base root
//! filesystem (debootstrap, apt mirror, hardlink copy) and the embedded cluster-template files.
//! [`preflight`] says what `admin doctor` checks for a cluster. The `admin` binary (`main.rs` and `commands/`) is a thin CLI over this library and the
//! `worker` library.

pub mod balancer;
pub mod bases;
pub mod cluster;
pub mod preflight;
pub mod service;
