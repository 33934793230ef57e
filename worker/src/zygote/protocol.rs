//! The messages the worker and its zygotes exchange, as typed values: what the worker sends on
//! a zygote's control socket ([`Message`]) and what a forked child reports ([`Report`]).
//! `cluster-template/runtime/zygote.py` speaks the same protocol, version [`PROTOCOL`], and
//! checks every message before it acts on it.
//!
//! Each message is one `SOCK_SEQPACKET` datagram: a JSON object, with fds attached
//! (`SCM_RIGHTS`). The JSON names every fd by its index in that array ([`FdIndex`]), exactly
//! once, so that nothing is paired by position: a fork request names each package together
//! with its own fd. [`Outgoing`] builds the JSON and its fd array together, the only way the
//! worker makes a message.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd};

use serde::{Deserialize, Serialize};

/// The protocol version the worker speaks; the base's `zygote.py` must declare the same in a
/// `PROTOCOL = <n>` line.
pub const PROTOCOL: u32 = 5;
/// The most fds one message may carry (`MAX_FDS` in `zygote.py`).
pub const MAX_FDS: usize = 250;
/// The most bytes of one message's JSON (`MAX_MESSAGE` in `zygote.py`).
pub const MAX_MESSAGE: usize = 1 << 16;
/// The most bytes of one report (`MAX_REPORT` in `zygote.py`).
pub const MAX_REPORT: usize = 4096;

/// The index of an fd in the `SCM_RIGHTS` array of the message that names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FdIndex(pub usize);

/// Everything the worker sends a zygote, with the protocol version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub protocol: u32,
    #[serde(flatten)]
    pub message: Message,
}

/// One message on a zygote's control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    /// A cgroup prepared for one more spare child: its `cgroup.procs` files, one per
    /// hierarchy, and the spare's end of the socket its request will come on (the worker
    /// keeps the other). The zygote forks a spare into it at once.
    Cgroup { procs: Vec<FdIndex>, link: FdIndex },
    /// A fork request, sent to one spare on its link (never to the zygote).
    Fork(ForkRequest),
}

/// What the forked child becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A handler sandbox: loads `/handler/lambda_func.py` and serves calls.
    Handler,
    /// A zygote: imports its packages and serves forks of its own.
    Zygote,
}

/// A fork request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkRequest {
    pub role: Role,
    pub fds: ForkFds,
    /// The sandbox's environment.
    pub env: Vec<(String, String)>,
    /// Whether the sandbox has its own network namespace (`net: none`).
    pub net_ns: bool,
    /// The size of the sandbox's `/tmp`.
    pub tmp_mb: u64,
    /// What a handler child gives up (the seccomp filters came with the zygote's environment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harden: Option<Harden>,
}

/// Every fd of a fork request, by role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkFds {
    /// The socket the child reports on.
    pub reply: FdIndex,
    /// The detached mount of the scratch directory, for `/host`.
    pub host: FdIndex,
    /// The detached mount of the lambda's directory, for `/handler` (a handler's only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<FdIndex>,
    /// One detached mount per package, sorted by path, each path once.
    pub packages: Vec<PackageFd>,
    /// One detached mount per layer (a handler's only), mounted at `/opt/<name>`.
    pub layers: Vec<LayerFd>,
    /// One detached mount per access point (a handler's only), mounted at `/mnt/<mount>`.
    pub volumes: Vec<VolumeFd>,
    /// The handler's listening socket, or the new zygote's control socket.
    pub listen: FdIndex,
    pub stdout: FdIndex,
    pub stderr: FdIndex,
}

/// One package of a fork request and the fd of its directory's detached mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageFd {
    /// `name/version`: where the package appears under `/packages`.
    pub rel: String,
    pub fd: FdIndex,
}

/// One access point of a fork request and the fd of its detached mount (id-mapped, with its
/// own flags).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeFd {
    /// Where it appears: `/mnt/<mount>` (one or more path components).
    pub mount: String,
    pub fd: FdIndex,
}

/// One layer of a fork request and the fd of its directory's detached mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerFd {
    /// Where it appears: `/opt/<name>`.
    pub name: String,
    pub fd: FdIndex,
}

/// The user a handler child runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Harden {
    pub uid: u32,
    pub gid: u32,
}

