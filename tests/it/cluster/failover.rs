//! Failover as a client of the public API sees it (issue 16): three real
//! nodes with the node defaults (64 shards, 500 ms heartbeat, 3 s lease) on
//! RabbitMQ and PostgreSQL, consults with 10,000 lines of history, a
//! sustained load of chat and pushes through GraphQL, each op retried with
//! its idempotency key (on any live node) until acknowledged, and a node
//! killed with SIGKILL and restarted, again and again: each kill once the
//! cluster is formed (every node holds shards, none has a hand-over left),
//! so that it is a node of a running cluster that dies.
//!
//! Measured per affected actor (one whose shard the killed node owned): the
//! time from the kill to its next acknowledged op that a survivor applied
//! (journaled at a newer epoch of the shard than the dead node held); the
//! answer of the first op *sent* after the kill, one op's latency later, is
//! printed beside it, with the figures of each kill (and how many shards
//! its victim held) and the eight slowest actors: their shard (to match
//! with the nodes' `shard taken on delivery` log lines), when their op was
//! sent, which node acknowledged it, after how many sends; and the ops'
//! latency by when they were sent (an actor's first op, the others before
//! the first kill, within 1 s of a kill, in a rejoin, the rest).
//! Checked: that unavailability's p50, p99 and max; no op slower than 1 s
//! while a restarted node takes its shards back; and, at the end, every
//! acknowledged chat line and sample stored exactly once, in order.
//!
//! `CARDIO_FAILOVER_KILLS` and `CARDIO_FAILOVER_HISTORY` change the number
//! of kills (10) and the history of each consult (10,000 lines) for longer
//! runs by hand. The load is set by `CARDIO_FAILOVER_CONSULTS` and
//! `CARDIO_FAILOVER_DEVICES` (6 each), `CARDIO_FAILOVER_PACE_MS` (0: each
//! actor's next op is sent when its last is acknowledged; N: one op every N
//! ms per actor at most) and `CARDIO_FAILOVER_SAMPLES` (samples a push, 1),
//! so that the same checks run by hand at a fleet's load, e.g. 1,000 devices
//! pushing 50 samples once a second (BENCHMARKS.md). Above the default
//! load the nodes' per-address limits are raised, as for `cardio simulate`:
//! every simulated client comes from this one address.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cardio::actors::consult::state::{Command as ConsultCommand, Consult, Event, Party};
use cardio::principal::Role;
use cardio::registry::ActorId;
use cardio::store::{Appended, Store};
use serde_json::{json, Value};

use crate::api::{device_of, people, token, SECRET};
use crate::broker::Vhost;
use crate::store::TestDb;
use crate::support::node::TestNode;
use crate::support::poll::poll_until;

/// The node default.
const SHARDS: u16 = 64;
/// The suite's load: consults chatting, devices pushing.
const CONSULTS: usize = 6;
const DEVICES: usize = 6;

/// The load the nodes are under (see the module's header).
#[derive(Clone, Copy)]
struct Load {
    consults: usize,
    devices: usize,
    /// At most one op per actor this often (zero: back to back).
    pace: Duration,
    /// Samples in a push, spread over its second of device time.
    samples: usize,
}

impl Load {
    fn from_env() -> Load {
        Load {
            consults: setting("CARDIO_FAILOVER_CONSULTS", CONSULTS),
            devices: setting("CARDIO_FAILOVER_DEVICES", DEVICES),
            pace: Duration::from_millis(setting("CARDIO_FAILOVER_PACE_MS", 0) as u64),
            samples: setting("CARDIO_FAILOVER_SAMPLES", 1).max(1),
        }
    }

    /// More clients than the suite's, all from this one address.
    fn heavy(&self) -> bool {
        self.consults > CONSULTS || self.devices > DEVICES
    }

