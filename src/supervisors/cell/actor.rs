//! The actor model cardio's entities are written in: an [`Actor`] kind, a
//! [`Handler`] per message type and the [`Ctx`] a handler may ask of the
//! runtime. The runtime (the [`super::Cell`] this module belongs to) hosts each actor, runs
//! one handler at a time, catches panics and reports them to the supervisor.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix::WeakAddr;

use super::Cell;
use crate::supervisors::message::Call;
use crate::supervisors::tree::NodeInfo;

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
