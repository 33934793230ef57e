//! Handler bundles installed into the local registry by `admin upload`: a `.tar.gz` or `.zip`
//! (told apart by their first bytes) holding the function's code, `lambda_func.py` (or the
//! module of the entry its `lambda.json` names) at its top or in its single top-level
//! directory, and optionally `requirements.txt` or `packages.txt`.
//!
//! An upload creates the function, or replaces its code and keeps its settings, through the
//! function store ([`crate::functions::DirStore::upload`]): the archive is checked and unpacked
//! safely ([`crate::archive`]), stored content-addressed with the function's metadata, and the
//! code swapped into `registry/<name>/` with one `renameat2(RENAME_EXCHANGE)` (a rename for a
//! new function), so a worker sees either the old or the new code, never a mix. On any failure
//! the registry is unchanged. The next call notices the new code and retires sandboxes of the
//! old version.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::archive::MAX_ARCHIVE_BYTES;
use crate::functions::{DirStore, FunctionInfo, StoreError};
use crate::name::LambdaName;

pub use crate::archive::{MAX_ENTRIES, MAX_UNPACKED_BYTES};

/// Errors installing a bundle; each names the bundle's path.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read bundle {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bundle {path} is larger than {MAX_ARCHIVE_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("bundle {path}: {source}")]
    Store {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
}

/// What an install did.
#[derive(Debug, Clone)]
pub struct Installed {
    /// `registry/<name>`.
    pub dir: PathBuf,
    pub files: usize,
    pub bytes: u64,
    /// Whether a function (or directory) of that name was there before.
    pub replaced: bool,
    /// The function as stored now.
    pub info: FunctionInfo,
}

/// Installs the bundle at `archive` as function `name` in `registry_dir` (see the module docs).
pub fn install(
    registry_dir: &Path,
    name: &LambdaName,
    archive: &Path,
) -> Result<Installed, BundleError> {
    let bytes = read_bundle(archive)?;
    let store_err = |source| BundleError::Store {
        path: archive.to_owned(),
        source,
    };
    let store = DirStore::open(registry_dir).map_err(store_err)?;
    let uploaded = store.upload(name, &bytes, true).map_err(store_err)?;
    Ok(Installed {
        dir: registry_dir.join(name.as_str()),
        files: uploaded.unpacked.files,
        bytes: uploaded.unpacked.bytes,
        replaced: uploaded.replaced,
        info: uploaded.info,
    })
}

