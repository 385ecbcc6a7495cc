//! The DeviceStream actor on the journal, on SQLite and on PostgreSQL:
//! validation, durable accepted counts, alerts raised once and resolved,
//! aggregates, ECG rhythm (AF, asystole, lead off), silence, recovery.

use std::time::Duration;

use cardio::actors::device::aggregate::{Series, Span};
use cardio::actors::device::alarms::{
    AlarmChange, AlarmKind, AlarmSettings, Priority, ResolveReason, Signal,
};
use cardio::actors::device::sample::{Rejection, Sample};
use cardio::actors::device::stream::{
    DeviceStream, OpenAggregates, Push, PushMany, PushResult, StreamSettings,
};
use cardio::registry::{Kind, KindSpec};
use cardio::store::Store;
use cardio::synthetic;

use crate::support::{poll_until, serve_kind};

async fn devices(store: &Store) -> Kind<DeviceStream> {
    devices_idle(store, Duration::from_secs(600)).await
}

/// Device streams over `store` that passivate after `idle`.
async fn devices_idle(store: &Store, idle: Duration) -> Kind<DeviceStream> {
    devices_with(store, idle, StreamSettings::default()).await
}

/// Device streams over `store` with `settings`, passivating after `idle`.
async fn devices_with(
    store: &Store,
    idle: Duration,
    settings: StreamSettings,
) -> Kind<DeviceStream> {
    let store = store.clone();
    let spec =
        KindSpec::new(move |id: &str| DeviceStream::new(id, store.clone(), settings.clone()))
            .idle_timeout(Some(idle));
    serve_kind(spec, Duration::from_secs(20)).await.2
}

/// How many values `device`'s open hour buckets of `series` hold (beats,
/// for heart rate from ECG).
async fn open_hour_count(kind: &Kind<DeviceStream>, device: &str, series: Series) -> u64 {
    kind.send(device, OpenAggregates(series))
        .await
        .unwrap()
        .iter()
        .filter(|a| a.span == Span::Hour)
        .map(|a| a.count)
        .sum()
}

/// Each change as (kind, what, since or 0, at).
fn summary(changes: &[AlarmChange]) -> Vec<(AlarmKind, &'static str, u64, u64)> {
    changes
        .iter()
        .map(|c| match c {
            AlarmChange::Raised {
                key,
                since_ms,
                at_ms,
                ..
            } => (key.kind, "raised", *since_ms, *at_ms),
            AlarmChange::Resolved { key, at_ms, .. } => (key.kind, "resolved", 0, *at_ms),
            AlarmChange::Reannounced { key, at_ms } => (key.kind, "reannounced", 0, *at_ms),
            AlarmChange::Escalated { key, at_ms } => (key.kind, "escalated", 0, *at_ms),
            AlarmChange::Announced { key, at_ms, .. } => (key.kind, "announced", 0, *at_ms),
        })
        .collect()
}

/// ECG as one-second chunks from `t0`.
fn ecg_chunks(ecg: &synthetic::ecg::GeneratedEcg, t0: u64) -> Vec<Sample> {
    ecg.samples
        .chunks(ecg.hz as usize)
        .enumerate()
        .map(|(i, c)| Sample::Ecg {
            at_ms: t0 + i as u64 * 1000,
            hz: ecg.hz,
            millivolts: c.to_vec(),
        })
        .collect()
}

/// Pushes ECG chunks one a request; returns the alarm changes with the
/// chunk index that produced each.
async fn push_ecg(
    kind: &Kind<DeviceStream>,
    device: &str,
    chunks: &[Sample],
    tag: &str,
) -> Vec<(usize, AlarmChange)> {
    let mut changes = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let r = push(kind, device, &format!("{tag}-{i}"), vec![chunk.clone()]).await;
        assert_eq!(r.accepted, 1, "{:?}", r.rejected);
        changes.extend(r.alerts.into_iter().map(|c| (i, c)));
    }
    changes
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn push(
    kind: &Kind<DeviceStream>,
    device: &str,
    request_id: &str,
    samples: Vec<Sample>,
) -> PushResult {
    kind.send(
        device,
        Push {
            request_id: request_id.into(),
            samples,
            audit: None,
        },
    )
    .await
    .unwrap()
    .unwrap()
}

