//! Property tests of the alarm engine over random series (proptest).

use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

const T0: u64 = 1_700_000_000_000;

#[derive(Debug, Clone)]
enum Op {
    Obs(Observation),
    Tick(u64),
    Ack(AlarmKey, u64),
    Pause(u64, u64),
    Resume(u64),
}

fn apply(e: &mut AlarmEngine, op: &Op) -> Vec<AlarmChange> {
    match op {
        Op::Obs(o) => e.observe(o),
        Op::Tick(t) => e.tick(*t),
        Op::Ack(k, t) => {
            e.acknowledge(*k, *t);
            Vec::new()
        }
        Op::Pause(now, until) => {
            let _ = e.pause(*now, *until);
            Vec::new()
        }
        Op::Resume(t) => e.resume(*t),
    }
}

/// A stretch of a mixed series: each signal sits at a base value (in some band of
/// the rules) and the rhythm flags hold, so sustained conditions actually occur.
#[derive(Debug, Clone)]
struct Regime {
    hr: f64,
    pulse: f64,
    spo2: f64,
    systolic: f64,
    diastolic: f64,
    flags: [bool; 7],
    pvc: f64,
}

fn regime() -> impl Strategy<Value = Regime> {
    let hr = || {
        prop::sample::select(vec![
            25.0, 33.0, 38.0, 43.0, 75.0, 117.0, 130.0, 175.0, 195.0,
        ])
    };
    (
        hr(),
        hr(),
        prop::sample::select(vec![75.0, 84.0, 86.5, 89.0, 91.0, 97.0]),
        prop::sample::select(vec![120.0, 175.0, 190.0]),
        prop::sample::select(vec![70.0, 115.0, 125.0]),
        prop::array::uniform7(prop::bool::weighted(0.2)),
        prop::sample::select(vec![0.0, 8.0, 14.0]),
    )
        .prop_map(
            |(hr, pulse, spo2, systolic, diastolic, flags, pvc)| Regime {
                hr,
                pulse,
                spo2,
                systolic,
                diastolic,
                flags,
                pvc,
            },
        )
}

/// One step: (time advance, action 0..100, jitter, stray flip, extra).
type RawStep = (u64, u8, f64, bool, u64);

fn raw_step() -> impl Strategy<Value = RawStep> {
    let dt = prop_oneof![40 => 0..1_500u64, 4 => 0..12_000u64, 1 => 0..90_000u64];
    (
        dt,
        0..100u8,
        -6.0..6.0f64,
        prop::bool::weighted(0.05),
        0..40 * 60_000u64,
    )
}

/// A mixed series over all signals, the rhythm, late readings, ticks,
/// acknowledgements and audio pauses.
fn mixed() -> impl Strategy<Value = Vec<Op>> {
    let segment = (regime(), prop::collection::vec(raw_step(), 1..400));
    prop::collection::vec(segment, 1..6).prop_map(|segments| {
        let mut t = T0;
        let mut ops = Vec::new();
        for (r, steps) in segments {
            for (dt, action, jitter, stray, extra) in steps {
                t += dt;
                let read = |signal, value: f64| {
                    Op::Obs(Observation::Reading {
                        signal,
                        at_ms: t,
                        value: value + jitter,
                    })
                };
                let f: [bool; 7] = r.flags.map(|x| x ^ stray);
                ops.push(match action {
                    0..=19 => read(Signal::EcgHeartRate, r.hr),
                    20..=31 => read(Signal::PulseRate, r.pulse),
                    32..=43 => read(Signal::Spo2, r.spo2 + jitter / 3.0 - jitter),
                    44..=46 => read(Signal::Systolic, r.systolic),
                    47..=49 => read(Signal::Diastolic, r.diastolic),
                    50..=79 => Op::Obs(Observation::Rhythm {
                        at_ms: t,
                        quality_ok: !(f[0] && f[1]),
                        lead_off: f[0] && f[1] && f[2],
                        asystole: f[2] && f[3],
                        pause: f[3],
                        vf: f[4] && f[5] && f[6],
                        vt: f[4] && f[5],
                        af: f[6],
                        pvc_per_min: (r.pvc + jitter).max(0.0),
                    }),
                    80..=82 => Op::Obs(Observation::Reading {
                        signal: Signal::Spo2,
                        at_ms: t.saturating_sub(extra % 30_000),
                        value: 60.0,
                    }),
                    // Mostly the actor's timer (just ahead); sometimes a long silence.
                    83..=91 if extra % 8 == 0 => Op::Tick(t + extra % 200_000),
                    83..=91 => Op::Tick(t + extra % 3_000),
                    92..=95 => {
                        let i = (extra as usize) % (SLOTS.len() + 2);
                        let key = match i {
                            i if i < SLOTS.len() => SLOTS[i],
                            i if i == SLOTS.len() => HYPERTENSIVE,
                            _ => NO_DATA,
                        };
                        Op::Ack(key, t)
                    }
                    96..=97 => Op::Pause(t, t + 1 + extra),
                    _ => Op::Resume(t),
                });
            }
        }
        ops
    })
}

