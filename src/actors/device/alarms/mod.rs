//! Alarm engine for one monitored device: turns vital-sign readings and the ECG
//! analysis' rhythm states into alarm changes (raised, resolved, re-announced,
//! escalated), after the alarm-system model of IEC 60601-1-8:2006+A1:2012
//! (physiological vs technical alarm conditions; high / medium / low priority;
//! alarm-signal inactivation states "audio paused" and "acknowledged"; escalation)
//! and the ECG-monitor alarm set of IEC 60601-2-27:2011 (asystole, ventricular
//! fibrillation, ventricular tachycardia, heart-rate limits, lead-off).
//! The engine is pure and clock-free: every call carries its time (Unix ms).
//!
//! # Rules (defaults; every number is in [`AlarmSettings`])
//!
//! | kind | category | condition | sustain (raise) | resolve | priority | refs |
//! |---|---|---|---|---|---|---|
//! | `asystole` | physiological | rhythm `asystole` (good signal) | 0: first flagged second | 5 s without | high | 1, 2, 3 |
//! | `ventricular_fibrillation` | physiological | rhythm `vf` | 0 | 5 s without | high | 1, 2, 3 |
//! | `ventricular_tachycardia` | physiological | rhythm `vt` | 0 | 5 s without | high | 1, 2, 3 |
//! | `extreme_tachycardia` | physiological | HR > 180/min | 10 s | HR < 170 for 10 s | high | 1, 2, 3 |
//! | `extreme_bradycardia` | physiological | HR < 30/min | 10 s | HR > 35 for 10 s | high | 1, 2, 3 |
//! | `tachycardia` | physiological | HR > 120/min | 60 s | HR < 115 for 30 s | medium | 1, 2, 3 |
//! | `bradycardia` | physiological | HR < 40/min | 60 s | HR > 45 for 30 s | medium | 1, 2, 3 |
//! | `pause` | physiological | rhythm `pause` | 0 | 10 s without | medium | 1, 3 |
//! | `atrial_fibrillation` | physiological | rhythm `af` | 30 s | 60 s without | low | 1, 3 |
//! | `frequent_ectopy` | physiological | PVC/min > 10 | 60 s | PVC/min < 6 for 60 s | low | 1, 3 |
//! | `severe_low_spo2` | physiological | SpO2 < 85 % | 10 s | SpO2 > 88 % for 10 s | high | 1, 3 |
//! | `low_spo2` | physiological | SpO2 < 90 % | 60 s | SpO2 > 92 % for 30 s | medium | 1, 3 |
//! | `hypertensive_crisis` | physiological | systolic ≥ 180 or diastolic ≥ 120 mmHg | one reading | a reading leaving newest systolic < 170 and diastolic < 110 | medium | 1, 4 |
//! | `ecg_lead_off` | technical | rhythm `lead_off` (lead off, flat, saturated) | 5 s | 5 s not lead-off | medium | 1, 2 |
//! | `ecg_poor_signal` | technical | `!quality_ok && !lead_off` | 5 s | 5 s `quality_ok` | low | 1, 3 |
//! | `no_data` | technical | nothing from a device that has sent data, for 30 s | via `tick` | any new observation | medium; high if it ended a high alarm | 1, 3 |
//!
//! Sustain and resolve windows are "covered" windows (see Semantics); the rhythm rules
//! (and ECG HR) are judged only while the ECG quality is good.
//!
//! References: (1) IEC 60601-1-8 — alarm priorities (high: immediate response; medium:
//! prompt; low: awareness), physiological vs technical alarm conditions, audio paused and
//! acknowledged states. (2) IEC 60601-2-27 — ECG monitoring equipment: asystole,
//! ventricular fibrillation/tachycardia, heart-rate limit and lead-off alarms.
//! (3) The project's clinical notes (CLINICAL-NOTES, summarised in docs/clinical.md) — "sustained" means with data covering the window,
//! hysteresis against flapping, a stale number is never shown, alarm fatigue (The Joint
//! Commission, Sentinel Event Alert 50, 2013), lethal rhythm definitions. (4) Whelton et
//! al., 2017 ACC/AHA high blood pressure guideline, J Am Coll Cardiol 2018;71:e127–e248:
//! hypertensive crisis above 180 and/or 120 mmHg (the engine raises at ≥, as briefed).
//! The default limits and delays are common bedside-monitor defaults, not
//! numbers from the standards (which leave limits to the manufacturer and clinician).
//! cardio is not a certified medical device.
//!
//! HR rules run separately for each source (`EcgHeartRate`, `PulseRate`); the alarm's
//! identity is `(kind, source)`. `source` is `Some(signal)` for single-signal rules (HR,
//! SpO2, and a signal's own `no_data`) and `None` for rhythm, blood-pressure, ECG
//! technical and device `no_data` alarms.
//!
//! # Semantics
//!
//! * **Sustain with coverage.** Each rule sees one stream (a signal's readings or the
//!   rhythm states) and judges each sample as *in condition*, *clearly normal* (past the
//!   resolve threshold) or *in the hysteresis band* (between the two). A raising run is
//!   a series of in-condition samples no further apart than `max_gap_ms`; it raises when
//!   it spans `sustain_ms`. A longer gap between in-condition samples starts the run
//!   over, so two readings an hour apart never make an episode and a 2-minute gap
//!   restarts one. Samples not in condition inside a run are *strays*, paid from a
//!   leaky-bucket budget (a clearly-normal sample costs 1, a band sample 1/2, each
//!   in-condition sample refunds 1/4; the run ends when the cost reaches 2): one stray
//!   is always tolerated, two clearly-normal samples in a row end the run, isolated
//!   strays up to one sample in five are tolerated indefinitely (noisy but real
//!   tachycardia raises), and a value hovering in the band with dips past the limit
//!   never counts as sustained. The raised alarm's `since_ms` is the first in-condition
//!   sample of the run (for the rhythm stream, whose states each cover the second
//!   *ending* at `at_ms`, the start of that second).
//! * **Hysteresis.** An active alarm resolves only after clearly-normal samples covering
//!   `resolve_ms` with no gap > `max_gap_ms`, *without* any in-condition or band sample
//!   in between (resolving is deliberately stricter than raising: a missed alarm costs
//!   more than a late resolve).
//! * **Late samples.** A sample not newer than the newest accepted sample of its stream
//!   (out of order or duplicate timestamp) is ignored entirely. A non-finite reading
//!   (a device's "no value") is ignored too: it is neither evidence nor data, so a
//!   device sending only NaN goes to `no_data`. A non-finite `pvc_per_min` only skips
//!   the ectopy rule. (A reading stamped in the future makes the stream's later readings
//!   "late" until time catches up: the caller must stamp with the device clock it
//!   trusts.)
//! * **Families.** Within a family only one alarm is shown: HR per source
//!   {extreme_tachycardia, extreme_bradycardia, tachycardia, bradycardia}, SpO2
//!   {severe_low_spo2, low_spo2}, lethal rhythms {asystole, ventricular_fibrillation,
//!   ventricular_tachycardia}, ECG technical {ecg_lead_off, ecg_poor_signal}. The shown
//!   one is the highest priority, ties broken by the order listed. Every rule keeps
//!   judging on its own; when e.g. extreme_tachycardia raises while tachycardia is shown,
//!   the engine emits `Raised(extreme_tachycardia)` then `Resolved(tachycardia,
//!   Superseded)`; when extreme_tachycardia clears but tachycardia's own episode has not,
//!   tachycardia is `Raised` again at once with its original `since_ms` (no 60 s blind
//!   spot while HR is still 150).
//! * **Suppression.** While asystole, VF or VT is active (deliberate extension: VT too,
//!   since a 180/min VT would otherwise also raise extreme tachycardia), all HR rules
//!   (both sources) and `pause` are not evaluated and are not shown (shown ones are
//!   resolved as `Superseded`); when the lethal rhythm clears they start over.
//! * **ECG quality.** While the newest rhythm state says `!quality_ok` or `lead_off`, the
//!   rhythm rules (asystole, VF, VT, pause, AF, ectopy) and ECG-HR rules are frozen: no
//!   raise, no resolve. The technical rules keep running. (A shown ECG-HR alarm still
//!   ends by the per-signal no-data rule below if ECG HR stops arriving for `no_data_ms`.)
//! * **Blood pressure** is sparse: one crisis reading raises (no sustain); the alarm
//!   resolves on a reading after which the newest systolic is < 170 and the newest
//!   diastolic is < 110 (a value never seen counts as normal).
//! * **No data.** `tick(now)` raises `no_data` when `now - newest ≥ no_data_ms` for a
//!   device that has sent continuous data (ECG, pulse rate or SpO2: blood pressure
//!   alone, sparse by nature, never counts as a device going silent). Every shown alarm is then `Resolved(NoData)` (nothing is
//!   current any more) and all rule state starts over; `no_data` takes high priority if one
//!   of the ended alarms was high. Any new observation resolves it (`Cleared`).
//!   Extension, same rule per signal: when a continuous signal (ECG HR, pulse rate,
//!   SpO2) with a shown alarm has been silent for `no_data_ms` while the device still
//!   sends other data (e.g. the SpO2 probe fell off), that signal's alarms end
//!   (`NoData`) and `no_data` is raised with `source: Some(signal)` (high if one of them
//!   was high) until the signal is back. Not done for the rhythm stream or blood
//!   pressure (sparse by nature).
//! * **Escalation.** A shown, unacknowledged high alarm is `Reannounced` once
//!   `reannounce_ms` after it was raised and `Escalated` once `escalate_ms` after, via
//!   `tick`. `acknowledge` stops both and does not resolve. A new `Raised` of the key is
//!   a new episode.
//! * **Audio pause.** While paused, non-high alarms are raised with `announce: false`;
//!   high alarms are always announced. A pause longer than `max_pause_ms` is refused.
//!   When the pause ends (by `tick` at its end, or `resume`), each alarm raised
//!   unannounced and still shown is `Announced`: deferred, never dropped.
//! * **Settings.** `set_settings` takes effect on the next observation or tick: open
//!   episodes are judged against the new thresholds from then on (a resolve still needs
//!   its resolve window: a new limit is not evidence that the patient changed); a rule
//!   that was disabled is resolved (`Cleared`) at once.

