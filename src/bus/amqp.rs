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
//! queue takes is an error, not a silent loss. Consumers use manual acks and a
//! bounded prefetch.
//!
//! Reconnection is cardio's own rather than lapin's opt-in auto-recovery: on
//! any connection error the next user reconnects with jittered exponential
//! backoff, declares the topology again and consumers subscribe again. Acks of
//! deliveries from before the loss fail; the broker redelivers those messages,
//! which handlers tolerate (they de-duplicate by message id).
//!
//! lapin's I/O runs on a small tokio runtime of the bus's own, so it never
//! waits behind actors on an arbiter thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

use super::{
    Acker, Bus, BusError, BusOptions, DeadLetterInfo, Delivery, DeliveryInfo, Envelope, Nacked,
    Source, Subscription,
};
use crate::address::shard_of;

const SHARDS_EXCHANGE: &str = "cardio.shards";
const EVENTS_EXCHANGE: &str = "cardio.events";
const DLX: &str = "cardio.dlx";
/// Name of the dead-letter queue.
pub const DEAD_LETTER_QUEUE: &str = "cardio.dead-letters";
/// The broker's own limit: far above cardio's, only a safety net.
const BROKER_DELIVERY_LIMIT: i64 = 50;
/// Longest wait for a connection with its topology declared.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait for one publisher confirm.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// Name of shard `n`'s queue.
pub fn shard_queue(n: u16) -> String {
    format!("cardio.shard.{n}")
}

/// See the module docs.
pub struct AmqpBus {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
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
}

