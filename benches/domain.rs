//! Domain benchmarks (issue 3), each beside a baseline measured in the same run:
//!
//! - samples/s through device-stream processing in memory (validation,
//!   minute/hour windows, the alarm engine), vs. a plain pass over the same
//!   samples: heart-rate readings, and ECG through the whole analysis (QRS
//!   detection, signal quality, rhythm) into the alarm engine;
//! - samples/s persisted through the DeviceStream actor (journal append per
//!   batch of 1,000, then aggregates and rules), to PostgreSQL and to SQLite,
//!   vs. raw sqlx inserts of the same payloads into the same table;
//! - consult chat messages/s end to end (actor, journal, reply), vs. raw
//!   single-row inserts;
//! - device streams started/s on PostgreSQL, 100 at once as after a
//!   failover, each replaying a journal tail of 63 batches of 50 samples
//!   (the most a stream left after its snapshot when it snapshotted every
//!   64 batches) or 20 (every 1,000 samples), vs. streams with one batch to
//!   replay: what a start's replay costs;
//! - samples/s persisted in batches of 50 with a snapshot every 1,000
//!   samples, vs. every 64 batches: what the shorter replay costs.
//!
//! Needs PostgreSQL at 127.0.0.1:5432 (user postgres, trust), as the tests do.
//! Run: `cargo bench --bench domain` (`CARDIO_BENCH_ONLY=memory` for the
//! in-memory rows alone, without databases).

#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use cardio::actors::device::aggregate::Rollups;
use cardio::actors::device::alarms::{AlarmEngine, AlarmSettings, Observation, Signal};
use cardio::actors::device::ecg::{EcgAnalyzer, EcgOutput, RhythmSettings};
use cardio::actors::device::sample::{Limits, Sample, Validator};
use cardio::actors::device::stream::{Latest, StreamSettings};
use cardio::store::{Appended, Store};
use common::{chat_rate, now_ms, push_rate, push_rate_with, samples, Db};

fn in_memory() -> (f64, f64) {
    const N: usize = 2_000_000;
    let all = samples(N, now_ms() - N as u64 * 10);
    // Baseline: one plain pass reading every value.
    let t = Instant::now();
    let mut sum = 0.0;
    for s in &all {
        if let Sample::HeartRate { bpm, .. } = s {
            sum += *bpm;
        }
    }
    std::hint::black_box(sum);
    let plain = N as f64 / t.elapsed().as_secs_f64();
    let (mut validator, mut rollups, mut engine) = (
        Validator::new(Limits::default()),
        Rollups::default(),
        AlarmEngine::new(AlarmSettings::default()),
    );
    let now = now_ms();
    let t = Instant::now();
    let mut accepted = 0;
    for batch in all.chunks(1000) {
        let verdict = validator.judge(batch.to_vec(), now);
        for s in &verdict.accepted {
            rollups.add(s);
            if let Sample::HeartRate { at_ms, bpm } = s {
                std::hint::black_box(engine.observe(&Observation::Reading {
                    signal: Signal::PulseRate,
                    at_ms: *at_ms,
                    value: *bpm,
                }));
            }
        }
        accepted += verdict.accepted.len();
        std::hint::black_box(rollups.take_closed());
    }
    assert_eq!(accepted, N);
    (plain, N as f64 / t.elapsed().as_secs_f64())
}

/// ECG voltage samples/s through validation, the whole ECG analysis and the
/// alarm engine (one-second chunks at 250 Hz: sinus rhythm with PVCs and
/// noise), vs. a plain pass summing the same voltages.
fn ecg_in_memory() -> (f64, f64) {
    use cardio::synthetic::ecg::{generate, EcgScenario};
    const HZ: u32 = 250;
    const MINUTES: usize = 20;
    let mut scenario = EcgScenario::new(HZ, 11)
        .sinus(75.0, MINUTES as f64 * 60.0)
        .noisy();
    scenario.pvc_every = Some(12);
    let ecg = generate(&scenario);
    let t0 = now_ms() - (MINUTES * 60_000) as u64 - 10_000;
    let chunks: Vec<Sample> = ecg
        .samples
        .chunks(HZ as usize)
        .enumerate()
        .map(|(i, c)| Sample::Ecg {
            at_ms: t0 + i as u64 * 1000,
            hz: HZ,
            millivolts: c.to_vec(),
        })
        .collect();
    let n = ecg.samples.len();
    let t = Instant::now();
    let mut sum = 0.0f64;
    for c in &chunks {
        if let Sample::Ecg { millivolts, .. } = c {
            for v in millivolts {
                sum += f64::from(*v);
            }
        }
    }
    std::hint::black_box(sum);
    let plain = n as f64 / t.elapsed().as_secs_f64();
    let (mut validator, mut engine) = (
        Validator::new(Limits::default()),
        AlarmEngine::new(AlarmSettings::default()),
    );
    let mut analyzer = EcgAnalyzer::new(HZ, RhythmSettings::default());
    let now = now_ms();
    let mut out = EcgOutput::default();
    let mut beats = 0;
    let t = Instant::now();
    for batch in chunks.chunks(10) {
        let verdict = validator.judge(batch.to_vec(), now);
        for s in &verdict.accepted {
            let Sample::Ecg {
                at_ms, millivolts, ..
            } = s
            else {
                continue;
            };
            out.beats.clear();
            out.states.clear();
            analyzer.push(millivolts, &mut out);
            beats += out.beats.len();
            for (i, state) in out.states.iter().enumerate() {
                let at = at_ms + i as u64 * 1000;
                std::hint::black_box(engine.observe(&state.observation(at)));
                if let Some(bpm) = state.hr_bpm {
                    std::hint::black_box(engine.observe(&Observation::Reading {
                        signal: Signal::EcgHeartRate,
                        at_ms: at,
                        value: bpm,
                    }));
                }
            }
        }
    }
    let ours = n as f64 / t.elapsed().as_secs_f64();
    assert!(
        beats > MINUTES * 70,
        "the analysis found the beats: {beats}"
    );
    (plain, ours)
}

