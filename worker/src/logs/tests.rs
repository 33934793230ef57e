//! The writer (format, START/END/REPORT, rotation, retention, the total cap, the queue's bound)
//! and a sandbox's capture (attribution, caps, partial lines, tails) against a real pipe and a
//! temporary directory. No root needed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::aws::Figures;
use super::store::{self, Stored};
use super::writer::{CallEnd, Entry, MAX_QUEUED_BYTES};
use super::*;
use crate::runtime_client::RequestId;

fn settings(root: &Path) -> Settings {
    Settings {
        root: root.to_owned(),
        worker: "worker-0".to_owned(),
        file_bytes: 1 << 20,
        files: 2,
        retention: Duration::from_secs(3600),
        total_bytes: 1 << 30,
    }
}

fn start(s: Settings) -> Arc<LogWriter> {
    Arc::new(LogWriter::start(s, Arc::new(|_: &Path| Some(41 << 20))))
}

fn flush(w: &LogWriter) {
    assert!(w.flush_blocking(Duration::from_secs(10)));
}

fn line(function: &str, request: Option<&RequestId>, text: &str) -> Entry {
    Entry::Line {
        function: Arc::from(function),
        at: SystemTime::now(),
        request: request.cloned(),
        text: text.to_owned(),
    }
}

fn read(root: &Path, function: &str) -> Vec<Stored> {
    store::read_function(&root.join(function)).unwrap()
}

fn texts(lines: &[Stored]) -> Vec<&str> {
    lines.iter().map(|l| l.text.as_str()).collect()
}

#[test]
fn lines_and_a_calls_end_are_written_as_aws_prints_them() {
    let dir = tempfile::tempdir().unwrap();
    let w = start(settings(dir.path()));
    let id = RequestId::given("req-1").unwrap();
    w.send(line("hello", None, "between calls"));
    w.send(Entry::End(Box::new(CallEnd {
        function: Arc::from("hello"),
        request: id.clone(),
        start: Some(SystemTime::now()),
        at: SystemTime::now(),
        figures: Figures {
            duration: Duration::from_micros(1500),
            memory_mb: 128,
            max_memory_used_mb: None,
            init: Some(Duration::from_millis(20)),
        },
        cgroup: Some(Arc::from(Path::new("sb-1"))),
    })));
    flush(&w);
    let lines = read(dir.path(), "hello");
    assert_eq!(
        texts(&lines),
        [
            "between calls",
            "START RequestId: req-1 Version: $LATEST",
            "END RequestId: req-1",
            "REPORT RequestId: req-1\tDuration: 1.50 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 41 MB\tInit Duration: 20.00 ms",
        ]
    );
    assert_eq!(lines[0].request_id, "-");
    assert!(lines[1..].iter().all(|l| l.request_id == "req-1"));
    let path = dir.path().join("hello/worker-0.log");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, FILE_MODE);
}

#[test]
fn a_full_file_is_rotated_and_the_oldest_goes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Settings {
        file_bytes: 4096,
        files: 2,
        ..settings(dir.path())
    };
    let w = start(s);
    let text = "x".repeat(100);
    // About 130 bytes a line: 4096 bytes take 31 lines; 200 lines fill six files.
    for i in 0..200 {
        w.send(line("f", None, &format!("{i:03} {text}")));
        if i % 10 == 0 {
            flush(&w);
        }
    }
    flush(&w);
    let files = store::worker_files(&dir.path().join("f")).unwrap();
    let names: Vec<String> = files["worker-0"]
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["worker-0.log.2", "worker-0.log.1", "worker-0.log"]);
    for p in &files["worker-0"] {
        assert!(
            std::fs::metadata(p).unwrap().len() <= 4096,
            "{}",
            p.display()
        );
    }
    let lines = read(dir.path(), "f");
    assert!(lines.len() < 200 && lines.len() > 60, "{}", lines.len());
    assert!(lines.last().unwrap().text.starts_with("199 "));
    // What is kept is the newest, in order.
    let first: usize = lines[0].text[..3].parse().unwrap();
    let numbers: Vec<usize> = lines.iter().map(|l| l.text[..3].parse().unwrap()).collect();
    assert_eq!(numbers, (first..200).collect::<Vec<_>>());
}

#[test]
fn with_no_rotated_files_kept_a_full_file_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let w = start(Settings {
        file_bytes: 4096,
        files: 0,
        ..settings(dir.path())
    });
    for i in 0..100 {
        w.send(line("f", None, &format!("{i:03} {}", "y".repeat(100))));
    }
    flush(&w);
    let files = store::worker_files(&dir.path().join("f")).unwrap();
    assert_eq!(files["worker-0"].len(), 1);
    assert!(read(dir.path(), "f")
        .last()
        .unwrap()
        .text
        .starts_with("099 "));
}

fn age(path: &Path, by: Duration) {
    let f = std::fs::File::options().append(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - by).unwrap();
}

fn put(path: &Path, bytes: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, vec![b'z'; bytes]).unwrap();
}

