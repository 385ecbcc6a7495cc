//! The journal contract, on both databases: the embedded SQLite file and the
//! machine's PostgreSQL (tier `postgres`: `CARDIO_TEST_DATABASE_URL`, a fresh
//! database per test).

use cardio::store::{Appended, Store, StoreError};

use crate::support::services::{self, Tier};

/// A migrated store on a database of its own, removed by `done`.
pub struct TestDb {
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
    url: String,
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/cardio.db", dir.path().display());
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        TestDb {
            store,
            _dir: Some(dir),
            pg_name: None,
            url,
        }
    }

    pub async fn postgres() -> TestDb {
        let db = Self::postgres_empty().await;
        db.store.migrate().await.unwrap();
        db
    }

    /// A fresh, empty (not migrated) PostgreSQL database, named after this
    /// process (`cardio_test_<pid>_<uuid>`: scripts/test drops those whose
    /// process is gone).
    pub async fn postgres_empty() -> TestDb {
        services::assert_enabled(&[Tier::Postgres, Tier::Cluster], "PostgreSQL");
        let name = format!(
            "cardio_test_{}_{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        let admin = admin().await;
        admin
            .execute_admin(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        admin.close().await;
        let url = services::with_path(&services::database_url(), &name);
        let store = Store::connect(&url).await.unwrap();
        TestDb {
            store,
            _dir: None,
            pg_name: Some(name),
            url,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn done(self) {
        self.store.close().await;
        if let Some(name) = self.pg_name {
            let admin = admin().await;
            admin
                .execute_admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .unwrap();
            admin.close().await;
        }
    }
}

/// The PostgreSQL server's database the tests create theirs from.
async fn admin() -> Store {
    let url = services::database_url();
    Store::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL at {} (CARDIO_TEST_DATABASE_URL): {e}",
            services::host_port(&url)
        )
    })
}

async fn appends_are_ordered_and_idempotent_by_message_id(store: &Store) {
    assert_eq!(
        store
            .append("consult/c-1", 0, "m-1", 0, b"one")
            .await
            .unwrap(),
        Appended::Written { seq: 1 }
    );
    assert_eq!(
        store
            .append("consult/c-1", 1, "m-2", 0, b"two")
            .await
            .unwrap(),
        Appended::Written { seq: 2 }
    );
    // Redelivered: reported where it went, not written again.
    assert_eq!(
        store
            .append("consult/c-1", 2, "m-1", 0, b"one")
            .await
            .unwrap(),
        Appended::Duplicate { seq: 1 }
    );
    // Another actor has its own sequence and may see the same message id.
    assert_eq!(
        store
            .append("consult/c-2", 0, "m-1", 0, b"x")
            .await
            .unwrap(),
        Appended::Written { seq: 1 }
    );
    let events = store.events("consult/c-1", 0).await.unwrap();
    let got: Vec<(u64, &str, &[u8])> = events
        .iter()
        .map(|e| (e.seq, e.message_id.as_str(), e.payload.as_slice()))
        .collect();
    assert_eq!(got, vec![(1, "m-1", &b"one"[..]), (2, "m-2", &b"two"[..])]);
    assert_eq!(store.events("consult/c-1", 1).await.unwrap().len(), 1);
    assert_eq!(store.last_seq("consult/c-1").await.unwrap(), 2);
    assert_eq!(store.last_seq("consult/none").await.unwrap(), 0);
}
on_both!(
    ordered_and_idempotent,
    appends_are_ordered_and_idempotent_by_message_id
);

async fn a_writer_with_a_stale_or_wrong_view_gets_a_conflict(store: &Store) {
    store.append("device/d-1", 0, "m-1", 0, b"a").await.unwrap();
    for after in [0, 5] {
        match store.append("device/d-1", after, "m-2", 0, b"b").await {
            Err(StoreError::Conflict { expected, .. }) => assert_eq!(expected, after + 1),
            other => panic!("after {after}: {other:?}"),
        }
    }
    assert_eq!(
        store.last_seq("device/d-1").await.unwrap(),
        1,
        "nothing was written"
    );
}
on_both!(
    stale_writers,
    a_writer_with_a_stale_or_wrong_view_gets_a_conflict
);

async fn racing_writers_never_both_win(store: &Store) {
    let tries = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .append("session/p-1", 0, &format!("m-{i}"), 0, b"x")
                .await
        })
    });
    let results: Vec<_> = futures_util::future::join_all(tries)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let winners = results
        .iter()
        .filter(|r| matches!(r, Ok(Appended::Written { seq: 1 })))
        .count();
    assert_eq!(winners, 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(_) | Err(StoreError::Conflict { .. }))),
        "{results:?}"
    );
    assert_eq!(store.events("session/p-1", 0).await.unwrap().len(), 1);
}
on_both!(racing_writers, racing_writers_never_both_win);

async fn the_newest_snapshot_wins(store: &Store) {
    assert_eq!(store.snapshot("consult/c-9").await.unwrap(), None);
    store
        .save_snapshot("consult/c-9", 10, b"ten")
        .await
        .unwrap();
    store
        .save_snapshot("consult/c-9", 7, b"seven")
        .await
        .unwrap();
    let snap = store.snapshot("consult/c-9").await.unwrap().unwrap();
    assert_eq!((snap.seq, snap.payload.as_slice()), (10, &b"ten"[..]));
    store
        .save_snapshot("consult/c-9", 12, b"twelve")
        .await
        .unwrap();
    assert_eq!(
        store.snapshot("consult/c-9").await.unwrap().unwrap().seq,
        12
    );
}
on_both!(snapshots, the_newest_snapshot_wins);

