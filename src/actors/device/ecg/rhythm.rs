//! Streaming rhythm analysis over detected beats and the raw ECG, one
//! [`RhythmState`] per completed second of signal, clock-free (time is sample
//! index / hz). It reports heart rate, asystole, pause, ventricular
//! fibrillation, ventricular tachycardia, atrial fibrillation and PVCs per
//! minute, and suspends every rule while the signal is not Good according to
//! the sibling [`QualityMonitor`] (a technical condition must not masquerade
//! as a physiological one: IEC 60601-1-8; CLINICAL-NOTES).
//!
//! Methods (CLINICAL-NOTES lists the references):
//! - **VF**: two of the time-domain detectors compared by Amann, Tratnig &
//!   Unterkofler (2005), on the 0.7–35 Hz signal of the last 4 s: the
//!   threshold-crossing sample count (TCSC, Arafat, Chowdhury & Hasan 2011:
//!   cosine-tapered, normalised window; share of samples with |x| > 0.2) and
//!   VF-filter leakage (Kuo & Dillman 1978: the signal's mean half period from
//!   Σ|x|/Σ|Δx|, and how much of it survives a comb that cancels a sinusoid of
//!   that period). Both must call VF, on two consecutive 1 s steps, and the
//!   window must be at least [`VF_MIN_PP_MV`] peak-to-peak (normalised noise
//!   looks like VF to both). The thresholds ([`TCSC_VF_SHARE`],
//!   [`LEAKAGE_VF_MAX`]) are ours, set on the generator's VF, VT, tall-T and
//!   200 bpm sinus; the papers used other window lengths and preprocessing.
//!   A window whose detected beats are *organised* (at least
//!   [`ORGANISED_MIN_BEATS`], RR coefficient of variation below
//!   [`ORGANISED_MAX_RR_CV`]) is not VF: that is what separates VT and fast
//!   sinus rhythm, whose near-sinusoidal shape fools the detectors, from VF;
//!   VT is flagged from its wide beats instead (polymorphic, irregular VT may
//!   read as VF).
//! - **VT**: a run of at least `vt_min_beats` consecutive ventricular (Pvc)
//!   beats at `vt_min_bpm` or faster (the monitor convention quoted in
//!   CLINICAL-NOTES).
//! - **AF**: RR irregularity without a repeating pattern, after removing
//!   ectopic beats: only RR intervals between two Normal beats are used, which
//!   drops both the coupling interval of a PVC and its compensatory pause.
//!   Over the last `af_window_beats` such intervals it needs both
//!   (1) irregularity: a normalised successive RR difference (the normalised
//!   RMSSD of Dash et al. 2009, Ann Biomed Eng 37:1701, taken robustly as
//!   median |ΔRR| / median RR so that one step in rate does not count), and
//!   (2) unpredictability: the residual of the best linear (AR(2)) one-step
//!   prediction of RR relative to the RR spread. (2) plays the part that
//!   sample entropy plays in Richman & Moorman (2000) and Lake & Moorman
//!   (2011) — AF's RRs are unpredictable while sinus arrhythmia's follow the
//!   breathing cycle — but unlike sample entropy it stays stable on a
//!   32-beat window (sample entropy with r = 0.2·SD found no template matches
//!   in many 32-beat windows of both AF and sinus arrhythmia and could not
//!   separate them). The AR(2) test is our choice, not a published detector;
//!   its threshold was set on synthetic ECG (see the tests), not on the MIT-BIH
//!   AF database. AF is not called when more than [`AF_MAX_ECTOPIC_SHARE`] of
//!   the beats in its window are not Normal (the series would be mostly gaps).
//! - **Asystole**: no beat for `asystole_ms` with the whole gap covered by
//!   Good signal, and the signal not VF-like (VF has no QRS either).
//! - **Pause**: a gap of at least `pause_ms` that is ongoing (and not yet
//!   asystole) or ended within the last [`PAUSE_HOLD_S`] seconds.
//! - **Heart rate**: the mean rate of the beats of the last `hr_window_ms`
//!   (at least 3 beats), None in asystole or VF.
//!
//! Quality gating: a state's `quality` is the worst verdict of the last 4 s
//! (the VF window). Unless it is Good, every flag is false and `hr_bpm` is
//! None; beats seen before the last non-Good window do not count for rate,
//! VT or asystole, and an RR interval spanning one does not count for AF.
//! Because states come once per second, asystole is reported 4–5 s after the
//! last beat with the default `asystole_ms`.
//!
//! Beats are taken as the caller delivers them; a beat is used from the first
//! second boundary after its sample at which it has been pushed. So the output
//! is identical for any chunking of the samples provided each beat is pushed
//! with (or before) the chunk containing its sample.

