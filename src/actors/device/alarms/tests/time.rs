//! The alarm engine over time: silence (no data), re-announcement and
//! escalation, acknowledgement, pause, blood pressure, settings and snapshots.

use super::*;

#[test]
fn no_data_ends_open_alarms_and_takes_high_priority_when_a_high_one_was_open() {
    let mut e = engine();
    let obs = (0..61).flat_map(|i| {
        [
            ecg(T0 + i * S, 130.0),
            reading(Signal::Spo2, T0 + i * S, 80.0),
        ]
    });
    feed(&mut e, obs);
    assert_eq!(e.active().len(), 2);
    let last = T0 + 60 * S;
    // Next: severe_low_spo2 (high, raised at 10 s) is re-announced at 70 s.
    assert_eq!(e.next_deadline(), Some(T0 + 70 * S));
    assert_eq!(
        e.tick(T0 + 70 * S),
        vec![AlarmChange::Reannounced {
            key: key(AlarmKind::SevereLowSpo2, Some(Signal::Spo2)),
            at_ms: T0 + 70 * S
        }]
    );
    assert_eq!(e.next_deadline(), Some(last + 30 * S));
    assert!(e.tick(last + 30 * S - 1).is_empty());
    let c = e.tick(last + 30 * S);
    let mut r = resolved(&c);
    r.sort_by_key(|x| x.0);
    assert_eq!(
        r,
        vec![
            (
                key(AlarmKind::Tachycardia, ECG),
                last + 30 * S,
                ResolveReason::NoData
            ),
            (
                key(AlarmKind::SevereLowSpo2, Some(Signal::Spo2)),
                last + 30 * S,
                ResolveReason::NoData
            ),
        ]
    );
    assert!(c.contains(&AlarmChange::Raised {
        key: key(AlarmKind::NoData, None),
        priority: Priority::High,
        since_ms: last,
        at_ms: last + 30 * S,
        reading: None,
        threshold: None,
        announce: true,
    }));
    assert_eq!(e.active().len(), 1);
    // Data again resolves no_data, and nothing old comes back: 130 must sustain anew.
    let t2 = last + 100 * S;
    let c = feed(&mut e, hr_run(t2, t2 + 30 * S, 130.0));
    assert_eq!(
        resolved(&c),
        vec![(key(AlarmKind::NoData, None), t2, ResolveReason::Cleared)]
    );
    assert!(raised(&c).is_empty());
}

#[test]
fn no_data_is_medium_when_no_high_alarm_was_open_and_never_for_a_silent_device() {
    let mut e = engine();
    assert!(e.tick(T0).is_empty());
    assert_eq!(e.next_deadline(), None);
    e.observe(&ecg(T0, 80.0));
    let c = e.tick(T0 + 30 * S);
    assert_eq!(
        c,
        vec![AlarmChange::Raised {
            key: key(AlarmKind::NoData, None),
            priority: Priority::Medium,
            since_ms: T0,
            at_ms: T0 + 30 * S,
            reading: None,
            threshold: None,
            announce: true,
        }]
    );
    assert!(e.tick(T0 + 90 * S).is_empty(), "raised once per silence");
}

#[test]
fn a_blood_pressure_cuff_reading_every_few_minutes_is_never_silent() {
    // Blood pressure is sparse by nature: a cuff alone never raises no_data,
    // and its readings do not count as a continuous stream's either.
    let mut e = engine();
    for i in 0..4 {
        let at = T0 + i * 15 * 60 * S;
        e.observe(&reading(Signal::Systolic, at, 125.0));
        e.observe(&reading(Signal::Diastolic, at, 80.0));
        assert!(e.tick(at + 14 * 60 * S).is_empty());
    }
    assert_eq!(e.next_deadline(), None);
    // A pulse rate after it is a continuous stream: its silence counts.
    e.observe(&reading(Signal::PulseRate, T0 + 3_600 * S, 70.0));
    assert_eq!(e.next_deadline(), Some(T0 + 3_630 * S));
}

