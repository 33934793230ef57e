//! Handler bundles: a `.tar.gz` holding at least `lambda_func.py` (and, for later use,
//! `packages.txt` or `requirements.txt`), installed into the local registry by `admin upload`.
//!
//! Installing is safe against hostile archives and atomic for running workers:
//! 1. the archive is unpacked into a hidden staging directory inside the registry
//!    (`.upload-<name>-<pid>`, never a valid lambda name); only regular files and directories
//!    are accepted, with relative paths free of `..`, within size and count limits;
//! 2. a bundle whose files sit in one top-level directory is accepted too (that directory is
//!    stripped); `lambda_func.py` must then be a regular file at the top;
//! 3. the staging directory replaces `registry/<name>` with one `renameat2(RENAME_EXCHANGE)`
//!    (or a plain rename when the lambda is new), so a worker sees either the old or the new
//!    handler, never a mix; the old files are then removed. The next call notices the new
//!    `lambda_func.py` and retires sandboxes of the old version.

use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::name::LambdaName;
use crate::registry::HANDLER_FILE;

/// Largest total of unpacked file sizes.
pub const MAX_UNPACKED_BYTES: u64 = 256 * 1024 * 1024;
/// Most entries in one bundle.
pub const MAX_ENTRIES: usize = 10_000;

/// Errors installing a bundle; each names the archive or path.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read bundle {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bundle {path}: entry {entry:?} is {why}")]
    BadEntry {
        path: PathBuf,
        entry: String,
        why: &'static str,
    },
    #[error("bundle {path} unpacks to more than {limit}")]
    TooLarge { path: PathBuf, limit: String },
    #[error(
        "bundle {path} has no {HANDLER_FILE} at its top (or in its single top-level directory)"
    )]
    NoHandler { path: PathBuf },
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub dir: PathBuf,
    pub files: usize,
    pub bytes: u64,
    pub replaced: bool,
}

/// Installs the bundle at `archive` as lambda `name` in `registry_dir` (see the module docs).
pub fn install(
    registry_dir: &Path,
    name: &LambdaName,
    archive: &Path,
) -> Result<Installed, BundleError> {
    let staging = registry_dir.join(format!(".upload-{name}-{}", std::process::id()));
    remove_all(&staging)?;
    std::fs::create_dir(&staging).map_err(|source| BundleError::Io {
        op: "create",
        path: staging.clone(),
        source,
    })?;
    let result = unpack_and_swap(registry_dir, name, archive, &staging);
    // On success the staging name holds the old handler (or nothing); on failure, the partial
    // unpack. Either way it goes.
    let _ = remove_all(&staging);
    result
}

fn unpack_and_swap(
    registry_dir: &Path,
    name: &LambdaName,
    archive: &Path,
    staging: &Path,
) -> Result<Installed, BundleError> {
    let (files, bytes) = unpack(archive, staging)?;
    let root = handler_root(staging, archive)?;
    let target = registry_dir.join(name.as_str());
    let replaced = std::fs::symlink_metadata(&target).is_ok();
    let fresh = if root == staging {
        staging.to_owned()
    } else {
        // Lift the single top-level directory out of the staging directory first.
        let lifted = registry_dir.join(format!(".upload-{name}-{}-root", std::process::id()));
        remove_all(&lifted)?;
        std::fs::rename(&root, &lifted).map_err(|source| BundleError::Io {
            op: "move",
            path: root.clone(),
            source,
        })?;
        lifted
    };
    let swapped = if replaced {
        nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            fresh.as_path(),
            nix::fcntl::AT_FDCWD,
            target.as_path(),
            nix::fcntl::RenameFlags::RENAME_EXCHANGE,
        )
        .map_err(std::io::Error::from)
    } else {
        std::fs::rename(&fresh, &target)
    };
    let swap_result = swapped.map_err(|source| BundleError::Io {
        op: "install into",
        path: target.clone(),
        source,
    });
    // After an exchange, `fresh` holds the old handler; after a failure, the new one.
    if fresh != staging {
        let _ = remove_all(&fresh);
    }
    swap_result?;
    Ok(Installed {
        dir: target,
        files,
        bytes,
        replaced,
    })
}

