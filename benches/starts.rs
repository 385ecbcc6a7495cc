//! Actor starts in a burst (issue 15), on SQLite and PostgreSQL:
//!
//! (a) what 1,000 device streams start from, read together
//!     (`Store::device_start`, batched) against the same reads made one by
//!     one per stream as before (snapshot, journal after it, alerts, device,
//!     alarm settings), all 1,000 asked at once, in the same run;
//! (b) 1,000 device streams each taking its first push (the stream starts:
//!     its reads, replay and first write round) against the same 1,000
//!     taking a second push once started: what a burst of starts costs
//!     beyond the steady state.
//!
//! Each stream has history: two journal entries, a snapshot after the first
//! for half of them in (a), an open alert for one in ten, and its patient's alarm
//! settings. Baseline and new alternate (five pairs, which goes first
//! alternating too), the best of each kept. Needs PostgreSQL at
//! 127.0.0.1:5432 as the tests do; `CARDIO_BENCH_ONLY=sqlite` skips it.
//! Run: `cargo bench --bench starts`.

// Shared with the domain and at-rest benches; the actor paths are theirs.
#[allow(dead_code)]
#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use cardio::actors::device::stream::{Push, StreamSettings};
use cardio::domain::alarm::{AlarmKind, Priority};
use cardio::store::monitoring::StoredAlarmSettings;
use cardio::store::{AlertRecord, Store};
use common::{backends, now_ms, samples, streams, Db};

const STREAMS: usize = 1000;
const ROUNDS: usize = 5;

/// A database holding `STREAMS` devices with history (`snapshots`: half
/// of them with one, opaque: read, never decoded).
async fn with_history(backend: &str, snapshots: bool) -> Db {
    let db = Db::fresh(backend).await;
    let store = &db.store;
    let t0 = now_ms();
    for d in 0..STREAMS {
        let (patient, device, actor) =
            (format!("p-{d}"), format!("d-{d}"), format!("device/d-{d}"));
        store.register_patient(&patient).await.unwrap();
        store
            .register_device(&device, &patient, "watch")
            .await
            .unwrap()
            .unwrap();
        for seq in 0..2u64 {
            let batch = serde_json::to_vec(&samples(10, t0 + seq * 100)).unwrap();
            store
                .append(&actor, seq, &format!("m-{seq}"), 0, &batch)
                .await
                .unwrap();
        }
        if snapshots && d % 2 == 0 {
            store.save_snapshot(&actor, 1, b"{}").await.unwrap();
        }
        if d % 10 == 0 {
            store
                .raise_alert(&AlertRecord {
                    id: format!("{device}:tachycardia:{t0}"),
                    device_id: device.clone(),
                    kind: AlarmKind::Tachycardia,
                    source: None,
                    priority: Priority::Medium,
                    since_ms: t0,
                    raised_ms: t0,
                    resolved_ms: None,
                    reading: Some(130.0),
                    threshold: Some(120.0),
                    announced: true,
                    resolve_reason: None,
                    reannounced_ms: None,
                    escalated_ms: None,
                })
                .await
                .unwrap();
        }
        store
            .save_alarm_settings(
                &patient,
                &StoredAlarmSettings {
                    settings: None,
                    paused_until_ms: None,
                    updated_by: "c-1".into(),
                    updated_ms: t0,
                },
            )
            .await
            .unwrap();
    }
    db
}

/// Starts read per second, all `STREAMS` asked at once: `together` through
/// the batched reader, else one by one per stream as before.
async fn read_rate(store: &Store, together: bool) -> f64 {
    let t = Instant::now();
    let reads = (0..STREAMS).map(|d| async move {
        let (device, actor) = (format!("d-{d}"), format!("device/d-{d}"));
        if together {
            let start = store.device_start(&actor, &device).await.unwrap();
            assert!(start.patient.is_some());
            start.actor.tail.len()
        } else {
            let snapshot = store.snapshot(&actor).await.unwrap();
            let after = snapshot.as_ref().map_or(0, |s| s.seq);
            let tail = store.events(&actor, after).await.unwrap();
            store.alerts(&device).await.unwrap();
            let patient = store.device(&device).await.unwrap().unwrap().patient_id;
            store.alarm_settings(&patient).await.unwrap();
            tail.len()
        }
    });
    let tails: usize = futures_util::future::join_all(reads)
        .await
        .into_iter()
        .sum();
    assert_eq!(
        tails,
        STREAMS / 2 + STREAMS,
        "a tail of 1 after a snapshot, else 2"
    );
    STREAMS as f64 / t.elapsed().as_secs_f64()
}

/// Pushes per second to `STREAMS` streams at once, first (each starts) and
/// second (each started).
async fn first_and_second_push(store: &Store) -> (f64, f64) {
    let (kind, root) = streams(store, StreamSettings::default()).await;
    let t0 = now_ms() + 1_000;
    let mut rates = [0.0; 2];
    for (i, rate) in rates.iter_mut().enumerate() {
        let t = Instant::now();
        let pushes = (0..STREAMS).map(|d| {
            let kind = kind.clone();
            async move {
                let r = kind
                    .send(
                        &format!("d-{d}"),
                        Push {
                            request_id: format!("bench-{i}"),
                            samples: samples(10, t0 + i as u64 * 100),
                            audit: None,
                        },
                    )
                    .await;
                assert_eq!(r.unwrap().unwrap().accepted, 10);
            }
        });
        futures_util::future::join_all(pushes).await;
        *rate = STREAMS as f64 / t.elapsed().as_secs_f64();
    }
    root.shutdown().await;
    (rates[0], rates[1])
}

fn main() {
    let sys = actix_rt::System::new();
    println!(
        "{:<58} {:>12} {:>12} {:>7}",
        "per second, 1,000 at once (best of 5 alternating)", "baseline", "new", "ratio"
    );
    for backend in backends() {
        let db = sys.block_on(with_history(backend, true));
        // Warm-up, not kept.
        sys.block_on(read_rate(&db.store, false));
        sys.block_on(read_rate(&db.store, true));
        let mut reads = [0f64; 2];
        for round in 0..ROUNDS {
            let order = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for together in order {
                let rate = sys.block_on(read_rate(&db.store, together));
                let col = usize::from(together);
                reads[col] = reads[col].max(rate);
            }
        }
        println!(
            "{:<58} {:>12.0} {:>12.0} {:>7.2}",
            format!("stream starts read: one by one vs together ({backend})"),
            reads[0],
            reads[1],
            reads[1] / reads[0]
        );
        sys.block_on(db.drop());
        // Each round on a fresh database: a first push finds streams never
        // started.
        let mut pushes = [0f64; 2];
        for _ in 0..ROUNDS {
            let db = sys.block_on(with_history(backend, false));
            let (first, second) = sys.block_on(first_and_second_push(&db.store));
            pushes[0] = pushes[0].max(second);
            pushes[1] = pushes[1].max(first);
            sys.block_on(db.drop());
        }
        println!(
            "{:<58} {:>12.0} {:>12.0} {:>7.2}",
            format!("pushes: second (started) vs first (starts) ({backend})"),
            pushes[0],
            pushes[1],
            pushes[1] / pushes[0]
        );
    }
}
