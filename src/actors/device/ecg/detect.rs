//! Streaming QRS detection for one ECG lead after Pan & Tompkins (IEEE Trans
//! Biomed Eng 32(3):230–236, 1985): a 5–15 Hz band-pass, a five-point
//! derivative, squaring and a 150 ms moving-window integration, then dual
//! adaptive thresholds (signal and noise peak levels), a 200 ms refractory
//! period, T-wave discrimination within 360 ms (slope below half of the
//! previous QRS's) and search-back at 166 % of the mean RR with half the
//! threshold. Unlike a plain Pan–Tompkins detector it reports each beat at its
//! R peak, the largest |deflection| of the QRS in the lightly smoothed,
//! baseline-removed signal, found by looking back in a fixed-size ring buffer
//! once the integrated signal has confirmed the beat; so AAMI EC57 scoring
//! (150 ms match window) is not spoilt by the filters' delay. Beats are
//! reported 0.3–0.4 s after their R peak (see [`QrsDetector`]).
//!
//! Additions to the 1985 method, each for a stated reason:
//! - an absolute floor on the integrated peak, equivalent to a 0.06 mV QRS,
//!   so that a flat line, mains hum and low-level noise give no beats while a
//!   0.17 mV QRS still does (eight times above the floor); the 15 Hz
//!   low-pass is 4th order so that 50/60 Hz hum is not differentiated into
//!   the integrated signal;
//! - the T-wave test spares a candidate that looks like a PVC (larger than
//!   the previous QRS, or opposite and about as large): above about 100 bpm
//!   a PVC's coupling interval is under 360 ms and it is less steep; but a
//!   candidate whose sharpest sample-to-sample step is under a fifth of the
//!   previous QRS's is a T wave, however large (a QRS made of energy above
//!   the band-pass, as in the ICU record v102s, is not steep once smoothed);
//! - a small (< 0.2 mV) and slow deflection is not a QRS: P waves alone
//!   (ventricular standstill) must not count as beats;
//! - threshold updates clipped to 3x the signal level, and, when search-back
//!   found nothing, re-learning of the levels from the last 2 s of peaks (the
//!   next beat then sets the signal level afresh), so the thresholds recover
//!   within seconds after a burst of motion artefact or a pause (the 1985
//!   levels move by only 1/8 per peak);
//! - search-back no later than 0.5 s after the beat was due (except after a
//!   PVC), so that a recovered beat is still reported promptly;
//! - the R peak near the steepest point of the lightly smoothed signal in
//!   and before the integration window, since at fast rates a T wave as tall
//!   as R can be the band-passed peak;
//! - the beat type from the QRS width, measured on the slope energy of the
//!   raw signal and ended at the first trough of the slope energy after
//!   which the slope rises again in the same direction (the next wave, as a
//!   tall T wave on the S upstroke at fast rates; after Laguna et al. 1994):
//!   wider than 120 ms, or half as wide again as this patient's
//!   normal QRS with another axis, is a ventricular beat ([`BeatKind::Pvc`],
//!   which includes the beats of ventricular tachycardia); a width that cannot
//!   be measured, over 240 ms, or a noisy beat is [`BeatKind::Unknown`].

use serde::{Deserialize, Serialize};

mod filters;

use filters::*;

/// The type of a detected beat, from its QRS width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BeatKind {
    /// Narrow QRS (supraventricular conduction).
    Normal,
    /// Wide QRS (> 120 ms): a ventricular beat, including the beats of a
    /// ventricular tachycardia.
    Pvc,
    /// Not classifiable: the width could not be measured (the QRS did not
    /// end within ±150 ms), is beyond any QRS (> 240 ms), or the beat is
    /// noisy (noise before, in or just after the QRS above 15 % of its
    /// amplitude). Still a detected beat.
    Unknown,
}

