//! The generator against its own claims: determinism, rates, truth at the
//! peak, morphology of each rhythm, noise and artefacts.

use super::*;
use support::*;

#[test]
fn the_same_seed_gives_the_same_samples_and_another_seed_does_not() {
    let s = EcgScenario::new(250, 7)
        .sinus(70.0, 10.0)
        .af(110.0, 10.0)
        .noisy();
    let (a, b) = (generate(&s), generate(&s));
    assert_eq!(a.samples, b.samples);
    assert_eq!(a.beats, b.beats);
    let mut other = s.clone();
    other.seed = 8;
    assert_ne!(generate(&other).samples, a.samples);
}

#[test]
fn noise_does_not_move_the_beats() {
    let quiet = EcgScenario::new(250, 3).sinus(75.0, 20.0).af(120.0, 20.0);
    let noisy = quiet.clone().noisy().artefact(5.0, 8.0, 1.0);
    assert_eq!(generate(&quiet).beats, generate(&noisy).beats);
}

#[test]
fn true_bpm_is_the_mean_instantaneous_rate_and_zero_without_beats() {
    let e = generate(&EcgScenario::new(250, 2).sinus(75.0, 30.0).asystole(10.0));
    assert!(
        (e.true_bpm(0.0, 30.0) - 75.0).abs() < 1.0,
        "{}",
        e.true_bpm(0.0, 30.0)
    );
    assert_eq!(e.true_bpm(31.0, 40.0), 0.0);
    assert_eq!(e.beats_in(0.0, 30.0).len(), e.beats_between(0.0, 30.0));
    // AF: the mean of 60/RR exceeds 60/mean RR (Jensen), by ≈ CV².
    let e = generate(&EcgScenario::new(250, 2).af(90.0, 120.0));
    let bpm = e.true_bpm(0.0, 120.0);
    assert!(bpm > 91.0 && bpm < 102.0, "{bpm}");
}

#[test]
fn the_length_is_seconds_times_hz_exactly() {
    for (hz, secs) in [(250u32, 12.5), (360, 7.3), (500, 60.0), (128, 0.75)] {
        let e = generate(&EcgScenario::new(hz, 1).sinus(70.0, secs));
        assert_eq!(e.samples.len(), (secs * hz as f64).round() as usize);
        assert_eq!(e.clean.len(), e.samples.len());
    }
    let s = EcgScenario::new(250, 1)
        .sinus(60.0, 3.0)
        .vf(2.5)
        .lead_off(1.5)
        .flat(1.0)
        .pause(2.0);
    assert_eq!(s.total_seconds(), 10.0);
    assert_eq!(generate(&s).samples.len(), 2500);
}

#[test]
fn sixty_seconds_hold_the_asked_number_of_beats_within_one() {
    for bpm in [30.0, 45.0, 60.0, 75.0, 100.0, 150.0, 200.0] {
        for seed in 1..4 {
            let e = generate(&EcgScenario::new(250, seed).sinus(bpm, 70.0));
            let n = e.beats_between(5.0, 65.0) as f64;
            assert!((n - bpm).abs() <= 1.0, "sinus {bpm} seed {seed}: {n}");
            let e = generate(&EcgScenario::new(250, seed).af(bpm, 70.0));
            let n = e.beats_between(5.0, 65.0) as f64;
            assert!((n - bpm).abs() <= 1.0, "af {bpm} seed {seed}: {n}");
        }
    }
    for bpm in [130.0, 170.0, 220.0] {
        let e = generate(&EcgScenario::new(250, 5).vt(bpm, 70.0));
        let n = e.beats_between(5.0, 65.0) as f64;
        assert!((n - bpm).abs() <= 1.0, "vt {bpm}: {n}");
        assert!(e.beats.iter().all(|b| b.kind == TrueBeatKind::Ventricular));
    }
}