/// The mixed series must exercise every kind, or the properties prove little.
#[test]
fn the_mixed_series_raise_every_kind_of_alarm() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut seen = BTreeSet::new();
    let mut reasons = BTreeSet::new();
    let mut other = BTreeSet::new();
    for _ in 0..400 {
        let ops = mixed().new_tree(&mut runner).unwrap().current();
        let mut e = AlarmEngine::new(AlarmSettings::default());
        for op in &ops {
            for c in apply(&mut e, op) {
                match c {
                    AlarmChange::Raised { key, .. } => {
                        seen.insert(key.kind.as_str());
                    }
                    AlarmChange::Resolved { reason, .. } => {
                        reasons.insert(format!("{reason:?}"));
                    }
                    AlarmChange::Reannounced { .. } => {
                        other.insert("reannounced");
                    }
                    AlarmChange::Escalated { .. } => {
                        other.insert("escalated");
                    }
                    AlarmChange::Announced { .. } => {
                        other.insert("announced");
                    }
                }
            }
        }
    }
    let missing: Vec<_> = AlarmKind::ALL
        .iter()
        .map(|k| k.as_str())
        .filter(|k| !seen.contains(k))
        .collect();
    assert!(missing.is_empty(), "never raised: {missing:?}");
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert_eq!(
        other.len(),
        3,
        "reannounced, escalated, announced: {other:?}"
    );
}

/// HR segments: a base value with jitter, readings 0–12 s apart, 0–150 s between
/// segments. Bases sit in every band of the HR rules.
fn hr_series() -> impl Strategy<Value = Vec<(u64, f64)>> {
    let bases = vec![
        25.0, 32.0, 38.0, 43.0, 60.0, 90.0, 117.0, 125.0, 150.0, 175.0, 190.0,
    ];
    let segment = (
        prop::sample::select(bases),
        0..=12_000u64,
        0..150_000u64,
        prop::collection::vec(-8.0..8.0f64, 1..100),
    );
    prop::collection::vec(segment, 1..12).prop_map(|segs| {
        let mut t = T0;
        let mut out = Vec::new();
        for (base, gap, pause, jitter) in segs {
            t += pause;
            for j in jitter {
                t += gap;
                out.push((t, base + j));
            }
        }
        out
    })
}

fn family(kind: AlarmKind) -> Option<u8> {
    use AlarmKind::*;
    match kind {
        Asystole | VentricularFibrillation | VentricularTachycardia => Some(0),
        ExtremeTachycardia | ExtremeBradycardia | Tachycardia | Bradycardia => Some(1),
        SevereLowSpo2 | LowSpo2 => Some(2),
        EcgLeadOff | EcgPoorSignal => Some(3),
        _ => None,
    }
}

