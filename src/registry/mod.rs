//! Addressing: actors are reached by logical id (`kind/id`).
//!
//! A [`Kind`] activates an actor on its first message (under the kind's own
//! dynamic supervisor, on the next arbiter of the pool) and the actor passivates
//! itself after an idle time. A message to an actor that stopped or passivated
//! while the message was on its way comes back to the registry, which activates
//! the actor anew and delivers it within the message's deadline: a message is
//! never dropped silently.
//!
//! The registry knows actors and supervisors, never the bus backend or SQL;
//! [`inbox`] bridges bus deliveries to it.

pub mod inbox;
mod route;

use std::any::Any;
use std::sync::{Arc, Weak};
use std::time::Duration;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;

/// Addresses live in [`crate::address`]; re-exported for callers of the registry.
pub use crate::address::{ActorId, ActorIdError};
pub use route::DeliverError;
pub(crate) use route::Route;

use crate::bus::client::{AnyMessage, LocalDelivery, LocalFailure};
use crate::bus::BusMessage;
use crate::supervisors::cell::{Cell, CellInit, CellShared, Factory, Index, MAILBOX_RETRY};
use crate::supervisors::message::{Pending, Reply};
use crate::supervisors::tree::{NodeInfo, NodeKind};
use crate::supervisors::{Actor, Handler};
use crate::supervisors::{
    ActorRef, ArbiterPool, Backoff, CellLimits, ChildSpec, Intensity, RestartPolicy, SendError,
    Shutdown, SupervisorRef, SupervisorSpec, Tree,
};

/// How the actors of one kind live.
pub struct KindSpec<A: Actor> {
    factory: Factory<A>,
    /// `None`: the registry's default.
    idle_timeout: Option<Option<Duration>>,
    restart: RestartPolicy,
    shutdown: Shutdown,
    intensity: Intensity,
    child_intensity: Intensity,
    backoff: Backoff,
    limits: CellLimits,
}

impl<A: Actor> KindSpec<A> {
    /// `factory(id)` builds the actor for `kind/id` on every (re)activation.
    ///
    /// Defaults: transient (restarted after a crash, not after a normal stop),
    /// passivated after the registry's idle timeout (`CARDIO_IDLE_TIMEOUT`), 5 s shutdown timeout, each actor
    /// stopped after more than 10 restarts in 10 s, the kind's supervisor
    /// escalating after 1000 restarts in 10 s.
    pub fn new(factory: impl Fn(&str) -> A + Send + Sync + 'static) -> Self {
        Self {
            factory: Arc::new(factory),
            idle_timeout: None,
            restart: RestartPolicy::Transient,
            shutdown: Shutdown::Timeout(Duration::from_secs(5)),
            intensity: Intensity::new(1000, Duration::from_secs(10)),
            child_intensity: Intensity::new(10, Duration::from_secs(10)),
            backoff: Backoff::default(),
            limits: CellLimits::default(),
        }
    }

    /// `None` keeps actors live until shut down.
    pub fn idle_timeout(mut self, idle: Option<Duration>) -> Self {
        self.idle_timeout = Some(idle);
        self
    }

    pub fn restart(mut self, policy: RestartPolicy) -> Self {
        self.restart = policy;
        self
    }

    pub fn shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    pub fn intensity(mut self, max_restarts: u32, within: Duration) -> Self {
        self.intensity = Intensity::new(max_restarts, within);
        self
    }

    pub fn child_intensity(mut self, max_restarts: u32, within: Duration) -> Self {
        self.child_intensity = Intensity::new(max_restarts, within);
        self
    }

    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    pub fn limits(mut self, limits: CellLimits) -> Self {
        self.limits = limits;
        self
    }
}

/// Why a kind could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("actor kind {0} is already registered")]
    Duplicate(&'static str),
    #[error("could not start the supervisor of kind {kind}: {reason}")]
    Supervisor { kind: &'static str, reason: String },
}

/// All kinds of a node, and the routes from bus message types to them.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<RegistryInner>,
}

