//! The message-bus shim: the only way cardio's parts talk across actors and nodes.
//!
//! [`Bus`] is a small trait with two backends chosen by URL: `memory://` (this
//! module's [`memory`], in-process, the embedded default) and `amqp://`
//! (RabbitMQ, this module's [`amqp`], for clusters). Nothing outside `bus/`
//! knows which one runs.
//!
//! Semantics every backend provides:
//! - actor messages go to the shard queue of their recipient (`send`); each
//!   shard queue is consumed by one node (`consume_shard`);
//! - events fan out by topic (`publish` / `subscribe`, AMQP topic patterns:
//!   `*` one word, `#` any number of words);
//! - delivery is at least once: a delivery is settled by `ack`; `nack`
//!   requeues it for redelivery, a dropped delivery is requeued too, and after
//!   `delivery_limit` failed (nacked) deliveries a message goes to the
//!   dead-letter queue with its reason. Deliveries that end without a failure
//!   (a consumer lost, a shard handed over) do not count toward the limit;
//! - at most `prefetch` unsettled deliveries per subscription;
//! - replies travel a path of their own ([`Bus::reply_queue`], [`Bus::reply`]):
//!   best effort, never persisted nor confirmed, since a request's
//!   durability is the journal's (an unanswered ask is asked again with the
//!   same idempotency key). A reply to a requester that is gone is dropped.

pub mod amqp;
pub mod client;
pub mod envelope;
pub mod events;
pub mod memory;
mod metered;
pub mod protocol;
mod topic;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

pub use envelope::{Envelope, EnvelopeError, MessageId, Sealed, TraceContext};
pub use protocol::{BusEvent, BusMessage};

/// Errors of the bus. Messages never carry payloads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    #[error("unsupported bus URL scheme {0:?}; use memory:// or amqp://")]
    UnsupportedScheme(String),
    #[error("invalid bus URL: {0}")]
    BadUrl(String),
    #[error("an actor message needs a recipient (envelope.to)")]
    NoRecipient,
    #[error("invalid topic or pattern {0:?}: dot-separated words, wildcards only in patterns")]
    BadTopic(String),
    #[error("shard {shard} does not exist (the bus has {shards})")]
    NoSuchShard { shard: u16, shards: u16 },
    #[error("queue {0} is full")]
    QueueFull(String),
    #[error("the bus is closed")]
    Closed,
    #[error("broker: {0}")]
    Broker(String),
    #[error("no queue takes messages with routing key {0:?}")]
    Unroutable(String),
}

/// Where a delivery came from and how often it was delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryInfo {
    pub queue: String,
    /// Delivered before (and not acknowledged).
    pub redelivered: bool,
    /// 1 on first delivery.
    pub delivery_count: u32,
    /// Set on deliveries from the dead-letter queue.
    pub dead_letter: Option<DeadLetterInfo>,
}

/// Why a message was set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterInfo {
    pub reason: String,
    pub from_queue: String,
    pub deliveries: u32,
}

/// What became of a negatively acknowledged delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nacked {
    Requeued,
    /// It had reached the delivery limit.
    DeadLettered,
}

/// Settles one delivery with its backend.
#[async_trait]
pub trait Acker: Send {
    async fn ack(self: Box<Self>) -> Result<(), BusError>;
    async fn nack(self: Box<Self>, reason: &str) -> Result<Nacked, BusError>;
    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), BusError>;
    /// Called when a delivery is dropped unsettled: requeue it.
    fn release(self: Box<Self>);
    /// Whether the delivery can still be settled (its channel is open).
    fn usable(&self) -> bool {
        true
    }
}

/// One delivered message. Dropping it unsettled requeues it.
pub struct Delivery {
    body: Bytes,
    info: DeliveryInfo,
    acker: Option<Box<dyn Acker>>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("info", &self.info)
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .finish()
    }
}

