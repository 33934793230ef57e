//! Code archives (`.zip` and `.tar.gz`), read from bytes and unpacked safely into a directory.
//!
//! The kind is told by the first bytes (`PK\x03\x04` for zip, gzip's `\x1f\x8b`), never by a
//! file name. Archives come from anyone allowed to deploy, so [`unpack`]:
//! 1. refuses archives over [`MAX_ARCHIVE_BYTES`] (AWS's limit for a direct upload);
//! 2. for a zip, checks every entry of its central directory before writing anything: the
//!    number of entries, each name, type, encryption, compression method and declared size,
//!    the ratio of each entry and of the whole (so a zip bomb is refused without a byte
//!    written); a tar.gz is checked entry by entry as it streams, each header before its data,
//!    and the bytes coming out of gzip are counted against the same ratio;
//! 3. accepts only regular files and directories with relative names: no absolute path, `..`,
//!    empty component, NUL or `\`; no symbolic or hard link, device, FIFO or sparse file; no
//!    name twice (`a` and `a/` are one name), no file where a directory is;
//! 4. bounds the total unpacked size ([`MAX_UNPACKED_BYTES`]), the entries
//!    ([`MAX_ENTRIES`]) and the expansion ([`MAX_RATIO`] times, above [`RATIO_FLOOR_BYTES`]),
//!    counting the bytes actually read, not only the sizes an archive declares;
//! 5. writes files 0644 (0755 when the archive marks them executable) and directories 0755,
//!    never setuid, owned by the user unpacking (root for the worker and `admin`);
//! 6. strips the single top-level directory of a bundle packed as `name/lambda_func.py`
//!    (a directory holding `lambda_func.py`, `lambda_main.py` or `lambda.json`, alone at the top).
//!
//! On any refusal the destination is emptied again: the caller unpacks into a staging
//! directory and moves it into place only on success.

mod names;
mod tar_gz;
mod zip;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

/// Largest archive accepted, in bytes (AWS's 50 MB for a direct upload).
pub const MAX_ARCHIVE_BYTES: usize = 50 * 1024 * 1024;
/// Largest total of unpacked file sizes.
pub const MAX_UNPACKED_BYTES: u64 = 256 * 1024 * 1024;
/// Most entries (files and directories) in one archive.
pub const MAX_ENTRIES: usize = 10_000;
/// Most an entry (zip) or the whole archive may expand: unpacked bytes over archive bytes.
pub const MAX_RATIO: u64 = 100;
/// Unpacked sizes up to this many bytes are never refused for their ratio (a tar's padding
/// of a few small files compresses far better than 100 to 1).
pub const RATIO_FLOOR_BYTES: u64 = 1024 * 1024;
/// Longest entry name, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest component of an entry name, in bytes.
pub const MAX_COMPONENT_BYTES: usize = 255;

/// The archive formats read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    Zip,
    TarGz,
}

impl std::fmt::Display for ArchiveKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ArchiveKind::Zip => "zip",
            ArchiveKind::TarGz => "tar.gz",
        })
    }
}

/// The kind of archive `bytes` starts as, if one that is read.
pub fn kind(bytes: &[u8]) -> Option<ArchiveKind> {
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        Some(ArchiveKind::Zip)
    } else if bytes.starts_with(&[0x1f, 0x8b]) {
        Some(ArchiveKind::TarGz)
    } else {
        None
    }
}

/// What [`unpack`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unpacked {
    /// Regular files.
    pub files: usize,
    /// Their total size.
    pub bytes: u64,
}

/// Why an archive was refused; the destination was left empty.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("not a .zip or .tar.gz archive (it starts with {start})")]
    NotAnArchive { start: String },
    #[error("the archive is {size} bytes, more than {MAX_ARCHIVE_BYTES}")]
    ArchiveTooLarge { size: usize },
    #[error("the archive unpacks to more than {} MiB", MAX_UNPACKED_BYTES >> 20)]
    TooLarge,
    #[error("the archive holds more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    #[error("the archive holds no files")]
    Empty,
    #[error(
        "entry {entry:?} expands more than {MAX_RATIO} times ({size} bytes from {compressed})"
    )]
    EntryRatio {
        entry: String,
        size: u64,
        compressed: u64,
    },
    #[error("the archive expands more than {MAX_RATIO} times (to {size} bytes from {compressed}{})",
        .entry.as_ref().map(|e| format!(", at entry {e:?}")).unwrap_or_default())]
    TotalRatio {
        entry: Option<String>,
        size: u64,
        compressed: u64,
    },
    #[error("entry {entry:?} is {why}")]
    BadEntry { entry: String, why: String },
    #[error("the {kind} archive is damaged: {message}")]
    Corrupt { kind: ArchiveKind, message: String },
    #[error("destination {path} is not an empty directory")]
    Destination { path: PathBuf },
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ArchiveError {
    /// An entry whose data cannot be read (a bad checksum, truncated or invalid compressed data).
    fn read(entry: &str, e: std::io::Error) -> Self {
        ArchiveError::BadEntry {
            entry: entry.to_owned(),
            why: format!("unreadable: {e}"),
        }
    }
}

/// Most bytes `archive_len` bytes of archive may unpack to, by ratio.
fn ratio_limit(archive_len: usize) -> u64 {
    (archive_len as u64)
        .saturating_mul(MAX_RATIO)
        .max(RATIO_FLOOR_BYTES)
}

/// Unpacks the `.zip` or `.tar.gz` in `archive` into `dest`, an existing empty directory (the
/// caller's staging directory), as the module docs say. On error `dest` is left empty.
/// Blocking.
pub fn unpack(archive: &[u8], dest: &Path) -> Result<Unpacked, ArchiveError> {
    if archive.len() > MAX_ARCHIVE_BYTES {
        return Err(ArchiveError::ArchiveTooLarge {
            size: archive.len(),
        });
    }
    let kind = kind(archive).ok_or_else(|| ArchiveError::NotAnArchive {
        start: describe_start(archive),
    })?;
    let empty = std::fs::read_dir(dest).map(|mut entries| entries.next().is_none());
    if !matches!(empty, Ok(true)) {
        return Err(ArchiveError::Destination {
            path: dest.to_owned(),
        });
    }
    let result = match kind {
        ArchiveKind::Zip => zip::unpack(archive, dest),
        ArchiveKind::TarGz => tar_gz::unpack(archive, dest),
    }
    .and_then(|unpacked| {
        if unpacked.files == 0 {
            return Err(ArchiveError::Empty);
        }
        names::strip_single_top(dest)?;
        Ok(unpacked)
    });
    if result.is_err() {
        if let Err(e) = names::clear_dir(dest) {
            tracing::warn!(dest = %dest.display(), "cannot empty a refused archive's staging directory: {e}");
        }
    }
    result
}

/// The first bytes of something that is not an archive, for the message.
fn describe_start(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "nothing: it is empty".to_owned();
    }
    let head = &bytes[..bytes.len().min(8)];
    let hex: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
    format!("bytes {}", hex.join(" "))
}
