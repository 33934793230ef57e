//! `config/registry.json`: where `admin registry` told the cluster's registry server to listen
//! (`{"host": "127.0.0.1", "port": 9000}`), read again by `admin registry-exec`, `status` and
//! `kill`. The template's `registry` key holds the URL workers and `admin` reach it at
//! ([`RegistryRecord::url`]).

use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::commands::local_host;

/// Largest record read, in bytes.
const MAX_BYTES: u64 = 4096;

/// The registry server's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryRecord {
    /// The address it binds (`127.0.0.1`, `0.0.0.0`, `::`, a host name).
    pub host: String,
    pub port: u16,
}

impl RegistryRecord {
    /// A record, checking that `host` can go into a URL.
    pub fn new(host: &str, port: u16) -> anyhow::Result<Self> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let ok = !bare.is_empty()
            && bare.len() <= 253
            && bare
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:_".contains(&b));
        if !ok {
            bail!("--host {host:?} is not a host name or IP address");
        }
        if port == 0 {
            bail!("--port must be from 1 to 65535, not 0");
        }
        Ok(Self {
            host: bare.to_owned(),
            port,
        })
    }

    /// Reads the record; `Ok(None)` when there is none (no `admin registry` yet).
    pub fn load(path: &Path) -> anyhow::Result<Option<Self>> {
        let text = match worker::files::read_regular_file(path, MAX_BYTES) {
            Ok(Some(text)) => text,
            Ok(None) => return Ok(None),
            Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        };
        let record: Self = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} must be {{\"host\": ..., \"port\": ...}}",
                path.display()
            )
        })?;
        Self::new(&record.host, record.port)
            .with_context(|| format!("invalid {}", path.display()))
            .map(Some)
    }

    /// Writes the record atomically (a temporary file beside it, then a rename).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
    }

    /// The host to connect to from this machine (wildcards on loopback).
    pub fn reach_host(&self) -> &str {
        local_host(&self.host)
    }

    /// `http://host:port` as reached from this machine (an IPv6 address in brackets).
    pub fn url(&self) -> String {
        let host = self.reach_host();
        if host.contains(':') {
            format!("http://[{host}]:{}", self.port)
        } else {
            format!("http://{host}:{}", self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_reach_wildcards_on_loopback() {
        let r = |h: &str| RegistryRecord::new(h, 9000).unwrap().url();
        assert_eq!(r("127.0.0.1"), "http://127.0.0.1:9000");
        assert_eq!(r("0.0.0.0"), "http://127.0.0.1:9000");
        assert_eq!(r("::"), "http://[::1]:9000");
        assert_eq!(r("[::1]"), "http://[::1]:9000");
        assert_eq!(r("10.1.2.3"), "http://10.1.2.3:9000");
        assert_eq!(r("reg.example"), "http://reg.example:9000");
        for bad in ["", "a b", "x/y", "h?q"] {
            assert!(RegistryRecord::new(bad, 9000).is_err(), "{bad:?}");
        }
        assert!(RegistryRecord::new("h", 0).is_err());
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("registry.json");
        assert_eq!(RegistryRecord::load(&p).unwrap(), None);
        let rec = RegistryRecord::new("0.0.0.0", 9123).unwrap();
        rec.save(&p).unwrap();
        assert_eq!(RegistryRecord::load(&p).unwrap(), Some(rec));
        std::fs::write(&p, r#"{"host": "h", "port": 1, "extra": 2}"#).unwrap();
        let e = format!("{:#}", RegistryRecord::load(&p).unwrap_err());
        assert!(e.contains("registry.json"), "{e}");
        std::fs::write(&p, r#"{"host": "h h", "port": 1}"#).unwrap();
        assert!(RegistryRecord::load(&p).is_err());
    }
}