use serde::{Deserialize, Serialize};

mod engine;
mod tracker;

pub use engine::AlarmEngine;
#[cfg(test)]
use tracker::*;

/// A measured signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Heart rate from the ECG analysis, once per second.
    EcgHeartRate,
    /// Device/PPG-reported pulse rate.
    PulseRate,
    Spo2,
    Systolic,
    Diastolic,
}

/// One input to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Observation {
    /// A numeric reading (ECG-derived HR comes once per second from the ECG analysis;
    /// device readings whenever they arrive).
    Reading {
        signal: Signal,
        at_ms: u64,
        value: f64,
    },
    /// The ECG analysis' state for the second ending at `at_ms`.
    Rhythm {
        at_ms: u64,
        quality_ok: bool,
        /// Lead off, flat line or saturated input.
        lead_off: bool,
        asystole: bool,
        pause: bool,
        vf: bool,
        vt: bool,
        af: bool,
        pvc_per_min: f64,
    },
}

impl Observation {
    pub fn at_ms(&self) -> u64 {
        match self {
            Observation::Reading { at_ms, .. } | Observation::Rhythm { at_ms, .. } => *at_ms,
        }
    }
}

/// Alarm conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
    SevereLowSpo2,
    LowSpo2,
    HypertensiveCrisis,
    EcgLeadOff,
    EcgPoorSignal,
    NoData,
}

