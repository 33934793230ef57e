//! Custom bases: root filesystems other than the cluster's default that a function names with
//! `"base": "NAME"` (`docs/bases.md`). `admin base create` and `admin base import` make them,
//! under the cluster's `bases/<name>/`: `rootfs/` (shared read-only by every sandbox on it,
//! with the runtime installed) and `base.json`, written last (a directory without it is an
//! import that did not finish). This module reads them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::name::LambdaName;

/// A base's root filesystem directory.
pub const ROOTFS_DIR: &str = "rootfs";
/// A base's metadata file.
pub const META_FILE: &str = "base.json";

/// What `base.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseInfo {
    pub name: String,
    /// Where it came from: `oci sha256:<manifest digest>`, `docker-save sha256:<config>`, or
    /// `recipe <from>: <packages>`.
    pub origin: String,
    /// Seconds since the epoch.
    pub created: u64,
    /// The image config's `Env` (`KEY=value`), set in its sandboxes before the platform's.
    #[serde(default)]
    pub env: Vec<String>,
    /// The image config's `WorkingDir`: its sandboxes' working directory.
    #[serde(default)]
    pub workdir: Option<String>,
    /// The Python its sandboxes run (`/usr/bin/python3` or a `python3.N` beside it).
    pub python: String,
}

/// A base a function names, found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseRef {
    pub name: LambdaName,
    pub root: PathBuf,
    pub info: BaseInfo,
}

impl BaseRef {
    /// Its sandboxes' working directory: the image's `WorkingDir` when it is a directory of
    /// the base, else `/host`. Blocking (a stat).
    pub fn workdir(&self) -> &str {
        self.info
            .workdir
            .as_deref()
            .filter(|w| {
                std::fs::symlink_metadata(self.root.join(w.trim_start_matches('/')))
                    .is_ok_and(|m| m.is_dir())
            })
            .unwrap_or("/host")
    }
}

/// Lays an image's `Env` (`KEY=value` entries) over `env`: a later value of a name replaces an
/// earlier one, but `HOME` (the sandbox's own) and `LAMBDA_PACKAGES` (the worker's) stay.
pub fn overlay_env(env: &mut Vec<(String, String)>, image: &[String]) {
    for kv in image {
        let Some((key, value)) = kv.split_once('=') else {
            continue;
        };
        if matches!(key, "HOME" | "LAMBDA_PACKAGES") {
            continue;
        }
        match env.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_owned(),
            None => env.push((key.to_owned(), value.to_owned())),
        }
    }
}

/// A base that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error("base {0} does not exist (admin base create or import makes one)")]
    NotFound(String),
    #[error("base {name}: {path} is not a valid base.json: {reason}")]
    Meta {
        name: String,
        path: PathBuf,
        reason: String,
    },
}

/// Finds base `name` under `dir` (`<cluster>/bases`). Blocking (a small file read).
pub fn find(dir: &Path, name: &LambdaName) -> Result<BaseRef, BaseError> {
    let base = dir.join(name.as_str());
    let meta = base.join(META_FILE);
    let root = base.join(ROOTFS_DIR);
    let text = match crate::files::read_regular_file(&meta, 1 << 20) {
        Ok(Some(text)) => text,
        Ok(None) => return Err(BaseError::NotFound(name.to_string())),
        Err(e) => {
            return Err(BaseError::Meta {
                name: name.to_string(),
                path: meta,
                reason: e.to_string(),
            })
        }
    };
    let info: BaseInfo = serde_json::from_str(&text).map_err(|e| BaseError::Meta {
        name: name.to_string(),
        path: meta.clone(),
        reason: e.to_string(),
    })?;
    if !std::fs::symlink_metadata(&root).is_ok_and(|m| m.is_dir()) {
        return Err(BaseError::NotFound(name.to_string()));
    }
    Ok(BaseRef {
        name: name.clone(),
        root,
        info,
    })
}
