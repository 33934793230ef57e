//! Detecting the machine's cgroup setup from `/proc/self/mountinfo`: which v1 hierarchies hold
//! the controllers we use, or where the unified (v2) hierarchy is. Never assumes mount paths.
//!
//! Rules: if a v1 hierarchy holds memory, pids or freezer, the machine is v1 (hybrid machines
//! included; their cgroup2 mount is ignored) and all three are required. Otherwise the machine is
//! v2: the cgroup2 mount (preferring `/sys/fs/cgroup`) whose `cgroup.controllers` lists memory and
//! pids. The mount table is read by [`crate::mountinfo`].

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use super::{CgroupError, CgroupSetup, Result};
use crate::mountinfo::{self, SELF_MOUNTINFO as MOUNTINFO};

/// v1 controllers without which no sandbox can be confined.
pub(crate) const V1_REQUIRED: [&str; 3] = ["memory", "pids", "freezer"];
/// v1 controllers used when present.
pub(crate) const V1_OPTIONAL: [&str; 3] = ["cpu", "cpuacct", "devices"];
/// v2 controllers that must be available at the root.
pub(crate) const V2_REQUIRED: [&str; 2] = ["memory", "pids"];

/// The usual place of the unified hierarchy on a pure v2 machine.
const V2_USUAL_ROOT: &str = "/sys/fs/cgroup";

/// Reads the controllers listed in a cgroup2 root's `cgroup.controllers`.
type ControllersOf<'a> = &'a dyn Fn(&Path) -> io::Result<String>;

/// [`CgroupSetup::detect`]: mountinfo, then the candidate v2 roots' `cgroup.controllers`.
pub(crate) fn detect() -> Result<CgroupSetup> {
    let mounts = mountinfo::mounts()?;
    let read = |root: &Path| std::fs::read_to_string(root.join("cgroup.controllers"));
    decide(mounts, Some(&read))
}

/// Decides the setup from mountinfo `text` (see [`decide`]).
pub(crate) fn parse(text: &[u8], controllers_of: Option<ControllersOf<'_>>) -> Result<CgroupSetup> {
    decide(
        mountinfo::parse(text, Path::new(MOUNTINFO))?,
        controllers_of,
    )
}

/// Decides the setup from the mount table. With `controllers_of`, a v2 root is only accepted if
/// its `cgroup.controllers` lists every [`V2_REQUIRED`] controller; without it (the pure parser),
/// the preferred cgroup2 mount is taken as is.
fn decide(
    mounts: Vec<mountinfo::MountEntry>,
    controllers_of: Option<ControllersOf<'_>>,
) -> Result<CgroupSetup> {
    let mut v1: BTreeMap<String, (PathBuf, bool)> = BTreeMap::new();
    let mut v2_roots: Vec<PathBuf> = Vec::new();
    for mount in mounts {
        match mount.fs_type.as_str() {
            "cgroup" => {
                let whole = mount.root == Path::new("/");
                for controller in mount.super_options.split(',') {
                    if !V1_REQUIRED.contains(&controller) && !V1_OPTIONAL.contains(&controller) {
                        continue;
                    }
                    // The first mount of a hierarchy wins, unless a later one shows all of it.
                    match v1.get(controller) {
                        Some((_, true)) => {}
                        Some((_, false)) if !whole => {}
                        _ => {
                            v1.insert(controller.to_string(), (mount.mount_point.clone(), whole));
                        }
                    }
                }
            }
            "cgroup2" if !v2_roots.contains(&mount.mount_point) => v2_roots.push(mount.mount_point),
            _ => {}
        }
    }

    let present: Vec<&str> = V1_REQUIRED
        .into_iter()
        .filter(|c| v1.contains_key(*c))
        .collect();
    if !present.is_empty() {
        let missing: Vec<&str> = V1_REQUIRED
            .into_iter()
            .filter(|c| !v1.contains_key(*c))
            .collect();
        if !missing.is_empty() {
            return Err(CgroupError::NoSetup {
                path: MOUNTINFO.into(),
                reason: format!(
                    "cgroup v1 hierarchies are mounted for {} but none for the required {}",
                    present.join(", "),
                    missing.join(", ")
                ),
            });
        }
        let controllers = v1.into_iter().map(|(c, (mount, _))| (c, mount)).collect();
        return Ok(CgroupSetup::V1 { controllers });
    }

    // Pure v2: try the usual root first, then the others in mount order.
    v2_roots.sort_by_key(|r| r != Path::new(V2_USUAL_ROOT));
    let Some(read) = controllers_of else {
        return match v2_roots.into_iter().next() {
            Some(root) => Ok(CgroupSetup::V2 { root }),
            None => Err(no_hierarchy()),
        };
    };
    let mut first_error = None;
    for root in &v2_roots {
        let file = root.join("cgroup.controllers");
        match read(root) {
            Ok(listed) => {
                let listed: Vec<&str> = listed.split_whitespace().collect();
                match V2_REQUIRED.into_iter().find(|c| !listed.contains(c)) {
                    None => return Ok(CgroupSetup::V2 { root: root.clone() }),
                    Some(controller) => {
                        first_error.get_or_insert(CgroupError::Controller {
                            path: file,
                            controller: controller.to_string(),
                        });
                    }
                }
            }
            Err(source) => {
                first_error.get_or_insert(CgroupError::Read { path: file, source });
            }
        }
    }
    Err(first_error.unwrap_or_else(no_hierarchy))
}

