//! The retry policy of asynchronous events, as pure functions of a record and the time.
//!
//! AWS's rules: a failed event is retried `retry_attempts` times (0 to 2, default 2), the first
//! retry after `first_delay` (the config's `async_retry_delay_ms`, AWS one minute), each next one
//! twice as long; an event older than `max_event_age` (60 s to 6 h, default 6 h) is not started
//! again but dead-lettered with [`Condition::EventAgeExceeded`]. An attempt that could not start
//! because the function or the worker was busy (429/503) is not a failure: it is put back after
//! [`THROTTLE_FIRST_DELAY`] (100 ms), doubling with each throttle of the same event up to
//! [`THROTTLE_MAX_DELAY`] (5 s), still within the maximum age.
//!
//! The dispatcher asks [`after_failure`] or [`after_throttle`] what comes next and hands the
//! answer to the store ([`super::Outcome`]), so that it can queue the right destination record in
//! the same transaction.

use std::time::Duration;

use super::record::{Condition, Invocation};

/// First delay of a throttled event.
pub const THROTTLE_FIRST_DELAY: Duration = Duration::from_millis(100);
/// Longest delay of a throttled event.
pub const THROTTLE_MAX_DELAY: Duration = Duration::from_secs(5);
/// Most retries of a failed event (AWS's `MaximumRetryAttempts`).
pub const MAX_RETRY_ATTEMPTS: u32 = 2;
/// Shortest and longest `max_event_age` (AWS's `MaximumEventAgeInSeconds`).
pub const MIN_EVENT_AGE: Duration = Duration::from_secs(60);
pub const MAX_EVENT_AGE: Duration = Duration::from_secs(6 * 3600);

/// How one function's failed events are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first failed attempt, `0..=MAX_RETRY_ATTEMPTS`.
    pub retry_attempts: u32,
    /// The oldest an event may be when an attempt starts, `MIN_EVENT_AGE..=MAX_EVENT_AGE`.
    pub max_event_age: Duration,
    /// Wait before the first retry; retry `n` waits `first_delay * 2^(n-1)`.
    pub first_delay: Duration,
}

/// A retry policy out of its ranges.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("retry attempts must be 0 to {MAX_RETRY_ATTEMPTS}, not {0}")]
    RetryAttempts(u32),
    #[error("the maximum event age must be {min} to {max} seconds, not {0:?}", min = MIN_EVENT_AGE.as_secs(), max = MAX_EVENT_AGE.as_secs())]
    EventAge(Duration),
}

impl RetryPolicy {
    /// A policy, its values checked against AWS's ranges.
    pub fn new(
        retry_attempts: u32,
        max_event_age: Duration,
        first_delay: Duration,
    ) -> Result<Self, PolicyError> {
        if retry_attempts > MAX_RETRY_ATTEMPTS {
            return Err(PolicyError::RetryAttempts(retry_attempts));
        }
        if !(MIN_EVENT_AGE..=MAX_EVENT_AGE).contains(&max_event_age) {
            return Err(PolicyError::EventAge(max_event_age));
        }
        Ok(Self {
            retry_attempts,
            max_event_age,
            first_delay,
        })
    }

    /// AWS's default: two retries, six hours, the first retry after `first_delay`.
    pub fn aws_default(first_delay: Duration) -> Self {
        Self {
            retry_attempts: MAX_RETRY_ATTEMPTS,
            max_event_age: MAX_EVENT_AGE,
            first_delay,
        }
    }

    /// The last moment an attempt of an event created at `created_ms` may start.
    pub fn deadline_ms(&self, created_ms: u64) -> u64 {
        created_ms.saturating_add(millis(self.max_event_age))
    }
}

/// What becomes of an event after an attempt that did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Queue it again; the next attempt starts at `at_ms` at the earliest.
    Retry { at_ms: u64 },
    /// Dead-letter it.
    DeadLetter(Condition),
}

