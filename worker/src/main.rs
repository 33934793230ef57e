//! `worker --config=FILE`: runs one worker in the foreground until SIGTERM or SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut config: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        if let Some(v) = arg
            .strip_prefix("--config=")
            .or_else(|| arg.strip_prefix("-config="))
        {
            config = Some(PathBuf::from(v));
        } else if arg == "--config" || arg == "-config" {
            config = args.next().map(PathBuf::from);
        } else if arg == "-h" || arg == "--help" {
            println!("usage: worker --config=FILE\n\nRuns one lambdaworker worker in the foreground; Ctrl-C stops it.");
            return ExitCode::SUCCESS;
        } else {
            eprintln!("worker: unexpected argument {arg:?} (usage: worker --config=FILE)");
            return ExitCode::from(2);
        }
    }
    let Some(path) = config else {
        eprintln!("worker: missing --config=FILE");
        return ExitCode::from(2);
    };
    let cfg = match worker::config::Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("worker: {e}");
            return ExitCode::FAILURE;
        }
    };
    worker::init_tracing(&cfg.log_level);
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
