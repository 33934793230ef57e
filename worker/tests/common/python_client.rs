//! The Python client of `clients/python`: its venv (made once by `clients/python/setup-venv.sh`)
//! and its integration tests (pytest), run against a worker.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::clients::repo;

/// The venv with the client (editable) and its pinned test tools.
pub fn python_client_venv() -> PathBuf {
    let out = Command::new(repo().join("clients/python/setup-venv.sh"))
        .output()
        .expect("run clients/python/setup-venv.sh");
    assert!(
        out.status.success(),
        "clients/python/setup-venv.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Runs `pytest clients/python/tests/integration` with the venv's Python in a clean
/// environment plus `env`; panics with its output unless every test passed (none skipped),
/// else prints its output and returns the number that passed.
pub fn run_integration_tests(venv: &Path, env: &[(&str, String)]) -> usize {
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.args(["-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs"])
        .arg(repo().join("clients/python/tests/integration"))
        .current_dir(repo().join("clients/python"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/tmp");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run pytest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pytest failed:\n{stdout}\n{stderr}");
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        !summary.contains("skipped"),
        "integration tests were skipped:\n{stdout}"
    );
    println!("{}", stdout.trim());
    summary
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[1].starts_with("passed"))
        .and_then(|w| w[0].parse().ok())
        .unwrap_or(0)
}
