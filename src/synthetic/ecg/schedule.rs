//! When each beat falls and what it looks like: the beat schedule of a
//! scenario's segments (heart-rate variability, respiratory sinus arrhythmia,
//! PVCs with their compensatory pause, AF, VT) and each beat's P-QRS-T waves.

use std::f64::consts::PI;

use super::*;

// ---------------------------------------------------------------------------
// Beat schedule and morphology

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// Sinus beat: P, Q, R, S, T.
    Sinus,
    /// Narrow QRS without P (AF-conducted).
    NoP,
    Pvc,
    Vt,
    /// A P wave alone (not a beat): ventricular standstill.
    POnly,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Scheduled {
    /// Nominal R time (the truth is measured near it).
    pub(super) t0: f64,
    pub(super) shape: Shape,
    /// RR that sets P and T timing (√RR scaling), clamped to 0.25–1.6 s.
    pub(super) rr: f64,
    /// Beat-to-beat amplitude variation.
    pub(super) gain: f64,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Wave {
    /// Centre relative to t0, s.
    pub(super) mu: f64,
    pub(super) sigma: f64,
    /// mV.
    pub(super) a: f64,
}

/// Half-width of the window (around t0) in which a QRS's peak is searched:
/// it covers the QRS but not the beat's own P or T wave.
pub(super) fn qrs_half_window(shape: Shape) -> f64 {
    match shape {
        Shape::Sinus | Shape::NoP => 0.05,
        Shape::Pvc | Shape::Vt => 0.09,
        Shape::POnly => 0.0,
    }
}

/// The beat's Gaussian waves. Normal beats use ECGSYN's relative amplitudes
/// and timings (P small and positive, Q and S negative, R dominant), with Q/R/S
/// widths chosen so the QRS lasts ≈90 ms; PVC and VT beats are wide (≈150–160
/// ms), of another axis (the PVC mostly negative, the VT beat positive) and
/// with a T wave of the opposite polarity (secondary repolarisation change).
pub(super) fn waves(b: &Scheduled, s: &EcgScenario) -> Vec<Wave> {
    let r = s.r_mv * b.gain;
    let sr = b.rr.sqrt();
    let w = |mu: f64, sigma: f64, a: f64| Wave { mu, sigma, a };
    // P ends before the Q begins even at 220 bpm; PR ≈ 160 ms at 60 bpm.
    let p = w(-(0.045 + 0.12 * sr), 0.022, 0.12 * r);
    // Bazett: QT ≈ 0.41·√RR from QRS onset (−45 ms) to T end (µ + 2.5σ).
    let t_sigma = 0.05 * sr;
    let t_mu = 0.41 * sr - 0.045 - 2.5 * t_sigma;
    match b.shape {
        Shape::Sinus | Shape::NoP => {
            let mut v = vec![
                w(-0.030, 0.009, -0.12 * r),
                w(0.0, 0.0095, r),
                w(0.030, 0.010, -0.28 * r),
                w(t_mu, t_sigma, s.t_ratio * r),
            ];
            if b.shape == Shape::Sinus {
                v.push(p);
            }
            v
        }
        Shape::POnly => vec![p],
        Shape::Pvc => vec![
            w(0.0, 0.034, -1.5 * r),
            w(0.05 + 0.30 * sr, 0.07 * sr, 0.45 * r),
        ],
        Shape::Vt => vec![
            w(0.0, 0.029, 1.3 * r),
            w(0.058, 0.014, -0.3 * r),
            w(0.05 + 0.2 * sr, 0.05 * sr, -0.4 * r),
        ],
    }
}

/// Adds `a·exp(−½((t−mu)/σ)²)` over mu ± 5σ (beyond, it is < 4·10⁻⁶·a).
pub(super) fn add_gaussian(buf: &mut [f64], hz: f64, mu: f64, sigma: f64, a: f64) {
    let n = buf.len() as i64;
    let lo = (((mu - 5.0 * sigma) * hz).ceil() as i64).max(0);
    let hi = (((mu + 5.0 * sigma) * hz).floor() as i64).min(n - 1);
    let k = -0.5 / (sigma * sigma);
    for i in lo..=hi {
        let d = i as f64 / hz - mu;
        buf[i as usize] += a * (k * d * d).exp();
    }
}

pub(super) fn normal(rng: &mut fastrand::Rng) -> f64 {
    let u1 = rng.f64().max(f64::MIN_POSITIVE);
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
}

/// An independent generator per purpose (SplitMix64 of seed and stream).
pub(super) fn stream(seed: u64, k: u64) -> fastrand::Rng {
    let mut z = seed ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    fastrand::Rng::with_seed(z ^ (z >> 31))
}

/// Random RR jitter whose running sum (the drift of the beats from a regular
/// grid) is pulled back by a fraction `pull` per beat and kept within ±0.45 RR,
/// so that any window of a segment holds its rate's number of beats to within
/// one, while successive RRs stay unpredictable. The pull makes successive RRs
/// slightly anti-correlated, so it is weak (0.1) for sinus and VT, and 0.4 only
/// for AF, whose large jitter needs it.
pub(super) struct Jitter {
    pub(super) drift: f64,
    pub(super) pull: f64,
}

impl Jitter {
    /// The next RR: `nominal` plus N(0, (rr·sd)²) clipped to [lo, hi] SD, minus
    /// the pull, and at least `floor` seconds. A draw that would take the
    /// drift beyond ±0.45·rr is redrawn (up to 16 times, then the draw with the
    /// smallest drift is kept). The drift tracks what was actually applied, so
    /// the floor does not bias the mean rate either.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn next(
        &mut self,
        rng: &mut fastrand::Rng,
        nominal: f64,
        rr: f64,
        sd: f64,
        lo: f64,
        hi: f64,
        floor: f64,
    ) -> f64 {
        let bound = 0.45 * rr;
        let mut best = f64::NAN;
        for _ in 0..16 {
            let z = normal(rng).clamp(lo, hi);
            let out = (nominal + rr * sd * z - self.pull * self.drift).max(floor);
            let drift = self.drift + out - nominal;
            if best.is_nan() || drift.abs() < (self.drift + best - nominal).abs() {
                best = out;
            }
            if drift.abs() <= bound {
                break;
            }
        }
        self.drift += best - nominal;
        best
    }
}