#[test]
fn the_sweep_removes_old_files_then_the_oldest_beyond_the_total() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let s = Settings {
        retention: Duration::from_secs(3600),
        total_bytes: 3000,
        ..settings(root)
    };
    let p = |rel: &str| root.join(rel);
    put(&p("a/worker-0.log.1"), 1000);
    age(&p("a/worker-0.log.1"), Duration::from_secs(7200));
    put(&p("a/worker-0.log"), 1000);
    age(&p("a/worker-0.log"), Duration::from_secs(300));
    put(&p("b/worker-0.log"), 1000);
    age(&p("b/worker-0.log"), Duration::from_secs(200));
    put(&p("c/worker-0.log"), 1500);
    // Another worker's files, however old and big, are its own to sweep.
    put(&p("a/worker-1.log"), 10_000);
    age(&p("a/worker-1.log"), Duration::from_secs(9000));
    let mut closed = Vec::new();
    let swept = retention::sweep(&s, SystemTime::now(), &mut |f: &str| {
        closed.push(f.to_owned())
    })
    .unwrap();
    // a/.log.1 is past retention; then 3500 bytes > 3000: a/.log, the least recently written.
    assert_eq!(swept.removed, 2);
    assert_eq!(swept.kept_bytes, 2500);
    assert!(!p("a/worker-0.log.1").exists());
    assert!(!p("a/worker-0.log").exists());
    assert!(p("b/worker-0.log").exists() && p("c/worker-0.log").exists());
    assert!(p("a/worker-1.log").exists());
    assert_eq!(closed, ["a", "a"]);
    assert!(
        retention::sweep(&s, SystemTime::now(), &mut |_: &str| {})
            .unwrap()
            .removed
            == 0
    );
}

#[test]
fn the_writer_keeps_the_total_under_its_cap_while_it_writes() {
    let dir = tempfile::tempdir().unwrap();
    let w = start(Settings {
        file_bytes: 8192,
        files: 1,
        total_bytes: 64 * 1024,
        ..settings(dir.path())
    });
    let text = "q".repeat(200);
    // 40 functions, 64 KiB each at most: far beyond the cap without it.
    for round in 0..20 {
        for f in 0..40 {
            w.send(line(&format!("fn-{f}"), None, &text));
        }
        flush(&w);
        if round % 5 == 4 {
            // The writer sweeps at most once a second when over.
            std::thread::sleep(Duration::from_millis(1100));
        }
    }
    std::thread::sleep(Duration::from_millis(1100));
    w.send(line("fn-0", None, "last"));
    flush(&w);
    let total: u64 = walkdir::WalkDir::new(dir.path())
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().len())
        .sum();
    // At the cap after a sweep, plus what came after it.
    assert!(total <= 64 * 1024 + 8192, "{total}");
    assert!(read(dir.path(), "fn-0").iter().any(|l| l.text == "last"));
}

#[test]
fn more_functions_than_open_files_are_all_written() {
    let dir = tempfile::tempdir().unwrap();
    let w = start(settings(dir.path()));
    for round in 0..2 {
        for f in 0..(MAX_OPEN + 10) {
            w.send(line(&format!("g{f}"), None, &format!("round {round}")));
        }
    }
    flush(&w);
    for f in [0, MAX_OPEN + 9] {
        assert_eq!(
            texts(&read(dir.path(), &format!("g{f}"))),
            ["round 0", "round 1"]
        );
    }
}

#[test]
fn a_writer_that_falls_behind_drops_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let w = start(settings(dir.path()));
    w.send(line("h", None, &"m".repeat(MAX_QUEUED_BYTES + 1)));
    assert_eq!(w.dropped(), 1);
    w.send(line("h", None, "fits"));
    flush(&w);
    assert_eq!(texts(&read(dir.path(), "h")), ["fits"]);
    let off = LogWriter::disabled();
    off.send(line("h", None, "nowhere"));
    assert!(off.flush_blocking(Duration::from_millis(10)));
    assert!(off.settings().is_none());
}

/// A capture over a real pipe: its write end, and what the writer stored.
struct Piped {
    dir: tempfile::TempDir,
    logs: Arc<LogWriter>,
    capture: Capture,
    out: std::fs::File,
}

fn piped(call_bytes: u64) -> Piped {
    let dir = tempfile::tempdir().unwrap();
    let logs = start(settings(dir.path()));
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let capture = Capture::new(
        read,
        Arc::clone(&logs),
        Arc::from("fn"),
        Arc::from(Path::new("sb-1")),
        call_bytes,
    )
    .unwrap();
    Piped {
        dir,
        logs,
        capture,
        out: std::fs::File::from(write),
    }
}

impl Piped {
    fn stored(&self) -> Vec<Stored> {
        flush(&self.logs);
        read(self.dir.path(), "fn")
    }

    fn finish(&mut self) -> Option<String> {
        self.capture.end_call();
        self.capture.finish(Figures {
            duration: Duration::from_millis(3),
            memory_mb: 256,
            max_memory_used_mb: Some(7),
            init: None,
        })
    }
}

