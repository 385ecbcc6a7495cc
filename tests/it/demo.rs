//! `cardio demo` (issue 14): the real binary seeds a care team through its
//! own API and its monitors stream; the printed links sign in.

use std::time::Duration;

use serde_json::{json, Value};

use crate::api::ok;
use crate::support::node::TestNode;
use crate::support::poll::poll_until;

const PATIENTS: [&str; 6] = [
    "demo-p1", "demo-p2", "demo-p3", "demo-p4", "demo-p5", "demo-p6",
];

/// The printed sign-in links by subject, once `n` are there.
async fn links(node: &TestNode, n: usize) -> Vec<(String, String)> {
    poll_until(
        "the demo's sign-in links",
        Duration::from_secs(60),
        Duration::from_millis(50),
        async || {
            let found: Vec<(String, String)> = node
                .stdout_lines()
                .iter()
                .filter_map(|l| {
                    let v: Value = serde_json::from_str(l).ok()?;
                    let s = &v["sign_in"];
                    Some((
                        s["subject"].as_str()?.to_owned(),
                        s["url"].as_str()?.to_owned(),
                    ))
                })
                .collect();
            (found.len() >= n).then_some(found)
        },
    )
    .await
}

fn token_for(links: &[(String, String)], subject: &str) -> String {
    let (_, url) = links
        .iter()
        .find(|(s, _)| s == subject)
        .unwrap_or_else(|| panic!("no link for {subject}: {links:?}"));
    url.split_once("#token=").unwrap().1.to_owned()
}

fn rfc3339(ms: i64) -> String {
    cardio::api::graphql::scalars::DateTime::from_ms(ms).to_rfc3339()
}