/// Pushes a generated 1 Hz heart-rate series from `t0`, 10 samples a batch.
async fn push_series(
    kind: &Kind<DeviceStream>,
    device: &str,
    gen: &synthetic::Series,
    seconds: f64,
    t0: u64,
    tag: &str,
) -> Vec<AlarmChange> {
    let samples: Vec<Sample> = gen
        .samples(seconds)
        .into_iter()
        .map(|(t, bpm)| Sample::HeartRate {
            at_ms: t0 + (t * 1000.0) as u64,
            bpm,
        })
        .collect();
    let mut changes = Vec::new();
    for (i, batch) in samples.chunks(10).enumerate() {
        let r = push(kind, device, &format!("{tag}-{i}"), batch.to_vec()).await;
        assert!(r.rejected.is_empty(), "{:?}", r.rejected);
        changes.extend(r.alerts);
    }
    changes
}

/// Waits until `kind` has no live stream (all passivated).
async fn passivated(kind: &Kind<DeviceStream>) {
    poll_until(
        "passivated",
        Duration::from_secs(20),
        Duration::from_millis(20),
        async || kind.live() == 0,
    )
    .await;
}

async fn stored_samples(store: &Store, device: &str) -> usize {
    store
        .events(&format!("device/{device}"), 0)
        .await
        .unwrap()
        .iter()
        .map(|e| {
            serde_json::from_slice::<Vec<Sample>>(&e.payload)
                .unwrap()
                .len()
        })
        .sum()
}

async fn rejected_samples_come_back_with_reasons_and_accepted_ones_are_stored(store: &Store) {
    let kind = devices(store).await;
    let t0 = now_ms() - 60_000;
    let batch = vec![
        Sample::HeartRate {
            at_ms: t0,
            bpm: 72.0,
        },
        Sample::HeartRate {
            at_ms: t0 + 1000,
            bpm: f64::NAN,
        },
        Sample::Spo2 {
            at_ms: t0 + 1000,
            percent: 97.0,
        },
        Sample::BloodPressure {
            at_ms: t0 + 2000,
            systolic: 70.0,
            diastolic: 90.0,
        },
        Sample::HeartRate {
            at_ms: t0 + 2000,
            bpm: 400.0,
        },
        Sample::HeartRate {
            at_ms: t0 + 3000,
            bpm: 75.0,
        },
    ];
    let r = push(&kind, "d-1", "b1", batch.clone()).await;
    assert_eq!(r.accepted, 3);
    let rejected: Vec<usize> = r.rejected.iter().map(|(i, _)| *i).collect();
    assert_eq!(rejected, vec![1, 3, 4]);
    assert!(matches!(
        r.rejected[1].1,
        Rejection::SystolicNotAboveDiastolic
    ));
    // The same batch again under the same id: nothing done twice.
    let again = push(&kind, "d-1", "b1", batch).await;
    assert!(again.duplicate);
    // The same samples under a new id: duplicates, sample by sample.
    let resent = push(
        &kind,
        "d-1",
        "b2",
        vec![Sample::HeartRate {
            at_ms: t0 + 3000,
            bpm: 75.0,
        }],
    )
    .await;
    assert_eq!(resent.rejected, vec![(0, Rejection::Duplicate)]);
    assert_eq!(
        stored_samples(store, "d-1").await,
        3,
        "accepted counts match stored samples"
    );
}
on_both!(
    validation,
    rejected_samples_come_back_with_reasons_and_accepted_ones_are_stored
);

async fn a_sustained_tachycardia_is_raised_once_stored_and_resolved(store: &Store) {
    let kind = devices(store).await;
    let t0 = now_ms() - 500_000;
    let gen = synthetic::Series::new(80.0, 1.0).episode(100.0, 250.0, 135.0);
    let changes = push_series(&kind, "d-2", &gen, 400.0, t0, "hr").await;
    // Raised after 60 s of readings above 120 covering the window; resolved
    // after 30 s of readings back below 115 (the resolve window).
    assert_eq!(
        summary(&changes),
        vec![
            (AlarmKind::Tachycardia, "raised", t0 + 100_000, t0 + 160_000),
            (AlarmKind::Tachycardia, "resolved", 0, t0 + 280_000),
        ]
    );
    let alerts = store.alerts("d-2").await.unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(
        (a.since_ms, a.resolved_ms, a.resolve_reason),
        (
            t0 + 100_000,
            Some(t0 + 280_000),
            Some(ResolveReason::Cleared)
        )
    );
    // Graded, and it says what raised it: the device's pulse rate at 135
    // over the 120 threshold, a medium alarm.
    assert_eq!(
        (a.priority, a.source, a.reading, a.threshold),
        (
            Priority::Medium,
            Some(Signal::PulseRate),
            Some(135.0),
            Some(120.0)
        )
    );
    // Closed minute buckets are stored with the generator's values.
    let minutes = store
        .aggregates("d-2", Series::HeartRate, Span::Minute, 0, u64::MAX)
        .await
        .unwrap();
    assert!(minutes.len() >= 5, "{} minutes", minutes.len());
    assert!(minutes.iter().all(|m| m.count <= 60));
    let total: u64 = minutes.iter().map(|m| m.count).sum();
    let open: u64 = kind
        .send("d-2", OpenAggregates(Series::HeartRate))
        .await
        .unwrap()
        .iter()
        .filter(|a| a.span == Span::Minute)
        .map(|a| a.count)
        .sum();
    assert_eq!(total + open, 400);
}
on_both!(
    tachycardia,
    a_sustained_tachycardia_is_raised_once_stored_and_resolved
);

