//! The `volumes` key: the access points through which a function mounts shared volumes
//! (`docs/volumes.md`).
//!
//! ```json
//! "volumes": [{"volume": "msg", "path": "/message", "mount": "/mnt/msg",
//!              "uid": 1001, "gid": 1001, "mode": "0750", "read_only": false}]
//! ```

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::keys::InvalidValue;
use super::KeyError;
use crate::name::LambdaName;

/// Most access points one function mounts.
pub const MAX_VOLUMES: usize = 8;
/// Where every access point is mounted: a directory under it.
pub const VOLUMES_MOUNT_DIR: &str = "/mnt";
/// The owner an access point gives when it names none (the first user of a Debian system).
pub const DEFAULT_AP_ID: u32 = 1000;
/// The mode of an access point's directory made on first use, when it names none.
pub const DEFAULT_AP_MODE: u32 = 0o755;

const KEY: &str = "volumes";
const FIELDS: &[&str] = &["volume", "path", "mount", "uid", "gid", "mode", "read_only"];

/// One access point: a directory of a volume, the identity the function has there, and where
/// the sandbox sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPoint {
    /// The volume (`admin volume create`), named like a function.
    pub volume: LambdaName,
    /// The directory inside the volume, relative to its root (empty: the root itself).
    pub path: PathBuf,
    /// Where the sandbox sees it: a directory under `/mnt`, relative to `/mnt`.
    pub mount: PathBuf,
    /// The owner of what the function creates there, as stored in the volume, and the ids
    /// it acts as there.
    pub uid: u32,
    pub gid: u32,
    /// The permissions of the directory when it is made on first use.
    pub mode: u32,
    pub read_only: bool,
}

impl AccessPoint {
    /// The mount point inside the sandbox (`/mnt/...`).
    pub fn mount_point(&self) -> PathBuf {
        Path::new(VOLUMES_MOUNT_DIR).join(&self.mount)
    }

    fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("volume".into(), self.volume.as_str().into());
        m.insert("path".into(), format!("/{}", self.path.display()).into());
        m.insert(
            "mount".into(),
            self.mount_point().display().to_string().into(),
        );
        m.insert("uid".into(), self.uid.into());
        m.insert("gid".into(), self.gid.into());
        m.insert("mode".into(), format!("{:04o}", self.mode).into());
        m.insert("read_only".into(), self.read_only.into());
        Value::Object(m)
    }
}

/// The `volumes` key as JSON, each access point with every field.
pub(crate) fn to_value(points: &[AccessPoint]) -> Value {
    points.iter().map(AccessPoint::to_value).collect()
}

/// Parses and checks the `volumes` key.
pub(crate) fn parse(value: &Value) -> Result<Vec<AccessPoint>, KeyError> {
    let bad = |m: String| KeyError::new(KEY, m);
    let Value::Array(items) = value else {
        return Err(bad(format!(
            "must be a list of access points ({{\"volume\": ..., \"mount\": \"/mnt/...\"}}), not {value}"
        )));
    };
    if items.len() > MAX_VOLUMES {
        return Err(bad(format!(
            "at most {MAX_VOLUMES} access points, not {}",
            items.len()
        )));
    }
    let mut points: Vec<AccessPoint> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let point = parse_one(item).map_err(|m| bad(format!("access point {i}: {m}")))?;
        if let Some(other) = points
            .iter()
            .find(|o| o.mount.starts_with(&point.mount) || point.mount.starts_with(&o.mount))
        {
            return Err(bad(format!(
                "access point {i}: mount {} overlaps {} (mounts may not nest)",
                point.mount_point().display(),
                other.mount_point().display()
            )));
        }
        points.push(point);
    }
    Ok(points)
}

