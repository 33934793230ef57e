//! The limits one function's sandboxes get: its `lambda.json` values over the worker's
//! defaults from `template.json` (`memory_mb`, `timeout_s`, `max_procs`, `cpu_percent`,
//! `max_sandboxes_per_lambda`, `tmp_mb`).

use std::path::Path;

use sandbox::cgroup::Limits;
use serde::Serialize;

use super::{LambdaConfig, LambdaConfigError};
use crate::config::Config;

/// The CFS period used with `cpu_percent` (100 ms, the kernel's default).
pub const CPU_PERIOD_US: u64 = 100_000;

/// The limits one lambda's sandboxes get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LambdaLimits {
    pub memory_mb: u64,
    pub timeout_s: u64,
    pub max_procs: u64,
    /// Percent of one CPU (200: two CPUs); `None`: no quota.
    pub cpu_percent: Option<u64>,
    pub max_concurrency: usize,
    pub tmp_mb: u64,
}

impl LambdaLimits {
    /// The worker's defaults (`template.json`).
    pub fn defaults(cfg: &Config) -> Self {
        Self {
            memory_mb: cfg.memory_mb,
            timeout_s: cfg.timeout_s,
            max_procs: cfg.max_procs,
            cpu_percent: (cfg.cpu_percent > 0).then_some(cfg.cpu_percent),
            max_concurrency: cfg.max_sandboxes_per_lambda,
            tmp_mb: cfg.tmp_mb,
        }
    }

    /// The defaults with `<dir>/lambda.json` applied, if the file exists.
    pub fn load(dir: &Path, cfg: &Config) -> Result<Self, LambdaConfigError> {
        Ok(LambdaConfig::load(dir)?.limits(cfg))
    }

    /// The cgroup limits of one sandbox of this lambda.
    pub fn cgroup(&self) -> Limits {
        Limits {
            memory_bytes: Some(self.memory_mb << 20),
            pids_max: Some(self.max_procs),
            cpu_quota: self
                .cpu_percent
                .map(|p| (p * CPU_PERIOD_US / 100, CPU_PERIOD_US)),
            devices: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lambda_config::LAMBDA_CONFIG_FILE;

    fn load(text: &str) -> Result<LambdaLimits, LambdaConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LAMBDA_CONFIG_FILE), text).unwrap();
        LambdaLimits::load(dir.path(), &Config::default())
    }

    #[test]
    fn missing_file_gives_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::default();
        let l = LambdaLimits::load(dir.path(), &cfg).unwrap();
        assert_eq!(l, LambdaLimits::defaults(&cfg));
        assert_eq!(l.memory_mb, cfg.memory_mb);
        assert_eq!(l.cpu_percent, None);
        assert_eq!(l.cgroup().cpu_quota, None);
    }

    #[test]
    fn every_key_applies() {
        let l = load(
            r#"{"memory_mb": 512, "timeout_s": 30, "max_procs": 32, "cpu_percent": 50,
                "max_concurrency": 2, "tmp_mb": 128}"#,
        )
        .unwrap();
        assert_eq!(
            l,
            LambdaLimits {
                memory_mb: 512,
                timeout_s: 30,
                max_procs: 32,
                cpu_percent: Some(50),
                max_concurrency: 2,
                tmp_mb: 128
            }
        );
        let c = l.cgroup();
        assert_eq!(c.memory_bytes, Some(512 << 20));
        assert_eq!(c.pids_max, Some(32));
        assert_eq!(c.cpu_quota, Some((50_000, 100_000)));
        // Only some keys: the rest are the defaults.
        let l = load(r#"{"timeout_s": 5}"#).unwrap();
        assert_eq!(l.timeout_s, 5);
        assert_eq!(l.memory_mb, Config::default().memory_mb);
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, key, needle) in [
            (r#"{"memory_mb": 100}"#, "memory_mb", "from 128 to 3008"),
            (r#"{"memory_mb": 200}"#, "memory_mb", "multiple of 64"),
            (r#"{"memory_mb": 4096}"#, "memory_mb", "from 128 to 3008"),
            (r#"{"timeout_s": 0}"#, "timeout_s", "from 1 to 900"),
            (r#"{"timeout_s": 901}"#, "timeout_s", "from 1 to 900"),
            (r#"{"timeout_s": "30"}"#, "timeout_s", "whole number"),
            (r#"{"timeout_s": 2.5}"#, "timeout_s", "whole number"),
            (r#"{"max_procs": -1}"#, "max_procs", "whole number"),
            (r#"{"cpu_percent": 0}"#, "cpu_percent", "from 1 to"),
            (r#"{"cpu_percent": 1000000}"#, "cpu_percent", "from 1 to"),
            (
                r#"{"max_concurrency": 0}"#,
                "max_concurrency",
                "from 1 to 1000",
            ),
            (r#"{"tmp_mb": 20000}"#, "tmp_mb", "from 1 to 10240"),
            (r#"{"memroy_mb": 256}"#, "memroy_mb", "unknown key"),
        ] {
            let e = load(text).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
            assert!(e.to_string().contains(needle), "{text}: {e}");
            assert!(
                e.to_string().starts_with(&format!("key \"{key}\": ")),
                "{e}"
            );
        }
        for (text, needle) in [
            ("{not json", "not valid JSON"),
            ("[1, 2]", "JSON object"),
            ("", "not valid JSON"),
        ] {
            let e = load(text).unwrap_err();
            assert_eq!(e.key, None);
            assert!(e.message.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn a_directory_or_huge_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(LAMBDA_CONFIG_FILE)).unwrap();
        let e = LambdaLimits::load(dir.path(), &Config::default()).unwrap_err();
        assert!(e.message.contains("regular file"), "{e}");
        let big = format!("{{\"timeout_s\": 5{}}}", " ".repeat(70 * 1024));
        let e = load(&big).unwrap_err();
        assert!(e.message.contains("larger than"), "{e}");
    }
}
