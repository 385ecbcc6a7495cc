//! Rhythm analysis against the generator's truth, the detector's beats and the real records.

use super::*;

// The generator is shared with the sibling module's tests.
use crate::synthetic::ecg as ecg_gen;
use ecg_gen::{generate, EcgScenario, GeneratedEcg, TrueBeatKind};

// The project's QRS detector (another module), for end-to-end runs.
use super::super::detect as qrs;

mod records;

pub(super) fn truth_beats(e: &GeneratedEcg) -> Vec<Beat> {
    e.beats
        .iter()
        .map(|b| Beat {
            sample: (b.t * f64::from(e.hz)).round() as u64,
            kind: match b.kind {
                TrueBeatKind::Normal => BeatKind::Normal,
                TrueBeatKind::Pvc | TrueBeatKind::Ventricular => BeatKind::Pvc,
            },
        })
        .collect()
}

/// Runs the analyser over `e` in chunks of `chunk` samples, handing each
/// chunk the truth beats that fall in it.
pub(super) fn run_chunked(e: &GeneratedEcg, chunk: usize) -> Vec<RhythmState> {
    let beats = truth_beats(e);
    let mut a = RhythmAnalyzer::new(e.hz, RhythmSettings::default());
    let mut out = Vec::new();
    let mut bi = 0;
    for (k, c) in e.samples.chunks(chunk).enumerate() {
        let end = ((k * chunk + c.len()) as u64).min(e.samples.len() as u64);
        let from = bi;
        while bi < beats.len() && beats[bi].sample < end {
            bi += 1;
        }
        a.push(c, &beats[from..bi], &mut out);
    }
    out
}

pub(super) fn run(e: &GeneratedEcg) -> Vec<RhythmState> {
    run_chunked(e, 97)
}

pub(super) fn secs(e: &GeneratedEcg, st: &RhythmState) -> f64 {
    st.at_sample as f64 / f64::from(e.hz)
}

pub(super) fn any_flag(st: &RhythmState) -> bool {
    st.vf || st.vt || st.af || st.asystole || st.pause
}

pub(super) fn with_sa(mut s: EcgScenario, sa: f64) -> EcgScenario {
    s.sinus_arrhythmia = sa;
    s
}

pub(super) fn with_pvcs(mut s: EcgScenario, every: usize) -> EcgScenario {
    s.pvc_every = Some(every);
    s
}

pub(super) fn with_hrv(mut s: EcgScenario, hrv: f64) -> EcgScenario {
    s.hrv = hrv;
    s
}

#[test]
fn asystole_is_flagged_within_five_seconds_of_the_last_beat_and_hr_is_none_from_four() {
    let mut worst: f64 = 0.0;
    for (hz, seed, variant) in [
        (250, 1, ""),
        (250, 2, "noisy"),
        (360, 3, "p waves"),
        (500, 4, "noisy"),
        (250, 5, "low voltage"),
        (250, 6, "p waves"),
    ] {
        let mut scn = EcgScenario::new(hz, seed).sinus(70.0, 20.0).asystole(20.0);
        match variant {
            "noisy" => scn = scn.noisy(),
            "p waves" => scn.asystole_p_waves = true,
            "low voltage" => scn.r_mv = 0.3,
            _ => {}
        }
        let e = generate(&scn);
        let last = e.beats.iter().map(|b| b.t).fold(0.0, f64::max);
        let states = run(&e);
        let first = states
            .iter()
            .find(|s| s.asystole)
            .map(|s| secs(&e, s) - last)
            .expect("asystole flagged");
        worst = worst.max(first);
        // Flagged no earlier than 4 s and, with one state per second, no
        // later than 5 s after the last beat.
        assert!(
            (4.0..5.0).contains(&first),
            "hz {hz} seed {seed}: {first:.2} s"
        );
        for st in &states {
            let since = secs(&e, st) - last;
            if since >= 4.0 {
                assert_eq!(st.hr_bpm, None, "hr at {since:.2} s after the last beat");
                assert!(st.asystole && !st.vf && !st.pause, "{since:.2}: {st:?}");
            } else {
                assert!(!st.asystole, "early asystole at {since:.2}");
            }
            assert_eq!(
                st.quality,
                Quality::Good,
                "asystole with baseline noise is Good"
            );
        }
    }
    println!("asystole latency after the last beat: worst {worst:.2} s");
}

