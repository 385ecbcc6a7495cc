//! What the domain and at-rest benchmarks share (`#[path]`-included by
//! each): fresh databases, a supervision runtime, heart-rate samples, and
//! the two actor paths they time (pushes through the DeviceStream actor,
//! chat through the consult actor).

use std::time::{Duration, Instant};

use cardio::actors::consult::state::{Command, Party};
use cardio::actors::consult::{Act, ConsultActor};
use cardio::actors::device::sample::Sample;
use cardio::actors::device::stream::{DeviceStream, Push, StreamSettings};
use cardio::registry::{Kind, KindSpec, Registry};
use cardio::store::Store;
use cardio::supervisors::{ArbiterPool, SupervisorRef, SupervisorSpec, Tree};

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub fn now_ms() -> u64 {
    cardio::clock::unix_ms()
}

/// `n` heart-rate samples at 100 Hz from `t0` (a plausible sensor), noisy.
pub fn samples(n: usize, t0: u64) -> Vec<Sample> {
    let mut rng = fastrand::Rng::with_seed(7);
    (0..n)
        .map(|i| Sample::HeartRate {
            at_ms: t0 + i as u64 * 10,
            bpm: 70.0 + rng.f64() * 20.0,
        })
        .collect()
}

/// A fresh migrated database of its own, dropped by [`Db::drop`].
pub struct Db {
    pub store: Store,
    /// The PostgreSQL database's name, to drop.
    pg: Option<String>,
    /// The SQLite file's folder (and a key file's, if any).
    // Read by the at-rest bench (its key file), not by the domain one.
    #[allow(dead_code)]
    pub dir: tempfile::TempDir,
}

impl Db {
    /// On `backend` (`sqlite` or `postgres`, at 127.0.0.1:5432 as the
    /// tests use it).
    pub async fn fresh(backend: &str) -> Db {
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
        Db { store, pg, dir }
    }

    pub async fn drop(self) {
        self.store.close().await;
        if let Some(name) = self.pg {
            let admin = Store::connect(PG_ADMIN).await.unwrap();
            admin
                .execute_admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .unwrap();
            admin.close().await;
        }
    }
}

pub async fn runtime() -> (Registry, SupervisorRef) {
    let tree = Tree::new();
    let pool = ArbiterPool::current();
    let root = SupervisorRef::start_root(SupervisorSpec::new("bench"), &tree, &pool, |r| {
        panic!("{r}")
    })
    .await;
    (Registry::new(tree, pool, Duration::from_secs(60)), root)
}

/// Device streams of `settings` on `store`, on a supervision runtime of
/// their own (shut down through the returned root).
pub async fn streams(
    store: &Store,
    settings: StreamSettings,
) -> (Kind<DeviceStream>, SupervisorRef) {
    let (registry, root) = runtime().await;
    let s = store.clone();
    let kind = registry
        .register(
            &root,
            KindSpec::new(move |id: &str| DeviceStream::new(id, s.clone(), settings.clone())),
        )
        .await
        .unwrap();
    (kind, root)
}

/// The databases a store bench runs on: both, or SQLite alone with
/// `CARDIO_BENCH_ONLY=sqlite`.
// The domain bench picks its own.
#[allow(dead_code)]
pub fn backends() -> &'static [&'static str] {
    if std::env::var("CARDIO_BENCH_ONLY").as_deref() == Ok("sqlite") {
        &["sqlite"]
    } else {
        &["sqlite", "postgres"]
    }
}

/// Samples/s through the DeviceStream actor on `store`: `devices` in
/// parallel, each pushing every batch of `batches` (each must be taken
/// whole).
pub async fn push_rate(store: &Store, devices: usize, batches: &[Vec<Sample>]) -> f64 {
    push_rate_with(store, devices, batches, StreamSettings::default(), "d").await
}

/// [`push_rate`] with streams of `settings`, named `prefix-<n>`.
pub async fn push_rate_with(
    store: &Store,
    devices: usize,
    batches: &[Vec<Sample>],
    settings: StreamSettings,
    prefix: &str,
) -> f64 {
    let (kind, root) = streams(store, settings).await;
    let t = Instant::now();
    let pushes = (0..devices).map(|d| {
        let (kind, batches) = (kind.clone(), batches.to_vec());
        async move {
            for (i, b) in batches.into_iter().enumerate() {
                let n = b.len();
                let r = kind
                    .send(
                        &format!("{prefix}-{d}"),
                        Push {
                            request_id: format!("p{i}"),
                            samples: b,
                            audit: None,
                        },
                    )
                    .await;
                assert_eq!(r.unwrap().unwrap().accepted as usize, n);
            }
        }
    });
    futures_util::future::join_all(pushes).await;
    let total: usize = batches.iter().map(Vec::len).sum();
    let rate = (devices * total) as f64 / t.elapsed().as_secs_f64();
    root.shutdown().await;
    rate
}

/// Chat messages/s through the consult actor on `store`: `consults` in
/// progress (requested for `reason`, joined by both) in parallel, each
/// sent `messages` lines of `text` by its patient.
pub async fn chat_rate(
    store: &Store,
    consults: usize,
    messages: usize,
    reason: &str,
    text: &str,
) -> f64 {
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
    for c in 0..consults {
        let id = format!("c-{c}");
        for (r, command) in [
            (
                "r1",
                Command::Request {
                    patient: "p".into(),
                    reason: reason.into(),
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
                    audit: None,
                },
            )
            .await
            .unwrap()
            .unwrap();
        }
    }
    let t = Instant::now();
    let chats = (0..consults).map(|c| {
        let kind = kind.clone();
        async move {
            for i in 0..messages {
                let command = Command::Chat {
                    who: patient(),
                    client_message_id: format!("m{i}"),
                    text: text.into(),
                };
                kind.send(
                    &format!("c-{c}"),
                    Act {
                        request_id: format!("m{i}"),
                        command,
                        audit: None,
                    },
                )
                .await
                .unwrap()
                .unwrap();
            }
        }
    });
    futures_util::future::join_all(chats).await;
    let rate = (consults * messages) as f64 / t.elapsed().as_secs_f64();
    root.shutdown().await;
    rate
}
