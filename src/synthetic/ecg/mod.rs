//! Deterministic synthetic single-lead ECG with ground truth, for testing QRS
//! detection and rhythm alarms. Each beat is a sum of Gaussian waves (P, Q, R,
//! S, T) after the ECGSYN model of McSharry, Clifford, Tarassenko & Smith
//! (2003, IEEE Trans Biomed Eng 50:289–294), written directly in time rather
//! than as the model's limit-cycle ODE, with P and T timing scaled by √RR as in
//! Bazett's (1920) QT correction. On top of the beats come the rhythms a
//! monitor must recognise (sinus with heart-rate variability and respiratory
//! sinus arrhythmia, PVCs with a full compensatory pause, atrial fibrillation
//! with f-waves, monomorphic VT, VF, asystole, sinus pause) and the technical
//! problems it must not mistake for them (lead off, flat line, motion artefact,
//! baseline wander, EMG noise, mains hum).
//!
//! The truth returned with the samples is measured, not assumed: a beat's time
//! is the sample where its QRS reaches its largest absolute deflection in the
//! noise-free waveform of the beats (P-QRS-T of it and its neighbours; AF
//! f-waves, VF, noise and artefacts excluded). Every random stream (beat
//! timing, f-waves, VF, EMG, artefacts, phases) has its own seed derived from
//! the scenario's, so adding noise to a scenario leaves its beats exactly
//! where they were.
//!
//! Conventions of the truth: a beat whose QRS would be cut by the record's
//! ends or by a lead-off / flat segment is neither drawn nor listed; the first
//! beat after a beat-free segment (or at the start) comes 0.25 s into its
//! segment; a beating segment after another continues from the last beat at
//! its own rate. Normal QRS ≈ 92 ms, PVC ≈ 165 ms, VT ≈ 150 ms (onset to
//! offset at 5 % of the peak, at 500 Hz).

use std::f64::consts::PI;

mod render;
mod schedule;

use render::*;
use schedule::*;

/// What a true beat was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrueBeatKind {
    /// A supraventricular beat with a narrow QRS (sinus or AF-conducted).
    Normal,
    /// A premature ventricular contraction within sinus rhythm.
    Pvc,
    /// A beat of ventricular tachycardia.
    Ventricular,
}

/// A beat in the ground truth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrueBeat {
    /// Seconds from the start, at the sample of the QRS's largest |deflection|
    /// in the noise-free beats' waveform (so always a multiple of 1/hz).
    pub t: f64,
    pub kind: TrueBeatKind,
}

/// A stretch of rhythm (or of a technical condition) in a scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Segment {
    /// Sinus rhythm; the scenario's `hrv`, `sinus_arrhythmia` and `pvc_every` apply.
    Sinus { bpm: f64, seconds: f64 },
    /// Atrial fibrillation: RR = mean·(1 + 0.25·N(0,1)) (clipped, drift-corrected
    /// so the mean rate holds), no P waves, f-waves of 4–9 Hz (a seeded centre
    /// of 5.5–7 Hz that drifts ±1 Hz, plus jitter) and 0.04–0.1 mV.
    Af { bpm: f64, seconds: f64 },
    /// Monomorphic ventricular tachycardia: wide QRS (≈150 ms), no P, T
    /// opposite to the QRS, RR jitter 1 %.
    Vt { bpm: f64, seconds: f64 },
    /// Ventricular fibrillation: a chaotic oscillation around 5.3 Hz (drifting
    /// ±0.8 Hz, plus a random jitter of SD 0.6 Hz; its dominant frequency is
    /// 4–7 Hz) of 0.25–0.85 mV whose amplitude drifts too. No beats in the truth.
    Vf { seconds: f64 },
    /// No QRS: baseline and noise only (plus isolated P waves when the
    /// scenario's `asystole_p_waves` is set: ventricular standstill).
    Asystole { seconds: f64 },
    /// Sinus arrest: the RR interval across the pause lasts `seconds` (it
    /// should be longer than the RR before it); the rhythm after it is the
    /// next segment's.
    Pause { seconds: f64 },
    /// Electrode off: the output jumps to a constant (±2–5 mV, seeded) plus
    /// the scenario's mains hum; nothing else (no beats, wander or EMG).
    LeadOff { seconds: f64 },
    /// Exactly 0.0 mV (cable disconnected, amplifier muted).
    Flat { seconds: f64 },
}

impl Segment {
    pub fn seconds(&self) -> f64 {
        match *self {
            Segment::Sinus { seconds, .. }
            | Segment::Af { seconds, .. }
            | Segment::Vt { seconds, .. }
            | Segment::Vf { seconds }
            | Segment::Asystole { seconds }
            | Segment::Pause { seconds }
            | Segment::LeadOff { seconds }
            | Segment::Flat { seconds } => seconds,
        }
    }

