//! Recipe bases: `admin base create NAME --from BASE --packages P,...` extends a base (the
//! cluster's default, or one of its custom bases) with Debian packages, declaratively.
//!
//! A recipe is the source base's package state (the SHA-256 of its `var/lib/dpkg/status`) plus
//! the sorted package names. It is built once per machine into the base cache, like the
//! default base (`crate::cluster::base::ensure_cached`: `<cache>/recipe-<hash>`, under a lock,
//! renamed into place when complete), and every cluster that asks for the same recipe reuses
//! it. Steps of [`create`], in order:
//! 1. check the name (free, not `default`) and the package names (Debian's syntax, at most
//!    [`MAX_PACKAGES`]), and find the source base and its dpkg database;
//! 2. if the cache has no entry for the recipe, build it in `<cache>/recipe-<hash>.tmp-<pid>`:
//!    a. a full copy of the source root (`cp -a`: new inodes, so nothing apt or a package's
//!    scripts write can reach the source's files, which are links into the cache);
//!    b. `/tmp` and `/var/tmp` opened again (1777: the cluster's copy closes them) and a
//!    `policy-rc.d` that keeps packages from starting services;
//!    c. in a private mount, PID, UTS and IPC namespace (`unshare`, so every mount below ends
//!    with it, and every process in it when admin dies): `/proc`, a `/dev` tmpfs with the
//!    usual character devices bound in, the host's `resolv.conf` and CA certificates bound
//!    read-only, then, in a `chroot` with a clean environment, `apt-get update` and
//!    `apt-get install --no-install-recommends`, its output streamed as progress;
//!    d. the `policy-rc.d` removed, and the same post-processing as the default base (mount
//!    points, no package lists or downloaded `.deb` files);
//! 3. stage `bases/.tmp-<name>-<pid>`: `rootfs/` a hardlink copy of the cache entry with the
//!    runtime installed (new files, never through a link), `base.json` (the source's Python,
//!    environment and working directory), then rename it to `bases/<name>`. A failure removes
//!    the staging (and, in step 2, the build) directory.
//!
//! Package scripts run as root in the copy, as they do under debootstrap: name as `--from` only
//! a base whose contents you trust (the default, or an image you would also `docker build` on).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use sha2::{Digest, Sha256};
use worker::bases::{BaseInfo, ROOTFS_DIR};

use super::{io, new_name, now_secs, parse_name, stage, BaseError};
use crate::cluster::base::{ensure_cached, run_streamed};
use crate::cluster::{copy, ClusterError};

/// Most packages one recipe names.
pub const MAX_PACKAGES: usize = 64;
/// The source's `from` name that means the cluster's own base.
pub const DEFAULT_BASE: &str = "default";

/// What `admin base create` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// `default` or a custom base's name.
    pub from: String,
    /// Debian package names, sorted and distinct.
    pub packages: Vec<String>,
}

impl Recipe {
    /// Checks and normalizes `packages` (comma-separated lists already split).
    pub fn new(from: &str, packages: &[String]) -> Result<Self, BaseError> {
        let mut names: Vec<String> = packages
            .iter()
            .flat_map(|p| p.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        names.sort();
        names.dedup();
        if names.is_empty() {
            return Err(BaseError::Recipe(
                "--packages names no package (a comma-separated list of Debian package names)"
                    .into(),
            ));
        }
        if names.len() > MAX_PACKAGES {
            return Err(BaseError::Recipe(format!(
                "--packages names {} packages; at most {MAX_PACKAGES}",
                names.len()
            )));
        }
        if let Some(bad) = names.iter().find(|n| !is_package_name(n)) {
            return Err(BaseError::Recipe(format!(
                "{bad:?} is not a Debian package name (lower-case letters, digits, '+', '-' and '.', \
                 two or more, starting with a letter or digit)"
            )));
        }
        Ok(Self {
            from: from.to_owned(),
            packages: names,
        })
    }

    /// The cache entry of this recipe over a source whose dpkg database hashes to `status`:
    /// `recipe-<first 16 hex digits of the SHA-256>`.
    pub fn entry_name(&self, status: &str) -> String {
        let mut h = Sha256::new();
        h.update(b"lambdaworker recipe 1\n");
        h.update(status.as_bytes());
        for p in &self.packages {
            h.update(b"\n");
            h.update(p.as_bytes());
        }
        format!("recipe-{}", worker::hex(&h.finalize()[..8]))
    }
}

/// Debian policy 5.6.1: at least two characters of `[a-z0-9+.-]`, starting with an
/// alphanumeric.
fn is_package_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b.len() <= 128
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+-.".contains(c))
}

