//! The ECG rhythm rules' parameters (asystole and pause times, what makes a
//! VT run, the AF and heart-rate windows), as configured per node: a plain
//! value shared by the rhythm analysis (`actors::device::ecg::rhythm`, which
//! documents the rules) and the configuration.

/// Rule parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RhythmSettings {
    /// No QRS for this long (with Good signal) is asystole.
    pub asystole_ms: u64,
    /// An RR at least this long is a pause.
    pub pause_ms: u64,
    /// Consecutive ventricular beats that make a VT run.
    pub vt_min_beats: usize,
    /// Rate of that run, at least.
    pub vt_min_bpm: f64,
    /// Clean RR intervals the AF measures are taken over (at least
    /// `AF_MIN_RR` of the rhythm analysis).
    pub af_window_beats: usize,
    /// Heart rate is the mean rate of the beats within this window.
    pub hr_window_ms: u64,
}

impl Default for RhythmSettings {
    fn default() -> Self {
        Self {
            asystole_ms: 4000,
            pause_ms: 3000,
            vt_min_beats: 5,
            vt_min_bpm: 120.0,
            af_window_beats: 32,
            hr_window_ms: 10_000,
        }
    }
}
