//! The GraphQL API end to end: the real `cardio serve`, HTTP requests and a
//! real WebSocket client speaking graphql-transport-ws.

use std::process::Command;
use std::time::{Duration, Instant};

use awc::ws;
use cardio::auth::Authenticator;
use cardio::principal::{Principal, Role};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

use crate::support::iso;
use crate::support::node::TestNode;
use crate::support::poll::poll_until;

const BIN: &str = env!("CARGO_BIN_EXE_cardio");
pub(crate) const SECRET: &str = "api-test-secret-of-at-least-32-bytes!!";

/// A node for the API tests: the embedded defaults, a token key, dev mode,
/// a 5 s alert sustain, debug logs.
pub(crate) fn serve() -> TestNode {
    serve_with(&[])
}

/// [`serve`] with settings of its own on top.
pub(crate) fn serve_with(envs: &[(&str, &str)]) -> TestNode {
    TestNode::serve()
        .env("CARDIO_JWT_SECRET", SECRET)
        .env("CARDIO_DEV", "true")
        .env("CARDIO_ALERT_SUSTAIN", "5s")
        .env("CARDIO_LOG_FILTER", "info,cardio=debug")
        .envs(envs.iter().copied())
        .start()
}

/// A member of a small test cluster on one PostgreSQL `db` and one
/// RabbitMQ vhost `bus`: 8 shards, a 200 ms heartbeat and 1.5 s lease, the
/// tests' token key. Settings of its own go on top before `start()`.
pub(crate) fn cluster_member(id: &str, bus: &str, db: &str) -> crate::support::node::NodeSpec {
    TestNode::serve()
        .name(id)
        .ready_within(Duration::from_secs(60))
        .env("CARDIO_NODE_ID", id)
        .env("CARDIO_BUS_URL", bus)
        .env("CARDIO_DATABASE_URL", db)
        .env("CARDIO_LOG_FILTER", "warn,cardio=info")
        .env("CARDIO_SHARDS", "8")
        .env("CARDIO_HEARTBEAT", "200ms")
        .env("CARDIO_LEASE", "1500ms")
        .env("CARDIO_JWT_SECRET", SECRET)
}

pub(crate) fn token(role: Role, sub: &str) -> String {
    Authenticator::hs256(SECRET.as_bytes())
        .mint(
            &Principal {
                subject: sub.into(),
                role,
            },
            Duration::from_secs(600),
        )
        .unwrap()
}

/// POSTs `body` with `token`; the status and the JSON answer.
pub(crate) async fn post_raw(addr: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    // Longer than the node's request timeout: its answer, not ours, decides.
    let mut req = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
        .post(format!("http://{addr}/graphql"))
        .insert_header(("content-type", "application/json"));
    if let Some(t) = token {
        req = req.insert_header(("authorization", format!("Bearer {t}")));
    }
    let mut res = req.send_body(body.to_owned()).await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().limit(1 << 20).await.unwrap())
}

pub(crate) async fn gql(addr: &str, token: &str, query: &str, variables: Value) -> Value {
    let body = json!({"query": query, "variables": variables}).to_string();
    let (status, v) = post_raw(addr, Some(token), &body).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// The data of a successful answer.
pub(crate) async fn ok(addr: &str, token: &str, query: &str, variables: Value) -> Value {
    let v = gql(addr, token, query, variables).await;
    assert!(v.get("errors").is_none(), "{query}: {v}");
    v["data"].clone()
}

/// The whole audit trail (of `patient`, if given) with `fields` of each
/// entry, read page by page as the admin `token`.
pub(crate) async fn audit_all(
    addr: &str,
    token: &str,
    patient: Option<&str>,
    fields: &str,
) -> Vec<Value> {
    let q = format!(
        "query($p: ID, $a: String) {{ auditLog(patientId: $p, first: 200, after: $a) {{ nodes {{ {fields} }} pageInfo {{ hasNextPage endCursor }} }} }}"
    );
    let (mut out, mut after) = (Vec::new(), Value::Null);
    loop {
        let page = ok(addr, token, &q, json!({"p": patient, "a": after})).await;
        let page = &page["auditLog"];
        out.extend(page["nodes"].as_array().unwrap().iter().cloned());
        if page["pageInfo"]["hasNextPage"] != true {
            return out;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
}

/// The code of the (first) error of an answer.
pub(crate) async fn code(addr: &str, token: &str, query: &str, variables: Value) -> String {
    let v = gql(addr, token, query, variables).await;
    v["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{query}: no coded error: {v}"))
        .to_owned()
}

/// As admin: registers `patients` and `clinicians`, then puts each
/// clinician of `team` on its patient's care team.
pub(crate) async fn people(
    addr: &str,
    patients: &[&str],
    clinicians: &[&str],
    team: &[(&str, &str)],
) {
    let admin = token(Role::Admin, "admin-1");
    let each = patients
        .iter()
        .map(|id| ("registerPatient", id))
        .chain(clinicians.iter().map(|id| ("registerClinician", id)));
    for (m, id) in each {
        let q = format!("mutation($id: ID!) {{ {m}(id: $id) }}");
        ok(addr, &admin, &q, json!({"id": id})).await;
    }
    for (patient, clinician) in team {
        let q = "mutation($p: ID!, $c: ID!) { assignClinician(patientId: $p, clinicianId: $c) }";
        ok(addr, &admin, q, json!({"p": patient, "c": clinician})).await;
    }
}

/// A device of `patient` of `kind`, registered with the patient's token; its id.
pub(crate) async fn device_of(addr: &str, patient: &str, kind: &str) -> String {
    let q = "mutation($p: ID!, $k: String!) { registerDevice(patientId: $p, kind: $k) }";
    let v = ok(
        addr,
        &token(Role::Patient, patient),
        q,
        json!({"p": patient, "k": kind}),
    )
    .await;
    v["registerDevice"].as_str().unwrap().to_owned()
}

pub(crate) type Socket = actix_codec::Framed<awc::BoxedSocket, ws::Codec>;

/// A graphql-transport-ws connection, initialised with `token`.
pub(crate) async fn socket(addr: &str, token: &str) -> Socket {
    let (_, mut ws) = awc::Client::new()
        .ws(format!("ws://{addr}/graphql"))
        .protocols(["graphql-transport-ws"])
        .connect()
        .await
        .expect("a WebSocket");
    send(
        &mut ws,
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}}),
    )
    .await;
    let ack = recv(&mut ws).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    ws
}

pub(crate) async fn send(ws: &mut Socket, v: Value) {
    ws.send(ws::Message::Text(v.to_string().into()))
        .await
        .unwrap();
}

pub(crate) async fn recv(ws: &mut Socket) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, ws.next())
            .await
            .expect("a message within 10 s")
            .expect("open")
            .unwrap();
        match frame {
            ws::Frame::Text(b) => return serde_json::from_slice(&b).unwrap(),
            ws::Frame::Ping(p) => ws.send(ws::Message::Pong(p)).await.unwrap(),
            ws::Frame::Close(r) => panic!("closed: {r:?}"),
            _ => {}
        }
    }
}

