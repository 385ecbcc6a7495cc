//! GraphQL API benchmarks against real `cardio serve` processes (release
//! build), each beside a baseline from the same run:
//!
//! (g) requests per second on one node (embedded defaults: SQLite file,
//!     in-process bus) of `sendMessage` (a journaled chat line) and
//!     `pushSamples` (10 heart-rate samples), 64 requests in flight, beside
//!     the `me` query (HTTP + token + GraphQL, no actor, no database) over
//!     four times the requests; the three interleaved in turns (4 unless
//!     `CARDIO_BENCH_TURNS` says otherwise), so that the machine's drift
//!     within a run weighs on each alike, and every request's body encoded
//!     before its turn's clock starts; the samples rejected among the pushes
//!     are counted (a device's push that overtakes its previous one is out of
//!     order);
//! (g2) `pushSamples` to one device with as many in flight, beside (g)'s
//!     pushes to 64 devices with one each (issue 15, item 4: a device's
//!     pushes that queue together are coalesced);
//! (h) alert latency: from sending a `pushSamples` whose blood pressure is a
//!     hypertensive crisis (raised at once) to the clinician's `alerts`
//!     subscription receiving it, p50/p99 over 60 alerts; on one node, and on
//!     a three-node cluster (RabbitMQ + PostgreSQL) with the clinician
//!     connected to a node other than the one hosting the device. Target p99
//!     < 100 ms.
//!
//! Needs RabbitMQ (with `rabbitmqctl`) and PostgreSQL for the cluster part.
//! Run: `cargo bench --bench api` (`CARDIO_BENCH_ONLY=one-node` skips the
//! cluster part; `CARDIO_BENCH_IN_FLIGHT`, `CARDIO_BENCH_REQUESTS` override
//! 64 and 4,000).

use std::process::Command;
use std::time::{Duration, Instant};

use awc::ws;
use cardio::auth::Authenticator;
use cardio::principal::{Principal, Role};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

#[path = "../tests/it/support/node.rs"]
#[allow(dead_code)]
mod node;
use node::TestNode;

const SECRET: &str = "bench-secret-of-at-least-32-bytes-long!";
/// Requests per measured rate; `CARDIO_BENCH_REQUESTS` overrides.
fn requests() -> usize {
    env_usize("CARDIO_BENCH_REQUESTS", 4_000)
}

/// Requests in flight (issue 15's targets are stated at 64);
/// `CARDIO_BENCH_IN_FLIGHT` overrides.
fn in_flight() -> usize {
    env_usize("CARDIO_BENCH_IN_FLIGHT", 64)
}

