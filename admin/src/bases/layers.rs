//! Unpacking the image archive, and applying one layer to a root: its whiteouts first, then
//! its entries, the uncompressed tar checked against its `diff_id`.

use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{io, BaseError};

/// Unpacks the (plain) tar archive `image` into the new directory `to`.
pub(super) fn unpack_archive(image: &Path, to: &Path) -> Result<(), BaseError> {
    let file = std::fs::File::open(image).map_err(io("open", image))?;
    std::fs::create_dir(to).map_err(io("create", to))?;
    let mut archive = tar::Archive::new(BufReader::new(file));
    archive.set_preserve_permissions(false);
    archive.set_unpack_xattrs(false);
    archive.unpack(to).map_err(|e| BaseError::Image {
        path: image.to_owned(),
        reason: format!("cannot unpack it as a tar archive: {e}"),
    })
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// The layer's tar, decompressed when it is gzip (by its first bytes), hashed.
fn open_layer(path: &Path) -> Result<Hashing<Box<dyn Read>>, BaseError> {
    let mut file = std::fs::File::open(path).map_err(io("open", path))?;
    let mut magic = [0u8; 2];
    let gzip = file.read(&mut magic).map_err(io("read", path))? == 2 && magic == [0x1f, 0x8b];
    let file = std::fs::File::open(path).map_err(io("open", path))?;
    let inner: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    Ok(Hashing {
        inner,
        hash: Sha256::new(),
        bytes: 0,
    })
}

fn tar_error(layer: &super::oci::Layer, e: std::io::Error) -> BaseError {
    // The tar crate wraps the cause ("failed to unpack X") around the real error.
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    BaseError::Image {
        path: layer.path.clone(),
        reason: format!("layer {}: {reason}", layer.digest_note()),
    }
}

/// `rel` (a tar entry's path) as a normal relative path, or `None` (`/`, `.` entries).
fn normal(rel: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// `root/rel` when no component of it below `root` is a link (so removing it cannot reach
/// outside the root), else `None`.
fn without_links(root: &Path, rel: &Path) -> Option<PathBuf> {
    let mut p = root.to_owned();
    for c in rel.components() {
        p.push(c);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink())
            && p != root.join(rel)
        {
            return None;
        }
    }
    Some(p)
}

/// Applies `layer` to `root`; returns its uncompressed size.
pub(super) fn apply(layer: &super::oci::Layer, root: &Path) -> Result<u64, BaseError> {
    // Pass 1: the whiteouts (of the layers below), and the digest of the whole tar.
    let mut reader = open_layer(&layer.path)?;
    {
        let mut archive = tar::Archive::new(&mut reader);
        for entry in archive.entries().map_err(|e| tar_error(layer, e))? {
            let entry = entry.map_err(|e| tar_error(layer, e))?;
            let path = entry.path().map_err(|e| tar_error(layer, e))?.into_owned();
            let Some(rel) = normal(&path) else { continue };
            let Some(name) = rel.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let parent = rel.parent().unwrap_or(Path::new(""));
            if name == ".wh..wh..opq" {
                if let Some(dir) = without_links(root, parent) {
                    if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                        for child in std::fs::read_dir(&dir).map_err(io("read", &dir))? {
                            let child = child.map_err(io("read", &dir))?.path();
                            remove(&child)?;
                        }
                    }
                }
            } else if let Some(hidden) = name.strip_prefix(".wh.") {
                if let Some(target) = without_links(root, &parent.join(hidden)) {
                    remove(&target)?;
                }
            }
        }
    }
    std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| tar_error(layer, e))?;
    let actual = worker::hex(&reader.hash.clone().finalize());
    if let Some(diff) = &layer.diff_id {
        let expected = diff.strip_prefix("sha256:").unwrap_or(diff);
        if actual != expected {
            return Err(BaseError::Digest {
                what: format!("the uncompressed layer {}", layer.path.display()),
                expected: expected.to_owned(),
                actual,
            });
        }
    }
    let bytes = reader.bytes;
    // Pass 2: the entries.
    let mut archive = tar::Archive::new(open_layer(&layer.path)?);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    for entry in archive.entries().map_err(|e| tar_error(layer, e))? {
        let mut entry = entry.map_err(|e| tar_error(layer, e))?;
        let kind = entry.header().entry_type();
        if kind.is_block_special() || kind.is_character_special() {
            continue;
        }
        let path = entry.path().map_err(|e| tar_error(layer, e))?.into_owned();
        let Some(rel) = normal(&path) else { continue };
        if rel
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(".wh."))
        {
            continue;
        }
        // A directory entry over an existing directory keeps it (and what lower layers put in
        // it); any other entry replaces what is there.
        let dst = root.join(&rel);
        if !kind.is_dir() {
            if let Ok(md) = std::fs::symlink_metadata(&dst) {
                if md.is_dir() && !md.file_type().is_symlink() {
                    if let Some(d) = without_links(root, &rel) {
                        remove(&d)?;
                    }
                }
            }
        }
        entry.unpack_in(root).map_err(|e| tar_error(layer, e))?;
    }
    Ok(bytes)
}

fn remove(path: &Path) -> Result<(), BaseError> {
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => std::fs::remove_dir_all(path).map_err(io("remove", path)),
        Ok(_) => std::fs::remove_file(path).map_err(io("remove", path)),
        Err(_) => Ok(()),
    }
}
