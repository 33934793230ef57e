//! Reading an unpacked image archive: an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/...`) or a `docker save` archive (`manifest.json`, a config and layer tars),
//! with the `oci-spec` crate's manifest and config types, every blob checked against its digest.

use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::image::{Arch, ImageConfiguration, ImageIndex, ImageManifest, Os};
use sha2::{Digest, Sha256};

use super::{io, BaseError};

/// One layer to apply.
#[derive(Debug, Clone)]
pub struct Layer {
    pub path: PathBuf,
    /// The digest of the file as stored (OCI: checked before use), for messages.
    pub digest: Option<String>,
    /// The sha256 of the uncompressed tar (the config's `diff_ids`), checked as it is applied.
    pub diff_id: Option<String>,
}

impl Layer {
    pub fn digest_note(&self) -> String {
        self.digest
            .clone()
            .or_else(|| self.diff_id.clone())
            .unwrap_or_else(|| self.path.display().to_string())
    }
}

/// What an image gives a base.
#[derive(Debug, Clone)]
pub struct Found {
    pub origin: String,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub layers: Vec<Layer>,
}

fn bad(image: &Path, reason: impl Into<String>) -> BaseError {
    BaseError::Image {
        path: image.to_owned(),
        reason: reason.into(),
    }
}

/// The sha256 of a file, in hex.
pub fn sha256_file(path: &Path) -> Result<String, BaseError> {
    let mut f = std::fs::File::open(path).map_err(io("open", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io("read", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(worker::hex(&h.finalize()))
}

/// `sha256:<64 hex>` split, or an error naming `what`.
fn hex_of<'a>(image: &Path, digest: &'a str, what: &str) -> Result<&'a str, BaseError> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            bad(
                image,
                format!("{what} digest {digest:?} is not sha256:<64 hex digits>"),
            )
        })?;
    Ok(hex)
}

/// The blob of `digest` in an OCI layout, checked.
fn blob(dir: &Path, image: &Path, digest: &str, what: &str) -> Result<PathBuf, BaseError> {
    let hex = hex_of(image, digest, what)?;
    let path = dir.join("blobs/sha256").join(hex);
    if !path.is_file() {
        return Err(bad(image, format!("{what} blob {digest} is missing")));
    }
    let actual = sha256_file(&path)?;
    if actual != hex {
        return Err(BaseError::Digest {
            what: format!(
                "{what} {}",
                path.strip_prefix(dir).unwrap_or(&path).display()
            ),
            expected: hex.to_owned(),
            actual,
        });
    }
    Ok(path)
}

/// Reads the unpacked archive at `dir` (`image` is the archive, for messages).
pub fn read(dir: &Path, image: &Path) -> Result<Found, BaseError> {
    if dir.join("index.json").is_file() && dir.join("oci-layout").is_file() {
        read_oci(dir, image)
    } else if dir.join("manifest.json").is_file() {
        read_docker(dir, image)
    } else {
        Err(bad(
            image,
            "neither an OCI image layout (oci-layout, index.json) nor a docker save archive (manifest.json)",
        ))
    }
}

fn host_arch() -> Arch {
    if cfg!(target_arch = "aarch64") {
        Arch::ARM64
    } else {
        Arch::Amd64
    }
}

