//! The local path (`cardio::bus::client::LocalPath`): a node asks the
//! actors of the shards it serves directly, not through the bus, and a
//! write it can no longer make there (its shard moved) goes through the bus
//! once, applied exactly once.

use std::time::Duration;

use cardio::address::{shard_of, ActorId};
use cardio::principal::Role;
use serde_json::json;
use sqlx::Connection;

use crate::api::{device_of, hr, now_ms, ok, people, serve_with, token};
use crate::ops::scrape;

const PUSH: &str = "mutation($d: ID!, $s: [SampleInput!]!, $r: String) { pushSamples(deviceId: $d, samples: $s, requestId: $r) { accepted duplicate } }";

#[actix_rt::test]
async fn a_node_asks_its_own_actors_directly_and_a_fenced_write_goes_through_the_bus_once() {
    // No heartbeat during the test: only the push below finds the shard moved.
    let node = serve_with(&[
        ("CARDIO_SHARDS", "8"),
        ("CARDIO_HEARTBEAT", "30s"),
        ("CARDIO_LEASE", "90s"),
    ]);
    let a = &node.addr;
    people(a, &["p-1"], &[], &[]).await;
    let device = device_of(a, "p-1", "watch").await;
    let patient = token(Role::Patient, "p-1");
    let t0 = now_ms() - 60_000.0;
    let push = |i: u32| {
        let (patient, device) = (patient.clone(), device.clone());
        async move {
            let v = json!({"d": device, "s": [hr(t0 + f64::from(i) * 1_000.0, 70.0)], "r": format!("r-{i}")});
            ok(a, &patient, PUSH, v).await["pushSamples"].clone()
        }
    };
    let counts = async || {
        let s = scrape(a).await;
        (
            s.sum("cardio_local_asks_total", &[("outcome", "answered")]),
            s.sum("cardio_local_asks_total", &[("outcome", "handed_to_bus")]),
            s.sum("cardio_bus_publishes_total", &[("class", "actor")]),
        )
    };
    // The first push reaches the device through its shard's queue (the node
    // takes the shard on that delivery); the next ones directly.
    assert_eq!(push(0).await["accepted"], 1);
    let before = counts().await;
    for i in 1..=5 {
        assert_eq!(push(i).await, json!({"accepted": 1, "duplicate": false}));
    }
    let after = counts().await;
    assert!(after.0 >= before.0 + 5.0, "{before:?} → {after:?}");
    // Only the sessions' activity may have used the bus meanwhile (at most
    // once per lag), not the pushes.
    assert!(after.2 <= before.2 + 1.0, "{before:?} → {after:?}");
    assert_eq!(after.1, 0.0);

    // Another node takes the shard (its epoch bumped, as a claim does).
    let shard = shard_of(&ActorId::new("device", &device).unwrap(), 8);
    let url = format!("sqlite://{}/cardio.db", node.data_dir().display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let bumped = sqlx::query("UPDATE shard_owners SET epoch = epoch + 1 WHERE shard = ?")
        .bind(i64::from(shard))
        .execute(&mut db)
        .await
        .unwrap();
    assert_eq!(bumped.rows_affected(), 1);
    // The direct write is refused by the fence; the push goes through the
    // bus (the node takes the shard back on its delivery) and is applied once.
    assert_eq!(push(6).await, json!({"accepted": 1, "duplicate": false}));
    let fenced = counts().await;
    assert_eq!(fenced.1, 1.0, "handed to the bus once: {fenced:?}");
    assert!(fenced.2 > after.2, "{after:?} → {fenced:?}");
    assert_eq!(push(6).await, json!({"accepted": 0, "duplicate": true}));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM journal WHERE actor_id = ?")
        .bind(format!("device/{device}"))
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(rows, 7, "one journal entry per push, the fenced try none");
    // The patient's requests did not start their session: it has no app
    // connection to log off, so activity does not concern it.
    let ops = token(Role::Ops, "ops-1");
    let tree = ok(a, &ops, "{ supervisionTree { path } }", json!({}))
        .await
        .to_string();
    assert!(tree.contains("/cardio/entities/device/"), "{tree}");
    assert!(!tree.contains("/cardio/entities/session/"), "{tree}");
    // And the pushes after it are direct again.
    assert_eq!(push(7).await["accepted"], 1);
    crate::support::poll::poll_until(
        "a direct push after the fenced one",
        Duration::from_secs(10),
        Duration::from_millis(100),
        async || (counts().await.0 > fenced.0).then_some(()),
    )
    .await;
    drop(node);
}
