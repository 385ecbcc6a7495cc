//! The inbox: consumes this node's shard queues and hands each message to its
//! actor through the registry.
//!
//! A delivery is acknowledged only after the actor's handler returned (its
//! effects are done); a crash or an unavailable actor requeues it, so it is
//! redelivered, and the bus dead-letters it past the delivery limit; a message
//! that can never work (not an envelope, no such message type, deadline passed)
//! is dead-lettered at once with the reason. Messages of one shard are handled
//! one after another, which keeps them in order per actor.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
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
                loop {
                    tokio::select! {
                        biased;
                        _ = stopped.changed() => break,
                        next = sub.next() => match next {
                            Some(delivery) => { deliver(&registry, bus.as_ref(), delivery).await; }
                            None => break,
                        },
                    }
                }
            }));
        }
        Ok(Inbox { tasks, stop })
    }

    /// Stops taking messages; the message in hand on each shard is finished.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
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
    if !crate::telemetry::tracing_on() {
        return deliver_envelope(registry, bus, delivery, env, moved).await;
    }
    // The trace the sender is in continues here, maybe on another node.
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
                if let Err(e) = bus.publish(topic, &env.reply(reply)).await {
                    tracing::warn!(error = %e, "could not publish a reply");
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