/// IEC 60601-1-8: physiological (about the patient) or technical (about the equipment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Physiological,
    Technical,
}

impl AlarmKind {
    /// Every kind, in declaration order.
    pub const ALL: [AlarmKind; 16] = [
        AlarmKind::Asystole,
        AlarmKind::VentricularFibrillation,
        AlarmKind::VentricularTachycardia,
        AlarmKind::ExtremeTachycardia,
        AlarmKind::ExtremeBradycardia,
        AlarmKind::Tachycardia,
        AlarmKind::Bradycardia,
        AlarmKind::Pause,
        AlarmKind::AtrialFibrillation,
        AlarmKind::FrequentEctopy,
        AlarmKind::SevereLowSpo2,
        AlarmKind::LowSpo2,
        AlarmKind::HypertensiveCrisis,
        AlarmKind::EcgLeadOff,
        AlarmKind::EcgPoorSignal,
        AlarmKind::NoData,
    ];

    /// The kind's name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmKind::Asystole => "asystole",
            AlarmKind::VentricularFibrillation => "ventricular_fibrillation",
            AlarmKind::VentricularTachycardia => "ventricular_tachycardia",
            AlarmKind::ExtremeTachycardia => "extreme_tachycardia",
            AlarmKind::ExtremeBradycardia => "extreme_bradycardia",
            AlarmKind::Tachycardia => "tachycardia",
            AlarmKind::Bradycardia => "bradycardia",
            AlarmKind::Pause => "pause",
            AlarmKind::AtrialFibrillation => "atrial_fibrillation",
            AlarmKind::FrequentEctopy => "frequent_ectopy",
            AlarmKind::SevereLowSpo2 => "severe_low_spo2",
            AlarmKind::LowSpo2 => "low_spo2",
            AlarmKind::HypertensiveCrisis => "hypertensive_crisis",
            AlarmKind::EcgLeadOff => "ecg_lead_off",
            AlarmKind::EcgPoorSignal => "ecg_poor_signal",
            AlarmKind::NoData => "no_data",
        }
    }

    pub fn category(self) -> Category {
        match self {
            AlarmKind::EcgLeadOff | AlarmKind::EcgPoorSignal | AlarmKind::NoData => {
                Category::Technical
            }
            _ => Category::Physiological,
        }
    }
}

