//! The on-disk format of handler logs, and the reader `admin logs` uses.
//!
//! `<function_logs>/<function>/<worker>.log`, rotated into `<worker>.log.1` (the newer) to
//! `<worker>.log.<function_log_files>` (the oldest); one line per log line:
//! `<timestamp>\t<request id or ->\t<text>\n`, the timestamp RFC 3339 in UTC with milliseconds
//! (`2025-01-01T12:34:56.789Z`, so that text order is time order), the text without newline
//! (it may hold tabs).
//!
//! Reading, in order: [`worker_files`] lists each worker's files of a function oldest first,
//! [`read_function`] parses them and merges the workers' lines by timestamp (a worker's own
//! lines keep their order), and [`Follower`] reads what is appended afterwards, across
//! rotations.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::runtime_client::RequestId;

const TIMESTAMP: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
);

/// The suffix of a worker's current log file.
pub const SUFFIX: &str = ".log";

/// Appends `at` as the format's timestamp.
pub fn push_timestamp(out: &mut String, at: SystemTime) {
    match time::OffsetDateTime::from(at).format(TIMESTAMP) {
        Ok(s) => out.push_str(&s),
        Err(_) => out.push_str("1970-01-01T00:00:00.000Z"),
    }
}

/// `at` as the format's timestamp.
pub fn timestamp(at: SystemTime) -> String {
    let mut s = String::with_capacity(24);
    push_timestamp(&mut s, at);
    s
}

/// Appends one stored line (with its newline) to `out`.
pub fn encode(out: &mut Vec<u8>, at: SystemTime, request: Option<&RequestId>, text: &str) {
    use std::io::Write;
    if time::OffsetDateTime::from(at)
        .format_into(out, TIMESTAMP)
        .is_err()
    {
        out.extend_from_slice(b"1970-01-01T00:00:00.000Z");
    }
    out.push(b'\t');
    match request {
        Some(id) => {
            let _ = write!(out, "{id}");
        }
        None => out.push(b'-'),
    }
    out.push(b'\t');
    out.extend_from_slice(text.as_bytes());
    out.push(b'\n');
}

/// One stored line, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// As stored: RFC 3339, UTC, milliseconds (its text order is its time order).
    pub timestamp: String,
    /// The call's request id, or `-` for output between calls.
    pub request_id: String,
    pub text: String,
}

impl Stored {
    /// A stored line (without its newline); `None` when it is not one.
    pub fn parse(line: &str) -> Option<Self> {
        let (timestamp, rest) = line.split_once('\t')?;
        let (request_id, text) = rest.split_once('\t')?;
        time::PrimitiveDateTime::parse(timestamp, TIMESTAMP).ok()?;
        if request_id.is_empty() {
            return None;
        }
        Some(Self {
            timestamp: timestamp.to_owned(),
            request_id: request_id.to_owned(),
            text: text.to_owned(),
        })
    }
}

/// Each worker's log files of the function whose directory is `dir`, oldest first
/// (`<worker>.log.N` ... `<worker>.log.1`, `<worker>.log`), by worker name. A missing
/// directory has none.
pub fn worker_files(dir: &Path) -> std::io::Result<BTreeMap<String, Vec<PathBuf>>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e),
    };
    let mut found: BTreeMap<String, Vec<(u32, PathBuf)>> = BTreeMap::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some((worker, n)) = name.to_str().and_then(parse_name) else {
            continue;
        };
        found
            .entry(worker.to_owned())
            .or_default()
            .push((n, entry.path()));
    }
    Ok(found
        .into_iter()
        .map(|(worker, mut files)| {
            // The highest number is the oldest; the current file (0) is the newest.
            files.sort_by_key(|f| std::cmp::Reverse(f.0));
            (worker, files.into_iter().map(|(_, p)| p).collect())
        })
        .collect())
}

/// `worker-0.log` -> (`worker-0`, 0); `worker-0.log.2` -> (`worker-0`, 2).
pub fn parse_name(name: &str) -> Option<(&str, u32)> {
    if let Some(worker) = name.strip_suffix(SUFFIX) {
        return (!worker.is_empty()).then_some((worker, 0));
    }
    let (stem, n) = name.rsplit_once('.')?;
    let worker = stem.strip_suffix(SUFFIX)?;
    let n: u32 = n.parse().ok().filter(|n| *n > 0)?;
    (!worker.is_empty() && n.to_string().len() == name.len() - stem.len() - 1)
        .then_some((worker, n))
}

