//! NVIDIA GPUs on the host, found the way nvidia-container-toolkit finds them: the device
//! nodes in `/dev` (`nvidiactl`, `nvidia-uvm`, `nvidia-uvm-tools`, `nvidia-modeset`, one
//! `nvidiaN` per GPU), the driver's user-space libraries from `ldconfig -p` (or the worker's
//! `gpu_libraries` list), and its tools (`nvidia-smi`, ...) on the usual paths. What a GPU
//! sandbox gets from them is [`GpuHost::select`]'s [`GpuMounts`]: the nodes to bind into its
//! `/dev`, the device cgroup rules that let it open them, and the files for its
//! `/usr/local/nvidia` view (`lib64/`, `bin/`).
//!
//! The parsing and the choice are pure functions of what was read, unit-tested against made-up
//! hosts; [`GpuHost::detect`] reads the real one.

use std::path::{Path, PathBuf};

use sandbox::devices::DeviceRule;

use crate::lambda_config::GpuRequest;

/// Where a GPU sandbox sees the driver's files.
pub const NVIDIA_DIR: &str = "/usr/local/nvidia";
/// The control node whose presence says the host has the NVIDIA driver loaded.
pub const CONTROL_NODE: &str = "/dev/nvidiactl";

/// The driver libraries a CUDA program needs (nvidia-container-toolkit's "compute" and
/// "utility" sets), matched by their name before `.so`.
const LIBRARIES: &[&str] = &[
    "libcuda",
    "libcudadebugger",
    "libnvidia-ml",
    "libnvidia-ptxjitcompiler",
    "libnvidia-nvvm",
    "libnvidia-gpucomp",
    "libnvidia-fatbinaryloader",
    "libnvidia-compiler",
    "libnvidia-opencl",
    "libnvidia-allocator",
    "libnvidia-cfg",
];
/// The driver's tools.
const BINARIES: &[&str] = &[
    "nvidia-smi",
    "nvidia-debugdump",
    "nvidia-persistenced",
    "nvidia-cuda-mps-control",
    "nvidia-cuda-mps-server",
];
const BIN_DIRS: &[&str] = &["/usr/bin", "/usr/local/bin", "/usr/sbin"];
/// Nodes every GPU sandbox gets beside its GPUs', when present.
const SHARED_NODES: &[&str] = &[
    "nvidiactl",
    "nvidia-uvm",
    "nvidia-uvm-tools",
    "nvidia-modeset",
];

/// Why a function cannot have the GPUs it asks for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuError {
    #[error("this machine has no NVIDIA GPU ({CONTROL_NODE} is missing): a function with enable_gpu cannot run here")]
    NoGpu,
    #[error("GPU {index} is not on this machine (it has {available})")]
    Missing { index: u32, available: String },
    #[error("{wanted} GPUs asked for, this machine has {available}")]
    TooMany { wanted: u32, available: usize },
}

/// One device node: its path and numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub path: PathBuf,
    pub major: u32,
    pub minor: u32,
}

/// What the host offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuHost {
    /// `nvidiactl` and the other shared nodes that exist.
    pub shared: Vec<Node>,
    /// `(N, /dev/nvidiaN)`, by index.
    pub gpus: Vec<(u32, Node)>,
    /// Driver libraries: (name the sandbox sees, host file).
    pub libraries: Vec<(String, PathBuf)>,
    /// Driver tools: (name, host file).
    pub binaries: Vec<(String, PathBuf)>,
}

/// What one GPU sandbox gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuMounts {
    /// Host nodes bound at the same path in its `/dev`.
    pub nodes: Vec<PathBuf>,
    /// Its device cgroup: the defaults and these nodes.
    pub rules: Vec<DeviceRule>,
    /// (host file, path under [`NVIDIA_DIR`]): `lib64/<name>`, `bin/<name>`.
    pub files: Vec<(PathBuf, PathBuf)>,
    /// The indices it got (`NVIDIA_VISIBLE_DEVICES`).
    pub indices: Vec<u32>,
}

impl GpuHost {
    /// Whether the driver is loaded here (its control node exists). Cheap.
    pub fn present() -> bool {
        use std::os::unix::fs::FileTypeExt;
        std::fs::metadata(CONTROL_NODE).is_ok_and(|m| m.file_type().is_char_device())
    }

    /// Reads the host: nodes in `/dev`, `ldconfig -p` (or `libraries`, when the worker
    /// names them), the tools. `None` without the control node. Blocking (runs `ldconfig`).
    pub fn detect(libraries: &[PathBuf]) -> Option<Self> {
        if !Self::present() {
            return None;
        }
        let nodes = list_nodes(Path::new("/dev"));
        let ldconfig = if libraries.is_empty() {
            std::process::Command::new("ldconfig")
                .arg("-p")
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        } else {
            String::new()
        };
        let binaries = BINARIES
            .iter()
            .filter_map(|b| {
                BIN_DIRS
                    .iter()
                    .map(|d| Path::new(d).join(b))
                    .find(|p| p.is_file())
                    .map(|p| ((*b).to_owned(), p))
            })
            .collect();
        let mut host = Self::from_parts(&nodes, &ldconfig, binaries)?;
        if !libraries.is_empty() {
            host.libraries = libraries
                .iter()
                .filter_map(|p| Some((p.file_name()?.to_str()?.to_owned(), p.clone())))
                .collect();
        }
        Some(host)
    }

