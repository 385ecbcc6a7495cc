//! `cardio demo` (issue 14): the real binary seeds a care team through its
//! own API and its monitors stream; the printed links sign in.

use std::time::Duration;

use serde_json::{json, Value};

use crate::api::{gql, ok};
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

    // Every patient is on the clinician's care team, with a monitor whose
    // vitals (device-reported and from the ECG) are fresh.
    let q = "query($p: ID!, $m: VitalMetric!, $f: DateTime!, $t: DateTime!) {
        patient(id: $p) { careTeam devices { id kind } }
        vitals(patientId: $p, metric: $m, from: $f, to: $t) { start count mean } }";
    for metric in ["HEART_RATE", "SPO2", "SYSTOLIC", "ECG_HEART_RATE"] {
        for p in PATIENTS {
            poll_until(
                "fresh vitals of a demo patient",
                Duration::from_secs(60),
                Duration::from_millis(500),
                async || {
                    let now = cardio::clock::unix_ms() as i64;
                    let vars = json!({"p": p, "m": metric, "f": rfc3339(now - 120_000), "t": rfc3339(now + 60_000)});
                    let v = gql(&node.addr, &clinician, q, vars).await;
                    if let Some(e) = v.get("errors") {
                        return Err(format!("{e}"));
                    }
                    let data = &v["data"];
                    assert_eq!(data["patient"]["careTeam"], json!(["demo-clinician"]), "{p}");
                    assert_eq!(data["patient"]["devices"][0]["kind"], "demo-monitor", "{p}");
                    let counted: i64 = data["vitals"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|b| b["count"].as_i64().unwrap_or(0))
                        .sum();
                    if counted > 0 {
                        Ok(())
                    } else {
                        Err(format!("{p} {metric}: {data}"))
                    }
                },
            )
            .await;
        }
    }
    // One consult waits for the clinician.
    let q = "query($p: ID!) { patient(id: $p) { consults { nodes { status } } } }";
    let v = ok(&node.addr, &clinician, q, json!({"p": "demo-p2"})).await;
    let statuses: Vec<&str> = v["patient"]["consults"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["REQUESTED"], "{v}");
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
