//! `admin new -cluster DIR`: creates a cluster directory (layout, template config, base root
//! filesystem from the cache, built with debootstrap the first time). A build shows a progress
//! bar on a terminal (download, extract, unpack, configure, each counting packages), and
//! debootstrap's lines (`base: ...`) otherwise.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use admin::cluster::{create_cluster, BaseOrigin, CreateOptions, ProgressSink};

use crate::progress::{Debootstrap, Progress, Update};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The new cluster directory (must not exist; its parent must)
    #[arg(long, value_name = "DIR")]
    pub cluster: PathBuf,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut opts = CreateOptions::default();
    let bar = match Progress::new("base:") {
        Progress::Bar(bar) => Some(Arc::new(Progress::Bar(bar))),
        Progress::Lines { .. } => None,
    };
    if let Some(bar) = &bar {
        opts.progress = Some(bar_sink(Arc::clone(bar)));
    }
    let created = create_cluster(&args.cluster, &opts);
    if let Some(bar) = &bar {
        bar.finish();
    }
    let info = created?;
    let base = match &info.base_origin {
        BaseOrigin::Cached => format!("cache hit {}", info.base_source.display()),
        BaseOrigin::Built { elapsed } => format!(
            "cache built in {:.1} s at {}",
            elapsed.as_secs_f64(),
            info.base_source.display()
        ),
        BaseOrigin::Given => format!("from {}", info.base_source.display()),
    };
    println!(
        "created cluster {} in {:.2} s",
        info.dir.display(),
        started.elapsed().as_secs_f64()
    );
    println!("  base/: {base}");
    println!(
        "  base/: {} entries ({} hard links, {} copies) in {:.2} s",
        info.copy.entries(),
        info.copy.linked,
        info.copy.copied,
        info.copy_elapsed.as_secs_f64()
    );
    println!("  config: {}", info.template.display());
    println!("next: admin workers -cluster={}", info.dir.display());
    Ok(())
}

/// Feeds debootstrap's lines to the bar: stages and counts from its `I:` lines, other lines
/// (warnings, errors, the worker's own messages) printed above it.
fn bar_sink(bar: Arc<Progress>) -> ProgressSink {
    let parser = Mutex::new(Debootstrap::default());
    ProgressSink(Arc::new(move |line: &str| {
        let update = parser.lock().unwrap_or_else(|p| p.into_inner()).feed(line);
        match update {
            Update::Stage {
                stage,
                total,
                pos,
                package,
            } => {
                bar.stage(stage.name(), total);
                bar.step(pos, &package);
            }
            Update::Step { pos, package } => bar.step(pos, &package),
            Update::Note(note) => bar.message(&note),
            Update::Show(line) => bar.println(&line),
            Update::Nothing => {}
        }
    }))
}
