//! The cost of encryption at rest and of the keyed audit trail (issue 13),
//! each beside the unencrypted baseline measured in the same run, on SQLite
//! and PostgreSQL:
//!
//! - the sample path: samples/s through the DeviceStream actor (journal
//!   append of a sealed batch of 1,000, snapshot, aggregates and rules);
//! - the chat path: chat messages/s through the consult actor (sealed journal
//!   entry and sealed chat projection, reply);
//! - the audit path: audit entries/s appended (HMAC-SHA-256 under the audit
//!   key vs. under the all-zero key of an unkeyed store: the same work, so
//!   that row shows the trail's own cost does not change) and the per-entry
//!   cost of `chain_hash`;
//! - the bare cost of sealing and opening one batch and one chat line.
//!
//! After a warm-up, baseline and sealed runs alternate (five pairs, which
//! goes first alternating too) on fresh databases, and the best of each is kept, so drift of the busy
//! machine hits both alike. Needs PostgreSQL at 127.0.0.1:5432 (user postgres,
//! trust), as the tests do; `CARDIO_BENCH_ONLY=sqlite` skips it.
//! Run: `cargo bench --bench at_rest`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cardio::actors::consult::state::{Command, Party};
use cardio::actors::consult::{Act, ConsultActor};
use cardio::actors::device::sample::Sample;
use cardio::actors::device::stream::{DeviceStream, Push, StreamSettings};
use cardio::crypto::{AuditKey, FileKeyProvider, KeyProvider};
use cardio::registry::{KindSpec, Registry};
use cardio::store::audit::{chain_hash, AuditEntry, GENESIS};
use cardio::store::Store;
use cardio::supervisors::{ArbiterPool, SupervisorRef, SupervisorSpec, Tree};

/// Plain and sealed runs of each path, alternating; the best of each kept.
const ROUNDS: usize = 5;

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn now_ms() -> u64 {
    cardio::clock::unix_ms()
}

/// `n` heart-rate samples at 100 Hz from `t0`, noisy.
fn samples(n: usize, t0: u64) -> Vec<Sample> {
    let mut rng = fastrand::Rng::with_seed(7);
    (0..n)
        .map(|i| Sample::HeartRate {
            at_ms: t0 + i as u64 * 10,
            bpm: 70.0 + rng.f64() * 20.0,
        })
        .collect()
}

struct Fresh {
    store: Store,
    pg: Option<String>,
    _dir: tempfile::TempDir,
}

/// A fresh migrated database; `sealed`: with a key file (and so sealing PHI
/// and keying the audit chain), as a node has.
async fn fresh(backend: &str, sealed: bool) -> Fresh {
    let dir = tempfile::tempdir().unwrap();
    let (store, pg) = if backend == "postgres" {
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
        (store, Some(name))
    } else {
        let store = Store::connect(&format!("sqlite://{}/bench.db", dir.path().display()))
            .await
            .unwrap();
        (store, None)
    };
    store.migrate().await.unwrap();
    let store = if sealed {
        let provider = FileKeyProvider::open_or_create(&dir.path().join("bench.key"), true)
            .unwrap()
            .0;
        let provider: Arc<dyn KeyProvider> = Arc::new(provider);
        store.with_keys(provider, "bench").await.unwrap()
    } else {
        store
    };
    Fresh {
        store,
        pg,
        _dir: dir,
    }
}