#[test]
fn vf_is_flagged_within_ten_seconds_of_onset_without_asystole() {
    let mut worst: f64 = 0.0;
    for (hz, seed) in [(250, 1), (250, 2), (360, 3), (500, 4), (250, 5), (250, 6)] {
        let scn = EcgScenario::new(hz, seed).sinus(70.0, 20.0).vf(30.0);
        for e in [generate(&scn), generate(&scn.clone().noisy())] {
            let states = run(&e);
            let first = states
                .iter()
                .find(|s| s.vf)
                .map(|s| secs(&e, s) - 20.0)
                .expect("vf flagged");
            worst = worst.max(first);
            assert!(first <= 10.0, "hz {hz} seed {seed}: VF after {first:.1} s");
            for st in &states {
                let t = secs(&e, st);
                assert!(!st.asystole && !st.vt && !st.af, "{t}: {st:?}");
                if t < 20.0 {
                    assert!(!st.vf, "VF in sinus at {t}");
                }
                if st.vf {
                    assert_eq!(st.hr_bpm, None);
                }
            }
            let on = states
                .iter()
                .filter(|s| secs(&e, s) >= 30.0 && s.vf)
                .count();
            assert!(on >= 19, "VF held for {on} of 20 s");
        }
    }
    println!("VF latency after onset: worst {worst:.1} s");
}

#[test]
fn vt_at_160_bpm_for_20_seconds_is_flagged_and_is_not_vf() {
    for (hz, seed) in [(250, 1), (360, 2), (500, 3)] {
        let e = generate(
            &EcgScenario::new(hz, seed)
                .sinus(70.0, 20.0)
                .vt(160.0, 20.0)
                .sinus(70.0, 10.0),
        );
        let states = run(&e);
        let first = states.iter().find(|s| s.vt).map(|s| secs(&e, s) - 20.0);
        let first = first.expect("vt flagged");
        assert!(first <= 4.0, "VT after {first:.1} s");
        for st in &states {
            let t = secs(&e, st);
            assert!(!st.vf && !st.asystole && !st.af, "{t}: {st:?}");
            if (25.0..40.0).contains(&t) {
                assert!(st.vt, "VT lost at {t}");
            }
            // Once the 10 s rate window holds only VT beats.
            if (31.0..40.0).contains(&t) {
                let hr = st.hr_bpm.expect("hr in VT");
                assert!((hr - 160.0).abs() < 5.0, "hr {hr}");
            }
            if t >= 43.0 {
                assert!(!st.vt, "VT after it ended, at {t}");
            }
        }
    }
}

#[test]
fn af_at_60_to_150_bpm_is_flagged_once_its_window_has_filled() {
    for (bpm, seed) in [
        (60.0, 1),
        (80.0, 2),
        (100.0, 3),
        (120.0, 4),
        (150.0, 5),
        (60.0, 6),
    ] {
        let e = generate(
            &EcgScenario::new(250, seed)
                .sinus(70.0, 20.0)
                .af(bpm, 90.0)
                .noisy(),
        );
        let states = run(&e);
        // The window is 32 clean RR intervals.
        let filled = 20.0 + 33.0 * 60.0 / bpm + 1.0;
        let first = states.iter().find(|s| s.af).map(|s| secs(&e, s));
        let first = first.expect("af flagged");
        assert!(
            first <= filled,
            "AF {bpm}: first at {first:.0} s, window full at {filled:.0}"
        );
        let after: Vec<&RhythmState> = states.iter().filter(|s| secs(&e, s) >= filled).collect();
        let on = after.iter().filter(|s| s.af).count();
        assert!(
            on * 100 >= after.len() * 95,
            "AF {bpm}: {on} of {} s",
            after.len()
        );
        assert!(states
            .iter()
            .all(|s| !s.vf && !s.vt && !s.asystole && !s.pause));
        assert!(states.iter().filter(|s| secs(&e, s) < 20.0).all(|s| !s.af));
    }
}

