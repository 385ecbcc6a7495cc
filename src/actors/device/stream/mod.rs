//! The DeviceStream actor (`device/<id>`): one wearable's samples.
//!
//! A batch is validated sample by sample, in time order; the accepted samples
//! are journaled (the journal entries are the raw sample chunks) before
//! anything is answered, then folded into the minute/hour aggregates, the ECG
//! analysis ([`super::ecg`]) and the alarm engine ([`super::alarms`]). This
//! actor only feeds those pure parts and records what they decide: aggregates,
//! alerts and the ECG chunk index are derived state, written idempotently
//! after the journal, so a crash between the two is repaired by the replay on
//! the next start.
//!
//! Time: the engine judges samples on the device's clock (the validator keeps
//! it within a few seconds of the node's). Silence ("no data") and the
//! re-announcement of unacknowledged alarms are judged on a timer: the
//! device's clock is carried forward from its newest sample by the node's
//! monotonic clock (tokio's, so paused time drives it in tests).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::aggregate::{Rollups, Series};
use super::alarms::{
    AlarmChange, AlarmEngine, AlarmKey, AlarmSettings, Observation, ResolveReason, Signal,
};
use super::ecg::{BeatKind, EcgAnalyzer, EcgOutput, RhythmSettings, RhythmState};
use super::sample::{Limits, Rejection, Sample, Validator};
use crate::actors::{decode, or_crash, Actor, Ctx, Handler, Journaled};
use crate::bus::{BusEvent, BusMessage};
use crate::clock::unix_ms;
use crate::store::audit::{AuditEntry, PendingAudit};
use crate::store::monitoring::EcgChunkRow;
use crate::store::{AlertRecord, Store};

mod absorb;
mod alarms;
mod push;

/// Batches journaled between snapshots at most.
const SNAPSHOT_EVERY: u64 = 64;

/// Samples journaled between snapshots at most, by default
/// ([`StreamSettings::snapshot_samples`]).
pub const SNAPSHOT_SAMPLES: u64 = 1_000;

/// How far an ECG chunk may start from where the lead's previous chunk ended
/// and still continue it: device clocks stamp chunks with some jitter.
const LEAD_JITTER_MS: u64 = 100;

/// What a device stream saves so that a restart replays only the journal's tail.
#[derive(Debug, Serialize, Deserialize, Default)]
#[serde(default)]
struct DeviceSnapshot {
    history: [Vec<u64>; 4],
    open: Vec<super::aggregate::Aggregate>,
    engine: Option<AlarmEngine>,
    open_alerts: Vec<(AlarmKey, String)>,
    lead: Option<Lead>,
    newest_data_ms: Option<u64>,
    latest: LatestReadings,
    /// The recent request ids, oldest first: a retry of a batch stored just
    /// before a passivation or a move is still known at once.
    recent_requests: Vec<String>,
}

/// The newest reading of each vital sign a device sent, each with its time
/// (device clock, Unix ms), so that a reader can tell a stale one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LatestReadings {
    pub heart_rate: Option<(u64, f64)>,
    pub spo2: Option<(u64, f64)>,
    /// Systolic, diastolic.
    pub blood_pressure: Option<(u64, f64, f64)>,
    /// The newest ECG analysis, at the end of the second it is about.
    pub ecg: Option<(u64, RhythmState)>,
}

impl LatestReadings {
    fn keep(slot: &mut Option<(u64, f64)>, at_ms: u64, value: f64) {
        if slot.is_none_or(|(t, _)| t <= at_ms) {
            *slot = Some((at_ms, value));
        }
    }
}

/// Settings of every device stream.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub limits: Limits,
    /// The node's alarm settings: a patient's own, set by a clinician,
    /// replace them for that patient's devices.
    pub alarms: AlarmSettings,
    pub rhythm: RhythmSettings,
    /// Longest a stream with an alarm deadline ahead sleeps: shorter than
    /// the idle timeout, so that it does not passivate before the deadline.
    pub keepalive: Duration,
    /// Samples journaled between snapshots at most (and 64 batches): a
    /// start replays the journal after its snapshot sample by sample
    /// (validation, aggregates, alarms), so samples, not batches, bound a
    /// start's work. At 50 samples a push a stream snapshots every 20
    /// pushes; at 10, every 64. An ECG chunk counts as one sample.
    pub snapshot_samples: u64,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            alarms: AlarmSettings::default(),
            rhythm: RhythmSettings::default(),
            keepalive: Duration::from_secs(60),
            snapshot_samples: SNAPSHOT_SAMPLES,
        }
    }
}

