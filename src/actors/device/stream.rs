//! The DeviceStream actor (`device/<id>`): one wearable's samples.
//!
//! A batch is validated sample by sample; the accepted samples are journaled
//! (the journal entries are the raw sample chunks) before anything is
//! answered, then folded into the minute/hour aggregates, the ECG beat
//! detector and the alert rules. Aggregates and alerts are derived state,
//! written idempotently after the journal: a crash between the two is
//! repaired by the replay on the next start, which rebuilds validation
//! history, aggregates and rule states from the journal.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::aggregate::{Rollups, Series};
use super::alerts::{AlertChange, AlertKind, Rules, Thresholds};
use super::ecg::{EcgFindings, RPeakDetector};
use super::sample::{Limits, Rejection, Sample, Validator};
use crate::actors::{decode, or_crash, recover, Actor, Ctx, Handler};
use crate::store::{AlertRecord, Appended, Store};
use crate::supervisors::tree::unix_ms;

/// Beats over which rhythm and ECG heart rate are judged.
const RHYTHM_BEATS: usize = 30;

/// Chunks journaled between snapshots.
const SNAPSHOT_EVERY: u64 = 64;

/// What a device stream saves so that a restart replays only the journal's tail.
#[derive(Debug, Serialize, Deserialize, Default)]
#[serde(default)]
struct DeviceSnapshot {
    history: [Vec<u64>; 4],
    open: Vec<super::aggregate::Aggregate>,
    rules: Vec<(AlertKind, Option<u64>, bool)>,
    open_alerts: Vec<(AlertKind, String)>,
    lead: Option<Lead>,
}

/// Settings of every device stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamSettings {
    pub limits: Limits,
    pub thresholds: Thresholds,
}

/// The ECG lead being followed: its detector and where its samples sit in time.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Lead {
    hz: u32,
    detector: RPeakDetector,
    /// Unix ms of the detector's first sample.
    origin_ms: u64,
    /// Samples fed so far.
    fed: u64,
    /// Recent beats, Unix ms.
    beats: VecDeque<u64>,
}

/// One device's stream.
pub struct DeviceStream {
    id: String,
    /// Journal key: `device/<id>`.
    key: String,
    store: Store,
    validator: Validator,
    rollups: Rollups,
    rules: Rules,
    lead: Option<Lead>,
    last_seq: u64,
    /// Active alert episodes: kind → stored id.
    open_alerts: HashMap<AlertKind, String>,
    /// Request ids of the latest batches, to answer a retry as a duplicate.
    recent_requests: VecDeque<String>,
    events: crate::bus::events::Events,
}

/// Published on `vitals.<device>` for each stored batch (raw ECG left out:
/// subscribers get the heart rate derived from it through aggregates).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VitalsEvent {
    pub device: String,
    pub accepted: u32,
    pub samples: Vec<Sample>,
}

/// Published on `alerts.<device>` when an alert is raised or resolved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertEvent {
    pub device: String,
    pub change: AlertChange,
    /// When the samples that caused it were accepted (Unix ms): the start of
    /// the alert latency.
    #[serde(default)]
    pub accepted_ms: u64,
}

/// Batches remembered for retries (older retries are judged sample by sample
/// and come back as duplicates: nothing is stored twice either way).
const RECENT_REQUESTS: usize = 32;

/// What a push did.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct PushResult {
    /// Samples accepted (durable when this is answered).
    pub accepted: u32,
    /// Index in the batch and reason, for each rejected sample.
    pub rejected: Vec<(usize, Rejection)>,
    /// Alerts raised or resolved by this batch.
    pub alerts: Vec<AlertChange>,
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
}

impl DeviceStream {
    pub fn new(id: &str, store: Store, settings: StreamSettings) -> Self {
        Self {
            id: id.to_owned(),
            key: format!("device/{id}"),
            store,
            validator: Validator::new(settings.limits),
            rollups: Rollups::default(),
            rules: Rules::new(settings.thresholds),
            lead: None,
            last_seq: 0,
            open_alerts: HashMap::new(),
            recent_requests: VecDeque::new(),
            events: crate::bus::events::Events::none(),
        }
    }

    /// Publishes vitals and alert events through `events`.
    pub fn with_events(mut self, events: crate::bus::events::Events) -> Self {
        self.events = events;
        self
    }

    /// Folds accepted samples into aggregates, beats and rules.
    fn absorb(&mut self, samples: &[Sample]) -> Vec<AlertChange> {
        let mut changes = Vec::new();
        for s in samples {
            self.rollups.add(s);
            changes.extend(self.rules.evaluate(s));
            if let Sample::Ecg {
                at_ms,
                hz,
                millivolts,
            } = s
            {
                changes.extend(self.follow_ecg(*at_ms, *hz, millivolts));
            }
        }
        changes
    }

