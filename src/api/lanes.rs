//! Device pushes, one lane per device (issue 15, item 4).
//!
//! A device stream stores one push at a time. When a device has several
//! pushes in flight at this node (a gateway forwarding a backlog, a device
//! retrying after a slow answer), the ones that arrive while the stream is
//! storing the previous one wait in the device's lane, and go together as
//! one [`PushMany`] once it answers: the stream judges them one after
//! another exactly as if they came one by one, journals their samples as one
//! entry (one durable write instead of one each, the other request ids kept
//! as that entry's aliases) and answers each.
//!
//! A lone push (the common case: a device waits for its answer) goes as it
//! is, without a task or a channel. Coalescing costs no added wait: the batch
//! window is the time the previous push took to store.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::oneshot;
use tracing::Instrument;

use super::access::Deps;
use super::ask::ask;
use super::error::ApiError;
use crate::actors::device::stream::{Push, PushError, PushMany, PushResult};

/// Pushes of one coalesced batch at most.
pub const MAX_PUSHES: usize = 64;

/// Samples of one coalesced batch at most (a single push may hold this
/// many): a batch takes pushes in order while they fit, and always one.
pub const MAX_SAMPLES: usize = 5_000;

/// What the stream answered a push, or why it could not be asked.
pub type PushAnswer = Result<Result<PushResult, PushError>, ApiError>;

/// A waiting push, its answer's way back, and the span of its request: a
/// batch's ask runs in the span of its first push, so that the batch's
/// delivery and handling continue that request's trace.
type Waiting = (Push, oneshot::Sender<PushAnswer>, tracing::Span);

/// The node's device lanes: a device is in the map while a push of it is
/// being stored; its value holds the pushes that wait for that one.
#[derive(Default)]
pub struct PushLanes {
    lanes: DashMap<String, Vec<Waiting>>,
}

impl PushLanes {
    /// Pushes `push` to `device`'s stream, with the pushes of that device
    /// that wait meanwhile.
    pub(crate) async fn push(self: &Arc<Self>, d: &Deps, device: &str, push: Push) -> PushAnswer {
        let rx = match self.lanes.entry(device.to_owned()) {
            dashmap::Entry::Occupied(mut lane) => {
                let (tx, rx) = oneshot::channel();
                lane.get_mut().push((push, tx, tracing::Span::current()));
                rx
            }
            dashmap::Entry::Vacant(lane) => {
                lane.insert(Vec::new());
                return self.lead(d, device, push).await;
            }
        };
        // The lane's task answers every push it took; a sender dropped
        // unanswered means that task ended early (the node stops).
        rx.await
            .unwrap_or_else(|_| Err(ApiError::unavailable("device.push: samples not stored")))
    }

    /// Asks the stream with the lane's first push: whatever this ends with
    /// (an answer, or the request dropped), the pushes that queued behind
    /// it go on.
    async fn lead(self: &Arc<Self>, d: &Deps, device: &str, push: Push) -> PushAnswer {
        let _lead = Lead {
            lanes: self,
            deps: d,
            device,
        };
        ask(d, device, &push).await
    }

    /// Stores the pushes waiting in `device`'s lane, batch after batch,
    /// until none waits; then the lane is gone.
    async fn drain(self: Arc<Self>, d: Deps, device: String) {
        loop {
            let batch = {
                let Some(mut lane) = self.lanes.get_mut(&device) else {
                    return;
                };
                let take = fitting(&lane);
                lane.drain(..take).collect::<Vec<_>>()
            };
            if batch.is_empty() {
                // Nothing waits: the lane closes, unless a push came meanwhile.
                if self
                    .lanes
                    .remove_if(&device, |_, waiting| waiting.is_empty())
                    .is_some()
                {
                    return;
                }
                continue;
            }
            let span = batch[0].2.clone();
            let (pushes, senders): (Vec<Push>, Vec<_>) =
                batch.into_iter().map(|(push, tx, _)| (push, tx)).unzip();
            if pushes.len() == 1 {
                let push = pushes.into_iter().next().expect("one push");
                let answer = ask(&d, &device, &push).instrument(span).await;
                let _ = senders.into_iter().next().expect("one sender").send(answer);
                continue;
            }
            crate::metrics::pushes_coalesced(pushes.len());
            let many = PushMany { pushes };
            match ask(&d, &device, &many).instrument(span).await {
                Ok(answers) if answers.len() == senders.len() => {
                    for (tx, answer) in senders.into_iter().zip(answers) {
                        let _ = tx.send(Ok(answer));
                    }
                }
                Ok(_) => {
                    tracing::error!("device.push_many: answers do not match the pushes");
                    for tx in senders {
                        let _ = tx.send(Err(ApiError::unavailable(
                            "device.push: samples not stored",
                        )));
                    }
                }
                Err(e) => {
                    for tx in senders {
                        let _ = tx.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

/// How many of the pushes waiting in a lane the next batch takes: in order,
/// while they fit [`MAX_PUSHES`] and [`MAX_SAMPLES`], and at least one.
fn fitting(waiting: &[Waiting]) -> usize {
    let mut samples = 0;
    let mut take = 0;
    for (push, _, _) in waiting.iter().take(MAX_PUSHES) {
        samples += push.samples.len();
        if take > 0 && samples > MAX_SAMPLES {
            break;
        }
        take += 1;
    }
    take
}

/// The lead push of a lane: once it is answered or dropped, the lane's
/// waiting pushes go on in a task of their own (a dropped request must not
/// strand them), or the lane closes if none waits.
struct Lead<'a> {
    lanes: &'a Arc<PushLanes>,
    deps: &'a Deps,
    device: &'a str,
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        let closed = self
            .lanes
            .lanes
            .remove_if(self.device, |_, waiting| waiting.is_empty());
        if closed.is_none() {
            let lanes = Arc::clone(self.lanes);
            let (deps, device) = (self.deps.clone(), self.device.to_owned());
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn(lanes.drain(deps, device))),
                // The runtime is going (the node stops): the waiting pushes'
                // senders drop, and each is answered `UNAVAILABLE`.
                Err(_) => drop(lanes.lanes.remove(&device)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::device::sample::Sample;

    fn waiting(samples: usize) -> Waiting {
        let push = Push {
            request_id: "r".into(),
            samples: vec![
                Sample::HeartRate {
                    at_ms: 0,
                    bpm: 60.0
                };
                samples
            ],
            audit: None,
        };
        (push, oneshot::channel().0, tracing::Span::none())
    }

    #[test]
    fn a_batch_takes_pushes_in_order_while_they_fit_and_at_least_one() {
        let lane: Vec<Waiting> = [10, 20, 30].into_iter().map(waiting).collect();
        assert_eq!(fitting(&lane), 3);
        let lane: Vec<Waiting> = [4_000, 1_000, 1].into_iter().map(waiting).collect();
        assert_eq!(fitting(&lane), 2, "5,000 samples fit, one more does not");
        let lane: Vec<Waiting> = [6_000, 1].into_iter().map(waiting).collect();
        assert_eq!(fitting(&lane), 1, "an oversized push still goes, alone");
        let lane: Vec<Waiting> = (0..100).map(|_| waiting(1)).collect();
        assert_eq!(fitting(&lane), MAX_PUSHES);
        assert_eq!(fitting(&[]), 0);
    }
}