struct RegistryInner {
    kinds: DashMap<&'static str, Arc<dyn Any + Send + Sync>>,
    /// The same kinds, for what needs no actor type (stopping by address).
    untyped: DashMap<&'static str, Arc<dyn Untyped>>,
    /// Serialises registrations (each starts a supervisor, then records it).
    registering: tokio::sync::Mutex<()>,
    routes: DashMap<(String, String), Arc<dyn Route>>,
    tree: Tree,
    pool: ArbiterPool,
    default_timeout: Duration,
    default_idle: Duration,
}

impl Registry {
    /// `default_timeout` is the deadline of messages sent without one; entity
    /// actors passivate after 10 idle minutes unless their kind says otherwise.
    pub fn new(tree: Tree, pool: ArbiterPool, default_timeout: Duration) -> Self {
        Self::with_timeouts(tree, pool, default_timeout, Duration::from_secs(600))
    }

    /// [`Self::new`] with the default idle time before passivation.
    pub fn with_timeouts(
        tree: Tree,
        pool: ArbiterPool,
        default_timeout: Duration,
        default_idle: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(RegistryInner {
                kinds: DashMap::new(),
                untyped: DashMap::new(),
                registering: tokio::sync::Mutex::new(()),
                routes: DashMap::new(),
                tree,
                pool,
                default_timeout,
                default_idle,
            }),
        }
    }

    /// Registers kind `A`; its dynamic supervisor starts under `parent`.
    pub async fn register<A: Actor>(
        &self,
        parent: &SupervisorRef,
        spec: KindSpec<A>,
    ) -> Result<Kind<A>, RegistryError> {
        let _one_at_a_time = self.inner.registering.lock().await;
        if self.inner.kinds.contains_key(A::KIND) {
            return Err(RegistryError::Duplicate(A::KIND));
        }
        crate::metrics::announce_kind(A::KIND);
        let sup_spec = SupervisorSpec::new(A::KIND)
            .intensity(spec.intensity.max_restarts, spec.intensity.within)
            .child_intensity(
                spec.child_intensity.max_restarts,
                spec.child_intensity.within,
            )
            .backoff(spec.backoff);
        let failed = |reason: String| RegistryError::Supervisor {
            kind: A::KIND,
            reason,
        };
        parent
            .add_child(ChildSpec::supervisor(sup_spec))
            .await
            .map_err(failed)?;
        let supervisor = parent
            .supervisor(A::KIND)
            .await
            .ok_or_else(|| failed("not found after start".into()))?;
        let tree = self.inner.tree.clone();
        let idle_default = self.inner.default_idle;
        let kind = Kind {
            inner: Arc::new_cyclic(|me: &Weak<KindInner<A>>| {
                let index: Weak<dyn Index> = me.clone();
                KindInner {
                    cells: DashMap::with_hasher(foldhash::fast::RandomState::default()),
                    cell_shared: Arc::new(CellShared {
                        factory: spec.factory,
                        tree: tree.clone(),
                        parent: supervisor.notices(),
                        announce: Some((spec.restart, spec.shutdown)),
                        index: Some(index),
                        idle_timeout: spec.idle_timeout.unwrap_or(Some(idle_default)),
                        limits: spec.limits,
                        shutdown: spec.shutdown,
                    }),
                    supervisor,
                    tree,
                    pool: self.inner.pool.clone(),
                    default_timeout: self.inner.default_timeout,
                }
            }),
        };
        match self.inner.kinds.entry(A::KIND) {
            Entry::Occupied(_) => Err(RegistryError::Duplicate(A::KIND)),
            Entry::Vacant(v) => {
                v.insert(Arc::new(kind.clone()));
                self.inner.untyped.insert(A::KIND, Arc::new(kind.clone()));
                Ok(kind)
            }
        }
    }

    /// Passivates every live actor whose address (`kind/id`) satisfies
    /// `which`, waiting up to `within` for their stop hooks (which flush
    /// state). Returns how many were stopped. Used when a shard moves away.
    pub async fn passivate_where(&self, which: impl Fn(&str) -> bool, within: Duration) -> usize {
        let kinds: Vec<Arc<dyn Untyped>> = self
            .inner
            .untyped
            .iter()
            .map(|k| Arc::clone(k.value()))
            .collect();
        let mut waits = Vec::new();
        for kind in kinds {
            waits.extend(kind.stop_where(&which));
        }
        let n = waits.len();
        let all = futures_util::future::join_all(waits);
        if tokio::time::timeout(within, all).await.is_err() {
            tracing::warn!(actors = n, ?within, "passivation did not finish in time");
        }
        n
    }

    /// The registered kind `A`.
    pub fn kind<A: Actor>(&self) -> Option<Kind<A>> {
        self.inner
            .kinds
            .get(A::KIND)
            .and_then(|k| k.downcast_ref::<Kind<A>>().cloned())
    }

    /// Hands `msg()` (of the type registered as `msg_type` for `to`'s kind)
    /// to actor `to` in this process, as a delivery from its shard's queue
    /// would but without encoding it or its reply: the local path's
    /// delivery ([`crate::bus::client::LocalPath`]); `None` if no route
    /// takes `msg_type` for that kind. The caller decides whether this
    /// node may serve `to` (the cluster: it holds `to`'s shard).
    pub fn deliver_here(
        &self,
        to: &ActorId,
        msg_type: &str,
        msg: &dyn Fn() -> AnyMessage,
        deadline: Instant,
    ) -> Option<LocalDelivery> {
        let delivered = self
            .route_of(to.kind(), msg_type)?
            .deliver_typed(to.id(), msg(), deadline);
        Some(Box::pin(async move {
            delivered.await.map_err(|e| match e {
                DeliverError::Malformed(reason) => LocalFailure::Malformed(reason),
                other => LocalFailure::Failed(other.to_string()),
            })
        }))
    }

    pub(crate) fn route_of(&self, kind: &str, msg_type: &str) -> Option<Arc<dyn Route>> {
        self.inner
            .routes
            .get(&(kind.to_owned(), msg_type.to_owned()))
            .map(|r| Arc::clone(r.value()))
    }

    pub fn tree(&self) -> &Tree {
        &self.inner.tree
    }

    /// Deadline given to messages that come without one.
    pub fn default_timeout(&self) -> Duration {
        self.inner.default_timeout
    }

    /// Makes the bus message `M` deliverable to kind `A` under its wire name
    /// ([`BusMessage::TYPE`]); the handler's answer is `M`'s reply.
    ///
    /// # Panics
    /// If `M` is for another kind of actor than `A` (a wiring mistake, seen
    /// when the node starts).
    pub fn route<A, M>(&self, kind: &Kind<A>)
    where
        A: Handler<M>,
        M: BusMessage + actix::Message<Result = M::Reply>,
    {
        same_kind::<A, M>();
        self.route_for::<A, M>(kind, M::TYPE);
    }

    /// [`Self::route`] for a message that only means something to a live
    /// actor (its in-memory state): it is handled if `kind/id` is active
    /// now, and otherwise answered with `M`'s default reply without
    /// starting the actor.
    pub fn route_if_live<A, M>(&self, kind: &Kind<A>)
    where
        A: Handler<M>,
        M: BusMessage + actix::Message<Result = M::Reply>,
        M::Reply: Default,
    {
        same_kind::<A, M>();
        self.inner.routes.insert(
            (A::KIND.to_owned(), M::TYPE.to_owned()),
            route::if_live::<A, M>(kind.clone()),
        );
    }

    /// Makes `M` deliverable to kind `A` from the bus under the name
    /// `msg_type`, for messages that have no [`BusMessage`] type (tests of
    /// the delivery path); prefer [`Self::route`].
    pub fn route_for<A, M>(&self, kind: &Kind<A>, msg_type: &str)
    where
        A: Handler<M>,
        M: actix::Message + DeserializeOwned + Send + 'static,
        M::Result: Serialize + Send,
    {
        self.inner.routes.insert(
            (A::KIND.to_owned(), msg_type.to_owned()),
            route::typed::<A, M>(kind.clone()),
        );
    }
}

