//! The platform's one pair of credentials: an access key and a secret key, kept in a JSON file
//! only root can read (`{"access_key": "...", "secret_key": "..."}`, mode 0600).
//!
//! Rules (a little more lenient than AWS's, so that OpenLambda's `--access-key=K` of any
//! reasonable spelling works): the access key is 3 to 128 printable ASCII characters without
//! spaces (AWS's are 16 to 128 of `[A-Z0-9]`, which pass); the secret key is 8 to 128 printable
//! ASCII characters without spaces (AWS's are 40). The secret is never printed: `Debug` shows
//! the access key only.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Shortest and longest access key.
pub const ACCESS_KEY_LEN: (usize, usize) = (3, 128);
/// Shortest and longest secret key.
pub const SECRET_KEY_LEN: (usize, usize) = (8, 128);
/// Largest credentials file read.
const MAX_FILE_BYTES: u64 = 4096;

/// Why credentials cannot be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("access key: {0}")]
    AccessKey(String),
    #[error("secret key: {0}")]
    SecretKey(String),
    #[error("credentials file {path} is readable by others (mode {mode:04o}): it must be 0600")]
    Mode { path: PathBuf, mode: u32 },
    #[error("credentials file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot {op} credentials file {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, CredentialsError>;

/// An access key and its secret key, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    access_key: String,
    secret_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

/// The file's shape.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    access_key: String,
    secret_key: String,
}

/// `Some(reason)` when `key` is not `min..=max` printable ASCII characters without spaces.
fn check_key(key: &str, (min, max): (usize, usize)) -> Option<String> {
    if key.len() < min || key.len() > max {
        return Some(format!(
            "must be {min} to {max} characters, not {}",
            key.chars().count()
        ));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Some("must be printable ASCII characters without spaces".to_owned());
    }
    None
}

impl Credentials {
    /// Validates both keys (see the module docs); the error names the key at fault, never its
    /// value.
    pub fn new(access_key: &str, secret_key: &str) -> Result<Self> {
        if let Some(reason) = check_key(access_key, ACCESS_KEY_LEN) {
            return Err(CredentialsError::AccessKey(reason));
        }
        if let Some(reason) = check_key(secret_key, SECRET_KEY_LEN) {
            return Err(CredentialsError::SecretKey(reason));
        }
        Ok(Self {
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
        })
    }

    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// Reads a credentials file: a regular file (never through a symbolic link) that neither
    /// its group nor others may read or write. Blocking.
    pub fn load(path: &Path) -> Result<Self> {
        let io = |op, source| CredentialsError::Io {
            op,
            path: path.to_owned(),
            source,
        };
        let invalid = |message: String| CredentialsError::Invalid {
            path: path.to_owned(),
            message,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| io("open", e))?;
        let md = file.metadata().map_err(|e| io("stat", e))?;
        if !md.is_file() {
            return Err(invalid("it is not a regular file".to_owned()));
        }
        let mode = md.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(CredentialsError::Mode {
                path: path.to_owned(),
                mode,
            });
        }
        if md.len() > MAX_FILE_BYTES {
            return Err(invalid(format!("it is larger than {MAX_FILE_BYTES} bytes")));
        }
        let mut text = String::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| io("read", e))?;
        let shape: FileShape = serde_json::from_str(&text).map_err(|e| {
            invalid(format!(
                "it must be {{\"access_key\": ..., \"secret_key\": ...}}: {e}"
            ))
        })?;
        Self::new(&shape.access_key, &shape.secret_key).map_err(|e| invalid(e.to_string()))
    }

    /// Writes the credentials to `path` atomically (a new 0600 file in the same directory,
    /// synced, renamed over `path`, the directory synced): a reader sees the old file or the
    /// new one, never a part. Blocking.
    pub fn save(&self, path: &Path) -> Result<()> {
        let io = |op, source| CredentialsError::Io {
            op,
            path: path.to_owned(),
            source,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let shape = FileShape {
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
        };
        let mut text =
            serde_json::to_string_pretty(&shape).map_err(|e| CredentialsError::Invalid {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        text.push('\n');
        // tempfile creates the file with mode 0600 and a name no one else can have taken.
        let mut tmp = tempfile::Builder::new()
            .prefix(".credentials-")
            .tempfile_in(dir)
            .map_err(|e| io("create a temporary file beside", e))?;
        tmp.write_all(text.as_bytes()).map_err(|e| io("write", e))?;
        tmp.as_file().sync_all().map_err(|e| io("sync", e))?;
        tmp.persist(path).map_err(|e| io("rename onto", e.error))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("sync the directory of", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keys_are_validated_and_the_secret_never_printed() {
        let c =
            Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY").unwrap();
        let debug = format!("{c:?}");
        assert!(debug.contains("AKIDEXAMPLE"), "{debug}");
        assert!(!debug.contains("wJalr"), "{debug}");
        assert!(Credentials::new("abc", "12345678").is_ok());
        for (ak, sk, needle) in [
            ("ab", "12345678", "access key: must be 3 to 128"),
            (
                &"A".repeat(129) as &str,
                "12345678",
                "access key: must be 3 to 128",
            ),
            ("has space", "12345678", "access key: must be printable"),
            ("héllo", "12345678", "access key: must be printable"),
            ("abc", "1234567", "secret key: must be 8 to 128"),
            ("abc", "1234 5678", "secret key: must be printable"),
            ("abc", "1234\n5678", "secret key: must be printable"),
        ] {
            let e = Credentials::new(ak, sk).unwrap_err().to_string();
            assert!(e.contains(needle), "{ak:?} {sk:?}: {e}");
            assert!(!e.contains(sk), "the secret is in {e}");
        }
    }

    #[test]
    fn save_then_load_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.json");
        let c = Credentials::new("AKID", "secret-key-1").unwrap();
        c.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Credentials::load(&path).unwrap(), c);
        // Replaced atomically: no temporary file is left beside it.
        let c2 = Credentials::new("AKID2", "secret-key-2").unwrap();
        c2.save(&path).unwrap();
        assert_eq!(Credentials::load(&path).unwrap(), c2);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("credentials.json")]);
    }

    #[test]
    fn a_file_others_can_read_is_refused_naming_path_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.json");
        Credentials::new("AKID", "secret-key-1")
            .unwrap()
            .save(&path)
            .unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = Credentials::load(&path).unwrap_err().to_string();
            assert!(e.contains(&path.display().to_string()), "{e}");
            assert!(e.contains(&format!("{mode:04o}")), "{e}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(Credentials::load(&path).is_ok());
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            p
        };
        for (text, needle) in [
            ("not json", "must be {\"access_key\""),
            (r#"{"access_key": "AKID"}"#, "missing field `secret_key`"),
            (
                r#"{"access_key": "AKID", "secret_key": "12345678", "x": 1}"#,
                "unknown field",
            ),
            (
                r#"{"access_key": "AKID", "secret_key": "short"}"#,
                "secret key: must be 8 to 128",
            ),
        ] {
            let p = write("c.json", text);
            let e = Credentials::load(&p).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
            assert!(e.contains(&p.display().to_string()), "{e}");
        }
        let missing = dir.path().join("missing.json");
        let e = Credentials::load(&missing).unwrap_err().to_string();
        assert!(
            e.contains("cannot open") && e.contains("missing.json"),
            "{e}"
        );
        let target = write(
            "target.json",
            r#"{"access_key": "AKID", "secret_key": "12345678"}"#,
        );
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(
            Credentials::load(&link).is_err(),
            "a link is never followed"
        );
        let big = write("big.json", &" ".repeat(5000));
        let e = Credentials::load(&big).unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
    }
}