/// What a forked child reports on its reply socket (the kernel adds the writer's pid).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Report {
    /// The child is the sandbox (or zygote) it was asked to be.
    Ready,
    /// A step failed (`step` says what it was doing, `reason` why); the child has exited.
    Failed { step: String, reason: String },
}

impl Report {
    /// Parses a report as the child wrote it.
    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// A message the worker cannot build.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("package path {rel:?} is not name/version")]
    BadPackage { rel: String },
    #[error("layer name {name:?} is empty, holds '/' or NUL, is '.' or '..', or comes twice")]
    BadLayer { name: String },
    #[error(
        "volume mount {mount:?} is not a path of normal names under /mnt, or nests in another"
    )]
    BadVolume { mount: String },
    #[error("environment key {key:?} is empty or holds '=' or NUL")]
    BadEnv { key: String },
    #[error("a message of {count} fds (at most {MAX_FDS})")]
    TooManyFds { count: usize },
    #[error("a message of {len} bytes (at most {MAX_MESSAGE})")]
    TooLarge { len: usize },
    #[error("cannot encode a message: {0}")]
    Encode(#[from] serde_json::Error),
}

/// A fork request before encoding: the fds themselves, the packages as (`name/version`, fd)
/// pairs in any order, duplicates allowed (the first fd of each path is kept).
#[derive(Debug)]
pub struct Fork<'fd, 'a> {
    pub role: Role,
    pub reply: BorrowedFd<'fd>,
    pub host: BorrowedFd<'fd>,
    pub handler: Option<BorrowedFd<'fd>>,
    pub packages: &'a [(&'a str, BorrowedFd<'fd>)],
    /// (name, fd) of each layer, each name once.
    pub layers: &'a [(&'a str, BorrowedFd<'fd>)],
    /// (path under `/mnt`, fd) of each access point; no path inside another.
    pub volumes: &'a [(&'a str, BorrowedFd<'fd>)],
    pub listen: BorrowedFd<'fd>,
    pub stdout: BorrowedFd<'fd>,
    pub stderr: BorrowedFd<'fd>,
    pub env: &'a [(String, String)],
    pub net_ns: bool,
    pub tmp_mb: u64,
    pub harden: Option<Harden>,
}

/// One message ready to send: its JSON and the fds its indices point into, built together.
#[derive(Debug)]
pub struct Outgoing<'fd> {
    body: Vec<u8>,
    fds: Vec<BorrowedFd<'fd>>,
}

impl<'fd> Outgoing<'fd> {
    /// The hand-over of a cgroup: its `cgroup.procs` files, and the spare's link.
    pub fn cgroup<F: AsFd>(procs: &'fd [F], link: BorrowedFd<'fd>) -> Result<Self, ProtocolError> {
        let mut fds = FdTable::default();
        let procs = procs.iter().map(|f| fds.add(f.as_fd())).collect();
        let link = fds.add(link);
        fds.seal(Message::Cgroup { procs, link })
    }

    /// A fork request. Packages are kept once per path, sorted, each with its own fd.
    pub fn fork(fork: &Fork<'fd, '_>) -> Result<Self, ProtocolError> {
        for (key, _) in fork.env {
            if key.is_empty() || key.contains(['=', '\0']) {
                return Err(ProtocolError::BadEnv { key: key.clone() });
            }
        }
        let mut by_rel: BTreeMap<&str, BorrowedFd<'fd>> = BTreeMap::new();
        for (rel, fd) in fork.packages {
            check_rel(rel)?;
            by_rel.entry(rel).or_insert(*fd);
        }
        for (i, (name, _)) in fork.layers.iter().enumerate() {
            let twice = fork.layers[..i].iter().any(|(n, _)| n == name);
            if twice || matches!(*name, "" | "." | "..") || name.contains(['/', '\0']) {
                return Err(ProtocolError::BadLayer {
                    name: (*name).to_owned(),
                });
            }
        }
        for (i, (mount, _)) in fork.volumes.iter().enumerate() {
            let normal = !mount.is_empty()
                && mount
                    .split('/')
                    .all(|c| !matches!(c, "" | "." | "..") && !c.contains('\0'));
            let nested = fork.volumes[..i].iter().any(|(other, _)| {
                let (a, b) = (format!("{other}/"), format!("{mount}/"));
                a.starts_with(&b) || b.starts_with(&a)
            });
            if !normal || nested {
                return Err(ProtocolError::BadVolume {
                    mount: (*mount).to_owned(),
                });
            }
        }
        let mut fds = FdTable::default();
        let indices = ForkFds {
            reply: fds.add(fork.reply),
            host: fds.add(fork.host),
            handler: fork.handler.map(|h| fds.add(h)),
            packages: by_rel
                .into_iter()
                .map(|(rel, fd)| PackageFd {
                    rel: rel.to_owned(),
                    fd: fds.add(fd),
                })
                .collect(),
            layers: fork
                .layers
                .iter()
                .map(|(name, fd)| LayerFd {
                    name: (*name).to_owned(),
                    fd: fds.add(*fd),
                })
                .collect(),
            volumes: fork
                .volumes
                .iter()
                .map(|(mount, fd)| VolumeFd {
                    mount: (*mount).to_owned(),
                    fd: fds.add(*fd),
                })
                .collect(),
            listen: fds.add(fork.listen),
            stdout: fds.add(fork.stdout),
            stderr: fds.add(fork.stderr),
        };
        fds.seal(Message::Fork(ForkRequest {
            role: fork.role,
            fds: indices,
            env: fork.env.to_vec(),
            net_ns: fork.net_ns,
            tmp_mb: fork.tmp_mb,
            harden: fork.harden,
        }))
    }

