//! The worker process's own metrics, as every Prometheus client exports them
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...), read from `/proc/self`.
//! Blocking file reads: the scrape runs on the blocking pool.

/// What `/proc/self` says of this process; fields that cannot be read are `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub threads: Option<u64>,
    pub start_time_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

/// Reads this process's numbers.
pub fn read() -> ProcessStats {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| boot_time(&s));
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&t| t > 0)
        .unwrap_or(100) as f64;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .filter(|&p| p > 0)
        .unwrap_or(4096) as u64;
    let mut stats = parse_stat(&stat, ticks, page, boot_time);
    stats.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64);
    stats.max_fds = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft);
    stats
}

/// The fields of `/proc/self/stat` (see proc(5)): after the command in parentheses, utime and
/// stime are fields 14 and 15, num_threads 20, starttime 22 (ticks after boot), vsize 23
/// (bytes) and rss 24 (pages).
fn parse_stat(stat: &str, ticks: f64, page: u64, boot_time: Option<u64>) -> ProcessStats {
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return ProcessStats::default();
    };
    // `after` starts at field 3 (state).
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let cpu = match (field(14), field(15)) {
        (Some(u), Some(s)) => Some((u + s) as f64 / ticks),
        _ => None,
    };
    ProcessStats {
        cpu_seconds: cpu,
        resident_bytes: field(24).map(|p| p * page),
        virtual_bytes: field(23),
        threads: field(20),
        start_time_seconds: match (boot_time, field(22)) {
            (Some(boot), Some(start)) => Some(boot as f64 + start as f64 / ticks),
            _ => None,
        },
        open_fds: None,
        max_fds: None,
    }
}

/// `btime` of `/proc/stat`: the boot time in seconds since the epoch.
fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_fields_are_read_after_the_command() {
        // A command with spaces and a parenthesis, as a process may name itself.
        let stat = "4242 (wor ker) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 12345 1000000 300 18446744073709551615";
        let s = parse_stat(stat, 100.0, 4096, Some(1_700_000_000));
        assert_eq!(s.cpu_seconds, Some(3.0));
        assert_eq!(s.threads, Some(7));
        assert_eq!(s.virtual_bytes, Some(1_000_000));
        assert_eq!(s.resident_bytes, Some(300 * 4096));
        assert_eq!(s.start_time_seconds, Some(1_700_000_123.45));
        assert_eq!(
            boot_time("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn this_process_can_be_read() {
        let s = read();
        assert!(s.cpu_seconds.is_some() && s.resident_bytes.unwrap() > 0);
        assert!(s.open_fds.unwrap() >= 3 && s.max_fds.unwrap() > 0);
        assert!(s.start_time_seconds.unwrap() > 1.6e9);
    }
}
