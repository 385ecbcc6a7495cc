//! The access lifecycle end to end (issue 13, items 3–5), against the real
//! `cardio serve` with a real WebSocket client (graphql-transport-ws):
//! care-team removal, token revocation, deactivation, inactivity logoff,
//! break-glass, the audit rows of refusals and acts, and OIDC.
//!
//! "Within a second" is measured with a deadline of 1 s plus a 0.5 s margin
//! for scheduling on a loaded two-core test host (five builders share it):
//! [`WITHIN`].

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use awc::ws;
use cardio::principal::Role;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

use crate::api::{device_of, ok, people, post_raw, recv, send, serve_with, socket, token, Socket};
use crate::support::node::TestNode;
use crate::support::poll::poll_until;

/// The requirement (1 s) plus the stated scheduling margin (0.5 s).
const WITHIN: Duration = Duration::from_millis(1500);

const PATIENT_Q: &str = "query($p: ID!) { patient(id: $p) { id } }";

/// The code of the first error of a request with `token` (HTTP 401s too).
async fn code_of(addr: &str, token: &str, query: &str, variables: Value) -> Option<String> {
    let body = json!({"query": query, "variables": variables}).to_string();
    let (_, v) = post_raw(addr, Some(token), &body).await;
    v["errors"][0]["extensions"]["code"]
        .as_str()
        .map(str::to_owned)
}