/// One detected beat.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DetectedBeat {
    /// Index, from the detector's first sample, of the R peak: the largest
    /// |deflection| of the QRS in the lightly smoothed, baseline-removed signal.
    pub sample: u64,
    pub kind: BeatKind,
    /// QRS duration in milliseconds, from the slope energy of the raw signal
    /// (on synthetic beats within about 12 ms of the visible width, narrow
    /// ones reading short).
    pub qrs_ms: f32,
    /// Signed deflection at the R peak relative to the baseline, millivolts
    /// (negative for a QRS whose largest deflection points down).
    pub amplitude_mv: f32,
}

/// QRS wider than this is ventricular (AHA/ACC: QRS ≥ 120 ms is wide).
pub const WIDE_QRS_MS: f32 = 120.0;

/// The smallest QRS (R amplitude, mV) whose integrated peak passes the floor.
const FLOOR_QRS_MV: f64 = 0.06;

/// The QRS's tails outside the span where its squared slope exceeds 3 % of
/// the peak (4 ms each side; calibrated on Gaussian QRS against the width
/// where the wave exceeds 5 % of its peak).
const WIDTH_TAILS_MS: f32 = 8.0;

/// A trough of the boundary slope energy below this fraction of its QRS
/// peak, between falls and rises of at least [`TROUGH_DROP`] of the peak,
/// ends the QRS (see `QrsDetector::next_wave`). On synthetic beats the trough
/// between the S upstroke and a T wave as tall as R is 0.02–0.05 of the
/// peak at 150–180 bpm, the rise into T 0.1–0.15.
const TROUGH_LEVEL: f32 = 0.12;
const TROUGH_DROP: f32 = 0.02;

/// A candidate within 360 ms of a QRS whose sharpest sample-to-sample step
/// is below this fraction of that QRS's is a T wave, however large: a PVC
/// is less steep than a narrow QRS, but not fivefold.
const SHARP_T: f32 = 0.2;

/// No QRS lasts longer than this (ms; VT at 210 bpm, fused with its T wave,
/// measures about 210): a wider "complex" is noise and its
/// type [`BeatKind::Unknown`].
const MAX_QRS_MS: f32 = 240.0;

/// Noise (RMS of what the light smoothing removes, before the QRS) above
/// this fraction of the R amplitude makes the beat type Unknown.
const NOISY: f32 = 0.15;

/// A deflection smaller than `SMALL_MV` whose steepest slope is below
/// `MIN_STEEPNESS` times its amplitude (rise time constant above 21 ms) is
/// not taken for a QRS: P waves (0.1–0.15 mV, Gaussian σ ≈ 22 ms) would
/// otherwise be counted as beats in ventricular standstill, while a
/// low-voltage narrow QRS (σ ≈ 10 ms) is about 60 amplitudes per second steep.
const SMALL_MV: f32 = 0.2;
const MIN_STEEPNESS: f32 = 48.0;

/// A QRS candidate measured at the integrated peak that announced it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Candidate {
    /// Integrated (MWI) peak value.
    peak: f64,
    beat: DetectedBeat,
    /// Largest |slope| of the smoothed raw signal around R, mV/s.
    slope: f32,
    /// Largest |sample-to-sample step| of the raw signal from 100 ms before
    /// to 150 ms after R, mV/s: it sees a QRS whose energy lies above the
    /// light smoothing's band (the R of such a QRS, located on the smoothed
    /// signal, may be as much as 100 ms before it).
    sharp: f32,
}

/// The previous accepted beat.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Last {
    r: u64,
    slope: f32,
    sharp: f32,
    amp: f32,
}

