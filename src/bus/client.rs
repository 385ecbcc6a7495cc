//! Request–reply over the bus from outside any actor: what tools, tests and
//! (later) API handlers use to reach an actor wherever it lives.
//!
//! A [`Requester`] subscribes to a reply topic of its own and matches replies
//! to requests by correlation id. A request that times out may still have
//! been applied: retry it with the same idempotency key (request id) and the
//! actor answers without applying it twice.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;

use super::{Bus, BusError, Envelope, MessageId};
use crate::registry::ActorId;

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
            while let Some((env, _)) = sub.next_event::<serde::de::IgnoredAny>().await {
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

    /// Sends `payload` as `msg_type` to actor `to` and waits up to `timeout`
    /// for its reply.
    pub async fn request<T: Serialize, R: DeserializeOwned>(
        &self,
        to: &ActorId,
        msg_type: &str,
        payload: &T,
        timeout: Duration,
    ) -> Result<R, RequestError> {
        let env = Envelope::new(msg_type, payload)
            .map_err(|e| RequestError::Reply(e.to_string()))?
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
                .map_err(|e| RequestError::Reply(crate::registry::describe_json_error(&e))),
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