/// The ECG lead being followed: its analysis and where its samples sit in time.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Lead {
    hz: u32,
    analyzer: EcgAnalyzer,
    /// Unix ms of the analysis' first sample.
    origin_ms: u64,
    /// Samples fed so far.
    fed: u64,
    /// The last beat found, Unix ms (for beat-to-beat intervals).
    last_beat_ms: Option<u64>,
    /// The newest rhythm state, for the live view.
    #[serde(default)]
    latest: Option<RhythmState>,
}

impl Lead {
    fn ms_of(&self, sample: u64) -> u64 {
        self.origin_ms + sample * 1000 / self.hz as u64
    }
}

/// One device's stream.
pub struct DeviceStream {
    id: String,
    /// Journal key: `device/<id>`.
    key: String,
    store: Store,
    settings: StreamSettings,
    validator: Validator,
    rollups: Rollups,
    engine: AlarmEngine,
    lead: Option<Lead>,
    latest: LatestReadings,
    last_seq: u64,
    /// Batches and samples journaled after the latest snapshot taken.
    unsnapped: (u64, u64),
    /// Active alarm episodes: key → stored id.
    open_alerts: HashMap<AlarmKey, String>,
    /// Request ids of the latest batches, to answer a retry as a duplicate.
    recent_requests: VecDeque<String>,
    /// The snapshot being written beside the actor, if any: the next one
    /// waits for it, so snapshots of one stream land in the order taken.
    pending_snapshot: Option<actix_rt::task::JoinHandle<()>>,
    events: crate::bus::events::Events,
    /// The newest sample's time (device clock) and when it arrived (node's
    /// monotonic clock): "now" on the device's clock, for timers.
    received: Option<(u64, tokio::time::Instant)>,
    /// When the pending timer fires (the node's monotonic clock: the device's
    /// clock may run ahead of it while a backlog is pushed).
    armed_for: Option<tokio::time::Instant>,
}

/// Published on `vitals.<device>` for each stored batch (raw ECG left out:
/// subscribers get what the analysis of it says).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VitalsEvent {
    pub device: String,
    pub accepted: u32,
    pub samples: Vec<Sample>,
    /// The ECG analysis at the end of the batch, if it held ECG.
    #[serde(default)]
    pub ecg: Option<RhythmState>,
}

/// Published on `ecg.<device>` for each stored batch that held ECG: the raw
/// chunks as stored, for live waveforms.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EcgEvent {
    pub device: String,
    pub segments: Vec<EcgSegment>,
}

/// One stored ECG chunk: its first sample's time (Unix ms), rate, values.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EcgSegment {
    pub start_ms: u64,
    pub hz: u32,
    pub millivolts: Vec<f32>,
}

impl BusEvent for EcgEvent {
    const TYPE: &'static str = "ecg.stored";
}

/// Published on `alerts.<device>` when an alarm is raised, resolved,
/// announced again or escalated.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertEvent {
    pub device: String,
    /// The stored alert's id.
    pub alert: String,
    pub change: AlarmChange,
    /// When the samples that caused it were accepted (Unix ms): the start of
    /// the alert latency (0 for changes a timer made).
    #[serde(default)]
    pub accepted_ms: u64,
}

/// Batches remembered for retries (older retries are judged sample by sample
/// and come back as duplicates: nothing is stored twice either way).
const RECENT_REQUESTS: usize = 32;

/// What a push did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PushResult {
    /// Samples accepted (durable when this is answered).
    pub accepted: u32,
    /// Index in the batch and reason, for each rejected sample.
    pub rejected: Vec<(usize, Rejection)>,
    /// Alarms raised or resolved by this batch.
    pub alerts: Vec<AlarmChange>,
    /// The batch was pushed before (same request id); nothing was done again.
    pub duplicate: bool,
}

/// Why a push failed as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum PushError {
    #[error("samples could not be stored now; nothing was accepted, try again")]
    Unavailable,
}