async fn done(f: Fresh) {
    f.store.close().await;
    if let Some(name) = f.pg {
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

/// Samples/s through the DeviceStream actor, 4 devices in parallel.
async fn sample_path(backend: &str, sealed: bool) -> f64 {
    const DEVICES: usize = 4;
    const BATCHES: usize = 40;
    const BATCH: usize = 1000;
    let f = fresh(backend, sealed).await;
    let t0 = now_ms() - (BATCHES * BATCH) as u64 * 10 - 10_000;
    let batches: Vec<Vec<Sample>> = samples(BATCHES * BATCH, t0)
        .chunks(BATCH)
        .map(|b| b.to_vec())
        .collect();
    let (registry, root) = runtime().await;
    let s = f.store.clone();
    let kind = registry
        .register(
            &root,
            KindSpec::new(move |id: &str| {
                DeviceStream::new(id, s.clone(), StreamSettings::default())
            }),
        )
        .await
        .unwrap();
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
    let rate = (DEVICES * BATCHES * BATCH) as f64 / t.elapsed().as_secs_f64();
    root.shutdown().await;
    done(f).await;
    rate
}

/// Chat messages/s through the consult actor, 8 consults in parallel.
async fn chat_path(backend: &str, sealed: bool) -> f64 {
    const CONSULTS: usize = 8;
    const MESSAGES: usize = 150;
    let f = fresh(backend, sealed).await;
    let (registry, root) = runtime().await;
    let s = f.store.clone();
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
                    reason: "palpitations since Tuesday".into(),
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
                    text: "the chest pain comes back when I climb stairs".into(),
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
    let rate = (CONSULTS * MESSAGES) as f64 / t.elapsed().as_secs_f64();
    root.shutdown().await;
    done(f).await;
    rate
}

fn entry(i: u64) -> AuditEntry {
    AuditEntry {
        at_ms: 1_000 + i,
        subject: format!("dr-{}", i % 10),
        role: "clinician".into(),
        action: "read".into(),
        patient_id: Some(format!("p-{}", i % 100)),
        fields: "vitals,alerts".into(),
        outcome: "allowed".into(),
    }
}

/// Audit entries/s, 8 writers in parallel (group commit).
async fn audit_path(backend: &str, keyed: bool) -> f64 {
    const WRITERS: u64 = 8;
    const EACH: u64 = 250;
    let f = fresh(backend, keyed).await;
    let t = Instant::now();
    let writers = (0..WRITERS).map(|w| {
        let store = f.store.clone();
        tokio::spawn(async move {
            for i in 0..EACH {
                store.audit(&entry(w * EACH + i)).await.unwrap();
            }
        })
    });
    futures_util::future::join_all(writers).await;
    let rate = (WRITERS * EACH) as f64 / t.elapsed().as_secs_f64();
    assert_eq!(f.store.verify_audit().await.unwrap(), Ok(WRITERS * EACH));
    done(f).await;
    rate
}

/// Microseconds per operation of `f`, over `n` runs.
fn micros(n: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

fn main() {
    let sys = actix_rt::System::new();
    let backends: &[&str] = if std::env::var("CARDIO_BENCH_ONLY").as_deref() == Ok("sqlite") {
        &["sqlite"]
    } else {
        &["sqlite", "postgres"]
    };
    println!(
        "{:<58} {:>12} {:>12} {:>7}",
        "path (per second; best of 5 alternating runs)", "plain", "sealed", "ratio"
    );
    for backend in backends {
        let mut best = [[0f64; 2]; 3];
        // A warm-up of each path (caches, the database's first pages), not kept.
        sys.block_on(sample_path(backend, false));
        sys.block_on(chat_path(backend, false));
        sys.block_on(audit_path(backend, false));
        for round in 0..ROUNDS {
            // Which goes first alternates too (the second of a pair tends
            // to find warmer caches).
            let order = if round % 2 == 0 {
                [(false, 0), (true, 1)]
            } else {
                [(true, 1), (false, 0)]
            };
            for (sealed, col) in order {
                best[0][col] = best[0][col].max(sys.block_on(sample_path(backend, sealed)));
                best[1][col] = best[1][col].max(sys.block_on(chat_path(backend, sealed)));
                best[2][col] = best[2][col].max(sys.block_on(audit_path(backend, sealed)));
            }
        }
        for (what, [plain, sealed]) in [
            "samples/s, DeviceStream actor",
            "chat messages/s, consult actor",
            "audit entries/s (zero key vs audit key)",
        ]
        .iter()
        .zip(best)
        {
            println!(
                "{:<58} {plain:>12.0} {sealed:>12.0} {:>7.3}",
                format!("{what} ({backend})"),
                sealed / plain
            );
        }
    }
    // The bare cryptography, without a database.
    let dir = tempfile::tempdir().unwrap();
    let provider: Arc<dyn KeyProvider> = Arc::new(
        FileKeyProvider::open_or_create(&dir.path().join("k"), true)
            .unwrap()
            .0,
    );
    let (id, key) = cardio::crypto::fresh_data_key();
    let ring = cardio::crypto::Keyring::new(provider, AuditKey::unkeyed(), id, &key).unwrap();
    let batch = serde_json::to_vec(&samples(1000, now_ms())).unwrap();
    let ad = cardio::crypto::row_ad("journal", &[b"device/d-1", &7u64.to_be_bytes()]);
    let sealed = ring.seal(&ad, &batch);
    let line = "the chest pain comes back when I climb stairs";
    let audit = AuditKey::new([9; 32]);
    let e = entry(1);
    println!();
    println!(
        "seal / open a batch of 1,000 samples ({} bytes of JSON): {:.1} / {:.1} µs",
        batch.len(),
        micros(2000, || {
            std::hint::black_box(ring.seal(&ad, &batch));
        }),
        micros(2000, || {
            std::hint::black_box(ring.open(&ad, &sealed).unwrap());
        })
    );
    println!(
        "seal a chat line as text: {:.2} µs; chain_hash of an audit entry: {:.2} µs",
        micros(100_000, || {
            std::hint::black_box(ring.seal_text(&ad, line));
        }),
        micros(100_000, || {
            std::hint::black_box(chain_hash(&audit, GENESIS, 1, &e));
        })
    );
}
