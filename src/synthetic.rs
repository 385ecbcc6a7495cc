//! Deterministic synthetic vital signs: ECG with a chosen rate (regular or
//! irregular), heart rate, SpO2 and blood pressure series with episodes.
//!
//! Every generator returns its ground truth (beat times, the values it meant)
//! beside its samples, so tests compare detectors against what was generated,
//! not against hard-coded outputs. Same seed, same signal.

use std::f64::consts::PI;

/// An ECG to generate.
#[derive(Debug, Clone, Copy)]
pub struct EcgSpec {
    /// Mean heart rate.
    pub bpm: f64,
    /// Sampling rate (250–500 Hz for the patches cardio supports).
    pub hz: u32,
    /// Irregular rhythm (atrial-fibrillation-like): RR intervals vary ±30 %.
    /// Otherwise they vary by ±0.5 % (normal sinus variability is larger, but
    /// this keeps "regular" unambiguous).
    pub irregular: bool,
    /// White noise, millivolts (standard deviation).
    pub noise_mv: f64,
    pub seed: u64,
}

impl EcgSpec {
    pub fn new(bpm: f64, hz: u32) -> Self {
        Self {
            bpm,
            hz,
            irregular: false,
            noise_mv: 0.02,
            seed: 1,
        }
    }
}

/// A generated ECG and where its R peaks are.
#[derive(Debug, Clone)]
pub struct Ecg {
    pub hz: u32,
    /// Millivolts, one per sample.
    pub samples: Vec<f32>,
    /// Seconds from the start of the recording.
    pub r_peaks: Vec<f64>,
}

impl Ecg {
    /// Mean heart rate of the ground truth.
    pub fn true_bpm(&self) -> f64 {
        let rr: Vec<f64> = self.r_peaks.windows(2).map(|w| w[1] - w[0]).collect();
        60.0 / (rr.iter().sum::<f64>() / rr.len() as f64)
    }
}

fn gaussian(t: f64, centre: f64, width: f64, amplitude: f64) -> f64 {
    let x = (t - centre) / width;
    amplitude * (-0.5 * x * x).exp()
}

/// Box–Muller normal deviate from a seeded generator.
fn normal(rng: &mut fastrand::Rng) -> f64 {
    let u1 = rng.f64().max(f64::MIN_POSITIVE);
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
}

/// Generates `seconds` of ECG: P, QRS and T waves as Gaussians around each
/// beat (QT shortening with rate as in Bazett's formula), baseline wander and
/// white noise.
pub fn ecg(spec: EcgSpec, seconds: f64) -> Ecg {
    let mut rng = fastrand::Rng::with_seed(spec.seed);
    let mean_rr = 60.0 / spec.bpm;
    let mut r_peaks = Vec::new();
    let mut t = 0.3 * mean_rr.min(1.0);
    while t < seconds {
        r_peaks.push(t);
        let spread = if spec.irregular { 0.30 } else { 0.005 };
        t += mean_rr * (1.0 + spread * (2.0 * rng.f64() - 1.0));
    }
    let n = (seconds * spec.hz as f64) as usize;
    let mut samples = Vec::with_capacity(n);
    let mut beat = 0;
    for i in 0..n {
        let ts = i as f64 / spec.hz as f64;
        while beat + 1 < r_peaks.len() && (r_peaks[beat + 1] - ts) < (ts - r_peaks[beat]) {
            beat += 1;
        }
        let mut v = 0.0;
        // Waves of the nearest beats (a T wave may reach into the next RR).
        for b in beat.saturating_sub(1)..(beat + 2).min(r_peaks.len()) {
            let r = r_peaks[b];
            let rr = if b + 1 < r_peaks.len() {
                r_peaks[b + 1] - r
            } else {
                mean_rr
            };
            let s = rr.sqrt();
            v += gaussian(ts, r - 0.16 * s, 0.025, 0.15); // P
            v += gaussian(ts, r - 0.025, 0.010, -0.12); // Q
            v += gaussian(ts, r, 0.012, 1.2); // R
            v += gaussian(ts, r + 0.025, 0.010, -0.25); // S
            v += gaussian(ts, r + 0.22 * s, 0.05, 0.3); // T
        }
        v += 0.05 * (2.0 * PI * 0.3 * ts).sin(); // baseline wander (breathing)
        v += spec.noise_mv * normal(&mut rng);
        samples.push(v as f32);
    }
    Ecg {
        hz: spec.hz,
        samples,
        r_peaks,
    }
}

