//! Operating a node: `/metrics` follows what happens, and every metric the
//! dashboard and the alerting rules use is one the node exports.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cardio::principal::Role;
use serde_json::json;

use crate::api::{code, device_of, hr, now_ms, ok, people, send, socket, token, until_alert, PUSH};
use crate::support::poll::poll_until;

/// One scrape of `/metrics`: every sample by its series (`name{labels}`),
/// and the metric families its `# TYPE` lines declare.
pub(crate) struct Scrape {
    pub samples: BTreeMap<String, f64>,
    pub families: BTreeSet<String>,
}

impl Scrape {
    /// The sum of the samples of `name` whose labels include `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(series, _)| {
                let (n, rest) = series.split_once('{').unwrap_or((series, ""));
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
            })
            .map(|(_, v)| v)
            .sum()
    }
}

pub(crate) async fn scrape(addr: &str) -> Scrape {
    let mut res = awc::Client::new()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("/metrics answers");
    assert_eq!(res.status().as_u16(), 200);
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let body = res.body().limit(16 << 20).await.unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
    let mut samples = BTreeMap::new();
    let mut families = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            families.insert(rest.split(' ').next().unwrap().to_owned());
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let (series, value) = line.rsplit_once(' ').expect("series value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
            samples.insert(series.to_owned(), value);
        }
    }
    Scrape { samples, families }
}

/// Scrapes until `check` holds (metrics of asynchronous effects).
async fn scrape_until(addr: &str, what: &str, check: impl Fn(&Scrape) -> bool) -> Scrape {
    poll_until(
        &format!("metrics showing {what}"),
        Duration::from_secs(20),
        Duration::from_millis(100),
        async || {
            let s = scrape(addr).await;
            check(&s).then_some(s)
        },
    )
    .await
}

/// Every `cardio_*` metric name the files under `dir` mention.
fn referenced(dir: &std::path::Path, into: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            referenced(&path, into);
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let bytes = text.as_bytes();
        let mut i = 0;
        while let Some(at) = text[i..].find("cardio_") {
            let start = i + at;
            let boundary = start == 0 || {
                let b = bytes[start - 1];
                !(b.is_ascii_alphanumeric() || b == b'_')
            };
            let mut end = start;
            while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
                end += 1;
            }
            // `cardio_*` in prose names the prefix, not a metric.
            if boundary && !text[start..end].ends_with('_') {
                into.entry(text[start..end].to_owned())
                    .or_insert_with(|| path.display().to_string());
            }
            i = end;
        }
    }
}