/// Samples/s persisted: (raw inserts, DeviceStream pushes), 8 devices in parallel.
async fn persisted(backend: &str) -> (f64, f64) {
    const DEVICES: usize = 8;
    const BATCHES: usize = 25;
    const BATCH: usize = 1000;
    let db = Db::fresh(backend).await;
    let store = &db.store;
    let t0 = now_ms() - (BATCHES * BATCH) as u64 * 10 - 10_000;
    let payloads: Vec<Vec<u8>> = samples(BATCHES * BATCH, t0)
        .chunks(BATCH)
        .map(|b| serde_json::to_vec(b).unwrap())
        .collect();
    // Baseline: the same payloads appended straight to the journal.
    let t = Instant::now();
    let raws = (0..DEVICES).map(|d| {
        let (store, payloads) = (store.clone(), payloads.clone());
        tokio::spawn(async move {
            for (i, p) in payloads.iter().enumerate() {
                store
                    .append(&format!("raw/{d}"), i as u64, &format!("r{i}"), 0, p)
                    .await
                    .unwrap();
            }
        })
    });
    futures_util::future::join_all(raws).await;
    let raw = (DEVICES * BATCHES * BATCH) as f64 / t.elapsed().as_secs_f64();

    let batches: Vec<Vec<Sample>> = samples(BATCHES * BATCH, t0)
        .chunks(BATCH)
        .map(|b| b.to_vec())
        .collect();
    let actor = push_rate(store, DEVICES, &batches).await;
    db.drop().await;
    (raw, actor)
}

/// Chat messages/s: (raw single inserts, consult actor), 8 consults in parallel.
async fn chat(backend: &str) -> (f64, f64) {
    const CONSULTS: usize = 8;
    const MESSAGES: usize = 100;
    let db = Db::fresh(backend).await;
    let store = &db.store;
    let t = Instant::now();
    let raws = (0..CONSULTS).map(|c| {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..MESSAGES {
                store
                    .append(
                        &format!("raw/{c}"),
                        i as u64,
                        &format!("m{i}"),
                        0,
                        b"{\"text\":\"hello\"}",
                    )
                    .await
                    .unwrap();
            }
        })
    });
    futures_util::future::join_all(raws).await;
    let raw = (CONSULTS * MESSAGES) as f64 / t.elapsed().as_secs_f64();

    let actor = chat_rate(store, CONSULTS, MESSAGES, "bench", "hello").await;
    db.drop().await;
    (raw, actor)
}

/// Device streams started/s, `DEVICES` at once (first message answered),
/// each with `batches` journal entries of 50 samples and no snapshot.
async fn starts(store: &Store, prefix: &str, batches: usize) -> f64 {
    const DEVICES: usize = 100;
    let t0 = now_ms() - 3_600_000;
    for d in 0..DEVICES {
        let key = format!("device/{prefix}-{d}");
        let mut seq = 0;
        for (i, batch) in samples(batches * 50, t0).chunks(50).enumerate() {
            let payload = serde_json::to_vec(batch).unwrap();
            match store.append(&key, seq, &format!("p{i}"), 0, &payload).await {
                Ok(Appended::Written { seq: s }) => seq = s,
                other => panic!("seeding {key}: {other:?}"),
            }
        }
    }
    let (kind, root) = common::streams(store, StreamSettings::default()).await;
    let t = Instant::now();
    let ids: Vec<String> = (0..DEVICES).map(|d| format!("{prefix}-{d}")).collect();
    let started = ids.iter().map(|id| kind.send(id, Latest));
    for latest in futures_util::future::join_all(started).await {
        assert!(latest.unwrap().heart_rate.is_some(), "the tail replayed");
    }
    let rate = DEVICES as f64 / t.elapsed().as_secs_f64();
    root.shutdown().await;
    rate
}

