//! Consuming: a [`Source`] over a shard queue, an event subscription (an
//! exclusive queue bound to a pattern) or the dead-letter queue, with a
//! bounded prefetch and manual acks; it consumes again after a lost channel
//! or a cancel, and reads cardio's delivery counts from the headers.
//!
//! After a lost connection every consumer waits for the bus's next
//! connection (it wakes the moment any caller reconnects) and consumes
//! again at once, except a shard consumer for a shard this node does not
//! hold ([`crate::bus::Bus::prefer_shards`]): it waits
//! [`STANDBY_DEFER`] more, so that the shard's owner, reconnecting at about
//! the same time, is the one the broker makes active (single active
//! consumer: the first to attach is served; RabbitMQ 3.10 has no consumer
//! priority for it). Were the standby first, it would take the shard from
//! its live owner on the first delivery and the rebalance would hand it
//! back: two moves and their unavailability for nothing. An owner that does
//! not come back leaves the standby active after that pause.
//!
//! Attaching (channel, `basic.qos`, `basic.consume`) runs in a task of its
//! own on the bus runtime, and [`Source::next`] only waits for that task: a
//! caller that drops `next()` mid-attach (every consumer loop polls it in a
//! `select!` beside other work) must not leave behind a consumer the broker
//! registered and nobody reads. Such an orphan once took a shard for good:
//! being the earliest waiting consumer, it was the one the broker activated
//! when the holder handed the shard over, and what it was given stayed
//! unacknowledged in a buffer nobody polled. The next `next()` waits for the
//! same attach; a source dropped or closed meanwhile closes the channel the
//! attach opened (or the attach gives up before `basic.consume`).
//!
//! It must not settle deliveries itself (that is [`super::ack`]'s) nor
//! print payloads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::Channel;

use super::ack::AmqpAcker;
use super::connection::Attempt;
use super::topology::{shard_queue, DEAD_LETTER_QUEUE, EVENTS_EXCHANGE};
use super::{broker_err, s, Inner};
use crate::bus::{
    Acker, BusError, DeadLetterInfo, Delivery, DeliveryInfo, Nacked, Source, Subscription,
};

/// How much later than the owner's a standby shard consumer attaches again
/// after a lost connection: well above the spread of two nodes' reconnects
/// (each wakes within `CONNECT_SPACING` of the broker accepting again).
pub(super) const STANDBY_DEFER: std::time::Duration = std::time::Duration::from_millis(1000);

#[derive(Clone)]
pub(super) enum Consumes {
    Shard(u16),
    Events(String),
    DeadLetters,
    /// A requester's reply queue, by name: declared (again, after a lost
    /// connection) exclusive and auto-deleted, consumed without acks.
    Replies(String),
}

/// Settles nothing: deliveries of a consumer without acks (replies) are
/// settled by the broker as it sends them.
struct NoAck;

#[async_trait]
impl Acker for NoAck {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        Ok(())
    }
    async fn nack(self: Box<Self>, _: &str) -> Result<Nacked, BusError> {
        Ok(Nacked::Requeued)
    }
    async fn dead_letter(self: Box<Self>, _: &str) -> Result<(), BusError> {
        Ok(())
    }
    fn release(self: Box<Self>) {}
}

/// A consumer the broker confirmed: its channel, its stream, its queue.
type Attached = (Channel, lapin::Consumer, String);

/// An attach under way in a task of its own (see the module docs).
struct Attaching {
    task: tokio::task::JoinHandle<Result<Attached, BusError>>,
    /// Set when the source no longer wants it: the attach stops before
    /// `basic.consume` if it has not got that far.
    unwanted: Arc<AtomicBool>,
}

impl Attaching {
    /// Makes sure the attach leaves no consumer behind: it stops before
    /// `basic.consume`, or the channel it opened is closed once it is done.
    fn discard(self, inner: &Inner) {
        self.unwanted.store(true, Ordering::Release);
        let task = self.task;
        inner.runtime.handle().spawn(async move {
            if let Ok(Ok(attached)) = task.await {
                unsubscribe(attached).await;
            }
        });
    }
}

/// Closes a consumer's channel (its unacknowledged deliveries go back to
/// the queue at once), then drops the consumer. Never the other way round:
/// lapin 4.12 cancels a consumer dropped while active through a command of
/// its own, and when that command runs after the closed channel was
/// removed, lapin fails the whole connection ("invalid channel"), taking
/// every consumer of the node with it. That once moved shards of a node
/// that was not even restarting, in the rolling-restart test. Once the
/// channel is closed, the consumer is no longer active and its drop sends
/// nothing.
async fn unsubscribe((ch, consumer, _): Attached) {
    let _ = ch.close(200, s("unsubscribed")).await;
    drop(consumer);
}