#[test]
fn an_alarm_a_pause_kept_quiet_is_announced_when_the_pause_ends() {
    // Ended by time: the tick at the pause's end announces it.
    let mut e = engine();
    let until = T0 + 5 * 60 * S;
    e.pause(T0, until).unwrap();
    let c = feed(&mut e, hr_run(T0, T0 + 61 * S, 130.0));
    assert!(matches!(
        c[..],
        [AlarmChange::Raised {
            announce: false,
            priority: Priority::Medium,
            ..
        }]
    ));
    feed(&mut e, hr_run(T0 + 61 * S, until + S, 130.0));
    assert_eq!(e.next_deadline(), Some(until));
    assert_eq!(
        e.tick(until),
        vec![AlarmChange::Announced {
            key: key(AlarmKind::Tachycardia, Some(Signal::EcgHeartRate)),
            priority: Priority::Medium,
            at_ms: until,
        }]
    );
    assert!(e.tick(until + S).is_empty(), "announced once");
    // Ended by a clinician: resume announces it at once.
    let mut e = engine();
    e.pause(T0, until).unwrap();
    feed(&mut e, hr_run(T0, T0 + 61 * S, 130.0));
    assert!(matches!(
        e.resume(T0 + 70 * S)[..],
        [AlarmChange::Announced { at_ms, .. }] if at_ms == T0 + 70 * S
    ));
    // An alarm that ended during the pause is not announced afterwards.
    let mut e = engine();
    e.pause(T0, until).unwrap();
    feed(&mut e, hr_run(T0, T0 + 61 * S, 130.0));
    feed(&mut e, hr_run(T0 + 61 * S, T0 + 120 * S, 80.0));
    assert!(e.active().is_empty());
    assert!(e.resume(T0 + 130 * S).is_empty());
}

#[test]
fn an_unacknowledged_high_alarm_is_reannounced_at_60_s_and_escalated_at_120_s_once_each() {
    let mut e = engine();
    let k = key(AlarmKind::Asystole, None);
    let obs = (0..200).map(|i| asystole(T0 + i * S, true));
    let mut all = Vec::new();
    for o in obs {
        all.extend(e.observe(&o));
        all.extend(e.tick(o.at_ms()));
    }
    let later: Vec<_> = all
        .iter()
        .filter(|c| !matches!(c, AlarmChange::Raised { .. }))
        .copied()
        .collect();
    assert_eq!(
        later,
        vec![
            AlarmChange::Reannounced {
                key: k,
                at_ms: T0 + 60 * S
            },
            AlarmChange::Escalated {
                key: k,
                at_ms: T0 + 120 * S
            },
        ]
    );
}

#[test]
fn acknowledging_stops_escalation_but_does_not_resolve() {
    let mut e = engine();
    let k = key(AlarmKind::Asystole, None);
    e.observe(&asystole(T0, true));
    assert_eq!(e.next_deadline(), Some(T0 + 30 * S), "no data comes first");
    e.observe(&asystole(T0 + 29 * S, true));
    assert_eq!(e.next_deadline(), Some(T0 + 59 * S));
    assert!(e.acknowledge(k, T0 + 10 * S));
    assert!(!e.acknowledge(key(AlarmKind::Pause, None), T0 + 10 * S));
    for i in 30..200 {
        let o = asystole(T0 + i * S, true);
        assert!(e.observe(&o).is_empty());
        assert!(e.tick(T0 + i * S).is_empty());
    }
    assert_eq!(e.active(), vec![(k, Priority::High, T0 - S)]);
}

#[test]
fn medium_alarms_are_neither_reannounced_nor_escalated() {
    let mut e = engine();
    let mut all = Vec::new();
    for o in hr_run(T0, T0 + 400 * S, 130.0) {
        all.extend(e.observe(&o));
        all.extend(e.tick(o.at_ms()));
    }
    assert_eq!(all.len(), 1, "{all:?}");
}

