//! One file per `admin` command; each has an `Args` struct (clap) and a `run` function.

pub mod base;
pub mod completions;
pub mod delete;
pub mod deploy;
pub mod doctor;
pub mod functions;
pub mod install;
pub mod install_service;
pub mod invocations;
pub mod kill;
pub mod layer;
pub mod lb;
pub mod logs;
pub mod new;
pub mod registry;
pub mod registry_exec;
pub mod setconf;
pub mod status;
pub mod upload;
pub mod volume;
pub mod worker_exec;
pub mod workers;

/// The address to reach a worker that binds `worker_host` from this machine.
pub fn local_host(worker_host: &str) -> &str {
    match worker_host {
        "" | "0.0.0.0" => "127.0.0.1",
        "::" | "[::]" => "::1",
        h => h,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn wildcard_hosts_are_reached_on_loopback() {
        assert_eq!(super::local_host("0.0.0.0"), "127.0.0.1");
        assert_eq!(super::local_host("::"), "::1");
        assert_eq!(super::local_host("127.0.0.1"), "127.0.0.1");
        assert_eq!(super::local_host("10.1.2.3"), "10.1.2.3");
    }
}