/// Checks the change log's consistency; returns the shown set after each op.
fn check_log(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut e = AlarmEngine::new(AlarmSettings::default());
    let mut shown: BTreeSet<AlarmKey> = BTreeSet::new();
    let mut reannounced = BTreeSet::new();
    let mut escalated = BTreeSet::new();
    // Raised unannounced during a pause: announced when it ends.
    let mut quiet: BTreeSet<AlarmKey> = BTreeSet::new();
    let mut paused_until: Option<u64> = None;
    for op in ops {
        // A pause ends when resumed, or at a tick from its end on.
        let pause_ends = match op {
            Op::Resume(_) => true,
            Op::Tick(t) => paused_until.is_some_and(|u| *t >= u),
            _ => false,
        };
        match op {
            Op::Pause(now, until) if until - now <= 30 * 60_000 => paused_until = Some(*until),
            Op::Resume(_) => paused_until = None,
            _ => {}
        }
        let deadline = e.next_deadline();
        let changes = apply(&mut e, op);
        // The actor's timer: tick has work exactly from next_deadline on.
        if let Op::Tick(t) = op {
            let due = deadline.is_some_and(|d| *t >= d);
            prop_assert_eq!(!changes.is_empty(), due, "deadline {:?}", deadline);
        }
        for c in changes {
            match c {
                AlarmChange::Raised {
                    key,
                    priority,
                    at_ms,
                    announce,
                    since_ms,
                    ..
                } => {
                    prop_assert!(shown.insert(key), "Raised twice without Resolved: {key:?}");
                    reannounced.remove(&key);
                    escalated.remove(&key);
                    prop_assert!(since_ms <= at_ms);
                    let paused = paused_until.is_some_and(|u| at_ms < u);
                    prop_assert_eq!(announce, priority == Priority::High || !paused);
                    if !announce {
                        quiet.insert(key);
                    }
                }
                AlarmChange::Resolved { key, .. } => {
                    prop_assert!(shown.remove(&key), "Resolved but not shown: {key:?}");
                    quiet.remove(&key);
                }
                AlarmChange::Announced { key, .. } => {
                    prop_assert!(shown.contains(&key));
                    prop_assert!(quiet.remove(&key), "announced but not kept quiet: {key:?}");
                }
                AlarmChange::Reannounced { key, .. } => {
                    prop_assert!(shown.contains(&key));
                    prop_assert!(reannounced.insert(key), "reannounced twice");
                }
                AlarmChange::Escalated { key, .. } => {
                    prop_assert!(shown.contains(&key));
                    prop_assert!(escalated.insert(key), "escalated twice");
                }
            }
        }
        if pause_ends {
            paused_until = None;
            prop_assert!(
                quiet.is_empty(),
                "still unannounced after the pause: {quiet:?}"
            );
        }
        let active: BTreeSet<AlarmKey> = e.active().iter().map(|a| a.0).collect();
        prop_assert_eq!(&active, &shown);
        // One alarm per family and source; no HR or pause alarm beside a lethal one.
        let mut seen = BTreeSet::new();
        for k in &shown {
            if let Some(f) = family(k.kind) {
                prop_assert!(seen.insert((f, k.source)), "two of a family: {shown:?}");
            }
        }
        let lethal = shown.iter().any(|k| family(k.kind) == Some(0));
        let hr_or_pause = shown
            .iter()
            .any(|k| family(k.kind) == Some(1) || k.kind == AlarmKind::Pause);
        prop_assert!(!(lethal && hr_or_pause), "{shown:?}");
        // Device no_data stands alone; a silent signal shows nothing but its no_data.
        if shown.contains(&NO_DATA) {
            prop_assert_eq!(shown.len(), 1, "{:?}", shown);
        }
        for k in &shown {
            if k.kind == AlarmKind::NoData && k.source.is_some() {
                let others = shown.iter().filter(|o| o.source == k.source).count();
                prop_assert_eq!(others, 1, "{:?}", shown);
            }
        }
    }
    Ok(())
}

/// (b) for one HR rule: from `since`, in-condition readings no further apart than
/// max_gap reach since + sustain no later than `at` (exactly at `at` for a direct
/// raise, as opposed to a hand-back from a cleared extreme alarm), and the readings
/// between them never exhaust the stray budget.
fn check_covered(
    series: &[(u64, f64)],
    since: u64,
    at: u64,
    direct: bool,
    rule: LevelRule,
    above: bool,
    max_gap: u64,
) -> Result<(), TestCaseError> {
    let cond = |v: f64| {
        if above {
            v > rule.raise
        } else {
            v < rule.raise
        }
    };
    let clear = |v: f64| {
        if above {
            v < rule.resolve
        } else {
            v > rule.resolve
        }
    };
    // The engine ignores a reading not newer than the previous one.
    let mut accepted = Vec::new();
    for &(t, v) in series {
        if accepted.last().is_none_or(|&(lt, _): &(u64, f64)| t > lt) {
            accepted.push((t, v));
        }
    }
    let window: Vec<_> = accepted
        .iter()
        .filter(|(t, _)| *t >= since && *t <= at)
        .collect();
    prop_assert!(
        window.first().is_some_and(|(t, v)| *t == since && cond(*v)),
        "since is not an in-condition reading"
    );
    let mut last_cond = since;
    let mut cost = 0u16;
    for &&(t, v) in &window {
        if cond(v) {
            prop_assert!(t - last_cond <= max_gap, "gap {} ms", t - last_cond);
            last_cond = t;
            cost = cost.saturating_sub(STRAY_REFUND);
            if t - since >= rule.sustain_ms {
                if direct {
                    prop_assert_eq!(t, at, "raised late or early");
                }
                return Ok(());
            }
        } else {
            cost += if clear(v) { STRAY_CLEAR } else { STRAY_BAND };
            prop_assert!(cost < STRAY_BREAK, "stray budget exhausted inside the run");
        }
    }
    prop_assert!(false, "the run never spanned {} ms", rule.sustain_ms);
    Ok(())
}