async fn migrating_again_changes_nothing(store: &Store) {
    store
        .append("consult/c-1", 0, "m-1", 0, b"kept")
        .await
        .unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.events("consult/c-1", 0).await.unwrap().len(), 1);
    assert!(store.healthy().await);
}
on_both!(migrations, migrating_again_changes_nothing);

#[tokio::test]
async fn the_sqlite_file_and_its_folders_are_made_on_first_run_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nested/data/cardio.db");
    let url = format!("sqlite://{}", file.display());
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    store
        .append("consult/c-1", 0, "m-1", 0, b"durable")
        .await
        .unwrap();
    store.close().await;
    assert!(file.exists());
    let again = Store::connect(&url).await.unwrap();
    again.migrate().await.unwrap();
    assert_eq!(
        again.events("consult/c-1", 0).await.unwrap()[0].payload,
        b"durable"
    );
}

/// A node stalled inside a write round (here: a session of the node's own
/// connection settings that share-locked a shard's epoch row, as a fenced
/// append does, and went silent) does not keep another node from taking the
/// shard: PostgreSQL ends the silent session after
/// `PG_IDLE_IN_TRANSACTION`, and the claim that waited on the row goes
/// through.
#[tokio::test]
async fn a_session_stalled_in_a_transaction_does_not_hold_a_shard_s_row() {
    needs!(Postgres);
    use sqlx::ConnectOptions;
    let db = TestDb::postgres().await;
    let store = &db.store;
    let shard = 3;
    let [(_, e1)] = store.claim_shards("a", &[(shard, None)], 1).await.unwrap()[..] else {
        panic!("one claim")
    };
    let mut stalled = cardio::store::pg_options(db.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut stalled).await.unwrap();
    sqlx::query("SELECT 1 FROM shard_owners WHERE shard = $1 AND epoch = $2 FOR SHARE")
        .bind(i32::from(shard))
        .bind(e1 as i64)
        .fetch_one(&mut stalled)
        .await
        .unwrap();
    // ... and says nothing more. Another node claims the shard.
    let claim = tokio::time::timeout(
        cardio::store::PG_IDLE_IN_TRANSACTION + std::time::Duration::from_secs(20),
        store.claim_shards("b", &[(shard, None)], 2),
    )
    .await
    .expect("the claim waited on a stalled session's lock");
    assert_eq!(claim.unwrap(), vec![(shard, e1 + 1)]);
    // The stalled session was ended, its transaction rolled back.
    assert!(sqlx::query("SELECT 1").execute(&mut stalled).await.is_err());
    db.done().await;
}

#[tokio::test]
async fn unknown_database_schemes_are_refused() {
    assert!(
        matches!(Store::connect("mysql://x").await, Err(StoreError::Unsupported(s)) if s == "mysql")
    );
}

async fn care_teams_and_devices_decide_who_reaches_whom(store: &Store) {
    use cardio::store::people::PeopleError;
    store.register_patient("p-1").await.unwrap();
    store.register_patient("p-1").await.unwrap(); // again: no change
    store.register_patient("p-2").await.unwrap();
    store.register_clinician("c-1").await.unwrap();
    assert_eq!(store.assign_clinician("p-1", "c-1").await.unwrap(), Ok(()));
    assert_eq!(store.assign_clinician("p-1", "c-1").await.unwrap(), Ok(()));
    assert_eq!(
        store.assign_clinician("p-9", "c-1").await.unwrap(),
        Err(PeopleError::UnknownPatient)
    );
    assert_eq!(
        store.assign_clinician("p-1", "c-9").await.unwrap(),
        Err(PeopleError::UnknownClinician)
    );
    assert!(store.on_care_team("p-1", "c-1").await.unwrap());
    assert!(!store.on_care_team("p-2", "c-1").await.unwrap());
    assert_eq!(store.care_team("p-1").await.unwrap(), vec!["c-1"]);
    assert_eq!(store.patients_of("c-1").await.unwrap(), vec!["p-1"]);
    assert_eq!(
        store
            .register_device("d-1", "p-1", "ecg_patch")
            .await
            .unwrap(),
        Ok(())
    );
    assert_eq!(
        store
            .register_device("d-1", "p-1", "ecg_patch")
            .await
            .unwrap(),
        Ok(())
    );
    assert_eq!(
        store
            .register_device("d-1", "p-2", "ecg_patch")
            .await
            .unwrap(),
        Err(PeopleError::DeviceTaken)
    );
    assert_eq!(
        store
            .register_device("d-2", "p-9", "oximeter")
            .await
            .unwrap(),
        Err(PeopleError::UnknownPatient)
    );
    let owner = store.device("d-1").await.unwrap().unwrap();
    assert_eq!(owner.patient_id, "p-1");
    assert_eq!(store.devices_of("p-1").await.unwrap().len(), 1);
    assert!(store.devices_of("p-2").await.unwrap().is_empty());
}
on_both!(people, care_teams_and_devices_decide_who_reaches_whom);