/// Streaming QRS detector (serialisable: a snapshot continues exactly).
///
/// Samples are millivolts at `hz` (250–500 Hz tested). Each beat is reported
/// once, in order, with the index of its R peak; [`push`](Self::push) with
/// any chunking gives the same beats. Latency: a beat is reported when its
/// integrated peak has stayed the largest for 180 ms, 0.3–0.4 s after its R
/// peak; a beat recovered by search-back at most about 0.5 s after it was
/// due (after a PVC, at 166 % of the mean RR). Nothing is reported during the
/// first 2 s (learning). Memory is fixed at construction (ring buffers of
/// 2–3 s); no allocation per sample. Non-finite samples are replaced by the
/// previous sample.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QrsDetector {
    hz: u32,
    n: u64,
    front: FrontEnd,
    /// Baseline-removing one-pole high-pass (0.5 Hz) of the raw signal.
    base_a: f64,
    base_x: f64,
    base_y: f64,
    /// Ring buffers indexed by sample & mask: baseline-removed raw, band-passed.
    raw: Vec<f32>,
    band: Vec<f32>,
    mask: usize,
    // Local-maximum tracking of the integrated signal.
    prev_mwi: f64,
    rising: bool,
    pending: Option<(u64, f64)>,
    // Constants in samples.
    window: u64,
    confirm: u64,
    refractory: u64,
    t_wave: u64,
    learn: u64,
    band_lag: u64,
    smooth: u64,
    deriv: u64,
    floor: f64,
    // Learning.
    learn_max: f64,
    learn_sum: f64,
    // Adaptive levels.
    spki: f64,
    npki: f64,
    last: Option<Last>,
    /// Running width (ms) and signed amplitude (mV) of Normal beats.
    normal_ref: Option<(f32, f32)>,
    rr: [u64; 8],
    rr_len: usize,
    rr_pos: usize,
    best: Option<Candidate>,
    deadline: u64,
    lost: bool,
    /// The last 16 integrated peaks (sample, value), for re-learning.
    history: [(u64, f64); 16],
    history_pos: usize,
}

impl QrsDetector {
    /// A detector for `hz` samples per second (tested at 250–500 Hz; values
    /// outside 100–2000 are clamped).
    pub fn new(hz: u32) -> Self {
        let hz = hz.clamp(100, 2000);
        let f = hz as f64;
        let secs = |s: f64| (s * f).round() as u64;
        let window = secs(0.150).max(1);
        let len = (hz as usize).next_power_of_two() * 2;
        let (band_lag, floor) = Self::calibrate(f, window as usize);
        Self {
            hz,
            n: 0,
            front: FrontEnd::new(f, window as usize),
            base_a: 1.0 / (1.0 + 2.0 * std::f64::consts::PI * 0.5 / f),
            base_x: 0.0,
            base_y: 0.0,
            raw: vec![0.0; len],
            band: vec![0.0; len],
            mask: len - 1,
            prev_mwi: 0.0,
            rising: false,
            pending: None,
            window,
            confirm: secs(0.180),
            refractory: secs(0.200),
            t_wave: secs(0.360),
            learn: secs(2.0),
            band_lag,
            smooth: secs(0.006).max(1),
            deriv: secs(0.020).max(1),
            floor,
            learn_max: 0.0,
            learn_sum: 0.0,
            spki: 0.0,
            npki: 0.0,
            last: None,
            normal_ref: None,
            rr: [0; 8],
            rr_len: 0,
            rr_pos: 0,
            best: None,
            deadline: u64::MAX,
            lost: false,
            history: [(0, 0.0); 16],
            history_pos: 0,
        }
    }

    /// Runs a synthetic Q-R-S (Gaussians, σ 10 ms, R 1 mV) through a fresh
    /// front end: the lag of the band-passed peak behind R (samples) and the
    /// integrated-peak floor for a [`FLOOR_QRS_MV`] QRS.
    fn calibrate(hz: f64, window: usize) -> (u64, f64) {
        let mut front = FrontEnd::new(hz, window);
        let centre = 0.4 * hz;
        let sigma = 0.010 * hz;
        let g = |i: f64, c: f64, a: f64| a * (-0.5 * ((i - c) / sigma).powi(2)).exp();
        let (mut best_bp, mut best_at, mut best_mwi) = (0.0f64, 0usize, 0.0f64);
        for i in 0..(hz as usize) {
            let t = i as f64;
            let x = g(t, centre - 0.025 * hz, -0.1)
                + g(t, centre, 1.0)
                + g(t, centre + 0.025 * hz, -0.25);
            let (bp, mwi) = front.step(x);
            if bp.abs() > best_bp {
                best_bp = bp.abs();
                best_at = i;
            }
            best_mwi = best_mwi.max(mwi);
        }
        let lag = (best_at as f64 - centre).max(0.0).round() as u64;
        (lag, best_mwi * FLOOR_QRS_MV * FLOOR_QRS_MV)
    }