/// Waits until subscription `id` completes (or the socket closes), at most
/// `wait`; whether it did.
async fn ends_within(ws: &mut Socket, id: &str, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => return false,
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(ws::Frame::Close(_)))) => return true,
            Ok(Some(Ok(ws::Frame::Text(b)))) => {
                let m: Value = serde_json::from_slice(&b).unwrap();
                if m["id"] == id && (m["type"] == "complete" || m["type"] == "error") {
                    return true;
                }
            }
            Ok(Some(Ok(ws::Frame::Ping(p)))) => {
                let _ = ws.send(ws::Message::Pong(p)).await;
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Whether the socket closes within `wait`.
async fn closes_within(ws: &mut Socket, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => return false,
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(ws::Frame::Close(_)))) => return true,
            Ok(Some(Ok(ws::Frame::Ping(p)))) => {
                let _ = ws.send(ws::Message::Pong(p)).await;
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Subscribes `ws` to `patient`'s alerts as subscription `id`, and waits
/// until the server has it (a ping-pong after the subscribe).
async fn watch_alerts(ws: &mut Socket, id: &str, patient: &str) {
    let q = "subscription($p: ID) { alerts(patientId: $p) { kind } }";
    send(
        ws,
        json!({"id": id, "type": "subscribe", "payload": {"query": q, "variables": {"p": patient}}}),
    )
    .await;
    send(ws, json!({"type": "ping"})).await;
    loop {
        let m = recv(ws).await;
        assert_ne!(m["type"], "error", "{m}");
        assert_ne!(m["type"], "complete", "{m}");
        if m["type"] == "pong" {
            return;
        }
    }
}

/// The audit trail as the admin reads it.
async fn audit(addr: &str) -> Vec<Value> {
    let admin = token(Role::Admin, "admin-1");
    crate::api::audit_all(
        addr,
        &admin,
        None,
        "subject role action patientId fields outcome",
    )
    .await
}

fn has_row(rows: &[Value], subject: &str, action: &str, outcome: &str) -> bool {
    rows.iter().any(|r| {
        r["subject"] == subject && r["action"] == action && r["outcome"] == outcome.to_uppercase()
    })
}

#[actix_rt::test]
async fn a_clinician_taken_off_the_care_team_loses_its_subscriptions_and_access_within_a_second() {
    let node = serve_with(&[]);
    let a = &node.addr;
    people(a, &["p-1"], &["dr-1"], &[("p-1", "dr-1")]).await;
    device_of(a, "p-1", "ecg").await;
    let dr = token(Role::Clinician, "dr-1");
    let mut ws = socket(a, &dr).await;
    watch_alerts(&mut ws, "a1", "p-1").await;
    ok(a, &dr, PATIENT_Q, json!({"p": "p-1"})).await;

    let admin = token(Role::Admin, "admin-1");
    let q = "mutation { removeClinician(patientId: \"p-1\", clinicianId: \"dr-1\") }";
    assert_eq!(ok(a, &admin, q, json!({})).await["removeClinician"], true);
    let removed = Instant::now();
    assert!(
        ends_within(&mut ws, "a1", WITHIN).await,
        "the subscription outlived the removal by {WITHIN:?}"
    );
    assert_eq!(
        code_of(a, &dr, PATIENT_Q, json!({"p": "p-1"}))
            .await
            .as_deref(),
        Some("FORBIDDEN")
    );
    assert!(removed.elapsed() < WITHIN + Duration::from_secs(1));
    // Subscribing again is authorized again: refused.
    let q = "subscription { alerts(patientId: \"p-1\") { kind } }";
    send(
        &mut ws,
        json!({"id": "a2", "type": "subscribe", "payload": {"query": q}}),
    )
    .await;
    let m = loop {
        let m = recv(&mut ws).await;
        if m["id"] == "a2" {
            break m;
        }
    };
    let code = m["payload"]["errors"][0]["extensions"]["code"].clone();
    let code = if code.is_null() {
        m["payload"][0]["extensions"]["code"].clone()
    } else {
        code
    };
    assert_eq!(code, "FORBIDDEN", "{m}");
    // The removal is audited, and removing twice says it was not there.
    let rows = audit(a).await;
    assert!(
        has_row(&rows, "admin-1", "remove clinician", "allowed"),
        "{rows:#?}"
    );
    let q = "mutation { removeClinician(patientId: \"p-1\", clinicianId: \"dr-1\") }";
    assert_eq!(ok(a, &admin, q, json!({})).await["removeClinician"], false);
    drop(node);
}

#[actix_rt::test]
async fn a_revoked_token_and_ended_sessions_close_sockets_and_are_refused_within_a_second() {
    let node = serve_with(&[]);
    let a = &node.addr;
    people(a, &["p-1"], &["dr-1"], &[("p-1", "dr-1")]).await;
    device_of(a, "p-1", "ecg").await;
    let (first, second) = (
        token(Role::Clinician, "dr-1"),
        token(Role::Clinician, "dr-1"),
    );
    let mut ws1 = socket(a, &first).await;
    watch_alerts(&mut ws1, "a1", "p-1").await;
    let mut ws2 = socket(a, &second).await;
    watch_alerts(&mut ws2, "a1", "p-1").await;

    // The clinician logs out its first token (revokeToken without arguments).
    assert_eq!(
        ok(a, &first, "mutation { revokeToken }", json!({})).await["revokeToken"],
        true
    );
    assert!(
        closes_within(&mut ws1, WITHIN).await,
        "the revoked token's socket stayed open"
    );
    assert_eq!(
        code_of(a, &first, "{ me { subject } }", json!({}))
            .await
            .as_deref(),
        Some("UNAUTHENTICATED")
    );
    // Only that token: the second one still works, its socket stays.
    ok(a, &second, "{ me { subject } }", json!({})).await;
    assert!(!closes_within(&mut ws2, Duration::from_millis(300)).await);

    // Another clinician may not revoke dr-1's sessions; an admin may.
    let other = token(Role::Clinician, "dr-9");
    let q = "mutation { revokeSessions(subject: \"dr-1\") }";
    assert_eq!(
        code_of(a, &other, q, json!({})).await.as_deref(),
        Some("FORBIDDEN")
    );
    let admin = token(Role::Admin, "admin-1");
    ok(a, &admin, q, json!({})).await;
    assert!(
        closes_within(&mut ws2, WITHIN).await,
        "an ended session's socket stayed open"
    );
    assert_eq!(
        code_of(a, &second, "{ me { subject } }", json!({}))
            .await
            .as_deref(),
        Some("UNAUTHENTICATED")
    );
    // A new sign-in (a token issued after the end) works.
    poll_until(
        "a fresh token to work",
        Duration::from_secs(5),
        Duration::from_millis(200),
        async || {
            code_of(
                a,
                &token(Role::Clinician, "dr-1"),
                "{ me { subject } }",
                json!({}),
            )
            .await
            .is_none()
        },
    )
    .await;
    let rows = audit(a).await;
    assert!(
        has_row(&rows, "dr-1", "revoke token", "allowed"),
        "{rows:#?}"
    );
    assert!(
        has_row(&rows, "dr-9", "revoke sessions", "refused"),
        "{rows:#?}"
    );
    assert!(
        has_row(&rows, "admin-1", "revoke sessions", "allowed"),
        "{rows:#?}"
    );
    drop(node);
}

#[actix_rt::test]
async fn a_deactivated_account_is_refused_until_reactivated_and_signed_in_again() {
    let node = serve_with(&[]);
    let a = &node.addr;
    let dr = token(Role::Clinician, "dr-1");
    let mut ws = socket(a, &dr).await;
    let admin = token(Role::Admin, "admin-1");
    ok(
        a,
        &admin,
        "mutation { deactivateAccount(subject: \"dr-1\") }",
        json!({}),
    )
    .await;
    assert!(
        closes_within(&mut ws, WITHIN).await,
        "a deactivated account's socket stayed open"
    );
    assert_eq!(
        code_of(a, &dr, "{ me { subject } }", json!({}))
            .await
            .as_deref(),
        Some("UNAUTHENTICATED")
    );
    // Even a fresh token, while deactivated.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        code_of(
            a,
            &token(Role::Clinician, "dr-1"),
            "{ me { subject } }",
            json!({})
        )
        .await
        .as_deref(),
        Some("UNAUTHENTICATED")
    );
    ok(
        a,
        &admin,
        "mutation { reactivateAccount(subject: \"dr-1\") }",
        json!({}),
    )
    .await;
    // The old token stays dead; a new sign-in works.
    assert_eq!(
        code_of(a, &dr, "{ me { subject } }", json!({}))
            .await
            .as_deref(),
        Some("UNAUTHENTICATED")
    );
    ok(
        a,
        &token(Role::Clinician, "dr-1"),
        "{ me { subject } }",
        json!({}),
    )
    .await;
    let rows = audit(a).await;
    assert!(
        has_row(&rows, "admin-1", "deactivate account", "allowed"),
        "{rows:#?}"
    );
    assert!(
        has_row(&rows, "admin-1", "reactivate account", "allowed"),
        "{rows:#?}"
    );
    drop(node);
}

/// Without the bus: a node sees a change of access within a second however
/// it was made, here by an operator's SQL, which no node announces.
#[actix_rt::test]
async fn a_deactivation_written_by_hand_is_refused_within_a_second_without_the_bus() {
    let node = serve_with(&[]);
    let a = &node.addr;
    let dr = token(Role::Clinician, "dr-1");
    let other = token(Role::Clinician, "dr-2");
    // Both in use: the node holds their access state.
    ok(a, &dr, "{ me { subject } }", json!({})).await;
    ok(a, &other, "{ me { subject } }", json!({})).await;
    let db =
        cardio::store::Store::connect(&format!("sqlite://{}/cardio.db", node.data_dir().display()))
            .await
            .unwrap();
    ok(a, &dr, "{ me { subject } }", json!({})).await;
    db.execute_admin("UPDATE accounts SET disabled = 1 WHERE subject = 'dr-1'")
        .await
        .unwrap();
    let changed = Instant::now();
    poll_until(
        "the token of the account deactivated by hand to be refused",
        WITHIN,
        Duration::from_millis(20),
        async || {
            (code_of(a, &dr, "{ me { subject } }", json!({}))
                .await
                .as_deref()
                == Some("UNAUTHENTICATED"))
            .then_some(())
        },
    )
    .await;
    eprintln!("refused {:?} after the change", changed.elapsed());
    // The others are still admitted.
    ok(a, &other, "{ me { subject } }", json!({})).await;
    db.close().await;
    drop(node);
}

