//! The log writer: one std thread that appends every function's lines to
//! `<function_logs>/<function>/<worker>.log` (see `store.rs` for the format).
//!
//! In order: calls hand entries to a bounded queue ([`LogWriter::send`]: never blocks; a full
//! queue, or more than [`MAX_QUEUED_BYTES`] of text waiting, drops the entry, counts it and
//! warns once); the thread, woken by the first entry, lets a batch gather for [`BATCH`], takes
//! the whole queue, formats each entry (the START, END and REPORT lines of a call are
//! formatted here, off the request path, with the REPORT line's peak memory read from the
//! sandbox's cgroup here too) and appends it to the function's file, rotating it first when it
//! would pass `function_log_file_bytes`; once the batch is done it flushes every file it wrote
//! (so a follower sees a running call's lines within tens of milliseconds) and answers the
//! flushes asked for; every minute (and at start, and as soon as this worker's files may
//! exceed `function_log_total_mb`) it sweeps (`retention.rs`). At most [`MAX_OPEN`] files are
//! open, the least recently written closed first.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::num::NonZeroUsize;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use lru::LruCache;

use super::aws::{self, Figures};
use super::{retention, store, PeakReader};
use crate::config::Config;
use crate::runtime_client::RequestId;

/// Entries the queue holds.
const CAPACITY: usize = 4096;
/// Text waiting in the queue at most, in bytes.
pub const MAX_QUEUED_BYTES: usize = 32 << 20;
/// How long the thread lets a batch gather once an entry came: one write per file per batch,
/// and no wake-up per call while calls keep coming.
const BATCH: Duration = Duration::from_millis(20);
/// Log files open at once.
pub const MAX_OPEN: usize = 64;
/// How often the sweep runs.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// File and directory modes: readable by the owner's group (an operator's), not by others,
/// since handlers print what they like.
pub const FILE_MODE: u32 = 0o640;
pub const DIR_MODE: u32 = 0o750;

/// What the writer is given.
#[derive(Debug)]
pub(crate) enum Entry {
    /// One line of a function's log.
    Line {
        function: Arc<str>,
        at: SystemTime,
        /// `None`: output between calls.
        request: Option<RequestId>,
        text: String,
    },
    /// The end of a call: its START line first when no line of it came before, then END and
    /// REPORT.
    End(Box<CallEnd>),
    /// Flush every file, then answer.
    Flush(SyncSender<()>),
}

/// The end of one call (see [`Entry::End`]).
#[derive(Debug)]
pub(crate) struct CallEnd {
    pub function: Arc<str>,
    pub request: RequestId,
    /// The call's start, when its START line is still to be written.
    pub start: Option<SystemTime>,
    pub at: SystemTime,
    pub figures: Figures,
    /// Where to read the peak memory from, when `figures` lacks it.
    pub cgroup: Option<Arc<Path>>,
}

/// Where and how a worker's logs are written (from its config).
#[derive(Debug, Clone)]
pub struct Settings {
    pub root: PathBuf,
    /// The file name of `worker_dir` (`worker-0`).
    pub worker: String,
    pub file_bytes: u64,
    pub files: u32,
    pub retention: Duration,
    pub total_bytes: u64,
}

impl Settings {
    pub fn of(cfg: &Config) -> Self {
        Self {
            root: cfg.function_logs(),
            worker: cfg
                .worker_dir
                .file_name()
                .map_or_else(|| "worker".to_owned(), |n| n.to_string_lossy().into_owned()),
            file_bytes: cfg.function_log_file_bytes.max(4096),
            files: cfg.function_log_files,
            retention: Duration::from_secs(cfg.function_log_retention_s),
            total_bytes: cfg.function_log_total_mb.saturating_mul(1 << 20),
        }
    }
}

/// What the calls and the thread share: the queue (bounded by [`CAPACITY`] entries and
/// [`MAX_QUEUED_BYTES`] of text) and the counters.
#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the thread when it waits for an empty queue to fill.
    wake: Condvar,
    dropped: AtomicU64,
    warned: AtomicBool,
}