async fn a_consult_request_id_names_one_consult_of_a_known_patient(store: &Store) {
    use cardio::store::consults::ConsultClaim;
    let claimed = |consult: &str, patient: &str| ConsultClaim::Claimed {
        consult: consult.into(),
        patient: patient.into(),
    };
    store.register_patient("p-1").await.unwrap();
    store.register_patient("p-2").await.unwrap();
    // An unknown patient: nothing stored, so the id stays free.
    let claim = store.claim_consult_request("dr-1", "q-1", "c-0", "p-9");
    assert_eq!(claim.await.unwrap(), ConsultClaim::UnknownPatient);
    let claim = store.claim_consult_request("dr-1", "q-1", "c-1", "p-1");
    assert_eq!(claim.await.unwrap(), claimed("c-1", "p-1"));
    // A retry names the consult stored first, whatever id it proposes.
    let claim = store.claim_consult_request("dr-1", "q-1", "c-2", "p-1");
    assert_eq!(claim.await.unwrap(), claimed("c-1", "p-1"));
    // The same id for another patient: the first claim, with its patient.
    let claim = store.claim_consult_request("dr-1", "q-1", "c-3", "p-2");
    assert_eq!(claim.await.unwrap(), claimed("c-1", "p-1"));
    // An unknown patient is told before a reused id.
    let claim = store.claim_consult_request("dr-1", "q-1", "c-4", "p-9");
    assert_eq!(claim.await.unwrap(), ConsultClaim::UnknownPatient);
    // Another requester's same id is another request.
    let claim = store.claim_consult_request("p-1", "q-1", "c-5", "p-1");
    assert_eq!(claim.await.unwrap(), claimed("c-5", "p-1"));
    // Racing claims of one id all name the same consult.
    let tries = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .claim_consult_request("dr-1", "q-race", &format!("r-{i}"), "p-2")
                .await
        })
    });
    let named: Vec<_> = futures_util::future::join_all(tries)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    assert!(named.iter().all(|c| c == &named[0]), "{named:?}");
    assert!(
        matches!(&named[0], ConsultClaim::Claimed { patient, .. } if patient == "p-2"),
        "{named:?}"
    );
}
on_both!(
    consult_requests,
    a_consult_request_id_names_one_consult_of_a_known_patient
);

async fn retention_prunes_only_old_entries_of_the_prefix(store: &Store) {
    store
        .append("device/d-1", 0, "m-1", 0, b"old")
        .await
        .unwrap();
    store
        .append("device/d-1", 1, "m-2", 0, b"latest")
        .await
        .unwrap();
    store
        .append("consult/c-1", 0, "m-1", 0, b"keep")
        .await
        .unwrap();
    store
        .append("devices/x", 0, "m-1", 0, b"other prefix")
        .await
        .unwrap();
    let cutoff = cardio::clock::unix_ms() + 1;
    // Nothing goes that no snapshot covers.
    assert_eq!(store.prune_journal("device/", cutoff).await.unwrap(), 0);
    store
        .save_snapshot("device/d-1", 1, b"state at 1")
        .await
        .unwrap();
    assert_eq!(store.prune_journal("device/", cutoff).await.unwrap(), 1);
    let left = store.events("device/d-1", 0).await.unwrap();
    assert_eq!(left.len(), 1, "the latest entry stays");
    assert_eq!(left[0].seq, 2);
    // The stream continues after its latest sequence.
    assert!(matches!(
        store.append("device/d-1", 2, "m-3", 0, b"next").await,
        Ok(cardio::store::Appended::Written { seq: 3 })
    ));
    assert_eq!(store.events("consult/c-1", 0).await.unwrap().len(), 1);
    assert_eq!(store.events("devices/x", 0).await.unwrap().len(), 1);
    assert_eq!(
        store.prune_journal("consult/", 0).await.unwrap(),
        0,
        "nothing older than the epoch"
    );
}
on_both!(retention, retention_prunes_only_old_entries_of_the_prefix);

/// A coalesced entry (issue 15): one row, found by any of its message ids;
/// a retry of its first id is a duplicate; its aliases go when it is pruned
/// and stay while it stays.
async fn a_coalesced_entry_is_found_by_each_id_and_pruned_with_its_aliases(store: &Store) {
    use cardio::store::audit::PendingAudit;
    use cardio::store::Appended;
    let mut none: [PendingAudit; 0] = [];
    let written = store
        .append_coalesced("device/d-c", 0, &["p-1", "p-2", "p-3"], b"three", &mut none)
        .await
        .unwrap();
    assert_eq!(written, Appended::Written { seq: 1 });
    let entries = store.events("device/d-c", 0).await.unwrap();
    assert_eq!(entries.len(), 1, "one entry for the three");
    assert_eq!(entries[0].message_id, "p-1");
    for id in ["p-1", "p-2", "p-3"] {
        assert_eq!(
            store.message_seq("device/d-c", id).await.unwrap(),
            Some(1),
            "{id}"
        );
    }
    assert_eq!(store.message_seq("device/d-c", "p-4").await.unwrap(), None);
    assert_eq!(
        store.message_seq("device/other", "p-2").await.unwrap(),
        None
    );
    let again = store
        .append_coalesced("device/d-c", 1, &["p-1"], b"again", &mut none)
        .await
        .unwrap();
    assert_eq!(again, Appended::Duplicate { seq: 1 });
    store
        .append_coalesced("device/d-c", 1, &["p-5", "p-6"], b"latest", &mut none)
        .await
        .unwrap();
    let cutoff = cardio::clock::unix_ms() + 1;
    store
        .save_snapshot("device/d-c", 2, b"state")
        .await
        .unwrap();
    assert_eq!(store.prune_journal("device/", cutoff).await.unwrap(), 1);
    assert_eq!(
        store.message_seq("device/d-c", "p-2").await.unwrap(),
        None,
        "pruned with its entry"
    );
    assert_eq!(
        store.message_seq("device/d-c", "p-6").await.unwrap(),
        Some(2),
        "the latest entry's alias stays"
    );
}
on_both!(
    coalesced,
    a_coalesced_entry_is_found_by_each_id_and_pruned_with_its_aliases
);

