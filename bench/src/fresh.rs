//! The "fresh python" row: the base's `python3` started per call on the host (chrooted into
//! the base so it uses the same interpreter and libraries as the sandboxes, but with no
//! namespaces, cgroup or mounts). This is the floor of any design that starts an interpreter
//! per call.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::system::{check_answer, truncate, System, EVENT, PY_DRIVER};

/// Where the handler is placed inside the base for this row (a directory of the cluster's own
/// copy of the base; the sandboxes mount a tmpfs over `/tmp`, so they never see it).
const HANDLER_IN_BASE: &str = "tmp/lambdaworker-bench-hello";

#[derive(Debug)]
pub struct FreshPython {
    root: CString,
}

impl FreshPython {
    /// Copies the handler into `base` and checks the interpreter is there.
    pub fn new(base: &Path, handler_dir: &Path) -> Result<Self> {
        let python = base.join("usr/bin/python3");
        if !python.exists() {
            anyhow::bail!("{} not found", python.display());
        }
        let target = base.join(HANDLER_IN_BASE);
        std::fs::create_dir_all(&target)
            .with_context(|| format!("cannot create {}", target.display()))?;
        let src = handler_dir.join("lambda_func.py");
        std::fs::copy(&src, target.join("lambda_func.py"))
            .with_context(|| format!("cannot copy {}", src.display()))?;
        let root = CString::new(base.as_os_str().as_bytes())
            .with_context(|| format!("{} contains a NUL byte", base.display()))?;
        Ok(Self { root })
    }
}

impl System for FreshPython {
    fn call(&mut self) -> Result<()> {
        let root = self.root.clone();
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.args(["-B", "-S", "-c", PY_DRIVER])
            .arg(format!("/{HANDLER_IN_BASE}"))
            .arg(EVENT)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", "/tmp")
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null());
        // SAFETY: the closure runs in the forked child before exec and makes only two system
        // calls (chroot, chdir) on a C string allocated before the fork; no allocation, no locks.
        unsafe {
            cmd.pre_exec(move || {
                if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd.output().context("cannot start python3 in the base")?;
        if !out.status.success() {
            anyhow::bail!(
                "fresh python exited with {}: {}",
                out.status,
                truncate(String::from_utf8_lossy(&out.stderr).trim(), 300)
            );
        }
        check_answer("fresh python", &out.stdout)
    }
}