async fn a_restarted_node_recovers_history_and_rule_states(store: &Store) {
    let t0 = now_ms() - 300_000;
    let gen = synthetic::Series::new(135.0, 1.0);
    let first = devices(store).await;
    let changes = push_series(&first, "d-3", &gen, 90.0, t0, "a").await;
    assert_eq!(
        changes
            .iter()
            .filter(|c| matches!(c, AlarmChange::Raised { .. }))
            .count(),
        1
    );
    // A new node over the same database.
    let second = devices(store).await;
    let stale = push(
        &second,
        "d-3",
        "b",
        vec![Sample::HeartRate {
            at_ms: t0 + 10_000,
            bpm: 135.0,
        }],
    )
    .await;
    assert!(
        matches!(stale.rejected[..], [(0, Rejection::OutOfOrder { .. })]),
        "{:?}",
        stale.rejected
    );
    let later = synthetic::Series::new(135.0, 1.0);
    let changes = push_series(&second, "d-3", &later, 30.0, t0 + 90_000, "c").await;
    assert!(
        changes.is_empty(),
        "the alert was still active, not raised again: {changes:?}"
    );
    assert_eq!(store.alerts("d-3").await.unwrap().len(), 1);
}
on_both!(recovery, a_restarted_node_recovers_history_and_rule_states);

async fn ecg_chunks_give_heart_rate_and_an_atrial_fibrillation_alarm(store: &Store) {
    use synthetic::ecg::{generate, EcgScenario};
    let kind = devices(store).await;
    let t0 = now_ms() - 200_000;
    // A minute of sinus rhythm, then 90 s of atrial fibrillation.
    let ecg = generate(&EcgScenario::new(250, 4).sinus(72.0, 60.0).af(100.0, 90.0));
    let changes = push_ecg(&kind, "d-4", &ecg_chunks(&ecg, t0), "ecg").await;
    let raised: Vec<_> = summary(&changes.iter().map(|(_, c)| *c).collect::<Vec<_>>())
        .into_iter()
        .filter(|c| c.1 == "raised")
        .collect();
    assert_eq!(
        raised.iter().map(|c| c.0).collect::<Vec<_>>(),
        vec![AlarmKind::AtrialFibrillation],
        "{changes:?}"
    );
    // Not before 30 s of AF, and within the AF: a low-priority alarm.
    let at = raised[0].3;
    assert!(
        at >= t0 + 90_000 && at <= t0 + 150_000,
        "AF raised {} s in",
        (at - t0) / 1000
    );
    let stored = store.alerts("d-4").await.unwrap();
    assert_eq!(stored[0].priority, Priority::Low);
    // Heart rate counted from the beats: each whole minute's rate is within
    // 1 bpm of the true beats in it.
    let mut minutes = store
        .aggregates("d-4", Series::EcgHeartRate, Span::Minute, 0, u64::MAX)
        .await
        .unwrap();
    minutes.extend(
        kind.send("d-4", OpenAggregates(Series::EcgHeartRate))
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.span == Span::Minute),
    );
    let mut checked = 0;
    for m in &minutes {
        let (from, to) = (m.start_ms.saturating_sub(t0), m.start_ms + 60_000 - t0);
        if m.start_ms < t0 + 5_000 || to > 150_000 {
            continue; // Minutes not wholly inside the recording (or its learning).
        }
        let truth = ecg.beats_between(from as f64 / 1000.0, to as f64 / 1000.0) as f64;
        let rate = m.rate().expect("covered");
        assert!(
            (rate - truth).abs() <= 1.0,
            "minute at {} s: {rate:.1} bpm, {truth} beats",
            from / 1000
        );
        assert!(m.count as f64 >= truth - 1.0 && m.count as f64 <= truth + 1.0);
        checked += 1;
    }
    assert!(checked >= 1, "{minutes:?}");
}
on_both!(
    ecg,
    ecg_chunks_give_heart_rate_and_an_atrial_fibrillation_alarm
);