#[test]
fn audio_pause_silences_non_high_alarms_only_and_is_bounded() {
    let mut e = engine();
    assert_eq!(
        e.pause(T0, T0 + 31 * 60 * S),
        Err(PauseError::TooLong {
            max_ms: 30 * 60 * S
        })
    );
    assert_eq!(e.pause(T0, T0), Err(PauseError::NotInFuture));
    assert_eq!(e.pause(T0, T0 + 10 * 60 * S), Ok(()));
    let c = feed(&mut e, hr_run(T0, T0 + 61 * S, 130.0));
    assert!(matches!(
        c[..],
        [AlarmChange::Raised {
            announce: false,
            ..
        }]
    ));
    let c = e.observe(&asystole(T0 + 70 * S, true));
    assert!(c.contains(&AlarmChange::Raised {
        key: key(AlarmKind::Asystole, None),
        priority: Priority::High,
        since_ms: T0 + 69 * S,
        at_ms: T0 + 70 * S,
        reading: None,
        threshold: None,
        announce: true,
    }));
    // The pause ends by itself at until_ms.
    let t = T0 + 10 * 60 * S;
    let c = feed(
        &mut e,
        (0..61).map(|i| reading(Signal::Spo2, t + i * S, 89.0)),
    );
    assert!(matches!(
        c[..],
        [AlarmChange::Raised { announce: true, .. }]
    ));
    // resume() ends it early.
    let mut e = engine();
    e.pause(T0, T0 + 10 * 60 * S).unwrap();
    assert!(e.resume(T0).is_empty(), "nothing was kept quiet");
    let c = feed(&mut e, hr_run(T0, T0 + 61 * S, 130.0));
    assert!(matches!(
        c[..],
        [AlarmChange::Raised { announce: true, .. }]
    ));
}

#[test]
fn one_crisis_blood_pressure_reading_raises_and_a_normal_pair_resolves() {
    let bp = key(AlarmKind::HypertensiveCrisis, None);
    let mut e = engine();
    let c = feed(
        &mut e,
        [
            reading(Signal::Systolic, T0, 185.0),
            reading(Signal::Diastolic, T0, 100.0),
        ],
    );
    assert_eq!(
        c,
        vec![AlarmChange::Raised {
            key: bp,
            priority: Priority::Medium,
            since_ms: T0,
            at_ms: T0,
            reading: Some(185.0),
            threshold: Some(180.0),
            announce: true,
        }]
    );
    let t1 = T0 + 900 * S;
    assert!(e.observe(&reading(Signal::Systolic, t1, 175.0)).is_empty());
    let t2 = t1 + 900 * S;
    let c = e.observe(&reading(Signal::Systolic, t2, 160.0));
    assert_eq!(resolved(&c), vec![(bp, t2, ResolveReason::Cleared)]);
    // Diastolic crisis: a normal systolic alone does not resolve it.
    let t3 = t2 + 900 * S;
    let c = feed(
        &mut e,
        [
            reading(Signal::Systolic, t3, 150.0),
            reading(Signal::Diastolic, t3, 125.0),
        ],
    );
    assert_eq!(raised(&c), vec![(bp, t3, t3)]);
    let t4 = t3 + 900 * S;
    assert!(e.observe(&reading(Signal::Systolic, t4, 140.0)).is_empty());
    let c = e.observe(&reading(Signal::Diastolic, t4, 100.0));
    assert_eq!(resolved(&c), vec![(bp, t4, ResolveReason::Cleared)]);
}

