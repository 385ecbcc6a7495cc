//! The monitoring path end to end, as pure code: generated ECG through the
//! analysis (detector, quality, rhythm) into the alarm engine, one-second
//! chunks as a device sends them. What a clinician would be told, case by
//! case.

use super::*;
use crate::actors::device::alarms::{
    AlarmChange, AlarmEngine, AlarmKind, AlarmSettings, Category, Priority, Signal,
};
use crate::synthetic::ecg::{generate, EcgScenario, GeneratedEcg};

const T0: u64 = 1_800_000_000_000;

/// Raised alarms as (seconds into the recording, kind, priority).
fn raised(e: &GeneratedEcg) -> Vec<(f64, AlarmKind, Priority)> {
    let mut analyzer = EcgAnalyzer::new(e.hz, RhythmSettings::default());
    let mut engine = AlarmEngine::new(AlarmSettings::default());
    let mut out = Vec::new();
    for chunk in e.samples.chunks(e.hz as usize) {
        let mut o = EcgOutput::default();
        analyzer.push(chunk, &mut o);
        for state in &o.states {
            let at = T0 + state.at_sample * 1000 / e.hz as u64;
            let mut changes = engine.observe(&state.observation(at));
            if let Some(bpm) = state.hr_bpm {
                changes.extend(engine.observe(
                    &crate::actors::device::alarms::Observation::Reading {
                        signal: Signal::EcgHeartRate,
                        at_ms: at,
                        value: bpm,
                    },
                ));
            }
            for c in changes {
                if let AlarmChange::Raised {
                    key,
                    priority,
                    at_ms,
                    ..
                } = c
                {
                    out.push(((at_ms - T0) as f64 / 1000.0, key.kind, priority));
                }
            }
        }
    }
    out
}

fn physiological(r: &[(f64, AlarmKind, Priority)]) -> Vec<(f64, AlarmKind, Priority)> {
    r.iter()
        .copied()
        .filter(|(_, k, _)| k.category() == Category::Physiological)
        .collect()
}

#[test]
fn asystole_raises_a_high_alarm_within_six_seconds_of_the_last_beat() {
    for (hz, seed) in [(250, 1), (360, 2), (500, 3)] {
        let e = generate(
            &EcgScenario::new(hz, seed)
                .sinus(75.0, 30.0)
                .asystole(20.0)
                .noisy(),
        );
        let last = e.beats.last().unwrap().t;
        let r = raised(&e);
        let lethal: Vec<_> = r.iter().filter(|a| a.1 != AlarmKind::Pause).collect();
        assert_eq!(lethal.len(), 1, "{hz} Hz: {r:?}");
        let (at, kind, priority) = *lethal[0];
        assert_eq!((kind, priority), (AlarmKind::Asystole, Priority::High));
        assert!(
            at - last <= 6.0,
            "{hz} Hz: {:.1} s after the last beat",
            at - last
        );
    }
}

#[test]
fn ventricular_fibrillation_raises_a_high_alarm_within_ten_seconds() {
    for (hz, seed) in [(250, 4), (360, 5), (500, 6)] {
        let e = generate(&EcgScenario::new(hz, seed).sinus(80.0, 30.0).vf(30.0));
        let r = raised(&e);
        let vf = r
            .iter()
            .find(|a| a.1 == AlarmKind::VentricularFibrillation)
            .unwrap_or_else(|| panic!("{hz} Hz: no VF alarm: {r:?}"));
        assert_eq!(vf.2, Priority::High);
        assert!(
            vf.0 - 30.0 <= 10.0,
            "{hz} Hz: VF alarm {:.1} s after onset",
            vf.0 - 30.0
        );
        assert!(
            r.iter().all(|a| a.0 >= 30.0),
            "nothing before the VF: {r:?}"
        );
    }
}