async fn chunks_stamped_with_a_jittery_device_clock_continue_one_lead(store: &Store) {
    use synthetic::ecg::{generate, EcgScenario};
    let kind = devices(store).await;
    let t0 = now_ms() - 200_000;
    let ecg = generate(&EcgScenario::new(250, 9).sinus(72.0, 120.0));
    let mut rng = fastrand::Rng::with_seed(9);
    // Each one-second chunk stamped up to 40 ms off.
    let chunks: Vec<Sample> = ecg_chunks(&ecg, t0)
        .into_iter()
        .enumerate()
        .map(|(i, c)| match c {
            Sample::Ecg { hz, millivolts, .. } if i > 0 => Sample::Ecg {
                at_ms: t0 + i as u64 * 1000 + rng.u64(0..=80) - 40,
                hz,
                millivolts,
            },
            other => other,
        })
        .collect();
    let changes = push_ecg(&kind, "d-jitter", &chunks, "j").await;
    assert!(changes.is_empty(), "{changes:?}");
    // Every beat after the first seconds is found: one lead, not 120.
    let beats = open_hour_count(&kind, "d-jitter", Series::EcgHeartRate).await;
    let truth = ecg.beats_between(2.5, 120.0) as u64;
    assert!(
        beats.abs_diff(truth) <= 3,
        "{beats} beats found, {truth} true"
    );
}
on_both!(
    jitter,
    chunks_stamped_with_a_jittery_device_clock_continue_one_lead
);

async fn an_alert_left_open_without_the_streams_knowledge_is_reset_on_start(store: &Store) {
    use cardio::actors::device::alarms::Category;
    // An open row the stream's state does not know (a timer's change lost
    // with a crash before the next snapshot, or a row of an older version).
    let t0 = now_ms() - 60_000;
    let stale = cardio::store::AlertRecord {
        id: format!("d-stale:no_data:{t0}"),
        device_id: "d-stale".into(),
        kind: AlarmKind::NoData,
        source: None,
        priority: Priority::Medium,
        since_ms: t0,
        raised_ms: t0 + 30_000,
        resolved_ms: None,
        reading: None,
        threshold: None,
        announced: true,
        resolve_reason: None,
        reannounced_ms: None,
        escalated_ms: None,
    };
    assert_eq!(stale.category(), Category::Technical);
    assert!(store.raise_alert(&stale).await.unwrap());
    let kind = devices(store).await;
    push(
        &kind,
        "d-stale",
        "s-1",
        vec![Sample::Spo2 {
            at_ms: now_ms() - 1_000,
            percent: 97.0,
        }],
    )
    .await;
    let alerts = store.alerts("d-stale").await.unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].resolve_reason, Some(ResolveReason::Reset));
    assert!(alerts[0].resolved_ms.is_some_and(|r| r >= stale.raised_ms));
}
on_both!(
    stale_alert,
    an_alert_left_open_without_the_streams_knowledge_is_reset_on_start
);

async fn asystole_raises_a_high_alarm_within_six_seconds_of_the_last_beat(store: &Store) {
    use synthetic::ecg::{generate, EcgScenario};
    let kind = devices(store).await;
    let t0 = now_ms() - 100_000;
    let ecg = generate(&EcgScenario::new(250, 5).sinus(75.0, 30.0).asystole(20.0));
    let last_beat = ecg.beats.last().expect("beats").t;
    let changes = push_ecg(&kind, "d-asy", &ecg_chunks(&ecg, t0), "asy").await;
    let raised: Vec<_> = changes
        .iter()
        .filter_map(|(_, c)| match c {
            AlarmChange::Raised {
                key,
                priority,
                at_ms,
                ..
            } => Some((key.kind, *priority, *at_ms)),
            _ => None,
        })
        .collect();
    // A pause (3 s without a beat) may be raised first; asystole (4 s) then
    // takes over. Nothing else.
    let high: Vec<_> = raised.iter().filter(|r| r.0 != AlarmKind::Pause).collect();
    assert_eq!(high.len(), 1, "only asystole and a pause: {changes:?}");
    let (k, p, at) = *high[0];
    assert_eq!((k, p), (AlarmKind::Asystole, Priority::High));
    let after = (at - t0) as f64 / 1000.0 - last_beat;
    assert!(
        after <= 6.0,
        "asystole raised {after:.1} s after the last beat"
    );
}
on_both!(
    asystole,
    asystole_raises_a_high_alarm_within_six_seconds_of_the_last_beat
);