pub(super) struct AmqpSource {
    inner: Arc<Inner>,
    what: Consumes,
    prefetch: u16,
    consumer: Option<Attached>,
    attaching: Option<Attaching>,
    /// Attached before and lost since: the next attach is a re-attach.
    lost: bool,
    /// Re-attaches so far (see [`crate::bus::Source::resets`]).
    resets: tokio::sync::watch::Sender<u64>,
    /// Losses so far (see [`crate::bus::Source::losses`]).
    losses: tokio::sync::watch::Sender<u64>,
}

impl AmqpSource {
    pub(super) async fn start(
        inner: Arc<Inner>,
        what: Consumes,
        prefetch: u16,
    ) -> Result<Subscription, BusError> {
        let mut source = AmqpSource {
            inner,
            what,
            prefetch: prefetch.max(1),
            consumer: None,
            attaching: None,
            lost: false,
            resets: tokio::sync::watch::Sender::new(0),
            losses: tokio::sync::watch::Sender::new(0),
        };
        source.attach().await?;
        Ok(Subscription::new(Box::new(source)))
    }

    /// Consumes (again), retrying while the broker is away: waits for the
    /// attach under way, or starts one. Cancel-safe: dropped, the attach
    /// goes on and the next call waits for it.
    async fn attach(&mut self) -> Result<(), BusError> {
        let attaching = self.attaching.get_or_insert_with(|| {
            let unwanted = Arc::new(AtomicBool::new(false));
            let task = self.inner.runtime.handle().spawn(attach(
                Arc::clone(&self.inner),
                self.what.clone(),
                self.prefetch,
                self.lost,
                Arc::clone(&unwanted),
            ));
            Attaching { task, unwanted }
        });
        let done = (&mut attaching.task).await;
        self.attaching = None;
        let attached =
            done.map_err(|e| BusError::Broker(format!("attaching a consumer: {e}")))??;
        tracing::debug!(queue = %attached.2, tag = %attached.1.tag(), again = self.lost, "consumer attached");
        self.consumer = Some(attached);
        if std::mem::take(&mut self.lost) {
            self.resets.send_modify(|n| *n += 1);
        }
        Ok(())
    }

    fn wrap(&self, d: lapin::message::Delivery, queue: &str, channel: &Channel) -> Delivery {
        let headers = d.properties.headers().clone().unwrap_or_default();
        let header = |k: &str| headers.inner().get(k).cloned();
        let number = |k: &str| match header(k) {
            Some(AMQPValue::LongLongInt(n)) => Some(n.max(0) as u32),
            Some(AMQPValue::LongInt(n)) => Some(n.max(0) as u32),
            Some(AMQPValue::LongUInt(n)) => Some(n),
            Some(AMQPValue::ShortInt(n)) => Some(n.max(0) as u32),
            _ => None,
        };
        // Returns of this copy (quorum queues count them), plus the
        // deliveries of the copies before it (a failed message is published
        // again with its count), plus this one.
        let returns = number("x-delivery-count").unwrap_or(u32::from(d.redelivered));
        let prior = number("x-cardio-deliveries").unwrap_or(0) + returns;
        let failures = number("x-cardio-failures").unwrap_or(0);
        let text = |k: &str| match header(k) {
            Some(AMQPValue::LongString(v)) => Some(v.to_string()),
            Some(AMQPValue::ShortString(v)) => Some(v.as_str().to_owned()),
            _ => None,
        };
        let dead_letter = match self.what {
            Consumes::DeadLetters => Some(DeadLetterInfo {
                reason: text("x-cardio-reason")
                    .or_else(|| text("x-first-death-reason").map(|r| format!("broker: {r}")))
                    .unwrap_or_else(|| "unknown".into()),
                from_queue: text("x-cardio-from-queue")
                    .or_else(|| text("x-first-death-queue"))
                    .unwrap_or_default(),
                deliveries: number("x-cardio-dead-after").unwrap_or(0),
            }),
            _ => None,
        };
        let info = DeliveryInfo {
            queue: queue.to_owned(),
            redelivered: d.redelivered || prior > 0,
            delivery_count: prior + 1,
            dead_letter,
        };
        let body = Bytes::from(d.data);
        if matches!(self.what, Consumes::Replies(_)) {
            return Delivery::new(body, info, Box::new(NoAck));
        }
        let acker = AmqpAcker {
            inner: Arc::clone(&self.inner),
            acker: d.acker,
            _channel: channel.clone(),
            body: body.clone(),
            queue: queue.to_owned(),
            deliveries: info.delivery_count,
            failures,
            shard: match self.what {
                Consumes::Shard(n) => Some(n),
                _ => None,
            },
            limit: if matches!(self.what, Consumes::DeadLetters) {
                u32::MAX
            } else {
                self.inner.options.delivery_limit.max(1)
            },
        };
        Delivery::new(body, info, Box::new(acker))
    }
}

/// For a re-attach (`lost`) of a shard consumer: whether this node holds
/// the shard (`None`: not a shard re-attach, or no preference was given).
fn held(inner: &Inner, what: &Consumes, lost: bool) -> Option<bool> {
    let Consumes::Shard(n) = what else {
        return None;
    };
    let preferred = inner
        .preferred
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()?;
    lost.then(|| preferred(*n))
}