/// Panics if `M` is for another kind of actor than `A` (a wiring mistake).
fn same_kind<A: Actor, M: BusMessage>() {
    assert_eq!(
        A::KIND,
        M::KIND,
        "{} is a message for {} actors",
        M::TYPE,
        M::KIND
    );
}

/// The live actors of one kind. Cheap to clone.
pub struct Kind<A: Actor> {
    inner: Arc<KindInner<A>>,
}

impl<A: Actor> Clone for Kind<A> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// Live cells by id. foldhash: seeded per process (ids come from outside, so
/// the hash must not be predictable) and several times faster than SipHash on
/// short keys, which matters on every send.
type Cells<A> = DashMap<Box<str>, ActorRef<A>, foldhash::fast::RandomState>;

struct KindInner<A: Actor> {
    cells: Cells<A>,
    /// Factory, limits, timeouts and notice recipient, shared by every cell.
    cell_shared: Arc<CellShared<A>>,
    supervisor: SupervisorRef,
    tree: Tree,
    pool: ArbiterPool,
    default_timeout: Duration,
}

impl<A: Actor> Index for KindInner<A> {
    fn forget(&self, node: &Arc<NodeInfo>) {
        self.cells
            .remove_if(&*node.id, |_, r| Arc::ptr_eq(r.node(), node));
    }