#[derive(Debug, Default)]
struct Queue {
    entries: Vec<Entry>,
    bytes: usize,
    /// The thread waits on `wake` (only then does a sender notify it).
    parked: bool,
    /// The last handle is gone: write what is queued, then end.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The handle calls send their lines through (see the module docs). Dropping it ends the
/// thread once it has written what it holds.
#[derive(Debug)]
pub struct LogWriter {
    shared: Option<Arc<Shared>>,
    settings: Option<Settings>,
    /// The thread, until [`LogWriter::close_blocking`] waited for it.
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl LogWriter {
    /// Starts the writer thread; a writer that cannot start drops everything (and says so).
    pub fn start(settings: Settings, peak: PeakReader) -> Self {
        let shared = Arc::new(Shared::default());
        let thread = WriterThread {
            settings: settings.clone(),
            peak,
            files: LruCache::new(NonZeroUsize::new(MAX_OPEN).unwrap_or(NonZeroUsize::MIN)),
            line: Vec::with_capacity(512),
            text: String::with_capacity(256),
            total: 0,
            last_sweep: None,
            last_warning: None,
            acks: Vec::new(),
            peaks: HashMap::new(),
        };
        let theirs = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("function-logs".to_owned())
            .spawn(move || thread.run(&theirs));
        match spawned {
            Ok(handle) => Self {
                shared: Some(shared),
                settings: Some(settings),
                thread: std::sync::Mutex::new(Some(handle)),
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot start the function log writer; handler output is not kept");
                Self::disabled()
            }
        }
    }

    /// A writer that keeps nothing.
    pub fn disabled() -> Self {
        Self {
            shared: None,
            settings: None,
            thread: std::sync::Mutex::new(None),
        }
    }

    /// Where and how it writes (`None` when disabled).
    pub fn settings(&self) -> Option<&Settings> {
        self.settings.as_ref()
    }

    /// Entries dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.shared
            .as_ref()
            .map_or(0, |s| s.dropped.load(Ordering::Relaxed))
    }

    /// Hands `entry` to the writer without waiting (see the module docs): a push under a lock
    /// held for no more than that, and a wake-up only when the thread sleeps on an empty queue.
    pub(crate) fn send(&self, entry: Entry) {
        let Some(shared) = &self.shared else {
            return;
        };
        let bytes = entry_bytes(&entry);
        let mut q = shared.lock();
        if q.closed {
            // Closed at shutdown: nothing is written any more.
            return;
        }
        if q.entries.len() >= CAPACITY || q.bytes + bytes > MAX_QUEUED_BYTES {
            drop(q);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            if !shared.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "the function log writer falls behind: handler log lines are dropped (counted; this is said once)"
                );
            }
            return;
        }
        q.entries.push(entry);
        q.bytes += bytes;
        let wake = std::mem::take(&mut q.parked);
        drop(q);
        if wake {
            shared.wake.notify_one();
        }
    }

    /// Waits (blocking, up to `limit`) until everything sent so far is written and flushed;
    /// whether it was.
    pub fn flush_blocking(&self, limit: Duration) -> bool {
        let Some(shared) = &self.shared else {
            return true;
        };
        let (ack, done) = std::sync::mpsc::sync_channel(1);
        {
            let mut q = shared.lock();
            if q.closed {
                return false;
            }
            // Not counted against the bounds: a flush is never dropped.
            q.entries.push(Entry::Flush(ack));
            if std::mem::take(&mut q.parked) {
                shared.wake.notify_one();
            }
        }
        done.recv_timeout(limit).is_ok()
    }
}

impl LogWriter {
    /// Shutdown: takes nothing more, lets the thread write and flush what it holds, and waits
    /// (blocking, up to `limit`) until it has ended, its files closed; whether it did.
    pub fn close_blocking(&self, limit: Duration) -> bool {
        let Some(shared) = &self.shared else {
            return true;
        };
        shared.lock().closed = true;
        shared.wake.notify_one();
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(handle) = handle else {
            return true;
        };
        let deadline = std::time::Instant::now() + limit;
        while !handle.is_finished() {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        handle.join().is_ok()
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            shared.lock().closed = true;
            shared.wake.notify_one();
        }
    }
}

