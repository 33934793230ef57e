//! `admin`: lambdaworker's cluster tool (`new`, `setconf`, `workers`, `worker-exec`, `status`,
//! `kill`, `registry`, `registry-exec`, `upload`, `functions`, `create`, `update`, `delete`,
//! `layer`, `volume`, `base`, `invocations`, `logs`, `install`, `install-service`, `doctor`, `completions`, `man`), in the spirit of
//! OpenLambda's. Thin: each command is a file in `commands/`, the logic
//! lives in the libraries (`admin::cluster` for clusters, `worker` for the rest). Go-style flags
//! (`-cluster X`) are rewritten before clap parses, as for the `worker` binary
//! ([`worker::argv`]).

mod background;
mod cluster_dir;
mod code_zip;
mod commands;
mod process;
mod progress;
mod registry_record;
mod remote;
mod settings_flags;
mod store;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use worker::argv;

/// lambdaworker's admin tool: clusters, workers, status.
#[derive(Debug, Parser)]
#[command(name = "admin", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create a cluster directory (builds the cached base root filesystem the first time)
    New(commands::new::Args),
    /// Merge JSON keys into the cluster's config/template.json
    Setconf(commands::setconf::Args),
    /// Start workers in the background and wait until they are ready
    Workers(commands::workers::Args),
    /// Run one worker in the foreground (Ctrl-C stops it)
    WorkerExec(commands::worker_exec::Args),
    /// Ping the cluster's workers and list their live sandboxes
    Status(commands::status::Args),
    /// Stop the cluster's workers (and registry server) and remove their sandboxes, cgroups and scratch space
    Kill(commands::kill::Args),
    /// Run HAProxy in front of the cluster's workers: calls hashed by function, health and load checks
    Lb(commands::lb::Args),
    /// Start the cluster's registry server in the background; workers started afterwards pull code from it
    Registry(commands::registry::Args),
    /// Run the cluster's registry server in the foreground (Ctrl-C stops it)
    RegistryExec(commands::registry_exec::Args),
    /// Deploy a handler bundle (.tar.gz or .zip) as a function
    Upload(commands::upload::Args),
    /// List the cluster's functions
    Functions(commands::functions::Args),
    /// Create a function from files and directories
    Create(commands::deploy::Args),
    /// Replace a function's code and/or change its settings
    Update(commands::deploy::Args),
    /// Delete a function
    Delete(commands::delete::Args),
    /// Publish and list layers
    Layer(commands::layer::Args),
    /// Create, list and delete shared volumes (mounted by functions through access points)
    Volume(commands::volume::Args),
    /// Import, list and delete custom bases (root filesystems functions name with `base`)
    Base(commands::base::Args),
    /// List the asynchronous invocations the running workers hold (queued, done, dead letters)
    Invocations(commands::invocations::Args),
    /// Print a function's handler logs (--follow: as they are written)
    Logs(commands::logs::Args),
    /// Install a function's packages (requirements.txt) ahead of its first call
    Install(commands::install::Args),
    /// Write systemd units for the cluster's workers and enable them (instead of `workers`)
    InstallService(commands::install_service::Args),
    /// Check the kernel and the host before anything starts: each check OK, WARN or FAIL with its fix
    Doctor(commands::doctor::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(commands::completions::Args),
    /// Write man pages for admin and each of its commands
    Man(commands::completions::ManArgs),
}

