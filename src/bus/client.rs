//! Request–reply over the bus from outside any actor: what the API, tools and
//! tests use to reach an actor wherever it lives.
//!
//! A [`Requester`] has a reply queue of its own ([`Bus::reply_queue`]: on
//! RabbitMQ an exclusive, auto-deleted queue that replies reach without
//! confirms or persistence) and matches replies to requests by correlation
//! id. [`Requester::ask`] is the typed way in: a
//! [`BusMessage`] goes to its actor and its `Reply` comes back, or the
//! caller's deadline passes. A request that got no answer may still have
//! been applied: the idempotency key inside each command message (its
//! request id) makes asking again safe. [`Requester::request`] is the
//! untyped single try underneath (tests use it to send shapes no type has).
//!
//! **One request, not a pile of copies.** An ask is one envelope, encoded
//! once ([`Envelope::seal`]) and sent as those bytes every time: one
//! message id (every reply to it answers the ask) and the caller's whole
//! deadline (the actor drops it as late only when the caller has given up).
//! Once the bus confirmed it, the copy is durably in its shard queue and
//! will be delivered whenever the shard is consumed again (a node failing
//! over, a broker restarting), so it is not sent again on a timer: during an
//! outage a caller leaves one copy in the queue, not one per few seconds.
//! It is published again, after a pause of the project's one [`Backoff`]
//! (jittered, and never when too little of the deadline is left for an
//! answer), only when the copy sent cannot answer the ask:
//! - the bus did not take it (no confirm; [`AskError::Bus`] if that lasts);
//! - the actor answered a transient refusal ([`BusMessage::unavailable`]:
//!   its database away, its shard moving): the copy is consumed;
//! - the reply path was reset ([`super::Subscription::resets`]: the reply
//!   queue was lost with the broker connection), so the answer to the copy
//!   may have been published to nobody; this re-sends at most once per
//!   reset, a small bounded number.
//!
//! De-duplicating by message id on the consumer side was the other way; it
//! is not needed here because a copy answered twice is harmless (commands
//! are idempotent by request id, and the second reply finds no waiter),
//! and it would cost a per-shard memory of answered ids.
//!
//! **The local path.** An actor whose shard this node serves (it holds the
//! shard, and the broker delivers the shard's queue to this node's
//! consumer) is asked directly, without the bus: a [`LocalPath`] (the
//! cluster's) hands the request to the actor as a delivery from the queue
//! would, and the same node answers it either way. The actor gets a copy
//! of the message as the value it is, and its reply comes back the same
//! way ([`AnyMessage`]): neither is encoded, and the message is encoded
//! only if the ask goes on through the bus. This is Akka Cluster
//! Sharding's local shard shortcut; what it keeps is the point:
//! - **durability** is the actor's journal's, as on the bus (an actor
//!   answers a command only once its effect is committed);
//! - **fencing**: the actor's writes are conditional on the shard's epoch,
//!   so a node that lost the shard without knowing yet cannot commit; its
//!   actor answers unavailable, and the ask goes on through the bus;
//! - **at most one try**: only the first try of an ask may be local. After
//!   any failure (the actor crashed, was unavailable or gave no answer)
//!   the ask goes through the bus, where a message that keeps crashing its
//!   actor is counted and dead-lettered at the delivery limit rather than
//!   retried until the deadline.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::{oneshot, watch};

use super::{Bus, BusError, BusMessage, Envelope, MessageId};
use crate::address::ActorId;
use crate::supervisors::Backoff;

/// Least time a try is worth sending with (a request, its handling and its
/// reply).
const MIN_TRY: Duration = Duration::from_millis(100);

/// Why [`Requester::ask`] got no answer. Transient errors were asked again
/// until the deadline; permanent ones were not (asking again cannot help).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AskError {
    /// Transient: no answer by the deadline. The request may still have
    /// been applied; ask again with the same idempotency key.
    #[error("no answer before the deadline; the request may still be applied")]
    Timeout,
    /// Transient: the actor answered, until the deadline, that it cannot act now.
    #[error("the actor could not act before the deadline")]
    Unavailable,
    /// Transient: the bus did not take the request, until the deadline.
    #[error("the bus did not take the request: {0}")]
    Bus(BusError),
    /// Permanent: the request does not encode, or the answer does not decode
    /// as the message's reply (a peer of another version).
    #[error("protocol mismatch: {0}")]
    Protocol(String),
    /// Permanent: the address is of another kind of actor than the message's.
    #[error("a {message} message cannot go to a {actor} actor")]
    WrongKind {
        message: &'static str,
        actor: String,
    },
}

