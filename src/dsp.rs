//! Signal processing shared by the ECG analysis and the ECG generator: one
//! second-order IIR section (RBJ audio-EQ cookbook biquad).

use serde::{Deserialize, Serialize};

/// A second-order IIR section (RBJ audio-EQ cookbook) in transposed direct
/// form II, in f64: the band-pass edges are at 1–6 % of the sample rate,
/// where f32 loses precision in the recursion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Biquad {
    pub(crate) b: [f64; 3],
    pub(crate) a: [f64; 2],
    /// The two state words.
    pub(crate) z: [f64; 2],
}

impl Biquad {
    pub(crate) fn new(high: bool, cutoff_hz: f64, sample_hz: f64, q: f64) -> Self {
        let w0 = 2.0 * std::f64::consts::PI * cutoff_hz / sample_hz;
        let alpha = w0.sin() / (2.0 * q);
        let cos = w0.cos();
        let a0 = 1.0 + alpha;
        let b = if high {
            [(1.0 + cos) / 2.0, -(1.0 + cos), (1.0 + cos) / 2.0]
        } else {
            [(1.0 - cos) / 2.0, 1.0 - cos, (1.0 - cos) / 2.0]
        };
        Self {
            b: [b[0] / a0, b[1] / a0, b[2] / a0],
            a: [-2.0 * cos / a0, (1.0 - alpha) / a0],
            z: [0.0; 2],
        }
    }

    /// Starts the section in the steady state of a constant input `x`, so
    /// the first sample's offset does not ring through the filters.
    pub(crate) fn settle(&mut self, x: f64) {
        let gain = (self.b[0] + self.b[1] + self.b[2]) / (1.0 + self.a[0] + self.a[1]);
        let y = gain * x;
        let z1 = self.b[2] * x - self.a[1] * y;
        self.z = [self.b[1] * x - self.a[0] * y + z1, z1];
    }

    /// Transposed direct form II has a short dependency chain from one
    /// sample to the next (this is the detector's hot path).
    #[inline]
    pub(crate) fn step(&mut self, x: f64) -> f64 {
        let y = self.b[0] * x + self.z[0];
        self.z[0] = self.b[1] * x - self.a[0] * y + self.z[1];
        self.z[1] = self.b[2] * x - self.a[1] * y;
        y
    }
}
