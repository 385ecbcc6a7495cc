//! `memory://`: the in-process bus, cardio's embedded default.
//!
//! Same contract as the broker-backed bus (see the module docs of `bus`):
//! shard queues, topic fan-out, acknowledgements, redelivery of what was not
//! acknowledged, a delivery limit with a dead-letter queue, bounded prefetch and
//! bounded queues. It is not durable: a process restart empties it, which is
//! right for a single node whose actors persist their own effects before they
//! are acknowledged.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;

use super::topic::{check_topic, matches, parse_pattern};
use super::{
    Acker, Bus, BusError, BusOptions, DeadLetterInfo, Delivery, DeliveryInfo, Envelope, Nacked,
    Sealed, Source, Subscription,
};
use crate::address::shard_of;

/// Name of the dead-letter queue.
pub const DEAD_LETTER_QUEUE: &str = "cardio.dead-letters";

/// See the module docs.
pub struct MemoryBus {
    options: BusOptions,
    shards: Vec<Arc<Queue>>,
    dead_letters: Arc<Queue>,
    bindings: Mutex<Vec<Binding>>,
    next_subscription: AtomicUsize,
}

struct Binding {
    pattern: Vec<String>,
    queue: Weak<Queue>,
}

struct Queue {
    name: String,
    state: Mutex<QueueState>,
    /// Wakes consumers on new messages and on freed prefetch slots.
    notify: Notify,
    delivery_limit: u32,
    max_len: usize,
    /// Where messages past the delivery limit go; `None` for the DLQ itself.
    dead_letters: Option<Arc<Queue>>,
}

#[derive(Default)]
struct QueueState {
    /// Sorted by `seq`: requeued messages go back to their place.
    ready: VecDeque<Stored>,
    unacked: HashMap<u64, Stored>,
    next_tag: u64,
    next_seq: u64,
    closed: bool,
}

#[derive(Clone)]
struct Stored {
    /// Arrival order in this queue.
    seq: u64,
    body: Bytes,
    deliveries: u32,
    /// Deliveries that ended in a failure (nack): what the limit counts.
    failures: u32,
    dead_letter: Option<DeadLetterInfo>,
}

