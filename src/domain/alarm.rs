//! The alarm vocabulary: signals, alarm kinds and their categories and
//! priorities (IEC 60601-1-8), why an alarm ended, the change an alarm engine
//! reports, and the settings of every rule with their validation. Plain values
//! shared by the alarm engine (`actors::device::alarms`, which documents the
//! rules), the store, the configuration and the API.

use serde::{Deserialize, Serialize};

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
