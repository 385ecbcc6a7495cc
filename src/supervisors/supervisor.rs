//! The supervisor actor: starts children, watches them, restarts them by
//! strategy with backoff, and gives up (escalates) past its restart intensity.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::dev::channel;
use actix::{
    Actor as ActixActor, ActorContext, ActorFutureExt, Addr, ArbiterHandle, AsyncContext, Context,
    Handler as ActixHandler, Message, WrapFuture,
};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::backoff::Backoff;
use super::cell::{ActorRef, Cell, CellInit, CellLimits, CellShared};
use super::message::{ChildNotice, Control, ExitReason};
use super::policy::{Intensity, RestartPolicy, RestartWindow, Shutdown, Strategy};
use super::tree::{EventKind, Kill, NodeInfo, NodeKind, Status, Tree};
use super::Actor;
use super::{ArbiterPool, ChildHandle, ControlSink, Notices};

/// After a kill, how long to wait for the child to confirm it is gone.
const KILL_GRACE: Duration = Duration::from_secs(1);

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

type StartFn = Arc<dyn Fn(StartArgs) -> ChildHandle + Send + Sync>;

/// How to start one child and when to restart it.
#[derive(Clone)]
pub struct ChildSpec {
    id: String,
    restart: RestartPolicy,
    shutdown: Shutdown,
    start: StartFn,
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
    id: String,
    strategy: Strategy,
    intensity: Intensity,
    backoff: Backoff,
    child_intensity: Option<Intensity>,
    children: Vec<ChildSpec>,
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

/// A handle to a running supervisor. Cheap to clone.
#[derive(Clone)]
pub struct SupervisorRef {
    pub(crate) addr: Addr<Supervisor>,
    pub(crate) node: Arc<NodeInfo>,
}

impl SupervisorRef {
    /// Starts a root supervisor and waits until its children are started.
    /// `on_failure` is called if the root exceeds its restart intensity (the
    /// process should then exit non-zero).
    pub async fn start_root(
        spec: SupervisorSpec,
        tree: &Tree,
        pool: &ArbiterPool,
        on_failure: impl Fn(String) + Send + Sync + 'static,
    ) -> SupervisorRef {
        let node = NodeInfo::new(None, &spec.id, NodeKind::Supervisor(spec.strategy));
        tree.insert(&node);
        let (tx, rx) = oneshot::channel();
        let sup = Supervisor::spawn(
            &actix::Arbiter::current(),
            spec,
            node,
            tree.clone(),
            pool.clone(),
            Parent::Root(Arc::new(on_failure)),
            Some(tx),
        );
        let _ = rx.await;
        sup
    }

    pub fn path(&self) -> &str {
        &self.node.path
    }

    pub fn status(&self) -> Status {
        self.node.status()
    }

    async fn find(&self, id: &str) -> Option<Arc<dyn Any + Send + Sync>> {
        self.addr
            .send(FindChild { id: id.to_owned() })
            .await
            .ok()
            .flatten()
    }

    /// The worker child `id`, if it runs an actor of kind `A`.
    pub async fn worker<A: Actor>(&self, id: &str) -> Option<ActorRef<A>> {
        self.find(id)
            .await
            .and_then(|any| any.downcast_ref::<ActorRef<A>>().cloned())
    }

    /// The supervisor child `id`.
    pub async fn supervisor(&self, id: &str) -> Option<SupervisorRef> {
        self.find(id)
            .await
            .and_then(|any| any.downcast_ref::<SupervisorRef>().cloned())
    }

    /// Starts one more child after the existing ones (OTP `start_child`) and
    /// waits until it has started.
    pub async fn add_child(&self, spec: ChildSpec) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.addr
            .send(AddChild { spec, booted: tx })
            .await
            .map_err(|_| "supervisor is gone".to_owned())?;
        rx.await.map_err(|_| "child did not start".to_owned())?
    }

    /// Stops all children in reverse start order, then the supervisor.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        self.addr.do_send(Control::Shutdown {
            reason: ExitReason::Shutdown,
            done: Some(tx),
        });
        let _ = rx.await;
    }

    /// Where a child started outside this supervisor reports.
    pub(crate) fn notices(&self) -> Notices {
        Arc::new(self.addr.clone().recipient())
    }

    pub(crate) fn node(&self) -> &Arc<NodeInfo> {
        &self.node
    }
}

