//! Progress of long work (`admin new` building the base, `admin install` installing a function's
//! packages): a bar (`indicatif`) on a terminal, plain lines otherwise, so that logs and CI keep
//! readable output.
//!
//! [`Progress`] is the output; [`Debootstrap`] turns debootstrap's `I:` lines into stages and
//! counts (pure, unit-tested).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where progress goes.
#[derive(Debug)]
pub enum Progress {
    /// A bar redrawn in place on stderr.
    Bar(ProgressBar),
    /// One line on stderr per message, each with a prefix (`base:`, `install:`).
    Lines { prefix: &'static str },
}

impl Progress {
    /// A bar when stderr is a terminal (and `TERM` is not `dumb`), else plain lines.
    pub fn new(prefix: &'static str) -> Self {
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        if std::io::stderr().is_terminal() && !dumb {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(spinner_style());
            bar.enable_steady_tick(Duration::from_millis(120));
            Progress::Bar(bar)
        } else {
            Progress::Lines { prefix }
        }
    }

    /// Starts a stage: a bar of `total` steps, or a spinner with a count when the total is
    /// unknown. Plain output says the stage's name once.
    pub fn stage(&self, name: &str, total: Option<u64>) {
        match self {
            Progress::Bar(bar) => {
                bar.set_prefix(name.to_owned());
                bar.set_position(0);
                match total {
                    Some(n) => {
                        bar.set_length(n);
                        bar.set_style(bar_style());
                    }
                    None => {
                        bar.unset_length();
                        bar.set_style(spinner_style());
                    }
                }
            }
            Progress::Lines { prefix } => match total {
                Some(n) => eprintln!("{prefix} {name} ({n})"),
                None => eprintln!("{prefix} {name}"),
            },
        }
    }

    /// Moves the current stage to `pos`, showing `message` (a package name, say). Plain output
    /// prints the message.
    pub fn step(&self, pos: u64, message: &str) {
        match self {
            Progress::Bar(bar) => {
                bar.set_position(pos);
                bar.set_message(message.to_owned());
            }
            Progress::Lines { prefix } => eprintln!("{prefix} {message}"),
        }
    }

    /// Shows `message` without a step (a bar's message; a plain line).
    pub fn message(&self, message: &str) {
        match self {
            Progress::Bar(bar) => bar.set_message(message.to_owned()),
            Progress::Lines { prefix } => eprintln!("{prefix} {message}"),
        }
    }

    /// A line that stays (a warning, say): above the bar, or plain.
    pub fn println(&self, line: &str) {
        match self {
            Progress::Bar(bar) => bar.println(line),
            Progress::Lines { prefix } => eprintln!("{prefix} {line}"),
        }
    }

    /// Removes the bar (plain output has nothing to remove).
    pub fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {elapsed:>4} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>10} {spinner} {pos:>4} {elapsed:>4} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// A stage of debootstrap, in the order it runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Downloading and checking each package (`I: Retrieving`, `I: Validating`).
    Download,
    /// Unpacking the required packages' files (`I: Extracting`).
    Extract,
    /// Installing them with dpkg (`I: Unpacking`).
    Unpack,
    /// Running their configuration (`I: Configuring`).
    Configure,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Download => "download",
            Stage::Extract => "extract",
            Stage::Unpack => "unpack",
            Stage::Configure => "configure",
        }
    }
}

/// What one line of debootstrap's output means for the progress shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// A new stage began at its first package; the total is the number of packages
    /// downloaded (unknown while downloading).
    Stage {
        stage: Stage,
        total: Option<u64>,
        /// Where the stage is (above 1 when it is entered again).
        pos: u64,
        package: String,
    },
    /// One more package in the current stage.
    Step { pos: u64, package: String },
    /// A line worth keeping on screen as it is (a warning, an error: not debootstrap's `I:`).
    Show(String),
    /// Another `I:` line (a summary of what it does now): worth a glance, not a line.
    Note(String),
    /// Nothing to show (a step without a package, a repeated stage line).
    Nothing,
}

