//! Events for subscribers on any node: what actors publish on the bus's topic
//! exchange without waiting for it.
//!
//! Topics (AMQP words): `vitals.<device>`, `ecg.<device>` (raw ECG as
//! stored), `alerts.<device>`, `devices.<patient>` (a device registered),
//! `consult.<consult>`, `supervision.<node>`. An event is published after the
//! fact it reports is durable; delivery is best effort (a subscriber that was
//! away reads the durable record: consult messages resume from a sequence,
//! alerts and aggregates are tables).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{Bus, BusEvent, Envelope};
use crate::supervisors::tree::SupervisionEvent;

/// Events queued before new ones are dropped (with a warning): a slow broker
/// must not stall actors.
const QUEUE: usize = 10_000;
/// Events published concurrently per round.
const BATCH: usize = 64;

/// `id` as one topic word: ids may hold dots, which separate words, so `@`
/// and `.` are escaped (`@40`, `@2e`): two ids never share a topic.
pub fn topic_word(id: &str) -> String {
    id.replace('@', "@40").replace('.', "@2e")
}

#[cfg(test)]
mod tests {
    #[test]
    fn topic_words_are_one_to_one_and_valid() {
        let ids = ["a.b", "a:b", "a@2eb", "a@b", "a_b"];
        let words: std::collections::BTreeSet<String> =
            ids.iter().map(|i| super::topic_word(i)).collect();
        assert_eq!(words.len(), ids.len());
        for w in words {
            assert!(
                crate::bus::topic::check_topic(&format!("vitals.{w}")).is_ok(),
                "{w}"
            );
        }
    }
}

/// One node's supervision event, as published on `supervision.<node>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSupervisionEvent {
    /// The node whose tree it happened in.
    pub node: String,
    #[serde(flatten)]
    pub event: SupervisionEvent,
}

impl BusEvent for NodeSupervisionEvent {
    const TYPE: &'static str = "supervision.event";
}

/// A cheap handle actors publish events through. Cloning shares the queue.
#[derive(Clone, Default)]
pub struct Events {
    tx: Option<mpsc::Sender<(String, Envelope)>>,
    /// Asked before an event is encoded: on the in-process bus, an event
    /// nobody subscribed to (a push's vitals while no one watches) costs
    /// nothing more.
    bus: Option<Arc<dyn Bus>>,
}

impl Events {
    /// Publishes nothing (actors run without a bus, as in unit tests).
    pub fn none() -> Events {
        Events {
            tx: None,
            bus: None,
        }
    }

    /// Publishes on `bus` from a background task of the current runtime.
    pub fn start(bus: Arc<dyn Bus>) -> Events {
        let (tx, mut rx) = mpsc::channel::<(String, Envelope)>(QUEUE);
        let publisher = Arc::clone(&bus);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let sends = batch
                    .iter()
                    .map(|(topic, env)| publisher.publish(topic, env));
                for r in futures_util::future::join_all(sends).await {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "event not published");
                    }
                }
                batch.clear();
            }
        });
        Events {
            tx: Some(tx),
            bus: Some(bus),
        }
    }

    /// Queues `event` on `topic`, under its wire name, unless the bus knows
    /// that no subscription would get it.
    pub fn publish<E: BusEvent>(&self, topic: &str, event: &E) {
        let Some(tx) = &self.tx else { return };
        if self
            .bus
            .as_ref()
            .is_some_and(|b| !b.may_have_subscribers(topic))
        {
            return;
        }
        let msg_type = event.msg_type();
        let env = match Envelope::new(msg_type, event) {
            Ok(env) => env,
            Err(e) => {
                tracing::warn!(error = %e, msg_type, "event not encodable");
                return;
            }
        };
        if tx.try_send((topic.to_owned(), env)).is_err() {
            tracing::warn!(msg_type, "event queue full or closed; event dropped");
        }
    }
}
