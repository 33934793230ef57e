//! A log file rotated by size, which is also the process's stdout and stderr.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{rotated, LoggingError};

/// The log file: appended to, rotated (`X` to `X.1`, ...; see [`crate::rotation`]) before a
/// write that would take it past `max_bytes`, and each new file made fds 1 and 2. Only the log's
/// writer thread writes it.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: File,
    len: u64,
    /// Whether each file becomes fds 1 and 2 (not in unit tests, whose harness owns them).
    redirect: bool,
}

impl RotatingFile {
    /// Opens (appends to) `path` and makes it the process's stdout and stderr.
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> Result<Self, LoggingError> {
        let log = Self::open_only(path, max_bytes, keep)?;
        redirect(&log.file).map_err(|source| LoggingError::Redirect {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            redirect: true,
            ..log
        })
    }

    fn open_only(path: &Path, max_bytes: u64, keep: u32) -> Result<Self, LoggingError> {
        let (file, len) = open_append(path).map_err(|source| LoggingError::Open {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            path: path.to_owned(),
            max_bytes,
            keep,
            file,
            len,
            redirect: false,
        })
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        crate::rotation::shift(|n| rotated(&self.path, n), self.keep)?;
        let (file, len) = open_append(&self.path)?;
        if self.redirect {
            redirect(&file)?;
        }
        self.file = file;
        self.len = len;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.len > 0 && self.len + buf.len() as u64 > self.max_bytes {
            if let Err(e) = self.rotate() {
                // Keep logging into the full file rather than lose the line; say why once here.
                let note = format!("cannot rotate the log file {}: {e}\n", self.path.display());
                let _ = self.file.write_all(note.as_bytes());
                self.len += note.len() as u64;
            }
        }
        self.file.write_all(buf)?;
        self.len += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

fn open_append(path: &Path) -> std::io::Result<(File, u64)> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?;
    let len = file.metadata()?.len();
    Ok((file, len))
}

/// Makes `file` the process's stdout and stderr (what is written there without tracing: a
/// panic's message, a child's inherited output).
fn redirect(file: &File) -> std::io::Result<()> {
    for target in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        // SAFETY: dup2 only replaces descriptor `target` with a copy of the open descriptor of
        // `file`; no Rust object owns fds 1 and 2 exclusively (std's stdout and stderr write to
        // whatever they are), so nothing is invalidated.
        if unsafe { libc::dup2(file.as_raw_fd(), target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_past_the_limit_rotates_first_and_lines_stay_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.out");
        // Not `open`: the test harness's stdout and stderr stay as they are.
        let mut log = RotatingFile::open_only(&path, 100, 2).unwrap();
        let line = |i: usize| format!("line {i:03} {}\n", "x".repeat(30));
        for i in 0..10 {
            log.write_all(line(i).as_bytes()).unwrap();
        }
        log.flush().unwrap();
        let read = |n| std::fs::read_to_string(rotated(&path, n)).unwrap_or_default();
        // 40-byte lines, 100 bytes a file: two lines each; of 10 lines the newest 6 are kept.
        assert_eq!(read(0), format!("{}{}", line(8), line(9)));
        assert_eq!(read(1), format!("{}{}", line(6), line(7)));
        assert_eq!(read(2), format!("{}{}", line(4), line(5)));
        assert!(!rotated(&path, 3).exists());
        // A line longer than the limit goes whole into a file of its own.
        let long = "y".repeat(250) + "\n";
        log.write_all(long.as_bytes()).unwrap();
        assert_eq!(read(0), long);
        // Opening again appends to what is there.
        drop(log);
        let again = RotatingFile::open_only(&path, 100, 2).unwrap();
        assert_eq!(again.len, long.len() as u64);
    }
}
