//! The supervisor actor: starts children, watches them, restarts them by
//! strategy with backoff, and gives up (escalates) past its restart intensity.
//!
//! This file holds the supervisor's state (its phases and what it keeps of
//! each child) and the map of the room: [`spec`] says what to start,
//! [`lifecycle`] starts, suspends and stops the children as a whole and
//! answers its parent, [`restart`] reacts to one child's crash or end,
//! [`timeouts`] bounds each wait on a child, [`handle`] is the
//! [`SupervisorRef`] callers hold. It must not touch an actor's state, nor
//! know the bus, the store or HTTP.

mod handle;
mod lifecycle;
mod restart;
mod spec;
mod timeouts;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::message::ExitReason;
use super::policy::{RestartPolicy, RestartWindow, Shutdown};
use super::tree::{NodeInfo, Tree};
use super::{ArbiterPool, ChildHandle, Notices};

pub use handle::SupervisorRef;
pub use spec::{ChildSpec, SupervisorSpec};

pub(crate) enum Parent {
    Supervisor(Notices),
    /// The root: called once with the reason if the root gives up.
    Root(Arc<dyn Fn(String) + Send + Sync>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Starting,
    Running,
    /// Children stopped on the parent's request; waits for `Restart`/`Shutdown`.
    Suspended,
    /// Gave up after too many restarts; waits for its parent.
    Failed,
    Stopping,
}

struct Child {
    /// `None` for adopted children, which cannot be re-created here.
    spec: Option<Box<ChildSpec>>,
    handle: ChildHandle,
    restart: RestartPolicy,
    shutdown: Shutdown,
    /// The incarnation this supervisor expects to be current.
    incarnation: u32,
    /// Consecutive restarts (backoff attempt).
    series: u32,
    last_start: Instant,
    /// Per-child restart window, made on the first crash (if configured).
    window: Option<Box<RestartWindow>>,
    awaiting_restart: bool,
    /// Its actor ended and it is to be re-created from its spec at its next
    /// restart (its handle is stale meanwhile).
    gone: bool,
}

/// See the module docs.
pub struct Supervisor {
    spec: SupervisorSpec,
    node: Arc<NodeInfo>,
    tree: Tree,
    pool: ArbiterPool,
    parent: Parent,
    booted: Option<oneshot::Sender<Result<(), String>>>,
    /// Keyed by start order: the child's first node uid. A child re-created
    /// from its spec keeps its key (and so its place); `renamed` maps its new
    /// node uid to the key.
    children: BTreeMap<u64, Child>,
    renamed: HashMap<u64, u64>,
    window: RestartWindow,
    phase: Phase,
    incarnation: u32,
    rng: fastrand::Rng,
    /// Lowest key of a crashed child whose group restart is scheduled.
    group_pending: Option<u64>,
    exit_reason: Option<ExitReason>,
    stop_done: Vec<oneshot::Sender<()>>,
    exit_reported: bool,
}
