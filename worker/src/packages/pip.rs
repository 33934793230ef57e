//! pip in a sandbox: `python3 -m pip install` over the base, as the sandbox user with the
//! handlers' hardening, the host's network, DNS configuration and CA bundle (bound read-only),
//! a clean environment (proxies pass through), and a fresh staging directory as `/host`.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use sandbox::cgroup::Limits;
use sandbox::{Sandbox, SandboxSpec};

use super::{remove_staging, PackageError, Packages};
use crate::files::read_tail;
use crate::name::LambdaName;

const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

const RESOLV_CONF: &str = "/etc/resolv.conf";

const PIP_MEMORY_MB: u64 = 2048;

const PIP_MAX_PROCS: u64 = 256;

/// Why pip's sandbox did not start.
#[derive(Debug, thiserror::Error)]
pub enum PipSandboxError {
    #[error("invalid spec: {0}")]
    Spec(#[from] sandbox::SpecError),
    #[error("{0}")]
    Spawn(#[from] sandbox::SandboxError),
}

/// What one pip run left: exit code, the tail of its output, and its staging directory
/// (the caller removes it).
pub(super) struct PipRun {
    pub(super) code: Option<i32>,
    pub(super) staging: PathBuf,
    pub(super) output_tail: String,
}

/// The lines of pip's output worth showing: its `ERROR:` lines, else its last lines.
pub(super) fn pip_message(run: &PipRun) -> String {
    let errors: Vec<&str> = run
        .output_tail
        .lines()
        .filter(|l| l.starts_with("ERROR:"))
        .collect();
    let text = if errors.is_empty() {
        let lines: Vec<&str> = run.output_tail.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    } else {
        errors.join("\n")
    };
    match run.code {
        Some(0) | None => text,
        Some(code) if text.trim().is_empty() => format!("pip exited with status {code}"),
        Some(_) => text,
    }
}

impl Packages {
    /// Runs `python3 -m pip install --ignore-installed --quiet <options> -- <specs>` in a sandbox
    /// over the base with the host's network; its `/host` is a fresh staging directory under
    /// `packages/.staging/`.
    pub(super) fn pip(
        &self,
        lambda: &LambdaName,
        step: &str,
        options: &[&str],
        specs: &[String],
    ) -> Result<PipRun, PackageError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let staging = self
            .subdir(".staging")?
            .join(format!("{step}-{}-{id}", std::process::id()));
        let tmp = staging.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| self.internal("create", &tmp, e))?;
        // pip runs as the sandbox user: its /host (and the temporary directory in it) is its own.
        let (uid, gid) = self.owner;
        for d in [&staging, &tmp] {
            std::os::unix::fs::lchown(d, Some(uid), Some(gid))
                .map_err(|e| self.internal("hand over", d, e))?;
        }
        let outcome = self.pip_in(lambda, id, &staging, options, specs);
        if outcome.is_err() {
            remove_staging(&staging);
        }
        outcome
    }

    fn pip_in(
        &self,
        lambda: &LambdaName,
        id: u64,
        staging: &Path,
        options: &[&str],
        specs: &[String],
    ) -> Result<PipRun, PackageError> {
        let cfg = &self.cfg;
        let mut argv: Vec<String> = [
            "/usr/bin/python3",
            "-m",
            "pip",
            "install",
            "--ignore-installed",
            "--quiet",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        argv.extend(
            [
                "--break-system-packages",
                "--no-input",
                "--disable-pip-version-check",
                "--no-cache-dir",
                "--progress-bar",
                "off",
            ]
            .iter()
            .map(|s| (*s).to_owned()),
        );
        if !cfg.pip_index_url.is_empty() {
            argv.push("--index-url".into());
            argv.push(cfg.pip_index_url.clone());
        }
        argv.extend(options.iter().map(|s| (*s).to_owned()));
        argv.push("--".to_owned());
        argv.extend(specs.iter().cloned());
        let mut builder =
            SandboxSpec::builder(&cfg.base_dir, self.cgroup_parent.join(format!("pip-{id}")))
                .mount(staging, "/host", true)
                .net(sandbox::NetMode::Host)
                .hostname("lambda-pip")
                .harden(self.hardening.clone())
                .limits(Limits {
                    memory_bytes: Some(PIP_MEMORY_MB * 1024 * 1024),
                    pids_max: Some(PIP_MAX_PROCS),
                    cpu_quota: None,
                    devices: None,
                })
                .command(argv)
                .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                .env("HOME", "/host/tmp")
                .env("LANG", "C.UTF-8")
                .env("TMPDIR", "/host/tmp")
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .env("SSL_CERT_FILE", CA_BUNDLE)
                .env("PIP_CERT", CA_BUNDLE)
                .cwd("/host")
                .output(staging.join("stdout"), staging.join("stderr"));
        for (host, inside) in [(RESOLV_CONF, RESOLV_CONF), (CA_BUNDLE, CA_BUNDLE)] {
            let in_base = cfg.base_dir.join(inside.trim_start_matches('/'));
            let base_is_file = std::fs::symlink_metadata(&in_base).is_ok_and(|m| m.is_file());
            if Path::new(host).is_file() && base_is_file {
                builder = builder.mount(host, inside, false);
            }
        }
        for key in [
            "http_proxy",
            "https_proxy",
            "no_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "NO_PROXY",
        ] {
            if let Ok(v) = std::env::var(key) {
                builder = builder.env(key, &v);
            }
        }
        let pip_error = |source: PipSandboxError| PackageError::Pip {
            lambda: lambda.to_string(),
            source,
        };
        if let Some(map) = &self.user_ns {
            builder = builder.user_ns(map.clone());
        }
        let spec = builder.build().map_err(|e| pip_error(e.into()))?;
        let mut sb = Sandbox::spawn(&spec, &self.cgroups, &[]).map_err(|e| pip_error(e.into()))?;
        let limit = Duration::from_secs(cfg.install_timeout_s);
        let code = sb.wait_timeout(limit);
        if let Err(e) = sb.destroy() {
            tracing::warn!(lambda = %lambda, error = %e, "cannot destroy pip's sandbox");
        }
        let mut output_tail = read_tail(&staging.join("stderr"), 2000);
        if output_tail.trim().is_empty() {
            output_tail = read_tail(&staging.join("stdout"), 2000);
        }
        if code.is_none() {
            output_tail = format!(
                "pip did not finish within install_timeout_s ({} s) and was stopped",
                cfg.install_timeout_s
            );
        }
        Ok(PipRun {
            code,
            staging: staging.to_owned(),
            output_tail,
        })
    }
}