impl Queue {
    fn new(name: String, options: &BusOptions, dead_letters: Option<Arc<Queue>>) -> Arc<Self> {
        Arc::new(Self {
            name,
            state: Mutex::new(QueueState::default()),
            notify: Notify::new(),
            delivery_limit: if dead_letters.is_some() {
                options.delivery_limit.max(1)
            } else {
                u32::MAX
            },
            max_len: options.max_queue_len,
            dead_letters,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, stored: Stored) -> Result<(), BusError> {
        {
            let mut st = self.lock();
            if st.closed {
                return Err(BusError::Closed);
            }
            if st.ready.len() + st.unacked.len() >= self.max_len {
                return Err(BusError::QueueFull(self.name.clone()));
            }
            let mut stored = stored;
            stored.seq = st.next_seq;
            st.next_seq += 1;
            st.ready.push_back(stored);
        }
        self.notify.notify_waiters();
        Ok(())
    }

    /// Takes `tag` out of the unacknowledged set.
    fn settle(&self, tag: u64) -> Option<Stored> {
        self.lock().unacked.remove(&tag)
    }

    /// Puts a message back in its place, or past `delivery_limit` failures
    /// (counting this one if `failed`) sets it aside.
    fn requeue_or_bury(&self, mut stored: Stored, reason: &str, failed: bool) -> Nacked {
        stored.failures += u32::from(failed);
        if stored.failures >= self.delivery_limit {
            if let Some(dlq) = &self.dead_letters {
                stored.dead_letter = Some(DeadLetterInfo {
                    reason: format!(
                        "delivery limit {} reached; last failure: {reason}",
                        self.delivery_limit
                    ),
                    from_queue: self.name.clone(),
                    deliveries: stored.deliveries,
                });
                dlq.bury(stored);
                return Nacked::DeadLettered;
            }
        }
        let mut st = self.lock();
        let at = st.ready.partition_point(|m| m.seq < stored.seq);
        st.ready.insert(at, stored);
        Nacked::Requeued
    }

    /// Appends to this (dead-letter) queue regardless of its bound: nothing that
    /// failed is thrown away.
    fn bury(&self, mut stored: Stored) {
        stored.deliveries = 0;
        {
            let mut st = self.lock();
            stored.seq = st.next_seq;
            st.next_seq += 1;
            st.ready.push_back(stored);
        }
        self.notify.notify_waiters();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_waiters();
    }
}

impl MemoryBus {
    pub fn new(options: BusOptions) -> Self {
        let options = BusOptions {
            shards: options.shards.max(1),
            ..options
        };
        let dead_letters = Queue::new(DEAD_LETTER_QUEUE.into(), &options, None);
        let shards = (0..options.shards)
            .map(|s| {
                Queue::new(
                    format!("cardio.shard.{s}"),
                    &options,
                    Some(Arc::clone(&dead_letters)),
                )
            })
            .collect();
        Self {
            options,
            shards,
            dead_letters,
            bindings: Mutex::new(Vec::new()),
            next_subscription: AtomicUsize::new(0),
        }
    }

    fn source(queue: Arc<Queue>, prefetch: u16, exclusive: bool) -> Subscription {
        Subscription::new(Box::new(MemorySource {
            queue,
            prefetch: usize::from(prefetch.max(1)),
            in_flight: Arc::new(AtomicUsize::new(0)),
            exclusive,
        }))
    }
}

#[async_trait]
impl Bus for MemoryBus {
    fn describe(&self) -> String {
        "memory://".into()
    }

    fn shards(&self) -> u16 {
        self.options.shards
    }

    async fn send_sealed(&self, msg: &Sealed) -> Result<(), BusError> {
        let to = msg.to().ok_or(BusError::NoRecipient)?;
        let shard = shard_of(to, self.options.shards);
        self.shards[usize::from(shard)].push(Stored {
            seq: 0,
            body: msg.body().clone(),
            deliveries: 0,
            failures: 0,
            dead_letter: None,
        })
    }

    async fn publish(&self, topic: &str, env: &Envelope) -> Result<(), BusError> {
        check_topic(topic)?;
        let targets: Vec<Arc<Queue>> = {
            let mut bindings = self.bindings.lock().unwrap_or_else(|e| e.into_inner());
            bindings.retain(|b| b.queue.strong_count() > 0);
            bindings
                .iter()
                .filter(|b| matches(&b.pattern, topic))
                .filter_map(|b| b.queue.upgrade())
                .collect()
        };
        if targets.is_empty() {
            return Ok(());
        }
        let body = env.encode();
        let mut first_error = None;
        for queue in targets {
            let pushed = queue.push(Stored {
                seq: 0,
                body: body.clone(),
                deliveries: 0,
                failures: 0,
                dead_letter: None,
            });
            if let Err(e) = pushed {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(BusError::Closed) | None => Ok(()),
            Some(e) => Err(e),
        }
    }

    fn may_have_subscribers(&self, topic: &str) -> bool {
        let bindings = self.bindings.lock().unwrap_or_else(|e| e.into_inner());
        bindings
            .iter()
            .any(|b| b.queue.strong_count() > 0 && matches(&b.pattern, topic))
    }

    async fn subscribe(&self, pattern: &str, prefetch: u16) -> Result<Subscription, BusError> {
        let parsed = parse_pattern(pattern)?;
        let n = self.next_subscription.fetch_add(1, Ordering::Relaxed);
        let queue = Queue::new(
            format!("cardio.sub.{n}"),
            &self.options,
            Some(Arc::clone(&self.dead_letters)),
        );
        self.bindings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Binding {
                pattern: parsed,
                queue: Arc::downgrade(&queue),
            });
        Ok(Self::source(queue, prefetch, true))
    }

    async fn consume_shard(&self, shard: u16, prefetch: u16) -> Result<Subscription, BusError> {
        let queue = self
            .shards
            .get(usize::from(shard))
            .ok_or(BusError::NoSuchShard {
                shard,
                shards: self.options.shards,
            })?;
        Ok(Self::source(Arc::clone(queue), prefetch, false))
    }

    async fn consume_dead_letters(&self, prefetch: u16) -> Result<Subscription, BusError> {
        Ok(Self::source(
            Arc::clone(&self.dead_letters),
            prefetch,
            false,
        ))
    }

    async fn healthy(&self) -> bool {
        true
    }
}

struct MemorySource {
    queue: Arc<Queue>,
    prefetch: usize,
    in_flight: Arc<AtomicUsize>,
    /// A topic subscription's own queue, closed when the subscription goes.
    exclusive: bool,
}

#[async_trait]
impl Source for MemorySource {
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            let notified = self.queue.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.queue.lock();
                if st.closed {
                    return None;
                }
                if self.in_flight.load(Ordering::Acquire) < self.prefetch {
                    if let Some(mut stored) = st.ready.pop_front() {
                        stored.deliveries += 1;
                        let tag = st.next_tag;
                        st.next_tag += 1;
                        let info = DeliveryInfo {
                            queue: self.queue.name.clone(),
                            redelivered: stored.deliveries > 1,
                            delivery_count: stored.deliveries,
                            dead_letter: stored.dead_letter.clone(),
                        };
                        let body = stored.body.clone();
                        st.unacked.insert(tag, stored);
                        self.in_flight.fetch_add(1, Ordering::AcqRel);
                        return Some(Delivery::new(
                            body,
                            info,
                            Box::new(MemoryAcker {
                                queue: Arc::clone(&self.queue),
                                tag,
                                in_flight: Arc::clone(&self.in_flight),
                            }),
                        ));
                    }
                }
            }
            notified.await;
        }
    }
}

impl Drop for MemorySource {
    fn drop(&mut self) {
        if self.exclusive {
            self.queue.close();
        }
    }
}

struct MemoryAcker {
    queue: Arc<Queue>,
    tag: u64,
    in_flight: Arc<AtomicUsize>,
}

impl MemoryAcker {
    fn free_slot(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.queue.notify.notify_waiters();
    }
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        self.queue.settle(self.tag);
        self.free_slot();
        Ok(())
    }

    async fn nack(self: Box<Self>, reason: &str) -> Result<Nacked, BusError> {
        let outcome = match self.queue.settle(self.tag) {
            Some(stored) => self.queue.requeue_or_bury(stored, reason, true),
            None => Nacked::Requeued,
        };
        self.free_slot();
        Ok(outcome)
    }

    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), BusError> {
        if let Some(mut stored) = self.queue.settle(self.tag) {
            match &self.queue.dead_letters {
                Some(dlq) => {
                    stored.dead_letter = Some(DeadLetterInfo {
                        reason: reason.to_owned(),
                        from_queue: self.queue.name.clone(),
                        deliveries: stored.deliveries,
                    });
                    dlq.bury(stored);
                }
                // Rejected from the dead-letter queue itself: keep it there.
                None => {
                    self.queue.requeue_or_bury(stored, reason, true);
                }
            }
        }
        self.free_slot();
        Ok(())
    }

    fn release(self: Box<Self>) {
        if let Some(stored) = self.queue.settle(self.tag) {
            self.queue
                .requeue_or_bury(stored, "delivery dropped without acknowledgement", false);
        }
        self.free_slot();
    }
}
