//! `admin new -cluster DIR`: creates a cluster directory (layout, template config, base root
//! filesystem from the cache, built with debootstrap the first time).

use std::path::PathBuf;
use std::time::Instant;

use admin::cluster::{create_cluster, BaseOrigin, CreateOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The new cluster directory (must not exist; its parent must)
    #[arg(long, value_name = "DIR")]
    pub cluster: PathBuf,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let info = create_cluster(&args.cluster, &CreateOptions::default())?;
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