#[actix_rt::test]
async fn the_demo_seeds_a_live_care_team_and_a_waiting_consult_through_its_api() {
    let node = TestNode::demo().lifetime(Duration::from_secs(240)).start();
    let links = links(&node, 4).await;
    let subjects: Vec<&str> = links.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        subjects,
        ["demo-clinician", "demo-p2", "demo-ops", "local-admin"]
    );
    let clinician = token_for(&links, "demo-clinician");
    let me = ok(&node.addr, &clinician, "{ me { subject role } }", json!({})).await;
    assert_eq!(
        me["me"],
        json!({"subject": "demo-clinician", "role": "CLINICIAN"})
    );
    let ops = token_for(&links, "demo-ops");
    let me = ok(&node.addr, &ops, "{ me { role } }", json!({})).await;
    assert_eq!(me["me"]["role"], "OPS");

    // The clinician sees the care team in `me`, each patient with fresh
    // readings of every kind, and the consult waiting for them.
    let q = "{ me { patients { id careTeam devices { kind }
            latestVitals { heartRate { value at } spo2 { value at }
                bloodPressure { systolic diastolic at } ecg { at state { rhythm heartRate } } } }
          consults(status: [REQUESTED, WAITING]) { nodes { status patientId reason } } } }";
    let me = poll_until(
        "every demo patient with fresh vitals in me",
        Duration::from_secs(60),
        Duration::from_millis(500),
        async || {
            let data = ok(&node.addr, &clinician, q, json!({})).await;
            let now = cardio::clock::unix_ms() as i64;
            let fresh = |at: &Value| {
                at.as_str()
                    .and_then(|t| cardio::api::graphql::scalars::DateTime::parse(t).ok())
                    .is_some_and(|t| now - t.ms() < 15_000)
            };
            let patients = data["me"]["patients"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let stale: Vec<String> = patients
                .iter()
                .filter(|p| {
                    let v = &p["latestVitals"];
                    !(fresh(&v["heartRate"]["at"])
                        && fresh(&v["spo2"]["at"])
                        && fresh(&v["bloodPressure"]["at"])
                        && fresh(&v["ecg"]["at"]))
                })
                .map(|p| p["id"].to_string())
                .collect();
            if patients.len() == PATIENTS.len() && stale.is_empty() {
                Ok(data["me"].clone())
            } else {
                Err(format!("stale: {stale:?} of {data}"))
            }
        },
    )
    .await;
    let mut ids: Vec<&str> = me["patients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, PATIENTS);
    for p in me["patients"].as_array().unwrap() {
        assert_eq!(p["careTeam"], json!(["demo-clinician"]), "{p}");
        assert_eq!(p["devices"], json!([{"kind": "demo-monitor"}]), "{p}");
    }
    let waiting = me["consults"]["nodes"].as_array().unwrap();
    assert_eq!(waiting.len(), 1, "{me}");
    assert_eq!(waiting[0]["patientId"], "demo-p2");
    assert_eq!(waiting[0]["status"], "REQUESTED");
    // The ECG is analysed: the heart rate it counts comes in as aggregates.
    let q = "query($p: ID!, $f: DateTime!, $t: DateTime!) {
        vitals(patientId: $p, metric: ECG_HEART_RATE, from: $f, to: $t) { count } }";
    poll_until(
        "ECG-derived heart rate of a demo patient",
        Duration::from_secs(60),
        Duration::from_millis(500),
        async || {
            let now = cardio::clock::unix_ms() as i64;
            let vars =
                json!({"p": "demo-p1", "f": rfc3339(now - 120_000), "t": rfc3339(now + 60_000)});
            let v = ok(&node.addr, &clinician, q, vars).await;
            v["vitals"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|b| b["count"].as_i64().unwrap_or(0) > 0)
                .then_some(())
                .ok_or(format!("{v}"))
        },
    )
    .await;
    // The patient with the arrhythmia raises its alarm within a minute or so.
    let q = "query($p: ID!) { alerts(patientId: $p) { nodes { kind priority } } }";
    poll_until(
        "demo-p3's atrial fibrillation alarm",
        Duration::from_secs(120),
        Duration::from_secs(1),
        async || {
            let v = ok(&node.addr, &clinician, q, json!({"p": "demo-p3"})).await;
            v["alerts"]["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| a["kind"] == "ATRIAL_FIBRILLATION")
                .then_some(())
                .ok_or(format!("{v}"))
        },
    )
    .await;
    // No monitor's push failed, and no token reached the log.
    let log = node.log();
    assert!(!log.contains("push failed"), "{log}");
    for (_, url) in &links {
        let token = url.split_once("#token=").unwrap().1;
        let logged = log
            .lines()
            .filter(|l| !l.contains("\"sign_in\""))
            .any(|l| l.contains(token));
        assert!(!logged, "a token in the log");
    }
}

#[test]
fn the_demo_refuses_a_database_that_is_not_the_embedded_one() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cardio"))
        .arg("demo")
        .env_clear()
        .env("CARDIO_DATABASE_URL", "postgres://u:p@127.0.0.1:1/none")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("embedded defaults"), "{said}");
}

#[actix_rt::test]
async fn a_second_demo_on_the_same_data_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        TestNode::demo()
            .env(
                "CARDIO_DATABASE_URL",
                format!("sqlite://{}/cardio.db", dir.path().display()),
            )
            .lifetime(Duration::from_secs(120))
            .start()
    };
    let q = "{ me { patients { id devices { id } } consults(status: [REQUESTED, WAITING]) { nodes { id } } } }";
    let mut seen = Vec::new();
    for _ in 0..2 {
        let node = start();
        let clinician = token_for(&links(&node, 4).await, "demo-clinician");
        seen.push(ok(&node.addr, &clinician, q, json!({})).await);
    }
    assert_eq!(seen[0], seen[1], "the second start changed the demo data");
    assert_eq!(seen[0]["me"]["patients"].as_array().unwrap().len(), 6);
    assert_eq!(
        seen[0]["me"]["consults"]["nodes"].as_array().unwrap().len(),
        1
    );
}
