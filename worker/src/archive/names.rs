//! Entry names and the tree being unpacked: each name checked (relative, no `..`, no empty
//! component, no NUL), each path taken once (a name twice, or a file where a directory is, is
//! refused), and the files and directories written with fixed modes.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{ArchiveError, MAX_COMPONENT_BYTES, MAX_ENTRIES, MAX_PATH_BYTES, MAX_UNPACKED_BYTES};

/// Mode of every unpacked directory.
pub(super) const DIR_MODE: u32 = 0o755;

/// What an entry is, once its type is known to be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    File,
    Dir,
}

/// What a path of the tree holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    File,
    /// `explicit`: named by an entry (not only as the parent of one).
    Dir {
        explicit: bool,
    },
}

/// The mode an unpacked file gets: 0755 if the archive marks it executable by anyone, else
/// 0644 (never setuid, setgid, sticky or writable by others).
pub(super) fn file_mode(archive_mode: Option<u32>) -> u32 {
    match archive_mode {
        Some(m) if m & 0o111 != 0 => 0o755,
        _ => 0o644,
    }
}

/// The relative path of an entry named `name`, `None` for the archive's root (`./`).
/// A trailing `/` is allowed on a directory only.
pub(super) fn relative_path(name: &str, kind: Kind) -> Result<Option<PathBuf>, ArchiveError> {
    let bad = |why: &'static str| ArchiveError::BadEntry {
        entry: name.to_owned(),
        why: why.into(),
    };
    if name.is_empty() {
        return Err(bad("an empty name"));
    }
    if name.contains('\0') {
        return Err(bad("a name with a NUL byte"));
    }
    if name.contains('\\') {
        return Err(bad("a name with '\\' (a Windows separator)"));
    }
    if name.starts_with('/') {
        return Err(bad("an absolute path"));
    }
    if name.len() > MAX_PATH_BYTES {
        return Err(bad("a name longer than 4096 bytes"));
    }
    let body = match name.strip_suffix('/') {
        Some(body) if kind == Kind::Dir => body,
        Some(_) => return Err(bad("a file whose name ends with '/'")),
        None => name,
    };
    let mut rel = PathBuf::new();
    for part in body.split('/') {
        match part {
            "" if body.is_empty() => return Err(bad("an empty name")),
            "" => return Err(bad("a name with an empty component")),
            "." => {}
            ".." => return Err(bad("a path with `..`")),
            _ if part.len() > MAX_COMPONENT_BYTES => {
                return Err(bad("a name with a component longer than 255 bytes"))
            }
            _ => rel.push(part),
        }
    }
    if rel.as_os_str().is_empty() {
        return match kind {
            Kind::Dir => Ok(None),
            Kind::File => Err(bad("a file without a name")),
        };
    }
    Ok(Some(rel))
}

/// The paths an archive's entries take, and the totals so far. Bounded: at most
/// [`MAX_ENTRIES`] entries are added, each path with at most its own components.
#[derive(Debug, Default)]
pub(super) struct Tree {
    nodes: HashMap<PathBuf, Node>,
    entries: usize,
    pub(super) files: usize,
    pub(super) bytes: u64,
}

