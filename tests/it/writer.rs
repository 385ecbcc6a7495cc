//! The store's group commit, on both databases: appends and audit entries
//! from many callers go in one round (one transaction), each append keeps
//! its own checks and outcome, and no caller is answered before its round
//! committed.

use std::time::Duration;

use cardio::store::audit::{AuditEntry, PendingAudit};
use cardio::store::consults::ConsultRow;
use cardio::store::writer::Then;
use cardio::store::{Appended, Store, StoreError};
use sqlx::Connection;

use crate::store::TestDb;

/// A connection of the test's own that holds the database's write lock
/// (SQLite) or the audit chain's head row (PostgreSQL) until released: a
/// round with an audit entry cannot commit meanwhile.
enum Lock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Lock {
    async fn take(db: &TestDb) -> Lock {
        if db.store.backend() == "postgres" {
            let mut c = sqlx::PgConnection::connect(db.url()).await.unwrap();
            sqlx::query("BEGIN").execute(&mut c).await.unwrap();
            sqlx::query("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE")
                .fetch_one(&mut c)
                .await
                .unwrap();
            Lock::Postgres(c)
        } else {
            let mut c = sqlx::SqliteConnection::connect(db.url()).await.unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut c)
                .await
                .unwrap();
            Lock::Sqlite(c)
        }
    }

    async fn release(self) {
        match self {
            Lock::Postgres(mut c) => sqlx::query("COMMIT").execute(&mut c).await.map(|_| ()),
            Lock::Sqlite(mut c) => sqlx::query("COMMIT").execute(&mut c).await.map(|_| ()),
        }
        .unwrap();
    }
}

fn entry(action: &str) -> AuditEntry {
    AuditEntry {
        at_ms: 1,
        subject: "dr-1".into(),
        role: "clinician".into(),
        action: action.into(),
        patient_id: Some("p-1".into()),
        fields: "chat".into(),
        outcome: "allowed".into(),
    }
}

