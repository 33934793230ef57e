//! The `worker` binary's command line: `--version` and `--help` exit 0, every spelling of
//! `--config` is taken, usage errors exit 2 with one line. Needs no root: nothing is started.

use std::process::{Command, Output};

fn worker(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_worker"))
        .args(args)
        .output()
        .expect("run the worker binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn version_is_printed_with_exit_0() {
    for flag in ["--version", "-V"] {
        let out = worker(&[flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}: {out:?}");
        assert_eq!(
            text(&out.stdout),
            format!("worker {}\n", env!("CARGO_PKG_VERSION")),
            "{flag}"
        );
    }
}

#[test]
fn help_is_printed_with_exit_0() {
    let out = worker(&["--help"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let help = text(&out.stdout);
    assert!(help.contains("--config <FILE>"), "{help}");
    assert!(help.contains("--version"), "{help}");
}

#[test]
fn every_config_spelling_reaches_the_config_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("no-such-worker.json");
    let path = missing.to_str().expect("UTF-8 temp path");
    for args in [
        vec![format!("--config={path}")],
        vec!["--config".to_owned(), path.to_owned()],
        vec![format!("-config={path}")],
        vec!["-config".to_owned(), path.to_owned()],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = worker(&args);
        // Parsed, then the config file cannot be read: exit 1 naming it.
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let err = text(&out.stderr);
        assert!(err.starts_with("worker: "), "{err}");
        assert!(err.contains("no-such-worker.json"), "{args:?}: {err}");
    }
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    for args in [
        &[][..],
        &["--config"],
        &["-frobnicate"],
        &["--config=w.json", "x"],
    ] {
        let out = worker(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = text(&out.stderr);
        assert!(err.starts_with("worker: "), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    let err = text(&worker(&[]).stderr);
    assert_eq!(
        err,
        "worker: the following required arguments were not provided: --config <FILE> \
         (usage: worker --config <FILE>; see --help)\n"
    );
}
