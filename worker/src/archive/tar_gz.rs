//! `.tar.gz` archives: checked entry by entry as gzip's output streams, each header before its
//! data is written.

use std::cell::Cell;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;

use super::names::{self, Kind, Tree};
use super::{
    ratio_limit, ArchiveError, ArchiveKind, Unpacked, MAX_ENTRIES, MAX_UNPACKED_BYTES,
    RATIO_FLOOR_BYTES,
};

/// Bytes of tar structure allowed beyond the files' data: a header, an extended header and a
/// long name per entry, padding, and the end-of-archive blocks.
const TAR_OVERHEAD: u64 = MAX_ENTRIES as u64 * 3 * 1024 + 1024 * 1024;

/// gzip's output, counted: reading past `limit` bytes fails (and says so in `exceeded`).
struct Counted<R> {
    inner: R,
    produced: u64,
    limit: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.produced += n as u64;
        if self.produced > self.limit {
            self.exceeded.set(true);
            return Err(std::io::Error::other("the archive expands too much"));
        }
        Ok(n)
    }
}

fn corrupt(e: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Corrupt {
        kind: ArchiveKind::TarGz,
        message: e.to_string(),
    }
}

pub(super) fn unpack(bytes: &[u8], dest: &Path) -> Result<Unpacked, ArchiveError> {
    let ratio = ratio_limit(bytes.len());
    let exceeded = Rc::new(Cell::new(false));
    let stream = Counted {
        inner: flate2::read::GzDecoder::new(bytes),
        produced: 0,
        // The files' data by ratio, and as much again as the floor for the tar structure.
        limit: (ratio + RATIO_FLOOR_BYTES).min(MAX_UNPACKED_BYTES + TAR_OVERHEAD),
        exceeded: exceeded.clone(),
    };
    // A stream error is the counter's when it tripped: say which limit, not "i/o error".
    let stream_error = |e: std::io::Error, entry: Option<&str>| {
        if !exceeded.get() {
            return corrupt(e);
        }
        if ratio + RATIO_FLOOR_BYTES <= MAX_UNPACKED_BYTES + TAR_OVERHEAD {
            ArchiveError::TotalRatio {
                entry: entry.map(str::to_owned),
                size: ratio,
                compressed: bytes.len() as u64,
            }
        } else {
            ArchiveError::TooLarge
        }
    };
    let mut tar = tar::Archive::new(stream);
    let mut tree = Tree::default();
    let mut written = 0u64;
    for entry in tar.entries().map_err(|e| stream_error(e, None))? {
        let mut entry = entry.map_err(|e| stream_error(e, None))?;
        let raw = entry.path_bytes().into_owned();
        let name = match String::from_utf8(raw) {
            Ok(name) => name,
            Err(e) => {
                return Err(ArchiveError::BadEntry {
                    entry: String::from_utf8_lossy(e.as_bytes()).into_owned(),
                    why: "a name that is not UTF-8".into(),
                })
            }
        };
        let bad = |why: &str| ArchiveError::BadEntry {
            entry: name.clone(),
            why: why.to_owned(),
        };
        let header = entry.header();
        let t = header.entry_type();
        let kind = if t.is_pax_global_extensions() {
            continue; // `git archive`'s comment, not a file
        } else if t.is_dir() {
            Kind::Dir
        } else if t.is_file() {
            Kind::File
        } else if t.is_symlink() {
            return Err(bad("a symbolic link"));
        } else if t.is_hard_link() {
            return Err(bad("a hard link"));
        } else if t.is_character_special() || t.is_block_special() || t.is_fifo() {
            return Err(bad("a device or FIFO"));
        } else if t.is_gnu_sparse() {
            return Err(bad("a sparse file"));
        } else {
            return Err(bad(&format!(
                "of tar entry type {:?} (only files and directories are read)",
                t.as_byte() as char
            )));
        };
        let mode = names::file_mode(header.mode().ok());
        let size = entry.size();
        if kind == Kind::Dir && size != 0 {
            return Err(bad("a directory with data"));
        }
        // The declared sizes so far, checked before this entry's data is read: a bomb's
        // header is refused without its data being written.
        let declared = tree.bytes.saturating_add(size);
        if declared > ratio {
            return Err(ArchiveError::TotalRatio {
                entry: Some(name),
                size: declared,
                compressed: bytes.len() as u64,
            });
        }
        let Some(rel) = tree.add(&name, kind, size)? else {
            continue;
        };
        match kind {
            Kind::Dir => names::make_dir(dest, &rel)?,
            Kind::File => {
                written +=
                    names::write_file(dest, &rel, &name, mode, &mut entry, size).map_err(|e| {
                        match e {
                            ArchiveError::BadEntry { .. } if exceeded.get() => {
                                stream_error(std::io::Error::other("limit"), Some(&name))
                            }
                            other => other,
                        }
                    })?;
            }
        }
    }
    Ok(Unpacked {
        files: tree.files,
        bytes: written,
    })
}