    /// Samples consumed so far.
    pub fn samples_seen(&self) -> u64 {
        self.n
    }

    /// Consumes `samples` (mV) and appends the beats they complete to `out`.
    pub fn push(&mut self, samples: &[f32], out: &mut Vec<DetectedBeat>) {
        for &x in samples {
            self.step(x, out);
        }
    }

    /// End of stream: holds the last sample long enough to confirm what is
    /// pending, and appends those beats (only ones inside the real signal).
    pub fn finish(mut self, out: &mut Vec<DetectedBeat>) {
        let end = self.n;
        // base_x is the last raw sample.
        let hold = self.base_x as f32;
        let start = out.len();
        for _ in 0..(self.hz as usize) {
            self.step(hold, out);
        }
        let mut keep = start;
        for i in start..out.len() {
            if out[i].sample < end {
                out[keep] = out[i];
                keep += 1;
            }
        }
        out.truncate(keep);
    }

    #[inline]
    fn step(&mut self, x: f32, out: &mut Vec<DetectedBeat>) {
        // A sample that is not a number (a device glitch) would poison every
        // recursive filter for good: hold the previous sample instead.
        let x = if x.is_finite() { x as f64 } else { self.base_x };
        if self.n == 0 {
            self.base_x = x;
            self.front.band.settle(x);
        }
        self.base_y = self.base_a * (self.base_y + x - self.base_x);
        self.base_x = x;
        let (bp, mwi) = self.front.step(x);
        let at = self.n as usize & self.mask;
        self.raw[at] = self.base_y as f32;
        self.band[at] = bp as f32;

        // A local maximum of the integrated signal at n - 1.
        if mwi < self.prev_mwi && self.rising {
            let t = self.n - 1;
            match self.pending {
                Some((_, v)) if v >= self.prev_mwi => {}
                _ => self.pending = Some((t, self.prev_mwi)),
            }
        }
        if mwi > self.prev_mwi {
            self.rising = true;
        } else if mwi < self.prev_mwi {
            self.rising = false;
        }
        self.prev_mwi = mwi;

        if let Some((t, v)) = self.pending {
            if self.n - t > self.confirm {
                self.pending = None;
                self.on_peak(t, v, out);
            }
        }
        if self.n < self.learn {
            self.learn_max = self.learn_max.max(mwi);
            self.learn_sum += mwi;
        } else if self.n == self.learn {
            // Pan–Tompkins' initial levels: a fraction of the largest and of
            // the mean integrated value of the learning period.
            self.spki = (self.learn_max / 3.0).max(self.floor);
            self.npki = self.learn_sum / self.learn as f64 / 2.0;
        }
        if self.n >= self.deadline {
            self.search_back(out);
        }
        self.n += 1;
    }

    fn rr_mean(&self) -> u64 {
        if self.rr_len == 0 {
            self.hz as u64
        } else {
            self.rr[..self.rr_len].iter().sum::<u64>() / self.rr_len as u64
        }
    }

    fn thresholds(&self) -> (f64, f64) {
        let t1 = self.npki + 0.25 * (self.spki - self.npki);
        (t1, 0.5 * t1)
    }

    fn on_peak(&mut self, t: u64, v: f64, out: &mut Vec<DetectedBeat>) {
        self.history[self.history_pos] = (t, v);
        self.history_pos = (self.history_pos + 1) % self.history.len();
        if self.n <= self.learn {
            return;
        }
        if self.lost {
            self.relearn(t);
        }
        let (t1, t2) = self.thresholds();
        if v <= t2 || v < self.floor {
            // Neither a beat nor a search-back candidate: a noise peak, not
            // worth locating (most peaks of the integrated signal are these).
            self.npki = 0.125 * v.min(self.spki) + 0.875 * self.npki;
            return;
        }
        let Some(c) = self.measure(t, v) else {
            return;
        };
        let t_wave = self
            .last
            .is_some_and(|l| c.beat.sample - l.r < self.t_wave && Self::like_t_wave(&c, &l));
        // A small and slow deflection is a P wave (as in ventricular
        // standstill) or a stray T wave, not a QRS.
        let amp = c.beat.amplitude_mv.abs();
        let t_wave = t_wave || (amp < SMALL_MV && c.slope < MIN_STEEPNESS * amp);
        if v > t1 && v >= self.floor && !t_wave {
            self.spki = if self.lost {
                // First beat after re-learning (e.g. after a pause, when the
                // levels sank to the noise): it sets the signal level afresh.
                v
            } else {
                // Clipped so that an artefact spike cannot lift the level
                // by more than 25 % per peak.
                0.125 * v.min(3.0 * self.spki) + 0.875 * self.spki
            };
            self.accept(c, out);
        } else {
            self.npki = 0.125 * v.min(self.spki) + 0.875 * self.npki;
            if v > t2 && v >= self.floor && !t_wave && self.best.is_none_or(|b| v > b.peak) {
                self.best = Some(c);
            }
        }
    }

