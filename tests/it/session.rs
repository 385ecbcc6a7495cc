//! The PatientSession actor: presence per app, automatic logoff, durable
//! consult and devices (SQLite and PostgreSQL).

use std::time::Duration;

use cardio::actors::session::{
    Activity, AddDevice, Connect, Disconnect, PatientSession, SetConsult, ViewSession,
};
use cardio::registry::{Kind, KindSpec};
use cardio::store::Store;

use crate::store::TestDb;

use crate::support::{poll_until, serve_kind};

async fn sessions(store: &Store, logoff_after: Duration) -> Kind<PatientSession> {
    let store = store.clone();
    let spec = KindSpec::new(move |id: &str| PatientSession::new(id, store.clone(), logoff_after));
    serve_kind(spec, Duration::from_secs(10)).await.2
}

fn connect(connection: &str, app: &str) -> Connect {
    Connect {
        connection: connection.into(),
        app: app.into(),
    }
}

#[actix_rt::test]
async fn each_app_connection_has_its_own_presence() {
    let db = TestDb::sqlite().await;
    let kind = sessions(&db.store, Duration::from_secs(900)).await;
    kind.send("p-1", connect("ws-1", "phone")).await.unwrap();
    let view = kind.send("p-1", connect("ws-2", "tablet")).await.unwrap();
    assert_eq!(view.connections.len(), 2);
    let view = kind
        .send(
            "p-1",
            Disconnect {
                connection: "ws-1".into(),
            },
        )
        .await
        .unwrap();
    let apps: Vec<&str> = view.connections.values().map(|c| c.app.as_str()).collect();
    assert_eq!(apps, vec!["tablet"]);
    db.done().await;
}

#[actix_rt::test]
async fn a_quiet_session_is_logged_off_and_activity_keeps_it_alive() {
    let db = TestDb::sqlite().await;
    let kind = sessions(&db.store, Duration::from_secs(300)).await;
    // The first message starts the actor (it reads the store in real time);
    // from then on the clock is virtual.
    kind.send("p-1", connect("ws-1", "phone")).await.unwrap();
    tokio::time::pause();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_secs(100)).await;
        kind.send("p-1", Activity).await.unwrap();
    }
    let view = kind.send("p-1", ViewSession).await.unwrap();
    assert!(
        !view.logged_off && view.connections.len() == 1,
        "active for 600 s with a 300 s timeout"
    );
    let view = poll_until(
        "logged off",
        Duration::from_secs(1000),
        Duration::from_secs(10),
        async || {
            let view = kind.send("p-1", ViewSession).await.unwrap();
            view.logged_off.then_some(view)
        },
    )
    .await;
    assert!(view.connections.is_empty());
    let view = kind.send("p-1", connect("ws-2", "phone")).await.unwrap();
    assert!(!view.logged_off, "a new connection starts a new session");
    db.done().await;
}

async fn the_consult_and_devices_survive_a_node_restart_presence_does_not(store: &Store) {
    let first = sessions(store, Duration::from_secs(900)).await;
    first.send("p-1", connect("ws-1", "phone")).await.unwrap();
    first
        .send(
            "p-1",
            SetConsult {
                request_id: "s1".into(),
                consult: Some("c-1".into()),
            },
        )
        .await
        .unwrap()
        .unwrap();
    first
        .send(
            "p-1",
            AddDevice {
                request_id: "s2".into(),
                device: "d-1".into(),
            },
        )
        .await
        .unwrap()
        .unwrap();
    first
        .send(
            "p-1",
            AddDevice {
                request_id: "s3".into(),
                device: "d-1".into(),
            },
        )
        .await
        .unwrap()
        .unwrap();
    let second = sessions(store, Duration::from_secs(900)).await;
    let view = second.send("p-1", ViewSession).await.unwrap();
    assert_eq!(view.active_consult.as_deref(), Some("c-1"));
    assert_eq!(view.devices.iter().collect::<Vec<_>>(), vec!["d-1"]);
    assert!(
        view.connections.is_empty(),
        "apps reconnect to the new node"
    );
    assert_eq!(
        store.events("session/p-1", 0).await.unwrap().len(),
        2,
        "the device was added once"
    );
}
on_both!(
    durable,
    the_consult_and_devices_survive_a_node_restart_presence_does_not
);