    /// The JSON.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The fds, in the order the indices count them.
    pub fn fds(&self) -> &[BorrowedFd<'fd>] {
        &self.fds
    }
}

/// The fds of a message being built; each added fd gets the next index.
#[derive(Default)]
struct FdTable<'fd> {
    fds: Vec<BorrowedFd<'fd>>,
}

impl<'fd> FdTable<'fd> {
    fn add(&mut self, fd: BorrowedFd<'fd>) -> FdIndex {
        self.fds.push(fd);
        FdIndex(self.fds.len() - 1)
    }

    fn seal(self, message: Message) -> Result<Outgoing<'fd>, ProtocolError> {
        if self.fds.len() > MAX_FDS {
            return Err(ProtocolError::TooManyFds {
                count: self.fds.len(),
            });
        }
        let body = serde_json::to_vec(&Envelope {
            protocol: PROTOCOL,
            message,
        })?;
        if body.len() > MAX_MESSAGE {
            return Err(ProtocolError::TooLarge { len: body.len() });
        }
        Ok(Outgoing {
            body,
            fds: self.fds,
        })
    }
}

/// A package's path under `/packages`: exactly `name/version`, nothing that leaves it (the
/// same check as `check_rel` in `zygote.py`).
fn check_rel(rel: &str) -> Result<(), ProtocolError> {
    let parts: Vec<&str> = rel.split('/').collect();
    let bad = |p: &&str| matches!(*p, "" | "." | "..") || p.contains('\0');
    if parts.len() != 2 || parts.iter().any(bad) {
        return Err(ProtocolError::BadPackage {
            rel: rel.to_owned(),
        });
    }
    Ok(())
}

