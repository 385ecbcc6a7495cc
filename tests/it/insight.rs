//! What the ops console reads besides trees (issue 14): the node's own
//! metric series (`metrics`) and its recent dead letters (`deadLetters`),
//! through the real `cardio serve` and its GraphQL API.

use std::sync::Arc;
use std::time::Duration;

use cardio::bus::{Bus, BusOptions, Envelope};
use cardio::principal::Role;
use serde_json::{json, Value};

use crate::api::{code, gql, ok, token, SECRET};
use crate::support::node::TestNode;
use crate::support::poll::poll_until;

/// The code of a refused argument (`BAD_USER_INPUT` in API v1).
fn bad_input() -> &'static str {
    cardio::api::error::ApiError::bad_input("").code()
}

const METRICS: &str = "query($n: ID, $w: Int) { metrics(node: $n, window: $w) { name unit node points { at value } } }";

#[actix_rt::test]
async fn ops_see_the_nodes_own_series_sampled_every_five_seconds() {
    let node = crate::api::serve_with(&[("CARDIO_NODE_ID", "insight-1")]);
    let ops = token(Role::Ops, "o-1");
    for who in [token(Role::Clinician, "dr-1"), token(Role::Patient, "p-1")] {
        assert_eq!(
            code(&node.addr, &who, METRICS, json!({})).await,
            "FORBIDDEN"
        );
    }
    // Requests to count; the sampler's next reading turns them into a rate.
    for _ in 0..5 {
        ok(&node.addr, &ops, "{ me { subject } }", json!({})).await;
    }
    let series = poll_until(
        "a sample with the requests in it",
        Duration::from_secs(30),
        Duration::from_millis(250),
        async || {
            let data = ok(&node.addr, &ops, METRICS, json!({"w": 60})).await;
            let all = data["metrics"].as_array().cloned().unwrap_or_default();
            let rate = all
                .iter()
                .find(|s| s["name"] == "graphql_requests")
                .and_then(|s| s["points"].as_array().cloned())
                .unwrap_or_default();
            rate.iter()
                .any(|p| p["value"].as_f64().unwrap_or(0.0) > 0.0)
                .then_some(all)
        },
    )
    .await;
    let by_name = |name: &str| -> Value {
        series
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no series {name}: {series:?}"))
    };
    for (name, unit) in [
        ("graphql_requests", "1/s"),
        ("graphql_errors", "1/s"),
        ("samples_stored", "1/s"),
        ("alerts_raised", "1/s"),
        ("actor_restarts", "1/s"),
        ("dead_letters", "1/s"),
        ("actors_live", "actors"),
        ("mailbox_depth", "messages"),
        ("subscriptions", "subscriptions"),
        ("journal_append_latency", "ms"),
        ("bus_publish_latency", "ms"),
    ] {
        let s = by_name(name);
        assert_eq!(s["unit"], unit, "{s}");
        assert_eq!(s["node"], "insight-1", "{s}");
    }
    let at = by_name("graphql_requests")["points"][0]["at"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        at.ends_with('Z') && at.len() == 24,
        "RFC 3339 with ms: {at}"
    );
    // Every node (here: one) and this node by its id say the same.
    let all = ok(&node.addr, &ops, METRICS, json!({"n": "*"})).await;
    assert_eq!(all["metrics"].as_array().unwrap().len(), series.len());
    let by_id = ok(&node.addr, &ops, METRICS, json!({"n": "insight-1"})).await;
    assert_eq!(by_id["metrics"].as_array().unwrap().len(), series.len());
    // Bad input is refused with a code.
    for (vars, expected) in [
        (json!({"w": 1}), bad_input()),
        (json!({"w": 3600}), bad_input()),
        (json!({"n": "no-such-node"}), "NOT_FOUND"),
    ] {
        assert_eq!(
            code(&node.addr, &ops, METRICS, vars.clone()).await,
            expected,
            "{vars}"
        );
    }
}

const DEAD: &str = "query($f: Int, $a: String) { deadLetters(first: $f, after: $a) { edges { cursor node { id at node topic reason } } nodes { id } pageInfo { hasNextPage endCursor } } }";

