//! The rhythm analysis on real records (MIT-BIH 100, two real ICU false
//! alarms) and with the QRS detector's beats instead of the truth.

use super::*;

fn read_mv(path: &str) -> Vec<f32> {
    std::fs::read_to_string(path)
        .expect(path)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.trim().parse::<f32>().expect("number"))
        .collect()
}

fn run_record(x: &[f32], hz: u32, beats: &[Beat]) -> Vec<RhythmState> {
    let mut a = RhythmAnalyzer::new(hz, RhythmSettings::default());
    let mut out = Vec::new();
    let mut bi = 0;
    for (k, c) in x.chunks(hz as usize).enumerate() {
        let end = (k * hz as usize + c.len()) as u64;
        let from = bi;
        while bi < beats.len() && beats[bi].sample < end {
            bi += 1;
        }
        a.push(c, &beats[from..bi], &mut out);
    }
    out
}

fn summary(states: &[RhythmState]) -> String {
    let mut q: std::collections::BTreeMap<String, usize> = Default::default();
    for s in states {
        *q.entry(format!("{:?}", s.quality)).or_default() += 1;
    }
    let c = |f: fn(&RhythmState) -> bool| states.iter().filter(|s| f(s)).count();
    format!(
        "{} s, quality {:?}, asystole {} vf {} vt {} af {} pause {}",
        states.len(),
        q,
        c(|s| s.asystole),
        c(|s| s.vf),
        c(|s| s.vt),
        c(|s| s.af),
        c(|s| s.pause)
    )
}

/// MIT-BIH 100's reference beats (N, A and other supraventricular
/// symbols → Normal, V/E → Pvc, the rest Unknown).
fn mit_100_reference_beats() -> Vec<Beat> {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/ecg/mitdb-100-beats.txt"
    ))
    .unwrap()
    .lines()
    .filter(|l| !l.starts_with('#'))
    .filter_map(|l| {
        let mut it = l.split_whitespace();
        let sample = it.next()?.parse().ok()?;
        let kind = match it.next()? {
            "N" | "A" | "L" | "R" | "e" | "j" | "a" | "J" | "S" => BeatKind::Normal,
            "V" | "E" => BeatKind::Pvc,
            _ => BeatKind::Unknown,
        };
        Some(Beat { sample, kind })
    })
    .collect()
}

#[test]
fn mit_bih_100_with_reference_beats_raises_no_lethal_or_af_flag_in_30_minutes() {
    let x = read_mv(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/ecg/mitdb-100-mlii-360hz.txt"
    ));
    let beats = mit_100_reference_beats();
    let states = run_record(&x, 360, &beats);
    println!("MIT-BIH 100, reference beats: {}", summary(&states));
    assert!(states
        .iter()
        .all(|s| !s.vf && !s.vt && !s.af && !s.asystole));
    let good = states.iter().filter(|s| s.quality == Quality::Good).count();
    assert!(
        good * 100 >= states.len() * 95,
        "Good {good} of {}",
        states.len()
    );
}

/// Runs the analyser with the published streaming detector in front of
/// it, as in the product: each chunk goes to the detector and the beats
/// it reports (about 0.3 s late) go with the same chunk to the analyser.
fn run_detected(x: &[f32], hz: u32, chunk: usize) -> (Vec<RhythmState>, usize) {
    let mut det = qrs::QrsDetector::new(hz);
    let mut a = RhythmAnalyzer::new(hz, RhythmSettings::default());
    let (mut out, mut found, mut beats) = (Vec::new(), Vec::new(), Vec::new());
    let mut total = 0;
    for c in x.chunks(chunk) {
        found.clear();
        det.push(c, &mut found);
        beats.clear();
        beats.extend(found.iter().map(|b| Beat {
            sample: b.sample,
            kind: match b.kind {
                qrs::BeatKind::Normal => BeatKind::Normal,
                qrs::BeatKind::Pvc => BeatKind::Pvc,
                qrs::BeatKind::Unknown => BeatKind::Unknown,
            },
        }));
        total += beats.len();
        a.push(c, &beats, &mut out);
    }
    (out, total)
}

