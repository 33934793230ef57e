//! Functions placed in the registry by hand (a directory with `lambda_func.py`,
//! `lambda_main.py` or `lambda.json`, and no metadata in the store).
//!
//! They are reported with version 0; their code hash is a SHA-256 over their files' names,
//! types, modes, sizes and contents in name order, and their revision is that hash, so it
//! changes with any edit. Both stop at the archive limits ([`MAX_ENTRIES`] entries,
//! [`MAX_UNPACKED_BYTES`] bytes): a larger directory is hashed up to there. Changing one
//! through the store makes it managed; changing only its settings first packs its files into
//! a `.tar.gz` that becomes its archive.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{FunctionInfo, StoreError};
use crate::archive::{MAX_ARCHIVE_BYTES, MAX_ENTRIES, MAX_UNPACKED_BYTES};
use crate::lambda_config::{LambdaConfig, LAMBDA_CONFIG_FILE};
use crate::name::LambdaName;

/// The files that make a directory a function.
const FUNCTION_FILES: [&str; 3] = [
    crate::registry::HANDLER_FILE,
    "lambda_main.py",
    LAMBDA_CONFIG_FILE,
];

/// Whether `dir` is a real directory holding one of [`FUNCTION_FILES`] as a regular file.
pub(super) fn is_function_dir(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_dir())
        && FUNCTION_FILES
            .iter()
            .any(|f| std::fs::symlink_metadata(dir.join(f)).is_ok_and(|m| m.file_type().is_file()))
}

/// Everything below `dir` (never following a link), in name order, with its metadata.
fn walk(
    dir: &Path,
) -> impl Iterator<Item = Result<(walkdir::DirEntry, std::fs::Metadata), StoreError>> + '_ {
    walkdir::WalkDir::new(dir)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .map(move |entry| {
            let entry = entry.map_err(|e| StoreError::Io {
                op: "read",
                path: e.path().unwrap_or(dir).to_owned(),
                source: e.into(),
            })?;
            let md = entry.metadata().map_err(|e| StoreError::Io {
                op: "inspect",
                path: entry.path().to_owned(),
                source: e.into(),
            })?;
            Ok((entry, md))
        })
}

/// (hash, bytes, newest modification in ms) over the files of `dir`, bounded.
fn digest(dir: &Path) -> Result<(String, u64, u64), StoreError> {
    let mut h = Sha256::new();
    let (mut bytes, mut newest, mut entries) = (0u64, 0u64, 0usize);
    for found in walk(dir) {
        let (entry, md) = found?;
        entries += 1;
        if entries > MAX_ENTRIES || bytes > MAX_UNPACKED_BYTES {
            break;
        }
        let rel = entry.path().strip_prefix(dir).unwrap_or(entry.path());
        let t = md.file_type();
        let kind = if t.is_dir() {
            'd'
        } else if t.is_file() {
            'f'
        } else if t.is_symlink() {
            'l'
        } else {
            'o'
        };
        h.update(rel.as_os_str().as_encoded_bytes());
        h.update([0, kind as u8]);
        h.update(md.permissions().mode().to_le_bytes());
        h.update(md.size().to_le_bytes());
        newest = newest.max(u64::try_from(md.mtime()).unwrap_or(0).saturating_mul(1000));
        if t.is_file() {
            let file = std::fs::File::open(entry.path())
                .map_err(super::durable::io_err("open", entry.path()))?;
            let mut limited = file.take(MAX_UNPACKED_BYTES.saturating_sub(bytes));
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = limited
                    .read(&mut buf)
                    .map_err(super::durable::io_err("read", entry.path()))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                bytes += n as u64;
            }
        } else if t.is_symlink() {
            if let Ok(target) = std::fs::read_link(entry.path()) {
                h.update(target.as_os_str().as_encoded_bytes());
            }
        }
    }
    Ok((crate::hex(&h.finalize()), bytes, newest))
}