#[test]
fn settings_validation_rejects_inverted_hysteresis_and_inverted_limits() {
    assert_eq!(AlarmSettings::default().validate(), Ok(()));
    let mut s = AlarmSettings::default();
    s.tachycardia.resolve = 125.0;
    assert!(s.validate().is_err());
    let mut s = AlarmSettings::default();
    s.low_spo2.resolve = 88.0;
    assert!(s.validate().is_err());
    let mut s = AlarmSettings::default();
    s.extreme_tachycardia.raise = 110.0;
    s.extreme_tachycardia.resolve = 100.0;
    assert!(s.validate().is_err());
    let mut s = AlarmSettings::default();
    s.bradycardia.raise = f64::NAN;
    assert!(s.validate().is_err());
    let s = AlarmSettings {
        no_data_ms: 5_000,
        ..AlarmSettings::default()
    };
    assert!(s.validate().is_err());
    let json = serde_json::to_string(&AlarmSettings::default()).unwrap();
    let back: AlarmSettings = serde_json::from_str(&json).unwrap();
    assert_eq!(back, AlarmSettings::default());
}

#[test]
fn new_limits_rejudge_an_open_episode_and_a_disabled_rule_resolves() {
    let tachy = key(AlarmKind::Tachycardia, ECG);
    let mut e = engine();
    feed(&mut e, hr_run(T0, T0 + 61 * S, 130.0));
    let mut s = AlarmSettings::default();
    s.tachycardia.raise = 140.0;
    s.tachycardia.resolve = 135.0;
    s.extreme_tachycardia.raise = 190.0;
    e.set_settings(s);
    let t1 = T0 + 61 * S;
    let c = feed(&mut e, hr_run(t1, t1 + 31 * S, 130.0));
    assert_eq!(
        resolved(&c),
        vec![(tachy, t1 + 30 * S, ResolveReason::Cleared)]
    );

    let mut e = engine();
    feed(&mut e, hr_run(T0, T0 + 61 * S, 130.0));
    let mut s = AlarmSettings::default();
    s.tachycardia.enabled = false;
    e.set_settings(s);
    let c = e.tick(T0 + 61 * S);
    assert_eq!(
        resolved(&c),
        vec![(tachy, T0 + 61 * S, ResolveReason::Cleared)]
    );
}

#[test]
fn names_match_their_serde_form_and_categories_are_right() {
    for k in AlarmKind::ALL {
        assert_eq!(
            serde_json::to_string(&k).unwrap(),
            format!("\"{}\"", k.as_str())
        );
        let technical = matches!(
            k,
            AlarmKind::EcgLeadOff | AlarmKind::EcgPoorSignal | AlarmKind::NoData
        );
        assert_eq!(k.category() == Category::Technical, technical);
    }
    assert!(Priority::High > Priority::Medium && Priority::Medium > Priority::Low);
}

#[test]
fn a_silent_spo2_probe_ends_its_alarm_while_the_ecg_goes_on() {
    let spo2 = Some(Signal::Spo2);
    let mut e = engine();
    let obs = (0..20).flat_map(|i| {
        [
            ecg(T0 + i * S, 80.0),
            reading(Signal::Spo2, T0 + i * S, 80.0),
        ]
    });
    let mut c = feed(&mut e, obs);
    let last_spo2 = T0 + 19 * S;
    // The probe falls off: ECG HR continues, ticked every second.
    for i in 20..60 {
        c.extend(e.observe(&ecg(T0 + i * S, 80.0)));
        if i == 48 {
            assert_eq!(e.next_deadline(), Some(last_spo2 + 30 * S));
        }
        c.extend(e.tick(T0 + i * S));
    }
    assert_eq!(
        resolved(&c),
        vec![(
            key(AlarmKind::SevereLowSpo2, spo2),
            last_spo2 + 30 * S,
            ResolveReason::NoData
        )]
    );
    assert!(c.contains(&AlarmChange::Raised {
        key: key(AlarmKind::NoData, spo2),
        priority: Priority::High,
        since_ms: last_spo2,
        at_ms: last_spo2 + 30 * S,
        reading: None,
        threshold: None,
        announce: true,
    }));
    // The probe is back: its no_data clears; 80 % must sustain again before alarming.
    let t = T0 + 60 * S;
    let c = e.observe(&reading(Signal::Spo2, t, 80.0));
    assert_eq!(
        resolved(&c),
        vec![(key(AlarmKind::NoData, spo2), t, ResolveReason::Cleared)]
    );
    assert!(raised(&c).is_empty());
    // Then the whole device goes silent: one device no_data, the signal's is gone.
    let c = e.tick(t + 30 * S);
    assert_eq!(
        raised(&c),
        vec![(key(AlarmKind::NoData, None), t, t + 30 * S)]
    );
    assert_eq!(e.active().len(), 1);
}

