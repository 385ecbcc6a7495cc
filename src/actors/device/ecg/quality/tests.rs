//! Signal quality against generated and real ECG.

use super::*;

// The generator is shared with the sibling module's tests.
use crate::synthetic::ecg as ecg_gen;
use ecg_gen::{generate, EcgScenario, GeneratedEcg};

fn judge(samples: &[f32], hz: u32, chunk: usize) -> Vec<(u64, Quality)> {
    let mut m = QualityMonitor::new(hz);
    let mut out = Vec::new();
    for c in samples.chunks(chunk) {
        m.push(c, &mut out);
    }
    out
}

/// Verdicts for the windows ending in (from_s, to_s].
fn verdicts(e: &GeneratedEcg, from_s: f64, to_s: f64) -> Vec<Quality> {
    let hz = f64::from(e.hz);
    judge(&e.samples, e.hz, 101)
        .into_iter()
        .filter(|&(end, _)| end as f64 / hz > from_s && end as f64 / hz <= to_s)
        .map(|(_, q)| q)
        .collect()
}

fn all_good(name: &str, scn: &EcgScenario) {
    let e = generate(scn);
    let v = verdicts(&e, 0.0, 1e9);
    assert_eq!(v.len(), e.samples.len() / e.hz as usize);
    assert!(
        v.iter().all(|&q| q == Quality::Good),
        "{name} (seed {}): {v:?}",
        scn.seed
    );
}

#[test]
fn rhythms_are_not_signal_defects_and_all_read_good() {
    for seed in 1..4 {
        for hz in [250, 360, 500] {
            let b = || EcgScenario::new(hz, seed);
            for bpm in [40.0, 70.0, 120.0, 200.0] {
                all_good("sinus", &b().sinus(bpm, 30.0));
            }
            all_good("noisy sinus", &b().sinus(70.0, 30.0).noisy());
            all_good("af", &b().sinus(70.0, 10.0).af(110.0, 30.0).noisy());
            all_good("vt", &b().sinus(70.0, 10.0).vt(180.0, 20.0));
            all_good("vf", &b().sinus(70.0, 10.0).vf(20.0).noisy());
            all_good(
                "asystole with baseline noise",
                &b().sinus(70.0, 10.0).asystole(20.0),
            );
            all_good("pause", &b().sinus(70.0, 10.0).pause(3.5).sinus(70.0, 10.0));
            let mut pvc = b().sinus(75.0, 30.0).noisy();
            pvc.pvc_every = Some(2);
            all_good("bigeminy", &pvc);
            let mut tall = b().sinus(90.0, 30.0);
            tall.t_ratio = 1.1;
            all_good("tall T", &tall);
            let mut low = b().sinus(70.0, 30.0);
            low.r_mv = 0.17;
            all_good("R 0.17 mV from the start", &low);
        }
    }
}

#[test]
fn a_small_ecg_from_the_start_is_low_amplitude_but_one_that_goes_quiet_is_asystole() {
    let mut tiny = EcgScenario::new(250, 1).sinus(70.0, 20.0).noiseless();
    tiny.r_mv = 0.08;
    let e = generate(&tiny);
    let v = verdicts(&e, 0.0, 20.0);
    assert!(v.iter().all(|&q| q == Quality::LowAmplitude), "{v:?}");
    // The same quiet signal after a usable ECG stays Good (asystole).
    let e = generate(&EcgScenario::new(250, 1).sinus(70.0, 10.0).asystole(30.0));
    assert!(verdicts(&e, 0.0, 40.0).iter().all(|&q| q == Quality::Good));
    // After a lead-off the lead must show a usable QRS again first.
    let e = generate(
        &EcgScenario::new(250, 1)
            .sinus(70.0, 10.0)
            .lead_off(5.0)
            .asystole(20.0),
    );
    let after = verdicts(&e, 20.0, 35.0);
    assert!(
        after.iter().all(|&q| q == Quality::LowAmplitude),
        "{after:?}"
    );
}

#[test]
fn lead_off_is_called_within_one_second_with_or_without_hum() {
    for (seed, noisy) in [(1, true), (2, false), (3, true), (4, false)] {
        let mut s = EcgScenario::new(250, seed).sinus(70.0, 10.0).lead_off(10.0);
        if noisy {
            s = s.noisy();
        }
        let v = verdicts(&generate(&s), 10.0, 20.0);
        assert!(
            v.iter().all(|&q| q == Quality::LeadOff),
            "seed {seed}: {v:?}"
        );
    }
    // A rail.
    let v = judge(&[4.9f32; 2500], 250, 333);
    assert!(v.iter().all(|&(_, q)| q == Quality::LeadOff), "{v:?}");
}

