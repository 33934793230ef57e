//! The asynchronous queue of one worker: events are acknowledged once durable
//! ([`AsyncQueue::submit`]) and run by a dispatcher beside the HTTP server, through the same
//! manager, sandboxes and limits as synchronous calls.
//!
//! The dispatcher, in order, while the worker runs:
//! 1. wait for one of `async_concurrency` slots (worker-wide: the rest of the CPUs and
//!    sandboxes stay with synchronous calls);
//! 2. claim the oldest ready events (at most as many as there are free slots, a few more to
//!    save transactions); events older than their function's `max_event_age_s` are
//!    dead-lettered instead;
//! 3. run each through [`crate::manager::Manager::invoke`] with
//!    [`Admission::FreeSlot`]: it takes one of the lambda's `max_concurrency` slots only when
//!    one is free and no synchronous call waits for it, so an event never waits in front of a
//!    synchronous call;
//! 4. record the outcome durably: success (its result kept), a failed attempt (retried after
//!    `async_retry_delay_ms`, then twice that, up to `retry_attempts`, else dead-lettered
//!    with the last error), throttled (put back, not counted), unknown function (dead-lettered).
//!    A destination (`on_success`, `on_failure`) gets AWS's record as a new event, queued in
//!    the same transaction;
//! 5. with nothing ready, sleep until the next event is due, a new event arrives, or a slot
//!    frees.
//!
//! Every minute (and at start) finished records past `invocation_retention_s` or beyond
//! `invocation_records_max` are removed. Shutdown ([`AsyncQueue::shutdown`]) stops taking
//! events, lets running ones finish under the deadline, and leaves the rest queued.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use super::outcome::{self, Failure};
use super::rfc3339_ms;
use crate::aws::arn::{Arns, LATEST};
use crate::aws::AwsError;
use crate::config::Config;
use crate::invocations::{
    policy, Committer, ErrorInfo, Invocation, NewEvent, Outcome, Queue, QueueError, QueueLimits,
    Rejected, RetryPolicy,
};
use crate::lambda_config::EventConfig;
use crate::manager::{Admission, InvokeOptions, RunError};
use crate::name::LambdaName;
use crate::runtime_client::RequestId;
use crate::WorkerManager;

/// Events claimed beyond the free slots, to save transactions.
const CLAIM_EXTRA: usize = 32;
/// Longest sleep of an idle dispatcher (new events and freed slots wake it sooner).
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// How often finished records are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Functions whose event settings are remembered (from their last lookup or call).
const EVENT_CONFIGS: usize = 4096;

/// Why the queue cannot be opened or started.
#[derive(Debug, thiserror::Error)]
pub enum AsyncQueueError {
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Why an event was not queued.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the asynchronous queue is full ({0})")]
    Rejected(Rejected),
    #[error("{0}")]
    Function(AwsError),
    #[error("the worker is shutting down and takes no new events")]
    ShuttingDown,
    #[error("cannot queue the event: {0}")]
    Store(#[from] QueueError),
}

impl SubmitError {
    /// The HTTP status of `/runLambda/<name>?async=1`'s answer.
    pub fn status(&self) -> StatusCode {
        self.aws().status
    }

    /// A short kind for `/runLambda`'s `{"error": ...}`.
    pub fn kind(&self) -> &'static str {
        match self {
            SubmitError::Rejected(Rejected::TooLarge { .. }) => "body too large",
            SubmitError::Rejected(_) => "queue full",
            SubmitError::Function(e) if e.status == StatusCode::NOT_FOUND => "unknown lambda",
            SubmitError::Function(_) => "lambda unavailable",
            SubmitError::ShuttingDown => "unavailable",
            SubmitError::Store(_) => "internal",
        }
    }