/// What follows a failed attempt of `inv`, the record as `claim` returned it: the failing attempt
/// is not yet in `inv.failures`; this counts it, as `finish` will.
///
/// With `failures` counted so: more than `retry_attempts` → [`Condition::RetriesExhausted`]
/// (so `retry_attempts + 1` attempts in all); else a retry after
/// `first_delay * 2^(failures - 1)`, unless that is after the event's deadline
/// ([`RetryPolicy::deadline_ms`]) → [`Condition::EventAgeExceeded`].
pub fn after_failure(inv: &Invocation, policy: &RetryPolicy, now_ms: u64) -> Next {
    let failures = inv.failures.saturating_add(1);
    if failures > policy.retry_attempts {
        return Next::DeadLetter(Condition::RetriesExhausted);
    }
    let delay = millis(policy.first_delay).saturating_mul(pow2(failures - 1));
    retry_before_deadline(inv, policy, now_ms.saturating_add(delay))
}

/// What follows an attempt of `inv` that could not start because the function or the worker was
/// busy: a retry after `100 ms * 2^throttles` (at most 5 s), `throttles` being the event's
/// throttles before this one, unless that is after the deadline → [`Condition::EventAgeExceeded`].
pub fn after_throttle(inv: &Invocation, policy: &RetryPolicy, now_ms: u64) -> Next {
    let delay = millis(THROTTLE_FIRST_DELAY)
        .saturating_mul(pow2(inv.throttles))
        .min(millis(THROTTLE_MAX_DELAY));
    retry_before_deadline(inv, policy, now_ms.saturating_add(delay))
}

/// Whether `inv` is too old to start now: more than `max_event_age` since it was created. Such an
/// event is dead-lettered with [`Condition::EventAgeExceeded`] instead of run.
pub fn expired(inv: &Invocation, policy: &RetryPolicy, now_ms: u64) -> bool {
    now_ms > policy.deadline_ms(inv.created_ms)
}