#[test]
fn lead_off_flat_and_hum_only_are_not_good_within_ten_seconds_and_raise_nothing() {
    let hum_only = {
        let mut s = EcgScenario::new(250, 3)
            .sinus(70.0, 20.0)
            .asystole(30.0)
            .hum(0.3, 50.0);
        s.emg_mv = 0.0;
        s.wander_mv = 0.0;
        s
    };
    let cases = [
        (
            "lead off",
            EcgScenario::new(250, 1)
                .sinus(70.0, 20.0)
                .lead_off(30.0)
                .noisy(),
        ),
        (
            "lead off, no hum",
            EcgScenario::new(250, 2).sinus(70.0, 20.0).lead_off(30.0),
        ),
        (
            "flat",
            EcgScenario::new(250, 1).sinus(70.0, 20.0).flat(30.0),
        ),
        ("hum only", hum_only),
    ];
    for (name, scn) in cases {
        let e = generate(&scn);
        let states = run(&e);
        let bad_at = states
            .iter()
            .find(|s| secs(&e, s) > 20.0 && s.quality != Quality::Good)
            .map(|s| secs(&e, s) - 20.0)
            .expect("quality turns bad");
        assert!(bad_at <= 10.0, "{name}: not Good only after {bad_at} s");
        for st in states.iter().filter(|s| secs(&e, s) > 20.0 + bad_at) {
            assert_ne!(st.quality, Quality::Good, "{name} at {}", secs(&e, st));
            assert!(!any_flag(st) && st.hr_bpm.is_none(), "{name}: {st:?}");
        }
        for st in states.iter().filter(|s| secs(&e, s) < 20.0) {
            assert!(!any_flag(st), "{name} before: {st:?}");
        }
        println!(
            "{name}: quality {:?} within {bad_at} s",
            states.last().unwrap().quality
        );
    }
}

#[test]
fn after_a_lead_off_the_signal_is_good_again_within_seven_seconds_with_a_heart_rate() {
    for seed in 1..4 {
        let e = generate(
            &EcgScenario::new(250, seed)
                .sinus(70.0, 20.0)
                .lead_off(10.0)
                .sinus(70.0, 30.0)
                .noisy(),
        );
        let states = run(&e);
        let back = states
            .iter()
            .find(|s| secs(&e, s) > 30.0 && s.quality == Quality::Good)
            .map(|s| secs(&e, s) - 30.0)
            .expect("Good again");
        assert!(back <= 7.0, "seed {seed}: Good {back} s after reconnection");
        for st in states.iter().filter(|s| secs(&e, s) >= 30.0 + back) {
            assert_eq!(st.quality, Quality::Good);
            assert!(!any_flag(st), "{st:?}");
            if secs(&e, st) >= 30.0 + back + 3.0 {
                let hr = st.hr_bpm.expect("hr");
                assert!((hr - 70.0).abs() < 5.0, "{hr}");
            }
        }
    }
}

#[test]
fn a_lead_too_small_from_the_start_is_low_amplitude_and_never_asystole() {
    let mut s = EcgScenario::new(250, 2).sinus(70.0, 30.0).noiseless();
    s.r_mv = 0.08;
    let e = generate(&s);
    for st in run(&e) {
        assert_eq!(st.quality, Quality::LowAmplitude, "{st:?}");
        assert!(!any_flag(&st) && st.hr_bpm.is_none());
    }
}

#[test]
fn a_four_second_motion_artefact_raises_no_rhythm_flag() {
    for (mv, seed) in [(0.5, 1), (1.0, 2), (2.0, 3), (3.0, 4), (5.0, 5)] {
        let e = generate(
            &EcgScenario::new(250, seed)
                .sinus(70.0, 40.0)
                .noisy()
                .artefact(20.0, 24.0, mv),
        );
        let states = run(&e);
        for st in &states {
            assert!(!any_flag(st), "artefact {mv} mV: {st:?}");
        }
        let bad = states.iter().filter(|s| s.quality != Quality::Good).count();
        println!("artefact {mv} mV: {bad} s not Good");
    }
}

#[test]
fn ordinary_rhythms_raise_no_alarm_flag() {
    let mut cases: Vec<(String, EcgScenario)> = Vec::new();
    for seed in 1..4 {
        let base = || EcgScenario::new(250, seed);
        cases.push(("pvc 1:25".into(), with_pvcs(base().sinus(70.0, 120.0), 25)));
        cases.push((
            "pvc 1:10".into(),
            with_pvcs(base().sinus(70.0, 120.0).noisy(), 10),
        ));
        cases.push((
            "sa 15% at 60".into(),
            with_sa(base().sinus(60.0, 120.0), 0.15),
        ));
        cases.push((
            "sa 15% at 75".into(),
            with_sa(base().sinus(75.0, 120.0), 0.15),
        ));
        cases.push((
            "rate step".into(),
            base().sinus(70.0, 60.0).sinus(110.0, 60.0),
        ));
        cases.push(("noisy".into(), base().sinus(70.0, 120.0).noisy()));
        cases.push(("hrv 3%".into(), with_hrv(base().sinus(70.0, 120.0), 0.03)));
        cases.push(("40 bpm".into(), base().sinus(40.0, 120.0)));
        cases.push(("200 bpm".into(), base().sinus(200.0, 60.0)));
        let mut tall = base().sinus(120.0, 60.0);
        tall.t_ratio = 1.0;
        cases.push(("tall T".into(), tall));
    }
    for (name, scn) in cases {
        let e = generate(&scn);
        for st in run(&e) {
            assert!(!any_flag(&st), "{name} seed {}: {st:?}", scn.seed);
            if secs(&e, &st) >= 6.0 {
                assert_eq!(st.quality, Quality::Good, "{name} at {}", secs(&e, &st));
            }
        }
    }
}

