//! The rules' coverage-aware state machines ([`Tracker`]): one per rule
//! slot, with the stray budget of a raising run, and the slot tables
//! (families, suppression) the engine shows alarms by.

use serde::{Deserialize, Serialize};

use super::*;

/// How a sample is judged by one rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Verdict {
    /// The alarm condition holds.
    Condition,
    /// In the hysteresis band: evidence of neither.
    Band,
    /// Clearly past the resolve limit.
    Clear,
}

/// An episode that met its sustain window (the rule's own view; it may be hidden by
/// its family or by suppression).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(super) struct Episode {
    pub(super) since_ms: u64,
    pub(super) reading: Option<f64>,
    pub(super) threshold: Option<f64>,
}

// The stray budget of a raising run (a leaky bucket, in quarter strays). A sample not
// in condition costs: a clearly-normal one a whole stray, a hysteresis-band one half a
// stray; each in-condition sample refunds a quarter; the run ends when the cost reaches
// two strays. So ONE stray is always tolerated, two clearly-normal samples in a row end
// the run, isolated strays up to one in five samples are tolerated indefinitely (noisy
// but real tachycardia, mean 128 SD 5, raises), and a value hovering in the band with
// occasional dips past the limit (SpO2 86 % with dips to 84 %) never counts as sustained.
pub(super) const STRAY_CLEAR: u16 = 4;
pub(super) const STRAY_BAND: u16 = 2;
pub(super) const STRAY_REFUND: u16 = 1;
pub(super) const STRAY_BREAK: u16 = 8;

/// One rule's coverage-aware state machine.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub(super) struct Tracker {
    /// Start of the current raising run, if any.
    pub(super) run_start: Option<u64>,
    /// Last in-condition sample of the run.
    pub(super) run_last: u64,
    /// Stray budget used by the current run, in quarter strays (see [`STRAY_BREAK`]).
    pub(super) stray_cost: u16,
    pub(super) active: Option<Episode>,
    /// Start of the current clearing run (while active).
    pub(super) clear_start: Option<u64>,
    pub(super) clear_last: u64,
}

impl Tracker {
    /// Feeds one sample at `at` (covering `span` ms before it) judged as `verdict`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn update(
        &mut self,
        at: u64,
        span: u64,
        verdict: Verdict,
        max_gap: u64,
        sustain: u64,
        resolve: u64,
        reading: Option<f64>,
        threshold: Option<f64>,
    ) {
        if self.active.is_some() {
            match verdict {
                Verdict::Clear => {
                    match self.clear_start {
                        Some(_) if at - self.clear_last <= max_gap => {}
                        _ => self.clear_start = Some(at.saturating_sub(span)),
                    }
                    self.clear_last = at;
                    let start = self.clear_start.unwrap_or(at);
                    if at - start >= resolve {
                        *self = Tracker::default();
                    }
                }
                Verdict::Condition | Verdict::Band => self.clear_start = None,
            }
            return;
        }
        match verdict {
            Verdict::Condition => {
                match self.run_start {
                    Some(_) if at - self.run_last <= max_gap => {
                        self.stray_cost = self.stray_cost.saturating_sub(STRAY_REFUND);
                    }
                    _ => {
                        self.run_start = Some(at.saturating_sub(span));
                        self.stray_cost = 0;
                    }
                }
                self.run_last = at;
                let since = self.run_start.unwrap_or(at);
                if at - since >= sustain {
                    self.active = Some(Episode {
                        since_ms: since,
                        reading,
                        threshold,
                    });
                    self.run_start = None;
                    self.clear_start = None;
                }
            }
            Verdict::Band | Verdict::Clear => {
                if self.run_start.is_some() {
                    self.stray_cost += if verdict == Verdict::Band {
                        STRAY_BAND
                    } else {
                        STRAY_CLEAR
                    };
                    if self.stray_cost >= STRAY_BREAK {
                        self.run_start = None;
                        self.stray_cost = 0;
                    }
                }
            }
        }
    }
}

