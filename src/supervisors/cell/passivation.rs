//! Passivation: a cell idle for one to two idle timeouts, with nothing
//! queued or stashed, leaves its registry entry (the [`Index`] hand-shake)
//! and stops; its actor comes back on its next message.
//!
//! It must not stop a cell that a message can still reach: the registry's
//! `try_passivate` decides that under its lock.

use std::sync::{Arc, Weak};

use actix::{AsyncContext, Context};

use super::actor::Actor;
use super::{Cell, Phase};
use crate::supervisors::message::ExitReason;
use crate::supervisors::tree::NodeInfo;

/// What the registry offers a cell so that the cell can leave it.
pub(crate) trait Index: Send + Sync {
    /// Removes `node`'s entry if it is still the one registered.
    fn forget(&self, node: &Arc<NodeInfo>);
    /// Removes `node`'s entry only if nothing is queued for it; true if removed.
    /// After it returns true, no new message can reach this cell.
    fn try_passivate(&self, node: &Arc<NodeInfo>) -> bool;
}

impl<A: Actor> Cell<A> {
    pub(super) fn index(&self) -> Option<Arc<dyn Index>> {
        self.shared.index.as_ref().and_then(Weak::upgrade)
    }

    pub(super) fn arm_idle(&mut self, actx: &mut Context<Self>) {
        if let (Some(timeout), false) = (self.shared.idle_timeout, self.idle_armed) {
            self.idle_armed = true;
            actx.run_later(timeout, |cell, actx| cell.idle_check(actx));
        }
    }

    fn idle_check(&mut self, actx: &mut Context<Self>) {
        self.idle_armed = false;
        let Some(timeout) = self.shared.idle_timeout else {
            return;
        };
        if self.phase != Phase::Running {
            return; // re-armed by the next boot
        }
        let idle = !std::mem::replace(&mut self.active, false);
        if idle && self.stash.is_empty() && self.node.mailbox_depth() == 0 {
            let leave = match self.index() {
                Some(index) => index.try_passivate(&self.node),
                None => true,
            };
            if leave {
                self.begin_stop(ExitReason::Passivated, actx);
                return;
            }
        }
        self.idle_armed = true;
        actx.run_later(timeout, |cell, actx| cell.idle_check(actx));
    }
}