/// A batch of samples with the id that makes retries idempotent.
#[derive(Debug, Clone, actix::Message, Serialize, Deserialize)]
#[rtype(result = "Result<PushResult, PushError>")]
pub struct Push {
    pub request_id: String,
    pub samples: Vec<Sample>,
    /// The audit entry of the API's access for this push, committed with
    /// the batch's journal entry (or on its own before the answer if none
    /// is written); see [`crate::store::audit::PendingAudit`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditEntry>,
}

impl BusMessage for Push {
    const TYPE: &'static str = "device.push";
    const KIND: &'static str = "device";
    type Reply = Result<PushResult, PushError>;
    fn unavailable(reply: &Self::Reply) -> bool {
        matches!(reply, Err(PushError::Unavailable))
    }
}

/// Pushes of one device that queued at a node while its previous push was
/// being stored, in the order they queued ([`crate::api::lanes`]): judged
/// one after another exactly as if each came alone, journaled as one entry
/// (one durable write for all), and answered one by one, in order.
#[derive(Debug, Clone, actix::Message, Serialize, Deserialize)]
#[rtype(result = "Vec<Result<PushResult, PushError>>")]
pub struct PushMany {
    pub pushes: Vec<Push>,
}

impl BusMessage for PushMany {
    const TYPE: &'static str = "device.push_many";
    const KIND: &'static str = "device";
    type Reply = Vec<Result<PushResult, PushError>>;
    /// Asked again only if none was stored: the batch is one write, so
    /// either all of its pushes are stored or none.
    fn unavailable(reply: &Self::Reply) -> bool {
        !reply.is_empty()
            && reply
                .iter()
                .all(|r| matches!(r, Err(PushError::Unavailable)))
    }
}

impl BusMessage for Acknowledge {
    const TYPE: &'static str = "device.acknowledge";
    const KIND: &'static str = "device";
    type Reply = bool;
}

impl BusMessage for Reconfigure {
    const TYPE: &'static str = "device.reconfigure";
    const KIND: &'static str = "device";
    type Reply = Result<(), String>;
}

impl BusMessage for Latest {
    const TYPE: &'static str = "device.latest";
    const KIND: &'static str = "device";
    type Reply = LatestReadings;
}

impl BusMessage for OpenAggregates {
    const TYPE: &'static str = "device.open_aggregates";
    const KIND: &'static str = "device";
    type Reply = Vec<super::aggregate::Aggregate>;
}

impl BusEvent for VitalsEvent {
    const TYPE: &'static str = "vitals.accepted";
}

impl BusEvent for AlertEvent {
    /// The family: `alert.raised`, `alert.resolved`, `alert.reannounced`,
    /// `alert.escalated`, `alert.announced` (the change says which).
    const TYPE: &'static str = "alert";

    fn msg_type(&self) -> &'static str {
        match self.change {
            AlarmChange::Raised { .. } => "alert.raised",
            AlarmChange::Resolved { .. } => "alert.resolved",
            AlarmChange::Reannounced { .. } => "alert.reannounced",
            AlarmChange::Escalated { .. } => "alert.escalated",
            AlarmChange::Announced { .. } => "alert.announced",
        }
    }

    fn carried_by(msg_type: &str) -> bool {
        msg_type.starts_with("alert.")
    }
}

/// The stream's own timer: silence and unacknowledged alarms.
#[derive(Debug, Clone, actix::Message)]
#[rtype(result = "()")]
struct Tick;

/// A clinician acknowledged the stored alert `alert`: it is not announced
/// again nor escalated. Answers whether the alarm was still active.
#[derive(Debug, Clone, actix::Message, Serialize, Deserialize)]
#[rtype(result = "bool")]
pub struct Acknowledge {
    pub alert: String,
}

/// The patient's alarm settings changed (thresholds, or a pause of non-high
/// alarms until a time): apply them from now on.
#[derive(Debug, Clone, actix::Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), String>")]
pub struct Reconfigure {
    /// `None`: the node's defaults.
    pub settings: Option<AlarmSettings>,
    pub paused_until_ms: Option<u64>,
}

/// A beat as stored in the chunk index: `[at_ms, rr_ms or null, kind]`.
type StoredBeat = (u64, Option<u64>, BeatKind);

