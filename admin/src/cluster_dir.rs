//! Paths inside an existing cluster directory, shared by the commands: the template, per-worker
//! configs, pid files and logs, and the registry server's record, credentials, pid file and log.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// An existing cluster directory (one with `config/template.json`).
#[derive(Debug, Clone)]
pub struct ClusterDir {
    root: PathBuf,
}

impl ClusterDir {
    /// Opens `dir`, checking that it is a cluster.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let root =
            std::fs::canonicalize(dir).with_context(|| format!("cluster {}", dir.display()))?;
        let this = Self { root };
        if !this.template().is_file() {
            bail!(
                "{} is not a cluster directory (no config/template.json); create one with `admin new -cluster DIR`",
                this.root.display()
            );
        }
        Ok(this)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn template(&self) -> PathBuf {
        self.root.join("config/template.json")
    }

    pub fn worker_config(&self, i: u32) -> PathBuf {
        self.root.join(format!("config/worker-{i}.json"))
    }

    pub fn worker_dir(&self, i: u32) -> PathBuf {
        self.root.join(format!("workers/worker-{i}"))
    }

    pub fn pid_file(&self, i: u32) -> PathBuf {
        self.root.join(format!("logs/worker-{i}.pid"))
    }

    pub fn log_file(&self, i: u32) -> PathBuf {
        self.root.join(format!("logs/worker-{i}.out"))
    }

    /// `config/registry.json`: where `admin registry` told the registry server to listen.
    pub fn registry_record(&self) -> PathBuf {
        self.root.join("config/registry.json")
    }

    /// `config/credentials.json`: the access key and secret key `admin registry` was given (0600).
    pub fn credentials(&self) -> PathBuf {
        self.root.join("config/credentials.json")
    }

    pub fn registry_pid_file(&self) -> PathBuf {
        self.root.join("logs/registry.pid")
    }

    pub fn registry_log(&self) -> PathBuf {
        self.root.join("logs/registry.out")
    }

    /// Indexes of `config/worker-N.json` files, ascending.
    pub fn worker_configs(&self) -> anyhow::Result<Vec<u32>> {
        indexes_in(&self.root.join("config"), ".json")
    }

    /// Indexes of `logs/worker-N.pid` files, ascending.
    pub fn pid_files(&self) -> anyhow::Result<Vec<u32>> {
        indexes_in(&self.root.join("logs"), ".pid")
    }
}

/// N of every `worker-N<suffix>` in `dir`, ascending.
fn indexes_in(dir: &Path, suffix: &str) -> anyhow::Result<Vec<u32>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut out: Vec<u32> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| worker_index(&e.file_name().to_string_lossy(), suffix))
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// `worker-3.json` with suffix `.json` gives 3.
pub fn worker_index(name: &str, suffix: &str) -> Option<u32> {
    let n = name.strip_prefix("worker-")?.strip_suffix(suffix)?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_file_names() {
        assert_eq!(worker_index("worker-0.json", ".json"), Some(0));
        assert_eq!(worker_index("worker-12.pid", ".pid"), Some(12));
        for bad in [
            "worker-.json",
            "worker-a.json",
            "worker-1.json.tmp",
            "template.json",
            "worker-+1.json",
        ] {
            assert_eq!(worker_index(bad, ".json"), None, "{bad}");
        }
    }

    #[test]
    fn open_requires_a_template_and_lists_workers() {
        let tmp = tempfile::tempdir().unwrap();
        let err = ClusterDir::open(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("not a cluster directory"), "{err}");
        std::fs::create_dir(tmp.path().join("config")).unwrap();
        for f in [
            "template.json",
            "worker-10.json",
            "worker-2.json",
            "worker-x.json",
        ] {
            std::fs::write(tmp.path().join("config").join(f), "{}").unwrap();
        }
        let c = ClusterDir::open(tmp.path()).unwrap();
        assert_eq!(c.worker_configs().unwrap(), [2, 10]);
        assert_eq!(c.pid_files().unwrap(), Vec::<u32>::new());
        assert!(c.pid_file(2).ends_with("logs/worker-2.pid"));
    }

    #[test]
    fn missing_cluster_is_named() {
        let err = ClusterDir::open(Path::new("/nonexistent/cluster")).unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/cluster"),
            "{err:#}"
        );
    }
}