fn parse_one(item: &Value) -> Result<AccessPoint, InvalidValue> {
    let Value::Object(map) = item else {
        return Err(InvalidValue(format!("must be an object, not {item}")));
    };
    if let Some(unknown) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(InvalidValue(format!(
            "unknown field {unknown:?} (known: {})",
            FIELDS.join(", ")
        )));
    }
    let text = |field: &str| -> Result<Option<&str>, InvalidValue> {
        match map.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(InvalidValue(format!(
                "{field} must be a string, not {other}"
            ))),
        }
    };
    let volume = text("volume")?
        .ok_or_else(|| InvalidValue("volume is required: the volume's name".to_owned()))?;
    let volume =
        LambdaName::parse(volume).map_err(|m| InvalidValue(format!("volume {volume:?}: {m}")))?;
    let path = match text("path")? {
        None => PathBuf::new(),
        Some(raw) => {
            let p = Path::new(raw);
            if !p.is_absolute() || !normal_below_root(p) {
                return Err(InvalidValue(format!(
                    "path {raw:?} must be an absolute path inside the volume, without '.' or '..'"
                )));
            }
            p.strip_prefix("/").unwrap_or(p).to_owned()
        }
    };
    let raw_mount = text("mount")?
        .ok_or_else(|| InvalidValue("mount is required: a directory under /mnt".to_owned()))?;
    let mount = Path::new(raw_mount)
        .strip_prefix(VOLUMES_MOUNT_DIR)
        .ok()
        .filter(|rel| rel.components().count() > 0 && normal_below_root(rel))
        .filter(|_| normal_below_root(Path::new(raw_mount)))
        .ok_or_else(|| {
            InvalidValue(format!("mount {raw_mount:?} must be a directory under /mnt (such as /mnt/data), without '.' or '..'"))
        })?
        .to_owned();
    if raw_mount.len() > 255 || path.as_os_str().len() > 1024 {
        return Err(InvalidValue("mount or path is too long".to_owned()));
    }
    let id = |field: &str| -> Result<u32, InvalidValue> {
        match map.get(field) {
            None => Ok(DEFAULT_AP_ID),
            Some(v) => match v.as_u64() {
                Some(0) => Err(InvalidValue(format!("{field} 0 (root) is not allowed"))),
                Some(n) if n < u64::from(u32::MAX) => Ok(n as u32),
                _ => Err(InvalidValue(format!(
                    "{field} must be a number from 1 to 4294967294, not {v}"
                ))),
            },
        }
    };
    let (uid, gid) = (id("uid")?, id("gid")?);
    let mode = match text("mode")? {
        None => DEFAULT_AP_MODE,
        Some(raw) => {
            let ok =
                (1..=4).contains(&raw.len()) && raw.bytes().all(|b| (b'0'..=b'7').contains(&b));
            match u32::from_str_radix(raw, 8) {
                Ok(m) if ok && m <= 0o777 => m,
                _ => {
                    return Err(InvalidValue(format!(
                        "mode {raw:?} must be octal permissions such as \"0750\" (at most 0777)"
                    )))
                }
            }
        }
    };
    let read_only = match map.get("read_only") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(InvalidValue(format!(
                "read_only must be true or false, not {other}"
            )))
        }
    };
    Ok(AccessPoint {
        volume,
        path,
        mount,
        uid,
        gid,
        mode,
        read_only,
    })
}