fn read_oci(dir: &Path, image: &Path) -> Result<Found, BaseError> {
    let index = ImageIndex::from_file(dir.join("index.json"))
        .map_err(|e| bad(image, format!("index.json: {e}")))?;
    let manifests = index.manifests();
    let chosen = match manifests.as_slice() {
        [] => return Err(bad(image, "index.json lists no manifest")),
        [one] => one,
        many => many
            .iter()
            .find(|m| {
                m.platform()
                    .as_ref()
                    .is_some_and(|p| *p.os() == Os::Linux && *p.architecture() == host_arch())
            })
            .ok_or_else(|| {
                bad(
                    image,
                    "no manifest for linux on this machine's architecture",
                )
            })?,
    };
    let manifest_path = blob(dir, image, chosen.digest().as_ref(), "the manifest")?;
    let manifest = ImageManifest::from_file(&manifest_path)
        .map_err(|e| bad(image, format!("the manifest: {e}")))?;
    let config_path = blob(
        dir,
        image,
        manifest.config().digest().as_ref(),
        "the config",
    )?;
    let config = ImageConfiguration::from_file(&config_path)
        .map_err(|e| bad(image, format!("the config: {e}")))?;
    let diff_ids = config.rootfs().diff_ids().clone();
    if diff_ids.len() != manifest.layers().len() {
        return Err(bad(
            image,
            format!(
                "the manifest has {} layers, the config {} diff_ids",
                manifest.layers().len(),
                diff_ids.len()
            ),
        ));
    }
    let mut layers = Vec::new();
    for (i, (d, diff)) in manifest.layers().iter().zip(diff_ids).enumerate() {
        let media = d.media_type().to_string();
        if !media.contains("tar") {
            return Err(bad(
                image,
                format!("layer {} has media type {media}, not a tar", i + 1),
            ));
        }
        let digest = d.digest().to_string();
        let path = blob(dir, image, &digest, &format!("layer {}", i + 1))?;
        layers.push(Layer {
            path,
            digest: Some(digest),
            diff_id: Some(diff),
        });
    }
    let (env, workdir) = env_and_workdir(&config);
    Ok(Found {
        origin: format!("oci {}", chosen.digest()),
        env,
        workdir,
        layers,
    })
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    layers: Vec<String>,
}

/// A path named inside `dir` by the archive: relative, no `..`.
fn inside(dir: &Path, image: &Path, rel: &str) -> Result<PathBuf, BaseError> {
    let p = Path::new(rel);
    let normal = p
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if rel.is_empty() || !normal {
        return Err(bad(
            image,
            format!("manifest.json names {rel:?}, outside the archive"),
        ));
    }
    let full = dir.join(p);
    if !full.is_file() {
        return Err(bad(
            image,
            format!("manifest.json names {rel:?}, which is missing"),
        ));
    }
    Ok(full)
}

fn read_docker(dir: &Path, image: &Path) -> Result<Found, BaseError> {
    let text = std::fs::read_to_string(dir.join("manifest.json"))
        .map_err(io("read", &dir.join("manifest.json")))?;
    let manifests: Vec<DockerManifest> =
        serde_json::from_str(&text).map_err(|e| bad(image, format!("manifest.json: {e}")))?;
    let [m] = manifests.as_slice() else {
        return Err(bad(
            image,
            format!("manifest.json holds {} images, not one", manifests.len()),
        ));
    };
    let config_path = inside(dir, image, &m.config)?;
    // The config's name is its digest (`<hex>.json` or `blobs/sha256/<hex>`): checked.
    let stem = Path::new(&m.config)
        .file_name()
        .and_then(|f| f.to_str())
        .map(|f| f.trim_end_matches(".json").to_owned())
        .unwrap_or_default();
    let config_hex = sha256_file(&config_path)?;
    if stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit()) && stem != config_hex {
        return Err(BaseError::Digest {
            what: format!("the config {}", m.config),
            expected: stem,
            actual: config_hex,
        });
    }
    let config = ImageConfiguration::from_file(&config_path)
        .map_err(|e| bad(image, format!("the config: {e}")))?;
    let diff_ids = config.rootfs().diff_ids().clone();
    if diff_ids.len() != m.layers.len() {
        return Err(bad(
            image,
            format!(
                "manifest.json has {} layers, the config {} diff_ids",
                m.layers.len(),
                diff_ids.len()
            ),
        ));
    }
    let mut layers = Vec::new();
    for (rel, diff) in m.layers.iter().zip(diff_ids) {
        layers.push(Layer {
            path: inside(dir, image, rel)?,
            digest: None,
            diff_id: Some(diff),
        });
    }
    let (env, workdir) = env_and_workdir(&config);
    Ok(Found {
        origin: format!("docker-save sha256:{config_hex}"),
        env,
        workdir,
        layers,
    })
}

fn env_and_workdir(config: &ImageConfiguration) -> (Vec<String>, Option<String>) {
    let Some(c) = config.config() else {
        return (Vec::new(), None);
    };
    let env = c
        .env()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|kv| kv.split_once('=').is_some_and(|(k, _)| !k.is_empty()) && !kv.contains('\0'))
        .collect();
    let workdir = c
        .working_dir()
        .clone()
        .filter(|w| w.starts_with('/') && !w.contains('\0'));
    (env, workdir)
}