async fn the_ecg_index_goes_with_the_raw_samples(store: &Store) {
    use cardio::store::monitoring::EcgChunkRow;
    let chunk = |start_ms: u64, seq: u64| EcgChunkRow {
        start_ms,
        end_ms: start_ms + 1_000,
        hz: 250,
        seq,
        beats: "[]".into(),
    };
    for (i, start) in [10_000u64, 20_000, 30_000].into_iter().enumerate() {
        store
            .save_ecg_chunk("d-1", &chunk(start, i as u64 + 1))
            .await
            .unwrap();
    }
    // Saving one again (a replay) changes nothing.
    store
        .save_ecg_chunk("d-1", &chunk(10_000, 1))
        .await
        .unwrap();
    assert_eq!(
        store
            .ecg_chunks("d-1", 0, u64::MAX, 100)
            .await
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        store.prune_ecg_chunks(21_000).await.unwrap(),
        1,
        "ended before the cutoff"
    );
    let left: Vec<u64> = store
        .ecg_chunks("d-1", 0, u64::MAX, 100)
        .await
        .unwrap()
        .iter()
        .map(|c| c.start_ms)
        .collect();
    assert_eq!(left, vec![20_000, 30_000]);
    // Overlapping a window: the chunk that ends inside it counts.
    let inside = store.ecg_chunks("d-1", 20_500, 25_000, 100).await.unwrap();
    assert_eq!(inside.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![2]);
}
on_both!(ecg_index_retention, the_ecg_index_goes_with_the_raw_samples);

async fn a_former_owner_is_fenced_off_once_its_shard_moved(store: &Store) {
    use cardio::cluster::{shard_of_key, Fence};
    let shards = 8;
    let key = "consult/c-fenced";
    let shard = shard_of_key(key, shards);
    let (fence_a, fence_b) = (Fence::new(shards), Fence::new(shards));
    let (a, b) = (store.fenced(fence_a.clone()), store.fenced(fence_b.clone()));
    // Holding nothing, a node cannot write at all.
    assert!(matches!(
        a.append(key, 0, "m1", 0, b"{}").await,
        Err(StoreError::Fenced { held: None, .. })
    ));
    let [(_, e1)] = store
        .claim_shards("a", &[(shard, Some(0))], 1)
        .await
        .unwrap()[..]
    else {
        panic!("one claim")
    };
    fence_a.hold(shard, e1);
    assert_eq!(
        a.append(key, 0, "m1", 0, b"{}").await.unwrap(),
        Appended::Written { seq: 1 }
    );
    // Node b takes the shard (a is stalled, say): a's next write is refused,
    // even one that would otherwise fit, and a stops holding the shard.
    // A claim made on a stale view (the shard moved since it was read) takes nothing.
    assert!(store
        .claim_shards("c", &[(shard, Some(0))], 2)
        .await
        .unwrap()
        .is_empty());
    let [(_, e2)] = store.claim_shards("b", &[(shard, None)], 2).await.unwrap()[..] else {
        panic!("one claim")
    };
    assert_eq!(e2, e1 + 1);
    fence_b.hold(shard, e2);
    assert!(matches!(
        a.append(key, 1, "m2", 0, b"{}").await,
        Err(StoreError::Fenced { held: Some(h), .. }) if h == e1
    ));
    assert_eq!(fence_a.epoch(shard), None);
    assert_eq!(
        b.append(key, 1, "m2", 0, b"{}").await.unwrap(),
        Appended::Written { seq: 2 }
    );
    let epochs: Vec<u64> = store
        .events(key, 0)
        .await
        .unwrap()
        .iter()
        .map(|e| e.epoch)
        .collect();
    assert_eq!(epochs, vec![e1, e2]);
    // A release by a former owner changes nothing; by the owner it frees the shard.
    assert!(!store.release_shard("a", shard, e1, 3).await.unwrap());
    assert!(store.release_shard("b", shard, e2, 3).await.unwrap());
    let row = store
        .shard_owners()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.id == shard)
        .unwrap();
    assert_eq!((row.owner, row.epoch), (None, e2));
}
on_both!(fencing, a_former_owner_is_fenced_off_once_its_shard_moved);

