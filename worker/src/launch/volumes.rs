//! A sandbox's volumes: each access point's directory opened (made on first use), cloned as a
//! detached mount id-mapped so that the sandbox's host user acts as the access point's uid and
//! gid on the volume, read-only where the access point says so.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use sandbox::DetachedMount;

use crate::manager::{StartError, VolumeMount};

/// Id-mapping namespaces kept at most (one per access point identity and sandbox user).
const MAX_NAMESPACES: usize = 256;

/// (on-disk uid, host uid, on-disk gid, host gid).
type MapKey = (u32, u32, u32, u32);

/// The id-mapping user namespaces, made once per identity pair and kept (a namespace is a
/// few hundred bytes of kernel memory; making one costs a `clone`).
#[derive(Debug, Default)]
pub struct VolumeMapper {
    namespaces: Mutex<HashMap<MapKey, Arc<OwnedFd>>>,
}

impl VolumeMapper {
    /// The detached mounts of `volumes` for a sandbox whose user is `host` (uid, gid) on the
    /// host, each with its path under `/mnt`. Blocking.
    pub fn mounts(
        &self,
        volumes: &[VolumeMount],
        host: (u32, u32),
    ) -> Result<Vec<(Arc<DetachedMount>, PathBuf)>, StartError> {
        let mut out = Vec::with_capacity(volumes.len());
        for v in volumes {
            let p = &v.point;
            let dir = crate::volumes::open_access_point(&v.data, p)?;
            let ns = self.namespace((p.uid, host.0, p.gid, host.1), &p.volume)?;
            let path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
            let mount = DetachedMount::clone_mapped(&path, !p.read_only, Some(ns.as_fd()))
                .map_err(|source| StartError::VolumeMount {
                    volume: p.volume.to_string(),
                    source,
                })?;
            out.push((Arc::new(mount), p.mount.clone()));
        }
        Ok(out)
    }

    fn namespace(
        &self,
        key: MapKey,
        volume: &crate::name::LambdaName,
    ) -> Result<Arc<OwnedFd>, StartError> {
        let mut map = self
            .namespaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(ns) = map.get(&key) {
            return Ok(Arc::clone(ns));
        }
        let (disk_uid, host_uid, disk_gid, host_gid) = key;
        let ns = sandbox::mapping_namespace((disk_uid, host_uid), (disk_gid, host_gid)).map_err(
            |source| StartError::VolumeMap {
                volume: volume.to_string(),
                source,
            },
        )?;
        if map.len() >= MAX_NAMESPACES {
            map.clear();
        }
        let ns = Arc::new(ns);
        map.insert(key, Arc::clone(&ns));
        Ok(ns)
    }
}
