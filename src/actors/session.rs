//! The PatientSession actor (`session/<patient-id>`): which of a patient's
//! apps are online, the consult they are in, the devices they own, and the
//! automatic logoff after a quiet period.
//!
//! Presence is ephemeral (apps reconnect after a node restart); the active
//! consult and the devices are journaled and recovered on start, from the
//! latest snapshot (taken during the session's life and on passivation) and
//! the journal after it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::actors::{
    decode, recover, Actor, Ctx, Handler, Journaled, RecentIds, SaveSnapshot, SnapshotClock,
};
use crate::bus::{BusEvent, BusMessage};
use crate::clock::unix_ms;
use crate::store::Store;

/// Durable facts of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SessionEvent {
    ConsultSet { consult: Option<String> },
    DeviceAdded { device: String },
}

/// One of the patient's apps, online.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    /// `phone`, `tablet`, `web`…
    pub app: String,
    pub since_ms: u64,
}

/// What the session holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SessionView {
    pub connections: BTreeMap<String, Connection>,
    pub active_consult: Option<String>,
    pub devices: BTreeSet<String>,
    /// Set when the idle timeout logged every app off; cleared on reconnect.
    pub logged_off: bool,
}

/// A patient's session.
pub struct PatientSession {
    key: String,
    store: Store,
    view: SessionView,
    last_seq: u64,
    logoff_after: Duration,
    /// Bumped on every activity: only the latest idle check may log off.
    activity: u64,
    /// The most recent request ids journaled: a retry is answered, not
    /// redone (an older one is found in the journal).
    applied: RecentIds,
    /// When to snapshot next.
    snapshots: SnapshotClock,
    events: crate::bus::events::Events,
}

/// What a session snapshots (during its life and on passivation): its
/// durable facts, not presence (apps reconnect).
#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct SessionSnapshot {
    active_consult: Option<String>,
    devices: BTreeSet<String>,
    applied: RecentIds,
}

/// Published on `session.<patient>` when the idle timer logged every app
/// off: connections named here should close.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoggedOff {
    pub patient: String,
    pub connections: Vec<String>,
}

impl BusEvent for LoggedOff {
    const TYPE: &'static str = "session.logged_off";
}

impl PatientSession {
    pub fn new(patient: &str, store: Store, logoff_after: Duration) -> Self {
        Self {
            key: format!("session/{patient}"),
            store,
            view: SessionView::default(),
            last_seq: 0,
            logoff_after,
            activity: 0,
            applied: Default::default(),
            snapshots: SnapshotClock::default(),
            events: crate::bus::events::Events::none(),
        }
    }

    /// Publishes logoffs through `events`.
    pub fn with_events(mut self, events: crate::bus::events::Events) -> Self {
        self.events = events;
        self
    }

    fn touch(&mut self, ctx: &Ctx<Self>) {
        self.activity += 1;
        if !self.view.connections.is_empty() {
            // A node tells of a patient's activity at most once per
            // `activity_lag`: the activity it kept to itself meanwhile may be
            // that much later than the last one heard here.
            ctx.notify_later(
                self.logoff_after + activity_lag(self.logoff_after),
                IdleCheck {
                    activity: self.activity,
                },
            );
        }
    }

    async fn record(
        &mut self,
        request_id: &str,
        event: SessionEvent,
        ctx: &Ctx<Self>,
    ) -> Result<(), SessionError> {
        if self.applied.contains(request_id) {
            return Ok(());
        }
        let payload = serde_json::to_vec(&event).expect("events serialise");
        let appended = self
            .store
            .append(&self.key, self.last_seq, request_id, 0, &payload)
            .await;
        match crate::actors::journaled(appended, "session", &self.key) {
            Journaled::Written { seq } => {
                self.last_seq = seq;
                self.apply(&event);
                self.applied.insert(request_id.to_owned());
                self.snapshots.count(1, ctx);
                Ok(())
            }
            // A retry older than the window of recent ids: applied before.
            Journaled::Duplicate { seq } if seq <= self.last_seq => Ok(()),
            // The journal knows what this state does not: recover from it.
            Journaled::Duplicate { .. } => {
                panic!("session journal holds an event this state lacks; recovering")
            }
            Journaled::Unavailable => Err(SessionError::Unavailable),
        }
    }

