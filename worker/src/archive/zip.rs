//! `.zip` archives: every entry checked from the central directory first, then written.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use zip::CompressionMethod;

use super::names::{self, Kind, Tree};
use super::RATIO_FLOOR_BYTES;
use super::{ratio_limit, ArchiveError, ArchiveKind, Unpacked, MAX_ENTRIES, MAX_RATIO};

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;

fn corrupt(message: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Corrupt {
        kind: ArchiveKind::Zip,
        message: message.to_string(),
    }
}

/// One entry to write, checked.
#[derive(Debug)]
struct Planned {
    index: usize,
    name: String,
    rel: PathBuf,
    kind: Kind,
    mode: u32,
    size: u64,
}

pub(super) fn unpack(bytes: &[u8], dest: &Path) -> Result<Unpacked, ArchiveError> {
    // The entry count and raw names, read before the zip crate parses (and allocates for)
    // every entry the archive claims to have.
    let raw_names = central_directory_names(bytes)?;
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(corrupt)?;
    if archive.len() != raw_names.len() {
        // The reader keeps one entry per name: the others were duplicates.
        let mut seen = std::collections::HashSet::new();
        let dup = raw_names.iter().find(|n| !seen.insert(**n));
        return Err(match dup {
            Some(name) => ArchiveError::BadEntry {
                entry: String::from_utf8_lossy(name).into_owned(),
                why: "a duplicate name".into(),
            },
            None => corrupt(format!(
                "its central directory lists {} entries, {} readable",
                raw_names.len(),
                archive.len()
            )),
        });
    }
    let plan = check_all(&mut archive, bytes.len())?;
    let (mut files, mut written) = (0usize, 0u64);
    for p in plan {
        match p.kind {
            Kind::Dir => names::make_dir(dest, &p.rel)?,
            Kind::File => {
                let mut entry = archive
                    .by_index(p.index)
                    .map_err(|e| ArchiveError::read(&p.name, std::io::Error::other(e)))?;
                written += names::write_file(dest, &p.rel, &p.name, p.mode, &mut entry, p.size)?;
                files += 1;
            }
        }
    }
    Ok(Unpacked {
        files,
        bytes: written,
    })
}

/// Checks every entry (name, type, encryption, method, sizes and ratios) without writing.
fn check_all(
    archive: &mut zip::ZipArchive<Cursor<&[u8]>>,
    archive_len: usize,
) -> Result<Vec<Planned>, ArchiveError> {
    let mut tree = Tree::default();
    let mut plan = Vec::with_capacity(archive.len());
    let limit = ratio_limit(archive_len);
    for index in 0..archive.len() {
        let entry = archive.by_index_raw(index).map_err(corrupt)?;
        let name = entry.name().to_owned();
        let bad = |why: &str| ArchiveError::BadEntry {
            entry: name.clone(),
            why: why.to_owned(),
        };
        if entry.name_raw().contains(&0) {
            return Err(bad("a name with a NUL byte"));
        }
        if entry.encrypted() {
            return Err(bad("encrypted (password-protected zips are not read)"));
        }
        let mode = entry.unix_mode();
        let kind = match mode.map(|m| m & S_IFMT) {
            Some(S_IFLNK) => return Err(bad("a symbolic link")),
            Some(S_IFDIR) => Kind::Dir,
            _ if name.ends_with('/') => Kind::Dir,
            None | Some(0) | Some(S_IFREG) => Kind::File,
            Some(_) => return Err(bad("a device, FIFO or socket")),
        };
        let size = entry.size();
        let compressed = entry.compressed_size();
        if kind == Kind::Dir && size != 0 {
            return Err(bad("a directory with data"));
        }
        if kind == Kind::File {
            match entry.compression() {
                CompressionMethod::Stored | CompressionMethod::Deflated => {}
                other => {
                    return Err(bad(&format!(
                        "compressed with {other} (only stored and deflated entries are read)"
                    )))
                }
            }
            if size > RATIO_FLOOR_BYTES && size / MAX_RATIO > compressed {
                return Err(ArchiveError::EntryRatio {
                    entry: name,
                    size,
                    compressed,
                });
            }
        }
        drop(entry);
        let Some(rel) = tree.add(&name, kind, size)? else {
            continue;
        };
        if tree.bytes > limit {
            return Err(ArchiveError::TotalRatio {
                entry: Some(name),
                size: tree.bytes,
                compressed: archive_len as u64,
            });
        }
        plan.push(Planned {
            index,
            name,
            rel,
            kind,
            mode: names::file_mode(mode),
            size,
        });
    }
    Ok(plan)
}