async fn projections_never_go_back_to_an_older_state(store: &Store) {
    use cardio::actors::consult::state::Status;
    use cardio::store::consults::ConsultRow;
    let row = |status| ConsultRow {
        id: "c-proj".into(),
        patient_id: "p-1".into(),
        clinician_id: Some("dr-1".into()),
        status,
        requested_ms: 1,
        reason: "chest pain".into(),
        notes: None,
        started_ms: None,
        ended_ms: None,
    };
    store
        .project_consult_through(&row(Status::Ended), &[], 7)
        .await
        .unwrap();
    // A stalled former owner projecting what it saw at sequence 3.
    store
        .project_consult_through(&row(Status::InProgress), &[], 3)
        .await
        .unwrap();
    let rows = store.consults_of("p-1").await.unwrap();
    assert_eq!(rows[0].status, Status::Ended);
    store
        .project_consult_through(&row(Status::Ended), &[], 7)
        .await
        .unwrap(); // idempotent
    let rows = store.consults_of("p-1").await.unwrap();
    assert_eq!((rows.len(), rows[0].status), (1, Status::Ended));
}
on_both!(projections, projections_never_go_back_to_an_older_state);

async fn consults_and_alerts_come_in_keyset_pages_newest_first(store: &Store) {
    use cardio::actors::consult::state::Status;
    use cardio::domain::alarm::{AlarmKind, Priority};
    use cardio::store::consults::{ConsultRow, ConsultsOf};
    use cardio::store::vitals::{AlertRecord, AlertState};
    // Consults: p-1's three (two at the same time: the id breaks the tie),
    // one of p-2 that dr-1 is in, one of p-3 (not dr-1's) waiting.
    let rows = [
        ("c-a", "p-1", None, Status::Waiting, 10),
        ("c-b", "p-1", None, Status::Ended, 20),
        ("c-c", "p-1", None, Status::Requested, 20),
        ("c-d", "p-2", Some("dr-1"), Status::InProgress, 15),
        ("c-e", "p-3", None, Status::Waiting, 30),
    ];
    for (id, patient, clinician, status, at) in rows {
        let row = ConsultRow {
            id: id.into(),
            patient_id: patient.into(),
            clinician_id: clinician.map(Into::into),
            status,
            requested_ms: at,
            reason: format!("reason of {id}"),
            notes: (status == Status::Ended).then(|| "notes".to_owned()),
            started_ms: None,
            ended_ms: None,
        };
        store.project_consult_through(&row, &[], 1).await.unwrap();
    }
    let ids = |rows: Vec<ConsultRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let p1 = ConsultsOf::Patient("p-1".into());
    let read = store.consult_row("c-b").await.unwrap().unwrap();
    assert_eq!(
        (read.reason.as_str(), read.notes.as_deref()),
        ("reason of c-b", Some("notes"))
    );
    assert_eq!(
        ids(store.consults_page(&p1, &[], None, 10).await.unwrap()),
        ["c-c", "c-b", "c-a"]
    );
    assert_eq!(
        ids(store.consults_page(&p1, &[], None, 2).await.unwrap()),
        ["c-c", "c-b"]
    );
    let next = store
        .consults_page(&p1, &[], Some((20, "c-b")), 2)
        .await
        .unwrap();
    assert_eq!(ids(next), ["c-a"]);
    let open = [Status::Requested, Status::Waiting];
    assert_eq!(
        ids(store.consults_page(&p1, &open, None, 10).await.unwrap()),
        ["c-c", "c-a"]
    );
    let dr1 = ConsultsOf::Clinician {
        id: "dr-1".into(),
        patients: vec!["p-1".into(), "p-2".into()],
    };
    assert_eq!(
        ids(store.consults_page(&dr1, &[], None, 10).await.unwrap()),
        ["c-c", "c-d", "c-a"]
    );
    let alone = ConsultsOf::Clinician {
        id: "dr-9".into(),
        patients: vec![],
    };
    assert!(store
        .consults_page(&alone, &[], None, 10)
        .await
        .unwrap()
        .is_empty());

    // Alerts of two devices, newest raised first, by state and priority.
    let alert = |id: &str, device: &str, priority, raised, resolved| AlertRecord {
        id: id.into(),
        device_id: device.into(),
        kind: AlarmKind::HypertensiveCrisis,
        source: None,
        priority,
        since_ms: raised,
        raised_ms: raised,
        resolved_ms: resolved,
        reading: Some(200.0),
        threshold: Some(180.0),
        announced: true,
        resolve_reason: None,
        reannounced_ms: None,
        escalated_ms: None,
    };
    for a in [
        alert("a-1", "d-1", Priority::Medium, 100, None),
        alert("a-2", "d-2", Priority::High, 300, None),
        alert("a-3", "d-1", Priority::Medium, 200, Some(250)),
        alert("a-4", "d-3", Priority::High, 400, None),
    ] {
        store.raise_alert(&a).await.unwrap();
        if let Some(at) = a.resolved_ms {
            store
                .resolve_alert(&a.id, at, cardio::domain::alarm::ResolveReason::Cleared)
                .await
                .unwrap();
        }
    }
    let devices = ["d-1".to_owned(), "d-2".to_owned()];
    let ids = |rows: Vec<AlertRecord>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let page = |state, priority, before, limit| {
        store.alerts_page(&devices, state, priority, before, limit)
    };
    assert_eq!(
        ids(page(AlertState::Any, None, None, 10).await.unwrap()),
        ["a-2", "a-3", "a-1"]
    );
    assert_eq!(
        ids(page(AlertState::Open, None, None, 10).await.unwrap()),
        ["a-2", "a-1"]
    );
    assert_eq!(
        ids(page(AlertState::Resolved, None, None, 10).await.unwrap()),
        ["a-3"]
    );
    let high = page(AlertState::Any, Some(Priority::High), None, 10);
    assert_eq!(ids(high.await.unwrap()), ["a-2"]);
    let after = page(AlertState::Any, None, Some((300, "a-2")), 1);
    assert_eq!(ids(after.await.unwrap()), ["a-3"]);
    assert!(store
        .alerts_page(&[], AlertState::Any, None, None, 10)
        .await
        .unwrap()
        .is_empty());
}
on_both!(pages, consults_and_alerts_come_in_keyset_pages_newest_first);

