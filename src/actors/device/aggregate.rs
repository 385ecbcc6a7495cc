//! Rolling aggregates per series: minute and hour buckets of min, max, mean and
//! count. Two buckets per span stay open, since a sample may arrive late
//! (within the reorder tolerance, far below a minute); older ones close and are
//! handed out for storage.
//!
//! Heart rate from ECG ([`Series::EcgHeartRate`]) is counted, not averaged: a
//! bucket holds one entry per detected beat (its beat-to-beat rate, for min and
//! max) and the milliseconds of good ECG signal it covers, so that the minute's
//! heart rate is beats counted over signal time ([`Aggregate::rate`]).

use std::collections::{BTreeMap, VecDeque};

use super::sample::Sample;

pub use crate::domain::vitals::{Aggregate, Series, Span};

/// The open buckets of one device.
#[derive(Debug, Clone, Default)]
pub struct Rollups {
    open: BTreeMap<(Series, Span), VecDeque<Aggregate>>,
    closed: Vec<Aggregate>,
}

impl Rollups {
    /// Adds an accepted sample (ECG is summarised as heart rate elsewhere).
    pub fn add(&mut self, sample: &Sample) {
        let at = sample.at_ms();
        match sample {
            Sample::HeartRate { bpm, .. } => self.add_value(Series::HeartRate, at, *bpm),
            Sample::Spo2 { percent, .. } => self.add_value(Series::Spo2, at, *percent),
            Sample::BloodPressure {
                systolic,
                diastolic,
                ..
            } => {
                self.add_value(Series::Systolic, at, *systolic);
                self.add_value(Series::Diastolic, at, *diastolic);
            }
            Sample::Ecg { .. } => {}
        }
    }

    /// Adds one value of `series` at `at_ms` (a NaN counts without a value:
    /// a beat whose beat-to-beat rate is unknown).
    pub fn add_value(&mut self, series: Series, at_ms: u64, v: f64) {
        for span in [Span::Minute, Span::Hour] {
            let start = at_ms - at_ms % span.millis();
            // A sample older than every open bucket: its bucket is closed and final.
            if let Some(b) = self.bucket(series, span, start) {
                b.add(v);
            }
        }
    }

    /// Adds a detected ECG beat at `at_ms`, with its beat-to-beat rate when
    /// the beat before it is known.
    pub fn add_beat(&mut self, at_ms: u64, beat_to_beat_bpm: Option<f64>) {
        self.add_value(
            Series::EcgHeartRate,
            at_ms,
            beat_to_beat_bpm.unwrap_or(f64::NAN),
        );
    }

    /// Counts `[from_ms, to_ms)` of good ECG signal in the buckets it
    /// overlaps (split at bucket boundaries).
    pub fn add_coverage(&mut self, from_ms: u64, to_ms: u64) {
        for span in [Span::Minute, Span::Hour] {
            let mut at = from_ms;
            while at < to_ms {
                let start = at - at % span.millis();
                let end = (start + span.millis()).min(to_ms);
                let bucket = self.bucket(Series::EcgHeartRate, span, start);
                if let Some(b) = bucket {
                    *b.covered_ms.get_or_insert(0) += end - at;
                }
                at = end;
            }
        }
    }

    /// The open bucket of `series` and `span` starting at `start`, opened
    /// (empty) if need be; `None` if it is already closed.
    fn bucket(&mut self, series: Series, span: Span, start: u64) -> Option<&mut Aggregate> {
        let buckets = self.open.entry((series, span)).or_default();
        if let Some(i) = buckets.iter().position(|b| b.start_ms == start) {
            return buckets.get_mut(i);
        }
        let at = buckets.partition_point(|b| b.start_ms < start);
        if at == 0 && buckets.len() >= 2 {
            return None;
        }
        buckets.insert(
            at,
            Aggregate {
                series,
                span,
                start_ms: start,
                // Finite (snapshots are JSON): `min > max` means no value yet.
                min: f64::MAX,
                max: f64::MIN,
                sum: 0.0,
                count: 0,
                covered_ms: None,
            },
        );
        while buckets.len() > 2 {
            if let Some(done) = buckets.pop_front() {
                self.closed.push(done);
            }
        }
        let i = buckets.iter().position(|b| b.start_ms == start)?;
        buckets.get_mut(i)
    }

