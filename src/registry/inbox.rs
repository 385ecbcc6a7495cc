//! The inbox: consumes this node's shard queues and hands each message to its
//! actor through the registry.
//!
//! A delivery is acknowledged only after the actor's handler returned (its
//! effects are done); a crash or an unavailable actor requeues it, so it is
//! redelivered, and the bus dead-letters it past the delivery limit; a message
//! that can never work (not an envelope, no such message type, deadline passed)
//! is dead-lettered at once with the reason.
//!
//! Order is per actor, not per shard: [`Lanes`] handles the deliveries of one
//! shard concurrently across actors and one after another for each actor (a
//! delivery for an actor with one in flight waits behind it), so one actor
//! that is slow to start or to answer does not hold up the others on its
//! shard. The consumer's prefetch bounds what is in hand. The cluster's shard
//! consumers and the test [`Inbox`] both dispatch through it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::{DeliverError, Registry};
use crate::bus::{Bus, BusError, Delivery, Nacked};
use crate::supervisors::EventKind;

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    Acked,
    Requeued(String),
    DeadLettered(String),
}

/// Running shard consumers.
pub struct Inbox {
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl Inbox {
    /// Starts one consumer per shard in `shards`, on the current arbiter.
    pub async fn start(
        registry: Registry,
        bus: Arc<dyn Bus>,
        shards: impl IntoIterator<Item = u16>,
        prefetch: u16,
    ) -> Result<Inbox, BusError> {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        for shard in shards {
            let mut sub = bus.consume_shard(shard, prefetch).await?;
            let (registry, bus, mut stopped) =
                (registry.clone(), Arc::clone(&bus), stopped.clone());
            tasks.push(actix_rt::spawn(async move {
                let mut lanes = Lanes::new(registry, bus, Arc::new(|| false));
                loop {
                    tokio::select! {
                        biased;
                        _ = stopped.changed() => break,
                        () = lanes.next_done(), if lanes.running() > 0 => {}
                        next = sub.next() => match next {
                            Some(delivery) => lanes.push(delivery),
                            None => break,
                        },
                    }
                }
                lanes.finish().await;
            }));
        }
        Ok(Inbox { tasks, stop })
    }

    /// Stops taking messages; the messages being handled on each shard are
    /// finished (those waiting behind them go back to the queue).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// The lane of a delivery: its recipient's address, or (no readable
/// recipient: it will be set aside) a lane of its own.
fn lane_of(delivery: &Delivery, fresh: &mut u64) -> (Arc<str>, Option<crate::bus::Envelope>) {
    match delivery.envelope() {
        Ok(env) => match &env.to {
            Some(to) => (Arc::from(to.to_string()), Some(env)),
            None => {
                *fresh += 1;
                (Arc::from(format!("\0{fresh}")), Some(env))
            }
        },
        Err(_) => {
            *fresh += 1;
            (Arc::from(format!("\0{fresh}")), None)
        }
    }
}

/// How long past its message's deadline a delivery may take to settle (the
/// reply's publish, the ack, a dead letter's confirm: each bounded by the
/// bus) before its lane gives it up; see [`Lanes`].
pub const SETTLE_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

/// Whether a failed delivery's shard moved away (then it is handed back
/// without counting as a failure); see [`deliver_unless_moved`].
pub type Moved = Arc<dyn Fn() -> bool + Send + Sync>;

/// Per-actor lanes of one shard consumer; see the module docs. Each delivery
/// is handled in a task of its own (on the current arbiter), so handling goes
/// on while the consumer waits for something else.
pub struct Lanes {
    registry: Registry,
    bus: Arc<dyn Bus>,
    moved: Moved,
    /// Deliveries waiting behind the one in flight for the same actor; a lane
    /// is present while a delivery of it is in flight.
    lanes: HashMap<Arc<str>, VecDeque<(Delivery, Option<crate::bus::Envelope>)>>,
    running: JoinSet<()>,
    /// The lane of each running task.
    of_task: HashMap<tokio::task::Id, Arc<str>>,
    fresh: u64,
}

impl Lanes {
    pub fn new(registry: Registry, bus: Arc<dyn Bus>, moved: Moved) -> Lanes {
        Lanes {
            registry,
            bus,
            moved,
            lanes: HashMap::new(),
            running: JoinSet::new(),
            of_task: HashMap::new(),
            fresh: 0,
        }
    }

    /// Takes a delivery: handled now, or after the one in flight for its actor.
    pub fn push(&mut self, delivery: Delivery) {
        let (lane, env) = lane_of(&delivery, &mut self.fresh);
        match self.lanes.get_mut(&lane) {
            Some(waiting) => waiting.push_back((delivery, env)),
            None => {
                self.lanes.insert(Arc::clone(&lane), VecDeque::new());
                self.start(lane, delivery, env);
            }
        }
    }

    fn start(&mut self, lane: Arc<str>, delivery: Delivery, env: Option<crate::bus::Envelope>) {
        let (registry, bus, moved) = (
            self.registry.clone(),
            Arc::clone(&self.bus),
            Arc::clone(&self.moved),
        );
        // The watchdog: a delivery may take its message's time and then
        // SETTLE_GRACE to settle, no more. Every step below is bounded on
        // its own; this bounds the whole, so that a wait nobody foresaw (a
        // settle on a connection that died without a word) cannot hold the
        // actor's lane, and every later message of the actor, for ever.
        let limit = env
            .as_ref()
            .and_then(crate::bus::Envelope::time_left)
            .unwrap_or_else(|| registry.default_timeout())
            + SETTLE_GRACE;
        let msg_type = env.as_ref().map(|e| shorten(&e.msg_type).to_owned());
        let lane_of_task = Arc::clone(&lane);
        let task = self.running.spawn_local(async move {
            if !delivery.usable() {
                // Its channel closed while it waited behind another: the
                // broker has it back (maybe delivered elsewhere already).
                // Handling it could only repeat it, and settling it could
                // only publish a copy or wait on a dead channel.
                return;
            }
            let moved = move || moved();
            let handled = async move {
                match env {
                    Some(env) => {
                        deliver_decoded(&registry, bus.as_ref(), delivery, env, moved).await;
                    }
                    None => {
                        deliver_unless_moved(&registry, bus.as_ref(), delivery, moved).await;
                    }
                }
            };
            if tokio::time::timeout(limit, handled).await.is_err() {
                // Dropped unsettled with the future: back to the queue (its
                // handler tolerates a repeat; past its deadline it is set
                // aside on its next delivery).
                crate::metrics::delivery_overran();
                // Its pseudonym is worked out only now, off the hot path.
                let actor = crate::redact::pseudonym::actor_key(&lane_of_task);
                tracing::error!(
                    %actor,
                    msg_type = msg_type.as_deref().unwrap_or("?"),
                    limit_ms = limit.as_millis() as u64,
                    "a delivery overran its deadline and was given up; its actor's next messages go on"
                );
            }
        });
        self.of_task.insert(task.id(), lane);
    }

    /// Deliveries being handled now.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Deliveries taken and not yet finished (running or waiting).
    pub fn in_hand(&self) -> usize {
        self.running.len() + self.lanes.values().map(VecDeque::len).sum::<usize>()
    }

    /// Waits for one running delivery to finish and starts the next one of
    /// its actor. Pending forever when nothing runs (guard it in `select!`).
    pub async fn next_done(&mut self) {
        let Some(done) = self.running.join_next_with_id().await else {
            return std::future::pending().await;
        };
        let id = match &done {
            Ok((id, ())) => *id,
            Err(e) => {
                // Settling never panics by design; the delivery was dropped
                // (so re-queued) with the task.
                tracing::error!(error = %e, "a delivery's task failed");
                e.id()
            }
        };
        let Some(lane) = self.of_task.remove(&id) else {
            return;
        };
        let next = self.lanes.get_mut(&lane).and_then(VecDeque::pop_front);
        match next {
            Some((delivery, env)) => self.start(lane, delivery, env),
            None => {
                self.lanes.remove(&lane);
            }
        }
    }

    /// Finishes what is being handled; deliveries still waiting behind it go
    /// back to the queue unhandled (their actors' order is kept: each waited
    /// behind one that is finished first).
    pub async fn finish(&mut self) {
        self.lanes.clear(); // dropped unsettled: re-queued
        while let Some(done) = self.running.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "a delivery's task failed");
            }
        }
        self.of_task.clear();
    }
}