/// What [`create`] did.
#[derive(Debug, Clone)]
pub struct Created {
    pub info: BaseInfo,
    /// The cache entry, and whether this call built it (else it was there).
    pub entry: PathBuf,
    pub built: bool,
    pub seconds: f64,
}

/// Where the source of a recipe lies.
#[derive(Debug, Clone)]
pub struct Source {
    pub root: PathBuf,
    /// The source's Python, environment and working directory (inherited).
    pub info: Option<BaseInfo>,
}

/// Finds the source base: `default` is `default_root` (the cluster's `base/`).
pub fn source(bases: &Path, default_root: &Path, from: &str) -> Result<Source, BaseError> {
    if from == DEFAULT_BASE {
        return Ok(Source {
            root: default_root.to_owned(),
            info: None,
        });
    }
    let name = parse_name(from)?;
    let found = worker::bases::find(bases, &name).map_err(|_| BaseError::NotFound(from.into()))?;
    Ok(Source {
        root: found.root,
        info: Some(found.info),
    })
}

/// Builds (or reuses) the recipe's cache entry in `cache_dir` and makes base `name` of it under
/// `bases` (see the module docs). Blocking; `progress` gets a line per step and apt's output.
pub fn create(
    bases: &Path,
    cache_dir: &Path,
    name: &str,
    recipe: &Recipe,
    from: &Source,
    progress: &dyn Fn(&str),
) -> Result<Created, BaseError> {
    let t0 = Instant::now();
    let name = new_name(bases, name)?;
    let status_path = from.root.join("var/lib/dpkg/status");
    let status = std::fs::read(&status_path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            BaseError::Recipe(format!(
                "base {} has no dpkg database ({}): only a Debian-based base takes packages",
                recipe.from,
                status_path.display()
            ))
        } else {
            io("read", &status_path)(source)
        }
    })?;
    let entry_name = recipe.entry_name(&worker::hex(&Sha256::digest(&status)));
    let (entry, origin) = ensure_cached(cache_dir, &entry_name, progress, |tmp| {
        progress(&format!(
            "building {entry_name}: {} + {}; this is done once per machine",
            recipe.from,
            recipe.packages.join(",")
        ));
        build(&from.root, tmp, &recipe.packages, progress)
    })?;
    let built = matches!(origin, crate::cluster::BaseOrigin::Built { .. });
    if !built {
        progress(&format!("using the cached {}", entry.display()));
    }
    let (info, ()) = stage(bases, &name, |staging| {
        let rootfs = staging.join(ROOTFS_DIR);
        progress("installing the runtime");
        copy::hardlink_tree(&entry, &rootfs)?;
        crate::cluster::install_runtime(&rootfs)?;
        let inherited = from.info.clone();
        let info = BaseInfo {
            name: name.to_string(),
            origin: format!("recipe {}: {}", recipe.from, recipe.packages.join(",")),
            created: now_secs(),
            env: inherited
                .as_ref()
                .map(|i| i.env.clone())
                .unwrap_or_default(),
            workdir: inherited.as_ref().and_then(|i| i.workdir.clone()),
            python: inherited.map_or_else(|| "/usr/bin/python3".to_owned(), |i| i.python),
        };
        Ok((info, ()))
    })?;
    Ok(Created {
        info,
        entry,
        built,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Step 2 of the module docs: fills `tmp` (which does not exist yet).
fn build(
    src: &Path,
    tmp: &Path,
    packages: &[String],
    progress: &dyn Fn(&str),
) -> Result<(), ClusterError> {
    let cio = |op: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| ClusterError::Io { op, path, source }
    };
    progress(&format!("copying {}", src.display()));
    run_streamed(
        Command::new("cp").arg("-a").arg(src).arg(tmp),
        "cp -a",
        progress,
    )?;
    for dir in ["tmp", "var/tmp"] {
        let p = tmp.join(dir);
        if p.is_dir() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o1777))
                .map_err(cio("chmod", &p))?;
        }
    }
    let policy = tmp.join("usr/sbin/policy-rc.d");
    let had_policy = std::fs::symlink_metadata(&policy).is_ok();
    if !had_policy {
        std::fs::write(
            &policy,
            "#!/bin/sh\n# no services start while a base is built\nexit 101\n",
        )
        .map_err(cio("write", &policy))?;
        std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o755))
            .map_err(cio("chmod", &policy))?;
    }
    // resolv.conf is bound over, so it must exist as a file; one created here goes again.
    let resolv = tmp.join("etc/resolv.conf");
    let made_resolv = std::fs::symlink_metadata(&resolv).is_err();
    if made_resolv {
        std::fs::write(&resolv, "").map_err(cio("write", &resolv))?;
    }
    progress(&format!("apt-get install {}", packages.join(" ")));
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--pid", "--fork"])
        .args([
            "--kill-child",
            "--uts",
            "--ipc",
            "--",
            "sh",
            "-ec",
            INSTALL_SCRIPT,
        ])
        .arg("sh")
        .arg(tmp)
        .args(packages)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    // If admin dies (even by SIGKILL), `unshare` gets SIGKILL, and with `--kill-child` so
    // does its PID namespace, apt included: no install goes on into a build directory the next
    // builder removes.
    // SAFETY: between fork and exec the closure makes one prctl call with constant
    // arguments; nothing is allocated or locked.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let installed = run_streamed(&mut cmd, "apt-get install", progress);
    if !had_policy {
        std::fs::remove_file(&policy).map_err(cio("remove", &policy))?;
    }
    if made_resolv {
        std::fs::remove_file(&resolv).map_err(cio("remove", &resolv))?;
    }
    installed?;
    crate::cluster::base::post_process(tmp)
}