    /// The label of the segment's span in [`GeneratedEcg::spans`].
    pub fn label(&self) -> &'static str {
        match self {
            Segment::Sinus { .. } => "sinus",
            Segment::Af { .. } => "af",
            Segment::Vt { .. } => "vt",
            Segment::Vf { .. } => "vf",
            Segment::Asystole { .. } => "asystole",
            Segment::Pause { .. } => "pause",
            Segment::LeadOff { .. } => "lead_off",
            Segment::Flat { .. } => "flat",
        }
    }
}

/// What to generate. Build with [`EcgScenario::new`] and the segment methods;
/// the other fields are public to set directly.
#[derive(Debug, Clone)]
pub struct EcgScenario {
    pub hz: u32,
    pub seed: u64,
    pub segments: Vec<Segment>,
    /// Beat-to-beat RR jitter in sinus rhythm (SD as a fraction of RR).
    pub hrv: f64,
    /// Respiratory RR modulation amplitude as a fraction (0.15 = ±15 %), at the
    /// breathing rate (seeded, 0.2–0.3 Hz).
    pub sinus_arrhythmia: f64,
    /// In sinus segments every Nth sinus cycle is pre-empted by a PVC (N ≥ 2;
    /// 2 is bigeminy), counted across all sinus segments: coupling 0.6–0.7 RR,
    /// QRS ≈165 ms, no P, 1.5× the R amplitude and negative, T positive, and
    /// the next sinus beat on schedule (a full compensatory pause). A cycle
    /// whose previous beat is not a sinus beat of the same segment stays sinus.
    pub pvc_every: Option<usize>,
    /// R amplitude, mV (1.2 typical, 0.17 for a low-voltage ECG). All waves of
    /// a beat scale with it.
    pub r_mv: f64,
    /// T amplitude / R amplitude of normal beats (0.25 typical, 0.8–1.1 tall T).
    pub t_ratio: f64,
    /// Baseline wander, mV (breathing-rate swing plus a slower drift).
    pub wander_mv: f64,
    /// EMG-like noise band-limited to 20–150 Hz, standard deviation in mV.
    pub emg_mv: f64,
    /// Mains interference amplitude (peak, mV) and frequency.
    pub hum_mv: f64,
    pub hum_hz: f64,
    /// Motion artefact bursts (from_s, to_s, amplitude mV): irregular
    /// 0.4–2.5 Hz swings plus sharp QRS-like spikes.
    pub artefacts: Vec<(f64, f64, f64)>,
    /// During asystole, P waves continue at the last sinus rate (ventricular
    /// standstill). They are not beats in the truth.
    pub asystole_p_waves: bool,
}

impl EcgScenario {
    pub fn new(hz: u32, seed: u64) -> Self {
        Self {
            hz,
            seed,
            segments: Vec::new(),
            hrv: 0.02,
            sinus_arrhythmia: 0.0,
            pvc_every: None,
            r_mv: 1.2,
            t_ratio: 0.25,
            wander_mv: 0.05,
            emg_mv: 0.01,
            hum_mv: 0.0,
            hum_hz: 50.0,
            artefacts: Vec::new(),
            asystole_p_waves: false,
        }
    }

    fn push(mut self, s: Segment) -> Self {
        self.segments.push(s);
        self
    }

    pub fn sinus(self, bpm: f64, seconds: f64) -> Self {
        self.push(Segment::Sinus { bpm, seconds })
    }
    pub fn af(self, bpm: f64, seconds: f64) -> Self {
        self.push(Segment::Af { bpm, seconds })
    }
    pub fn vt(self, bpm: f64, seconds: f64) -> Self {
        self.push(Segment::Vt { bpm, seconds })
    }
    pub fn vf(self, seconds: f64) -> Self {
        self.push(Segment::Vf { seconds })
    }
    pub fn asystole(self, seconds: f64) -> Self {
        self.push(Segment::Asystole { seconds })
    }
    pub fn pause(self, seconds: f64) -> Self {
        self.push(Segment::Pause { seconds })
    }
    pub fn lead_off(self, seconds: f64) -> Self {
        self.push(Segment::LeadOff { seconds })
    }
    pub fn flat(self, seconds: f64) -> Self {
        self.push(Segment::Flat { seconds })
    }

    /// Adds a motion-artefact burst.
    pub fn artefact(mut self, from_s: f64, to_s: f64, mv: f64) -> Self {
        self.artefacts.push((from_s, to_s, mv));
        self
    }

    /// Mains hum of `mv` (peak) at `hz`.
    pub fn hum(mut self, mv: f64, hz: f64) -> Self {
        self.hum_mv = mv;
        self.hum_hz = hz;
        self
    }