#[derive(Clone)]
struct Live {
    generation: u64,
    conn: Arc<Connection>,
    publisher: Channel,
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

impl AmqpBus {
    /// Connects to the broker at `url` and declares the topology.
    pub async fn connect(url: &str, options: BusOptions) -> Result<AmqpBus, BusError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cardio-amqp")
            .enable_all()
            .build()
            .map_err(broker_err)?;
        let inner = Arc::new(Inner {
            url: url.to_owned(),
            described: crate::redact::SecretUrl::new(url).to_string(),
            options,
            retry_for: Duration::from_secs(60),
            runtime: BusRuntime(Some(runtime)),
            live: tokio::sync::Mutex::new(None),
            current: std::sync::RwLock::new(None),
            generation: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            reconnecting: AtomicBool::new(false),
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

impl Inner {
    /// The current connection, opening a new one if it is gone.
    async fn open(&self) -> Result<Live, BusError> {
        if let Some(live) = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            if live.conn.status().connected() && live.publisher.status().connected() {
                return Ok(live.clone());
            }
        }
        let mut guard = self.live.lock().await;
        let live = self.open_locked(&mut guard).await;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = guard.clone();
        live
    }

    async fn open_locked(&self, guard: &mut Option<Live>) -> Result<Live, BusError> {
        if let Some(live) = guard.as_mut() {
            if live.conn.status().connected() {
                if live.publisher.status().connected() {
                    return Ok(live.clone());
                }
                // Only the publishing channel closed (a refused publish, say).
                if let Ok(Ok(publisher)) =
                    tokio::time::timeout(OPEN_TIMEOUT, new_publisher(&live.conn)).await
                {
                    live.publisher = publisher;
                    return Ok(live.clone());
                }
            }
        }
        self.connected.store(false, Ordering::Release);
        if let Some(old) = guard.take() {
            close_later(&self.runtime, old.conn);
        }
        // Bounded: a broker that drops packets must not hold every caller
        // (and the node's heartbeat) for a TCP timeout.
        let (conn, publisher) = tokio::time::timeout(OPEN_TIMEOUT, self.connect())
            .await
            .map_err(|_| BusError::Broker(format!("no connection within {OPEN_TIMEOUT:?}")))??;
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        if generation > 1 {
            tracing::info!(
                bus = %self.described,
                generation,
                "reconnected to the broker"
            );
        }
        let live = Live {
            generation,
            conn,
            publisher,
        };
        *guard = Some(live.clone());
        self.connected.store(true, Ordering::Release);
        Ok(live)
    }

    async fn connect(&self) -> Result<(Arc<Connection>, Channel), BusError> {
        let conn = Connection::connect_with_runtime(
            &self.url,
            ConnectionProperties::default(),
            async_rs::Runtime::tokio_with_handle(self.runtime.handle()),
        )
        .await
        .map_err(broker_err)?;
        let topology = conn.create_channel().await.map_err(broker_err)?;
        declare_topology(&topology, &self.options).await?;
        let _ = topology.close(200, s("topology declared")).await;
        let publisher = new_publisher(&conn).await?;
        Ok((Arc::new(conn), publisher))
    }

    /// After an error on connection `generation`: a fresh publisher channel
    /// if the connection still stands (a refused or unconfirmed publish must
    /// not take every consumer down with it), else forget the connection.
    async fn broken(&self, generation: u64) {
        let mut guard = self.live.lock().await;
        let Some(live) = guard.as_mut().filter(|l| l.generation == generation) else {
            return;
        };
        if live.conn.status().connected() {
            if let Ok(Ok(publisher)) =
                tokio::time::timeout(OPEN_TIMEOUT, new_publisher(&live.conn)).await
            {
                let old = std::mem::replace(&mut live.publisher, publisher);
                self.runtime.handle().spawn(async move {
                    let _ = old.close(200, s("replaced")).await;
                });
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = guard.clone();
                return;
            }
        }
        if let Some(old) = guard.take() {
            close_later(&self.runtime, old.conn);
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = None;
        self.connected.store(false, Ordering::Release);
    }

    /// Whether the connection stands, without waiting; when it does not, a
    /// reconnection starts in the background (readiness recovers by itself).
    fn connected_now(self: &Arc<Self>) -> bool {
        let up = self.connected.load(Ordering::Acquire)
            && self.live.try_lock().map_or(true, |g| {
                g.as_ref().is_some_and(|l| l.conn.status().connected())
            });
        if !up && !self.reconnecting.swap(true, Ordering::AcqRel) {
            let me = Arc::clone(self);
            self.runtime.handle().spawn(async move {
                let _ = me.open().await;
                me.reconnecting.store(false, Ordering::Release);
            });
        }
        up
    }

    /// Runs `op` on a live connection, reconnecting with jittered backoff on
    /// failure, for at most `retry_for`.
    async fn with_retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, BusError>
    where
        F: FnMut(Live) -> Fut,
        Fut: std::future::Future<Output = Result<T, Attempt>>,
    {
        let deadline = tokio::time::Instant::now() + self.retry_for;
        let mut pause = Duration::from_millis(50);
        loop {
            let err = match self.open().await {
                Ok(live) => {
                    let generation = live.generation;
                    match op(live).await {
                        Ok(v) => return Ok(v),
                        Err(Attempt::Fatal(e)) => return Err(e),
                        Err(Attempt::Retry(e)) => {
                            self.broken(generation).await;
                            e
                        }
                    }
                }
                Err(e) => e,
            };
            if tokio::time::Instant::now() + pause > deadline {
                tracing::warn!(error = %err, what, "broker unreachable; giving up");
                return Err(err);
            }
            tracing::debug!(error = %err, what, "broker unreachable; retrying");
            tokio::time::sleep(jitter(pause)).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// Publishes and waits for the broker's confirm.
    async fn publish_confirmed(
        &self,
        exchange: &str,
        key: &str,
        body: &[u8],
        props: BasicProperties,
        mandatory: bool,
    ) -> Result<(), BusError> {
        self.with_retry("publish", |live| {
            let props = props.clone();
            async move {
                let confirm = live
                    .publisher
                    .basic_publish(
                        s(exchange),
                        s(key),
                        BasicPublishOptions {
                            mandatory,
                            ..BasicPublishOptions::default()
                        },
                        body,
                        props,
                    )
                    .await
                    .map_err(|e| Attempt::Retry(broker_err(e)))?;
                let confirmation = tokio::time::timeout(CONFIRM_TIMEOUT, confirm)
                    .await
                    .map_err(|_| Attempt::Retry(BusError::Broker("confirm timed out".into())))?
                    .map_err(|e| Attempt::Retry(broker_err(e)))?;
                match confirmation {
                    lapin::Confirmation::Ack(None) | lapin::Confirmation::NotRequested => Ok(()),
                    lapin::Confirmation::Ack(Some(_)) => {
                        Err(Attempt::Fatal(BusError::Unroutable(key.to_owned())))
                    }
                    lapin::Confirmation::Nack(_) => Err(Attempt::Retry(BusError::Broker(
                        "the broker refused the message (nack)".into(),
                    ))),
                }
            }
        })
        .await
    }
}

enum Attempt {
    /// Try again on a fresh connection.
    Retry(BusError),
    /// Trying again cannot help.
    Fatal(BusError),
}

async fn new_publisher(conn: &Connection) -> Result<Channel, BusError> {
    let publisher = conn.create_channel().await.map_err(broker_err)?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(broker_err)?;
    Ok(publisher)
}

/// Closes a connection without making the caller wait for the broker.
fn close_later(runtime: &BusRuntime, conn: Arc<Connection>) {
    runtime.handle().spawn(async move {
        let _ = conn.close(320, s("reconnecting")).await;
    });
}

fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + fastrand::f64())
}

async fn declare_topology(ch: &Channel, options: &BusOptions) -> Result<(), BusError> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    for (name, kind) in [
        (SHARDS_EXCHANGE, ExchangeKind::Direct),
        (EVENTS_EXCHANGE, ExchangeKind::Topic),
        (DLX, ExchangeKind::Fanout),
    ] {
        ch.exchange_declare(s(name), kind, durable, FieldTable::default())
            .await
            .map_err(broker_err)?;
    }
    let durable_q = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let mut quorum = FieldTable::default();
    quorum.insert(s("x-queue-type"), AMQPValue::LongString("quorum".into()));
    ch.queue_declare(s(DEAD_LETTER_QUEUE), durable_q, quorum.clone())
        .await
        .map_err(broker_err)?;
    ch.queue_bind(
        s(DEAD_LETTER_QUEUE),
        s(DLX),
        s(""),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(broker_err)?;
    let mut args = quorum;
    args.insert(s("x-single-active-consumer"), AMQPValue::Boolean(true));
    args.insert(
        s("x-delivery-limit"),
        AMQPValue::LongLongInt(BROKER_DELIVERY_LIMIT),
    );
    args.insert(
        s("x-dead-letter-exchange"),
        AMQPValue::LongString(DLX.into()),
    );
    // Declarations are pipelined: 64 queues take one round trip's worth of waiting.
    let declares = (0..options.shards).map(|n| {
        let args = args.clone();
        async move {
            ch.queue_declare(s(&shard_queue(n)), durable_q, args)
                .await
                .map_err(broker_err)?;
            ch.queue_bind(
                s(&shard_queue(n)),
                s(SHARDS_EXCHANGE),
                s(&n.to_string()),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker_err)
        }
    });
    for r in futures_util::future::join_all(declares).await {
        r?;
    }
    Ok(())
}

fn persistent(env_id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(s(env_id))
        .with_content_type(s("application/json"))
}

#[async_trait]
impl Bus for AmqpBus {
    fn describe(&self) -> String {
        self.inner.described.clone()
    }

    fn shards(&self) -> u16 {
        self.inner.options.shards
    }

    async fn send(&self, env: &Envelope) -> Result<(), BusError> {
        let to = env.to.as_ref().ok_or(BusError::NoRecipient)?;
        let shard = shard_of(to, self.inner.options.shards);
        let body = env.encode();
        self.inner
            .publish_confirmed(
                SHARDS_EXCHANGE,
                &shard.to_string(),
                &body,
                persistent(&env.id.to_string()),
                true,
            )
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
}

#[derive(Clone)]
enum Consumes {
    Shard(u16),
    Events(String),
    DeadLetters,
}

struct AmqpSource {
    inner: Arc<Inner>,
    what: Consumes,
    prefetch: u16,
    consumer: Option<(Channel, lapin::Consumer, String)>,
}

impl AmqpSource {
    async fn start(
        inner: Arc<Inner>,
        what: Consumes,
        prefetch: u16,
    ) -> Result<Subscription, BusError> {
        let mut source = AmqpSource {
            inner,
            what,
            prefetch: prefetch.max(1),
            consumer: None,
        };
        source.attach().await?;
        Ok(Subscription::new(Box::new(source)))
    }

    /// Opens a channel and consumes (again), retrying while the broker is away.
    async fn attach(&mut self) -> Result<(), BusError> {
        let (what, prefetch) = (self.what.clone(), self.prefetch);
        let attached = self
            .inner
            .with_retry("consume", |live| {
                let what = what.clone();
                async move {
                    let retry = |e: lapin::Error| Attempt::Retry(broker_err(e));
                    let ch = live.conn.create_channel().await.map_err(retry)?;
                    let queue = match &what {
                        Consumes::Shard(n) => shard_queue(*n),
                        Consumes::DeadLetters => DEAD_LETTER_QUEUE.to_owned(),
                        Consumes::Events(pattern) => {
                            let q = ch
                                .queue_declare(
                                    s(""),
                                    QueueDeclareOptions {
                                        exclusive: true,
                                        auto_delete: true,
                                        ..QueueDeclareOptions::default()
                                    },
                                    FieldTable::default(),
                                )
                                .await
                                .map_err(retry)?;
                            let name = q.name().as_str().to_owned();
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
                            BasicConsumeOptions::default(),
                            FieldTable::default(),
                        )
                        .await
                        .map_err(retry)?;
                    Ok((ch, consumer, queue))
                }
            })
            .await?;
        self.consumer = Some(attached);
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

#[async_trait]
impl Source for AmqpSource {
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
                }
                None => {
                    tracing::warn!(queue = %queue, "consumer cancelled by the broker; consuming again");
                    self.consumer = None;
                }
            }
        }
    }
}

impl Drop for AmqpSource {
    fn drop(&mut self) {
        // Closing the channel hands every unacknowledged delivery back to the
        // broker at once (and lets it activate a standby consumer).
        if let Some((ch, _, _)) = self.consumer.take() {
            self.inner.runtime.handle().spawn(async move {
                let _ = ch.close(200, s("unsubscribed")).await;
            });
        }
    }
}

/// lapin answers `Ok(false)` when the channel closed under the delivery (the
/// broker re-queued it): that is no settlement.
fn settled(r: lapin::Result<bool>) -> Result<(), BusError> {
    match r {
        Ok(true) => Ok(()),
        Ok(false) => Err(BusError::Broker(
            "the delivery's channel closed; the broker redelivers it".into(),
        )),
        Err(e) => Err(broker_err(e)),
    }
}

struct AmqpAcker {
    inner: Arc<Inner>,
    acker: lapin::Acker,
    /// Keeps the channel open while a delivery is in hand.
    _channel: Channel,
    body: Bytes,
    queue: String,
    deliveries: u32,
    /// Earlier deliveries of this message that failed.
    failures: u32,
    /// Set for shard queues: a failed message is published there again.
    shard: Option<u16>,
    limit: u32,
}

#[async_trait]
impl Acker for AmqpAcker {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        settled(self.acker.ack(BasicAckOptions::default()).await)
    }

    fn usable(&self) -> bool {
        self.acker.usable()
    }

    async fn nack(self: Box<Self>, reason: &str) -> Result<Nacked, BusError> {
        let failures = self.failures + 1;
        if failures >= self.limit {
            let reason = format!(
                "delivery limit {} reached; last failure: {reason}",
                self.limit
            );
            self.dead_letter(&reason).await?;
            return Ok(Nacked::DeadLettered);
        }
        if let Some(shard) = self.shard {
            // Only failures count against the limit, not returns after a
            // lost consumer or a hand-over (which the broker's own count
            // includes): publish it again carrying its counts, then take
            // this copy off the queue. A crash in between delivers it twice,
            // which handlers tolerate.
            let mut headers = FieldTable::default();
            headers.insert(
                s("x-cardio-failures"),
                AMQPValue::LongLongInt(i64::from(failures)),
            );
            headers.insert(
                s("x-cardio-deliveries"),
                AMQPValue::LongLongInt(i64::from(self.deliveries)),
            );
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_headers(headers);
            self.inner
                .publish_confirmed(SHARDS_EXCHANGE, &shard.to_string(), &self.body, props, true)
                .await?;
            settled(self.acker.ack(BasicAckOptions::default()).await)?;
            return Ok(Nacked::Requeued);
        }
        settled(
            self.acker
                .reject(BasicRejectOptions { requeue: true })
                .await,
        )?;
        Ok(Nacked::Requeued)
    }

    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), BusError> {
        let mut headers = FieldTable::default();
        headers.insert(
            s("x-cardio-reason"),
            AMQPValue::LongString(reason.to_owned().into()),
        );
        headers.insert(
            s("x-cardio-from-queue"),
            AMQPValue::LongString(self.queue.clone().into()),
        );
        headers.insert(
            s("x-cardio-dead-after"),
            AMQPValue::LongLongInt(i64::from(self.deliveries)),
        );
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(headers);
        // Set aside durably first; only then take it off its queue. A failure
        // in between redelivers it (and it is dead-lettered again: harmless).
        self.inner
            .publish_confirmed(DLX, "", &self.body, props, true)
            .await?;
        settled(self.acker.ack(BasicAckOptions::default()).await)
    }

    fn release(self: Box<Self>) {
        let acker = self.acker;
        self.inner.runtime.handle().spawn(async move {
            let _ = acker.reject(BasicRejectOptions { requeue: true }).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_queues_are_named_by_number() {
        assert_eq!(shard_queue(0), "cardio.shard.0");
        assert_eq!(shard_queue(63), "cardio.shard.63");
    }
}
