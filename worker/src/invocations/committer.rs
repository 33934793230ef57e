//! Group commit: one thread owns the queue's write side and puts every request waiting for it in
//! one transaction, with one fsync.
//!
//! A durable commit costs an fsync (milliseconds). The [`Committer`]'s async methods only send a
//! request (with a `tokio::sync::oneshot` sender for its answer) into a bounded
//! `tokio::sync::mpsc` channel and await the answer; they never block the executor. When the
//! channel is full (`CHANNEL_CAP` requests), a sender waits for room rather than being refused:
//! the HTTP server's connection limit already bounds how many wait.
//!
//! The thread, in a loop: waits for a request; takes every other request already waiting, up to
//! `BATCH_MAX`; runs them in order in one write transaction ([`Queue::write`]); commits it,
//! durably if any of them enqueued or finished (claims and sweeps alone skip the fsync); and only
//! then answers each. A request's own error (finishing an unknown or not running invocation)
//! answers that request alone; any other error aborts the transaction and every request of the
//! group gets it ([`QueueError::Shared`]). It stops once every sender is gone and the channel is
//! drained ([`Committer::shutdown`], or drop).

use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use super::policy::RetryPolicy;
use super::record::{Claimed, Finished, Invocation, InvocationId, NewEvent, Outcome, Rejected};
use super::store::{Queue, QueueError};

/// Requests waiting at most in the channel.
const CHANNEL_CAP: usize = 4096;
/// Requests in one transaction at most.
const BATCH_MAX: usize = 1024;

type Skip = Box<dyn Fn(&str) -> bool + Send>;
type PolicyOf = Box<dyn Fn(&str) -> RetryPolicy + Send>;

enum Work {
    Enqueue(NewEvent),
    Finish {
        id: InvocationId,
        outcome: Outcome,
        also: Vec<NewEvent>,
    },
    Claim {
        now_ms: u64,
        max: usize,
        skip: Skip,
        policy: PolicyOf,
    },
    Sweep,
}

enum Reply {
    Enqueue(oneshot::Sender<Result<Result<Invocation, Rejected>, QueueError>>),
    Finish(oneshot::Sender<Result<Finished, QueueError>>),
    Claim(oneshot::Sender<Result<Claimed, QueueError>>),
    Sweep(oneshot::Sender<Result<usize, QueueError>>),
}

enum Answer {
    Enqueue(Result<Invocation, Rejected>),
    Finish(Result<Finished, QueueError>),
    Claim(Claimed),
    Sweep(usize),
}