async fn a_detached_lead_a_flat_line_or_hum_only_is_a_technical_alarm_not_a_heart_rate(
    store: &Store,
) {
    use synthetic::ecg::{generate, EcgScenario};
    let kind = devices(store).await;
    let cases = [
        (
            "lead off",
            EcgScenario::new(250, 6).sinus(75.0, 30.0).lead_off(30.0),
        ),
        (
            "flat line",
            EcgScenario::new(250, 7).sinus(75.0, 30.0).flat(30.0),
        ),
        (
            "hum only",
            EcgScenario::new(250, 8)
                .sinus(75.0, 30.0)
                .flat(30.0)
                .hum(0.3, 50.0),
        ),
    ];
    for (n, (what, scenario)) in cases.into_iter().enumerate() {
        let device = format!("d-off-{n}");
        let t0 = now_ms() - 100_000;
        let ecg = generate(&scenario);
        let changes = push_ecg(&kind, &device, &ecg_chunks(&ecg, t0), "off").await;
        let raised: Vec<_> = changes
            .iter()
            .filter_map(|(i, c)| match c {
                AlarmChange::Raised { key, .. } => Some((*i, key.kind)),
                _ => None,
            })
            .collect();
        assert_eq!(raised.len(), 1, "{what}: {raised:?}");
        let (chunk, k) = raised[0];
        assert_eq!(
            k.category(),
            cardio::actors::device::alarms::Category::Technical,
            "{what}: {k:?}"
        );
        assert!(chunk < 30 + 10, "{what}: raised {} s after", chunk - 30);
        // No heart rate once the signal is gone: the buckets count no signal
        // time after it (give or take the 4 s quality window).
        let open = kind
            .send(&device, OpenAggregates(Series::EcgHeartRate))
            .await
            .unwrap();
        let covered: u64 = open
            .iter()
            .filter(|a| a.span == Span::Hour)
            .filter_map(|a| a.covered_ms)
            .sum();
        assert!(covered <= 31_000, "{what}: {covered} ms of signal counted");
    }
}
on_both!(
    lead_off,
    a_detached_lead_a_flat_line_or_hum_only_is_a_technical_alarm_not_a_heart_rate
);

async fn a_silent_device_raises_no_data_and_its_open_alarm_ends(store: &Store) {
    // Short windows, so that the test waits seconds, not minutes.
    let mut alarms = AlarmSettings {
        max_gap_ms: 1_000,
        no_data_ms: 2_000,
        ..AlarmSettings::default()
    };
    alarms.severe_low_spo2.sustain_ms = 3_000;
    let settings = StreamSettings {
        alarms,
        ..StreamSettings::default()
    };
    let kind = devices_with(store, Duration::from_secs(600), settings).await;
    // SpO2 at 75 % for 5 s, one reading every half second, ending now.
    let t0 = now_ms() - 5_000;
    let samples: Vec<Sample> = (0..10)
        .map(|i| Sample::Spo2 {
            at_ms: t0 + i * 500,
            percent: 75.0,
        })
        .collect();
    let r = push(&kind, "d-silent", "s-1", samples).await;
    assert!(
        matches!(
            r.alerts[..],
            [AlarmChange::Raised {
                key,
                priority: Priority::High,
                ..
            }] if key.kind == AlarmKind::SevereLowSpo2
        ),
        "{:?}",
        r.alerts
    );
    // Then nothing: within a bound, the stream tells of the silence, and the
    // SpO2 alarm ends as no longer current.
    let alerts = poll_until(
        "a 'no data' alarm",
        Duration::from_secs(20),
        Duration::from_millis(50),
        async || {
            let alerts = store.alerts("d-silent").await.unwrap();
            if alerts.iter().any(|a| a.kind == AlarmKind::NoData) {
                Ok(alerts)
            } else {
                Err(format!("{alerts:?}"))
            }
        },
    )
    .await;
    let spo2 = alerts
        .iter()
        .find(|a| a.kind == AlarmKind::SevereLowSpo2)
        .unwrap();
    assert_eq!(spo2.resolve_reason, Some(ResolveReason::NoData));
    let silent = alerts.iter().find(|a| a.kind == AlarmKind::NoData).unwrap();
    assert_eq!(
        silent.priority,
        Priority::High,
        "silence that cut off a high alarm is itself high"
    );
    // Data again ends the silence.
    let r = push(
        &kind,
        "d-silent",
        "s-2",
        vec![Sample::Spo2 {
            at_ms: now_ms(),
            percent: 97.0,
        }],
    )
    .await;
    assert!(
        r.alerts.iter().any(
            |c| matches!(c, AlarmChange::Resolved { key, .. } if key.kind == AlarmKind::NoData)
        ),
        "{:?}",
        r.alerts
    );
}
on_both!(
    no_data,
    a_silent_device_raises_no_data_and_its_open_alarm_ends
);