#[actix_rt::test]
async fn an_idle_clinician_is_logged_off_and_its_token_stops_working_even_after_a_restart() {
    let node = serve_with(&[("CARDIO_LOGOFF_CLINICIAN", "1s")]);
    let a = &node.addr;
    let dr = token(Role::Clinician, "dr-1");
    let ops = token(Role::Ops, "ops-1");
    let mut ws = socket(a, &dr).await;
    let mut ops_ws = socket(a, &ops).await;
    // Active (a request every 300 ms) for 2 s: still in.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        ok(a, &dr, "{ me { subject } }", json!({})).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Idle: the socket closes (1 s logoff + a 250 ms check), and the same
    // token is refused from then on.
    assert!(
        closes_within(
            &mut ws,
            Duration::from_secs(1) + Duration::from_millis(250) + WITHIN
        )
        .await,
        "the idle clinician's socket stayed open"
    );
    assert_eq!(
        code_of(a, &dr, "{ me { subject } }", json!({}))
            .await
            .as_deref(),
        Some("UNAUTHENTICATED")
    );
    // Over HTTP alone too: dr-2's first request after its idle time is
    // refused, and so is every later one.
    let dr2 = token(Role::Clinician, "dr-2");
    ok(a, &dr2, "{ me { subject } }", json!({})).await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    for _ in 0..2 {
        assert_eq!(
            code_of(a, &dr2, "{ me { subject } }", json!({}))
                .await
                .as_deref(),
            Some("UNAUTHENTICATED")
        );
    }
    // Other roles keep their own (default 15 min) logoff.
    assert!(!closes_within(&mut ops_ws, Duration::from_millis(300)).await);
    let rows = audit(a).await;
    assert!(has_row(&rows, "dr-1", "logoff", "allowed"), "{rows:#?}");
    // The logoff is in the database: a new process on a copy of the same
    // database (taken after a clean stop) refuses the token too.
    node.signal("-TERM");
    node.wait();
    let kept = tempfile::tempdir().unwrap();
    for f in ["cardio.db", "cardio.db-wal", "cardio.db-shm"] {
        let from = node.data_dir().join(f);
        if from.exists() {
            std::fs::copy(&from, kept.path().join(f)).unwrap();
        }
    }
    drop(node);
    let db = kept.path().join("cardio.db");
    let again = TestNode::serve()
        .env("CARDIO_DATABASE_URL", format!("sqlite://{}", db.display()))
        .env("CARDIO_JWT_SECRET", crate::api::SECRET)
        .start();
    assert_eq!(
        code_of(&again.addr, &dr, "{ me { subject } }", json!({}))
            .await
            .as_deref(),
        Some("UNAUTHENTICATED")
    );
    drop(again);
}

#[actix_rt::test]
async fn a_break_glass_read_is_allowed_audited_announced_to_admins_and_expires() {
    let node = serve_with(&[("CARDIO_BREAK_GLASS_DURATION", "3s")]);
    let a = &node.addr;
    people(a, &["p-1"], &["dr-1", "dr-2"], &[("p-1", "dr-1")]).await;
    device_of(a, "p-1", "ecg").await;
    let admin = token(Role::Admin, "admin-1");
    let mut admin_ws = socket(a, &admin).await;
    let q = "subscription { breakGlassEvents { id clinicianId patientId expiresAt } }";
    send(
        &mut admin_ws,
        json!({"id": "bg", "type": "subscribe", "payload": {"query": q}}),
    )
    .await;
    send(&mut admin_ws, json!({"type": "ping"})).await;
    while recv(&mut admin_ws).await["type"] != "pong" {}

    let dr2 = token(Role::Clinician, "dr-2");
    assert_eq!(
        code_of(a, &dr2, PATIENT_Q, json!({"p": "p-1"}))
            .await
            .as_deref(),
        Some("FORBIDDEN")
    );
    let reason = "MARKER-REASON-7f3 unconscious in ER, no team reachable";
    let q = "mutation($p: ID!, $r: String!) { breakGlass(patientId: $p, reason: $r) { id patientId expiresAt } }";
    let grant = ok(a, &dr2, q, json!({"p": "p-1", "r": reason})).await;
    assert_eq!(grant["breakGlass"]["patientId"], "p-1");
    // Every admin hears of it.
    let m = crate::api::next_event(&mut admin_ws, "bg").await;
    assert_eq!(m["data"]["breakGlassEvents"]["clinicianId"], "dr-2", "{m}");
    assert_eq!(m["data"]["breakGlassEvents"]["patientId"], "p-1", "{m}");
    // The read is allowed and audited as break-glass, a subscription too.
    ok(a, &dr2, PATIENT_Q, json!({"p": "p-1"})).await;
    let mut dr2_ws = socket(a, &dr2).await;
    watch_alerts(&mut dr2_ws, "a1", "p-1").await;
    let rows = audit(a).await;
    assert!(
        has_row(&rows, "dr-2", "break_glass", "allowed"),
        "{rows:#?}"
    );
    assert!(
        has_row(&rows, "dr-2", "break_glass:read", "allowed"),
        "{rows:#?}"
    );
    // A patient or an admin may not break the glass.
    for who in [token(Role::Patient, "p-1"), admin.clone()] {
        let c = code_of(a, &who, q, json!({"p": "p-1", "r": "x"})).await;
        assert_eq!(c.as_deref(), Some("FORBIDDEN"));
    }
    // It ends by itself.
    poll_until(
        "the grant to end",
        Duration::from_secs(8),
        Duration::from_millis(200),
        async || {
            code_of(a, &dr2, PATIENT_Q, json!({"p": "p-1"}))
                .await
                .as_deref()
                == Some("FORBIDDEN")
        },
    )
    .await;
    // The reason is stored for review but in no log line and no audit row.
    assert!(
        !node.log().contains("MARKER-REASON"),
        "the reason was logged"
    );
    assert!(!format!("{:?}", audit(a).await).contains("MARKER-REASON"));
    drop(node);
}

