//! `admin logs -cluster DIR NAME [--follow] [--since WHEN] [--request-id ID]`: a function's
//! handler logs, as `aws logs tail` prints them (`<timestamp> <request id> <text>`).
//!
//! Steps, in order: open the cluster; find where its workers keep function logs (the template's
//! `function_log_dir` and each worker config's, see [`log_dirs`]); refuse a function that has
//! no log directory and is not in the registry; read every worker's files of the function
//! (rotated ones first), merge the lines by timestamp, filter (`--since`, `--request-id`) and
//! print; with `--follow` (the current files read through their followers, so that no line is
//! printed twice or missed), keep printing what the workers append (polled every 200 ms,
//! across rotations) until SIGINT or SIGTERM, then exit 0.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use worker::config::Config;
use worker::logs::store::{self, Follower, Stored};
use worker::name::LambdaName;

use crate::cluster_dir::ClusterDir;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cluster directory
    #[arg(long, value_name = "DIR")]
    pub cluster: PathBuf,
    /// The function's name
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Keep printing lines as the workers write them (until Ctrl-C)
    #[arg(long)]
    pub follow: bool,
    /// Only lines since this long ago (30s, 10m, 2h, 1d) or this time (RFC 3339)
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only the lines of this invocation
    #[arg(long = "request-id", value_name = "ID")]
    pub request_id: Option<String>,
}

/// How often `--follow` looks for new lines.
const POLL: Duration = Duration::from_millis(200);

pub fn run(args: &Args) -> anyhow::Result<()> {
    let cluster = ClusterDir::open(&args.cluster)?;
    let name = LambdaName::parse(&args.name)
        .map_err(|reason| anyhow!("invalid function name {:?}: {reason}", args.name))?;
    let since = args
        .since
        .as_deref()
        .map(|s| parse_since(s, SystemTime::now()))
        .transpose()?;
    let filter = Filter {
        since,
        request_id: args.request_id.clone(),
    };
    let template = Config::load(&cluster.template())?;
    let dirs: Vec<PathBuf> = log_dirs(&cluster, &template)?
        .into_iter()
        .map(|d| d.join(name.as_str()))
        .collect();
    let known =
        dirs.iter().any(|d| d.is_dir()) || template.registry_dir.join(name.as_str()).is_dir();
    if !known {
        bail!(
            "no function {name}: no logs in {} and not in the registry {}",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            template.registry_dir.display()
        );
    }
    // Signals first, so that one arriving while the files are read still ends the follow.
    let signals = args.follow.then(block_signals).transpose()?;
    let cannot = |d: &PathBuf| format!("cannot read {}", d.display());
    let mut followers = Vec::new();
    let mut lines = Vec::new();
    for d in &dirs {
        if args.follow {
            // The current files through their followers, so no line shows twice or is missed.
            let mut f = Follower::from_start(d).with_context(|| cannot(d))?;
            lines.extend(store::read_rotated(d).with_context(|| cannot(d))?);
            lines.extend(f.poll().with_context(|| cannot(d))?);
            followers.push(f);
        } else {
            lines.extend(store::read_function(d).with_context(|| cannot(d))?);
        }
    }
    lines.sort_by(|a, b| a.timestamp.cmp(&b.timestamp));
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    print(&mut out, &lines, &filter)?;
    let Some(signals) = signals else {
        return Ok(());
    };
    loop {
        if stopped(&signals, POLL)? {
            return Ok(());
        }
        let mut new = Vec::new();
        for (f, d) in followers.iter_mut().zip(&dirs) {
            new.extend(
                f.poll()
                    .with_context(|| format!("cannot read {}", d.display()))?,
            );
        }
        new.sort_by(|a, b| a.timestamp.cmp(&b.timestamp));
        print(&mut out, &new, &filter)?;
    }
}

/// The directories the cluster's workers keep function logs in: the template's
/// `function_log_dir` (`<cluster>/logs/functions` by default) and each worker config's.
pub fn log_dirs(cluster: &ClusterDir, template: &Config) -> anyhow::Result<BTreeSet<PathBuf>> {
    let mut dirs = BTreeSet::new();
    if template.function_log_dir.as_os_str().is_empty() {
        dirs.insert(cluster.root().join("logs").join("functions"));
    } else {
        dirs.insert(template.function_log_dir.clone());
    }
    for i in cluster.worker_configs()? {
        let path = cluster.worker_config(i);
        if let Ok(cfg) = Config::load(&path) {
            dirs.insert(cfg.function_logs());
        }
    }
    Ok(dirs)
}

/// Which lines to print.
#[derive(Debug, Default)]
pub struct Filter {
    /// Stored timestamps at or after this one (same format: text order is time order).
    pub since: Option<String>,
    pub request_id: Option<String>,
}

impl Filter {
    pub fn keeps(&self, line: &Stored) -> bool {
        self.since.as_ref().is_none_or(|s| line.timestamp >= *s)
            && self
                .request_id
                .as_ref()
                .is_none_or(|id| line.request_id == *id)
    }
}

