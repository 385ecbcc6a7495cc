//! What a consult's start costs, counted in SQL statements (issue 16: a start
//! is a snapshot plus a short tail, whatever the history).
//!
//! A binary of its own: it installs the process-wide `tracing` subscriber
//! that counts sqlx's per-statement events (target `sqlx::query`: one for
//! each statement sqlx runs for the caller; a transaction's BEGIN, and on
//! SQLite its COMMIT, run without it, and the bounds below allow for them),
//! and nothing else may run statements in the process while a start is
//! counted (the tests take turns). Times are printed, never asserted.
//!
//! The history is made through the actor, as a life makes it (its snapshots
//! during that life, its projection caught up before each answer), on a
//! runtime of its own that is then dropped: the actor dies without its
//! `stopping` hook, as in a kill -9 (no passivation snapshot, a snapshot
//! write in flight cut off).

#[path = "it/support/services.rs"]
#[allow(dead_code)]
mod services;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use cardio::actors::consult::state::{Command, Outcome, Party};
use cardio::actors::consult::{Act, ConsultActor, View};
use cardio::registry::{Kind, KindSpec, Registry};
use cardio::store::Store;
use cardio::supervisors::{ArbiterPool, SupervisorRef, SupervisorSpec, Tree};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

/// Chat lines of the long consult.
const LINES: u64 = 10_000;

static STATEMENTS: AtomicU64 = AtomicU64::new(0);
/// The statements counted, by sqlx's summary (for the failure message).
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// One test at a time: the count is process-wide.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct CountStatements;

impl<S: tracing::Subscriber> Layer<S> for CountStatements {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == "sqlx::query" {
            struct Summary(String);
            impl tracing::field::Visit for Summary {
                fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                    if field.name() == "summary" {
                        self.0 = value.to_owned();
                    }
                }
                fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
            }
            let mut summary = Summary(String::new());
            event.record(&mut summary);
            // SQLite's connection set-up (`PRAGMA journal_mode = WAL; …`) is
            // the pool opening a connection, which it may do during any
            // piece of work: it is not a statement of that work.
            if summary.0.starts_with("PRAGMA") {
                return;
            }
            STATEMENTS.fetch_add(1, Ordering::SeqCst);
            SEEN.lock().unwrap().push(summary.0);
        }
    }
}

fn count_statements() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let only_sqlx = tracing_subscriber::filter::Targets::new()
            .with_target("sqlx::query", tracing::Level::TRACE);
        let subscriber =
            tracing_subscriber::registry().with(CountStatements.with_filter(only_sqlx));
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    });
}

/// Statements (and their summaries) run by `work`.
async fn counted<T>(work: impl std::future::Future<Output = T>) -> (T, u64, Vec<String>) {
    SEEN.lock().unwrap().clear();
    let before = STATEMENTS.load(Ordering::SeqCst);
    let value = work.await;
    let n = STATEMENTS.load(Ordering::SeqCst) - before;
    (value, n, std::mem::take(&mut *SEEN.lock().unwrap()))
}

/// A database for one test: an SQLite file, or a fresh PostgreSQL database.
struct Db {
    url: String,
    pg: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    async fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/cardio.db", dir.path().display());
        Db::migrated(Db {
            url,
            pg: None,
            _dir: Some(dir),
        })
        .await
    }

    async fn postgres() -> Db {
        let name = format!(
            "cardio_test_{}_{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        let admin = Store::connect(&services::database_url()).await.unwrap();
        admin
            .execute_admin(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        admin.close().await;
        let url = services::with_path(&services::database_url(), &name);
        Db::migrated(Db {
            url,
            pg: Some(name),
            _dir: None,
        })
        .await
    }

    async fn migrated(db: Db) -> Db {
        let store = Store::connect(&db.url).await.unwrap();
        store.migrate().await.unwrap();
        store.close().await;
        db
    }

    async fn done(self) {
        if let Some(name) = self.pg {
            let admin = Store::connect(&services::database_url()).await.unwrap();
            admin
                .execute_admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .unwrap();
            admin.close().await;
        }
    }
}

/// A node's worth of runtime serving consults from `store`, on the current
/// actix system.
async fn consults(store: &Store) -> Kind<ConsultActor> {
    let store = store.clone();
    let spec = KindSpec::new(move |id: &str| {
        ConsultActor::new(id, store.clone(), Duration::from_secs(3600))
    })
    .idle_timeout(Some(Duration::from_secs(3600)));
    let tree = Tree::new();
    let pool = ArbiterPool::current();
    let root = SupervisorRef::start_root(SupervisorSpec::new("root"), &tree, &pool, |r| {
        panic!("root failed: {r}")
    })
    .await;
    let registry = Registry::new(tree, pool, Duration::from_secs(30));
    registry.register(&root, spec).await.unwrap()
}

async fn act(kind: &Kind<ConsultActor>, id: &str, request_id: &str, command: Command) -> Outcome {
    kind.send(
        id,
        Act {
            request_id: request_id.into(),
            command,
            audit: None,
        },
    )
    .await
    .unwrap()
    .unwrap()
}

fn chat(who: Party, n: u64) -> Command {
    Command::Chat {
        who,
        client_message_id: format!("m-{n}"),
        text: format!("line {n} of a long consult"),
    }
}

fn patient() -> Party {
    Party::Patient("p-1".into())
}

/// Consult `id` with `lines` chat lines, made through the actor on a
/// runtime of its own, which is then dropped without stopping the actor (a
/// kill -9). Returns how long the history took to make.
fn first_life(url: &str, id: &'static str, lines: u64) -> Duration {
    let url = url.to_owned();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let store = Store::connect(&url).await.unwrap();
            let kind = consults(&store).await;
            let started = Instant::now();
            let request = Command::Request {
                patient: "p-1".into(),
                reason: "palpitations".into(),
            };
            act(&kind, id, "r1", request).await;
            act(&kind, id, "r2", Command::Join { who: patient() }).await;
            let doctor = Party::Clinician("c-1".into());
            act(
                &kind,
                id,
                "r3",
                Command::Join {
                    who: doctor.clone(),
                },
            )
            .await;
            for n in 1..=lines {
                let who = if n % 2 == 0 {
                    doctor.clone()
                } else {
                    patient()
                };
                let outcome = act(&kind, id, &format!("chat-{n}"), chat(who, n)).await;
                assert_eq!(
                    outcome,
                    Outcome::Line {
                        seq: n,
                        duplicate: false
                    }
                );
            }
            started.elapsed()
            // The runtime ends here, and the actor with it: no `stopping`.
        })
    })
    .join()
    .expect("the first life")
}