#[test]
fn every_truth_time_is_the_largest_absolute_deflection_of_its_qrs() {
    // Sinus with PVCs and VT, no f-waves: `clean` is the beats' waveform.
    let mut s = EcgScenario::new(360, 11)
        .sinus(72.0, 20.0)
        .vt(180.0, 8.0)
        .vt(220.0, 5.0)
        .sinus(90.0, 10.0)
        .noisy();
    s.pvc_every = Some(5);
    let e = generate(&s);
    let hz = e.hz as f64;
    let mut worst_ms: f64 = 0.0;
    for b in &e.beats {
        let p = (b.t * hz).round() as usize;
        assert!((b.t * hz - p as f64).abs() < 1e-9, "not on a sample");
        // No sample within ±80 ms (narrower than any RR here) is larger.
        let w = (0.08 * hz) as usize;
        for i in p.saturating_sub(w)..(p + w).min(e.clean.len()) {
            assert!(e.clean[i].abs() <= e.clean[p].abs(), "beat at {} s", b.t);
        }
        // And it lies in the QRS: within 30 ms of the nearest scheduled R.
        worst_ms = worst_ms.max(nearest_nominal_ms(&s, b.t));
    }
    assert!(worst_ms <= 30.0, "{worst_ms} ms from nominal");
    assert!(e.beats.iter().any(|b| b.kind == TrueBeatKind::Pvc));
    assert!(e.beats.iter().any(|b| b.kind == TrueBeatKind::Ventricular));
}

#[test]
fn f_waves_do_not_move_the_truth_off_a_low_voltage_r_wave() {
    // R 0.17 mV under f-waves of up to 0.1 mV: the truth stays on the R
    // (within one sample of its nominal time), although the largest
    // |value| of `clean` near some beats is an f-wave on the Q or S.
    let mut s = EcgScenario::new(250, 12).af(110.0, 60.0);
    s.r_mv = 0.17;
    let e = generate(&s);
    let mut moved_ms: f64 = 0.0;
    for b in &e.beats {
        assert!(nearest_nominal_ms(&s, b.t) <= 4.0 + 1e-9, "{}", b.t);
        let p = idx(&e, b.t);
        let w = (0.05 * 250.0) as usize;
        let q = (p - w..p + w)
            .max_by(|&i, &j| e.clean[i].abs().total_cmp(&e.clean[j].abs()))
            .unwrap();
        assert!(e.clean[q].abs() <= e.clean[p].abs() + 0.1);
        moved_ms = moved_ms.max((q as f64 - p as f64).abs() * 4.0);
    }
    // The hazard is real here: measured on `clean`, a "peak" would move.
    assert!(moved_ms >= 12.0, "{moved_ms}");
}

#[test]
fn a_normal_qrs_lasts_80_to_100_ms_and_a_pvc_or_vt_beat_at_least_140() {
    let mut s = EcgScenario::new(500, 2).sinus(70.0, 30.0).vt(140.0, 10.0);
    s.pvc_every = Some(4);
    let e = generate(&s);
    for b in e.beats.iter().skip(1) {
        let ms = e.qrs_ms(b.t);
        match b.kind {
            TrueBeatKind::Normal => assert!((80.0..=100.0).contains(&ms), "normal {ms}"),
            _ => assert!((140.0..=200.0).contains(&ms), "{:?} {ms}", b.kind),
        }
    }
}

#[test]
fn vt_beats_are_regular_without_p_and_with_t_opposite_to_the_qrs() {
    let e = generate(
        &EcgScenario::new(250, 15)
            .sinus(70.0, 5.0)
            .vt(150.0, 30.0)
            .noiseless(),
    );
    let vt: Vec<TrueBeat> = e.beats_in(5.5, 35.0);
    assert!(vt.iter().all(|b| b.kind == TrueBeatKind::Ventricular));
    let rr = rrs(&vt);
    let m = mean(&rr);
    assert!((60.0 / m - 150.0).abs() < 2.0, "{}", 60.0 / m);
    let sd = (rr.iter().map(|r| (r - m).powi(2)).sum::<f64>() / rr.len() as f64).sqrt();
    assert!(sd / m < 0.03, "VT RR CV {}", sd / m);
    for b in &vt[1..] {
        let q = e.clean[idx(&e, b.t)];
        let t_ext = (idx(&e, b.t + 0.12)..idx(&e, b.t + 0.3))
            .map(|i| e.clean[i])
            .max_by(|a, b| a.abs().total_cmp(&b.abs()))
            .unwrap();
        assert!(t_ext.signum() != q.signum() && t_ext.abs() > 0.2 * q.abs());
    }
}

