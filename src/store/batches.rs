//! Requests served in batches by one worker at a time: the store's writer
//! ([`super::writer`]), its start reader ([`super::starts`]) and the request
//! path's lookups ([`ask`]: an account's access state, a device, a subject's
//! first activity).
//!
//! A caller queues its request and waits for its answer. The caller that
//! finds no worker at work claims the queue and starts one (a task of its
//! own, so that the batch is served even if that caller stops waiting). The
//! worker takes what waits, up to its batch size, answers each, and takes
//! again until nothing waits; then it gives the claim up. A request queued
//! between the worker's last take and its release saw a worker at work and
//! started none, so the worker looks once more after releasing, and takes
//! that request on unless another caller claimed the queue meanwhile.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::oneshot;

/// A queued request and the way back of its answer.
pub(crate) type Waiting<T, R> = (T, oneshot::Sender<R>);

/// Requests of type `T` answered with `R`, waiting for a worker.
pub(crate) struct Batches<T, R> {
    waiting: Mutex<Vec<Waiting<T, R>>>,
    /// Whether a worker holds the claim.
    busy: AtomicBool,
    /// Requests taken in one batch at most.
    max: usize,
    /// Batches taken so far (tests check what went together).
    taken: AtomicU64,
}

impl<T, R> Batches<T, R> {
    /// An empty queue whose batches take `max` requests at most.
    pub(crate) fn new(max: usize) -> Self {
        Batches {
            waiting: Mutex::new(Vec::new()),
            busy: AtomicBool::new(false),
            max,
            taken: AtomicU64::new(0),
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<Waiting<T, R>>> {
        // A panic while the lock was held left the list whole (each use
        // below is one push or one drain).
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `request`. Returns where its answer comes, and whether the
    /// caller claimed the queue (it must then start a worker).
    pub(crate) fn push(&self, request: T) -> (oneshot::Receiver<R>, bool) {
        let (tx, rx) = oneshot::channel();
        self.waiting().push((request, tx));
        (rx, self.claim())
    }

    /// Claims the queue unless a worker holds it.
    fn claim(&self) -> bool {
        !self.busy.swap(true, Ordering::AcqRel)
    }

    /// The next batch for the worker that holds the claim, oldest first;
    /// `None` once nothing waits, the claim then given up.
    pub(crate) fn next_batch(&self) -> Option<Vec<Waiting<T, R>>> {
        loop {
            {
                let mut waiting = self.waiting();
                if !waiting.is_empty() {
                    let n = waiting.len().min(self.max);
                    self.taken.fetch_add(1, Ordering::AcqRel);
                    return Some(waiting.drain(..n).collect());
                }
            }
            self.busy.store(false, Ordering::Release);
            // Queued after the take but before the release: take it on,
            // unless another caller claimed the queue meanwhile.
            if self.waiting().is_empty() || !self.claim() {
                return None;
            }
        }
    }

    /// Gives up the claim of a worker that ends early: every request still
    /// queued is dropped unanswered (its caller learns that the worker
    /// stopped), and the next request claims the queue anew.
    pub(crate) fn abandon(&self) {
        drop(std::mem::take(&mut *self.waiting()));
        self.busy.store(false, Ordering::Release);
    }

    /// How many requests wait now.
    pub(crate) fn len(&self) -> usize {
        self.waiting().len()
    }

    /// How many batches workers have taken so far.
    pub(crate) fn taken(&self) -> u64 {
        self.taken.load(Ordering::Acquire)
    }

    /// Whether a worker holds the claim now.
    pub(crate) fn busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }
}

/// A worker's claim on its queue, given up if the worker's task ends early
/// (its runtime stopped, or it panicked, mid-batch): the requests still
/// queued are dropped unanswered (their callers learn that the worker
/// stopped), and the next request claims the queue anew. Without it the
/// queue would stay claimed by no one, and nothing queued would ever be
/// served again.
pub(crate) struct Claim<'a, T, R> {
    queue: &'a Batches<T, R>,
    released: bool,
}

impl<'a, T, R> Claim<'a, T, R> {
    /// The claim of the worker just started on `queue`.
    pub(crate) fn new(queue: &'a Batches<T, R>) -> Self {
        Claim {
            queue,
            released: false,
        }
    }

