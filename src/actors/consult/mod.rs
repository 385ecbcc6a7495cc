//! The Consult actor (`consult/<id>`): a live consult between a patient and a
//! clinician, event-sourced on the journal. See [`state`] for the lifecycle.
//!
//! Every accepted command is journaled before it is applied and answered, so a
//! crash, a passivation or a node restart loses nothing acknowledged: the
//! actor replays its journal when it starts. Command ids make retries
//! idempotent: a command journaled before is not applied twice. A journal that
//! moved on under another writer makes the actor crash and recover from it.

pub mod state;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::actors::{decode, recover, Actor, Ctx, Handler, Journaled};
use crate::bus::{BusEvent, BusMessage};
use crate::clock::unix_ms;
use crate::store::Store;
use state::{ChatLine, Command, Consult, ConsultError, Event, Outcome, Party, Status};

/// A consult actor. Its state is rebuilt from the journal on every start.
pub struct ConsultActor {
    /// Journal key: `consult/<id>`.
    key: String,
    store: Store,
    state: Consult,
    /// Last journal sequence applied.
    last_seq: u64,
    /// Command ids already journaled: a retried command is answered, not redone.
    applied: std::collections::HashSet<String>,
    /// How long the patient may be absent before a waiting consult is a no-show.
    no_show_after: Duration,
    events: crate::bus::events::Events,
}

/// Published on `consult.<id>` for each journaled event, with its journal
/// sequence (subscribers resume from it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsultEvent {
    pub consult: String,
    pub seq: u64,
    pub event: Event,
}

impl BusEvent for ConsultEvent {
    const TYPE: &'static str = "consult.event";
}

impl ConsultActor {
    pub fn new(id: &str, store: Store, no_show_after: Duration) -> Self {
        Self {
            key: format!("consult/{id}"),
            store,
            state: Consult::default(),
            last_seq: 0,
            applied: Default::default(),
            no_show_after,
            events: crate::bus::events::Events::none(),
        }
    }

    /// Publishes the consult's events through `events`.
    pub fn with_events(mut self, events: crate::bus::events::Events) -> Self {
        self.events = events;
        self
    }

    /// Rewrites the queryable rows (consult, chat lines) from the state:
    /// idempotent, and repaired by the next start if it fails now.
    async fn project(&self, lines: &[ChatLine]) {
        let (Some(patient), Some(status)) = (&self.state.patient, self.state.status()) else {
            return;
        };
        let id = self.key.trim_start_matches("consult/");
        let row = crate::store::consults::ConsultRow {
            id: id.to_owned(),
            patient_id: patient.clone(),
            clinician_id: self.state.clinician.clone(),
            status,
            requested_ms: self.state.requested_at_ms,
            reason: self.state.reason.clone(),
            notes: self.state.notes.clone(),
            started_ms: self.state.started_at_ms,
            ended_ms: self.state.ended_at_ms,
        };
        let mut result = self.store.project_consult(&row, self.last_seq).await;
        for line in lines {
            if result.is_err() {
                break;
            }
            result = self.store.project_chat(id, line).await;
        }
        if let Err(e) = result {
            tracing::warn!(actor = %crate::redact::pseudonym::actor_key(&self.key), error = %e, "consult projection not written yet");
        }
    }

    fn arm_no_show(&self, ctx: &Ctx<Self>) {
        if matches!(
            self.state.status(),
            Some(Status::Requested | Status::Waiting)
        ) {
            let due = self.state.requested_at_ms + self.no_show_after.as_millis() as u64;
            let wait = Duration::from_millis(due.saturating_sub(unix_ms()));
            ctx.notify_later(
                wait,
                Act {
                    request_id: format!("no-show-check-{due}"),
                    command: Command::NoShowCheck,
                },
            );
        }
    }
}

/// What a consult saves on passivation so that its next start replays only
/// the journal's tail.
#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct ConsultSnapshot {
    state: Consult,
    applied: std::collections::HashSet<String>,
}

impl Actor for ConsultActor {
    const KIND: &'static str = "consult";

    async fn stopping(&mut self, _: &mut Ctx<Self>) {
        let saved = ConsultSnapshot {
            state: self.state.clone(),
            applied: self.applied.clone(),
        };
        crate::actors::save_snapshot(&self.store, &self.key, self.last_seq, &saved).await;
    }

    async fn started(&mut self, ctx: &mut Ctx<Self>) {
        let recovered = recover::<ConsultSnapshot>(&self.store, &self.key).await;
        if let Some(saved) = recovered.snapshot {
            self.state = saved.state;
            self.applied = saved.applied;
        }
        self.last_seq = recovered.snapshot_seq;
        for e in recovered.tail {
            if let Some(event) = decode::<Event>(&e.payload, "journal entry", &self.key) {
                self.state.apply(&event);
            }
            self.last_seq = e.seq;
            self.applied.insert(e.message_id);
        }
        self.project(&self.state.lines).await;
        self.arm_no_show(ctx);
    }
}

