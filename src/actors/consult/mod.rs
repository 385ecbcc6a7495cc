//! The Consult actor (`consult/<id>`): a live consult between a patient and a
//! clinician, event-sourced on the journal. See [`state`] for the lifecycle.
//!
//! Every accepted command is journaled before it is applied and answered, so a
//! crash, a passivation or a node restart loses nothing acknowledged: the
//! actor starts from its latest snapshot (taken every
//! [`crate::actors::SNAPSHOT_EVERY`] events or
//! [`crate::actors::SNAPSHOT_AFTER`], and on passivation) plus the journal
//! after it. Command ids make retries idempotent: a command journaled before
//! is not applied twice (recent ids are in memory, older ones in the
//! journal). A journal that moved on under another writer makes the actor
//! crash and recover from it.
//!
//! The actor keeps what its decisions need (status, participants, times,
//! reason and notes, the last sequence, a window of recent ids and chat
//! lines), not the whole chat: chat is read from its projection, which the
//! actor brings up to date before it answers (and at start, from the
//! journal after the projection's `projected_seq`, in batched statements).

pub mod state;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::actors::{
    decode, or_crash, recover, Actor, Ctx, Handler, Journaled, RecentIds, SaveSnapshot,
    SnapshotClock,
};
use crate::bus::{BusEvent, BusMessage};
use crate::clock::unix_ms;
use crate::store::audit::{AuditEntry, PendingAudit};
use crate::store::Store;
use state::{ChatLine, Command, Consult, ConsultError, Event, Outcome, Party, Status};

/// A consult actor. Its state is rebuilt on every start from its latest
/// snapshot and the journal after it.
pub struct ConsultActor {
    /// Journal key: `consult/<id>`.
    key: String,
    store: Store,
    state: Consult,
    /// Last journal sequence applied.
    last_seq: u64,
    /// The journal sequence the projection (consult row and chat lines)
    /// holds everything up to.
    projected_seq: u64,
    /// The most recent message ids journaled: a retried command is answered,
    /// not redone (an older one is found in the journal).
    applied: RecentIds,
    /// When to snapshot next.
    snapshots: SnapshotClock,
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
            projected_seq: 0,
            applied: Default::default(),
            snapshots: SnapshotClock::default(),
            no_show_after,
            events: crate::bus::events::Events::none(),
        }
    }

    /// Publishes the consult's events through `events`.
    pub fn with_events(mut self, events: crate::bus::events::Events) -> Self {
        self.events = events;
        self
    }

    fn id(&self) -> &str {
        self.key.trim_start_matches("consult/")
    }

    /// The queryable consult row of `state` (none before it is requested).
    fn row_of(&self, state: &Consult) -> Option<crate::store::consults::ConsultRow> {
        let (Some(patient), Some(status)) = (&state.patient, state.status()) else {
            return None;
        };
        Some(crate::store::consults::ConsultRow {
            id: self.id().to_owned(),
            patient_id: patient.clone(),
            clinician_id: state.clinician.clone(),
            status,
            requested_ms: state.requested_at_ms,
            reason: state.reason.clone(),
            notes: state.notes.clone(),
            started_ms: state.started_at_ms,
            ended_ms: state.ended_at_ms,
        })
    }

    /// Brings the queryable rows (consult row, chat `lines`) to `last_seq`:
    /// one transaction, lines in batched statements. `lines` are the chat
    /// lines journaled after `projected_seq`. Idempotent.
    async fn project(&mut self, lines: &[ChatLine]) -> Result<(), crate::store::StoreError> {
        let Some(row) = self.row_of(&self.state) else {
            return Ok(());
        };
        self.store
            .project_consult_through(&row, lines, self.last_seq)
            .await?;
        self.projected_seq = self.last_seq;
        Ok(())
    }

    /// Catches the projection up with the journal if it is behind (a
    /// projection write failed earlier): reads the journal after
    /// `projected_seq` once, writes the lines it lacks in batches.
    async fn catch_up(&mut self) -> Result<(), crate::store::StoreError> {
        if self.projected_seq >= self.last_seq {
            return Ok(());
        }
        let entries = self.store.events(&self.key, self.projected_seq).await?;
        let lines = chat_lines(&entries, &self.key, self.last_seq);
        self.project(&lines).await
    }

    fn snapshot_payload(&self) -> Vec<u8> {
        serde_json::to_vec(&ConsultSnapshot {
            state: self.state.clone(),
            applied: self.applied.clone(),
        })
        .expect("snapshots serialise")
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
                    audit: None,
                },
            );
        }
    }

    /// Whether `request_id` (not in the window) was journaled before, at a
    /// sequence this state applied; a journal ahead of the state is a crash
    /// (the restart replays it).
    async fn journaled_before(&self, request_id: &str) -> Result<bool, ConsultError> {
        match self.store.message_seq(&self.key, request_id).await {
            Ok(Some(seq)) if seq <= self.last_seq => Ok(true),
            Ok(Some(_)) => panic!("consult journal holds an event this state lacks; recovering"),
            Ok(None) => Ok(false),
            Err(e) => {
                tracing::warn!(actor = %crate::redact::pseudonym::actor_key(&self.key), error = %e, "consult journal not readable");
                Err(ConsultError::Unavailable)
            }
        }
    }
}