#[test]
fn pvcs_are_premature_larger_with_discordant_t_and_a_full_compensatory_pause() {
    let mut s = EcgScenario::new(250, 4).sinus(70.0, 60.0);
    s.pvc_every = Some(6);
    let e = generate(&s);
    let hz = e.hz as f64;
    let normal_rr = 60.0 / 70.0;
    let mut seen = 0;
    for k in 1..e.beats.len() - 1 {
        let b = e.beats[k];
        if b.kind != TrueBeatKind::Pvc {
            continue;
        }
        seen += 1;
        let (before, after) = (b.t - e.beats[k - 1].t, e.beats[k + 1].t - b.t);
        let coupling = before / normal_rr;
        assert!((0.55..=0.75).contains(&coupling), "coupling {coupling}");
        let pause = (before + after) / (2.0 * normal_rr);
        assert!((pause - 1.0).abs() < 0.06, "compensation {pause}");
        let pvc_peak = e.clean[(b.t * hz) as usize];
        let prev_peak = e.clean[(e.beats[k - 1].t * hz) as usize];
        assert!(pvc_peak.abs() > 1.2 * prev_peak.abs());
        // T: the extremum 150–450 ms after the PVC has the opposite sign.
        let t_ext = (idx(&e, b.t + 0.15)..idx(&e, b.t + 0.45))
            .map(|i| e.clean[i])
            .max_by(|a, b| a.abs().total_cmp(&b.abs()))
            .unwrap();
        assert!(t_ext.signum() != pvc_peak.signum() && t_ext.abs() > 0.2 * pvc_peak.abs());
        // No P wave where a sinus beat has one (peak 156 ms before the R
        // at this rate, 0.14 mV); the wide QRS itself starts ≈ 90 ms before.
        let before_p =
            (idx(&e, b.t - 0.2)..idx(&e, b.t - 0.12)).fold(0.0f32, |m, i| m.max(e.clean[i].abs()));
        assert!(before_p < 0.03, "P-like {before_p} mV before a PVC");
    }
    // 70 sinus cycles in 60 s, every 6th pre-empted by a PVC.
    assert_eq!(seen, 11);
    assert!(e.beats_between(0.0, 60.0).abs_diff(70) <= 1);
}

#[test]
fn af_rr_is_irregular_without_p_waves_and_with_4_to_9_hz_f_waves() {
    let e_sin = generate(&EcgScenario::new(250, 9).sinus(80.0, 60.0));
    let e_af = generate(&EcgScenario::new(250, 9).af(80.0, 60.0));
    let irregularity = |e: &GeneratedEcg| {
        let rr = rrs(&e.beats);
        let m = mean(&rr);
        let rmssd = (rr.windows(2).map(|w| (w[1] - w[0]).powi(2)).sum::<f64>()
            / (rr.len() - 1) as f64)
            .sqrt();
        rmssd / m
    };
    let (i_sin, i_af) = (irregularity(&e_sin), irregularity(&e_af));
    assert!(i_sin < 0.05, "sinus {i_sin}");
    assert!(i_af > 0.2, "af {i_af}");
    // Ensemble average 70–200 ms before the R (after long RRs only, so no
    // T wave is there): a P wave in sinus, nothing in AF.
    let p_height = |e: &GeneratedEcg| {
        let hz = e.hz as f64;
        let lags: Vec<usize> = ((0.07 * hz) as usize..=(0.20 * hz) as usize).collect();
        let mut sum = vec![0.0; lags.len()];
        let mut k = 0;
        for w in e.beats.windows(2).filter(|w| w[1].t - w[0].t > 0.6) {
            let p = idx(e, w[1].t);
            for (j, l) in lags.iter().enumerate() {
                sum[j] += e.clean[p - l] as f64;
            }
            k += 1;
        }
        sum.iter()
            .map(|v| v / k as f64)
            .fold(0.0f64, |a, b| a.max(b.abs()))
    };
    let (p_sin, p_af) = (p_height(&e_sin), p_height(&e_af));
    assert!(p_sin > 0.1, "sinus P {p_sin}");
    assert!(p_af < 0.03, "AF P {p_af}");
    // f-waves: the clean AF signal's power in 4–9 Hz dominates 1–4 Hz
    // when measured 0.35 s after each QRS to 0.1 s before the next.
    let (mut band, mut low) = (0.0, 0.0);
    let hz = e_af.hz as f64;
    for w in e_af.beats.windows(2).filter(|w| w[1].t - w[0].t > 0.9) {
        let x = &e_af.clean[idx(&e_af, w[0].t + 0.45)..idx(&e_af, w[1].t - 0.1)];
        for f in 4..=9 {
            band += goertzel(x, hz, f as f64);
        }
        for f in 1..4 {
            low += goertzel(x, hz, f as f64);
        }
    }
    assert!(band > 3.0 * low, "f-waves {band} vs {low}");
}