fn entry_bytes(entry: &Entry) -> usize {
    match entry {
        Entry::Line { text, .. } => text.len() + 64,
        Entry::End(_) => 256,
        Entry::Flush(_) => 0,
    }
}

/// One open log file.
struct Open {
    file: BufWriter<File>,
    size: u64,
}

struct WriterThread {
    settings: Settings,
    peak: PeakReader,
    files: LruCache<Arc<str>, Open>,
    /// One encoded line, reused.
    line: Vec<u8>,
    /// One formatted AWS line, reused.
    text: String,
    /// This worker's bytes on disk, as of the last sweep plus what was written since.
    total: u64,
    last_sweep: Option<Instant>,
    last_warning: Option<Instant>,
    /// Flushes to answer at the end of the batch.
    acks: Vec<SyncSender<()>>,
    /// The peaks read in this batch (at most one entry per call of the batch).
    peaks: HashMap<Arc<Path>, Option<u64>>,
}

impl WriterThread {
    fn run(mut self, shared: &Shared) {
        self.sweep();
        let mut batch = Vec::with_capacity(256);
        loop {
            // Wait for entries (or the next sweep); then let a batch gather.
            let closed = {
                let mut q = shared.lock();
                while q.entries.is_empty() && !q.closed {
                    let wait = self
                        .last_sweep
                        .map_or(Duration::ZERO, |t| SWEEP_EVERY.saturating_sub(t.elapsed()));
                    if wait.is_zero() {
                        break;
                    }
                    q.parked = true;
                    q = match shared.wake.wait_timeout(q, wait) {
                        Ok((q, _)) => q,
                        Err(poisoned) => poisoned.into_inner().0,
                    };
                    q.parked = false;
                }
                q.closed
            };
            if !closed {
                std::thread::sleep(BATCH);
            }
            let closed = {
                let mut q = shared.lock();
                std::mem::swap(&mut q.entries, &mut batch);
                q.bytes = 0;
                q.closed
            };
            for entry in batch.drain(..) {
                self.handle(entry);
            }
            self.peaks.clear();
            self.flush_all();
            let due = self.last_sweep.is_none_or(|t| t.elapsed() >= SWEEP_EVERY);
            let over = self.total > self.settings.total_bytes
                && self
                    .last_sweep
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
            if due || over {
                self.sweep();
            }
            for ack in self.acks.drain(..) {
                let _ = ack.try_send(());
            }
            if closed && shared.lock().entries.is_empty() {
                return;
            }
        }
    }

    fn handle(&mut self, entry: Entry) {
        match entry {
            Entry::Line {
                function,
                at,
                request,
                text,
            } => self.append(&function, at, request.as_ref(), &text),
            Entry::End(end) => self.end(&end),
            // Answered once this batch is written (and swept, if due).
            Entry::Flush(ack) => self.acks.push(ack),
        }
    }

    /// START (when still due), END and REPORT of one call.
    fn end(&mut self, end: &CallEnd) {
        let mut text = std::mem::take(&mut self.text);
        if let Some(start) = end.start {
            text.clear();
            aws::start(&mut text, &end.request);
            self.append(&end.function, start, Some(&end.request), &text);
        }
        text.clear();
        aws::end(&mut text, &end.request);
        self.append(&end.function, end.at, Some(&end.request), &text);
        let mut figures = end.figures;
        if figures.max_memory_used_mb.is_none() {
            figures.max_memory_used_mb = end.cgroup.as_ref().and_then(|c| self.peak_of(c));
        }
        text.clear();
        aws::report(&mut text, &end.request, &figures);
        self.append(&end.function, end.at, Some(&end.request), &text);
        self.text = text;
    }