    /// T-wave discrimination for a candidate within 360 ms of the previous
    /// beat `l` (Pan & Tompkins): less than half as steep as the previous
    /// QRS; unless it looks like a premature ventricular beat (larger than
    /// the previous QRS, or of the opposite polarity and about as large),
    /// which is also less steep but must be kept: at sinus rates above about
    /// 100 bpm a PVC's coupling interval is shorter than 360 ms. A candidate
    /// less than a fifth as sharp (raw sample-to-sample steps) as the previous
    /// QRS is a T wave in any case; a synthetic PVC is 0.4 as sharp as a
    /// narrow QRS, and noise only brings the two closer.
    fn like_t_wave(c: &Candidate, l: &Last) -> bool {
        let amp = c.beat.amplitude_mv;
        let pvc_like =
            amp.abs() >= 1.3 * l.amp.abs() || (amp * l.amp < 0.0 && amp.abs() >= 0.8 * l.amp.abs());
        let blunt = c.sharp < SHARP_T * l.sharp;
        (c.slope < 0.5 * l.slope && !pvc_like) || blunt
    }

    /// Re-learning after the search-back found nothing: the levels come from
    /// the peaks of the last 2 s, so thresholds raised by an artefact fall
    /// back within seconds.
    fn relearn(&mut self, t: u64) {
        let since = t.saturating_sub(2 * self.hz as u64);
        let recent = self
            .history
            .iter()
            .filter(|&&(s, _)| s >= since && s <= t)
            .map(|&(_, v)| v)
            .fold(0.0f64, f64::max);
        self.spki = self.spki.min(recent).max(self.floor);
        self.npki = self.npki.min(0.3 * self.spki);
    }

    fn search_back(&mut self, out: &mut Vec<DetectedBeat>) {
        self.deadline = u64::MAX;
        match self.best.take() {
            Some(c) => {
                self.spki = 0.25 * c.peak.min(3.0 * self.spki) + 0.75 * self.spki;
                self.accept(c, out);
            }
            None => {
                self.lost = true;
                self.rr_len = 0;
            }
        }
    }

    fn accept(&mut self, c: Candidate, out: &mut Vec<DetectedBeat>) {
        let r = c.beat.sample;
        if let Some(l) = self.last {
            let hz = self.hz as u64;
            let rr = (r - l.r).clamp(hz / 4, 5 * hz / 2);
            self.rr[self.rr_pos] = rr;
            self.rr_pos = (self.rr_pos + 1) % self.rr.len();
            self.rr_len = (self.rr_len + 1).min(self.rr.len());
        }
        self.last = Some(Last {
            r,
            slope: c.slope,
            sharp: c.sharp,
            amp: c.beat.amplitude_mv,
        });
        if c.beat.kind == BeatKind::Normal {
            // Running (1/16) width and amplitude of this patient's normal QRS.
            let (w, a) = (c.beat.qrs_ms, c.beat.amplitude_mv);
            self.normal_ref = Some(match self.normal_ref {
                Some((rw, ra)) => (rw + (w - rw) / 16.0, ra + (a - ra) / 16.0),
                None => (w, a),
            });
        }
        self.best = None;
        self.lost = false;
        // Search-back at 166 % of the mean RR (Pan & Tompkins), but no later
        // than half a second after the beat was due, so a recovered beat is
        // still reported within about 0.5 s; except after a PVC, whose
        // compensatory pause is expected. And no sooner than a beat due at
        // the mean RR could have been confirmed (fast rates).
        let rr = self.rr_mean();
        let hz = self.hz as u64;
        let ready = self.confirm + self.window + self.band_lag + hz / 20;
        let wait = if c.beat.kind == BeatKind::Pvc {
            rr * 166 / 100
        } else {
            (rr * 166 / 100).min(rr + hz / 2)
        };
        self.deadline = r + wait.max(rr + ready);
        out.push(c.beat);
    }

