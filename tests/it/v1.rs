//! API v1 (issue 14), through a real node: connections with opaque cursors
//! (messages, consults, alerts, the audit trail), `me`, consult details and
//! request ids, the subscriptions that wait for a device, the live ECG, the
//! end of `consultEvents`, and refusals with their reasons.

use serde_json::{json, Value};

use crate::api::{code, device_of, now_ms, ok, people, serve, token, PUSH};
use crate::support::{iso, ms_of};
use cardio::principal::Role;

/// Every node of a connection, following `endCursor` page by page with
/// `first`; `query` takes `$first` and `$after`, and `at` picks the
/// connection out of the answer.
async fn all_pages(
    a: &str,
    who: &str,
    query: &str,
    vars: Value,
    first: i64,
    at: &[&str],
) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut after = Value::Null;
    loop {
        let mut v = vars.clone();
        v["first"] = json!(first);
        v["after"] = after.clone();
        let mut answer = ok(a, who, query, v).await;
        for key in at {
            answer = answer[*key].clone();
        }
        let nodes = answer["nodes"].as_array().unwrap().clone();
        let edges = answer["edges"].as_array().unwrap();
        assert_eq!(edges.len(), nodes.len(), "{answer}");
        if let Some(last) = edges.last() {
            assert_eq!(answer["pageInfo"]["endCursor"], last["cursor"], "{answer}");
        }
        pages.push(nodes);
        if answer["pageInfo"]["hasNextPage"] != true {
            return pages;
        }
        after = answer["pageInfo"]["endCursor"].clone();
        assert!(pages.len() < 50, "no end to the pages");
    }
}

fn request(patient: &str, reason: &str) -> String {
    format!("mutation {{ requestConsult(patientId: \"{patient}\", reason: \"{reason}\") }}")
}

#[actix_rt::test]
async fn messages_consults_and_the_audit_trail_come_in_pages_with_opaque_cursors() {
    let node = serve();
    let a = &node.addr;
    people(a, &["p-1"], &["dr-1"], &[("p-1", "dr-1")]).await;
    let (p1, dr1, admin) = (
        token(Role::Patient, "p-1"),
        token(Role::Clinician, "dr-1"),
        token(Role::Admin, "admin-1"),
    );
    let mut ids = Vec::new();
    for i in 0..3 {
        let v = ok(a, &p1, &request("p-1", &format!("reason {i}")), json!({})).await;
        ids.push(v["requestConsult"].as_str().unwrap().to_owned());
    }

    // Consults: newest first, two pages of 2 and 1, each once.
    let q = "query($first: Int, $after: String) { patient(id: \"p-1\") { consults(first: $first, after: $after) { edges { cursor } nodes { id requestedAt } pageInfo { hasNextPage endCursor } } } }";
    let pages = all_pages(a, &dr1, q, json!({}), 2, &["patient", "consults"]).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
    let listed: Vec<&Value> = pages.iter().flatten().collect();
    let mut seen: Vec<&str> = listed.iter().map(|c| c["id"].as_str().unwrap()).collect();
    let times: Vec<f64> = listed.iter().map(|c| ms_of(&c["requestedAt"])).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    seen.sort_unstable();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(seen, want);

    // Messages: oldest first by seq, across pages.
    let consult = &ids[0];
    let join = "mutation($c: ID!) { joinConsult(id: $c) }";
    ok(a, &p1, join, json!({"c": consult})).await;
    ok(a, &dr1, join, json!({"c": consult})).await;
    let say = "mutation($c: ID!, $k: String!, $t: String!) { sendMessage(consultId: $c, clientMessageId: $k, text: $t) }";
    for i in 1..=5 {
        let who = if i % 2 == 0 { &dr1 } else { &p1 };
        let v = json!({"c": consult, "k": format!("k{i}"), "t": format!("line {i}")});
        ok(a, who, say, v).await;
    }
    let q = "query($c: ID!, $first: Int, $after: String) { consult(id: $c) { messages(first: $first, after: $after) { edges { cursor } nodes { seq text authorRole } pageInfo { hasNextPage endCursor } } } }";
    let pages = all_pages(
        a,
        &p1,
        q,
        json!({"c": consult}),
        2,
        &["consult", "messages"],
    )
    .await;
    let seqs: Vec<Vec<i64>> = pages
        .iter()
        .map(|p| p.iter().map(|m| m["seq"].as_i64().unwrap()).collect())
        .collect();
    assert_eq!(seqs, vec![vec![1, 2], vec![3, 4], vec![5]]);
    assert_eq!(pages[0][1]["authorRole"], "CLINICIAN");
    // 50 by default.
    let v = ok(
        a,
        &p1,
        q,
        json!({"c": consult, "first": null, "after": null}),
    )
    .await;
    assert_eq!(
        v["consult"]["messages"]["nodes"].as_array().unwrap().len(),
        5
    );

    // A cursor that is not one, or another list's, or too large a page.
    let bad = json!({"c": consult, "first": 2, "after": "not-a-cursor"});
    assert_eq!(code(a, &p1, q, bad).await, "BAD_USER_INPUT");
    let audit_q = "query($first: Int, $after: String) { auditLog(first: $first, after: $after) { edges { cursor } nodes { seq } pageInfo { hasNextPage endCursor } } }";
    let audit = ok(a, &admin, audit_q, json!({"first": 2, "after": null})).await;
    let audit_cursor = audit["auditLog"]["pageInfo"]["endCursor"].clone();
    let foreign = json!({"c": consult, "first": 2, "after": audit_cursor});
    assert_eq!(code(a, &p1, q, foreign).await, "BAD_USER_INPUT");
    let huge = json!({"c": consult, "first": 201, "after": null});
    assert_eq!(code(a, &p1, q, huge).await, "BAD_USER_INPUT");

    // The audit trail: oldest first by seq, pages that neither overlap nor skip.
    let pages = all_pages(a, &admin, audit_q, json!({}), 7, &["auditLog"]).await;
    let seqs: Vec<i64> = pages
        .iter()
        .flatten()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert!(seqs.len() > 7, "{seqs:?}");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}