/// The brief's scenarios with the detector's beats instead of
/// the truth: what the lead will see after integration.
#[test]
fn with_the_detector_the_scenarios_still_hold() {
    let hz = 250;
    // (name, scenario, onset s, expected flag, latest first flag s after onset)
    type Expect = Option<(fn(&RhythmState) -> bool, f64)>;
    let asys: fn(&RhythmState) -> bool = |s| s.asystole;
    let vf: fn(&RhythmState) -> bool = |s| s.vf;
    let vt: fn(&RhythmState) -> bool = |s| s.vt;
    let af: fn(&RhythmState) -> bool = |s| s.af;
    let cases: Vec<(&str, EcgScenario, f64, Expect)> = vec![
        (
            "asystole",
            EcgScenario::new(hz, 1).sinus(70.0, 30.0).asystole(20.0),
            30.0,
            Some((asys, 5.5)),
        ),
        (
            "vf",
            EcgScenario::new(hz, 2).sinus(70.0, 30.0).vf(30.0),
            30.0,
            Some((vf, 10.0)),
        ),
        (
            "vf noisy",
            EcgScenario::new(hz, 3).sinus(70.0, 30.0).vf(30.0).noisy(),
            30.0,
            Some((vf, 10.0)),
        ),
        (
            "vt 160",
            EcgScenario::new(hz, 4)
                .sinus(70.0, 30.0)
                .vt(160.0, 20.0)
                .sinus(70.0, 10.0),
            30.0,
            Some((vt, 5.0)),
        ),
        (
            "af 60",
            EcgScenario::new(hz, 5).sinus(70.0, 30.0).af(60.0, 90.0),
            30.0,
            Some((af, 34.0)),
        ),
        (
            "af 150 noisy",
            EcgScenario::new(hz, 6)
                .sinus(70.0, 30.0)
                .af(150.0, 90.0)
                .noisy(),
            30.0,
            Some((af, 15.0)),
        ),
        (
            "lead off",
            EcgScenario::new(hz, 7)
                .sinus(70.0, 30.0)
                .lead_off(20.0)
                .sinus(70.0, 20.0)
                .noisy(),
            30.0,
            None,
        ),
        (
            "flat",
            EcgScenario::new(hz, 8)
                .sinus(70.0, 30.0)
                .flat(20.0)
                .sinus(70.0, 20.0),
            30.0,
            None,
        ),
        (
            "artefact 4 s, 2 mV",
            EcgScenario::new(hz, 9)
                .sinus(70.0, 60.0)
                .noisy()
                .artefact(30.0, 34.0, 2.0),
            30.0,
            None,
        ),
        (
            "artefact 4 s, 5 mV",
            EcgScenario::new(hz, 9)
                .sinus(70.0, 60.0)
                .noisy()
                .artefact(30.0, 34.0, 5.0),
            30.0,
            None,
        ),
        (
            "pvc 1:25",
            with_pvcs(EcgScenario::new(hz, 10).sinus(70.0, 120.0), 25),
            0.0,
            None,
        ),
        (
            "pvc 1:10 noisy",
            with_pvcs(EcgScenario::new(hz, 11).sinus(70.0, 120.0).noisy(), 10),
            0.0,
            None,
        ),
        (
            "sa 15%",
            with_sa(EcgScenario::new(hz, 12).sinus(65.0, 120.0), 0.15),
            0.0,
            None,
        ),
        (
            "rate step",
            EcgScenario::new(hz, 13)
                .sinus(70.0, 60.0)
                .sinus(110.0, 60.0),
            0.0,
            None,
        ),
        (
            "noisy sinus",
            EcgScenario::new(hz, 14).sinus(70.0, 120.0).noisy(),
            0.0,
            None,
        ),
        (
            "hrv 3%",
            with_hrv(EcgScenario::new(hz, 15).sinus(70.0, 120.0), 0.03),
            0.0,
            None,
        ),
    ];
    for (name, scn, onset, expect) in cases {
        let e = generate(&scn);
        let (states, n) = run_detected(&e.samples, hz, 50);
        let first = |f: fn(&RhythmState) -> bool| states.iter().find(|s| f(s)).map(|s| secs(&e, s));
        println!(
            "{name:20} beats {n}/{} | first asystole {:?} vf {:?} vt {:?} af {:?} pause {:?} | not-Good s {}",
            e.beats.len(),
            first(|s| s.asystole),
            first(vf),
            first(vt),
            first(af),
            first(|s| s.pause),
            states.iter().filter(|s| s.quality != Quality::Good).count()
        );
        match expect {
            Some((flag, within)) => {
                let t = first(flag).unwrap_or(f64::INFINITY) - onset;
                assert!(
                    (0.0..=within).contains(&t),
                    "{name}: first flag {t} s after onset"
                );
                // Nothing else lethal before or alongside.
                for st in &states {
                    let others = [st.asystole, st.vf, st.vt, st.af]
                        .iter()
                        .filter(|&&b| b)
                        .count();
                    assert!(others <= 1, "{name}: {st:?}");
                    assert!(
                        secs(&e, st) > onset || !any_flag(st),
                        "{name}: early {st:?}"
                    );
                }
            }
            None => {
                for st in &states {
                    assert!(!st.vf && !st.vt && !st.af && !st.asystole, "{name}: {st:?}");
                    // A pause is acceptable only where the signal was interrupted.
                    assert!(!st.pause, "{name}: {st:?}");
                }
            }
        }
    }
}