/// The next `next` payload of subscription `id`.
pub(crate) async fn next_event(ws: &mut Socket, id: &str) -> Value {
    loop {
        let m = recv(ws).await;
        if m["type"] == "next" && m["id"] == id {
            return m["payload"].clone();
        }
        assert_ne!(m["type"], "error", "{m}");
    }
}

// `afterMessage: 0`: the chat so far first, then live events: nothing is
// missed however late the subscription binds.
const SUBSCRIBE: &str = "subscription($c: ID!) { consultEvents(consultId: $c, afterMessage: 0) { kind message { seq authorRole text } } }";

#[actix_rt::test]
async fn a_patient_and_a_clinician_hold_a_live_consult_and_others_are_kept_out() {
    let node = serve();
    let a = &node.addr;
    let (admin, patient, clinician) = (
        token(Role::Admin, "admin-1"),
        token(Role::Patient, "p-1"),
        token(Role::Clinician, "dr-1"),
    );
    let (stranger, other_patient, ops) = (
        token(Role::Clinician, "dr-2"),
        token(Role::Patient, "p-2"),
        token(Role::Ops, "ops-1"),
    );
    people(a, &["p-1", "p-2"], &["dr-1", "dr-2"], &[("p-1", "dr-1")]).await;
    assert_eq!(
        ok(a, &patient, "{ me { subject role } }", json!({})).await["me"],
        json!({"subject": "p-1", "role": "PATIENT"})
    );

    // The patient asks for a consult; both watch it live.
    let id = ok(
        a,
        &patient,
        "mutation { requestConsult(patientId: \"p-1\", reason: \"palpitations at night\", requestId: \"r1\") }",
        json!({}),
    )
    .await["requestConsult"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut p_ws = socket(a, &patient).await;
    let mut c_ws = socket(a, &clinician).await;
    for ws in [&mut p_ws, &mut c_ws] {
        send(ws, json!({"id": "s1", "type": "subscribe", "payload": {"query": SUBSCRIBE, "variables": {"c": id}}})).await;
    }
    let join = "mutation($c: ID!) { joinConsult(id: $c) }";
    ok(a, &patient, join, json!({"c": id})).await;
    ok(a, &clinician, join, json!({"c": id})).await;
    let send_msg = "mutation($c: ID!, $k: String!, $t: String!) { sendMessage(consultId: $c, clientMessageId: $k, text: $t) }";
    let seq = ok(
        a,
        &patient,
        send_msg,
        json!({"c": id, "k": "m1", "t": "my heart races"}),
    )
    .await;
    assert_eq!(seq["sendMessage"], 1);
    // A retry with the same client id is not a second message.
    let again = ok(
        a,
        &patient,
        send_msg,
        json!({"c": id, "k": "m1", "t": "my heart races"}),
    )
    .await;
    assert_eq!(again["sendMessage"], 1);
    assert_eq!(
        ok(
            a,
            &clinician,
            send_msg,
            json!({"c": id, "k": "c1", "t": "let us look at your ECG"})
        )
        .await["sendMessage"],
        2
    );
    for ws in [&mut p_ws, &mut c_ws] {
        let mut lines = Vec::new();
        while lines.len() < 2 {
            let e = next_event(ws, "s1").await;
            let e = &e["data"]["consultEvents"];
            if e["kind"] == "CHATTED" {
                lines.push((
                    e["message"]["seq"].as_i64().unwrap(),
                    e["message"]["authorRole"].clone(),
                ));
            }
        }
        assert_eq!(lines, vec![(1, json!("PATIENT")), (2, json!("CLINICIAN"))]);
    }
    let messages = ok(
        a,
        &clinician,
        "query($c: ID!) { consult(id: $c) { status patientId messages { nodes { seq text } } } }",
        json!({"c": id}),
    )
    .await;
    assert_eq!(messages["consult"]["status"], "IN_PROGRESS");
    assert_eq!(
        messages["consult"]["messages"]["nodes"][1]["text"],
        "let us look at your ECG"
    );
    ok(
        a,
        &clinician,
        "mutation($c: ID!) { endConsult(id: $c, notes: \"follow up\") }",
        json!({"c": id}),
    )
    .await;
    // Both sockets are bound by now (they had the lines): both see the end live.
    for ws in [&mut p_ws, &mut c_ws] {
        loop {
            let e = next_event(ws, "s1").await;
            if e["data"]["consultEvents"]["kind"] == "ENDED" {
                break;
            }
        }
    }

    // Everyone else is kept out, alike whether the record exists or not.
    let read = "query($c: ID!) { consult(id: $c) { status } }";
    for t in [&stranger, &other_patient, &ops, &admin] {
        assert_eq!(code(a, t, read, json!({"c": id})).await, "FORBIDDEN");
        assert_eq!(
            code(a, t, read, json!({"c": "no-such-consult"})).await,
            "FORBIDDEN"
        );
    }
    // A consult that is not there is audited as a refused attempt on
    // "consult" (whatever was asked of it), naming no patient.
    let all = audit_all(a, &admin, None, "subject outcome fields patientId").await;
    let unknown: Vec<&serde_json::Value> = all
        .iter()
        .filter(|e| e["subject"] == "dr-2" && e["patientId"].is_null())
        .collect();
    assert!(!unknown.is_empty(), "{all:?}");
    assert!(
        unknown
            .iter()
            .all(|e| e["outcome"] == "REFUSED" && e["fields"] == "consult"),
        "{unknown:?}"
    );
    assert_eq!(
        code(
            a,
            &stranger,
            "{ patient(id: \"p-1\") { careTeam } }",
            json!({})
        )
        .await,
        "FORBIDDEN"
    );
    assert_eq!(
        code(
            a,
            &patient,
            "mutation { registerPatient(id: \"p-9\") }",
            json!({})
        )
        .await,
        "FORBIDDEN"
    );
    assert_eq!(
        code(a, &patient, "{ cluster { node } }", json!({})).await,
        "FORBIDDEN"
    );
    assert!(ok(
        a,
        &ops,
        "{ cluster { node shards { id owner } } }",
        json!({})
    )
    .await["cluster"]["shards"]
        .as_array()
        .is_some_and(|s| s.len() == 64));

    // Every access to p-1's records is in the audit trail, denials included.
    let log = audit_all(a, &admin, Some("p-1"), "subject outcome action fields").await;
    let has = |sub: &str, outcome: &str| {
        log.iter()
            .any(|e| e["subject"] == sub && e["outcome"] == outcome.to_uppercase())
    };
    assert!(has("p-1", "allowed") && has("dr-1", "allowed"));
    assert!(has("dr-2", "refused") && has("p-2", "refused") && has("ops-1", "refused"));
    assert_eq!(
        code(a, &clinician, "{ auditLog { nodes { seq } } }", json!({})).await,
        "FORBIDDEN"
    );

    // No PHI in the logs of the whole scenario (debug level included).
    let log = node.log();
    assert!(log.contains("listening"), "the log was captured");
    for phi in [
        "palpitations at night",
        "my heart races",
        "let us look at your ECG",
        "follow up",
    ] {
        assert!(!log.contains(phi), "PHI {phi:?} in the logs");
    }
    drop(node);
}

#[actix_rt::test]
async fn bad_requests_get_coded_errors_and_the_server_keeps_serving() {
    let node = serve();
    let a = &node.addr;
    let admin = token(Role::Admin, "admin-1");
    // No token, a forged one, an expired one.
    let (s, v) = post_raw(a, None, "{\"query\": \"{ me { subject } }\"}").await;
    assert_eq!(
        (s, v["errors"][0]["extensions"]["code"].clone()),
        (200, json!("UNAUTHENTICATED"))
    );
    let forged = Authenticator::hs256(b"some other key that is long enough!!!")
        .mint(
            &Principal {
                subject: "admin-1".into(),
                role: Role::Admin,
            },
            Duration::from_secs(60),
        )
        .unwrap();
    let (s, v) = post_raw(a, Some(&forged), "{\"query\": \"{ me { subject } }\"}").await;
    assert_eq!(
        (s, v["errors"][0]["extensions"]["code"].clone()),
        (401, json!("UNAUTHENTICATED"))
    );
    // Expired (well past the 5 s leeway), signed with the right key.
    let exp = (now_ms() / 1000.0) as u64 - 120;
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "admin-1", "role": "admin", "iat": exp - 60, "exp": exp, "iss": "cardio", "aud": "cardio"}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let (s, v) = post_raw(a, Some(&expired), "{\"query\": \"{ me { subject } }\"}").await;
    assert_eq!(
        (s, v["errors"][0]["extensions"]["code"].clone()),
        (401, json!("UNAUTHENTICATED"))
    );
    assert!(v.to_string().contains("expired"), "{v}");
    // Malformed JSON, unknown fields, wrong types, deep nesting, big batches.
    let (s, v) = post_raw(a, Some(&admin), "{\"query\": ").await;
    assert_eq!(
        (s, v["errors"][0]["extensions"]["code"].clone()),
        (400, json!("BAD_REQUEST"))
    );
    assert_eq!(
        code(a, &admin, "{ me { nope } }", json!({})).await,
        "BAD_REQUEST"
    );
    assert_eq!(
        code(
            a,
            &admin,
            "query($id: ID!) { patient(id: $id) { id } }",
            json!({"id": {"x": 1}})
        )
        .await,
        "BAD_REQUEST"
    );
    let deep = format!("{{ {} }}", "me { ".repeat(40) + &"}".repeat(40));
    assert_eq!(code(a, &admin, &deep, json!({})).await, "BAD_REQUEST");
    let batch = json!((0..11)
        .map(|_| json!({"query": "{ me { subject } }"}))
        .collect::<Vec<_>>());
    let (s, v) = post_raw(a, Some(&admin), &batch.to_string()).await;
    assert_eq!(
        (s, v["errors"][0]["extensions"]["code"].clone()),
        (400, json!("BATCH_TOO_LARGE"))
    );
    let big = format!("{{\"query\": \"{}\"}}", " ".repeat(2 * 1024 * 1024));
    let res = awc::Client::new()
        .post(format!("http://{a}/graphql"))
        .insert_header(("content-type", "application/json"))
        .send_body(big)
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 413, "oversized bodies are refused");
    // An invalid id is refused with a reason that does not echo it.
    let v = gql(
        a,
        &admin,
        "mutation { registerPatient(id: \"Jane Doe\") }",
        json!({}),
    )
    .await;
    assert_eq!(v["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    assert!(!v.to_string().contains("Jane"), "{v}");
    // Still serving.
    assert_eq!(
        ok(a, &admin, "{ me { role } }", json!({})).await["me"]["role"],
        "ADMIN"
    );
    drop(node);
}

/// A push text the node has validated before (its verdict kept, issue 15)
/// still has each request's samples checked: an unknown, missing or
/// ill-typed field is refused as the full validation refuses it, and
/// nothing of the refused pushes is stored.
#[actix_rt::test]
async fn a_push_validated_before_still_refuses_bad_sample_fields() {
    let node = serve();
    let a = &node.addr;
    let (patient, clinician) = (token(Role::Patient, "p-1"), token(Role::Clinician, "dr-1"));
    people(a, &["p-1"], &["dr-1"], &[("p-1", "dr-1")]).await;
    let device = device_of(a, "p-1", "watch").await;
    let t0 = now_ms() - 600_000.0;
    let push = |at: f64| json!({"d": device, "s": [hr(at, 72.0)]});
    // Kept, then its verdict kept, then served from it.
    for i in 0..3 {
        let r = ok(a, &patient, PUSH, push(t0 + f64::from(i) * 1_000.0)).await;
        assert_eq!(r["pushSamples"]["accepted"], 1, "{r}");
    }
    let at = iso(t0 + 10_000.0);
    let bad = [
        json!({"metric": "HEART_RATE", "at": at, "value": 80.0, "bpm": 80}),
        json!({"metric": "HEART_RATE", "value": 80.0}),
        json!({"metric": "PULSE", "at": at, "value": 80.0}),
        json!({"metric": "HEART_RATE", "at": at, "value": "eighty"}),
        json!({"metric": "HEART_RATE", "at": at, "hz": 2.5}),
        Value::Null,
    ];
    for sample in &bad {
        let v = gql(
            a,
            &patient,
            PUSH,
            json!({"d": device, "s": [hr(t0 + 9_000.0, 72.0), sample]}),
        )
        .await;
        assert_eq!(
            v["errors"][0]["extensions"]["code"], "BAD_REQUEST",
            "{sample}: {v}"
        );
        assert!(v["data"].is_null(), "{sample}: nothing ran: {v}");
    }
    let r = ok(a, &patient, PUSH, push(t0 + 3_000.0)).await;
    assert_eq!(r["pushSamples"]["accepted"], 1, "{r}");
    assert_eq!(heart_rates_stored(a, &clinician, t0).await, 4);
    drop(node);
}

/// How many heart rates of p-1 are stored from a minute before `t0` to now,
/// as `token` reads them.
async fn heart_rates_stored(a: &str, token: &str, t0: f64) -> i64 {
    let points = ok(
        a,
        token,
        "query($f: DateTime!, $t: DateTime!) { vitals(patientId: \"p-1\", metric: HEART_RATE, from: $f, to: $t) { count } }",
        json!({"f": iso(t0 - 60_000.0), "t": iso(now_ms())}),
    )
    .await;
    points["vitals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["count"].as_i64().unwrap())
        .sum()
}

pub(crate) fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64
}

pub(crate) const PUSH: &str = "mutation($d: ID!, $s: [SampleInput!]!) { pushSamples(deviceId: $d, samples: $s) { accepted duplicate rejections { index reason message } } }";

pub(crate) fn hr(at: f64, bpm: f64) -> Value {
    json!({"metric": "HEART_RATE", "at": iso(at), "value": bpm})
}

/// The next payload of subscription `id`, if one comes within `wait`.
pub(crate) async fn maybe_event(ws: &mut Socket, id: &str, wait: Duration) -> Option<Value> {
    tokio::time::timeout(wait, next_event(ws, id)).await.ok()
}

/// What [`until_alert`] did: pushes made, and sustained episodes among them.
pub(crate) struct Pushed {
    pub pushes: u32,
    pub episodes: u32,
}

/// Pushes sustained tachycardia episodes of `device` (calm readings between
/// them) from device time `at` on, until subscription `id` on `ws` (an
/// `alerts` subscription selecting `change`) reports one raised: that event.
pub(crate) async fn until_alert(
    a: &str,
    patient: &str,
    device: &str,
    ws: &mut Socket,
    id: &str,
    at: &mut f64,
) -> (Value, Pushed) {
    let mut done = Pushed {
        pushes: 0,
        episodes: 0,
    };
    loop {
        let episode: Vec<Value> = (0..8)
            .map(|i| hr(*at + f64::from(i) * 1_000.0, 150.0))
            .collect();
        *at += 8_000.0;
        ok(a, patient, PUSH, json!({"d": device, "s": episode})).await;
        done.pushes += 1;
        done.episodes += 1;
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            match maybe_event(ws, id, Duration::from_millis(200)).await {
                Some(e) if e["data"]["alerts"]["change"] == "RAISED" => return (e, done),
                _ => {}
            }
        }
        // Not bound yet: end the episode (calm for longer than the alarm's
        // 30 s resolve window) and try again.
        let calm: Vec<Value> = (0..32)
            .map(|i| hr(*at + f64::from(i) * 1_000.0, 70.0))
            .collect();
        *at += 32_000.0;
        ok(a, patient, PUSH, json!({"d": device, "s": calm})).await;
        done.pushes += 1;
        assert!(*at < now_ms(), "no alert event");
    }
}

