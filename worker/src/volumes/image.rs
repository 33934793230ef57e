//! A size-limited volume's ext4 image: made with `mkfs.ext4` in a sparse file, loop-mounted
//! with util-linux's `mount` (which finds a free loop device and sets it to clear itself once
//! unmounted), unmounted lazily.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use super::VolumeError;

/// Makes the ext4 file system of `mb` MiB in the new file `image`: no blocks reserved for
/// root, its root directory owned by root, mode 0755.
pub(super) fn make(volume: &str, image: &Path, mb: u64) -> Result<(), VolumeError> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(image)
        .map_err(VolumeError::io("create", image))?;
    file.set_len(mb * 1024 * 1024)
        .map_err(VolumeError::io("size", image))?;
    drop(file);
    run(
        volume,
        "make the file system (mkfs.ext4)",
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0", "-E", "root_owner=0:0", "-L"])
            .arg(label(volume))
            .arg(image),
    )
}

/// Mounts `image` on `data`, `nosuid,nodev`.
pub(super) fn mount(volume: &str, image: &Path, data: &Path) -> Result<(), VolumeError> {
    run(
        volume,
        "mount its image",
        Command::new("mount")
            .args(["-t", "ext4", "-o", "loop,nosuid,nodev"])
            .arg(image)
            .arg(data),
    )
}

/// Detaches the mount on `data` (sandboxes holding it keep it until they end; the loop
/// device clears itself after).
pub(super) fn unmount(data: &Path) -> Result<(), VolumeError> {
    nix::mount::umount2(data, nix::mount::MntFlags::MNT_DETACH).map_err(|errno| VolumeError::Io {
        what: "unmount",
        path: data.to_owned(),
        source: errno.into(),
    })
}

/// Whether something is mounted on `data`: its device differs from its parent `dir`'s.
pub(super) fn is_mounted(dir: &Path, data: &Path) -> Result<bool, VolumeError> {
    let dev = |p: &Path| {
        std::fs::symlink_metadata(p)
            .map(|m| m.dev())
            .map_err(VolumeError::io("inspect", p))
    };
    Ok(dev(dir)? != dev(data)?)
}

/// An ext4 label (at most 16 bytes) naming the volume.
fn label(volume: &str) -> String {
    let mut l = format!("lw-{volume}");
    l.truncate(16);
    l
}

fn run(volume: &str, what: &'static str, cmd: &mut Command) -> Result<(), VolumeError> {
    let fail = |detail: String| VolumeError::Image {
        volume: volume.to_owned(),
        what,
        detail,
    };
    let out = cmd
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| fail(format!("cannot run {:?}: {e}", cmd.get_program())))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(fail(format!("{} ({})", stderr.trim(), out.status)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_fit_ext4() {
        assert_eq!(super::label("msg"), "lw-msg");
        assert_eq!(super::label(&"x".repeat(64)).len(), 16);
    }
}