#[test]
fn with_the_detector_the_real_records_raise_no_false_lethal_alarm() {
    for (name, path, hz) in [
        (
            "MIT-BIH 100",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../shared/data/ecg/mitdb-100-mlii-360hz.txt"
            ),
            360,
        ),
        (
            "a103l (false asystole)",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../shared/data/ecg/challenge2015-a103l-ii-250hz.txt"
            ),
            250,
        ),
        (
            "v102s (false VT)",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../shared/data/ecg/challenge2015-v102s-ii-250hz.txt"
            ),
            250,
        ),
    ] {
        let x = read_mv(path);
        let (states, n) = run_detected(&x, hz, 200);
        println!("{name}: {n} beats; {}", summary(&states));
        let alarm: Vec<RhythmState> = states
            .iter()
            .copied()
            .filter(|s| (270..=300).contains(&(s.at_sample / u64::from(hz))))
            .collect();
        if hz == 250 {
            println!("{name} 4:30-5:00: {}", summary(&alarm));
        }
        if std::env::var("DUMP").is_ok() && hz == 250 {
            let mut det = qrs::QrsDetector::new(hz);
            let mut found = Vec::new();
            det.push(&x, &mut found);
            for w in found
                .windows(2)
                .filter(|w| w[1].sample >= 270 * 250 && w[1].sample < 290 * 250)
            {
                println!(
                    "  {:.2} {:?} rr {:.0} ms qrs {:.0} amp {:.2}",
                    w[1].sample as f64 / 250.0,
                    w[1].kind,
                    (w[1].sample - w[0].sample) as f64 * 4.0,
                    w[1].qrs_ms,
                    w[1].amplitude_mv
                );
            }
        }
        if name == "MIT-BIH 100" {
            assert!(states
                .iter()
                .all(|s| !s.vf && !s.vt && !s.af && !s.asystole));
        } else {
            // The Challenge alarms were false: no asystole, VT or VF there.
            assert!(
                alarm.iter().all(|s| !s.vf && !s.vt && !s.asystole),
                "{name}"
            );
        }
    }
}