impl Tree {
    /// Takes the path of entry `name` (of `kind`, `size` bytes for a file). `None`: the entry
    /// is the archive's root and is skipped.
    pub(super) fn add(
        &mut self,
        name: &str,
        kind: Kind,
        size: u64,
    ) -> Result<Option<PathBuf>, ArchiveError> {
        self.entries += 1;
        if self.entries > MAX_ENTRIES {
            return Err(ArchiveError::TooManyEntries);
        }
        let Some(rel) = relative_path(name, kind)? else {
            return Ok(None);
        };
        let bad = |why: &'static str| ArchiveError::BadEntry {
            entry: name.to_owned(),
            why: why.into(),
        };
        for parent in rel.ancestors().skip(1) {
            if parent.as_os_str().is_empty() {
                break;
            }
            match self.nodes.get(parent) {
                Some(Node::File) => return Err(bad("inside a path that is also a file")),
                Some(Node::Dir { .. }) => break, // its ancestors were taken with it
                None => {
                    self.nodes
                        .insert(parent.to_owned(), Node::Dir { explicit: false });
                }
            }
        }
        match (self.nodes.get(&rel).copied(), kind) {
            (None, Kind::File) => {
                self.nodes.insert(rel.clone(), Node::File);
            }
            (None, Kind::Dir) | (Some(Node::Dir { explicit: false }), Kind::Dir) => {
                self.nodes.insert(rel.clone(), Node::Dir { explicit: true });
            }
            (Some(Node::File), Kind::File) | (Some(Node::Dir { explicit: true }), Kind::Dir) => {
                return Err(bad("a duplicate name"))
            }
            (Some(_), _) => return Err(bad("both a file and a directory")),
        }
        if kind == Kind::File {
            self.files += 1;
            self.bytes = self.bytes.saturating_add(size);
            if self.bytes > MAX_UNPACKED_BYTES {
                return Err(ArchiveError::TooLarge);
            }
        }
        Ok(Some(rel))
    }
}

fn io_error<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ArchiveError + 'a {
    move |source| ArchiveError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Creates `dest/rel` and the directories above it that do not exist yet, each 0755.
/// Only ever meets what this unpacking created (the tree refuses a file where a directory
/// goes), and never follows a link (none is ever created).
pub(super) fn make_dir(dest: &Path, rel: &Path) -> Result<(), ArchiveError> {
    let mut path = dest.to_owned();
    for part in rel.components() {
        path.push(part);
        match std::fs::create_dir(&path) {
            Ok(()) => std::fs::set_permissions(&path, std::fs::Permissions::from_mode(DIR_MODE))
                .map_err(io_error("set the mode of", &path))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let md = std::fs::symlink_metadata(&path).map_err(io_error("inspect", &path))?;
                if !md.is_dir() {
                    return Err(ArchiveError::Io {
                        op: "create directory",
                        path,
                        source: e,
                    });
                }
            }
            Err(e) => {
                return Err(ArchiveError::Io {
                    op: "create directory",
                    path,
                    source: e,
                })
            }
        }
    }
    Ok(())
}

/// Writes entry `name`'s data from `data` to `dest/rel` (a new file: never through an existing
/// one) with `mode`. Reads at most one byte more than `declared`: an entry whose data is longer
/// or shorter than its header says is refused, whatever its decompressor would give.
pub(super) fn write_file(
    dest: &Path,
    rel: &Path,
    name: &str,
    mode: u32,
    data: &mut dyn Read,
    declared: u64,
) -> Result<u64, ArchiveError> {
    if let Some(parent) = rel.parent() {
        make_dir(dest, parent)?;
    }
    let path = dest.join(rel);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(io_error("create", &path))?;
    let mut limited = data.take(declared.saturating_add(1));
    let mut buf = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        let n = match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ArchiveError::read(name, e)),
        };
        written += n as u64;
        if written > declared {
            return Err(ArchiveError::BadEntry {
                entry: name.to_owned(),
                why: format!("larger than its header says ({declared} bytes)"),
            });
        }
        file.write_all(&buf[..n])
            .map_err(io_error("write", &path))?;
    }
    if written != declared {
        return Err(ArchiveError::BadEntry {
            entry: name.to_owned(),
            why: format!("shorter than its header says ({written} of {declared} bytes)"),
        });
    }
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io_error("set the mode of", &path))?;
    Ok(written)
}

/// Removes everything inside `dir` (what an unpacking wrote before it was refused).
pub(super) fn clear_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Files that mark a function's code: a bundle whose only top-level entry is a directory
/// holding one of them is unpacked with that directory stripped.
const CODE_MARKERS: [&str; 3] = ["lambda_func.py", "lambda_main.py", "lambda.json"];

