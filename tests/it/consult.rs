//! The Consult actor on the journal, on SQLite and on PostgreSQL: lifecycle,
//! chat, recovery after passivation and after a node restart, idempotent
//! retries, no-shows.

use std::time::Duration;

use cardio::actors::consult::state::{Command, ConsultError, Outcome, Party, Status};
use cardio::actors::consult::{Act, ConsultActor, View};
use cardio::registry::{Kind, KindSpec};
use cardio::store::Store;

use crate::store::TestDb;
use crate::support::poll::poll_until;
use crate::support::serve_kind;

const LONG: Duration = Duration::from_secs(20);

/// A node's worth of runtime serving consults from `store`.
async fn consults(store: &Store, idle: Duration, no_show: Duration) -> Kind<ConsultActor> {
    let store = store.clone();
    let spec = KindSpec::new(move |id: &str| ConsultActor::new(id, store.clone(), no_show))
        .idle_timeout(Some(idle));
    serve_kind(spec, Duration::from_secs(10)).await.2
}

fn patient() -> Party {
    Party::Patient("p-1".into())
}
fn doctor() -> Party {
    Party::Clinician("c-1".into())
}

async fn act(
    kind: &Kind<ConsultActor>,
    id: &str,
    request_id: &str,
    command: Command,
) -> Result<Outcome, ConsultError> {
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
}

async fn chat(
    kind: &Kind<ConsultActor>,
    who: Party,
    client_id: &str,
    text: &str,
) -> Result<Outcome, ConsultError> {
    let command = Command::Chat {
        who,
        client_message_id: client_id.into(),
        text: text.into(),
    };
    act(kind, "c-1", client_id, command).await
}

async fn open_consult(kind: &Kind<ConsultActor>) {
    act(
        kind,
        "c-1",
        "r1",
        Command::Request {
            patient: "p-1".into(),
            reason: "palpitations".into(),
        },
    )
    .await
    .unwrap();
    act(kind, "c-1", "r2", Command::Join { who: patient() })
        .await
        .unwrap();
    act(kind, "c-1", "r3", Command::Join { who: doctor() })
        .await
        .unwrap();
}

async fn a_consult_runs_its_lifecycle_with_ordered_chat(store: &Store) {
    let kind = consults(store, Duration::from_secs(600), Duration::from_secs(600)).await;
    open_consult(&kind).await;
    assert_eq!(
        chat(&kind, patient(), "m1", "my heart races").await,
        Ok(Outcome::Line {
            seq: 1,
            duplicate: false
        })
    );
    assert_eq!(
        chat(&kind, doctor(), "m2", "since when?").await,
        Ok(Outcome::Line {
            seq: 2,
            duplicate: false
        })
    );
    assert_eq!(
        chat(&kind, patient(), "m1", "my heart races").await,
        Ok(Outcome::Line {
            seq: 1,
            duplicate: true
        })
    );
    let end = Command::End {
        who: doctor(),
        notes: "holter monitor".into(),
    };
    act(&kind, "c-1", "r9", end).await.unwrap();
    assert_eq!(
        chat(&kind, patient(), "m3", "thanks").await,
        Err(ConsultError::Over)
    );
    let view = kind.send("c-1", View { after: 0 }).await.unwrap();
    assert_eq!(view.status, Some(Status::Ended));
    let seqs: Vec<u64> = view.lines.iter().map(|l| l.seq).collect();
    assert_eq!(seqs, vec![1, 2]);
    assert_eq!(view.notes.as_deref(), Some("holter monitor"));
    let resumed = kind.send("c-1", View { after: 1 }).await.unwrap();
    assert_eq!(resumed.lines.len(), 1);
    // The queryable tables follow the journal.
    let rows = store.consults_of("p-1").await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            rows[0].id.as_str(),
            rows[0].status,
            rows[0].clinician_id.as_deref()
        ),
        ("c-1", Status::Ended, Some("c-1"))
    );
    let lines = store.chat_lines("c-1", 0).await.unwrap();
    assert_eq!(lines, view.lines);
    assert_eq!(store.chat_lines("c-1", 1).await.unwrap().len(), 1);
}
on_both!(lifecycle, a_consult_runs_its_lifecycle_with_ordered_chat);