    /// Relative test for a ventricular beat in a patient whose own narrow
    /// QRS measures short: half as wide again as the running normal width,
    /// and of another axis (opposite polarity or 1.5x the amplitude).
    fn unlike_normal(&self, qrs_ms: f32, amp: f32) -> bool {
        let Some((width, normal_amp)) = self.normal_ref else {
            return false;
        };
        let other_axis = amp * normal_amp < 0.0 || amp.abs() >= 1.5 * normal_amp.abs();
        qrs_ms >= 90.0 && qrs_ms >= 1.5 * width && other_axis
    }

    #[inline]
    fn raw_at(&self, i: u64) -> f32 {
        self.raw[i as usize & self.mask]
    }

    /// The raw signal smoothed by a centred box of ±`smooth` samples.
    fn smoothed(&self, i: u64) -> f32 {
        let k = self.smooth;
        let mut s = 0.0;
        for j in (i - k)..=(i + k) {
            s += self.raw_at(j);
        }
        s / (2 * k + 1) as f32
    }

    /// Slope (mV/s) at `i` for the QRS boundary: the difference of two
    /// 10 ms box means 20 ms apart, which resolves the waves of a QRS better
    /// than the 20 ms boxes of the width span while still nulling 50 Hz hum
    /// (the lag is one period) and its even harmonics (the box).
    fn fine_slope(&self, i: u64) -> f32 {
        let hz = self.hz as f64;
        let b = (0.005 * hz).round().max(1.0) as u64;
        let (before, after) = (self.deriv / 2, self.deriv - self.deriv / 2);
        let mut d = 0.0f32;
        for j in 0..=2 * b {
            d += self.raw_at(i + after + j - b) - self.raw_at(i - before + j - b);
        }
        d / (2 * b + 1) as f32 * hz as f32 / self.deriv as f32
    }

    /// Walking from R (forwards or backwards, at most `steps` samples), the
    /// first trough of the slope energy where the next wave begins: after a
    /// lobe has fallen by [`TROUGH_DROP`] of the QRS's peak energy to below
    /// [`TROUGH_LEVEL`] of it, the slope rises again by [`TROUGH_DROP`]
    /// without changing sign (a sign change is an extremum of the signal, such
    /// as R or S, inside the QRS). After Laguna et al. (Comput Biomed Res
    /// 27:45–60, 1994), who end the QRS at the minimum of |derivative| when
    /// the derivative does not fall below their threshold.
    fn next_wave(&self, r: u64, forward: bool, steps: u64) -> Option<u64> {
        let hz = self.hz as f64;
        let near = (0.050 * hz).round() as u64;
        let at = |k: u64| if forward { r + k } else { r - k };
        let mut peak = 0.0f32;
        for k in 0..=near.min(steps) {
            peak = peak.max(self.fine_slope(at(k)).powi(2));
        }
        if peak <= 0.0 {
            return None;
        }
        let (level, drop) = (TROUGH_LEVEL * peak, TROUGH_DROP * peak);
        let mut sign = 0.0f32;
        let (mut hi, mut lo, mut lo_at) = (0.0f32, 0.0f32, r);
        for k in 1..=steps {
            let i = at(k);
            let s = self.fine_slope(i);
            let e = s * s;
            if s != 0.0 && s.signum() != sign {
                sign = s.signum();
                (hi, lo, lo_at) = (e, e, i);
                continue;
            }
            if e < lo {
                (lo, lo_at) = (e, i);
            }
            if lo <= level && hi - lo >= drop && e - lo >= drop {
                return Some(lo_at);
            }
            if e > hi {
                (hi, lo, lo_at) = (e, e, i);
            }
        }
        None
    }