/// The rules that have a tracker, in slot order.
pub(super) const SLOTS: [AlarmKey; 18] = {
    use AlarmKind::*;
    const E: Option<Signal> = Some(Signal::EcgHeartRate);
    const P: Option<Signal> = Some(Signal::PulseRate);
    const S: Option<Signal> = Some(Signal::Spo2);
    const fn k(kind: AlarmKind, source: Option<Signal>) -> AlarmKey {
        AlarmKey::new(kind, source)
    }
    [
        k(Asystole, None),                // 0
        k(VentricularFibrillation, None), // 1
        k(VentricularTachycardia, None),  // 2
        k(ExtremeTachycardia, E),         // 3
        k(ExtremeBradycardia, E),         // 4
        k(Tachycardia, E),                // 5
        k(Bradycardia, E),                // 6
        k(ExtremeTachycardia, P),         // 7
        k(ExtremeBradycardia, P),         // 8
        k(Tachycardia, P),                // 9
        k(Bradycardia, P),                // 10
        k(Pause, None),                   // 11
        k(AtrialFibrillation, None),      // 12
        k(FrequentEctopy, None),          // 13
        k(SevereLowSpo2, S),              // 14
        k(LowSpo2, S),                    // 15
        k(EcgLeadOff, None),              // 16
        k(EcgPoorSignal, None),           // 17
    ]
};
pub(super) const HYPERTENSIVE: AlarmKey = AlarmKey {
    kind: AlarmKind::HypertensiveCrisis,
    source: None,
};
pub(super) const NO_DATA: AlarmKey = AlarmKey {
    kind: AlarmKind::NoData,
    source: None,
};

/// Families: only the first (by priority, then this order) active member is shown.
pub(super) const FAMILIES: [&[usize]; 5] = [
    &[0, 1, 2],     // lethal rhythms
    &[3, 4, 5, 6],  // ECG HR
    &[7, 8, 9, 10], // pulse rate
    &[14, 15],      // SpO2
    &[16, 17],      // ECG technical
];
/// Slots suppressed while a lethal rhythm (slots 0..3) is active.
pub(super) const SUPPRESSED: [usize; 9] = [3, 4, 5, 6, 7, 8, 9, 10, 11];

pub(super) fn slot_of(key: AlarmKey) -> Option<usize> {
    SLOTS.iter().position(|k| *k == key)
}

/// The slots judging a signal's readings.
pub(super) fn slots_of_signal(signal: Signal) -> &'static [usize] {
    match signal {
        Signal::EcgHeartRate => &[3, 4, 5, 6],
        Signal::PulseRate => &[7, 8, 9, 10],
        Signal::Spo2 => &[14, 15],
        Signal::Systolic | Signal::Diastolic => &[],
    }
}

/// Streams whose newest sample time is tracked (for late samples and no data).
pub(super) const RHYTHM_STREAM: usize = 5;

pub(super) fn stream_of(signal: Signal) -> usize {
    match signal {
        Signal::EcgHeartRate => 0,
        Signal::PulseRate => 1,
        Signal::Spo2 => 2,
        Signal::Systolic => 3,
        Signal::Diastolic => 4,
    }
}

/// The blood-pressure rule's state.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub(super) struct Pressure {
    pub(super) systolic: Option<f64>,
    pub(super) diastolic: Option<f64>,
    pub(super) active: Option<Episode>,
}

/// A shown (announced or recorded) alarm.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(super) struct Shown {
    pub(super) key: AlarmKey,
    pub(super) priority: Priority,
    pub(super) since_ms: u64,
    pub(super) raised_at: u64,
    pub(super) acknowledged: bool,
    pub(super) reannounced: bool,
    pub(super) escalated: bool,
    /// False while a non-high alarm raised during a pause waits for the
    /// pause to end (it is announced then).
    #[serde(default = "yes")]
    pub(super) announced: bool,
}

fn yes() -> bool {
    true
}

/// What should be shown now, before diffing against what is shown.
pub(super) struct Wanted {
    pub(super) key: AlarmKey,
    pub(super) priority: Priority,
    pub(super) episode: Episode,
}