/// Run by `sh` in the new namespaces: `$1` the root, the rest the packages. Every mount is in
/// the private mount namespace, so it ends with the command whatever happens.
const INSTALL_SCRIPT: &str = r#"
root=$1; shift
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=755,nosuid,size=1m dev "$root/dev"
for d in null zero full random urandom tty; do
  : > "$root/dev/$d"
  mount --bind "/dev/$d" "$root/dev/$d"
done
ln -s /proc/self/fd "$root/dev/fd"
if [ -f /etc/resolv.conf ]; then mount --bind -o ro /etc/resolv.conf "$root/etc/resolv.conf"; fi
if [ -d /etc/ssl/certs ] && [ -d "$root/etc/ssl/certs" ]; then
  mount --bind -o ro /etc/ssl/certs "$root/etc/ssl/certs"
fi
exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
  DEBIAN_FRONTEND=noninteractive HOME=/root \
  sh -ec 'apt-get -q update && apt-get -q -y --no-install-recommends install "$@"' sh "$@"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn packages_are_split_sorted_and_checked() {
        let r = Recipe::new(
            "default",
            &names(&["python3-pil,libjpeg62-turbo", "python3-pil"]),
        )
        .unwrap();
        assert_eq!(r.packages, ["libjpeg62-turbo", "python3-pil"]);
        for bad in ["Python3", "-x", "a", "x;rm", "x y", "pkg=1.0", "../x"] {
            let err = Recipe::new("default", &names(&[bad]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("not a Debian package name"), "{bad}: {err}");
        }
        let err = Recipe::new("default", &names(&[",", " "]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("names no package"), "{err}");
        let many: Vec<String> = (0..=MAX_PACKAGES).map(|i| format!("p{i}")).collect();
        let err = Recipe::new("default", &many).unwrap_err().to_string();
        assert!(err.contains("at most 64"), "{err}");
        assert!(is_package_name("g++") && is_package_name("libc6.1-dev"));
    }

    #[test]
    fn the_cache_entry_follows_packages_and_source_state() {
        let a = Recipe::new("default", &names(&["b1,a1"])).unwrap();
        let b = Recipe::new("default", &names(&["a1", "b1"])).unwrap();
        let c = Recipe::new("default", &names(&["a1"])).unwrap();
        assert_eq!(a.entry_name("s"), b.entry_name("s"));
        assert_ne!(a.entry_name("s"), c.entry_name("s"));
        assert_ne!(a.entry_name("s"), a.entry_name("t"));
        assert!(a.entry_name("s").starts_with("recipe-"));
        assert_eq!(a.entry_name("s").len(), "recipe-".len() + 16);
    }
}