/// A hypertensive crisis (medium, raised at once) at `at`.
fn crisis(at: f64) -> Value {
    json!([{"metric": "BLOOD_PRESSURE", "at": iso(at), "systolic": 200.0, "diastolic": 125.0}])
}

/// SpO2 at 80 % for 12 s from `at`: a severe low SpO2 (high).
fn severe_low_spo2(at: f64) -> Value {
    (0..13)
        .map(|i| json!({"metric": "SPO2", "at": iso(at + f64::from(i) * 1000.0), "value": 80.0}))
        .collect()
}

#[actix_rt::test]
async fn a_clinician_lists_the_alerts_of_every_patient_of_theirs_filtered_newest_first() {
    let node = serve();
    let a = &node.addr;
    people(
        a,
        &["p-1", "p-2", "p-3"],
        &["dr-1", "dr-3"],
        &[("p-1", "dr-1"), ("p-2", "dr-1"), ("p-3", "dr-3")],
    )
    .await;
    let t0 = now_ms() - 120_000.0;
    let mut devices = Vec::new();
    for (p, samples) in [
        ("p-1", crisis(t0)),
        ("p-2", severe_low_spo2(t0 + 10_000.0)),
        ("p-3", crisis(t0 + 20_000.0)),
    ] {
        let d = device_of(a, p, "monitor").await;
        let pushed = ok(
            a,
            &token(Role::Patient, p),
            PUSH,
            json!({"d": d, "s": samples}),
        )
        .await;
        assert!(pushed["pushSamples"]["accepted"].as_i64().unwrap() > 0);
        devices.push(d);
    }
    // p-2 also has a crisis, later.
    ok(
        a,
        &token(Role::Patient, "p-2"),
        PUSH,
        json!({"d": devices[1], "s": crisis(t0 + 40_000.0)}),
    )
    .await;
    let dr1 = token(Role::Clinician, "dr-1");
    let q = "query($pr: AlarmPriority, $st: AlertStatus, $first: Int, $after: String) { alerts(priority: $pr, status: $st, first: $first, after: $after) { edges { cursor } nodes { patientId kind priority raisedAt } pageInfo { hasNextPage endCursor } } }";
    let pages = all_pages(a, &dr1, q, json!({}), 1, &["alerts"]).await;
    let all: Vec<Value> = pages.into_iter().flatten().collect();
    let patients: std::collections::BTreeSet<&str> = all
        .iter()
        .map(|x| x["patientId"].as_str().unwrap())
        .collect();
    assert_eq!(patients, ["p-1", "p-2"].into(), "{all:?}");
    assert!(all.len() >= 3, "{all:?}");
    let raised: Vec<f64> = all.iter().map(|x| ms_of(&x["raisedAt"])).collect();
    assert!(
        raised.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {raised:?}"
    );
    // Filters: priority, status.
    let high = ok(a, &dr1, q, json!({"pr": "HIGH"})).await;
    let high = high["alerts"]["nodes"].as_array().unwrap();
    assert!(!high.is_empty());
    assert!(
        high.iter()
            .all(|x| x["priority"] == "HIGH" && x["patientId"] == "p-2"),
        "{high:?}"
    );
    // (The low SpO2 was superseded by the severe one: resolved.)
    let resolved = ok(a, &dr1, q, json!({"st": "RESOLVED"})).await;
    let resolved = resolved["alerts"]["nodes"].as_array().unwrap().clone();
    assert!(
        resolved.iter().all(|x| x["patientId"] == "p-2"),
        "{resolved:?}"
    );
    let every = ok(a, &dr1, q, json!({"st": "ALL", "first": 200})).await;
    let every = every["alerts"]["nodes"].as_array().unwrap().len();
    assert_eq!(every, all.len() + resolved.len());
    // A patient's own; one patient by id; ops are refused; another care
    // team's patient is refused.
    let mine = ok(a, &token(Role::Patient, "p-3"), q, json!({})).await;
    let mine = mine["alerts"]["nodes"].as_array().unwrap();
    assert!(!mine.is_empty() && mine.iter().all(|x| x["patientId"] == "p-3"));
    let one = "query($p: ID) { alerts(patientId: $p) { nodes { patientId } } }";
    let v = ok(a, &dr1, one, json!({"p": "p-1"})).await;
    assert!(v["alerts"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["patientId"] == "p-1"));
    assert_eq!(code(a, &dr1, one, json!({"p": "p-3"})).await, "FORBIDDEN");
    assert_eq!(
        code(a, &token(Role::Ops, "ops-1"), q, json!({})).await,
        "FORBIDDEN"
    );
    // Each patient read is audited.
    let log = crate::api::audit_all(
        a,
        &token(Role::Admin, "admin-1"),
        None,
        "subject action fields patientId outcome",
    )
    .await;
    for p in ["p-1", "p-2"] {
        assert!(
            log.iter().any(|e| e["subject"] == "dr-1"
                && e["fields"] == "alerts"
                && e["patientId"] == p
                && e["outcome"] == "ALLOWED"),
            "{p}: {log:?}"
        );
    }
}