/// Unpacks a gzip-compressed tar into `dest`, refusing anything but plain files and
/// directories with safe relative paths. Returns (files, bytes).
fn unpack(archive: &Path, dest: &Path) -> Result<(usize, u64), BundleError> {
    let read_err = |source| BundleError::Read {
        path: archive.to_owned(),
        source,
    };
    let file = File::open(archive).map_err(read_err)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let (mut files, mut bytes, mut entries) = (0usize, 0u64, 0usize);
    for entry in tar.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        entries += 1;
        if entries > MAX_ENTRIES {
            return Err(BundleError::TooLarge {
                path: archive.to_owned(),
                limit: format!("{MAX_ENTRIES} entries"),
            });
        }
        let raw = entry.path().map_err(read_err)?.into_owned();
        let shown = raw.display().to_string();
        let bad = |why| BundleError::BadEntry {
            path: archive.to_owned(),
            entry: shown.clone(),
            why,
        };
        let mut rel = PathBuf::new();
        for c in raw.components() {
            match c {
                Component::Normal(part) => rel.push(part),
                Component::CurDir => {}
                Component::ParentDir => return Err(bad("a path with `..`")),
                Component::RootDir | Component::Prefix(_) => return Err(bad("an absolute path")),
            }
        }
        let kind = entry.header().entry_type();
        if rel.as_os_str().is_empty() {
            if kind.is_dir() {
                continue; // "./"
            }
            return Err(bad("a file without a name"));
        }
        let out = dest.join(&rel);
        let io = |op| {
            let out = out.clone();
            move |source| BundleError::Io {
                op,
                path: out,
                source,
            }
        };
        if kind.is_dir() {
            std::fs::create_dir_all(&out).map_err(io("create"))?;
            continue;
        }
        if !kind.is_file() {
            return Err(bad(
                "not a regular file or directory (links and devices are refused)",
            ));
        }
        bytes += entry.size();
        if bytes > MAX_UNPACKED_BYTES {
            return Err(BundleError::TooLarge {
                path: archive.to_owned(),
                limit: format!("{} MiB", MAX_UNPACKED_BYTES >> 20),
            });
        }
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(io("create"))?;
        }
        // create_new: a duplicate entry or a path through an earlier file is an error, and
        // nothing is ever written through a pre-existing link.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&out)
            .map_err(io("create"))?;
        let copied =
            std::io::copy(&mut (&mut entry).take(MAX_UNPACKED_BYTES), &mut f).map_err(read_err)?;
        if copied != entry.size() {
            return Err(bad("shorter than its header says"));
        }
        drop(f);
        // Readable by the sandbox; never setuid or world-writable.
        let mode = (entry.header().mode().unwrap_or(0o644) & 0o755) | 0o444;
        std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .map_err(io("chmod"))?;
        files += 1;
    }
    Ok((files, bytes))
}

/// The directory holding `lambda_func.py`: the staging directory itself, or its single
/// top-level directory.
fn handler_root(staging: &Path, archive: &Path) -> Result<PathBuf, BundleError> {
    let is_handler =
        |dir: &Path| std::fs::symlink_metadata(dir.join(HANDLER_FILE)).is_ok_and(|m| m.is_file());
    if is_handler(staging) {
        return Ok(staging.to_owned());
    }
    let entries: Vec<_> = std::fs::read_dir(staging)
        .map_err(|source| BundleError::Io {
            op: "read",
            path: staging.to_owned(),
            source,
        })?
        .flatten()
        .collect();
    if let [only] = entries.as_slice() {
        if only.file_type().is_ok_and(|t| t.is_dir()) && is_handler(&only.path()) {
            return Ok(only.path());
        }
    }
    Err(BundleError::NoHandler {
        path: archive.to_owned(),
    })
}

