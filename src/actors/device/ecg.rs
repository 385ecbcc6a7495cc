//! R-peak detection in ECG after Pan & Tompkins (1985), streaming sample by
//! sample so that chunks of any size give the same beats: a 5–15 Hz band-pass,
//! a five-point derivative, squaring, a 150 ms moving-window integration, and
//! adaptive signal/noise peak levels with a 200 ms refractory period.
//!
//! From the beats come heart rate and RR irregularity (RMSSD over mean RR, a
//! common screening measure for atrial fibrillation).

use std::collections::VecDeque;
use std::f64::consts::PI;

/// A second-order IIR section (RBJ audio-EQ cookbook), Q = 1/√2.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
    x: [f64; 2],
    y: [f64; 2],
}

impl Biquad {
    fn new(kind: Pass, cutoff_hz: f64, sample_hz: f64) -> Self {
        let w0 = 2.0 * PI * cutoff_hz / sample_hz;
        let alpha = w0.sin() / (2.0 * std::f64::consts::FRAC_1_SQRT_2);
        let cos = w0.cos();
        let a0 = 1.0 + alpha;
        let b = match kind {
            Pass::Low => [(1.0 - cos) / 2.0, 1.0 - cos, (1.0 - cos) / 2.0],
            Pass::High => [(1.0 + cos) / 2.0, -(1.0 + cos), (1.0 + cos) / 2.0],
        };
        Self {
            b: [b[0] / a0, b[1] / a0, b[2] / a0],
            a: [-2.0 * cos / a0, (1.0 - alpha) / a0],
            x: [0.0; 2],
            y: [0.0; 2],
        }
    }

    fn step(&mut self, x: f64) -> f64 {
        let y = self.b[0] * x + self.b[1] * self.x[0] + self.b[2] * self.x[1]
            - self.a[0] * self.y[0]
            - self.a[1] * self.y[1];
        self.x = [x, self.x[0]];
        self.y = [y, self.y[0]];
        y
    }
}

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
enum Pass {
    Low,
    High,
}

/// Smallest band-passed QRS amplitude taken for a beat (millivolts): the
/// adaptive thresholds alone would find "beats" in pure noise.
pub const MIN_QRS_MV: f64 = 0.1;

/// Streaming Pan–Tompkins detector for one ECG lead (serialisable, so a
/// stream's snapshot continues the detection exactly where it was).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RPeakDetector {
    hz: f64,
    high: Biquad,
    low: Biquad,
    /// Last five band-passed samples, newest first.
    recent: [f64; 5],
    window: VecDeque<f64>,
    /// |band-passed| over the same window: a QRS must reach [`MIN_QRS_MV`].
    band_window: VecDeque<f64>,
    window_sum: f64,
    window_len: usize,
    /// The two previous integrated values (local-maximum test).
    prev: [f64; 2],
    n: u64,
    learning_until: u64,
    learning_max: f64,
    learning_sum: f64,
    signal_level: f64,
    noise_level: f64,
    refractory: u64,
    /// Last beat: sample index and integrated peak value.
    last: Option<(u64, f64)>,
    /// A beat is final once the refractory period after it has passed.
    pending: Option<(u64, f64)>,
}

impl RPeakDetector {
    /// A detector for a signal sampled at `hz` (250–500 Hz expected).
    pub fn new(hz: u32) -> Self {
        let hz = hz as f64;
        Self {
            hz,
            high: Biquad::new(Pass::High, 5.0, hz),
            low: Biquad::new(Pass::Low, 15.0, hz),
            recent: [0.0; 5],
            window: VecDeque::new(),
            band_window: VecDeque::new(),
            window_sum: 0.0,
            window_len: (0.150 * hz).round() as usize,
            prev: [0.0; 2],
            n: 0,
            learning_until: (2.0 * hz) as u64,
            learning_max: 0.0,
            learning_sum: 0.0,
            signal_level: 0.0,
            noise_level: 0.0,
            refractory: (0.200 * hz) as u64,
            last: None,
            pending: None,
        }
    }