    /// The Invoke API's answer.
    pub fn aws(&self) -> AwsError {
        match self {
            SubmitError::Rejected(r @ Rejected::TooLarge { .. }) => AwsError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestTooLargeException",
                r.to_string(),
            ),
            SubmitError::Rejected(r) => AwsError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequestsException",
                format!("Rate Exceeded. {r}"),
            ),
            SubmitError::Function(e) => e.clone(),
            SubmitError::ShuttingDown => AwsError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceException",
                self.to_string(),
            ),
            SubmitError::Store(e) => AwsError::service(e.to_string()),
        }
    }
}

impl From<SubmitError> for AwsError {
    fn from(e: SubmitError) -> Self {
        e.aws()
    }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The asynchronous queue and its dispatcher (see the module docs).
#[derive(Debug)]
pub struct AsyncQueue {
    queue: Arc<Queue>,
    committer: Committer,
    manager: Arc<WorkerManager>,
    arns: Arns,
    first_delay: Duration,
    slots: Arc<Semaphore>,
    wake: Notify,
    closing: AtomicBool,
    /// Event settings by function, from their last lookup or call (bounded).
    configs: Mutex<HashMap<LambdaName, EventConfig>>,
    running: tokio::sync::Mutex<JoinSet<()>>,
}

impl AsyncQueue {
    /// Opens (recovering) the queue in `cfg.invocations_dir()`. Blocking.
    pub fn open(
        cfg: &Config,
        manager: Arc<WorkerManager>,
        arns: Arns,
    ) -> Result<Arc<Self>, AsyncQueueError> {
        let limits = QueueLimits::from_config(cfg);
        let (queue, recovered) = Queue::open(&cfg.invocations_dir(), limits)?;
        tracing::info!(?recovered, dir = %cfg.invocations_dir().display(), "asynchronous queue open");
        let queue = Arc::new(queue);
        let committer = Committer::start(Arc::clone(&queue))?;
        Ok(Arc::new(Self {
            queue,
            committer,
            manager,
            arns,
            first_delay: Duration::from_millis(cfg.async_retry_delay_ms),
            slots: Arc::new(Semaphore::new(cfg.async_slots())),
            wake: Notify::new(),
            closing: AtomicBool::new(false),
            configs: Mutex::new(HashMap::new()),
            running: tokio::sync::Mutex::new(JoinSet::new()),
        }))
    }

    /// The store, for reads (records, counts).
    pub fn store(&self) -> &Arc<Queue> {
        &self.queue
    }

    fn remember(&self, name: &LambdaName, events: EventConfig) {
        let mut map = self.configs.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= EVENT_CONFIGS && !map.contains_key(name) {
            map.clear();
        }
        map.insert(name.clone(), events);
    }

    /// The event settings last seen for `function`.
    fn known_events(&self, function: &str) -> Option<EventConfig> {
        let name = LambdaName::parse(function).ok()?;
        self.configs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&name)
            .cloned()
    }

    /// The retry policy of `events` with this worker's first delay.
    fn retry_policy(&self, events: &EventConfig) -> RetryPolicy {
        RetryPolicy {
            retry_attempts: events.retry_attempts,
            max_event_age: Duration::from_secs(events.max_event_age_s),
            first_delay: self.first_delay,
        }
    }

    fn policy_of(&self, function: &str) -> RetryPolicy {
        self.retry_policy(&self.known_events(function).unwrap_or_default())
    }