#[test]
fn heart_rate_follows_the_true_rate_from_40_to_200_bpm() {
    for bpm in [40.0, 70.0, 120.0, 200.0] {
        let e = generate(&EcgScenario::new(250, 7).sinus(bpm, 40.0).noisy());
        for st in run(&e).iter().filter(|s| secs(&e, s) >= 12.0) {
            let hr = st.hr_bpm.expect("hr");
            assert!((hr - bpm).abs() <= 0.03 * bpm, "{bpm}: {hr:.1}");
        }
    }
}

#[test]
fn pvcs_per_minute_count_the_last_minute() {
    let e = generate(&with_pvcs(EcgScenario::new(250, 2).sinus(70.0, 120.0), 10));
    let states = run(&e);
    let truth = e
        .beats
        .iter()
        .filter(|b| b.t >= 59.0 && b.t < 119.0 && b.kind == TrueBeatKind::Pvc)
        .count() as f64;
    let got = states
        .iter()
        .find(|s| s.at_sample == 119 * 250)
        .unwrap()
        .pvc_per_min;
    assert_eq!(got, truth);
    assert!((6.0..=8.0).contains(&got), "{got}");
}

#[test]
fn a_pause_of_three_and_a_half_seconds_is_flagged_and_is_not_asystole() {
    for seed in 1..4 {
        let e = generate(
            &EcgScenario::new(250, seed)
                .sinus(70.0, 20.0)
                .pause(3.5)
                .sinus(70.0, 20.0),
        );
        let states = run(&e);
        let span = e.spans.iter().find(|s| s.2 == "pause").copied().unwrap();
        let flagged: Vec<f64> = states
            .iter()
            .filter(|s| s.pause)
            .map(|s| secs(&e, s))
            .collect();
        assert!(!flagged.is_empty(), "pause flagged");
        assert!(
            flagged[0] <= span.1 + 1.0,
            "pause late: {flagged:?} vs {span:?}"
        );
        assert!(flagged
            .iter()
            .all(|&t| t >= span.0 + 3.0 && t <= span.1 + PAUSE_HOLD_S as f64 + 1.0));
        assert!(states
            .iter()
            .all(|s| !s.asystole && !s.vf && !s.vt && !s.af));
    }
}

#[test]
fn any_chunking_gives_identical_states() {
    let e = generate(&with_pvcs(
        EcgScenario::new(360, 4)
            .sinus(80.0, 15.0)
            .vt(170.0, 8.0)
            .vf(12.0)
            .asystole(6.0)
            .lead_off(5.0)
            .af(110.0, 20.0)
            .noisy(),
        7,
    ));
    let reference = run_chunked(&e, e.samples.len());
    assert_eq!(reference.len(), e.samples.len() / 360);
    for chunk in [1, 7, 359, 360, 361, 5000] {
        assert_eq!(run_chunked(&e, chunk), reference, "chunk {chunk}");
    }
}

#[test]
fn a_clone_taken_mid_stream_continues_exactly() {
    fn snapshot<T: serde::Serialize + serde::de::DeserializeOwned + Clone>(t: &T) -> T {
        t.clone()
    }
    let e = generate(
        &EcgScenario::new(250, 9)
            .sinus(70.0, 20.0)
            .af(120.0, 30.0)
            .noisy(),
    );
    let beats = truth_beats(&e);
    let mut a = RhythmAnalyzer::new(250, RhythmSettings::default());
    let mut out = Vec::new();
    let cut = 20 * 250 + 77;
    let b1: Vec<Beat> = beats
        .iter()
        .copied()
        .filter(|b| b.sample < cut as u64)
        .collect();
    let b2: Vec<Beat> = beats
        .iter()
        .copied()
        .filter(|b| b.sample >= cut as u64)
        .collect();
    a.push(&e.samples[..cut], &b1, &mut out);
    let mut copy = snapshot(&a);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    a.push(&e.samples[cut..], &b2, &mut x);
    copy.push(&e.samples[cut..], &b2, &mut y);
    assert_eq!(x, y);
    assert!(x.iter().any(|s| s.af));
}
