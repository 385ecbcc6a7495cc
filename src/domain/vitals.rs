//! Aggregates of vital signs as they are stored and served: which series, the
//! bucket length, and one bucket's summary. Plain values shared by the device
//! actor (which rolls them up), the store and the API.

use serde::{Deserialize, Serialize};

/// What an aggregate summarises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Series {
    /// Heart rate reported by the device (PPG pulse rate, or the device's own).
    HeartRate,
    /// Heart rate counted from the beats cardio detects in the device's ECG.
    EcgHeartRate,
    Spo2,
    Systolic,
    Diastolic,
}

/// Bucket length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Span {
    Minute,
    Hour,
}

impl Span {
    pub fn millis(self) -> u64 {
        match self {
            Span::Minute => 60_000,
            Span::Hour => 3_600_000,
        }
    }
}

/// Summary of one series over one bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    pub series: Series,
    pub span: Span,
    /// Bucket start, Unix milliseconds (aligned to the span).
    pub start_ms: u64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: u64,
    /// [`Series::EcgHeartRate`] only: milliseconds of good ECG signal in the
    /// bucket (beats are counted over them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covered_ms: Option<u64>,
}

impl Aggregate {
    /// Counts `v` in the bucket (NaN counts, without moving min, max or sum).
    pub fn add(&mut self, v: f64) {
        self.count += 1;
        if v.is_nan() {
            return;
        }
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += v;
    }

    pub fn mean(&self) -> f64 {
        self.sum / self.count as f64
    }

    /// What the bucket says the value was: for heart rate from ECG, beats
    /// counted per minute of good signal (`None` before any signal is
    /// covered); for the other series, the mean.
    pub fn rate(&self) -> Option<f64> {
        match self.series {
            Series::EcgHeartRate => match self.covered_ms {
                Some(ms) if ms > 0 => Some(self.count as f64 * 60_000.0 / ms as f64),
                _ => None,
            },
            _ => (self.count > 0).then(|| self.mean()),
        }
    }
}