/// IEC 60601-1-8 alarm priority: high = immediate response, medium = prompt response,
/// low = awareness.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    #[default]
    Medium,
    High,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
        }
    }
}

/// An alarm's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AlarmKey {
    pub kind: AlarmKind,
    pub source: Option<Signal>,
}

impl AlarmKey {
    pub const fn new(kind: AlarmKind, source: Option<Signal>) -> Self {
        Self { kind, source }
    }
}

/// Why an alarm ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolveReason {
    /// The condition cleared (hysteresis satisfied), or the rule was disabled.
    Cleared,
    /// The device went silent: the value is no longer current.
    NoData,
    /// A more severe alarm of the same family (or a lethal rhythm) took over.
    Superseded,
    /// Not the engine's: the device stream restarted without this alarm in
    /// its state (state kept by timers since its last snapshot was lost), so
    /// the condition is judged anew, and raised again if it still holds.
    Reset,
}

/// A change in the alarm state, in the order it happened.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "change")]
pub enum AlarmChange {
    Raised {
        key: AlarmKey,
        priority: Priority,
        /// Start of the episode (first sample of the unbroken run).
        since_ms: u64,
        /// When the alarm was raised (shown).
        at_ms: u64,
        /// The value that raised it (PVC/min for ectopy; `None` for rhythm flags).
        reading: Option<f64>,
        /// The threshold it crossed.
        threshold: Option<f64>,
        /// false while audio is paused (never for high priority).
        announce: bool,
    },
    Resolved {
        key: AlarmKey,
        at_ms: u64,
        reason: ResolveReason,
    },
    Reannounced {
        key: AlarmKey,
        at_ms: u64,
    },
    Escalated {
        key: AlarmKey,
        at_ms: u64,
    },
    /// A non-high alarm raised during a pause, still active when the pause
    /// ended: announced now (a paused alarm is deferred, never dropped).
    Announced {
        key: AlarmKey,
        priority: Priority,
        at_ms: u64,
    },
}

impl AlarmChange {
    pub fn key(&self) -> AlarmKey {
        match self {
            AlarmChange::Raised { key, .. }
            | AlarmChange::Resolved { key, .. }
            | AlarmChange::Reannounced { key, .. }
            | AlarmChange::Escalated { key, .. }
            | AlarmChange::Announced { key, .. } => *key,
        }
    }
}

/// A rule on a numeric level with hysteresis. The direction (above / below) is fixed by
/// the kind: tachycardia and ectopy are "above", bradycardia and SpO2 "below".
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LevelRule {
    pub enabled: bool,
    pub priority: Priority,
    /// Strictly beyond this raises (e.g. HR > 120).
    pub raise: f64,
    /// Strictly back past this clears (e.g. HR < 115).
    pub resolve: f64,
    pub sustain_ms: u64,
    pub resolve_ms: u64,
}

/// A rule on a rhythm flag.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FlagRule {
    pub enabled: bool,
    pub priority: Priority,
    pub sustain_ms: u64,
    pub resolve_ms: u64,
}

/// Blood-pressure crisis: one reading raises, one normal reading resolves.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PressureRule {
    pub enabled: bool,
    pub priority: Priority,
    /// Systolic at or above raises.
    pub systolic_raise: f64,
    /// Diastolic at or above raises.
    pub diastolic_raise: f64,
    /// Resolves when the newest systolic is below this …
    pub systolic_resolve: f64,
    /// … and the newest diastolic below this.
    pub diastolic_resolve: f64,
}