#[actix_rt::test]
async fn a_device_pushes_samples_and_its_clinician_watches_vitals_and_alerts_live() {
    let node = serve();
    let a = &node.addr;
    let (patient, clinician, stranger) = (
        token(Role::Patient, "p-1"),
        token(Role::Clinician, "dr-1"),
        token(Role::Clinician, "dr-2"),
    );
    people(a, &["p-1"], &["dr-1", "dr-2"], &[("p-1", "dr-1")]).await;
    let device = device_of(a, "p-1", "watch").await;

    // Invalid samples are rejected one by one, with reasons; the rest is stored.
    let t0 = now_ms() - 600_000.0;
    let batch = json!([
        hr(t0, 72.0),
        hr(t0 + 1_000.0, 900.0),
        {"metric": "HEART_RATE", "at": iso(t0 + 2_000.0)},
        hr(now_ms() + 3_600_000.0, 70.0),
        {"metric": "BLOOD_PRESSURE", "at": iso(t0 + 3_000.0), "systolic": 80.0, "diastolic": 90.0},
        hr(t0 + 4_000.0, 74.0),
    ]);
    let r = ok(a, &patient, PUSH, json!({"d": device, "s": batch})).await["pushSamples"].clone();
    assert_eq!(r["accepted"], 2, "{r}");
    let reasons: Vec<(i64, String)> = r["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["index"].as_i64().unwrap(),
                x["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            (1, "OUT_OF_RANGE".to_owned()),
            (2, "INCOMPLETE".to_owned()),
            (3, "IN_FUTURE".to_owned()),
            (4, "SYSTOLIC_NOT_ABOVE_DIASTOLIC".to_owned()),
        ]
    );
    // Devices are registered by the patient or an admin, not a clinician.
    assert_eq!(
        code(
            a,
            &clinician,
            "mutation { registerDevice(patientId: \"p-1\", kind: \"x\") }",
            json!({})
        )
        .await,
        "FORBIDDEN"
    );
    // Only the device's patient pushes.
    assert_eq!(
        code(
            a,
            &clinician,
            PUSH,
            json!({"d": device, "s": [hr(t0 + 5_000.0, 70.0)]})
        )
        .await,
        "FORBIDDEN"
    );

    // The clinician watches the patient's vitals and their care team's alerts.
    let mut ws = socket(a, &clinician).await;
    send(&mut ws, json!({"id": "v", "type": "subscribe", "payload": {"query": "subscription { vitals(patientId: \"p-1\") { deviceId patientId samples { metric value } } }"}})).await;
    send(&mut ws, json!({"id": "a", "type": "subscribe", "payload": {"query": "subscription { alerts { deviceId patientId change kind priority } }"}})).await;
    // Readings arrive live (pushed until the subscription has bound).
    let mut at = t0 + 10_000.0;
    let vitals = poll_until(
        "a vitals event",
        Duration::from_secs(60),
        Duration::ZERO,
        async || {
            ok(a, &patient, PUSH, json!({"d": device, "s": [hr(at, 75.0)]})).await;
            at += 1_000.0;
            maybe_event(&mut ws, "v", Duration::from_millis(500)).await
        },
    )
    .await;
    let v = &vitals["data"]["vitals"];
    assert_eq!(
        (v["deviceId"].as_str(), v["patientId"].as_str()),
        (Some(device.as_str()), Some("p-1"))
    );
    assert_eq!(v["samples"][0]["metric"], "HEART_RATE");
    // A sustained tachycardia (CARDIO_ALERT_SUSTAIN=5s of device time) raises one alert.
    let (alert, _) = until_alert(a, &patient, &device, &mut ws, "a", &mut at).await;
    let e = &alert["data"]["alerts"];
    assert_eq!(
        (e["kind"].as_str(), e["patientId"].as_str()),
        (Some("TACHYCARDIA"), Some("p-1"))
    );
    // Tachycardia beyond its threshold is a medium alarm (IEC 60601-1-8:
    // prompt response); extreme rates are the high ones.
    assert_eq!(e["priority"], "MEDIUM");

    // The alert is queryable and acknowledged by a clinician of the care team only.
    let open = ok(
        a,
        &clinician,
        "{ alerts(patientId: \"p-1\", status: ALL) { nodes { id kind acknowledgedBy } } }",
        json!({}),
    )
    .await;
    let id = open["alerts"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["kind"] == "TACHYCARDIA")
        .expect("the alert")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ack = "mutation($id: ID!) { acknowledgeAlert(id: $id) }";
    assert_eq!(
        code(a, &stranger, ack, json!({"id": id})).await,
        "FORBIDDEN"
    );
    assert_eq!(
        code(a, &stranger, ack, json!({"id": "no-such-alert"})).await,
        "FORBIDDEN"
    );
    ok(a, &clinician, ack, json!({"id": id})).await;
    let after = ok(
        a,
        &clinician,
        "{ alerts(patientId: \"p-1\", status: ALL) { nodes { id acknowledgedBy } } }",
        json!({}),
    )
    .await;
    assert!(after["alerts"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["id"] == id.as_str() && x["acknowledgedBy"] == "dr-1"));
    // Aggregates of what was stored.
    let points = ok(
        a,
        &clinician,
        "query($f: DateTime!, $t: DateTime!) { vitals(patientId: \"p-1\", metric: HEART_RATE, from: $f, to: $t) { count max } }",
        json!({"f": iso(t0 - 60_000.0), "t": iso(now_ms())}),
    )
    .await;
    let points = points["vitals"].as_array().unwrap();
    assert!(points.iter().any(|p| p["max"] == 150.0), "{points:?}");
    assert_eq!(
        code(
            a,
            &stranger,
            "{ alerts(patientId: \"p-1\") { nodes { id } } }",
            json!({})
        )
        .await,
        "FORBIDDEN"
    );
    drop(node);
}

