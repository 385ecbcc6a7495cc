//! One child's crash or end: whether to restart it (its policy, its own and
//! the supervisor's restart intensity), after which backoff, alone or with
//! its group (the strategy), or to give up and escalate to the parent.
//!
//! It must not touch a child's actor state: it only sends `Control` and
//! counts; the whole supervisor's start and stop are [`super::lifecycle`]'s.

use std::sync::Arc;
use std::time::Duration;

use actix::{ActorFutureExt, AsyncContext, Context, Handler as ActixHandler, WrapFuture};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::spec::{StartArgs, StartFn};
use super::timeouts::{await_start, restart_child, stop_child};
use super::{Parent, Phase, Supervisor};
use crate::supervisors::message::{ChildNotice, Control, ExitReason};
use crate::supervisors::policy::{RestartPolicy, RestartWindow, Shutdown, Strategy};
use crate::supervisors::tree::{EventKind, NodeInfo, Status};
use crate::supervisors::{ChildHandle, ControlSink};

impl Supervisor {
    /// Restarts the children `keys` (in start order) as one group: the live ones
    /// are suspended in reverse start order, then all are started again in start
    /// order, those whose actor is gone re-created from their spec at their
    /// place. Temporary children are stopped and forgotten instead. The future
    /// yields the re-created children's handles, for [`Self::install`].
    pub(super) fn restart_sequence(
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
    pub(super) fn install(&mut self, made: Vec<(u64, ChildHandle)>) {
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
                tracing::warn!(path = %crate::redact::pseudonym::actor_path(&child.handle.node.path), reason = %why, "stopping a crash-looping child");
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
        tracing::error!(path = %crate::redact::pseudonym::actor_path(&self.node.path), %reason, "supervisor gives up");
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
                tracing::warn!(path = %crate::redact::pseudonym::actor_path(&child.handle.node.path), %reason, "adopted child ended; it returns when next needed");
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
