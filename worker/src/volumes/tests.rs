use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;
use crate::lambda_config::AccessPoint;

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn point(path: &str, mode: u32) -> AccessPoint {
    AccessPoint {
        volume: LambdaName::parse("msg").unwrap(),
        path: PathBuf::from(path),
        mount: PathBuf::from("msg"),
        uid: 1001,
        gid: 1002,
        mode,
        read_only: false,
    }
}

#[test]
fn create_list_info_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let v = Volumes::new(tmp.path().join("volumes"));
    assert!(v.list().unwrap().is_empty());
    let info = v.create("msg", None).unwrap();
    assert_eq!((info.name.as_str(), info.size_mb), ("msg", None));
    assert!(matches!(v.create("msg", None), Err(VolumeError::Exists(_))));
    v.create("other", None).unwrap();
    let names: Vec<String> = v.list().unwrap().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["msg", "other"]);
    assert_eq!(v.info("msg").unwrap(), info);
    let data = v.data_dir("msg").unwrap();
    std::fs::write(data.join("f"), "kept").unwrap();
    v.delete("msg").unwrap();
    assert!(!data.exists());
    assert!(matches!(v.delete("msg"), Err(VolumeError::NotFound(_))));
    assert!(matches!(v.data_dir("msg"), Err(VolumeError::NotFound(_))));
    assert!(matches!(v.info("msg"), Err(VolumeError::NotFound(_))));
}

#[test]
fn bad_names_and_sizes_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let v = Volumes::new(tmp.path());
    for bad in ["", "../x", "a/b", ".hidden", &"x".repeat(65)] {
        let err = v.create(bad, None).unwrap_err();
        assert!(matches!(err, VolumeError::Name { .. }), "{bad}: {err}");
    }
    for mb in [0, 15, MAX_SIZE_MB + 1] {
        assert!(matches!(
            v.create("big", Some(mb)),
            Err(VolumeError::Size(_))
        ));
    }
    // Nothing was left behind by the refusals.
    assert!(v.list().unwrap().is_empty());
}

#[test]
fn an_unfinished_creation_is_not_listed_and_can_be_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let v = Volumes::new(tmp.path());
    std::fs::create_dir_all(tmp.path().join("half/data")).unwrap();
    assert!(v.list().unwrap().is_empty());
    v.delete("half").unwrap();
    assert!(!tmp.path().join("half").exists());
}

#[test]
fn an_access_point_is_made_once_with_its_owner_and_mode() {
    if !root() {
        eprintln!("skipped: making directories for another owner needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let fd = open_access_point(data, &point("a/message", 0o750)).unwrap();
    drop(fd);
    let md = std::fs::metadata(data.join("a/message")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1001, 1002));
    assert_eq!(md.permissions().mode() & 0o7777, 0o750);
    let parent = std::fs::metadata(data.join("a")).unwrap();
    assert_eq!(
        (parent.uid(), parent.permissions().mode() & 0o777),
        (0, 0o755)
    );
    // A second open finds it and changes nothing; no temporary entry is left.
    std::fs::set_permissions(data.join("a/message"), PermissionsExt::from_mode(0o700)).unwrap();
    open_access_point(data, &point("a/message", 0o777)).unwrap();
    let md = std::fs::metadata(data.join("a/message")).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o700);
    let names: Vec<_> = std::fs::read_dir(data.join("a")).unwrap().collect();
    assert_eq!(names.len(), 1);
    // The root of the volume is an access point too.
    open_access_point(data, &point("", 0o750)).unwrap();
}

#[test]
fn links_in_an_access_points_path_are_never_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let data = tmp.path();
    std::os::unix::fs::symlink(outside.path(), data.join("evil")).unwrap();
    let err = open_access_point(data, &point("evil/message", 0o750)).unwrap_err();
    assert_eq!(err.errno, nix::errno::Errno::ENOTDIR, "{err}");
    assert!(err.to_string().contains("/evil"), "{err}");
    let err = open_access_point(data, &point("evil", 0o750)).unwrap_err();
    assert_eq!(err.errno, nix::errno::Errno::ENOTDIR, "{err}");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    std::fs::write(data.join("file"), "x").unwrap();
    assert!(open_access_point(data, &point("file", 0o750)).is_err());
}

#[test]
fn a_size_limited_volume_is_an_image_mounted_on_demand() {
    if !root() {
        eprintln!("skipped: loop mounts need root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let v = Volumes::new(tmp.path());
    let info = v.create("small", Some(16)).unwrap();
    assert_eq!(info.size_mb, Some(16));
    let dir = tmp.path().join("small");
    let data = v.data_dir("small").unwrap();
    assert!(image::is_mounted(&dir, &data).unwrap());
    // The limit holds: writing more than 16 MiB fails with ENOSPC.
    let big = vec![7u8; 20 * 1024 * 1024];
    let err = std::fs::write(data.join("big"), &big).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    // After an unmount (a reboot), the next use mounts it again, with its files.
    std::fs::write(data.join("kept"), "yes").unwrap();
    image::unmount(&data).unwrap();
    assert!(!image::is_mounted(&dir, &data).unwrap());
    let again = v.data_dir("small").unwrap();
    assert_eq!(std::fs::read_to_string(again.join("kept")).unwrap(), "yes");
    v.delete("small").unwrap();
    assert!(!dir.exists());
    assert!(!mounted_under(tmp.path()));
}

fn mounted_under(dir: &Path) -> bool {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = dir.display().to_string();
    text.lines().any(|l| l.contains(&dir))
}