impl Delivery {
    pub fn new(body: Bytes, info: DeliveryInfo, acker: Box<dyn Acker>) -> Self {
        Self {
            body,
            info,
            acker: Some(acker),
        }
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Whether it can still be settled: false once the channel it came on
    /// closed (the broker has re-queued it already).
    pub fn usable(&self) -> bool {
        self.acker.as_ref().is_some_and(|a| a.usable())
    }

    pub fn info(&self) -> &DeliveryInfo {
        &self.info
    }

    pub fn envelope(&self) -> Result<Envelope, EnvelopeError> {
        Envelope::decode(&self.body)
    }

    fn take(&mut self) -> Box<dyn Acker> {
        self.acker.take().expect("a delivery is settled once")
    }

    /// The body and info of a delivery whose acker was taken.
    fn into_parts(mut self) -> (Bytes, DeliveryInfo) {
        debug_assert!(self.acker.is_none());
        let body = std::mem::take(&mut self.body);
        let info = DeliveryInfo {
            queue: std::mem::take(&mut self.info.queue),
            dead_letter: self.info.dead_letter.take(),
            ..self.info.clone()
        };
        (body, info)
    }

    /// Done with it: it will not be delivered again.
    pub async fn ack(mut self) -> Result<(), BusError> {
        self.take().ack().await
    }

    /// Failed: deliver it again, unless it reached the delivery limit, in which
    /// case it is dead-lettered with `reason`.
    pub async fn nack(mut self, reason: &str) -> Result<Nacked, BusError> {
        self.take().nack(reason).await
    }

    /// Will never work (malformed): set it aside now with `reason`.
    pub async fn dead_letter(mut self, reason: &str) -> Result<(), BusError> {
        self.take().dead_letter(reason).await
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let Some(acker) = self.acker.take() {
            acker.release();
        }
    }
}

/// A backend's stream of deliveries.
#[async_trait]
pub trait Source: Send {
    /// The next delivery; `None` once the subscription is closed.
    /// Cancel-safe: consumers poll it in `select!` beside other work, so a
    /// call dropped midway must lose no delivery and leave nothing half
    /// done (amqp: no consumer the broker registered and nobody reads).
    async fn next(&mut self) -> Option<Delivery>;

