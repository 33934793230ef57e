//! The base root filesystem cache: built once per recipe with `debootstrap`, then reused by every
//! `admin new`.
//!
//! Steps of [`ensure_base`], in order:
//! 1. hash the recipe (`cluster-template/base.json`): the entry is `<cache>/base-<hash>`;
//! 2. if the entry exists, use it (a complete entry only ever appears by an atomic rename);
//! 3. otherwise take the lock `<cache>/base-<hash>.lock` (concurrent builders wait here), look
//!    again, and remove build directories that a killed builder left behind;
//! 4. run `debootstrap --variant=V --include=P SUITE <cache>/base-<hash>.tmp-<pid> MIRROR`,
//!    streaming its output as progress;
//! 5. post-process: mount points `packages`, `handler`, `host` (and `tmp`, `proc`, `dev`), drop
//!    downloaded `.deb` files and apt lists;
//! 6. rename the build directory to the entry. A failed build removes its build directory.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{mirror, ClusterError};

/// Environment variable naming the cache directory.
pub const CACHE_ENV: &str = "LAMBDAWORKER_CACHE";
/// Cache directory when `$LAMBDAWORKER_CACHE` is unset.
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/lambdaworker";
/// Lines of debootstrap output kept for the error message of a failed build.
const TAIL_LINES: usize = 20;

/// How the base root filesystem is built (`cluster-template/base.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Debian suite, e.g. `trixie`.
    pub suite: String,
    /// debootstrap variant, e.g. `minbase`.
    pub variant: String,
    /// Extra packages (`--include`).
    #[serde(default)]
    pub include: Vec<String>,
}

impl Recipe {
    /// Parses a recipe; `origin` names it in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Self, ClusterError> {
        let recipe: Recipe = serde_json::from_str(text)
            .map_err(|e| ClusterError::Recipe(format!("{origin}: {e}")))?;
        let word = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '+' | '_'))
        };
        if !word(&recipe.suite) || !word(&recipe.variant) || !recipe.include.iter().all(|p| word(p))
        {
            return Err(ClusterError::Recipe(format!(
                "{origin}: suite, variant and package names must be plain words"
            )));
        }
        Ok(recipe)
    }

    /// First 16 hex digits of the SHA-256 of the recipe's compact JSON (field order as declared),
    /// so that white space in `base.json` does not matter but any change of content does.
    pub fn hash(&self) -> String {
        let canonical = serde_json::to_string(self).unwrap_or_default();
        let digest = Sha256::digest(canonical.as_bytes());
        worker::hex(&digest[..8])
    }

    /// The cache entry name: `base-<hash>`.
    pub fn entry_name(&self) -> String {
        format!("base-{}", self.hash())
    }

    /// debootstrap's arguments (without the program name).
    pub fn debootstrap_args(&self, target: &Path, mirror: &str) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec![format!("--variant={}", self.variant).into()];
        if !self.include.is_empty() {
            args.push(format!("--include={}", self.include.join(",")).into());
        }
        args.push(self.suite.clone().into());
        args.push(target.as_os_str().to_owned());
        args.push(mirror.into());
        args
    }
}

/// The cache directory: `$LAMBDAWORKER_CACHE`, else [`DEFAULT_CACHE_DIR`].
pub fn default_cache_dir() -> PathBuf {
    match std::env::var_os(CACHE_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(DEFAULT_CACHE_DIR),
    }
}

/// Where a ready base came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseOrigin {
    /// The cache entry existed.
    Cached,
    /// This call built the entry.
    Built { elapsed: Duration },
    /// A ready-made tree given by the caller ([`super::CreateOptions::base_from`]).
    Given,
}

/// Returns the cache entry for `recipe`, building it with debootstrap if it is missing.
/// `progress` receives debootstrap's output lines and status messages.
pub fn ensure_base(
    cache_dir: &Path,
    recipe: &Recipe,
    mirror_override: Option<&str>,
    progress: &dyn Fn(&str),
) -> Result<(PathBuf, BaseOrigin), ClusterError> {
    ensure_cached(cache_dir, &recipe.entry_name(), progress, |tmp| {
        let mirror = match mirror_override {
            Some(m) => m.to_owned(),
            None => mirror::find_mirror().ok_or(ClusterError::NoMirror)?,
        };
        progress(&format!(
            "building the base root filesystem ({} {} + {}) from {mirror}; this is done once",
            recipe.suite,
            recipe.variant,
            recipe.include.join(",")
        ));
        run_debootstrap(recipe, tmp, &mirror, progress)?;
        post_process(tmp)
    })
}