/// The start of consult `id` on a new node (a new pool): statements and time.
async fn start(store: &Store, id: &str) -> (u64, Vec<String>, Duration) {
    let kind = consults(store).await;
    // A connection in the pool first: opening one is not the start's work.
    assert!(store.healthy().await);
    let t = Instant::now();
    let (view, n, seen) = counted(kind.send(id, View { after: u64::MAX })).await;
    let elapsed = t.elapsed();
    assert!(view.unwrap().status.is_some(), "consult {id} recovered");
    (n, seen, elapsed)
}

/// What the start of a consult of 10,000 lines costs, after a kill -9,
/// against one of 10 lines: the same few statements.
async fn a_start_costs_a_few_statements_whatever_the_history(db: &Db, backend: &str) {
    let built = first_life(&db.url, "long", LINES);
    first_life(&db.url, "short", 10);
    let store = Store::connect(&db.url).await.unwrap();
    let snapshot = store
        .snapshot("consult/long")
        .await
        .unwrap()
        .expect("snapshots during life");
    let last = store.last_seq("consult/long").await.unwrap();
    assert!(
        last - snapshot.seq <= 100 + 1,
        "snapshot at {} of {last}: a short tail",
        snapshot.seq
    );

    let (short, short_seen, short_time) = start(&store, "short").await;
    let (long, seen, long_time) = start(&store, "long").await;
    println!(
        "{backend}: history of {LINES} lines made in {built:?}; start after kill -9: \
         {long} statements, {long_time:?} (10 lines: {short} statements, {short_time:?}); {seen:?}"
    );
    // The snapshot, the journal's tail after it, the projection's sequence.
    assert!(long <= 4, "{long} statements: {seen:?}");
    assert_eq!(
        long, short,
        "a start's statements do not grow with history: {short_seen:?}"
    );

    // The restarted consult decides as before: a retry of a line long out
    // of the window is a duplicate, the next line follows the last.
    let kind = consults(&store).await;
    assert_eq!(
        act(&kind, "long", "chat-5-again", chat(patient(), 5)).await,
        Outcome::Line {
            seq: 5,
            duplicate: true
        }
    );
    assert_eq!(
        act(&kind, "long", "chat-next", chat(patient(), LINES + 1)).await,
        Outcome::Line {
            seq: LINES + 1,
            duplicate: false
        }
    );
    let view = kind.send("long", View { after: LINES - 2 }).await.unwrap();
    let seqs: Vec<u64> = view.lines.iter().map(|l| l.seq).collect();
    assert_eq!(seqs, vec![LINES - 1, LINES, LINES + 1]);

    // A projection far behind (as one written before projected_seq existed,
    // or its chat lost): the start catches it up in batches of 500 lines,
    // never a statement per line.
    store
        .execute_admin("DELETE FROM chat_messages WHERE consult_id = 'long'")
        .await
        .unwrap();
    store
        .execute_admin("UPDATE consults SET projected_seq = 0 WHERE id = 'long'")
        .await
        .unwrap();
    let (n, seen, time) = start(&store, "long").await;
    println!("{backend}: start catching up {LINES} chat lines: {n} statements, {time:?}; {seen:?}");
    let batches = (LINES + 1).div_ceil(500);
    // snapshot, tail, projected_seq, the journal after it, the batches, the
    // consult row (and BEGIN, COMMIT where counted).
    assert!(n <= 4 + batches + 1 + 2, "{n} statements: {seen:?}");
    assert_eq!(
        store.chat_lines("long", 0).await.unwrap().len() as u64,
        LINES + 1
    );
    store.close().await;
}

#[actix_rt::test]
async fn a_consult_start_is_a_snapshot_and_a_short_tail_on_sqlite() {
    count_statements();
    let _turn = TURN.lock().await;
    let db = Db::sqlite().await;
    a_start_costs_a_few_statements_whatever_the_history(&db, "sqlite").await;
    db.done().await;
}

#[actix_rt::test]
async fn a_consult_start_is_a_snapshot_and_a_short_tail_on_postgres() {
    // Its turn first: checking that PostgreSQL answers runs statements too.
    let _turn = TURN.lock().await;
    if !services::runs(services::Tier::Postgres) {
        return;
    }
    count_statements();
    let db = Db::postgres().await;
    a_start_costs_a_few_statements_whatever_the_history(&db, "postgres").await;
    db.done().await;
}