    /// Marks the entry draining (under the map's write lock, so no sender is
    /// between its depth check and its enqueue). The entry stays until the cell
    /// has flushed and `forget`s it: a new incarnation cannot start meanwhile.
    fn try_passivate(&self, node: &Arc<NodeInfo>) -> bool {
        match self.cells.get_mut(&*node.id) {
            Some(entry) if Arc::ptr_eq(entry.node(), node) && node.mailbox_depth() == 0 => {
                node.set_draining();
                true
            }
            _ => false,
        }
    }
}

/// What the registry does with a kind without knowing its actor type.
trait Untyped: Send + Sync {
    /// Asks each live actor whose address satisfies `which` to passivate.
    fn stop_where(&self, which: &dyn Fn(&str) -> bool) -> Vec<tokio::sync::oneshot::Receiver<()>>;
}

impl<A: Actor> Untyped for Kind<A> {
    fn stop_where(&self, which: &dyn Fn(&str) -> bool) -> Vec<tokio::sync::oneshot::Receiver<()>> {
        let chosen: Vec<ActorRef<A>> = self
            .inner
            .cells
            .iter()
            .filter(|e| which(&format!("{}/{}", A::KIND, e.key())))
            .map(|e| e.value().clone())
            .collect();
        chosen
            .into_iter()
            .map(|r| {
                let (tx, rx) = tokio::sync::oneshot::channel();
                r.addr
                    .do_send(crate::supervisors::message::Control::Shutdown {
                        reason: crate::supervisors::ExitReason::Passivated,
                        done: Some(tx),
                    });
                rx
            })
            .collect()
    }
}

impl<A: Actor> Kind<A> {
    /// Sends `msg` to `kind/id` with the registry's default deadline.
    pub async fn send<M>(&self, id: &str, msg: M) -> Reply<M>
    where
        A: Handler<M>,
        M: actix::Message + Send + 'static,
        M::Result: Send,
    {
        let deadline = Instant::now() + self.inner.default_timeout;
        self.send_until(id, msg, deadline).await
    }