/// A command with the id that makes it idempotent: a request id or the bus
/// message id (chat lines are also de-duplicated by their client message id).
#[derive(Debug, Clone, actix::Message, Serialize, Deserialize)]
#[rtype(result = "Result<Outcome, ConsultError>")]
pub struct Act {
    pub request_id: String,
    pub command: Command,
}

impl BusMessage for Act {
    const TYPE: &'static str = "consult.act";
    const KIND: &'static str = "consult";
    type Reply = Result<Outcome, ConsultError>;
    fn unavailable(reply: &Self::Reply) -> bool {
        matches!(reply, Err(ConsultError::Unavailable))
    }
}

impl Handler<Act> for ConsultActor {
    async fn handle(&mut self, act: Act, ctx: &mut Ctx<Self>) -> Result<Outcome, ConsultError> {
        if self.applied.contains(&act.request_id) && !matches!(act.command, Command::Chat { .. }) {
            return Ok(Outcome::Done); // a retry of a command already applied
        }
        let was_new = self.state.status().is_none();
        let (events, outcome) = self.state.decide(&act.command, unix_ms())?;
        for (i, event) in events.iter().enumerate() {
            let message_id = if i == 0 {
                act.request_id.clone()
            } else {
                format!("{}#{i}", act.request_id)
            };
            let payload = serde_json::to_vec(event).expect("events serialise");
            let appended = self
                .store
                .append(&self.key, self.last_seq, &message_id, 0, &payload)
                .await;
            match crate::actors::journaled(appended, "consult", &self.key) {
                Journaled::Written { seq } => {
                    self.last_seq = seq;
                    self.state.apply(event);
                    self.applied.insert(message_id);
                    let id = self.key.trim_start_matches("consult/");
                    self.events.publish(
                        &format!("consult.{}", crate::bus::events::topic_word(id)),
                        &ConsultEvent {
                            consult: id.to_owned(),
                            seq,
                            event: event.clone(),
                        },
                    );
                }
                // This request id was used before for another command.
                Journaled::Duplicate if self.applied.contains(&message_id) => {
                    return Err(ConsultError::RequestIdReused);
                }
                // The journal knows an event this state lacks: recover from it.
                Journaled::Duplicate => {
                    panic!("consult journal holds an event this state lacks; recovering");
                }
                Journaled::Unavailable => return Err(ConsultError::Unavailable),
            }
        }
        if !events.is_empty() {
            let lines: Vec<ChatLine> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Chatted { line } => Some(line.clone()),
                    _ => None,
                })
                .collect();
            self.project(&lines).await;
        }
        if was_new && self.state.status().is_some() {
            self.arm_no_show(ctx);
        }
        Ok(outcome)
    }
}

/// What a participant sees of a consult.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsultView {
    pub status: Option<Status>,
    pub patient: Option<String>,
    pub clinician: Option<String>,
    pub present: Vec<Party>,
    /// Chat lines after the sequence asked for.
    pub lines: Vec<ChatLine>,
    pub notes: Option<String>,
}

/// Reads the consult: status, participants, chat after `after`.
#[derive(Debug, Clone, actix::Message, Serialize, Deserialize)]
#[rtype(result = "ConsultView")]
pub struct View {
    pub after: u64,
}

impl BusMessage for View {
    const TYPE: &'static str = "consult.view";
    const KIND: &'static str = "consult";
    type Reply = ConsultView;
}

impl Handler<View> for ConsultActor {
    async fn handle(&mut self, view: View, _: &mut Ctx<Self>) -> ConsultView {
        ConsultView {
            status: self.state.status(),
            patient: self.state.patient.clone(),
            clinician: self.state.clinician.clone(),
            present: self.state.present.iter().cloned().collect(),
            lines: self.state.lines_after(view.after).to_vec(),
            notes: self.state.notes.clone(),
        }
    }
}

/// Starts every consult still requested or waiting, so that their no-show
/// checks run after a node restart even if nobody returns to them. Returns how
/// many were started.
pub async fn reactivate_open_consults(
    store: &Store,
    consults: &crate::registry::Kind<ConsultActor>,
) -> usize {
    let ids = match store.open_consults().await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, "open consults not listed; their no-show checks wait for activity");
            return 0;
        }
    };
    let mut started = 0;
    for id in &ids {
        if consults.send(id, View { after: u64::MAX }).await.is_ok() {
            started += 1;
        }
    }
    started
}