/// When `dest` holds exactly one entry, a directory with one of [`CODE_MARKERS`] in it, moves
/// that directory's contents up into `dest`. Returns the stripped directory's name.
pub(super) fn strip_single_top(dest: &Path) -> Result<Option<String>, ArchiveError> {
    let read = |dir: &Path| -> Result<Vec<std::fs::DirEntry>, ArchiveError> {
        std::fs::read_dir(dir)
            .and_then(|entries| entries.collect::<Result<Vec<_>, _>>())
            .map_err(io_error("read", dir))
    };
    let top = read(dest)?;
    let [only] = top.as_slice() else {
        return Ok(None);
    };
    let is_dir = only
        .file_type()
        .map_err(io_error("inspect", &only.path()))?
        .is_dir();
    let inner = only.path();
    let marked = CODE_MARKERS
        .iter()
        .any(|m| std::fs::symlink_metadata(inner.join(m)).is_ok_and(|md| md.file_type().is_file()));
    if !is_dir || !marked {
        return Ok(None);
    }
    let name = only.file_name().to_string_lossy().into_owned();
    let children = read(&inner)?;
    // Move the directory aside under a name none of its children has, then lift each child.
    let taken: std::collections::HashSet<_> = children.iter().map(|c| c.file_name()).collect();
    let aside = (0u32..)
        .map(|i| dest.join(format!(".strip-{i}")))
        .find(|p| p.file_name().is_some_and(|n| !taken.contains(n)))
        .unwrap_or_else(|| dest.join(".strip"));
    std::fs::rename(&inner, &aside).map_err(io_error("move", &inner))?;
    for child in children {
        let from = aside.join(child.file_name());
        std::fs::rename(&from, dest.join(child.file_name())).map_err(io_error("move", &from))?;
    }
    std::fs::remove_dir(&aside).map_err(io_error("remove", &aside))?;
    Ok(Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        let ok = |n: &str, k| {
            relative_path(n, k)
                .unwrap()
                .map(|p| p.display().to_string())
        };
        assert_eq!(ok("a/b.py", Kind::File).as_deref(), Some("a/b.py"));
        assert_eq!(ok("./a/./b.py", Kind::File).as_deref(), Some("a/b.py"));
        assert_eq!(ok("docs/", Kind::Dir).as_deref(), Some("docs"));
        assert_eq!(ok("./", Kind::Dir), None);
        assert_eq!(ok(".", Kind::Dir), None);
        for (name, kind, why) in [
            ("", Kind::File, "empty name"),
            ("/etc/passwd", Kind::File, "absolute"),
            ("../x", Kind::File, "`..`"),
            ("a/../../x", Kind::File, "`..`"),
            ("a//b", Kind::File, "empty component"),
            ("a\0b", Kind::File, "NUL"),
            ("a\\b", Kind::File, "Windows"),
            ("a/", Kind::File, "ends with '/'"),
            ("./", Kind::File, "ends with '/'"),
            (".", Kind::File, "without a name"),
            ("/", Kind::Dir, "absolute"),
        ] {
            let e = relative_path(name, kind).unwrap_err().to_string();
            assert!(e.contains(why), "{name:?}: {e}");
        }
        let long = format!("{}/x", "a".repeat(256));
        assert!(relative_path(&long, Kind::File).is_err());
    }

    #[test]
    fn each_path_is_taken_once() {
        let mut t = Tree::default();
        assert!(t.add("a/b.py", Kind::File, 1).is_ok());
        // `a` was made implicitly; naming it later is fine, once.
        assert!(t.add("a/", Kind::Dir, 0).is_ok());
        for (name, kind, why) in [
            ("a/", Kind::Dir, "duplicate"),
            ("a", Kind::Dir, "duplicate"),
            ("a/b.py", Kind::File, "duplicate"),
            ("./a/b.py", Kind::File, "duplicate"),
            ("a", Kind::File, "both a file and a directory"),
            ("a/b.py/c", Kind::File, "also a file"),
        ] {
            let e = t.add(name, kind, 0).unwrap_err().to_string();
            assert!(e.contains(why), "{name:?}: {e}");
        }
        assert_eq!((t.files, t.bytes), (1, 1));
    }
}
