//! Running one call: the handler runs to completion (in the sender's trace
//! span) before anything else, its outcome is answered to the sender, and
//! the state is put back, or the crash reported.
//!
//! One handler at a time, always: nothing here may run a second handler
//! while one is in flight, nor decide about restarts.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::{ActorFutureExt, AsyncContext, Context, Handler as ActixHandler, Message};

use super::actor::{Actor, Ctx, Handler};
use super::guard::{ctx_node, guarded, Outcome};
use super::{Cell, Phase};
use crate::supervisors::message::{Answer, Answering, Call, ExitReason, Refusal};
use crate::supervisors::tree::{Kill, Status};

impl<A: Actor> Cell<A> {
    /// Runs one call's handler to completion before anything else.
    pub(super) fn run_call<M>(&mut self, call: Call<M>, actx: &mut Context<Self>)
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
        // sender's (kind and message type only: ids may name a patient)
        // when spans are exported, in the sender's otherwise (its lines
        // name the sender's trace).
        let span = if call.span.is_none() || !crate::telemetry::spans_exported() {
            call.span.clone()
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
        reply: Option<Answering<R>>,
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

/// `Push` for `cardio::actors::device::stream::Push`.
fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}