#[actix_rt::test]
async fn metrics_follow_a_scenario_and_cover_what_dashboards_and_alert_rules_use() {
    let node = crate::api::serve();
    let a = &node.addr;
    let fresh = scrape(a).await;
    assert_eq!(fresh.sum("cardio_node_ready", &[]), 1.0);
    assert_eq!(
        fresh.sum("cardio_shards_owned", &[]),
        64.0,
        "a single node owns every shard"
    );
    assert_eq!(fresh.sum("cardio_cluster_nodes", &[]), 1.0);
    assert_eq!(fresh.sum("cardio_shard_handovers_pending", &[]), 0.0);
    assert!(fresh.families.contains("cardio_shard_handovers_pending"));
    assert!(fresh.sum("cardio_db_pool_max_connections", &[]) >= 1.0);
    assert_eq!(fresh.sum("cardio_alerts_raised_total", &[]), 0.0);

    let (patient, clinician) = (token(Role::Patient, "p-1"), token(Role::Clinician, "dr-1"));
    people(a, &["p-1"], &["dr-1"], &[("p-1", "dr-1")]).await;
    let device = device_of(a, "p-1", "watch").await;
    // Two valid readings, one out of range; one push refused.
    let t0 = now_ms() - 600_000.0;
    let batch = json!([
        hr(t0, 72.0),
        hr(t0 + 1_000.0, 900.0),
        hr(t0 + 2_000.0, 74.0)
    ]);
    ok(a, &patient, PUSH, json!({"d": device, "s": batch})).await;
    let forbidden = json!({"d": device, "s": [hr(t0 + 3_000.0, 70.0)]});
    assert_eq!(code(a, &clinician, PUSH, forbidden).await, "FORBIDDEN");
    let mut pushes_ok = 1.0;

    // The clinician watches alerts; a sustained tachycardia raises one.
    let mut ws = socket(a, &clinician).await;
    send(&mut ws, json!({"id": "a", "type": "subscribe", "payload": {"query": "subscription { alerts { kind change } }"}})).await;
    scrape_until(a, "the open subscription", |s| {
        s.sum("cardio_graphql_subscriptions", &[("field", "alerts")]) == 1.0
    })
    .await;
    let mut at = t0 + 10_000.0;
    let (_, pushed) = until_alert(a, &patient, &device, &mut ws, "a", &mut at).await;
    pushes_ok += f64::from(pushed.pushes);
    let raised = f64::from(pushed.episodes);

    let s = scrape(a).await;
    let rejected = s.sum(
        "cardio_samples_rejected_total",
        &[("reason", "out_of_range")],
    );
    assert_eq!(rejected, 1.0);
    assert!(s.sum("cardio_samples_accepted_total", &[]) >= 2.0 + 8.0);
    assert_eq!(
        s.sum(
            "cardio_alerts_raised_total",
            &[("rule", "tachycardia"), ("priority", "medium")]
        ),
        raised,
        "one alert per sustained episode"
    );
    assert!(s.sum("cardio_alert_latency_seconds_count", &[]) >= 1.0);
    let op = |operation: &str, outcome: &str| {
        s.sum(
            "cardio_graphql_requests_total",
            &[("operation", operation), ("outcome", outcome)],
        )
    };
    assert_eq!(op("pushSamples", "ok"), pushes_ok);
    assert_eq!(op("pushSamples", "FORBIDDEN"), 1.0);
    assert_eq!(op("registerPatient", "ok"), 1.0);
    assert_eq!(
        s.sum(
            "cardio_graphql_request_duration_seconds_count",
            &[("operation", "pushSamples")]
        ),
        pushes_ok + 1.0
    );
    assert!(s.sum("cardio_journal_write_seconds_count", &[]) >= pushes_ok);
    assert!(s.sum("cardio_actors_live", &[("kind", "device")]) >= 1.0);
    assert!(s.sum("cardio_actor_activations_total", &[("kind", "device")]) >= 1.0);
    assert!(s.sum("cardio_bus_publishes_total", &[("class", "event")]) >= 1.0);
    assert!(s.sum("cardio_bus_deliveries_total", &[("outcome", "ack")]) >= 1.0);

    // Ops restart the device: it passivates.
    let ops = token(Role::Ops, "ops-1");
    let path = format!("/cardio/entities/device/{device}");
    ok(
        a,
        &ops,
        "mutation($p: String!) { restartActor(path: $p) }",
        json!({"p": path}),
    )
    .await;
    scrape_until(a, "the device passivated", |s| {
        s.sum("cardio_actor_passivations_total", &[("kind", "device")]) >= 1.0
            && s.sum("cardio_actors_live", &[("kind", "device")]) == 0.0
    })
    .await;
    // Its snapshots become unreadable (a database fault): the device crashes
    // on activation, its supervisor restarts it, and once the table is back
    // it serves again.
    let db =
        cardio::store::Store::connect(&format!("sqlite://{}/cardio.db", node.data_dir().display()))
            .await
            .unwrap();
    db.execute_admin("ALTER TABLE snapshots RENAME TO snapshots_away")
        .await
        .unwrap();
    let restarts = |s: &Scrape| {
        s.sum(
            "cardio_supervisor_restarts_total",
            &[("kind", "device"), ("reason", "panic")],
        )
    };
    assert_eq!(restarts(&scrape(a).await), 0.0);
    let later = json!({"d": device, "s": [hr(at + 60_000.0, 70.0)]});
    let failed = crate::api::gql(a, &patient, PUSH, later.clone()).await;
    assert!(failed.get("errors").is_some(), "{failed}");
    scrape_until(a, "the crashed device restarted", |s| restarts(s) >= 1.0).await;
    db.execute_admin("ALTER TABLE snapshots_away RENAME TO snapshots")
        .await
        .unwrap();
    db.close().await;
    poll_until(
        "the device to recover",
        Duration::from_secs(30),
        Duration::from_millis(200),
        async || {
            let v = crate::api::gql(a, &patient, PUSH, later.clone()).await;
            v.get("errors").is_none().then_some(()).ok_or(v)
        },
    )
    .await;

    // The subscription closes: the gauge follows.
    send(&mut ws, json!({"id": "a", "type": "complete"})).await;
    let last = scrape_until(a, "the closed subscription", |s| {
        s.sum("cardio_graphql_subscriptions", &[("field", "alerts")]) == 0.0
    })
    .await;

    // Everything the dashboard, the alerting rules and the manifests name is
    // exported (histograms as their _bucket/_sum/_count series).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut names = BTreeMap::new();
    referenced(&root.join("deploy"), &mut names);
    referenced(&root.join("k8s"), &mut names);
    assert!(
        names.len() >= 15,
        "the dashboard and rules name metrics: {names:?}"
    );
    let missing: Vec<String> = names
        .iter()
        .filter(|(name, _)| {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|f| last.families.contains(*f))
                .unwrap_or(name);
            !last.families.contains(family)
        })
        .map(|(name, file)| format!("{name} (in {file})"))
        .collect();
    assert!(missing.is_empty(), "not exported by the node: {missing:?}");
    // JSON log lines written within a request carry its trace id.
    let traced: Vec<String> = node
        .log()
        .lines()
        .filter(|l| l.contains("\"graphql request\"") && l.contains("pushSamples"))
        .map(str::to_owned)
        .collect();
    assert!(!traced.is_empty(), "no request log lines");
    for line in &traced {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let trace = v["trace_id"].as_str().unwrap_or_else(|| panic!("{line}"));
        assert!(
            trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit()),
            "{line}"
        );
        assert!(!line.contains("p-1") && !line.contains(&device), "{line}");
    }
    // No series names an id (PHI): labels are kinds, reasons, operations.
    for series in last.samples.keys() {
        for id in ["p-1", "dr-1", device.as_str()] {
            assert!(!series.contains(id), "{series} names {id}");
        }
    }
    drop(node);
}

