//! A lambda's gate: at most `max_concurrency` of its calls run at once; up to
//! `max_queue_per_lambda` more wait, in order; one more is refused at once (429).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// Why a call did not pass the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GateError {
    /// `max_concurrency` calls run and the queue is full.
    Full {
        max_concurrency: usize,
        queued: usize,
    },
    /// The worker is shutting down.
    Closed,
}

/// The slots of the current limit. A lambda whose `max_concurrency` changes gets new slots;
/// calls already waiting keep the old ones.
#[derive(Debug)]
struct Slots {
    size: usize,
    semaphore: Arc<Semaphore>,
}

/// One lambda's gate (see the module docs).
#[derive(Debug)]
pub(crate) struct Gate {
    slots: Mutex<Slots>,
    waiting: AtomicUsize,
}

impl Gate {
    pub(crate) fn new(size: usize) -> Self {
        Self {
            slots: Mutex::new(Slots {
                size,
                semaphore: Arc::new(Semaphore::new(size)),
            }),
            waiting: AtomicUsize::new(0),
        }
    }

    /// A slot: at once, or after waiting in the queue of at most `max_queue` calls.
    pub(crate) async fn enter(
        &self,
        max_concurrency: usize,
        max_queue: usize,
    ) -> Result<OwnedSemaphorePermit, GateError> {
        let semaphore = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            if slots.size != max_concurrency {
                *slots = Slots {
                    size: max_concurrency,
                    semaphore: Arc::new(Semaphore::new(max_concurrency)),
                };
            }
            Arc::clone(&slots.semaphore)
        };
        match Arc::clone(&semaphore).try_acquire_owned() {
            Ok(permit) => return Ok(permit),
            Err(TryAcquireError::Closed) => return Err(GateError::Closed),
            Err(TryAcquireError::NoPermits) => {}
        }
        let queued = self.waiting.fetch_add(1, Ordering::SeqCst);
        let result = if queued >= max_queue {
            Err(GateError::Full {
                max_concurrency,
                queued,
            })
        } else {
            semaphore
                .acquire_owned()
                .await
                .map_err(|_| GateError::Closed)
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// Calls waiting now.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Refuses every call from now on, waiting ones included (shutdown).
    pub(crate) fn close(&self) {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .semaphore
            .close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn at_most_max_concurrency_run_and_the_queue_is_bounded() {
        let gate = Arc::new(Gate::new(2));
        let a = gate.enter(2, 1).await.unwrap();
        let _b = gate.enter(2, 1).await.unwrap();
        // The third waits in the queue (of one) ...
        let g = Arc::clone(&gate);
        let third = tokio::spawn(async move { g.enter(2, 1).await });
        while gate.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        // ... and the fourth is refused, naming the limit and the queue.
        assert_eq!(
            gate.enter(2, 1).await.unwrap_err(),
            GateError::Full {
                max_concurrency: 2,
                queued: 1
            }
        );
        assert!(!third.is_finished());
        drop(a);
        let permit = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("the waiting call gets the freed slot")
            .unwrap();
        assert!(permit.is_ok());
        assert_eq!(gate.waiting(), 0);
    }

    #[tokio::test]
    async fn a_new_limit_takes_effect_for_new_calls() {
        let gate = Gate::new(1);
        let _one = gate.enter(1, 0).await.unwrap();
        assert!(matches!(
            gate.enter(1, 0).await,
            Err(GateError::Full { .. })
        ));
        // The lambda's max_concurrency went up to 3: new slots, the old call keeps its own.
        let _a = gate.enter(3, 0).await.unwrap();
        let _b = gate.enter(3, 0).await.unwrap();
        let _c = gate.enter(3, 0).await.unwrap();
        assert!(matches!(
            gate.enter(3, 0).await,
            Err(GateError::Full {
                max_concurrency: 3,
                queued: 0
            })
        ));
    }

    #[tokio::test]
    async fn closing_refuses_new_and_waiting_calls() {
        let gate = Arc::new(Gate::new(1));
        let _held = gate.enter(1, 4).await.unwrap();
        let g = Arc::clone(&gate);
        let waiting = tokio::spawn(async move { g.enter(1, 4).await });
        while gate.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        gate.close();
        assert_eq!(waiting.await.unwrap().unwrap_err(), GateError::Closed);
        assert_eq!(gate.enter(1, 4).await.unwrap_err(), GateError::Closed);
    }
}