/// The cache protocol of [`ensure_base`] with the build step supplied by the caller: `build`
/// fills the directory it is given (which it must create), and the result is renamed into place.
pub fn ensure_cached(
    cache_dir: &Path,
    name: &str,
    progress: &dyn Fn(&str),
    build: impl FnOnce(&Path) -> Result<(), ClusterError>,
) -> Result<(PathBuf, BaseOrigin), ClusterError> {
    let entry = cache_dir.join(name);
    if entry.is_dir() {
        return Ok((entry, BaseOrigin::Cached));
    }
    std::fs::create_dir_all(cache_dir).map_err(|source| ClusterError::Io {
        op: "create cache directory",
        path: cache_dir.to_owned(),
        source,
    })?;
    let lock_path = cache_dir.join(format!("{name}.lock"));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| ClusterError::Io {
            op: "open lock",
            path: lock_path.clone(),
            source,
        })?;
    // flock(2): released when `lock` is dropped (or the process dies), so a killed builder never
    // blocks later ones.
    let lock_err = |e: Errno| ClusterError::Io {
        op: "lock",
        path: lock_path.clone(),
        source: e.into(),
    };
    let lock = match Flock::lock(lock, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((file, Errno::EWOULDBLOCK)) => {
            progress(&format!(
                "waiting for another process building {}",
                entry.display()
            ));
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| lock_err(e))?
        }
        Err((_, e)) => return Err(lock_err(e)),
    };
    // The lock is held until `lock` is dropped at the end of this function.
    if entry.is_dir() {
        return Ok((entry, BaseOrigin::Cached));
    }
    remove_stale_builds(cache_dir, name)?;
    let tmp = cache_dir.join(format!("{name}.tmp-{}", std::process::id()));
    let started = Instant::now();
    let built = build(&tmp).and_then(|()| {
        std::fs::rename(&tmp, &entry).map_err(|source| ClusterError::Io {
            op: "rename build directory to",
            path: entry.clone(),
            source,
        })
    });
    if let Err(e) = built {
        if let Err(cleanup) = remove_build_dir(&tmp) {
            progress(&format!("could not remove {}: {cleanup}", tmp.display()));
        }
        return Err(e);
    }
    drop(lock);
    Ok((
        entry,
        BaseOrigin::Built {
            elapsed: started.elapsed(),
        },
    ))
}

/// Removes `<name>.tmp-*` directories: with the lock held, they belong to builders that died.
fn remove_stale_builds(cache_dir: &Path, name: &str) -> Result<(), ClusterError> {
    let prefix = format!("{name}.tmp-");
    let entries = std::fs::read_dir(cache_dir).map_err(|source| ClusterError::Io {
        op: "read",
        path: cache_dir.to_owned(),
        source,
    })?;
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            remove_build_dir(&e.path())?;
        }
    }
    Ok(())
}

/// Removes a build directory, first detaching whatever a killed debootstrap left mounted in it
/// (`proc`, `sys`, bind mounts of host devices) so the removal can never reach outside it. If the
/// mount table cannot be read, nothing is removed.
fn remove_build_dir(dir: &Path) -> Result<(), ClusterError> {
    let mut below: Vec<PathBuf> = sandbox::mountinfo::mount_points()?
        .into_iter()
        .filter(|m| m.starts_with(dir))
        .collect();
    // Deepest first.
    below.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    for m in &below {
        nix::mount::umount2(m.as_path(), nix::mount::MntFlags::MNT_DETACH).map_err(|e| {
            ClusterError::Io {
                op: "unmount",
                path: m.clone(),
                source: e.into(),
            }
        })?;
    }
    worker::cleanup::remove_dir_all_if_present(dir).map_err(|source| ClusterError::Io {
        op: "remove",
        path: dir.to_owned(),
        source,
    })
}