fn remove_all(path: &Path) -> Result<(), BundleError> {
    crate::cleanup::remove_dir_all_if_present(path).map_err(|source| BundleError::Io {
        op: "remove",
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a .tar.gz from (path, contents) pairs; `None` contents make a directory.
    fn bundle(dir: &Path, entries: &[(&str, Option<&str>)]) -> PathBuf {
        let path = dir.join("b.tar.gz");
        let gz = flate2::write::GzEncoder::new(
            File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(gz);
        for (name, contents) in entries {
            let mut h = tar::Header::new_gnu();
            match contents {
                Some(c) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(c.len() as u64);
                    h.set_mode(0o644);
                    raw_path(&mut h, name);
                    h.set_cksum();
                    tar.append(&h, c.as_bytes()).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    raw_path(&mut h, name);
                    h.set_cksum();
                    tar.append(&h, std::io::empty()).unwrap();
                }
            }
        }
        tar.into_inner().unwrap().finish().unwrap();
        path
    }

    /// Writes the name bytes directly so tests can build archives `set_path` would refuse.
    fn raw_path(h: &mut tar::Header, name: &str) {
        let field = &mut h.as_old_mut().name;
        field.fill(0);
        field[..name.len()].copy_from_slice(name.as_bytes());
    }

    /// Archive entries: (path, contents); `None` contents make a directory.
    type Entries<'a> = Vec<(&'a str, Option<&'a str>)>;

    fn name(n: &str) -> LambdaName {
        LambdaName::parse(n).unwrap()
    }

    #[test]
    fn installs_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let reg = dir.path().join("registry");
        std::fs::create_dir(&reg).unwrap();
        let b = bundle(
            dir.path(),
            &[
                ("lambda_func.py", Some("def handler(e): return 1\n")),
                ("lib/", None),
                ("lib/util.py", Some("X = 1\n")),
            ],
        );
        let got = install(&reg, &name("hello"), &b).unwrap();
        assert_eq!((got.files, got.replaced), (2, false));
        assert!(reg.join("hello/lib/util.py").is_file());
        let b = bundle(
            dir.path(),
            &[
                ("hello-1.0/", None),
                (
                    "hello-1.0/lambda_func.py",
                    Some("def handler(e): return 2\n"),
                ),
            ],
        );
        let got = install(&reg, &name("hello"), &b).unwrap();
        assert!(got.replaced);
        assert_eq!(
            std::fs::read_to_string(reg.join("hello/lambda_func.py")).unwrap(),
            "def handler(e): return 2\n"
        );
        assert!(!reg.join("hello/lib").exists(), "old files must be gone");
        let left: Vec<_> = std::fs::read_dir(&reg)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("hello")],
            "no staging directory left"
        );
    }

    #[test]
    fn hostile_or_broken_bundles_are_refused_and_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let reg = dir.path().join("registry");
        std::fs::create_dir(&reg).unwrap();
        let cases: Vec<(Entries<'_>, &str)> = vec![
            (vec![("../evil.py", Some("x"))], "`..`"),
            (vec![("/etc/evil.py", Some("x"))], "absolute"),
            (vec![("other.py", Some("x"))], "no lambda_func.py"),
            (
                vec![("a/lambda_func.py", Some("x")), ("b/x.py", Some("y"))],
                "no lambda_func.py",
            ),
            (
                vec![("lambda_func.py", Some("x")), ("lambda_func.py", Some("y"))],
                "create",
            ),
        ];
        for (entries, want) in cases {
            let b = bundle(dir.path(), &entries);
            let err = install(&reg, &name("bad"), &b).unwrap_err().to_string();
            assert!(
                err.contains(want) || err.contains("lambda_func.py"),
                "{entries:?}: {err}"
            );
            assert_eq!(
                std::fs::read_dir(&reg).unwrap().count(),
                0,
                "{entries:?} left files: {err}"
            );
        }
        let not_gz = dir.path().join("x.tar.gz");
        std::fs::write(&not_gz, "not an archive").unwrap();
        assert!(matches!(
            install(&reg, &name("bad"), &not_gz),
            Err(BundleError::Read { .. })
        ));
        assert!(matches!(
            install(&reg, &name("bad"), &dir.path().join("missing")),
            Err(BundleError::Read { .. })
        ));
        assert_eq!(std::fs::read_dir(&reg).unwrap().count(), 0);
    }

    #[test]
    fn links_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let reg = dir.path().join("registry");
        std::fs::create_dir(&reg).unwrap();
        let path = dir.path().join("l.tar.gz");
        let gz = flate2::write::GzEncoder::new(
            File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_link_name("/etc/shadow").unwrap();
        h.set_path("lambda_func.py").unwrap();
        h.set_cksum();
        tar.append(&h, std::io::empty()).unwrap();
        tar.into_inner().unwrap().finish().unwrap();
        let err = install(&reg, &name("link"), &path).unwrap_err();
        assert!(matches!(err, BundleError::BadEntry { .. }), "{err}");
        assert_eq!(std::fs::read_dir(&reg).unwrap().count(), 0);
    }
}
