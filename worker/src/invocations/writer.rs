//! The tables and counters of one write transaction, and every change the store makes
//! ([`Writer`]); [`Queue::write`](super::Queue) opens one per transaction.

use std::path::Path;

use redb::{ReadableTable, Table, WriteTransaction};

use super::policy::{expired, Next, RetryPolicy};
use super::record::{
    stored_result, Claimed, Condition, Counts, Finished, Invocation, InvocationId, NewEvent,
    Outcome, QueueLimits, Recovered, Rejected, Status,
};
use super::store::{
    bytes_of, load, read_counts, At, QueueError, BY_FUNCTION, COUNTERS, FINISHED, FUNCTIONS, IDS,
    META, PAYLOADS, READY, RECORDS, RESULTS, RUNNING, SWEEP_MAX,
};

/// The tables and counters of one write transaction.
pub(super) struct Writer<'t> {
    path: &'t Path,
    limits: &'t QueueLimits,
    records: Table<'t, u64, &'static str>,
    ids: Table<'t, &'static str, u64>,
    payloads: Table<'t, u64, &'static [u8]>,
    results: Table<'t, u64, &'static [u8]>,
    ready: Table<'t, (&'static str, u64, u64), ()>,
    functions: Table<'t, &'static str, u64>,
    running: Table<'t, u64, ()>,
    finished: Table<'t, (u64, u64), ()>,
    by_function: Table<'t, (&'static str, u64), ()>,
    meta: Table<'t, &'static str, u64>,
    counts: Counts,
    next_seq: u64,
    /// Something was enqueued or finished: the commit must be durable.
    pub(super) durable: bool,
}

impl<'t> Writer<'t> {
    pub(super) fn open(
        txn: &'t WriteTransaction,
        path: &'t Path,
        limits: &'t QueueLimits,
    ) -> Result<Self, QueueError> {
        let meta = txn.open_table(META).at(path)?;
        let (counts, next_seq) = read_counts(&meta, path)?;
        Ok(Self {
            path,
            limits,
            records: txn.open_table(RECORDS).at(path)?,
            ids: txn.open_table(IDS).at(path)?,
            payloads: txn.open_table(PAYLOADS).at(path)?,
            results: txn.open_table(RESULTS).at(path)?,
            ready: txn.open_table(READY).at(path)?,
            functions: txn.open_table(FUNCTIONS).at(path)?,
            running: txn.open_table(RUNNING).at(path)?,
            finished: txn.open_table(FINISHED).at(path)?,
            by_function: txn.open_table(BY_FUNCTION).at(path)?,
            meta,
            counts,
            next_seq,
            durable: false,
        })
    }

    pub(super) fn flush(&mut self) -> Result<(), QueueError> {
        let c = self.counts;
        let values = [
            c.queued,
            c.running,
            c.succeeded,
            c.failed,
            c.bytes,
            self.next_seq,
        ];
        for (key, value) in COUNTERS.into_iter().zip(values) {
            self.meta.insert(key, value).at(self.path)?;
        }
        Ok(())
    }

    pub(super) fn recover(&mut self, now_ms: u64) -> Result<Recovered, QueueError> {
        let mut seqs = Vec::new();
        for entry in self.running.iter().at(self.path)? {
            seqs.push(entry.at(self.path)?.0.value());
        }
        for &seq in &seqs {
            let mut inv = load(&self.records, seq, self.path)?;
            self.running.remove(seq).at(self.path)?;
            // The interrupted attempt is given back: neither charged nor a failure.
            inv.attempts = inv.attempts.saturating_sub(1);
            inv.not_before_ms = now_ms;
            self.mark_queued(&mut inv)?;
            self.put(&inv)?;
        }
        self.durable = !seqs.is_empty();
        Ok(Recovered {
            queued: self.counts.queued,
            requeued: seqs.len() as u64,
            finished: self.counts.finished(),
            compacted: false,
        })
    }