async fn an_unacknowledged_high_alarm_is_announced_again_then_escalated(store: &Store) {
    let alarms = AlarmSettings {
        reannounce_ms: 300,
        escalate_ms: 600,
        ..AlarmSettings::default()
    };
    let settings = StreamSettings {
        alarms,
        ..StreamSettings::default()
    };
    let kind = devices_with(store, Duration::from_secs(600), settings).await;
    let t0 = now_ms() - 20_000;
    // Raised by the last reading (10 s at 75 %): the delays run from there.
    let samples: Vec<Sample> = (0..=10)
        .map(|i| Sample::Spo2 {
            at_ms: t0 + i * 1000,
            percent: 75.0,
        })
        .collect();
    let r = push(&kind, "d-esc", "e-1", samples).await;
    assert_eq!(r.alerts.len(), 1, "{:?}", r.alerts);
    let alert = poll_until(
        "the alert escalated",
        Duration::from_secs(20),
        Duration::from_millis(20),
        async || {
            let alerts = store.alerts("d-esc").await.unwrap();
            if alerts[0].escalated_ms.is_some() {
                Ok(alerts[0].clone())
            } else {
                Err(format!("{alerts:?}"))
            }
        },
    )
    .await;
    let (raised, again, escalated) = (
        alert.raised_ms,
        alert.reannounced_ms.expect("announced again first"),
        alert.escalated_ms.unwrap(),
    );
    assert_eq!(raised, t0 + 10_000);
    // Not before their delays (when exactly is the engine's unit tests' job:
    // here the timer runs on a loaded machine's clock).
    assert!(
        again - raised >= 300 && escalated - raised >= 600 && again <= escalated,
        "announced again {} ms and escalated {} ms after it was raised",
        again - raised,
        escalated - raised
    );
}
on_both!(
    escalation,
    an_unacknowledged_high_alarm_is_announced_again_then_escalated
);

async fn a_passivated_stream_comes_back_from_its_snapshot(store: &Store) {
    let kind = devices_idle(store, Duration::from_millis(100)).await;
    let t0 = now_ms() - 300_000;
    let changes = push_series(
        &kind,
        "d-5",
        &synthetic::Series::new(30.0, 1.0),
        70.0,
        t0,
        "a",
    )
    .await;
    assert!(
        matches!(
            changes[..],
            [AlarmChange::Raised { key, .. }] if key.kind == AlarmKind::Bradycardia
        ),
        "{changes:?}"
    );
    passivated(&kind).await;
    let snapshot = store
        .snapshot("device/d-5")
        .await
        .unwrap()
        .expect("snapshot saved on passivation");
    assert_eq!(snapshot.seq, store.last_seq("device/d-5").await.unwrap());
    // Back from the snapshot: history, open aggregates and rule states.
    let stale = push(
        &kind,
        "d-5",
        "b",
        vec![Sample::HeartRate {
            at_ms: t0 + 1_000,
            bpm: 30.0,
        }],
    )
    .await;
    assert!(matches!(
        stale.rejected[..],
        [(0, Rejection::OutOfOrder { .. })]
    ));
    let more = push_series(
        &kind,
        "d-5",
        &synthetic::Series::new(30.0, 1.0),
        10.0,
        t0 + 70_000,
        "c",
    )
    .await;
    assert!(more.is_empty(), "still active, not raised again: {more:?}");
    let open = open_hour_count(&kind, "d-5", Series::HeartRate).await;
    assert_eq!(open, 80, "the hour bucket kept its 70 samples and added 10");
    assert_eq!(store.alerts("d-5").await.unwrap().len(), 1);
}
on_both!(snapshots, a_passivated_stream_comes_back_from_its_snapshot);

/// A stream that stays live still snapshots every 64 chunks (beside the
/// actor, after the answer): a kill -9 then replays at most 63 chunks.
async fn a_live_stream_snapshots_every_64_chunks(store: &Store) {
    let kind = devices(store).await;
    let t0 = now_ms() - 600_000;
    for i in 0..130u64 {
        let r = push(
            &kind,
            "d-64",
            &format!("r{i}"),
            vec![Sample::HeartRate {
                at_ms: t0 + i * 1_000,
                bpm: 70.0,
            }],
        )
        .await;
        assert_eq!(r.accepted, 1, "{r:?}");
    }
    snapshot_while_live(store, &kind, "d-64", 128).await;
}

