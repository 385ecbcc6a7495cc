//! Device samples and their validation. A batch is judged sample by sample:
//! each invalid one is rejected with its reason, the valid rest is accepted.
//! Reasons name the rule, never the rejected vital value (vitals are PHI);
//! they may state device facts (a sample rate, a clock offset).

use std::borrow::Cow;
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// One reading from a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Sample {
    HeartRate {
        at_ms: u64,
        bpm: f64,
    },
    Spo2 {
        at_ms: u64,
        percent: f64,
    },
    BloodPressure {
        at_ms: u64,
        systolic: f64,
        diastolic: f64,
    },
    /// A chunk of ECG starting at `at_ms`.
    Ecg {
        at_ms: u64,
        hz: u32,
        millivolts: Vec<f32>,
    },
}

/// What a sample measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    HeartRate,
    Spo2,
    BloodPressure,
    Ecg,
}

impl Sample {
    pub fn metric(&self) -> Metric {
        match self {
            Sample::HeartRate { .. } => Metric::HeartRate,
            Sample::Spo2 { .. } => Metric::Spo2,
            Sample::BloodPressure { .. } => Metric::BloodPressure,
            Sample::Ecg { .. } => Metric::Ecg,
        }
    }

    pub fn at_ms(&self) -> u64 {
        match self {
            Sample::HeartRate { at_ms, .. }
            | Sample::Spo2 { at_ms, .. }
            | Sample::BloodPressure { at_ms, .. }
            | Sample::Ecg { at_ms, .. } => *at_ms,
        }
    }
}

/// Why a sample was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Rejection {
    #[error("value is not a finite number")]
    NotFinite,
    #[error("{what} outside {min}–{max} {unit}")]
    OutOfRange {
        what: Cow<'static, str>,
        min: f64,
        max: f64,
        unit: Cow<'static, str>,
    },
    #[error("systolic pressure not above diastolic")]
    SystolicNotAboveDiastolic,
    #[error("timestamp {ahead_ms} ms in the future (tolerance {tolerance_ms} ms)")]
    InFuture { ahead_ms: u64, tolerance_ms: u64 },
    #[error("timestamp {behind_ms} ms before the latest accepted (tolerance {tolerance_ms} ms)")]
    OutOfOrder { behind_ms: u64, tolerance_ms: u64 },
    #[error("duplicate of an accepted sample")]
    Duplicate,
    #[error("ECG sample rate {hz} Hz outside {min}–{max} Hz")]
    SampleRate { hz: u32, min: u32, max: u32 },
    #[error("ECG chunk is empty or longer than {max_samples} samples")]
    ChunkSize { max_samples: usize },
}

impl Rejection {
    /// The reason's name (as serialised in `reason`), for metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::NotFinite => "not_finite",
            Rejection::OutOfRange { .. } => "out_of_range",
            Rejection::SystolicNotAboveDiastolic => "systolic_not_above_diastolic",
            Rejection::InFuture { .. } => "in_future",
            Rejection::OutOfOrder { .. } => "out_of_order",
            Rejection::Duplicate => "duplicate",
            Rejection::SampleRate { .. } => "sample_rate",
            Rejection::ChunkSize { .. } => "chunk_size",
        }
    }
}

/// Physiological ranges and clock tolerances.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub heart_rate: (f64, f64),
    pub spo2: (f64, f64),
    pub systolic: (f64, f64),
    pub diastolic: (f64, f64),
    pub ecg_millivolts: f64,
    pub ecg_hz: (u32, u32),
    pub ecg_max_samples: usize,
    /// How far ahead of the node's clock a device clock may run.
    pub future_tolerance_ms: u64,
    /// How late a sample may arrive behind the latest accepted one.
    pub reorder_tolerance_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            heart_rate: (20.0, 300.0),
            spo2: (50.0, 100.0),
            systolic: (40.0, 300.0),
            diastolic: (20.0, 200.0),
            ecg_millivolts: 10.0,
            ecg_hz: (250, 500),
            ecg_max_samples: 500 * 60,
            future_tolerance_ms: 5_000,
            reorder_tolerance_ms: 2_000,
        }
    }
}

/// The verdict on a batch.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    pub accepted: Vec<Sample>,
    /// Index in the batch and reason.
    pub rejected: Vec<(usize, Rejection)>,
}

/// Per-device validation state: latest and recent accepted timestamps per metric.
#[derive(Debug, Clone, Default)]
pub struct Validator {
    limits: Limits,
    /// Accepted timestamps within the reorder tolerance of the latest, per metric.
    /// Sorted: the latest is the last; pruned below latest − tolerance.
    recent: [BTreeSet<u64>; 4],
}

