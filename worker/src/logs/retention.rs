//! The sweep of a worker's log files (run by the writer thread), in order: list this worker's
//! files (`<root>/*/<worker>.log*`; other workers' files are theirs to sweep); remove those not
//! written for `function_log_retention_s`; then, while the rest together exceed
//! `function_log_total_mb`, remove the least recently written. A file still open in the writer
//! is closed first (`close`), so its space is freed.

use std::path::PathBuf;
use std::time::SystemTime;

use super::store;
use super::writer::Settings;

/// What a sweep did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Swept {
    pub removed: usize,
    /// This worker's bytes left.
    pub kept_bytes: u64,
}

struct Found {
    function: String,
    path: PathBuf,
    written: SystemTime,
    bytes: u64,
}

/// Sweeps as of `now` (see the module docs); `close(function)` closes that function's open
/// file.
pub(crate) fn sweep(
    settings: &Settings,
    now: SystemTime,
    close: &mut dyn FnMut(&str),
) -> std::io::Result<Swept> {
    let mut found = list(settings)?;
    let mut removed = 0;
    let remove = |f: &Found, close: &mut dyn FnMut(&str)| {
        close(&f.function);
        match std::fs::remove_file(&f.path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => {
                tracing::warn!(path = %f.path.display(), error = %e, "function logs: cannot remove an old file");
                false
            }
        }
    };
    found.retain(|f| {
        let age = now.duration_since(f.written).unwrap_or_default();
        if age > settings.retention && remove(f, close) {
            removed += 1;
            return false;
        }
        true
    });
    // Oldest first.
    found.sort_by_key(|f| f.written);
    let mut total: u64 = found.iter().map(|f| f.bytes).sum();
    for f in &found {
        if total <= settings.total_bytes {
            break;
        }
        if remove(f, close) {
            removed += 1;
            total -= f.bytes;
        }
    }
    Ok(Swept {
        removed,
        kept_bytes: total,
    })
}

/// This worker's files under the root.
fn list(settings: &Settings) -> std::io::Result<Vec<Found>> {
    let dirs = match std::fs::read_dir(&settings.root) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for dir in dirs {
        let dir = dir?;
        if !dir.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Some(function) = dir.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Ok(files) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        for file in files.flatten() {
            let name = file.file_name();
            let ours = name
                .to_str()
                .and_then(store::parse_name)
                .is_some_and(|(worker, _)| worker == settings.worker);
            if !ours {
                continue;
            }
            let Ok(md) = file.metadata() else {
                continue;
            };
            if !md.is_file() {
                continue;
            }
            found.push(Found {
                function: function.clone(),
                path: file.path(),
                written: md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                bytes: md.len(),
            });
        }
    }
    Ok(found)
}
