//! Shared volumes: directories under the cluster (`<cluster>/volumes/<name>/`) that functions
//! mount through access points (`docs/volumes.md`).
//!
//! A volume's directory holds `volume.json` (its name, size limit and creation time, written
//! last: a directory without it is a creation that did not finish), `data/` (the volume's
//! root) and, for a size-limited volume, `image.ext4`: an ext4 file system in a sparse file,
//! loop-mounted on `data/` (`nosuid,nodev`) by whoever needs it first ([`Volumes::data_dir`],
//! under the volume's `lock`), so that it is there again after a reboot. The kernel's project
//! quotas would need the host file system mounted with `prjquota`, which cannot be assumed;
//! a loop device works on any host with the `loop` module and `mkfs.ext4`.
//!
//! Every worker of the cluster (and `admin`) reads the same directories, so concurrent
//! sandboxes of one or more functions on one or more workers see the same files, with the
//! host file system's semantics (`flock`, `fcntl` locks, atomic `rename`).

mod access;
mod image;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use access::{open_access_point, AccessError};

use crate::name::LambdaName;

/// A volume's metadata file.
const META_FILE: &str = "volume.json";
/// A volume's root directory (a mount point, for a size-limited volume).
const DATA_DIR: &str = "data";
/// A size-limited volume's file system image.
const IMAGE_FILE: &str = "image.ext4";
/// The lock taken while a volume is mounted or deleted.
const LOCK_FILE: &str = "lock";
/// The smallest and largest size limit, in MiB.
pub const MIN_SIZE_MB: u64 = 16;
pub const MAX_SIZE_MB: u64 = 1 << 20;
/// Most volumes one cluster holds.
pub const MAX_VOLUMES: usize = 1024;

/// A failed volume operation, naming the volume or path.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {0} does not exist (admin volume create makes one)")]
    NotFound(String),
    #[error("volume {0} already exists")]
    Exists(String),
    #[error("invalid volume name {name:?}: {reason}")]
    Name { name: String, reason: &'static str },
    #[error("a volume's size must be from {MIN_SIZE_MB} to {MAX_SIZE_MB} MiB, not {0}")]
    Size(u64),
    #[error("this cluster already has {MAX_VOLUMES} volumes")]
    TooMany,
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a valid volume.json: {source}", path.display())]
    Meta {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot {what} for volume {volume}: {detail}")]
    Image {
        volume: String,
        what: &'static str,
        detail: String,
    },
}

impl VolumeError {
    fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_owned();
        move |source| Self::Io { what, path, source }
    }
}

/// What `volume.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeInfo {
    pub name: String,
    /// The size limit in MiB; `None`: bounded by the host file system only.
    pub size_mb: Option<u64>,
    /// Seconds since the epoch.
    pub created: u64,
}

/// The volumes of one cluster: the directory holding them.
#[derive(Debug, Clone)]
pub struct Volumes {
    dir: PathBuf,
}