#[test]
fn over_fifteen_seeds_no_negative_rhythm_raises_a_flag_and_vf_is_found_within_ten_seconds() {
    let hz = 250;
    let mut vf_lat: Vec<f64> = Vec::new();
    let mut false_flags: std::collections::BTreeMap<String, usize> = Default::default();
    for seed in 1..16u64 {
        let e = generate(
            &EcgScenario::new(hz, seed)
                .sinus(60.0 + seed as f64 * 5.0, 20.0)
                .vf(20.0)
                .noisy(),
        );
        for (tag, states) in [
            ("truth", run(&e)),
            ("detector", run_detected(&e.samples, hz, 50).0),
        ] {
            let t = states
                .iter()
                .find(|s| s.vf)
                .map_or(99.0, |s| secs(&e, s) - 20.0);
            vf_lat.push(t);
            if t > 10.0 {
                println!("VF late {tag} seed {seed}: {t}");
            }
        }
        let mut negs: Vec<(String, EcgScenario)> = vec![
            (
                "af150 noisy".into(),
                EcgScenario::new(hz, seed).af(150.0, 60.0).noisy(),
            ),
            ("af90".into(), EcgScenario::new(hz, seed).af(90.0, 60.0)),
            (
                "sinus200 noisy".into(),
                EcgScenario::new(hz, seed).sinus(200.0, 60.0).noisy(),
            ),
            ("vt200".into(), EcgScenario::new(hz, seed).vt(200.0, 60.0)),
            (
                "vt130 noisy".into(),
                EcgScenario::new(hz, seed).vt(130.0, 60.0).noisy(),
            ),
            (
                "bigeminy noisy".into(),
                with_pvcs(EcgScenario::new(hz, seed).sinus(80.0, 60.0).noisy(), 2),
            ),
            (
                "sa15 50bpm".into(),
                with_sa(EcgScenario::new(hz, seed).sinus(50.0, 90.0), 0.15),
            ),
            (
                "artefact 3mV".into(),
                EcgScenario::new(hz, seed)
                    .sinus(70.0, 40.0)
                    .artefact(15.0, 19.0, 3.0),
            ),
            (
                "artefact 1mV".into(),
                EcgScenario::new(hz, seed)
                    .sinus(70.0, 40.0)
                    .artefact(15.0, 19.0, 1.0),
            ),
        ];
        let mut tall = EcgScenario::new(hz, seed).sinus(150.0, 60.0);
        tall.t_ratio = 1.1;
        negs.push(("tallT150".into(), tall));
        for (name, scn) in negs {
            let e = generate(&scn);
            for (tag, states) in [
                ("truth", run(&e)),
                ("detector", run_detected(&e.samples, hz, 50).0),
            ] {
                for st in &states {
                    let flags = [
                        ("vf", st.vf),
                        ("af", st.af && !name.starts_with("af")),
                        ("asys", st.asystole),
                        ("pause", st.pause),
                        ("vt", st.vt && !name.starts_with("vt")),
                    ];
                    for (f, on) in flags {
                        if on {
                            *false_flags.entry(format!("{name} {tag} {f}")).or_default() += 1;
                        }
                    }
                }
                if name.starts_with("vt") && !states.iter().any(|s| s.vt) {
                    *false_flags
                        .entry(format!("{name} {tag} VT MISSED"))
                        .or_default() += 1;
                }
                if name.starts_with("af")
                    && states.iter().filter(|s| s.af).count() < states.len() / 2
                {
                    *false_flags
                        .entry(format!("{name} {tag} AF MOSTLY MISSED"))
                        .or_default() += 1;
                }
            }
        }
    }
    vf_lat.sort_by(f64::total_cmp);
    println!(
        "VF latency over {} runs: min {} median {} max {}",
        vf_lat.len(),
        vf_lat[0],
        vf_lat[vf_lat.len() / 2],
        vf_lat[vf_lat.len() - 1]
    );
    for (k, v) in &false_flags {
        println!("{k}: {v} s");
    }
    assert!(vf_lat[vf_lat.len() - 1] <= 10.0);
    assert!(false_flags.is_empty(), "{false_flags:?}");
}