    fn follow_ecg(&mut self, at_ms: u64, hz: u32, millivolts: &[f32]) -> Vec<AlertChange> {
        // A new lead, another rate, or a gap of more than a sample: start over.
        let continues = self.lead.as_ref().is_some_and(|l| {
            let expected = l.origin_ms + l.fed * 1000 / l.hz as u64;
            l.hz == hz && expected.abs_diff(at_ms) <= 1000 / hz as u64 + 1
        });
        if !continues {
            self.lead = Some(Lead {
                hz,
                detector: RPeakDetector::new(hz),
                origin_ms: at_ms,
                fed: 0,
                beats: VecDeque::new(),
            });
        }
        let lead = self.lead.as_mut().expect("set above");
        for v in millivolts {
            if let Some(t) = lead.detector.push(*v) {
                lead.beats.push_back(lead.origin_ms + (t * 1000.0) as u64);
                if lead.beats.len() > RHYTHM_BEATS {
                    lead.beats.pop_front();
                }
            }
        }
        lead.fed += millivolts.len() as u64;
        let now_ms = lead.origin_ms + lead.fed * 1000 / hz as u64;
        let beats: Vec<f64> = lead.beats.iter().map(|b| *b as f64 / 1000.0).collect();
        let findings = EcgFindings::from_beats(beats);
        let mut changes = Vec::new();
        if let Some(bpm) = findings.bpm {
            let hr = Sample::HeartRate { at_ms: now_ms, bpm };
            self.rollups.add(&hr);
            changes.extend(self.rules.evaluate(&hr));
        }
        if let Some(irregularity) = findings.irregularity {
            changes.extend(self.rules.evaluate_rhythm(now_ms, irregularity));
        }
        changes
    }

    /// Writes what the changes and closed buckets imply (idempotent).
    async fn record(&mut self, changes: &[AlertChange]) -> Result<(), crate::store::StoreError> {
        for change in changes {
            match *change {
                AlertChange::Raised {
                    kind,
                    priority,
                    since_ms,
                    at_ms,
                } => {
                    let id = format!(
                        "{}:{}:{since_ms}",
                        self.id,
                        serde_json::to_value(kind)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default()
                    );
                    self.store
                        .raise_alert(&AlertRecord {
                            id: id.clone(),
                            device_id: self.id.clone(),
                            kind,
                            priority,
                            since_ms,
                            raised_ms: at_ms,
                            resolved_ms: None,
                        })
                        .await?;
                    self.open_alerts.insert(kind, id);
                }
                AlertChange::Resolved { kind, at_ms } => {
                    if let Some(id) = self.open_alerts.remove(&kind) {
                        self.store.resolve_alert(&id, at_ms).await?;
                    }
                }
            }
        }
        let closed = self.rollups.take_closed();
        self.store.save_aggregates(&self.id, &closed).await
    }

    async fn snapshot(&self) {
        let saved = DeviceSnapshot {
            history: self.validator.history(),
            open: self.open_aggregates(),
            rules: self.rules.states(),
            open_alerts: self
                .open_alerts
                .iter()
                .map(|(k, v)| (*k, v.clone()))
                .collect(),
            lead: self.lead.clone(),
        };
        let payload = serde_json::to_vec(&saved).expect("snapshots serialise");
        if let Err(e) = self
            .store
            .save_snapshot(&self.key, self.last_seq, &payload)
            .await
        {
            tracing::warn!(actor = %self.key, error = %e, "snapshot not saved");
        }
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
}

impl Actor for DeviceStream {
    const KIND: &'static str = "device";

    async fn started(&mut self, _: &mut Ctx<Self>) {
        let recovered = recover::<DeviceSnapshot>(&self.store, &self.key).await;
        if let Some(saved) = recovered.snapshot {
            self.validator.restore(saved.history);
            self.rollups.restore(saved.open);
            self.rules.restore(saved.rules);
            self.open_alerts = saved.open_alerts.into_iter().collect();
            self.lead = saved.lead;
        }
        self.last_seq = recovered.snapshot_seq;
        for e in recovered.tail {
            if let Some(samples) = decode::<Vec<Sample>>(&e.payload, "journal entry", &self.key) {
                // Rebuild validation history, aggregates and rules; rewrite derived rows.
                for s in &samples {
                    let _ = self.validator.check(s, u64::MAX / 2);
                }
                let changes = self.absorb(&samples);
                let key = self.key.clone();
                or_crash(
                    self.record(&changes).await,
                    "derived vitals not writable",
                    &key,
                );
            }
            self.last_seq = e.seq;
            self.remember(e.message_id);
        }
    }