#[actix_rt::test]
async fn refusals_ops_acts_audit_reads_and_authentication_failures_leave_audit_rows() {
    let node = serve_with(&[("CARDIO_AUDIT_AUTH_FAILURES_EVERY", "1s")]);
    let a = &node.addr;
    people(a, &["p-1"], &["dr-1"], &[]).await;
    let admin = token(Role::Admin, "admin-1");
    // A patient calling an admin mutation: refused, audited.
    let assign = "mutation($p: ID!, $c: ID!) { assignClinician(patientId: $p, clinicianId: $c) }";
    let c = code_of(
        a,
        &token(Role::Patient, "p-1"),
        assign,
        json!({"p": "p-1", "c": "dr-1"}),
    )
    .await;
    assert_eq!(c.as_deref(), Some("FORBIDDEN"));
    // An admin may not put itself on a care team (separation of duties).
    ok(
        a,
        &admin,
        "mutation { registerClinician(id: \"admin-1\") }",
        json!({}),
    )
    .await;
    let c = code_of(a, &admin, assign, json!({"p": "p-1", "c": "admin-1"})).await;
    assert_eq!(c.as_deref(), Some("FORBIDDEN"));
    // Nor a subject known as an admin or ops.
    let ops = token(Role::Ops, "ops-1");
    ok(a, &ops, "{ cluster { node } }", json!({})).await;
    ok(
        a,
        &admin,
        "mutation { registerClinician(id: \"ops-1\") }",
        json!({}),
    )
    .await;
    let c = code_of(a, &admin, assign, json!({"p": "p-1", "c": "ops-1"})).await;
    assert_eq!(c.as_deref(), Some("FORBIDDEN"));
    // An allowed act that fails: allowed, then failed.
    let c = code_of(a, &admin, assign, json!({"p": "p-1", "c": "dr-404"})).await;
    assert_eq!(c.as_deref(), Some("NOT_FOUND"));
    // An ops act.
    let restart = "mutation { restartActor(path: \"/cardio/entities/session/p-1\") }";
    ok(a, &ops, restart, json!({})).await;
    // A clinician trying an ops view.
    let c = code_of(
        a,
        &token(Role::Clinician, "dr-1"),
        "{ cluster { node } }",
        json!({}),
    )
    .await;
    assert_eq!(c.as_deref(), Some("FORBIDDEN"));
    // Authentication failures: bad signatures and a ten-year token.
    let forged = cardio::auth::Authenticator::hs256(b"another key, as long as the first one!!")
        .mint(
            &cardio::principal::Principal {
                subject: "dr-1".into(),
                role: Role::Clinician,
            },
            Duration::from_secs(60),
        )
        .unwrap();
    for _ in 0..5 {
        let (status, _) = post_raw(a, Some(&forged), "{\"query\": \"{ me { subject } }\"}").await;
        assert_eq!(status, 401);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exp = now + 10 * 365 * 24 * 3600;
    let long = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "dr-1", "role": "clinician", "iat": exp - 60, "exp": exp, "iss": "cardio", "aud": "cardio"}),
        &jsonwebtoken::EncodingKey::from_secret(crate::api::SECRET.as_bytes()),
    )
    .unwrap();
    let (status, v) = post_raw(a, Some(&long), "{\"query\": \"{ me { subject } }\"}").await;
    assert_eq!(status, 401, "a ten-year token passed: {v}");

    let rows = poll_until(
        "the failure summaries",
        Duration::from_secs(10),
        Duration::from_millis(300),
        async || {
            let rows = audit(a).await;
            let counted: u64 = rows
                .iter()
                .filter(|r| r["action"] == "authenticate" && r["outcome"] == "REFUSED")
                .filter_map(|r| {
                    let f = r["fields"].as_str()?;
                    f.contains("reason=bad_signature")
                        .then(|| f.rsplit("count=").next()?.parse::<u64>().ok())?
                })
                .sum();
            (counted == 5).then_some(rows)
        },
    )
    .await;
    assert!(
        has_row(&rows, "p-1", "assign clinician", "refused"),
        "{rows:#?}"
    );
    let self_assign = rows.iter().filter(|r| {
        r["subject"] == "admin-1" && r["action"] == "assign clinician" && r["outcome"] == "REFUSED"
    });
    assert_eq!(self_assign.count(), 2, "{rows:#?}");
    assert!(
        has_row(&rows, "admin-1", "assign clinician", "failed"),
        "{rows:#?}"
    );
    assert!(
        has_row(&rows, "ops-1", "restart actor", "allowed"),
        "{rows:#?}"
    );
    assert!(
        has_row(&rows, "dr-1", "read cluster", "refused"),
        "{rows:#?}"
    );
    assert!(
        has_row(&rows, "admin-1", "read audit log", "allowed"),
        "{rows:#?}"
    );
    assert!(
        rows.iter().any(|r| r["action"] == "authenticate"
            && r["fields"]
                .as_str()
                .is_some_and(|f| f.contains("reason=malformed"))),
        "{rows:#?}"
    );
    // No token text, and the restarted session's patient is masked.
    let text = format!("{rows:?}");
    assert!(!text.contains("eyJ"), "a token in the audit trail");
    let restart_row = rows
        .iter()
        .find(|r| r["action"] == "restart actor")
        .unwrap();
    assert!(
        !restart_row["fields"].as_str().unwrap().contains("p-1"),
        "{restart_row}"
    );
    drop(node);
}

