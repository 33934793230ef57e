//! A lambda's requirement list: `requirements.txt` (pip syntax, without option lines) or the
//! seed's `packages.txt`, read as a file its author placed (never through a link, never from a
//! FIFO, bounded); and the names pip reports, checked before they become directory names.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::PackageError;
use crate::name::LambdaName;

/// Requirement files, in order of precedence.
pub const REQUIREMENTS_FILES: [&str; 2] = ["requirements.txt", "packages.txt"];

/// Largest requirements file accepted.
const MAX_REQUIREMENTS_BYTES: u64 = 64 * 1024;

/// A line of a requirements file that is refused, with its number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct RequirementsError {
    pub line: usize,
    pub reason: String,
}

/// A lambda's requirement list, read from its registry directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirements {
    /// The file it came from (`requirements.txt` or `packages.txt`).
    pub file: &'static str,
    /// The requirement specifiers, in file order.
    pub specs: Vec<String>,
}

impl Requirements {
    /// Identity of the list: the same specifiers resolve once per cluster.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        for s in &self.specs {
            h.update(s.as_bytes());
            h.update(b"\n");
        }
        let digest = h.finalize();
        crate::hex(&digest[..12])
    }
}

/// Parses a requirements file: one specifier a line, `#` comments, blank lines. Option lines
/// (`-r`, `-e`, `--index-url`, ...) are refused: they could point pip at other files or indexes.
pub fn parse_requirements(text: &str) -> Result<Vec<String>, RequirementsError> {
    let mut specs = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = match raw.find('#') {
            Some(at) => &raw[..at],
            None => raw,
        }
        .trim();
        if line.is_empty() {
            continue;
        }
        let refuse = |reason: String| RequirementsError {
            line: i + 1,
            reason,
        };
        if line.starts_with('-') {
            return Err(refuse(format!(
                "option lines such as {line:?} are not supported"
            )));
        }
        if line.ends_with('\\') {
            return Err(refuse("line continuations are not supported".to_owned()));
        }
        let first = line.chars().next().unwrap_or(' ');
        if !first.is_ascii_alphanumeric() {
            return Err(refuse(format!(
                "{line:?} does not start with a package name"
            )));
        }
        if let Some(bad) = line
            .chars()
            .find(|c| c.is_control() || !(c.is_ascii_graphic() || *c == ' '))
        {
            return Err(refuse(format!("character {bad:?} is not allowed")));
        }
        specs.push(line.to_owned());
    }
    Ok(specs)
}

/// Reads the requirement list of the lambda in `dir`; `None` when it has no requirement file
/// (or an empty one).
pub fn read_requirements(
    lambda: &LambdaName,
    dir: &Path,
) -> Result<Option<Requirements>, PackageError> {
    let present: Vec<&'static str> = REQUIREMENTS_FILES
        .iter()
        .copied()
        .filter(|f| std::fs::symlink_metadata(dir.join(f)).is_ok())
        .collect();
    let Some(&file) = present.first() else {
        return Ok(None);
    };
    if present.len() > 1 {
        tracing::info!(lambda = %lambda, "both requirements.txt and packages.txt exist; using requirements.txt");
    }
    let path = dir.join(file);
    let bad = |message: String| PackageError::BadRequirements {
        lambda: lambda.to_string(),
        path: path.clone(),
        message,
    };
    let text = crate::files::read_regular_file(&path, MAX_REQUIREMENTS_BYTES)
        .map_err(|e| bad(e.to_string()))?
        .ok_or_else(|| bad("it was removed while being read".to_owned()))?;
    let specs = parse_requirements(&text).map_err(|e| bad(e.to_string()))?;
    if specs.is_empty() {
        return Ok(None);
    }
    Ok(Some(Requirements { file, specs }))
}

/// PEP 503 normalized project name: lower case, runs of `-`, `_`, `.` as one `-`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
            continue;
        }
        if sep && !out.is_empty() {
            out.push('-');
        }
        sep = false;
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// A name or version pip reported is used as a directory name: letters, digits, `.`, `-`, `_`,
/// `+`, `!` only, and not `.`/`..`.
pub(super) fn safe_component(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+' | '!'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_are_parsed_with_comments_and_refuse_options() {
        let text = "# deps\nnumpy==2.2.6  # pinned\n\nrequests>=2\nsix\n";
        assert_eq!(
            parse_requirements(text).unwrap(),
            ["numpy==2.2.6", "requests>=2", "six"]
        );
        for bad in [
            "-r other.txt",
            "--index-url http://x",
            "-e .",
            "numpy \\",
            "~x",
            "a\u{7}",
        ] {
            assert!(parse_requirements(bad).is_err(), "{bad:?}");
        }
        let err = parse_requirements("ok\n-r x").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.to_string().starts_with("line 2: "), "{err}");
    }

    #[test]
    fn names_are_normalized_and_checked() {
        assert_eq!(normalize_name("Foo__Bar.baz"), "foo-bar-baz");
        assert_eq!(normalize_name("NumPy"), "numpy");
        assert!(safe_component("2.2.6"));
        assert!(safe_component("1.0+local"));
        assert!(!safe_component(".."));
        assert!(!safe_component("a/b"));
        assert!(!safe_component(""));
    }

    #[test]
    fn requirements_txt_wins_and_hash_depends_on_specs() {
        let tmp = tempfile::tempdir().unwrap();
        let name = LambdaName::parse("l").unwrap();
        assert_eq!(read_requirements(&name, tmp.path()).unwrap(), None);
        std::fs::write(tmp.path().join("packages.txt"), "six\n").unwrap();
        let r = read_requirements(&name, tmp.path()).unwrap().unwrap();
        assert_eq!(
            (r.file, r.specs.clone()),
            ("packages.txt", vec!["six".to_owned()])
        );
        std::fs::write(tmp.path().join("requirements.txt"), "numpy==2.2.6\n").unwrap();
        let r2 = read_requirements(&name, tmp.path()).unwrap().unwrap();
        assert_eq!(r2.file, "requirements.txt");
        assert_ne!(r.hash(), r2.hash());
        std::fs::write(tmp.path().join("requirements.txt"), "--extra-index-url x\n").unwrap();
        let err = read_requirements(&name, tmp.path()).unwrap_err();
        assert!(matches!(err, PackageError::BadRequirements { .. }), "{err}");
        assert!(err.to_string().contains("requirements.txt"), "{err}");
    }
}
