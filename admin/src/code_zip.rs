//! The code archive `admin create`, `update` and `layer publish` upload: the files and
//! directories given on the command line, copied into a zip in memory.
//!
//! Layout, in order of the paths given:
//! - a file goes to the top under its base name (`src/app.py` is `app.py`);
//! - a directory goes under its own name with everything below it (`lib/` gives `lib/...`),
//!   except when it is the only path: then its contents are the top of the archive (so
//!   `admin create hello hello/` deploys `hello/lambda_func.py` as `lambda_func.py`);
//! - `--requirements F` becomes `requirements.txt` at the top.
//!
//! Symbolic links are followed (the archive holds the files they point to; a loop is an error);
//! devices, FIFOs and sockets are refused, as are names that are not UTF-8 or hold `\`. Two
//! paths giving the same name in the archive are refused, naming both. Entries are sorted by
//! name and carry a fixed date (1980-01-01), so the same files always give the same archive and
//! the same SHA-256. Everything is checked before the archive is used, against the limits the
//! registry applies when it unpacks ([`worker::archive`]).

use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use worker::archive::{MAX_ARCHIVE_BYTES, MAX_ENTRIES, MAX_UNPACKED_BYTES};
use zip::write::SimpleFileOptions;

/// Why the archive cannot be made; nothing was uploaded.
#[derive(Debug, thiserror::Error)]
pub enum CodeZipError {
    #[error("no files given: name the files and directories to deploy")]
    NoPaths,
    #[error("{path}: {source}")]
    Missing {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is {what}: only files and directories are deployed")]
    Special { path: PathBuf, what: &'static str },
    #[error("{path} is not a regular file: give a .zip or .tar.gz archive")]
    NotAFile { path: PathBuf },
    #[error("{path}: {message}")]
    Walk { path: PathBuf, message: String },
    #[error("{path}: the name {name:?} cannot go into an archive ({why})")]
    BadName {
        path: PathBuf,
        name: String,
        why: &'static str,
    },
    #[error("{name} would be in the archive twice: from {first} and from {second}")]
    Duplicate {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("the files given hold more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    #[error("the files given total more than {} MiB", MAX_UNPACKED_BYTES >> 20)]
    TooLarge,
    #[error(
        "the archive is {size} bytes or more, more than the {MAX_ARCHIVE_BYTES} a registry accepts"
    )]
    ArchiveTooLarge { size: usize },
    #[error("cannot write the archive: {0}")]
    Zip(#[from] zip::result::ZipError),
}

pub type Result<T> = std::result::Result<T, CodeZipError>;

/// A built archive.
#[derive(Debug, Clone)]
pub struct CodeZip {
    pub bytes: Vec<u8>,
    /// Regular files in it.
    pub files: usize,
    /// Their total size.
    pub unpacked: u64,
}

/// The bytes of an archive file given on the command line (`admin upload -file F`): a regular
/// file of at most [`MAX_ARCHIVE_BYTES`]. Blocking.
pub fn read_archive_file(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let read_err = |source| CodeZipError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(|source| CodeZipError::Missing {
        path: path.to_owned(),
        source,
    })?;
    let md = file.metadata().map_err(read_err)?;
    if !md.is_file() {
        return Err(CodeZipError::NotAFile {
            path: path.to_owned(),
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_ARCHIVE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() > MAX_ARCHIVE_BYTES {
        return Err(CodeZipError::ArchiveTooLarge { size: bytes.len() });
    }
    Ok(bytes)
}

/// One entry to write: a directory (`source` `None`) or a file and where it comes from.
#[derive(Debug)]
struct Item {
    source: Option<PathBuf>,
    /// The path given on the command line it comes from, for messages.
    given: PathBuf,
    executable: bool,
}

/// Entries by archive name; counts the files and bytes against the limits as they are added.
#[derive(Debug, Default)]
struct Plan {
    items: BTreeMap<String, Item>,
    files: usize,
    bytes: u64,
}

impl Plan {
    fn add(&mut self, name: String, item: Item, size: u64) -> Result<()> {
        if let Some(first) = self.items.get(&name) {
            // Two paths may both bring the same directory (`a/x` and `a/y` under one top).
            if first.source.is_none() && item.source.is_none() {
                return Ok(());
            }
            return Err(CodeZipError::Duplicate {
                name,
                first: first.given.clone(),
                second: item.given,
            });
        }
        if self.items.len() >= MAX_ENTRIES {
            return Err(CodeZipError::TooManyEntries);
        }
        if item.source.is_some() {
            self.files += 1;
            self.bytes = self.bytes.saturating_add(size);
            if self.bytes > MAX_UNPACKED_BYTES {
                return Err(CodeZipError::TooLarge);
            }
        }
        self.items.insert(name, item);
        Ok(())
    }
}

/// Builds the archive of `paths` (see the module docs) plus `requirements` as
/// `requirements.txt`. Blocking (reads every file).
pub fn build(paths: &[PathBuf], requirements: Option<&Path>) -> Result<CodeZip> {
    if paths.is_empty() {
        return Err(CodeZipError::NoPaths);
    }
    let mut plan = Plan::default();
    let only_dir = paths.len() == 1 && std::fs::metadata(&paths[0]).is_ok_and(|m| m.is_dir());
    for given in paths {
        let md = std::fs::metadata(given).map_err(|source| CodeZipError::Missing {
            path: given.clone(),
            source,
        })?;
        if md.is_dir() {
            let prefix = if only_dir {
                String::new()
            } else {
                let name = base_name(given)?;
                plan.add(
                    format!("{name}/"),
                    Item {
                        source: None,
                        given: given.clone(),
                        executable: false,
                    },
                    0,
                )?;
                format!("{name}/")
            };
            add_tree(&mut plan, given, &prefix)?;
        } else {
            let name = base_name(given)?;
            add_file(&mut plan, given, given, name, &md)?;
        }
    }
    if let Some(req) = requirements {
        let md = std::fs::metadata(req).map_err(|source| CodeZipError::Missing {
            path: req.to_owned(),
            source,
        })?;
        if !md.is_file() {
            return Err(CodeZipError::Special {
                path: req.to_owned(),
                what: "not a regular file (--requirements takes a requirements.txt file)",
            });
        }
        add_file(&mut plan, req, req, "requirements.txt".to_owned(), &md)?;
    }
    write(plan)
}

/// The last component of `path` as an archive name (`.` and `..` resolved first).
fn base_name(path: &Path) -> Result<String> {
    let canonical = std::fs::canonicalize(path).map_err(|source| CodeZipError::Missing {
        path: path.to_owned(),
        source,
    })?;
    let Some(name) = canonical.file_name() else {
        return Err(CodeZipError::BadName {
            path: path.to_owned(),
            name: canonical.display().to_string(),
            why: "it has no name of its own",
        });
    };
    let Some(name) = name.to_str() else {
        return Err(CodeZipError::BadName {
            path: path.to_owned(),
            name: name.to_string_lossy().into_owned(),
            why: "it is not UTF-8",
        });
    };
    check_component(path, name)?;
    Ok(name.to_owned())
}

fn check_component(path: &Path, name: &str) -> Result<()> {
    if name.contains('\\') {
        return Err(CodeZipError::BadName {
            path: path.to_owned(),
            name: name.to_owned(),
            why: "it holds a backslash",
        });
    }
    Ok(())
}

/// A regular file (after following links) as `name`; anything else is refused.
fn add_file(
    plan: &mut Plan,
    source: &Path,
    given: &Path,
    name: String,
    md: &std::fs::Metadata,
) -> Result<()> {
    if !md.is_file() {
        return Err(CodeZipError::Special {
            path: source.to_owned(),
            what: special_kind(md),
        });
    }
    plan.add(
        name,
        Item {
            source: Some(source.to_owned()),
            given: given.to_owned(),
            executable: md.permissions().mode() & 0o111 != 0,
        },
        md.len(),
    )
}

fn special_kind(md: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = md.file_type();
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Everything below the directory `root`, named `prefix` + its path below `root`.
fn add_tree(plan: &mut Plan, root: &Path, prefix: &str) -> Result<()> {
    let walk = walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(true)
        .sort_by_file_name();
    for entry in walk {
        let entry = entry.map_err(|e| CodeZipError::Walk {
            path: e.path().unwrap_or(root).to_owned(),
            message: match e.loop_ancestor() {
                Some(a) => format!("a symbolic link loops back to {}", a.display()),
                None => e
                    .io_error()
                    .map_or_else(|| e.to_string(), ToString::to_string),
            },
        })?;
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let Some(rel_text) = rel.to_str() else {
            return Err(CodeZipError::BadName {
                path: entry.path().to_owned(),
                name: rel.to_string_lossy().into_owned(),
                why: "it is not UTF-8",
            });
        };
        check_component(entry.path(), rel_text)?;
        // Following links, the metadata is the target's.
        let md = entry.metadata().map_err(|e| CodeZipError::Read {
            path: entry.path().to_owned(),
            source: e
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("unreadable")),
        })?;
        if md.is_dir() {
            plan.add(
                format!("{prefix}{rel_text}/"),
                Item {
                    source: None,
                    given: root.to_owned(),
                    executable: false,
                },
                0,
            )?;
        } else {
            add_file(plan, entry.path(), root, format!("{prefix}{rel_text}"), &md)?;
        }
    }
    Ok(())
}

/// Writes the planned entries, in name order.
fn write(plan: Plan) -> Result<CodeZip> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let base = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default())
        .large_file(false);
    for (name, item) in &plan.items {
        match &item.source {
            None => w.add_directory(name.as_str(), base.unix_permissions(0o755))?,
            Some(source) => {
                let data = std::fs::read(source).map_err(|e| CodeZipError::Read {
                    path: source.clone(),
                    source: e,
                })?;
                let mode = if item.executable { 0o755 } else { 0o644 };
                w.start_file(name.as_str(), base.unix_permissions(mode))?;
                w.write_all(&data)
                    .map_err(|e| CodeZipError::Zip(zip::result::ZipError::Io(e)))?;
            }
        }
    }
    let bytes = w.finish()?.into_inner();
    if bytes.len() > MAX_ARCHIVE_BYTES {
        return Err(CodeZipError::ArchiveTooLarge { size: bytes.len() });
    }
    Ok(CodeZip {
        bytes,
        files: plan.files,
        unpacked: plan.bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Names and contents (`None` for a directory) of a zip, in archive order.
    fn entries(bytes: &[u8]) -> Vec<(String, Option<String>, u32)> {
        let mut z = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        (0..z.len())
            .map(|i| {
                let mut f = z.by_index(i).unwrap();
                let name = f.name().to_owned();
                let mode = f.unix_mode().unwrap_or(0) & 0o777;
                if f.is_dir() {
                    (name, None, mode)
                } else {
                    let mut s = String::new();
                    f.read_to_string(&mut s).unwrap();
                    (name, Some(s), mode)
                }
            })
            .collect()
    }

    fn names(bytes: &[u8]) -> Vec<String> {
        entries(bytes).into_iter().map(|(n, _, _)| n).collect()
    }

    fn tree(root: &Path) {
        std::fs::create_dir_all(root.join("app/pkg")).unwrap();
        std::fs::write(
            root.join("app/lambda_func.py"),
            "def handler(e): return 1\n",
        )
        .unwrap();
        std::fs::write(root.join("app/pkg/__init__.py"), "").unwrap();
        std::fs::write(root.join("util.py"), "X = 1\n").unwrap();
        std::fs::write(root.join("reqs.txt"), "six==1.17.0\n").unwrap();
    }

    #[test]
    fn a_lone_directory_is_the_top_and_files_keep_their_base_name() {
        let tmp = tempfile::tempdir().unwrap();
        tree(tmp.path());
        let z = build(
            &[tmp.path().join("app")],
            Some(&tmp.path().join("reqs.txt")),
        )
        .unwrap();
        assert_eq!(
            names(&z.bytes),
            [
                "lambda_func.py",
                "pkg/",
                "pkg/__init__.py",
                "requirements.txt"
            ]
        );
        assert_eq!((z.files, z.unpacked), (3, 25 + 12));
        let e = entries(&z.bytes);
        assert_eq!(e[3].1.as_deref(), Some("six==1.17.0\n"));

        // Several paths: a directory under its name, a file under its base name.
        let z = build(
            &[tmp.path().join("app/."), tmp.path().join("util.py")],
            None,
        )
        .unwrap();
        assert_eq!(
            names(&z.bytes),
            [
                "app/",
                "app/lambda_func.py",
                "app/pkg/",
                "app/pkg/__init__.py",
                "util.py"
            ]
        );
    }

    #[test]
    fn the_same_files_give_the_same_archive_and_modes_are_kept() {
        let tmp = tempfile::tempdir().unwrap();
        tree(tmp.path());
        let script = tmp.path().join("app/run.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
        let a = build(&[tmp.path().join("app")], None).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        // Touch a file: same contents, newer mtime.
        std::fs::write(tmp.path().join("app/pkg/__init__.py"), "").unwrap();
        let b = build(&[tmp.path().join("app")], None).unwrap();
        assert_eq!(a.bytes, b.bytes);
        let modes: Vec<(String, u32)> = entries(&a.bytes)
            .into_iter()
            .map(|(n, _, m)| (n, m))
            .collect();
        assert!(modes.contains(&("run.sh".into(), 0o755)), "{modes:?}");
        assert!(
            modes.contains(&("lambda_func.py".into(), 0o644)),
            "{modes:?}"
        );
        assert!(modes.contains(&("pkg/".into(), 0o755)), "{modes:?}");
    }

    #[test]
    fn links_are_followed_and_loops_refused() {
        let tmp = tempfile::tempdir().unwrap();
        tree(tmp.path());
        std::os::unix::fs::symlink(tmp.path().join("util.py"), tmp.path().join("app/u.py"))
            .unwrap();
        let z = build(&[tmp.path().join("app")], None).unwrap();
        let e = entries(&z.bytes);
        assert!(
            e.contains(&("u.py".into(), Some("X = 1\n".into()), 0o644)),
            "{e:?}"
        );
        std::os::unix::fs::symlink(tmp.path().join("app"), tmp.path().join("app/pkg/up")).unwrap();
        let err = build(&[tmp.path().join("app")], None).unwrap_err();
        assert!(err.to_string().contains("loops back"), "{err}");
    }

    #[test]
    fn bad_inputs_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        tree(tmp.path());
        assert!(matches!(build(&[], None), Err(CodeZipError::NoPaths)));
        let missing = tmp.path().join("nope.py");
        let err = build(std::slice::from_ref(&missing), None).unwrap_err();
        assert!(
            err.to_string().starts_with(&missing.display().to_string()),
            "{err}"
        );
        let err = build(
            &[tmp.path().join("util.py")],
            Some(&tmp.path().join("r.txt")),
        )
        .unwrap_err();
        assert!(err.to_string().contains("r.txt"), "{err}");
        // requirements.txt twice.
        std::fs::write(tmp.path().join("app/requirements.txt"), "x\n").unwrap();
        let err = build(
            &[tmp.path().join("app")],
            Some(&tmp.path().join("reqs.txt")),
        )
        .unwrap_err();
        assert!(
            matches!(&err, CodeZipError::Duplicate { name, .. } if name == "requirements.txt"),
            "{err}"
        );
        // Two files of one base name.
        std::fs::create_dir(tmp.path().join("other")).unwrap();
        std::fs::write(tmp.path().join("other/util.py"), "").unwrap();
        let err = build(
            &[tmp.path().join("util.py"), tmp.path().join("other/util.py")],
            None,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("util.py would be in the archive twice"),
            "{err}"
        );
        // A FIFO.
        let fifo = tmp.path().join("app/pipe");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let err = build(&[tmp.path().join("app")], None).unwrap_err();
        assert!(err.to_string().contains("is a FIFO"), "{err}");
    }
}
