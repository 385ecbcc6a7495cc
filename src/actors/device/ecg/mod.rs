//! ECG analysis for one lead, as pure streaming code (samples in; beats,
//! signal quality and rhythm out; no clock: time is the sample index over the
//! rate). Chunks of any size give the same results, and the whole state is
//! serialisable, so a device stream's snapshot continues exactly where it was.
//!
//! - [`detect`]: QRS detection after Pan & Tompkins (1985), reporting each
//!   beat at its R peak, with its QRS width and type (normal or wide/PVC).
//! - [`quality`]: per-second signal quality (lead off, flat line,
//!   saturation, mains hum, low amplitude, artefact). While it is poor the
//!   heart rate is unknown and rhythm rules are suspended.
//! - [`rhythm`]: heart rate, asystole, pause, VF, VT, AF and PVCs a minute,
//!   one [`RhythmState`] per second of signal.
//!
//! docs/clinical.md lists every rule, its reference and how it was scored.

pub mod detect;
pub mod quality;
pub mod rhythm;

use serde::{Deserialize, Serialize};

pub use detect::{BeatKind, DetectedBeat, QrsDetector};
pub use quality::Quality;
pub use rhythm::{Beat, RhythmAnalyzer, RhythmSettings, RhythmState};

use super::alarms::Observation;

/// The analysis of one lead: the QRS detector feeding the rhythm analysis.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EcgAnalyzer {
    detector: QrsDetector,
    rhythm: RhythmAnalyzer,
}

/// What a chunk of ECG said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EcgOutput {
    /// Beats found (each reported shortly after its R peak).
    pub beats: Vec<DetectedBeat>,
    /// One state per second of signal completed.
    pub states: Vec<RhythmState>,
}

impl EcgAnalyzer {
    /// An analysis of a lead sampled at `hz` (250–500 Hz).
    pub fn new(hz: u32, settings: RhythmSettings) -> Self {
        Self {
            detector: QrsDetector::new(hz),
            rhythm: RhythmAnalyzer::new(hz, settings),
        }
    }

    /// Feeds the next samples (millivolts); appends what they completed.
    pub fn push(&mut self, samples: &[f32], out: &mut EcgOutput) {
        let first = out.beats.len();
        self.detector.push(samples, &mut out.beats);
        let beats: Vec<Beat> = out.beats[first..]
            .iter()
            .map(|b| Beat {
                sample: b.sample,
                kind: b.kind,
            })
            .collect();
        self.rhythm.push(samples, &beats, &mut out.states);
    }
}

/// Runs the analysis over a whole recording.
pub fn analyse(samples: &[f32], hz: u32, settings: RhythmSettings) -> EcgOutput {
    let mut analyzer = EcgAnalyzer::new(hz, settings);
    let mut out = EcgOutput::default();
    analyzer.push(samples, &mut out);
    out
}

impl Quality {
    /// Whether rhythm can be judged on the signal.
    pub fn is_good(self) -> bool {
        self == Quality::Good
    }

    /// A technical condition meaning no usable signal at all (the electrode
    /// is off, or the input is flat or railed), rather than a degraded one.
    pub fn is_lead_off(self) -> bool {
        matches!(self, Quality::LeadOff | Quality::Flat | Quality::Saturated)
    }
}

impl RhythmState {
    /// What the alarm engine is told about the second ending at `at_ms`.
    pub fn observation(&self, at_ms: u64) -> Observation {
        Observation::Rhythm {
            at_ms,
            quality_ok: self.quality.is_good(),
            lead_off: self.quality.is_lead_off(),
            asystole: self.asystole,
            pause: self.pause,
            vf: self.vf,
            vt: self.vt,
            af: self.af,
            pvc_per_min: self.pvc_per_min,
        }
    }
}

#[cfg(test)]
mod tests;