proptest! {
    /// (a) Raised/Resolved alternate per key, active() mirrors the log, one alarm
    /// per family, re-announce and escalation at most once per episode, announce
    /// follows the audio pause.
    #[test]
    fn the_change_log_is_consistent_for_random_mixed_series(ops in mixed()) {
        check_log(&ops)?;
    }

    /// (b) every raised sustained HR alarm is backed by covered in-condition readings.
    #[test]
    fn a_raised_heart_rate_alarm_is_covered_by_readings_beyond_its_limit(
        series in hr_series()
    ) {
        let s = AlarmSettings::default();
        let mut e = AlarmEngine::new(s.clone());
        for &(t, v) in &series {
            let changes = e.observe(&Observation::Reading {
                signal: Signal::EcgHeartRate,
                at_ms: t,
                value: v,
            });
            let handed_back = changes.iter().any(|c| {
                matches!(c, AlarmChange::Resolved { reason: ResolveReason::Cleared, .. })
            });
            for c in changes {
                if let AlarmChange::Raised { key, since_ms, at_ms, reading, threshold, .. } = c {
                    let (rule, above) = match key.kind {
                        AlarmKind::ExtremeTachycardia => (s.extreme_tachycardia, true),
                        AlarmKind::Tachycardia => (s.tachycardia, true),
                        AlarmKind::ExtremeBradycardia => (s.extreme_bradycardia, false),
                        AlarmKind::Bradycardia => (s.bradycardia, false),
                        other => return Err(TestCaseError::fail(format!("{other:?}"))),
                    };
                    prop_assert_eq!(threshold, Some(rule.raise));
                    let r = reading.unwrap();
                    let beyond = if above { r > rule.raise } else { r < rule.raise };
                    prop_assert!(beyond, "reading {} vs limit {}", r, rule.raise);
                    check_covered(
                        &series, since_ms, at_ms, !handed_back, rule, above, s.max_gap_ms,
                    )?;
                }
            }
        }
    }

    /// (c) with every gap longer than max_gap nothing that needs a sustain raises.
    #[test]
    fn a_series_with_all_gaps_beyond_max_gap_never_raises_a_sustained_kind(
        steps in prop::collection::vec(
            (10_001..400_000u64, 20.0..220.0f64, 60.0..100.0f64, any::<bool>()), 1..300)
    ) {
        let s = AlarmSettings::default();
        let mut e = AlarmEngine::new(s);
        let mut t = T0;
        for (gap, hr, spo2, flag) in steps {
            t += gap;
            let obs = [
                Observation::Reading { signal: Signal::EcgHeartRate, at_ms: t, value: hr },
                Observation::Reading { signal: Signal::PulseRate, at_ms: t, value: hr },
                Observation::Reading { signal: Signal::Spo2, at_ms: t, value: spo2 },
                Observation::Rhythm {
                    at_ms: t, quality_ok: !flag, lead_off: flag, asystole: false,
                    pause: false, vf: false, vt: false, af: flag, pvc_per_min: 30.0,
                },
            ];
            for o in obs {
                for c in e.observe(&o) {
                    if let AlarmChange::Raised { key, .. } = c {
                        prop_assert!(false, "{key:?} raised without coverage");
                    }
                }
            }
        }
    }

    /// (d) a serde_json snapshot taken anywhere restores an equal engine with the
    /// same future changes.
    #[test]
    fn a_snapshot_restored_mid_series_gives_the_same_future(
        ops in mixed(), split in 0.0..1.0f64
    ) {
        let k = ((ops.len() as f64) * split) as usize;
        let mut a = AlarmEngine::new(AlarmSettings::default());
        for op in &ops[..k] {
            apply(&mut a, op);
        }
        let json = serde_json::to_string(&a).unwrap();
        let mut b: AlarmEngine = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&a, &b);
        for op in &ops[k..] {
            prop_assert_eq!(apply(&mut a, op), apply(&mut b, op));
        }
        prop_assert_eq!(a, b);
    }

    /// (e) output does not depend on how the run is split: cloning at random points
    /// and continuing, and repeating a tick at the same time, change nothing.
    #[test]
    fn output_is_independent_of_how_the_series_is_split(
        ops in mixed(), cuts in prop::collection::vec(0.0..1.0f64, 0..5)
    ) {
        let mut straight = AlarmEngine::new(AlarmSettings::default());
        let reference: Vec<Vec<AlarmChange>> =
            ops.iter().map(|op| apply(&mut straight, op)).collect();
        let cut_at: BTreeSet<usize> =
            cuts.iter().map(|c| (c * ops.len() as f64) as usize).collect();
        let mut e = AlarmEngine::new(AlarmSettings::default());
        for (i, op) in ops.iter().enumerate() {
            if cut_at.contains(&i) {
                e = e.clone();
            }
            prop_assert_eq!(&apply(&mut e, op), &reference[i]);
            if let Op::Tick(t) = op {
                prop_assert_eq!(e.tick(*t), Vec::new(), "a repeated tick did something");
            }
        }
    }
}
