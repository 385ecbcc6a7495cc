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
//! A cell never decides about restarts: that is its supervisor's job.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use actix::dev::channel;
use actix::{
    Actor as ActixActor, ActorContext, ActorFutureExt, Addr, ArbiterHandle, AsyncContext, Context,
    Handler as ActixHandler, Message, WrapFuture,
};
use std::future::Future;

use futures_util::FutureExt;
use tokio::sync::oneshot;
use tokio::time::Instant;

pub mod actor;

use super::message::{
    panic_reason, Answer, Call, ChildNotice, Control, ExitReason, Pending, Refusal, Reply,
    SendError,
};
use super::policy::{RestartPolicy, Shutdown};
use super::tree::{EventKind, Kill, NodeInfo, Status, Tree};
use super::{ChildHandle, Notices};
use actor::{Actor, Ctx, Handler};

/// What the registry offers a cell so that the cell can leave it.
pub(crate) trait Index: Send + Sync {
    /// Removes `node`'s entry if it is still the one registered.
    fn forget(&self, node: &Arc<NodeInfo>);
    /// Removes `node`'s entry only if nothing is queued for it; true if removed.
    /// After it returns true, no new message can reach this cell.
    fn try_passivate(&self, node: &Arc<NodeInfo>) -> bool;
}

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

enum Outcome<T> {
    Done(T),
    Panicked(String),
    Killed,
}

/// A stashed call of any message type the actor handles.
trait Stashed<A: Actor> {
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

    /// Creates a fresh incarnation: factory, then the `started` hook.
    fn boot(
        &mut self,
        actx: &mut Context<Self>,
        done: Option<oneshot::Sender<Result<(), String>>>,
    ) {
        self.incarnation += 1;
        self.suspended = false;
        self.node.clear_kill();
        self.phase = Phase::Starting;
        self.node.set_status(Status::Starting);
        let factory = Arc::clone(&self.shared.factory);
        let made = std::panic::catch_unwind(AssertUnwindSafe(|| factory(&self.node.id)));
        let mut state = match made {
            Ok(actor) => Box::new(actor),
            Err(payload) => {
                let reason = panic_reason(&*payload);
                if let Some(done) = done {
                    let _ = done.send(Err(reason.clone()));
                }
                self.crash(reason, actx);
                return;
            }
        };
        let mut ctx = match self.ctx.take() {
            Some(ctx) => ctx,
            None => Ctx::new(Arc::clone(&self.node), actx.address().downgrade()),
        };
        ctx.stop_requested = false;
        ctx.incarnation = self.incarnation;
        let limit = self.shared.shutdown.timeout();
        let fut = async move {
            let node = Arc::clone(ctx_node(&ctx));
            let outcome = bounded(limit, guarded(state.started(&mut ctx), node, Kill::START)).await;
            (state, ctx, outcome)
        };
        actx.wait(
            fut.into_actor(self)
                .map(move |(state, ctx, outcome), cell, actx| {
                    cell.ctx = Some(ctx);
                    match outcome {
                        Outcome::Done(()) => {
                            cell.state = Some(state);
                            cell.phase = Phase::Running;
                            cell.node.set_status(Status::Running);
                            cell.node.mark_started();
                            cell.shared.tree.emit(&cell.node, EventKind::Started);
                            if let Some(done) = done {
                                let _ = done.send(Ok(()));
                            }
                            cell.active = true;
                            cell.arm_idle(actx);
                            cell.next_stashed(actx);
                        }
                        Outcome::Panicked(reason) => {
                            drop(state);
                            if let Some(done) = done {
                                let _ = done.send(Err(reason.clone()));
                            }
                            cell.crash(reason, actx);
                        }
                        Outcome::Killed => {
                            drop(state);
                            let reason = "killed while starting".to_owned();
                            if let Some(done) = done {
                                let _ = done.send(Err(reason.clone()));
                            }
                            cell.crash(reason, actx);
                        }
                    }
                }),
        );
    }

