//! `admin install-service` through the real binary (root only): it writes each worker's config
//! (its log to the journal) and the template unit with this admin binary in `ExecStart`, which
//! `systemd-analyze verify` (Debian's systemd, installed by tests/tools/setup.sh) accepts for
//! each worker's instance; without `--no-enable` on a machine whose init is not systemd, it
//! fails with one line saying so. (The notifications the unit waits for, READY=1 and
//! STOPPING=1, are tested in worker/tests/logging.rs through a real NOTIFY_SOCKET.)

mod support;

use std::path::Path;
use std::process::Command;

use support::*;

#[test]
fn the_units_it_writes_verify_and_it_says_when_systemd_is_absent() {
    if !can_run("the_units_it_writes_verify_and_it_says_when_systemd_is_absent") {
        return;
    }
    let c = Cluster::new();
    let units = c.scratch("units");
    let units_flag = format!("--unit-dir={}", units.display());
    let port = free_port();
    let out = ok(&[
        "install-service",
        &c.flag(),
        "--num-workers=2",
        &format!("--port={port}"),
        &units_flag,
        "--no-enable",
    ]);
    let unit_file = units.join("lambdaworker@.service");
    let unit = std::fs::read_to_string(&unit_file).expect("the unit file");
    assert!(
        unit.contains(&format!("\nExecStart={ADMIN} worker-exec --config=%f\n")),
        "{unit}"
    );
    for i in 0..2u16 {
        let config = c.path(&format!("config/worker-{i}.json"));
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
        assert_eq!(cfg["worker_port"], port + i);
        assert_eq!(cfg["log_file"], "", "the journal keeps the log: {cfg}");
        let instance = admin::service::instance(&config);
        assert!(out.contains(&instance), "{out}");
        verify(&units.join(&instance));
    }
    assert!(
        out.contains("systemctl daemon-reload && systemctl enable --now"),
        "{out}"
    );

    if !Path::new("/run/systemd/system").is_dir() {
        let err = fails(&["install-service", &c.flag(), &units_flag]);
        assert!(err.contains("systemd is not the init system here"), "{err}");
        assert!(err.contains("--no-enable"), "{err}");
    }
}

/// `systemd-analyze verify` of the instance at `path` (its template beside it) says nothing.
fn verify(path: &Path) {
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(path)
        .output()
        .expect("systemd-analyze (tests/tools/setup.sh installs systemd)");
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify {}: {said}",
        path.display()
    );
}
