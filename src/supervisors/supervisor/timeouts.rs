//! Waiting on one child's start or stop, bounded by its [`Shutdown`]: past
//! the limit the child is killed, and given [`KILL_GRACE`] to confirm.
//!
//! Free functions over a child's control and node: they keep no state and
//! never decide what happens next (the caller does).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::supervisors::message::{Control, ExitReason};
use crate::supervisors::policy::Shutdown;
use crate::supervisors::tree::{Kill, NodeInfo};
use crate::supervisors::ControlSink;

/// After a kill, how long to wait for the child to confirm it is gone.
const KILL_GRACE: Duration = Duration::from_secs(1);

/// Waits for a child's start, bounded by its shutdown timeout: a start hook
/// that hangs is killed, which the child reports as a crash.
pub(super) async fn await_start(
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
                    tracing::warn!(path = %crate::redact::pseudonym::actor_path(&node.path), ?limit, "child did not start in time; killing its start");
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
        tracing::warn!(path = %crate::redact::pseudonym::actor_path(&node.path), %reason, "child failed to start");
    }
}

/// Restarts one child in place and waits for it (see [`await_start`]).
pub(super) async fn restart_child(
    control: &Arc<dyn ControlSink>,
    node: &NodeInfo,
    shutdown: Shutdown,
) {
    let (tx, rx) = oneshot::channel();
    control.do_send(Control::Restart { done: Some(tx) });
    await_start(rx, node, shutdown).await;
}

/// Shuts down independent children all at once.
pub(super) async fn shut_down_all(children: Vec<(Arc<dyn ControlSink>, Arc<NodeInfo>, Shutdown)>) {
    futures_util::future::join_all(children.iter().map(|(control, node, shutdown)| {
        stop_child(control, node, *shutdown, |tx| Control::Shutdown {
            reason: ExitReason::Shutdown,
            done: Some(tx),
        })
    }))
    .await;
}

/// Asks a child to stop (or suspend) and waits, killing it past its timeout.
pub(super) async fn stop_child(
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
    tracing::warn!(path = %crate::redact::pseudonym::actor_path(&node.path), ?limit, "child did not stop in time; killing it");
    node.kill(Kill::RUN);
    if tokio::time::timeout(KILL_GRACE, &mut rx).await.is_err() {
        tracing::error!(path = %crate::redact::pseudonym::actor_path(&node.path), "child did not stop after being killed");
    }
}
