//! Request–reply over the bus from outside any actor: what the API, tools and
//! tests use to reach an actor wherever it lives.
//!
//! A [`Requester`] subscribes to a reply topic of its own and matches replies
//! to requests by correlation id. [`Requester::ask`] is the typed way in: a
//! [`BusMessage`] goes to its actor and its `Reply` comes back, asked again
//! (after a pause of the project's one [`Backoff`]) while the cluster cannot
//! answer yet, until the caller's deadline. A request that got no answer may
//! still have been applied: the idempotency key inside each command message
//! (its request id) makes asking again safe. [`Requester::request`] is the
//! untyped single try underneath (tests use it to send shapes no type has).

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;

use super::{Bus, BusError, BusMessage, Envelope, MessageId};
use crate::address::ActorId;
use crate::supervisors::Backoff;

/// Longest wait for one try's answer; a later try may still answer in time.
const TRY_TIMEOUT: Duration = Duration::from_secs(3);
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

/// The pause before try `attempt + 1` of an ask: 20 ms doubling to 500 ms,
/// jittered, so a refusal that comes back at once is not asked again in a
/// tight loop while a shard moves.
pub fn retry_pause(attempt: u32) -> Duration {
    const PAUSE: Backoff =
        Backoff::doubling(Duration::from_millis(20), Duration::from_millis(500), 0.5);
    PAUSE.delay(attempt, fastrand::f64())
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

/// See the module docs.
pub struct Requester {
    bus: Arc<dyn Bus>,
    topic: String,
    waiting: Waiting,
    task: tokio::task::JoinHandle<()>,
}

impl Requester {
    /// Subscribes to a fresh reply topic on `bus`.
    pub async fn new(bus: Arc<dyn Bus>) -> Result<Requester, BusError> {
        let topic = format!("reply.{}", uuid::Uuid::new_v4().simple());
        let mut sub = bus.subscribe(&topic, 256).await?;
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
            topic,
            waiting,
            task,
        })
    }

    /// Asks actor `to` with `msg` and returns its answer; asks again, after a
    /// [`retry_pause`], while the answer is a transient failure (no answer
    /// within a try, the bus refusing the send, the actor answering that it
    /// cannot act now), until `deadline`. See [`AskError`].
    pub async fn ask<M: BusMessage>(
        &self,
        to: &ActorId,
        msg: &M,
        deadline: tokio::time::Instant,
    ) -> Result<M::Reply, AskError> {
        if to.kind() != M::KIND {
            return Err(AskError::WrongKind {
                message: M::TYPE,
                actor: to.kind().to_owned(),
            });
        }
        let payload = serde_json::value::to_raw_value(msg)
            .map_err(|e| AskError::Protocol(crate::redact::describe_json_error(&e)))?;
        let mut attempt = 0;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let failure = match self
                .request_raw::<M::Reply>(to, M::TYPE, payload.clone(), left.min(TRY_TIMEOUT))
                .await
            {
                Ok(reply) if M::unavailable(&reply) => AskError::Unavailable,
                Ok(reply) => return Ok(reply),
                Err(RequestError::Timeout(_)) => AskError::Timeout,
                Err(RequestError::Bus(e)) => AskError::Bus(e),
                Err(RequestError::Reply(why)) => return Err(AskError::Protocol(why)),
            };
            // A try with almost no time left could not be answered: it would
            // only reach the actor after its deadline (and be dead-lettered
            // as late). The last failure is the answer.
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let pause = retry_pause(attempt);
            if left < pause + MIN_TRY {
                return Err(failure);
            }
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
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
            .reply_to(&self.topic);
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

impl Drop for Requester {
    fn drop(&mut self) {
        self.task.abort();
    }
}