/// Every threshold, window and priority of the engine (per patient).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmSettings {
    /// Longest gap between samples that still counts as covered.
    pub max_gap_ms: u64,
    /// Silence after which `no_data` is raised.
    pub no_data_ms: u64,
    pub no_data_priority: Priority,
    /// Unacknowledged high alarm: announce again after this …
    pub reannounce_ms: u64,
    /// … and escalate to the care team after this.
    pub escalate_ms: u64,
    /// Longest audio pause allowed.
    pub max_pause_ms: u64,
    pub asystole: FlagRule,
    pub ventricular_fibrillation: FlagRule,
    pub ventricular_tachycardia: FlagRule,
    pub extreme_tachycardia: LevelRule,
    pub extreme_bradycardia: LevelRule,
    pub tachycardia: LevelRule,
    pub bradycardia: LevelRule,
    pub pause: FlagRule,
    pub atrial_fibrillation: FlagRule,
    pub frequent_ectopy: LevelRule,
    pub severe_low_spo2: LevelRule,
    pub low_spo2: LevelRule,
    pub hypertensive_crisis: PressureRule,
    pub ecg_lead_off: FlagRule,
    pub ecg_poor_signal: FlagRule,
}

const fn flag(priority: Priority, sustain_ms: u64, resolve_ms: u64) -> FlagRule {
    FlagRule {
        enabled: true,
        priority,
        sustain_ms,
        resolve_ms,
    }
}

const fn level(
    priority: Priority,
    raise: f64,
    resolve: f64,
    sustain_ms: u64,
    resolve_ms: u64,
) -> LevelRule {
    LevelRule {
        enabled: true,
        priority,
        raise,
        resolve,
        sustain_ms,
        resolve_ms,
    }
}

impl Default for AlarmSettings {
    fn default() -> Self {
        use Priority::{High, Low, Medium};
        Self {
            max_gap_ms: 10_000,
            no_data_ms: 30_000,
            no_data_priority: Medium,
            reannounce_ms: 60_000,
            escalate_ms: 120_000,
            max_pause_ms: 30 * 60_000,
            asystole: flag(High, 0, 5_000),
            ventricular_fibrillation: flag(High, 0, 5_000),
            ventricular_tachycardia: flag(High, 0, 5_000),
            extreme_tachycardia: level(High, 180.0, 170.0, 10_000, 10_000),
            extreme_bradycardia: level(High, 30.0, 35.0, 10_000, 10_000),
            tachycardia: level(Medium, 120.0, 115.0, 60_000, 30_000),
            // 40 rather than 45: 40–45/min is common and harmless in sleeping or
            // athletic adults; the 45 resolve limit gives the hysteresis.
            bradycardia: level(Medium, 40.0, 45.0, 60_000, 30_000),
            pause: flag(Medium, 0, 10_000),
            atrial_fibrillation: flag(Low, 30_000, 60_000),
            frequent_ectopy: level(Low, 10.0, 6.0, 60_000, 60_000),
            severe_low_spo2: level(High, 85.0, 88.0, 10_000, 10_000),
            low_spo2: level(Medium, 90.0, 92.0, 60_000, 30_000),
            hypertensive_crisis: PressureRule {
                enabled: true,
                priority: Medium,
                systolic_raise: 180.0,
                diastolic_raise: 120.0,
                systolic_resolve: 170.0,
                diastolic_resolve: 110.0,
            },
            ecg_lead_off: flag(Medium, 5_000, 5_000),
            ecg_poor_signal: flag(Low, 5_000, 5_000),
        }
    }
}

