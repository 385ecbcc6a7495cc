//! Messages between callers, cells and supervisors, and the typed errors a
//! sender gets back. A message that cannot be handled is handed back inside the
//! error; it is never dropped silently.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};

use actix::Message;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::policy::{RestartPolicy, Shutdown};
use super::ChildHandle;

/// Why a message did not get a reply. Variants that carry `M` hand the message
/// back untouched: it was never given to a handler.
///
/// `Debug` and `Display` never print the message itself (it may hold PHI).
#[derive(thiserror::Error)]
pub enum SendError<M> {
    /// The actor stopped (shut down, passivated, killed) before taking the message.
    #[error("actor stopped before handling the message")]
    Stopped(M),
    /// The actor was restarting after a crash and did not come back before the
    /// message's deadline.
    #[error("actor still restarting at the message's deadline")]
    Restarting(M),
    /// The deadline passed while the message waited in the mailbox.
    #[error("message deadline passed before the actor took it")]
    Expired(M),
    /// The actor's mailbox (or its restart stash) is at capacity.
    #[error("actor mailbox is full")]
    MailboxFull(M),
    /// The address is not a valid actor id for this kind.
    #[error("invalid actor id")]
    InvalidId(M),
    /// The handler panicked while handling this message; the actor crashed and
    /// is restarted per its policy. The message was consumed.
    #[error("actor crashed while handling the message: {reason}")]
    Crashed { reason: String },
    /// No reply by the deadline; the handler may still complete.
    #[error("no reply before the deadline")]
    Timeout,
}

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            SendError::Stopped(_) => "Stopped(..)",
            SendError::Restarting(_) => "Restarting(..)",
            SendError::Expired(_) => "Expired(..)",
            SendError::MailboxFull(_) => "MailboxFull(..)",
            SendError::InvalidId(_) => "InvalidId(..)",
            SendError::Crashed { reason } => return write!(f, "Crashed {{ reason: {reason:?} }}"),
            SendError::Timeout => "Timeout",
        };
        f.write_str(name)
    }
}

impl<M> SendError<M> {
    /// The message, when it was handed back.
    pub fn into_message(self) -> Option<M> {
        match self {
            SendError::Stopped(m)
            | SendError::Restarting(m)
            | SendError::Expired(m)
            | SendError::MailboxFull(m)
            | SendError::InvalidId(m) => Some(m),
            SendError::Crashed { .. } | SendError::Timeout => None,
        }
    }

    /// Keeps the kind of error, drops the message (for logs and bus replies).
    pub fn without_message(&self) -> SendError<()> {
        match self {
            SendError::Stopped(_) => SendError::Stopped(()),
            SendError::Restarting(_) => SendError::Restarting(()),
            SendError::Expired(_) => SendError::Expired(()),
            SendError::MailboxFull(_) => SendError::MailboxFull(()),
            SendError::InvalidId(_) => SendError::InvalidId(()),
            SendError::Crashed { reason } => SendError::Crashed {
                reason: reason.clone(),
            },
            SendError::Timeout => SendError::Timeout,
        }
    }
}

pub(crate) type Reply<M> = Result<<M as Message>::Result, SendError<M>>;

/// Why a message is refused without being handled.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Refusal {
    Stopped,
    Restarting,
    Full,
}

/// Where a message waits until either its actor takes it for handling or its
/// sender takes it back (deadline passed, refused, actor gone). Whoever takes it
/// first owns it, so a message is never lost between the two.
type Slot<M> = Arc<Mutex<Option<M>>>;

fn take<M>(slot: &Slot<M>) -> Option<M> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// What a cell tells the sender. Refusals carry no message: the sender takes
/// it back from the slot.
pub(crate) enum Answer<R> {
    Done(R),
    Refused(Refusal),
    Crashed(String),
}

/// Where a cell sends its answer.
pub(crate) type Answering<R> = oneshot::Sender<Answer<R>>;

/// A message on its way to a cell, with its reply channel and deadline.
/// Dropped unhandled (the cell died with it queued), it tells the sender, who
/// takes the message back.
pub(crate) struct Call<M: Message> {
    slot: Slot<M>,
    reply: Option<Answering<M::Result>>,
    pub(crate) deadline: Instant,
    /// For a timer: the incarnation that set it (timers die with it); 0: any.
    pub(crate) incarnation: u32,
    /// The sender's span: the handler's span is its child (traces).
    pub(crate) span: tracing::Span,
}

/// The sender's half of a [`Call`].
pub(crate) struct Pending<M: Message> {
    slot: Slot<M>,
    rx: oneshot::Receiver<Answer<M::Result>>,
    deadline: Instant,
}

impl<M: Message> Call<M> {
    pub(crate) fn new(msg: M, deadline: Instant) -> (Self, Pending<M>) {
        let (tx, rx) = oneshot::channel();
        let slot = Arc::new(Mutex::new(Some(msg)));
        (
            Self {
                slot: Arc::clone(&slot),
                reply: Some(tx),
                deadline,
                incarnation: 0,
                span: if crate::telemetry::tracing_on() {
                    tracing::Span::current()
                } else {
                    tracing::Span::none()
                },
            },
            Pending { slot, rx, deadline },
        )
    }

    /// A timer's call: nobody waits for it, and only `incarnation` takes it.
    pub(crate) fn timer(msg: M, deadline: Instant, incarnation: u32) -> Self {
        Self {
            slot: Arc::new(Mutex::new(Some(msg))),
            reply: None,
            deadline,
            incarnation,
            span: tracing::Span::none(),
        }
    }

