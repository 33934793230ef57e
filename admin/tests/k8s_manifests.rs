//! `contrib/k8s`: the manifests pass Kubernetes' own schemas and the field checks of
//! `tests/k8s/check.py` (run with the pinned venv of `tests/k8s/setup.sh`), the workers'
//! settings are ones `admin setconf` accepts, and HAProxy accepts the balancer's configuration.

mod support;

use std::path::Path;
use std::process::Command;

use support::{ok, text, Cluster};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The venv with kubernetes-validate (made on first use; instant afterwards).
fn venv_python() -> std::path::PathBuf {
    let out = Command::new(repo().join("tests/k8s/setup.sh"))
        .output()
        .expect("run tests/k8s/setup.sh");
    assert!(
        out.status.success(),
        "tests/k8s/setup.sh: {}",
        text(&out.stderr)
    );
    Path::new(text(&out.stdout).trim()).join("bin/python")
}

#[test]
fn manifests_match_the_schemas_and_each_other() {
    let python = venv_python();
    let out = Command::new(&python)
        .arg(repo().join("tests/k8s/check.py"))
        .arg(repo().join("contrib/k8s"))
        .output()
        .expect("run tests/k8s/check.py");
    let report = text(&out.stdout);
    eprintln!("{report}");
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    assert!(report.lines().filter(|l| l.starts_with("ok: ")).count() >= 40);
}

#[test]
fn the_workers_settings_are_valid_worker_settings() {
    let python = venv_python();
    let out = Command::new(&python)
        .arg(repo().join("tests/k8s/check.py"))
        .arg(repo().join("contrib/k8s"))
        .arg("--print-settings")
        .output()
        .expect("run tests/k8s/check.py --print-settings");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let settings = text(&out.stdout);
    let c = Cluster::new();
    ok(&["setconf", &c.flag(), settings.trim()]);
    let creds = c.path("config/credentials.json");
    std::fs::write(
        &creds,
        r#"{"access_key": "AKIDK8STEST", "secret_key": "k8s-test-secret"}"#,
    )
    .unwrap();
    let id = serde_json::json!({"worker_id": "node-a.example", "credentials_file": creds});
    ok(&["setconf", &c.flag(), &id.to_string()]);
    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(c.path("config/template.json")).unwrap())
            .unwrap();
    assert_eq!(t["agent_port"], 6000);
    assert_eq!(t["worker_id"], "node-a.example");
}

#[test]
fn haproxy_accepts_the_balancers_configuration() {
    let haproxy = ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(haproxy) = haproxy else {
        eprintln!("skipping: haproxy is not installed (quickstart/deps.sh installs it)");
        return;
    };
    let out = Command::new(haproxy)
        .args(["-c", "-f"])
        .arg(repo().join("contrib/k8s/haproxy.cfg"))
        .output()
        .expect("run haproxy -c");
    assert!(
        out.status.success(),
        "haproxy -c: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}