    /// A noisy ambulatory recording: wander 0.2 mV, EMG 0.05 mV, hum 0.05 mV at 50 Hz.
    pub fn noisy(mut self) -> Self {
        self.wander_mv = 0.2;
        self.emg_mv = 0.05;
        self.hum_mv = 0.05;
        self.hum_hz = 50.0;
        self
    }

    /// No noise at all (wander, EMG and hum zero): the output equals the clean waveform.
    pub fn noiseless(mut self) -> Self {
        self.wander_mv = 0.0;
        self.emg_mv = 0.0;
        self.hum_mv = 0.0;
        self
    }

    pub fn total_seconds(&self) -> f64 {
        self.segments.iter().map(Segment::seconds).sum()
    }
}

/// A generated ECG and its ground truth.
#[derive(Debug, Clone)]
pub struct GeneratedEcg {
    pub hz: u32,
    /// Millivolts, `round(total_seconds · hz)` samples.
    pub samples: Vec<f32>,
    /// The same without wander, EMG, hum, artefacts, lead-off or flat line:
    /// the cardiac waveform (beats, AF f-waves, VF). The truth was measured on
    /// its beats alone; f-waves (≤ 0.1 mV) may move the largest |deflection|
    /// of `clean` by a sample or two from a beat's time.
    pub clean: Vec<f32>,
    pub beats: Vec<TrueBeat>,
    /// Labelled spans (from_s, to_s, label): one per segment at its wall-clock
    /// time ("sinus", "af", "vt", "vf", "asystole", "lead_off", "flat"), except
    /// "pause", which spans the actual beat-free RR interval (last beat before
    /// → first beat after); plus one "artefact" span per burst.
    pub spans: Vec<(f64, f64, &'static str)>,
}

impl GeneratedEcg {
    /// The QRS duration (ms) of the beat at `t` (seconds) on the clean
    /// signal: from its peak outwards to the first run of ≥ 8 ms in which
    /// |value| stays below 5 % of the peak's. This is how the truth's widths
    /// are defined; detectors are scored against it.
    pub fn qrs_ms(&self, t: f64) -> f64 {
        let x = &self.clean;
        let p = ((t * self.hz as f64).round() as usize).min(x.len().saturating_sub(1));
        let pk = x[p].abs();
        let run = ((0.008 * self.hz as f64).round() as usize).max(2);
        let quiet = |i: usize| x[i].abs() < 0.05 * pk;
        let mut lo = p;
        while lo >= run && !(0..run).all(|k| quiet(lo - k)) {
            lo -= 1;
        }
        let mut hi = p;
        while hi + run < x.len() && !(0..run).all(|k| quiet(hi + k)) {
            hi += 1;
        }
        (hi - lo) as f64 * 1000.0 / self.hz as f64
    }

    /// Beats with `from_s <= t < to_s`.
    pub fn beats_between(&self, from_s: f64, to_s: f64) -> usize {
        self.beats
            .iter()
            .filter(|b| b.t >= from_s && b.t < to_s)
            .count()
    }

    /// Mean of 60/RR over consecutive beats both within `[from_s, to_s)`;
    /// 0.0 when there are fewer than two.
    pub fn true_bpm(&self, from_s: f64, to_s: f64) -> f64 {
        let ts: Vec<f64> = self
            .beats
            .iter()
            .map(|b| b.t)
            .filter(|&t| t >= from_s && t < to_s)
            .collect();
        if ts.len() < 2 {
            return 0.0;
        }
        ts.windows(2).map(|w| 60.0 / (w[1] - w[0])).sum::<f64>() / (ts.len() - 1) as f64
    }

    /// The truth beats with `from_s <= t < to_s`.
    pub fn beats_in(&self, from_s: f64, to_s: f64) -> Vec<TrueBeat> {
        self.beats
            .iter()
            .copied()
            .filter(|b| b.t >= from_s && b.t < to_s)
            .collect()
    }

    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / self.hz as f64
    }
}

