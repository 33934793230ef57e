//! `admin completions SHELL` prints a completion script for bash, zsh, fish, elvish or
//! PowerShell (clap_complete, from the same definitions clap parses), and `admin man --dir DIR`
//! writes man pages (clap_mangen): `admin.1` and one `admin-COMMAND.1` per command, nested
//! commands included (`admin-layer-publish.1`). `quickstart/deps.sh` generates both under
//! `target/share/` at build.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to print a completion script for
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Where to write the pages (created if missing)
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let mut cmd = crate::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "admin", &mut std::io::stdout());
    Ok(())
}

pub fn run_man(args: &ManArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let mut cmd = crate::Cli::command();
    cmd.build();
    let written = write_pages(&cmd, "admin", &args.dir)?;
    println!("wrote {written} man pages to {}", args.dir.display());
    Ok(())
}

/// Writes `NAME.1` for a built `cmd` and the pages of its subcommands (`NAME-SUB.1`, the
/// display names `build` gave them); how many.
fn write_pages(cmd: &clap::Command, name: &str, dir: &Path) -> anyhow::Result<usize> {
    let mut bytes = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut bytes)
        .with_context(|| format!("cannot render the man page of {name}"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    let mut written = 1;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let sub_name = sub
            .get_display_name()
            .map_or_else(|| format!("{name}-{}", sub.get_name()), str::to_owned);
        written += write_pages(sub, &sub_name, dir)?;
    }
    Ok(written)
}