use std::collections::VecDeque;

use super::quality::{Quality, QualityMonitor, CONTEXT_S};

pub use super::detect::BeatKind;

/// A detected beat at a sample index of the stream.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Beat {
    pub sample: u64,
    pub kind: BeatKind,
}

pub use crate::domain::rhythm::RhythmSettings;

/// The analysis at one second boundary.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RhythmState {
    /// Sample index at the end of the second this state is about.
    pub at_sample: u64,
    /// Worst quality over the last 4 s (the VF window).
    pub quality: Quality,
    /// None when quality is not Good, in asystole, in VF, or with fewer than 3
    /// beats in the last `hr_window_ms`.
    pub hr_bpm: Option<f64>,
    pub asystole: bool,
    pub pause: bool,
    pub vf: bool,
    pub vt: bool,
    pub af: bool,
    /// PVCs in the last 60 s (counting only beats seen with Good signal).
    pub pvc_per_min: f64,
}

/// A completed gap this long keeps `pause` set for this many seconds.
pub const PAUSE_HOLD_S: u64 = 5;
/// VF window (seconds of signal the VF detectors look at).
pub const VF_WINDOW_S: usize = CONTEXT_S;
/// Consecutive VF-positive steps needed.
pub const VF_CONSECUTIVE: u32 = 2;
/// TCSC: amplitude threshold as a share of the window's max |x| (Arafat 2011).
pub const TCSC_LEVEL: f32 = 0.2;
/// TCSC: share of samples above it that calls VF.
pub const TCSC_VF_SHARE: f64 = 0.40;
/// VF-filter leakage below this calls VF.
pub const LEAKAGE_VF_MAX: f64 = 0.55;
/// Smallest VF peak-to-peak (mV): normalised noise looks like VF to both
/// detectors, so an oscillation smaller than this (fine VF below 0.1 mV
/// amplitude) is left to the asystole rule.
pub const VF_MIN_PP_MV: f64 = 0.2;
/// "Organised": at least this many beats in the VF window …
pub const ORGANISED_MIN_BEATS: usize = 4;
/// … whose RR coefficient of variation is below this.
pub const ORGANISED_MAX_RR_CV: f64 = 0.15;
/// AF: median |ΔRR| / median RR at least this.
pub const AF_MIN_DRR: f64 = 0.09;
/// AF: AR(2) unpredictability at least this.
pub const AF_MIN_UNPREDICTABILITY: f64 = 0.66;
/// AF is not called when more than this share of the beats in its window are
/// not Normal (the clean RR series would be mostly gaps).
pub const AF_MAX_ECTOPIC_SHARE: f64 = 0.25;
/// Fewest clean RR intervals before AF is judged.
pub const AF_MIN_RR: usize = 16;
/// Beats kept (seconds) for PVC counting.
const HISTORY_S: u64 = 60;

/// A beat as kept in the history.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Kept {
    sample: u64,
    kind: BeatKind,
    good: bool,
    /// Stretch of uninterrupted Good signal the beat was seen in; an RR
    /// interval counts only between two beats of the same stretch.
    epoch: u32,
}

/// VF detector outputs for one window (exposed for tests and tuning).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VfFeatures {
    pub tcsc: f64,
    pub leakage: f64,
    /// Peak-to-peak of the window (mV).
    pub pp_mv: f64,
}

impl VfFeatures {
    pub fn vf_like(&self) -> bool {
        self.pp_mv >= VF_MIN_PP_MV && self.tcsc >= TCSC_VF_SHARE && self.leakage <= LEAKAGE_VF_MAX
    }
}

