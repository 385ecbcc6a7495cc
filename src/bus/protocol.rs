//! The typed protocol across the bus: what a remote caller may send to an
//! actor, and what actors publish for subscribers.
//!
//! A [`BusMessage`] is a Rust type that carries its wire name (`TYPE`), the
//! kind of actor that handles it (`KIND`) and the type of its answer
//! (`Reply`). The registry routes a message type to the kind's handler by it
//! (`Registry::route`), and a caller asks by it
//! (`Requester::ask::<M>(&to, &msg, deadline) -> Result<M::Reply, AskError>`),
//! so the compiler follows a request from the API's resolver to the actor's
//! handler and back. A [`BusEvent`] is the same for published events.
//!
//! Wire names are stable: a name is never reused for another shape. A change
//! to a message's shape that old nodes cannot read gets a new name (and the
//! old route stays until no node of the old version is left), so nodes of
//! adjacent versions keep talking during a rolling upgrade; a payload that
//! does not decode as its type is dead-lettered with the reason, never read
//! as something else.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A message a remote caller may send to an actor (see the module docs).
///
/// `Clone`: an ask of an actor this node serves hands the actor a copy of
/// the message as it is, without encoding it ([`crate::bus::client`]'s
/// local path).
pub trait BusMessage: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The wire name, `<kind>.<verb>`.
    const TYPE: &'static str;
    /// The kind of actor that handles it (`consult`, `device`, `session`).
    const KIND: &'static str;
    /// What the handler answers.
    type Reply: Serialize + DeserializeOwned + Send + 'static;

    /// Whether `reply` says the actor cannot act *now* (its database away,
    /// its shard moving): a transient refusal the caller may ask again, with
    /// the same idempotency key, until its deadline. No reply is, by default.
    fn unavailable(_reply: &Self::Reply) -> bool {
        false
    }
}

/// An event actors publish on a topic for subscribers (see the module docs).
pub trait BusEvent: Serialize + DeserializeOwned + Send + 'static {
    /// The wire name of the event (`consult.event`), or of its family.
    const TYPE: &'static str;

    /// The wire name this event is published under (its family's member, for
    /// families such as `alert.*`).
    fn msg_type(&self) -> &'static str {
        Self::TYPE
    }

    /// Whether an envelope of `msg_type` carries this event.
    fn carried_by(msg_type: &str) -> bool {
        msg_type == Self::TYPE
    }
}