#[test]
fn vf_has_no_beats_and_a_dominant_frequency_of_4_to_7_hz() {
    for seed in 1..6 {
        let e = generate(
            &EcgScenario::new(250, seed)
                .sinus(80.0, 5.0)
                .vf(20.0)
                .noisy(),
        );
        assert_eq!(e.beats_between(5.0, 25.0), 0);
        let x = &e.samples[idx(&e, 6.0)..idx(&e, 24.0)];
        let (f_dom, _) = (4..=60)
            .map(|k| k as f64 * 0.25)
            .map(|f| (f, goertzel(x, 250.0, f)))
            .fold((0.0, 0.0), |a, b| if b.1 > a.1 { b } else { a });
        assert!((4.0..=7.0).contains(&f_dom), "seed {seed}: {f_dom} Hz");
        let peak = x.iter().fold(0.0f32, |a, b| a.max(b.abs()));
        assert!((0.2..=1.5).contains(&peak), "{peak} mV");
    }
}

#[test]
fn asystole_has_no_beats_and_no_large_deflection() {
    let mut s = EcgScenario::new(250, 5)
        .sinus(70.0, 10.0)
        .asystole(8.0)
        .sinus(70.0, 10.0);
    s.asystole_p_waves = true;
    let e = generate(&s);
    assert_eq!(e.beats_between(10.0, 18.0), 0);
    let x = &e.clean[idx(&e, 10.5)..idx(&e, 18.0)];
    let peak = x.iter().fold(0.0f32, |a, b| a.max(b.abs()));
    // Only P waves (0.12 · R) remain.
    assert!(peak > 0.1 && peak < 0.2, "{peak}");
    assert!(e.beats_between(18.0, 28.0) >= 11);
}

#[test]
fn a_pause_is_one_rr_interval_of_the_asked_length() {
    let e = generate(
        &EcgScenario::new(250, 6)
            .sinus(75.0, 10.0)
            .pause(3.0)
            .sinus(75.0, 10.0),
    );
    let rr = rrs(&e.beats);
    let long: Vec<f64> = rr.iter().copied().filter(|&r| r > 1.2).collect();
    assert_eq!(long.len(), 1, "{rr:?}");
    assert!((long[0] - 3.0).abs() <= 0.02, "{}", long[0]);
    // Sinus resumes at its rate: the next five RRs average 0.8 s again.
    let k = rr.iter().position(|&r| r > 1.2).unwrap();
    let after = mean(&rr[k + 1..k + 6]);
    assert!((after - 0.8).abs() < 0.024, "{after}");
    let span = e.spans.iter().find(|s| s.2 == "pause").unwrap();
    assert!((span.1 - span.0 - 3.0).abs() < 1e-9);
    assert_eq!(
        e.beats
            .iter()
            .filter(|b| b.t > span.0 && b.t < span.1)
            .count(),
        0
    );
}

