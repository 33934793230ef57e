//! Command lines of the `worker` and `admin` binaries, parsed the same way by [`parse`].
//!
//! Go-style flags: [`normalize`] rewrites `-cluster X` and `-cluster=X` to `--cluster X` /
//! `--cluster=X` before clap parses argv, so every spelling of the OpenLambda README works
//! (`worker -config FILE` as well as `worker --config=FILE`). Only a single-dash argument whose
//! name has two or more characters and starts with a letter is rewritten; `-h`, `-V`, `-`,
//! negative numbers and everything after `--` are left alone.
//!
//! Help and version go to stdout as clap formats them (exit 0); a usage error is one line on
//! stderr, `<program>: <message> (usage: ...; see --help)` (exit 2).

use std::ffi::OsString;
use std::process::ExitCode;

/// Parses argv (`args[0]` is the program) into `P` after [`normalize`]. `Err` carries the exit
/// code once help or version has been printed (0) or the usage error reported (2).
pub fn parse<P: clap::Parser>(args: impl IntoIterator<Item = OsString>) -> Result<P, ExitCode> {
    use clap::error::ErrorKind;
    let e = match P::try_parse_from(normalize(args)) {
        Ok(parsed) => return Ok(parsed),
        Err(e) => e,
    };
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // To stdout; a reader that went away (`worker --help | head -1`) is no error.
            let _ = e.print();
            Err(ExitCode::SUCCESS)
        }
        _ => {
            let program = P::command().get_name().to_owned();
            eprintln!("{program}: {}", one_line(&e.render().to_string()));
            Err(ExitCode::from(2))
        }
    }
}

/// `error: X:\n  --cluster <DIR>\n\nUsage: admin new --cluster <DIR>\n...` becomes
/// `X: --cluster <DIR> (usage: admin new --cluster <DIR>; see --help)`.
pub fn one_line(rendered: &str) -> String {
    let mut message: Vec<&str> = Vec::new();
    let mut usage = None;
    for line in rendered.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(u) = line.strip_prefix("Usage: ") {
            usage = Some(u);
            break;
        }
        if line.starts_with("tip:") || line.starts_with("For more information") {
            continue;
        }
        message.push(line.strip_prefix("error: ").unwrap_or(line));
    }
    let message = if message.is_empty() {
        "invalid arguments".to_owned()
    } else {
        message.join(" ")
    };
    match usage {
        Some(usage) => format!("{message} (usage: {usage}; see --help)"),
        None => message,
    }
}

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

    /// A command line shaped like the worker's.
    #[derive(Debug, clap::Parser)]
    #[command(name = "prog", version)]
    struct Prog {
        #[arg(long, value_name = "FILE")]
        config: std::path::PathBuf,
    }

    fn parse_prog(args: &[&str]) -> Result<Prog, ExitCode> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn every_spelling_parses_and_the_rest_ends_with_an_exit_code() {
        for args in [
            &["prog", "--config=w.json"][..],
            &["prog", "--config", "w.json"],
            &["prog", "-config=w.json"],
            &["prog", "-config", "w.json"],
        ] {
            let p = parse_prog(args).unwrap_or_else(|code| panic!("{args:?}: {code:?}"));
            assert_eq!(p.config, std::path::Path::new("w.json"), "{args:?}");
        }
        assert_eq!(
            parse_prog(&["prog", "--version"]).unwrap_err(),
            ExitCode::SUCCESS
        );
        assert_eq!(parse_prog(&["prog", "-V"]).unwrap_err(), ExitCode::SUCCESS);
        assert_eq!(parse_prog(&["prog"]).unwrap_err(), ExitCode::from(2));
        assert_eq!(
            parse_prog(&["prog", "-config=w.json", "extra"]).unwrap_err(),
            ExitCode::from(2)
        );
    }

    #[test]
    fn usage_errors_become_one_line() {
        use clap::Parser;
        let e = Prog::try_parse_from(["prog"]).unwrap_err();
        let line = one_line(&e.render().to_string());
        assert_eq!(
            line,
            "the following required arguments were not provided: --config <FILE> \
             (usage: prog --config <FILE>; see --help)"
        );
        assert_eq!(one_line(""), "invalid arguments");
    }

    #[test]
    fn non_utf8_arguments_pass_through() {
        use std::os::unix::ffi::OsStringExt;
        let odd = OsString::from_vec(vec![b'-', 0xff, b'x']);
        let out = normalize([OsString::from("admin"), odd.clone()]);
        assert_eq!(out[1], odd);
    }
}