    /// Locates the R peak behind the integrated peak at `t`, and measures
    /// its slope and QRS width. None when it falls in the refractory period.
    fn measure(&self, t: u64, v: f64) -> Option<Candidate> {
        let hz = self.hz as f64;
        let ms = |m: f64| (m * hz / 1000.0).round() as u64;
        // Oldest sample still in the rings, with room for the smoothing.
        let oldest =
            (self.n + 2 * self.smooth + 2 * self.deriv + 2).saturating_sub(self.raw.len() as u64);
        // Newest sample that the smoothing and the slope can read around.
        let newest = self.n - self.smooth - self.deriv - 2;
        // 1. The band-passed peak within the integration window.
        let from = t.saturating_sub(self.window + ms(50.0)).max(oldest);
        let mut b = t;
        let mut best = -1.0f32;
        for i in from..=t {
            let a = self.band[i as usize & self.mask].abs();
            if a > best {
                best = a;
                b = i;
            }
        }
        // 2. The steepest point of the lightly smoothed raw signal near it:
        // at fast rates a T wave as tall as R can be the band-passed peak, up
        // to 150 ms after its QRS, but it is less than half as steep.
        let r0 = b.saturating_sub(self.band_lag);
        let after = self.last.map_or(0, |l| l.r + self.refractory + 1);
        let light = |i: u64| (self.smoothed(i + 1) - self.smoothed(i - 1)) * hz as f32 / 2.0;
        let from = r0.saturating_sub(ms(150.0)).max(oldest).max(after);
        let to = (r0 + ms(60.0)).min(newest);
        let mut steep_at = r0;
        let mut steep = -1.0f32;
        for i in from..=to {
            let d = light(i).abs();
            if d > steep {
                steep = d;
                steep_at = i;
            }
        }
        // 3. The largest |deflection| of the smoothed raw signal near that.
        let mut lo = steep_at.saturating_sub(ms(50.0)).max(oldest);
        let mut clamped = false;
        if after > lo {
            lo = after;
            clamped = true;
        }
        let hi = (steep_at + ms(50.0)).min(newest);
        if lo > hi {
            return None;
        }
        let mut r = lo;
        let mut amp = 0.0f32;
        for i in lo..=hi {
            let s = self.smoothed(i);
            if s.abs() > amp.abs() {
                amp = s;
                r = i;
            }
        }
        if clamped && r == lo {
            // Still falling from the previous beat at the refractory edge:
            // its own T wave or tail, not a new QRS.
            return None;
        }
        // 4. Largest slope near R on the lightly smoothed signal, for the
        // T-wave test (a T wave is much less steep than a QRS).
        let mut steepest = 0.0f32;
        for i in r.saturating_sub(ms(40.0)).max(oldest)..=(r + ms(40.0)).min(newest) {
            steepest = steepest.max(light(i).abs());
        }
        let mut sharp = 0.0f32;
        for i in r.saturating_sub(ms(100.0)).max(oldest)..(r + ms(150.0)).min(newest) {
            sharp = sharp.max((self.raw_at(i + 1) - self.raw_at(i)).abs() * hz as f32);
        }
        // 5. QRS width: the span around R where the squared slope stays above
        // 3 % of its peak (gaps up to 16 ms bridged, for the slope's zero at
        // R itself), plus the tails below that level, and no further than
        // where the next wave begins (`next_wave`). Lower levels run into the
        // previous T wave when a PVC comes early at fast rates. The slope here
        // is the difference of two adjacent 20 ms box means, which averages
        // EMG-like noise and nulls 50 Hz hum.
        let m = self.deriv;
        let slope_at = |i: u64| {
            let mut d = 0.0f32;
            for j in 1..=m {
                d += self.raw_at(i + j) - self.raw_at(i - j);
            }
            d / (m * m) as f32 * hz as f32
        };
        let mut peak_slope = 0.0f32;
        for i in r.saturating_sub(ms(50.0)).max(oldest)..=(r + ms(50.0)).min(newest) {
            peak_slope = peak_slope.max(slope_at(i).abs());
        }
        let level = 0.03 * peak_slope * peak_slope;
        let gap = ms(16.0);
        let reach = ms(150.0);
        let left_end = r.saturating_sub(reach).max(oldest);
        let right_end = (r + reach).min(newest);
        // The QRS ends at the first trough of its own slope energy after
        // which the slope rises again in the same direction: another wave
        // (a tall T wave on the S wave's upstroke at fast rates, where there
        // is no isoelectric ST segment to let the energy fall below 3 %).
        let left_cut = self.next_wave(r, false, r - left_end);
        let right_cut = self.next_wave(r, true, right_end - r);
        let left_stop = left_cut.map_or(left_end, |c| c.max(left_end));
        let right_stop = right_cut.map_or(right_end, |c| c.min(right_end));
        let mut onset = r;
        let mut i = r;
        while i > left_stop && i - 1 + gap >= onset {
            i -= 1;
            let s = slope_at(i);
            if s * s >= level {
                onset = i;
            }
        }
        let mut offset = r;
        let mut i = r;
        while i < right_stop && i < offset + gap {
            i += 1;
            let s = slope_at(i);
            if s * s >= level {
                offset = i;
            }
        }
        // Amplitude against the level just before the QRS (the one-pole
        // high-pass alone leaves the mean of tall T waves in the baseline).
        let before = onset.saturating_sub(ms(12.0)).max(oldest);
        let base: f32 =
            (before..=onset).map(|i| self.raw_at(i)).sum::<f32>() / (onset - before + 1) as f32;
        let amp = amp - base;
        let clipped = (left_cut.is_none() && onset <= left_end + gap)
            || (right_cut.is_none() && offset + gap >= right_end);
        let qrs_ms = ((offset - onset) as f64 * 1000.0 / hz) as f32 + WIDTH_TAILS_MS;
        // Noise: the part of the raw signal that the light smoothing removes,
        // over the 120 ms before the QRS (no QRS energy there), and over the
        // QRS and the 60 ms after it: a QRS buried in (or made of) energy
        // above the smoothing's band, such as the sample-to-sample
        // oscillation in the ICU record v102s, cannot be located or measured
        // on the smoothed signal (a synthetic QRS leaves about 3 % of its
        // amplitude there, EMG noise of 0.05 mV about 0.04 mV).
        let quiet = onset.saturating_sub(ms(120.0)).max(oldest + self.smooth);
        let mut noise = 0.0f32;
        for i in quiet..onset {
            let e = self.raw_at(i) - self.smoothed(i);
            noise += e * e;
        }
        let noise = (noise / (onset - quiet).max(1) as f32).sqrt();
        let inner_end = (offset + ms(60.0)).min(newest);
        let mut inner = 0.0f32;
        for i in onset..=inner_end {
            let e = self.raw_at(i) - self.smoothed(i);
            inner += e * e;
        }
        let inner = (inner / (inner_end - onset + 1) as f32).sqrt();
        let noise = noise.max(inner);
        let kind = if clipped || qrs_ms > MAX_QRS_MS || noise > NOISY * amp.abs() {
            BeatKind::Unknown
        } else if qrs_ms > WIDE_QRS_MS || self.unlike_normal(qrs_ms, amp) {
            BeatKind::Pvc
        } else {
            BeatKind::Normal
        };
        Some(Candidate {
            peak: v,
            beat: DetectedBeat {
                sample: r,
                kind,
                qrs_ms,
                amplitude_mv: amp,
            },
            slope: steepest,
            sharp,
        })
    }
}

/// Detects the beats of a whole recording (pushes it, then finishes).
pub fn detect(samples: &[f32], hz: u32) -> Vec<DetectedBeat> {
    let mut detector = QrsDetector::new(hz);
    let mut out = Vec::new();
    detector.push(samples, &mut out);
    detector.finish(&mut out);
    out
}

#[cfg(test)]
mod tests;
