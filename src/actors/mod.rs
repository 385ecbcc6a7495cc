//! The actor model cardio's entities are written in.
//!
//! An actor is plain state plus one [`Handler`] per message type; messages are
//! actix messages (`#[derive(actix::Message)] #[rtype(result = "...")]`). The
//! runtime hosts each actor in its own actix actor (a *cell*, see
//! `supervisors::cell`) that owns the mailbox, runs one handler at a time, catches
//! panics and reports them to the supervisor. Handlers are `async` and have
//! `&mut self` for their whole run; no other message is handled meanwhile.
//!
//! Actors never talk to sqlx, lapin or actix-web: they get what they need through
//! their constructor (the factory a supervisor calls on every (re)start).

pub mod consult;
pub mod device;
pub mod session;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix::WeakAddr;

use crate::supervisors::cell::Cell;
use crate::supervisors::message::Call;
use crate::supervisors::tree::NodeInfo;

/// Decodes a journal entry or snapshot; `None` (logged, without the bytes,
/// which may hold PHI) if it does not decode, so that one bad entry cannot
/// crash-loop its actor.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
    actor: &str,
) -> Option<T> {
    match serde_json::from_slice(bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            let reason = crate::registry::describe_json_error(&e);
            tracing::error!(%actor, what, %reason, "stored state does not decode; skipped");
            None
        }
    }
}

/// The value, or a crash whose message names only `what` (a store error may
/// quote ids; the log gets its kind): the supervisor retries with backoff.
pub(crate) fn or_crash<T>(
    result: Result<T, crate::store::StoreError>,
    what: &'static str,
    actor: &str,
) -> T {
    match result {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(%actor, error = %e, "{what}");
            panic!("{what}");
        }
    }
}

/// What an actor starts from: its latest snapshot (if any decodes), the
/// sequence that snapshot covers, and the journal entries after it.
pub(crate) struct Recovered<S> {
    pub snapshot: Option<S>,
    pub snapshot_seq: u64,
    pub tail: Vec<crate::store::Event>,
}

/// Reads `key`'s snapshot and the journal after it; a store that cannot be
/// read is a crash (the supervisor retries with backoff), a snapshot that does
/// not decode is ignored (the whole journal is replayed).
pub(crate) async fn recover<S: serde::de::DeserializeOwned>(
    store: &crate::store::Store,
    key: &str,
) -> Recovered<S> {
    let saved = or_crash(store.snapshot(key).await, "actor snapshot unreadable", key);
    let (snapshot, snapshot_seq) = match saved {
        Some(s) => match decode::<S>(&s.payload, "snapshot", key) {
            Some(state) => (Some(state), s.seq),
            None => (None, 0),
        },
        None => (None, 0),
    };
    let tail = or_crash(
        store.events(key, snapshot_seq).await,
        "actor journal unreadable",
        key,
    );
    Recovered {
        snapshot,
        snapshot_seq,
        tail,
    }
}

/// An actor kind. `KIND` is the first half of its logical address (`consult/42`).
pub trait Actor: Sized + 'static {
    /// Short, lowercase, stable: it names shards, tree paths and metrics.
    const KIND: &'static str;

    /// Runs on every (re)start before the first message: recover state here.
    /// A panic here counts as a crash of the actor.
    fn started(&mut self, ctx: &mut Ctx<Self>) -> impl Future<Output = ()> {
        let _ = ctx;
        async {}
    }

    /// Runs before a graceful stop (shutdown, passivation, sibling restart):
    /// flush state here. The parent's shutdown timeout bounds it. It does not run
    /// after a crash: the state is presumed broken.
    fn stopping(&mut self, ctx: &mut Ctx<Self>) -> impl Future<Output = ()> {
        let _ = ctx;
        async {}
    }
}

/// Handling of one message type.
pub trait Handler<M: actix::Message>: Actor {
    fn handle(&mut self, msg: M, ctx: &mut Ctx<Self>) -> impl Future<Output = M::Result>;
}

/// What a handler may ask of the runtime about itself.
pub struct Ctx<A: Actor> {
    node: Arc<NodeInfo>,
    /// Weak: a strong actix address costs two allocations per actor.
    addr: WeakAddr<Cell<A>>,
    pub(crate) stop_requested: bool,
    /// The incarnation running now; its timers die with it.
    pub(crate) incarnation: u32,
}

impl<A: Actor> Ctx<A> {
    pub(crate) fn new(node: Arc<NodeInfo>, addr: WeakAddr<Cell<A>>) -> Self {
        Self {
            node,
            addr,
            stop_requested: false,
            incarnation: 0,
        }
    }

    /// The actor's id within its kind (`42` for `consult/42`).
    pub fn id(&self) -> &str {
        &self.node.id
    }

    /// The actor's path in the supervision tree.
    pub fn path(&self) -> &str {
        &self.node.path
    }

    /// Stops the actor normally once the current handler returns. Its supervisor
    /// restarts it only if its policy is `permanent`.
    pub fn stop(&mut self) {
        self.stop_requested = true;
    }

    pub(crate) fn node(&self) -> &Arc<NodeInfo> {
        &self.node
    }

    /// Delivers `msg` to this actor after `delay` (timers: idle timeouts, alert
    /// windows). Timers die with the incarnation that set them: if the actor
    /// crashed, restarted, passivated or stopped by then, the message is
    /// dropped. A timer that must outlive the incarnation is re-armed in
    /// `started` from the recovered state (the consult's no-show check does).
    pub fn notify_later<M>(&self, delay: Duration, msg: M)
    where
        A: Handler<M>,
        M: actix::Message + Send + 'static,
        M::Result: Send,
    {
        let addr = self.addr.clone();
        let node = Arc::clone(&self.node);
        let incarnation = self.incarnation;
        actix_rt::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(addr) = addr.upgrade() {
                node.depth
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // A timer's own message bypasses the mailbox bound: it is bounded
                // by the timers the actor set, not by outside senders.
                addr.do_send(Call::timer(
                    msg,
                    tokio::time::Instant::now() + delay.max(Duration::from_secs(60)),
                    incarnation,
                ));
            }
        });
    }
}