impl AskError {
    /// Whether asking again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            AskError::Timeout | AskError::Unavailable | AskError::Bus(_)
        )
    }
}

/// The pauses between the tries of an ask: 20 ms doubling to 500 ms, up to
/// half taken off at random, so a refusal that comes back at once is not
/// asked again in a tight loop while a shard moves.
pub const ASK_RETRY: Backoff =
    Backoff::doubling(Duration::from_millis(20), Duration::from_millis(500), 0.5);

/// The pause before try `attempt + 1` of an ask ([`ASK_RETRY`], jittered).
pub fn retry_pause(attempt: u32) -> Duration {
    ASK_RETRY.delay(attempt, fastrand::f64())
}

/// Why a request got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("no reply within {0:?}; the request may still be applied: retry it with the same request id")]
    Timeout(Duration),
    #[error("the reply does not decode: {0}")]
    Reply(String),
}

type Waiting = Arc<DashMap<MessageId, oneshot::Sender<Envelope>>>;

/// Why a local delivery gave no reply (see [`LocalPath`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalFailure {
    /// The payload cannot be this message type (a bug in the caller): asking
    /// again cannot help.
    Malformed(String),
    /// The actor crashed on it, was not available or did not answer in
    /// time: the ask goes on through the bus.
    Failed(String),
}

/// A message or a reply handed over within the process, as the value it
/// is, not encoded (the local path).
pub type AnyMessage = Box<dyn std::any::Any + Send>;

/// A local delivery under way: the actor's reply (the message's `Reply`,
/// boxed), or why none.
pub type LocalDelivery = BoxFuture<'static, Result<AnyMessage, LocalFailure>>;

/// Delivers requests to actors this node serves itself; see the module docs.
pub trait LocalPath: Send + Sync {
    /// Delivers the message `msg()` makes (of the type registered as
    /// `msg_type`, boxed) to `to` here and now, or `None` when this node
    /// does not serve `to`'s shard (the bus must carry it). `msg` is called
    /// only for a delivery here.
    fn deliver(
        &self,
        to: &ActorId,
        msg_type: &str,
        msg: &dyn Fn() -> AnyMessage,
        deadline: tokio::time::Instant,
    ) -> Option<LocalDelivery>;
}

/// See the module docs.
pub struct Requester {
    bus: Arc<dyn Bus>,
    /// Its reply queue's address (`reply_to` of its requests).
    address: String,
    waiting: Waiting,
    /// Resets of the reply subscription (`None`: it is never lost).
    resets: Option<watch::Receiver<u64>>,
    task: tokio::task::JoinHandle<()>,
    local: Option<Arc<dyn LocalPath>>,
}

impl Requester {
    /// Opens a reply queue of its own on `bus`.
    pub async fn new(bus: Arc<dyn Bus>) -> Result<Requester, BusError> {
        let (address, mut sub) = bus.reply_queue().await?;
        let resets = sub.resets();
        let waiting: Waiting = Arc::new(DashMap::new());
        let w = Arc::clone(&waiting);
        let task = tokio::spawn(async move {
            while let Some(env) = sub.next_envelope().await {
                if let Some((_, tx)) = env.correlation_id.and_then(|id| w.remove(&id)) {
                    let _ = tx.send(env);
                }
            }
        });
        Ok(Requester {
            bus,
            address,
            waiting,
            resets,
            task,
            local: None,
        })
    }

    /// Asks the actors `local` serves without the bus (see the module docs).
    pub fn with_local(mut self, local: Arc<dyn LocalPath>) -> Requester {
        self.local = Some(local);
        self
    }