/// Finds `debootstrap` on `$PATH` or in the sbin directories (absent from some users' `$PATH`).
fn find_debootstrap() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join("debootstrap"))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Runs debootstrap into `target`, passing each output line (stdout and stderr, merged) to
/// `progress`; on failure the error carries the last lines.
fn run_debootstrap(
    recipe: &Recipe,
    target: &Path,
    mirror: &str,
    progress: &dyn Fn(&str),
) -> Result<(), ClusterError> {
    let program = find_debootstrap().ok_or(ClusterError::DebootstrapMissing)?;
    let mut cmd = Command::new(&program);
    cmd.args(recipe.debootstrap_args(target, mirror))
        .env("DEBIAN_FRONTEND", "noninteractive");
    run_streamed(&mut cmd, "debootstrap", progress).map_err(|e| match e {
        ClusterError::Command { status, tail, .. } => ClusterError::Debootstrap {
            target: target.to_owned(),
            status,
            tail,
        },
        other => other,
    })
}

/// Runs `cmd` with its output (stdout and stderr merged) streamed to `progress`; a failure
/// carries the last lines.
pub(crate) fn run_streamed(
    cmd: &mut Command,
    what: &'static str,
    progress: &dyn Fn(&str),
) -> Result<(), ClusterError> {
    let program = PathBuf::from(cmd.get_program());
    let (reader, writer) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| ClusterError::Io {
        op: "create pipe for",
        path: program.clone(),
        source: e.into(),
    })?;
    let spawn_err = |source| ClusterError::Io {
        op: "run",
        path: program.clone(),
        source,
    };
    let mut child = {
        // Replacing `cmd`'s stdio once the child is spawned drops its copies of the write end,
        // leaving the child as the only writer, so reading ends when it exits.
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(writer.try_clone().map_err(spawn_err)?))
            .stderr(Stdio::from(writer));
        let child = cmd.spawn().map_err(spawn_err)?;
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        child
    };
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    for line in BufReader::new(std::fs::File::from(reader)).split(b'\n') {
        let Ok(line) = line else { break };
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        progress(line);
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.to_owned());
    }
    let status = child.wait().map_err(|source| ClusterError::Io {
        op: "wait for",
        path: program.clone(),
        source,
    })?;
    if !status.success() {
        return Err(ClusterError::Command {
            what,
            status: status.to_string(),
            tail: Vec::from(tail).join("\n"),
        });
    }
    Ok(())
}