/// A one-route HTTP server on 127.0.0.1 answering every request with the
/// current `body` (the identity provider's JWKS endpoint); its URL.
fn serve_jwks(body: std::sync::Arc<std::sync::Mutex<String>>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.read(&mut buf);
            let body = body.lock().unwrap().clone();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(body.as_bytes());
        }
    });
    format!("http://{addr}/.well-known/jwks.json")
}

/// A token as the identity provider signs it (RS256, kid `test-only-1`).
fn idp(claims: Value) -> String {
    idp_with("test-only-1", claims)
}

/// A token signed by the identity provider's key named `kid`.
fn idp_with(kid: &str, claims: Value) -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let pem = std::fs::read(format!("{dir}/tests/fixtures/test-only-rs256.key")).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap()
}

#[actix_rt::test]
async fn an_identity_providers_tokens_are_checked_for_issuer_audience_role_mfa_and_key_rotation() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let jwks =
        std::fs::read_to_string(format!("{dir}/tests/fixtures/test-only-jwks.json")).unwrap();
    let body = std::sync::Arc::new(std::sync::Mutex::new(jwks.clone()));
    let url = serve_jwks(std::sync::Arc::clone(&body));
    let node = serve_with(&[
        ("CARDIO_OIDC_JWKS_URL", url.as_str()),
        ("CARDIO_OIDC_ISSUER", "https://idp.test/realms/h"),
        ("CARDIO_OIDC_AUDIENCE", "cardio-api"),
        ("CARDIO_OIDC_ROLE_CLAIM", "realm_access.roles"),
        (
            "CARDIO_OIDC_ROLE_MAP",
            "cardio-doctor=clinician,cardio-admin=admin,cardio-patient=patient",
        ),
        ("CARDIO_OIDC_MFA_AMR", "otp,hwk"),
        ("CARDIO_OIDC_MFA_ACR", "urn:hospital:mfa"),
    ]);
    let a = &node.addr;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let good = json!({"sub": "dr-5", "iat": now, "exp": now + 300, "jti": "t-1",
        "iss": "https://idp.test/realms/h", "aud": ["cardio-api", "account"],
        "realm_access": {"roles": ["offline_access", "cardio-doctor"]}, "amr": ["pwd", "otp"]});
    let me = "{\"query\": \"{ me { subject role } }\"}";
    let (status, v) = post_raw(a, Some(&idp(good.clone())), me).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["data"]["me"],
        json!({"subject": "dr-5", "role": "CLINICIAN"})
    );
    let with = |key: &str, value: Value| {
        let mut c = good.clone();
        c[key] = value;
        c
    };
    let mut no_mfa = good.clone();
    no_mfa.as_object_mut().unwrap().remove("amr");
    let acr = with("acr", json!("urn:hospital:mfa"));
    let mut acr_only = acr.clone();
    acr_only.as_object_mut().unwrap().remove("amr");
    let patient = {
        let mut c = no_mfa.clone();
        c["sub"] = json!("p-5");
        c["realm_access"] = json!({"roles": ["cardio-patient"]});
        c
    };
    let cases: Vec<(&str, Value, u16)> = vec![
        ("MFA by acr", acr_only, 200),
        ("a patient needs no MFA", patient, 200),
        ("another issuer", with("iss", json!("cardio")), 401),
        ("another audience", with("aud", json!("other-api")), 401),
        ("a clinician without MFA", no_mfa, 401),
        (
            "an unmapped role",
            with("realm_access", json!({"roles": ["clinician"]})),
            401,
        ),
        (
            "two roles",
            with(
                "realm_access",
                json!({"roles": ["cardio-doctor", "cardio-admin"]}),
            ),
            401,
        ),
        (
            "exp ten years out, iat a minute before",
            {
                let exp = now + 10 * 365 * 24 * 3600;
                let mut c = with("exp", json!(exp));
                c["iat"] = json!(exp - 60);
                c
            },
            401,
        ),
    ];
    for (what, claims, want) in cases {
        let (status, v) = post_raw(a, Some(&idp(claims)), me).await;
        assert_eq!(status, want, "{what}: {v}");
        if want == 401 {
            assert_eq!(
                v["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
                "{what}"
            );
        }
    }
    // The node's own HS256 tokens are not the identity provider's.
    let (status, _) = post_raw(a, Some(&token(Role::Clinician, "dr-5")), me).await;
    assert_eq!(status, 401);
    // The provider rotates its keys: a token naming a kid the node has not
    // seen makes it fetch the JWKS again.
    let mut rotated: Value = serde_json::from_str(&jwks).unwrap();
    let mut second = rotated["keys"][0].clone();
    second["kid"] = json!("test-only-2");
    rotated["keys"].as_array_mut().unwrap().push(second);
    *body.lock().unwrap() = rotated.to_string();
    let (status, v) = post_raw(a, Some(&idp_with("test-only-2", good.clone())), me).await;
    assert_eq!(status, 200, "a rotated key was not fetched: {v}");
    let (status, _) = post_raw(a, Some(&idp_with("test-only-3", good.clone())), me).await;
    assert_eq!(status, 401);
    // A revoked IdP token (by its jti) is refused too.
    let t = idp(good);
    let (status, _) = post_raw(a, Some(&t), "{\"query\": \"mutation { revokeToken }\"}").await;
    assert_eq!(status, 200);
    let (status, _) = post_raw(a, Some(&t), me).await;
    assert_eq!(status, 401);
    drop(node);
}