#[test]
fn sustained_ventricular_tachycardia_raises_a_high_alarm() {
    for (hz, seed) in [(250, 7), (360, 8), (500, 9)] {
        let e = generate(&EcgScenario::new(hz, seed).sinus(80.0, 30.0).vt(170.0, 30.0));
        let r = raised(&e);
        let vt = r
            .iter()
            .find(|a| a.1 == AlarmKind::VentricularTachycardia)
            .unwrap_or_else(|| panic!("{hz} Hz: no VT alarm: {r:?}"));
        assert_eq!(vt.2, Priority::High);
        assert!(
            vt.0 >= 30.0 && vt.0 - 30.0 <= 10.0,
            "{hz} Hz: VT at {:.1} s",
            vt.0
        );
        assert!(
            r.iter().all(|a| a.1 != AlarmKind::VentricularFibrillation),
            "VT is not VF: {r:?}"
        );
    }
}

#[test]
fn atrial_fibrillation_lasting_thirty_seconds_or_more_raises_a_rhythm_alarm() {
    for (hz, seed, bpm) in [(250, 10, 90.0), (360, 11, 120.0), (500, 12, 70.0)] {
        let e = generate(&EcgScenario::new(hz, seed).sinus(75.0, 20.0).af(bpm, 90.0));
        let r = physiological(&raised(&e));
        assert!(
            r.iter()
                .any(|a| a.1 == AlarmKind::AtrialFibrillation && a.2 == Priority::Low),
            "{hz} Hz AF {bpm}: {r:?}"
        );
        let af = r
            .iter()
            .find(|a| a.1 == AlarmKind::AtrialFibrillation)
            .unwrap();
        assert!(af.0 >= 20.0 + 30.0, "not before 30 s of AF: {:.1}", af.0);
        assert!(
            r.iter()
                .all(|a| matches!(a.1, AlarmKind::AtrialFibrillation | AlarmKind::Tachycardia)),
            "{hz} Hz AF {bpm}: {r:?}"
        );
    }
}

#[test]
fn a_lead_off_a_flat_line_or_hum_only_is_a_technical_alarm_within_ten_seconds_and_nothing_else() {
    let cases = [
        (
            "lead off",
            EcgScenario::new(250, 13).sinus(75.0, 20.0).lead_off(30.0),
        ),
        (
            "flat",
            EcgScenario::new(360, 14).sinus(75.0, 20.0).flat(30.0),
        ),
        (
            "hum only",
            EcgScenario::new(500, 15)
                .sinus(75.0, 20.0)
                .flat(30.0)
                .hum(0.3, 60.0),
        ),
    ];
    for (what, scenario) in cases {
        let r = raised(&generate(&scenario));
        assert!(physiological(&r).is_empty(), "{what}: {r:?}");
        let technical: Vec<_> = r.iter().filter(|a| a.0 >= 20.0).collect();
        assert_eq!(technical.len(), 1, "{what}: {r:?}");
        assert!(technical[0].0 - 20.0 <= 10.0, "{what}: {:?}", technical[0]);
    }
}

#[test]
fn ordinary_rhythms_and_a_short_artefact_raise_no_rhythm_alarm() {
    let mut pvcs = EcgScenario::new(250, 16).sinus(75.0, 180.0).noisy();
    pvcs.pvc_every = Some(25);
    let mut arrhythmia = EcgScenario::new(360, 17).sinus(75.0, 180.0);
    arrhythmia.sinus_arrhythmia = 0.15;
    let cases = [
        ("isolated PVCs, 1 in 25", pvcs),
        ("sinus arrhythmia ±15 %", arrhythmia),
        (
            "a 4 s motion artefact",
            EcgScenario::new(500, 18)
                .sinus(75.0, 180.0)
                .artefact(60.0, 64.0, 3.0),
        ),
        (
            "a rate step 70 → 110",
            EcgScenario::new(250, 19)
                .sinus(70.0, 90.0)
                .sinus(110.0, 90.0),
        ),
    ];
    for (what, scenario) in cases {
        let r = raised(&generate(&scenario));
        assert!(physiological(&r).is_empty(), "{what}: {r:?}");
    }
}
