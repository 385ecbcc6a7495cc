//! The stash: calls that arrive while the actor has no state (starting,
//! restarting, suspended) wait here, bounded, oldest first, until the
//! actor is back, their sender takes them back at its deadline, or the cell
//! stops and refuses them.
//!
//! A stashed call still counts in the cell's mailbox depth (passivation
//! reads it); nothing here runs a handler except through `run_call`.

use std::sync::atomic::Ordering;

use actix::{AsyncContext, Context, Message};
use tokio::time::Instant;

use super::actor::{Actor, Handler};
use super::{Cell, Phase};
use crate::supervisors::message::{Call, Refusal};

/// A stashed call of any message type the actor handles.
pub(super) trait Stashed<A: Actor> {
    fn deadline(&self) -> Instant;
    fn abandoned(&self) -> bool;
    fn run(self: Box<Self>, cell: &mut Cell<A>, actx: &mut Context<Cell<A>>);
    fn refuse(self: Box<Self>, why: Refusal);
}

impl<A, M> Stashed<A> for Call<M>
where
    A: Handler<M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    fn deadline(&self) -> Instant {
        self.deadline
    }
    fn abandoned(&self) -> bool {
        Call::abandoned(self)
    }
    fn run(self: Box<Self>, cell: &mut Cell<A>, actx: &mut Context<Cell<A>>) {
        cell.run_call(*self, actx)
    }
    fn refuse(self: Box<Self>, why: Refusal) {
        Call::refuse(*self, why)
    }
}

impl<A: Actor> Cell<A> {
    /// Takes the next stashed call, if the actor can run it now. Handlers that
    /// finish at once come back here through `after_call`: the loop, not
    /// recursion, drains them.
    pub(super) fn next_stashed(&mut self, actx: &mut Context<Self>) {
        if self.draining_stash {
            return;
        }
        self.draining_stash = true;
        self.drain_stash(actx);
        self.draining_stash = false;
    }

    fn drain_stash(&mut self, actx: &mut Context<Self>) {
        while self.phase == Phase::Running && !actx.waiting() {
            let Some(stashed) = self.stash.pop_front() else {
                return;
            };
            self.node.depth.fetch_sub(1, Ordering::Relaxed);
            if stashed.deadline() <= Instant::now() {
                stashed.refuse(Refusal::Restarting);
                continue;
            }
            stashed.run(self, actx);
        }
    }

    /// Holds a call until the actor is back (it still counts in the mailbox
    /// depth). Senders take their message back at its deadline themselves;
    /// calls they gave up on make room when full.
    pub(super) fn stash(&mut self, stashed: Box<dyn Stashed<A>>, _: &mut Context<Self>) {
        if self.stash.len() >= self.shared.limits.stash {
            let before = self.stash.len();
            self.stash.retain(|s| !s.abandoned());
            let pruned = (before - self.stash.len()) as u32;
            self.node.depth.fetch_sub(pruned, Ordering::Relaxed);
        }
        if self.stash.len() >= self.shared.limits.stash {
            stashed.refuse(Refusal::Full);
            return;
        }
        self.node.depth.fetch_add(1, Ordering::Relaxed);
        self.stash.push_back(stashed);
    }

    /// Refuses everything stashed (the actor is stopping).
    pub(super) fn refuse_stash(&mut self) {
        let n = self.stash.len() as u32;
        self.node.depth.fetch_sub(n, Ordering::Relaxed);
        for stashed in self.stash.drain(..) {
            stashed.refuse(Refusal::Stopped);
        }
    }
}