/// Waits for `device`'s snapshot at journal sequence `seq`, taken while its
/// stream stayed live.
async fn snapshot_while_live(store: &Store, kind: &Kind<DeviceStream>, device: &str, seq: u64) {
    let key = format!("device/{device}");
    let saved = poll_until(
        "a snapshot at the expected batch",
        Duration::from_secs(20),
        Duration::from_millis(20),
        async || store.snapshot(&key).await.unwrap().filter(|s| s.seq == seq),
    )
    .await;
    assert_eq!(saved.seq, seq);
    assert_eq!(kind.live(), 1, "taken without passivating");
}
on_both!(live_snapshots, a_live_stream_snapshots_every_64_chunks);

/// Large batches bring the snapshot sooner: every 1,000 samples, so that a
/// start after a kill -9 replays at most that many, whatever the batch size.
async fn a_live_stream_snapshots_every_1000_samples(store: &Store) {
    let kind = devices(store).await;
    let t0 = now_ms() - 3_000_000;
    for i in 0..45u64 {
        let samples = (0..50)
            .map(|k| Sample::HeartRate {
                at_ms: t0 + (i * 50 + k) * 1_000,
                bpm: 70.0,
            })
            .collect();
        let r = push(&kind, "d-1000", &format!("r{i}"), samples).await;
        assert_eq!(r.accepted, 50, "{r:?}");
    }
    // 20 batches of 50 samples each: snapshots at batches 20 and 40 (not
    // at 64, which these 45 batches never reach).
    snapshot_while_live(store, &kind, "d-1000", 40).await;
}
on_both!(sample_snapshots, a_live_stream_snapshots_every_1000_samples);