#[actix_rt::test]
async fn malformed_messages_sent_to_an_actor_show_up_in_dead_letters_with_their_reason() {
    needs!(Rabbitmq);
    let vhost = crate::broker::Vhost::new();
    let node = TestNode::serve()
        .env("CARDIO_NODE_ID", "insight-2")
        .env("CARDIO_BUS_URL", vhost.url())
        .env("CARDIO_SHARDS", "8")
        .env("CARDIO_JWT_SECRET", SECRET)
        .lifetime(Duration::from_secs(120))
        .start();
    let ops = token(Role::Ops, "o-1");
    let empty = ok(&node.addr, &ops, DEAD, json!({})).await;
    assert_eq!(empty["deadLetters"]["edges"], json!([]));
    assert_eq!(
        code(&node.addr, &token(Role::Clinician, "dr-1"), DEAD, json!({})).await,
        "FORBIDDEN"
    );

    // Two messages no consult can take, sent through the broker as any
    // node would: a type with no handler, and the right type in the wrong
    // shape (with a name in it, which must not show).
    let bus: Arc<dyn Bus> = Arc::new(
        vhost
            .bus(BusOptions {
                shards: 8,
                ..BusOptions::default()
            })
            .await,
    );
    let to = cardio::address::ActorId::new("consult", "c-dead").unwrap();
    let unknown = Envelope::new("consult.explode", &json!({"x": 1}))
        .unwrap()
        .to(to.clone());
    bus.send(&unknown).await.unwrap();
    let wrong = Envelope::new(
        "consult.act",
        &json!({"request_id": 5, "command": "Jane Doe"}),
    )
    .unwrap()
    .to(to);
    bus.send(&wrong).await.unwrap();

    let first = poll_until(
        "both messages in deadLetters",
        Duration::from_secs(30),
        Duration::from_millis(100),
        async || {
            let data = ok(&node.addr, &ops, DEAD, json!({"f": 1})).await;
            let page = data["deadLetters"].clone();
            page["pageInfo"]["hasNextPage"]
                .as_bool()
                .unwrap_or(false)
                .then_some(page)
        },
    )
    .await;
    let newest = &first["edges"][0]["node"];
    assert_eq!(newest["topic"], "consult.act", "{first}");
    assert!(
        newest["reason"].as_str().unwrap().contains("wrong shape"),
        "{first}"
    );
    assert_eq!(newest["node"], "insight-2");
    assert!(newest["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(first["nodes"][0]["id"], newest["id"]);
    let after = first["pageInfo"]["endCursor"].as_str().unwrap();
    let second = ok(&node.addr, &ops, DEAD, json!({"f": 10, "a": after})).await;
    let second = &second["deadLetters"];
    assert_eq!(second["edges"].as_array().unwrap().len(), 1, "{second}");
    let older = &second["edges"][0]["node"];
    assert_eq!(older["topic"], "consult.explode");
    assert!(
        older["reason"].as_str().unwrap().contains("no handler"),
        "{older}"
    );
    assert_eq!(second["pageInfo"]["hasNextPage"], false);
    let everything = gql(&node.addr, &ops, DEAD, json!({"f": 200}))
        .await
        .to_string();
    assert!(
        !everything.contains("Jane"),
        "a payload shows: {everything}"
    );
    for vars in [
        json!({"f": 0}),
        json!({"f": 201}),
        json!({"a": "not-a-cursor"}),
    ] {
        assert_eq!(
            code(&node.addr, &ops, DEAD, vars.clone()).await,
            bad_input(),
            "{vars}"
        );
    }
}

#[actix_rt::test]
async fn metrics_of_another_node_or_of_every_node_are_fetched_from_them() {
    needs!(Cluster);
    let db = crate::store::TestDb::postgres_empty().await;
    let vhost = crate::broker::Vhost::new();
    let a = crate::api::cluster_member("metrics-a", &vhost.url(), db.url())
        .lifetime(Duration::from_secs(180))
        .start();
    let b = crate::api::cluster_member("metrics-b", &vhost.url(), db.url())
        .lifetime(Duration::from_secs(180))
        .start();
    let ops = token(Role::Ops, "o-1");
    let nodes_of = |v: &Value| -> Vec<String> {
        let mut n: Vec<String> = v["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["node"].as_str().unwrap().to_owned())
            .collect();
        n.dedup();
        n
    };
    // Node A answers for every node once it sees B up.
    let all = poll_until(
        "node A to see node B",
        Duration::from_secs(30),
        Duration::from_millis(200),
        async || {
            let v = gql(&a.addr, &ops, METRICS, json!({"n": "*"})).await;
            if v.get("errors").is_some() {
                return Err(v.to_string());
            }
            let nodes = nodes_of(&v["data"]);
            (nodes == ["metrics-a", "metrics-b"])
                .then(|| v["data"].clone())
                .ok_or(format!("{nodes:?}"))
        },
    )
    .await;
    assert_eq!(
        all["metrics"].as_array().unwrap().len(),
        22,
        "11 series a node"
    );
    let other = ok(&a.addr, &ops, METRICS, json!({"n": "metrics-b", "w": 60})).await;
    assert_eq!(nodes_of(&other), ["metrics-b"]);
    // A clinician's token is refused before any node is asked.
    let dr = token(Role::Clinician, "dr-1");
    assert_eq!(
        code(&a.addr, &dr, METRICS, json!({"n": "*"})).await,
        "FORBIDDEN"
    );
    drop((a, b));
    db.done().await;
}
