//! The redb store of asynchronous invocations: [`Queue`], a blocking API.
//!
//! Every write runs in one redb write transaction ([`Queue::write`], which the
//! [`Committer`](super::Committer) also uses to put many requests in one); the tables and
//! counters it touches are those of a [`Writer`](super::writer::Writer).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::policy::RetryPolicy;
use super::record::{
    Claimed, Counts, Cursor, Finished, Invocation, InvocationId, ListFilter, NewEvent, Outcome,
    QueueLimits, Recovered, Rejected, Status,
};
use super::writer::Writer;

/// The database file's name in [`Config::invocations_dir`](crate::config::Config::invocations_dir).
pub const DB_FILE: &str = "queue.redb";
/// Most records one [`Queue::list`] page holds.
pub const LIST_MAX: usize = 1000;
/// Most index entries one [`Queue::list`] call looks at (a page with a status filter may end
/// early, with a cursor, rather than scan the whole store).
pub const LIST_SCAN: usize = 10_000;
/// Most records one [`Queue::sweep`] removes; it returns this many while more are due.
pub const SWEEP_MAX: usize = 10_000;
/// redb's page cache (its default is 1 GiB).
const CACHE_BYTES: usize = 64 * 1024 * 1024;
/// A file at least this big holding under a quarter of its size in data is compacted on open.
const COMPACT_MIN_FILE: u64 = 16 * 1024 * 1024;

/// seq → the record's metadata (JSON of [`Invocation`] without payload and result).
pub(super) const RECORDS: TableDefinition<u64, &str> = TableDefinition::new("records");
/// id → seq.
pub(super) const IDS: TableDefinition<&str, u64> = TableDefinition::new("ids");
/// seq → the payload, exactly as given.
pub(super) const PAYLOADS: TableDefinition<u64, &[u8]> = TableDefinition::new("payloads");
/// seq → the stored result of a success.
pub(super) const RESULTS: TableDefinition<u64, &[u8]> = TableDefinition::new("results");
/// (function, not_before_ms, seq) of every queued record.
pub(super) const READY: TableDefinition<(&str, u64, u64), ()> = TableDefinition::new("ready");
/// function → how many of its records are queued (no entry: none).
pub(super) const FUNCTIONS: TableDefinition<&str, u64> = TableDefinition::new("functions");
/// seq of every running record.
pub(super) const RUNNING: TableDefinition<u64, ()> = TableDefinition::new("running");
/// (finished_ms, seq) of every finished record.
pub(super) const FINISHED: TableDefinition<(u64, u64), ()> = TableDefinition::new("finished");
/// (function, seq) of every record.
pub(super) const BY_FUNCTION: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("by_function");
/// Counters ([`Counts`], and the next seq).
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Errors of the store. Each names the database file, and the invocation where there is one.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error("cannot compact {path}: {source}")]
    Compact {
        path: PathBuf,
        source: redb::CompactionError,
    },
    #[error("{path}: {source}")]
    Db { path: PathBuf, source: redb::Error },
    #[error("{path}: record {seq} is unreadable: {source}")]
    Corrupt {
        path: PathBuf,
        seq: u64,
        source: serde_json::Error,
    },
    #[error("{path}: record {seq} lacks its {what}")]
    Missing {
        path: PathBuf,
        seq: u64,
        what: &'static str,
    },
    #[error("{path}: cannot encode invocation {id}: {source}")]
    Encode {
        path: PathBuf,
        id: InvocationId,
        source: serde_json::Error,
    },
    #[error("{path}: no invocation {id}")]
    NotFound { path: PathBuf, id: InvocationId },
    #[error("{path}: invocation {id} is {status}, not running")]
    NotRunning {
        path: PathBuf,
        id: InvocationId,
        status: Status,
    },
    #[error("the committer of {path} has stopped")]
    Stopped { path: PathBuf },
    /// The transaction of a whole group of requests failed; every request of it gets this.
    #[error("{0}")]
    Shared(Arc<QueueError>),
}