/// A retried batch is answered as a duplicate, not as rejected samples,
/// after a passivation (the recent request ids are in the snapshot) and
/// long after (older than the recent window: the journal knows its id).
async fn a_retry_is_a_duplicate_after_passivation_and_out_of_the_window(store: &Store) {
    let kind = devices_idle(store, Duration::from_millis(100)).await;
    let t0 = now_ms() - 600_000;
    let batch = |i: u64| {
        (0..3)
            .map(|j| Sample::HeartRate {
                at_ms: t0 + (i * 3 + j) * 1_000,
                bpm: 70.0,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(push(&kind, "d-r", "b0", batch(0)).await.accepted, 3);
    passivated(&kind).await;
    let again = push(&kind, "d-r", "b0", batch(0)).await;
    assert!(again.duplicate && again.rejected.is_empty(), "{again:?}");
    for i in 1..=40 {
        assert_eq!(
            push(&kind, "d-r", &format!("b{i}"), batch(i))
                .await
                .accepted,
            3
        );
    }
    let old = push(&kind, "d-r", "b1", batch(1)).await;
    assert!(old.duplicate && old.rejected.is_empty(), "{old:?}");
    // A new batch of samples already stored is still rejected sample by sample.
    let copy = push(&kind, "d-r", "copy", batch(2)).await;
    assert!(!copy.duplicate && copy.rejected.len() == 3, "{copy:?}");
}
on_both!(
    retries_after_passivation,
    a_retry_is_a_duplicate_after_passivation_and_out_of_the_window
);

async fn a_stream_restored_from_its_snapshot_computes_what_a_live_one_does(store: &Store) {
    let mut passivating = devices(store).await;
    let live = devices(store).await;
    let t0 = now_ms() - 120_000;
    let ecg = synthetic::ecg::generate(&synthetic::ecg::EcgScenario::new(250, 1).sinus(80.0, 60.0));
    let chunks = ecg_chunks(&ecg, t0);
    for (i, chunk) in chunks.iter().enumerate() {
        if i == 30 {
            // Halfway, one of the two stops (its stop hook snapshots) and a new
            // node takes it over from the snapshot.
            passivating.supervisor().shutdown().await;
            passivating = devices(store).await;
        }
        push(&passivating, "d-a", &format!("e{i}"), vec![chunk.clone()]).await;
        push(&live, "d-b", &format!("e{i}"), vec![chunk.clone()]).await;
    }
    type Bucket = (u64, u64, f64, Option<u64>);
    let hr = |rates: Vec<cardio::actors::device::aggregate::Aggregate>| -> Vec<Bucket> {
        rates
            .into_iter()
            .map(|a| (a.start_ms, a.count, a.sum, a.covered_ms))
            .collect()
    };
    let a = hr(passivating
        .send("d-a", OpenAggregates(Series::EcgHeartRate))
        .await
        .unwrap());
    let b = hr(live
        .send("d-b", OpenAggregates(Series::EcgHeartRate))
        .await
        .unwrap());
    assert!(!b.is_empty());
    assert_eq!(
        a, b,
        "the restored stream's ECG rates match the live stream's"
    );
}
on_both!(
    ecg_snapshot,
    a_stream_restored_from_its_snapshot_computes_what_a_live_one_does
);

/// Pushes that queued together (issue 15): judged one after another exactly
/// as if each came alone (a second stream fed them one by one answers the
/// same and stores the same samples), journaled as one entry, and each
/// still idempotent by its own request id, within the batch, at once, and
/// after a passivation and out of the window of recent requests.
async fn pushes_that_queued_together_are_judged_as_sent_and_journaled_once(store: &Store) {
    let kind = devices_idle(store, Duration::from_millis(100)).await;
    let t0 = now_ms() - 600_000;
    let hr = |s: u64| Sample::HeartRate {
        at_ms: t0 + s * 1_000,
        bpm: 70.0 + s as f64,
    };
    let req = |id: &str, seconds: &[u64]| Push {
        request_id: id.into(),
        samples: seconds.iter().map(|s| hr(*s)).collect(),
        audit: None,
    };
    let batch = vec![
        req("p-1", &[3, 4, 5]),
        // One sample p-1 brought already: rejected, the others stored.
        req("p-2", &[5, 6, 7]),
        // A retry of p-1 within the batch.
        req("p-1", &[3, 4, 5]),
        // Nothing new, and not a retry.
        req("p-4", &[6, 7]),
        // A retry of the push stored before the batch.
        req("p-0", &[0, 1, 2]),
        req("p-5", &[8]),
    ];
    for (device, together) in [("d-many", true), ("d-one", false)] {
        assert_eq!(
            push(&kind, device, "p-0", vec![hr(0), hr(1), hr(2)])
                .await
                .accepted,
            3
        );
        let answers: Vec<PushResult> = if together {
            kind.send(
                device,
                PushMany {
                    pushes: batch.clone(),
                },
            )
            .await
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect()
        } else {
            let mut answers = Vec::new();
            for p in batch.clone() {
                answers.push(kind.send(device, p).await.unwrap().unwrap());
            }
            answers
        };
        let summary: Vec<(u32, Vec<usize>, bool)> = answers
            .iter()
            .map(|a| {
                (
                    a.accepted,
                    a.rejected.iter().map(|(i, _)| *i).collect(),
                    a.duplicate,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (3, vec![], false),
                (2, vec![0], false),
                (0, vec![], true),
                (0, vec![0, 1], false),
                (0, vec![], true),
                (1, vec![], false),
            ],
            "{device}: {answers:?}"
        );
        assert!(matches!(answers[1].rejected[0].1, Rejection::Duplicate));
        assert_eq!(stored_samples(store, device).await, 9, "{device}");
        let entries = store.events(&format!("device/{device}"), 0).await.unwrap();
        assert_eq!(entries.len(), if together { 2 } else { 4 }, "{device}");
    }
    let (one, many) = (
        store.events("device/d-one", 0).await.unwrap(),
        store.events("device/d-many", 0).await.unwrap(),
    );
    let samples = |entries: &[cardio::store::Event]| -> Vec<Sample> {
        entries
            .iter()
            .flat_map(|e| serde_json::from_slice::<Vec<Sample>>(&e.payload).unwrap())
            .collect()
    };
    assert_eq!(
        samples(&many),
        samples(&one),
        "the same samples, in the same order"
    );
    // Retries of pushes the batch stored, once it is out of memory: after a
    // passivation, then out of the window of recent requests (the journal
    // finds p-2 and p-5 as aliases of p-1's entry).
    passivated(&kind).await;
    let p2 = push(&kind, "d-many", "p-2", vec![hr(5), hr(6), hr(7)]).await;
    assert!(p2.duplicate && p2.rejected.is_empty(), "{p2:?}");
    for i in 0..40 {
        let r = push(&kind, "d-many", &format!("later-{i}"), vec![hr(100 + i)]).await;
        assert_eq!(r.accepted, 1);
    }
    let p5 = push(&kind, "d-many", "p-5", vec![hr(8)]).await;
    assert!(p5.duplicate && p5.rejected.is_empty(), "{p5:?}");
    let p2 = push(&kind, "d-many", "p-2", vec![hr(5), hr(6), hr(7)]).await;
    assert!(p2.duplicate && p2.rejected.is_empty(), "{p2:?}");
}
on_both!(
    coalesced_pushes,
    pushes_that_queued_together_are_judged_as_sent_and_journaled_once
);
