//! Go-style flags: rewrites `-cluster X` and `-cluster=X` to `--cluster X` / `--cluster=X` before
//! clap parses argv, so every spelling of the OpenLambda README works.
//!
//! Only a single-dash argument whose name has two or more characters and starts with a letter is
//! rewritten; `-h`, `-V`, `-`, negative numbers and everything after `--` are left alone.

use std::ffi::OsString;

/// Rewrites one argument if it is a single-dash long flag.
pub fn normalize_arg(arg: &str) -> Option<String> {
    let rest = arg.strip_prefix('-')?;
    if rest.starts_with('-') {
        return None;
    }
    let name = rest.split('=').next().unwrap_or_default();
    let mut chars = name.chars();
    let first = chars.next()?;
    let is_long_name = first.is_ascii_alphabetic()
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    is_long_name.then(|| format!("-{arg}"))
}

/// Normalizes a whole argv (the program name, `args[0]`, is kept as is).
pub fn normalize<I: IntoIterator<Item = OsString>>(args: I) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut after_separator = false;
    for (i, arg) in args.into_iter().enumerate() {
        if i == 0 || after_separator {
            out.push(arg);
            continue;
        }
        if arg == "--" {
            after_separator = true;
            out.push(arg);
            continue;
        }
        match arg.to_str().and_then(normalize_arg) {
            Some(rewritten) => out.push(rewritten.into()),
            None => out.push(arg),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        normalize(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn every_spelling_of_the_readme_is_accepted() {
        assert_eq!(
            norm(&["admin", "new", "-cluster", "my"]),
            ["admin", "new", "--cluster", "my"]
        );
        assert_eq!(
            norm(&["admin", "status", "-cluster=my"]),
            ["admin", "status", "--cluster=my"]
        );
        assert_eq!(
            norm(&["admin", "new", "--cluster", "my"]),
            ["admin", "new", "--cluster", "my"]
        );
        assert_eq!(
            norm(&["admin", "new", "--cluster=my"]),
            ["admin", "new", "--cluster=my"]
        );
        assert_eq!(
            norm(&[
                "admin",
                "workers",
                "-cluster=c",
                "-num-workers=3",
                "-port",
                "8080"
            ]),
            [
                "admin",
                "workers",
                "--cluster=c",
                "--num-workers=3",
                "--port",
                "8080"
            ]
        );
        assert_eq!(
            norm(&["admin", "worker-exec", "-config=worker.json"]),
            ["admin", "worker-exec", "--config=worker.json"]
        );
    }

    #[test]
    fn short_flags_numbers_and_values_are_left_alone() {
        assert_eq!(norm(&["admin", "-h"]), ["admin", "-h"]);
        assert_eq!(norm(&["admin", "-V"]), ["admin", "-V"]);
        assert_eq!(
            norm(&["admin", "x", "-5", "-1.5", "-"]),
            ["admin", "x", "-5", "-1.5", "-"]
        );
        assert_eq!(
            norm(&["admin", "setconf", "-cluster", "c", r#"{"memory_mb": -1}"#]),
            ["admin", "setconf", "--cluster", "c", r#"{"memory_mb": -1}"#]
        );
        assert_eq!(norm(&["admin", "x", "-a=b"]), ["admin", "x", "-a=b"]);
        assert_eq!(norm(&["admin", "x", "-c/d"]), ["admin", "x", "-c/d"]);
    }

    #[test]
    fn program_name_and_arguments_after_separator_are_kept() {
        assert_eq!(norm(&["-admin", "x"]), ["-admin", "x"]);
        assert_eq!(
            norm(&["admin", "x", "--", "-cluster"]),
            ["admin", "x", "--", "-cluster"]
        );
    }

    #[test]
    fn non_utf8_arguments_pass_through() {
        use std::os::unix::ffi::OsStringExt;
        let odd = OsString::from_vec(vec![b'-', 0xff, b'x']);
        let out = normalize([OsString::from("admin"), odd.clone()]);
        assert_eq!(out[1], odd);
    }
}
