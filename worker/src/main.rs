//! `worker --config=FILE`: runs one worker in the foreground until SIGTERM or SIGINT.
//!
//! The command line is parsed as `admin`'s ([`worker::argv`]): `--config=FILE`, `--config FILE`
//! and OpenLambda's `-config=FILE`, `-config FILE`; `--help` and `--version` print and exit 0, a
//! usage error is one line on stderr and exits 2.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Runs one lambdaworker worker in the foreground; Ctrl-C (SIGINT) or SIGTERM stops it.
#[derive(Debug, Parser)]
#[command(name = "worker", version)]
struct Cli {
    /// The worker's config file (e.g. <cluster>/config/worker-0.json)
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

fn main() -> ExitCode {
    let cli: Cli = match worker::argv::parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let cfg = match worker::config::Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("worker: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _logging = match worker::logging::init(&worker::logging::Settings::of(&cfg)) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("worker: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("worker: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(worker::run_until_signal(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("worker: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn parse(args: &[&str]) -> Result<Cli, ExitCode> {
        worker::argv::parse(args.iter().map(OsString::from))
    }

    #[test]
    fn every_config_spelling_parses() {
        for args in [
            &["worker", "--config=/c/config/worker-0.json"][..],
            &["worker", "--config", "/c/config/worker-0.json"],
            &["worker", "-config=/c/config/worker-0.json"],
            &["worker", "-config", "/c/config/worker-0.json"],
        ] {
            let cli = parse(args).unwrap_or_else(|code| panic!("{args:?}: {code:?}"));
            assert_eq!(cli.config, PathBuf::from("/c/config/worker-0.json"));
        }
    }

    #[test]
    fn bad_invocations_fail_with_2() {
        for args in [
            &["worker"][..],
            &["worker", "--config"],
            &["worker", "--config=w.json", "extra"],
            &["worker", "-frobnicate"],
        ] {
            assert_eq!(parse(args).unwrap_err(), ExitCode::from(2), "{args:?}");
        }
    }
}