/// Follows debootstrap's output: which stage it is in and how many packages each stage has
/// done. debootstrap unpacks and configures twice (the required packages, then the base ones):
/// a stage entered again goes on counting from where it was.
#[derive(Debug, Default)]
pub struct Debootstrap {
    stage: Option<Stage>,
    /// Packages done per stage, by `Stage as usize`.
    done: [u64; 4],
}

impl Debootstrap {
    /// Reads one line (without its newline).
    pub fn feed(&mut self, line: &str) -> Update {
        let Some(info) = line.strip_prefix("I: ") else {
            return Update::Show(line.to_owned());
        };
        let mut words = info.split_whitespace();
        let (Some(verb), rest) = (words.next(), words.next()) else {
            return Update::Nothing;
        };
        let stage = match verb {
            "Retrieving" | "Validating" => Stage::Download,
            "Extracting" => Stage::Extract,
            "Unpacking" => Stage::Unpack,
            "Configuring" => Stage::Configure,
            _ => return Update::Note(info.trim().to_owned()),
        };
        // `I: Retrieving Packages`, `I: Unpacking required packages...`: stage lines, no package.
        let package = rest
            .map(|p| p.trim_end_matches("..."))
            .filter(|p| !p.is_empty() && !matches!(*p, "Packages" | "InRelease" | "Release"))
            .filter(|p| !matches!(*p, "required" | "the" | "base"));
        let Some(package) = package else {
            return Update::Nothing;
        };
        if verb == "Validating" {
            return Update::Nothing;
        }
        let downloaded = self.done[Stage::Download as usize];
        let done = &mut self.done[stage as usize];
        *done += 1;
        let pos = *done;
        if self.stage != Some(stage) {
            self.stage = Some(stage);
            // Every later stage handles at most the packages downloaded.
            let total = (stage != Stage::Download).then_some(downloaded);
            return Update::Stage {
                stage,
                total,
                pos,
                package: package.to_owned(),
            };
        }
        Update::Step {
            pos,
            package: package.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debootstrap_output_becomes_stages_and_counts() {
        let mut d = Debootstrap::default();
        let lines = [
            "I: Retrieving InRelease ",
            "I: Retrieving Packages ",
            "I: Validating Packages ",
            "I: Resolving dependencies of required packages...",
            "I: Retrieving adduser 3.137",
            "I: Validating adduser 3.137",
            "I: Retrieving apt 2.9.8",
            "I: Validating apt 2.9.8",
            "I: Retrieving base-files 13.6",
            "I: Extracting adduser...",
            "I: Extracting apt...",
            "I: Installing required packages...",
            "I: Unpacking required packages...",
            "I: Unpacking adduser...",
            "I: Configuring required packages...",
            "I: Configuring apt...",
            "I: Unpacking the base system...",
            "I: Unpacking base-files...",
            "I: Configuring base-files...",
            "W: Failure trying to run: chroot",
            "I: Base system installed successfully.",
        ];
        let got: Vec<Update> = lines.iter().map(|l| d.feed(l)).collect();
        let stage = |stage, total, pos, p: &str| Update::Stage {
            stage,
            total,
            pos,
            package: p.to_owned(),
        };
        let step = |pos, p: &str| Update::Step {
            pos,
            package: p.to_owned(),
        };
        assert_eq!(
            got,
            vec![
                Update::Nothing,
                Update::Nothing,
                Update::Nothing,
                Update::Note("Resolving dependencies of required packages...".into()),
                stage(Stage::Download, None, 1, "adduser"),
                Update::Nothing,
                step(2, "apt"),
                Update::Nothing,
                step(3, "base-files"),
                stage(Stage::Extract, Some(3), 1, "adduser"),
                step(2, "apt"),
                Update::Note("Installing required packages...".into()),
                Update::Nothing,
                stage(Stage::Unpack, Some(3), 1, "adduser"),
                Update::Nothing,
                stage(Stage::Configure, Some(3), 1, "apt"),
                Update::Nothing,
                stage(Stage::Unpack, Some(3), 2, "base-files"),
                stage(Stage::Configure, Some(3), 2, "base-files"),
                Update::Show("W: Failure trying to run: chroot".into()),
                Update::Note("Base system installed successfully.".into()),
            ]
        );
    }
}