/// Every line stored for the function whose directory is `dir`: each worker's files oldest
/// first, the workers' lines merged by timestamp. Lines that are not in the format (a file cut
/// by a crash) are skipped.
pub fn read_function(dir: &Path) -> std::io::Result<Vec<Stored>> {
    read_some(dir, true)
}

/// [`read_function`] of the rotated files only (`<worker>.log.N`): with
/// [`Follower::from_start`], every line exactly once.
pub fn read_rotated(dir: &Path) -> std::io::Result<Vec<Stored>> {
    read_some(dir, false)
}

fn read_some(dir: &Path, current: bool) -> std::io::Result<Vec<Stored>> {
    let mut all = Vec::new();
    for files in worker_files(dir)?.values() {
        for path in files {
            let is_current = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_name)
                .is_some_and(|(_, n)| n == 0);
            if is_current && !current {
                continue;
            }
            match std::fs::read(path) {
                Ok(bytes) => parse_into(&bytes, &mut all),
                // Rotated away or removed by retention since the listing.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    // Stable: a worker's lines of one millisecond keep their order.
    all.sort_by(|a, b| a.timestamp.cmp(&b.timestamp));
    Ok(all)
}

/// Parses the complete lines of `bytes` into `out`.
fn parse_into(bytes: &[u8], out: &mut Vec<Stored>) {
    for line in bytes.split(|&b| b == b'\n') {
        if let Some(s) = Stored::parse(&String::from_utf8_lossy(line)) {
            out.push(s);
        }
    }
}

/// Reads what the workers append to a function's logs after it was made, across rotations
/// (see the module docs): call [`Follower::poll`] now and then.
#[derive(Debug)]
pub struct Follower {
    dir: PathBuf,
    /// Per worker: its current file as opened, and the bytes of a line not yet complete.
    open: BTreeMap<String, Followed>,
}

#[derive(Debug)]
struct Followed {
    file: File,
    ino: u64,
    partial: Vec<u8>,
}

impl Follower {
    /// Follows the function whose directory is `dir`, from the current ends of its files.
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        let mut this = Self::from_start(dir)?;
        for f in this.open.values_mut() {
            f.file.seek(SeekFrom::End(0))?;
        }
        Ok(this)
    }

    /// Follows the function whose directory is `dir` from the starts of its current files:
    /// the first poll returns what they hold.
    pub fn from_start(dir: &Path) -> std::io::Result<Self> {
        let mut this = Self {
            dir: dir.to_owned(),
            open: BTreeMap::new(),
        };
        for worker in worker_files(dir)?.into_keys() {
            let path = dir.join(format!("{worker}{SUFFIX}"));
            if let Some(f) = Followed::open(&path)? {
                this.open.insert(worker, f);
            }
        }
        Ok(this)
    }

    /// The lines appended since the last poll, merged by timestamp.
    pub fn poll(&mut self) -> std::io::Result<Vec<Stored>> {
        let mut out = Vec::new();
        for worker in worker_files(&self.dir)?.into_keys() {
            let path = self.dir.join(format!("{worker}{SUFFIX}"));
            if let Some(f) = self.open.get_mut(&worker) {
                // What was written before a rotation is read through the old file first.
                f.read_new(&mut out)?;
                let now = std::fs::metadata(&path).map(|m| m.ino()).ok();
                if now.is_some_and(|ino| ino != f.ino) {
                    f.read_new(&mut out)?;
                    self.open.remove(&worker);
                }
            }
            if let std::collections::btree_map::Entry::Vacant(slot) = self.open.entry(worker) {
                // A new worker, or a new file after a rotation: from its start.
                if let Some(mut f) = Followed::open(&path)? {
                    f.read_new(&mut out)?;
                    slot.insert(f);
                }
            }
        }
        out.sort_by(|a, b| a.timestamp.cmp(&b.timestamp));
        Ok(out)
    }
}

impl Followed {
    fn open(path: &Path) -> std::io::Result<Option<Self>> {
        match File::open(path) {
            Ok(file) => {
                let ino = file.metadata()?.ino();
                Ok(Some(Self {
                    file,
                    ino,
                    partial: Vec::new(),
                }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads to the end of the file; complete lines go to `out`.
    fn read_new(&mut self, out: &mut Vec<Stored>) -> std::io::Result<()> {
        let start = self.partial.len();
        self.file.read_to_end(&mut self.partial)?;
        if self.partial.len() == start {
            return Ok(());
        }
        if let Some(last) = self.partial.iter().rposition(|&b| b == b'\n') {
            parse_into(&self.partial[..last], out);
            self.partial.drain(..=last);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(ms: u64) -> SystemTime {
        std::time::UNIX_EPOCH + Duration::from_millis(ms)
    }

    fn line(ms: u64, id: Option<&str>, text: &str) -> Vec<u8> {
        let id = id.map(|i| RequestId::given(i).unwrap());
        let mut out = Vec::new();
        encode(&mut out, at(ms), id.as_ref(), text);
        out
    }

    #[test]
    fn a_line_is_timestamp_request_id_text() {
        let l = line(1_735_689_600_123, Some("abc-1"), "hello\tworld");
        assert_eq!(l, b"2025-01-01T00:00:00.123Z\tabc-1\thello\tworld\n");
        let l = line(1_735_689_600_000, None, "");
        assert_eq!(l, b"2025-01-01T00:00:00.000Z\t-\t\n");
        let text = String::from_utf8(line(5, Some("id"), "a\tb")).unwrap();
        let parsed = Stored::parse(text.trim_end_matches('\n')).unwrap();
        assert_eq!(parsed.timestamp, "1970-01-01T00:00:00.005Z");
        assert_eq!(
            (parsed.request_id.as_str(), parsed.text.as_str()),
            ("id", "a\tb")
        );
        for bad in [
            "",
            "x\ty\tz",
            "2025-01-01T00:00:00.000Z",
            "2025-01-01T00:00:00.000\tid\tt",
        ] {
            assert_eq!(Stored::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn file_names_give_worker_and_rotation() {
        assert_eq!(parse_name("worker-0.log"), Some(("worker-0", 0)));
        assert_eq!(parse_name("worker-0.log.2"), Some(("worker-0", 2)));
        for bad in [
            ".log",
            "worker-0.log.0",
            "worker-0.log.02",
            "worker-0.txt",
            "w.log.x",
            "x",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn workers_are_merged_by_time_oldest_files_first() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, lines: &[(u64, &str)]| {
            let mut bytes = Vec::new();
            for (ms, text) in lines {
                bytes.extend(line(*ms, Some("r"), text));
            }
            std::fs::write(dir.path().join(name), bytes).unwrap();
        };
        write("worker-0.log.2", &[(1, "a"), (2, "b")]);
        write("worker-0.log.1", &[(5, "c")]);
        write("worker-0.log", &[(9, "d"), (9, "d2")]);
        write("worker-1.log", &[(3, "x"), (9, "y")]);
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let files = worker_files(dir.path()).unwrap();
        assert_eq!(files["worker-0"].len(), 3);
        assert!(files["worker-0"][0].ends_with("worker-0.log.2"));
        assert!(files["worker-0"][2].ends_with("worker-0.log"));
        let texts: Vec<String> = read_function(dir.path())
            .unwrap()
            .into_iter()
            .map(|s| s.text)
            .collect();
        assert_eq!(texts, ["a", "b", "x", "c", "d", "d2", "y"]);
        assert!(read_function(&dir.path().join("missing"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_follower_reads_appends_across_rotations_and_new_workers() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("worker-0.log");
        let append = |p: &Path, bytes: &[u8]| {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap();
            f.write_all(bytes).unwrap();
        };
        append(&path, &line(1, Some("r"), "before"));
        let mut f = Follower::new(dir.path()).unwrap();
        assert!(f.poll().unwrap().is_empty(), "only what comes after");
        append(&path, &line(2, Some("r"), "one"));
        let half = line(3, Some("r"), "two");
        append(&path, &half[..10]);
        let texts = |v: Vec<Stored>| v.into_iter().map(|s| s.text).collect::<Vec<_>>();
        assert_eq!(texts(f.poll().unwrap()), ["one"]);
        append(&path, &half[10..]);
        // Rotation: the old file gets one more line, then moves; the new one starts.
        append(&path, &line(4, Some("r"), "three"));
        std::fs::rename(&path, dir.path().join("worker-0.log.1")).unwrap();
        append(&path, &line(5, Some("r"), "four"));
        append(
            &dir.path().join("worker-1.log"),
            &line(4, Some("s"), "other"),
        );
        assert_eq!(texts(f.poll().unwrap()), ["two", "three", "other", "four"]);
        assert!(f.poll().unwrap().is_empty());
        // From the start: the rotated files are read whole, the current one by the follower.
        let mut g = Follower::from_start(dir.path()).unwrap();
        let rotated = texts(read_rotated(dir.path()).unwrap());
        assert_eq!(rotated, ["before", "one", "two", "three"]);
        assert_eq!(texts(g.poll().unwrap()), ["other", "four"]);
    }
}
