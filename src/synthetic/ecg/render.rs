//! What is drawn besides the beats: f-waves, VF, baseline wander, EMG noise,
//! mains hum and motion artefacts.

use std::f64::consts::{FRAC_1_SQRT_2, PI};

use crate::dsp::Biquad;

use super::schedule::*;

/// Raised-cosine fade of `ramp` seconds at both ends of [from, to), so that
/// segment-bound activity starts and stops without a step.
pub(super) fn fade(t: f64, from: f64, to: f64, ramp: f64) -> f64 {
    let ramp = ramp.min(0.5 * (to - from));
    let x = ((t - from) / ramp).min((to - t) / ramp).clamp(0.0, 1.0);
    0.5 - 0.5 * (PI * x).cos()
}

/// A sinusoid advanced by rotation, one sample per call: a multiply-add
/// instead of a `sin` per sample (renormalised now and then so that rounding
/// does not change its amplitude over hours).
pub(super) struct Osc {
    pub(super) c: f64,
    pub(super) s: f64,
    pub(super) dc: f64,
    pub(super) ds: f64,
    pub(super) k: u32,
}

impl Osc {
    /// `sin(2π·f·t + phase)` sampled at `hz` from `t = t0`.
    pub(super) fn new(f: f64, phase: f64, hz: f64, t0: f64) -> Self {
        let p = 2.0 * PI * f * t0 + phase;
        let w = 2.0 * PI * f / hz;
        Osc {
            c: p.cos(),
            s: p.sin(),
            dc: w.cos(),
            ds: w.sin(),
            k: 0,
        }
    }
    pub(super) fn next(&mut self) -> f64 {
        let v = self.s;
        let (c, s) = (
            self.c * self.dc - self.s * self.ds,
            self.s * self.dc + self.c * self.ds,
        );
        self.k += 1;
        if self.k % 1024 == 0 {
            let norm = (c * c + s * s).sqrt();
            (self.c, self.s) = (c / norm, s / norm);
        } else {
            (self.c, self.s) = (c, s);
        }
        v
    }
}

/// A smooth random drift in [−1, 1], sample by sample from `t0`: the mean of
/// three sinusoids with seeded frequencies in [lo, hi] Hz and phases.
pub(super) struct Drift([Osc; 3]);

impl Drift {
    pub(super) fn new(rng: &mut fastrand::Rng, lo: f64, hi: f64, hz: f64, t0: f64) -> Self {
        let mut osc = || {
            let f = lo + (hi - lo) * rng.f64();
            Osc::new(f, 2.0 * PI * rng.f64(), hz, t0)
        };
        Drift([osc(), osc(), osc()])
    }
    pub(super) fn next(&mut self) -> f64 {
        (self.0[0].next() + self.0[1].next() + self.0[2].next()) / 3.0
    }
}

/// Standard normal deviates, both of each Box–Muller pair used.
#[derive(Default)]
pub(super) struct Gauss {
    pub(super) spare: Option<f64>,
}

impl Gauss {
    pub(super) fn next(&mut self, rng: &mut fastrand::Rng) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let u1 = rng.f64().max(f64::MIN_POSITIVE);
        let u2 = rng.f64();
        let r = (-2.0 * u1.ln()).sqrt();
        let (sn, cs) = (2.0 * PI * u2).sin_cos();
        self.spare = Some(r * sn);
        r * cs
    }
}