/// Breathing: one rate for sinus arrhythmia and baseline wander.
#[derive(Clone, Copy)]
pub(super) struct Breath {
    pub(super) hz: f64,
    pub(super) phase: f64,
}

impl Breath {
    pub(super) fn at(&self, t: f64) -> f64 {
        (2.0 * PI * self.hz * t + self.phase).sin()
    }
}

/// Continuous, segment-bound activity rendered outside the beats.
#[derive(Debug, Clone, Copy)]
pub(super) enum Episode {
    FWaves(f64, f64),
    Vf(f64, f64),
}

pub(super) struct Schedule {
    pub(super) beats: Vec<Scheduled>,
    pub(super) spans: Vec<(f64, f64, &'static str)>,
    pub(super) episodes: Vec<Episode>,
}

pub(super) fn schedule(s: &EcgScenario, breath: Breath) -> Schedule {
    let mut rng = stream(s.seed, 1);
    let mut beats: Vec<Scheduled> = Vec::new();
    let mut spans = Vec::new();
    let mut episodes = Vec::new();
    let mut start = 0.0;
    // Whether the previous segment ended in a beating rhythm (the next one
    // then continues from its last beat rather than starting afresh).
    let mut beating = false;
    let mut sinus_rr = 60.0 / 70.0;
    let mut sinus_count = 0usize;
    let gain = |rng: &mut fastrand::Rng| 1.0 + 0.04 * normal(rng).clamp(-2.5, 2.5);
    let last_beat = |beats: &[Scheduled]| {
        beats
            .iter()
            .rev()
            .find(|b| b.shape != Shape::POnly)
            .map(|b| b.t0)
    };

    for seg in &s.segments {
        let end = start + seg.seconds();
        let first = |rr: f64, beats: &[Scheduled]| match (beating, last_beat(beats)) {
            (true, Some(t)) => (t + rr).max(start),
            // After a beat-free stretch (or at the start) the first beat comes
            // 0.25 s in, so that its P wave lies inside the segment.
            _ => start + 0.25,
        };
        match *seg {
            Segment::Sinus { bpm, .. } => {
                let rr0 = 60.0 / bpm;
                sinus_rr = rr0;
                let mut jit = Jitter {
                    drift: 0.0,
                    pull: 0.1,
                };
                let mut t = first(rr0, &beats);
                let seg_first = beats.len();
                while t < end {
                    let nominal = rr0 * (1.0 + s.sinus_arrhythmia * breath.at(t));
                    let rr_next = jit.next(&mut rng, nominal, rr0, s.hrv, -3.0, 3.0, 0.25);
                    sinus_count += 1;
                    let prev = beats[seg_first..]
                        .iter()
                        .rev()
                        .find(|b| b.shape != Shape::POnly)
                        .copied();
                    let pvc_due = s.pvc_every.is_some_and(|n| sinus_count % n.max(2) == 0);
                    match prev {
                        Some(p) if pvc_due && p.shape == Shape::Sinus => {
                            // The PVC pre-empts the sinus beat due at t; that
                            // one is blocked, and the next conducted sinus
                            // beat comes on schedule at t + RR: a full
                            // compensatory pause.
                            let coupling = 0.65 + 0.03 * normal(&mut rng).clamp(-1.5, 1.5);
                            beats.push(Scheduled {
                                t0: p.t0 + coupling * (t - p.t0),
                                shape: Shape::Pvc,
                                rr: (t - p.t0).clamp(0.25, 1.6),
                                gain: gain(&mut rng),
                            });
                        }
                        _ => {
                            let rr_prev = last_beat(&beats).map_or(rr0, |l| t - l);
                            beats.push(Scheduled {
                                t0: t,
                                shape: Shape::Sinus,
                                rr: rr_prev.clamp(0.25, 1.6),
                                gain: gain(&mut rng),
                            });
                        }
                    }
                    t += rr_next;
                }
                beating = true;
                spans.push((start, end, "sinus"));
            }
            Segment::Af { bpm, .. } => {
                let mean = 60.0 / bpm;
                let mut jit = Jitter {
                    drift: 0.0,
                    pull: 0.4,
                };
                let mut t = first(mean, &beats);
                while t < end {
                    let rr_prev = last_beat(&beats).map_or(mean, |l| t - l);
                    beats.push(Scheduled {
                        t0: t,
                        shape: Shape::NoP,
                        rr: rr_prev.clamp(0.25, 1.6),
                        gain: gain(&mut rng),
                    });
                    // Clipped at −1.8 SD (RR ≥ 0.55·mean) for refractoriness and
                    // at +2.5 SD; the drift correction restores the mean.
                    t += jit.next(&mut rng, mean, mean, 0.25, -1.8, 2.5, 0.25);
                }
                beating = true;
                episodes.push(Episode::FWaves(start, end));
                spans.push((start, end, "af"));
            }
            Segment::Vt { bpm, .. } => {
                let rr0 = 60.0 / bpm;
                let mut jit = Jitter {
                    drift: 0.0,
                    pull: 0.1,
                };
                let mut t = first(rr0, &beats);
                while t < end {
                    beats.push(Scheduled {
                        t0: t,
                        shape: Shape::Vt,
                        rr: rr0.clamp(0.25, 1.6),
                        gain: 1.0 + 0.01 * normal(&mut rng).clamp(-2.5, 2.5),
                    });
                    t += jit.next(&mut rng, rr0, rr0, 0.01, -3.0, 3.0, 0.2);
                }
                beating = true;
                spans.push((start, end, "vt"));
            }
            Segment::Pause { seconds } => match (beating, last_beat(&beats)) {
                (true, Some(last)) => {
                    let resume = (last + seconds).max(start);
                    beats.push(Scheduled {
                        t0: resume,
                        shape: Shape::Sinus,
                        rr: sinus_rr.clamp(0.25, 1.6),
                        gain: gain(&mut rng),
                    });
                    sinus_count += 1;
                    spans.push((last, resume, "pause"));
                }
                _ => {
                    beating = false;
                    spans.push((start, end, "pause"));
                }
            },
            Segment::Vf { .. } => {
                beating = false;
                episodes.push(Episode::Vf(start, end));
                spans.push((start, end, "vf"));
            }
            Segment::Asystole { .. } => {
                beating = false;
                if s.asystole_p_waves {
                    let mut t = start + 0.25;
                    while t < end - 0.1 {
                        beats.push(Scheduled {
                            t0: t,
                            shape: Shape::POnly,
                            rr: sinus_rr.clamp(0.25, 1.6),
                            gain: gain(&mut rng),
                        });
                        t += sinus_rr;
                    }
                }
                spans.push((start, end, "asystole"));
            }
            Segment::LeadOff { .. } => {
                beating = false;
                spans.push((start, end, "lead_off"));
            }
            Segment::Flat { .. } => {
                beating = false;
                spans.push((start, end, "flat"));
            }
        }
        start = end;
    }
    Schedule {
        beats,
        spans,
        episodes,
    }
}