/// Whether every `/`-separated name after the leading `/` is a normal one: not empty (no
/// `//` or trailing `/`), not `.` or `..`, no NUL. `/` alone is the root, which passes.
fn normal_below_root(p: &Path) -> bool {
    let bytes = p.as_os_str().as_encoded_bytes();
    let rest = bytes.strip_prefix(b"/").unwrap_or(bytes);
    rest.is_empty()
        || rest
            .split(|b| *b == b'/')
            .all(|seg| !seg.is_empty() && seg != b"." && seg != b".." && !seg.contains(&0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_seeds_access_point_parses_and_round_trips() {
        let v = json!([{"volume": "msg", "path": "/message", "mount": "/mnt/msg",
                        "uid": 1001, "gid": 1001, "mode": "0750", "read_only": false}]);
        let points = parse(&v).unwrap();
        assert_eq!(points[0].path, Path::new("message"));
        assert_eq!(points[0].mount, Path::new("msg"));
        assert_eq!(points[0].mount_point(), Path::new("/mnt/msg"));
        assert_eq!(
            (points[0].uid, points[0].gid, points[0].mode),
            (1001, 1001, 0o750)
        );
        assert_eq!(to_value(&points), v);
        assert_eq!(parse(&to_value(&points)).unwrap(), points);
    }

    #[test]
    fn defaults_fill_what_an_access_point_omits() {
        let points = parse(&json!([{"volume": "data", "mount": "/mnt/data/in"}])).unwrap();
        let p = &points[0];
        assert_eq!(p.path, PathBuf::new());
        assert_eq!(
            (p.uid, p.gid, p.mode, p.read_only),
            (1000, 1000, 0o755, false)
        );
        assert_eq!(to_value(&points)[0]["path"], "/");
    }

    #[test]
    fn bad_access_points_are_refused_with_the_reason() {
        let cases = [
            (json!({"mount": "/mnt/a"}), "volume is required"),
            (
                json!({"volume": "a/b", "mount": "/mnt/a"}),
                "volume \"a/b\"",
            ),
            (json!({"volume": "v"}), "mount is required"),
            (json!({"volume": "v", "mount": "/tmp/a"}), "under /mnt"),
            (json!({"volume": "v", "mount": "/mnt"}), "under /mnt"),
            (json!({"volume": "v", "mount": "/mnt/../etc"}), "under /mnt"),
            (json!({"volume": "v", "mount": "/mnt/a/./b"}), "under /mnt"),
            (json!({"volume": "v", "mount": "/mntx/a"}), "under /mnt"),
            (
                json!({"volume": "v", "mount": "/mnt/a", "path": "message"}),
                "absolute",
            ),
            (
                json!({"volume": "v", "mount": "/mnt/a", "path": "/a/../.."}),
                "absolute",
            ),
            (
                json!({"volume": "v", "mount": "/mnt/a", "uid": 0}),
                "uid 0 (root)",
            ),
            (
                json!({"volume": "v", "mount": "/mnt/a", "gid": -1}),
                "gid must be",
            ),
            (
                json!({"volume": "v", "mount": "/mnt/a", "uid": "1001"}),
                "uid must be",
            ),
            (
                json!({"volume": "v", "mount": "/mnt/a", "mode": "0759"}),
                "mode \"0759\"",
            ),
            (
                json!({"volume": "v", "mount": "/mnt/a", "mode": "4755"}),
                "at most 0777",
            ),
            (
                json!({"volume": "v", "mount": "/mnt/a", "mode": 750}),
                "mode must be a string",
            ),
            (
                json!({"volume": "v", "mount": "/mnt/a", "read_only": "yes"}),
                "read_only",
            ),
            (
                json!({"volume": "v", "mount": "/mnt/a", "size": 1}),
                "unknown field \"size\"",
            ),
            (json!("msg"), "must be an object"),
        ];
        for (item, want) in cases {
            let err = parse(&json!([item.clone()])).unwrap_err();
            assert_eq!(err.key.as_deref(), Some("volumes"));
            assert!(err.message.contains(want), "{item}: {}", err.message);
        }
        assert!(parse(&json!({"volume": "v"})).is_err());
        let many: Vec<Value> = (0..9)
            .map(|i| json!({"volume": "v", "mount": format!("/mnt/{i}")}))
            .collect();
        assert!(parse(&Value::Array(many))
            .unwrap_err()
            .message
            .contains("at most 8"));
    }

    #[test]
    fn mounts_may_not_nest_or_repeat() {
        for (a, b) in [
            ("/mnt/a", "/mnt/a/b"),
            ("/mnt/a/b", "/mnt/a"),
            ("/mnt/x", "/mnt/x"),
        ] {
            let v = json!([{"volume": "v", "mount": a}, {"volume": "w", "mount": b}]);
            let err = parse(&v).unwrap_err();
            assert!(
                err.message.contains("may not nest"),
                "{a} {b}: {}",
                err.message
            );
        }
        let v = json!([{"volume": "v", "mount": "/mnt/ab"}, {"volume": "v", "mount": "/mnt/a"}]);
        assert_eq!(parse(&v).unwrap().len(), 2);
    }
}