fn retry_before_deadline(inv: &Invocation, policy: &RetryPolicy, at_ms: u64) -> Next {
    if at_ms > policy.deadline_ms(inv.created_ms) {
        Next::DeadLetter(Condition::EventAgeExceeded)
    } else {
        Next::Retry { at_ms }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn pow2(n: u32) -> u64 {
    1u64.checked_shl(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invocations::record::{InvocationId, Status};

    const MIN: u64 = 60_000;

    fn inv(created_ms: u64, failures: u32, throttles: u32) -> Invocation {
        Invocation {
            id: InvocationId::new(),
            seq: 1,
            function: "f".to_owned(),
            request_id: "r".to_owned(),
            payload: Vec::new(),
            payload_bytes: 0,
            status: Status::Running,
            attempts: failures + 1,
            failures,
            throttles,
            created_ms,
            not_before_ms: created_ms,
            started_ms: None,
            finished_ms: None,
            result: None,
            result_truncated: false,
            error: None,
            condition: None,
            source: None,
        }
    }

    fn policy(retries: u32, age_s: u64) -> RetryPolicy {
        RetryPolicy::new(
            retries,
            Duration::from_secs(age_s),
            Duration::from_millis(MIN),
        )
        .unwrap()
    }

    #[test]
    fn ranges_are_aws_ones() {
        let d = Duration::from_secs(1);
        assert!(RetryPolicy::new(0, MIN_EVENT_AGE, d).is_ok());
        assert!(RetryPolicy::new(2, MAX_EVENT_AGE, d).is_ok());
        assert_eq!(
            RetryPolicy::new(3, MAX_EVENT_AGE, d),
            Err(PolicyError::RetryAttempts(3))
        );
        let young = Duration::from_secs(59);
        assert_eq!(
            RetryPolicy::new(2, young, d),
            Err(PolicyError::EventAge(young))
        );
        let old = MAX_EVENT_AGE + Duration::from_secs(1);
        assert_eq!(RetryPolicy::new(2, old, d), Err(PolicyError::EventAge(old)));
        let p = RetryPolicy::aws_default(d);
        assert_eq!((p.retry_attempts, p.max_event_age), (2, MAX_EVENT_AGE));
    }

    #[test]
    fn failures_retry_after_one_then_two_delays_then_end() {
        let p = policy(2, 6 * 3600);
        let now = 1_000_000;
        let first = inv(now, 0, 0);
        assert_eq!(
            after_failure(&first, &p, now),
            Next::Retry { at_ms: now + MIN }
        );
        let second = inv(now, 1, 0);
        assert_eq!(
            after_failure(&second, &p, now + MIN),
            Next::Retry {
                at_ms: now + 3 * MIN
            }
        );
        let third = inv(now, 2, 0);
        assert_eq!(
            after_failure(&third, &p, now + 3 * MIN),
            Next::DeadLetter(Condition::RetriesExhausted)
        );
    }

    #[test]
    fn zero_retries_dead_letters_the_first_failure() {
        let p = policy(0, 6 * 3600);
        assert_eq!(
            after_failure(&inv(0, 0, 0), &p, 10),
            Next::DeadLetter(Condition::RetriesExhausted)
        );
        let p1 = policy(1, 6 * 3600);
        assert_eq!(
            after_failure(&inv(0, 0, 0), &p1, 10),
            Next::Retry { at_ms: 10 + MIN }
        );
        assert_eq!(
            after_failure(&inv(0, 1, 0), &p1, 10),
            Next::DeadLetter(Condition::RetriesExhausted)
        );
    }

    #[test]
    fn a_retry_past_the_max_age_is_a_dead_letter() {
        // 60 s of age: a retry 60 s after a failure at creation lands exactly on the deadline
        // (allowed); one millisecond later it does not.
        let p = policy(2, 60);
        let created = 5_000;
        assert_eq!(
            after_failure(&inv(created, 0, 0), &p, created),
            Next::Retry {
                at_ms: created + MIN
            }
        );
        assert_eq!(
            after_failure(&inv(created, 0, 0), &p, created + 1),
            Next::DeadLetter(Condition::EventAgeExceeded)
        );
        // Exhaustion wins over age when both apply.
        assert_eq!(
            after_failure(&inv(created, 2, 0), &p, created + 10 * MIN),
            Next::DeadLetter(Condition::RetriesExhausted)
        );
    }

    #[test]
    fn expiry_is_strictly_after_the_max_age() {
        let p = policy(2, 60);
        let e = inv(1_000, 0, 0);
        assert!(!expired(&e, &p, 1_000));
        assert!(!expired(&e, &p, 1_000 + MIN));
        assert!(expired(&e, &p, 1_000 + MIN + 1));
        assert!(
            !expired(&e, &p, 0),
            "a clock that went back is not an expiry"
        );
        assert_eq!(p.deadline_ms(u64::MAX - 1), u64::MAX);
    }

    #[test]
    fn throttles_double_from_100_ms_to_5_s() {
        let p = policy(2, 6 * 3600);
        let delays: Vec<u64> = (0..10)
            .map(|t| match after_throttle(&inv(0, 0, t), &p, 1_000) {
                Next::Retry { at_ms } => at_ms - 1_000,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000]
        );
        assert_eq!(
            after_throttle(&inv(0, 0, 1000), &p, 1_000),
            Next::Retry { at_ms: 6_000 }
        );
    }

    #[test]
    fn a_throttle_past_the_max_age_is_a_dead_letter() {
        let p = policy(2, 60);
        assert_eq!(
            after_throttle(&inv(0, 0, 0), &p, MIN - 100),
            Next::Retry { at_ms: MIN }
        );
        assert_eq!(
            after_throttle(&inv(0, 0, 0), &p, MIN - 99),
            Next::DeadLetter(Condition::EventAgeExceeded)
        );
    }

    #[test]
    fn huge_values_saturate() {
        let p = RetryPolicy {
            retry_attempts: u32::MAX,
            max_event_age: Duration::MAX,
            first_delay: Duration::MAX,
        };
        assert_eq!(
            after_failure(&inv(0, 100, 0), &p, 1),
            Next::Retry { at_ms: u64::MAX }
        );
        assert!(!expired(&inv(0, 0, 0), &p, u64::MAX));
    }
}