/// AF f-waves (4–9 Hz, ≤ 0.1 mV, sawtooth-like) or VF (≈4–7 Hz, 0.25–0.85 mV)
/// as a phase-accumulated oscillator with drifting frequency and amplitude
/// and a random frequency jitter, which makes the oscillation irregular rather
/// than a pure tone.
pub(super) fn render_episode(buf: &mut [f64], hz: f64, ep: Episode, rng: &mut fastrand::Rng) {
    let (from, to, centre, swing, amp, amp_swing, jitter, harmonic, ramp) = match ep {
        Episode::FWaves(a, b) => {
            let centre = 5.5 + 1.5 * rng.f64();
            let amp = 0.055 + 0.025 * rng.f64();
            (a, b, centre, 1.0, amp, 0.2, 0.5, 0.25, 0.3)
        }
        Episode::Vf(a, b) => (a, b, 5.3, 0.8, 0.55, 0.55, 0.6, 0.2, 0.2),
    };
    let n = buf.len();
    let lo = ((from * hz).ceil().max(0.0) as usize).min(n);
    let hi = ((to * hz).ceil().max(0.0) as usize).min(n);
    let t0 = lo as f64 / hz;
    let mut f_drift = Drift::new(rng, 0.05, 0.5, hz, t0);
    let mut a_drift = Drift::new(rng, 0.1, 0.8, hz, t0);
    let psi = 2.0 * PI * rng.f64();
    let mut phase = 2.0 * PI * rng.f64();
    let mut gauss = Gauss::default();
    // Ornstein–Uhlenbeck frequency jitter (SD `jitter` Hz, correlation time
    // 0.15 s): cycle lengths vary irregularly, yet the waveform stays smooth.
    let tau = 0.15;
    let decay = (-1.0 / (hz * tau)).exp();
    let kick = jitter * (1.0 - decay * decay).sqrt();
    let mut df = 0.0;
    for (i, x) in buf.iter_mut().enumerate().take(hi).skip(lo) {
        let t = i as f64 / hz;
        let f = (centre + swing * f_drift.next() + df).max(1.0);
        let a = amp * (1.0 + amp_swing * a_drift.next());
        *x += fade(t, from, to, ramp) * a * (phase.sin() + harmonic * (2.0 * phase + psi).sin())
            / (1.0 + harmonic);
        phase += 2.0 * PI * f / hz;
        df = decay * df + kick * gauss.next(rng);
    }
}

/// EMG-like noise: white Gaussian noise band-passed 20–150 Hz (the upper edge
/// capped at 0.4·hz), scaled to the requested SD over the record.
pub(super) fn emg(n: usize, hz: f64, sd: f64, rng: &mut fastrand::Rng) -> Vec<f64> {
    if sd <= 0.0 || n == 0 {
        return vec![0.0; n];
    }
    let mut gauss = Gauss::default();
    let mut hp1 = Biquad::new(true, 20.0, hz, FRAC_1_SQRT_2);
    let mut hp2 = Biquad::new(true, 20.0, hz, FRAC_1_SQRT_2);
    let mut lp = Biquad::new(false, (150.0f64).min(0.4 * hz), hz, FRAC_1_SQRT_2);
    let mut v: Vec<f64> = (0..n)
        .map(|_| lp.step(hp2.step(hp1.step(gauss.next(rng)))))
        .collect();
    let rms = (v.iter().map(|x| x * x).sum::<f64>() / n as f64).sqrt();
    if rms > 0.0 {
        let k = sd / rms;
        v.iter_mut().for_each(|x| *x *= k);
    }
    v
}

/// Motion artefact: irregular 0.4–2.5 Hz swings (faded in and out over 0.1 s)
/// plus Gaussian spikes of 4–12 ms SD at ≈3 per second, of either sign: the
/// spikes look like QRS complexes on purpose.
pub(super) fn render_artefact(
    buf: &mut [f64],
    hz: f64,
    (from, to, mv): (f64, f64, f64),
    rng: &mut fastrand::Rng,
) {
    let swings: Vec<(f64, f64, f64)> = (0..4)
        .map(|_| {
            (
                0.4 + 2.1 * rng.f64(),
                2.0 * PI * rng.f64(),
                mv * (0.25 + 0.25 * rng.f64()),
            )
        })
        .collect();
    let n = buf.len();
    let lo = ((from * hz).ceil().max(0.0) as usize).min(n);
    let hi = ((to * hz).ceil().max(0.0) as usize).min(n);
    for (i, x) in buf.iter_mut().enumerate().take(hi).skip(lo) {
        let t = i as f64 / hz;
        let s: f64 = swings
            .iter()
            .map(|&(f, p, a)| a * (2.0 * PI * f * t + p).sin())
            .sum();
        *x += fade(t, from, to, 0.1) * s;
    }
    let mut t = from + 0.1;
    loop {
        t += -(1.0 - rng.f64()).ln() / 3.0;
        if t >= to - 0.05 {
            break;
        }
        let sign = if rng.bool() { 1.0 } else { -1.0 };
        let sigma = 0.004 + 0.008 * rng.f64();
        add_gaussian(buf, hz, t, sigma, sign * mv * (0.4 + 0.6 * rng.f64()));
    }
}