/// A stretch of time during which a series holds another value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Episode {
    pub from_s: f64,
    pub to_s: f64,
    pub value: f64,
}

/// A scalar vital (heart rate, SpO2) sampled every `period_s`: a baseline,
/// episodes that replace it, and seeded noise.
#[derive(Debug, Clone)]
pub struct Series {
    pub baseline: f64,
    pub episodes: Vec<Episode>,
    pub noise: f64,
    pub period_s: f64,
    pub seed: u64,
}

impl Series {
    pub fn new(baseline: f64, period_s: f64) -> Self {
        Self {
            baseline,
            episodes: Vec::new(),
            noise: 0.0,
            period_s,
            seed: 1,
        }
    }

    pub fn episode(mut self, from_s: f64, to_s: f64, value: f64) -> Self {
        self.episodes.push(Episode {
            from_s,
            to_s,
            value,
        });
        self
    }

    pub fn noise(mut self, noise: f64) -> Self {
        self.noise = noise;
        self
    }

    /// The noise's seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The value meant at time `t` (seconds), without noise: the ground truth.
    pub fn truth(&self, t: f64) -> f64 {
        self.episodes
            .iter()
            .rev()
            .find(|e| t >= e.from_s && t < e.to_s)
            .map_or(self.baseline, |e| e.value)
    }

    /// `(seconds, value)` pairs over `[0, seconds)`.
    pub fn samples(&self, seconds: f64) -> Vec<(f64, f64)> {
        let mut rng = fastrand::Rng::with_seed(self.seed);
        let n = (seconds / self.period_s).round() as usize;
        (0..n)
            .map(|i| {
                let t = i as f64 * self.period_s;
                (t, self.truth(t) + self.noise * normal(&mut rng))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_signal() {
        let a = ecg(EcgSpec::new(75.0, 250), 10.0);
        let b = ecg(EcgSpec::new(75.0, 250), 10.0);
        assert_eq!(a.samples, b.samples);
        let c = ecg(
            EcgSpec {
                seed: 2,
                ..EcgSpec::new(75.0, 250)
            },
            10.0,
        );
        assert_ne!(a.samples, c.samples);
    }

    #[test]
    fn the_ecg_has_the_rate_and_length_asked_for() {
        for bpm in [40.0, 75.0, 150.0, 200.0] {
            let e = ecg(EcgSpec::new(bpm, 500), 60.0);
            assert_eq!(e.samples.len(), 30_000);
            assert!((e.true_bpm() - bpm).abs() < 0.5, "{bpm}: {}", e.true_bpm());
            // R waves dominate: the tallest sample is within 20 ms of a beat.
            let (i, _) = e
                .samples
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap();
            let t = i as f64 / 500.0;
            assert!(e.r_peaks.iter().any(|r| (r - t).abs() < 0.02));
        }
    }

    #[test]
    fn series_follow_their_episodes() {
        let s = Series::new(70.0, 1.0).episode(10.0, 20.0, 130.0);
        let samples = s.samples(30.0);
        assert_eq!(samples.len(), 30);
        assert_eq!(samples[9].1, 70.0);
        assert_eq!(samples[10].1, 130.0);
        assert_eq!(samples[19].1, 130.0);
        assert_eq!(samples[20].1, 70.0);
    }
}