    /// A cgroup's peak memory in MB, read once per batch (the calls of one batch all ended
    /// before it was taken, and a peak only grows).
    fn peak_of(&mut self, cgroup: &Arc<Path>) -> Option<u64> {
        if let Some(mb) = self.peaks.get(cgroup) {
            return *mb;
        }
        let mb = (self.peak)(cgroup).map(aws::megabytes);
        self.peaks.insert(Arc::clone(cgroup), mb);
        mb
    }

    fn append(
        &mut self,
        function: &Arc<str>,
        at: SystemTime,
        request: Option<&RequestId>,
        text: &str,
    ) {
        self.line.clear();
        store::encode(&mut self.line, at, request, text);
        let len = self.line.len() as u64;
        let limit = self.settings.file_bytes;
        let full = self
            .files
            .get(function)
            .is_some_and(|f| f.size > 0 && f.size + len > limit);
        if full {
            self.rotate(function);
        }
        if !self.files.contains(function) {
            match self.open(function) {
                Ok(open) => {
                    if let Some((_, mut old)) = self.files.push(Arc::clone(function), open) {
                        let _ = old.file.flush();
                    }
                }
                Err(e) => {
                    self.warn(&format!("cannot open the log of {function}: {e}"));
                    return;
                }
            }
        }
        let Some(open) = self.files.get_mut(function) else {
            return;
        };
        match open.file.write_all(&self.line) {
            Ok(()) => {
                open.size += len;
                self.total += len;
            }
            Err(e) => {
                let msg = format!("cannot write the log of {function}: {e}");
                self.warn(&msg);
            }
        }
    }

    fn path(&self, function: &str, n: u32) -> PathBuf {
        let dir = self.settings.root.join(function);
        if n == 0 {
            dir.join(format!("{}{}", self.settings.worker, store::SUFFIX))
        } else {
            dir.join(format!("{}{}.{n}", self.settings.worker, store::SUFFIX))
        }
    }

    fn open(&self, function: &str) -> std::io::Result<Open> {
        let dir = self.settings.root.join(function);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&dir)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(FILE_MODE)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(self.path(function, 0))?;
        let size = file.metadata()?.len();
        Ok(Open {
            file: BufWriter::with_capacity(64 * 1024, file),
            size,
        })
    }

    /// `<worker>.log` becomes `.log.1`, each `.log.N` `.log.N+1`; the one past
    /// `function_log_files` is replaced (with none kept, the file is removed).
    fn rotate(&mut self, function: &Arc<str>) {
        if let Some(mut open) = self.files.pop(function) {
            let _ = open.file.flush();
        }
        let result = crate::rotation::shift(|n| self.path(function, n), self.settings.files);
        if let Err(e) = result {
            self.warn(&format!("cannot rotate the log of {function}: {e}"));
        }
    }

    fn flush_all(&mut self) {
        let mut failed = None;
        for (function, open) in self.files.iter_mut() {
            if let Err(e) = open.file.flush() {
                failed = Some(format!("cannot write the log of {function}: {e}"));
            }
        }
        if let Some(msg) = failed {
            self.warn(&msg);
        }
    }

    fn sweep(&mut self) {
        self.last_sweep = Some(Instant::now());
        let files = &mut self.files;
        let mut close = |function: &str| {
            if let Some(mut open) = files.pop(function) {
                let _ = open.file.flush();
            }
        };
        match retention::sweep(&self.settings, SystemTime::now(), &mut close) {
            Ok(swept) => {
                self.total = swept.kept_bytes;
                if swept.removed > 0 {
                    tracing::info!(
                        removed = swept.removed,
                        kept_mb = swept.kept_bytes >> 20,
                        "function logs: removed old files"
                    );
                }
            }
            Err(e) => {
                let msg = format!("cannot sweep {}: {e}", self.settings.root.display());
                self.warn(&msg);
            }
        }
    }

    /// Logs `msg` as a warning, at most once a minute.
    fn warn(&mut self, msg: &str) {
        if self
            .last_warning
            .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        self.last_warning = Some(Instant::now());
        tracing::warn!("function logs: {msg}");
    }
}