    /// The host from what was read: `/dev` entries, `ldconfig -p`'s text, the tools found.
    pub fn from_parts(
        nodes: &[Node],
        ldconfig: &str,
        binaries: Vec<(String, PathBuf)>,
    ) -> Option<Self> {
        let name = |n: &Node| {
            n.path
                .file_name()
                .and_then(|f| f.to_str())
                .unwrap_or_default()
                .to_owned()
        };
        if !nodes.iter().any(|n| name(n) == "nvidiactl") {
            return None;
        }
        let shared = SHARED_NODES
            .iter()
            .filter_map(|s| nodes.iter().find(|n| name(n) == *s).cloned())
            .collect();
        let mut gpus: Vec<(u32, Node)> = nodes
            .iter()
            .filter_map(|n| {
                let index = name(n).strip_prefix("nvidia")?.parse::<u32>().ok()?;
                Some((index, n.clone()))
            })
            .collect();
        gpus.sort_by_key(|(i, _)| *i);
        Some(Self {
            shared,
            gpus,
            libraries: parse_ldconfig(ldconfig),
            binaries,
        })
    }

    /// What a sandbox asking for `request` gets, or why it cannot.
    pub fn select(&self, request: &GpuRequest) -> Result<GpuMounts, GpuError> {
        let available = || {
            let list: Vec<String> = self.gpus.iter().map(|(i, _)| i.to_string()).collect();
            if list.is_empty() {
                "none".to_owned()
            } else {
                format!("GPU {}", list.join(", "))
            }
        };
        let chosen: Vec<&(u32, Node)> = match request {
            GpuRequest::Count(n) => {
                if *n as usize > self.gpus.len() {
                    return Err(GpuError::TooMany {
                        wanted: *n,
                        available: self.gpus.len(),
                    });
                }
                self.gpus.iter().take(*n as usize).collect()
            }
            GpuRequest::Indices(list) => list
                .iter()
                .map(|i| {
                    self.gpus
                        .iter()
                        .find(|(g, _)| g == i)
                        .ok_or_else(|| GpuError::Missing {
                            index: *i,
                            available: available(),
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        let nodes: Vec<&Node> = self
            .shared
            .iter()
            .chain(chosen.iter().map(|(_, n)| n))
            .collect();
        let mut rules = sandbox::devices::default_rules();
        rules.extend(
            nodes
                .iter()
                .map(|n| DeviceRule::char_rw(n.major, Some(n.minor))),
        );
        let files = self
            .libraries
            .iter()
            .map(|(name, host)| (host.clone(), Path::new("lib64").join(name)))
            .chain(
                self.binaries
                    .iter()
                    .map(|(name, host)| (host.clone(), Path::new("bin").join(name))),
            )
            .collect();
        Ok(GpuMounts {
            nodes: nodes.iter().map(|n| n.path.clone()).collect(),
            rules,
            files,
            indices: chosen.iter().map(|(i, _)| *i).collect(),
        })
    }
}

/// The character devices directly in `dev` whose name starts with `nvidia`.
fn list_nodes(dev: &Path) -> Vec<Node> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(entries) = std::fs::read_dir(dev) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("nvidia"))
        .filter_map(|e| {
            let md = std::fs::metadata(e.path()).ok()?;
            if !md.file_type().is_char_device() {
                return None;
            }
            let rdev = md.rdev();
            Some(Node {
                path: e.path(),
                major: nix::sys::stat::major(rdev) as u32,
                minor: nix::sys::stat::minor(rdev) as u32,
            })
        })
        .collect()
}

/// The driver libraries in `ldconfig -p`'s output, for this machine's architecture: each
/// `\tNAME (libc6,x86-64) => PATH` line whose NAME is one of [`LIBRARIES`]; the first path
/// of each name.
pub fn parse_ldconfig(text: &str) -> Vec<(String, PathBuf)> {
    let arch = if cfg!(target_arch = "aarch64") {
        "AArch64"
    } else {
        "x86-64"
    };
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for line in text.lines() {
        let Some((left, path)) = line.split_once(" => ") else {
            continue;
        };
        let left = left.trim();
        let Some((name, tags)) = left.split_once(' ') else {
            continue;
        };
        if !tags.contains(arch) {
            continue;
        }
        let stem = name.split(".so").next().unwrap_or_default();
        let wanted = LIBRARIES.contains(&stem) && name.contains(".so");
        let path = PathBuf::from(path.trim());
        if wanted && path.is_absolute() && !out.iter().any(|(n, _)| n == name) {
            out.push((name.to_owned(), path));
        }
    }
    out
}

#[cfg(test)]
mod tests;
