//! Deterministic synthetic vital signs: ECG of many rhythms ([`ecg`]), and
//! heart rate, SpO2 and blood pressure series with episodes.
//!
//! Every generator returns its ground truth (beat times, the values it meant)
//! beside its samples, so tests compare detectors against what was generated,
//! not against hard-coded outputs. Same seed, same signal.

use std::f64::consts::PI;

pub mod ecg;

/// Box–Muller normal deviate from a seeded generator.
fn normal(rng: &mut fastrand::Rng) -> f64 {
    let u1 = rng.f64().max(f64::MIN_POSITIVE);
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
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