    /// Runs one call's handler to completion before anything else.
    fn run_call<M>(&mut self, call: Call<M>, actx: &mut Context<Self>)
    where
        A: Handler<M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        if self.state.is_none() || self.ctx.is_none() {
            call.refuse(Refusal::Stopped);
            return;
        }
        // A traced sender: the handler runs in a span of its own below the
        // sender's (kind and message type only: ids may name a patient).
        let span = if call.span.is_none() {
            tracing::Span::none()
        } else {
            tracing::info_span!(
                parent: &call.span,
                "actor.handle",
                otel.name = %format_args!("{} {}", A::KIND, short_type_name::<M>()),
                kind = A::KIND,
                message = short_type_name::<M>(),
            )
        };
        // `None`: the sender took the message back (deadline); nothing to do.
        let Some((msg, reply)) = call.take() else {
            return;
        };
        let (Some(mut state), Some(mut ctx)) = (self.state.take(), self.ctx.take()) else {
            unreachable!("checked above");
        };
        let mut fut = Box::pin(tracing::Instrument::instrument(
            async move {
                let node = Arc::clone(ctx_node(&ctx));
                let outcome = guarded(state.handle(msg, &mut ctx), node, Kill::RUN).await;
                (state, ctx, outcome)
            },
            span,
        ));
        // Most handlers finish without waiting: run them to completion here and
        // skip actix's wait queue. One that has to wait is handed to
        // `Context::wait`, which polls it again at once with the real waker (a
        // future must accept being polled again with a new waker).
        let mut first = std::task::Context::from_waker(std::task::Waker::noop());
        match fut.as_mut().poll(&mut first) {
            std::task::Poll::Ready(done) => self.after_call(done, reply, actx),
            std::task::Poll::Pending => actx.wait(
                actix::fut::wrap_future::<_, Self>(fut)
                    .map(move |done, cell, actx| cell.after_call(done, reply, actx)),
            ),
        }
    }

    /// Puts the state back and answers the sender after a handler ran.
    fn after_call<R>(
        &mut self,
        (state, ctx, outcome): (Box<A>, Ctx<A>, Outcome<R>),
        reply: Option<super::message::Answering<R>>,
        actx: &mut Context<Self>,
    ) {
        match outcome {
            Outcome::Done(value) => {
                let stop = ctx.stop_requested;
                self.state = Some(state);
                self.ctx = Some(ctx);
                if let Some(tx) = reply {
                    let _ = tx.send(Answer::Done(value));
                }
                if stop {
                    self.begin_stop(ExitReason::Normal, actx);
                } else {
                    self.next_stashed(actx);
                }
            }
            Outcome::Panicked(reason) => {
                drop(state);
                self.ctx = Some(ctx);
                if let Some(tx) = reply {
                    let _ = tx.send(Answer::Crashed(reason.clone()));
                }
                self.crash(reason, actx);
            }
            Outcome::Killed => {
                drop(state);
                self.ctx = Some(ctx);
                if let Some(tx) = reply {
                    let _ = tx.send(Answer::Crashed("killed by its supervisor".into()));
                }
                self.phase = Phase::Restarting;
                self.node.set_status(Status::Restarting);
            }
        }
    }

    /// Takes the next stashed call, if the actor can run it now. Handlers that
    /// finish at once come back here through `after_call`: the loop, not
    /// recursion, drains them.
    fn next_stashed(&mut self, actx: &mut Context<Self>) {
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
    fn stash(&mut self, stashed: Box<dyn Stashed<A>>, _: &mut Context<Self>) {
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
    fn refuse_stash(&mut self) {
        let n = self.stash.len() as u32;
        self.node.depth.fetch_sub(n, Ordering::Relaxed);
        for stashed in self.stash.drain(..) {
            stashed.refuse(Refusal::Stopped);
        }
    }

    fn exiting(&mut self) -> &mut Exiting {
        self.exit.get_or_insert_with(|| {
            Box::new(Exiting {
                reason: None,
                done: Vec::new(),
            })
        })
    }

    fn stop_begun(&self) -> bool {
        self.exit.as_ref().is_some_and(|e| e.reason.is_some())
    }

    fn index(&self) -> Option<Arc<dyn Index>> {
        self.shared.index.as_ref().and_then(Weak::upgrade)
    }

    /// The current incarnation's state is lost: tell the supervisor.
    fn crash(&mut self, reason: String, actx: &mut Context<Self>) {
        self.state = None;
        self.phase = Phase::Restarting;
        self.node.set_status(Status::Restarting);
        self.node.set_failure(&reason);
        self.shared.tree.emit(
            &self.node,
            EventKind::Crashed {
                reason: reason.clone(),
            },
        );
        tracing::warn!(path = %self.node.path, %reason, "actor crashed");
        if !self.shared.parent.connected() {
            // No supervisor to restart it: end rather than wait forever.
            tracing::error!(path = %self.node.path, "crashed actor has no supervisor; stopping it");
            self.exiting().reason = Some(ExitReason::Crashed(reason));
            actx.stop();
            return;
        }
        self.shared.parent.do_send(ChildNotice::Crashed {
            uid: self.node.uid,
            incarnation: self.incarnation,
            reason,
        });
    }

    /// Runs the `stopping` hook if there is live state, drops the state, then `then`.
    fn retire<F>(&mut self, actx: &mut Context<Self>, then: F)
    where
        F: FnOnce(&mut Self, &mut Context<Self>) + 'static,
    {
        match (self.state.take(), self.ctx.take()) {
            (Some(mut state), Some(mut ctx)) => {
                self.phase = Phase::Stopping;
                self.node.set_status(Status::Stopping);
                let limit = self.shared.shutdown.timeout();
                let fut = async move {
                    let node = Arc::clone(ctx_node(&ctx));
                    let stopping = guarded(state.stopping(&mut ctx), node, Kill::RUN);
                    if let Outcome::Panicked(reason) = bounded(limit, stopping).await {
                        tracing::warn!(path = %ctx.path(), %reason, "stop hook failed");
                    }
                    drop(state);
                    ctx
                };
                actx.wait(fut.into_actor(self).map(move |ctx, cell, actx| {
                    cell.ctx = Some(ctx);
                    then(cell, actx)
                }));
            }
            (_, ctx) => {
                self.ctx = ctx;
                then(self, actx)
            }
        }
    }

    fn begin_stop(&mut self, reason: ExitReason, actx: &mut Context<Self>) {
        if self.stop_begun() || self.phase == Phase::Stopped {
            return;
        }
        self.exiting().reason = Some(reason);
        self.retire(actx, |cell, actx| {
            cell.phase = Phase::Stopping;
            cell.refuse_stash();
            actx.stop();
        });
    }

    fn arm_idle(&mut self, actx: &mut Context<Self>) {
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

    /// Reports the end of this cell, once.
    fn finish(&mut self, fallback: ExitReason) {
        if self.exit_reported {
            return;
        }
        self.exit_reported = true;
        self.phase = Phase::Stopped;
        self.node.set_status(Status::Stopped);
        if let Some(index) = self.index() {
            index.forget(&self.node);
        }
        self.refuse_stash();
        self.shared.tree.remove(&self.node);
        let exit = self.exit.take();
        let reason = exit
            .as_ref()
            .and_then(|e| e.reason.clone())
            .unwrap_or(fallback);
        if reason == ExitReason::Passivated {
            crate::metrics::passivated(self.node.kind_name());
        }
        if reason.is_abnormal() {
            tracing::error!(path = %self.node.path, %reason, "actor ended abnormally");
        }
        self.shared.tree.emit(
            &self.node,
            EventKind::Stopped {
                reason: reason.to_string(),
            },
        );
        self.shared.parent.do_send(ChildNotice::Exited {
            uid: self.node.uid,
            reason,
        });
        for done in exit.into_iter().flat_map(|e| e.done) {
            let _ = done.send(());
        }
    }
}

fn ctx_node<A: Actor>(ctx: &Ctx<A>) -> &Arc<NodeInfo> {
    ctx.node()
}

/// A hook bounded by the child's shutdown timeout: past it, it is abandoned
/// and reported like a crash.
async fn bounded<T>(limit: Option<Duration>, hook: impl Future<Output = Outcome<T>>) -> Outcome<T> {
    match limit {
        None => hook.await,
        Some(limit) => tokio::time::timeout(limit, hook)
            .await
            .unwrap_or_else(|_| Outcome::Panicked(format!("hook took longer than {limit:?}"))),
    }
}

/// Runs an actor's future, turning a panic into a reason and a kill into
/// [`Outcome::Killed`].
async fn guarded<F: std::future::Future>(
    fut: F,
    node: Arc<NodeInfo>,
    scope: u8,
) -> Outcome<F::Output> {
    let mut running = std::pin::pin!(AssertUnwindSafe(fut).catch_unwind());
    // The kill watch is made only if the future does not finish at once: most
    // handlers do, and the watch would triple the size of every handler's task.
    let mut killed: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>> = None;
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(result) = running.as_mut().poll(cx) {
            return std::task::Poll::Ready(match result {
                Ok(value) => Outcome::Done(value),
                Err(payload) => Outcome::Panicked(panic_reason(&*payload)),
            });
        }
        let watch = killed.get_or_insert_with(|| {
            let node = Arc::clone(&node);
            Box::pin(async move { node.killed(scope).await })
        });
        match watch.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => std::task::Poll::Ready(Outcome::Killed),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    })
    .await
}

