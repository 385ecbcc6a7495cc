//! An actor's incarnations inside its cell: boot (factory, then the
//! `started` hook), crash (state dropped, supervisor told), retire (the
//! `stopping` hook), stop, and the end reported once; the actix `Actor`
//! impl and the supervisor's `Control` (restart, suspend, shut down).
//!
//! A cell never decides about restarts: it reports crashes and obeys
//! `Control`.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use actix::{
    Actor as ActixActor, ActorContext, ActorFutureExt, AsyncContext, Context,
    Handler as ActixHandler, WrapFuture,
};
use tokio::sync::oneshot;

use super::actor::{Actor, Ctx};
use super::guard::{bounded, ctx_node, guarded, Outcome};
use super::{Cell, Exiting, Phase};
use crate::supervisors::message::{panic_reason, ChildNotice, Control, ExitReason};
use crate::supervisors::tree::{EventKind, Kill, Status};
use crate::supervisors::ChildHandle;

impl<A: Actor> Cell<A> {
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

    /// The current incarnation's state is lost: tell the supervisor.
    pub(super) fn crash(&mut self, reason: String, actx: &mut Context<Self>) {
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
        tracing::warn!(path = %crate::redact::pseudonym::actor_path(&self.node.path), %reason, "actor crashed");
        if !self.shared.parent.connected() {
            // No supervisor to restart it: end rather than wait forever.
            tracing::error!(path = %crate::redact::pseudonym::actor_path(&self.node.path), "crashed actor has no supervisor; stopping it");
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
                        tracing::warn!(path = %crate::redact::pseudonym::actor_path(ctx.path()), %reason, "stop hook failed");
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

    pub(super) fn begin_stop(&mut self, reason: ExitReason, actx: &mut Context<Self>) {
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
            tracing::error!(path = %crate::redact::pseudonym::actor_path(&self.node.path), %reason, "actor ended abnormally");
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

impl<A: Actor> ActixActor for Cell<A> {
    type Context = Context<Self>;

    fn started(&mut self, actx: &mut Context<Self>) {
        if !self.shared.parent.connected() {
            tracing::warn!(path = %crate::redact::pseudonym::actor_path(&self.node.path), "supervisor gone before the actor started");
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