    /// When the `i`th of `n` drivers sends its first op: spread over one
    /// pace, so that paced drivers do not all send in the same instant.
    fn first_at(&self, i: usize, n: usize) -> Instant {
        Instant::now() + self.pace.mul_f64(i as f64 / n.max(1) as f64)
    }
}

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A node with the node defaults (only what a cluster needs is set; under a
/// heavy load, also the per-address limits).
fn node(id: &str, bus: &str, db: &str, load: Load) -> TestNode {
    let spec = TestNode::serve();
    let spec = if load.heavy() {
        spec.env("CARDIO_RATE_LIMIT", "1000000")
            .env("CARDIO_MAX_HTTP_PER_IP", "10000")
            .env("CARDIO_MAX_HTTP_PER_PRINCIPAL", "10000")
    } else {
        spec
    };
    spec.name(id)
        .ready_within(Duration::from_secs(60))
        .lifetime(Duration::from_secs(900))
        .env("CARDIO_NODE_ID", id)
        .env("CARDIO_BUS_URL", bus)
        .env("CARDIO_DATABASE_URL", db)
        .env("CARDIO_LOG_FILTER", "warn,cardio=info")
        .env("CARDIO_JWT_SECRET", SECRET)
        .start()
}

/// Owner of each shard in `addr`'s view, once every shard has a live owner
/// and `ids` are all `up`.
async fn owners(addr: &str, ids: &[&str]) -> Option<BTreeMap<u16, (String, u64)>> {
    let v = super::get(&format!("http://{addr}/debug/cluster")).await?;
    let up: BTreeSet<&str> = v["nodes"]
        .as_array()?
        .iter()
        .filter(|n| n["status"] == "up")
        .filter_map(|n| n["id"].as_str())
        .collect();
    if ids.iter().any(|i| !up.contains(i)) {
        return None;
    }
    let mut out = BTreeMap::new();
    for s in v["shards"].as_array()? {
        if s["owner_live"] != true {
            return None;
        }
        out.insert(
            s["id"].as_u64()? as u16,
            (s["owner"].as_str()?.to_owned(), s["epoch"].as_u64()?),
        );
    }
    (out.len() == SHARDS as usize).then_some(out)
}

/// Whether the cluster of `nodes` is formed: each node holds shards and has
/// no hand-over left to make. Until then the first node up holds most
/// shards, and a kill measures the cluster forming rather than a node of a
/// running cluster dying.
async fn balanced(nodes: &[TestNode]) -> Option<()> {
    for n in nodes {
        let v = super::cluster_view(n).await?;
        let me = v["node"].as_str()?;
        let held = v["shards"]
            .as_array()?
            .iter()
            .filter(|s| s["owner"] == me)
            .count();
        if held == 0 || v["handovers_pending"].as_u64()? > 0 {
            return None;
        }
    }
    Some(())
}

/// Where the ops go: the nodes alive now (a killed node's address leaves
/// before the kill and a restarted node's joins once it is up).
#[derive(Default)]
struct Targets {
    addrs: Mutex<Vec<String>>,
    next: std::sync::atomic::AtomicUsize,
}

impl Targets {
    fn pick(&self) -> String {
        let addrs = self.addrs.lock().unwrap();
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        addrs[i % addrs.len()].clone()
    }
}

/// One acknowledged op: which actor, when it was first sent, when it was
/// acknowledged, and (chat) the sequence it got.
#[derive(Clone)]
struct Op {
    actor: String,
    key: String,
    sent: Instant,
    acked: Instant,
    seq: Option<u64>,
    /// Sends until acknowledged, and the node that acknowledged it.
    tries: u32,
    by: String,
}

/// A driver's HTTP client (its connections kept alive between ops).
fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(15))
        .finish()
}