    /// Counts the times the subscription was set up again after it was
    /// lost (a broker restart): what was published to an event subscription
    /// meanwhile is gone. `None`: it is never lost (the memory bus).
    fn resets(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Counts the times the subscription was lost (its channel or
    /// connection died, or the broker cancelled it), as soon as it is seen
    /// and before it is set up again: from then on the broker may deliver
    /// to another consumer. `None`: it is never lost (the memory bus).
    fn losses(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Ends the subscription and waits (boundedly) until the backend has
    /// let go of it, unacknowledged deliveries returned. Dropping it does the
    /// same without waiting.
    async fn close(&mut self) {}
}

/// Resolves when a subscription's count ([`Subscription::resets`],
/// [`Subscription::losses`]) moved on; never if it has none or it ended.
pub async fn counted(count: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    let moved = match count {
        Some(c) => c.changed().await.is_ok(),
        None => false,
    };
    if !moved {
        // Its sender is gone with the subscription: nothing more to see.
        *count = None;
        std::future::pending::<()>().await;
    }
}

/// A stream of deliveries from one queue.
pub struct Subscription {
    source: Box<dyn Source>,
}

impl Subscription {
    pub fn new(source: Box<dyn Source>) -> Self {
        Self { source }
    }

    pub async fn next(&mut self) -> Option<Delivery> {
        self.source.next().await
    }

    /// See [`Source::resets`].
    pub fn resets(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.source.resets()
    }

    /// See [`Source::losses`].
    pub fn losses(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.source.losses()
    }

    /// Ends the subscription once the backend has let go of it (a consumer
    /// cancelled at the broker, so it activates another); see [`Source::close`].
    pub async fn close(mut self) {
        self.source.close().await;
    }

    /// The next event of type `E`, with its envelope. Events of other types
    /// are skipped; an `E` whose payload does not decode (a peer of another
    /// version) is skipped with a warning naming the type, never mis-read.
    /// `None` once the subscription is closed.
    pub async fn next_of<E: BusEvent>(&mut self) -> Option<(Envelope, E)> {
        while let Some(env) = self.next_envelope().await {
            if !E::carried_by(&env.msg_type) {
                continue;
            }
            match serde_json::from_str(env.payload.get()) {
                Ok(event) => return Some((env, event)),
                Err(e) => tracing::warn!(
                    msg_type = %env.msg_type,
                    error = %crate::redact::describe_json_error(&e),
                    "event skipped: its payload does not decode"
                ),
            }
        }
        None
    }

    /// The next event's envelope, whatever its type. Events are best
    /// effort, so each delivery is acknowledged on receipt; one that is not
    /// an envelope is skipped. `None` once the subscription is closed.
    pub async fn next_envelope(&mut self) -> Option<Envelope> {
        while let Some(delivery) = self.next().await {
            let env = delivery.envelope();
            let _ = delivery.ack().await;
            if let Ok(env) = env {
                return Some(env);
            }
        }
        None
    }
}

/// Whether this node holds a shard; see [`Bus::prefer_shards`].
pub type ShardPreference = Arc<dyn Fn(u16) -> bool + Send + Sync>;

/// See the module docs.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// The URL, with any password hidden.
    fn describe(&self) -> String;

    /// Number of shard queues actor messages are spread over.
    fn shards(&self) -> u16;

    /// Sends an actor message (`env.to` set) to its shard queue. Returns once the
    /// bus holds it (durably, for durable backends).
    async fn send(&self, env: &Envelope) -> Result<(), BusError> {
        self.send_sealed(&env.seal()).await
    }

    /// [`Self::send`] of an envelope encoded already: what to use for a
    /// message that may be sent more than once.
    async fn send_sealed(&self, msg: &Sealed) -> Result<(), BusError>;

    /// Publishes an event on `topic` to every matching subscription.
    async fn publish(&self, topic: &str, env: &Envelope) -> Result<(), BusError>;

    /// Whether an event on `topic` could reach a subscription now: `false`
    /// only when the bus knows none matches (the in-process bus does), so
    /// that the event need not even be encoded. Default (a broker, which
    /// routes on its side): `true`.
    fn may_have_subscribers(&self, topic: &str) -> bool {
        let _ = topic;
        true
    }

    /// A subscription of its own to events whose topic matches `pattern`.
    async fn subscribe(&self, pattern: &str, prefetch: u16) -> Result<Subscription, BusError>;

    /// A reply address of the caller's own (for [`Envelope::reply_to`]) and
    /// the replies sent to it, which need no settling. It lasts as long as
    /// the subscription; after [`Subscription::resets`] changed, replies
    /// sent meanwhile may be lost. Default: a topic subscription.
    async fn reply_queue(&self) -> Result<(String, Subscription), BusError> {
        let address = format!("reply.{}", uuid::Uuid::new_v4().simple());
        let sub = self.subscribe(&address, 256).await?;
        Ok((address, sub))
    }

    /// Sends `reply` to `address` (a request's `reply_to`), best effort: it
    /// is neither persisted nor confirmed, and a reply to an address nobody
    /// listens on any more is dropped without an error. Default: an event
    /// on the topic `address`.
    async fn reply(&self, address: &str, reply: &Envelope) -> Result<(), BusError> {
        self.publish(address, reply).await
    }

    /// Consumes the actor messages of one shard.
    async fn consume_shard(&self, shard: u16, prefetch: u16) -> Result<Subscription, BusError>;

    /// Consumes the dead-letter queue.
    async fn consume_dead_letters(&self, prefetch: u16) -> Result<Subscription, BusError>;

    /// Whether the bus can take messages now (for readiness).
    async fn healthy(&self) -> bool;

    /// Tells the bus which shards this node holds (`preferred(shard)`), so
    /// that after a broker restart their consumers attach before those of
    /// shards it only stands by for: with single active consumer the first
    /// to attach is served, and a standby served first would take the shard
    /// from its live owner, only to hand it back. Backends whose
    /// subscriptions never drop ignore it.
    fn prefer_shards(&self, preferred: ShardPreference) {
        let _ = preferred;
    }
}

/// Settings every backend honours.
#[derive(Debug, Clone, Copy)]
pub struct BusOptions {
    pub shards: u16,
    /// Deliveries after which a message that keeps failing is dead-lettered.
    pub delivery_limit: u32,
    /// Messages a queue holds before senders get [`BusError::QueueFull`].
    pub max_queue_len: usize,
}

impl Default for BusOptions {
    fn default() -> Self {
        Self {
            shards: 64,
            delivery_limit: 5,
            max_queue_len: 1_000_000,
        }
    }
}

/// TLS for an `amqps://` bus: the CA bundle the broker is verified against
/// (besides the public roots) and an optional client certificate, all PEM.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BusTls {
    /// PEM CA certificates; `None`: the public roots only.
    pub ca_pem: Option<String>,
    /// PEM certificate chain and PEM private key of a client certificate.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// Opens the bus named by `url`.
pub async fn connect(url: &str, options: BusOptions) -> Result<Arc<dyn Bus>, BusError> {
    connect_with_tls(url, options, BusTls::default()).await
}

/// Opens the bus named by `url`; an `amqps://` URL verifies the broker with
/// `tls` (an `amqp://` URL ignores it: configuration refuses TLS settings
/// with a plain URL).
pub async fn connect_with_tls(
    url: &str,
    options: BusOptions,
    tls: BusTls,
) -> Result<Arc<dyn Bus>, BusError> {
    let scheme = url
        .split_once("://")
        .map(|(s, _)| s)
        .ok_or_else(|| BusError::BadUrl("expected scheme://...".into()))?;
    let (inner, backend): (Arc<dyn Bus>, &'static str) = match scheme {
        "memory" => (Arc::new(memory::MemoryBus::new(options)), "memory"),
        "amqp" | "amqps" => (
            Arc::new(amqp::AmqpBus::connect_with_tls(url, options, tls).await?),
            "amqp",
        ),
        other => return Err(BusError::UnsupportedScheme(other.to_owned())),
    };
    Ok(Arc::new(metered::Metered::new(inner, backend)))
}