    /// Asks actor `to` with `msg` and returns its answer, or the last
    /// transient failure once `deadline` passes; see the module docs for
    /// when it is sent again, and [`AskError`].
    pub async fn ask<M: BusMessage>(
        &self,
        to: &ActorId,
        msg: &M,
        deadline: tokio::time::Instant,
    ) -> Result<M::Reply, AskError> {
        check_kind::<M>(to)?;
        let mut attempt = 0;
        if let Some(local) = self.try_local(to, msg, deadline) {
            let failure = match tokio::time::timeout_at(deadline, local).await {
                Err(_) => return Err(AskError::Timeout),
                Ok(Ok(reply)) => match local_reply::<M>(reply) {
                    Err(AskError::Unavailable) => AskError::Unavailable,
                    read => {
                        if read.is_ok() {
                            crate::metrics::bus::asked_locally("answered");
                        }
                        return read;
                    }
                },
                Ok(Err(LocalFailure::Malformed(reason))) => return Err(AskError::Protocol(reason)),
                Ok(Err(LocalFailure::Failed(_))) => AskError::Unavailable,
            };
            crate::metrics::bus::asked_locally("handed_to_bus");
            if !pause_before_next(deadline, &mut attempt).await {
                return Err(failure);
            }
        }
        // Encoded only for the bus (the local path hands the value over).
        let payload = encode(msg)?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let env = Envelope::raw(M::TYPE, payload)
            .to(to.clone())
            .within(left)
            .reply_to(&self.address);
        let id = env.id;
        let sealed = env.seal();
        let mut resets = self.resets.clone();
        loop {
            let (tx, rx) = oneshot::channel();
            self.waiting.insert(id, tx);
            if let Some(r) = resets.as_mut() {
                r.mark_unchanged();
            }
            let failure =
                match tokio::time::timeout_at(deadline, self.bus.send_sealed(&sealed)).await {
                    // Not confirmed in time: it may still be in the queue.
                    Err(_) => {
                        self.waiting.remove(&id);
                        return Err(AskError::Timeout);
                    }
                    Ok(Err(e)) => AskError::Bus(e),
                    Ok(Ok(())) => tokio::select! {
                        reply = rx => match reply {
                            Ok(reply) => match read_reply::<M>(reply.payload.get()) {
                                Err(AskError::Unavailable) => AskError::Unavailable,
                                read => return read,
                            },
                            Err(_) => AskError::Timeout,
                        },
                        () = reply_path_reset(&mut resets) => AskError::Timeout,
                        () = tokio::time::sleep_until(deadline) => {
                            self.waiting.remove(&id);
                            return Err(AskError::Timeout);
                        }
                    },
                };
            self.waiting.remove(&id);
            if !pause_before_next(deadline, &mut attempt).await {
                return Err(failure);
            }
        }
    }

    /// The local delivery of a copy of `msg` to `to`, if this node serves it.
    fn try_local<M: BusMessage>(
        &self,
        to: &ActorId,
        msg: &M,
        deadline: tokio::time::Instant,
    ) -> Option<LocalDelivery> {
        let local = self.local.as_ref()?;
        local.deliver(to, M::TYPE, &|| Box::new(msg.clone()), deadline)
    }

    /// Tells actor `to` `msg`, whose reply nobody needs: handled here when
    /// this node serves its shard (returns once handled, or `timeout`
    /// after), else sent through the bus (returns once the bus holds it).
    /// After a failed local try it goes through the bus too.
    pub async fn tell<M: BusMessage>(
        &self,
        to: &ActorId,
        msg: &M,
        timeout: Duration,
    ) -> Result<(), AskError> {
        check_kind::<M>(to)?;
        let deadline = tokio::time::Instant::now() + timeout;
        if let Some(local) = self.try_local(to, msg, deadline) {
            match tokio::time::timeout_at(deadline, local).await {
                Ok(Ok(_)) => {
                    crate::metrics::bus::asked_locally("answered");
                    return Ok(());
                }
                Ok(Err(LocalFailure::Malformed(reason))) => return Err(AskError::Protocol(reason)),
                Ok(Err(LocalFailure::Failed(_))) | Err(_) => {
                    crate::metrics::bus::asked_locally("handed_to_bus");
                }
            }
        }
        let payload = encode(msg)?;
        // No deadline on the bus: a tell late in a busy queue is still
        // worth handling (and would be dead-lettered as late otherwise).
        let env = Envelope::raw(M::TYPE, payload).to(to.clone());
        self.bus.send(&env).await.map_err(AskError::Bus)
    }

