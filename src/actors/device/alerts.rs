//! Alert rules: each condition must hold for its whole window before the alert
//! is raised; while it holds the alert is not raised again; it resolves when
//! the condition clears.

use serde::{Deserialize, Serialize};

use super::sample::Sample;

/// The rules cardio evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    Tachycardia,
    Bradycardia,
    LowSpo2,
    HypertensiveCrisis,
    IrregularRhythm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Medium,
    High,
}

impl AlertKind {
    /// The rule's name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Tachycardia => "tachycardia",
            AlertKind::Bradycardia => "bradycardia",
            AlertKind::LowSpo2 => "low_spo2",
            AlertKind::HypertensiveCrisis => "hypertensive_crisis",
            AlertKind::IrregularRhythm => "irregular_rhythm",
        }
    }
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

/// Configurable thresholds and windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Heart rate above this for `sustain_ms`: tachycardia.
    pub tachycardia_bpm: f64,
    /// Heart rate below this for `sustain_ms`: bradycardia.
    pub bradycardia_bpm: f64,
    /// SpO2 below this for `sustain_ms`: low SpO2.
    pub low_spo2_percent: f64,
    /// Systolic at or above this, or diastolic at or above the next: crisis, at once.
    pub crisis_systolic: f64,
    pub crisis_diastolic: f64,
    /// RMSSD / mean RR above this: irregular rhythm.
    pub irregularity: f64,
    pub sustain_ms: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            tachycardia_bpm: 120.0,
            bradycardia_bpm: 40.0,
            low_spo2_percent: 90.0,
            crisis_systolic: 180.0,
            crisis_diastolic: 120.0,
            irregularity: 0.1,
            sustain_ms: 60_000,
        }
    }
}

impl AlertKind {
    pub fn priority(self) -> Priority {
        match self {
            AlertKind::Tachycardia | AlertKind::Bradycardia => Priority::High,
            AlertKind::LowSpo2 | AlertKind::HypertensiveCrisis => Priority::High,
            AlertKind::IrregularRhythm => Priority::Medium,
        }
    }

    const ALL: [AlertKind; 5] = [
        AlertKind::Tachycardia,
        AlertKind::Bradycardia,
        AlertKind::LowSpo2,
        AlertKind::HypertensiveCrisis,
        AlertKind::IrregularRhythm,
    ];
}

/// A change in an alert's state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum AlertChange {
    Raised {
        kind: AlertKind,
        priority: Priority,
        since_ms: u64,
        at_ms: u64,
    },
    Resolved {
        kind: AlertKind,
        at_ms: u64,
    },
}

#[derive(Debug, Clone, Copy, Default)]
struct RuleState {
    /// First time of the current unbroken run of the condition.
    since_ms: Option<u64>,
    active: bool,
}

/// One device's rule states.
#[derive(Debug, Clone)]
pub struct Rules {
    thresholds: Thresholds,
    states: [RuleState; 5],
}

impl Rules {
    pub fn new(thresholds: Thresholds) -> Self {
        Self {
            thresholds,
            states: [RuleState::default(); 5],
        }
    }

    /// Whether `kind` is active now.
    pub fn active(&self, kind: AlertKind) -> bool {
        self.states[kind as usize].active
    }

    fn observe(
        &mut self,
        kind: AlertKind,
        at_ms: u64,
        holds: bool,
        sustain_ms: u64,
    ) -> Option<AlertChange> {
        let state = &mut self.states[kind as usize];
        if holds {
            let since = *state.since_ms.get_or_insert(at_ms);
            if !state.active && at_ms.saturating_sub(since) >= sustain_ms {
                state.active = true;
                return Some(AlertChange::Raised {
                    kind,
                    priority: kind.priority(),
                    since_ms: since,
                    at_ms,
                });
            }
            None
        } else {
            state.since_ms = None;
            if state.active {
                state.active = false;
                return Some(AlertChange::Resolved { kind, at_ms });
            }
            None
        }
    }