#[test]
fn an_exactly_flat_line_is_flat_and_mains_hum_alone_is_mains_hum() {
    let v = verdicts(
        &generate(&EcgScenario::new(360, 1).sinus(70.0, 10.0).flat(10.0)),
        10.0,
        20.0,
    );
    assert!(v.iter().all(|&q| q == Quality::Flat), "{v:?}");
    for (mv, f) in [(0.05, 50.0), (0.3, 50.0), (1.0, 60.0)] {
        let hz = 500;
        let x: Vec<f32> = (0..10 * hz)
            .map(|i| (mv * (2.0 * PI * f * i as f64 / f64::from(hz) + 0.3).sin()) as f32 + 0.01)
            .collect();
        let v = judge(&x, hz, 64);
        assert!(
            v.iter().all(|&(_, q)| q == Quality::MainsHum),
            "{mv} mV {f} Hz: {v:?}"
        );
    }
    // Hum on a usable ECG is not a defect.
    let e = generate(&EcgScenario::new(500, 2).sinus(70.0, 20.0).hum(0.3, 60.0));
    assert!(verdicts(&e, 0.0, 20.0).iter().all(|&q| q == Quality::Good));
}

#[test]
fn a_clipped_ecg_is_saturated() {
    let e = generate(&EcgScenario::new(250, 3).sinus(90.0, 20.0).noisy());
    // An amplifier whose range ends at +0.5 mV, 10 s in.
    let x: Vec<f32> = e
        .samples
        .iter()
        .enumerate()
        .map(|(i, &v)| if i >= 2500 { v.min(0.5) + 0.0 } else { v })
        .map(|v| if v >= 0.5 { 0.5 } else { v })
        .collect();
    let x: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if i >= 2500 {
                v.max(0.5 - 3.0 * (i % 2) as f32)
            } else {
                v
            }
        })
        .collect();
    let v = judge(&x, 250, 250);
    assert!(v[..10].iter().all(|&(_, q)| q == Quality::Good), "{v:?}");
    let sat = v[10..]
        .iter()
        .filter(|&&(_, q)| q == Quality::Saturated)
        .count();
    assert_eq!(sat, 10, "{v:?}");
}

#[test]
fn heavy_motion_artefact_is_artefact_and_the_lead_recovers() {
    for (mv, seed) in [(3.0, 1), (5.0, 2), (10.0, 3)] {
        let e = generate(
            &EcgScenario::new(250, seed)
                .sinus(70.0, 30.0)
                .noisy()
                .artefact(15.0, 19.0, mv),
        );
        let v = verdicts(&e, 0.0, 30.0);
        let bad = v[15..19]
            .iter()
            .filter(|&&q| q == Quality::Artefact)
            .count();
        assert!(bad >= 2, "{mv} mV: {v:?}");
        assert!(v[..15].iter().all(|&q| q == Quality::Good), "before: {v:?}");
        assert!(v[22..].iter().all(|&q| q == Quality::Good), "after: {v:?}");
    }
}

#[test]
fn any_chunking_gives_identical_verdicts() {
    let e = generate(
        &EcgScenario::new(360, 5)
            .sinus(70.0, 10.0)
            .lead_off(4.0)
            .sinus(90.0, 10.0)
            .flat(3.0)
            .vf(8.0)
            .noisy()
            .artefact(30.0, 33.0, 4.0),
    );
    let reference = judge(&e.samples, 360, e.samples.len());
    for chunk in [1, 2, 359, 360, 361, 4096] {
        assert_eq!(judge(&e.samples, 360, chunk), reference, "chunk {chunk}");
    }
    let ends: Vec<u64> = reference.iter().map(|&(end, _)| end).collect();
    let want: Vec<u64> = (1..=ends.len() as u64).map(|k| k * 360).collect();
    assert_eq!(ends, want);
}

#[test]
fn the_real_records_read_as_expected() {
    fn read(path: &str) -> Vec<f32> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.trim().parse().unwrap())
            .collect()
    }
    let count = |v: &[(u64, Quality)], q: Quality| v.iter().filter(|&&(_, x)| x == q).count();
    let mit = judge(
        &read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/data/ecg/mitdb-100-mlii-360hz.txt"
        )),
        360,
        1000,
    );
    assert_eq!(
        count(&mit, Quality::Good),
        mit.len(),
        "MIT-BIH 100 is a clean record"
    );
    let a = judge(
        &read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/data/ecg/challenge2015-a103l-ii-250hz.txt"
        )),
        250,
        1000,
    );
    // a103l's false asystole alarm at 5:00 sits in a run of saturation.
    let around: Vec<(u64, Quality)> = a[270..300].to_vec();
    let sat = count(&around, Quality::Saturated);
    println!(
        "a103l 4:30-5:00: {sat} of 30 windows Saturated, {} Good",
        count(&around, Quality::Good)
    );
    assert!(sat >= 15, "{around:?}");
}