async fn nothing_acknowledged_is_lost_across_passivation_and_node_restart(store: &Store) {
    let kind = consults(store, Duration::from_millis(50), Duration::from_secs(600)).await;
    open_consult(&kind).await;
    chat(&kind, patient(), "m1", "one").await.unwrap();
    chat(&kind, doctor(), "m2", "two").await.unwrap();
    // Passivation: the actor leaves memory, then comes back from the journal.
    poll_until("passivated", LONG, Duration::from_millis(5), async || {
        kind.live() == 0
    })
    .await;
    let snapshot = store
        .snapshot("consult/c-1")
        .await
        .unwrap()
        .expect("snapshot on passivation");
    assert_eq!(snapshot.seq, store.last_seq("consult/c-1").await.unwrap());
    assert_eq!(
        chat(&kind, patient(), "m3", "three").await,
        Ok(Outcome::Line {
            seq: 3,
            duplicate: false
        })
    );
    // A whole new node over the same database.
    let restarted = consults(store, Duration::from_secs(600), Duration::from_secs(600)).await;
    let view = restarted.send("c-1", View { after: 0 }).await.unwrap();
    assert_eq!(view.status, Some(Status::InProgress));
    let texts: Vec<&str> = view.lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, vec!["one", "two", "three"]);
    assert_eq!(
        chat(&restarted, doctor(), "m4", "four").await,
        Ok(Outcome::Line {
            seq: 4,
            duplicate: false
        })
    );
    assert_eq!(
        chat(&restarted, doctor(), "m2", "two").await,
        Ok(Outcome::Line {
            seq: 2,
            duplicate: true
        })
    );
}
on_both!(
    recovery,
    nothing_acknowledged_is_lost_across_passivation_and_node_restart
);

async fn a_retried_command_is_applied_once(store: &Store) {
    let kind = consults(store, Duration::from_secs(600), Duration::from_secs(600)).await;
    open_consult(&kind).await;
    // The same request again (a client retry, a redelivery): answered, not redone.
    assert_eq!(
        act(&kind, "c-1", "r2", Command::Join { who: patient() }).await,
        Ok(Outcome::Done)
    );
    let end = Command::End {
        who: doctor(),
        notes: "n".into(),
    };
    act(&kind, "c-1", "end-1", end.clone()).await.unwrap();
    assert_eq!(act(&kind, "c-1", "end-1", end).await, Ok(Outcome::Done));
    let events = store.events("consult/c-1", 0).await.unwrap();
    let ids: Vec<&str> = events.iter().map(|e| e.message_id.as_str()).collect();
    assert_eq!(ids, vec!["r1", "r2", "r3", "end-1"]);
}
on_both!(retries, a_retried_command_is_applied_once);

async fn an_absent_patient_makes_a_no_show(store: &Store) {
    let kind = consults(store, Duration::from_secs(600), Duration::from_millis(300)).await;
    act(
        &kind,
        "c-7",
        "r1",
        Command::Request {
            patient: "p-1".into(),
            reason: "check-up".into(),
        },
    )
    .await
    .unwrap();
    poll_until("a no-show", LONG, Duration::from_millis(20), async || {
        let view = kind.send("c-7", View { after: 0 }).await.unwrap();
        match view.status {
            Some(Status::NoShow) => Ok(()),
            other => Err(format!("status {other:?}")),
        }
    })
    .await;
}
on_both!(no_show, an_absent_patient_makes_a_no_show);