/// Turns the measures of (g) are interleaved in; `CARDIO_BENCH_TURNS`
/// overrides.
fn turns() -> usize {
    env_usize("CARDIO_BENCH_TURNS", 4).max(1)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
const ALERTS: usize = 60;

/// A node on the embedded defaults (SQLite in a folder of its own) unless
/// `envs` say otherwise.
fn start(envs: &[(&str, String)]) -> TestNode {
    TestNode::serve()
        .ready_within(Duration::from_secs(60))
        .lifetime(Duration::from_secs(3600))
        .env("CARDIO_LOG_FILTER", "warn,cardio::node=info")
        .env("CARDIO_JWT_SECRET", SECRET)
        .env("CARDIO_RATE_LIMIT", "1000000")
        // One principal from one address keeps `in_flight()` requests open
        // (the defaults, 16 per principal and 64 per address, would refuse
        // the rest RATE_LIMITED).
        .env(
            "CARDIO_MAX_HTTP_PER_PRINCIPAL",
            in_flight().max(16).to_string(),
        )
        .env("CARDIO_MAX_HTTP_PER_IP", in_flight().max(64).to_string())
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .start()
}

fn token(role: Role, sub: &str) -> String {
    Authenticator::hs256(SECRET.as_bytes())
        .mint(
            &Principal {
                subject: sub.into(),
                role,
            },
            Duration::from_secs(3600),
        )
        .unwrap()
}

async fn gql(client: &awc::Client, addr: &str, token: &str, query: &str, vars: Value) -> Value {
    let mut res = client
        .post(format!("http://{addr}/graphql"))
        .insert_header(("authorization", format!("Bearer {token}")))
        .send_json(&json!({"query": query, "variables": vars}))
        .await
        .unwrap();
    let v: Value = res.json().limit(1 << 20).await.unwrap();
    assert!(v.get("errors").is_none(), "{query}: {v}");
    v["data"].clone()
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64
}

/// Requests per second of `make(i)` over `requests()` requests, `in_flight()` at a time.
async fn rate(addr: &str, token: &str, make: impl Fn(usize) -> (String, Value)) -> f64 {
    let n = requests();
    n as f64 / timed(0..n, addr, token, make).await.as_secs_f64()
}

/// The time requests `make(i)` for `i` in `range` take, `in_flight()` at a
/// time.
///
/// Every request's body is encoded before the clock starts, so that the
/// client, which shares the machine's two cores with the node, spends on
/// each request only what sending it and reading its answer take: building
/// and encoding ten samples in the clock cost the client 75 µs a push
/// against 22 µs a `me` (`perf record -a`, stop 38), CPU taken from the
/// node in the push phase only.
async fn timed(
    range: std::ops::Range<usize>,
    addr: &str,
    token: &str,
    make: impl Fn(usize) -> (String, Value),
) -> Duration {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let (url, bearer) = (format!("http://{addr}/graphql"), format!("Bearer {token}"));
    let bodies: Vec<bytes::Bytes> = range
        .map(|i| {
            let (query, variables) = make(i);
            serde_json::to_vec(&json!({"query": query, "variables": variables}))
                .unwrap()
                .into()
        })
        .collect();
    let start = Instant::now();
    futures_util::stream::iter(bodies)
        .for_each_concurrent(in_flight(), |body| {
            let (client, url, bearer) = (&client, &url, &bearer);
            async move {
                let mut res = client
                    .post(url)
                    .insert_header(("authorization", bearer.as_str()))
                    .insert_header(("content-type", "application/json"))
                    .send_body(body)
                    .await
                    .unwrap();
                let answer = res.body().limit(1 << 20).await.unwrap();
                // Answered without errors (a typed check, cheaper than a
                // whole `Value`).
                #[derive(serde::Deserialize)]
                struct Answer {
                    errors: Option<serde::de::IgnoredAny>,
                }
                let ok =
                    serde_json::from_slice::<Answer>(&answer).is_ok_and(|a| a.errors.is_none());
                assert!(ok, "{}", String::from_utf8_lossy(&answer));
            }
        })
        .await;
    start.elapsed()
}

/// Sets up p-1 (with a device), dr-1 on their team; returns the device id.
async fn people(addr: &str) -> String {
    let c = awc::Client::new();
    let admin = token(Role::Admin, "admin-1");
    for (m, id) in [("registerPatient", "p-1"), ("registerClinician", "dr-1")] {
        gql(
            &c,
            addr,
            &admin,
            &format!("mutation {{ {m}(id: \"{id}\") }}"),
            json!({}),
        )
        .await;
    }
    gql(
        &c,
        addr,
        &admin,
        "mutation { assignClinician(patientId: \"p-1\", clinicianId: \"dr-1\") }",
        json!({}),
    )
    .await;
    gql(
        &c,
        addr,
        &token(Role::Patient, "p-1"),
        "mutation { registerDevice(patientId: \"p-1\", kind: \"cuff\") }",
        json!({}),
    )
    .await["registerDevice"]
        .as_str()
        .unwrap()
        .to_owned()
}

type Socket = actix_codec::Framed<awc::BoxedSocket, ws::Codec>;

async fn alerts_socket(addr: &str) -> Socket {
    let (_, mut ws) = awc::Client::new()
        .ws(format!("ws://{addr}/graphql"))
        .protocols(["graphql-transport-ws"])
        .connect()
        .await
        .unwrap();
    let init = json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {}", token(Role::Clinician, "dr-1"))}});
    ws.send(ws::Message::Text(init.to_string().into()))
        .await
        .unwrap();
    next_text(&mut ws).await; // connection_ack
    let sub = json!({"id": "a", "type": "subscribe", "payload": {"query": "subscription { alerts { change kind } }"}});
    ws.send(ws::Message::Text(sub.to_string().into()))
        .await
        .unwrap();
    ws
}

async fn next_text(ws: &mut Socket) -> Value {
    loop {
        match ws.next().await.unwrap().unwrap() {
            ws::Frame::Text(b) => return serde_json::from_slice(&b).unwrap(),
            ws::Frame::Ping(p) => ws.send(ws::Message::Pong(p)).await.unwrap(),
            _ => {}
        }
    }
}

/// The next alert event with `change`, if one comes within `wait`.
async fn alert(ws: &mut Socket, change: &str, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    while let Ok(v) = tokio::time::timeout(
        deadline.saturating_duration_since(Instant::now()),
        next_text(ws),
    )
    .await
    {
        if v["type"] == "next" && v["payload"]["data"]["alerts"]["change"] == change {
            return true;
        }
    }
    false
}

/// The node's counts of pushes coalesced and of samples rejected (`/metrics`).
async fn counters(addr: &str) -> (f64, f64) {
    let mut res = awc::Client::new()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    let text = String::from_utf8(res.body().limit(16 << 20).await.unwrap().to_vec()).unwrap();
    let sum = |name: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    (
        sum("cardio_pushes_coalesced_total"),
        sum("cardio_samples_rejected_total"),
    )
}

/// Pushes one blood-pressure reading of `device` with the `patient`'s token.
async fn push_bp(
    c: &awc::Client,
    addr: &str,
    patient: &str,
    device: &str,
    at: f64,
    systolic: f64,
    diastolic: f64,
) {
    let push = "mutation($d: ID!, $s: [SampleInput!]!) { pushSamples(deviceId: $d, samples: $s) { accepted } }";
    let s = bp(at, systolic, diastolic);
    gql(c, addr, patient, push, json!({"d": device, "s": s})).await;
}

fn bp(at: f64, systolic: f64, diastolic: f64) -> Value {
    json!([{"metric": "BLOOD_PRESSURE", "at": iso(at), "systolic": systolic, "diastolic": diastolic}])
}

/// Unix milliseconds as the API's `DateTime`.
fn iso(ms: f64) -> String {
    cardio::api::graphql::scalars::DateTime::from_ms(ms.round() as i64).to_rfc3339()
}

/// Alert latencies: push a crisis (timed until the subscription has it),
/// then normal pressure (resolving it), ALERTS times.
async fn alert_latencies(push_addr: &str, watch_addr: &str, device: &str) -> Vec<Duration> {
    let c = awc::Client::new();
    let patient = token(Role::Patient, "p-1");
    let mut ws = alerts_socket(watch_addr).await;
    let mut at = now_ms() - 3_600_000.0;
    // Until the subscription is bound: crises until one arrives.
    loop {
        push_bp(&c, push_addr, &patient, device, at, 200.0, 125.0).await;
        at += 1_000.0;
        let seen = alert(&mut ws, "RAISED", Duration::from_millis(500)).await;
        push_bp(&c, push_addr, &patient, device, at, 120.0, 80.0).await;
        at += 1_000.0;
        if seen {
            assert!(alert(&mut ws, "RESOLVED", Duration::from_secs(5)).await);
            break;
        }
    }
    let mut out = Vec::with_capacity(ALERTS);
    for _ in 0..ALERTS {
        let t = Instant::now();
        push_bp(&c, push_addr, &patient, device, at, 200.0, 125.0).await;
        assert!(
            alert(&mut ws, "RAISED", Duration::from_secs(5)).await,
            "alert lost"
        );
        out.push(t.elapsed());
        at += 1_000.0;
        push_bp(&c, push_addr, &patient, device, at, 120.0, 80.0).await;
        assert!(
            alert(&mut ws, "RESOLVED", Duration::from_secs(5)).await,
            "resolution lost"
        );
        at += 1_000.0;
    }
    out.sort();
    out
}

fn pct(v: &[Duration], p: f64) -> Duration {
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn rabbitmqctl(args: &[&str]) {
    assert!(Command::new("rabbitmqctl")
        .args(args)
        .output()
        .unwrap()
        .status
        .success());
}

fn main() {
    actix_rt::System::new().block_on(async {
        // (g) and (h) on one node, embedded defaults.
        let (requests, in_flight) = (requests(), in_flight());
        let node = start(&[]);
        let a = node.addr.clone();
        let device = people(&a).await;
        let patient = token(Role::Patient, "p-1");
        // The baseline over four times the requests: at 4,000 its phase
        // took a fifth of a second and swung by half from run to run.
        let me_query = |_| ("{ me { subject } }".to_owned(), json!({}));
        // One consult per in-flight slot, open and joined.
        let c = awc::Client::new();
        let mut consults = Vec::new();
        for _ in 0..in_flight {
            let id = gql(&c, &a, &patient, "mutation($r: ID!) { requestConsult(patientId: \"p-1\", reason: \"bench\", requestId: $r) }", json!({"r": uuid::Uuid::new_v4().simple().to_string()}))
                .await["requestConsult"]
                .as_str()
                .unwrap()
                .to_owned();
            gql(&c, &a, &patient, "mutation($c: ID!) { joinConsult(id: $c) }", json!({"c": id})).await;
            consults.push(id);
        }
        let send_message = |i: usize| {
            (
                "mutation($c: ID!, $k: String!) { sendMessage(consultId: $c, clientMessageId: $k, text: \"x\") }".into(),
                json!({"c": consults[i % in_flight], "k": format!("m{i}")}),
            )
        };
        // Pushes of 10 samples each, one device per slot (a device's pushes are ordered).
        let mut devices = vec![device.clone()];
        for _ in 1..in_flight {
            devices.push(
                gql(&c, &a, &patient, "mutation { registerDevice(patientId: \"p-1\", kind: \"watch\") }", json!({}))
                    .await["registerDevice"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        // Every push's samples in the past, whatever the count (the stream
        // rejects a sample more than 5 s ahead): each device's pushes are
        // 10 s apart.
        let t0 = now_ms() - (requests / in_flight + 10) as f64 * 10_000.0;
        let push_samples = |i: usize| {
            let base = t0 + (i / in_flight) as f64 * 10_000.0;
            let samples: Vec<Value> = (0..10)
                .map(|k| json!({"metric": "HEART_RATE", "at": iso(base + f64::from(k) * 1_000.0), "value": 72}))
                .collect();
            (
                "mutation($d: ID!, $s: [SampleInput!]!) { pushSamples(deviceId: $d, samples: $s) { accepted } }".into(),
                json!({"d": devices[i % in_flight], "s": samples}),
            )
        };
        // The three measures interleaved, in `turns()` turns of `me`, then
        // `sendMessage`, then `pushSamples`, each turn a slice of each one's
        // requests: the machine's speed drifts within a run (by up to 30 %
        // between a `me` phase before the writes and one after them, stop
        // 37), and turns give each measure the same share of it.
        let rejected_before = counters(&a).await.1;
        let (mut me_t, mut send_t, mut push_t) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let mut me_turns = Vec::new();
        let turns = turns();
        for turn in 0..turns {
            let part = |n: usize| turn * n / turns..(turn + 1) * n / turns;
            let t = timed(part(4 * requests), &a, &patient, me_query).await;
            me_turns.push(part(4 * requests).len() as f64 / t.as_secs_f64());
            me_t += t;
            send_t += timed(part(requests), &a, &patient, send_message).await;
            push_t += timed(part(requests), &a, &patient, push_samples).await;
        }
        let me = (4 * requests) as f64 / me_t.as_secs_f64();
        let send = requests as f64 / send_t.as_secs_f64();
        let push = requests as f64 / push_t.as_secs_f64();
        me_turns.sort_by(f64::total_cmp);
        // A device's next push may overtake its previous one (the 64 in
        // flight are any 64, not one per device); its samples, 10 s behind,
        // are then rejected as out of order, and that push stores nothing.
        let rejected = counters(&a).await.1 - rejected_before;
        // (g2) Issue 15, item 4: one device (a gateway forwarding a backlog)
        // with all of them in flight, beside the pushes of as many devices
        // above. Each push's 10 samples span 10 ms, the next push's follow:
        // the pushes in flight span less than the stream's 2-s reorder
        // tolerance, so the order they arrive in rejects none.
        let gateway = gql(&c, &a, &patient, "mutation { registerDevice(patientId: \"p-1\", kind: \"gateway\") }", json!({}))
            .await["registerDevice"]
            .as_str()
            .unwrap()
            .to_owned();
        let before = counters(&a).await;
        let one_device = rate(&a, &patient, |i| {
            let base = t0 + 1_000_000.0 + i as f64 * 10.0;
            let samples: Vec<Value> = (0..10)
                .map(|k| json!({"metric": "HEART_RATE", "at": iso(base + f64::from(k)), "value": 72}))
                .collect();
            (
                "mutation($d: ID!, $s: [SampleInput!]!) { pushSamples(deviceId: $d, samples: $s) { accepted } }".into(),
                json!({"d": gateway, "s": samples}),
            )
        })
        .await;
        let after = counters(&a).await;
        println!(
            "(g) one node, {requests} requests, {in_flight} in flight, in {turns} turns: sendMessage {send:.0}/s \
             ({:.2} of `me`), pushSamples x10 {push:.0}/s ({:.2} of `me`; {rejected:.0} samples rejected); \
             baseline `me` query {me:.0}/s over {} requests (its turns {:.0}–{:.0}/s)",
            send / me,
            push / me,
            4 * requests,
            me_turns[0],
            me_turns[me_turns.len() - 1],
        );
        println!(
            "(g2) one node, one device with {in_flight} pushes in flight: pushSamples x10 {one_device:.0}/s \
             ({:.2} of {in_flight} devices with one each, above); {:.0} of {requests} pushes went to the stream \
             coalesced, {:.0} samples rejected",
            one_device / push,
            after.0 - before.0,
            after.1 - before.1,
        );
        let one = alert_latencies(&a, &a, &device).await;
        println!(
            "(h) alert latency, one node, {ALERTS} alerts: p50 {:?}, p99 {:?} (target p99 < 100 ms)",
            pct(&one, 0.5),
            pct(&one, 0.99)
        );
        drop(node);
        if std::env::var("CARDIO_BENCH_ONLY").as_deref() == Ok("one-node") {
            return;
        }

        // (h) across nodes: RabbitMQ + PostgreSQL, clinician elsewhere.
        let vhost = format!("cardio-bench-{}", uuid::Uuid::new_v4().simple());
        rabbitmqctl(&["add_vhost", &vhost]);
        rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
        let dbname = format!("cardio_test_apibench_{}", uuid::Uuid::new_v4().simple());
        let admin_db = cardio::store::Store::connect("postgres://postgres@127.0.0.1:5432/postgres").await.unwrap();
        admin_db.execute_admin(&format!("CREATE DATABASE {dbname}")).await.unwrap();
        let bus = format!("amqp://guest:guest@127.0.0.1:5672/{vhost}");
        let pg = format!("postgres://postgres@127.0.0.1:5432/{dbname}");
        let nodes: Vec<TestNode> = ["b1", "b2", "b3"]
            .iter()
            .map(|id| {
                start(
                    &[
                        ("CARDIO_NODE_ID", (*id).into()),
                        ("CARDIO_BUS_URL", bus.clone()),
                        ("CARDIO_DATABASE_URL", pg.clone()),
                        ("CARDIO_SHARDS", "32".into()),
                        ("CARDIO_HEARTBEAT", "200ms".into()),
                        ("CARDIO_LEASE", "1500ms".into()),
                    ],
                )
            })
            .collect();
        // Wait for a settled placement, then find the device's owner.
        let ops = token(Role::Ops, "ops-1");
        let c = awc::Client::new();
        let owner_of = |shard: u16| {
            let c = &c;
            let ops = &ops;
            let addr = nodes[0].addr.clone();
            async move {
                let v = gql(c, &addr, ops, "{ cluster { nodes { id status } shards { id owner } } }", json!({})).await;
                let up = v["cluster"]["nodes"].as_array().unwrap().iter().filter(|n| n["status"] == "UP").count();
                let owner = v["cluster"]["shards"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|s| s["id"] == shard)
                    .and_then(|s| s["owner"].as_str().map(str::to_owned));
                (up, owner)
            }
        };
        let device = people(&nodes[0].addr).await;
        let shard = cardio::cluster::shard_of(&cardio::registry::ActorId::new("device", &device).unwrap(), 32);
        let deadline = Instant::now() + Duration::from_secs(30);
        let owner = loop {
            if let (3, Some(o)) = owner_of(shard).await {
                if cardio::cluster::rank(shard, &["b1", "b2", "b3"])[0] == o {
                    break o;
                }
            }
            assert!(Instant::now() < deadline, "cluster did not settle");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let ids = ["b1", "b2", "b3"];
        let host = &nodes[ids.iter().position(|i| *i == owner).unwrap()];
        let watcher = &nodes[ids.iter().position(|i| *i != owner).unwrap()];
        let across = alert_latencies(&host.addr, &watcher.addr, &device).await;
        println!(
            "(h) alert latency across nodes (device on {owner}, clinician on another node), {ALERTS} alerts: \
             p50 {:?}, p99 {:?} (target p99 < 100 ms)",
            pct(&across, 0.5),
            pct(&across, 0.99)
        );
        drop(nodes);
        let _ = admin_db.execute_admin(&format!("DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")).await;
        let _ = Command::new("rabbitmqctl").args(["delete_vhost", &vhost]).output();
    });
}
