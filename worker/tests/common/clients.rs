//! The real clients the tests drive (boto3, aws-cli): a venv made once by
//! `tests/clients/setup.sh`, and a way to run the scripts under `tests/clients/`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The venv with the pinned boto3 and aws-cli (made once by the set-up script).
pub fn client_venv() -> PathBuf {
    let out = Command::new(repo().join("tests/clients/setup.sh"))
        .output()
        .expect("run tests/clients/setup.sh");
    assert!(
        out.status.success(),
        "tests/clients/setup.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Runs `tests/clients/<script>` with the venv's Python in a clean environment; panics with
/// its output if it fails, else prints its output.
pub fn run_python(venv: &Path, script: &str, args: &[String]) {
    let out = Command::new(venv.join("bin/python"))
        .arg(repo().join("tests/clients").join(script))
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    println!("{}", stdout.trim());
}

/// Runs the venv's aws-cli against `endpoint` (region us-east-1, JSON output) with the keys
/// `key` and `secret` in a clean environment; panics with its stderr if it fails, else returns
/// what it printed as JSON (`null` when it printed none).
pub fn aws_cli(
    venv: &Path,
    endpoint: &str,
    (key, secret): (&str, &str),
    args: &[&std::ffi::OsStr],
) -> serde_json::Value {
    let out = Command::new(venv.join("bin/aws"))
        .args(args)
        .args([
            "--endpoint-url",
            endpoint,
            "--region",
            "us-east-1",
            "--output",
            "json",
        ])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .expect("run aws");
    assert!(
        out.status.success(),
        "aws {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}