/// Sends `query` until a node acknowledges it (a transient failure, or a
/// node gone, is sent again, to the next node, 25 ms later); its data,
/// the number of sends and the node that acknowledged it.
async fn until_acked(
    client: &awc::Client,
    targets: &Targets,
    tok: &str,
    query: &str,
    vars: &Value,
) -> (Value, u32, String) {
    let body = json!({"query": query, "variables": vars}).to_string();
    let give_up = Instant::now() + Duration::from_secs(120);
    let mut tries = 0;
    loop {
        tries += 1;
        assert!(Instant::now() < give_up, "an op not acknowledged in 120 s");
        let addr = targets.pick();
        let sent = client
            .post(format!("http://{addr}/graphql"))
            .insert_header(("content-type", "application/json"))
            .insert_header(("authorization", format!("Bearer {tok}")))
            .send_body(body.clone())
            .await;
        if let Ok(mut res) = sent {
            if res.status().as_u16() == 200 {
                if let Ok(v) = res.json::<Value>().limit(1 << 20).await {
                    match v["errors"][0]["extensions"]["code"].as_str() {
                        None => return (v["data"].clone(), tries, addr),
                        Some("UNAVAILABLE" | "TIMEOUT") => {}
                        Some(code) => panic!("an op refused with {code}: {v}"),
                    }
                }
            }
        }
        actix_rt::time::sleep(Duration::from_millis(25)).await;
    }
}

const CHAT: &str =
    "mutation($c: ID!, $m: String!, $t: String!) { sendMessage(consultId: $c, clientMessageId: $m, text: $t) }";
const PUSH: &str = "mutation($d: ID!, $s: [SampleInput!]!, $r: String) { pushSamples(deviceId: $d, samples: $s, requestId: $r) { accepted duplicate rejections { reason } } }";

/// Waits for `at`, the time of a paced driver's next op, then moves it on
/// by one pace (back to back when the load has no pace).
async fn next_op(at: &mut Instant, load: Load) {
    if !load.pace.is_zero() {
        actix_rt::time::sleep_until((*at).into()).await;
        *at += load.pace;
    }
}

/// Chats in `consult` as its patient, one line after the other, until `stop`;
/// the first line at `first`.
async fn drive_chat(
    targets: Arc<Targets>,
    consult: String,
    patient: String,
    (load, mut first): (Load, Instant),
    stop: Arc<AtomicBool>,
    ops: Arc<Mutex<Vec<Op>>>,
) {
    let tok = token(Role::Patient, &patient);
    let client = client();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        next_op(&mut first, load).await;
        n += 1;
        let key = format!("op-{n}");
        let vars = json!({"c": consult, "m": key, "t": format!("line {n}")});
        let sent = Instant::now();
        let (data, tries, by) = until_acked(&client, &targets, &tok, CHAT, &vars).await;
        let seq = data["sendMessage"].as_u64().expect("a sequence");
        ops.lock().unwrap().push(Op {
            actor: format!("consult/{consult}"),
            key,
            sent,
            acked: Instant::now(),
            seq: Some(seq),
            tries,
            by,
        });
    }
}

/// Pushes heart-rate samples, a second of device time a request (one second
/// after the other, starting three hours ago), for `device` of `patient`,
/// until `stop`; the first push at `first`.
async fn drive_device(
    targets: Arc<Targets>,
    device: String,
    patient: String,
    (load, mut first): (Load, Instant),
    stop: Arc<AtomicBool>,
    ops: Arc<Mutex<Vec<Op>>>,
) {
    let tok = token(Role::Patient, &patient);
    let client = client();
    let base = crate::api::now_ms() - 3.0 * 3_600_000.0;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        next_op(&mut first, load).await;
        n += 1;
        let at = base + n as f64 * 1_000.0;
        let key = format!("{}", at as u64);
        let samples: Vec<Value> = (0..load.samples)
            .map(|i| crate::api::hr(at + (i * 1_000 / load.samples) as f64, 72.0))
            .collect();
        let vars = json!({"d": device, "s": samples, "r": format!("push-{n}")});
        let sent = Instant::now();
        let (data, tries, by) = until_acked(&client, &targets, &tok, PUSH, &vars).await;
        let r = &data["pushSamples"];
        // Stored now, or by an earlier try whose answer was lost (the request
        // id, or the samples' own times, tell).
        assert!(
            r["accepted"] == load.samples
                || r["duplicate"] == true
                || r["rejections"].as_array().is_some_and(|v| {
                    v.len() == load.samples && v.iter().all(|x| x["reason"] == "DUPLICATE")
                }),
            "{r}"
        );
        ops.lock().unwrap().push(Op {
            actor: format!("device/{device}"),
            key,
            sent,
            acked: Instant::now(),
            seq: None,
            tries,
            by,
        });
    }
}