impl QueueError {
    /// Errors about one request that leave its transaction untouched, so that the other requests
    /// of a group still commit.
    pub(super) fn is_per_request(&self) -> bool {
        matches!(
            self,
            QueueError::NotFound { .. } | QueueError::NotRunning { .. }
        )
    }
}

pub(super) trait At<T> {
    fn at(self, path: &Path) -> Result<T, QueueError>;
}

impl<T, E: Into<redb::Error>> At<T> for Result<T, E> {
    fn at(self, path: &Path) -> Result<T, QueueError> {
        self.map_err(|e| QueueError::Db {
            path: path.to_owned(),
            source: e.into(),
        })
    }
}

/// The durable store of asynchronous invocations: one redb file, `queue.redb`.
///
/// Blocking: call it from a plain thread, `spawn_blocking`, or through a
/// [`Committer`](super::Committer). Reads (`get`, `list`, `counts`, `next_ready_ms`) run in read
/// transactions, from any thread at once, beside the one writer.
#[derive(Debug)]
pub struct Queue {
    db: Database,
    path: PathBuf,
    limits: QueueLimits,
    commits: AtomicU64,
}

impl Queue {
    /// Opens (or creates) `<dir>/queue.redb`, in this order: creates `dir`; opens the file (redb
    /// rolls an interrupted commit back to the last durable one, and repairs its allocator after
    /// a crash); creates missing tables; puts every running record back in the queue, to start
    /// now (its interrupted attempt is not a failure); then compacts the file if it is at least
    /// 16 MiB and the data it holds (keys, values and tree metadata, as redb's `stats` counts
    /// them) is under a quarter of it. redb reuses freed pages, so only a store that shrank a
    /// lot (a backlog drained and swept) leaves a file that much larger than its data.
    pub fn open(dir: &Path, limits: QueueLimits) -> Result<(Queue, Recovered), QueueError> {
        std::fs::create_dir_all(dir).map_err(|source| QueueError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(DB_FILE);
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|source| QueueError::Open {
                path: path.clone(),
                source,
            })?;
        let mut queue = Queue {
            db,
            path,
            limits,
            commits: AtomicU64::new(0),
        };
        let now = super::now_ms();
        let mut recovered = queue.write(|w| w.recover(now))?;
        recovered.compacted = queue.compact_if_sparse()?;
        Ok((queue, recovered))
    }