    /// Evaluates an accepted sample (in time order per metric).
    pub fn evaluate(&mut self, sample: &Sample) -> Vec<AlertChange> {
        let t = self.thresholds;
        let at = sample.at_ms();
        let changes = match sample {
            Sample::HeartRate { bpm, .. } => vec![
                self.observe(
                    AlertKind::Tachycardia,
                    at,
                    *bpm > t.tachycardia_bpm,
                    t.sustain_ms,
                ),
                self.observe(
                    AlertKind::Bradycardia,
                    at,
                    *bpm < t.bradycardia_bpm,
                    t.sustain_ms,
                ),
            ],
            Sample::Spo2 { percent, .. } => {
                vec![self.observe(
                    AlertKind::LowSpo2,
                    at,
                    *percent < t.low_spo2_percent,
                    t.sustain_ms,
                )]
            }
            Sample::BloodPressure {
                systolic,
                diastolic,
                ..
            } => {
                let crisis = *systolic >= t.crisis_systolic || *diastolic >= t.crisis_diastolic;
                vec![self.observe(AlertKind::HypertensiveCrisis, at, crisis, 0)]
            }
            Sample::Ecg { .. } => vec![],
        };
        changes.into_iter().flatten().collect()
    }

    /// Evaluates an ECG finding: the rhythm over the latest beats.
    pub fn evaluate_rhythm(&mut self, at_ms: u64, irregularity: f64) -> Option<AlertChange> {
        let t = self.thresholds;
        self.observe(
            AlertKind::IrregularRhythm,
            at_ms,
            irregularity > t.irregularity,
            0,
        )
    }

    /// Each rule's state (start of the current run, active), for snapshots.
    pub fn states(&self) -> Vec<(AlertKind, Option<u64>, bool)> {
        AlertKind::ALL
            .into_iter()
            .map(|k| {
                let st = self.states[k as usize];
                (k, st.since_ms, st.active)
            })
            .collect()
    }

    /// Restores states saved by [`Self::states`].
    pub fn restore(&mut self, states: Vec<(AlertKind, Option<u64>, bool)>) {
        for (k, since_ms, active) in states {
            self.states[k as usize] = RuleState { since_ms, active };
        }
    }