/// Writes a consult's journal as its actor would have: requested, both
/// parties joined, then `lines` chat lines, each through the consult's own
/// decide/apply, with the actor's message ids.
async fn seed_history(store: &Store, consult: &str, patient: &str, clinician: &str, lines: usize) {
    let key = format!("consult/{consult}");
    let now = cardio::clock::unix_ms() - 3_600_000;
    let mut state = Consult::default();
    let mut seq = 0u64;
    let mut commands = vec![
        (
            format!("request-{consult}"),
            ConsultCommand::Request {
                patient: patient.to_owned(),
                reason: "history".into(),
            },
        ),
        (
            format!("join-p-{consult}"),
            ConsultCommand::Join {
                who: Party::Patient(patient.to_owned()),
            },
        ),
        (
            format!("join-c-{consult}"),
            ConsultCommand::Join {
                who: Party::Clinician(clinician.to_owned()),
            },
        ),
    ];
    commands.extend((0..lines).map(|i| {
        let who = if i % 2 == 0 {
            Party::Patient(patient.to_owned())
        } else {
            Party::Clinician(clinician.to_owned())
        };
        let subject = match &who {
            Party::Patient(s) | Party::Clinician(s) => s.clone(),
        };
        (
            format!("chat-{subject}-seed-{i}"),
            ConsultCommand::Chat {
                who,
                client_message_id: format!("seed-{i}"),
                text: format!("history line {i}"),
            },
        )
    }));
    for (i, (request_id, command)) in commands.into_iter().enumerate() {
        let (events, _) = state
            .decide(&command, now + i as u64)
            .expect("a valid history");
        for (j, event) in events.iter().enumerate() {
            let message_id = if j == 0 {
                request_id.clone()
            } else {
                format!("{request_id}#{j}")
            };
            let payload = serde_json::to_vec(event).unwrap();
            match store.append(&key, seq, &message_id, 0, &payload).await {
                Ok(Appended::Written { seq: s }) => seq = s,
                other => panic!("seeding {consult}: {other:?}"),
            }
            state.apply(event);
        }
    }
}

/// The shard of `actor` (a journal key such as `device/…`).
fn shard(actor: &str) -> u16 {
    cardio::cluster::shard_of(&actor.parse::<ActorId>().unwrap(), SHARDS)
}

/// Nearest-rank percentile of sorted `v`.
fn pct(v: &[Duration], p: f64) -> Duration {
    let i = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[i.clamp(1, v.len()) - 1]
}

/// "p50 … p99 … max …" of sorted, non-empty `v`.
fn spread(v: &[Duration]) -> String {
    format!(
        "p50 {:?} p99 {:?} max {:?}",
        pct(v, 50.0),
        pct(v, 99.0),
        v.last().unwrap()
    )
}

/// Prints the ops' latency by when they were sent: an actor's first op (it
/// starts, and a consult reads its history), the others before the first
/// kill, within a second of a kill, in a window where a restarted node
/// takes its shards back, and the rest (steady load between kills). Output
/// only: it tells which part makes the overall p99.
fn latency_classes(
    ops: &[Op],
    killed_at: &[(Instant, Vec<(String, u64)>)],
    rejoins: &[(Instant, Instant)],
) {
    let mut seen = BTreeSet::new();
    let mut classes: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    let mut by_sent: Vec<&Op> = ops.iter().collect();
    by_sent.sort_by_key(|o| o.sent);
    for o in by_sent {
        let class = if seen.insert(o.actor.as_str()) {
            "an actor's first op"
        } else if killed_at.first().is_none_or(|(k, _)| o.sent < *k) {
            "the others sent before the first kill"
        } else if killed_at
            .iter()
            .any(|(k, _)| o.sent >= *k && o.sent < *k + Duration::from_secs(1))
        {
            "sent within 1 s of a kill"
        } else if rejoins.iter().any(|(a, b)| o.sent >= *a && o.sent <= *b) {
            "sent while a node rejoined"
        } else {
            "the rest"
        };
        classes.entry(class).or_default().push(o.acked - o.sent);
    }
    for (class, mut l) in classes {
        l.sort();
        eprintln!("latency of {class}: {} ops, {}", l.len(), spread(&l));
    }
}