/// Sets `delivery` aside for `reason`; `topic`: its message type, if its
/// envelope could be read (else its queue's name is kept).
async fn bury(
    registry: &Registry,
    delivery: Delivery,
    topic: Option<&str>,
    reason: String,
) -> Delivered {
    tracing::warn!(%reason, queue = %delivery.info().queue, "message dead-lettered");
    let topic = topic.unwrap_or(&delivery.info().queue).to_owned();
    match delivery.dead_letter(&reason).await {
        Ok(()) => registry.tree().dead_letters().record(&topic, &reason),
        Err(e) => {
            tracing::error!(error = %e, "could not dead-letter a message; it will be redelivered")
        }
    }
    Delivered::DeadLettered(reason)
}

fn shorten(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Delivers one message to its actor and settles it; see the module docs.
pub async fn deliver(registry: &Registry, bus: &dyn Bus, delivery: Delivery) -> Delivered {
    deliver_unless_moved(registry, bus, delivery, || false).await
}

/// [`deliver`], except that a message whose handling failed because its
/// shard moved to another node (`moved()` is true afterwards) is handed back
/// without counting as a failure: it was not the message's fault.
pub async fn deliver_unless_moved(
    registry: &Registry,
    bus: &dyn Bus,
    delivery: Delivery,
    moved: impl Fn() -> bool,
) -> Delivered {
    let env = match delivery.envelope() {
        Ok(env) => env,
        Err(e) => return bury(registry, delivery, None, e.to_string()).await,
    };
    deliver_decoded(registry, bus, delivery, env, moved).await
}

/// [`deliver_unless_moved`] of a delivery whose envelope was decoded already.
pub async fn deliver_decoded(
    registry: &Registry,
    bus: &dyn Bus,
    delivery: Delivery,
    env: crate::bus::Envelope,
    moved: impl Fn() -> bool,
) -> Delivered {
    if !crate::telemetry::tracing_on() {
        return deliver_envelope(registry, bus, delivery, env, moved).await;
    }
    let span = tracing::info_span!(
        "bus.deliver",
        otel.name = %format_args!("deliver {}", shorten(&env.msg_type)),
        otel.kind = "consumer",
        msg_type = %shorten(&env.msg_type),
        redelivered = delivery.info().redelivered,
    );
    crate::telemetry::continue_trace(&span, &env.trace.traceparent);
    tracing::Instrument::instrument(deliver_envelope(registry, bus, delivery, env, moved), span)
        .await
}

async fn deliver_envelope(
    registry: &Registry,
    bus: &dyn Bus,
    delivery: Delivery,
    env: crate::bus::Envelope,
    moved: impl Fn() -> bool,
) -> Delivered {
    let Some(to) = env.to.clone() else {
        let reason = "actor message without a recipient".into();
        return bury(registry, delivery, Some(&env.msg_type), reason).await;
    };
    let Some(route) = registry.route_of(to.kind(), &env.msg_type) else {
        let reason = format!(
            "no handler for message type {:?} on actor kind {:?}",
            shorten(&env.msg_type),
            to.kind()
        );
        return bury(registry, delivery, Some(&env.msg_type), reason).await;
    };
    let deadline = match env.time_left() {
        Some(left) if left.is_zero() => {
            let reason = "deadline passed before delivery".into();
            return bury(registry, delivery, Some(&env.msg_type), reason).await;
        }
        Some(left) => Instant::now() + left,
        None => Instant::now() + registry.default_timeout(),
    };
    match route.deliver(to.id(), &env.payload, deadline).await {
        Ok(reply) => {
            if let Some(topic) = &env.reply_to {
                // Not past the request's deadline: its caller has given up
                // by then (and the bus would retry for a minute in an outage).
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, bus.reply(topic, &env.reply(reply))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "could not publish a reply"),
                    Err(_) => tracing::debug!("reply not published before the request's deadline"),
                }
            }
            if let Err(e) = delivery.ack().await {
                tracing::warn!(error = %e, "acknowledgement failed; the message will be redelivered");
            }
            Delivered::Acked
        }
        Err(DeliverError::Malformed(reason)) => {
            bury(registry, delivery, Some(&env.msg_type), reason).await
        }
        Err(failure) => {
            let reason = failure.to_string();
            if moved() {
                drop(delivery); // back to the queue, for the shard's new owner
                return Delivered::Requeued(format!("{reason} (its shard moved)"));
            }
            match delivery.nack(&reason).await {
                Ok(Nacked::DeadLettered) => {
                    registry
                        .tree()
                        .dead_letters()
                        .record(&env.msg_type, &reason);
                    tracing::warn!(actor = %crate::redact::pseudonym::actor_key(&to.to_string()), %reason, "message dead-lettered after repeated failures");
                    registry.tree().emit_path(
                        route.actor_path(to.id()),
                        EventKind::DeadLettered {
                            reason: reason.clone(),
                        },
                    );
                    Delivered::DeadLettered(reason)
                }
                Ok(Nacked::Requeued) => Delivered::Requeued(reason),
                Err(e) => {
                    tracing::warn!(error = %e, "nack failed; the message will be redelivered");
                    Delivered::Requeued(reason)
                }
            }
        }
    }
}
