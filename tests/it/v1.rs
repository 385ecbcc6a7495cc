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

/// `requestConsult` with its reason as the request id too.
fn request(patient: &str, reason: &str) -> String {
    format!("mutation {{ requestConsult(patientId: \"{patient}\", reason: \"{reason}\", requestId: \"{}\") }}", reason.replace(' ', "-"))
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
    // A time that is not RFC 3339, as a variable or in the query text.
    let vitals = "query($f: DateTime!) { vitals(patientId: \"p-1\", metric: HEART_RATE, from: $f, to: \"2026-12-05T09:00:00+01:00\") { count } }";
    for bad in [json!("yesterday"), json!(1796457662345i64)] {
        assert_eq!(
            code(a, &p1, vitals, json!({"f": bad})).await,
            "BAD_USER_INPUT"
        );
    }
    let literal = "{ beats(patientId: \"p-1\", from: \"2026-13-05T08:00:00Z\", to: \"2026-12-05T08:01:00Z\") { at } }";
    assert_eq!(code(a, &p1, literal, json!({})).await, "BAD_USER_INPUT");

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

const CONSULT: &str = "query($c: ID!) { consult(id: $c) { status reason notes requestedAt startedAt endedAt patientId clinicianId } }";

#[actix_rt::test]
async fn a_consult_tells_its_reason_notes_and_times_and_one_request_id_makes_one_consult() {
    let data = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/v1.db", data.path().display());
    let node = crate::api::serve_with(&[("CARDIO_DATABASE_URL", &db)]);
    let a = node.addr.clone();
    people(
        &a,
        &["p-1", "p-2", "p-3"],
        &["dr-1", "dr-2"],
        &[("p-1", "dr-1"), ("p-3", "dr-1")],
    )
    .await;
    let (p1, dr1) = (token(Role::Patient, "p-1"), token(Role::Clinician, "dr-1"));
    let ask = "mutation($p: ID!, $r: String!, $q: ID!) { requestConsult(patientId: $p, reason: $r, requestId: $q) }";
    let vars = json!({"p": "p-1", "r": "chest pain at night", "q": "q-1"});
    let id = ok(&a, &p1, ask, vars.clone()).await["requestConsult"].clone();
    // The same request again: the same consult, nothing new.
    assert_eq!(ok(&a, &p1, ask, vars.clone()).await["requestConsult"], id);
    let count = "{ patient(id: \"p-1\") { consults { nodes { id } } } }";
    let listed = ok(&a, &p1, count, json!({})).await;
    assert_eq!(listed["patient"]["consults"]["nodes"], json!([{"id": id}]));
    // Another caller's same id is another request; one caller's id reused
    // for another patient is refused.
    let theirs = json!({"p": "p-1", "r": "follow-up", "q": "q-1"});
    let other = ok(&a, &dr1, ask, theirs).await["requestConsult"].clone();
    assert_ne!(other, id);
    let reused = json!({"p": "p-3", "r": "follow-up", "q": "q-1"});
    let v = crate::api::gql(&a, &dr1, ask, reused).await;
    assert_eq!(
        v["errors"][0]["extensions"]["reason"], "REQUEST_ID_REUSED",
        "{v}"
    );
    // A patient not registered: nothing is made, and the id stays free.
    let p404 = token(Role::Patient, "p-404");
    let unknown = json!({"p": "p-404", "r": "dizzy", "q": "q-1"});
    assert_eq!(code(&a, &p404, ask, unknown).await, "NOT_FOUND");
    // Each request's access is audited once, whichever way it ended (the
    // entry travels with the command, or is written when it goes no further).
    let admin = token(Role::Admin, "admin-1");
    let log =
        crate::api::audit_all(&a, &admin, None, "subject action fields patientId outcome").await;
    let requests = |sub: &str, patient: &str| {
        log.iter()
            .filter(|e| {
                e["subject"] == sub
                    && e["patientId"] == patient
                    && e["action"] == "write"
                    && e["fields"] == "consult"
                    && e["outcome"] == "ALLOWED"
            })
            .count()
    };
    assert_eq!(
        [
            requests("p-1", "p-1"),
            requests("dr-1", "p-1"),
            requests("dr-1", "p-3"),
            requests("p-404", "p-404")
        ],
        [2, 1, 1, 1],
        "{log:?}"
    );

    // Its details, as the consult goes on.
    let read = ok(&a, &dr1, CONSULT, json!({"c": id})).await["consult"].clone();
    assert_eq!(read["status"], "REQUESTED");
    assert_eq!(read["reason"], "chest pain at night");
    assert!(read["notes"].is_null() && read["startedAt"].is_null() && read["endedAt"].is_null());
    let requested = ms_of(&read["requestedAt"]);
    assert!((requested - now_ms()).abs() < 60_000.0, "{read}");
    let join = "mutation($c: ID!) { joinConsult(id: $c) }";
    ok(&a, &p1, join, json!({"c": id})).await;
    ok(&a, &dr1, join, json!({"c": id})).await;
    let read = ok(&a, &p1, CONSULT, json!({"c": id})).await["consult"].clone();
    assert_eq!(
        (read["status"].clone(), read["clinicianId"].clone()),
        (json!("IN_PROGRESS"), json!("dr-1"))
    );
    let started = ms_of(&read["startedAt"]);
    assert!(started >= requested, "{read}");
    let end = "mutation($c: ID!, $n: String!) { endConsult(id: $c, notes: $n) }";
    ok(
        &a,
        &dr1,
        end,
        json!({"c": id, "n": "follow up in two weeks"}),
    )
    .await;
    let read = ok(&a, &p1, CONSULT, json!({"c": id})).await["consult"].clone();
    assert_eq!(read["status"], "ENDED");
    assert_eq!(read["notes"], "follow up in two weeks");
    assert!(ms_of(&read["endedAt"]) >= started);
    // Nobody else reads it.
    for who in [
        token(Role::Clinician, "dr-2"),
        token(Role::Patient, "p-2"),
        token(Role::Ops, "ops-1"),
    ] {
        assert_eq!(code(&a, &who, CONSULT, json!({"c": id})).await, "FORBIDDEN");
    }
    // Each read is a PHI read of p-1 in the trail.
    let log = crate::api::audit_all(
        &a,
        &token(Role::Admin, "admin-1"),
        Some("p-1"),
        "subject fields outcome",
    )
    .await;
    assert!(log.iter().any(|e| e["subject"] == "dr-1"
        && e["fields"] == "consult,chat"
        && e["outcome"] == "ALLOWED"));
    assert!(log
        .iter()
        .any(|e| e["subject"] == "dr-2" && e["outcome"] == "REFUSED"));

    // After a restart, the request id still names the same consult.
    drop(node);
    let node = crate::api::serve_with(&[("CARDIO_DATABASE_URL", &db)]);
    assert_eq!(ok(&node.addr, &p1, ask, vars).await["requestConsult"], id);
    let listed = ok(&node.addr, &p1, count, json!({})).await;
    assert_eq!(
        listed["patient"]["consults"]["nodes"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "p-1's request and dr-1's, no third"
    );
}

#[actix_rt::test]
async fn me_lists_a_clinicians_patients_and_the_consults_waiting_for_them() {
    let node = serve();
    let a = &node.addr;
    people(
        a,
        &["p-1", "p-2", "p-3"],
        &["dr-1", "dr-2", "dr-3"],
        &[
            ("p-1", "dr-1"),
            ("p-2", "dr-1"),
            ("p-2", "dr-2"),
            ("p-3", "dr-3"),
        ],
    )
    .await;
    device_of(a, "p-1", "watch").await;
    let join = "mutation($c: ID!) { joinConsult(id: $c) }";
    let consult = async |patient: &str, q: &str, joined: &[&str]| -> String {
        let v = ok(
            a,
            &token(Role::Patient, patient),
            &request(patient, q),
            json!({}),
        )
        .await;
        let id = v["requestConsult"].as_str().unwrap().to_owned();
        for who in joined {
            let t = if who.starts_with("dr") {
                token(Role::Clinician, who)
            } else {
                token(Role::Patient, who)
            };
            ok(a, &t, join, json!({"c": id})).await;
        }
        id
    };
    let c1 = consult("p-1", "c1", &[]).await; // requested
    let c2 = consult("p-2", "c2", &["p-2"]).await; // waiting
    let c3 = consult("p-3", "c3", &["p-3"]).await; // another care team's
    let c4 = consult("p-1", "c4", &["p-1", "dr-1"]).await; // dr-1 is in it
    let c5 = consult("p-2", "c5", &["p-2", "dr-2"]).await; // dr-2 is in it
    let dr1 = token(Role::Clinician, "dr-1");
    let q = "query($s: [ConsultStatus!]) { me { subject role tokenExpiresAt patients { id devices { kind } careTeam } consults(status: $s) { nodes { id status patientId requestedAt } } } }";
    let me = ok(a, &dr1, q, json!({})).await["me"].clone();
    assert_eq!(
        (me["subject"].clone(), me["role"].clone()),
        (json!("dr-1"), json!("CLINICIAN"))
    );
    assert!(ms_of(&me["tokenExpiresAt"]) > now_ms());
    let mut patients: Vec<&str> = me["patients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    patients.sort_unstable();
    assert_eq!(patients, ["p-1", "p-2"]);
    let p1 = me["patients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "p-1")
        .unwrap();
    assert_eq!(p1["devices"], json!([{"kind": "watch"}]));
    let ids = |me: &Value| -> Vec<String> {
        me["consults"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut mine = ids(&me);
    let times: Vec<f64> = me["consults"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| ms_of(&c["requestedAt"]))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    mine.sort_unstable();
    let mut want = vec![c1.clone(), c2.clone(), c4.clone()];
    want.sort_unstable();
    assert_eq!(mine, want, "not {c3} nor {c5}");
    let busy = ok(a, &dr1, q, json!({"s": ["IN_PROGRESS"]})).await["me"].clone();
    assert_eq!(ids(&busy), std::slice::from_ref(&c4));
    // A patient: themself and their own consults; ops: nothing.
    let me = ok(a, &token(Role::Patient, "p-2"), q, json!({})).await["me"].clone();
    assert_eq!(me["patients"][0]["id"], "p-2");
    let mut theirs = ids(&me);
    theirs.sort_unstable();
    let mut want = vec![c2, c5];
    want.sort_unstable();
    assert_eq!(theirs, want);
    let me = ok(a, &token(Role::Ops, "ops-1"), q, json!({})).await["me"].clone();
    assert_eq!(
        (me["patients"].clone(), me["consults"]["nodes"].clone()),
        (json!([]), json!([]))
    );
    // dr-1's reads are in the trail, per patient.
    let log = crate::api::audit_all(
        a,
        &token(Role::Admin, "admin-1"),
        None,
        "subject fields patientId",
    )
    .await;
    for p in ["p-1", "p-2"] {
        assert!(
            log.iter().any(|e| e["subject"] == "dr-1"
                && e["fields"] == "consults"
                && e["patientId"] == p),
            "{p}"
        );
        assert!(
            log.iter().any(|e| e["subject"] == "dr-1"
                && e["fields"] == "profile,devices,care_team,consults"
                && e["patientId"] == p),
            "{p}"
        );
    }
}

#[actix_rt::test]
async fn latest_vitals_carry_the_time_of_each_reading_and_the_rhythm() {
    use cardio::synthetic::ecg::{generate, EcgScenario};
    let node = serve();
    let a = &node.addr;
    people(a, &["p-1"], &["dr-1"], &[("p-1", "dr-1")]).await;
    let p1 = token(Role::Patient, "p-1");
    let (d1, d2) = (
        device_of(a, "p-1", "watch").await,
        device_of(a, "p-1", "cuff").await,
    );
    let q = "{ patient(id: \"p-1\") { latestVitals { heartRate { value at deviceId } spo2 { value at deviceId } bloodPressure { systolic diastolic at deviceId } ecg { at deviceId state { rhythm heartRate quality } } } openAlerts { kind } } }";
    let dr1 = token(Role::Clinician, "dr-1");
    let none = ok(a, &dr1, q, json!({})).await;
    assert_eq!(
        none["patient"]["latestVitals"],
        json!({"heartRate": null, "spo2": null, "bloodPressure": null, "ecg": null})
    );
    let t0 = now_ms() - 600_000.0;
    let s1 = json!([
        {"metric": "HEART_RATE", "at": iso(t0), "value": 70.0},
        {"metric": "SPO2", "at": iso(t0 + 1_000.0), "value": 97.0},
        {"metric": "HEART_RATE", "at": iso(t0 + 2_000.0), "value": 72.0},
    ]);
    ok(a, &p1, PUSH, json!({"d": d1, "s": s1})).await;
    let s2 = json!([
        {"metric": "BLOOD_PRESSURE", "at": iso(t0 + 3_000.0), "systolic": 200.0, "diastolic": 125.0},
        {"metric": "HEART_RATE", "at": iso(t0 + 4_000.0), "value": 75.0},
    ]);
    ok(a, &p1, PUSH, json!({"d": d2, "s": s2})).await;
    let ecg = generate(&EcgScenario::new(250, 7).sinus(75.0, 20.0));
    let t1 = t0 + 10_000.0;
    let chunks = crate::monitoring::ecg_inputs(&ecg.samples, 250, t1);
    ok(a, &p1, PUSH, json!({"d": d1, "s": chunks})).await;
    let v = ok(a, &dr1, q, json!({})).await;
    let latest = &v["patient"]["latestVitals"];
    // The newest of each across devices, with its time and device.
    assert_eq!(
        latest["heartRate"],
        json!({"value": 75.0, "at": iso(t0 + 4_000.0), "deviceId": d2})
    );
    assert_eq!(
        latest["spo2"],
        json!({"value": 97.0, "at": iso(t0 + 1_000.0), "deviceId": d1})
    );
    assert_eq!(
        latest["bloodPressure"],
        json!({"systolic": 200.0, "diastolic": 125.0, "at": iso(t0 + 3_000.0), "deviceId": d2})
    );
    // Ten minutes old: a client sees it is stale.
    assert!(now_ms() - ms_of(&latest["heartRate"]["at"]) > 500_000.0);
    let e = &latest["ecg"];
    assert_eq!(e["deviceId"], json!(d1));
    assert_eq!(e["state"]["rhythm"], "SINUS", "{e}");
    assert!(
        (e["state"]["heartRate"].as_f64().unwrap() - 75.0).abs() < 5.0,
        "{e}"
    );
    let at = ms_of(&e["at"]);
    assert!(at > t1 && at <= t1 + 20_000.0, "{e}");
    // The crisis is open.
    assert!(v["patient"]["openAlerts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["kind"] == "HYPERTENSIVE_CRISIS"));
}

/// Subscribes `query` as `id` on a socket of its own.
async fn subscribed(a: &str, who: &str, id: &str, query: &str) -> crate::api::Socket {
    let mut ws = crate::api::socket(a, who).await;
    let msg = json!({"id": id, "type": "subscribe", "payload": {"query": query}});
    crate::api::send(&mut ws, msg).await;
    ws
}

#[actix_rt::test]
async fn live_subscriptions_wait_for_a_device_registered_later_and_the_ecg_comes_raw() {
    use std::time::Duration;
    let node = serve();
    let a = &node.addr;
    people(a, &["p-1"], &["dr-1"], &[("p-1", "dr-1")]).await;
    let (p1, dr1) = (token(Role::Patient, "p-1"), token(Role::Clinician, "dr-1"));
    // No device yet: each subscription is set up and stays open.
    let mut v = subscribed(
        a,
        &dr1,
        "v",
        "subscription { vitals(patientId: \"p-1\") { deviceId samples { metric value } } }",
    )
    .await;
    let mut al = subscribed(
        a,
        &dr1,
        "a",
        "subscription { alerts { deviceId patientId change kind } }",
    )
    .await;
    let mut e = subscribed(
        a,
        &dr1,
        "e",
        "subscription { ecg(patientId: \"p-1\") { deviceId patientId start hz millivolts } }",
    )
    .await;
    crate::support::poll_until(
        "the three subscriptions set up",
        Duration::from_secs(10),
        Duration::from_millis(50),
        async || {
            let n = crate::limits::counter(a, "cardio_graphql_subscriptions", "field=\"").await;
            (n >= 3.0).then_some(())
        },
    )
    .await;
    let d = device_of(a, "p-1", "monitor").await;
    // Readings: pushed until the subscription (following the new device)
    // delivers them; a subscription that had completed never would.
    let mut at = now_ms() - 300_000.0;
    let vitals = loop {
        let s = json!([{"metric": "HEART_RATE", "at": iso(at), "value": 71.0}]);
        ok(a, &p1, PUSH, json!({"d": d, "s": s})).await;
        at += 1_000.0;
        if let Some(got) = crate::api::maybe_event(&mut v, "v", Duration::from_millis(500)).await {
            break got;
        }
        assert!(at < now_ms() - 200_000.0, "no vitals event");
    };
    assert_eq!(vitals["data"]["vitals"]["deviceId"], json!(d));
    assert_eq!(
        vitals["data"]["vitals"]["samples"][0]["metric"],
        "HEART_RATE"
    );
    // Alerts of the new device.
    crate::monitoring::until_bound(a, &p1, &d, &mut al, "a", &mut at).await;
    // The raw ECG, as stored.
    let ecg = cardio::synthetic::ecg::generate(
        &cardio::synthetic::ecg::EcgScenario::new(250, 3).sinus(70.0, 30.0),
    );
    let chunks = crate::monitoring::ecg_inputs(&ecg.samples, 250, at);
    let mut got = None;
    for chunk in chunks {
        let start = chunk["at"].clone();
        ok(a, &p1, PUSH, json!({"d": d, "s": [chunk.clone()]})).await;
        if let Some(x) = crate::api::maybe_event(&mut e, "e", Duration::from_millis(500)).await {
            got = Some((x, start, chunk));
            break;
        }
    }
    let (x, start, chunk) = got.expect("an ECG segment");
    let seg = &x["data"]["ecg"];
    assert_eq!(
        (seg["deviceId"].clone(), seg["patientId"].clone()),
        (json!(d), json!("p-1"))
    );
    assert_eq!(
        (seg["start"].clone(), seg["hz"].clone()),
        (start, json!(250))
    );
    let sent: Vec<f64> = chunk["millivolts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let came: Vec<f64> = seg["millivolts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(came.len(), 250);
    assert!(
        sent.iter().zip(&came).all(|(s, c)| (s - c).abs() < 1e-4),
        "the samples as pushed"
    );
    // Another patient's ECG is refused.
    people(a, &["p-2"], &[], &[]).await;
    let mut other = subscribed(
        a,
        &dr1,
        "x",
        "subscription { ecg(patientId: \"p-2\") { hz } }",
    )
    .await;
    let refused = crate::api::recv(&mut other).await;
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
}

/// Waits for subscription `id` to complete, returning the events before.
async fn until_complete(ws: &mut crate::api::Socket, id: &str) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let m = crate::api::recv(ws).await;
        if m["id"] != id {
            continue;
        }
        match m["type"].as_str() {
            Some("next") => events.push(m["payload"]["data"]["consultEvents"].clone()),
            Some("complete") => return events,
            _ => panic!("{m}"),
        }
    }
}

#[actix_rt::test]
async fn consult_events_complete_after_the_end_even_for_a_consult_already_over() {
    let node = serve();
    let a = &node.addr;
    people(a, &["p-1"], &["dr-1"], &[("p-1", "dr-1")]).await;
    let (p1, dr1) = (token(Role::Patient, "p-1"), token(Role::Clinician, "dr-1"));
    let id = ok(a, &p1, &request("p-1", "ends"), json!({})).await["requestConsult"]
        .as_str()
        .unwrap()
        .to_owned();
    let join = "mutation($c: ID!) { joinConsult(id: $c) }";
    ok(a, &p1, join, json!({"c": id})).await;
    ok(a, &dr1, join, json!({"c": id})).await;
    let q = format!("subscription {{ consultEvents(consultId: \"{id}\", afterMessage: 0) {{ seq kind at message {{ text }} }} }}");
    let mut ws = subscribed(a, &p1, "c", &q).await;
    // Bound once a line sent now comes live.
    let say = "mutation($c: ID!, $k: String!) { sendMessage(consultId: $c, clientMessageId: $k, text: \"hello\") }";
    let mut k = 0;
    loop {
        k += 1;
        ok(a, &dr1, say, json!({"c": id, "k": format!("k{k}")})).await;
        if crate::api::maybe_event(&mut ws, "c", std::time::Duration::from_millis(500))
            .await
            .is_some()
        {
            break;
        }
        assert!(k < 20, "never bound");
    }
    let end = "mutation($c: ID!) { endConsult(id: $c, notes: \"done\") }";
    ok(a, &dr1, end, json!({"c": id})).await;
    let events = until_complete(&mut ws, "c").await;
    let last = events.last().expect("the end");
    assert_eq!(last["kind"], "ENDED");
    assert!(ms_of(&last["at"]) > now_ms() - 60_000.0);
    // Subscribed to a consult already over: its end, then complete.
    let mut late = subscribed(
        a,
        &dr1,
        "late",
        &q.replace("afterMessage: 0", "afterMessage: 1000"),
    )
    .await;
    let events = until_complete(&mut late, "late").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["kind"], "ENDED");
    assert!(events[0]["seq"].as_i64().unwrap() > 0);
    // A cancelled one ends with CANCELLED.
    let c2 = ok(a, &p1, &request("p-1", "cancel me"), json!({})).await["requestConsult"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(
        a,
        &p1,
        "mutation($c: ID!) { cancelConsult(id: $c) }",
        json!({"c": c2}),
    )
    .await;
    let q2 = format!("subscription {{ consultEvents(consultId: \"{c2}\") {{ kind }} }}");
    let mut ws2 = subscribed(a, &p1, "c2", &q2).await;
    assert_eq!(
        until_complete(&mut ws2, "c2").await,
        vec![json!({"kind": "CANCELLED"})]
    );
}

#[actix_rt::test]
async fn refusals_say_why_with_a_reason_and_no_phi() {
    let node = serve();
    let a = &node.addr;
    people(
        a,
        &["p-1"],
        &["dr-1", "dr-2"],
        &[("p-1", "dr-1"), ("p-1", "dr-2")],
    )
    .await;
    let (p1, dr1, dr2) = (
        token(Role::Patient, "p-1"),
        token(Role::Clinician, "dr-1"),
        token(Role::Clinician, "dr-2"),
    );
    let reason_of = |v: &Value| {
        let e = &v["errors"][0];
        (
            e["extensions"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            e["extensions"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            e["message"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let id = ok(a, &p1, &request("p-1", "secret palpitations"), json!({})).await["requestConsult"]
        .as_str()
        .unwrap()
        .to_owned();
    let join = "mutation($c: ID!) { joinConsult(id: $c) }";
    // A clinician before the patient: the wrong state.
    let (code, reason, _) = reason_of(&crate::api::gql(a, &dr1, join, json!({"c": id})).await);
    assert_eq!(
        (code.as_str(), reason.as_str()),
        ("CONSULT_REFUSED", "WRONG_STATE")
    );
    ok(a, &p1, join, json!({"c": id})).await;
    ok(a, &dr1, join, json!({"c": id})).await;
    // Another clinician: taken.
    let (code, reason, _) = reason_of(&crate::api::gql(a, &dr2, join, json!({"c": id})).await);
    assert_eq!(
        (code.as_str(), reason.as_str()),
        ("CONSULT_REFUSED", "TAKEN_BY_ANOTHER_CLINICIAN")
    );
    // The patient cannot end it.
    let end = "mutation($c: ID!) { endConsult(id: $c, notes: \"n\") }";
    let (code, reason, message) = reason_of(&crate::api::gql(a, &p1, end, json!({"c": id})).await);
    assert_eq!(
        (code.as_str(), reason.as_str()),
        ("FORBIDDEN", "ONLY_CLINICIAN_MAY_END")
    );
    assert!(
        !message.contains("palpitations") && !message.contains(&id),
        "{message}"
    );
    ok(a, &dr1, end, json!({"c": id})).await;
    // Over.
    let say =
        "mutation($c: ID!) { sendMessage(consultId: $c, clientMessageId: \"late\", text: \"hi\") }";
    let (code, reason, message) = reason_of(&crate::api::gql(a, &p1, say, json!({"c": id})).await);
    assert_eq!(
        (code.as_str(), reason.as_str()),
        ("CONSULT_REFUSED", "CONSULT_OVER")
    );
    assert_eq!(message, "the consult is over");
    // Not allowed.
    let read = "query($c: ID!) { consult(id: $c) { status } }";
    let outsider = token(Role::Patient, "p-9");
    let (code, reason, _) = reason_of(&crate::api::gql(a, &outsider, read, json!({"c": id})).await);
    assert_eq!(
        (code.as_str(), reason.as_str()),
        ("FORBIDDEN", "NOT_ALLOWED")
    );

    // Tokens: expired, revoked, none; over HTTP and at connection_init.
    let exp = (now_ms() / 1000.0) as u64 - 120;
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "dr-1", "role": "clinician", "iat": exp - 60, "exp": exp, "iss": "cardio", "aud": "cardio"}),
        &jsonwebtoken::EncodingKey::from_secret(crate::api::SECRET.as_bytes()),
    )
    .unwrap();
    let me = "{\"query\": \"{ me { subject } }\"}";
    let (status, v) = crate::api::post_raw(a, Some(&expired), me).await;
    assert_eq!(status, 401);
    assert_eq!(reason_of(&v).0, "UNAUTHENTICATED");
    assert_eq!(reason_of(&v).1, "TOKEN_EXPIRED");
    ok(a, &dr2, "mutation { revokeToken }", json!({})).await;
    let (status, v) = crate::api::post_raw(a, Some(&dr2), me).await;
    assert_eq!((status, reason_of(&v).1.as_str()), (401, "TOKEN_REVOKED"));
    let v = crate::api::post_raw(a, None, me).await.1;
    assert_eq!(
        (reason_of(&v).0.as_str(), reason_of(&v).1.as_str()),
        ("UNAUTHENTICATED", "NO_TOKEN")
    );
    for (t, reason) in [(&expired, "TOKEN_EXPIRED"), (&dr2, "TOKEN_REVOKED")] {
        let closed = init_refused(a, t).await;
        assert!(closed.starts_with(&format!("{reason}: ")), "{closed}");
    }
}

/// The close reason of a WebSocket whose `connection_init` carries `token`.
async fn init_refused(a: &str, token: &str) -> String {
    use awc::ws;
    use futures_util::{SinkExt, StreamExt};
    let (_, mut ws) = awc::Client::new()
        .ws(format!("ws://{a}/graphql"))
        .protocols(["graphql-transport-ws"])
        .connect()
        .await
        .expect("a WebSocket");
    let init =
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}});
    ws.send(ws::Message::Text(init.to_string().into()))
        .await
        .unwrap();
    loop {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("an answer within 10 s");
        match frame {
            Some(Ok(ws::Frame::Close(Some(r)))) => return r.description.unwrap_or_default(),
            Some(Ok(ws::Frame::Ping(p))) => ws.send(ws::Message::Pong(p)).await.unwrap(),
            Some(Ok(ws::Frame::Text(t))) => panic!("{t:?}"),
            other => panic!("{other:?}"),
        }
    }
}

#[actix_rt::test]
async fn a_subscription_ends_with_token_expired_when_its_token_runs_out() {
    use cardio::auth::Authenticator;
    use cardio::principal::Principal;
    let node = serve();
    let a = &node.addr;
    people(a, &["p-1"], &["dr-1"], &[]).await;
    // A patient without a device, a clinician without a patient: each
    // subscription waits (it completed at once before), until the token
    // expires.
    for (subject, role) in [("p-1", Role::Patient), ("dr-1", Role::Clinician)] {
        let short = Authenticator::hs256(crate::api::SECRET.as_bytes())
            .mint(
                &Principal {
                    subject: subject.into(),
                    role,
                },
                std::time::Duration::from_secs(3),
            )
            .unwrap();
        let mut ws = subscribed(a, &short, "s", "subscription { alerts { kind } }").await;
        let m = crate::api::recv(&mut ws).await;
        assert_eq!(
            (m["id"].clone(), m["type"].clone()),
            (json!("s"), json!("next")),
            "{m}"
        );
        let e = &m["payload"]["errors"][0]["extensions"];
        assert_eq!(
            (e["code"].clone(), e["reason"].clone()),
            (json!("UNAUTHENTICATED"), json!("TOKEN_EXPIRED")),
            "{subject}: {m}"
        );
        assert_eq!(crate::api::recv(&mut ws).await["type"], "complete");
    }
}

#[actix_rt::test]
async fn one_vitals_subscription_carries_every_patient_of_a_clinician_and_no_other() {
    use std::time::Duration;
    let node = serve();
    let a = &node.addr;
    people(
        a,
        &["p-1", "p-2", "p-3"],
        &["dr-1"],
        &[("p-1", "dr-1"), ("p-2", "dr-1")],
    )
    .await;
    let dr1 = token(Role::Clinician, "dr-1");
    let mut devices = Vec::new();
    for p in ["p-1", "p-2", "p-3"] {
        devices.push((p, device_of(a, p, "monitor").await));
    }
    let mut v = subscribed(
        a,
        &dr1,
        "v",
        "subscription { vitals { deviceId patientId samples { value } } }",
    )
    .await;
    crate::support::poll_until(
        "the subscription set up",
        Duration::from_secs(10),
        Duration::from_millis(50),
        async || {
            let n = crate::limits::counter(a, "cardio_graphql_subscriptions", "field=\"").await;
            (n >= 1.0).then_some(())
        },
    )
    .await;
    // Each patient's device pushes its own heart rate; p-3 is not dr-1's.
    let at = now_ms() - 60_000.0;
    for (i, (p, d)) in devices.iter().enumerate() {
        let s = json!([{"metric": "HEART_RATE", "at": iso(at), "value": 60.0 + i as f64}]);
        ok(a, &token(Role::Patient, p), PUSH, json!({"d": d, "s": s})).await;
    }
    let mut seen = std::collections::BTreeMap::new();
    while let Some(x) = crate::api::maybe_event(&mut v, "v", Duration::from_secs(3)).await {
        let e = &x["data"]["vitals"];
        seen.insert(
            e["patientId"].as_str().unwrap().to_owned(),
            (e["deviceId"].clone(), e["samples"][0]["value"].clone()),
        );
    }
    assert_eq!(
        seen,
        [
            ("p-1".to_owned(), (json!(devices[0].1), json!(60.0))),
            ("p-2".to_owned(), (json!(devices[1].1), json!(61.0))),
        ]
        .into(),
        "both of dr-1's patients on one subscription, and not p-3"
    );
    // Ops have no patients: refused, not an empty stream.
    let mut ops = subscribed(
        a,
        &token(Role::Ops, "ops-1"),
        "o",
        "subscription { vitals { deviceId } }",
    )
    .await;
    let refused = crate::api::recv(&mut ops).await;
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
}
