//! `lambdaworker-sim`: placement policies for many workers, simulated (see `docs/scale-out.md`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use bench::sim::report::{self, Sweep};
use clap::Parser;

/// Simulates round robin, consistent hashing, bounded-load consistent hashing and LARD in front
/// of 1 to 100 workers, on a Zipf trace and an Azure-2019-like trace; prints the table and
/// writes sim.json, sim.md and sim.svg.
#[derive(Debug, Parser)]
#[command(name = "lambdaworker-sim")]
struct Args {
    /// Worker counts (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2,5,10,20,50,100")]
    workers: Vec<usize>,
    /// Functions per worker.
    #[arg(long, default_value_t = 40)]
    functions_per_worker: usize,
    /// Calls per worker in each run (at least 50 000 a run).
    #[arg(long, default_value_t = 5000)]
    calls_per_worker: usize,
    /// Live sandboxes per worker (`handler_cache_size`).
    #[arg(long, default_value_t = 64)]
    slots: usize,
    /// Memory budget per worker in MiB (`memory_budget_mb`).
    #[arg(long, default_value_t = 12_288.0)]
    memory_mb: f64,
    /// Mean share of the slots the calls keep busy.
    #[arg(long, default_value_t = 0.25)]
    utilization: f64,
    /// Seed of the traces.
    #[arg(long, default_value_t = 2019)]
    seed: u64,
    /// Where sim.json, sim.md and sim.svg go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lambdaworker-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: Args) -> Result<()> {
    anyhow::ensure!(
        a.workers.iter().all(|&w| (1..=10_000).contains(&w)),
        "--workers: each count must be 1 to 10000"
    );
    anyhow::ensure!(
        a.utilization > 0.0 && a.utilization <= 2.0,
        "--utilization must be above 0 and at most 2"
    );
    anyhow::ensure!(
        a.slots >= 1 && a.memory_mb >= 1.0,
        "--slots and --memory-mb must be positive"
    );
    let sweep = Sweep {
        workers: a.workers,
        functions_per_worker: a.functions_per_worker.max(1),
        slots: a.slots,
        memory_mb: a.memory_mb,
        utilization: a.utilization,
        calls_per_worker: a.calls_per_worker.max(1),
        seed: a.seed,
        ..Sweep::default()
    };
    let t = std::time::Instant::now();
    let rows = report::run(&sweep);
    let table = report::markdown(&rows);
    println!("{table}");
    eprintln!("simulated in {:.1} s", t.elapsed().as_secs_f64());
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let json = a.out.join("sim.json");
    let text = serde_json::to_string_pretty(&report::json(&sweep, &rows))?;
    std::fs::write(&json, text).with_context(|| format!("cannot write {}", json.display()))?;
    let md = a.out.join("sim.md");
    std::fs::write(&md, &table).with_context(|| format!("cannot write {}", md.display()))?;
    let svg = a.out.join("sim.svg");
    bench::sim::plot::chart(&svg, &rows)?;
    eprintln!(
        "wrote {}, {} and {}",
        json.display(),
        md.display(),
        svg.display()
    );
    Ok(())
}
