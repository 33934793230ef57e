//! Lambda names: validated before anything touches the file system.

use std::fmt;

/// A lambda name matching `[A-Za-z0-9][A-Za-z0-9_-]{0,63}`: safe as a path component and a
/// cgroup name (no `/`, `.`, NUL or other special characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LambdaName(String);

/// Longest accepted name.
pub const MAX_NAME_LEN: usize = 64;

impl LambdaName {
    /// Validates `raw`; the error is a human explanation.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let bytes = raw.as_bytes();
        if bytes.is_empty() {
            return Err("the name is empty");
        }
        if bytes.len() > MAX_NAME_LEN {
            return Err("the name is longer than 64 characters");
        }
        if !bytes[0].is_ascii_alphanumeric() {
            return Err("the name must start with a letter or digit");
        }
        if !bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
        {
            return Err("the name may only contain letters, digits, '_' and '-'");
        }
        Ok(Self(raw.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LambdaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_good_names() {
        for n in ["hello", "a", "Echo_2", "x-y-z", "0abc", &"a".repeat(64)] {
            assert!(LambdaName::parse(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn rejects_bad_names() {
        for n in [
            "",
            "..",
            ".",
            "a/b",
            "../etc",
            "a\0b",
            "-a",
            "_a",
            "a.b",
            "a b",
            "é",
            "a%2Fb",
            &"a".repeat(65),
        ] {
            assert!(LambdaName::parse(n).is_err(), "{n:?}");
        }
    }
}