impl Supervisor {
    fn spawn(
        arbiter: &ArbiterHandle,
        spec: SupervisorSpec,
        node: Arc<NodeInfo>,
        tree: Tree,
        pool: ArbiterPool,
        parent: Parent,
        booted: Option<oneshot::Sender<Result<(), String>>>,
    ) -> SupervisorRef {
        let (tx, rx) = channel::channel(4096);
        let sup_node = Arc::clone(&node);
        arbiter.spawn_fn(move || {
            let ctx = Context::with_receiver(rx);
            let window = RestartWindow::new(spec.intensity);
            let sup = Supervisor {
                spec,
                node: sup_node,
                tree,
                pool,
                parent,
                booted,
                children: BTreeMap::new(),
                renamed: HashMap::new(),
                window,
                phase: Phase::Starting,
                incarnation: 0,
                rng: fastrand::Rng::new(),
                group_pending: None,
                exit_reason: None,
                stop_done: Vec::new(),
                exit_reported: false,
            };
            actix_rt::spawn(ctx.into_future(sup));
        });
        SupervisorRef {
            addr: Addr::new(tx),
            node,
        }
    }

    fn start_args(
        &self,
        actx: &Context<Self>,
        booted: Option<oneshot::Sender<Result<(), String>>>,
        shutdown: Shutdown,
    ) -> StartArgs {
        StartArgs {
            parent_node: Arc::clone(&self.node),
            parent: Arc::new(actx.address().recipient()),
            tree: self.tree.clone(),
            pool: self.pool.clone(),
            booted,
            shutdown,
        }
    }

    fn key_of(&self, uid: u64) -> u64 {
        self.renamed.get(&uid).copied().unwrap_or(uid)
    }

    /// Adds a child; `key` keeps the place of the child it replaces.
    fn insert(
        &mut self,
        key: Option<u64>,
        spec: Option<ChildSpec>,
        handle: ChildHandle,
        restart: RestartPolicy,
        shutdown: Shutdown,
    ) {
        let uid = handle.node.uid;
        let key = match key {
            Some(key) if key != uid => {
                self.renamed.insert(uid, key);
                key
            }
            _ => uid,
        };
        self.children.insert(
            key,
            Child {
                spec: spec.map(Box::new),
                handle,
                restart,
                shutdown,
                incarnation: 1,
                series: 0,
                last_start: Instant::now(),
                window: None,
                awaiting_restart: false,
                gone: false,
            },
        );
    }

    fn forget(&mut self, key: u64) -> Option<Child> {
        let child = self.children.remove(&key)?;
        self.renamed.remove(&child.handle.node.uid);
        Some(child)
    }

    fn running(&mut self, done: Option<oneshot::Sender<Result<(), String>>>) {
        self.phase = Phase::Running;
        self.node.set_status(Status::Running);
        self.node.mark_started();
        self.tree.emit(&self.node, EventKind::Started);
        crate::metrics::announce_supervisor(&self.node.id);
        if let Some(done) = done {
            let _ = done.send(Ok(()));
        }
    }

    /// A new incarnation of this supervisor begins.
    fn begin_start(&mut self) {
        self.incarnation += 1;
        self.phase = Phase::Starting;
        self.node.set_status(Status::Starting);
    }

    /// First start: the static children, in order, each after the previous one
    /// is up (or past its shutdown timeout, then killed).
    fn boot(
        &mut self,
        actx: &mut Context<Self>,
        done: Option<oneshot::Sender<Result<(), String>>>,
    ) {
        self.begin_start();
        let args: Vec<_> = self
            .spec
            .children
            .clone()
            .into_iter()
            .map(|spec| {
                let args = self.start_args(actx, None, spec.shutdown);
                (spec, args)
            })
            .collect();
        let fut = async move {
            let mut started = Vec::with_capacity(args.len());
            for (spec, mut args) in args {
                let (tx, rx) = oneshot::channel();
                args.booted = Some(tx);
                let handle = (spec.start)(args);
                await_start(rx, &handle.node, spec.shutdown).await;
                started.push((spec, handle));
            }
            started
        };
        actx.wait(fut.into_actor(self).map(move |started, sup, _| {
            for (spec, handle) in started {
                let (restart, shutdown) = (spec.restart, spec.shutdown);
                sup.insert(None, Some(spec), handle, restart, shutdown);
            }
            sup.running(done);
        }));
    }