#[tokio::test]
async fn output_is_attributed_to_its_call_or_to_none_between_calls() {
    let mut p = piped(1 << 20);
    p.out.write_all(b"before any call\npart").unwrap();
    let id = RequestId::given("r1").unwrap();
    p.capture.begin(&id, true);
    p.out.write_all(b"one\ntwo\nthr").unwrap();
    p.capture.read_ready().await;
    p.out.write_all(b"ee").unwrap();
    p.capture.drain();
    let tail = p.finish().unwrap();
    let lines = p.stored();
    let by: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l.request_id.as_str(), l.text.as_str()))
        .collect();
    assert_eq!(
        by,
        [
            ("-", "before any call"),
            ("-", "part"),
            ("r1", "START RequestId: r1 Version: $LATEST"),
            ("r1", "one"),
            ("r1", "two"),
            ("r1", "three"),
            ("r1", "END RequestId: r1"),
            ("r1", "REPORT RequestId: r1\tDuration: 3.00 ms\tBilled Duration: 3 ms\tMemory Size: 256 MB\tMax Memory Used: 7 MB"),
        ]
    );
    assert_eq!(
        tail,
        "START RequestId: r1 Version: $LATEST\none\ntwo\nthree\nEND RequestId: r1\nREPORT RequestId: r1\tDuration: 3.00 ms\tBilled Duration: 3 ms\tMemory Size: 256 MB\tMax Memory Used: 7 MB\n"
    );
    // A call that prints nothing still has its three lines; without a tail asked, none kept.
    let id2 = RequestId::given("r2").unwrap();
    p.capture.begin(&id2, false);
    p.capture.drain();
    assert_eq!(p.finish(), None);
    let lines = p.stored();
    assert_eq!(
        texts(&lines[8..]),
        [
            "START RequestId: r2 Version: $LATEST",
            "END RequestId: r2",
            "REPORT RequestId: r2\tDuration: 3.00 ms\tBilled Duration: 3 ms\tMemory Size: 256 MB\tMax Memory Used: 7 MB",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_printing_past_its_cap_is_read_to_the_end_and_cut() {
    let mut p = piped(10_000);
    let id = RequestId::given("big").unwrap();
    p.capture.begin(&id, true);
    // 1 MiB through a 64 KiB pipe: only concurrent reading lets the writer finish.
    let mut out = p.out.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let line = [b"w".repeat(1023), b"\n".to_vec()].concat();
        for _ in 0..1024 {
            out.write_all(&line).unwrap();
        }
    });
    let read = async {
        while !writer.is_finished() {
            tokio::select! {
                () = p.capture.read_ready() => {}
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the printer never blocks for good");
    p.capture.drain();
    let tail = p.finish().unwrap();
    let lines = p.stored();
    let kept: usize = lines
        .iter()
        .filter(|l| l.text.starts_with('w'))
        .map(|l| l.text.len() + 1)
        .sum();
    // 10 000 bytes kept: nine whole lines and the start of the tenth, ended there.
    assert_eq!(kept, 10_000 + 1, "{kept}");
    let dropped = lines
        .iter()
        .find(|l| l.text.contains("were dropped"))
        .expect("a line says what was dropped");
    assert!(
        dropped
            .text
            .contains(&format!("{} bytes", (1 << 20) - 10_000)),
        "{}",
        dropped.text
    );
    assert!(
        tail.len() <= aws::TAIL_BYTES && tail.contains("were dropped"),
        "{tail}"
    );
    assert!(tail.starts_with('w') && tail.ends_with("Max Memory Used: 7 MB\n"));
    // The failure tail holds the true end of the output.
    assert!(p.capture.output_tail().ends_with("www\n"));
}

#[tokio::test]
async fn a_partial_line_is_ended_with_its_call_and_the_rest_is_kept_on_drop() {
    let mut p = piped(1 << 20);
    let id = RequestId::given("r").unwrap();
    p.capture.begin(&id, false);
    p.out.write_all(b"no newline").unwrap();
    p.capture.drain();
    p.finish();
    p.out.write_all(b"after the call\n").unwrap();
    let Piped {
        dir,
        logs,
        capture,
        out,
    } = p;
    drop(out);
    drop(capture);
    flush(&logs);
    let lines = read(dir.path(), "fn");
    let by: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l.request_id.as_str(), l.text.as_str()))
        .collect();
    assert_eq!(by[1], ("r", "no newline"));
    assert_eq!(by.last(), Some(&("-", "after the call")));
}

#[test]
fn the_settings_follow_the_config() {
    let cfg = crate::config::Config {
        worker_dir: PathBuf::from("/c/workers/worker-3"),
        function_log_dir: PathBuf::from("/c/logs/functions"),
        ..crate::config::Config::default()
    };
    let s = Settings::of(&cfg);
    assert_eq!(s.root, Path::new("/c/logs/functions"));
    assert_eq!(s.worker, "worker-3");
    assert_eq!(s.file_bytes, 8 << 20);
    assert_eq!(s.total_bytes, 1024 << 20);
}