/// Raw sample retention over a journal of many actors: it deletes what a
/// snapshot covers except each actor's latest entry, in batches (more rows
/// than one batch examines), leaves other kinds alone, and finds its rows
/// on the time index, not by scanning the journal.
async fn retention_walks_an_index_in_batches(store: &Store) {
    // 300 device streams of 40 old entries each (12,000 rows: more than two
    // batches of 5,000), snapshots at 30, and a consult just as old.
    let rows = match store.backend() {
        "postgres" => {
            "INSERT INTO journal (actor_id, seq, message_id, epoch, payload, at_ms) \
             SELECT 'device/d-' || d, s, 'm-' || s, 0, '\\x00'::bytea, 1000 + s \
             FROM generate_series(0, 299) d, generate_series(1, 40) s"
        }
        _ => {
            "WITH RECURSIVE d(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM d WHERE n < 299), \
             s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 40) \
             INSERT INTO journal (actor_id, seq, message_id, epoch, payload, at_ms) \
             SELECT 'device/d-' || d.n, s.n, 'm-' || s.n, 0, x'00', 1000 + s.n FROM d, s"
        }
    };
    store.execute_admin(rows).await.unwrap();
    store
        .execute_admin(
            "INSERT INTO snapshots (actor_id, seq, payload, at_ms) \
             SELECT DISTINCT actor_id, 30, payload, 0 FROM journal",
        )
        .await
        .unwrap();
    for seq in 0..3 {
        store
            .append("consult/c-1", seq, &format!("m-{seq}"), 0, b"kept")
            .await
            .unwrap();
    }
    // Every old device entry up to its snapshot (30 of 40 each) goes.
    assert_eq!(
        store.prune_journal("device/", 1_000_000).await.unwrap(),
        9_000
    );
    for d in [0, 150, 299] {
        let left: Vec<u64> = store
            .events(&format!("device/d-{d}"), 0)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(left, (31..=40).collect::<Vec<_>>(), "device/d-{d}");
    }
    assert_eq!(store.events("consult/c-1", 0).await.unwrap().len(), 3);
    // Nothing more to do: a second prune deletes nothing.
    assert_eq!(store.prune_journal("device/", 1_000_000).await.unwrap(), 0);
    // Both statements of a batch use the partial time index.
    let plans = store.prune_plans("device/").await.unwrap();
    let indexed = plans
        .iter()
        .filter(|l| l.contains("journal_device_by_time"))
        .count();
    assert!(indexed >= 2, "{plans:#?}");
    assert!(
        !plans
            .iter()
            .any(|l| l.trim() == "SCAN journal" || l.contains("Seq Scan on journal")),
        "{plans:#?}"
    );
}
on_both!(retention_batches, retention_walks_an_index_in_batches);

/// An open (or, with `resolved`, resolved) alert of `device` for the start
/// test.
fn start_alert(id: &str, device: &str, raised_ms: u64) -> cardio::store::AlertRecord {
    use cardio::domain::alarm::{AlarmKind, Priority};
    cardio::store::AlertRecord {
        id: id.into(),
        device_id: device.into(),
        kind: AlarmKind::Tachycardia,
        source: None,
        priority: Priority::High,
        since_ms: raised_ms,
        raised_ms,
        resolved_ms: None,
        reading: Some(151.0),
        threshold: Some(150.0),
        announced: true,
        resolve_reason: None,
        reannounced_ms: None,
        escalated_ms: None,
    }
}

