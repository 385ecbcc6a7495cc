//! `amqp://`: the RabbitMQ backend (lapin), for clusters.
//!
//! Topology, declared idempotently on every (re)connection:
//! - `cardio.shards` (direct) → one durable **quorum** queue per shard,
//!   `cardio.shard.<n>`, bound with routing key `<n>`, declared with
//!   `x-single-active-consumer`: the broker delivers a shard to one consumer at
//!   a time and activates a standby the moment the active one's connection
//!   dies, re-queueing what it had not acknowledged;
//! - `cardio.events` (topic) → one exclusive, auto-deleted queue per
//!   subscription, bound with the subscription's pattern;
//! - `cardio.dlx` (fanout) → `cardio.dead-letters` (quorum), where cardio puts
//!   messages it gives up on, with the reason in headers. Shard queues also name
//!   `cardio.dlx` as their dead-letter exchange with a broker-side delivery
//!   limit well above cardio's, as a safety net.
//!
//! Publishing waits for the broker's confirm (so `send` returns once the
//! message is on disk in a quorum queue) and is `mandatory`, so a message no
//! queue takes is an error, not a silent loss. Publishes are pipelined: every
//! caller publishes on the connection's one confirming channel and awaits
//! its own confirm, up to `PUBLISH_WINDOW` unconfirmed at a time. Consumers
//! use manual acks and a bounded prefetch.
//!
//! Replies take a path of their own: each requester has an exclusive,
//! auto-deleted reply queue (`cardio.reply.<uuid>`, consumed without acks),
//! and a reply is published to it through the default exchange on a channel
//! without confirms, transient and not `mandatory`: nothing waits for the
//! broker, and a reply to a requester that is gone is dropped by the broker.
//!
//! A node has two connections, opened and lost together: one for its
//! consumers, one for its publishing channels (see `Live::out`).
//!
//! Reconnection is cardio's own rather than lapin's opt-in auto-recovery: on
//! any connection error the next user reconnects with jittered exponential
//! backoff, declares the topology again and consumers subscribe again. Acks of
//! deliveries from before the loss fail; the broker redelivers those messages,
//! which handlers tolerate (they de-duplicate by message id).
//!
//! lapin's I/O runs on a small tokio runtime of the bus's own, so it never
//! waits behind actors on an arbiter thread.
//!
//! This file holds the bus's state and the [`Bus`] impl; `topology`
//! declares exchanges and queues, `connection` opens, repairs and retries
//! the connection, `publish` publishes with confirms, `consume` consumes
//! shard, event and dead-letter queues, `ack` settles deliveries.
//! Nothing outside `bus/` may see lapin types.

mod ack;
mod connection;
mod consume;
mod publish;
mod topology;

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Connection};

use super::{Bus, BusError, BusOptions, Envelope, Sealed, ShardPreference, Subscription};
use crate::address::shard_of;
use consume::{AmqpSource, Consumes};
use publish::{persistent, PUBLISH_WINDOW};
use topology::{EVENTS_EXCHANGE, REPLY_QUEUE_PREFIX, SHARDS_EXCHANGE};

pub use topology::{shard_queue, DEAD_LETTER_QUEUE};

/// See the module docs.
pub struct AmqpBus {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    /// amqps: the CA and client certificate (unused with amqp://).
    tls: lapin::tcp::OwnedTLSConfig,
    described: String,
    options: BusOptions,
    /// How long `send`/`publish` keep trying while the broker is away.
    retry_for: Duration,
    runtime: BusRuntime,
    live: tokio::sync::Mutex<Option<Live>>,
    /// A copy of `live` for the fast path: every publish reads it without
    /// queueing behind the (async) lock that reconnection holds.
    current: std::sync::RwLock<Option<Live>>,
    generation: AtomicU64,
    connected: AtomicBool,
    /// A background reconnection is under way.
    reconnecting: AtomicBool,
    /// The generation of the latest connection: callers waiting out a
    /// broker outage wake on it instead of at their own next try.
    reconnected: tokio::sync::watch::Sender<u64>,
    /// The last failed connect, to spare the broker a herd of attempts.
    last_failure: std::sync::Mutex<Option<(tokio::time::Instant, BusError)>>,
    /// Whether this node holds a shard: after a reconnection the consumers
    /// of shards it holds attach first, those it stands by for a moment
    /// later (see `consume`).
    preferred: std::sync::RwLock<Option<ShardPreference>>,
    /// The publisher window: confirmed publishes in flight at a time.
    window: tokio::sync::Semaphore,
}

