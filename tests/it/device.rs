//! The DeviceStream actor on the journal, on SQLite and on PostgreSQL:
//! validation, durable accepted counts, alerts raised once and resolved,
//! aggregates, ECG rhythm, recovery.

use std::time::Duration;

use cardio::actors::device::aggregate::{Series, Span};
use cardio::actors::device::alerts::{AlertChange, AlertKind};
use cardio::actors::device::sample::{Rejection, Sample};
use cardio::actors::device::stream::{
    DeviceStream, OpenAggregates, Push, PushResult, StreamSettings,
};
use cardio::registry::{Kind, KindSpec};
use cardio::store::Store;
use cardio::synthetic;

use crate::support::serve_kind;

async fn devices(store: &Store) -> Kind<DeviceStream> {
    devices_idle(store, Duration::from_secs(600)).await
}

/// Device streams over `store` that passivate after `idle`.
async fn devices_idle(store: &Store, idle: Duration) -> Kind<DeviceStream> {
    let store = store.clone();
    let spec = KindSpec::new(move |id: &str| {
        DeviceStream::new(id, store.clone(), StreamSettings::default())
    })
    .idle_timeout(Some(idle));
    serve_kind(spec, Duration::from_secs(20)).await.2
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
) -> Vec<AlertChange> {
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
    assert_eq!(
        changes
            .iter()
            .map(|c| match c {
                AlertChange::Raised {
                    kind,
                    since_ms,
                    at_ms,
                    ..
                } => (*kind, "raised", *since_ms, *at_ms),
                AlertChange::Resolved { kind, at_ms } => (*kind, "resolved", 0, *at_ms),
            })
            .collect::<Vec<_>>(),
        vec![
            (AlertKind::Tachycardia, "raised", t0 + 100_000, t0 + 160_000),
            (AlertKind::Tachycardia, "resolved", 0, t0 + 250_000),
        ]
    );
    let alerts = store.alerts("d-2").await.unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(
        (alerts[0].since_ms, alerts[0].resolved_ms),
        (t0 + 100_000, Some(t0 + 250_000))
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
            .filter(|c| matches!(c, AlertChange::Raised { .. }))
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

async fn ecg_chunks_give_heart_rate_and_an_irregular_rhythm_alert(store: &Store) {
    let kind = devices(store).await;
    let t0 = now_ms() - 120_000;
    let ecg = synthetic::ecg(
        synthetic::EcgSpec {
            irregular: true,
            ..synthetic::EcgSpec::new(90.0, 250)
        },
        60.0,
    );
    let mut changes = Vec::new();
    for (i, chunk) in ecg.samples.chunks(250).enumerate() {
        let sample = Sample::Ecg {
            at_ms: t0 + i as u64 * 1000,
            hz: 250,
            millivolts: chunk.to_vec(),
        };
        let r = push(&kind, "d-4", &format!("ecg-{i}"), vec![sample]).await;
        assert_eq!(r.accepted, 1, "{:?}", r.rejected);
        changes.extend(r.alerts);
    }
    assert!(
        changes.iter().any(|c| matches!(
            c,
            AlertChange::Raised {
                kind: AlertKind::IrregularRhythm,
                ..
            }
        )),
        "{changes:?}"
    );
    let rates = kind
        .send("d-4", OpenAggregates(Series::HeartRate))
        .await
        .unwrap();
    // All hour buckets together (the minute may straddle an hour boundary).
    let hours: Vec<_> = rates.iter().filter(|a| a.span == Span::Hour).collect();
    assert!(!hours.is_empty(), "heart rate from ECG");
    let count: f64 = hours.iter().map(|a| a.count as f64).sum();
    let mean = hours.iter().map(|a| a.sum).sum::<f64>() / count;
    let truth = ecg.true_bpm();
    assert!(
        (mean - truth).abs() < truth * 0.1,
        "ECG rate {mean:.1}, true {truth:.1}"
    );
}
on_both!(
    ecg,
    ecg_chunks_give_heart_rate_and_an_irregular_rhythm_alert
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
            [AlertChange::Raised {
                kind: AlertKind::Bradycardia,
                ..
            }]
        ),
        "{changes:?}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while kind.live() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "not passivated");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    let open: u64 = kind
        .send("d-5", OpenAggregates(Series::HeartRate))
        .await
        .unwrap()
        .iter()
        .filter(|a| a.span == Span::Hour)
        .map(|a| a.count)
        .sum();
    assert_eq!(open, 80, "the hour bucket kept its 70 samples and added 10");
    assert_eq!(store.alerts("d-5").await.unwrap().len(), 1);
}
on_both!(snapshots, a_passivated_stream_comes_back_from_its_snapshot);

async fn a_stream_restored_from_its_snapshot_computes_what_a_live_one_does(store: &Store) {
    let mut passivating = devices(store).await;
    let live = devices(store).await;
    let t0 = now_ms() - 120_000;
    let ecg = synthetic::ecg(synthetic::EcgSpec::new(80.0, 250), 60.0);
    let chunks: Vec<Sample> = ecg
        .samples
        .chunks(250)
        .enumerate()
        .map(|(i, c)| Sample::Ecg {
            at_ms: t0 + i as u64 * 1000,
            hz: 250,
            millivolts: c.to_vec(),
        })
        .collect();
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
    let hr = |rates: Vec<cardio::actors::device::aggregate::Aggregate>| -> Vec<(u64, u64, f64)> {
        rates
            .into_iter()
            .map(|a| (a.start_ms, a.count, a.sum))
            .collect()
    };
    let a = hr(passivating
        .send("d-a", OpenAggregates(Series::HeartRate))
        .await
        .unwrap());
    let b = hr(live
        .send("d-b", OpenAggregates(Series::HeartRate))
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