#[test]
fn lead_off_is_a_constant_plus_hum_and_flat_is_zero() {
    let e = generate(
        &EcgScenario::new(250, 8)
            .sinus(70.0, 5.0)
            .lead_off(4.0)
            .flat(2.0)
            .sinus(70.0, 5.0),
    );
    let off = &e.samples[idx(&e, 5.0)..idx(&e, 9.0)];
    assert!(off.iter().all(|&v| v == off[0]) && (2.0..=5.0).contains(&off[0].abs()));
    assert!(e.samples[idx(&e, 9.0)..idx(&e, 11.0)]
        .iter()
        .all(|&v| v == 0.0));
    assert_eq!(e.beats_between(5.0, 11.0), 0);
    let e = generate(
        &EcgScenario::new(250, 8)
            .sinus(70.0, 5.0)
            .lead_off(4.0)
            .hum(0.1, 60.0),
    );
    let off = &e.samples[idx(&e, 5.0)..idx(&e, 9.0)];
    let m = off.iter().map(|&v| v as f64).sum::<f64>() / off.len() as f64;
    assert!(off.iter().all(|&v| (v as f64 - m).abs() <= 0.1 + 1e-4));
    assert!(goertzel(off, 250.0, 60.0) > 1e3 * goertzel(off, 250.0, 10.0));
}

#[test]
fn no_truth_beat_is_cut_by_a_lead_off_or_flat_line() {
    let mut cut_risk = 0;
    for seed in 1..30 {
        let s = EcgScenario::new(250, seed)
            .sinus(73.0, 5.37)
            .lead_off(2.0)
            .vt(170.0, 3.11)
            .flat(1.0)
            .af(120.0, 4.0)
            .noiseless();
        let e = generate(&s);
        let technical: Vec<_> = e
            .spans
            .iter()
            .filter(|sp| sp.2 == "lead_off" || sp.2 == "flat")
            .collect();
        for b in &e.beats {
            for sp in &technical {
                assert!(
                    b.t + 0.09 < sp.0 || b.t - 0.09 >= sp.1,
                    "seed {seed}: {}",
                    b.t
                );
                if b.t < sp.0 && b.t + 0.3 > sp.0 {
                    cut_risk += 1;
                }
            }
            // Around the beat the output is the clean waveform itself.
            let i = idx(&e, b.t);
            assert_eq!(e.samples[i - 10..i + 10], e.clean[i - 10..i + 10]);
        }
    }
    // The scenario does put beats close to the technical segments.
    assert!(cut_risk > 5, "{cut_risk}");
}

#[test]
fn a_tall_t_scenario_has_t_at_least_80_percent_of_r() {
    let mut s = EcgScenario::new(250, 10).sinus(70.0, 20.0).noiseless();
    s.t_ratio = 0.9;
    let e = generate(&s);
    for b in e.beats.iter().skip(1) {
        let r = e.clean[idx(&e, b.t)];
        let t = (idx(&e, b.t + 0.12)..idx(&e, b.t + 0.4))
            .map(|i| e.clean[i])
            .fold(f32::MIN, f32::max);
        assert!(t >= 0.8 * r, "T {t} vs R {r}");
    }
}

#[test]
fn mains_hum_shows_at_its_frequency() {
    for f in [50.0, 60.0] {
        let e = generate(&EcgScenario::new(500, 12).sinus(70.0, 10.0).hum(0.05, f));
        let other = if f == 50.0 { 60.0 } else { 50.0 };
        let (p, q) = (
            goertzel(&e.samples, 500.0, f),
            goertzel(&e.samples, 500.0, other),
        );
        assert!(p > 20.0 * q, "{f} Hz: {p} vs {q}");
        // Amplitude 0.05 mV peak → power (A/2)².
        assert!((p.sqrt() - 0.025).abs() < 0.005, "{}", p.sqrt());
    }
}