/// Starts read together give each actor what reading it alone gives: its
/// snapshot, the journal after it, and for a device stream its open alerts,
/// patient and alarm settings; all in one batch, sealed values opened.
async fn starts_read_together_give_each_actor_its_own(plain: &Store) {
    use cardio::store::monitoring::StoredAlarmSettings;
    use cardio::store::starts::ActorStart;
    let dir = tempfile::tempdir().unwrap();
    let (provider, _) =
        cardio::crypto::FileKeyProvider::open_or_create(&dir.path().join("keys.json"), true)
            .unwrap();
    let keyed = plain
        .with_keys(std::sync::Arc::new(provider), "test")
        .await
        .unwrap();
    for (n, store) in [plain, &keyed].into_iter().enumerate() {
        let p = |s: &str| format!("{s}-{n}");
        // A snapshot at 2 of 4 entries; a journal without snapshot; nothing.
        for seq in 0..4u64 {
            let m = format!("m-{seq}");
            store
                .append(&p("consult/c"), seq, &m, 0, m.as_bytes())
                .await
                .unwrap();
        }
        store
            .save_snapshot(&p("consult/c"), 2, b"two")
            .await
            .unwrap();
        for seq in 0..2u64 {
            let m = format!("d-{seq}");
            store
                .append(&p("device/d"), seq, &m, 0, m.as_bytes())
                .await
                .unwrap();
        }
        // Device d: registered, its patient's settings, one open alert, one
        // resolved; device e: another patient's, no settings, an open
        // alert; f: unknown.
        for (device, patient) in [("d", "pt"), ("e", "pe")] {
            store.register_patient(&p(patient)).await.unwrap();
            store
                .register_device(&p(device), &p(patient), "watch")
                .await
                .unwrap()
                .unwrap();
        }
        store
            .save_alarm_settings(
                &p("pt"),
                &StoredAlarmSettings {
                    settings: Some(r#"{"tachycardia_bpm":140}"#.into()),
                    paused_until_ms: Some(99),
                    updated_by: "c-1".into(),
                    updated_ms: 7,
                },
            )
            .await
            .unwrap();
        for (id, device, at) in [("a1", "d", 10), ("a2", "d", 20), ("a3", "e", 30)] {
            store
                .raise_alert(&start_alert(&p(id), &p(device), at))
                .await
                .unwrap();
        }
        store
            .resolve_alert(&p("a1"), 15, cardio::domain::alarm::ResolveReason::Cleared)
            .await
            .unwrap();
        store
            .acknowledge_alert(&p("a2"), "c-1", 25, None)
            .await
            .unwrap();

        let before = store.start_batches();
        let devices = ["d", "e", "f"];
        let names = ["consult/c", "device/d", "session/none", "consult/c"].map(p);
        let (actors, streams) = futures_util::join!(
            futures_util::future::join_all(names.iter().map(|a| store.actor_start(a))),
            futures_util::future::join_all(devices.map(|d| {
                let (actor, device) = (p(&format!("device/{d}")), p(d));
                async move { store.device_start(&actor, &device).await }
            }))
        );
        assert_eq!(store.start_batches(), before + 1, "read in one batch");

        // Each against the one-by-one reads.
        let alone = |actor: String| async move {
            let snapshot = store.snapshot(&actor).await.unwrap();
            let after = snapshot.as_ref().map_or(0, |s| s.seq);
            ActorStart {
                snapshot,
                tail: store.events(&actor, after).await.unwrap(),
            }
        };
        let same = |got: &ActorStart, want: &ActorStart| {
            assert_eq!(got.snapshot, want.snapshot);
            let seqs = |s: &ActorStart| {
                s.tail
                    .iter()
                    .map(|e| (e.seq, e.message_id.clone(), e.payload.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(seqs(got), seqs(want));
        };
        let actors: Vec<ActorStart> = actors.into_iter().map(Result::unwrap).collect();
        let c = alone(p("consult/c")).await;
        assert_eq!(c.snapshot.as_ref().unwrap().payload, b"two");
        assert_eq!(c.tail.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
        same(&actors[0], &c);
        same(&actors[3], &c);
        same(&actors[1], &alone(p("device/d")).await);
        assert_eq!(actors[1].tail.len(), 2);
        assert!(actors[2].snapshot.is_none() && actors[2].tail.is_empty());

        let streams: Vec<_> = streams.into_iter().map(Result::unwrap).collect();
        for (device, got) in devices.iter().zip(&streams) {
            same(&got.actor, &alone(p(&format!("device/{device}"))).await);
            let open: Vec<_> = store
                .alerts(&p(device))
                .await
                .unwrap()
                .into_iter()
                .filter(|a| a.resolved_ms.is_none())
                .collect();
            assert_eq!(got.open_alerts, open);
            let registered = store.device(&p(device)).await.unwrap();
            assert_eq!(got.patient, registered.map(|d| d.patient_id));
            let settings = match &got.patient {
                Some(patient) => store.alarm_settings(patient).await.unwrap(),
                None => None,
            };
            assert_eq!(got.settings, settings);
        }
        assert_eq!(
            streams[0]
                .open_alerts
                .iter()
                .map(|a| a.id.as_str())
                .collect::<Vec<_>>(),
            [p("a2")]
        );
        assert_eq!(streams[0].open_alerts[0].reading, Some(151.0));
        assert_eq!(
            streams[0].settings.as_ref().unwrap().settings.as_deref(),
            Some(r#"{"tachycardia_bpm":140}"#)
        );
        assert_eq!(streams[1].open_alerts.len(), 1);
        assert!(streams[1].settings.is_none() && streams[1].patient.is_some());
        assert!(streams[2].patient.is_none() && streams[2].open_alerts.is_empty());

        let acked = store
            .acknowledged_among(&[p("a2"), p("a3"), p("nope")])
            .await
            .unwrap();
        assert_eq!(acked, [p("a2")].into_iter().collect());
    }
}
on_both!(starts, starts_read_together_give_each_actor_its_own);

/// A start that cannot be read says which part failed (what its actor's
/// crash names for ops), and the next batch reads again.
async fn a_start_that_cannot_be_read_names_the_part(store: &Store) {
    use cardio::store::starts::{ALERTS, SNAPSHOT};
    let away = |table: &str, to: &str| format!("ALTER TABLE {table} RENAME TO {to}");
    store
        .execute_admin(&away("snapshots", "snapshots_away"))
        .await
        .unwrap();
    let failed = store.actor_start("consult/c-1").await.unwrap_err();
    assert_eq!(failed.what, SNAPSHOT, "{failed:?}");
    let failed = store.device_start("device/d-1", "d-1").await.unwrap_err();
    assert_eq!(failed.what, SNAPSHOT, "{failed:?}");
    store
        .execute_admin(&away("snapshots_away", "snapshots"))
        .await
        .unwrap();
    store
        .execute_admin(&away("alerts", "alerts_away"))
        .await
        .unwrap();
    assert!(store.actor_start("consult/c-1").await.is_ok());
    let failed = store.device_start("device/d-1", "d-1").await.unwrap_err();
    assert_eq!(failed.what, ALERTS, "{failed:?}");
    store
        .execute_admin(&away("alerts_away", "alerts"))
        .await
        .unwrap();
    assert!(store.device_start("device/d-1", "d-1").await.is_ok());
}
on_both!(start_failures, a_start_that_cannot_be_read_names_the_part);

/// The request path's lookups asked at once (a fleet connecting, a dead
/// node's clients arriving) are served by one statement per kind, and each
/// caller gets its own answer: access states (no row, deactivated, sessions
/// ended, revoked tokens without an account row, an expired revocation left
/// out), devices (registered or not, one asked twice), and first activity,
/// committed before its answer, one row per subject with its latest time.
async fn lookups_asked_together_give_each_its_own(store: &Store) {
    use cardio::store::access::AccountState;
    use futures_util::future::join_all;
    let now = cardio::clock::unix_ms();
    store.set_disabled("lk-off", true).await.unwrap();
    store.end_sessions("lk-ended", 1_000).await.unwrap();
    store
        .revoke_token("j-live", "lk-revoked", now + 60_000)
        .await
        .unwrap();
    store
        .revoke_token("j-gone", "lk-revoked", now - 1)
        .await
        .unwrap();
    store.register_patient("lk-p").await.unwrap();
    for (device, kind) in [("lk-d1", "watch"), ("lk-d2", "patch")] {
        store
            .register_device(device, "lk-p", kind)
            .await
            .unwrap()
            .unwrap();
    }

    let subjects = ["lk-off", "lk-ended", "lk-revoked", "lk-none", "lk-off"];
    let devices = ["lk-d1", "lk-none", "lk-d2", "lk-d1"];
    let before = store.lookup_batches();
    let (states, found) = futures_util::join!(
        join_all(subjects.map(|s| store.account_state(s, now))),
        join_all(devices.map(|d| store.device(d)))
    );
    assert_eq!(store.lookup_batches(), before + 2, "one batch of each kind");
    let states: Vec<_> = states.into_iter().map(Result::unwrap).collect();
    let off = AccountState {
        disabled: true,
        ..AccountState::default()
    };
    let want = [
        Some(off.clone()),
        Some(AccountState {
            not_before_s: 1_000,
            ..AccountState::default()
        }),
        Some(AccountState {
            revoked: vec!["j-live".into()],
            ..AccountState::default()
        }),
        None,
        Some(off),
    ];
    assert_eq!(states, want);
    for (subject, got) in subjects.iter().zip(&states) {
        let alone = store.account_state(subject, now).await.unwrap();
        assert_eq!(&alone, got, "{subject} alone");
    }
    let found: Vec<_> = found
        .into_iter()
        .map(|d| d.unwrap().map(|d| (d.id, d.patient_id, d.kind)))
        .collect();
    let device = |id: &str, kind: &str| Some((id.to_owned(), "lk-p".to_owned(), kind.to_owned()));
    assert_eq!(
        found,
        [
            device("lk-d1", "watch"),
            None,
            device("lk-d2", "patch"),
            device("lk-d1", "watch")
        ]
    );

    // A subject touched three times in one batch is one row (PostgreSQL
    // refuses an upsert that meets its row twice) with its latest time.
    let before = store.lookup_batches();
    let touched = join_all(
        [
            ("lk-t1", "patient", 100),
            ("lk-t2", "clinician", 200),
            ("lk-t1", "patient", 300),
            ("lk-t1", "patient", 50),
        ]
        .map(|(s, role, at)| store.touch_account(s, role, at)),
    )
    .await;
    assert!(touched.iter().all(Result::is_ok), "{touched:?}");
    assert_eq!(store.lookup_batches(), before + 1, "written in one batch");
    let t1 = store.account_state("lk-t1", now).await.unwrap().unwrap();
    assert_eq!((t1.role.as_str(), t1.last_active_ms), ("patient", 300));
    let t2 = store.account_state("lk-t2", now).await.unwrap().unwrap();
    assert_eq!((t2.role.as_str(), t2.last_active_ms), ("clinician", 200));

    // A batch that fails answers each of its callers with the error; the
    // next batch reads again.
    store
        .execute_admin("ALTER TABLE accounts RENAME TO accounts_away")
        .await
        .unwrap();
    let failed = join_all(["lk-off", "lk-t1"].map(|s| store.account_state(s, now))).await;
    assert!(failed.iter().all(Result::is_err), "{failed:?}");
    store
        .execute_admin("ALTER TABLE accounts_away RENAME TO accounts")
        .await
        .unwrap();
    let again = store.account_state("lk-t1", now).await.unwrap().unwrap();
    assert_eq!(again.last_active_ms, 300);
}
on_both!(lookups, lookups_asked_together_give_each_its_own);