#[test]
fn a_device_sending_only_nan_goes_to_no_data() {
    let mut e = engine();
    e.observe(&reading(Signal::Spo2, T0, 97.0));
    for i in 1..=30 {
        assert!(e
            .observe(&reading(Signal::Spo2, T0 + i * S, f64::NAN))
            .is_empty());
    }
    let c = e.tick(T0 + 30 * S);
    assert_eq!(
        raised(&c),
        vec![(key(AlarmKind::NoData, None), T0, T0 + 30 * S)]
    );
}

#[test]
fn delayed_data_resolves_no_data_no_earlier_than_it_was_raised() {
    let mut e = engine();
    e.observe(&ecg(T0, 80.0));
    e.tick(T0 + 30 * S);
    // SpO2 stamped 20 s after the last ECG, delivered after the no-data alarm.
    let c = e.observe(&reading(Signal::Spo2, T0 + 20 * S, 97.0));
    assert_eq!(
        resolved(&c),
        vec![(
            key(AlarmKind::NoData, None),
            T0 + 30 * S,
            ResolveReason::Cleared
        )]
    );
}

#[test]
fn disabling_asystole_mid_arrest_does_not_bring_back_a_stale_tachycardia() {
    let mut e = engine();
    feed(&mut e, hr_run(T0, T0 + 61 * S, 130.0));
    e.observe(&asystole(T0 + 61 * S, true));
    let mut s = AlarmSettings::default();
    s.asystole.enabled = false;
    e.set_settings(s);
    let c = e.tick(T0 + 62 * S);
    assert_eq!(
        resolved(&c),
        vec![(
            key(AlarmKind::Asystole, None),
            T0 + 62 * S,
            ResolveReason::Cleared
        )]
    );
    assert!(raised(&c).is_empty(), "{c:?}");
    assert!(e.active().is_empty());
}

#[test]
fn a_day_of_one_hertz_monitoring_gives_exactly_its_four_changes() {
    // 24 h of 1 Hz ECG HR + rhythm + SpO2 (259 200 observations), with ticks.
    let mut e = engine();
    let mut noise = Noise(42);
    let mut changes = 0usize;
    let n = 86_400u64;
    for i in 0..n {
        let t = T0 + i * S;
        // A tachycardic hour and a desaturated quarter hour in the day.
        let hr = if (3600..7200).contains(&i) {
            135.0
        } else {
            75.0
        };
        let spo2 = if (40_000..40_900).contains(&i) {
            86.0
        } else {
            97.0
        };
        changes += e.observe(&good(t)).len();
        changes += e.observe(&ecg(t, noise.normal(hr, 3.0))).len();
        changes += e
            .observe(&reading(Signal::Spo2, t, noise.normal(spo2, 0.5)))
            .len();
        changes += e.tick(t).len();
    }
    // Tachycardia raised + resolved, low SpO2 raised + resolved: 4 changes.
    assert_eq!(changes, 4);
}

#[test]
fn a_restored_snapshot_equals_the_engine_and_gives_the_same_future() {
    let mut e = engine();
    feed(&mut e, hr_run(T0, T0 + 30 * S, 130.0));
    let mut back: AlarmEngine = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
    assert_eq!(back, e);
    let future = hr_run(T0 + 30 * S, T0 + 100 * S, 130.0);
    assert_eq!(feed(&mut back, future.clone()), feed(&mut e, future));
}