    pub(super) fn enqueue(
        &mut self,
        event: NewEvent,
        now_ms: u64,
    ) -> Result<Result<Invocation, Rejected>, QueueError> {
        self.enqueue_keeping(event, now_ms, None)
    }

    /// Enqueues `event`; finished records may be removed to make room, never `keep`.
    fn enqueue_keeping(
        &mut self,
        event: NewEvent,
        now_ms: u64,
        keep: Option<u64>,
    ) -> Result<Result<Invocation, Rejected>, QueueError> {
        if let Some(id) = &event.id {
            if let Some(seq) = self.ids.get(id.as_str()).at(self.path)? {
                let seq = seq.value();
                return Ok(Err(Rejected::Exists(Box::new(self.load_full(seq)?))));
            }
        }
        let bytes = event.payload.len();
        if bytes > self.limits.max_payload_bytes {
            return Ok(Err(Rejected::TooLarge {
                bytes,
                max: self.limits.max_payload_bytes,
            }));
        }
        if self.counts.unfinished() >= self.limits.max_events {
            return Ok(Err(Rejected::QueueFull {
                max: usize::try_from(self.limits.max_events).unwrap_or(usize::MAX),
            }));
        }
        self.trim_bytes(bytes as u64, keep)?;
        if self.counts.bytes + bytes as u64 > self.limits.max_bytes {
            return Ok(Err(Rejected::StoreFull {
                max_bytes: self.limits.max_bytes,
            }));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let inv = Invocation {
            id: event.id.unwrap_or_default(),
            seq,
            function: event.function.to_string(),
            request_id: event.request_id,
            payload: event.payload,
            payload_bytes: bytes,
            status: Status::Queued,
            attempts: 0,
            failures: 0,
            throttles: 0,
            created_ms: now_ms,
            not_before_ms: now_ms,
            started_ms: None,
            finished_ms: None,
            result: None,
            result_truncated: false,
            error: None,
            condition: None,
            source: event.source,
        };
        self.ids.insert(inv.id.as_str(), seq).at(self.path)?;
        self.payloads
            .insert(seq, inv.payload.as_slice())
            .at(self.path)?;
        self.by_function
            .insert((inv.function.as_str(), seq), ())
            .at(self.path)?;
        self.counts.bytes += bytes as u64;
        self.counts.queued += 1;
        self.insert_ready(&inv)?;
        self.put(&inv)?;
        self.durable = true;
        Ok(Ok(inv))
    }

    pub(super) fn claim(
        &mut self,
        now_ms: u64,
        max: usize,
        skip: &dyn Fn(&str) -> bool,
        policy: &dyn Fn(&str) -> RetryPolicy,
    ) -> Result<Claimed, QueueError> {
        let p = self.path;
        // The oldest `max` ready entries of each function not skipped, then the oldest of all.
        let mut candidates: Vec<(u64, u64, String)> = Vec::new();
        for entry in self.functions.iter().at(p)? {
            let (f, _) = entry.at(p)?;
            let f = f.value();
            if skip(f) {
                continue;
            }
            for key in self
                .ready
                .range((f, 0, 0)..=(f, now_ms, u64::MAX))
                .at(p)?
                .take(max)
            {
                let (_, nb, seq) = key.at(p)?.0.value();
                candidates.push((nb, seq, f.to_owned()));
            }
        }
        candidates.sort_unstable();
        candidates.truncate(max);
        let mut claimed = Claimed::default();
        for (nb, seq, function) in candidates {
            self.ready.remove((function.as_str(), nb, seq)).at(p)?;
            self.count_function(&function, -1)?;
            let mut inv = self.load_full(seq)?;
            self.counts.moved(Status::Queued, Status::Running);
            self.running.insert(seq, ()).at(p)?;
            inv.status = Status::Running;
            inv.attempts += 1;
            let is_expired = expired(&inv, &policy(&function), now_ms);
            if !is_expired {
                inv.started_ms = Some(now_ms);
            }
            self.put(&inv)?;
            if is_expired {
                claimed.expired.push(inv);
            } else {
                claimed.run.push(inv);
            }
        }
        Ok(claimed)
    }

    pub(super) fn finish(
        &mut self,
        id: &InvocationId,
        outcome: Outcome,
        also: Vec<NewEvent>,
        now_ms: u64,
    ) -> Result<Finished, QueueError> {
        let p = self.path;
        let Some(seq) = self.ids.get(id.as_str()).at(p)?.map(|g| g.value()) else {
            return Err(QueueError::NotFound {
                path: p.to_owned(),
                id: id.clone(),
            });
        };
        let mut inv = self.load_full(seq)?;
        if inv.status != Status::Running {
            return Err(QueueError::NotRunning {
                path: p.to_owned(),
                id: id.clone(),
                status: inv.status,
            });
        }
        // Nothing was written above: a per-request error leaves the transaction as it was.
        self.running.remove(seq).at(p)?;
        match outcome {
            Outcome::Succeeded { result } => {
                let (stored, truncated) = stored_result(result);
                self.results.insert(seq, stored.as_slice()).at(p)?;
                self.counts.bytes += stored.len() as u64;
                inv.result = Some(stored);
                inv.result_truncated = truncated;
                self.mark_finished(&mut inv, Status::Succeeded, None, now_ms)?;
            }
            Outcome::Failed { error, next } => {
                inv.failures += 1;
                inv.error = Some(error);
                self.after(&mut inv, next, now_ms)?;
            }
            Outcome::Throttled { error, next } => {
                inv.attempts = inv.attempts.saturating_sub(1);
                inv.throttles += 1;
                if matches!(next, Next::DeadLetter(_)) {
                    inv.error = Some(error);
                }
                self.after(&mut inv, next, now_ms)?;
            }
            Outcome::NotFound { error } => {
                inv.failures += 1;
                inv.error = Some(error);
                let c = Some(Condition::FunctionNotFound);
                self.mark_finished(&mut inv, Status::Failed, c, now_ms)?;
            }
            Outcome::Expired => {
                inv.attempts = inv.attempts.saturating_sub(1);
                let c = Some(Condition::EventAgeExceeded);
                self.mark_finished(&mut inv, Status::Failed, c, now_ms)?;
            }
        }
        self.put(&inv)?;
        self.durable = true;
        let also = also
            .into_iter()
            .map(|event| self.enqueue_keeping(event, now_ms, Some(seq)))
            .collect::<Result<_, _>>()?;
        while self.counts.finished() > self.limits.max_records {
            if !self.remove_oldest_finished(Some(seq))? {
                break;
            }
        }
        self.trim_bytes(0, Some(seq))?;
        Ok(Finished {
            invocation: inv,
            also,
        })
    }

    pub(super) fn sweep(&mut self, now_ms: u64) -> Result<usize, QueueError> {
        let retention = u64::try_from(self.limits.retention.as_millis()).unwrap_or(u64::MAX);
        let mut removed = 0;
        while removed < SWEEP_MAX {
            let Some((finished_ms, _)) = self.oldest_finished()? else {
                break;
            };
            let too_old = now_ms.saturating_sub(finished_ms) > retention;
            let too_many = self.counts.finished() > self.limits.max_records;
            let too_big = self.counts.bytes > self.limits.max_bytes;
            if !(too_old || too_many || too_big) || !self.remove_oldest_finished(None)? {
                break;
            }
            removed += 1;
        }
        Ok(removed)
    }

    /// A retry goes back to the queue, a dead letter is finished.
    fn after(&mut self, inv: &mut Invocation, next: Next, now_ms: u64) -> Result<(), QueueError> {
        match next {
            Next::Retry { at_ms } => {
                inv.not_before_ms = at_ms;
                self.mark_queued(inv)
            }
            Next::DeadLetter(c) => self.mark_finished(inv, Status::Failed, Some(c), now_ms),
        }
    }

    /// A record not in the running table any more goes to the ready table.
    fn mark_queued(&mut self, inv: &mut Invocation) -> Result<(), QueueError> {
        self.counts.moved(inv.status, Status::Queued);
        inv.status = Status::Queued;
        self.insert_ready(inv)
    }

    fn insert_ready(&mut self, inv: &Invocation) -> Result<(), QueueError> {
        let key = (inv.function.as_str(), inv.not_before_ms, inv.seq);
        self.ready.insert(key, ()).at(self.path)?;
        self.count_function(&inv.function, 1)
    }

    /// A record not in the running table any more goes to the finished table.
    fn mark_finished(
        &mut self,
        inv: &mut Invocation,
        status: Status,
        condition: Option<Condition>,
        now_ms: u64,
    ) -> Result<(), QueueError> {
        self.finished.insert((now_ms, inv.seq), ()).at(self.path)?;
        self.counts.moved(inv.status, status);
        inv.status = status;
        inv.condition = condition;
        inv.finished_ms = Some(now_ms);
        Ok(())
    }

    fn count_function(&mut self, function: &str, delta: i64) -> Result<(), QueueError> {
        let p = self.path;
        let n = self.functions.get(function).at(p)?.map_or(0, |g| g.value());
        let n = n.saturating_add_signed(delta);
        if n == 0 {
            self.functions.remove(function).at(p)?;
        } else {
            self.functions.insert(function, n).at(p)?;
        }
        Ok(())
    }

    /// Removes the oldest finished records while `extra` more bytes would be over
    /// `async_queue_mb`, never `keep`.
    fn trim_bytes(&mut self, extra: u64, keep: Option<u64>) -> Result<(), QueueError> {
        while self.counts.bytes.saturating_add(extra) > self.limits.max_bytes {
            if !self.remove_oldest_finished(keep)? {
                break;
            }
        }
        Ok(())
    }

    /// (finished_ms, seq) of the oldest finished record.
    fn oldest_finished(&self) -> Result<Option<(u64, u64)>, QueueError> {
        let first = self.finished.first().at(self.path)?;
        Ok(first.map(|(k, _)| k.value()))
    }

    /// Removes the oldest finished record unless it is `keep`; whether it removed one.
    fn remove_oldest_finished(&mut self, keep: Option<u64>) -> Result<bool, QueueError> {
        let p = self.path;
        let Some((finished_ms, seq)) = self.oldest_finished()? else {
            return Ok(false);
        };
        if Some(seq) == keep {
            return Ok(false);
        }
        let inv = load(&self.records, seq, p)?;
        let result_bytes = self
            .results
            .remove(seq)
            .at(p)?
            .map_or(0, |v| v.value().len());
        self.finished.remove((finished_ms, seq)).at(p)?;
        self.records.remove(seq).at(p)?;
        self.ids.remove(inv.id.as_str()).at(p)?;
        self.payloads.remove(seq).at(p)?;
        self.by_function
            .remove((inv.function.as_str(), seq))
            .at(p)?;
        let freed = (inv.payload_bytes + result_bytes) as u64;
        self.counts.bytes = self.counts.bytes.saturating_sub(freed);
        let n = self.counts.of(inv.status);
        *n = n.saturating_sub(1);
        Ok(true)
    }

    fn load_full(&self, seq: u64) -> Result<Invocation, QueueError> {
        let mut inv = load(&self.records, seq, self.path)?;
        inv.payload = bytes_of(&self.payloads, seq, self.path)?.unwrap_or_default();
        inv.result = bytes_of(&self.results, seq, self.path)?;
        Ok(inv)
    }

    /// Writes the record's metadata.
    fn put(&mut self, inv: &Invocation) -> Result<(), QueueError> {
        let json = serde_json::to_string(inv).map_err(|source| QueueError::Encode {
            path: self.path.to_owned(),
            id: inv.id.clone(),
            source,
        })?;
        self.records.insert(inv.seq, json.as_str()).at(self.path)?;
        Ok(())
    }
}