/// Opens a channel and consumes, retrying while the broker is away; gives
/// up before `basic.consume` once `unwanted`.
async fn attach(
    inner: Arc<Inner>,
    what: Consumes,
    prefetch: u16,
    lost: bool,
    unwanted: Arc<AtomicBool>,
) -> Result<Attached, BusError> {
    let gone = || BusError::Broker("the consumer was closed while attaching".into());
    if held(&inner, &what, lost) == Some(false) {
        // The connection first (waiting out the outage), then leave the
        // broker to the owner for a moment, unless this node takes the
        // shard meanwhile.
        inner.with_retry("consume", |_| async { Ok(()) }).await?;
        let until = tokio::time::Instant::now() + STANDBY_DEFER;
        while tokio::time::Instant::now() < until && held(&inner, &what, lost) == Some(false) {
            if unwanted.load(Ordering::Acquire) {
                return Err(gone());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    inner
        .with_retry("consume", |live| {
            let what = what.clone();
            let unwanted = Arc::clone(&unwanted);
            async move {
                if unwanted.load(Ordering::Acquire) {
                    return Err(Attempt::Fatal(gone()));
                }
                let retry = |e: lapin::Error| Attempt::Retry(broker_err(e));
                let ch = live.conn.create_channel().await.map_err(retry)?;
                let queue = match &what {
                    Consumes::Shard(n) => shard_queue(*n),
                    Consumes::DeadLetters => DEAD_LETTER_QUEUE.to_owned(),
                    Consumes::Replies(name) => private_queue(&ch, name).await.map_err(retry)?,
                    Consumes::Events(pattern) => {
                        let name = private_queue(&ch, "").await.map_err(retry)?;
                        ch.queue_bind(
                            s(&name),
                            s(EVENTS_EXCHANGE),
                            s(pattern),
                            QueueBindOptions::default(),
                            FieldTable::default(),
                        )
                        .await
                        .map_err(retry)?;
                        name
                    }
                };
                ch.basic_qos(prefetch, BasicQosOptions::default())
                    .await
                    .map_err(retry)?;
                let consumer = ch
                    .basic_consume(
                        s(&queue),
                        s(""),
                        BasicConsumeOptions {
                            no_ack: matches!(what, Consumes::Replies(_)),
                            ..BasicConsumeOptions::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .map_err(retry)?;
                Ok((ch, consumer, queue))
            }
        })
        .await
}

/// Declares an exclusive, auto-deleted queue (`name`, or one the broker
/// names when empty) and returns its name.
async fn private_queue(ch: &Channel, name: &str) -> Result<String, lapin::Error> {
    let q = ch
        .queue_declare(
            s(name),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(q.name().as_str().to_owned())
}

#[async_trait]
impl Source for AmqpSource {
    fn resets(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.resets.subscribe())
    }

    fn losses(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.losses.subscribe())
    }

    async fn next(&mut self) -> Option<Delivery> {
        loop {
            if self.consumer.is_none() && self.attach().await.is_err() {
                return None;
            }
            let (ch, consumer, queue) = self.consumer.as_mut().expect("attached");
            match consumer.next().await {
                Some(Ok(d)) => {
                    let (ch, queue) = (ch.clone(), queue.clone());
                    return Some(self.wrap(d, &queue, &ch));
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, queue = %queue, "consumer lost its channel; consuming again");
                    self.consumer = None;
                    self.lost = true;
                    self.losses.send_modify(|n| *n += 1);
                }
                None => {
                    tracing::warn!(queue = %queue, "consumer cancelled by the broker; consuming again");
                    self.consumer = None;
                    self.lost = true;
                    self.losses.send_modify(|n| *n += 1);
                }
            }
        }
    }

    async fn close(&mut self) {
        self.close_now().await;
    }
}

impl AmqpSource {
    /// Closes the channel and waits (5 s at most) for the broker's answer:
    /// its consumer is gone, unacknowledged deliveries are back in the queue.
    async fn close_now(&mut self) {
        if let Some(mut attaching) = self.attaching.take() {
            // Let an attach past `basic.consume` finish, to close its channel.
            attaching.unwanted.store(true, Ordering::Release);
            match tokio::time::timeout(std::time::Duration::from_secs(5), &mut attaching.task).await
            {
                Ok(Ok(Ok(attached))) => self.consumer = Some(attached),
                Ok(_) => {}
                Err(_) => attaching.discard(&self.inner),
            }
        }
        if let Some(attached) = self.consumer.take() {
            let closing = self.inner.runtime.handle().spawn(unsubscribe(attached));
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), closing).await;
        }
    }
}

impl Drop for AmqpSource {
    fn drop(&mut self) {
        // Closing the channel hands every unacknowledged delivery back to the
        // broker at once (and lets it activate a standby consumer).
        if let Some(attaching) = self.attaching.take() {
            attaching.discard(&self.inner);
        }
        if let Some(attached) = self.consumer.take() {
            self.inner.runtime.handle().spawn(unsubscribe(attached));
        }
    }
}