/// Streaming rhythm analyser (see the module doc).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RhythmAnalyzer {
    hz: u32,
    settings: RhythmSettings,
    quality: QualityMonitor,
    /// Beats pushed but beyond the last evaluated boundary.
    pending: VecDeque<Beat>,
    /// Beats of the last `HISTORY_S` seconds (and at least the AF window).
    beats: VecDeque<Kept>,
    /// Quality verdicts of the last `VF_WINDOW_S` seconds.
    recent_quality: VecDeque<Quality>,
    /// Sample index from which the signal has been Good without a break.
    good_since: u64,
    vf_run: u32,
    /// Counts the breaks in Good signal (see `Kept::epoch`).
    epoch: u32,
    /// End (sample) of the last completed pause, if any.
    last_pause_end: Option<u64>,
    last_vf: VfFeatures,
    last_af: Option<AfFeatures>,
    /// The AF verdict (before the other rules) and the beat-history key it
    /// was computed for.
    af_cached: bool,
    af_key: (u64, u64, u64),
    #[serde(skip)]
    scratch: Vec<f32>,
    /// TCSC taper weights (derived from hz; rebuilt after deserialising).
    #[serde(skip)]
    taper: Vec<f32>,
    #[serde(skip)]
    verdicts: Vec<(u64, Quality)>,
}

impl RhythmAnalyzer {
    pub fn new(hz: u32, settings: RhythmSettings) -> Self {
        let hz = hz.max(1);
        Self {
            hz,
            settings,
            quality: QualityMonitor::new(hz),
            pending: VecDeque::new(),
            beats: VecDeque::new(),
            recent_quality: VecDeque::with_capacity(VF_WINDOW_S),
            good_since: 0,
            vf_run: 0,
            epoch: 0,
            last_pause_end: None,
            last_vf: VfFeatures::default(),
            last_af: None,
            af_cached: false,
            af_key: (0, 0, u64::MAX),
            scratch: Vec::new(),
            taper: Vec::new(),
            verdicts: Vec::new(),
        }
    }

    pub fn settings(&self) -> RhythmSettings {
        self.settings
    }

    /// VF features of the last evaluated window.
    pub fn last_vf_features(&self) -> VfFeatures {
        self.last_vf
    }

    /// AF features of the last evaluation that judged AF.
    pub fn last_af_features(&self) -> Option<AfFeatures> {
        self.last_af
    }

    /// The quality monitor inside (its last window's features).
    pub fn quality_monitor(&self) -> &QualityMonitor {
        &self.quality
    }

    /// Feed raw samples (for VF and quality) and the beats the detector found
    /// in them (sample indices in the same count); returns one state per
    /// completed second of signal.
    pub fn push(&mut self, samples: &[f32], beats: &[Beat], out: &mut Vec<RhythmState>) {
        for b in beats {
            let last = self
                .pending
                .back()
                .map(|p| p.sample)
                .or_else(|| self.beats.back().map(|k| k.sample));
            if last.is_none_or(|l| b.sample > l) {
                self.pending.push_back(*b);
            }
        }
        let per = self.hz as usize;
        let mut rest = samples;
        while !rest.is_empty() {
            let into = (self.quality.samples_seen() % per as u64) as usize;
            let take = (per - into).min(rest.len());
            let (now, later) = rest.split_at(take);
            rest = later;
            let mut verdicts = std::mem::take(&mut self.verdicts);
            verdicts.clear();
            self.quality.push(now, &mut verdicts);
            for &(end, q) in &verdicts {
                let st = self.evaluate(end, q);
                out.push(st);
            }
            self.verdicts = verdicts;
        }
    }