impl<A: Actor> ActixActor for Cell<A> {
    type Context = Context<Self>;

    fn started(&mut self, actx: &mut Context<Self>) {
        if !self.shared.parent.connected() {
            tracing::warn!(path = %self.node.path, "supervisor gone before the actor started");
            self.exiting().reason = Some(ExitReason::Shutdown);
            actx.stop();
            return;
        }
        if let Some((restart, shutdown)) = self.shared.announce {
            self.shared.parent.do_send(ChildNotice::Adopted {
                handle: ChildHandle {
                    node: Arc::clone(&self.node),
                    control: Arc::new(actx.address().downgrade()),
                    // Adopted cells are found through the registry.
                    addr: None,
                },
                restart,
                shutdown,
            });
        }
        let booted = self.booted.take();
        self.boot(actx, booted);
    }

    /// actix stops an actor once no strong address is left; a cell lives until
    /// its supervisor or the registry stops it (they reach it through weak
    /// addresses).
    fn stopping(&mut self, _: &mut Context<Self>) -> actix::Running {
        if self.stop_begun() {
            actix::Running::Stop
        } else {
            actix::Running::Continue
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.finish(ExitReason::Crashed("actor stopped unexpectedly".into()));
    }
}

impl<A: Actor> Drop for Cell<A> {
    fn drop(&mut self) {
        // Reached without `stopped` only if the actor's task died (a bug in a
        // hook outside our guards, or its arbiter went away).
        self.finish(ExitReason::Crashed("actor terminated unexpectedly".into()));
    }
}

impl<A, M> ActixHandler<Call<M>> for Cell<A>
where
    A: Handler<M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    type Result = ();