    fn snapshot_payload(&self) -> Vec<u8> {
        serde_json::to_vec(&SessionSnapshot {
            active_consult: self.view.active_consult.clone(),
            devices: self.view.devices.clone(),
            applied: self.applied.clone(),
        })
        .expect("snapshots serialise")
    }

    fn apply(&mut self, event: &SessionEvent) {
        match event {
            SessionEvent::ConsultSet { consult } => self.view.active_consult = consult.clone(),
            SessionEvent::DeviceAdded { device } => {
                self.view.devices.insert(device.clone());
            }
        }
    }
}

/// Why a session command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum SessionError {
    #[error("the session could not record this now; try again")]
    Unavailable,
}

impl Actor for PatientSession {
    const KIND: &'static str = "session";

    async fn started(&mut self, ctx: &mut Ctx<Self>) {
        let recovered = recover::<SessionSnapshot>(&self.store, &self.key).await;
        if let Some(saved) = recovered.snapshot {
            self.view.active_consult = saved.active_consult;
            self.view.devices = saved.devices;
            self.applied = saved.applied;
        }
        self.last_seq = recovered.snapshot_seq;
        for e in &recovered.tail {
            if let Some(event) = decode::<SessionEvent>(&e.payload, "journal entry", &self.key) {
                self.apply(&event);
            }
            self.last_seq = e.seq;
            self.applied.insert(e.message_id.clone());
        }
        self.snapshots.count(recovered.tail.len() as u64, ctx);
    }

    async fn stopping(&mut self, _: &mut Ctx<Self>) {
        if self.last_seq > 0 {
            let payload = self.snapshot_payload();
            if let Err(e) = self
                .store
                .save_snapshot(&self.key, self.last_seq, &payload)
                .await
            {
                tracing::warn!(actor = %crate::redact::pseudonym::actor_key(&self.key), error = %e, "snapshot not saved");
            }
        }
    }
}

