//! `admin worker-exec --config=FILE`: runs one worker in the foreground, logging to the terminal
//! (or to the config's `log_file`), until SIGTERM or SIGINT (Ctrl-C), then shuts it down
//! gracefully. Under systemd it says READY=1 once it serves and STOPPING=1 when it stops.

use std::path::PathBuf;

use anyhow::Context;
use worker::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The worker's config file (e.g. <cluster>/config/worker-0.json)
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let cfg = Config::load(&args.config)?;
    let _logging = worker::logging::init(&worker::logging::Settings::of(&cfg))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(worker::run_until_signal(cfg))?;
    Ok(())
}