#[derive(Clone)]
struct Live {
    generation: u64,
    /// The consumers' connection (and the topology's).
    conn: Arc<Connection>,
    /// The publishers' connection: `publisher` and `replier` only. lapin
    /// asks every channel of a connection for its flow state before it
    /// writes each frame; on `conn`, with a channel per shard consumer
    /// (standbys included) and per subscription, that walk was a tenth of a
    /// loaded node's CPU (BENCHMARKS.md). Both connections live and die as
    /// one: either lost, both are opened again.
    out: Arc<Connection>,
    /// The confirming channel every publish goes on (pipelined); each
    /// publish holds it until its confirm came in, so that a replaced
    /// channel is closed only once no publish still uses it.
    publisher: Arc<Channel>,
    /// Counts replacements of `publisher` on this connection, so that the
    /// many publishes that fail together on one channel replace it once.
    publisher_epoch: u64,
    /// Replies: no confirms (see the module docs).
    replier: Channel,
}

/// The runtime lapin's I/O runs on; shut down without blocking when dropped
/// (the bus may be dropped inside async code).
struct BusRuntime(Option<tokio::runtime::Runtime>);

impl BusRuntime {
    fn handle(&self) -> tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("runtime until drop")
            .handle()
            .clone()
    }
}

impl Drop for BusRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

fn broker_err(e: impl std::fmt::Display) -> BusError {
    BusError::Broker(e.to_string())
}

fn s(v: &str) -> ShortString {
    v.into()
}

/// The AMQP heartbeat asked for when the URL names none, in seconds. The
/// broker closes a connection it has heard nothing from for about two
/// intervals, which makes it activate the standby consumers of a stalled
/// node's shards (SIGSTOP, a VM pause, silently dropped packets) within
/// 2–3 s instead of RabbitMQ's default 60 s. Heartbeats are sent by lapin on
/// the bus's own runtime thread, so busy actors do not delay them.
/// docs/cluster.md "Stalls" tells why this and not the management API.
pub const DEFAULT_HEARTBEAT_SECS: u16 = 1;

/// `url` with `heartbeat=DEFAULT_HEARTBEAT_SECS` added when it names none
/// (a URL's own `heartbeat` wins).
fn with_default_heartbeat(url: &str) -> String {
    let query = url.split_once('?').map(|(_, q)| q);
    if query.is_some_and(|q| q.split('&').any(|kv| kv.starts_with("heartbeat="))) {
        return url.to_owned();
    }
    let sep = if query.is_some() { '&' } else { '?' };
    format!("{url}{sep}heartbeat={DEFAULT_HEARTBEAT_SECS}")
}

impl AmqpBus {
    /// Connects to the broker at `url` and declares the topology.
    pub async fn connect(url: &str, options: BusOptions) -> Result<AmqpBus, BusError> {
        Self::connect_with_tls(url, options, super::BusTls::default()).await
    }

    /// [`AmqpBus::connect`], verifying an `amqps://` broker with `tls`.
    pub async fn connect_with_tls(
        url: &str,
        options: BusOptions,
        tls: super::BusTls,
    ) -> Result<AmqpBus, BusError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cardio-amqp")
            .enable_all()
            .build()
            .map_err(broker_err)?;
        let inner = Arc::new(Inner {
            url: with_default_heartbeat(url),
            tls: lapin::tcp::OwnedTLSConfig {
                identity: tls
                    .identity
                    .map(|(pem, key)| lapin::tcp::OwnedIdentity::PKCS8 { pem, key }),
                cert_chain: tls.ca_pem,
            },
            described: crate::redact::SecretUrl::new(url).to_string(),
            options,
            retry_for: Duration::from_secs(60),
            runtime: BusRuntime(Some(runtime)),
            live: tokio::sync::Mutex::new(None),
            current: std::sync::RwLock::new(None),
            generation: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            reconnecting: AtomicBool::new(false),
            reconnected: tokio::sync::watch::Sender::new(0),
            last_failure: std::sync::Mutex::new(None),
            preferred: std::sync::RwLock::new(None),
            window: tokio::sync::Semaphore::new(PUBLISH_WINDOW),
        });
        // The first connection must work: a node with a wrong URL fails at start.
        inner.open().await?;
        Ok(AmqpBus { inner })
    }

    /// A bus that keeps trying `send`/`publish` for at most `retry_for` while
    /// the broker is unreachable (default 60 s).
    pub fn with_retry_for(mut self, retry_for: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.retry_for = retry_for;
        }
        self
    }
}