impl AlarmSettings {
    /// Checks that every limit is finite, every hysteresis points the safe way, and the
    /// extreme limits are more extreme than the ordinary ones.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_gap_ms == 0 {
            return Err("max_gap_ms must be > 0".into());
        }
        if self.no_data_ms <= self.max_gap_ms {
            return Err("no_data_ms must be > max_gap_ms".into());
        }
        if self.reannounce_ms == 0 || self.escalate_ms < self.reannounce_ms {
            return Err("need 0 < reannounce_ms <= escalate_ms".into());
        }
        if self.max_pause_ms == 0 {
            return Err("max_pause_ms must be > 0".into());
        }
        let above = [
            ("extreme_tachycardia", &self.extreme_tachycardia),
            ("tachycardia", &self.tachycardia),
            ("frequent_ectopy", &self.frequent_ectopy),
        ];
        let below = [
            ("extreme_bradycardia", &self.extreme_bradycardia),
            ("bradycardia", &self.bradycardia),
            ("severe_low_spo2", &self.severe_low_spo2),
            ("low_spo2", &self.low_spo2),
        ];
        for (name, r) in above.iter().chain(below.iter()) {
            if !r.raise.is_finite() || !r.resolve.is_finite() {
                return Err(format!("{name}: limits must be finite"));
            }
        }
        for (name, r) in above {
            if r.resolve > r.raise {
                return Err(format!("{name}: resolve must be <= raise"));
            }
        }
        for (name, r) in below {
            if r.resolve < r.raise {
                return Err(format!("{name}: resolve must be >= raise"));
            }
        }
        if self.extreme_tachycardia.raise <= self.tachycardia.raise {
            return Err("extreme_tachycardia.raise must be > tachycardia.raise".into());
        }
        if self.extreme_bradycardia.raise >= self.bradycardia.raise {
            return Err("extreme_bradycardia.raise must be < bradycardia.raise".into());
        }
        if self.bradycardia.raise >= self.tachycardia.raise {
            return Err("bradycardia.raise must be < tachycardia.raise".into());
        }
        if self.severe_low_spo2.raise >= self.low_spo2.raise {
            return Err("severe_low_spo2.raise must be < low_spo2.raise".into());
        }
        let p = &self.hypertensive_crisis;
        let limits = [
            p.systolic_raise,
            p.diastolic_raise,
            p.systolic_resolve,
            p.diastolic_resolve,
        ];
        if limits.iter().any(|v| !v.is_finite()) {
            return Err("hypertensive_crisis: limits must be finite".into());
        }
        if p.systolic_resolve > p.systolic_raise || p.diastolic_resolve > p.diastolic_raise {
            return Err("hypertensive_crisis: resolve must be <= raise".into());
        }
        Ok(())
    }
}

/// Why `pause` refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseError {
    /// `until_ms` is more than `max_pause_ms` after `now_ms`.
    TooLong { max_ms: u64 },
    /// `until_ms` is not after `now_ms`.
    NotInFuture,
}

impl std::fmt::Display for PauseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PauseError::TooLong { max_ms } => write!(f, "audio pause longer than {max_ms} ms"),
            PauseError::NotInFuture => write!(f, "audio pause must end in the future"),
        }
    }
}

impl std::error::Error for PauseError {}

impl Signal {
    /// The signal's name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::EcgHeartRate => "ecg_heart_rate",
            Signal::PulseRate => "pulse_rate",
            Signal::Spo2 => "spo2",
            Signal::Systolic => "systolic",
            Signal::Diastolic => "diastolic",
        }
    }
}

impl Category {
    /// The category's name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Physiological => "physiological",
            Category::Technical => "technical",
        }
    }
}

impl ResolveReason {
    /// The reason's name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            ResolveReason::Cleared => "cleared",
            ResolveReason::NoData => "no_data",
            ResolveReason::Superseded => "superseded",
            ResolveReason::Reset => "reset",
        }
    }
}

#[cfg(test)]
mod names {
    use super::*;

    #[test]
    fn names_match_their_serialised_form() {
        let json = |v: serde_json::Value| v.as_str().unwrap().to_owned();
        for k in AlarmKind::ALL {
            assert_eq!(json(serde_json::to_value(k).unwrap()), k.as_str());
        }
        for s in [
            Signal::EcgHeartRate,
            Signal::PulseRate,
            Signal::Spo2,
            Signal::Systolic,
            Signal::Diastolic,
        ] {
            assert_eq!(json(serde_json::to_value(s).unwrap()), s.as_str());
        }
        for c in [Category::Physiological, Category::Technical] {
            assert_eq!(json(serde_json::to_value(c).unwrap()), c.as_str());
        }
        for r in [
            ResolveReason::Cleared,
            ResolveReason::NoData,
            ResolveReason::Superseded,
            ResolveReason::Reset,
        ] {
            assert_eq!(json(serde_json::to_value(r).unwrap()), r.as_str());
        }
        for p in [Priority::Low, Priority::Medium, Priority::High] {
            assert_eq!(json(serde_json::to_value(p).unwrap()), p.as_str());
        }
    }
}

#[cfg(test)]
mod tests;

/// Property tests over random series (proptest).
#[cfg(test)]
mod properties;
