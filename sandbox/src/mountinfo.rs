//! The mount table as the kernel describes it in `/proc/<pid>/mountinfo`: one parser for every
//! reader (cgroup detection, the worker's scratch cleanup, the base cache's build directories).
//!
//! A line reads `id parent major:minor root mount-point options [optional...] - fstype source
//! super-options` (proc(5)). The kernel writes paths as raw bytes and escapes only space, tab,
//! newline and backslash as `\ooo` (octal). So the text is read as bytes, never as UTF-8, and
//! paths are decoded to the exact bytes they name: a mount point that is not UTF-8 is found (and
//! can be unmounted) like any other.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// Where the kernel describes this process's mounts.
pub const SELF_MOUNTINFO: &str = "/proc/self/mountinfo";

/// Errors reading or parsing a mountinfo file.
#[derive(Debug, thiserror::Error)]
pub enum MountinfoError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("malformed line in {path}: {line:?}")]
    Malformed { path: PathBuf, line: String },
}

pub type Result<T> = std::result::Result<T, MountinfoError>;

/// One mount: the fields of a mountinfo line that callers use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The mount's root within its filesystem (`/` unless a subtree is bind-mounted).
    pub root: PathBuf,
    /// Where it is mounted, in this process's view.
    pub mount_point: PathBuf,
    /// The filesystem type (`ext4`, `tmpfs`, `cgroup2`).
    pub fs_type: String,
    /// The superblock's options as listed (`rw,memory`), escapes left as the kernel wrote them.
    pub super_options: String,
}

/// Parses a whole mountinfo text; `origin` names it in errors. Empty lines are skipped.
pub fn parse(text: &[u8], origin: &Path) -> Result<Vec<MountEntry>> {
    text.split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(|line| {
            parse_line(line).ok_or_else(|| MountinfoError::Malformed {
                path: origin.to_owned(),
                line: String::from_utf8_lossy(line).into_owned(),
            })
        })
        .collect()
}

/// Reads and parses the mountinfo file at `path` (e.g. `/proc/<pid>/mountinfo`).
pub fn read(path: &Path) -> Result<Vec<MountEntry>> {
    let text = std::fs::read(path).map_err(|source| MountinfoError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

/// This process's mounts ([`SELF_MOUNTINFO`]), in the kernel's order (parents before children).
pub fn mounts() -> Result<Vec<MountEntry>> {
    read(Path::new(SELF_MOUNTINFO))
}

/// Every mount point of this process's mount namespace, in the kernel's order.
pub fn mount_points() -> Result<Vec<PathBuf>> {
    Ok(mounts()?.into_iter().map(|m| m.mount_point).collect())
}

/// The fields of one line, or `None` if it does not have the shape of a mountinfo line.
fn parse_line(line: &[u8]) -> Option<MountEntry> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let fields: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
    // Six fixed fields, any number of optional ones, then `-` and three more.
    let sep = fields.iter().skip(6).position(|f| *f == b"-")? + 6;
    if fields.len() < sep + 4 || fields[4].is_empty() {
        return None;
    }
    let text = |f: &[u8]| String::from_utf8_lossy(f).into_owned();
    Some(MountEntry {
        root: unescape(fields[3]),
        mount_point: unescape(fields[4]),
        fs_type: text(fields[sep + 1]),
        super_options: text(fields[sep + 3]),
    })
}

/// Undoes the kernel's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134`
/// backslash; any `\ooo` up to `\377`) and returns the exact bytes as a path.
pub fn unescape(field: &[u8]) -> PathBuf {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' {
            if let Some(byte) = field.get(i + 1..i + 4).and_then(octal_byte) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(field[i]);
        i += 1;
    }
    PathBuf::from(OsString::from_vec(out))
}