impl Handler<SaveSnapshot> for PatientSession {
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

/// An app comes online (`connection` identifies it, e.g. a WebSocket id).
#[derive(Debug, Clone, actix::Message, Serialize, Deserialize)]
#[rtype(result = "SessionView")]
pub struct Connect {
    pub connection: String,
    pub app: String,
}

impl BusMessage for Connect {
    const TYPE: &'static str = "session.connect";
    const KIND: &'static str = "session";
    type Reply = SessionView;
}

impl Handler<Connect> for PatientSession {
    async fn handle(&mut self, c: Connect, ctx: &mut Ctx<Self>) -> SessionView {
        self.view.logged_off = false;
        self.view.connections.insert(
            c.connection,
            Connection {
                app: c.app,
                since_ms: unix_ms(),
            },
        );
        self.touch(ctx);
        self.view.clone()
    }
}

/// An app goes offline.
#[derive(Debug, Clone, actix::Message, Serialize, Deserialize)]
#[rtype(result = "SessionView")]
pub struct Disconnect {
    pub connection: String,
}

impl BusMessage for Disconnect {
    const TYPE: &'static str = "session.disconnect";
    const KIND: &'static str = "session";
    type Reply = SessionView;
}

impl Handler<Disconnect> for PatientSession {
    async fn handle(&mut self, d: Disconnect, _: &mut Ctx<Self>) -> SessionView {
        self.view.connections.remove(&d.connection);
        self.view.clone()
    }
}

/// How much later than a patient's activity the session may hear of it: a
/// node tells a session of its patient's requests at most once per this
/// long (an eighth of the logoff, 50 ms to 5 s), and the session waits
/// this much longer before it logs the patient off. A logoff comes that
/// much late at most, never early.
pub fn activity_lag(logoff_after: Duration) -> Duration {
    (logoff_after / 8).clamp(Duration::from_millis(50), Duration::from_secs(5))
}

/// The patient did something in an app: the idle clock starts over.
#[derive(Debug, Clone, actix::Message, Serialize, Deserialize)]
#[rtype(result = "()")]
pub struct Activity;

impl BusMessage for Activity {
    const TYPE: &'static str = "session.activity";
    const KIND: &'static str = "session";
    type Reply = ();
}

impl Handler<Activity> for PatientSession {
    async fn handle(&mut self, _: Activity, ctx: &mut Ctx<Self>) {
        self.touch(ctx);
    }
}

/// Sets (or clears) the consult the patient is in.
#[derive(Debug, Clone, actix::Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), SessionError>")]
pub struct SetConsult {
    pub request_id: String,
    pub consult: Option<String>,
}

impl BusMessage for SetConsult {
    const TYPE: &'static str = "session.set_consult";
    const KIND: &'static str = "session";
    type Reply = Result<(), SessionError>;
    fn unavailable(reply: &Self::Reply) -> bool {
        matches!(reply, Err(SessionError::Unavailable))
    }
}

impl Handler<SetConsult> for PatientSession {
    async fn handle(&mut self, s: SetConsult, ctx: &mut Ctx<Self>) -> Result<(), SessionError> {
        self.touch(ctx);
        self.record(
            &s.request_id,
            SessionEvent::ConsultSet { consult: s.consult },
            ctx,
        )
        .await
    }
}

/// Registers a device as the patient's.
#[derive(Debug, Clone, actix::Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), SessionError>")]
pub struct AddDevice {
    pub request_id: String,
    pub device: String,
}

impl BusMessage for AddDevice {
    const TYPE: &'static str = "session.add_device";
    const KIND: &'static str = "session";
    type Reply = Result<(), SessionError>;
    fn unavailable(reply: &Self::Reply) -> bool {
        matches!(reply, Err(SessionError::Unavailable))
    }
}

impl Handler<AddDevice> for PatientSession {
    async fn handle(&mut self, a: AddDevice, ctx: &mut Ctx<Self>) -> Result<(), SessionError> {
        if self.view.devices.contains(&a.device) {
            return Ok(());
        }
        self.record(
            &a.request_id,
            SessionEvent::DeviceAdded { device: a.device },
            ctx,
        )
        .await
    }
}

/// Reads the session.
#[derive(Debug, Clone, actix::Message, Serialize, Deserialize)]
#[rtype(result = "SessionView")]
pub struct ViewSession;

impl BusMessage for ViewSession {
    const TYPE: &'static str = "session.view";
    const KIND: &'static str = "session";
    type Reply = SessionView;
}

impl Handler<ViewSession> for PatientSession {
    async fn handle(&mut self, _: ViewSession, _: &mut Ctx<Self>) -> SessionView {
        self.view.clone()
    }
}

/// The idle timer: logs every app off if nothing happened since `activity`.
#[derive(Debug, Clone, actix::Message)]
#[rtype(result = "()")]
struct IdleCheck {
    activity: u64,
}

impl Handler<IdleCheck> for PatientSession {
    async fn handle(&mut self, check: IdleCheck, _: &mut Ctx<Self>) {
        if check.activity == self.activity && !self.view.connections.is_empty() {
            // The patient's id only at debug level: info lines carry no patient identifier.
            tracing::info!(
                apps = self.view.connections.len(),
                "automatic logoff after inactivity"
            );
            tracing::debug!(actor = %self.key, "automatic logoff after inactivity");
            let connections: Vec<String> = std::mem::take(&mut self.view.connections)
                .into_keys()
                .collect();
            self.view.logged_off = true;
            let patient = self.key.trim_start_matches("session/").to_owned();
            self.events.publish(
                &format!("session.{}", crate::bus::events::topic_word(&patient)),
                &LoggedOff {
                    patient,
                    connections,
                },
            );
        }
    }
}