    fn evaluate(&mut self, end: u64, q: Quality) -> RhythmState {
        let hz = u64::from(self.hz);
        let ms = |m: u64| m * hz / 1000;

        // Quality bookkeeping.
        if self.recent_quality.len() == VF_WINDOW_S {
            self.recent_quality.pop_front();
        }
        self.recent_quality.push_back(q);
        if q != Quality::Good {
            self.good_since = end;
            self.epoch = self.epoch.wrapping_add(1);
        }
        let quality = self
            .recent_quality
            .iter()
            .copied()
            .max_by_key(|q| q.severity())
            .unwrap_or(Quality::Good);
        let good = quality == Quality::Good;

        // Beats up to this boundary. A long RR inside one Good stretch is a
        // (completed) pause.
        let pause_len = ms(self.settings.pause_ms);
        while let Some(b) = self.pending.front().copied() {
            if b.sample >= end {
                break;
            }
            let good_beat = q == Quality::Good;
            if let Some(prev) = self.beats.back() {
                if good_beat
                    && prev.good
                    && prev.epoch == self.epoch
                    && b.sample - prev.sample >= pause_len
                {
                    self.last_pause_end = Some(b.sample);
                }
            }
            self.beats.push_back(Kept {
                sample: b.sample,
                kind: b.kind,
                good: good_beat,
                epoch: self.epoch,
            });
            self.pending.pop_front();
        }
        let keep_from = end.saturating_sub(HISTORY_S * hz);
        while self.beats.len() > self.settings.af_window_beats + 2
            && self.beats.front().is_some_and(|b| b.sample < keep_from)
        {
            self.beats.pop_front();
        }
        let beats = self.beats.make_contiguous();
        let pvc_per_min = beats
            .iter()
            .filter(|b| b.sample >= keep_from && b.good && b.kind == BeatKind::Pvc)
            .count() as f64;

        let mut st = RhythmState {
            at_sample: end,
            quality,
            hr_bpm: None,
            asystole: false,
            pause: false,
            vf: false,
            vt: false,
            af: false,
            pvc_per_min,
        };
        if !good {
            self.vf_run = 0;
            return st;
        }

        // Beats seen since the signal became Good (only those count).
        let since = self.good_since;
        let recent = &beats[beats.partition_point(|b| b.sample < since)..];
        let last_beat = recent.last().map(|b| b.sample);
        let gap = end - last_beat.unwrap_or(since).max(since);

        // VT: the run of Pvc beats ending at the last beat.
        let run = recent
            .iter()
            .rev()
            .take_while(|b| b.kind == BeatKind::Pvc)
            .count();
        let mut vt = false;
        if run >= self.settings.vt_min_beats.max(2) && gap <= 2 * hz {
            let first = recent[recent.len() - run].sample;
            let span = (last_beat.unwrap_or(first) - first) as f64 / hz as f64;
            let bpm = 60.0 * (run - 1) as f64 / span.max(1e-9);
            vt = bpm >= self.settings.vt_min_bpm;
        }

        // Heart rate: mean rate of the beats in the rate window.
        let from = end.saturating_sub(ms(self.settings.hr_window_ms));
        let hb = &recent[recent.partition_point(|b| b.sample < from)..];
        let hr = (hb.len() >= 3).then(|| {
            let span = (hb[hb.len() - 1].sample - hb[0].sample) as f64 / hz as f64;
            60.0 * (hb.len() - 1) as f64 / span
        });

        // Beats in the VF window; an organised rhythm there rules VF out, so
        // the detectors are only run when it is not.
        let win = VF_WINDOW_S as u64 * hz;
        let in_window = &recent[recent.partition_point(|b| b.sample + win < end)..];
        let organised = is_organised(in_window);

        // AF inputs change only with the beats (or a break in the signal).
        let af_key = (
            beats.len() as u64,
            beats.last().map_or(0, |b| b.sample),
            u64::from(self.epoch),
        );
        if af_key != self.af_key {
            self.af_key = af_key;
            let want = self.settings.af_window_beats.max(AF_MIN_RR);
            let (f, trusted) = af_window(beats, want, hz);
            self.last_af = f;
            self.af_cached = trusted && f.is_some_and(|f| f.af());
        }

        // VF: both detectors, over a window wholly of Good signal, not
        // organised beats, on consecutive steps.
        let vf_full = if organised {
            VfFeatures::default()
        } else {
            self.vf_features(VF_WINDOW_S * self.hz as usize)
        };
        self.last_vf = vf_full;
        if vf_full.vf_like() && end.saturating_sub(win) >= since && !organised {
            self.vf_run += 1;
        } else {
            self.vf_run = 0;
        }
        st.vf = self.vf_run >= VF_CONSECUTIVE;
        st.vt = vt && !st.vf;

        // Asystole and pause. The last 2 s alone are checked too (only when
        // a gap makes it matter): VF that began within the 4 s window has no
        // QRS either.
        let vf_ish = st.vf
            || vf_full.vf_like()
            || (gap >= ms(self.settings.pause_ms.min(self.settings.asystole_ms))
                && self.vf_features(2 * self.hz as usize).vf_like());
        st.asystole = gap >= ms(self.settings.asystole_ms) && !vf_ish;
        let recent_pause = self
            .last_pause_end
            .is_some_and(|p| p >= since && end - p <= PAUSE_HOLD_S * hz);
        let ongoing_pause = last_beat.is_some() && gap >= pause_len && !vf_ish;
        st.pause = !st.asystole && !st.vf && (ongoing_pause || recent_pause);

        if !st.asystole && !st.vf {
            st.hr_bpm = hr;
        }
        st.af = !st.vf && !st.vt && !st.asystole && self.af_cached;
        st
    }

