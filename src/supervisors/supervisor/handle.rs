//! [`SupervisorRef`]: the handle to a running supervisor (start a root,
//! find a child, add one, shut it all down), and the two requests only the
//! handle sends (`FindChild`, `AddChild`).
//!
//! It only sends messages: it never reaches into the supervisor's state.

use std::any::Any;
use std::sync::Arc;

use actix::{Addr, Context, Handler as ActixHandler, Message};
use tokio::sync::oneshot;

use super::spec::{ChildSpec, SupervisorSpec};
use super::{Parent, Phase, Supervisor};
use crate::supervisors::cell::ActorRef;
use crate::supervisors::message::{Control, ExitReason};
use crate::supervisors::tree::{NodeInfo, NodeKind, Status, Tree};
use crate::supervisors::Actor;
use crate::supervisors::{ArbiterPool, Notices};

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