/// The bundle's bytes: a regular file of at most [`MAX_ARCHIVE_BYTES`].
fn read_bundle(path: &Path) -> Result<Vec<u8>, BundleError> {
    let read_err = |source| BundleError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let md = file.metadata().map_err(read_err)?;
    if !md.is_file() {
        return Err(read_err(std::io::Error::other("not a regular file")));
    }
    if md.len() > MAX_ARCHIVE_BYTES as u64 {
        return Err(BundleError::TooLarge {
            path: path.to_owned(),
        });
    }
    let mut bytes = Vec::with_capacity(md.len() as usize);
    file.take(MAX_ARCHIVE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() > MAX_ARCHIVE_BYTES {
        return Err(BundleError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::testing::{tar_gz_entries, tar_gz_of, tree_listing, zip_of, TarEntry};
    use crate::functions::FunctionStore;
    use crate::lambda_config::LambdaConfig;

    fn name(n: &str) -> LambdaName {
        LambdaName::parse(n).unwrap()
    }

    fn write(dir: &Path, bytes: &[u8]) -> PathBuf {
        let path = dir.join("bundle");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn registry() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let reg = dir.path().join("registry");
        std::fs::create_dir(&reg).unwrap();
        (dir, reg)
    }

    #[test]
    fn installs_and_replaces_atomically() {
        let (dir, reg) = registry();
        let b = write(
            dir.path(),
            &tar_gz_of(&[
                ("lambda_func.py", Some(b"def handler(e): return 1\n")),
                ("lib/", None),
                ("lib/util.py", Some(b"X = 1\n")),
            ]),
        );
        let got = install(&reg, &name("hello"), &b).unwrap();
        assert_eq!((got.files, got.replaced), (2, false));
        assert_eq!(got.info.version, 1);
        assert!(reg.join("hello/lib/util.py").is_file());
        // A zip this time, its files in one top-level directory.
        let b = write(
            dir.path(),
            &zip_of(&[
                ("hello-1.0/", None),
                (
                    "hello-1.0/lambda_func.py",
                    Some(b"def handler(e): return 2\n"),
                ),
            ]),
        );
        let got = install(&reg, &name("hello"), &b).unwrap();
        assert!(got.replaced);
        assert_eq!(got.info.version, 2);
        assert_eq!(
            std::fs::read_to_string(reg.join("hello/lambda_func.py")).unwrap(),
            "def handler(e): return 2\n"
        );
        assert!(!reg.join("hello/lib").exists(), "old files must be gone");
        let left: Vec<_> = std::fs::read_dir(&reg)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        let mut left = left;
        left.sort();
        assert_eq!(left, vec![".store", "hello"], "no staging directory left");
        assert!(std::fs::read_dir(reg.join(".store/staging"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn an_upload_keeps_the_settings() {
        let (dir, reg) = registry();
        let store = DirStore::open(&reg).unwrap();
        let settings = LambdaConfig::parse(r#"{"memory_mb": 512}"#).unwrap();
        store
            .create(
                &name("f"),
                &zip_of(&[("lambda_func.py", Some(b"v1"))]),
                &settings,
            )
            .unwrap();
        let b = write(dir.path(), &tar_gz_of(&[("lambda_func.py", Some(b"v2"))]));
        let got = install(&reg, &name("f"), &b).unwrap();
        assert_eq!(got.info.settings, settings);
        assert_eq!(got.info.config.memory_mb, Some(512));
        let on_disk = LambdaConfig::load(&reg.join("f")).unwrap();
        assert_eq!(on_disk.memory_mb, Some(512));
    }

    #[test]
    fn a_luna_bundle_needs_no_lambda_func() {
        let (dir, reg) = registry();
        let b = write(
            dir.path(),
            &zip_of(&[("lambda_main.py", Some(b"async def main(r): return {}\n"))]),
        );
        let got = install(&reg, &name("luna"), &b).unwrap();
        assert!(got.info.entry.is_luna());
    }

    #[test]
    fn hostile_or_broken_bundles_are_refused_and_change_nothing() {
        let (dir, reg) = registry();
        // An existing function, to see that refusals leave it alone.
        let b = write(dir.path(), &tar_gz_of(&[("lambda_func.py", Some(b"keep"))]));
        install(&reg, &name("keep"), &b).unwrap();
        let before = tree_listing(&reg);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (tar_gz_of(&[("../evil.py", Some(b"x"))]), "`..`"),
            (tar_gz_of(&[("/etc/evil.py", Some(b"x"))]), "absolute"),
            (tar_gz_of(&[("other.py", Some(b"x"))]), "no lambda_func.py"),
            (
                tar_gz_of(&[("a/lambda_func.py", Some(b"x")), ("b/x.py", Some(b"y"))]),
                "no lambda_func.py",
            ),
            (
                tar_gz_of(&[
                    ("lambda_func.py", Some(b"x")),
                    ("lambda_func.py", Some(b"y")),
                ]),
                "duplicate",
            ),
            (
                tar_gz_entries(&[TarEntry {
                    kind: tar::EntryType::Symlink,
                    link: Some("/etc/shadow"),
                    ..TarEntry::file("lambda_func.py", b"")
                }]),
                "symbolic link",
            ),
            (b"not an archive".to_vec(), "not a .zip or .tar.gz"),
            (
                zip_of(&[
                    ("lambda_func.py", Some(b"x")),
                    ("lambda.json", Some(b"{\"memory_mb\": 100}")),
                ]),
                "memory_mb",
            ),
        ];
        for (bytes, want) in cases {
            let b = write(dir.path(), &bytes);
            for target in ["bad", "keep"] {
                let err = install(&reg, &name(target), &b).unwrap_err().to_string();
                assert!(err.contains(want), "{want}: {err}");
                assert!(err.contains("bundle"), "{err}");
                assert_eq!(tree_listing(&reg), before, "{want}: {err}");
            }
        }
        assert!(matches!(
            install(&reg, &name("bad"), &dir.path().join("missing")),
            Err(BundleError::Read { .. })
        ));
        assert_eq!(tree_listing(&reg), before);
    }
}
