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
//!   single-row inserts.
//!
//! Needs PostgreSQL at 127.0.0.1:5432 (user postgres, trust), as the tests do.
//! Run: `cargo bench --bench domain` (`CARDIO_BENCH_ONLY=memory` for the
//! in-memory rows alone, without databases).

use std::time::{Duration, Instant};

use cardio::actors::consult::state::{Command, Party};
use cardio::actors::consult::{Act, ConsultActor};
use cardio::actors::device::aggregate::Rollups;
use cardio::actors::device::alarms::{AlarmEngine, AlarmSettings, Observation, Signal};
use cardio::actors::device::ecg::{EcgAnalyzer, EcgOutput, RhythmSettings};
use cardio::actors::device::sample::{Limits, Sample, Validator};
use cardio::actors::device::stream::{DeviceStream, Push, StreamSettings};
use cardio::registry::{KindSpec, Registry};
use cardio::store::Store;
use cardio::supervisors::{ArbiterPool, SupervisorRef, SupervisorSpec, Tree};

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `n` heart-rate samples at 100 Hz ending now (a plausible sensor), noisy.
fn samples(n: usize, t0: u64) -> Vec<Sample> {
    let mut rng = fastrand::Rng::with_seed(7);
    (0..n)
        .map(|i| Sample::HeartRate {
            at_ms: t0 + i as u64 * 10,
            bpm: 70.0 + rng.f64() * 20.0,
        })
        .collect()
}

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

async fn fresh_store(backend: &str) -> (Store, Option<String>, Option<tempfile::TempDir>) {
    if backend == "postgres" {
        let name = format!("cardio_bench_{}", uuid::Uuid::new_v4().simple());
        let admin = Store::connect(PG_ADMIN)
            .await
            .expect("PostgreSQL at 127.0.0.1:5432");
        admin
            .execute_admin(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        admin.close().await;
        let store = Store::connect(&format!("postgres://postgres@127.0.0.1:5432/{name}"))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        (store, Some(name), None)
    } else {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}/bench.db", dir.path().display()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        (store, None, Some(dir))
    }
}

async fn drop_store(store: Store, name: Option<String>) {
    store.close().await;
    if let Some(name) = name {
        let admin = Store::connect(PG_ADMIN).await.unwrap();
        admin
            .execute_admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .unwrap();
        admin.close().await;
    }
}

async fn runtime() -> (Registry, SupervisorRef) {
    let tree = Tree::new();
    let pool = ArbiterPool::current();
    let root = SupervisorRef::start_root(SupervisorSpec::new("bench"), &tree, &pool, |r| {
        panic!("{r}")
    })
    .await;
    (Registry::new(tree, pool, Duration::from_secs(60)), root)
}

/// Samples/s persisted: (raw inserts, DeviceStream pushes), 8 devices in parallel.
async fn persisted(backend: &str) -> (f64, f64) {
    const DEVICES: usize = 8;
    const BATCHES: usize = 25;
    const BATCH: usize = 1000;
    let (store, name, _dir) = fresh_store(backend).await;
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

    let (registry, root) = runtime().await;
    let s = store.clone();
    let kind = registry
        .register(
            &root,
            KindSpec::new(move |id: &str| {
                DeviceStream::new(id, s.clone(), StreamSettings::default())
            }),
        )
        .await
        .unwrap();
    let batches: Vec<Vec<Sample>> = samples(BATCHES * BATCH, t0)
        .chunks(BATCH)
        .map(|b| b.to_vec())
        .collect();
    let t = Instant::now();
    let pushes = (0..DEVICES).map(|d| {
        let (kind, batches) = (kind.clone(), batches.clone());
        async move {
            for (i, b) in batches.into_iter().enumerate() {
                let r = kind
                    .send(
                        &format!("d-{d}"),
                        Push {
                            request_id: format!("p{i}"),
                            samples: b,
                        },
                    )
                    .await;
                assert_eq!(r.unwrap().unwrap().accepted as usize, BATCH);
            }
        }
    });
    futures_util::future::join_all(pushes).await;
    let actor = (DEVICES * BATCHES * BATCH) as f64 / t.elapsed().as_secs_f64();
    root.shutdown().await;
    drop_store(store, name).await;
    (raw, actor)
}

/// Chat messages/s: (raw single inserts, consult actor), 8 consults in parallel.
async fn chat(backend: &str) -> (f64, f64) {
    const CONSULTS: usize = 8;
    const MESSAGES: usize = 100;
    let (store, name, _dir) = fresh_store(backend).await;
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

    let (registry, root) = runtime().await;
    let s = store.clone();
    let kind = registry
        .register(
            &root,
            KindSpec::new(move |id: &str| {
                ConsultActor::new(id, s.clone(), Duration::from_secs(3600))
            }),
        )
        .await
        .unwrap();
    let patient = || Party::Patient("p".into());
    for c in 0..CONSULTS {
        let id = format!("c-{c}");
        for (r, command) in [
            (
                "r1",
                Command::Request {
                    patient: "p".into(),
                    reason: "bench".into(),
                },
            ),
            ("r2", Command::Join { who: patient() }),
            (
                "r3",
                Command::Join {
                    who: Party::Clinician("d".into()),
                },
            ),
        ] {
            kind.send(
                &id,
                Act {
                    request_id: r.into(),
                    command,
                },
            )
            .await
            .unwrap()
            .unwrap();
        }
    }
    let t = Instant::now();
    let chats = (0..CONSULTS).map(|c| {
        let kind = kind.clone();
        async move {
            for i in 0..MESSAGES {
                let command = Command::Chat {
                    who: patient(),
                    client_message_id: format!("m{i}"),
                    text: "hello".into(),
                };
                kind.send(
                    &format!("c-{c}"),
                    Act {
                        request_id: format!("m{i}"),
                        command,
                    },
                )
                .await
                .unwrap()
                .unwrap();
            }
        }
    });
    futures_util::future::join_all(chats).await;
    let actor = (CONSULTS * MESSAGES) as f64 / t.elapsed().as_secs_f64();
    root.shutdown().await;
    drop_store(store, name).await;
    (raw, actor)
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
}