    async fn stopping(&mut self, _: &mut Ctx<Self>) {
        // Flush the buckets still open, so queries see them after passivation,
        // and snapshot, so the next start replays little.
        let open = self.open_aggregates();
        if let Err(e) = self.store.save_aggregates(&self.id, &open).await {
            tracing::warn!(actor = %self.key, error = %e, "open aggregates not flushed");
        }
        self.snapshot().await;
    }
}

impl Handler<Push> for DeviceStream {
    async fn handle(&mut self, push: Push, _: &mut Ctx<Self>) -> Result<PushResult, PushError> {
        if self.recent_requests.contains(&push.request_id) {
            return Ok(PushResult {
                duplicate: true,
                ..PushResult::default()
            });
        }
        // Judge on a copy: the history moves on only if the batch is stored.
        let mut validator = self.validator.clone();
        let verdict = validator.judge(push.samples, unix_ms());
        // Counted once the verdict is final (a failed write is retried and
        // judged again).
        let rejected: Vec<&'static str> = verdict.rejected.iter().map(|(_, r)| r.code()).collect();
        if verdict.accepted.is_empty() {
            crate::metrics::samples(0, &rejected);
            return Ok(PushResult {
                rejected: verdict.rejected,
                ..PushResult::default()
            });
        }
        let payload = serde_json::to_vec(&verdict.accepted).expect("samples serialise");
        match self
            .store
            .append(&self.key, self.last_seq, &push.request_id, 0, &payload)
            .await
        {
            Ok(Appended::Written { seq }) => self.last_seq = seq,
            // The journal holds a batch (or a writer) this state has not seen:
            // crash, so that the restart replays the journal (the caller gets
            // `Crashed` and may retry; nothing is applied twice).
            Ok(Appended::Duplicate { .. }) => {
                panic!("device journal holds a batch this state lacks; recovering")
            }
            // The shard moved to another node: this node must not answer for it.
            // Crash, so that the message goes back to the bus and reaches the owner.
            Err(crate::store::StoreError::Fenced { .. }) => {
                panic!("device shard moved to another node; handing the message back");
            }
            Err(crate::store::StoreError::Conflict { .. }) => {
                panic!("device journal moved on under another writer; recovering")
            }
            Err(e) => {
                tracing::warn!(actor = %self.key, error = %e, "samples not stored");
                return Err(PushError::Unavailable);
            }
        }
        let accepted_ms = unix_ms();
        crate::metrics::samples(verdict.accepted.len(), &rejected);
        self.validator = validator;
        self.remember(push.request_id);
        let changes = self.absorb(&verdict.accepted);
        if let Err(e) = self.record(&changes).await {
            // The samples are durable; crash, so that the restart re-derives
            // the alerts and aggregates from the journal.
            tracing::warn!(actor = %self.key, error = %e, "derived vitals not written");
            panic!("derived vitals not writable; recovering from the journal");
        }
        let word = crate::bus::events::topic_word(&self.id);
        self.events.emit(
            &format!("vitals.{word}"),
            "vitals.accepted",
            &VitalsEvent {
                device: self.id.clone(),
                accepted: verdict.accepted.len() as u32,
                samples: verdict
                    .accepted
                    .iter()
                    .filter(|s| !matches!(s, Sample::Ecg { .. }))
                    .cloned()
                    .collect(),
            },
        );
        for change in &changes {
            if let AlertChange::Raised { kind, priority, .. } = change {
                // Here, not in record(): a replay re-records old alerts.
                crate::metrics::alert_raised(kind.as_str(), priority.as_str());
            }
            let msg_type = match change {
                AlertChange::Raised { .. } => "alert.raised",
                AlertChange::Resolved { .. } => "alert.resolved",
            };
            self.events.emit(
                &format!("alerts.{word}"),
                msg_type,
                &AlertEvent {
                    device: self.id.clone(),
                    change: *change,
                    accepted_ms,
                },
            );
        }
        if self.last_seq % SNAPSHOT_EVERY == 0 {
            // Only after the derived rows are written: a replay from this
            // snapshot must not need to re-derive what came before it.
            self.snapshot().await;
        }
        Ok(PushResult {
            accepted: verdict.accepted.len() as u32,
            rejected: verdict.rejected,
            alerts: changes,
            duplicate: false,
        })
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