    /// Sends `msg` to `kind/id`, activating the actor if needed, and waits for
    /// the reply until `deadline`. If the actor stops or passivates with the
    /// message queued, or its mailbox is full, the message is retried until the
    /// deadline, then handed back in the error.
    pub async fn send_until<M>(&self, id: &str, msg: M, deadline: Instant) -> Reply<M>
    where
        A: Handler<M>,
        M: actix::Message + Send + 'static,
        M::Result: Send,
    {
        if !crate::address::valid_id(id) {
            return Err(SendError::InvalidId(msg));
        }
        let mut msg = msg;
        let mut retries: u32 = 0;
        loop {
            // The first retry goes at once (a cell that just passivated is
            // activated again); later ones pause as for a full mailbox.
            let pause = match retries.checked_sub(1) {
                None => Duration::ZERO,
                Some(n) => MAILBOX_RETRY.delay(n, 0.0),
            };
            let reply = match self.enqueue(id, msg, deadline) {
                Ok(pending) => pending.wait(|| self.is_restarting(id)).await,
                Err(e) => Err(e),
            };
            match reply {
                Err(SendError::Stopped(back)) | Err(SendError::MailboxFull(back))
                    if Instant::now() + pause < deadline =>
                {
                    msg = back;
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                    retries = retries.saturating_add(1);
                }
                other => return other,
            }
        }
    }

    /// Puts `msg` in the mailbox of `kind/id` (activating it) without waiting.
    pub(crate) fn enqueue<M>(
        &self,
        id: &str,
        msg: M,
        deadline: Instant,
    ) -> Result<Pending<M>, SendError<M>>
    where
        A: Handler<M>,
        M: actix::Message + Send + 'static,
        M::Result: Send,
    {
        let cells = &self.inner.cells;
        // Fast path: a live actor. The map's read lock is held while the depth
        // counter goes up, so a concurrent passivation sees the message coming.
        let msg = match cells.get(id) {
            // Flushing before passivation: wait for it to leave (retry).
            Some(cell) if cell.node().is_draining() => return Err(SendError::Stopped(msg)),
            Some(cell) => match cell.enqueue(msg, deadline) {
                Err(SendError::Stopped(back)) => {
                    // A stale entry (its cell is gone): clear it, then activate.
                    let node = Arc::clone(cell.node());
                    drop(cell);
                    cells.remove_if(id, |_, r| Arc::ptr_eq(r.node(), &node));
                    back
                }
                other => return other,
            },
            None => msg,
        };
        match cells.entry(id.into()) {
            Entry::Occupied(e) => e.get().enqueue(msg, deadline),
            Entry::Vacant(v) => {
                let supervisor = &self.inner.supervisor;
                if !supervisor.addr.connected()
                    || supervisor.status() != crate::supervisors::Status::Running
                {
                    // The kind's supervisor is gone, or restarting after it gave
                    // up: nothing may start (the sender retries until its deadline).
                    return Err(SendError::Stopped(msg));
                }
                let cell = self.activate(id);
                let sent = cell.enqueue(msg, deadline);
                v.insert(cell);
                sent
            }
        }
    }

    fn activate(&self, id: &str) -> ActorRef<A> {
        let inner = &self.inner;
        let node = NodeInfo::new(Some(inner.supervisor.node()), id, NodeKind::Worker(A::KIND));
        inner.tree.insert(&node);
        crate::metrics::activated(A::KIND);
        let addr = Cell::<A>::spawn(
            inner.pool.next(),
            CellInit {
                shared: Arc::clone(&inner.cell_shared),
                node: Arc::clone(&node),
                booted: None,
            },
        );
        ActorRef { addr, node }
    }

    fn is_restarting(&self, id: &str) -> bool {
        self.inner
            .cells
            .get(id)
            .is_some_and(|r| r.node().status() == crate::supervisors::Status::Restarting)
    }

    /// The live actor `kind/id`, if it is active now.
    pub fn get(&self, id: &str) -> Option<ActorRef<A>> {
        self.inner.cells.get(id).map(|r| r.clone())
    }

    /// Number of active (not passivated) actors of this kind.
    pub fn live(&self) -> usize {
        self.inner.cells.len()
    }

    /// The kind's supervisor.
    pub fn supervisor(&self) -> &SupervisorRef {
        &self.inner.supervisor
    }
}