/// The access state's SQL on both databases: activity only moves forward,
/// ended sessions only move forward, deactivation, revoked ids until their
/// expiry, break-glass grants until theirs, and care-team removal.
async fn the_access_state_is_kept_in_the_database(store: &cardio::store::Store) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert_eq!(store.account_state("dr-1", now).await.unwrap(), None);
    store.touch_account("dr-1", "clinician", now).await.unwrap();
    store
        .touch_account("dr-1", "clinician", now - 5000)
        .await
        .unwrap();
    let s = store.account_state("dr-1", now).await.unwrap().unwrap();
    assert_eq!(
        (s.role.as_str(), s.last_active_ms, s.disabled),
        ("clinician", now, false)
    );
    store.end_sessions("dr-1", 200).await.unwrap();
    store.end_sessions("dr-1", 100).await.unwrap();
    assert_eq!(
        store
            .account_state("dr-1", now)
            .await
            .unwrap()
            .unwrap()
            .not_before_s,
        200
    );
    store.set_disabled("dr-1", true).await.unwrap();
    assert!(
        store
            .account_state("dr-1", now)
            .await
            .unwrap()
            .unwrap()
            .disabled
    );
    store.set_disabled("dr-1", false).await.unwrap();
    assert!(
        !store
            .account_state("dr-1", now)
            .await
            .unwrap()
            .unwrap()
            .disabled
    );
    // A subject never seen: ending its sessions creates its row.
    store.end_sessions("p-9", 300).await.unwrap();
    assert_eq!(
        store
            .account_state("p-9", now)
            .await
            .unwrap()
            .unwrap()
            .not_before_s,
        300
    );
    store
        .revoke_token("t-1", "dr-2", now + 60_000)
        .await
        .unwrap();
    store
        .revoke_token("t-1", "dr-2", now + 60_000)
        .await
        .unwrap();
    store.revoke_token("t-old", "dr-2", now - 1).await.unwrap();
    let s = store.account_state("dr-2", now).await.unwrap().unwrap();
    assert_eq!(s.revoked, vec!["t-1".to_owned()]);
    // An account row and revoked ids, read together.
    store.touch_account("dr-2", "clinician", now).await.unwrap();
    store.end_sessions("dr-2", 400).await.unwrap();
    let s = store.account_state("dr-2", now).await.unwrap().unwrap();
    assert_eq!(
        (s.role.as_str(), s.last_active_ms, s.not_before_s, s.revoked),
        ("clinician", now, 400, vec!["t-1".to_owned()])
    );
    // Many subjects' activity in one write (more than one statement's
    // worth), never moving a time back.
    let many: Vec<(String, &str, u64)> = (0..1200)
        .map(|i| (format!("dev-{i}"), "patient", now - 1000 + i))
        .chain([("dr-2".to_owned(), "clinician", now - 9000)])
        .collect();
    store.touch_accounts(&many).await.unwrap();
    for (subject, at) in [
        ("dev-0", now - 1000),
        ("dev-1199", now + 199),
        ("dr-2", now),
    ] {
        let s = store.account_state(subject, now).await.unwrap().unwrap();
        assert_eq!(s.last_active_ms, at, "{subject}");
    }
    // Break-glass.
    store.register_patient("p-1").await.unwrap();
    store.register_clinician("dr-1").await.unwrap();
    assert!(store
        .grant_break_glass("g-0", "dr-1", "p-404", "r", now, now + 1000)
        .await
        .unwrap()
        .is_err());
    store
        .grant_break_glass("g-1", "dr-1", "p-1", "reason", now, now + 1000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.break_glass_until("p-1", "dr-1", now).await.unwrap(),
        Some(now + 1000)
    );
    assert_eq!(
        store
            .break_glass_until("p-1", "dr-1", now + 1000)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.break_glass_until("p-1", "dr-2", now).await.unwrap(),
        None
    );
    // Care team.
    store
        .assign_clinician("p-1", "dr-1")
        .await
        .unwrap()
        .unwrap();
    assert!(store.remove_clinician("p-1", "dr-1").await.unwrap());
    assert!(!store.remove_clinician("p-1", "dr-1").await.unwrap());
    assert!(!store.on_care_team("p-1", "dr-1").await.unwrap());
}
on_both!(access_state, the_access_state_is_kept_in_the_database);

/// The count the nodes' caches stand on: every change that can refuse a
/// token counts, made through the store or by hand; activity does not.
async fn changes_of_access_are_counted_and_activity_is_not(store: &cardio::store::Store) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut last = store.access_version().await.unwrap();
    let mut counted = async |what: &str, counts: bool| {
        let v = store.access_version().await.unwrap();
        assert_eq!(
            v > last,
            counts,
            "{what}: the count went from {last} to {v}"
        );
        last = v;
    };
    store.touch_account("dr-1", "clinician", now).await.unwrap();
    counted("a first activity", false).await;
    store
        .touch_account("dr-1", "clinician", now + 1)
        .await
        .unwrap();
    counted("activity", false).await;
    store.set_disabled("dr-1", false).await.unwrap();
    counted("reactivating an active account", false).await;
    store.set_disabled("dr-1", true).await.unwrap();
    counted("a deactivation", true).await;
    store
        .touch_account("dr-1", "clinician", now + 2)
        .await
        .unwrap();
    counted("a deactivated subject's activity", false).await;
    store.set_disabled("dr-1", false).await.unwrap();
    counted("a reactivation", true).await;
    store.end_sessions("dr-1", 200).await.unwrap();
    counted("sessions ended", true).await;
    store.end_sessions("dr-1", 100).await.unwrap();
    counted("an older end of sessions", false).await;
    store.end_sessions("p-9", 300).await.unwrap();
    counted("sessions ended of a subject never seen", true).await;
    store.set_disabled("p-10", true).await.unwrap();
    counted("a deactivation of a subject never seen", true).await;
    store
        .revoke_token("t-1", "dr-2", now + 60_000)
        .await
        .unwrap();
    counted("a revoked token", true).await;
    store
        .execute_admin("UPDATE accounts SET disabled = 1 WHERE subject = 'dr-1'")
        .await
        .unwrap();
    counted("a deactivation by hand", true).await;
    store
        .execute_admin("UPDATE accounts SET last_active_ms = 5 WHERE subject = 'dr-1'")
        .await
        .unwrap();
    counted("activity by hand", false).await;
    store
        .execute_admin("DELETE FROM revoked_tokens WHERE jti = 't-1'")
        .await
        .unwrap();
    counted("a revocation deleted by hand", true).await;
    store
        .execute_admin("DELETE FROM accounts WHERE subject = 'dr-1'")
        .await
        .unwrap();
    counted("an account row deleted by hand", true).await;
}
on_both!(
    access_version,
    changes_of_access_are_counted_and_activity_is_not
);