    /// A restart of this supervisor by its parent: children with a spec are
    /// stopped (reverse start order) and started again (start order) in place;
    /// adopted children are shut down and come back when next needed.
    fn restart_in_place(
        &mut self,
        actx: &mut Context<Self>,
        done: Option<oneshot::Sender<Result<(), String>>>,
    ) {
        self.begin_start();
        self.window.clear();
        self.group_pending = None;
        let adopted = self.forget_adopted();
        for child in self.children.values_mut() {
            child.series = 0;
        }
        let keys: Vec<u64> = self.children.keys().copied().collect();
        let sequence = self.restart_sequence(keys, 0, actx);
        let fut = async move {
            shut_down_all(adopted).await;
            sequence.await
        };
        actx.wait(fut.into_actor(self).map(move |made, sup, _| {
            sup.install(made);
            sup.running(done)
        }));
    }

    /// Forgets the adopted children and returns what is needed to stop them.
    fn forget_adopted(&mut self) -> Vec<(Arc<dyn ControlSink>, Arc<NodeInfo>, Shutdown)> {
        let keys: Vec<u64> = self
            .children
            .iter()
            .filter(|(_, c)| c.spec.is_none())
            .map(|(k, _)| *k)
            .collect();
        keys.into_iter()
            .filter_map(|k| self.forget(k))
            .map(|c| (c.handle.control, c.handle.node, c.shutdown))
            .collect()
    }