    /// Feeds one sample (millivolts); returns the time (seconds since the first
    /// sample) of a beat that became final with it, if any.
    pub fn push(&mut self, millivolts: f32) -> Option<f64> {
        let band = self.low.step(self.high.step(millivolts as f64));
        self.recent = [
            band,
            self.recent[0],
            self.recent[1],
            self.recent[2],
            self.recent[3],
        ];
        let slope = (2.0 * self.recent[0] + self.recent[1] - self.recent[3] - 2.0 * self.recent[4])
            * self.hz
            / 8.0;
        let squared = slope * slope;
        self.window.push_back(squared);
        self.band_window.push_back(band.abs());
        self.window_sum += squared;
        if self.window.len() > self.window_len {
            self.window_sum -= self.window.pop_front().unwrap_or(0.0);
            self.band_window.pop_front();
        }
        let integrated = (self.window_sum / self.window_len as f64).max(0.0);
        let n = self.n;
        self.n += 1;

        if n < self.learning_until {
            self.learning_max = self.learning_max.max(integrated);
            self.learning_sum += integrated;
            self.prev = [integrated, self.prev[0]];
            if n + 1 == self.learning_until {
                self.signal_level = self.learning_max / 3.0;
                self.noise_level = self.learning_sum / self.learning_until as f64 / 2.0;
            }
            return None;
        }

        let mut beat = None;
        // Finalise a beat whose refractory period is over.
        if let Some((at, _)) = self.pending {
            if n > at + self.refractory {
                self.pending = None;
                beat = Some(at as f64 / self.hz);
            }
        }
        // Is the previous integrated value a local maximum?
        let [p1, p2] = self.prev;
        if p1 > p2 && p1 >= integrated {
            self.classify(n - 1, p1);
        }
        self.prev = [integrated, p1];
        beat
    }

    fn threshold(&self) -> f64 {
        self.noise_level + 0.25 * (self.signal_level - self.noise_level)
    }

    fn classify(&mut self, at: u64, peak: f64) {
        let amplitude = self.band_window.iter().fold(0.0_f64, |m, v| m.max(*v));
        if peak <= self.threshold() || amplitude < MIN_QRS_MV {
            self.noise_level = 0.125 * peak + 0.875 * self.noise_level;
            return;
        }
        match self.last {
            // Within the refractory period: the same QRS; keep the higher peak.
            Some((last_at, last_peak)) if at <= last_at + self.refractory => {
                if peak > last_peak {
                    self.last = Some((at, peak));
                    self.pending = Some((at, peak));
                }
            }
            _ => {
                self.signal_level = 0.125 * peak + 0.875 * self.signal_level;
                self.last = Some((at, peak));
                self.pending = Some((at, peak));
            }
        }
    }

    /// Ends the recording: the beat still in its refractory period, if any.
    pub fn finish(&mut self) -> Option<f64> {
        self.pending.take().map(|(at, _)| at as f64 / self.hz)
    }
}

/// What an ECG stretch says.
#[derive(Debug, Clone, PartialEq)]
pub struct EcgFindings {
    /// Beat times, seconds from the first sample.
    pub beats: Vec<f64>,
    /// Mean heart rate over the beats; `None` with fewer than two.
    pub bpm: Option<f64>,
    /// RR intervals, seconds.
    pub rr: Vec<f64>,
    /// RMSSD / mean RR; `None` with fewer than [`MIN_BEATS_FOR_RHYTHM`] beats.
    pub irregularity: Option<f64>,
}

/// Beats needed before rhythm is judged.
pub const MIN_BEATS_FOR_RHYTHM: usize = 10;