    /// TCSC and leakage over the last `len` samples of the clean signal.
    fn vf_features(&mut self, len: usize) -> VfFeatures {
        let (a, b) = self.quality.clean_history();
        let total = a.len() + b.len();
        let len = len.min(total);
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        let skip = total - len;
        if skip < a.len() {
            buf.extend_from_slice(&a[skip..]);
            buf.extend_from_slice(b);
        } else {
            buf.extend_from_slice(&b[skip - a.len()..]);
        }
        if self.taper.is_empty() {
            self.taper = taper_ramp(self.hz);
        }
        let f = vf_features_with(&buf, &self.taper);
        self.scratch = buf;
        f
    }
}

/// TCSC (Arafat et al. 2011) and VF-filter leakage (Kuo & Dillman 1978) of one
/// window.
pub fn vf_features_of(x: &[f32], hz: u32) -> VfFeatures {
    vf_features_with(x, &taper_ramp(hz))
}

/// Rising half of TCSC's cosine taper: 0.25 s of weights.
fn taper_ramp(hz: u32) -> Vec<f32> {
    let ramp = ((hz as usize) / 4).max(1);
    (0..ramp)
        .map(|k| 0.5 - 0.5 * (std::f32::consts::PI * k as f32 / ramp as f32).cos())
        .collect()
}

fn vf_features_with(x: &[f32], ramp_w: &[f32]) -> VfFeatures {
    let n = x.len();
    if n < 8 {
        return VfFeatures::default();
    }
    let ramp = ramp_w.len().min(n / 2).max(1);
    let taper = |i: usize| -> f32 {
        let k = i.min(n - 1 - i);
        if k >= ramp {
            1.0
        } else {
            ramp_w[k]
        }
    };
    // One pass: range, Σ|x|, Σ|Δx| (leakage), and the tapered peak (TCSC).
    let (mut lo, mut hi, mut s_abs, mut s_diff) = (x[0], x[0], 0.0f32, 0.0f32);
    let mut peak = 0.0f32;
    for i in 1..n {
        let v = x[i];
        lo = lo.min(v);
        hi = hi.max(v);
        s_abs += v.abs();
        s_diff += (v - x[i - 1]).abs();
    }
    for (i, &v) in x.iter().enumerate().take(ramp) {
        peak = peak.max((v * taper(i)).abs());
    }
    for &v in &x[ramp..n - ramp] {
        peak = peak.max(v.abs());
    }
    for (i, &v) in x.iter().enumerate().skip(n - ramp) {
        peak = peak.max((v * taper(i)).abs());
    }
    let pp_mv = f64::from(hi - lo);
    let leakage = if s_diff > 1e-9 {
        // Half period in samples: π·Σ|x| / Σ|Δx| (a sinusoid's half period).
        let half =
            ((std::f64::consts::PI * f64::from(s_abs) / f64::from(s_diff)) + 0.5).floor() as usize;
        let half = half.clamp(1, n / 2);
        let (mut num, mut den) = (0.0f32, 0.0f32);
        for (a, b) in x[half..].iter().zip(x) {
            num += (a + b).abs();
            den += a.abs() + b.abs();
        }
        if den > 1e-9 {
            f64::from(num / den)
        } else {
            1.0
        }
    } else {
        1.0
    };
    // TCSC: share of tapered samples above 0.2 of the tapered peak.
    let tcsc = if peak > 1e-6 {
        let level = TCSC_LEVEL * peak;
        let mut count = x[ramp..n - ramp].iter().filter(|v| v.abs() > level).count();
        for i in (0..ramp).chain(n - ramp..n) {
            if (x[i] * taper(i)).abs() > level {
                count += 1;
            }
        }
        count as f64 / n as f64
    } else {
        0.0
    };
    VfFeatures {
        tcsc,
        leakage,
        pp_mv,
    }
}

