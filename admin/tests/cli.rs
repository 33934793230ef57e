//! The `admin` binary's command line: `--version` and `--help` exit 0, usage errors exit 2 with
//! one line. Needs no root: no command runs.

use std::process::{Command, Output};

fn admin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_admin"))
        .args(args)
        .output()
        .expect("run the admin binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn version_is_printed_with_exit_0() {
    for flag in ["--version", "-V"] {
        let out = admin(&[flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}: {out:?}");
        assert_eq!(
            text(&out.stdout),
            format!("admin {}\n", env!("CARGO_PKG_VERSION")),
            "{flag}"
        );
    }
}

#[test]
fn help_is_printed_with_exit_0() {
    for args in [&["--help"][..], &["help", "new"], &["new", "--help"]] {
        let out = admin(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert!(text(&out.stdout).contains("Usage: admin"), "{args:?}");
    }
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    for args in [
        &["new"][..],
        &["frobnicate"],
        &["workers", "-cluster=c", "-num-workers=0"],
    ] {
        let out = admin(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = text(&out.stderr);
        assert!(err.starts_with("admin: "), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    let err = text(&admin(&["new"]).stderr);
    assert_eq!(
        err,
        "admin: the following required arguments were not provided: --cluster <DIR> \
         (usage: admin new --cluster <DIR>; see --help)\n"
    );
}

#[test]
fn completions_and_man_pages_cover_every_command() {
    let out = admin(&["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let script = text(&out.stdout);
    for word in ["doctor", "install-service", "--skip-checks", "--json"] {
        assert!(script.contains(word), "no {word} in the bash completions");
    }
    // bash itself accepts the script.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin.bash");
    std::fs::write(&file, &script).unwrap();
    let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(check.status.success(), "{}", text(&check.stderr));
    for shell in ["zsh", "fish"] {
        let out = admin(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        assert!(text(&out.stdout).contains("doctor"), "{shell}");
    }
    let bad = admin(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));

    let man = dir.path().join("man1");
    let out = admin(&["man", "--dir", man.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    for page in [
        "admin",
        "admin-doctor",
        "admin-workers",
        "admin-layer-publish",
    ] {
        let roff = std::fs::read_to_string(man.join(format!("{page}.1")))
            .unwrap_or_else(|e| panic!("{page}.1: {e}"));
        assert!(roff.contains(&format!(".TH {page} 1")), "{page}: {roff}");
    }
    let workers = std::fs::read_to_string(man.join("admin-workers.1")).unwrap();
    assert!(workers.contains("skip\\-checks"), "{workers}");
}
