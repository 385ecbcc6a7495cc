//! The monitoring part of the GraphQL API: alerts (query, acknowledgement,
//! live subscription with re-announcements and escalations), the beats found
//! in a patient's ECG and raw strips around an alert, and per-patient alarm
//! settings (thresholds, a bounded pause of non-high alarms).
//!
//! Reads come from the SQL projections the device streams write (alerts, the
//! ECG chunk index, the journal for raw strips); writes that change what a
//! device stream decides (settings, pause, acknowledgement) are stored, then
//! handed to the device's actor through the bus, since the alarm engine lives
//! there. Every access is authorized and audited like the rest of the API
//! (`access::Access`), and no error names a value or an id.

mod alerts;
mod ecg;
mod settings;

use std::time::Duration;

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, Subscription, ID};
use futures_util::Stream;

use super::access::{deps, device_patient, principal, valid, Access, Deps};
use super::ask::ask;
use super::error::ApiError;
use super::graphql::scalars::DateTime;
use super::live::{async_stream_lite, until_expiry, watch, SubscriptionSlot};
use crate::actors::device::alarms as engine;
use crate::actors::device::alarms::AlarmSettings;
use crate::actors::device::sample::Sample;
use crate::actors::device::stream::{AlertEvent, Reconfigure};
use crate::clock::unix_ms;
use crate::principal::{Principal, Role};
use crate::store::monitoring::StoredAlarmSettings;

pub use alerts::{open_alerts, AlertGql};
pub use ecg::EcgStateGql;

/// Monitoring's queries: alerts, ECG beats and strips, alarm settings.
#[derive(async_graphql::MergedObject, Default)]
pub struct MonitoringQuery(alerts::AlertsQuery, ecg::EcgQuery, settings::SettingsQuery);

/// Monitoring's mutations: acknowledging alerts, setting thresholds, pausing.
#[derive(async_graphql::MergedObject, Default)]
pub struct MonitoringMutation(alerts::AlertsMutation, settings::SettingsMutation);

pub use alerts::AlertsSubscription as MonitoringSubscription;

/// What an alarm is about.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "crate::actors::device::alarms::AlarmKind")]
pub enum AlarmKind {
    Asystole,
    VentricularFibrillation,
    VentricularTachycardia,
    ExtremeTachycardia,
    ExtremeBradycardia,
    Tachycardia,
    Bradycardia,
    Pause,
    AtrialFibrillation,
    FrequentEctopy,
    #[graphql(name = "SEVERE_LOW_SPO2")]
    SevereLowSpo2,
    #[graphql(name = "LOW_SPO2")]
    LowSpo2,
    HypertensiveCrisis,
    EcgLeadOff,
    EcgPoorSignal,
    NoData,
}

/// IEC 60601-1-8 alarm priority: high needs immediate response, medium a
/// prompt one, low awareness.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "crate::actors::device::alarms::Priority")]
pub enum AlarmPriority {
    Low,
    Medium,
    High,
}

/// About the patient, or about the equipment and signal.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "crate::actors::device::alarms::Category")]
pub enum AlarmCategory {
    Physiological,
    Technical,
}

/// The signal a reading (and a heart-rate alarm) comes from.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "crate::actors::device::alarms::Signal")]
pub enum VitalSignal {
    /// Counted from the beats cardio detects in the device's ECG.
    EcgHeartRate,
    /// Reported by the device (PPG pulse rate).
    PulseRate,
    #[graphql(name = "SPO2")]
    Spo2,
    Systolic,
    Diastolic,
}

/// Why an alarm ended.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "crate::actors::device::alarms::ResolveReason")]
pub enum ResolveReason {
    /// The condition cleared for its resolve window.
    Cleared,
    /// The device went silent: the value is no longer current.
    NoData,
    /// A more severe alarm of the same condition took over.
    Superseded,
    /// The device's stream restarted without it: judged anew (raised again
    /// if the condition still holds).
    Reset,
}

/// A detected beat's type.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "crate::actors::device::ecg::BeatKind")]
pub enum BeatKind {
    Normal,
    /// Premature ventricular (wide QRS).
    Pvc,
    Unknown,
}

/// What the ECG signal is like: only a good signal is judged.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "crate::actors::device::ecg::Quality")]
pub enum SignalQuality {
    Good,
    /// An electrode is off (the input sits at a constant offset).
    LeadOff,
    Flat,
    Saturated,
    /// Mains interference and nothing else.
    MainsHum,
    LowAmplitude,
    /// Motion or muscle artefact.
    Artefact,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum AlertStatus {
    Open,
    Resolved,
    All,
}

/// What happened to an alert.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum AlertChange {
    Raised,
    Resolved,
    /// Not acknowledged in time: announced again.
    Reannounced,
    /// Still not acknowledged: announced to the rest of the care team.
    Escalated,
}

/// An alert, once `who` is authorized for its patient's `fields` (audited
/// either way). An unknown alert, or one whose device is gone, is refused
/// alike and audited without a patient.
async fn authorized_alert(
    d: &Deps,
    who: &Principal,
    id: &str,
    action: &str,
    fields: &str,
) -> Result<crate::store::AlertRecord, ApiError> {
    let access = Access::new(d, who, action, fields);
    let Some(alert) = d.store.alert(id).await.map_err(ApiError::unavailable)? else {
        return Err(access.refuse_unknown().await);
    };
    let Some(patient) = device_patient(d, &alert.device_id).await? else {
        return Err(access.refuse_unknown().await);
    };
    access.patient(&patient).await?;
    Ok(alert)
}
