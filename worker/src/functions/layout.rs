//! Where a registry directory keeps what is not a function's code, and how a sandbox finds a
//! layer's files.

use std::path::{Path, PathBuf};

use crate::lambda_config::LayerRef;

/// The store's directory inside a registry (never a valid function name).
pub const STORE_DIR: &str = ".store";

/// Why a layer's directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LayerDirError {
    #[error("layer {layer} does not exist in {path}")]
    Missing { layer: String, path: PathBuf },
    #[error("cannot read layer directory {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `<registry>/.store/layers/<name>`.
pub fn layer_root(registry: &Path, name: &crate::name::LambdaName) -> PathBuf {
    registry.join(STORE_DIR).join("layers").join(name.as_str())
}

/// The unpacked files of a layer version: `<registry>/.store/layers/<name>/<N>/`, the highest
/// `N` when the reference names no version. A real directory only (never a link). The
/// directory's `python/` subdirectory, when it has one (AWS's layout), is what goes on
/// `sys.path`; the caller decides. Blocking.
pub fn layer_dir(registry: &Path, layer: &LayerRef) -> Result<(u64, PathBuf), LayerDirError> {
    let root = layer_root(registry, &layer.name);
    let missing = || LayerDirError::Missing {
        layer: layer.to_string(),
        path: root.clone(),
    };
    let version = match layer.version {
        Some(v) => v,
        None => {
            let entries = match std::fs::read_dir(&root) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
                Err(source) => return Err(LayerDirError::Read { path: root, source }),
            };
            let mut best = None;
            for entry in entries.flatten() {
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                let n = entry
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<u64>().ok());
                if let (true, Some(n)) = (is_dir, n) {
                    best = best.max(Some(n));
                }
            }
            best.ok_or_else(missing)?
        }
    };
    let dir = root.join(version.to_string());
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.file_type().is_dir() => Ok((version, dir)),
        Ok(_) => Err(missing()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(missing()),
        Err(source) => Err(LayerDirError::Read { path: dir, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_or_named_version() {
        let reg = tempfile::tempdir().unwrap();
        let layer = |raw: &str| LayerRef::parse(raw).unwrap();
        assert!(matches!(
            layer_dir(reg.path(), &layer("common")),
            Err(LayerDirError::Missing { .. })
        ));
        let root = reg.path().join(".store/layers/common");
        for v in ["1", "2", "10"] {
            std::fs::create_dir_all(root.join(v)).unwrap();
        }
        std::fs::write(root.join("11.json"), "{}").unwrap();
        let (v, dir) = layer_dir(reg.path(), &layer("common")).unwrap();
        assert_eq!((v, dir), (10, root.join("10")));
        assert_eq!(layer_dir(reg.path(), &layer("common:2")).unwrap().0, 2);
        assert!(layer_dir(reg.path(), &layer("common:3")).is_err());
    }
}