    /// Buckets no sample can reach any more, for storage.
    pub fn take_closed(&mut self) -> Vec<Aggregate> {
        std::mem::take(&mut self.closed)
    }

    /// Puts back open buckets saved from [`Self::current`] (snapshots).
    pub fn restore(&mut self, open: Vec<Aggregate>) {
        for a in open {
            self.open
                .entry((a.series, a.span))
                .or_default()
                .push_back(a);
        }
    }

    /// Every bucket, open ones included (for queries and flushes).
    pub fn current(&self) -> impl Iterator<Item = &Aggregate> {
        self.open.values().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::Series as Synthetic;

    #[test]
    fn minute_and_hour_buckets_match_the_generated_values() {
        // 2 hours of heart rate at 1 Hz, 80 bpm with a 150 bpm episode in minute 5.
        let gen = Synthetic::new(80.0, 1.0)
            .episode(300.0, 360.0, 150.0)
            .noise(2.0);
        let mut r = Rollups::default();
        let t0 = 1_700_000_000_000u64 - 1_700_000_000_000 % 3_600_000;
        let samples = gen.samples(7200.0);
        for (t, v) in &samples {
            r.add_value(Series::HeartRate, t0 + (*t * 1000.0) as u64, *v);
        }
        let mut all = r.take_closed();
        all.extend(r.current().cloned());
        let minutes: Vec<_> = all.iter().filter(|a| a.span == Span::Minute).collect();
        assert_eq!(minutes.len(), 120);
        assert!(minutes.iter().all(|m| m.count == 60));
        for m in &minutes {
            let minute = (m.start_ms - t0) / 60_000;
            let values: Vec<f64> = samples[(minute * 60) as usize..(minute * 60 + 60) as usize]
                .iter()
                .map(|s| s.1)
                .collect();
            let mean = values.iter().sum::<f64>() / 60.0;
            assert!((m.mean() - mean).abs() < 1e-9);
            assert_eq!(m.max, values.iter().cloned().fold(f64::MIN, f64::max));
            assert_eq!(m.min, values.iter().cloned().fold(f64::MAX, f64::min));
        }
        let episode = minutes.iter().find(|m| m.start_ms == t0 + 300_000).unwrap();
        assert!((episode.mean() - 150.0).abs() < 2.0);
        let hours: Vec<_> = all.iter().filter(|a| a.span == Span::Hour).collect();
        assert_eq!(hours.len(), 2);
        assert_eq!(hours.iter().map(|h| h.count).sum::<u64>(), 7200);
    }

    #[test]
    fn a_late_sample_after_a_gap_opens_its_own_bucket() {
        let mut r = Rollups::default();
        r.add_value(Series::HeartRate, 60_000, 70.0); // minute 1
        r.add_value(Series::HeartRate, 30 * 60_000 + 500, 80.0); // minute 30, after a gap
        r.add_value(Series::HeartRate, 30 * 60_000 - 500, 90.0); // minute 29, late
        let minutes: Vec<(u64, u64)> = r
            .take_closed()
            .iter()
            .chain(r.current())
            .filter(|a| a.span == Span::Minute)
            .map(|a| (a.start_ms / 60_000, a.count))
            .collect();
        assert_eq!(minutes, vec![(1, 1), (29, 1), (30, 1)]);
    }

    #[test]
    fn a_late_sample_still_counts_in_its_bucket() {
        let mut r = Rollups::default();
        r.add_value(Series::Spo2, 59_500, 97.0);
        r.add_value(Series::Spo2, 60_500, 95.0);
        r.add_value(Series::Spo2, 59_900, 93.0); // late, previous minute still open
        let first = r
            .current()
            .find(|a| a.span == Span::Minute && a.start_ms == 0)
            .unwrap();
        assert_eq!((first.count, first.min), (2, 93.0));
    }
}