/// The protocol version a `zygote.py` declares in its `PROTOCOL = <n>` line, if any.
pub fn declared_version(source: &str) -> Option<u32> {
    source.lines().find_map(|line| {
        let value = line.strip_prefix("PROTOCOL")?.trim_start();
        value.strip_prefix('=')?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::fd::AsRawFd;
    use std::path::{Path, PathBuf};

    /// What `fd` (ours) is, as `/proc/self/fd` names it.
    fn target(fd: BorrowedFd<'_>) -> PathBuf {
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap()
    }

    fn dir(root: &Path, rel: &str) -> File {
        let p = root.join(rel);
        std::fs::create_dir_all(&p).unwrap();
        File::open(p).unwrap()
    }

    fn decode(out: &Outgoing<'_>) -> ForkRequest {
        let env: Envelope = serde_json::from_slice(out.body()).unwrap();
        assert_eq!(env.protocol, PROTOCOL);
        match env.message {
            Message::Fork(f) => f,
            other => panic!("not a fork request: {other:?}"),
        }
    }

    #[test]
    fn a_duplicated_package_cannot_misplace_an_fd() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b, a_again) = (
            dir(tmp.path(), "a/1"),
            dir(tmp.path(), "b/2"),
            dir(tmp.path(), "a/1"),
        );
        let (host, handler, other) = (
            dir(tmp.path(), "host"),
            dir(tmp.path(), "handler"),
            File::open("/dev/null").unwrap(),
        );
        // Unsorted, with a duplicate ahead of another package: positions would shift b's fd.
        let packages = [
            ("b/2", b.as_fd()),
            ("a/1", a.as_fd()),
            ("a/1", a_again.as_fd()),
        ];
        let out = Outgoing::fork(&Fork {
            role: Role::Handler,
            reply: other.as_fd(),
            host: host.as_fd(),
            handler: Some(handler.as_fd()),
            packages: &packages,
            layers: &[],
            volumes: &[],
            listen: other.as_fd(),
            stdout: other.as_fd(),
            stderr: other.as_fd(),
            env: &[("A".into(), "b=c".into())],
            net_ns: true,
            tmp_mb: 64,
            harden: Some(Harden { uid: 7, gid: 8 }),
        })
        .unwrap();
        let req = decode(&out);
        let fds = out.fds();
        let pairs: Vec<(&str, PathBuf)> = req
            .fds
            .packages
            .iter()
            .map(|p| (p.rel.as_str(), target(fds[p.fd.0])))
            .collect();
        assert_eq!(
            pairs,
            [
                ("a/1", tmp.path().join("a/1")),
                ("b/2", tmp.path().join("b/2"))
            ]
        );
        // The first fd of a duplicated path is the one sent; the other is not sent at all.
        assert_eq!(fds[req.fds.packages[0].fd.0].as_raw_fd(), a.as_raw_fd());
        assert!(fds.iter().all(|f| f.as_raw_fd() != a_again.as_raw_fd()));
        assert_eq!(target(fds[req.fds.host.0]), tmp.path().join("host"));
        assert_eq!(
            req.fds.handler.map(|h| target(fds[h.0])),
            Some(tmp.path().join("handler"))
        );
        // Every fd is named exactly once.
        let mut named = vec![req.fds.reply, req.fds.host, req.fds.listen];
        named.extend([req.fds.stdout, req.fds.stderr]);
        named.extend(req.fds.handler);
        named.extend(req.fds.packages.iter().map(|p| p.fd));
        named.sort();
        assert_eq!(named, (0..fds.len()).map(FdIndex).collect::<Vec<_>>());
        assert_eq!(req.harden, Some(Harden { uid: 7, gid: 8 }));
        assert_eq!(req.env, [("A".to_owned(), "b=c".to_owned())]);
    }

    #[test]
    fn the_wire_format_is_what_zygote_py_reads() {
        let null = File::open("/dev/null").unwrap();
        let procs = [null.try_clone().unwrap(), null.try_clone().unwrap()];
        let out = Outgoing::cgroup(&procs, null.as_fd()).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(out.body()).unwrap(),
            serde_json::json!({"protocol": PROTOCOL, "kind": "cgroup", "procs": [0, 1], "link": 2})
        );
        assert_eq!(out.fds().len(), 3);
        let fd = null.as_fd();
        let out = Outgoing::fork(&Fork {
            role: Role::Zygote,
            reply: fd,
            host: fd,
            handler: None,
            packages: &[("six/1.17.0", fd)],
            layers: &[],
            volumes: &[],
            listen: fd,
            stdout: fd,
            stderr: fd,
            env: &[("PATH".into(), "/bin".into())],
            net_ns: false,
            tmp_mb: 32,
            harden: None,
        })
        .unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(out.body()).unwrap(),
            serde_json::json!({
                "protocol": PROTOCOL, "kind": "fork", "role": "zygote",
                "fds": {"reply": 0, "host": 1, "packages": [{"rel": "six/1.17.0", "fd": 2}],
                        "layers": [], "volumes": [], "listen": 3, "stdout": 4, "stderr": 5},
                "env": [["PATH", "/bin"]], "net_ns": false, "tmp_mb": 32,
            })
        );
        assert_eq!(out.fds().len(), 6);
        assert_eq!(
            Report::decode(br#"{"status": "ready"}"#).unwrap(),
            Report::Ready
        );
        assert_eq!(
            Report::decode(br#"{"status": "failed", "step": "attach /host", "reason": "EINVAL"}"#)
                .unwrap(),
            Report::Failed {
                step: "attach /host".into(),
                reason: "EINVAL".into()
            }
        );
        assert!(Report::decode(b"ok").is_err());
    }

    #[test]
    fn paths_env_and_sizes_the_zygote_would_refuse_are_not_built() {
        let null = File::open("/dev/null").unwrap();
        let fd = null.as_fd();
        type Mounts<'a> = &'a [(&'a str, BorrowedFd<'a>)];
        let request = |packages: Mounts<'_>,
                       layers: Mounts<'_>,
                       volumes: Mounts<'_>,
                       env: &[(String, String)]| {
            Outgoing::fork(&Fork {
                role: Role::Handler,
                reply: fd,
                host: fd,
                handler: Some(fd),
                packages,
                layers,
                volumes,
                listen: fd,
                stdout: fd,
                stderr: fd,
                env,
                net_ns: true,
                tmp_mb: 64,
                harden: None,
            })
            .map(|_| ())
        };
        let fork =
            |packages: Mounts<'_>, env: &[(String, String)]| request(packages, &[], &[], env);
        let with_layers = |layers: Mounts<'_>| request(&[], layers, &[], &[]);
        for names in [
            &["common", "common"][..],
            &[""],
            &["."],
            &[".."],
            &["a/b"],
            &["a\0"],
        ] {
            let layers: Vec<(&str, BorrowedFd<'_>)> = names.iter().map(|n| (*n, fd)).collect();
            let err = with_layers(&layers).unwrap_err();
            assert!(
                matches!(err, ProtocolError::BadLayer { .. }),
                "{names:?}: {err}"
            );
        }
        with_layers(&[("common", fd), ("tools", fd)]).unwrap();
        let with_volumes = |volumes: Mounts<'_>| request(&[], &[], volumes, &[]);
        for mounts in [
            &["msg", "msg"][..],
            &["a", "a/b"],
            &["a/b", "a"],
            &[""],
            &["a/../b"],
            &["/abs"],
            &["a//b"],
            &["a\0"],
        ] {
            let volumes: Vec<(&str, BorrowedFd<'_>)> = mounts.iter().map(|m| (*m, fd)).collect();
            let err = with_volumes(&volumes).unwrap_err();
            assert!(
                matches!(err, ProtocolError::BadVolume { .. }),
                "{mounts:?}: {err}"
            );
        }
        with_volumes(&[("msg", fd), ("data/models", fd), ("ab", fd), ("a", fd)]).unwrap();
        for rel in [
            "six", "six/1/x", "../etc", "six/..", "six/.", "/six/1", "six//1", "six/1/", "a/\0",
        ] {
            let err = fork(&[(rel, fd)], &[]).unwrap_err();
            assert!(
                matches!(&err, ProtocolError::BadPackage { rel: r } if r == rel),
                "{rel}: {err}"
            );
        }
        for key in ["", "A=B", "A\0"] {
            let err = fork(&[], &[(key.into(), "v".into())]).unwrap_err();
            assert!(
                matches!(err, ProtocolError::BadEnv { .. }),
                "{key:?}: {err}"
            );
        }
        let many: Vec<(String, BorrowedFd<'_>)> =
            (0..MAX_FDS).map(|i| (format!("p{i}/1"), fd)).collect();
        let many: Vec<(&str, BorrowedFd<'_>)> =
            many.iter().map(|(r, f)| (r.as_str(), *f)).collect();
        let err = fork(&many, &[]).unwrap_err();
        assert!(matches!(err, ProtocolError::TooManyFds { .. }), "{err}");
        let big = [("K".to_owned(), "v".repeat(MAX_MESSAGE))];
        let err = fork(&[], &big).unwrap_err();
        assert!(matches!(err, ProtocolError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn the_declared_version_is_read_from_its_line() {
        assert_eq!(declared_version("x = 1\nPROTOCOL = 2\n"), Some(2));
        assert_eq!(declared_version("PROTOCOL=3"), Some(3));
        assert_eq!(declared_version("# PROTOCOL = 2\nMAX = 1"), None);
        assert_eq!(declared_version("PROTOCOL = two"), None);
        assert_eq!(
            declared_version(include_str!("../../../cluster-template/runtime/zygote.py")),
            Some(PROTOCOL),
            "cluster-template/runtime/zygote.py speaks another version"
        );
    }
}