/// The chat lines among journal `entries` up to `through` (entries that do
/// not decode are skipped, as on replay).
fn chat_lines(entries: &[crate::store::Event], key: &str, through: u64) -> Vec<ChatLine> {
    entries
        .iter()
        .filter(|e| e.seq <= through)
        .filter_map(
            |e| match decode::<Event>(&e.payload, "journal entry", key) {
                Some(Event::Chatted { line }) => Some(line),
                _ => None,
            },
        )
        .collect()
}

/// What a consult snapshots (during its life and on passivation) so that its
/// next start replays only the journal's tail. A snapshot of an older
/// version (every chat line, every id) loads too: trimmed to the windows.
#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct ConsultSnapshot {
    state: Consult,
    applied: RecentIds,
}

impl Handler<SaveSnapshot> for ConsultActor {
    async fn handle(&mut self, save: SaveSnapshot, _: &mut Ctx<Self>) {
        if self.snapshots.take(save.timer) {
            crate::actors::spawn_snapshot(
                &self.store,
                &self.key,
                self.last_seq,
                self.snapshot_payload(),
                None,
            );
        }
    }
}

impl Actor for ConsultActor {
    const KIND: &'static str = "consult";

    async fn stopping(&mut self, _: &mut Ctx<Self>) {
        let payload = self.snapshot_payload();
        if let Err(e) = self
            .store
            .save_snapshot(&self.key, self.last_seq, &payload)
            .await
        {
            tracing::warn!(actor = %crate::redact::pseudonym::actor_key(&self.key), error = %e, "snapshot not saved");
        }
    }