/// Samples/s persisted in batches of 50, 16 devices in parallel, with
/// snapshots every 64 batches (the baseline) and every 1,000 samples,
/// alternated twice (one database).
async fn snapshot_cost() -> (f64, f64) {
    const DEVICES: usize = 16;
    const BATCHES: usize = 200;
    let db = Db::fresh("postgres").await;
    let t0 = now_ms() - (BATCHES * 50) as u64 * 10 - 10_000;
    let batches: Vec<Vec<Sample>> = samples(BATCHES * 50, t0)
        .chunks(50)
        .map(|b| b.to_vec())
        .collect();
    let by_batches = StreamSettings {
        snapshot_samples: u64::MAX,
        ..StreamSettings::default()
    };
    let (mut base, mut ours) = (0.0, 0.0);
    for round in 0..2 {
        let old = by_batches.clone();
        let new = StreamSettings::default();
        base += push_rate_with(&db.store, DEVICES, &batches, old, &format!("b{round}")).await;
        ours += push_rate_with(&db.store, DEVICES, &batches, new, &format!("s{round}")).await;
    }
    db.drop().await;
    (base / 2.0, ours / 2.0)
}

/// Starts/s with one batch to replay, then 63, then 20 (one database,
/// after a round of starts that warms its pool and the code's pages).
async fn replays() -> (f64, f64, f64) {
    let db = Db::fresh("postgres").await;
    starts(&db.store, "warm", 1).await;
    let one = starts(&db.store, "one", 1).await;
    let most = starts(&db.store, "most", 63).await;
    let twenty = starts(&db.store, "twenty", 20).await;
    db.drop().await;
    (one, most, twenty)
}

fn main() {
    let (plain, pipeline) = in_memory();
    let (ecg_plain, ecg_pipeline) = ecg_in_memory();
    // The databases' rows first measured, then everything printed together.
    let persisted_rows =
        (std::env::var("CARDIO_BENCH_ONLY").as_deref() != Ok("memory")).then(|| {
            let sys = actix_rt::System::new();
            (
                sys.block_on(persisted("postgres")),
                sys.block_on(persisted("sqlite")),
                sys.block_on(chat("postgres")),
                sys.block_on(chat("sqlite")),
                sys.block_on(replays()),
                sys.block_on(snapshot_cost()),
            )
        });
    let row = |what: &str, base: f64, ours: f64, target: &str| {
        println!(
            "{what:<62} {base:>14.0} {ours:>14.0} {:>7.2}  {target}",
            ours / base
        );
    };
    println!();
    println!(
        "cardio domain benchmarks ({} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:<62} {:>14} {:>14} {:>7}  target",
        "measure (per second)", "baseline", "cardio", "ratio"
    );
    row(
        "samples, validation+windows+alarms in memory (vs plain pass)",
        plain,
        pipeline,
        ">= 5,000,000",
    );
    row(
        "ECG samples, validation+ECG analysis+alarms (vs plain pass)",
        ecg_plain,
        ecg_pipeline,
        ">= 5,000,000",
    );
    let Some((
        (pg_raw, pg_actor),
        (lite_raw, lite_actor),
        (pg_chat_raw, pg_chat),
        (lite_chat_raw, lite_chat),
        (one, most, twenty),
        (by_batches, by_samples),
    )) = persisted_rows
    else {
        return;
    };
    row(
        "samples persisted via DeviceStream, PostgreSQL (vs raw appends)",
        pg_raw,
        pg_actor,
        ">= 200,000",
    );
    row(
        "samples persisted via DeviceStream, SQLite (vs raw appends)",
        lite_raw,
        lite_actor,
        "",
    );
    row(
        "chat messages via Consult actor, PostgreSQL (vs raw appends)",
        pg_chat_raw,
        pg_chat,
        "",
    );
    row(
        "chat messages via Consult actor, SQLite (vs raw appends)",
        lite_chat_raw,
        lite_chat,
        "",
    );
    row(
        "stream starts, 63 batches of 50 to replay, PG (vs 1 batch)",
        one,
        most,
        "",
    );
    row(
        "stream starts, 20 batches of 50 to replay, PG (vs 1 batch)",
        one,
        twenty,
        "",
    );
    row(
        "samples x50 persisted, snapshot per 1,000, PG (vs per 64 batches)",
        by_batches,
        by_samples,
        "",
    );
}
