//! Custom bases of a cluster (`<cluster>/bases/<name>/`, read by the worker through
//! `worker::bases`): imported from an OCI image layout or a `docker save` archive
//! ([`import`]), built from a recipe ([`recipe::create`]), listed, deleted. `docs/bases.md`
//! says how a function uses one.
//!
//! An import, in order:
//! 1. the archive is unpacked into a staging directory `bases/.tmp-<name>-<pid>/image`;
//! 2. its manifest is found: an OCI layout's `index.json` (the manifest for linux and this
//!    machine's architecture when it lists several), or `docker save`'s `manifest.json`;
//!    every blob read is checked against its sha256 digest (OCI: the manifest, the config and
//!    each layer; both formats: each layer's uncompressed tar against the config's `diff_ids`);
//! 3. the layers are applied in order to `rootfs/`: first the layer's whiteouts (`.wh.NAME`
//!    removes NAME of the layers below, `.wh..wh..opq` empties its directory), never through
//!    a link, then its other entries, each kept inside the root (the `tar` crate refuses a path
//!    that leaves it, through `..` or a link), owners and modes kept, device nodes skipped;
//! 4. the root must hold a Python 3 (`usr/bin/python3`), else the import is refused;
//! 5. the sandbox's mount points and the runtime are installed as in the default base;
//! 6. `base.json` (origin, the image config's `Env` and `WorkingDir`) is written and the
//!    staging directory renamed to `bases/<name>`. A failure removes the staging directory.

mod layers;
pub mod oci;
pub mod recipe;

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use worker::bases::{BaseInfo, META_FILE, ROOTFS_DIR};
use worker::name::LambdaName;