    /// Queues an event of `function` durably (after checking the function exists, as AWS
    /// does); the record once it is on disk.
    pub async fn submit(
        &self,
        function: &LambdaName,
        payload: Bytes,
        request_id: &RequestId,
    ) -> Result<Invocation, SubmitError> {
        if self.closing.load(Ordering::SeqCst) {
            return Err(SubmitError::ShuttingDown);
        }
        match self.manager.check_function(function).await {
            Ok(events) => self.remember(function, events),
            Err(e) => {
                let arn = self.arns.function(function);
                let aws = match outcome::classify(&e, &arn, request_id) {
                    Failure::Function(f) => AwsError::invalid(f.message),
                    other => match other.aws_error() {
                        Some(e) => e.clone(),
                        None => AwsError::service(e.to_string()),
                    },
                };
                return Err(SubmitError::Function(aws));
            }
        }
        let event = NewEvent {
            function: function.clone(),
            payload: payload.to_vec(),
            request_id: request_id.to_string(),
            id: None,
            source: None,
        };
        let record = match self.committer.enqueue(event).await {
            Ok(queued) => queued.map_err(SubmitError::Rejected)?,
            // Shutdown stopped the committer after this call passed the closing check.
            Err(QueueError::Stopped { .. }) => return Err(SubmitError::ShuttingDown),
            Err(e) => return Err(e.into()),
        };
        self.wake.notify_one();
        Ok(record)
    }

    /// [`AsyncQueue::submit`] for `/runLambda/<name>?async=1`.
    pub async fn submit_run(
        &self,
        function: &LambdaName,
        payload: Bytes,
        request_id: &RequestId,
    ) -> Result<Invocation, crate::error::ApiError> {
        Ok(self.submit(function, payload, request_id).await?)
    }