/// The function in hand-written directory `dir`. `Invalid` if its `lambda.json` is.
pub(super) fn info(name: &LambdaName, dir: &Path) -> Result<FunctionInfo, StoreError> {
    let config = LambdaConfig::load(dir).map_err(|e| StoreError::Invalid {
        key: e.key.clone(),
        message: format!("function {name}: {e} (in {})", e.path.display()),
    })?;
    with_config(name, dir, config)
}

/// [`info`], but a function whose `lambda.json` is invalid is still reported: with the
/// defaults, and the problem as its description (for listings).
pub(super) fn info_for_listing(name: &LambdaName, dir: &Path) -> Result<FunctionInfo, StoreError> {
    match info(name, dir) {
        Err(StoreError::Invalid { message, .. }) => {
            let description: String = format!("invalid lambda.json: {message}")
                .chars()
                .take(256)
                .collect();
            let config = LambdaConfig {
                description: Some(description),
                ..LambdaConfig::default()
            };
            with_config(name, dir, config)
        }
        other => other,
    }
}

fn with_config(
    name: &LambdaName,
    dir: &Path,
    config: LambdaConfig,
) -> Result<FunctionInfo, StoreError> {
    let (hash, bytes, newest) = digest(dir)?;
    Ok(FunctionInfo {
        name: name.clone(),
        entry: config.entry_in(dir),
        settings: LambdaConfig::default(),
        config,
        code_sha256: hash.clone(),
        code_size: bytes,
        version: 0,
        revision_id: hash,
        last_modified_ms: newest,
        has_docs: super::code::has_docs(dir),
    })
}

/// The files of `dir` as a `.tar.gz` (deterministic: name order, modes 0644 or 0755, no
/// owners or times), to adopt a hand-written function. Refuses links and special files, and
/// anything over the archive limits.
pub(super) fn pack(name: &LambdaName, dir: &Path) -> Result<Vec<u8>, StoreError> {
    let refuse = |message: String| StoreError::Invalid {
        key: None,
        message: format!("cannot take over hand-written function {name}: {message}"),
    };
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let (mut bytes, mut entries) = (0u64, 0usize);
    for found in walk(dir) {
        let (entry, md) = found?;
        let rel = entry.path().strip_prefix(dir).unwrap_or(entry.path());
        entries += 1;
        if entries > MAX_ENTRIES {
            return Err(refuse(format!("it holds more than {MAX_ENTRIES} entries")));
        }
        if rel == Path::new(super::code::REVISION_FILE) {
            continue;
        }
        let t = entry.file_type();
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        let add = |tar: &mut tar::Builder<_>, header: &mut tar::Header, data: &mut dyn Read| {
            tar.append_data(header, rel, data)
                .map_err(super::durable::io_err("pack", entry.path()))
        };
        if t.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            add(&mut tar, &mut header, &mut std::io::empty())?;
        } else if t.is_file() {
            bytes += md.len();
            if bytes > MAX_UNPACKED_BYTES {
                return Err(refuse(format!(
                    "its files total more than {} MiB",
                    MAX_UNPACKED_BYTES >> 20
                )));
            }
            let exec = md.permissions().mode() & 0o111 != 0;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(if exec { 0o755 } else { 0o644 });
            header.set_size(md.len());
            let mut file = std::fs::File::open(entry.path())
                .map_err(super::durable::io_err("open", entry.path()))?
                .take(md.len());
            add(&mut tar, &mut header, &mut file)?;
        } else {
            return Err(refuse(format!(
                "{} is not a regular file or directory",
                rel.display()
            )));
        }
    }
    let gz = tar
        .into_inner()
        .map_err(super::durable::io_err("pack", dir))?;
    let packed = gz.finish().map_err(super::durable::io_err("pack", dir))?;
    if packed.len() > MAX_ARCHIVE_BYTES {
        return Err(refuse(format!(
            "its files pack to {} bytes, more than {MAX_ARCHIVE_BYTES}",
            packed.len()
        )));
    }
    Ok(packed)
}
