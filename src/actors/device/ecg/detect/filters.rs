//! The detector's front end: the band-pass (two biquad sections each way) and
//! the derivative, squaring and moving-window integration of Pan & Tompkins.

use serde::{Deserialize, Serialize};

use crate::dsp::Biquad;

/// The 5–15 Hz band-pass: a 2nd-order Butterworth high-pass at 5 Hz and a
/// 4th-order Butterworth low-pass at 15 Hz (two sections), steep enough to
/// take 50/60 Hz mains hum down by about 40 dB before the derivative, which
/// would otherwise amplify it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct BandPass {
    pub(super) high: Biquad,
    pub(super) low1: Biquad,
    pub(super) low2: Biquad,
}

impl BandPass {
    pub(super) fn new(hz: f64) -> Self {
        Self {
            high: Biquad::new(true, 5.0, hz, std::f64::consts::FRAC_1_SQRT_2),
            low1: Biquad::new(false, 15.0, hz, 0.541_196_1),
            low2: Biquad::new(false, 15.0, hz, 1.306_563),
        }
    }

    pub(super) fn settle(&mut self, x: f64) {
        self.high.settle(x);
        self.low1.settle(0.0);
        self.low2.settle(0.0);
    }

    #[inline]
    pub(super) fn step(&mut self, x: f64) -> f64 {
        self.low2.step(self.low1.step(self.high.step(x)))
    }
}

/// The Pan–Tompkins front end: band-pass, five-point derivative (in mV/s),
/// squaring and moving-window mean (in (mV/s)², so independent of the
/// sample rate).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct FrontEnd {
    pub(super) hz: f64,
    pub(super) band: BandPass,
    /// The last four band-passed samples, newest first.
    pub(super) recent: [f64; 4],
    /// Squared derivative over the integration window (fixed length).
    pub(super) energy: Vec<f64>,
    pub(super) pos: usize,
    pub(super) sum: f64,
}

impl FrontEnd {
    pub(super) fn new(hz: f64, window: usize) -> Self {
        Self {
            hz,
            band: BandPass::new(hz),
            recent: [0.0; 4],
            energy: vec![0.0; window],
            pos: 0,
            sum: 0.0,
        }
    }

    /// One sample in; (band-passed, integrated) out.
    #[inline]
    pub(super) fn step(&mut self, x: f64) -> (f64, f64) {
        let bp = self.band.step(x);
        let r = self.recent;
        let slope = (2.0 * bp + r[0] - r[2] - 2.0 * r[3]) * self.hz / 8.0;
        self.recent = [bp, r[0], r[1], r[2]];
        let e = slope * slope;
        self.sum += e - self.energy[self.pos];
        self.energy[self.pos] = e;
        self.pos += 1;
        if self.pos == self.energy.len() {
            // Re-add the window once per turn so rounding cannot accumulate
            // over hours of streaming.
            self.pos = 0;
            self.sum = self.energy.iter().sum();
        }
        (bp, self.sum.max(0.0) / self.energy.len() as f64)
    }
}