impl Volumes {
    /// The volumes under `dir` (`<cluster>/volumes`), which need not exist yet.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Where they live.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn volume_dir(&self, name: &LambdaName) -> PathBuf {
        self.dir.join(name.as_str())
    }

    /// Makes volume `name`, size-limited to `size_mb` MiB when given (an ext4 image, mounted
    /// at once). Blocking; for a limited volume, `mkfs.ext4` and `mount` run. A failure
    /// leaves nothing behind.
    pub fn create(&self, name: &str, size_mb: Option<u64>) -> Result<VolumeInfo, VolumeError> {
        let name = parse_name(name)?;
        if let Some(mb) = size_mb {
            if !(MIN_SIZE_MB..=MAX_SIZE_MB).contains(&mb) {
                return Err(VolumeError::Size(mb));
            }
        }
        std::fs::create_dir_all(&self.dir).map_err(VolumeError::io("create", &self.dir))?;
        if self.names()?.len() >= MAX_VOLUMES {
            return Err(VolumeError::TooMany);
        }
        let dir = self.volume_dir(&name);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(VolumeError::Exists(name.to_string()))
            }
            Err(e) => return Err(VolumeError::io("create", &dir)(e)),
        }
        let made = (|| {
            let data = dir.join(DATA_DIR);
            std::fs::create_dir(&data).map_err(VolumeError::io("create", &data))?;
            if let Some(mb) = size_mb {
                image::make(name.as_str(), &dir.join(IMAGE_FILE), mb)?;
                self.data_dir(name.as_str())?;
            }
            let info = VolumeInfo {
                name: name.to_string(),
                size_mb,
                created: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            };
            let text = serde_json::to_vec_pretty(&info).map_err(|source| VolumeError::Meta {
                path: dir.join(META_FILE),
                source,
            })?;
            crate::files::write_durably(&dir.join(META_FILE), &text)
                .map_err(VolumeError::io("write", &dir.join(META_FILE)))?;
            Ok(info)
        })();
        if made.is_err() {
            let _ = self.remove_dir(&dir);
        }
        made
    }

    /// Every volume, by name; a directory without its `volume.json` (a creation that did not
    /// finish) is skipped. Blocking.
    pub fn list(&self) -> Result<Vec<VolumeInfo>, VolumeError> {
        let mut out = Vec::new();
        for name in self.names()? {
            match self.info(&name) {
                Ok(info) => out.push(info),
                Err(VolumeError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Volume `name`'s metadata. Blocking.
    pub fn info(&self, name: &str) -> Result<VolumeInfo, VolumeError> {
        let name = parse_name(name)?;
        let path = self.volume_dir(&name).join(META_FILE);
        let text = match crate::files::read_regular_file(&path, 64 * 1024) {
            Ok(Some(text)) => text,
            Ok(None) => return Err(VolumeError::NotFound(name.to_string())),
            Err(source) => {
                return Err(VolumeError::Io {
                    what: "read",
                    path,
                    source: std::io::Error::other(source.to_string()),
                })
            }
        };
        serde_json::from_str(&text).map_err(|source| VolumeError::Meta { path, source })
    }

    /// The root directory of volume `name` on the host, mounted first if it is a
    /// size-limited volume whose image is not mounted yet (after a reboot). Blocking.
    pub fn data_dir(&self, name: &str) -> Result<PathBuf, VolumeError> {
        let name = parse_name(name)?;
        let dir = self.volume_dir(&name);
        let data = dir.join(DATA_DIR);
        let image = dir.join(IMAGE_FILE);
        if !std::fs::symlink_metadata(&data).is_ok_and(|m| m.is_dir()) {
            return Err(VolumeError::NotFound(name.to_string()));
        }
        if std::fs::symlink_metadata(&image).is_ok_and(|m| m.is_file()) {
            let _lock = lock(&dir)?;
            if !image::is_mounted(&dir, &data)? {
                image::mount(name.as_str(), &image, &data)?;
            }
        }
        Ok(data)
    }

    /// Deletes volume `name` and everything on it: its image is unmounted first (lazily:
    /// sandboxes that have it mounted keep it until they end). Blocking.
    pub fn delete(&self, name: &str) -> Result<(), VolumeError> {
        let name = parse_name(name)?;
        let dir = self.volume_dir(&name);
        if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            return Err(VolumeError::NotFound(name.to_string()));
        }
        self.remove_dir(&dir)
    }

    fn remove_dir(&self, dir: &Path) -> Result<(), VolumeError> {
        let data = dir.join(DATA_DIR);
        {
            let _lock = lock(dir)?;
            if std::fs::symlink_metadata(&data).is_ok_and(|m| m.is_dir())
                && image::is_mounted(dir, &data)?
            {
                image::unmount(&data)?;
            }
        }
        std::fs::remove_dir_all(dir).map_err(VolumeError::io("remove", dir))
    }

    fn names(&self) -> Result<Vec<String>, VolumeError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(VolumeError::io("read", &self.dir)(e)),
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| LambdaName::parse(n).is_ok())
            .collect();
        names.sort();
        Ok(names)
    }
}

fn parse_name(raw: &str) -> Result<LambdaName, VolumeError> {
    LambdaName::parse(raw).map_err(|reason| VolumeError::Name {
        name: raw.to_owned(),
        reason,
    })
}

/// The volume's lock, held while it is mounted, checked or removed (two workers starting at
/// once mount an image once).
fn lock(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, VolumeError> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(VolumeError::io("open", &path))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, errno)| {
        VolumeError::Io {
            what: "lock",
            path,
            source: errno.into(),
        }
    })
}

#[cfg(test)]
mod tests;