#[actix_rt::test]
async fn debug_views_need_an_ops_token_and_probes_stay_open() {
    let node = serve();
    let a = &node.addr;
    let get = |path: &'static str, token: Option<String>| {
        let url = format!("http://{a}{path}");
        async move {
            let mut req = awc::Client::new().get(url);
            if let Some(t) = token {
                req = req.insert_header(("authorization", format!("Bearer {t}")));
            }
            req.send().await.unwrap().status().as_u16()
        }
    };
    for path in ["/debug/tree", "/debug/cluster"] {
        assert_eq!(get(path, None).await, 401, "{path}");
        assert_eq!(
            get(path, Some(token(Role::Patient, "p-1"))).await,
            403,
            "{path}"
        );
        assert_eq!(
            get(path, Some(token(Role::Clinician, "dr-1"))).await,
            403,
            "{path}"
        );
        assert_eq!(
            get(path, Some(token(Role::Ops, "ops-1"))).await,
            200,
            "{path}"
        );
        assert_eq!(
            get(path, Some(token(Role::Admin, "admin-1"))).await,
            200,
            "{path}"
        );
    }
    assert_eq!(get("/healthz", None).await, 200);
    assert_eq!(get("/readyz", None).await, 200);
    // `cardio tree` sends CARDIO_TOKEN.
    let url = format!("http://{a}");
    let tree = |token: Option<String>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["tree", "--url", &url]).env_clear();
        if let Some(t) = token {
            cmd.env("CARDIO_TOKEN", t);
        }
        cmd.output().unwrap()
    };
    assert!(!tree(None).status.success());
    let out = tree(Some(token(Role::Ops, "ops-1")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("cardio"));
    drop(node);
}