#[actix_rt::test]
async fn the_simulator_loads_a_node_and_its_summary_agrees_with_the_nodes_metrics() {
    let node = crate::api::serve();
    let out = std::process::Command::new("timeout")
        .args(["120", env!("CARGO_BIN_EXE_cardio"), "simulate"])
        .args(["--url", &format!("http://{}", node.addr)])
        .args(["--devices", "20", "--rate", "10", "--consults", "3"])
        .args(["--clinicians", "2", "--duration", "12s", "--seed", "5"])
        .args(["--episodes", "0.5", "--episode", "8s", "--invalid", "0.02"])
        .args(["--chat-every", "1s", "--json"])
        .env_clear()
        .env("CARDIO_JWT_SECRET", crate::api::SECRET)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("pushes"), "a progress line: {stderr}");
    let s: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(s["errors"], json!({}), "{s}");
    let n = |k: &str| s[k].as_f64().unwrap_or_else(|| panic!("{k}: {s}"));
    assert!(n("pushes") >= 20.0, "{s}");
    assert!(n("invalid_sent") >= 1.0, "{s}");
    assert!(n("alerts") >= 1.0, "sustained episodes raise alerts: {s}");
    assert!(n("alert_p99_ms") > 0.0);
    // Also measured without each device's first push (which starts its
    // actor): every device pushed more than once here.
    assert!(n("push_warm_p99_ms") > 0.0, "{s}");
    // And each device's first push alone: every device pushed first.
    assert!(n("push_first_p50_ms") > 0.0, "{s}");
    assert!(n("push_first_p99_ms") >= n("push_first_p50_ms"), "{s}");
    assert_eq!((n("consults_opened"), n("consults_ended")), (3.0, 3.0));
    assert!(n("messages") >= 3.0 * 8.0, "{s}");
    // The node judged every sample pushed exactly once and rejected exactly
    // the invalid ones. (A push the API retried inside the node is answered
    // as a duplicate, without its details: the client's own counts are at
    // most the node's.)
    let m = scrape(&node.addr).await;
    let accepted = m.sum("cardio_samples_accepted_total", &[]);
    let rejected = m.sum("cardio_samples_rejected_total", &[]);
    assert_eq!(accepted + rejected, n("pushes") * 10.0, "{s}");
    assert_eq!(rejected, n("invalid_sent"), "{s}");
    assert!(n("samples_accepted") <= accepted && n("samples_rejected") <= rejected);
    // Each alert goes to the one clinician of its patient's care team.
    assert!(m.sum("cardio_alerts_raised_total", &[]) >= n("alerts"));
    assert_eq!(
        m.sum("cardio_alert_latency_seconds_count", &[]),
        n("alerts")
    );
    drop(node);
}
