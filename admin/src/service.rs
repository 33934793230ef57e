//! systemd units for a cluster's workers: the template unit `lambdaworker@.service`
//! (`contrib/systemd/`), made for the admin binary that installs it, and the instance name of
//! each worker config (its path, escaped as `systemd-escape --path` escapes it). Used by
//! `admin install-service`; docs/systemd.md.

use std::path::Path;

/// The template unit as shipped, with `ExecStart` naming [`SHIPPED_ADMIN`].
pub const TEMPLATE: &str = include_str!("../../contrib/systemd/lambdaworker@.service");
/// The admin binary the shipped unit names.
pub const SHIPPED_ADMIN: &str = "/usr/local/bin/lambdaworker-admin";
/// The template unit's file name.
pub const UNIT_FILE: &str = "lambdaworker@.service";

/// The template unit with `ExecStart` running `admin` and `TimeoutStopSec` at least
/// `stop_timeout_s` (the worker's `shutdown_timeout_s` and time to remove its sandboxes).
pub fn render_unit(admin: &Path, stop_timeout_s: u64) -> String {
    // systemd reads `%` as a specifier and splits unquoted words at spaces.
    let exe = admin.to_string_lossy().replace('%', "%%");
    let exe = if exe.contains([' ', '"', '\\', '\'']) {
        format!("\"{}\"", exe.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        exe
    };
    TEMPLATE
        .lines()
        .map(|line| {
            if let Some(rest) = line.strip_prefix("ExecStart=") {
                let args = rest.strip_prefix(SHIPPED_ADMIN).unwrap_or(rest);
                format!("ExecStart={exe}{args}")
            } else if let Some(v) = line.strip_prefix("TimeoutStopSec=") {
                let shipped: u64 = v.trim().parse().unwrap_or(90);
                format!("TimeoutStopSec={}", shipped.max(stop_timeout_s))
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// `path` escaped as systemd escapes a path for an instance name (`systemd-escape --path`):
/// slashes at the ends dropped, inner ones become `-`, each byte outside `[A-Za-z0-9:_.]` (and
/// a leading `.`) becomes `\xNN`; the root is `-`.
pub fn escape_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    let mut parts: Vec<&[u8]> = bytes
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        return "-".to_owned();
    }
    // `.` components are no part of the path.
    parts.retain(|p| *p != b".");
    let joined = parts.join(&b'/');
    let mut out = String::with_capacity(joined.len());
    for (i, &b) in joined.iter().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || b == b':' || b == b'_' || b == b'.' => {
                out.push(char::from(b))
            }
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// The unit of the worker whose config is at `config` (an absolute path).
pub fn instance(config: &Path) -> String {
    format!("lambdaworker@{}.service", escape_path(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn paths_are_escaped_as_systemd_escape_does() {
        let cases = [
            (
                "/srv/lw/config/worker-0.json",
                r"srv-lw-config-worker\x2d0.json",
            ),
            (
                "/srv/c d/config/worker-0.json",
                r"srv-c\x20d-config-worker\x2d0.json",
            ),
            ("/tmp/.hidden/x", r"tmp-.hidden-x"),
            ("/.a/b", r"\x2ea-b"),
            ("/", "-"),
            ("/a//b/", "a-b"),
            ("/ü", r"\xc3\xbc"),
        ];
        for (path, want) in cases {
            assert_eq!(escape_path(Path::new(path)), want, "{path}");
        }
        // Against systemd's own tool, where it is installed (tests/tools/setup.sh installs it).
        if let Ok(out) = std::process::Command::new("systemd-escape")
            .arg("--path")
            .args(cases.iter().map(|c| c.0))
            .output()
        {
            let theirs = String::from_utf8_lossy(&out.stdout);
            let ours: Vec<String> = cases.iter().map(|c| escape_path(Path::new(c.0))).collect();
            assert_eq!(theirs.split_whitespace().collect::<Vec<_>>(), ours);
        }
    }

    #[test]
    fn the_unit_runs_this_admin_and_waits_for_the_shutdown() {
        let unit = render_unit(&PathBuf::from("/opt/lw/bin/admin"), 40);
        assert!(
            unit.contains("\nExecStart=/opt/lw/bin/admin worker-exec --config=%f\n"),
            "{unit}"
        );
        assert!(unit.contains("\nType=notify\n"));
        assert!(unit.contains("\nKillMode=mixed\n"));
        assert!(unit.contains("\nDelegate=yes\n"));
        assert!(unit.contains("\nRestart=on-failure\n"));
        assert!(unit.contains("\nTimeoutStopSec=90\n"));
        let long = render_unit(&PathBuf::from("/opt/my tools/100%/admin"), 600);
        assert!(
            long.contains("\nExecStart=\"/opt/my tools/100%%/admin\" worker-exec"),
            "{long}"
        );
        assert!(long.contains("\nTimeoutStopSec=600\n"));
        assert_eq!(
            instance(Path::new("/srv/lw/config/worker-1.json")),
            r"lambdaworker@srv-lw-config-worker\x2d1.json.service"
        );
    }
}