/// The byte three octal digits spell, if they are octal digits and the value fits a byte (`\777`
/// does not, so it is no escape).
fn octal_byte(digits: &[u8]) -> Option<u8> {
    if digits.len() != 3 || !digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
        return None;
    }
    let value = digits
        .iter()
        .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
    u8::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    const ORIGIN: &str = "/proc/self/mountinfo";

    fn parse_text(text: &[u8]) -> Result<Vec<MountEntry>> {
        parse(text, Path::new(ORIGIN))
    }

    #[test]
    fn fields_are_read() {
        let text = b"\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
35 24 0:30 / /sys/fs/cgroup/memory rw,nosuid shared:9 master:2 - cgroup cgroup rw,memory
40 22 0:41 /sub/dir /srv/bound rw - ext4 /dev/vda1 rw
";
        let got = parse_text(text).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[1],
            MountEntry {
                root: "/".into(),
                mount_point: "/sys/fs/cgroup/memory".into(),
                fs_type: "cgroup".into(),
                super_options: "rw,memory".into(),
            }
        );
        assert_eq!(got[2].root, Path::new("/sub/dir"));
        assert_eq!(got[0].fs_type, "ext4");
        assert_eq!(got[0].super_options, "rw,errors=remount-ro");
    }

    #[test]
    fn escapes_are_decoded() {
        assert_eq!(unescape(b"/a/b"), Path::new("/a/b"));
        assert_eq!(unescape(b"/with\\040space"), Path::new("/with space"));
        assert_eq!(unescape(b"/tab\\011nl\\012"), Path::new("/tab\tnl\n"));
        assert_eq!(unescape(b"/back\\134slash"), Path::new("/back\\slash"));
        // Not escapes: too short, not octal, or more than a byte.
        assert_eq!(unescape(b"/end\\04"), Path::new("/end\\04"));
        assert_eq!(unescape(b"/x\\089"), Path::new("/x\\089"));
        assert_eq!(unescape(b"/x\\777"), Path::new("/x\\777"));
        let text = b"41 22 0:6 / /tmp/with\\040space rw - tmpfs tmp\\040fs rw\n";
        assert_eq!(
            parse_text(text).unwrap()[0].mount_point,
            Path::new("/tmp/with space")
        );
    }

    #[test]
    fn non_utf8_mount_points_keep_their_exact_bytes() {
        // Escaped (`\377`) and raw (the kernel writes bytes other than the four escaped ones
        // as they are): both come back as the byte 0xff.
        let mut text = b"50 22 0:50 / /tmp/odd\\377name rw - tmpfs tmpfs rw\n".to_vec();
        text.extend_from_slice(b"51 22 0:51 / /tmp/raw\xffname rw - tmpfs tmpfs rw\n");
        let got = parse_text(&text).unwrap();
        assert_eq!(
            got[0].mount_point.as_os_str().as_bytes(),
            b"/tmp/odd\xffname"
        );
        assert_eq!(
            got[1].mount_point.as_os_str().as_bytes(),
            b"/tmp/raw\xffname"
        );
    }

    #[test]
    fn empty_lines_are_skipped() {
        let text = b"\n22 1 8:1 / / rw - ext4 /dev/vda1 rw\n\n";
        assert_eq!(parse_text(text).unwrap().len(), 1);
        assert!(parse_text(b"").unwrap().is_empty());
    }

    #[test]
    fn malformed_lines_are_typed_errors_naming_file_and_line() {
        for bad in [
            &b"35 24 0:30 / /sys/fs/cgroup rw\n"[..],
            b"35 24 0:30 / /sys/fs/cgroup rw - cgroup2\n",
            b"35 24 - / /x rw cgroup2 cgroup2 rw\n",
            b"garbage\n",
        ] {
            match parse_text(bad) {
                Err(MountinfoError::Malformed { path, line }) => {
                    assert_eq!(path, Path::new(ORIGIN));
                    assert_eq!(line.as_bytes(), bad.strip_suffix(b"\n").unwrap());
                    let message = MountinfoError::Malformed { path, line }.to_string();
                    assert!(message.contains(ORIGIN), "{message}");
                }
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bad)),
            }
        }
    }

    #[test]
    fn a_missing_file_is_a_read_error_naming_it() {
        let err = read(Path::new("/nonexistent/mountinfo")).unwrap_err();
        assert!(matches!(err, MountinfoError::Read { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/mountinfo"), "{err}");
    }

    #[test]
    fn this_process_has_a_root_mount() {
        let points = mount_points().unwrap();
        assert!(points.iter().any(|p| p == Path::new("/")), "{points:?}");
    }
}