fn range(
    v: f64,
    (min, max): (f64, f64),
    what: &'static str,
    unit: &'static str,
) -> Result<(), Rejection> {
    if !v.is_finite() {
        Err(Rejection::NotFinite)
    } else if v < min || v > max {
        Err(Rejection::OutOfRange {
            what: what.into(),
            min,
            max,
            unit: unit.into(),
        })
    } else {
        Ok(())
    }
}

impl Validator {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            recent: Default::default(),
        }
    }

    fn values(&self, s: &Sample) -> Result<(), Rejection> {
        let l = &self.limits;
        match s {
            Sample::HeartRate { bpm, .. } => range(*bpm, l.heart_rate, "heart rate", "bpm"),
            Sample::Spo2 { percent, .. } => range(*percent, l.spo2, "SpO2", "%"),
            Sample::BloodPressure {
                systolic,
                diastolic,
                ..
            } => {
                range(*systolic, l.systolic, "systolic pressure", "mmHg")?;
                range(*diastolic, l.diastolic, "diastolic pressure", "mmHg")?;
                if systolic <= diastolic {
                    return Err(Rejection::SystolicNotAboveDiastolic);
                }
                Ok(())
            }
            Sample::Ecg { hz, millivolts, .. } => {
                if *hz < l.ecg_hz.0 || *hz > l.ecg_hz.1 {
                    return Err(Rejection::SampleRate {
                        hz: *hz,
                        min: l.ecg_hz.0,
                        max: l.ecg_hz.1,
                    });
                }
                if millivolts.is_empty() || millivolts.len() > l.ecg_max_samples {
                    return Err(Rejection::ChunkSize {
                        max_samples: l.ecg_max_samples,
                    });
                }
                let bound = (-l.ecg_millivolts, l.ecg_millivolts);
                millivolts
                    .iter()
                    .try_for_each(|v| range(*v as f64, bound, "ECG voltage", "mV"))
            }
        }
    }

    /// Judges one sample against the device's history, recording it if accepted.
    pub fn check(&mut self, s: &Sample, now_ms: u64) -> Result<(), Rejection> {
        self.values(s)?;
        let at = s.at_ms();
        let tolerance = self.limits.future_tolerance_ms;
        if at > now_ms + tolerance {
            return Err(Rejection::InFuture {
                ahead_ms: at - now_ms,
                tolerance_ms: tolerance,
            });
        }
        let reorder = self.limits.reorder_tolerance_ms;
        let recent = &mut self.recent[s.metric() as usize];
        if let Some(&latest) = recent.last() {
            if at + reorder < latest {
                return Err(Rejection::OutOfOrder {
                    behind_ms: latest - at,
                    tolerance_ms: reorder,
                });
            }
        }
        if !recent.insert(at) {
            return Err(Rejection::Duplicate);
        }
        let latest = *recent.last().expect("just inserted");
        while recent.first().is_some_and(|t| t + reorder < latest) {
            recent.pop_first();
        }
        Ok(())
    }

    /// Recent accepted timestamps per metric, for a snapshot.
    pub fn history(&self) -> [Vec<u64>; 4] {
        self.recent.clone().map(|set| set.into_iter().collect())
    }

    /// Restores the history saved by [`Self::history`].
    pub fn restore(&mut self, history: [Vec<u64>; 4]) {
        self.recent = history.map(|v| v.into_iter().collect());
    }

    /// Judges a batch in time order, whatever order it arrived in (a batch
    /// sent newest first must not lose its older samples to the reorder
    /// tolerance): the valid samples are accepted in time order, each invalid
    /// one rejected with its reason and its index in the batch as sent.
    pub fn judge(&mut self, batch: Vec<Sample>, now_ms: u64) -> Verdict {
        let mut verdict = Verdict::default();
        let mut indexed: Vec<(usize, Sample)> = batch.into_iter().enumerate().collect();
        // Stable: samples of the same time keep their order (duplicates are
        // judged as sent). Most batches come in order: no sort then.
        if !indexed.windows(2).all(|w| w[0].1.at_ms() <= w[1].1.at_ms()) {
            indexed.sort_by_key(|(_, s)| s.at_ms());
        }
        for (i, s) in indexed {
            match self.check(&s, now_ms) {
                Ok(()) => verdict.accepted.push(s),
                Err(r) => verdict.rejected.push((i, r)),
            }
        }
        verdict.rejected.sort_by_key(|(i, _)| *i);
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;

    fn hr(at_ms: u64, bpm: f64) -> Sample {
        Sample::HeartRate { at_ms, bpm }
    }

    /// The validation table: each case and the reason it must get.
    #[test]
    fn each_invalid_sample_gets_its_reason_and_the_rest_is_accepted() {
        let mut v = Validator::new(Limits::default());
        let batch = vec![
            hr(NOW - 10_000, 72.0),         // ok
            hr(NOW - 9_000, f64::NAN),      // not finite
            hr(NOW - 8_000, f64::INFINITY), // not finite
            hr(NOW - 7_000, 19.0),          // below 20
            hr(NOW - 6_000, 301.0),         // above 300
            Sample::Spo2 {
                at_ms: NOW,
                percent: 49.0,
            }, // below 50
            Sample::Spo2 {
                at_ms: NOW,
                percent: 100.5,
            }, // above 100
            Sample::BloodPressure {
                at_ms: NOW,
                systolic: 80.0,
                diastolic: 80.0,
            }, // not above
            Sample::BloodPressure {
                at_ms: NOW,
                systolic: 120.0,
                diastolic: 80.0,
            }, // ok
            hr(NOW + 6_000, 72.0),          // future
            hr(NOW - 10_000, 75.0),         // duplicate ts
            hr(NOW - 13_000, 70.0),         // oldest in the batch: judged first, ok
            hr(NOW - 9_500, 71.0),          // late but within 2 s: ok
            Sample::Ecg {
                at_ms: NOW,
                hz: 100,
                millivolts: vec![0.1],
            }, // sample rate
            Sample::Ecg {
                at_ms: NOW,
                hz: 250,
                millivolts: vec![],
            }, // empty
            Sample::Ecg {
                at_ms: NOW,
                hz: 250,
                millivolts: vec![0.1, 12.0],
            }, // voltage
            Sample::Ecg {
                at_ms: NOW,
                hz: 250,
                millivolts: vec![0.1, -0.2],
            }, // ok
        ];
        let verdict = v.judge(batch, NOW);
        let reasons: Vec<(usize, &'static str)> = verdict
            .rejected
            .iter()
            .map(|(i, r)| {
                (
                    *i,
                    match r {
                        Rejection::NotFinite => "not_finite",
                        Rejection::OutOfRange { .. } => "range",
                        Rejection::SystolicNotAboveDiastolic => "systolic",
                        Rejection::InFuture { .. } => "future",
                        Rejection::OutOfOrder { .. } => "order",
                        Rejection::Duplicate => "duplicate",
                        Rejection::SampleRate { .. } => "rate",
                        Rejection::ChunkSize { .. } => "size",
                    },
                )
            })
            .collect();
        assert_eq!(
            reasons,
            vec![
                (1, "not_finite"),
                (2, "not_finite"),
                (3, "range"),
                (4, "range"),
                (5, "range"),
                (6, "range"),
                (7, "systolic"),
                (9, "future"),
                (10, "duplicate"),
                (13, "rate"),
                (14, "size"),
                (15, "range"),
            ]
        );
        assert_eq!(verdict.accepted.len(), 5);
        // Behind what an earlier batch accepted, beyond the tolerance: out of order.
        let late = v.judge(vec![hr(NOW - 20_000, 70.0)], NOW);
        assert!(
            matches!(late.rejected[..], [(0, Rejection::OutOfOrder { .. })]),
            "{late:?}"
        );
    }

    #[test]
    fn reasons_name_the_rule_not_the_value() {
        let mut v = Validator::new(Limits::default());
        let err = v.check(&hr(NOW, 301.5), NOW).unwrap_err();
        assert_eq!(err.to_string(), "heart rate outside 20–300 bpm");
        let json = serde_json::to_value(&err).unwrap();
        assert_eq!(json["reason"], "out_of_range");
    }

    #[test]
    fn a_batch_sent_newest_first_is_judged_in_time_order() {
        let mut v = Validator::new(Limits::default());
        // 60 readings, one a second, sent in descending time order.
        let batch: Vec<Sample> = (0..60)
            .rev()
            .map(|i| hr(NOW - 60_000 + i * 1000, 70.0))
            .collect();
        let verdict = v.judge(batch, NOW);
        assert!(verdict.rejected.is_empty(), "{:?}", verdict.rejected);
        assert_eq!(verdict.accepted.len(), 60);
        let times: Vec<u64> = verdict.accepted.iter().map(Sample::at_ms).collect();
        assert!(
            times.windows(2).all(|w| w[0] < w[1]),
            "accepted in time order"
        );
        // Reasons still name the index as sent.
        let mut v = Validator::new(Limits::default());
        let verdict = v.judge(
            vec![
                hr(NOW, 70.0),
                hr(NOW - 1000, f64::NAN),
                hr(NOW - 2000, 70.0),
            ],
            NOW,
        );
        assert_eq!(verdict.rejected, vec![(1, Rejection::NotFinite)]);
    }

    #[test]
    fn duplicates_are_caught_across_batches() {
        let mut v = Validator::new(Limits::default());
        assert!(v.judge(vec![hr(NOW, 70.0)], NOW).rejected.is_empty());
        let second = v.judge(vec![hr(NOW, 70.0), hr(NOW + 1000, 71.0)], NOW + 1000);
        assert_eq!(second.rejected, vec![(0, Rejection::Duplicate)]);
        assert_eq!(second.accepted.len(), 1);
    }
}
