//! The cell: the actix actor that hosts one user [`Actor`].
//!
//! A cell owns the mailbox and outlives the incarnations of its actor: when a
//! handler panics the cell drops the (presumed broken) state, reports the crash to
//! its supervisor and keeps the mailbox; messages that arrive meanwhile wait in a
//! bounded stash until the supervisor restarts it (after backoff) or their
//! deadline passes, when they are handed back to their senders. One handler runs
//! at a time (`Context::wait`), so `&mut self` is exclusive for the whole of an
//! `async` handler.
//!
//! This file holds the cell's state and its spawn; the rest is split by
//! responsibility: `dispatch` runs one call's handler, `stash` holds calls
//! while the actor restarts, `lifecycle` boots, crashes, retires and stops
//! incarnations and answers the supervisor's `Control`, `passivation` lets
//! an idle cell leave its registry, `guard` turns a user future's panic,
//! kill or overrun into an outcome, and [`ActorRef`] sends to a cell.
//!
//! A cell never decides about restarts: that is its supervisor's job.

pub mod actor;
mod actor_ref;
mod dispatch;
mod guard;
mod lifecycle;
mod passivation;
mod stash;

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use actix::dev::channel;
use actix::{Addr, ArbiterHandle, Context};
use tokio::sync::oneshot;

use super::message::ExitReason;
use super::policy::{RestartPolicy, Shutdown};
use super::tree::{NodeInfo, Tree};
use super::Notices;
use actor::{Actor, Ctx};
use stash::Stashed;

pub use actor_ref::ActorRef;
pub(crate) use actor_ref::MAILBOX_RETRY;
pub(crate) use passivation::Index;

/// Bounds of a cell.
#[derive(Debug, Clone, Copy)]
pub struct CellLimits {
    /// Messages queued in the mailbox before senders wait.
    pub mailbox: usize,
    /// Messages held while the actor restarts.
    pub stash: usize,
}

impl Default for CellLimits {
    fn default() -> Self {
        Self {
            mailbox: 1024,
            stash: 1024,
        }
    }
}

pub(crate) type Factory<A> = Arc<dyn Fn(&str) -> A + Send + Sync>;

/// What all cells of one kind (or one static child) share: kept once, so an
/// idle actor costs only its own state.
pub(crate) struct CellShared<A: Actor> {
    pub factory: Factory<A>,
    pub tree: Tree,
    pub parent: Notices,
    /// For children started outside their supervisor: announce to it on start.
    pub announce: Option<(RestartPolicy, Shutdown)>,
    /// The registry entry to leave; weak: the registry owns the cells' config.
    pub index: Option<Weak<dyn Index>>,
    pub idle_timeout: Option<Duration>,
    pub limits: CellLimits,
    /// Bounds the `started` and `stopping` hooks, whoever waits for them.
    pub shutdown: Shutdown,
}

/// Everything needed to start a cell.
pub(crate) struct CellInit<A: Actor> {
    pub shared: Arc<CellShared<A>>,
    pub node: Arc<NodeInfo>,
    pub booted: Option<oneshot::Sender<Result<(), String>>>,
}

/// A stop under way: why, and who waits for it.
struct Exiting {
    reason: Option<ExitReason>,
    done: Vec<oneshot::Sender<()>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Running the factory and the `started` hook.
    Starting,
    Running,
    /// No state (crashed or suspended); messages are stashed.
    Restarting,
    Stopping,
    Stopped,
}

/// The actix actor hosting one user actor; see the module docs.
pub struct Cell<A: Actor> {
    /// The user actor; `None` while a handler runs (it is moved into the
    /// handler's future), after a crash, and when stopped.
    state: Option<Box<A>>,
    /// Moved along with `state`.
    ctx: Option<Ctx<A>>,
    shared: Arc<CellShared<A>>,
    node: Arc<NodeInfo>,
    /// Counts boots; crash notices carry it so supervisors can ignore stale ones.
    incarnation: u32,
    phase: Phase,
    stash: VecDeque<Box<dyn Stashed<A>>>,
    idle_armed: bool,
    draining_stash: bool,
    /// Stopped (state dropped) for a sibling's restart; waits for `Restart`.
    suspended: bool,
    /// Set by every message, cleared by the idle check: an actor passivates
    /// after one to two idle timeouts without messages, and the hot path reads
    /// no clock for it.
    active: bool,
    booted: Option<oneshot::Sender<Result<(), String>>>,
    exit: Option<Box<Exiting>>,
    exit_reported: bool,
}

impl<A: Actor> Cell<A> {
    /// Starts a cell on `arbiter` and returns its address at once; messages sent
    /// before the actor is up wait in the mailbox.
    pub(crate) fn spawn(arbiter: &ArbiterHandle, init: CellInit<A>) -> Addr<Self> {
        let (tx, rx) = channel::channel(init.shared.limits.mailbox);
        arbiter.spawn_fn(move || {
            let ctx = Context::with_receiver(rx);
            let cell = Cell {
                state: None,
                ctx: None,
                shared: init.shared,
                node: init.node,
                incarnation: 0,
                phase: Phase::Starting,
                stash: VecDeque::new(),
                idle_armed: false,
                draining_stash: false,
                suspended: false,
                active: true,
                booted: init.booted,
                exit: None,
                exit_reported: false,
            };
            actix_rt::spawn(ctx.into_future(cell));
        });
        Addr::new(tx)
    }
}