    async fn started(&mut self, ctx: &mut Ctx<Self>) {
        let recovered = recover::<ConsultSnapshot>(&self.store, &self.key).await;
        if let Some(saved) = recovered.snapshot {
            self.state = saved.state.restored();
            self.applied = saved.applied;
        }
        self.last_seq = recovered.snapshot_seq;
        for e in &recovered.tail {
            if let Some(event) = decode::<Event>(&e.payload, "journal entry", &self.key) {
                self.state.apply(&event);
            }
            self.last_seq = e.seq;
            self.applied.insert(e.message_id.clone());
        }
        if self.state.status().is_some() {
            let id = self.id().to_owned();
            self.projected_seq = or_crash(
                self.store.projected_seq(&id).await,
                "consult projection unreadable",
                &self.key,
            );
            if self.projected_seq < self.last_seq {
                // The tail read above covers it when the projection is at or
                // after the snapshot (the usual case); else read from it.
                let result = if self.projected_seq >= recovered.snapshot_seq {
                    let after: Vec<_> = recovered
                        .tail
                        .iter()
                        .filter(|e| e.seq > self.projected_seq)
                        .cloned()
                        .collect();
                    let lines = chat_lines(&after, &self.key, self.last_seq);
                    self.project(&lines).await
                } else {
                    self.catch_up().await
                };
                if let Err(e) = result {
                    // Retried before the next answer.
                    tracing::warn!(actor = %crate::redact::pseudonym::actor_key(&self.key), error = %e, "consult projection not caught up yet");
                }
            }
        }
        // A long tail: snapshot now, so the next start is short.
        self.snapshots.count(recovered.tail.len() as u64, ctx);
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
    /// The audit entry of the API's access for this command, committed
    /// with its first event (or on its own before the answer if none is
    /// written); see [`crate::store::audit::PendingAudit`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditEntry>,
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
    async fn handle(&mut self, mut act: Act, ctx: &mut Ctx<Self>) -> Result<Outcome, ConsultError> {
        let mut audit = PendingAudit::new(act.audit.take());
        let answer = self.act(act, &mut audit, ctx).await;
        // Answered (a refusal too) only once the access is audited.
        let unavailable = ConsultError::Unavailable;
        crate::actors::audited(&self.store, &self.key, audit, answer, unavailable).await
    }
}

impl ConsultActor {
    async fn act(
        &mut self,
        act: Act,
        audit: &mut PendingAudit,
        ctx: &mut Ctx<Self>,
    ) -> Result<Outcome, ConsultError> {
        let unavailable = |key: &str, e: crate::store::StoreError| {
            tracing::warn!(actor = %crate::redact::pseudonym::actor_key(key), error = %e, "consult projection not caught up");
            ConsultError::Unavailable
        };
        // Lookups below read the projection: it must hold every event first.
        if let Err(e) = self.catch_up().await {
            return Err(unavailable(&self.key, e));
        }
        match &act.command {
            // A line sent before the window: found in the projection.
            Command::Chat {
                who,
                client_message_id,
                ..
            } if self.state.may_have_sent_before(who, client_message_id) => {
                let sent = self
                    .store
                    .chat_seq_of(self.id(), who, client_message_id)
                    .await;
                match sent {
                    Ok(Some(seq)) => {
                        return Ok(Outcome::Line {
                            seq,
                            duplicate: true,
                        })
                    }
                    Ok(None) => {}
                    Err(e) => return Err(unavailable(&self.key, e)),
                }
            }
            Command::Chat { .. } => {}
            // A retry of a command already applied.
            _ if self.applied.contains(&act.request_id) => return Ok(Outcome::Done),
            _ if self.applied.forgot_some() && self.journaled_before(&act.request_id).await? => {
                return Ok(Outcome::Done)
            }
            _ => {}
        }
        let was_new = self.state.status().is_none();
        let (events, outcome) = self.state.decide(&act.command, unix_ms())?;
        let mut lines = Vec::new();
        // The projection the command leads to, committed in the same
        // transaction as its last event, when the projection is caught up
        // (else `project` below writes it all, after the events).
        let caught_up = self.projected_seq == self.last_seq && !events.is_empty();
        let mut projection = caught_up
            .then(|| self.row_of(&self.state.after(&events)))
            .flatten()
            .map(|row| {
                let new_lines: Vec<ChatLine> = events
                    .iter()
                    .filter_map(|e| match e {
                        Event::Chatted { line } => Some(line.clone()),
                        _ => None,
                    })
                    .collect();
                let through = self.last_seq + events.len() as u64;
                self.store.consult_projection(&row, &new_lines, through)
            });
        for (i, event) in events.iter().enumerate() {
            let message_id = if i == 0 {
                act.request_id.clone()
            } else {
                format!("{}#{i}", act.request_id)
            };
            let payload = serde_json::to_vec(event).expect("events serialise");
            let then = match i + 1 == events.len() {
                true => projection.take(),
                false => None,
            };
            let projects = then.is_some();
            let appended = self
                .store
                .append_audited(
                    &self.key,
                    self.last_seq,
                    &message_id,
                    0,
                    &payload,
                    then.unwrap_or_default(),
                    audit,
                )
                .await;
            match crate::actors::journaled(appended, "consult", &self.key) {
                Journaled::Written { seq } => {
                    self.last_seq = seq;
                    self.state.apply(event);
                    self.applied.insert(message_id);
                    if projects {
                        self.projected_seq = seq;
                    }
                    if let Event::Chatted { line } = event {
                        lines.push(line.clone());
                    }
                    let id = self.id();
                    self.events.publish(
                        &format!("consult.{}", crate::bus::events::topic_word(id)),
                        &ConsultEvent {
                            consult: id.to_owned(),
                            seq,
                            event: event.clone(),
                        },
                    );
                }
                // This request id was used before, for another command (a
                // retry of the same one is answered above).
                Journaled::Duplicate { seq } if seq <= self.last_seq => {
                    return Err(ConsultError::RequestIdReused);
                }
                // The journal knows an event this state lacks: recover from it.
                Journaled::Duplicate { .. } => {
                    panic!("consult journal holds an event this state lacks; recovering");
                }
                Journaled::Unavailable => return Err(ConsultError::Unavailable),
            }
        }
        if !events.is_empty() {
            // Answered once the projection holds it: a read after this
            // answer sees it (written with the last event, or now).
            if self.projected_seq < self.last_seq {
                if let Err(e) = self.project(&lines).await {
                    return Err(unavailable(&self.key, e));
                }
            }
            self.snapshots.count(events.len() as u64, ctx);
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
        // Chat comes from the projection (keyset on its primary key), caught
        // up first: every line acknowledged is there. A store that cannot be
        // read is a crash (the caller may retry; the supervisor backs off).
        let lines = if view.after >= self.state.chat_len() {
            Vec::new()
        } else {
            let key = self.key.clone();
            or_crash(
                self.catch_up().await,
                "consult projection not writable",
                &key,
            );
            or_crash(
                self.store.chat_lines(self.id(), view.after).await,
                "consult chat unreadable",
                &key,
            )
        };
        ConsultView {
            status: self.state.status(),
            patient: self.state.patient.clone(),
            clinician: self.state.clinician.clone(),
            present: self.state.present.iter().cloned().collect(),
            lines,
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