fn u16_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 2)
        .map(|s| u64::from(u16::from_le_bytes([s[0], s[1]])))
}

fn u32_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 4)
        .map(|s| u64::from(u32::from_le_bytes([s[0], s[1], s[2], s[3]])))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok().map(u64::from_le_bytes))
}

const EOCD: &[u8] = b"PK\x05\x06";
const ZIP64_LOCATOR: &[u8] = b"PK\x06\x07";
const ZIP64_EOCD: &[u8] = b"PK\x06\x06";
const CENTRAL_ENTRY: &[u8] = b"PK\x01\x02";

/// The raw names of the central directory's entries, in order. Refuses more than
/// [`MAX_ENTRIES`] before reading any entry. The directory is found from the end-of-directory
/// record (zip64's when there is one) and its stated size, so data prepended to the archive
/// does not matter.
fn central_directory_names(b: &[u8]) -> Result<Vec<&[u8]>, ArchiveError> {
    let missing = || corrupt("it has no end of central directory record");
    let last = b.len().checked_sub(22).ok_or_else(missing)?;
    let first = last.saturating_sub(0xFFFF);
    let eocd = (first..=last)
        .rev()
        .find(|&p| {
            b[p..].starts_with(EOCD)
                && u16_at(b, p + 20).is_some_and(|c| p + 22 + c as usize <= b.len())
        })
        .ok_or_else(missing)?;
    let short = || corrupt("its end of central directory record is cut short");
    let mut count = u16_at(b, eocd + 10).ok_or_else(short)?;
    let mut cd_size = u32_at(b, eocd + 12).ok_or_else(short)?;
    let mut end = eocd;
    let zip64 =
        count == 0xFFFF || cd_size == 0xFFFF_FFFF || u32_at(b, eocd + 16) == Some(0xFFFF_FFFF);
    if let Some(locator) = eocd
        .checked_sub(20)
        .filter(|&l| b[l..].starts_with(ZIP64_LOCATOR))
    {
        let stated = u64_at(b, locator + 8).and_then(|o| usize::try_from(o).ok());
        let record = [stated, locator.checked_sub(56)]
            .into_iter()
            .flatten()
            .find(|&r| r < locator && b[r..].starts_with(ZIP64_EOCD))
            .ok_or_else(|| corrupt("its zip64 end of central directory record is missing"))?;
        count = u64_at(b, record + 32).ok_or_else(short)?;
        cd_size = u64_at(b, record + 40).ok_or_else(short)?;
        end = record;
    } else if zip64 {
        return Err(corrupt(
            "its zip64 end of central directory locator is missing",
        ));
    }
    if count > MAX_ENTRIES as u64 {
        return Err(ArchiveError::TooManyEntries);
    }
    let start = usize::try_from(cd_size)
        .ok()
        .and_then(|size| end.checked_sub(size))
        .ok_or_else(|| corrupt("its central directory is larger than the archive"))?;
    let mut names = Vec::with_capacity(count as usize);
    let mut p = start;
    for i in 0..count {
        let entry_short = || corrupt(format!("central directory entry {i} is cut short"));
        if p + 46 > end || !b[p..].starts_with(CENTRAL_ENTRY) {
            return Err(entry_short());
        }
        let field = |at| {
            u16_at(b, p + at)
                .map(|v| v as usize)
                .ok_or_else(entry_short)
        };
        let (name_len, extra_len, comment_len) = (field(28)?, field(30)?, field(32)?);
        let name_end = p + 46 + name_len;
        if name_end > end {
            return Err(entry_short());
        }
        names.push(&b[p + 46..name_end]);
        p = name_end + extra_len + comment_len;
    }
    Ok(names)
}