/// Prepares a fresh debootstrap tree for use as a read-only sandbox root.
pub fn post_process(root: &Path) -> Result<(), ClusterError> {
    let io = |op: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| ClusterError::Io { op, path, source }
    };
    // Mount points of the sandbox, created here because the root is read-only at run time.
    for (dir, mode) in [
        ("packages", 0o755),
        ("handler", 0o755),
        // Layers are mounted under it (Debian's base has it already).
        ("opt", 0o755),
        ("host", 0o755),
        ("tmp", 0o1777),
        ("proc", 0o555),
        ("dev", 0o755),
    ] {
        let p = root.join(dir);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => std::fs::remove_file(&p).map_err(io("remove", &p))?,
            Err(_) => {}
        }
        std::fs::create_dir(&p).map_err(io("create directory", &p))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
            .map_err(io("chmod", &p))?;
    }
    // Downloaded packages and package lists: not needed in a sandbox, and large.
    for (dir, keep) in [
        ("var/cache/apt/archives", ""),
        ("var/lib/apt/lists", "lock"),
    ] {
        let d = root.join(dir);
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let is_file = e.file_type().map(|t| t.is_file()).unwrap_or(false);
            if is_file && e.file_name() != keep {
                std::fs::remove_file(&p).map_err(io("remove", &p))?;
            }
        }
    }
    for cache in [
        "var/cache/apt/pkgcache.bin",
        "var/cache/apt/srcpkgcache.bin",
    ] {
        let p = root.join(cache);
        if p.is_file() {
            std::fs::remove_file(&p).map_err(io("remove", &p))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn recipe_hash_ignores_whitespace_and_tracks_content() {
        let a = Recipe::from_json(
            r#"{"suite": "trixie", "variant": "minbase", "include": ["python3"]}"#,
            "a",
        )
        .unwrap();
        let b = Recipe::from_json(
            "{\n  \"suite\":\"trixie\",\n \"variant\":\"minbase\",\"include\":[\"python3\"]}",
            "b",
        )
        .unwrap();
        let c = Recipe::from_json(
            r#"{"suite": "trixie", "variant": "minbase", "include": ["python3", "curl"]}"#,
            "c",
        )
        .unwrap();
        assert_eq!(a.hash(), b.hash());
        assert_ne!(a.hash(), c.hash());
        assert_eq!(a.hash().len(), 16);
        assert!(a.entry_name().starts_with("base-"));
    }

    #[test]
    fn recipe_rejects_unknown_keys_and_odd_words() {
        assert!(Recipe::from_json(
            r#"{"suite": "trixie", "variant": "minbase", "pkgs": []}"#,
            "x"
        )
        .is_err());
        let err = Recipe::from_json(
            r#"{"suite": "trixie --foo", "variant": "minbase"}"#,
            "base.json",
        )
        .unwrap_err();
        assert!(err.to_string().contains("base.json"), "{err}");
    }

    #[test]
    fn debootstrap_arguments() {
        let r = Recipe::from_json(
            r#"{"suite": "trixie", "variant": "minbase", "include": ["python3", "curl"]}"#,
            "x",
        )
        .unwrap();
        let args = r.debootstrap_args(Path::new("/c/base-x.tmp-1"), "http://mirror.example/debian");
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--variant=minbase",
                "--include=python3,curl",
                "trixie",
                "/c/base-x.tmp-1",
                "http://mirror.example/debian"
            ]
        );
    }

    #[test]
    fn cache_is_built_once_under_concurrency() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Arc::new(tmp.path().join("cache"));
        let builds = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let cache = Arc::clone(&cache);
                let builds = Arc::clone(&builds);
                std::thread::spawn(move || {
                    ensure_cached(&cache, "base-test", &|_| {}, |dir| {
                        builds.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(200));
                        std::fs::create_dir(dir).unwrap();
                        std::fs::write(dir.join("marker"), b"ok").unwrap();
                        Ok(())
                    })
                    .unwrap()
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(builds.load(Ordering::SeqCst), 1);
        assert_eq!(
            results
                .iter()
                .filter(|(_, o)| matches!(o, BaseOrigin::Built { .. }))
                .count(),
            1
        );
        for (path, _) in &results {
            assert_eq!(std::fs::read(path.join("marker")).unwrap(), b"ok");
        }
        // No build directories are left.
        let names: Vec<String> = std::fs::read_dir(cache.as_path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
    }

    #[test]
    fn failed_build_leaves_nothing_and_stale_builds_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        std::fs::create_dir_all(cache.join("base-x.tmp-999999/usr")).unwrap();
        let err = ensure_cached(&cache, "base-x", &|_| {}, |dir| {
            std::fs::create_dir_all(dir.join("etc")).unwrap();
            Err(ClusterError::Recipe("boom".into()))
        })
        .unwrap_err();
        assert!(err.to_string().contains("boom"));
        let names: Vec<String> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["base-x.lock"]);
        let (path, origin) = ensure_cached(&cache, "base-x", &|_| {}, |dir| {
            std::fs::create_dir(dir).map_err(|source| ClusterError::Io {
                op: "create",
                path: dir.to_owned(),
                source,
            })
        })
        .unwrap();
        assert!(matches!(origin, BaseOrigin::Built { .. }));
        let (again, origin) =
            ensure_cached(&cache, "base-x", &|_| {}, |_| panic!("must not rebuild")).unwrap();
        assert_eq!((again, origin), (path, BaseOrigin::Cached));
    }

    #[test]
    fn post_process_makes_mount_points_and_drops_apt_files() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("var/cache/apt/archives/partial")).unwrap();
        std::fs::create_dir_all(root.join("var/lib/apt/lists/partial")).unwrap();
        std::fs::write(
            root.join("var/cache/apt/archives/python3_3.13_amd64.deb"),
            b"x",
        )
        .unwrap();
        std::fs::write(
            root.join("var/lib/apt/lists/mirror_dists_trixie_main_Packages"),
            b"x",
        )
        .unwrap();
        std::fs::write(root.join("var/lib/apt/lists/lock"), b"").unwrap();
        std::fs::create_dir(root.join("proc")).unwrap();
        post_process(root).unwrap();
        for d in ["packages", "handler", "opt", "host", "tmp", "proc", "dev"] {
            assert!(root.join(d).is_dir(), "{d}");
        }
        let tmp_mode = std::fs::metadata(root.join("tmp"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(tmp_mode, 0o1777);
        assert!(!root
            .join("var/cache/apt/archives/python3_3.13_amd64.deb")
            .exists());
        assert!(!root
            .join("var/lib/apt/lists/mirror_dists_trixie_main_Packages")
            .exists());
        assert!(root.join("var/lib/apt/lists/lock").exists());
        assert!(root.join("var/lib/apt/lists/partial").is_dir());
    }
}