    fn handle(&mut self, call: Call<M>, actx: &mut Context<Self>) {
        self.node.depth.fetch_sub(1, Ordering::Relaxed);
        if call.incarnation != 0 && call.incarnation != self.incarnation {
            return; // a timer set by an earlier incarnation
        }
        self.active = true;
        match self.phase {
            // No clock read here: a sender takes its message back itself at the
            // deadline (see `Pending::wait`), so a message still in its slot is
            // still wanted.
            // Older messages held during a restart go first.
            Phase::Running if !self.stash.is_empty() => {
                self.stash(Box::new(call), actx);
                self.next_stashed(actx);
            }
            Phase::Running => self.run_call(call, actx),
            Phase::Starting | Phase::Restarting => self.stash(Box::new(call), actx),
            Phase::Stopping | Phase::Stopped => call.refuse(Refusal::Stopped),
        }
    }
}

impl<A: Actor> ActixHandler<Control> for Cell<A> {
    type Result = ();

    fn handle(&mut self, msg: Control, actx: &mut Context<Self>) {
        match msg {
            Control::Restart { done } => {
                if matches!(self.phase, Phase::Stopping | Phase::Stopped) {
                    if let Some(done) = done {
                        let _ = done.send(Err("stopping".into()));
                    }
                    return;
                }
                self.retire(actx, move |cell, actx| cell.boot(actx, done));
            }
            Control::Suspend { done } => {
                if matches!(self.phase, Phase::Stopping | Phase::Stopped) {
                    let _ = done.send(());
                    return;
                }
                if self.suspended {
                    let _ = done.send(());
                    return;
                }
                self.retire(actx, move |cell, _| {
                    cell.phase = Phase::Restarting;
                    cell.suspended = true;
                    cell.node.set_status(Status::Restarting);
                    cell.shared.tree.emit(
                        &cell.node,
                        EventKind::Stopped {
                            reason: ExitReason::Shutdown.to_string(),
                        },
                    );
                    let _ = done.send(());
                });
            }
            Control::Shutdown { reason, done } => {
                if let Some(done) = done {
                    if self.exit_reported {
                        let _ = done.send(());
                    } else {
                        self.exiting().done.push(done);
                    }
                }
                self.begin_stop(reason, actx);
            }
        }
    }
}

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
        let mut pause = Duration::from_millis(1);
        loop {
            match self.enqueue(msg, deadline) {
                Ok(pending) => {
                    return pending
                        .wait(|| self.node.status() == Status::Restarting)
                        .await
                }
                Err(SendError::MailboxFull(back)) if Instant::now() + pause < deadline => {
                    msg = back;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
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

/// `Push` for `cardio::actors::device::stream::Push`.
fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}
