//! What a supervisor starts: [`ChildSpec`] (one child: how to start it, when
//! to restart it, how long it may take to stop) and [`SupervisorSpec`] (a
//! supervisor's strategy, intensity, backoff and static children).
//!
//! Specs are values built before anything runs; their start functions are
//! the only code here that spawns. Nothing here decides about restarts.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::{Parent, Supervisor};
use crate::supervisors::backoff::Backoff;
use crate::supervisors::cell::{ActorRef, Cell, CellInit, CellLimits, CellShared};
use crate::supervisors::policy::{Intensity, RestartPolicy, Shutdown, Strategy};
use crate::supervisors::tree::{NodeInfo, NodeKind, Tree};
use crate::supervisors::Actor;
use crate::supervisors::{ArbiterPool, ChildHandle, Notices};

/// What a child's start function gets from its supervisor.
pub(crate) struct StartArgs {
    pub parent_node: Arc<NodeInfo>,
    pub parent: Notices,
    pub tree: Tree,
    pub pool: ArbiterPool,
    pub booted: Option<oneshot::Sender<Result<(), String>>>,
    /// Bounds the child's own start and stop hooks.
    pub shutdown: Shutdown,
}

pub(super) type StartFn = Arc<dyn Fn(StartArgs) -> ChildHandle + Send + Sync>;

/// How to start one child and when to restart it.
#[derive(Clone)]
pub struct ChildSpec {
    pub(super) id: String,
    pub(super) restart: RestartPolicy,
    pub(super) shutdown: Shutdown,
    pub(super) start: StartFn,
}

impl ChildSpec {
    /// A worker hosting actor `A`, built by `factory` on every (re)start.
    /// Defaults: permanent, 5 s shutdown timeout.
    pub fn worker<A: Actor>(
        id: impl Into<String>,
        factory: impl Fn() -> A + Send + Sync + 'static,
    ) -> Self {
        Self::worker_with(id, factory, CellLimits::default())
    }

    /// [`Self::worker`] with explicit mailbox and stash bounds.
    pub fn worker_with<A: Actor>(
        id: impl Into<String>,
        factory: impl Fn() -> A + Send + Sync + 'static,
        limits: CellLimits,
    ) -> Self {
        let id = id.into();
        let factory: Arc<dyn Fn(&str) -> A + Send + Sync> = Arc::new(move |_: &str| factory());
        let child_id = id.clone();
        Self {
            id,
            restart: RestartPolicy::Permanent,
            shutdown: Shutdown::Timeout(Duration::from_secs(5)),
            start: Arc::new(move |args: StartArgs| {
                let node = NodeInfo::new(
                    Some(&args.parent_node),
                    &child_id,
                    NodeKind::Worker(A::KIND),
                );
                args.tree.insert(&node);
                let addr = Cell::<A>::spawn(
                    args.pool.next(),
                    CellInit {
                        shared: Arc::new(CellShared {
                            factory: Arc::clone(&factory),
                            tree: args.tree.clone(),
                            parent: args.parent,
                            announce: None,
                            index: None,
                            idle_timeout: None,
                            limits,
                            shutdown: args.shutdown,
                        }),
                        node: Arc::clone(&node),
                        booted: args.booted,
                    },
                );
                ChildHandle {
                    control: Arc::new(addr.downgrade()),
                    addr: Some(Arc::new(ActorRef {
                        addr,
                        node: Arc::clone(&node),
                    })),
                    node,
                }
            }),
        }
    }

    /// A nested supervisor. Defaults: permanent, infinite shutdown (its own
    /// children carry the timeouts).
    pub fn supervisor(spec: SupervisorSpec) -> Self {
        let id = spec.id.clone();
        Self {
            id,
            restart: RestartPolicy::Permanent,
            shutdown: Shutdown::Infinity,
            start: Arc::new(move |args: StartArgs| {
                let node = NodeInfo::new(
                    Some(&args.parent_node),
                    &spec.id,
                    NodeKind::Supervisor(spec.strategy),
                );
                args.tree.insert(&node);
                let arbiter = args.pool.next().clone();
                let sup = Supervisor::spawn(
                    &arbiter,
                    spec.clone(),
                    Arc::clone(&node),
                    args.tree,
                    args.pool,
                    Parent::Supervisor(args.parent),
                    args.booted,
                );
                ChildHandle {
                    control: Arc::new(sup.addr.clone()),
                    addr: Some(Arc::new(sup)),
                    node,
                }
            }),
        }
    }

    pub fn restart(mut self, policy: RestartPolicy) -> Self {
        self.restart = policy;
        self
    }

    pub fn shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A supervisor's configuration and static children (in start order).
#[derive(Clone)]
pub struct SupervisorSpec {
    pub(super) id: String,
    pub(super) strategy: Strategy,
    pub(super) intensity: Intensity,
    pub(super) backoff: Backoff,
    pub(super) child_intensity: Option<Intensity>,
    pub(super) children: Vec<ChildSpec>,
}

impl SupervisorSpec {
    /// One-for-one, default intensity and backoff, no children.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            strategy: Strategy::OneForOne,
            intensity: Intensity::default(),
            backoff: Backoff::default(),
            child_intensity: None,
            children: Vec::new(),
        }
    }

    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// More than `max_restarts` within `within` and this supervisor gives up.
    pub fn intensity(mut self, max_restarts: u32, within: Duration) -> Self {
        self.intensity = Intensity::new(max_restarts, within);
        self
    }

    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// For per-entity children: a child restarted more than `max_restarts`
    /// within `within` is stopped instead (it comes back on its next message),
    /// and does not count toward escalation. Meant for supervisors of thousands
    /// of independent entities, where one bad entity must not restart the rest.
    pub fn child_intensity(mut self, max_restarts: u32, within: Duration) -> Self {
        self.child_intensity = Some(Intensity::new(max_restarts, within));
        self
    }

    pub fn child(mut self, child: ChildSpec) -> Self {
        self.children.push(child);
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}