    /// Sends `payload` as `msg_type` to actor `to` and waits up to `timeout`
    /// for its reply: one try, untyped (prefer [`Self::ask`]).
    pub async fn request<T: Serialize, R: DeserializeOwned>(
        &self,
        to: &ActorId,
        msg_type: &str,
        payload: &T,
        timeout: Duration,
    ) -> Result<R, RequestError> {
        let payload = serde_json::value::to_raw_value(payload)
            .map_err(|e| RequestError::Reply(crate::redact::describe_json_error(&e)))?;
        self.request_raw(to, msg_type, payload, timeout).await
    }

    async fn request_raw<R: DeserializeOwned>(
        &self,
        to: &ActorId,
        msg_type: &str,
        payload: Box<serde_json::value::RawValue>,
        timeout: Duration,
    ) -> Result<R, RequestError> {
        let env = Envelope::raw(msg_type, payload)
            .to(to.clone())
            .within(timeout)
            .reply_to(&self.address);
        let (tx, rx) = oneshot::channel();
        self.waiting.insert(env.id, tx);
        let id = env.id;
        let sent = self.bus.send(&env).await;
        if let Err(e) = sent {
            self.waiting.remove(&id);
            return Err(e.into());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => serde_json::from_str(reply.payload.get())
                .map_err(|e| RequestError::Reply(crate::redact::describe_json_error(&e))),
            _ => {
                self.waiting.remove(&id);
                Err(RequestError::Timeout(timeout))
            }
        }
    }
}

/// Pauses before try `attempt + 1` of an ask (and counts it), or returns
/// false when that try could not be answered: with almost no time left it
/// would only reach the actor after its deadline (and be dead-lettered as
/// late), so the last failure is the answer.
async fn pause_before_next(deadline: tokio::time::Instant, attempt: &mut u32) -> bool {
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let pause = retry_pause(*attempt);
    if left < pause + MIN_TRY {
        return false;
    }
    tokio::time::sleep(pause).await;
    *attempt += 1;
    true
}

/// An actor's encoded reply to `M`: [`AskError::Unavailable`] if it says
/// the actor cannot act now (asked again), a protocol error if it is no
/// `M::Reply`. The same rule whether it came locally or over the bus.
fn read_reply<M: BusMessage>(raw: &str) -> Result<M::Reply, AskError> {
    match serde_json::from_str::<M::Reply>(raw) {
        Ok(reply) if M::unavailable(&reply) => Err(AskError::Unavailable),
        Ok(reply) => Ok(reply),
        Err(e) => Err(AskError::Protocol(crate::redact::describe_json_error(&e))),
    }
}

/// The reply a local delivery gave, as [`read_reply`] reads one off the bus.
fn local_reply<M: BusMessage>(reply: AnyMessage) -> Result<M::Reply, AskError> {
    match reply.downcast::<M::Reply>() {
        Ok(reply) if M::unavailable(&reply) => Err(AskError::Unavailable),
        Ok(reply) => Ok(*reply),
        Err(_) => Err(AskError::Protocol(format!(
            "the local reply to {} is not its reply type",
            M::TYPE
        ))),
    }
}

/// Refuses `msg`'s type for an actor `to` of another kind.
fn check_kind<M: BusMessage>(to: &ActorId) -> Result<(), AskError> {
    if to.kind() != M::KIND {
        return Err(AskError::WrongKind {
            message: M::TYPE,
            actor: to.kind().to_owned(),
        });
    }
    Ok(())
}

/// `msg` as the payload of a message (its actor's kind checked before,
/// [`check_kind`]).
fn encode<M: BusMessage>(msg: &M) -> Result<Box<RawValue>, AskError> {
    serde_json::value::to_raw_value(msg)
        .map_err(|e| AskError::Protocol(crate::redact::describe_json_error(&e)))
}

/// Resolves when the reply subscription was set up again (its queue lost
/// with the connection); never if it cannot be lost or has ended.
async fn reply_path_reset(resets: &mut Option<watch::Receiver<u64>>) {
    super::counted(resets).await;
}

impl Drop for Requester {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::shard_of;
    use crate::bus::memory::MemoryBus;
    use crate::bus::BusOptions;

    /// A message whose reply says whether the actor could act.
    #[derive(Clone, serde::Serialize, serde::Deserialize)]
    struct Probe;

    impl BusMessage for Probe {
        const TYPE: &'static str = "consult.probe";
        const KIND: &'static str = "consult";
        type Reply = bool;
        fn unavailable(acted: &bool) -> bool {
            !acted
        }
    }