impl EcgFindings {
    /// From beat times.
    pub fn from_beats(beats: Vec<f64>) -> Self {
        let rr: Vec<f64> = beats.windows(2).map(|w| w[1] - w[0]).collect();
        let mean = (!rr.is_empty()).then(|| rr.iter().sum::<f64>() / rr.len() as f64);
        let bpm = mean.map(|m| 60.0 / m);
        let irregularity = match mean {
            Some(mean) if beats.len() >= MIN_BEATS_FOR_RHYTHM => {
                let diffs: Vec<f64> = rr.windows(2).map(|w| w[1] - w[0]).collect();
                let rmssd = (diffs.iter().map(|d| d * d).sum::<f64>() / diffs.len() as f64).sqrt();
                Some(rmssd / mean)
            }
            _ => None,
        };
        Self {
            beats,
            bpm,
            rr,
            irregularity,
        }
    }

    /// Whether the rhythm is irregular: RMSSD above `threshold` of the mean RR
    /// (0.1 by default in the alert rules).
    pub fn irregular(&self, threshold: f64) -> bool {
        self.irregularity.is_some_and(|i| i > threshold)
    }
}

/// Runs a detector over a whole recording.
pub fn analyse(samples: &[f32], hz: u32) -> EcgFindings {
    let mut detector = RPeakDetector::new(hz);
    let mut beats: Vec<f64> = samples.iter().filter_map(|s| detector.push(*s)).collect();
    beats.extend(detector.finish());
    EcgFindings::from_beats(beats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{ecg, EcgSpec};

    #[test]
    fn finds_the_beats_of_synthetic_ecg_within_one_bpm() {
        for hz in [250, 500] {
            for bpm in [40.0, 75.0, 150.0, 200.0] {
                let truth = ecg(EcgSpec::new(bpm, hz), 60.0);
                let found = analyse(&truth.samples, hz);
                let got = found.bpm.expect("beats found");
                assert!(
                    (got - truth.true_bpm()).abs() <= 1.0,
                    "{bpm} bpm at {hz} Hz: detected {got:.2}, true {:.2}",
                    truth.true_bpm()
                );
                // Every beat after the 2 s learning period is found, once.
                let expected = truth.r_peaks.iter().filter(|r| **r > 2.1).count();
                let detected = found.beats.iter().filter(|b| **b > 2.1).count();
                assert!(
                    (detected as i64 - expected as i64).abs() <= 1,
                    "{bpm} bpm at {hz} Hz: {detected} beats, {expected} true"
                );
            }
        }
    }

    #[test]
    fn chunk_boundaries_do_not_change_the_beats() {
        let truth = ecg(EcgSpec::new(90.0, 250), 30.0);
        let whole = analyse(&truth.samples, 250);
        let mut detector = RPeakDetector::new(250);
        let mut beats = Vec::new();
        for chunk in truth.samples.chunks(97) {
            beats.extend(chunk.iter().filter_map(|s| detector.push(*s)));
        }
        beats.extend(detector.finish());
        assert_eq!(beats, whole.beats);
    }

    #[test]
    fn flags_an_irregular_rhythm_that_is_there_and_not_one_that_is_not() {
        for bpm in [60.0, 110.0] {
            for seed in 1..=3 {
                let regular = ecg(
                    EcgSpec {
                        seed,
                        ..EcgSpec::new(bpm, 250)
                    },
                    60.0,
                );
                let irregular = ecg(
                    EcgSpec {
                        seed,
                        irregular: true,
                        ..EcgSpec::new(bpm, 250)
                    },
                    60.0,
                );
                let r = analyse(&regular.samples, 250);
                let i = analyse(&irregular.samples, 250);
                assert!(
                    !r.irregular(0.1),
                    "regular {bpm}/{seed}: {:?}",
                    r.irregularity
                );
                assert!(
                    i.irregular(0.1),
                    "irregular {bpm}/{seed}: {:?}",
                    i.irregularity
                );
            }
        }
    }

    #[test]
    fn noise_alone_gives_no_beats_worth_a_rate() {
        let mut rng = fastrand::Rng::with_seed(3);
        let flat: Vec<f32> = (0..250 * 20).map(|_| (rng.f32() - 0.5) * 0.02).collect();
        let found = analyse(&flat, 250);
        assert!(
            found.beats.len() < 5,
            "{} beats in noise",
            found.beats.len()
        );
    }
}