impl DeviceStream {
    pub fn new(id: &str, store: Store, settings: StreamSettings) -> Self {
        Self {
            id: id.to_owned(),
            key: format!("device/{id}"),
            store,
            validator: Validator::new(settings.limits),
            rollups: Rollups::default(),
            engine: AlarmEngine::new(settings.alarms.clone()),
            settings,
            lead: None,
            latest: LatestReadings::default(),
            last_seq: 0,
            open_alerts: HashMap::new(),
            recent_requests: VecDeque::new(),
            pending_snapshot: None,
            unsnapped: (0, 0),
            events: crate::bus::events::Events::none(),
            received: None,
            armed_for: None,
        }
    }

    /// Publishes vitals and alert events through `events`.
    pub fn with_events(mut self, events: crate::bus::events::Events) -> Self {
        self.events = events;
        self
    }

    fn snapshot_state(&self) -> DeviceSnapshot {
        DeviceSnapshot {
            history: self.validator.history(),
            open: self.open_aggregates(),
            engine: Some(self.engine.clone()),
            open_alerts: self
                .open_alerts
                .iter()
                .map(|(k, v)| (*k, v.clone()))
                .collect(),
            lead: self.lead.clone(),
            newest_data_ms: self.received.map(|(ms, _)| ms),
            latest: self.latest.clone(),
            recent_requests: self.recent_requests.iter().cloned().collect(),
        }
    }

    /// Saves the snapshot now (after the one being written beside, if any):
    /// for passivation and for alarm state no journal holds.
    async fn snapshot(&mut self) {
        if let Some(pending) = self.pending_snapshot.take() {
            let _ = pending.await;
        }
        let saved = self.snapshot_state();
        self.unsnapped = (0, 0);
        crate::actors::save_snapshot(&self.store, &self.key, self.last_seq, &saved).await;
    }

    /// Saves the snapshot beside the actor, off the push's path: the answer
    /// does not wait for the write. It follows the previous one, so an older
    /// state never lands after a newer one of the same sequence.
    fn snapshot_beside(&mut self) {
        let payload = serde_json::to_vec(&self.snapshot_state()).expect("snapshots serialise");
        self.unsnapped = (0, 0);
        let previous = self.pending_snapshot.take();
        self.pending_snapshot = Some(crate::actors::spawn_snapshot(
            &self.store,
            &self.key,
            self.last_seq,
            payload,
            previous,
        ));
    }

    fn remember(&mut self, request_id: String) {
        self.recent_requests.push_back(request_id);
        if self.recent_requests.len() > RECENT_REQUESTS {
            self.recent_requests.pop_front();
        }
    }

    /// Aggregates still open (minute and hour buckets being filled).
    pub fn open_aggregates(&self) -> Vec<super::aggregate::Aggregate> {
        self.rollups.current().cloned().collect()
    }

    /// "Now" on the device's clock: its newest sample, carried forward by
    /// the time since it arrived.
    fn device_now(&self) -> Option<u64> {
        self.received
            .map(|(newest, at)| newest + at.elapsed().as_millis() as u64)
    }
}

impl Actor for DeviceStream {
    const KIND: &'static str = "device";