fn no_hierarchy() -> CgroupError {
    CgroupError::NoSetup {
        path: MOUNTINFO.into(),
        reason: "no cgroup v1 memory hierarchy and no cgroup2 mount".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::CgroupVersion;

    /// This development machine (Debian 12): v1 controllers each in their own hierarchy, plus an
    /// empty cgroup2 at /sys/fs/cgroup/unified.
    const HYBRID: &str = "\
22 28 0:20 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// Ubuntu 24.04: only the unified hierarchy.
    const PURE_V2: &str = "\
24 31 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
36 24 0:31 / /sys/fs/pstore rw,nosuid,nodev,noexec,relatime shared:10 - pstore pstore rw
";

    /// An older systemd machine: v1 only, cpu and cpuacct (and net_cls, net_prio) co-mounted.
    const PURE_V1: &str = "\
25 18 0:21 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:22 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
28 25 0:24 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,cpu,cpuacct
29 25 0:25 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,net_cls,net_prio
30 25 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,pids
32 25 0:28 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,freezer
";

    fn controllers(setup: &CgroupSetup) -> &BTreeMap<String, PathBuf> {
        match setup {
            CgroupSetup::V1 { controllers } => controllers,
            CgroupSetup::V2 { .. } => panic!("expected v1, got {setup:?}"),
        }
    }

    #[test]
    fn hybrid_uses_v1_and_ignores_the_unified_mount() {
        let setup = CgroupSetup::from_mountinfo(HYBRID).unwrap();
        assert_eq!(setup.version(), CgroupVersion::V1);
        let got: Vec<(&str, &Path)> = controllers(&setup)
            .iter()
            .map(|(c, p)| (c.as_str(), p.as_path()))
            .collect();
        assert_eq!(
            got,
            [
                ("cpu", Path::new("/sys/fs/cgroup/cpu")),
                ("cpuacct", Path::new("/sys/fs/cgroup/cpuacct")),
                ("devices", Path::new("/sys/fs/cgroup/devices")),
                ("freezer", Path::new("/sys/fs/cgroup/freezer")),
                ("memory", Path::new("/sys/fs/cgroup/memory")),
                ("pids", Path::new("/sys/fs/cgroup/pids")),
            ]
        );
    }

    #[test]
    fn pure_v2_uses_the_unified_mount() {
        let setup = CgroupSetup::from_mountinfo(PURE_V2).unwrap();
        assert_eq!(setup.version(), CgroupVersion::V2);
        assert_eq!(
            setup,
            CgroupSetup::V2 {
                root: "/sys/fs/cgroup".into()
            }
        );
    }

    #[test]
    fn pure_v1_maps_comounted_controllers_to_one_hierarchy() {
        let setup = CgroupSetup::from_mountinfo(PURE_V1).unwrap();
        let c = controllers(&setup);
        assert_eq!(c.len(), 5, "{c:?}");
        assert_eq!(c["cpu"], Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(c["cpuacct"], c["cpu"]);
        assert_eq!(c["memory"], Path::new("/sys/fs/cgroup/memory"));
        assert!(!c.contains_key("net_cls") && !c.contains_key("name=systemd"));
    }

    #[test]
    fn missing_required_v1_controller_is_named() {
        let text: String = HYBRID
            .lines()
            .filter(|l| !l.contains("freezer"))
            .map(|l| format!("{l}\n"))
            .collect();
        let err = CgroupSetup::from_mountinfo(&text).unwrap_err().to_string();
        assert!(err.contains("freezer") && err.contains(MOUNTINFO), "{err}");
    }

    #[test]
    fn no_cgroups_at_all_is_an_error() {
        let err = CgroupSetup::from_mountinfo("22 28 0:20 / /proc rw,nosuid - proc proc rw\n")
            .unwrap_err();
        assert!(matches!(err, CgroupError::NoSetup { .. }), "{err}");
    }

    #[test]
    fn escaped_mount_points_are_decoded() {
        let text =
            "35 24 0:30 / /mnt/my\\040cgroups\\134x rw shared:9 master:2 - cgroup2 cgroup2 rw\n";
        let setup = CgroupSetup::from_mountinfo(text).unwrap();
        assert_eq!(
            setup,
            CgroupSetup::V2 {
                root: "/mnt/my cgroups\\x".into()
            }
        );
    }

    #[test]
    fn a_non_utf8_mount_elsewhere_does_not_hide_the_cgroups() {
        let mut text = b"50 22 0:50 / /tmp/odd\xffname rw - tmpfs tmpfs rw\n".to_vec();
        text.extend_from_slice(PURE_V2.as_bytes());
        assert_eq!(
            parse(&text, None).unwrap(),
            CgroupSetup::V2 {
                root: "/sys/fs/cgroup".into()
            }
        );
    }

    #[test]
    fn malformed_line_is_reported() {
        let err = CgroupSetup::from_mountinfo("35 24 0:30 / /sys/fs/cgroup rw\n").unwrap_err();
        assert!(err.to_string().contains("/sys/fs/cgroup rw"), "{err}");
    }

    #[test]
    fn v2_root_must_list_memory_and_pids() {
        let text = format!("{PURE_V2}50 24 0:40 / /run/other rw - cgroup2 cgroup2 rw\n");
        // The usual root lacks pids; the other mount has everything.
        let read = |root: &Path| -> io::Result<String> {
            Ok(if root == Path::new("/sys/fs/cgroup") {
                "cpu memory io\n".to_string()
            } else {
                "cpuset cpu io memory hugetlb pids rdma misc\n".to_string()
            })
        };
        let setup = parse(text.as_bytes(), Some(&read)).unwrap();
        assert_eq!(
            setup,
            CgroupSetup::V2 {
                root: "/run/other".into()
            }
        );

        let read = |_: &Path| -> io::Result<String> { Ok("cpu memory\n".to_string()) };
        let err = parse(PURE_V2.as_bytes(), Some(&read)).unwrap_err();
        match &err {
            CgroupError::Controller { path, controller } => {
                assert_eq!(path, Path::new("/sys/fs/cgroup/cgroup.controllers"));
                assert_eq!(controller, "pids");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn detect_agrees_with_this_machine() {
        // Whatever this machine is, detect() must either succeed or name what is missing.
        match CgroupSetup::detect() {
            Ok(setup) => eprintln!("detected {setup:?}"),
            Err(e) => eprintln!("detect failed (fine on machines without cgroups): {e}"),
        }
    }
}