/// Generates the scenario's samples and truth. Deterministic in the scenario.
pub fn generate(s: &EcgScenario) -> GeneratedEcg {
    assert!(s.hz > 0, "sampling rate must be positive");
    let hz = s.hz as f64;
    let n = (s.total_seconds() * hz).round().max(0.0) as usize;
    let mut misc = stream(s.seed, 6);
    let breath = Breath {
        hz: 0.2 + 0.1 * misc.f64(),
        phase: 2.0 * PI * misc.f64(),
    };
    let sched = schedule(s, breath);

    // Clean cardiac waveform: beats (only those whose whole QRS window lies
    // inside the record, so no truth beat is a fragment) plus f-waves and VF.
    let mut clean = vec![0.0f64; n];
    // Nor may a QRS be cut by a lead-off or flat line (those overwrite the
    // output): a beat whose QRS window touches one is left out entirely.
    let last_t = (n as f64 - 1.0) / hz;
    let technical: Vec<(f64, f64)> = sched
        .spans
        .iter()
        .filter(|sp| sp.2 == "lead_off" || sp.2 == "flat")
        .map(|sp| (sp.0, sp.1))
        .collect();
    let mut kept = Vec::with_capacity(sched.beats.len());
    for b in &sched.beats {
        let h = qrs_half_window(b.shape);
        let cut = technical
            .iter()
            .any(|&(lo, hi)| b.t0 + h >= lo && b.t0 - h < hi);
        if b.shape != Shape::POnly && (b.t0 - h < 0.0 || b.t0 + h > last_t || cut) {
            continue;
        }
        for w in waves(b, s) {
            add_gaussian(&mut clean, hz, b.t0 + w.mu, w.sigma, w.a);
        }
        if b.shape != Shape::POnly {
            kept.push(*b);
        }
    }
    // Truth: the sample of largest |deflection| within each QRS window, on
    // the beats' waveform alone (this beat's and its neighbours' P-QRS-T):
    // f-waves and VF are not part of any QRS, and with a 0.17 mV R a 0.1 mV
    // f-wave could otherwise pull the "peak" onto the S wave.
    let beats: Vec<TrueBeat> = kept
        .iter()
        .map(|b| {
            let h = qrs_half_window(b.shape);
            let lo = ((b.t0 - h) * hz).ceil() as usize;
            let hi = (((b.t0 + h) * hz).floor() as usize).min(n - 1);
            let mut best = lo;
            for i in lo..=hi {
                if clean[i].abs() > clean[best].abs() {
                    best = i;
                }
            }
            TrueBeat {
                t: best as f64 / hz,
                kind: match b.shape {
                    Shape::Pvc => TrueBeatKind::Pvc,
                    Shape::Vt => TrueBeatKind::Ventricular,
                    _ => TrueBeatKind::Normal,
                },
            }
        })
        .collect();

    // Then the segment-bound activity, which completes the clean waveform.
    let mut ep_rng = stream(s.seed, 2);
    for &ep in &sched.episodes {
        render_episode(&mut clean, hz, ep, &mut ep_rng);
    }

    // Noise and technical conditions.
    let mut out = emg(n, hz, s.emg_mv, &mut stream(s.seed, 4));
    let wander_resp = 0.6 * s.wander_mv;
    let mut drift = Drift::new(&mut misc, 0.01, 0.08, hz, 0.0);
    let mut resp = Osc::new(breath.hz, breath.phase, hz, 0.0);
    let hum_phase = 2.0 * PI * misc.f64();
    let mut art_rng = stream(s.seed, 5);
    for &a in &s.artefacts {
        render_artefact(&mut out, hz, a, &mut art_rng);
    }
    let mut hum = Osc::new(s.hum_hz, hum_phase, hz, 0.0);
    for (o, c) in out.iter_mut().zip(&clean) {
        *o += c + s.hum_mv * hum.next();
        if s.wander_mv != 0.0 {
            *o += wander_resp * resp.next() + 0.5 * s.wander_mv * drift.next();
        }
    }
    let mut start = 0.0;
    for seg in &s.segments {
        let end = start + seg.seconds();
        let lo = ((start * hz).round() as usize).min(n);
        let hi = ((end * hz).round() as usize).min(n);
        match seg {
            Segment::LeadOff { .. } => {
                let level = (2.0 + 3.0 * misc.f64()) * if misc.bool() { 1.0 } else { -1.0 };
                for (i, o) in out.iter_mut().enumerate().take(hi).skip(lo) {
                    let t = i as f64 / hz;
                    *o = level + s.hum_mv * (2.0 * PI * s.hum_hz * t + hum_phase).sin();
                }
            }
            Segment::Flat { .. } => out[lo..hi].iter_mut().for_each(|x| *x = 0.0),
            _ => {}
        }
        start = end;
    }

    // A pause span runs between two beats: give it their measured times.
    let measured = |t0: f64| {
        kept.iter()
            .position(|b| b.t0 == t0)
            .map_or(t0, |k| beats[k].t)
    };
    let mut spans: Vec<(f64, f64, &'static str)> = sched
        .spans
        .iter()
        .map(|&(a, b, l)| match l {
            "pause" => (measured(a), measured(b), l),
            _ => (a, b, l),
        })
        .collect();
    // Artefact spans are clipped to the record (and dropped if outside it).
    let end = n as f64 / hz;
    spans.extend(
        s.artefacts
            .iter()
            .map(|&(a, b, _)| (a.max(0.0), b.min(end), "artefact"))
            .filter(|sp| sp.0 < sp.1),
    );
    GeneratedEcg {
        hz: s.hz,
        samples: out.iter().map(|&x| x as f32).collect(),
        clean: clean.iter().map(|&x| x as f32).collect(),
        beats,
        spans,
    }
}

#[cfg(test)]
mod tests;