#[actix_rt::test]
async fn clients_barely_notice_a_killed_node_with_long_histories_and_node_defaults() {
    needs!(Cluster);
    let _broker = crate::broker::shared().await;
    let kills = setting("CARDIO_FAILOVER_KILLS", 10);
    let history = setting("CARDIO_FAILOVER_HISTORY", 10_000);
    let load = Load::from_env();
    let db = TestDb::postgres_empty().await;
    let vhost = Vhost::new();
    let (bus, url) = (vhost.url(), db.url().to_owned());
    let ids = ["n1", "n2", "n3"];
    // Consults with long histories, written as their actors would have
    // written them, before the nodes start. Commits need not wait for the
    // disk while seeding (a setting of this database's new sessions only,
    // reset before any node connects).
    let consults: Vec<(String, String)> = (0..load.consults)
        .map(|i| (format!("fc-{i}"), format!("fp-{i}")))
        .collect();
    let name = url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let seeding = Instant::now();
    {
        let admin = Store::connect(&url).await.unwrap();
        admin.migrate().await.unwrap();
        admin
            .execute_admin(&format!(
                "ALTER DATABASE {name} SET synchronous_commit = off"
            ))
            .await
            .unwrap();
        let seeder = crate::support::node::keyed_store(&url).await;
        futures_util::future::join_all(
            consults
                .iter()
                .map(|(c, p)| seed_history(&seeder, c, p, "fdr-1", history)),
        )
        .await;
        seeder.close().await;
        admin
            .execute_admin(&format!("ALTER DATABASE {name} RESET synchronous_commit"))
            .await
            .unwrap();
        admin.close().await;
    }
    eprintln!(
        "seeded {} consults of {history} lines in {:?}",
        load.consults,
        seeding.elapsed()
    );
    let mut nodes: Vec<TestNode> = ids.iter().map(|id| node(id, &bus, &url, load)).collect();
    let first = nodes[0].addr.clone();
    poll_until(
        "three nodes up",
        Duration::from_secs(60),
        Duration::from_millis(200),
        async || owners(&first, &ids).await,
    )
    .await;
    let patients: Vec<String> = (0..load.consults.max(load.devices))
        .map(|i| format!("fp-{i}"))
        .collect();
    let p: Vec<&str> = patients.iter().map(String::as_str).collect();
    let team: Vec<(&str, &str)> = p.iter().map(|p| (*p, "fdr-1")).collect();
    people(&first, &p, &["fdr-1"], &team).await;
    let mut devices = Vec::new();
    for patient in patients.iter().take(load.devices) {
        devices.push((device_of(&first, patient, "monitor").await, patient.clone()));
    }
    let store = crate::support::node::keyed_store(&url).await;

    let targets = Arc::new(Targets::default());
    *targets.addrs.lock().unwrap() = nodes.iter().map(|n| n.addr.clone()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let ops: Arc<Mutex<Vec<Op>>> = Arc::default();
    let mut drivers = Vec::new();
    let n = consults.len() + devices.len();
    for (i, (c, p)) in consults.iter().enumerate() {
        drivers.push(actix_rt::spawn(drive_chat(
            Arc::clone(&targets),
            c.clone(),
            p.clone(),
            (load, load.first_at(i, n)),
            Arc::clone(&stop),
            Arc::clone(&ops),
        )));
    }
    for (i, (d, p)) in devices.iter().enumerate() {
        drivers.push(actix_rt::spawn(drive_device(
            Arc::clone(&targets),
            d.clone(),
            p.clone(),
            (load, load.first_at(consults.len() + i, n)),
            Arc::clone(&stop),
            Arc::clone(&ops),
        )));
    }
    let actors: Vec<String> = consults
        .iter()
        .map(|(c, _)| format!("consult/{c}"))
        .chain(devices.iter().map(|(d, _)| format!("device/{d}")))
        .collect();
    // Warm: every actor answered (the consults recovered their history once).
    poll_until(
        "every actor answering",
        Duration::from_secs(120),
        Duration::from_millis(200),
        async || {
            let ops = ops.lock().unwrap();
            let seen: BTreeSet<&str> = ops.iter().map(|o| o.actor.as_str()).collect();
            actors.iter().all(|a| seen.contains(a.as_str()))
        },
    )
    .await;

    // Per kill: when, and each affected actor with its shard's epoch then.
    let mut killed_at: Vec<(Instant, Vec<(String, u64)>)> = Vec::new();
    // Kill to the answer of the first op sent after it (a bound from above).
    let mut sent_after: Vec<Duration> = Vec::new();
    let mut rejoin_windows: Vec<(Instant, Instant)> = Vec::new();
    for k in 0..kills {
        let victim = k % 3;
        let watcher = (victim + 1) % 3;
        let watch_addr = nodes[watcher].addr.clone();
        let placement = poll_until(
            "placement settled",
            Duration::from_secs(90),
            Duration::from_millis(200),
            async || {
                balanced(&nodes).await?;
                owners(&watch_addr, &ids).await
            },
        )
        .await;
        // Steady load for a moment before the kill.
        let mark = ops.lock().unwrap().len();
        poll_until(
            "steady load",
            Duration::from_secs(30),
            Duration::from_millis(50),
            async || ops.lock().unwrap().len() >= mark + 40,
        )
        .await;
        let affected: Vec<&String> = actors
            .iter()
            .filter(|a| placement[&shard(a)].0 == ids[victim])
            .collect();
        targets
            .addrs
            .lock()
            .unwrap()
            .retain(|a| *a != nodes[victim].addr);
        // Ops acknowledged before this index were acknowledged (so sent)
        // before the kill.
        let mut scanned = ops.lock().unwrap().len();
        let killed = Instant::now();
        nodes[victim].signal("-KILL");
        nodes[victim].wait();
        // Each affected actor's first op sent after the kill, answered (the
        // ops are in the order of their answers: each poll reads the new).
        let mut waits: HashMap<&String, Duration> = HashMap::new();
        poll_until(
            "every affected actor answering again",
            Duration::from_secs(60),
            Duration::from_millis(20),
            async || {
                let ops = ops.lock().unwrap();
                for o in &ops[scanned..] {
                    if o.sent >= killed {
                        if let Some(a) = affected.iter().find(|a| ***a == o.actor) {
                            waits.entry(*a).or_insert(o.acked - killed);
                        }
                    }
                }
                scanned = ops.len();
                waits.len() == affected.len()
            },
        )
        .await;
        let worst = waits.values().max().copied().unwrap_or_default();
        eprintln!(
            "kill {k} of {} (holding {} of {SHARDS} shards): {} affected actors, the first op sent \
             after the kill answered within {worst:?}",
            ids[victim],
            placement.values().filter(|(o, _)| o == ids[victim]).count(),
            affected.len()
        );
        sent_after.extend(waits.values());
        killed_at.push((
            killed,
            affected
                .iter()
                .map(|a| ((*a).clone(), placement[&shard(a)].1))
                .collect::<Vec<_>>(),
        ));
        if std::env::var_os("CARDIO_FAILOVER_DETAIL").is_some() {
            let ops = ops.lock().unwrap();
            for a in &affected {
                let inflight = ops
                    .iter()
                    .find(|o| &&o.actor == a && o.sent < killed && o.acked >= killed);
                let next = ops.iter().find(|o| &&o.actor == a && o.sent >= killed);
                eprintln!(
                    "  {a}: in flight at the kill answered after {:?} (sent {:?} before); next op took {:?}",
                    inflight.map(|o| o.acked - killed),
                    inflight.map(|o| killed - o.sent),
                    next.map(|o| o.acked - o.sent)
                );
            }
        }
        // Restarted: it takes its shards back while the load goes on.
        nodes[victim] = node(ids[victim], &bus, &url, load);
        let back = Instant::now();
        targets
            .addrs
            .lock()
            .unwrap()
            .push(nodes[victim].addr.clone());
        let watch_addr = nodes[watcher].addr.clone();
        poll_until(
            "the restarted node up",
            Duration::from_secs(60),
            Duration::from_millis(200),
            async || owners(&watch_addr, &ids).await,
        )
        .await;
        // Give the hand-back time to finish before the window closes.
        let until = Instant::now() + Duration::from_secs(5);
        poll_until(
            "hand-back window",
            Duration::from_secs(10),
            Duration::from_millis(100),
            async || Instant::now() >= until,
        )
        .await;
        rejoin_windows.push((back, Instant::now()));
    }
    stop.store(true, Ordering::Relaxed);
    for d in drivers {
        d.await.expect("a load driver failed");
    }

    let ops = std::mem::take(&mut *ops.lock().unwrap());
    let mut latencies: Vec<Duration> = ops.iter().map(|o| o.acked - o.sent).collect();
    latencies.sort();
    let slow_in_rejoin: Vec<Duration> = ops
        .iter()
        .filter(|o| {
            rejoin_windows
                .iter()
                .any(|(a, b)| o.sent >= *a && o.sent <= *b)
        })
        .map(|o| o.acked - o.sent)
        .filter(|l| *l > Duration::from_secs(1))
        .collect();
    latency_classes(&ops, &killed_at, &rejoin_windows);
    // Exactly once, in order: what the journals hold against what was
    // acknowledged.
    // Which epoch applied each acknowledged op (its journal entry's).
    let mut applied_at: HashMap<(String, String), u64> = HashMap::new();
    let mut by_actor: HashMap<&str, Vec<&Op>> = HashMap::new();
    for o in &ops {
        by_actor.entry(o.actor.as_str()).or_default().push(o);
    }
    let ops_of = |a: &str| by_actor.get(a).map_or(&[][..], Vec::as_slice);
    for a in &actors {
        let mine = ops_of(a);
        let events = store.events(a, 0).await.unwrap();
        if a.starts_with("consult/") {
            let mut stored: Vec<(u64, String)> = Vec::new();
            for e in &events {
                if let Ok(Event::Chatted { line }) = serde_json::from_slice::<Event>(&e.payload) {
                    if line.client_message_id.starts_with("op-") {
                        stored.push((line.seq, line.client_message_id.clone()));
                        applied_at.insert((a.clone(), line.client_message_id.clone()), e.epoch);
                    }
                }
            }
            let unique: BTreeSet<&str> = stored.iter().map(|(_, k)| k.as_str()).collect();
            assert_eq!(unique.len(), stored.len(), "{a}: a chat line stored twice");
            for o in mine {
                assert!(
                    unique.contains(o.key.as_str()),
                    "{a}: acknowledged {} lost",
                    o.key
                );
                let at = stored.iter().find(|(_, k)| *k == o.key).unwrap().0;
                assert_eq!(Some(at), o.seq, "{a}: {} answered another sequence", o.key);
            }
            let seqs: Vec<u64> = mine.iter().filter_map(|o| o.seq).collect();
            assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{a}: out of order");
        } else {
            let mut stamps = Vec::new();
            for e in &events {
                let batch: Vec<cardio::actors::device::sample::Sample> =
                    serde_json::from_slice(&e.payload).unwrap();
                stamps.extend(batch.iter().map(|s| s.at_ms()));
                for sample in &batch {
                    applied_at.insert((a.clone(), sample.at_ms().to_string()), e.epoch);
                }
            }
            let unique: BTreeSet<u64> = stamps.iter().copied().collect();
            assert_eq!(unique.len(), stamps.len(), "{a}: a sample stored twice");
            for o in mine {
                assert!(
                    unique.contains(&o.key.parse::<u64>().unwrap()),
                    "{a}: acknowledged sample {} lost",
                    o.key
                );
            }
        }
    }

    // Unavailability per affected actor: from the kill to the first op
    // acknowledged after it that a survivor applied (its journal entry is at
    // a newer epoch of the shard than the dead node's), so that an op the
    // dead node applied just before dying does not count as served. Under a
    // paced load an actor is not asked between its ops: then it counts from
    // the kill or, if that op was sent after the kill, from its sending.
    // Each with what says where the time went: (wait, actor, kill, op).
    let mut slowest: Vec<(Duration, &str, usize, &Op)> = Vec::new();
    for (k, (killed, affected)) in killed_at.iter().enumerate() {
        for (actor, epoch) in affected {
            let back = ops_of(actor)
                .iter()
                .filter(|o| o.acked >= *killed)
                .filter(|o| {
                    applied_at
                        .get(&(actor.clone(), o.key.clone()))
                        .is_some_and(|e| e > epoch)
                })
                .min_by_key(|o| o.acked)
                .unwrap_or_else(|| panic!("{actor}: no op applied by a survivor after a kill"));
            let from = if load.pace.is_zero() {
                *killed
            } else {
                back.sent.max(*killed)
            };
            slowest.push((back.acked - from, actor, k, back));
        }
    }
    for k in 0..killed_at.len() {
        let mut of_kill: Vec<Duration> = slowest.iter().filter(|s| s.2 == k).map(|s| s.0).collect();
        of_kill.sort();
        eprintln!("kill {k}: unavailability {}", spread(&of_kill));
    }
    slowest.sort_by_key(|s| std::cmp::Reverse(s.0));
    for (wait, actor, k, op) in slowest.iter().take(8) {
        let killed = killed_at[*k].0;
        eprintln!(
            "slow: {actor} (shard {}) kill {k}: {wait:?}, sent {:?} after the kill, acknowledged by {} \
             after {} sends",
            shard(actor),
            op.sent.saturating_duration_since(killed),
            op.by,
            op.tries,
        );
    }
    let mut unavailable: Vec<Duration> = slowest.iter().map(|s| s.0).collect();
    unavailable.sort();
    sent_after.sort();
    assert!(
        unavailable.len() >= kills,
        "{} affected actors over {kills} kills",
        unavailable.len()
    );
    let (p50, p99, max) = (
        pct(&unavailable, 50.0),
        pct(&unavailable, 99.0),
        *unavailable.last().unwrap(),
    );
    eprintln!(
        "failover through the API, {kills} kills, {} affected actors, {history}-line consults \
         (load: {} consults, {} devices, one op every {:?} per actor, {} samples a push): \
         unavailability p50 {p50:?} p99 {p99:?} max {max:?} (to the first op sent after the kill: \
         p50 {:?} max {:?}); {} ops, latency {}; \
         ops over 1 s while a node rejoined: {} (max {:?})",
        unavailable.len(),
        load.consults,
        load.devices,
        load.pace,
        load.samples,
        pct(&sent_after, 50.0),
        sent_after.last().unwrap(),
        ops.len(),
        spread(&latencies),
        slow_in_rejoin.len(),
        slow_in_rejoin.iter().max(),
    );
    assert!(
        p50 < Duration::from_millis(300),
        "unavailability p50 {p50:?}"
    );
    assert!(p99 < Duration::from_secs(1), "unavailability p99 {p99:?}");
    assert!(max < Duration::from_secs(2), "unavailability max {max:?}");
    assert!(
        slow_in_rejoin.is_empty(),
        "ops over 1 s while a node took its shards back: {slow_in_rejoin:?}"
    );
    store.close().await;
    drop(nodes);
    db.done().await;
}