/// A failed base operation, naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error("invalid base name {name:?}: {reason}")]
    Name { name: String, reason: &'static str },
    #[error("base {0} already exists (admin base delete removes it)")]
    Exists(String),
    #[error("base {0} does not exist")]
    NotFound(String),
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not an image this can import: {reason}", path.display())]
    Image { path: PathBuf, reason: String },
    #[error("{what} has sha256 {actual}, but the image says {expected}: the image is corrupt or was changed")]
    Digest {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{0}")]
    Recipe(String),
    #[error("the image has no Python 3 (no usr/bin/python3 in its root): a base needs one to run the runtime")]
    NoPython,
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

pub(crate) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BaseError {
    let path = path.to_owned();
    move |source| BaseError::Io { what, path, source }
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct Imported {
    pub info: BaseInfo,
    pub layers: usize,
    /// Bytes of the layers' tars, uncompressed.
    pub bytes: u64,
    pub seconds: f64,
}

pub(crate) fn parse_name(raw: &str) -> Result<LambdaName, BaseError> {
    LambdaName::parse(raw).map_err(|reason| BaseError::Name {
        name: raw.to_owned(),
        reason,
    })
}

/// A new base's name, checked: valid, not `default`, not taken under `bases`.
pub(crate) fn new_name(bases: &Path, raw: &str) -> Result<LambdaName, BaseError> {
    let name = parse_name(raw)?;
    if name.as_str() == "default" {
        return Err(BaseError::Name {
            name: name.to_string(),
            reason: "`default` is the cluster's own base",
        });
    }
    if std::fs::symlink_metadata(bases.join(name.as_str())).is_ok() {
        return Err(BaseError::Exists(name.to_string()));
    }
    Ok(name)
}

/// Makes base `name` under `bases`: `fill` fills the staging directory
/// `bases/.tmp-<name>-<pid>` (its `rootfs/`, and whatever else it needs and removes again)
/// and says what `base.json` holds; then `base.json` is written and the staging directory
/// renamed to `bases/<name>`. A failure removes the staging directory.
pub(crate) fn stage<T>(
    bases: &Path,
    name: &LambdaName,
    fill: impl FnOnce(&Path) -> Result<(BaseInfo, T), BaseError>,
) -> Result<(BaseInfo, T), BaseError> {
    std::fs::create_dir_all(bases).map_err(io("create", bases))?;
    let target = bases.join(name.as_str());
    let staging = bases.join(format!(".tmp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir(&staging).map_err(io("create", &staging))?;
    let result = fill(&staging).and_then(|(info, made)| {
        let meta = staging.join(META_FILE);
        let text = serde_json::to_vec_pretty(&info).unwrap_or_default();
        worker::files::write_durably(&meta, &text).map_err(io("write", &meta))?;
        std::fs::rename(&staging, &target).map_err(io("rename into place", &target))?;
        Ok((info, made))
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

/// Seconds since the epoch: a base's `created`.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Imports the image archive `image` as base `name` under `bases` (see the module docs).
/// Blocking; `progress` gets a line per step.
pub fn import(
    bases: &Path,
    name: &str,
    image: &Path,
    progress: &dyn Fn(&str),
) -> Result<Imported, BaseError> {
    let t0 = Instant::now();
    let name = new_name(bases, name)?;
    let (info, (layers, bytes)) = stage(bases, &name, |staging| {
        let unpacked = staging.join("image");
        progress(&format!("unpacking {}", image.display()));
        layers::unpack_archive(image, &unpacked)?;
        let found = oci::read(&unpacked, image)?;
        let rootfs = staging.join(ROOTFS_DIR);
        std::fs::create_dir(&rootfs).map_err(io("create", &rootfs))?;
        let mut bytes = 0;
        for (i, layer) in found.layers.iter().enumerate() {
            progress(&format!(
                "layer {}/{}: {}",
                i + 1,
                found.layers.len(),
                layer.digest_note()
            ));
            bytes += layers::apply(layer, &rootfs)?;
        }
        let python = find_python(&rootfs).ok_or(BaseError::NoPython)?;
        progress("installing the runtime");
        crate::cluster::base::post_process(&rootfs)?;
        crate::cluster::install_runtime(&rootfs)?;
        std::fs::remove_dir_all(&unpacked).map_err(io("remove", &unpacked))?;
        let info = BaseInfo {
            name: name.to_string(),
            origin: found.origin.clone(),
            created: now_secs(),
            env: found.env.clone(),
            workdir: found.workdir.clone(),
            python,
        };
        Ok((info, (found.layers.len(), bytes)))
    })?;
    Ok(Imported {
        info,
        layers,
        bytes,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The Python 3 of a root: `/usr/bin/python3` when it is a file or a link that stays in the
/// root and ends at one.
fn find_python(root: &Path) -> Option<String> {
    let mut rel = PathBuf::from("usr/bin/python3");
    for _ in 0..8 {
        let p = root.join(&rel);
        let md = std::fs::symlink_metadata(&p).ok()?;
        if md.is_file() {
            return Some(format!("/{}", rel.display()));
        }
        let target = std::fs::read_link(&p).ok()?;
        let next = if target.is_absolute() {
            target.strip_prefix("/").ok()?.to_owned()
        } else {
            rel.parent()?.join(target)
        };
        // Normalize away `..` without leaving the root.
        let mut clean = PathBuf::new();
        for c in next.components() {
            match c {
                std::path::Component::ParentDir => {
                    clean.pop();
                }
                std::path::Component::Normal(n) => clean.push(n),
                _ => {}
            }
        }
        rel = clean;
    }
    None
}

/// Every base under `bases`, by name; unfinished imports are skipped.
pub fn list(bases: &Path) -> Result<Vec<BaseInfo>, BaseError> {
    let entries = match std::fs::read_dir(bases) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("read", bases)(e)),
    };
    let mut out = Vec::new();
    for e in entries.filter_map(Result::ok) {
        let Ok(name) = LambdaName::parse(&e.file_name().to_string_lossy()) else {
            continue;
        };
        if let Ok(b) = worker::bases::find(bases, &name) {
            out.push(b.info);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Deletes base `name`.
pub fn delete(bases: &Path, name: &str) -> Result<(), BaseError> {
    let name = parse_name(name)?;
    let dir = bases.join(name.as_str());
    if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
        return Err(BaseError::NotFound(name.to_string()));
    }
    std::fs::remove_dir_all(&dir).map_err(io("remove", &dir))
}