    fn compact_if_sparse(&mut self) -> Result<bool, QueueError> {
        let file_len = std::fs::metadata(&self.path)
            .map_err(|source| QueueError::Io {
                path: self.path.clone(),
                source,
            })?
            .len();
        if file_len < COMPACT_MIN_FILE {
            return Ok(false);
        }
        let txn = self.db.begin_write().at(&self.path)?;
        let stats = txn.stats().at(&self.path)?;
        txn.abort().at(&self.path)?;
        // Pages freed by the last transactions may still count as allocated: measure the data.
        let live = stats.stored_bytes() + stats.metadata_bytes();
        if live >= file_len / 4 {
            return Ok(false);
        }
        self.db.compact().map_err(|source| QueueError::Compact {
            path: self.path.clone(),
            source,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The limits it was opened with.
    pub fn limits(&self) -> &QueueLimits {
        &self.limits
    }

    /// Durable (fsync'd) commits since it was opened.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Enqueues `events` in one transaction, committed durably before it returns: each is
    /// enqueued or [`Rejected`] (an existing id answers its record).
    pub fn enqueue(
        &self,
        events: Vec<NewEvent>,
        now_ms: u64,
    ) -> Result<Vec<Result<Invocation, Rejected>>, QueueError> {
        self.write(|w| {
            events
                .into_iter()
                .map(|event| w.enqueue(event, now_ms))
                .collect()
        })
    }

    /// Takes up to `max` ready events (`not_before_ms <= now_ms`), oldest first by
    /// (`not_before_ms`, `seq`), of functions for which `skip` is false, and marks them running.
    /// Those older than `policy(function)` allows come back in [`Claimed::expired`] instead of
    /// [`Claimed::run`]; `max` bounds both together.
    ///
    /// Committed without an fsync (`Durability::None`): the next durable commit persists it; if
    /// the worker dies first, the events are simply still queued (at-least-once).
    pub fn claim(
        &self,
        now_ms: u64,
        max: usize,
        skip: impl Fn(&str) -> bool,
        policy: impl Fn(&str) -> RetryPolicy,
    ) -> Result<Claimed, QueueError> {
        self.write(|w| w.claim(now_ms, max, &skip, &policy))
    }

    /// Records how a running invocation's attempt ended and enqueues `also` (its destination
    /// records) in the same transaction, committed durably. Then removes the oldest finished
    /// records beyond `invocation_records_max` or `async_queue_mb`, never this one.
    pub fn finish(
        &self,
        id: &InvocationId,
        outcome: Outcome,
        also: Vec<NewEvent>,
        now_ms: u64,
    ) -> Result<Finished, QueueError> {
        self.write(|w| w.finish(id, outcome, also, now_ms))
    }

    /// Removes finished records: those finished more than `invocation_retention_s` ago, then the
    /// oldest beyond `invocation_records_max`, then the oldest while over `async_queue_mb`; at
    /// most [`SWEEP_MAX`]. Never a queued or running record. Not fsync'd (a sweep lost in a crash
    /// is done again). Returns how many it removed.
    pub fn sweep(&self, now_ms: u64) -> Result<usize, QueueError> {
        self.write(|w| w.sweep(now_ms))
    }

    /// One invocation, with its payload and result.
    pub fn get(&self, id: &InvocationId) -> Result<Option<Invocation>, QueueError> {
        let p = &self.path;
        let txn = self.db.begin_read().at(p)?;
        let Some(seq) = txn.open_table(IDS).at(p)?.get(id.as_str()).at(p)? else {
            return Ok(None);
        };
        let seq = seq.value();
        let mut inv = load(&txn.open_table(RECORDS).at(p)?, seq, p)?;
        inv.payload = bytes_of(&txn.open_table(PAYLOADS).at(p)?, seq, p)?.unwrap_or_default();
        inv.result = bytes_of(&txn.open_table(RESULTS).at(p)?, seq, p)?;
        Ok(Some(inv))
    }

    /// Records newest first (by enqueue order), with results but without payloads (`payload`
    /// empty; `payload_bytes` says its size). Returns a cursor for the next page while there may
    /// be more; a page looks at no more than [`LIST_SCAN`] records, so with a status filter it
    /// may hold fewer than `limit`, and still have a cursor.
    pub fn list(
        &self,
        filter: &ListFilter,
    ) -> Result<(Vec<Invocation>, Option<Cursor>), QueueError> {
        let p = &self.path;
        let txn = self.db.begin_read().at(p)?;
        let records = txn.open_table(RECORDS).at(p)?;
        let results = txn.open_table(RESULTS).at(p)?;
        let limit = if filter.limit == 0 {
            LIST_MAX
        } else {
            filter.limit.min(LIST_MAX)
        };
        let before = filter.after.map_or(u64::MAX, |c| c.0);
        let seqs: Box<dyn Iterator<Item = Result<u64, redb::StorageError>>> = match &filter.function
        {
            Some(f) => Box::new(
                txn.open_table(BY_FUNCTION)
                    .at(p)?
                    .range((f.as_str(), 0)..(f.as_str(), before))
                    .at(p)?
                    .rev()
                    .map(|e| e.map(|(k, _)| k.value().1)),
            ),
            None => Box::new(
                records
                    .range(0..before)
                    .at(p)?
                    .rev()
                    .map(|e| e.map(|(k, _)| k.value())),
            ),
        };
        let mut page = Vec::new();
        for (scanned, seq) in seqs.enumerate() {
            let seq = seq.at(p)?;
            if scanned == LIST_SCAN {
                return Ok((page, Some(Cursor(seq + 1))));
            }
            let mut inv = load(&records, seq, p)?;
            if filter.status.is_some_and(|s| s != inv.status) {
                continue;
            }
            inv.result = bytes_of(&results, seq, p)?;
            page.push(inv);
            if page.len() == limit {
                return Ok((page, Some(Cursor(seq))));
            }
        }
        Ok((page, None))
    }

    /// The counters, kept in the metadata table by every transaction (no scan).
    pub fn counts(&self) -> Result<Counts, QueueError> {
        let p = &self.path;
        let txn = self.db.begin_read().at(p)?;
        Ok(read_counts(&txn.open_table(META).at(p)?, p)?.0)
    }

    /// When the earliest queued event becomes ready (`None`: nothing is queued); looks at the
    /// first entry of each function with queued events.
    pub fn next_ready_ms(&self) -> Result<Option<u64>, QueueError> {
        let p = &self.path;
        let txn = self.db.begin_read().at(p)?;
        let functions = txn.open_table(FUNCTIONS).at(p)?;
        let ready = txn.open_table(READY).at(p)?;
        let mut next: Option<u64> = None;
        for entry in functions.iter().at(p)? {
            let (f, _) = entry.at(p)?;
            let f = f.value();
            if let Some(first) = ready
                .range((f, 0, 0)..=(f, u64::MAX, u64::MAX))
                .at(p)?
                .next()
            {
                let at = first.at(p)?.0.value().1;
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        Ok(next)
    }

    /// Runs `f` in one write transaction and commits it: durably (fsync) if `f` enqueued or
    /// finished anything, else with `Durability::None`. An error from `f` aborts it all.
    pub(super) fn write<R>(
        &self,
        f: impl FnOnce(&mut Writer<'_>) -> Result<R, QueueError>,
    ) -> Result<R, QueueError> {
        let p = &self.path;
        let mut txn = self.db.begin_write().at(p)?;
        let (result, durable) = {
            let mut w = Writer::open(&txn, p, &self.limits)?;
            let result = f(&mut w)?;
            w.flush()?;
            (result, w.durable)
        };
        if !durable {
            txn.set_durability(Durability::None).at(p)?;
        }
        txn.commit().at(p)?;
        if durable {
            self.commits.fetch_add(1, Ordering::Relaxed);
        }
        Ok(result)
    }
}

pub(super) fn load(
    records: &impl ReadableTable<u64, &'static str>,
    seq: u64,
    path: &Path,
) -> Result<Invocation, QueueError> {
    let json = records.get(seq).at(path)?.ok_or(QueueError::Missing {
        path: path.to_owned(),
        seq,
        what: "record",
    })?;
    serde_json::from_str(json.value()).map_err(|source| QueueError::Corrupt {
        path: path.to_owned(),
        seq,
        source,
    })
}

pub(super) fn bytes_of(
    table: &impl ReadableTable<u64, &'static [u8]>,
    seq: u64,
    path: &Path,
) -> Result<Option<Vec<u8>>, QueueError> {
    Ok(table.get(seq).at(path)?.map(|v| v.value().to_vec()))
}

pub(super) const COUNTERS: [&str; 6] = [
    "queued",
    "running",
    "succeeded",
    "failed",
    "bytes",
    "next_seq",
];

/// The counters and the next seq.
pub(super) fn read_counts(
    meta: &impl ReadableTable<&'static str, u64>,
    path: &Path,
) -> Result<(Counts, u64), QueueError> {
    let mut v = [0u64; 6];
    for (slot, key) in v.iter_mut().zip(COUNTERS) {
        *slot = meta.get(key).at(path)?.map_or(0, |g| g.value());
    }
    let counts = Counts {
        queued: v[0],
        running: v[1],
        succeeded: v[2],
        failed: v[3],
        bytes: v[4],
    };
    Ok((counts, v[5].max(1)))
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "store_bounds_tests.rs"]
mod bounds_tests;
