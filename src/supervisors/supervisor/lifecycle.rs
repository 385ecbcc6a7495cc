//! The supervisor as a whole: spawned, booting its static children in
//! order, restarted in place by its parent, suspended, stopped, and its end
//! reported once; the actix `Actor` impl and the parent's `Control`.
//!
//! A single child's crash or end is not handled here ([`super::restart`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actix::dev::channel;
use actix::{
    Actor as ActixActor, ActorContext, ActorFutureExt, Addr, ArbiterHandle, AsyncContext, Context,
    Handler as ActixHandler, WrapFuture,
};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::handle::SupervisorRef;
use super::spec::{ChildSpec, StartArgs, SupervisorSpec};
use super::timeouts::{await_start, shut_down_all, stop_child};
use super::{Child, Parent, Phase, Supervisor};
use crate::supervisors::message::{ChildNotice, Control, ExitReason};
use crate::supervisors::policy::{RestartPolicy, RestartWindow, Shutdown};
use crate::supervisors::tree::{EventKind, NodeInfo, Status, Tree};
use crate::supervisors::{ArbiterPool, ChildHandle, ControlSink};

impl Supervisor {
    pub(super) fn spawn(
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

    pub(super) fn start_args(
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

    pub(super) fn key_of(&self, uid: u64) -> u64 {
        self.renamed.get(&uid).copied().unwrap_or(uid)
    }

    /// Adds a child; `key` keeps the place of the child it replaces.
    pub(super) fn insert(
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

    pub(super) fn forget(&mut self, key: u64) -> Option<Child> {
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

    /// Stops the children for a restart or a failure: adopted ones for good
    /// (all at once: entities are independent), the others suspended in reverse
    /// start order, kept for a restart in place.
    pub(super) fn suspend_children(&mut self) -> impl std::future::Future<Output = ()> + 'static {
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