    /// Takes the message for handling, with the reply channel; `None` if the
    /// sender already took it back.
    pub(crate) fn take(mut self) -> Option<(M, Option<Answering<M::Result>>)> {
        let msg = take(&self.slot)?;
        Some((msg, self.reply.take()))
    }

    /// Refuses the call; the sender takes the message back.
    pub(crate) fn refuse(mut self, why: Refusal) {
        if let Some(tx) = self.reply.take() {
            let _ = tx.send(Answer::Refused(why));
        }
    }

    /// Whether the sender has given up on it (took the message back).
    pub(crate) fn abandoned(&self) -> bool {
        self.slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    /// The message back out of a call that never left the sender.
    pub(crate) fn into_message(mut self) -> M {
        self.reply = None;
        take(&self.slot).expect("an unsent call holds its message")
    }
}

impl<M: Message> Drop for Call<M> {
    fn drop(&mut self) {
        if let Some(tx) = self.reply.take() {
            let _ = tx.send(Answer::Refused(Refusal::Stopped));
        }
    }
}

impl<M: Message> Pending<M> {
    /// Waits for the answer until the deadline. Past it, the message is taken
    /// back if no handler has it yet (`Expired`, or `Restarting` if the actor is
    /// restarting); otherwise the answer is `Timeout`.
    pub(crate) async fn wait(mut self, restarting: impl Fn() -> bool) -> Reply<M> {
        // Let the scheduler run once (the actor, if it shares this thread)
        // before arming a deadline timer: most answers are back by then, and a
        // timer costs more than the request itself. The deadline still holds: at
        // most one scheduler turn passes unguarded.
        let mut yielded = false;
        let early = std::future::poll_fn(|cx| match std::pin::Pin::new(&mut self.rx).poll(cx) {
            std::task::Poll::Ready(answer) => std::task::Poll::Ready(Some(answer)),
            std::task::Poll::Pending if !yielded => {
                yielded = true;
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
            std::task::Poll::Pending => std::task::Poll::Ready(None),
        })
        .await;
        let waited = match early {
            Some(answer) => Ok(answer),
            None => tokio::time::timeout_at(self.deadline, &mut self.rx).await,
        };
        let answer = match waited {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => {
                return match take(&self.slot) {
                    Some(msg) => Err(SendError::Stopped(msg)),
                    None => Err(SendError::Crashed {
                        reason: "actor terminated while handling the message".into(),
                    }),
                }
            }
            Err(_) => match take(&self.slot) {
                Some(msg) if restarting() => return Err(SendError::Restarting(msg)),
                Some(msg) => return Err(SendError::Expired(msg)),
                // A handler has it; its answer may be on the way.
                None => match self.rx.try_recv() {
                    Ok(answer) => answer,
                    Err(_) => return Err(SendError::Timeout),
                },
            },
        };
        match answer {
            Answer::Done(value) => Ok(value),
            Answer::Crashed(reason) => Err(SendError::Crashed { reason }),
            Answer::Refused(why) => match take(&self.slot) {
                Some(msg) => Err(match why {
                    Refusal::Stopped => SendError::Stopped(msg),
                    Refusal::Restarting => SendError::Restarting(msg),
                    Refusal::Full => SendError::MailboxFull(msg),
                }),
                None => Err(SendError::Timeout),
            },
        }
    }
}

impl<M: Message + 'static> Message for Call<M> {
    type Result = ();
}

/// Why a child's actor ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// It asked to stop.
    Normal,
    /// It was idle and gave its memory back; it comes back on its next message.
    Passivated,
    /// Its parent stopped it.
    Shutdown,
    /// Its parent stopped it and it did not finish within its shutdown timeout.
    Killed,
    /// It ended abnormally outside any handler.
    Crashed(String),
}

impl ExitReason {
    pub fn is_abnormal(&self) -> bool {
        matches!(self, ExitReason::Crashed(_))
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Normal => f.write_str("normal"),
            ExitReason::Passivated => f.write_str("passivated"),
            ExitReason::Shutdown => f.write_str("shutdown"),
            ExitReason::Killed => f.write_str("killed"),
            ExitReason::Crashed(r) => write!(f, "crashed: {r}"),
        }
    }
}

/// Parent to child.
pub(crate) enum Control {
    /// Start a fresh incarnation (graceful stop of the old one first, if alive).
    Restart {
        done: Option<oneshot::Sender<Result<(), String>>>,
    },
    /// Stop the current incarnation gracefully and wait for `Restart` or `Shutdown`
    /// (a sibling is restarting under one-for-all / rest-for-one).
    Suspend { done: oneshot::Sender<()> },
    /// Stop for good.
    Shutdown {
        reason: ExitReason,
        done: Option<oneshot::Sender<()>>,
    },
}

impl Message for Control {
    type Result = ();
}

/// Child to parent.
pub(crate) enum ChildNotice {
    /// A child started elsewhere (registry activation, a kind's supervisor) joins.
    Adopted {
        handle: ChildHandle,
        restart: RestartPolicy,
        shutdown: Shutdown,
    },
    /// The child's incarnation crashed; its state is gone and it waits for
    /// `Restart` or `Shutdown`.
    Crashed {
        uid: u64,
        incarnation: u32,
        reason: String,
    },
    /// The child's actor is gone.
    Exited { uid: u64, reason: ExitReason },
}

impl Message for ChildNotice {
    type Result = ();
}

/// Turns a panic payload into a short reason for the tree and the logs.
pub(crate) fn panic_reason(payload: &(dyn std::any::Any + Send)) -> String {
    let text = if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    };
    let mut reason = format!("panicked: {text}");
    if reason.len() > 200 {
        let mut cut = 200;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
        reason.push('…');
    }
    reason
}