    /// Restarts the children `keys` (in start order) as one group: the live ones
    /// are suspended in reverse start order, then all are started again in start
    /// order, those whose actor is gone re-created from their spec at their
    /// place. Temporary children are stopped and forgotten instead. The future
    /// yields the re-created children's handles, for [`Self::install`].
    fn restart_sequence(
        &mut self,
        keys: Vec<u64>,
        delay_ms: u64,
        actx: &mut Context<Self>,
    ) -> impl std::future::Future<Output = Vec<(u64, ChildHandle)>> + 'static {
        enum Step {
            Stop(Arc<dyn ControlSink>, Arc<NodeInfo>, Shutdown),
            Restart(Arc<dyn ControlSink>, Arc<NodeInfo>, Shutdown),
            Recreate(u64, StartFn, StartArgs, Shutdown, u32),
        }
        let now = Instant::now();
        let mut steps = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(child) = self.children.get(&key) else {
                continue;
            };
            if child.restart == RestartPolicy::Temporary {
                if let Some(c) = self.forget(key) {
                    steps.push(Step::Stop(c.handle.control, c.handle.node, c.shutdown));
                }
                continue;
            }
            let shutdown = child.shutdown;
            let args = child.gone.then(|| self.start_args(actx, None, shutdown));
            let child = self.children.get_mut(&key).expect("checked above");
            child.awaiting_restart = false;
            child.last_start = now;
            match (args, &child.spec) {
                (Some(args), Some(spec)) => {
                    child.incarnation = 1;
                    steps.push(Step::Recreate(
                        key,
                        Arc::clone(&spec.start),
                        args,
                        child.shutdown,
                        child.handle.node.restarts(),
                    ));
                }
                _ => {
                    child.incarnation += 1;
                    steps.push(Step::Restart(
                        Arc::clone(&child.handle.control),
                        Arc::clone(&child.handle.node),
                        child.shutdown,
                    ));
                }
            }
        }
        let tree = self.tree.clone();
        async move {
            for step in steps.iter().rev() {
                match step {
                    Step::Stop(control, node, shutdown) => {
                        stop_child(control, node, *shutdown, |tx| Control::Shutdown {
                            reason: ExitReason::Shutdown,
                            done: Some(tx),
                        })
                        .await
                    }
                    Step::Restart(control, node, shutdown) => {
                        stop_child(control, node, *shutdown, |tx| Control::Suspend { done: tx })
                            .await
                    }
                    Step::Recreate(..) => {}
                }
            }
            let mut made = Vec::new();
            for step in steps {
                match step {
                    Step::Stop(..) => {}
                    Step::Restart(control, node, shutdown) => {
                        let restarts = node.count_restart();
                        crate::metrics::restarted(&node);
                        tree.emit(&node, EventKind::Restarted { restarts, delay_ms });
                        restart_child(&control, &node, shutdown).await;
                    }
                    Step::Recreate(key, start, mut args, shutdown, before) => {
                        let (tx, rx) = oneshot::channel();
                        args.booted = Some(tx);
                        let handle = start(args);
                        for _ in 0..before {
                            handle.node.count_restart();
                        }
                        let restarts = handle.node.count_restart();
                        crate::metrics::restarted(&handle.node);
                        tree.emit(&handle.node, EventKind::Restarted { restarts, delay_ms });
                        await_start(rx, &handle.node, shutdown).await;
                        made.push((key, handle));
                    }
                }
            }
            made
        }
    }

    /// Puts re-created children's handles in place.
    fn install(&mut self, made: Vec<(u64, ChildHandle)>) {
        for (key, handle) in made {
            let Some(child) = self.children.get_mut(&key) else {
                continue;
            };
            let old = child.handle.node.uid;
            let new = handle.node.uid;
            child.handle = handle;
            child.gone = false;
            self.renamed.remove(&old);
            if new != key {
                self.renamed.insert(new, key);
            }
        }
    }

    /// Stops the children for a restart or a failure: adopted ones for good
    /// (all at once: entities are independent), the others suspended in reverse
    /// start order, kept for a restart in place.
    fn suspend_children(&mut self) -> impl std::future::Future<Output = ()> + 'static {
        let adopted = self.forget_adopted();
        let suspended: Vec<_> = self
            .children
            .values()
            .rev()
            .filter(|c| !c.gone)
            .map(|c| {
                (
                    Arc::clone(&c.handle.control),
                    Arc::clone(&c.handle.node),
                    c.shutdown,
                )
            })
            .collect();
        async move {
            shut_down_all(adopted).await;
            for (control, node, shutdown) in &suspended {
                stop_child(control, node, *shutdown, |tx| Control::Suspend { done: tx }).await;
            }
        }
    }

    /// Stops every child for good and forgets them: adopted ones all at once,
    /// then the others in reverse start order.
    fn stop_children(&mut self) -> impl std::future::Future<Output = ()> + 'static {
        self.renamed.clear();
        let (adopted, ordered): (Vec<_>, Vec<_>) = std::mem::take(&mut self.children)
            .into_values()
            .rev()
            .filter(|c| !c.gone)
            .partition(|c| c.spec.is_none());
        let adopted: Vec<_> = adopted
            .into_iter()
            .map(|c| (c.handle.control, c.handle.node, c.shutdown))
            .collect();
        async move {
            shut_down_all(adopted).await;
            for c in ordered {
                stop_child(&c.handle.control, &c.handle.node, c.shutdown, |tx| {
                    Control::Shutdown {
                        reason: ExitReason::Shutdown,
                        done: Some(tx),
                    }
                })
                .await;
            }
        }
    }

    fn on_crashed(&mut self, uid: u64, incarnation: u32, reason: String, actx: &mut Context<Self>) {
        if self.phase != Phase::Running {
            return;
        }
        let key = self.key_of(uid);
        let Some(child) = self.children.get_mut(&key) else {
            return;
        };
        if incarnation != child.incarnation || child.awaiting_restart {
            return;
        }
        if !child.restart.restarts_after(true) {
            self.remove_child(key, ExitReason::Shutdown);
            return;
        }
        let now = Instant::now();
        if let Some(limit) = self.spec.child_intensity {
            let window = child
                .window
                .get_or_insert_with(|| Box::new(RestartWindow::new(limit)));
            if !window.record(now) {
                let why = format!(
                    "gave up after more than {} restarts within {:?}",
                    limit.max_restarts, limit.within
                );
                tracing::warn!(path = %child.handle.node.path, reason = %why, "stopping a crash-looping child");
                child.handle.node.set_failure(&why);
                self.remove_child(key, ExitReason::Crashed(why));
                return;
            }
        }
        if !self.window.record(now) {
            let limit = self.window.limit();
            let why = format!(
                "restart intensity exceeded: more than {} restarts within {:?} (last: {}: {})",
                limit.max_restarts, limit.within, child.handle.node.path, reason
            );
            self.escalate(why, actx);
            return;
        }
        if now.duration_since(child.last_start) >= self.spec.backoff.reset_after() {
            child.series = 0;
        }
        let delay = self.spec.backoff.delay(child.series, self.rng.f64());
        child.series = child.series.saturating_add(1);
        child.awaiting_restart = true;
        self.schedule_restart(key, delay, actx);
    }

    /// Restarts `key` (alone or with its group, by strategy) after `delay`,
    /// unless this supervisor restarts meanwhile.
    fn schedule_restart(&mut self, key: u64, delay: Duration, actx: &mut Context<Self>) {
        let incarnation = self.incarnation;
        match self.spec.strategy {
            Strategy::OneForOne => self.after(delay, actx, move |sup, actx| {
                if sup.incarnation == incarnation {
                    sup.restart_one(key, delay, actx)
                }
            }),
            Strategy::OneForAll | Strategy::RestForOne => {
                let first = self.group_pending.is_none();
                self.group_pending = Some(self.group_pending.map_or(key, |p| p.min(key)));
                if first {
                    self.after(delay, actx, move |sup, actx| {
                        if sup.incarnation == incarnation {
                            sup.restart_group(delay, actx)
                        }
                    });
                }
            }
        }
    }

    fn after<F>(&mut self, delay: Duration, actx: &mut Context<Self>, f: F)
    where
        F: FnOnce(&mut Self, &mut Context<Self>) + 'static,
    {
        if delay.is_zero() {
            f(self, actx);
        } else {
            actx.run_later(delay, f);
        }
    }

    fn restart_one(&mut self, key: u64, delay: Duration, actx: &mut Context<Self>) {
        if self.phase != Phase::Running {
            return;
        }
        let Some(child) = self.children.get_mut(&key) else {
            return;
        };
        if !child.awaiting_restart {
            return;
        }
        child.awaiting_restart = false;
        child.last_start = Instant::now();
        let delay_ms = delay.as_millis() as u64;
        if child.gone {
            let Some(start) = child.spec.as_ref().map(|s| Arc::clone(&s.start)) else {
                return;
            };
            let before = child.handle.node.restarts();
            let shutdown = child.shutdown;
            let handle = start(self.start_args(actx, None, shutdown));
            for _ in 0..before {
                handle.node.count_restart();
            }
            let restarts = handle.node.count_restart();
            crate::metrics::restarted(&handle.node);
            self.tree
                .emit(&handle.node, EventKind::Restarted { restarts, delay_ms });
            if let Some(child) = self.children.get_mut(&key) {
                child.incarnation = 1;
            }
            self.install(vec![(key, handle)]);
            return;
        }
        child.incarnation += 1;
        let restarts = child.handle.node.count_restart();
        crate::metrics::restarted(&child.handle.node);
        self.tree.emit(
            &child.handle.node,
            EventKind::Restarted { restarts, delay_ms },
        );
        child
            .handle
            .control
            .do_send(Control::Restart { done: None });
    }

    /// One-for-all / rest-for-one: stop the affected children in reverse start
    /// order, then start them again in start order. Temporary children among
    /// them are not restarted: they are stopped and forgotten.
    fn restart_group(&mut self, delay: Duration, actx: &mut Context<Self>) {
        let Some(from) = self.group_pending.take() else {
            return;
        };
        if self.phase != Phase::Running {
            return;
        }
        let keys: Vec<u64> = match self.spec.strategy {
            Strategy::RestForOne => self.children.range(from..).map(|(k, _)| *k).collect(),
            _ => self.children.keys().copied().collect(),
        };
        let sequence = self.restart_sequence(keys, delay.as_millis() as u64, actx);
        actx.wait(
            sequence
                .into_actor(self)
                .map(|made, sup, _| sup.install(made)),
        );
    }

    /// Stops one child without restarting it and forgets it.
    fn remove_child(&mut self, key: u64, reason: ExitReason) {
        if let Some(child) = self.forget(key) {
            child
                .handle
                .control
                .do_send(Control::Shutdown { reason, done: None });
        }
    }

    /// Too many restarts: stop the children (reverse start order), then fail to
    /// the parent, which restarts this supervisor in place or stops it (at the
    /// root, the failure is reported and the node exits).
    fn escalate(&mut self, reason: String, actx: &mut Context<Self>) {
        crate::metrics::escalated(&self.node.id, &reason);
        self.phase = Phase::Failed;
        self.group_pending = None;
        self.node.set_failure(&reason);
        self.tree.emit(
            &self.node,
            EventKind::Escalated {
                reason: reason.clone(),
            },
        );
        tracing::error!(path = %self.node.path, %reason, "supervisor gives up");
        let stopping = self.suspend_children();
        actx.wait(stopping.into_actor(self).map(move |(), sup, _| {
            sup.node.set_status(Status::Failed);
            match &sup.parent {
                Parent::Supervisor(parent) => parent.do_send(ChildNotice::Crashed {
                    uid: sup.node.uid,
                    incarnation: sup.incarnation,
                    reason,
                }),
                Parent::Root(on_failure) => on_failure(reason),
            }
        }));
    }

    fn on_exited(&mut self, uid: u64, reason: ExitReason, actx: &mut Context<Self>) {
        let key = self.key_of(uid);
        let Some(child) = self.children.get(&key) else {
            return;
        };
        if child.gone || child.handle.node.uid != uid {
            return;
        }
        let again = match &reason {
            ExitReason::Normal => child.restart == RestartPolicy::Permanent,
            ExitReason::Crashed(_) => child.restart.restarts_after(true),
            ExitReason::Passivated | ExitReason::Shutdown | ExitReason::Killed => false,
        };
        if !again || child.spec.is_none() {
            if again {
                tracing::warn!(path = %child.handle.node.path, %reason, "adopted child ended; it returns when next needed");
            }
            self.forget(key);
            return;
        }
        // Kept, to be re-created from its spec at its place: by the restart
        // scheduled here, or by the next restart of this supervisor.
        let child = self.children.get_mut(&key).expect("checked above");
        child.gone = true;
        if self.phase != Phase::Running {
            return;
        }
        child.awaiting_restart = true;
        let path = child.handle.node.path.clone();
        if !self.window.record(Instant::now()) {
            let why = format!("restart intensity exceeded ({path} ended: {reason})");
            self.escalate(why, actx);
            return;
        }
        let child = self.children.get_mut(&key).expect("checked above");
        let delay = self.spec.backoff.delay(child.series, self.rng.f64());
        child.series = child.series.saturating_add(1);
        self.schedule_restart(key, delay, actx);
    }

    fn finish(&mut self) {
        if self.exit_reported {
            return;
        }
        self.exit_reported = true;
        self.node.set_status(Status::Stopped);
        self.tree.remove(&self.node);
        let reason = self
            .exit_reason
            .take()
            .unwrap_or_else(|| ExitReason::Crashed("supervisor terminated unexpectedly".into()));
        self.tree.emit(
            &self.node,
            EventKind::Stopped {
                reason: reason.to_string(),
            },
        );
        if let Parent::Supervisor(parent) = &self.parent {
            parent.do_send(ChildNotice::Exited {
                uid: self.node.uid,
                reason,
            });
        }
        for done in self.stop_done.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Waits for a child's start, bounded by its shutdown timeout: a start hook
/// that hangs is killed, which the child reports as a crash.
async fn await_start(
    rx: oneshot::Receiver<Result<(), String>>,
    node: &NodeInfo,
    shutdown: Shutdown,
) {
    let result = match shutdown.timeout() {
        None => rx.await.ok(),
        Some(limit) => {
            tokio::pin!(rx);
            match tokio::time::timeout(limit, &mut rx).await {
                Ok(r) => r.ok(),
                Err(_) => {
                    tracing::warn!(path = %node.path, ?limit, "child did not start in time; killing its start");
                    node.kill(Kill::START);
                    tokio::time::timeout(KILL_GRACE, rx)
                        .await
                        .ok()
                        .and_then(Result::ok)
                }
            }
        }
    };
    if let Some(Err(reason)) = result {
        tracing::warn!(path = %node.path, %reason, "child failed to start");
    }
}

/// Restarts one child in place and waits for it (see [`await_start`]).
async fn restart_child(control: &Arc<dyn ControlSink>, node: &NodeInfo, shutdown: Shutdown) {
    let (tx, rx) = oneshot::channel();
    control.do_send(Control::Restart { done: Some(tx) });
    await_start(rx, node, shutdown).await;
}

/// Shuts down independent children all at once.
async fn shut_down_all(children: Vec<(Arc<dyn ControlSink>, Arc<NodeInfo>, Shutdown)>) {
    futures_util::future::join_all(children.iter().map(|(control, node, shutdown)| {
        stop_child(control, node, *shutdown, |tx| Control::Shutdown {
            reason: ExitReason::Shutdown,
            done: Some(tx),
        })
    }))
    .await;
}

/// Asks a child to stop (or suspend) and waits, killing it past its timeout.
async fn stop_child(
    control: &Arc<dyn ControlSink>,
    node: &NodeInfo,
    shutdown: Shutdown,
    make: impl FnOnce(oneshot::Sender<()>) -> Control,
) {
    let (tx, rx) = oneshot::channel();
    control.do_send(make(tx));
    let Some(limit) = shutdown.timeout() else {
        let _ = rx.await;
        return;
    };
    tokio::pin!(rx);
    if tokio::time::timeout(limit, &mut rx).await.is_ok() {
        return;
    }
    tracing::warn!(path = %node.path, ?limit, "child did not stop in time; killing it");
    node.kill(Kill::RUN);
    if tokio::time::timeout(KILL_GRACE, &mut rx).await.is_err() {
        tracing::error!(path = %node.path, "child did not stop after being killed");
    }
}

impl ActixActor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, actx: &mut Context<Self>) {
        let booted = self.booted.take();
        self.boot(actx, booted);
    }

    /// Lives until its parent stops it, whoever holds its address.
    fn stopping(&mut self, _: &mut Context<Self>) -> actix::Running {
        if self.phase == Phase::Stopping {
            actix::Running::Stop
        } else {
            actix::Running::Continue
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.finish();
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.finish();
    }
}