#[test]
fn sinus_arrhythmia_of_15_percent_swings_rr_by_about_15_percent() {
    let mut s = EcgScenario::new(250, 13).sinus(60.0, 60.0);
    s.sinus_arrhythmia = 0.15;
    s.hrv = 0.0;
    let rr = rrs(&generate(&s).beats);
    let m = mean(&rr);
    let up = rr.iter().fold(0.0f64, |a, &b| a.max(b)) / m - 1.0;
    let down = 1.0 - rr.iter().fold(9.0f64, |a, &b| a.min(b)) / m;
    assert!(
        (0.12..=0.18).contains(&up) && (0.12..=0.18).contains(&down),
        "{up} {down}"
    );
    s.hrv = 0.02;
    let rr = rrs(&generate(&s).beats);
    let m = mean(&rr);
    let range = (rr.iter().fold(0.0f64, |a, &b| a.max(b))
        - rr.iter().fold(9.0f64, |a, &b| a.min(b)))
        / (2.0 * m);
    assert!((0.12..=0.22).contains(&range), "{range}");
}

#[test]
fn af_and_vf_start_and_stop_without_a_step() {
    // Only the segment-bound activity (f-waves, VF) is segment-bound; the
    // beats are Gaussians that do not know about segments.
    let hz = 250.0;
    let mut buf = vec![0.0; 20 * 250];
    let mut rng = stream(1, 2);
    render_episode(&mut buf, hz, Episode::FWaves(2.0, 8.0), &mut rng);
    render_episode(&mut buf, hz, Episode::Vf(8.0, 16.0), &mut rng);
    let max_step = buf
        .windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .fold(0.0, f64::max);
    for b in [2.0, 8.0, 16.0] {
        let i = (b * hz) as usize;
        assert!(buf[i - 1].abs() < 0.01 && buf[i].abs() < 0.01, "at {b}");
    }
    // The largest sample-to-sample change is that of a 7 Hz, 1 mV sine at most.
    assert!(max_step < 2.0 * PI * 7.0 / hz * 1.0, "{max_step}");
}

#[test]
fn artefacts_are_labelled_and_large() {
    let e = generate(
        &EcgScenario::new(250, 14)
            .sinus(70.0, 20.0)
            .artefact(5.0, 10.0, 2.0),
    );
    assert!(e.spans.contains(&(5.0, 10.0, "artefact")));
    let d: Vec<f32> = e.samples.iter().zip(&e.clean).map(|(a, b)| a - b).collect();
    let peak = |a: usize, b: usize| d[a..b].iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(peak(idx(&e, 5.0), idx(&e, 10.0)) > 1.0);
    assert!(peak(idx(&e, 11.0), idx(&e, 20.0)) < 0.2);
}

/// Measuring helpers for the tests.
mod support {
    use super::*;
    pub fn goertzel(x: &[f32], hz: f64, f: f64) -> f64 {
        let w = 2.0 * PI * f / hz;
        let c = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &v in x {
            let s0 = v as f64 + c * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        (s1 * s1 + s2 * s2 - c * s1 * s2) / (x.len() as f64).powi(2)
    }
    pub fn idx(e: &GeneratedEcg, t: f64) -> usize {
        ((t * e.hz as f64).round() as usize).min(e.samples.len())
    }
    pub fn rrs(beats: &[TrueBeat]) -> Vec<f64> {
        beats.windows(2).map(|w| w[1].t - w[0].t).collect()
    }
    pub fn mean(v: &[f64]) -> f64 {
        v.iter().sum::<f64>() / v.len() as f64
    }
    /// Distance (ms) from `t` to the nearest scheduled (nominal) R time.
    pub fn nearest_nominal_ms(s: &EcgScenario, t: f64) -> f64 {
        let mut misc = stream(s.seed, 6);
        let breath = Breath {
            hz: 0.2 + 0.1 * misc.f64(),
            phase: 2.0 * PI * misc.f64(),
        };
        schedule(s, breath)
            .beats
            .iter()
            .filter(|b| b.shape != Shape::POnly)
            .map(|b| (b.t0 - t).abs() * 1000.0)
            .fold(f64::MAX, f64::min)
    }
}