    async fn started(&mut self, ctx: &mut Ctx<Self>) {
        // Read with the other streams starting now: one batch of
        // statements for them all.
        let start = crate::actors::started_or_crash(
            self.store.device_start(&self.key, &self.id).await,
            &self.key,
        );
        let recovered =
            crate::actors::recovered::<DeviceSnapshot>(&self.store, &self.key, start.actor).await;
        if let Some(saved) = recovered.snapshot {
            self.validator.restore(saved.history);
            self.rollups.restore(saved.open);
            if let Some(engine) = saved.engine {
                self.engine = engine;
            }
            self.open_alerts = saved.open_alerts.into_iter().collect();
            self.lead = saved.lead;
            self.latest = saved.latest;
            self.recent_requests = saved.recent_requests.into();
            // Silence is measured again from this start.
            self.received = saved
                .newest_data_ms
                .map(|ms| (ms, tokio::time::Instant::now()));
        }
        self.last_seq = recovered.snapshot_seq;
        for e in recovered.tail {
            if let Some(samples) = decode::<Vec<Sample>>(&e.payload, "journal entry", &self.key) {
                self.unsnapped.1 += samples.len() as u64;
                // Rebuild validation history, aggregates and alarm states;
                // rewrite derived rows.
                for s in &samples {
                    let _ = self.validator.check(s, u64::MAX / 2);
                }
                let (changes, chunks) = self.absorb(&samples, e.seq);
                if let Some(newest) = samples.iter().map(Sample::at_ms).max() {
                    self.received = Some((newest, tokio::time::Instant::now()));
                }
                let key = self.key.clone();
                let recorded = or_crash(
                    self.record(&changes, &chunks).await,
                    "derived vitals not writable",
                    &key,
                );
                // What a crash kept from being recorded was never announced
                // either: announce it now.
                self.announce(&changes, recorded, 0);
            }
            self.last_seq = e.seq;
            self.remember(e.message_id);
            self.unsnapped.0 += 1;
        }
        // Acknowledgements made while this stream was away still hold.
        let open: Vec<String> = self.open_alerts.values().cloned().collect();
        let acked = or_crash(
            self.store.acknowledged_among(&open).await,
            "alert acknowledgements unreadable",
            &self.key,
        );
        for (key, id) in self.open_alerts.clone() {
            if acked.contains(&id) {
                self.engine.acknowledge(key, 0);
            }
        }
        self.forget_stale_alerts(start.open_alerts).await;
        // The patient's settings (or the node's, which may have changed),
        // after the replay: what a pause that ended meanwhile announces names
        // the alarms as they are now.
        let announced = self.apply_patient_settings(start.settings);
        self.settle(announced).await;
        // Timers die with an incarnation: set this one's.
        self.arm(ctx);
    }

    async fn stopping(&mut self, _: &mut Ctx<Self>) {
        // Flush the buckets still open, so queries see them after passivation,
        // and snapshot, so the next start replays little.
        let open = self.open_aggregates();
        if let Err(e) = self.store.save_aggregates(&self.id, &open).await {
            tracing::warn!(actor = %crate::redact::pseudonym::actor_key(&self.key), error = %e, "open aggregates not flushed");
        }
        self.snapshot().await;
    }
}

impl Handler<Tick> for DeviceStream {
    async fn handle(&mut self, _: Tick, ctx: &mut Ctx<Self>) {
        self.armed_for = None;
        let Some(now) = self.device_now() else { return };
        let changes = self.engine.tick(now);
        self.settle(changes).await;
        self.arm(ctx);
    }
}

impl Handler<Acknowledge> for DeviceStream {
    async fn handle(&mut self, ack: Acknowledge, _: &mut Ctx<Self>) -> bool {
        let key = self
            .open_alerts
            .iter()
            .find(|(_, id)| **id == ack.alert)
            .map(|(k, _)| *k);
        match key {
            Some(key) => self
                .engine
                .acknowledge(key, self.device_now().unwrap_or_else(unix_ms)),
            None => false,
        }
    }
}

impl Handler<Reconfigure> for DeviceStream {
    async fn handle(&mut self, r: Reconfigure, ctx: &mut Ctx<Self>) -> Result<(), String> {
        if let Some(s) = &r.settings {
            s.validate()?;
        }
        let announced = self.apply(r.settings, r.paused_until_ms)?;
        self.settle(announced).await;
        self.arm(ctx);
        Ok(())
    }
}

/// Reads what a device stream holds in memory: its open aggregates of one series.
#[derive(Debug, Clone, actix::Message, Serialize, Deserialize)]
#[rtype(result = "Vec<super::aggregate::Aggregate>")]
pub struct OpenAggregates(pub Series);

impl Handler<OpenAggregates> for DeviceStream {
    async fn handle(
        &mut self,
        q: OpenAggregates,
        _: &mut Ctx<Self>,
    ) -> Vec<super::aggregate::Aggregate> {
        self.rollups
            .current()
            .filter(|a| a.series == q.0)
            .cloned()
            .collect()
    }
}

/// Reads a device stream's newest readings ([`LatestReadings`]).
#[derive(Debug, Clone, actix::Message, Serialize, Deserialize)]
#[rtype(result = "LatestReadings")]
pub struct Latest;

impl Handler<Latest> for DeviceStream {
    async fn handle(&mut self, _: Latest, _: &mut Ctx<Self>) -> LatestReadings {
        self.latest.clone()
    }
}