impl ActixHandler<ChildNotice> for Supervisor {
    type Result = ();

    fn handle(&mut self, notice: ChildNotice, actx: &mut Context<Self>) {
        match notice {
            ChildNotice::Adopted {
                handle,
                restart,
                shutdown,
            } => {
                if self.phase == Phase::Running {
                    self.insert(None, None, handle, restart, shutdown);
                } else {
                    handle.control.do_send(Control::Shutdown {
                        reason: ExitReason::Shutdown,
                        done: None,
                    });
                }
            }
            ChildNotice::Crashed {
                uid,
                incarnation,
                reason,
            } => self.on_crashed(uid, incarnation, reason, actx),
            ChildNotice::Exited { uid, reason } => self.on_exited(uid, reason, actx),
        }
    }
}

impl ActixHandler<Control> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Control, actx: &mut Context<Self>) {
        if self.phase == Phase::Stopping {
            match msg {
                Control::Shutdown {
                    done: Some(done), ..
                } => self.stop_done.push(done),
                Control::Suspend { done } => {
                    let _ = done.send(());
                }
                _ => {}
            }
            return;
        }
        match msg {
            Control::Restart { done } => self.restart_in_place(actx, done),
            Control::Suspend { done } => {
                self.phase = Phase::Suspended;
                self.group_pending = None;
                self.node.set_status(Status::Stopped);
                let stopping = self.suspend_children();
                actx.wait(stopping.into_actor(self).map(move |(), _, _| {
                    let _ = done.send(());
                }));
            }
            Control::Shutdown { reason, done } => {
                self.phase = Phase::Stopping;
                self.node.set_status(Status::Stopping);
                self.exit_reason = Some(reason);
                if let Some(done) = done {
                    self.stop_done.push(done);
                }
                let stopping = self.stop_children();
                actx.wait(stopping.into_actor(self).map(|(), _, actx| actx.stop()));
            }
        }
    }
}

struct FindChild {
    id: String,
}

impl Message for FindChild {
    type Result = Option<Arc<dyn Any + Send + Sync>>;
}

impl ActixHandler<FindChild> for Supervisor {
    type Result = Option<Arc<dyn Any + Send + Sync>>;

    fn handle(&mut self, msg: FindChild, _: &mut Context<Self>) -> Self::Result {
        self.children
            .values()
            .find(|c| *c.handle.node.id == *msg.id)
            .and_then(|c| c.handle.addr.clone())
    }
}

struct AddChild {
    spec: ChildSpec,
    booted: oneshot::Sender<Result<(), String>>,
}

impl Message for AddChild {
    type Result = ();
}

impl ActixHandler<AddChild> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: AddChild, actx: &mut Context<Self>) {
        if self.phase != Phase::Running {
            let _ = msg.booted.send(Err("supervisor is not running".into()));
            return;
        }
        let handle = (msg.spec.start)(self.start_args(actx, Some(msg.booted), msg.spec.shutdown));
        let (restart, shutdown) = (msg.spec.restart, msg.spec.shutdown);
        self.insert(None, Some(msg.spec), handle, restart, shutdown);
    }
}