fn print(out: &mut impl Write, lines: &[Stored], filter: &Filter) -> anyhow::Result<()> {
    for l in lines.iter().filter(|l| filter.keeps(l)) {
        match writeln!(out, "{} {} {}", l.timestamp, l.request_id, l.text) {
            Ok(()) => {}
            // A reader that went away (`admin logs ... | head`) is no error.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e).context("cannot write to stdout"),
        }
    }
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to stdout")
        }
        _ => Ok(()),
    }
}

/// `--since`: `30s`, `10m`, `2h`, `1d` before `now`, or an RFC 3339 time; as a stored
/// timestamp.
pub fn parse_since(s: &str, now: SystemTime) -> anyhow::Result<String> {
    let bad = || anyhow!("--since {s:?}: not a duration (30s, 10m, 2h, 1d) nor an RFC 3339 time");
    let (digits, unit) = s.split_at(s.len().saturating_sub(1));
    let duration = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    let at = if duration {
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let secs = match unit {
            "s" => n,
            "m" => n.saturating_mul(60),
            "h" => n.saturating_mul(3600),
            "d" => n.saturating_mul(86_400),
            _ => return Err(bad()),
        };
        now.checked_sub(Duration::from_secs(secs))
            .unwrap_or(SystemTime::UNIX_EPOCH)
    } else {
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|_| bad())?;
        let t = SystemTime::from(t);
        t.max(SystemTime::UNIX_EPOCH)
    };
    Ok(store::timestamp(at))
}

/// SIGINT and SIGTERM blocked in this (single-threaded) process and read through a signalfd.
fn block_signals() -> anyhow::Result<SignalFd> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGTERM);
    mask.thread_block()
        .context("cannot block SIGINT and SIGTERM")?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC).context("cannot create a signalfd")
}

/// Waits up to `limit` for SIGINT or SIGTERM; whether one came.
fn stopped(signals: &SignalFd, limit: Duration) -> anyhow::Result<bool> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
    let ms = u16::try_from(limit.as_millis()).unwrap_or(u16::MAX);
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(0) | Err(nix::errno::Errno::EINTR) => Ok(false),
        Ok(_) => Ok(true),
        Err(e) => Err(e).context("cannot wait for signals"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(ts: &str, id: &str) -> Stored {
        Stored {
            timestamp: ts.to_owned(),
            request_id: id.to_owned(),
            text: "t".to_owned(),
        }
    }

    #[test]
    fn since_takes_durations_and_times() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_735_689_600);
        assert_eq!(parse_since("30s", now).unwrap(), "2024-12-31T23:59:30.000Z");
        assert_eq!(parse_since("10m", now).unwrap(), "2024-12-31T23:50:00.000Z");
        assert_eq!(parse_since("2h", now).unwrap(), "2024-12-31T22:00:00.000Z");
        assert_eq!(parse_since("1d", now).unwrap(), "2024-12-31T00:00:00.000Z");
        assert_eq!(
            parse_since("2025-01-01T01:00:00+01:00", now).unwrap(),
            "2025-01-01T00:00:00.000Z"
        );
        assert_eq!(
            parse_since("2000-01-01T00:00:00Z", now).unwrap(),
            "2000-01-01T00:00:00.000Z"
        );
        for bad in ["", "10", "m", "10w", "-5m", "yesterday", "2025-01-01"] {
            assert!(parse_since(bad, now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_filter_keeps_what_both_conditions_allow() {
        let f = Filter {
            since: Some("2025-01-01T00:00:00.000Z".to_owned()),
            request_id: Some("a".to_owned()),
        };
        assert!(f.keeps(&line("2025-01-01T00:00:00.000Z", "a")));
        assert!(!f.keeps(&line("2024-12-31T23:59:59.999Z", "a")));
        assert!(!f.keeps(&line("2025-01-02T00:00:00.000Z", "b")));
        assert!(Filter::default().keeps(&line("1970-01-01T00:00:00.000Z", "-")));
    }

    #[test]
    fn lines_print_as_aws_logs_tail_prints_them() {
        let mut out = Vec::new();
        let l = Stored {
            timestamp: "2025-01-01T00:00:00.000Z".to_owned(),
            request_id: "r-1".to_owned(),
            text: "REPORT RequestId: r-1\tDuration: 1.00 ms".to_owned(),
        };
        print(&mut out, &[l], &Filter::default()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2025-01-01T00:00:00.000Z r-1 REPORT RequestId: r-1\tDuration: 1.00 ms\n"
        );
    }

    #[test]
    fn log_dirs_are_the_templates_and_each_workers() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("config")).unwrap();
        let template = Config {
            function_log_dir: root.join("logs/functions"),
            ..Config::default()
        };
        template.save(&root.join("config/template.json")).unwrap();
        let w = Config {
            worker_dir: root.join("workers/worker-1"),
            function_log_dir: PathBuf::new(),
            ..Config::default()
        };
        w.save(&root.join("config/worker-1.json")).unwrap();
        let cluster = ClusterDir::open(root).unwrap();
        let dirs = log_dirs(&cluster, &template).unwrap();
        assert!(dirs.contains(&template.function_log_dir), "{dirs:?}");
        let own = root.join("workers/worker-1/function-logs");
        assert!(dirs.contains(&own), "{dirs:?}");
        assert_eq!(dirs.len(), 2);
    }
}