async fn within<T>(what: &str, mut ready: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = ready() {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

type Handle = tokio::task::JoinHandle<Result<Appended, StoreError>>;

fn append(store: &Store, actor: &str, after: u64, id: &str) -> Handle {
    let (store, actor, id) = (store.clone(), actor.to_owned(), id.to_owned());
    tokio::spawn(async move { store.append(&actor, after, &id, 0, b"{}").await })
}

/// Takes the lock, then has a first audit entry take the writer, whose
/// round waits for the lock: what is queued next goes in the round after.
/// Returns the lock, the rounds committed before, and the entry's task.
async fn writer_held(db: &TestDb) -> (Lock, u64, tokio::task::JoinHandle<Result<u64, StoreError>>) {
    let store = &db.store;
    let lock = Lock::take(db).await;
    let rounds = store.rounds_committed();
    let first_audit = {
        let store = store.clone();
        tokio::spawn(async move { store.audit(&entry("first")).await })
    };
    within("the writer took the first entry", || {
        (store.writer_busy() && store.writes_waiting() == 0).then_some(())
    })
    .await;
    (lock, rounds, first_audit)
}

async fn one_round_answers_each_append_with_its_own_outcome(db: &TestDb) {
    use cardio::cluster::{shard_of_key, Fence};
    let store = &db.store;
    // A journal with a message in it, one a stale writer will miss, and a
    // shard that moves away from node a after a's first write.
    store
        .append("consult/dup", 0, "m-1", 0, b"{}")
        .await
        .unwrap();
    store
        .append("consult/stale", 0, "m-1", 0, b"{}")
        .await
        .unwrap();
    let shards = 8;
    let fenced_key = "consult/fenced";
    let shard = shard_of_key(fenced_key, shards);
    let fence_a = Fence::new(shards);
    let a = store.fenced(fence_a.clone());
    let [(_, e1)] = store.claim_shards("a", &[(shard, None)], 1).await.unwrap()[..] else {
        panic!("one claim")
    };
    fence_a.hold(shard, e1);
    a.append(fenced_key, 0, "m-1", 0, b"{}").await.unwrap();
    store.claim_shards("b", &[(shard, None)], 2).await.unwrap();

    let (lock, rounds, first_audit) = writer_held(db).await;
    let fresh: Vec<Handle> = (0..5)
        .map(|i| append(store, &format!("consult/new-{i}"), 0, "m-1"))
        .collect();
    let duplicate = append(store, "consult/dup", 1, "m-1");
    let stale = append(store, "consult/stale", 0, "m-2");
    let moved = append(&a, fenced_key, 1, "m-2");
    let audit = {
        let store = store.clone();
        tokio::spawn(async move { store.audit(&entry("second")).await })
    };
    // Everything after the first audit entry waits for the next round.
    within("the writes are queued", || {
        (store.writes_waiting() >= 9).then_some(())
    })
    .await;
    // Nothing is answered while its round cannot commit.
    let all_pending = || {
        !first_audit.is_finished()
            && !audit.is_finished()
            && fresh.iter().all(|h| !h.is_finished())
            && [&duplicate, &stale, &moved]
                .iter()
                .all(|h| !h.is_finished())
    };
    for _ in 0..20 {
        assert!(
            all_pending(),
            "a write was answered before its round committed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    lock.release().await;

    assert_eq!(first_audit.await.unwrap().unwrap(), 1);
    for h in fresh {
        assert_eq!(h.await.unwrap().unwrap(), Appended::Written { seq: 1 });
    }
    assert_eq!(
        duplicate.await.unwrap().unwrap(),
        Appended::Duplicate { seq: 1 }
    );
    assert!(matches!(
        stale.await.unwrap(),
        Err(StoreError::Conflict { expected: 1, .. })
    ));
    assert!(matches!(
        moved.await.unwrap(),
        Err(StoreError::Fenced { held: Some(h), .. }) if h == e1
    ));
    assert_eq!(fence_a.epoch(shard), None, "a let go of the shard");
    assert_eq!(audit.await.unwrap().unwrap(), 2);
    assert!(
        store.rounds_committed() - rounds <= 2,
        "the writes after the first went in one round"
    );
    // What was refused wrote nothing; the rest is there; the chain holds.
    for (key, n) in [
        ("consult/dup", 1),
        ("consult/stale", 1),
        (fenced_key, 1),
        ("consult/new-4", 1),
    ] {
        assert_eq!(store.events(key, 0).await.unwrap().len(), n, "{key}");
    }
    assert_eq!(store.verify_audit().await.unwrap(), Ok(2));
}

async fn a_projection_commits_with_its_append_and_only_then(db: &TestDb) {
    use cardio::actors::consult::state::Status;
    let store = &db.store;
    let key = "consult/c-then";
    let row = |status| ConsultRow {
        id: "c-then".into(),
        patient_id: "p-1".into(),
        clinician_id: None,
        status,
        requested_ms: 1,
        reason: "checkup".into(),
        notes: None,
        started_ms: None,
        ended_ms: None,
    };
    let then = store.consult_projection(&row(Status::Requested), &[], 1);
    assert_eq!(
        store
            .append_then(key, 0, "m-1", 0, b"{}", then)
            .await
            .unwrap(),
        Appended::Written { seq: 1 }
    );
    assert_eq!(store.projected_seq("c-then").await.unwrap(), 1);
    assert_eq!(
        store.consult_row("c-then").await.unwrap().map(|r| r.status),
        Some(Status::Requested)
    );
    // A duplicate and a conflict project nothing.
    let then = store.consult_projection(&row(Status::Cancelled), &[], 2);
    assert_eq!(
        store
            .append_then(key, 1, "m-1", 0, b"{}", then.clone())
            .await
            .unwrap(),
        Appended::Duplicate { seq: 1 }
    );
    assert!(matches!(
        store.append_then(key, 5, "m-2", 0, b"{}", then).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(store.projected_seq("c-then").await.unwrap(), 1);
    assert_eq!(
        store.consult_row("c-then").await.unwrap().map(|r| r.status),
        Some(Status::Requested)
    );
}

/// An access's entry carried with the append it records commits in the
/// same transaction, whatever the append's outcome (written, a duplicate, a
/// conflict); one no append takes is written on its own by `settle`.
async fn an_access_entry_commits_in_the_transaction_of_its_append(db: &TestDb) {
    let store = &db.store;
    let key = "device/d-audited";
    let logged = || async {
        store
            .audit_log(Some("p-1"), 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.entry.action)
            .collect::<Vec<_>>()
    };
    let rounds = store.rounds_committed();
    let mut audit = PendingAudit::new(Some(entry("write-1")));
    let written = store
        .append_audited(key, 0, "m-1", 0, b"{}", Then::nothing(), &mut audit)
        .await
        .unwrap();
    assert_eq!(written, Appended::Written { seq: 1 });
    assert!(audit.pending().is_none(), "taken by the append's round");
    assert_eq!(store.rounds_committed() - rounds, 1, "one round for both");
    assert_eq!(logged().await, ["write-1"]);
    // A retry (known message id) and a conflict are audited all the same.
    let mut audit = PendingAudit::new(Some(entry("write-2")));
    assert_eq!(
        store
            .append_audited(key, 1, "m-1", 0, b"{}", Then::nothing(), &mut audit)
            .await
            .unwrap(),
        Appended::Duplicate { seq: 1 }
    );
    assert!(audit.pending().is_none());
    let mut audit = PendingAudit::new(Some(entry("write-3")));
    assert!(matches!(
        store
            .append_audited(key, 7, "m-2", 0, b"{}", Then::nothing(), &mut audit)
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(audit.pending().is_none());
    assert_eq!(logged().await, ["write-1", "write-2", "write-3"]);
    // No append took it: written on its own, once.
    let mut audit = PendingAudit::new(Some(entry("write-4")));
    audit.settle(store).await.unwrap();
    audit.settle(store).await.unwrap();
    assert_eq!(logged().await, ["write-1", "write-2", "write-3", "write-4"]);
    assert!(store.verify_audit().await.unwrap().is_ok());

    // One transaction (PostgreSQL, where readers do not wait for writers):
    // while another transaction holds the chain's head, the round waits at
    // its entry, and its journal entry, inserted before the entry in the
    // same transaction, is not visible; both are once the head is free.
    if store.backend() == "postgres" {
        let lock = Lock::take(db).await;
        let (s, mut audit) = (store.clone(), PendingAudit::new(Some(entry("write-5"))));
        let held = tokio::spawn(async move {
            s.append_audited(key, 1, "m-3", 0, b"{}", Then::nothing(), &mut audit)
                .await
        });
        // The round blocked on the head's row lock: past its journal insert.
        let mut watcher = sqlx::PgConnection::connect(db.url()).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&mut watcher)
            .await
            .unwrap();
            if waiting > 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the round never waited for the head"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            store.events(key, 0).await.unwrap().len(),
            1,
            "the journal entry visible before its audit entry committed"
        );
        lock.release().await;
        assert_eq!(held.await.unwrap().unwrap(), Appended::Written { seq: 2 });
        assert_eq!(store.events(key, 0).await.unwrap().len(), 2);
        assert_eq!(logged().await.last().map(String::as_str), Some("write-5"));
        watcher.close().await.unwrap();
    }
}

/// A round commits its appends a few statements at a time (one per run of
/// different actors); an actor's later append in the same round still sees
/// its earlier one, a projection queued between them commits in its place,
/// and each append keeps its own outcome.
async fn one_actor_s_appends_in_one_round_follow_each_other(db: &TestDb) {
    use cardio::domain::vitals::{Aggregate, Series, Span};
    let store = &db.store;
    let (lock, rounds, first_audit) = writer_held(db).await;
    // Queued one after another, in this order, behind the first entry.
    let mut handles: Vec<Handle> = Vec::new();
    let aggregate = Aggregate {
        series: Series::HeartRate,
        span: Span::Minute,
        start_ms: 60_000,
        min: 60.0,
        max: 80.0,
        sum: 140.0,
        count: 2,
        covered_ms: None,
    };
    for (actor, after, id) in [
        ("device/a", 0, "m-1"),
        ("device/b", 0, "m-1"),
        ("device/a", 1, "m-2"),
        ("device/a", 1, "m-3"),
        ("device/a", 2, "m-2"),
        ("projection", 0, ""),
        ("device/a", 2, "m-4"),
        ("device/b", 1, "m-2"),
    ] {
        let h = if actor == "projection" {
            let (store, aggregate) = (store.clone(), aggregate.clone());
            tokio::spawn(async move {
                store
                    .save_aggregates("d-1", &[aggregate])
                    .await
                    .map(|()| Appended::Written { seq: 0 })
            })
        } else {
            append(store, actor, after, id)
        };
        handles.push(h);
        let waiting = handles.len();
        within("the write is queued", || {
            (store.writes_waiting() >= waiting).then_some(())
        })
        .await;
    }
    lock.release().await;
    assert_eq!(first_audit.await.unwrap().unwrap(), 1);
    let mut outcomes = Vec::new();
    for h in handles {
        outcomes.push(h.await.unwrap());
    }
    assert!(
        store.rounds_committed() - rounds <= 2,
        "the writes after the first went in one round"
    );
    assert_eq!(outcomes[0].as_ref().unwrap(), &Appended::Written { seq: 1 });
    assert_eq!(outcomes[1].as_ref().unwrap(), &Appended::Written { seq: 1 });
    assert_eq!(outcomes[2].as_ref().unwrap(), &Appended::Written { seq: 2 });
    assert!(
        matches!(outcomes[3], Err(StoreError::Conflict { expected: 2, .. })),
        "seq 2 of device/a is m-2's: {:?}",
        outcomes[3]
    );
    assert_eq!(
        outcomes[4].as_ref().unwrap(),
        &Appended::Duplicate { seq: 2 }
    );
    assert!(outcomes[5].is_ok(), "{:?}", outcomes[5]);
    assert_eq!(outcomes[6].as_ref().unwrap(), &Appended::Written { seq: 3 });
    assert_eq!(outcomes[7].as_ref().unwrap(), &Appended::Written { seq: 2 });
    let ids = |events: Vec<cardio::store::Event>| {
        events.into_iter().map(|e| e.message_id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(store.events("device/a", 0).await.unwrap()),
        ["m-1", "m-2", "m-4"]
    );
    assert_eq!(
        ids(store.events("device/b", 0).await.unwrap()),
        ["m-1", "m-2"]
    );
    let stored = store
        .aggregates("d-1", Series::HeartRate, Span::Minute, 0, 120_000)
        .await
        .unwrap();
    assert_eq!(stored, [aggregate]);
}

macro_rules! on_both_dbs {
    ($name:ident, $check:ident) => {
        mod $name {
            #[actix_rt::test]
            async fn sqlite() {
                let db = crate::store::TestDb::sqlite().await;
                super::$check(&db).await;
                db.done().await;
            }

            #[actix_rt::test]
            async fn postgres() {
                needs!(Postgres);
                let db = crate::store::TestDb::postgres().await;
                super::$check(&db).await;
                db.done().await;
            }
        }
    };
}

on_both_dbs!(
    one_round,
    one_round_answers_each_append_with_its_own_outcome
);
on_both_dbs!(
    projection_with_append,
    a_projection_commits_with_its_append_and_only_then
);
on_both_dbs!(
    access_entry_with_append,
    an_access_entry_commits_in_the_transaction_of_its_append
);
on_both_dbs!(
    one_actor_in_one_round,
    one_actor_s_appends_in_one_round_follow_each_other
);
