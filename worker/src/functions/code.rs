//! A function's code directory as workers read it: the archive unpacked, its effective
//! `lambda.json`, and a revision marker.
//!
//! The marker, [`REVISION_FILE`], holds the revision the directory was made for. It is how
//! the store tells, after a crash, whether `<registry>/<name>/` matches the function's
//! metadata; it moves with the directory in the same rename. Handlers can see it (at
//! `/handler/.lambda-revision`); an archive may not hold a file of that name.

use std::path::Path;

use super::durable::{io_err, write_new_file};
use super::StoreError;
use crate::archive::{self, Unpacked};
use crate::lambda_config::{LambdaConfig, LAMBDA_CONFIG_FILE};

/// The revision marker in a code directory.
pub const REVISION_FILE: &str = ".lambda-revision";
/// Largest marker read.
const MAX_MARKER_BYTES: u64 = 256;

/// The archive's own configuration, read from a code directory just unpacked.
pub(super) fn archive_config(dir: &Path) -> Result<LambdaConfig, StoreError> {
    LambdaConfig::load(dir).map_err(|e| StoreError::Invalid {
        key: e.key.clone(),
        message: format!("the archive's {LAMBDA_CONFIG_FILE}: {e}"),
    })
}

/// Refuses code that holds the marker's name itself.
pub(super) fn check_reserved(dir: &Path) -> Result<(), StoreError> {
    if std::fs::symlink_metadata(dir.join(REVISION_FILE)).is_ok() {
        return Err(StoreError::Invalid {
            key: None,
            message: format!(
                "the archive holds {REVISION_FILE}, a name the platform keeps for itself"
            ),
        });
    }
    Ok(())
}

/// Whether the code has `docs/lambda.html` and `docs/lambda.yml`.
pub(super) fn has_docs(dir: &Path) -> bool {
    ["docs/lambda.html", "docs/lambda.yml"]
        .iter()
        .all(|f| std::fs::symlink_metadata(dir.join(f)).is_ok_and(|m| m.file_type().is_file()))
}

/// Writes `config` as the directory's `lambda.json` (replacing the archive's) and the revision
/// marker, each flushed, then the directory: for a directory no reader sees yet.
pub(super) fn finish(
    dir: &Path,
    config: &LambdaConfig,
    revision_id: &str,
) -> Result<(), StoreError> {
    let config_path = dir.join(LAMBDA_CONFIG_FILE);
    match std::fs::remove_file(&config_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("replace", &config_path)(e)),
    }
    write_new_file(&config_path, config.to_json_pretty().as_bytes(), 0o644)?;
    write_new_file(
        &dir.join(REVISION_FILE),
        format!("{revision_id}\n").as_bytes(),
        0o644,
    )?;
    super::durable::sync_dir(dir)
}

/// The revision a code directory was made for, if it has a readable marker.
pub fn revision_of(dir: &Path) -> Option<String> {
    let text =
        crate::files::read_regular_file(&dir.join(REVISION_FILE), MAX_MARKER_BYTES).ok()??;
    Some(text.trim_end().to_owned())
}

/// Makes the code directory of a function in `dest` (an existing empty directory): the
/// archive unpacked, with `config` (a [`super::FunctionInfo::config`]) as its `lambda.json`
/// and the marker of `revision_id`, as the store makes `<registry>/<name>/`. For a worker that
/// pulls code from a registry server and keeps a local copy. Blocking. On error `dest` may hold
/// a partial tree: the caller removes it.
pub fn materialize(
    archive_bytes: &[u8],
    config: &LambdaConfig,
    revision_id: &str,
    dest: &Path,
) -> Result<Unpacked, StoreError> {
    let unpacked = archive::unpack(archive_bytes, dest)?;
    check_reserved(dest)?;
    finish(dest, config, revision_id)?;
    Ok(unpacked)
}