    /// The queue gave the claim up itself ([`Batches::next_batch`] returned
    /// `None`): nothing is left to abandon.
    pub(crate) fn released(mut self) {
        self.released = true;
    }
}

impl<T, R> Drop for Claim<'_, T, R> {
    fn drop(&mut self) {
        if !self.released {
            self.queue.abandon();
        }
    }
}

/// Asks `request` of the queue `queue(owner)` and waits for its answer,
/// served together with the requests queued meanwhile: `serve` answers a
/// batch, one answer per request in its order, or fails it whole, and then
/// each of its callers gets the error's text. The caller that finds no
/// worker at work starts one (a task of its own, holding a clone of
/// `owner`); a request alone is served at once.
pub(crate) async fn ask<S, T, V, E, Fut>(
    owner: &S,
    queue: fn(&S) -> &Batches<T, Result<V, String>>,
    request: T,
    serve: fn(S, Vec<T>) -> Fut,
) -> Result<V, String>
where
    S: Clone + Send + Sync + 'static,
    T: Send + 'static,
    V: Send + 'static,
    E: std::fmt::Display,
    Fut: Future<Output = Result<Vec<V>, E>> + Send + 'static,
{
    let (rx, claimed) = queue(owner).push(request);
    if claimed {
        let owner = owner.clone();
        tokio::spawn(async move {
            let q = queue(&owner);
            let claim = Claim::new(q);
            while let Some(batch) = q.next_batch() {
                let (requests, callers): (Vec<T>, Vec<_>) = batch.into_iter().unzip();
                match serve(owner.clone(), requests).await {
                    Ok(answers) => {
                        debug_assert_eq!(answers.len(), callers.len(), "one answer per request");
                        for (tx, answer) in callers.into_iter().zip(answers) {
                            let _ = tx.send(Ok(answer));
                        }
                    }
                    Err(e) => {
                        let why = e.to_string();
                        for tx in callers {
                            let _ = tx.send(Err(why.clone()));
                        }
                    }
                }
            }
            claim.released();
        });
    }
    rx.await
        .unwrap_or_else(|_| Err("the worker stopped before answering".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_caller_claims_and_batches_take_at_most_max_in_order() {
        let q: Batches<u32, u32> = Batches::new(2);
        let (_a, first) = q.push(1);
        let (_b, second) = q.push(2);
        let (_c, third) = q.push(3);
        assert!(first && !second && !third, "one claim while it is held");
        let batch: Vec<u32> = q.next_batch().unwrap().into_iter().map(|w| w.0).collect();
        assert_eq!(batch, [1, 2]);
        assert!(q.busy());
        let batch: Vec<u32> = q.next_batch().unwrap().into_iter().map(|w| w.0).collect();
        assert_eq!(batch, [3]);
        assert!(q.next_batch().is_none());
        assert!(!q.busy(), "released once nothing waits");
        let (_d, claimed) = q.push(4);
        assert!(claimed, "the next caller claims again");
    }

    #[test]
    fn answers_reach_their_callers() {
        let q: Batches<u32, u32> = Batches::new(8);
        let (a, _) = q.push(20);
        let (b, _) = q.push(21);
        for (request, tx) in q.next_batch().unwrap() {
            tx.send(request * 2).unwrap();
        }
        assert_eq!(a.blocking_recv().unwrap(), 40);
        assert_eq!(b.blocking_recv().unwrap(), 42);
    }

    #[test]
    fn an_abandoned_queue_drops_its_callers_and_can_be_claimed_again() {
        let q: Batches<u32, u32> = Batches::new(8);
        let (a, claimed) = q.push(1);
        assert!(claimed);
        q.abandon();
        assert!(a.blocking_recv().is_err(), "its sender is gone");
        assert_eq!(q.len(), 0);
        let (_b, claimed) = q.push(2);
        assert!(claimed);
    }
}