#[actix_rt::test]
async fn ops_see_the_trees_watch_supervision_events_and_restart_an_actor() {
    let node = serve();
    let a = &node.addr;
    let (admin, patient, ops) = (
        token(Role::Admin, "admin-1"),
        token(Role::Patient, "p-1"),
        token(Role::Ops, "ops-1"),
    );
    ok(
        a,
        &admin,
        "mutation { registerPatient(id: \"p-1\") }",
        json!({}),
    )
    .await;
    let id = ok(
        a,
        &patient,
        "mutation { requestConsult(patientId: \"p-1\", reason: \"check\", requestId: \"r1\") }",
        json!({}),
    )
    .await["requestConsult"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/cardio/entities/consult/{id}");
    let tree = ok(
        a,
        &ops,
        "{ supervisionTree { path parent kind status restarts } }",
        json!({}),
    )
    .await;
    let nodes = tree["supervisionTree"].as_array().unwrap();
    let actor = nodes
        .iter()
        .find(|n| n["path"] == path.as_str())
        .expect("the consult in the tree");
    assert_eq!(actor["parent"], "/cardio/entities/consult");
    assert_eq!(actor["kind"], "consult");
    assert!(nodes
        .iter()
        .any(|n| n["path"] == "/cardio" && n["parent"].is_null()));
    // The tree is the machinery, not PHI: patients do not get it.
    assert_eq!(
        code(a, &patient, "{ supervisionTree { path } }", json!({})).await,
        "FORBIDDEN"
    );

    let mut ws = socket(a, &ops).await;
    send(&mut ws, json!({"id": "e", "type": "subscribe", "payload": {"query": "subscription { supervisionEvents { node path event reason } }"}})).await;
    // Restart until the subscription (bound asynchronously) sees it.
    let restart = "mutation($p: String!) { restartActor(path: $p) }";
    let event = poll_until(
        "a supervision event for the restart",
        Duration::from_secs(30),
        Duration::ZERO,
        async || {
            assert_eq!(
                ok(a, &ops, restart, json!({"p": path})).await["restartActor"],
                true
            );
            // Wake the actor again so that there is something to restart.
            ok(
                a,
                &patient,
                "query($c: ID!) { consult(id: $c) { status } }",
                json!({"c": id}),
            )
            .await;
            while let Some(e) = maybe_event(&mut ws, "e", Duration::from_millis(500)).await {
                let e = e["data"]["supervisionEvents"].clone();
                if e["path"] == path.as_str() && e["event"] == "STOPPED" {
                    return Some(e);
                }
            }
            None
        },
    )
    .await;
    assert_eq!(event["node"], "cardio-1");
    // It came back from its journal.
    let back = ok(
        a,
        &patient,
        "query($c: ID!) { consult(id: $c) { status patientId } }",
        json!({"c": id}),
    )
    .await;
    assert_eq!(back["consult"]["status"], "REQUESTED");
    assert_eq!(
        code(a, &ops, restart, json!({"p": "/cardio/entities"})).await,
        "BAD_USER_INPUT"
    );
    assert_eq!(
        code(a, &patient, restart, json!({"p": path})).await,
        "FORBIDDEN"
    );
    // The restart is logged by kind at info level, without the actor's id.
    let log = node.log();
    let info = info_and_above(&log);
    assert!(
        info.iter()
            .any(|l| l.contains("actor restarted on request")),
        "{info:#?}"
    );
    assert!(!info.iter().any(|l| l.contains(id.as_str())), "{info:#?}");
    drop(node);
}

/// The lines of a node's JSON log at info level or above (test nodes also
/// log debug lines, which may name ids).
fn info_and_above(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| !l.contains(r#""level":"DEBUG""#) && !l.contains(r#""level":"TRACE""#))
        .collect()
}

#[actix_rt::test]
async fn each_principal_has_its_own_request_budget() {
    let node = serve_with(&[("CARDIO_RATE_LIMIT", "5")]);
    let a = &node.addr;
    let (greedy, other) = (token(Role::Ops, "ops-1"), token(Role::Ops, "ops-2"));
    let me = "{\"query\": \"{ me { subject } }\"}";
    let mut limited = 0;
    for _ in 0..30 {
        let (status, v) = post_raw(a, Some(&greedy), me).await;
        if status == 429 {
            assert_eq!(v["errors"][0]["extensions"]["code"], "RATE_LIMITED");
            limited += 1;
        }
    }
    assert!(
        limited >= 10,
        "only {limited} of 30 quick requests were limited"
    );
    let (status, v) = post_raw(a, Some(&other), me).await;
    assert_eq!(status, 200, "another principal is not limited: {v}");
    drop(node);
}

#[actix_rt::test]
async fn connections_close_with_their_token_and_introspection_is_off_outside_dev() {
    let node = serve_with(&[("CARDIO_DEV", "false")]);
    let a = &node.addr;
    let short = Authenticator::hs256(SECRET.as_bytes())
        .mint(
            &Principal {
                subject: "ops-1".into(),
                role: Role::Ops,
            },
            Duration::from_secs(2),
        )
        .unwrap();
    let mut ws = socket(a, &short).await;
    send(&mut ws, json!({"id": "e", "type": "subscribe", "payload": {"query": "subscription { supervisionEvents { path } }"}})).await;
    // The subscription completes, then the socket closes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut completed = false;
    loop {
        assert!(
            Instant::now() < deadline,
            "the connection outlived its token"
        );
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(ws::Frame::Text(b)))) => {
                let m: Value = serde_json::from_slice(&b).unwrap();
                if m["type"] == "complete" && m["id"] == "e" {
                    completed = true;
                }
            }
            Ok(Some(Ok(ws::Frame::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(_))) => {}
            Err(_) => panic!("the connection outlived its token"),
        }
    }
    assert!(completed, "the subscription was completed before the close");
    let v = gql(
        a,
        &token(Role::Admin, "admin-1"),
        "{ __schema { types { name } } }",
        json!({}),
    )
    .await;
    // No schema is given away (async-graphql answers null).
    assert!(v["data"]["__schema"].is_null(), "{v}");
    assert!(!v.to_string().contains("pushSamples"), "{v}");
    // The page of GraphiQL is not there either.
    let res = awc::Client::new()
        .get(format!("http://{a}/graphiql"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);
    drop(node);
}

/// A consult p-1 (token `p1`) requested and joined.
async fn p1_joined_consult(a: &str, p1: &str) -> String {
    let consult = ok(
        a,
        p1,
        "mutation { requestConsult(patientId: \"p-1\", reason: \"r\", requestId: \"r1\") }",
        json!({}),
    )
    .await["requestConsult"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(
        a,
        p1,
        "mutation($c: ID!) { joinConsult(id: $c) }",
        json!({"c": consult}),
    )
    .await;
    consult
}

/// `sub`'s `write` entries on `fields` of p-1's records, as the admin reads them.
async fn writes_of(a: &str, admin: &str, sub: &str, fields: &str) -> Vec<Value> {
    audit_all(a, admin, Some("p-1"), "subject action fields outcome")
        .await
        .into_iter()
        .filter(|e| e["subject"] == sub && e["action"] == "write" && e["fields"] == fields)
        .collect()
}

/// Issue 15: a write's access is audited in the transaction of its effect
/// (the entry travels with the command to the actor), and still exactly
/// once per request whatever becomes of the command: a chat line and its
/// retry, a line the consult refuses, a push and its retry, a push the
/// stream rejects sample by sample, and a push with no valid sample at all.
#[actix_rt::test]
async fn each_write_is_audited_exactly_once_whatever_its_actor_answers() {
    let node = serve();
    let a = &node.addr;
    let admin = token(Role::Admin, "admin-1");
    people(a, &["p-1"], &["dr-1"], &[("p-1", "dr-1")]).await;
    let (p1, dr1) = (token(Role::Patient, "p-1"), token(Role::Clinician, "dr-1"));
    let device = device_of(a, "p-1", "cuff").await;
    let consult = p1_joined_consult(a, &p1).await;
    let chat = "mutation($c: ID!, $k: String!) { sendMessage(consultId: $c, clientMessageId: $k, text: \"hello\") }";
    let first = ok(a, &p1, chat, json!({"c": consult, "k": "k-1"})).await;
    assert_eq!(writes_of(a, &admin, "p-1", "chat").await.len(), 1);
    // The retry is answered the first line's sequence, and audited too.
    assert_eq!(
        ok(a, &p1, chat, json!({"c": consult, "k": "k-1"})).await,
        first
    );
    let entries = writes_of(a, &admin, "p-1", "chat").await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(
        entries.iter().all(|e| e["outcome"] == "ALLOWED"),
        "{entries:?}"
    );
    // dr-1 may write to p-1's consults but has not joined this one: the
    // consult refuses the line, and the access is audited all the same.
    let v = gql(a, &dr1, chat, json!({"c": consult, "k": "k-2"})).await;
    assert_eq!(
        v["errors"][0]["extensions"]["code"], "CONSULT_REFUSED",
        "{v}"
    );
    assert_eq!(writes_of(a, &admin, "dr-1", "chat").await.len(), 1);

    let push = "mutation($d: ID!, $s: [SampleInput!]!, $r: String) { pushSamples(deviceId: $d, samples: $s, requestId: $r) { accepted duplicate rejections { reason } } }";
    let t0 = now_ms() - 60_000.0;
    let r = ok(
        a,
        &p1,
        push,
        json!({"d": device, "s": [hr(t0, 72.0)], "r": "q-1"}),
    )
    .await;
    assert_eq!(r["pushSamples"]["accepted"], 1, "{r}");
    assert_eq!(writes_of(a, &admin, "p-1", "vitals").await.len(), 1);
    let r = ok(
        a,
        &p1,
        push,
        json!({"d": device, "s": [hr(t0, 72.0)], "r": "q-1"}),
    )
    .await;
    assert_eq!(r["pushSamples"]["duplicate"], true, "{r}");
    assert_eq!(writes_of(a, &admin, "p-1", "vitals").await.len(), 2);
    // Rejected by the stream (no journal entry takes the access's entry).
    let r = ok(
        a,
        &p1,
        push,
        json!({"d": device, "s": [hr(t0 + 1_000.0, 900.0)], "r": "q-2"}),
    )
    .await;
    assert_eq!(
        r["pushSamples"]["rejections"][0]["reason"], "OUT_OF_RANGE",
        "{r}"
    );
    assert_eq!(writes_of(a, &admin, "p-1", "vitals").await.len(), 3);
    // Rejected by the API before any actor.
    let r = ok(
        a,
        &p1,
        push,
        json!({"d": device, "s": [{"metric": "HEART_RATE", "at": iso(t0 + 2_000.0)}], "r": "q-3"}),
    )
    .await;
    assert_eq!(
        r["pushSamples"]["rejections"][0]["reason"], "INCOMPLETE",
        "{r}"
    );
    assert_eq!(writes_of(a, &admin, "p-1", "vitals").await.len(), 4);
}

/// Issue 15, item 4: a device's pushes in flight together at one node go
/// to its stream together (those that queued while the previous one was
/// stored), and still each is stored once, answered on its own, audited
/// once, and idempotent by its own request id.
#[actix_rt::test]
async fn a_devices_pushes_in_flight_together_are_coalesced_and_each_stored_once() {
    // As many as one principal may have in flight by default.
    const AT_ONCE: usize = 16;
    let node = serve();
    let a = &node.addr;
    let admin = token(Role::Admin, "admin-1");
    people(a, &["p-1"], &["dr-1"], &[("p-1", "dr-1")]).await;
    let (p1, dr1) = (token(Role::Patient, "p-1"), token(Role::Clinician, "dr-1"));
    let device = device_of(a, "p-1", "gateway").await;
    let t0 = now_ms() - 600_000.0;
    let rounds = pushed_until_coalesced(a, &p1, &device, t0, AT_ONCE).await;
    // Retries of the first round, again all at once: each a duplicate.
    for r in pushes_at_once(a, &p1, &device, t0, 0, AT_ONCE).await {
        assert_eq!(
            r,
            json!({"accepted": 0, "duplicate": true, "rejections": []})
        );
    }
    // Every sample stored once, and every request audited once.
    assert_eq!(
        heart_rates_stored(a, &dr1, t0).await,
        (rounds * AT_ONCE) as i64
    );
    assert_eq!(
        writes_of(a, &admin, "p-1", "vitals").await.len(),
        (rounds + 1) * AT_ONCE
    );
    drop(node);
}

/// Round `round` of `at_once` pushes of one sample each, all in flight at
/// once, 50 ms apart from `t0 + round · 10 s` (within the stream's reorder
/// tolerance: they may reach it in any order); their answers.
pub(crate) async fn pushes_at_once(
    a: &str,
    patient: &str,
    device: &str,
    t0: f64,
    round: usize,
    at_once: usize,
) -> Vec<Value> {
    let push = "mutation($d: ID!, $s: [SampleInput!]!, $r: String) { pushSamples(deviceId: $d, samples: $s, requestId: $r) { accepted duplicate rejections { reason } } }";
    futures_util::future::join_all((0..at_once).map(|k| {
        let at = t0 + (round * 10_000 + k * 50) as f64;
        let v = json!({"d": device, "s": [hr(at, 60.0 + k as f64)], "r": format!("g-{round}-{k}")});
        async move { ok(a, patient, push, v).await["pushSamples"].clone() }
    }))
    .await
}

/// Rounds of [`pushes_at_once`] at node `a` until the node counts pushes it
/// coalesced (a round's first push is stored alone; those that arrive
/// meanwhile wait for it and go together), each push stored; how many.
pub(crate) async fn pushed_until_coalesced(
    a: &str,
    patient: &str,
    device: &str,
    t0: f64,
    at_once: usize,
) -> usize {
    let mut rounds = 0;
    loop {
        let answers = pushes_at_once(a, patient, device, t0, rounds, at_once).await;
        rounds += 1;
        for r in &answers {
            assert_eq!(
                r,
                &json!({"accepted": 1, "duplicate": false, "rejections": []})
            );
        }
        let coalesced = crate::ops::scrape(a)
            .await
            .sum("cardio_pushes_coalesced_total", &[]);
        if coalesced > 0.0 {
            return rounds;
        }
        assert!(
            rounds < 10,
            "no push of {rounds} rounds of {at_once} went together"
        );
    }
}

/// Who may do what: each role × each operation × own or someone else's
/// patient gives either an answer (or a domain refusal) or `FORBIDDEN`, and
/// each attempt on PHI leaves an audit entry with its outcome.
#[actix_rt::test]
async fn the_authorization_matrix_holds_and_every_phi_attempt_is_audited() {
    let node = serve();
    let a = &node.addr;
    let admin = token(Role::Admin, "admin-1");
    people(
        a,
        &["p-1", "p-2"],
        &["dr-1", "dr-2"],
        &[("p-1", "dr-1"), ("p-2", "dr-2")],
    )
    .await;
    let p1 = token(Role::Patient, "p-1");
    let device = device_of(a, "p-1", "cuff").await;
    let consult = p1_joined_consult(a, &p1).await;
    // An alert to acknowledge: a hypertensive crisis is raised at once.
    let t0 = now_ms() - 60_000.0;
    let crisis =
        json!([{"metric": "BLOOD_PRESSURE", "at": iso(t0), "systolic": 200.0, "diastolic": 125.0}]);
    ok(a, &p1, PUSH, json!({"d": device, "s": crisis})).await;
    let alert = ok(
        a,
        &p1,
        "{ alerts(patientId: \"p-1\", status: ALL) { nodes { id } } }",
        json!({}),
    )
    .await["alerts"]["nodes"][0]["id"]
        .as_str()
        .expect("the crisis alert")
        .to_owned();

    let principals = [
        ("p-1", Role::Patient),
        ("p-2", Role::Patient),
        ("dr-1", Role::Clinician),
        ("dr-2", Role::Clinician),
        ("ops-1", Role::Ops),
        ("admin-1", Role::Admin),
    ];
    let vars = json!({"c": consult, "d": device, "al": alert, "f": iso(t0 - 3_600_000.0), "t": iso(now_ms())});
    // (operation, query, who may: the subjects that are not refused, PHI?)
    let operations: [(&str, &str, &[&str], bool); 18] = [
        ("patient", "query { patient(id: \"p-1\") { id } }", &["p-1", "dr-1"], true),
        ("consult", "query($c: ID!) { consult(id: $c) { status } }", &["p-1", "dr-1"], true),
        ("vitals", "query($f: DateTime!, $t: DateTime!) { vitals(patientId: \"p-1\", metric: HEART_RATE, from: $f, to: $t) { count } }", &["p-1", "dr-1"], true),
        ("alerts", "query { alerts(patientId: \"p-1\") { nodes { id } } }", &["p-1", "dr-1"], true),
        ("requestConsult", "mutation { requestConsult(patientId: \"p-1\", reason: \"x\", requestId: \"rx\") }", &["p-1", "dr-1"], true),
        ("sendMessage", "mutation($c: ID!) { sendMessage(consultId: $c, clientMessageId: \"k\", text: \"hi\") }", &["p-1", "dr-1"], true),
        ("pushSamples", "mutation($d: ID!, $t: DateTime!) { pushSamples(deviceId: $d, samples: [{metric: SPO2, at: $t, value: 97}]) { accepted } }", &["p-1"], true),
        ("acknowledgeAlert", "mutation($al: ID!) { acknowledgeAlert(id: $al) }", &["dr-1"], true),
        ("beats", "query { beats(patientId: \"p-1\", from: \"1970-01-01T00:00:00Z\", to: \"1970-01-01T00:01:00Z\") { at } }", &["p-1", "dr-1"], true),
        ("ecgStrip", "query($al: ID!) { ecgStrip(alertId: $al) { from } }", &["p-1", "dr-1"], true),
        ("alarmSettings", "query { alarmSettings(patientId: \"p-1\") { custom } }", &["p-1", "dr-1"], true),
        ("setAlarmThresholds", "mutation { setAlarmThresholds(patientId: \"p-1\", thresholds: {tachycardiaBpm: 125}) { custom } }", &["dr-1"], true),
        ("pauseAlarms", "mutation { pauseAlarms(patientId: \"p-1\", minutes: 1) { pausedUntil } }", &["dr-1"], true),
        ("resumeAlarms", "mutation { resumeAlarms(patientId: \"p-1\") { pausedUntil } }", &["dr-1"], true),
        ("cluster", "query { cluster { node } }", &["ops-1", "admin-1"], false),
        ("supervisionTree", "query { supervisionTree { path } }", &["ops-1", "admin-1"], false),
        ("auditLog", "query { auditLog(first: 1) { nodes { seq } } }", &["admin-1"], false),
        ("registerPatient", "mutation { registerPatient(id: \"p-9\") }", &["admin-1"], false),
    ];
    let mut expected_denials: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut expected_allowed: std::collections::BTreeMap<&str, usize> = Default::default();
    for (op, query, allowed, phi) in operations {
        for (sub, role) in principals {
            let v = gql(a, &token(role, sub), query, vars.clone()).await;
            let code = v["errors"][0]["extensions"]["code"].as_str().unwrap_or("");
            let may = allowed.contains(&sub);
            assert_eq!(
                code != "FORBIDDEN",
                may,
                "{sub} ({role:?}) {op}: expected {}, got {v}",
                if may { "an answer" } else { "FORBIDDEN" }
            );
            if phi {
                *if may {
                    &mut expected_allowed
                } else {
                    &mut expected_denials
                }
                .entry(sub)
                .or_default() += 1;
            }
        }
    }
    // Each PHI attempt left its entry, allowed or denied.
    let log = audit_all(a, &admin, None, "subject outcome").await;
    let count = |sub: &str, outcome: &str| {
        log.iter()
            .filter(|e| e["subject"] == sub && e["outcome"] == outcome.to_uppercase())
            .count()
    };
    for (sub, n) in &expected_denials {
        assert!(
            count(sub, "refused") >= *n,
            "{sub}: {} refused entries, {n} refusals",
            count(sub, "refused")
        );
    }
    for (sub, n) in &expected_allowed {
        assert!(
            count(sub, "allowed") >= *n,
            "{sub}: {} allowed entries, {n} accesses",
            count(sub, "allowed")
        );
    }
    drop(node);
}

/// An RS256 token as an identity provider would issue it: signed with its
/// private key, naming the key by `kid`.
fn idp_token(kid: Option<&str>, sub: &str, role: &str) -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let pem = std::fs::read(format!("{dir}/tests/fixtures/test-only-rs256.key")).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    let exp = (now_ms() / 1000.0) as u64 + 600;
    let claims = json!({"sub": sub, "role": role, "iat": exp - 600, "exp": exp, "iss": "cardio", "aud": "cardio"});
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap()
}

#[actix_rt::test]
async fn a_node_can_trust_an_identity_providers_keys_from_a_jwks_file() {
    let jwks = format!(
        "{}/tests/fixtures/test-only-jwks.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let node = serve_with(&[("CARDIO_JWT_JWKS", &jwks)]);
    let a = &node.addr;
    let me = "{\"query\": \"{ me { subject role } }\"}";
    let good = idp_token(Some("test-only-1"), "dr-5", "clinician");
    let (status, v) = post_raw(a, Some(&good), me).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["data"]["me"],
        json!({"subject": "dr-5", "role": "CLINICIAN"})
    );
    // Another kid, no kid, or the node's HS256 secret: refused.
    for bad in [
        idp_token(Some("someone-else"), "dr-5", "clinician"),
        idp_token(None, "dr-5", "clinician"),
        token(Role::Clinician, "dr-5"),
    ] {
        let (status, v) = post_raw(a, Some(&bad), me).await;
        assert_eq!(status, 401, "{v}");
        assert_eq!(v["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    }
    drop(node);
}

/// Whether the socket closes within `wait` (frames before the close are skipped).
async fn closes_within(ws: &mut Socket, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(ws::Frame::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return true,
            Ok(Some(Ok(ws::Frame::Ping(p)))) => {
                let _ = ws.send(ws::Message::Pong(p)).await;
            }
            Ok(Some(Ok(_))) => {}
            Err(_) => return false,
        }
    }
}

#[actix_rt::test]
async fn a_patients_connection_closes_when_their_session_logs_off() {
    let node = serve_with(&[("CARDIO_SESSION_LOGOFF", "2s")]);
    let a = &node.addr;
    let patient = token(Role::Patient, "p-1");
    let clinician = token(Role::Clinician, "dr-1");
    let mut p_ws = socket(a, &patient).await;
    let mut c_ws = socket(a, &clinician).await;
    // Ops see that a session runs, not whose.
    let ops = token(Role::Ops, "ops-1");
    let tree = ok(a, &ops, "{ supervisionTree { path id } }", json!({}))
        .await
        .to_string();
    assert!(tree.contains("/cardio/entities/session/#"), "{tree}");
    assert!(
        !tree.contains("p-1"),
        "a patient id in the ops view: {tree}"
    );
    let raw = awc::Client::new()
        .get(format!("http://{a}/debug/tree"))
        .insert_header(("authorization", format!("Bearer {ops}")))
        .send()
        .await
        .unwrap()
        .body()
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains("p-1"));
    // While the patient is active (requests keep the session alive), it stays open.
    let active_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < active_until {
        ok(a, &patient, "{ me { subject } }", json!({})).await;
        assert!(
            !closes_within(&mut p_ws, Duration::from_millis(400)).await,
            "closed while the patient was active"
        );
    }
    // Quiet for longer than the logoff: the session logs the app off and
    // the connection closes. The clinician's connection (no session) stays.
    assert!(
        closes_within(&mut p_ws, Duration::from_secs(8)).await,
        "the connection outlived the session"
    );
    assert!(!closes_within(&mut c_ws, Duration::from_millis(300)).await);
    // The logoff is logged without the patient's id at info level (the
    // test node also logs debug lines, which may name it).
    let log = node.log();
    assert!(log.contains("automatic logoff after inactivity"), "{log}");
    let info = info_and_above(&log);
    assert!(
        !info.iter().any(|l| l.contains("p-1")),
        "a patient id at info level or above: {info:#?}"
    );
    drop(node);
}

#[actix_rt::test]
async fn a_principal_holds_a_bounded_number_of_subscriptions() {
    let node = serve();
    let a = &node.addr;
    let ops = token(Role::Ops, "ops-1");
    let mut ws = socket(a, &ops).await;
    let q = "subscription { supervisionEvents { path } }";
    let (max, asked) = (cardio::api::graphql::MAX_SUBSCRIPTIONS, 80);
    assert!(asked > max);
    for i in 0..asked {
        send(
            &mut ws,
            json!({"id": format!("s{i}"), "type": "subscribe", "payload": {"query": q}}),
        )
        .await;
    }
    // Beyond MAX_SUBSCRIPTIONS live subscriptions each one is refused with a code.
    let mut refused = std::collections::BTreeSet::new();
    while let Ok(m) = tokio::time::timeout(Duration::from_secs(3), recv(&mut ws)).await {
        if m["type"] == "next" {
            assert_eq!(
                m["payload"]["errors"][0]["extensions"]["code"], "RATE_LIMITED",
                "{m}"
            );
            refused.insert(m["id"].as_str().unwrap().to_owned());
        }
    }
    assert!(
        refused.len() >= asked - max,
        "only {} of {asked} refused",
        refused.len()
    );
    drop(node);
}
