//! `lambdaworker-bench`: see `./bench/run.sh --help` and `docs/performance.md`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bench::scenarios::Plan;
use clap::Parser;

/// Benchmarks lambdaworker side by side with fresh python, runc and crun on this machine.
#[derive(Debug, Parser)]
#[command(name = "lambdaworker-bench")]
struct Args {
    /// A few calls per system and short runs: proves the harness works (used by test-all).
    #[arg(long)]
    smoke: bool,
    /// Sequential calls per system in the latency table (and per scaling step).
    #[arg(long, default_value_t = 200)]
    calls: usize,
    /// Calls for runc and crun (default: --calls).
    #[arg(long)]
    container_calls: Option<usize>,
    /// Seconds per throughput and churn run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Creates and code updates per side and archive in the functions scenario.
    #[arg(long, default_value_t = 20)]
    deploys: usize,
    /// Asynchronous events queued in the invoke scenario.
    #[arg(long, default_value_t = 2000)]
    events: usize,
    /// Run only these scenarios (comma-separated: latency, throughput, churn, density, scaling,
    /// functions, invoke, provisioned, bases).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where latest.json and the plots go (default: bench/results, or bench/results/smoke).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The worker binary (default: `worker` beside this program).
    #[arg(long)]
    worker_bin: Option<PathBuf>,
    /// Directory for the temporary cluster.
    #[arg(long, default_value = "/tmp")]
    tmp: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let plan = if args.smoke {
        Plan::smoke()
    } else {
        let mut p = Plan::full(
            args.calls.max(1),
            Duration::from_secs_f64(args.duration.max(0.1)),
        );
        p.container_calls = args.container_calls.unwrap_or(p.calls).max(1);
        p.deploys = args.deploys.max(1);
        p.events = args.events.max(1);
        p
    };
    let repo = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let out = args.out.unwrap_or_else(|| {
        let base = repo.join("bench/results");
        if args.smoke {
            base.join("smoke")
        } else {
            base
        }
    });
    let worker_bin = args.worker_bin.unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("worker")))
            .unwrap_or_else(|| PathBuf::from("worker"))
    });
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("lambdaworker-bench: needs root (sandboxes use namespaces, mounts and cgroups)");
        return ExitCode::from(2);
    }
    if let Err(e) = bench::catch_interrupts() {
        eprintln!("lambdaworker-bench: {e:#}");
        return ExitCode::FAILURE;
    }
    let opts = bench::Options {
        plan,
        smoke: args.smoke,
        only: args.only,
        out_dir: out,
        worker_bin,
        tmp_dir: args.tmp,
        repo,
    };
    match bench::run(&opts) {
        Ok(report) => {
            println!("{}", report.render());
            if bench::interrupted() {
                eprintln!("lambdaworker-bench: interrupted; the workers, sandboxes and temporary cluster were removed");
                return ExitCode::from(130);
            }
            if report.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "lambdaworker-bench: {} scenario(s) failed",
                    report.failed.len()
                );
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("lambdaworker-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
