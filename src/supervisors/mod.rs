//! OTP-style supervision over actix.
//!
//! actix's own `Supervisor` restarts one actor forever when it stops itself; it
//! has no strategy, no restart limit, no backoff, no tree and it does not see
//! panics. This module builds Erlang/OTP semantics on top:
//!
//! - [`ChildSpec`]: id, start function, [`RestartPolicy`], [`Shutdown`];
//! - [`SupervisorSpec`]: [`Strategy`] (one-for-one, one-for-all, rest-for-one),
//!   restart [`Intensity`], restart [`Backoff`], per-child intensity for
//!   dynamic (per-entity) children;
//! - [`cell`]: hosts one actor, catches panics in its handlers and hooks;
//! - [`tree`]: snapshots of the live tree and a stream of supervision events.
//!
//! Supervisors know nothing of the bus, the store or HTTP.

pub mod backoff;
pub mod cell;
pub mod dead_letters;
pub mod message;
pub mod policy;
mod supervisor;
pub mod tree;

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::{Addr, ArbiterHandle, Recipient, WeakAddr};

pub use backoff::Backoff;
pub use cell::actor;
pub use cell::actor::{Actor, Ctx, Handler};
pub use cell::{ActorRef, CellLimits};
pub use message::{ExitReason, SendError};
pub use policy::{Intensity, RestartPolicy, Shutdown, Strategy};
pub use supervisor::{ChildSpec, Supervisor, SupervisorRef, SupervisorSpec};
pub use tree::{EventKind, NodeSnapshot, Status, SupervisionEvent, Tree, TreeView};

use message::{ChildNotice, Control};
use tree::NodeInfo;

/// Where a child sends its notices; shared by all children of a kind.
pub(crate) type Notices = Arc<Recipient<ChildNotice>>;

/// How a supervisor reaches a child. Cells are reached through a weak address:
/// a strong one costs two allocations per clone in actix, and 100,000 entity
/// actors should not pay for it.
pub(crate) trait ControlSink: Send + Sync {
    fn do_send(&self, msg: Control);
}

impl<A: Actor> ControlSink for WeakAddr<cell::Cell<A>> {
    fn do_send(&self, msg: Control) {
        // A gone cell drops `msg`, and with it any `done` sender: the waiting
        // supervisor then sees the child as stopped.
        if let Some(addr) = self.upgrade() {
            addr.do_send(msg);
        }
    }
}

impl ControlSink for Addr<Supervisor> {
    fn do_send(&self, msg: Control) {
        Addr::do_send(self, msg);
    }
}

/// What a supervisor holds of a child.
pub(crate) struct ChildHandle {
    pub node: Arc<NodeInfo>,
    pub control: Arc<dyn ControlSink>,
    /// A typed handle (`ActorRef<A>` or `SupervisorRef`) for lookups.
    pub addr: Option<Arc<dyn Any + Send + Sync>>,
}

/// The arbiters (one OS thread each) that actors are spread over.
#[derive(Clone)]
pub struct ArbiterPool {
    arbiters: Arc<[ArbiterHandle]>,
    next: Arc<AtomicUsize>,
}

impl ArbiterPool {
    /// A pool of the given arbiters; it must not be empty.
    pub fn new(arbiters: Vec<ArbiterHandle>) -> Self {
        assert!(!arbiters.is_empty(), "an arbiter pool needs an arbiter");
        Self {
            arbiters: arbiters.into(),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Only the calling thread's arbiter (tests with paused time use this).
    pub fn current() -> Self {
        Self::new(vec![actix::Arbiter::current()])
    }

    /// Round-robin choice of an arbiter for the next actor.
    pub fn next(&self) -> &ArbiterHandle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.arbiters.len();
        &self.arbiters[i]
    }

    pub fn len(&self) -> usize {
        self.arbiters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.arbiters.is_empty()
    }
}