async fn a_crash_mid_consult_loses_nothing_acknowledged(store: &Store) {
    use cardio::actors::consult::state::{ChatLine, Event};
    use cardio::supervisors::SendError;
    let kind = consults(store, Duration::from_secs(600), Duration::from_secs(600)).await;
    open_consult(&kind).await;
    chat(&kind, patient(), "m1", "one").await.unwrap();
    chat(&kind, doctor(), "m2", "two").await.unwrap();
    // Another writer appends to the journal behind the actor's back (a former
    // owner of the consult, say): the actor's next write conflicts, it crashes.
    let last = store.last_seq("consult/c-1").await.unwrap();
    let foreign = Event::Chatted {
        line: ChatLine {
            seq: 3,
            author: patient(),
            client_message_id: "m3".into(),
            text: "three".into(),
            at_ms: 0,
        },
    };
    store
        .append(
            "consult/c-1",
            last,
            "m3",
            0,
            &serde_json::to_vec(&foreign).unwrap(),
        )
        .await
        .unwrap();
    let command = Command::Chat {
        who: doctor(),
        client_message_id: "m4".into(),
        text: "four".into(),
    };
    let crashed = kind
        .send(
            "c-1",
            Act {
                request_id: "m4".into(),
                command,
                audit: None,
            },
        )
        .await;
    assert!(
        matches!(crashed, Err(SendError::Crashed { .. })),
        "{crashed:?}"
    );
    // Restarted from the journal: everything acknowledged is there, and the
    // retried line lands after the foreign one.
    assert_eq!(
        chat(&kind, doctor(), "m4", "four").await,
        Ok(Outcome::Line {
            seq: 4,
            duplicate: false
        })
    );
    let view = kind.send("c-1", View { after: 0 }).await.unwrap();
    let texts: Vec<&str> = view.lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, vec!["one", "two", "three", "four"]);
    assert_eq!(view.status, Some(Status::InProgress));
}
on_both!(
    crash_recovery,
    a_crash_mid_consult_loses_nothing_acknowledged
);

#[actix_rt::test]
async fn a_journal_entry_that_does_not_decode_is_skipped_not_crash_looped() {
    let db = TestDb::sqlite().await;
    let kind = consults(
        &db.store,
        Duration::from_secs(600),
        Duration::from_secs(600),
    )
    .await;
    open_consult(&kind).await;
    let last = db.store.last_seq("consult/c-1").await.unwrap();
    db.store
        .append("consult/c-1", last, "garbage", 0, b"{not an event")
        .await
        .unwrap();
    // A fresh node reads the damaged journal: the actor starts and serves.
    let again = consults(
        &db.store,
        Duration::from_secs(600),
        Duration::from_secs(600),
    )
    .await;
    let view = again.send("c-1", View { after: 0 }).await.unwrap();
    assert_eq!(view.status, Some(Status::InProgress));
    assert_eq!(
        chat(&again, patient(), "m1", "still here").await,
        Ok(Outcome::Line {
            seq: 1,
            duplicate: false
        })
    );
    db.done().await;
}

async fn no_show_checks_survive_a_node_restart(store: &Store) {
    let first = consults(store, Duration::from_secs(600), Duration::from_millis(300)).await;
    act(
        &first,
        "c-8",
        "r1",
        Command::Request {
            patient: "p-1".into(),
            reason: "check-up".into(),
        },
    )
    .await
    .unwrap();
    // The first node is gone before the window ends; nobody asks about c-8 again.
    let second = consults(store, Duration::from_secs(600), Duration::from_millis(300)).await;
    assert_eq!(
        cardio::actors::consult::reactivate_open_consults(store, &second).await,
        1
    );
    poll_until(
        "c-8 a no-show",
        LONG,
        Duration::from_millis(20),
        async || {
            let rows = store.consults_of("p-1").await.unwrap();
            let no_show = rows
                .iter()
                .any(|r| r.id == "c-8" && r.status == Status::NoShow);
            no_show.then_some(()).ok_or(format!("{rows:?}"))
        },
    )
    .await;
    assert_eq!(
        cardio::actors::consult::reactivate_open_consults(store, &second).await,
        0
    );
}
on_both!(no_show_restart, no_show_checks_survive_a_node_restart);