    /// Kinds active now.
    pub fn active_kinds(&self) -> Vec<AlertKind> {
        AlertKind::ALL
            .into_iter()
            .filter(|k| self.active(*k))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::Series;

    fn hr(at_ms: u64, bpm: f64) -> Sample {
        Sample::HeartRate { at_ms, bpm }
    }

    /// Feeds a generated series at 1 Hz; returns the changes with their times.
    fn run(
        rules: &mut Rules,
        gen: &Series,
        seconds: f64,
        make: impl Fn(u64, f64) -> Sample,
    ) -> Vec<AlertChange> {
        gen.samples(seconds)
            .into_iter()
            .flat_map(|(t, v)| rules.evaluate(&make((t * 1000.0) as u64, v)))
            .collect()
    }

    #[test]
    fn names_match_their_serialised_form() {
        for kind in [
            AlertKind::Tachycardia,
            AlertKind::Bradycardia,
            AlertKind::LowSpo2,
            AlertKind::HypertensiveCrisis,
            AlertKind::IrregularRhythm,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        for p in [Priority::Low, Priority::Medium, Priority::High] {
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
    }

    #[test]
    fn each_sustained_rule_fires_after_its_window_not_before_once_and_resolves() {
        type MakeSample = fn(u64, f64) -> Sample;
        let cases: Vec<(AlertKind, Series, MakeSample)> = vec![
            (
                AlertKind::Tachycardia,
                Series::new(80.0, 1.0).episode(100.0, 250.0, 135.0),
                hr,
            ),
            (
                AlertKind::Bradycardia,
                Series::new(70.0, 1.0).episode(100.0, 250.0, 35.0),
                hr,
            ),
            (
                AlertKind::LowSpo2,
                Series::new(97.0, 1.0).episode(100.0, 250.0, 86.0),
                |at_ms, percent| Sample::Spo2 { at_ms, percent },
            ),
        ];
        for (kind, gen, make) in cases {
            let mut rules = Rules::new(Thresholds::default());
            let changes = run(&mut rules, &gen, 400.0, make);
            assert_eq!(
                changes,
                vec![
                    AlertChange::Raised {
                        kind,
                        priority: Priority::High,
                        since_ms: 100_000,
                        at_ms: 160_000
                    },
                    AlertChange::Resolved {
                        kind,
                        at_ms: 250_000
                    },
                ],
                "{kind:?}"
            );
        }
    }

    #[test]
    fn a_condition_that_breaks_before_its_window_raises_nothing() {
        let mut rules = Rules::new(Thresholds::default());
        // 59 s above the threshold, one normal reading, 59 s above again.
        let gen = Series::new(80.0, 1.0)
            .episode(10.0, 69.0, 140.0)
            .episode(70.0, 129.0, 140.0);
        assert!(run(&mut rules, &gen, 200.0, hr).is_empty());
    }

    #[test]
    fn thresholds_are_configurable() {
        let mut rules = Rules::new(Thresholds {
            tachycardia_bpm: 100.0,
            sustain_ms: 10_000,
            ..Thresholds::default()
        });
        let gen = Series::new(80.0, 1.0).episode(5.0, 30.0, 110.0);
        let changes = run(&mut rules, &gen, 40.0, hr);
        assert!(
            matches!(changes[0], AlertChange::Raised { at_ms: 15_000, .. }),
            "{changes:?}"
        );
    }

    #[test]
    fn a_hypertensive_crisis_is_raised_at_once_on_either_pressure() {
        let mut rules = Rules::new(Thresholds::default());
        let bp = |at_ms, systolic, diastolic| Sample::BloodPressure {
            at_ms,
            systolic,
            diastolic,
        };
        assert!(rules.evaluate(&bp(0, 150.0, 95.0)).is_empty());
        assert!(matches!(
            rules.evaluate(&bp(1, 185.0, 100.0))[..],
            [AlertChange::Raised {
                kind: AlertKind::HypertensiveCrisis,
                ..
            }]
        ));
        assert!(
            rules.evaluate(&bp(2, 170.0, 125.0)).is_empty(),
            "still active: not raised again"
        );
        assert!(matches!(
            rules.evaluate(&bp(3, 140.0, 90.0))[..],
            [AlertChange::Resolved { .. }]
        ));
    }

    #[test]
    fn irregular_rhythm_follows_the_ecg_findings() {
        use crate::actors::device::ecg::analyse;
        use crate::synthetic::{ecg, EcgSpec};
        let mut rules = Rules::new(Thresholds::default());
        let regular = analyse(&ecg(EcgSpec::new(70.0, 250), 30.0).samples, 250);
        let irregular = analyse(
            &ecg(
                EcgSpec {
                    irregular: true,
                    ..EcgSpec::new(70.0, 250)
                },
                30.0,
            )
            .samples,
            250,
        );
        assert_eq!(
            rules.evaluate_rhythm(1, regular.irregularity.unwrap()),
            None
        );
        assert!(matches!(
            rules.evaluate_rhythm(2, irregular.irregularity.unwrap()),
            Some(AlertChange::Raised {
                kind: AlertKind::IrregularRhythm,
                priority: Priority::Medium,
                ..
            })
        ));
        assert_eq!(
            rules.evaluate_rhythm(3, irregular.irregularity.unwrap()),
            None
        );
        assert!(matches!(
            rules.evaluate_rhythm(4, regular.irregularity.unwrap()),
            Some(AlertChange::Resolved { .. })
        ));
    }
}