#[async_trait]
impl Bus for AmqpBus {
    fn describe(&self) -> String {
        self.inner.described.clone()
    }

    fn shards(&self) -> u16 {
        self.inner.options.shards
    }

    async fn send_sealed(&self, msg: &Sealed) -> Result<(), BusError> {
        let to = msg.to().ok_or(BusError::NoRecipient)?;
        let shard = shard_of(to, self.inner.options.shards);
        self.inner
            .publish_confirmed(
                SHARDS_EXCHANGE,
                &shard.to_string(),
                msg.body(),
                persistent(&msg.id().to_string()),
                true,
            )
            .await
    }

    async fn reply_queue(&self) -> Result<(String, Subscription), BusError> {
        let queue = format!("{REPLY_QUEUE_PREFIX}{}", uuid::Uuid::new_v4().simple());
        let what = Consumes::Replies(queue.clone());
        // No acks: the prefetch does not apply.
        let sub = AmqpSource::start(Arc::clone(&self.inner), what, 1).await?;
        Ok((queue, sub))
    }

    async fn reply(&self, address: &str, reply: &Envelope) -> Result<(), BusError> {
        if !address.starts_with(REPLY_QUEUE_PREFIX) {
            // A requester of an earlier version: its reply topic.
            return self.publish(address, reply).await;
        }
        let props = BasicProperties::default()
            .with_message_id(s(&reply.id.to_string()))
            .with_content_type(s("application/json"));
        self.inner
            .publish_reply(address, &reply.encode(), props)
            .await
    }

    async fn publish(&self, topic: &str, env: &Envelope) -> Result<(), BusError> {
        super::topic::check_topic(topic)?;
        let body = env.encode();
        let props = BasicProperties::default()
            .with_message_id(s(&env.id.to_string()))
            .with_content_type(s("application/json"));
        self.inner
            .publish_confirmed(EVENTS_EXCHANGE, topic, &body, props, false)
            .await
    }

    async fn subscribe(&self, pattern: &str, prefetch: u16) -> Result<Subscription, BusError> {
        super::topic::parse_pattern(pattern)?;
        let what = Consumes::Events(pattern.to_owned());
        AmqpSource::start(Arc::clone(&self.inner), what, prefetch).await
    }

    async fn consume_shard(&self, shard: u16, prefetch: u16) -> Result<Subscription, BusError> {
        let shards = self.inner.options.shards;
        if shard >= shards {
            return Err(BusError::NoSuchShard { shard, shards });
        }
        AmqpSource::start(Arc::clone(&self.inner), Consumes::Shard(shard), prefetch).await
    }

    async fn consume_dead_letters(&self, prefetch: u16) -> Result<Subscription, BusError> {
        AmqpSource::start(Arc::clone(&self.inner), Consumes::DeadLetters, prefetch).await
    }

    async fn healthy(&self) -> bool {
        self.inner.connected_now()
    }

    fn prefer_shards(&self, preferred: ShardPreference) {
        *self
            .inner
            .preferred
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(preferred);
    }
}

#[cfg(test)]
mod tests {
    use super::with_default_heartbeat;

    #[test]
    fn a_short_heartbeat_is_asked_for_unless_the_url_names_one() {
        assert_eq!(
            with_default_heartbeat("amqp://h:5672/%2f"),
            "amqp://h:5672/%2f?heartbeat=1"
        );
        assert_eq!(
            with_default_heartbeat("amqps://h/v?frame_max=8192"),
            "amqps://h/v?frame_max=8192&heartbeat=1"
        );
        assert_eq!(
            with_default_heartbeat("amqp://h/v?heartbeat=10"),
            "amqp://h/v?heartbeat=10"
        );
    }
}
