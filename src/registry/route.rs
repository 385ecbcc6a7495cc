//! Typed delivery of bus payloads to actors: decode, send, encode the reply.

use std::marker::PhantomData;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::Kind;
use crate::bus::client::AnyMessage;
use crate::redact::describe_json_error;
use crate::supervisors::Handler;
use crate::supervisors::SendError;

/// Why a delivery did not produce a reply. The inbox decides from it whether to
/// dead-letter (`Malformed`) or to requeue for redelivery (the rest).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliverError {
    /// The payload cannot be this message type; redelivery cannot help.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The handler panicked on it.
    #[error("actor crashed: {0}")]
    Crashed(String),
    /// The actor could not take it in time (restarting, stopped, full).
    #[error("actor unavailable: {0}")]
    Unavailable(String),
}

pub(crate) trait Route: Send + Sync {
    /// Where actor `id` of this route's kind sits in the supervision tree.
    fn actor_path(&self, id: &str) -> String;

    fn deliver(
        &self,
        id: &str,
        payload: &RawValue,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Box<RawValue>, DeliverError>>;

    /// [`Self::deliver`] of a message that never left this process: `msg`
    /// is the route's message type, boxed, and the reply comes back boxed,
    /// neither encoded (the local path, [`crate::bus::client::LocalPath`]).
    /// Another type is `Malformed`.
    fn deliver_typed(&self, id: &str, msg: AnyMessage, deadline: Instant) -> TypedDelivery;
}

/// A typed delivery under way: the actor's reply, boxed, or why none.
pub type TypedDelivery = BoxFuture<'static, Result<AnyMessage, DeliverError>>;

struct Typed<A: crate::supervisors::Actor, M: actix::Message> {
    kind: Kind<A>,
    /// Only to a live actor; otherwise `M`'s default reply (see
    /// `Registry::route_if_live`).
    if_live: Option<fn() -> M::Result>,
    _message: PhantomData<fn() -> M>,
}

pub(crate) fn typed<A, M>(kind: Kind<A>) -> Arc<dyn Route>
where
    A: Handler<M>,
    M: actix::Message + DeserializeOwned + Send + 'static,
    M::Result: Serialize + Send,
{
    Arc::new(Typed::<A, M> {
        kind,
        if_live: None,
        _message: PhantomData,
    })
}

pub(crate) fn if_live<A, M>(kind: Kind<A>) -> Arc<dyn Route>
where
    A: Handler<M>,
    M: actix::Message + DeserializeOwned + Send + 'static,
    M::Result: Serialize + Send + Default,
{
    Arc::new(Typed::<A, M> {
        kind,
        if_live: Some(M::Result::default),
        _message: PhantomData,
    })
}

impl<A, M> Typed<A, M>
where
    A: Handler<M>,
    M: actix::Message + Send + 'static,
    M::Result: Send,
{
    /// `msg` (or why it is none) handled by actor `id`: its reply.
    fn handle(
        &self,
        id: &str,
        msg: Result<M, DeliverError>,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<M::Result, DeliverError>> {
        if let Some(default) = self.if_live {
            if msg.is_ok() && self.kind.get(id).is_none() {
                return Box::pin(async move { Ok(default()) });
            }
        }
        let kind = self.kind.clone();
        let id = id.to_owned();
        Box::pin(async move {
            match kind.send_until(&id, msg?, deadline).await {
                Ok(reply) => Ok(reply),
                Err(SendError::Crashed { reason }) => Err(DeliverError::Crashed(reason)),
                Err(SendError::InvalidId(_)) => {
                    Err(DeliverError::Malformed("invalid actor id".into()))
                }
                Err(other) => Err(DeliverError::Unavailable(other.to_string())),
            }
        })
    }
}

impl<A, M> Route for Typed<A, M>
where
    A: Handler<M>,
    M: actix::Message + DeserializeOwned + Send + 'static,
    M::Result: Serialize + Send,
{
    fn actor_path(&self, id: &str) -> String {
        format!("{}/{id}", self.kind.supervisor().path())
    }

    fn deliver(
        &self,
        id: &str,
        payload: &RawValue,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Box<RawValue>, DeliverError>> {
        let decoded = serde_json::from_str::<M>(payload.get())
            .map_err(|e| DeliverError::Malformed(describe_json_error(&e)));
        let handled = self.handle(id, decoded, deadline);
        Box::pin(async move {
            serde_json::value::to_raw_value(&handled.await?).map_err(|e| {
                DeliverError::Malformed(format!("reply not encodable: {}", describe_json_error(&e)))
            })
        })
    }

    fn deliver_typed(&self, id: &str, msg: AnyMessage, deadline: Instant) -> TypedDelivery {
        let msg = msg
            .downcast::<M>()
            .map(|m| *m)
            .map_err(|_| DeliverError::Malformed(format!("not a {}", std::any::type_name::<M>())));
        let handled = self.handle(id, msg, deadline);
        Box::pin(async move { Ok(Box::new(handled.await?) as AnyMessage) })
    }
}
