//! [`ActorRef`]: a typed handle to one running actor, which puts calls in
//! its cell's mailbox and waits for their answers until a deadline.
//!
//! It never touches the cell's state: only the mailbox and the node's depth
//! counter.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::{Addr, Message};
use tokio::time::Instant;

use super::actor::{Actor, Handler};
use super::Cell;
use crate::supervisors::backoff::Backoff;
use crate::supervisors::message::{Call, Pending, Reply, SendError};
use crate::supervisors::tree::{NodeInfo, Status};

/// Pauses before sending again to a full mailbox: 1 ms doubling to 50 ms.
pub(crate) const MAILBOX_RETRY: Backoff =
    Backoff::doubling(Duration::from_millis(1), Duration::from_millis(50), 0.0);

/// A typed handle to one running actor. Cheap to clone.
pub struct ActorRef<A: Actor> {
    pub(crate) addr: Addr<Cell<A>>,
    pub(crate) node: Arc<NodeInfo>,
}

impl<A: Actor> Clone for ActorRef<A> {
    fn clone(&self) -> Self {
        Self {
            addr: self.addr.clone(),
            node: Arc::clone(&self.node),
        }
    }
}

impl<A: Actor> ActorRef<A> {
    /// Path in the supervision tree.
    pub fn path(&self) -> &str {
        &self.node.path
    }

    pub fn node(&self) -> &Arc<NodeInfo> {
        &self.node
    }

    /// Puts `msg` in the mailbox without waiting; the receiver yields the reply.
    pub(crate) fn enqueue<M>(&self, msg: M, deadline: Instant) -> Result<Pending<M>, SendError<M>>
    where
        A: Handler<M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        let (call, pending) = Call::new(msg, deadline);
        self.node.depth.fetch_add(1, Ordering::Relaxed);
        match self.addr.try_send(call) {
            Ok(()) => Ok(pending),
            Err(err) => {
                self.node.depth.fetch_sub(1, Ordering::Relaxed);
                let (call, full) = match err {
                    actix::prelude::SendError::Full(call) => (call, true),
                    actix::prelude::SendError::Closed(call) => (call, false),
                };
                let msg = call.into_message();
                Err(if full {
                    SendError::MailboxFull(msg)
                } else {
                    SendError::Stopped(msg)
                })
            }
        }
    }

    /// Sends `msg` and waits for the reply until `deadline`. A full mailbox is
    /// retried (with growing pauses) until the deadline.
    pub async fn send_until<M>(&self, msg: M, deadline: Instant) -> Reply<M>
    where
        A: Handler<M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        let mut msg = msg;
        let mut attempt = 0;
        loop {
            match self.enqueue(msg, deadline) {
                Ok(pending) => {
                    return pending
                        .wait(|| self.node.status() == Status::Restarting)
                        .await
                }
                Err(SendError::MailboxFull(back))
                    if Instant::now() + MAILBOX_RETRY.delay(attempt, 0.0) < deadline =>
                {
                    msg = back;
                    tokio::time::sleep(MAILBOX_RETRY.delay(attempt, 0.0)).await;
                    attempt = attempt.saturating_add(1);
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// [`Self::send_until`] with a deadline `timeout` from now.
    pub async fn send<M>(&self, msg: M, timeout: Duration) -> Reply<M>
    where
        A: Handler<M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        self.send_until(msg, Instant::now() + timeout).await
    }
}