    /// Runs the dispatcher until `stop` turns true (see the module docs).
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut last_sweep: Option<std::time::Instant> = None;
        loop {
            if *stop.borrow() || self.closing.load(Ordering::SeqCst) {
                break;
            }
            if last_sweep.is_none_or(|t| t.elapsed() >= SWEEP_EVERY) {
                last_sweep = Some(std::time::Instant::now());
                match self.committer.sweep().await {
                    Ok(n) if n > 0 => tracing::info!(removed = n, "removed old invocation records"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot sweep invocation records"),
                }
            }
            // 1.
            let permit = tokio::select! {
                p = Arc::clone(&self.slots).acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = stop.changed() => break,
            };
            // 2.
            let free = self.slots.available_permits() + 1;
            let claimed = self.claim(free + CLAIM_EXTRA).await;
            if claimed.is_empty() {
                drop(permit);
                // 5.
                let wait = self.next_wait().await;
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.wake.notified() => {}
                    _ = stop.changed() => break,
                }
                continue;
            }
            // 3-4: the first with the slot held, each further one when a slot frees.
            let mut permit = Some(permit);
            let mut claimed = claimed.into_iter();
            let mut running = self.running.lock().await;
            for inv in claimed.by_ref() {
                let slot = match permit.take() {
                    Some(p) => p,
                    None => tokio::select! {
                        p = Arc::clone(&self.slots).acquire_owned() => match p {
                            Ok(p) => p,
                            Err(_) => {
                                self.put_back(inv).await;
                                break;
                            }
                        },
                        _ = stop.changed() => {
                            self.put_back(inv).await;
                            break;
                        }
                    },
                };
                let this = Arc::clone(&self);
                running.spawn(async move {
                    this.attempt(inv, slot).await;
                });
                // Reap finished attempts so the set stays small.
                while running.try_join_next().is_some() {}
            }
            drop(running);
            // Claimed but not started (shutdown): queued again, not counted.
            for inv in claimed {
                self.put_back(inv).await;
            }
        }
    }

    /// Returns a claimed event that did not start to the queue, its attempt not counted.
    async fn put_back(&self, inv: Invocation) {
        let outcome = Outcome::Throttled {
            error: ErrorInfo {
                error_type: "ServiceException".to_owned(),
                message: "the worker shut down before the attempt started".to_owned(),
            },
            next: policy::Next::Retry { at_ms: now_ms() },
        };
        if let Err(e) = self
            .committer
            .finish(inv.id.clone(), outcome, Vec::new())
            .await
        {
            tracing::warn!(invocation = %inv.id, error = %e, "cannot put an unstarted event back; the next start queues it again");
        }
    }

    /// Claims up to `max` ready events; those past their maximum age are dead-lettered here.
    async fn claim(self: &Arc<Self>, max: usize) -> Vec<Invocation> {
        let this = Arc::clone(self);
        let claimed = self
            .committer
            .claim(now_ms(), max, |_| false, move |f| this.policy_of(f))
            .await;
        match claimed {
            Ok(claimed) => {
                for inv in claimed.expired {
                    let also = self.expired_destination(&inv);
                    if let Err(e) = self
                        .committer
                        .finish(inv.id.clone(), Outcome::Expired, also)
                        .await
                    {
                        tracing::warn!(invocation = %inv.id, error = %e, "cannot dead-letter an expired event");
                    }
                }
                claimed.run
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim queued events");
                tokio::time::sleep(IDLE_WAIT).await;
                Vec::new()
            }
        }
    }

    /// The `on_failure` record of an event that expired in the queue.
    fn expired_destination(&self, inv: &Invocation) -> Vec<NewEvent> {
        let events = self.known_events(&inv.function);
        let kind = inv.error.as_ref().map(|e| e.error_type.clone());
        events
            .and_then(|e| e.on_failure)
            .map(|dest| self.destination(&dest, inv, "EventAgeExceeded", kind.as_deref(), None))
            .into_iter()
            .collect()
    }

    /// How long to sleep with nothing ready: until the next event is due, at most
    /// [`IDLE_WAIT`].
    async fn next_wait(&self) -> Duration {
        let queue = Arc::clone(&self.queue);
        let next = tokio::task::spawn_blocking(move || queue.next_ready_ms())
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        match next {
            Some(at) => Duration::from_millis(at.saturating_sub(now_ms())).min(IDLE_WAIT),
            None => IDLE_WAIT,
        }
    }

    /// Step 3 and 4 for one event.
    async fn attempt(&self, inv: Invocation, slot: tokio::sync::OwnedSemaphorePermit) {
        let id = inv.id.clone();
        let request_id = RequestId::given(&inv.request_id).unwrap_or_default();
        let (outcome, also) = match LambdaName::parse(&inv.function) {
            Err(reason) => (
                Outcome::NotFound {
                    error: ErrorInfo {
                        error_type: "ResourceNotFoundException".to_owned(),
                        message: format!("invalid function name {:?}: {reason}", inv.function),
                    },
                },
                Vec::new(),
            ),
            Ok(name) => {
                let options = InvokeOptions {
                    admission: Admission::FreeSlot,
                    tail: false,
                };
                let invoked = self
                    .manager
                    .invoke(
                        &name,
                        Bytes::from(inv.payload.clone()),
                        &request_id,
                        options,
                    )
                    .await;
                drop(slot);
                self.wake.notify_one();
                if let Some(events) = invoked.events.clone() {
                    self.remember(&name, events);
                }
                self.decide(&inv, &name, &request_id, invoked.result, invoked.events)
            }
        };
        if let Err(e) = self.committer.finish(id.clone(), outcome, also).await {
            // The event stays running on disk: recovery at the next start queues it again.
            tracing::error!(invocation = %id, error = %e, "cannot record the outcome of an event");
        }
    }

    /// What became of one attempt, and the destination records to queue with it.
    fn decide(
        &self,
        inv: &Invocation,
        name: &LambdaName,
        request_id: &RequestId,
        result: Result<Bytes, RunError>,
        events: Option<EventConfig>,
    ) -> (Outcome, Vec<NewEvent>) {
        let now = now_ms();
        let events = events.unwrap_or_default();
        let policy = self.retry_policy(&events);
        match result {
            Ok(body) => {
                let also = events
                    .on_success
                    .as_ref()
                    .map(|dest| self.destination(dest, inv, "Success", None, Some(&body)))
                    .into_iter()
                    .collect();
                (
                    Outcome::Succeeded {
                        result: body.to_vec(),
                    },
                    also,
                )
            }
            Err(e) => {
                let arn = self.arns.function(name);
                let error = match outcome::classify(&e, &arn, request_id) {
                    Failure::Busy(aws) | Failure::Platform(aws) => {
                        let next = policy::after_throttle(inv, &policy, now);
                        let mut also = Vec::new();
                        if let (policy::Next::DeadLetter(condition), Some(dest)) =
                            (&next, &events.on_failure)
                        {
                            also.push(self.destination(dest, inv, condition.as_str(), None, None));
                        }
                        let error = ErrorInfo {
                            error_type: aws.code.to_owned(),
                            message: aws.message,
                        };
                        return (Outcome::Throttled { error, next }, also);
                    }
                    Failure::NotFound(aws) => {
                        return (
                            Outcome::NotFound {
                                error: ErrorInfo {
                                    error_type: aws.code.to_owned(),
                                    message: aws.message,
                                },
                            },
                            Vec::new(),
                        );
                    }
                    Failure::Function(f) => (f.error_type.clone(), f.message.clone(), Some(f)),
                    Failure::Request(aws) => (aws.code.to_owned(), aws.message, None),
                };
                let (error_type, message, function_error) = error;
                let next = policy::after_failure(inv, &policy, now);
                let mut also = Vec::new();
                if let (policy::Next::DeadLetter(condition), Some(dest)) =
                    (&next, &events.on_failure)
                {
                    let payload = function_error
                        .as_ref()
                        .map(|f| Bytes::from(f.payload(request_id)));
                    also.push(self.destination(
                        dest,
                        inv,
                        condition.as_str(),
                        Some(&error_type),
                        payload.as_ref(),
                    ));
                }
                (
                    Outcome::Failed {
                        error: ErrorInfo {
                            error_type,
                            message,
                        },
                        next,
                    },
                    also,
                )
            }
        }
    }

    /// AWS's destination record of an outcome, as an event of `dest`.
    fn destination(
        &self,
        dest: &LambdaName,
        inv: &Invocation,
        condition: &str,
        function_error: Option<&str>,
        response: Option<&Bytes>,
    ) -> NewEvent {
        let response_payload: Value = response
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null);
        let request_payload: Value = serde_json::from_slice(&inv.payload).unwrap_or(Value::Null);
        let function = self
            .arns
            .function(&LambdaName::parse(&inv.function).unwrap_or_else(|_| dest.clone()));
        let mut response_context = json!({"statusCode": 200, "executedVersion": LATEST});
        if let Some(kind) = function_error {
            response_context["functionError"] = Value::from(kind_of(kind));
        }
        let record = json!({
            "version": "1.0",
            "timestamp": rfc3339_ms(now_ms()),
            "requestContext": {
                "requestId": inv.request_id,
                "functionArn": format!("{function}:{LATEST}"),
                "condition": condition,
                "approximateInvokeCount": inv.attempts,
            },
            "requestPayload": request_payload,
            "responseContext": response_context,
            "responsePayload": response_payload,
        });
        NewEvent {
            function: dest.clone(),
            payload: serde_json::to_vec(&record).unwrap_or_default(),
            request_id: RequestId::new().to_string(),
            id: None,
            source: Some(inv.id.clone()),
        }
    }

    /// Stops taking events and lets running attempts finish under `deadline`; what has not
    /// run stays queued (an attempt still running at the deadline is queued again at the next
    /// start).
    pub async fn shutdown(&self, deadline: Duration) {
        self.closing.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
        let mut running = self.running.lock().await;
        let drain = async { while running.join_next().await.is_some() {} };
        if tokio::time::timeout(deadline, drain).await.is_err() {
            tracing::warn!(
                "asynchronous events still running at the shutdown deadline stay queued"
            );
        }
        self.committer.shutdown().await;
    }
}

/// `functionError` of a destination record: AWS's `Unhandled` for any function error.
fn kind_of(_error_type: &str) -> &'static str {
    "Unhandled"
}