/// The queue's write side, on a thread of its own, committing concurrent requests together.
///
/// Reads need no committer: use [`Committer::queue`]'s `get`, `list`, `counts` and
/// `next_ready_ms` (blocking, so through `spawn_blocking`).
#[derive(Debug)]
pub struct Committer {
    queue: Arc<Queue>,
    sender: Mutex<Option<mpsc::Sender<(Work, Reply)>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Committer {
    /// Starts the committer's thread on `queue`.
    pub fn start(queue: Arc<Queue>) -> Result<Committer, QueueError> {
        let (sender, receiver) = mpsc::channel(CHANNEL_CAP);
        let q = Arc::clone(&queue);
        let thread = std::thread::Builder::new()
            .name("queue-committer".to_owned())
            .spawn(move || run(&q, receiver))
            .map_err(|source| QueueError::Io {
                path: queue.path().to_owned(),
                source,
            })?;
        Ok(Committer {
            queue,
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The queue, for reads.
    pub fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }

    /// Enqueues one event; answers once it is durable (or rejected).
    pub async fn enqueue(
        &self,
        event: NewEvent,
    ) -> Result<Result<Invocation, Rejected>, QueueError> {
        let (tx, rx) = oneshot::channel();
        self.submit(Work::Enqueue(event), Reply::Enqueue(tx), rx)
            .await
    }

    /// [`Queue::finish`] through the committer: durable when it answers.
    pub async fn finish(
        &self,
        id: InvocationId,
        outcome: Outcome,
        also: Vec<NewEvent>,
    ) -> Result<Finished, QueueError> {
        let (tx, rx) = oneshot::channel();
        let work = Work::Finish { id, outcome, also };
        self.submit(work, Reply::Finish(tx), rx).await
    }

    /// [`Queue::claim`] through the committer (in a group with other requests; not fsync'd by
    /// itself).
    pub async fn claim(
        &self,
        now_ms: u64,
        max: usize,
        skip: impl Fn(&str) -> bool + Send + 'static,
        policy: impl Fn(&str) -> RetryPolicy + Send + 'static,
    ) -> Result<Claimed, QueueError> {
        let (tx, rx) = oneshot::channel();
        let work = Work::Claim {
            now_ms,
            max,
            skip: Box::new(skip),
            policy: Box::new(policy),
        };
        self.submit(work, Reply::Claim(tx), rx).await
    }

    /// [`Queue::sweep`] through the committer, at the current time.
    pub async fn sweep(&self) -> Result<usize, QueueError> {
        let (tx, rx) = oneshot::channel();
        self.submit(Work::Sweep, Reply::Sweep(tx), rx).await
    }

    /// Stops taking requests, lets the thread answer every request already submitted, and waits
    /// for it to end (on a blocking thread). Requests after it get [`QueueError::Stopped`].
    pub async fn shutdown(&self) {
        if let Some(thread) = self.close() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    /// Stops taking requests (the thread answers those submitted, then ends); the thread to
    /// wait for, the first time.
    fn close(&self) -> Option<JoinHandle<()>> {
        drop(
            self.sender
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        self.thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    async fn submit<T>(
        &self,
        work: Work,
        reply: Reply,
        answer: oneshot::Receiver<Result<T, QueueError>>,
    ) -> Result<T, QueueError> {
        let stopped = || QueueError::Stopped {
            path: self.queue.path().to_owned(),
        };
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(stopped)?;
        sender.send((work, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl Drop for Committer {
    /// Like [`Committer::shutdown`], but waits for the thread where it is dropped: from async
    /// code, call `shutdown().await` first.
    fn drop(&mut self) {
        if let Some(thread) = self.close() {
            let _ = thread.join();
        }
    }
}

/// The committer's thread.
fn run(queue: &Queue, mut receiver: mpsc::Receiver<(Work, Reply)>) {
    while let Some(first) = receiver.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX {
            match receiver.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        commit(queue, batch);
    }
}

/// Runs one group in one transaction and answers each request.
fn commit(queue: &Queue, batch: Vec<(Work, Reply)>) {
    let (works, replies): (Vec<Work>, Vec<Reply>) = batch.into_iter().unzip();
    let now_ms = super::now_ms();
    let answers = queue.write(|w| {
        let mut answers = Vec::with_capacity(works.len());
        for work in works {
            answers.push(match work {
                Work::Enqueue(event) => Answer::Enqueue(w.enqueue(event, now_ms)?),
                Work::Finish { id, outcome, also } => match w.finish(&id, outcome, also, now_ms) {
                    Err(e) if !e.is_per_request() => return Err(e),
                    finished => Answer::Finish(finished),
                },
                Work::Claim {
                    now_ms,
                    max,
                    skip,
                    policy,
                } => Answer::Claim(w.claim(now_ms, max, &skip, &policy)?),
                Work::Sweep => Answer::Sweep(w.sweep(now_ms)?),
            });
        }
        Ok(answers)
    });
    match answers {
        Ok(answers) => {
            for (reply, answer) in replies.into_iter().zip(answers) {
                // A caller that gave up waiting dropped its receiver: nothing to tell it.
                let _ = match (reply, answer) {
                    (Reply::Enqueue(tx), Answer::Enqueue(a)) => tx.send(Ok(a)).map_err(drop),
                    (Reply::Finish(tx), Answer::Finish(a)) => tx.send(a).map_err(drop),
                    (Reply::Claim(tx), Answer::Claim(a)) => tx.send(Ok(a)).map_err(drop),
                    (Reply::Sweep(tx), Answer::Sweep(a)) => tx.send(Ok(a)).map_err(drop),
                    // Each answer is made from its own request's work: a mismatch cannot happen,
                    // and would drop the sender (the caller gets `Stopped`).
                    _ => Ok(()),
                };
            }
        }
        Err(e) => {
            tracing::error!(
                "asynchronous queue: a group of {} requests failed: {e}",
                replies.len()
            );
            let e = Arc::new(e);
            fn shared<T>(e: &Arc<QueueError>) -> Result<T, QueueError> {
                Err(QueueError::Shared(Arc::clone(e)))
            }
            for reply in replies {
                let _ = match reply {
                    Reply::Enqueue(tx) => tx.send(shared(&e)).map_err(drop),
                    Reply::Finish(tx) => tx.send(shared(&e)).map_err(drop),
                    Reply::Claim(tx) => tx.send(shared(&e)).map_err(drop),
                    Reply::Sweep(tx) => tx.send(shared(&e)).map_err(drop),
                };
            }
        }
    }
}

#[cfg(test)]
#[path = "committer_tests.rs"]
mod tests;
