//! Running an actor's own code (a hook or a handler) under guard: a panic
//! becomes a failure reason, a kill from the supervisor becomes
//! [`Outcome::Killed`], and a hook past its time limit counts as a crash.
//!
//! It only reports outcomes: what follows (answer, crash, restart) is the
//! caller's to decide.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;

use super::actor::{Actor, Ctx};
use crate::supervisors::message::panic_reason;
use crate::supervisors::tree::NodeInfo;

pub(super) enum Outcome<T> {
    Done(T),
    Panicked(String),
    Killed,
}

pub(super) fn ctx_node<A: Actor>(ctx: &Ctx<A>) -> &Arc<NodeInfo> {
    ctx.node()
}

/// A hook bounded by the child's shutdown timeout: past it, it is abandoned
/// and reported like a crash.
pub(super) async fn bounded<T>(
    limit: Option<Duration>,
    hook: impl Future<Output = Outcome<T>>,
) -> Outcome<T> {
    match limit {
        None => hook.await,
        Some(limit) => tokio::time::timeout(limit, hook)
            .await
            .unwrap_or_else(|_| Outcome::Panicked(format!("hook took longer than {limit:?}"))),
    }
}

/// Runs an actor's future, turning a panic into a reason and a kill into
/// [`Outcome::Killed`].
pub(super) async fn guarded<F: std::future::Future>(
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