    fn setup() -> (Arc<dyn Bus>, ActorId, u16) {
        let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new(BusOptions {
            shards: 4,
            ..BusOptions::default()
        }));
        let to = ActorId::new("consult", "c-1").unwrap();
        let shard = shard_of(&to, 4);
        (bus, to, shard)
    }

    /// The messages waiting in `shard`'s queue (taken off it).
    async fn drain(bus: &Arc<dyn Bus>, shard: u16) -> Vec<Envelope> {
        let mut sub = bus.consume_shard(shard, 1000).await.unwrap();
        let mut got = Vec::new();
        while let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(50), sub.next()).await {
            got.push(d.envelope().unwrap());
            d.ack().await.unwrap();
        }
        got
    }

    #[tokio::test(start_paused = true)]
    async fn an_ask_nobody_consumes_leaves_one_copy_with_the_whole_deadline() {
        let (bus, to, shard) = setup();
        let req = Requester::new(Arc::clone(&bus)).await.unwrap();
        let start = tokio::time::Instant::now();
        let asked = req.ask(&to, &Probe, start + Duration::from_secs(10)).await;
        assert_eq!(asked, Err(AskError::Timeout));
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(10),
            "waited to the deadline"
        );
        let queued = drain(&bus, shard).await;
        assert_eq!(
            queued.len(),
            1,
            "one copy in the shard queue, not one per try"
        );
        // It carries the caller's whole deadline (wall clock, ~10 s from the ask).
        let deadline = queued[0].deadline_ms.unwrap();
        let now = crate::clock::unix_ms();
        assert!(deadline + 1_000 > now + 9_000, "{deadline} vs {now}");
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_are_asked_again_with_one_id_after_jittered_backoff_until_the_deadline() {
        let (bus, to, shard) = setup();
        let req = Requester::new(Arc::clone(&bus)).await.unwrap();
        // The actor: refuses every time, noting when each copy came.
        let mut sub = bus.consume_shard(shard, 10).await.unwrap();
        let (b, seen) = (
            Arc::clone(&bus),
            Arc::new(std::sync::Mutex::new(Vec::new())),
        );
        let s = Arc::clone(&seen);
        let actor = tokio::spawn(async move {
            while let Some(d) = sub.next().await {
                let env = d.envelope().unwrap();
                s.lock()
                    .unwrap()
                    .push((tokio::time::Instant::now(), env.id));
                let no = serde_json::value::to_raw_value(&false).unwrap();
                b.reply(env.reply_to.as_deref().unwrap(), &env.reply(no))
                    .await
                    .unwrap();
                d.ack().await.unwrap();
            }
        });
        let start = tokio::time::Instant::now();
        let deadline = start + Duration::from_secs(3);
        assert_eq!(
            req.ask(&to, &Probe, deadline).await,
            Err(AskError::Unavailable)
        );
        actor.abort();
        let seen = seen.lock().unwrap().clone();
        assert!(seen.len() >= 3, "asked again: {}", seen.len());
        assert!(
            seen.iter().all(|(_, id)| *id == seen[0].1),
            "one message id"
        );
        // Each pause within the backoff's jittered band for its attempt
        // (handling takes no time with the clock paused).
        for (attempt, w) in seen.windows(2).enumerate() {
            let gap = w[1].0 - w[0].0;
            let (least, most) = (
                ASK_RETRY.delay(attempt as u32, 1.0),
                ASK_RETRY.delay(attempt as u32, 0.0),
            );
            assert!(
                least <= gap && gap <= most,
                "pause {attempt}: {gap:?} not within {least:?}..={most:?}"
            );
        }
        // Never a try too late to be answered, and never past the deadline.
        let last = seen.last().unwrap().0;
        assert!(
            last + MIN_TRY <= deadline,
            "a try too close to the deadline"
        );
        assert!(tokio::time::Instant::now() <= deadline);
        // Once the pauses reach the cap, tries are ~0.25–0.5 s apart: a
        // bounded number within the deadline.
        assert!(seen.len() <= 20, "{} tries in 3 s", seen.len());
    }

    /// A local path that serves every actor with a fixed answer, counting
    /// its deliveries (the cluster's real one is tested in tests/it).
    struct Here {
        answer: Result<bool, LocalFailure>,
        serves: bool,
        delivered: std::sync::atomic::AtomicUsize,
    }

    impl LocalPath for Here {
        fn deliver(
            &self,
            _to: &ActorId,
            msg_type: &str,
            msg: &dyn Fn() -> AnyMessage,
            _deadline: tokio::time::Instant,
        ) -> Option<LocalDelivery> {
            if !self.serves {
                return None;
            }
            assert_eq!(msg_type, Probe::TYPE);
            assert!(
                msg().downcast::<Probe>().is_ok(),
                "the message as it is, not encoded"
            );
            self.delivered
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let answer = self.answer.clone().map(|a| Box::new(a) as AnyMessage);
            Some(Box::pin(async move { answer }))
        }
    }

    /// A requester on `bus` with a local path that serves (or not) with `answer`.
    async fn with_here(
        bus: &Arc<dyn Bus>,
        serves: bool,
        answer: Result<bool, LocalFailure>,
    ) -> (Requester, Arc<Here>) {
        let local = Arc::new(Here {
            answer,
            serves,
            delivered: Default::default(),
        });
        let req = Requester::new(Arc::clone(bus))
            .await
            .unwrap()
            .with_local(local.clone());
        (req, local)
    }

    #[tokio::test(start_paused = true)]
    async fn an_actor_served_here_is_asked_without_the_bus() {
        let (bus, to, shard) = setup();
        let (req, local) = with_here(&bus, true, Ok(true)).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        assert_eq!(req.ask(&to, &Probe, deadline).await, Ok(true));
        req.tell(&to, &Probe, Duration::from_secs(1)).await.unwrap();
        assert_eq!(local.delivered.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert!(drain(&bus, shard).await.is_empty(), "nothing on the bus");
    }

    #[tokio::test(start_paused = true)]
    async fn an_actor_not_served_here_is_asked_through_the_bus() {
        let (bus, to, shard) = setup();
        let (req, local) = with_here(&bus, false, Ok(true)).await;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        assert_eq!(req.ask(&to, &Probe, deadline).await, Err(AskError::Timeout));
        req.tell(&to, &Probe, Duration::from_secs(1)).await.unwrap();
        assert_eq!(local.delivered.load(std::sync::atomic::Ordering::SeqCst), 0);
        let queued = drain(&bus, shard).await;
        assert_eq!(queued.len(), 2, "the ask's one copy and the tell");
        assert!(
            queued[1].deadline_ms.is_none(),
            "a tell is not dropped as late"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_failed_local_try_the_ask_goes_through_the_bus_once() {
        for answer in [Ok(false), Err(LocalFailure::Failed("crashed".into()))] {
            let (bus, to, shard) = setup();
            let (req, local) = with_here(&bus, true, answer.clone()).await;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            assert_eq!(req.ask(&to, &Probe, deadline).await, Err(AskError::Timeout));
            assert_eq!(
                local.delivered.load(std::sync::atomic::Ordering::SeqCst),
                1,
                "{answer:?}: one local try"
            );
            assert_eq!(
                drain(&bus, shard).await.len(),
                1,
                "{answer:?}: then the bus"
            );
        }
    }

    /// A local path whose actor answers a reply of another type.
    struct Odd;

    impl LocalPath for Odd {
        fn deliver(
            &self,
            _to: &ActorId,
            _msg_type: &str,
            _msg: &dyn Fn() -> AnyMessage,
            _deadline: tokio::time::Instant,
        ) -> Option<LocalDelivery> {
            Some(Box::pin(async { Ok(Box::new("yes") as AnyMessage) }))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_local_reply_of_another_type_is_a_protocol_error() {
        let (bus, to, shard) = setup();
        let req = Requester::new(Arc::clone(&bus))
            .await
            .unwrap()
            .with_local(Arc::new(Odd));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        assert!(matches!(
            req.ask(&to, &Probe, deadline).await,
            Err(AskError::Protocol(_))
        ));
        assert!(drain(&bus, shard).await.is_empty(), "not asked again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_its_local_actor_cannot_read_is_a_protocol_error() {
        let (bus, to, shard) = setup();
        let (req, _) = with_here(
            &bus,
            true,
            Err(LocalFailure::Malformed("not a probe".into())),
        )
        .await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        assert_eq!(
            req.ask(&to, &Probe, deadline).await,
            Err(AskError::Protocol("not a probe".into()))
        );
        assert!(drain(&bus, shard).await.is_empty());
    }
}
