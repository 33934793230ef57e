//! The worker's own log (not the handlers': those are `crate::logs`): tracing's text or JSON
//! lines (`log_format`), to stderr or to a size-rotated file (`log_file`), at `log_level`.
//!
//! Text is for people at a terminal; JSON (tracing-subscriber's, one object a line) is for log
//! collectors. Either way a line logged while serving a request carries the request's span: its
//! `function` and `request_id` (`api::handle` opens it). With a log file, lines are written on a
//! thread of their own (tracing-appender's non-blocking writer, which waits rather than drops
//! when it falls behind), and the file also becomes the process's stdout and stderr, so a panic
//! or anything else written there lands in the same, rotated, file. Without one the log goes to
//! stderr, as systemd's journal wants it.

mod file;

use std::path::{Path, PathBuf};

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};
pub use file::RotatingFile;

/// Where and how the worker logs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A tracing filter (`info`, `worker=debug`, ...); an invalid one falls back to `info`.
    pub level: String,
    pub format: LogFormat,
    pub file: Option<FileSettings>,
}

/// A size-rotated log file.
#[derive(Debug, Clone)]
pub struct FileSettings {
    pub path: PathBuf,
    /// Rotated once a line would take it past this.
    pub max_bytes: u64,
    /// Rotated files kept (`X.1` .. `X.N`).
    pub keep: u32,
}

impl Settings {
    /// Text to stderr at `level`.
    pub fn stderr(level: &str) -> Self {
        Self {
            level: level.to_owned(),
            format: LogFormat::Text,
            file: None,
        }
    }

    /// A worker config's `log_level`, `log_format`, `log_file`, `log_file_bytes`, `log_files`.
    pub fn of(cfg: &Config) -> Self {
        let file = (!cfg.log_file.as_os_str().is_empty()).then(|| FileSettings {
            path: cfg.log_file.clone(),
            max_bytes: cfg.log_file_bytes,
            keep: cfg.log_files,
        });
        Self {
            level: cfg.log_level.clone(),
            format: cfg.log_format,
            file,
        }
    }
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("cannot open the log file {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make {path} the worker's stdout and stderr: {source}")]
    Redirect {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Keeps the log file's writer thread: dropping it writes out what is buffered.
#[derive(Debug)]
#[must_use = "dropping the guard stops the log file's writer"]
pub struct Logging {
    _guard: Option<WorkerGuard>,
}

/// Starts the process's logging once; a later call (a second worker in one test process) keeps
/// the first one's and returns a guard of nothing.
pub fn init(settings: &Settings) -> Result<Logging, LoggingError> {
    let filter = EnvFilter::try_new(&settings.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, ansi, guard) = match &settings.file {
        None => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            (BoxMakeWriter::new(std::io::stderr), ansi, None)
        }
        Some(f) => {
            let file = RotatingFile::open(&f.path, f.max_bytes, f.keep)?;
            let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                .lossy(false)
                .thread_name("worker-log")
                .finish(file);
            (BoxMakeWriter::new(writer), false, Some(guard))
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    let _ = match settings.format {
        LogFormat::Text => builder.with_ansi(ansi).try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    Ok(Logging { _guard: guard })
}

/// Text logging to stderr at `filter`, once per process (tests, the admin commands).
pub fn init_stderr(filter: &str) {
    // Without a file nothing can fail, and there is no writer thread to keep.
    let _ = init(&Settings::stderr(filter));
}

/// The rotated file `n` of `path` (`n` 0: `path` itself).
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    if n == 0 {
        return path.to_owned();
    }
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}