#[actix_rt::test]
async fn a_removal_and_a_revocation_on_one_node_end_access_on_another_within_a_second() {
    needs!(Cluster);
    let db = crate::store::TestDb::postgres_empty().await;
    let vhost = crate::broker::Vhost::new();
    let a = crate::api::cluster_member("access-a", &vhost.url(), db.url()).start();
    let b = crate::api::cluster_member("access-b", &vhost.url(), db.url()).start();
    people(&a.addr, &["p-1"], &["dr-1"], &[("p-1", "dr-1")]).await;
    device_of(&a.addr, "p-1", "ecg").await;
    let dr = token(Role::Clinician, "dr-1");
    let mut ws = socket(&b.addr, &dr).await;
    watch_alerts(&mut ws, "a1", "p-1").await;
    ok(&b.addr, &dr, PATIENT_Q, json!({"p": "p-1"})).await;

    // Removed on node A: node B's subscription ends, its requests are refused.
    let admin = token(Role::Admin, "admin-1");
    let q = "mutation { removeClinician(patientId: \"p-1\", clinicianId: \"dr-1\") }";
    ok(&a.addr, &admin, q, json!({})).await;
    assert!(
        ends_within(&mut ws, "a1", WITHIN).await,
        "node B's subscription outlived a removal on node A"
    );
    assert_eq!(
        code_of(&b.addr, &dr, PATIENT_Q, json!({"p": "p-1"}))
            .await
            .as_deref(),
        Some("FORBIDDEN")
    );
    // Sessions ended on node A: node B closes the socket and refuses the token.
    let q = "mutation { revokeSessions(subject: \"dr-1\") }";
    ok(&a.addr, &admin, q, json!({})).await;
    let ended = Instant::now();
    assert!(
        closes_within(&mut ws, WITHIN).await,
        "node B kept a socket of ended sessions open"
    );
    poll_until(
        "node B to refuse the token",
        WITHIN,
        Duration::from_millis(50),
        async || {
            code_of(&b.addr, &dr, "{ me { subject } }", json!({}))
                .await
                .as_deref()
                == Some("UNAUTHENTICATED")
        },
    )
    .await;
    assert!(ended.elapsed() < WITHIN * 2);
    drop((a, b));
    drop(vhost);
    db.done().await;
}

const SEND_Q: &str = "mutation($c: ID!, $k: String!) { sendMessage(consultId: $c, clientMessageId: $k, text: \"how is the rhythm today\") }";

/// `sendMessage` by `token` in consult `c` (`k` its client id): its
/// sequence, or the code and reason of its refusal (whose message must not
/// carry the text).
async fn chat(addr: &str, token: &str, c: &str, k: &str) -> Result<i64, (String, String)> {
    let v = crate::api::gql(addr, token, SEND_Q, json!({"c": c, "k": k})).await;
    match v["data"]["sendMessage"].as_i64() {
        Some(seq) => Ok(seq),
        None => {
            let e = &v["errors"][0];
            assert!(
                !e.to_string().contains("rhythm"),
                "the refusal carries PHI: {e}"
            );
            let code = e["extensions"]["code"].as_str().unwrap_or_default();
            let reason = e["extensions"]["reason"].as_str().unwrap_or_default();
            Err((code.to_owned(), reason.to_owned()))
        }
    }
}

fn refused(code: &str, reason: &str) -> Result<i64, (String, String)> {
    Err((code.to_owned(), reason.to_owned()))
}

/// A consult of p-1 on `addr`, the patient in it and `clinician` joined; its id.
async fn joined_consult(addr: &str, clinician: &str) -> String {
    let patient = token(Role::Patient, "p-1");
    let q = "mutation($r: ID!) { requestConsult(patientId: \"p-1\", reason: \"palpitations\", requestId: $r) }";
    let r = uuid::Uuid::new_v4().simple().to_string();
    let id = ok(addr, &patient, q, json!({"r": r})).await["requestConsult"]
        .as_str()
        .unwrap()
        .to_owned();
    let join = "mutation($c: ID!) { joinConsult(id: $c) }";
    ok(addr, &patient, join, json!({"c": id})).await;
    ok(
        addr,
        &token(Role::Clinician, clinician),
        join,
        json!({"c": id}),
    )
    .await;
    id
}

/// A consult's patient is read from its projected row; a consult journaled
/// but not projected (its projection write failed) is authorized from its
/// actor's view instead, never refused for want of a row.
#[actix_rt::test]
async fn a_consult_not_projected_yet_is_authorized_from_its_actor() {
    let data = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/lag.db", data.path().display());
    let store = cardio::store::Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    for p in ["p-1", "p-2"] {
        store.register_patient(p).await.unwrap();
    }
    // Requested now: a consult requested long ago is over (a no-show).
    let now = crate::api::now_ms() as u64;
    let requested =
        json!({"event": "requested", "patient": "p-1", "reason": "palpitations", "at_ms": now});
    let payload = requested.to_string();
    store
        .append("consult/c-lag", 0, "c-lag-request", 0, payload.as_bytes())
        .await
        .unwrap();
    assert_eq!(
        store.consult_known("c-lag").await.unwrap(),
        cardio::store::consults::ConsultKnown::Journaled
    );
    store.close().await;
    let node = serve_with(&[("CARDIO_DATABASE_URL", &url)]);
    let a = &node.addr;
    let join = "mutation($c: ID!) { joinConsult(id: $c) }";
    let other = token(Role::Patient, "p-2");
    let v = crate::api::gql(a, &other, join, json!({"c": "c-lag"})).await;
    assert_eq!(v["errors"][0]["extensions"]["code"], "FORBIDDEN", "{v}");
    let patient = token(Role::Patient, "p-1");
    assert_eq!(
        ok(a, &patient, join, json!({"c": "c-lag"})).await["joinConsult"],
        true
    );
    let read = "query($c: ID!) { consult(id: $c) { status patientId } }";
    let got = ok(a, &patient, read, json!({"c": "c-lag"})).await;
    assert_eq!(
        got["consult"],
        json!({"status": "WAITING", "patientId": "p-1"}),
        "{got}"
    );
}