/// Several beats at a regular rate: an organised rhythm, not VF.
fn is_organised(beats: &[Kept]) -> bool {
    if beats.len() < ORGANISED_MIN_BEATS {
        return false;
    }
    let rr = beats.windows(2).map(|w| (w[1].sample - w[0].sample) as f64);
    let k = (beats.len() - 1) as f64;
    let mean = rr.clone().sum::<f64>() / k;
    let var = rr.map(|r| (r - mean) * (r - mean)).sum::<f64>() / k;
    var.sqrt() / mean < ORGANISED_MAX_RR_CV
}

/// AF features over the last `want` RR intervals between two Normal beats of
/// the same Good stretch, and whether the series can be trusted: when more
/// than [`AF_MAX_ECTOPIC_SHARE`] of the beats walked over are not Normal
/// (PVCs, or beats the detector could not classify) it is mostly gaps.
fn af_window(beats: &[Kept], want: usize, hz: u64) -> (Option<AfFeatures>, bool) {
    let mut rr: Vec<f64> = Vec::with_capacity(want);
    let (mut walked, mut ectopic) = (0usize, 0usize);
    for w in beats.windows(2).rev() {
        walked += 1;
        if w[1].kind != BeatKind::Normal {
            ectopic += 1;
        }
        let clean = w[0].kind == BeatKind::Normal
            && w[1].kind == BeatKind::Normal
            && w[0].good
            && w[1].good
            && w[0].epoch == w[1].epoch;
        if clean {
            rr.push((w[1].sample - w[0].sample) as f64 / hz as f64);
            if rr.len() == want {
                break;
            }
        }
    }
    rr.reverse();
    let trusted = (ectopic as f64) <= AF_MAX_ECTOPIC_SHARE * walked as f64;
    (af_features(&rr), trusted)
}

/// AF measures of a clean RR series (seconds), oldest first.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AfFeatures {
    /// Median |ΔRR| / median RR: a robust normalised successive difference.
    pub drr: f64,
    /// RMS residual of the best AR(2) one-step prediction of RR, over the SD
    /// of RR: near 1 when successive RRs are unpredictable (AF), small when
    /// they follow a smooth or repeating pattern (sinus arrhythmia, a rate
    /// step).
    pub unpredictability: f64,
    /// Number of RR intervals used.
    pub n: usize,
}

impl AfFeatures {
    pub fn af(&self) -> bool {
        self.drr >= AF_MIN_DRR && self.unpredictability >= AF_MIN_UNPREDICTABILITY
    }
}

pub fn af_features(rr: &[f64]) -> Option<AfFeatures> {
    if rr.len() < AF_MIN_RR {
        return None;
    }
    let med_rr = median(rr.to_vec());
    let d: Vec<f64> = rr.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
    let drr = median(d) / med_rr;
    Some(AfFeatures {
        drr,
        unpredictability: ar2_unpredictability(rr),
        n: rr.len(),
    })
}

/// Least-squares AR(2) fit of the mean-removed series; returns the RMS
/// one-step residual over the series' SD (1 for white noise, 0 for a
/// noiseless sinusoid or a constant with one step).
pub fn ar2_unpredictability(x: &[f64]) -> f64 {
    let n = x.len();
    if n < 6 {
        return 0.0;
    }
    let mean = x.iter().sum::<f64>() / n as f64;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
    if var <= 1e-12 {
        return 0.0;
    }
    let c: Vec<f64> = x.iter().map(|v| v - mean).collect();
    let (mut s11, mut s12, mut s22, mut r1, mut r2) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for k in 2..n {
        let (y, p1, p2) = (c[k], c[k - 1], c[k - 2]);
        s11 += p1 * p1;
        s12 += p1 * p2;
        s22 += p2 * p2;
        r1 += y * p1;
        r2 += y * p2;
    }
    let det = s11 * s22 - s12 * s12;
    let (a, b) = if det.abs() > 1e-18 {
        ((r1 * s22 - r2 * s12) / det, (r2 * s11 - r1 * s12) / det)
    } else {
        (0.0, 0.0)
    };
    let mut e2 = 0.0;
    for k in 2..n {
        let e = c[k] - a * c[k - 1] - b * c[k - 2];
        e2 += e * e;
    }
    ((e2 / (n - 2) as f64) / var).sqrt()
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

#[cfg(test)]
mod tests;