fn main() -> ExitCode {
    let cli: Cli = match argv::parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let result = match &cli.command {
        Cmd::New(a) => commands::new::run(a),
        Cmd::Setconf(a) => commands::setconf::run(a),
        Cmd::Workers(a) => commands::workers::run(a),
        Cmd::WorkerExec(a) => commands::worker_exec::run(a),
        Cmd::Status(a) => commands::status::run(a),
        Cmd::Kill(a) => commands::kill::run(a),
        Cmd::Lb(a) => commands::lb::run(a),
        Cmd::Registry(a) => commands::registry::run(a),
        Cmd::RegistryExec(a) => commands::registry_exec::run(a),
        Cmd::Upload(a) => commands::upload::run(a),
        Cmd::Functions(a) => commands::functions::run(a),
        Cmd::Invocations(a) => commands::invocations::run(a),
        Cmd::Create(a) => commands::deploy::run_create(a),
        Cmd::Update(a) => commands::deploy::run_update(a),
        Cmd::Delete(a) => commands::delete::run(a),
        Cmd::Layer(a) => commands::layer::run(a),
        Cmd::Volume(a) => commands::volume::run(a),
        Cmd::Base(a) => commands::base::run(a),
        Cmd::Logs(a) => commands::logs::run(a),
        Cmd::Install(a) => commands::install::run(a),
        Cmd::InstallService(a) => commands::install_service::run(a),
        Cmd::Doctor(a) => commands::doctor::run(a),
        Cmd::Completions(a) => commands::completions::run(a),
        Cmd::Man(a) => commands::completions::run_man(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("admin: {}", error_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes joined with `: `, skipping causes the message already contains (many
/// library errors print their source themselves).
fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(argv::normalize(args.iter().map(std::ffi::OsString::from)))
    }

    /// Every command and every argument says what it is for in `--help` (and so in the man
    /// pages and completions generated from the same definitions).
    #[test]
    fn every_command_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            if cmd.get_about().is_none() {
                missing.push(format!("{path}: no about"));
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() {
                    missing.push(format!("{path} {id}: no help"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut cmd = <Cli as clap::CommandFactory>::command();
        cmd.build();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cmd, "admin", &mut missing);
        assert!(missing.is_empty(), "{missing:#?}");
        let names: Vec<&str> = cmd.get_subcommands().map(|s| s.get_name()).collect();
        for name in ["doctor", "completions", "man", "install", "install-service"] {
            assert!(names.contains(&name), "{names:?}");
        }
    }

    #[test]
    fn readme_invocations_parse() {
        for args in [
            &["admin", "new", "-cluster", "my-cluster"][..],
            &["admin", "workers", "-cluster=my-cluster"],
            &["admin", "status", "--cluster=my-cluster"],
            &["admin", "kill", "--cluster", "my-cluster"],
            &[
                "admin",
                "setconf",
                "--cluster=c",
                r#"{"sandbox": "sock", "registry": "local"}"#,
            ],
            &[
                "admin",
                "workers",
                "--cluster=c",
                "--num-workers=3",
                "--port=8080",
            ],
            &["admin", "worker-exec", "--config=worker.json"],
            // OpenLambda's README, with the cluster added to `registry`.
            &[
                "admin",
                "registry",
                "-cluster",
                "c",
                "--port=9000",
                "--access-key=K12",
                "--secret-key=S1234567",
            ],
            &[
                "admin",
                "upload",
                "--cluster=c",
                "--handler=h",
                "--file=f.tar.gz",
                "--access-key=K12",
                "--secret-key=S1234567",
            ],
            &["admin", "registry-exec", "-cluster=c"],
            &["admin", "functions", "-cluster", "c"],
            // LambdaPool's shape.
            &[
                "admin",
                "create",
                "-cluster=c",
                "algorithms",
                "algorithms/",
                "--timeout=300",
                "--memory=512",
                "-r",
                "requirements.txt",
                "--layers",
                "a,b",
                "--env",
                "A=1",
                "--env",
                "B=2",
            ],
            &[
                "admin",
                "update",
                "-cluster=c",
                "algorithms",
                "--memory",
                "1024",
            ],
            &["admin", "delete", "-cluster=c", "algorithms"],
            &[
                "admin",
                "layer",
                "publish",
                "-cluster=c",
                "common",
                "layer/",
            ],
            &["admin", "layer", "list", "-cluster=c"],
            &["admin", "logs", "-cluster=c", "hello"],
            &[
                "admin",
                "logs",
                "--cluster",
                "c",
                "hello",
                "--follow",
                "--since",
                "10m",
                "--request-id",
                "r-1",
            ],
            &[
                "admin",
                "logs",
                "-cluster",
                "c",
                "hello",
                "-follow",
                "-since=1h",
            ],
        ] {
            parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
        let cli = parse(&[
            "admin",
            "workers",
            "-cluster",
            "c",
            "-num-workers",
            "3",
            "-port=9000",
        ])
        .unwrap();
        match cli.command {
            Cmd::Workers(w) => assert_eq!((w.fleet.num_workers, w.fleet.port), (3, Some(9000))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn function_flags_parse_into_their_fields() {
        let cli = parse(&[
            "admin", "create", "-cluster", "c", "f", "a.py", "lib/", "-layers", "x,y:2", "-env",
            "A=1", "-tag", "t=1", "-workers", "4",
        ])
        .unwrap();
        let Cmd::Create(a) = cli.command else {
            panic!("not create");
        };
        assert_eq!(a.name, "f");
        assert_eq!(a.paths, [std::path::PathBuf::from("a.py"), "lib/".into()]);
        assert_eq!(
            a.settings.layers.as_deref(),
            Some(&["x".to_owned(), "y:2".to_owned()][..])
        );
        assert_eq!(a.settings.env, ["A=1"]);
        assert_eq!(a.settings.workers.as_deref(), Some("4"));
        let cli = parse(&[
            "admin",
            "registry",
            "-cluster",
            "c",
            "-port",
            "9000",
            "-access-key",
            "K12",
            "-secret-key",
            "S1234567",
            "-host",
            "0.0.0.0",
        ])
        .unwrap();
        let Cmd::Registry(r) = cli.command else {
            panic!("not registry");
        };
        assert_eq!((r.port, r.host.as_str()), (9000, "0.0.0.0"));
    }

    #[test]
    fn bad_invocations_fail() {
        assert!(parse(&["admin", "new"]).is_err());
        // One key without the other, a port of 0, a layer command without its verb.
        assert!(parse(&[
            "admin",
            "upload",
            "-cluster=c",
            "-handler=h",
            "-file=f",
            "--access-key=K"
        ])
        .is_err());
        assert!(parse(&[
            "admin",
            "registry",
            "-cluster=c",
            "--port=0",
            "--access-key=K12",
            "--secret-key=S1234567"
        ])
        .is_err());
        assert!(parse(&["admin", "layer", "-cluster=c"]).is_err());
        assert!(parse(&["admin", "layer", "publish", "-cluster=c", "common"]).is_err());
        assert!(parse(&["admin", "workers", "-cluster=c", "--num-workers=0"]).is_err());
        assert!(parse(&["admin", "frobnicate"]).is_err());
    }

    #[test]
    fn usage_errors_become_one_line() {
        let e = parse(&["admin", "new"]).unwrap_err();
        let line = argv::one_line(&e.render().to_string());
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("--cluster"), "{line}");
        assert!(line.contains("usage: admin new"), "{line}");
        assert!(
            line.starts_with("the following required arguments were not provided: --cluster <DIR>"),
            "{line}"
        );
    }

    #[test]
    fn repeated_causes_are_printed_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let text = io.to_string();
        let e = anyhow::Error::new(io).context(format!("cannot read /x: {text}"));
        assert_eq!(error_line(&e), format!("cannot read /x: {text}"));
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_line(&e), "outer: inner");
    }
}