#[actix_rt::test]
async fn chat_authorized_from_the_nodes_cache_follows_care_team_and_consult_changes_at_once() {
    let node = serve_with(&[]);
    let a = &node.addr;
    people(
        a,
        &["p-1"],
        &["dr-1", "dr-2"],
        &[("p-1", "dr-1"), ("p-1", "dr-2")],
    )
    .await;
    let id = joined_consult(a, "dr-1").await;
    let (dr1, dr2) = (
        token(Role::Clinician, "dr-1"),
        token(Role::Clinician, "dr-2"),
    );
    let patient = token(Role::Patient, "p-1");
    // Granted, then granted again from what the node knows now.
    assert_eq!(chat(a, &dr1, &id, "c1").await, Ok(1));
    assert_eq!(chat(a, &dr1, &id, "c2").await, Ok(2));
    assert_eq!(chat(a, &patient, &id, "p1").await, Ok(3));

    // Taken off the care team: refused by the very next request, audited.
    let admin = token(Role::Admin, "admin-1");
    let remove = "mutation { removeClinician(patientId: \"p-1\", clinicianId: \"dr-1\") }";
    assert_eq!(
        ok(a, &admin, remove, json!({})).await["removeClinician"],
        true
    );
    assert_eq!(
        chat(a, &dr1, &id, "c3").await,
        refused("FORBIDDEN", "NOT_ALLOWED")
    );
    let read = "query($c: ID!) { consult(id: $c) { status } }";
    assert_eq!(
        code_of(a, &dr1, read, json!({"c": id})).await.as_deref(),
        Some("FORBIDDEN")
    );
    assert!(has_row(&audit(a).await, "dr-1", "write", "refused"));
    // Put back: allowed by the very next request (a refusal is not kept).
    let assign = "mutation { assignClinician(patientId: \"p-1\", clinicianId: \"dr-1\") }";
    ok(a, &admin, assign, json!({})).await;
    assert_eq!(chat(a, &dr1, &id, "c3").await, Ok(4));

    // Who takes part is the consult's to say, whatever the care team: dr-2
    // is on it but not in this consult.
    assert_eq!(
        chat(a, &dr2, &id, "x1").await,
        refused("CONSULT_REFUSED", "NOT_PARTICIPANT")
    );
    // Ended: no participant writes any more, though the consult and its
    // patient are known to the node.
    let end = "mutation($c: ID!) { endConsult(id: $c, notes: \"stable\") }";
    ok(a, &dr1, end, json!({"c": id})).await;
    assert_eq!(
        chat(a, &patient, &id, "p2").await,
        refused("CONSULT_REFUSED", "CONSULT_OVER")
    );
    assert_eq!(
        chat(a, &dr1, &id, "c4").await,
        refused("CONSULT_REFUSED", "CONSULT_OVER")
    );
    // A consult that does not exist is refused as one that may not be seen.
    assert_eq!(
        chat(a, &patient, "no-such-consult", "p3").await,
        refused("FORBIDDEN", "NOT_ALLOWED")
    );
    drop(node);
}

#[actix_rt::test]
async fn a_removal_on_one_node_stops_chat_authorized_from_anothers_cache() {
    needs!(Cluster);
    let db = crate::store::TestDb::postgres_empty().await;
    let vhost = crate::broker::Vhost::new();
    let a = crate::api::cluster_member("authz-a", &vhost.url(), db.url()).start();
    let b = crate::api::cluster_member("authz-b", &vhost.url(), db.url()).start();
    people(&a.addr, &["p-1"], &["dr-1"], &[("p-1", "dr-1")]).await;
    let id = joined_consult(&a.addr, "dr-1").await;
    let dr = token(Role::Clinician, "dr-1");
    // Node B knows the consult's patient and dr-1's place on the team.
    assert_eq!(chat(&b.addr, &dr, &id, "b1").await, Ok(1));
    assert_eq!(chat(&b.addr, &dr, &id, "b2").await, Ok(2));

    // Removed on node A: node B refuses once the invalidation arrives.
    let admin = token(Role::Admin, "admin-1");
    let remove = "mutation { removeClinician(patientId: \"p-1\", clinicianId: \"dr-1\") }";
    ok(&a.addr, &admin, remove, json!({})).await;
    let removed = Instant::now();
    let mut n = 0;
    poll_until(
        "node B to refuse a clinician removed on node A",
        WITHIN,
        Duration::from_millis(20),
        async || {
            n += 1;
            chat(&b.addr, &dr, &id, &format!("r{n}")).await == refused("FORBIDDEN", "NOT_ALLOWED")
        },
    )
    .await;
    assert!(removed.elapsed() < WITHIN + Duration::from_millis(500));
    // Put back on node A: node B allows the next request.
    let assign = "mutation { assignClinician(patientId: \"p-1\", clinicianId: \"dr-1\") }";
    ok(&a.addr, &admin, assign, json!({})).await;
    assert!(chat(&b.addr, &dr, &id, "b3").await.is_ok());
    drop((a, b));
    drop(vhost);
    db.done().await;
}
