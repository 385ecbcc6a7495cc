//! Real `cardio serve` processes forming a cluster over the machine's
//! RabbitMQ (a virtual host per test) and PostgreSQL (a database per test),
//! tier `cluster`: failover after SIGKILL, rejoin, broker restart, poison
//! messages.

mod failover;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cardio::actors::consult::state::{Command as ConsultCommand, Party};
use cardio::actors::consult::{Act, View};
use cardio::actors::device::sample::Sample;
use cardio::actors::device::stream::Push;
use cardio::bus::client::Requester;
use cardio::bus::{Bus, BusOptions};
use cardio::registry::ActorId;
use cardio::store::Store;
use serde_json::Value;

use crate::broker::Vhost;
use crate::store::TestDb;
use crate::support::node::TestNode;
use crate::support::poll::poll_until;

const BIN: &str = env!("CARGO_BIN_EXE_cardio");
const SHARDS: u16 = 32;
/// How often the tests look at the cluster while they wait for it.
const EVERY: Duration = Duration::from_millis(100);
/// How long a request is retried (while shards move, a node is away, the
/// broker restarts), and how often.
const RETRY_FOR: Duration = Duration::from_secs(90);
const RETRY_EVERY: Duration = Duration::from_millis(50);

struct Cluster {
    vhost: Vhost,
    db_url: String,
}

impl Cluster {
    /// A cluster's vhost and database; the test holds `db` to drop it after.
    async fn new() -> (Cluster, TestDb) {
        let db = TestDb::postgres_empty().await;
        let cluster = Cluster {
            vhost: Vhost::new(),
            db_url: db.url().to_owned(),
        };
        (cluster, db)
    }

    /// A client of the cluster: a bus connection and a requester on it.
    async fn client(&self) -> (Arc<dyn Bus>, Arc<Requester>) {
        let bus: Arc<dyn Bus> = Arc::new(
            self.vhost
                .bus(BusOptions {
                    shards: SHARDS,
                    ..BusOptions::default()
                })
                .await,
        );
        let req = Requester::new(Arc::clone(&bus)).await.unwrap();
        (bus, Arc::new(req))
    }

    fn start(&self, id: &str) -> TestNode {
        self.start_on(id, &self.vhost.url())
    }

    /// A node reaching the broker at `bus_url` (through a proxy, say).
    fn start_on(&self, id: &str, bus_url: &str) -> TestNode {
        self.start_with(id, bus_url, &[])
    }

    /// A node with settings of its own on top of the test cluster's.
    fn start_with(&self, id: &str, bus_url: &str, envs: &[(&str, &str)]) -> TestNode {
        TestNode::serve()
            .name(id)
            .ready_within(Duration::from_secs(60))
            .env("CARDIO_NODE_ID", id)
            .env("CARDIO_BUS_URL", bus_url)
            .env("CARDIO_DATABASE_URL", &self.db_url)
            .env("CARDIO_LOG_FILTER", "warn,cardio=info")
            .env("CARDIO_SHARDS", SHARDS.to_string())
            .env("CARDIO_HEARTBEAT", "200ms")
            .env("CARDIO_LEASE", "1500ms")
            .env("CARDIO_ALERT_SUSTAIN", "5s")
            .env("CARDIO_JWT_SECRET", crate::api::SECRET)
            .env("CARDIO_SHUTDOWN_GRACE", "10s")
            .envs(envs.iter().copied())
            .start()
    }
}

/// GETs `url` with an ops token (the /debug views need one).
async fn get(url: &str) -> Option<Value> {
    let ops = crate::api::token(cardio::principal::Role::Ops, "ops-test");
    let mut res = awc::Client::new()
        .get(url)
        .insert_header(("authorization", format!("Bearer {ops}")))
        .send()
        .await
        .ok()?;
    res.json::<Value>().limit(1 << 20).await.ok()
}

async fn cluster_view(p: &TestNode) -> Option<Value> {
    get(&format!("http://{}/debug/cluster", p.addr)).await
}

/// Owner of each shard as `p` sees it, once every shard is owned by the live
/// node among `alive` that ranks first for it (the balanced placement).
async fn settled(p: &TestNode, alive: &[&str]) -> Option<BTreeMap<u64, String>> {
    let v = cluster_view(p).await?;
    let shards = v["shards"].as_array()?;
    if shards.len() != SHARDS as usize {
        return None;
    }
    let mut owners = BTreeMap::new();
    for s in shards {
        let owner = s["owner"].as_str()?;
        let id = s["id"].as_u64()? as u16;
        if cardio::cluster::rank(id, alive)[0] != owner || s["owner_live"] != true {
            return None;
        }
        owners.insert(s["id"].as_u64()?, owner.to_owned());
    }
    let up = v["nodes"]
        .as_array()?
        .iter()
        .filter(|n| n["status"] == "up")
        .count();
    (up == alive.len()).then_some(owners)
}

/// Prints what the nodes logged about `shard` (claims, hand-overs, losses)
/// and about their bus connections, in time order: how a shard moved.
fn print_shard_story(shard: u64, logs: impl Iterator<Item = (String, Vec<String>)>) {
    let mut lines: Vec<(String, String)> = Vec::new();
    for (node, log) in logs {
        for line in log {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let about_shard = v["shard"].as_u64() == Some(shard)
                || v["shards"].as_str().is_some_and(|l| {
                    l.trim_matches(|c| c == '[' || c == ']')
                        .split(", ")
                        .any(|s| s == shard.to_string())
                });
            let about_bus = v["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("cardio::bus"))
                || v["level"] != "INFO";
            if about_shard || about_bus {
                let at = v["timestamp"].as_str().unwrap_or("").to_owned();
                lines.push((at, format!("[{node}] {line}")));
            }
        }
    }
    lines.sort();
    eprintln!("--- shard {shard}, as the nodes told it:");
    for (_, l) in lines {
        eprintln!("{l}");
    }
}

/// Waits (30 s at most, then fails naming `what`) until `watcher` sees
/// every shard on its first-ranked node among `alive`; the placement.
async fn settle(watcher: &TestNode, alive: &[&str], what: &str) -> BTreeMap<u64, String> {
    poll_until(what, Duration::from_secs(30), EVERY, async || {
        settled(watcher, alive).await
    })
    .await
}

/// What the load drivers saw acknowledged.
#[derive(Default)]
struct Acked {
    /// consult → client message ids acknowledged.
    chat: HashMap<String, BTreeSet<String>>,
    /// device → sample timestamps acknowledged as stored.
    samples: HashMap<String, BTreeSet<u64>>,
    /// Each chat op as the client saw it: when it started, how long it took
    /// to be acknowledged (retries included).
    ops: Vec<(Instant, Duration)>,
}

async fn act(req: &Requester, consult: &str, request_id: &str, command: ConsultCommand) -> Value {
    let to = ActorId::new("consult", consult).unwrap();
    let msg = Act {
        request_id: request_id.to_owned(),
        command,
        audit: None,
    };
    poll_until(request_id, RETRY_FOR, RETRY_EVERY, async || {
        let v: Value = req
            .request(&to, "consult.act", &msg, Duration::from_secs(3))
            .await
            .map_err(|e| e.to_string())?;
        match &v {
            Value::Object(m) if m.contains_key("Ok") => Ok(v["Ok"].clone()),
            _ if v["Err"]["code"] == "unavailable" => Err("unavailable".to_owned()),
            _ => panic!("{request_id}: refused: {v}"),
        }
    })
    .await
}

async fn drive_consult(
    req: Arc<Requester>,
    consult: String,
    lines: usize,
    acked: Arc<Mutex<Acked>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let patient = format!("p-{consult}");
    let clinician = format!("dr-{consult}");
    act(
        &req,
        &consult,
        &format!("{consult}-req"),
        ConsultCommand::Request {
            patient: patient.clone(),
            reason: "palpitations".into(),
        },
    )
    .await;
    for who in [
        Party::Patient(patient.clone()),
        Party::Clinician(clinician.clone()),
    ] {
        act(
            &req,
            &consult,
            &format!("{consult}-join-{who:?}"),
            ConsultCommand::Join { who },
        )
        .await;
    }
    for i in 0..lines {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        let who = if i % 2 == 0 {
            Party::Patient(patient.clone())
        } else {
            Party::Clinician(clinician.clone())
        };
        let client_id = format!("m{i}");
        let started = Instant::now();
        act(
            &req,
            &consult,
            &format!("{consult}-{client_id}"),
            ConsultCommand::Chat {
                who,
                client_message_id: client_id.clone(),
                text: format!("line {i}"),
            },
        )
        .await;
        let mut acked = acked.lock().unwrap();
        acked.ops.push((started, started.elapsed()));
        acked
            .chat
            .entry(consult.clone())
            .or_default()
            .insert(client_id);
    }
}

/// 10 heart-rate samples per batch, one per second of device time; a
/// tachycardia episode of 40 s in the middle raises one alert.
async fn drive_device(
    req: Arc<Requester>,
    device: String,
    batches: usize,
    acked: Arc<Mutex<Acked>>,
) {
    let to = ActorId::new("device", &device).unwrap();
    let start = cardio_now() - (batches as u64 * 10 + 60) * 1000;
    for b in 0..batches {
        let samples: Vec<Sample> = (0..10)
            .map(|i| {
                let n = (b * 10 + i) as u64;
                let bpm = if (100..140).contains(&n) { 150.0 } else { 72.0 };
                Sample::HeartRate {
                    at_ms: start + n * 1000,
                    bpm,
                }
            })
            .collect();
        let stamps: Vec<u64> = samples
            .iter()
            .map(|s| match s {
                Sample::HeartRate { at_ms, .. } => *at_ms,
                _ => unreachable!(),
            })
            .collect();
        let push = Push {
            request_id: format!("{device}-b{b}"),
            samples,
            audit: None,
        };
        let reply = poll_until(&push.request_id, RETRY_FOR, RETRY_EVERY, async || {
            let v: Value = req
                .request(&to, "device.push", &push, Duration::from_secs(3))
                .await
                .map_err(|e| e.to_string())?;
            if v.get("Ok").is_some() {
                Ok(v["Ok"].clone())
            } else {
                Err(format!("{v}"))
            }
        })
        .await;
        let accepted = reply["accepted"].as_u64().unwrap();
        let duplicates = reply["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r[1] == "duplicate"
                    || r[1]["reason"] == "duplicate"
                    || r.to_string().contains("uplicate")
            })
            .count() as u64;
        // Stored now, or stored by an earlier attempt whose reply was lost.
        assert!(
            accepted == 10 || reply["duplicate"] == true || accepted + duplicates == 10,
            "{device} batch {b}: {reply}"
        );
        acked
            .lock()
            .unwrap()
            .samples
            .entry(device.clone())
            .or_default()
            .extend(stamps);
    }
}

fn cardio_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Checks what the database holds against what was acknowledged.
async fn check_exactly_once(store: &Store, req: &Requester, acked: &Acked) {
    for (consult, sent) in &acked.chat {
        let to = ActorId::new("consult", consult).unwrap();
        let view: Value = poll_until("view", RETRY_FOR, RETRY_EVERY, async || {
            req.request(
                &to,
                "consult.view",
                &View { after: 0 },
                Duration::from_secs(3),
            )
            .await
            .map_err(|e| e.to_string())
        })
        .await;
        let lines = view["lines"].as_array().unwrap();
        let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
        let expected: Vec<u64> = (1..=lines.len() as u64).collect();
        assert_eq!(seqs, expected, "{consult}: chat sequences contiguous");
        let ids: Vec<&str> = lines
            .iter()
            .map(|l| l["client_message_id"].as_str().unwrap())
            .collect();
        let unique: BTreeSet<&str> = ids.iter().copied().collect();
        assert_eq!(ids.len(), unique.len(), "{consult}: a line twice");
        let sent: BTreeSet<&str> = sent.iter().map(String::as_str).collect();
        assert_eq!(
            unique, sent,
            "{consult}: acknowledged lines == stored lines"
        );
    }
    for (device, stamps) in &acked.samples {
        let key = format!("device/{device}");
        let mut stored = Vec::new();
        for e in store.events(&key, 0).await.unwrap() {
            let batch: Vec<Sample> = serde_json::from_slice(&e.payload).unwrap();
            stored.extend(batch.iter().map(|s| match s {
                Sample::HeartRate { at_ms, .. } => *at_ms,
                _ => unreachable!(),
            }));
        }
        let unique: BTreeSet<u64> = stored.iter().copied().collect();
        assert_eq!(
            stored.len(),
            unique.len(),
            "{device}: a sample stored twice"
        );
        assert_eq!(
            &unique, stamps,
            "{device}: acknowledged samples == stored samples"
        );
        let alerts = store.alerts(device).await.unwrap();
        assert_eq!(
            alerts.len(),
            1,
            "{device}: one tachycardia episode, one alert: {alerts:?}"
        );
    }
}

/// Every write was fenced (made under a claimed epoch, never 0) and the
/// epochs along each journal never go back. (The journal's own sequence check
/// already keeps two writers from interleaving; that fencing refuses a stale
/// owner's write is shown by `store::fencing`.)
async fn check_fencing(store: &Store, keys: &[String]) {
    for key in keys {
        let events = store.events(key, 0).await.unwrap();
        assert!(!events.is_empty(), "{key} has a journal");
        for w in events.windows(2) {
            assert!(
                w[0].epoch <= w[1].epoch,
                "{key}: epoch {} written after epoch {} (seq {})",
                w[1].epoch,
                w[0].epoch,
                w[1].seq
            );
        }
        assert!(events.iter().all(|e| e.epoch > 0), "{key}: unfenced write");
    }
}

/// Consult and device drivers running against a cluster.
struct Load {
    acked: Arc<Mutex<Acked>>,
    tasks: Vec<actix_rt::task::JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Load {
    /// `n` consults (`{prefix}c{i}`, `lines` chat lines each) and `n`
    /// devices (`{prefix}d{i}`, `batches` batches each).
    fn start(req: &Arc<Requester>, prefix: &str, n: usize, lines: usize, batches: usize) -> Load {
        let acked = Arc::new(Mutex::new(Acked::default()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for i in 0..n {
            let (r, a) = (Arc::clone(req), Arc::clone(&acked));
            tasks.push(actix_rt::spawn(drive_consult(
                r,
                format!("{prefix}c{i}"),
                lines,
                a,
                Arc::clone(&stop),
            )));
            let (r, a) = (Arc::clone(req), Arc::clone(&acked));
            tasks.push(actix_rt::spawn(drive_device(
                r,
                format!("{prefix}d{i}"),
                batches,
                a,
            )));
        }
        Load { acked, tasks, stop }
    }

    /// `n` consults chatting until [`Load::stop`] (no devices).
    fn chat_until_stopped(req: &Arc<Requester>, prefix: &str, n: usize) -> Load {
        let acked = Arc::new(Mutex::new(Acked::default()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks = (0..n)
            .map(|i| {
                actix_rt::spawn(drive_consult(
                    Arc::clone(req),
                    format!("{prefix}c{i}"),
                    usize::MAX,
                    Arc::clone(&acked),
                    Arc::clone(&stop),
                ))
            })
            .collect();
        Load { acked, tasks, stop }
    }

    /// Drivers finish the op in hand and end.
    fn stop(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Chat ops (start, latency) acknowledged so far.
    fn ops(&self) -> Vec<(Instant, Duration)> {
        self.acked.lock().unwrap().ops.clone()
    }

    /// Waits until `lines` chat lines in all were acknowledged.
    async fn until_chat(&self, lines: usize, what: &str) {
        poll_until(what, Duration::from_secs(60), EVERY, async || {
            let a = self.acked.lock().unwrap();
            a.chat.values().map(BTreeSet::len).sum::<usize>() >= lines
        })
        .await;
    }

    /// Stops every driver where it is.
    fn abort(self) {
        for task in self.tasks {
            task.abort();
        }
    }

    /// Waits for every driver to finish; what they saw acknowledged.
    async fn finish(self) -> Acked {
        for task in self.tasks {
            task.await.expect("a load driver failed");
        }
        std::mem::take(&mut *self.acked.lock().unwrap())
    }
}

/// The exactly-once and fencing checks of a finished load, on the cluster's
/// database.
async fn verify(db_url: &str, req: &Requester, acked: &Acked) {
    // The nodes sealed what they journaled: read it with their key file.
    let store = crate::support::node::keyed_store(db_url).await;
    check_exactly_once(&store, req, acked).await;
    let mut keys: Vec<String> = acked.chat.keys().map(|c| format!("consult/{c}")).collect();
    keys.extend(acked.samples.keys().map(|d| format!("device/{d}")));
    check_fencing(&store, &keys).await;
    store.close().await;
}

#[actix_rt::test]
async fn three_nodes_survive_a_sigkill_and_the_killed_node_rejoins() {
    needs!(Cluster);
    let _broker = crate::broker::shared().await;
    let (cluster, db) = Cluster::new().await;
    let mut nodes = vec![
        cluster.start("n1"),
        cluster.start("n2"),
        cluster.start("n3"),
    ];
    let ids = ["n1", "n2", "n3"];
    let before = settle(&nodes[0], &ids, "three nodes owning every shard").await;
    for id in ids {
        let n = before.values().filter(|o| *o == id).count();
        assert!(n >= 4, "{id} owns {n} of {SHARDS} shards: {before:?}");
    }

    let (client, req) = cluster.client().await;
    // A watcher elsewhere (as a clinician's API node would be) subscribes to
    // the alerts of every device and to one consult's events.
    let mut alerts = client.subscribe("alerts.*", 256).await.unwrap();
    // The node to kill: the one owning the most shards. Events of actors it
    // hosts may be lost with it (they are published after the fact is
    // durable, best effort), so the watcher checks actors elsewhere.
    let victim_idx = (0..3)
        .max_by_key(|i| before.values().filter(|o| *o == ids[*i]).count())
        .unwrap();
    let victim = ids[victim_idx];
    let elsewhere = |kind: &str, id: &str| {
        let shard = cardio::cluster::shard_of(&ActorId::new(kind, id).unwrap(), SHARDS);
        before[&u64::from(shard)] != victim
    };
    let watched = (0..6)
        .map(|i| format!("c{i}"))
        .find(|c| elsewhere("consult", c))
        .expect("a consult away from the victim");
    let watched_devices: BTreeSet<String> = (0..6)
        .map(|i| format!("d{i}"))
        .filter(|d| elsewhere("device", d))
        .collect();
    let mut consult_events = client
        .subscribe(&format!("consult.{watched}"), 256)
        .await
        .unwrap();
    let load = Load::start(&req, "", 6, 40, 30);
    // Mid-load: kill the node owning the most shards.
    load.until_chat(80, "a third of the load").await;
    let killed_at = Instant::now();
    nodes[victim_idx].signal("-KILL");
    nodes[victim_idx].wait();
    let survivors: Vec<&str> = ids.iter().copied().filter(|i| *i != victim).collect();
    let watcher = if victim_idx == 0 { 1 } else { 0 };
    let acked = load.finish().await;
    let after = poll_until(
        "every shard owned by a survivor",
        Duration::from_secs(20),
        EVERY,
        async || settled(&nodes[watcher], &survivors).await,
    )
    .await;
    eprintln!(
        "shards settled on survivors {:?} after the kill",
        killed_at.elapsed()
    );
    for (shard, owner) in &before {
        if owner != victim {
            assert_eq!(&after[shard], owner, "shard {shard} moved needlessly");
        }
    }
    // The survivors' metrics count the failovers and the smaller membership.
    let orphaned = before.values().filter(|o| *o == victim).count() as f64;
    let mut failovers = 0.0;
    for (i, n) in nodes.iter().enumerate() {
        if i != victim_idx {
            let m = crate::ops::scrape(&n.addr).await;
            failovers += m.sum("cardio_shard_failovers_total", &[]);
            assert_eq!(m.sum("cardio_cluster_nodes", &[]), 2.0);
        }
    }
    assert!(
        failovers >= orphaned,
        "{failovers} failovers counted for {orphaned} orphaned shards"
    );
    verify(db.url(), &req, &acked).await;

    // Events from the nodes reached the watcher: the alert of each device
    // away from the victim, and the watched consult's chat lines.
    let mut raised = BTreeSet::new();
    while !watched_devices.is_subset(&raised) {
        let d = tokio::time::timeout(Duration::from_secs(10), alerts.next())
            .await
            .expect("alert events from the nodes")
            .unwrap();
        let env = d.envelope().unwrap();
        if env.msg_type == "alert.raised" {
            let v: Value = serde_json::from_str(env.payload.get()).unwrap();
            raised.insert(v["device"].as_str().unwrap().to_owned());
        }
        d.ack().await.unwrap();
    }
    let mut chat_seqs = BTreeSet::new();
    while chat_seqs.len() < 40 {
        let d = tokio::time::timeout(Duration::from_secs(10), consult_events.next())
            .await
            .expect("consult events from the nodes")
            .unwrap();
        let v: Value = serde_json::from_str(d.envelope().unwrap().payload.get()).unwrap();
        assert_eq!(v["consult"], watched.as_str());
        if v["event"]["event"] == "chatted" {
            chat_seqs.insert(v["event"]["line"]["seq"].as_u64().unwrap());
        }
        d.ack().await.unwrap();
    }
    assert_eq!(chat_seqs, (1..=40).collect::<BTreeSet<u64>>());

    // The killed node comes back and takes its share again: the shards it
    // ranks first for among the three.
    nodes[victim_idx] = cluster.start(victim);
    // Until it is warm, the survivors hold its shards and say so.
    let pending = async |n: &TestNode| {
        cluster_view(n)
            .await
            .and_then(|v| v["handovers_pending"].as_u64())
    };
    poll_until(
        "the survivors counting hand-overs to come",
        Duration::from_secs(20),
        Duration::from_millis(50),
        async || {
            for (i, n) in nodes.iter().enumerate() {
                if i != victim_idx && pending(n).await? > 0 {
                    return Some(());
                }
            }
            None
        },
    )
    .await;
    let rejoined = settle(
        &nodes[watcher],
        &ids,
        "the restarted node taking its shards back",
    )
    .await;
    assert_eq!(rejoined, before, "the same placement as before the kill");
    poll_until(
        "no hand-over left on any node",
        Duration::from_secs(10),
        EVERY,
        async || {
            for n in &nodes {
                if pending(n).await? != 0 {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    // Ops see every node's tree from any one of them.
    let out = Command::new(BIN)
        .args([
            "tree",
            "--cluster",
            "--url",
            &format!("http://{}", nodes[watcher].addr),
        ])
        .env_clear()
        .env(
            "CARDIO_TOKEN",
            crate::api::token(cardio::principal::Role::Ops, "ops-test"),
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for id in ids {
        assert!(text.contains(&format!("node {id} ")), "{text}");
    }
    assert!(text.matches("cardio").count() >= 3, "{text}");
    assert!(!text.contains('\x1b'), "no colour into a pipe: {text}");
    // Colour when asked (as on a terminal).
    let painted = Command::new(BIN)
        .args(["tree", "--cluster", "--url"])
        .arg(format!("http://{}", nodes[watcher].addr))
        .env_clear()
        .env("CLICOLOR_FORCE", "1")
        .env(
            "CARDIO_TOKEN",
            crate::api::token(cardio::principal::Role::Ops, "ops-test"),
        )
        .output()
        .unwrap();
    let painted = String::from_utf8_lossy(&painted.stdout);
    assert_eq!(painted.matches("\x1b[32mup\x1b[0m").count(), 3, "{painted}");
    assert!(painted.contains("\x1b[32mrunning\x1b[0m"), "{painted}");
    // And the cluster still serves every actor.
    let v = act(
        &req,
        "c0",
        "c0-after-rejoin",
        ConsultCommand::Chat {
            who: Party::Patient("p-c0".into()),
            client_message_id: "after".into(),
            text: "still there".into(),
        },
    )
    .await;
    assert_eq!(
        v["line"]["seq"].as_u64().or(v["Line"]["seq"].as_u64()),
        Some(41),
        "{v}"
    );

    drop(req);
    drop(nodes);
    db.done().await;
}

#[actix_rt::test]
async fn nodes_reconnect_by_themselves_after_a_broker_restart_and_lose_nothing() {
    needs!(Cluster);
    // Restarting the broker disturbs every test using it: this one runs alone.
    let _broker = crate::broker::exclusive().await;
    let (cluster, db) = Cluster::new().await;
    let ids = ["b1", "b2"];
    let url = cluster.vhost.url();
    let nodes = vec![
        cluster.start_with("b1", &url, &QUIET_THROUGH_OUTAGE),
        cluster.start_with("b2", &url, &QUIET_THROUGH_OUTAGE),
    ];
    settle(&nodes[0], &ids, "two nodes sharing the shards").await;
    let (_client, req) = cluster.client().await;
    let load = Load::start(&req, "r", 3, 60, 40);
    load.until_chat(30, "some load before the restart").await;
    let stopped = Instant::now();
    {
        // Started again even if this test fails meanwhile.
        let _down = crate::broker::StoppedBroker::stop();
        // The broker stays away a while; the nodes keep retrying meanwhile.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    eprintln!("broker away for {:?}", stopped.elapsed());
    let acked = load.finish().await;
    for n in &nodes {
        poll_until(
            "the node ready again",
            Duration::from_secs(30),
            EVERY,
            async || {
                get(&format!("http://{}/readyz", n.addr))
                    .await
                    .is_some_and(|v| v["ready"] == true)
            },
        )
        .await;
    }
    settle(&nodes[0], &ids, "the shards settled again").await;
    verify(db.url(), &req, &acked).await;
    drop(req);
    drop(nodes);
    db.done().await;
}

/// For the broker-restart tests: a device whose pushes cannot get through
/// is silent as far as its stream knows, and `no_data` (30 s by default) is
/// right to fire once the outage (stopping the broker, the test's pause,
/// starting it again with its quorum queues) lasts that long, as it did on a
/// slow CI machine. These tests check that every acknowledged push and alert
/// is there exactly once, one tachycardia alert per device; so their nodes
/// wait longer than any outage the tests allow (90 s) before calling a device
/// silent. The no-data alarm itself is tested by the alarm engine's unit
/// tests and `device::a_silent_device_raises_no_data_and_its_open_alarm_ends`.
const QUIET_THROUGH_OUTAGE: [(&str, &str); 1] = [("CARDIO_ALERT_NO_DATA", "120s")];

/// Epoch of every shard in the cluster's database (each claim bumps one).
async fn shard_epochs(db_url: &str) -> BTreeMap<u16, u64> {
    let store = Store::connect(db_url).await.unwrap();
    let rows = store.shard_owners().await.unwrap();
    store.close().await;
    rows.into_iter().map(|r| (r.id, r.epoch)).collect()
}

/// Issue 16: after a broker restart (10 s away) under load, on node
/// defaults and 64 shards, every actor serves within 3 s of the broker
/// accepting connections again, measured from the first TCP connection the
/// broker accepts to the last of one actor per shard answering; and the
/// restart moves no shard (a bounce would be more unavailability). (The
/// nodes' alarm settings are the defaults but for the no-data delay: see
/// [`QUIET_THROUGH_OUTAGE`].)
#[actix_rt::test]
async fn every_actor_serves_within_3s_of_the_broker_accepting_connections_again() {
    needs!(Cluster);
    const SHARDS_64: u16 = 64;
    let _broker = crate::broker::exclusive().await;
    let (cluster, db) = Cluster::new().await;
    let defaults = [
        ("CARDIO_SHARDS", "64"),
        ("CARDIO_HEARTBEAT", "500ms"),
        ("CARDIO_LEASE", "3s"),
        QUIET_THROUGH_OUTAGE[0],
    ];
    let url = cluster.vhost.url();
    let nodes = [
        cluster.start_with("r1", &url, &defaults),
        cluster.start_with("r2", &url, &defaults),
    ];
    let bus: Arc<dyn Bus> = Arc::new(
        cluster
            .vhost
            .bus(BusOptions {
                shards: SHARDS_64,
                ..BusOptions::default()
            })
            .await,
    );
    let req = Arc::new(Requester::new(Arc::clone(&bus)).await.unwrap());
    // One consult on each shard.
    let mut probes: BTreeMap<u16, ActorId> = BTreeMap::new();
    for i in 0.. {
        let to = ActorId::new("consult", &format!("probe{i}")).unwrap();
        probes
            .entry(cardio::cluster::shard_of(&to, SHARDS_64))
            .or_insert(to);
        if probes.len() == SHARDS_64 as usize {
            break;
        }
    }
    let view = |req: Arc<Requester>, to: ActorId| async move {
        req.request::<_, Value>(
            &to,
            "consult.view",
            &View { after: u64::MAX },
            Duration::from_millis(500),
        )
        .await
        .is_ok()
    };
    for to in probes.values() {
        poll_until(
            "every probe answering",
            Duration::from_secs(60),
            EVERY,
            async || view(Arc::clone(&req), to.clone()).await,
        )
        .await;
    }
    // Placement settled: both nodes up, every shard on its first-ranked node.
    poll_until(
        "the placement settled",
        Duration::from_secs(60),
        EVERY,
        async || {
            let v = cluster_view(&nodes[0]).await?;
            let shards = v["shards"].as_array()?;
            let up = v["nodes"]
                .as_array()?
                .iter()
                .filter(|n| n["status"] == "up")
                .count();
            let placed = shards.iter().all(|s| {
                let id = s["id"].as_u64().unwrap_or(0) as u16;
                s["owner_live"] == true
                    && s["owner"].as_str() == Some(cardio::cluster::rank(id, &["r1", "r2"])[0])
            });
            (up == 2 && shards.len() == SHARDS_64 as usize && placed).then_some(())
        },
    )
    .await;
    let load = Load::start(&req, "r", 3, 60, 40);
    load.until_chat(30, "some load before the restart").await;
    let epochs_before = shard_epochs(db.url()).await;

    let away = Instant::now();
    let stopped = crate::broker::StoppedBroker::stop();
    // From now on, the first moment the broker's port accepts TCP again.
    let port = crate::support::services::host_port(&crate::support::services::amqp_url());
    let accepting = std::thread::spawn(move || {
        let addr: std::net::SocketAddr = port.parse().expect("host:port");
        let until = Instant::now() + Duration::from_secs(120);
        while Instant::now() < until {
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    });
    // Every probe asks again and again through the outage until it answers.
    let answered: Vec<_> = probes
        .values()
        .map(|to| {
            let (req, to) = (Arc::clone(&req), to.clone());
            actix_rt::spawn(async move {
                let until = Instant::now() + Duration::from_secs(90);
                while Instant::now() < until {
                    if view(Arc::clone(&req), to.clone()).await {
                        return Some(Instant::now());
                    }
                }
                None
            })
        })
        .collect();
    // The outage itself (not a wait for something): ten seconds away.
    tokio::time::sleep(Duration::from_secs(10)).await;
    // `rabbitmqctl start_app` blocks: off this thread, which runs the probes.
    let started = tokio::task::spawn_blocking(move || drop(stopped));
    let mut firsts = Vec::new();
    for task in answered {
        firsts.push(task.await.unwrap().expect("the actor answered again"));
    }
    started.await.unwrap();
    let back = accepting
        .join()
        .unwrap()
        .expect("the broker accepted connections again");
    eprintln!(
        "broker restart: away for {:?} (no_data at {})",
        back.saturating_duration_since(away),
        QUIET_THROUGH_OUTAGE[0].1
    );
    let mut after: Vec<Duration> = firsts
        .iter()
        .map(|t| t.saturating_duration_since(back))
        .collect();
    after.sort();
    let last = *after.last().unwrap();
    eprintln!(
        "broker restart: {} actors serving again after the port accepted TCP: p50 {:?}, max {:?}",
        after.len(),
        after[after.len() / 2],
        last
    );
    let acked = load.finish().await;
    let epochs_after = shard_epochs(db.url()).await;
    let moves: u64 = epochs_after
        .iter()
        .map(|(s, e)| e - epochs_before.get(s).copied().unwrap_or(0))
        .sum();
    eprintln!("broker restart: {moves} shard claims during the restart");
    assert!(
        last <= Duration::from_secs(3),
        "every actor serves within 3 s of the broker accepting connections: the last took {last:?}"
    );
    assert_eq!(
        moves, 0,
        "the restart moved shards: {epochs_before:?} -> {epochs_after:?}"
    );
    verify(db.url(), &req, &acked).await;
    drop(req);
    drop(nodes);
    db.done().await;
}

/// Issue 16: SIGTERM under load (chat and pushes) on RabbitMQ and
/// PostgreSQL with node defaults: the node drains and exits 0, its log has
/// none of the loose ends (a snapshot not saved, a shard not released, work
/// spawned on a runtime already shutting down), every consult it hosted
/// has a snapshot at its journal's last sequence, and no shard is left
/// held by it.
#[actix_rt::test]
async fn sigterm_under_load_saves_snapshots_and_releases_shards_before_the_runtime_stops() {
    needs!(Cluster);
    let _broker = crate::broker::shared().await;
    let (cluster, db) = Cluster::new().await;
    let url = cluster.vhost.url();
    let node = cluster.start_with(
        "t1",
        &url,
        &[
            ("CARDIO_HEARTBEAT", "500ms"),
            ("CARDIO_LEASE", "3s"),
            ("CARDIO_SHUTDOWN_GRACE", "20s"),
        ],
    );
    settle(&node, &["t1"], "the node owning every shard").await;
    let (_client, req) = cluster.client().await;
    let load = Load::start(&req, "t", 6, 400, 400);
    // API work too: readiness reads the database from the HTTP workers.
    let probes: Vec<_> = (0..8)
        .map(|_| {
            let url = format!("http://{}/readyz", node.addr);
            actix_rt::spawn(async move {
                loop {
                    let _ = get(&url).await;
                }
            })
        })
        .collect();
    load.until_chat(60, "load before the signal").await;
    node.signal("-TERM");
    let status = crate::support::poll::poll_until(
        "the node to exit after SIGTERM",
        Duration::from_secs(40),
        EVERY,
        async || node.exited(),
    )
    .await;
    load.abort();
    for p in probes {
        p.abort();
    }
    let log = node.log();
    for loose_end in [
        "snapshot not saved",
        "could not release",
        "Tokio context is being shutdown",
        "context was found, but it is being shutdown",
        "drain did not finish",
    ] {
        assert!(
            !log.contains(loose_end),
            "{loose_end:?} after SIGTERM:\n{log}"
        );
    }
    assert_eq!(status.code(), Some(0), "a drained exit:\n{log}");
    let store = crate::support::node::keyed_store(db.url()).await;
    let mut checked = 0;
    for i in 0..6 {
        let key = format!("consult/tc{i}");
        let Some(last) = store.events(&key, 0).await.unwrap().last().map(|e| e.seq) else {
            continue;
        };
        let snapshot = store.snapshot(&key).await.unwrap();
        assert_eq!(
            snapshot.map(|s| s.seq),
            Some(last),
            "{key}: a snapshot at the journal's last sequence"
        );
        checked += 1;
    }
    assert!(
        checked >= 3,
        "consults journaled before the signal: {checked}"
    );
    let held: Vec<_> = store
        .shard_owners()
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.owner.as_deref() == Some("t1"))
        .map(|s| s.id)
        .collect();
    assert!(held.is_empty(), "shards still held after leaving: {held:?}");
    store.close().await;
    drop(req);
    drop(node);
    db.done().await;
}

#[actix_rt::test]
async fn poison_messages_through_the_broker_are_dead_lettered_and_the_actor_keeps_serving() {
    needs!(Cluster);
    use lapin::options::BasicPublishOptions;
    let _broker = crate::broker::shared().await;
    let (cluster, db) = Cluster::new().await;
    let node = cluster.start("p1");
    settle(&node, &["p1"], "the node owning every shard").await;
    let (client, req) = cluster.client().await;
    let to = ActorId::new("consult", "c-poison").unwrap();
    act(
        &req,
        "c-poison",
        "req",
        ConsultCommand::Request {
            patient: "p-9".into(),
            reason: "checkup".into(),
        },
    )
    .await;
    // 1. Not an envelope at all, straight onto the actor's shard queue.
    let conn =
        lapin::Connection::connect(&cluster.vhost.url(), lapin::ConnectionProperties::default())
            .await
            .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let shard = cardio::cluster::shard_of(&to, SHARDS);
    ch.basic_publish(
        "cardio.shards".into(),
        shard.to_string().as_str().into(),
        BasicPublishOptions::default(),
        b"\x00\x01 Jane Doe, DOB 1970-01-01",
        lapin::BasicProperties::default(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    // 2. A message type the actor has no handler for.
    let unknown = cardio::bus::Envelope::new("consult.explode", &serde_json::json!({"x": 1}))
        .unwrap()
        .to(to.clone());
    client.send(&unknown).await.unwrap();
    // 3. The right type with the wrong shape (and PHI in it).
    let wrong = cardio::bus::Envelope::new(
        "consult.act",
        &serde_json::json!({"request_id": 5, "command": "Jane Doe"}),
    )
    .unwrap()
    .to(to.clone());
    client.send(&wrong).await.unwrap();
    // The actor keeps serving.
    act(
        &req,
        "c-poison",
        "join",
        ConsultCommand::Join {
            who: Party::Patient("p-9".into()),
        },
    )
    .await;
    let v = act(
        &req,
        "c-poison",
        "chat-1",
        ConsultCommand::Chat {
            who: Party::Patient("p-9".into()),
            client_message_id: "m1".into(),
            text: "hello".into(),
        },
    )
    .await;
    assert!(v.to_string().contains("\"seq\":1"), "{v}");
    let mut dead = client.consume_dead_letters(10).await.unwrap();
    let mut reasons = Vec::new();
    for _ in 0..3 {
        let d = tokio::time::timeout(Duration::from_secs(10), dead.next())
            .await
            .expect("a dead letter")
            .unwrap();
        let info = d.info().dead_letter.clone().unwrap();
        assert_eq!(info.from_queue, format!("cardio.shard.{shard}"));
        reasons.push(info.reason);
        d.ack().await.unwrap();
    }
    reasons.sort();
    let all = reasons.join(" | ");
    assert!(
        reasons.iter().any(|r| r.contains("not an envelope")),
        "{all}"
    );
    assert!(reasons.iter().any(|r| r.contains("no handler")), "{all}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("wrong shape") || r.contains("invalid type")),
        "{all}"
    );
    assert!(!all.contains("Jane"), "a reason quotes the payload: {all}");
    let m = crate::ops::scrape(&node.addr).await;
    let dead = m.sum(
        "cardio_bus_dead_letters_total",
        &[("backend", "amqp"), ("reason", "rejected")],
    );
    assert_eq!(dead, 3.0, "the node counts what it set aside");
    let _ = conn.close(200, "done".into()).await;
    drop(req);
    drop(node);
    db.done().await;
}

/// Status of node `id` in `p`'s view.
async fn status_of(p: &TestNode, id: &str) -> Option<String> {
    let v = cluster_view(p).await?;
    v["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["id"] == id)
        .and_then(|n| n["status"].as_str().map(str::to_owned))
}

#[actix_rt::test]
async fn a_node_cut_off_from_the_broker_loses_its_shards_and_takes_them_back() {
    needs!(Cluster);
    let _broker = crate::broker::shared().await;
    let (cluster, db) = Cluster::new().await;
    let proxy = crate::broker::Proxy::start().await;
    let ids = ["x1", "x2", "x3"];
    let nodes = vec![
        cluster.start("x1"),
        cluster.start("x2"),
        cluster.start_on("x3", &proxy.url(&cluster.vhost)),
    ];
    let before = settle(&nodes[0], &ids, "three nodes sharing the shards").await;
    let (_client, req) = cluster.client().await;
    let load = Load::start(&req, "x", 4, 40, 30);
    load.until_chat(40, "some load before the cut").await;
    proxy.cut();
    // x3 still renews its lease, as `degraded`; the others take its shards.
    poll_until("x3 degraded", Duration::from_secs(20), EVERY, async || {
        status_of(&nodes[0], "x3").await.as_deref() == Some("degraded")
    })
    .await;
    poll_until(
        "x3's shards on x1 and x2",
        Duration::from_secs(20),
        EVERY,
        async || settled(&nodes[0], &["x1", "x2"]).await,
    )
    .await;
    let ready = get(&format!("http://{}/readyz", nodes[2].addr))
        .await
        .unwrap();
    assert_eq!(ready["ready"], false, "{ready}");
    assert_eq!(ready["checks"]["bus"], false, "{ready}");
    proxy.restore();
    let acked = load.finish().await;
    let back = poll_until(
        "x3 back with its shards",
        Duration::from_secs(60),
        EVERY,
        async || settled(&nodes[0], &ids).await,
    )
    .await;
    assert_eq!(back, before);
    verify(db.url(), &req, &acked).await;
    drop(req);
    drop(nodes);
    db.done().await;
}

/// Asks `consult/<id>` for its view until it answers; how long after
/// `since` the answer came.
async fn served_after(req: &Requester, id: &str, since: Instant) -> Duration {
    let to = ActorId::new("consult", id).unwrap();
    poll_until(
        id,
        Duration::from_secs(60),
        Duration::from_millis(20),
        async || {
            req.request::<_, Value>(
                &to,
                "consult.view",
                &View { after: 0 },
                Duration::from_millis(500),
            )
            .await
            .map_err(|e| e.to_string())
        },
    )
    .await;
    since.elapsed()
}

#[actix_rt::test]
async fn a_stalled_owner_woken_after_its_shards_moved_never_writes_again() {
    needs!(Cluster);
    let _broker = crate::broker::shared().await;
    let (cluster, db) = Cluster::new().await;
    let ids = ["s1", "s2", "s3"];
    // Node defaults: the AMQP heartbeat (1 s unless the URL names one) is
    // what lets the broker notice the stall. The test lasts longer than a
    // device stays silent before `NO_DATA`: the load's devices, done early,
    // must raise only their tachycardia alert.
    let url = cluster.vhost.url();
    let quiet = [
        ("CARDIO_ALERT_NO_DATA", "600s"),
        ("CARDIO_IDLE_TIMEOUT", "1200s"),
    ];
    let mut nodes = vec![
        cluster.start_with("s1", &url, &quiet),
        cluster.start_with("s2", &url, &quiet),
        cluster.start_with("s3", &url, &quiet),
    ];
    let before = settle(&nodes[0], &ids, "three nodes sharing the shards").await;
    let (_client, req) = cluster.client().await;
    // Actors on s3's shards, live there before the stall.
    let stalled: Vec<String> = (0..200)
        .map(|i| format!("probe-{i}"))
        .filter(|c| {
            let shard = cardio::cluster::shard_of(&ActorId::new("consult", c).unwrap(), SHARDS);
            before[&u64::from(shard)] == "s3"
        })
        .take(6)
        .collect();
    assert!(!stalled.is_empty());
    for c in &stalled {
        served_after(&req, c, Instant::now()).await;
    }
    let load = Load::start(&req, "s", 4, 40, 30);
    load.until_chat(40, "some load before the stall").await;
    nodes[2].signal("-STOP");
    let stopped = Instant::now();
    // Each actor of the stalled node serves again, as a client sees it.
    let waits =
        futures_util::future::join_all(stalled.iter().map(|c| served_after(&req, c, stopped)))
            .await;
    let worst = waits.iter().max().copied().unwrap_or_default();
    eprintln!("actors of a stalled node served again after {waits:?}");
    assert!(
        worst < Duration::from_secs(5),
        "an actor of the stalled node served again only after {worst:?}"
    );
    settle(&nodes[0], &["s1", "s2"], "s3's shards on s1 and s2").await;
    eprintln!(
        "a stalled node's shards moved after {:?}",
        stopped.elapsed()
    );
    // What the journals hold now, and the epochs the survivors took the
    // stalled node's shards at.
    let store = crate::support::node::keyed_store(db.url()).await;
    let taken_at = epochs(&nodes[0]).await.unwrap();
    let keys: Vec<String> = (0..4)
        .flat_map(|i| [format!("consult/sc{i}"), format!("device/sd{i}")])
        .collect();
    let mut last_seq = HashMap::new();
    for key in &keys {
        let seq = store
            .events(key, 0)
            .await
            .unwrap()
            .last()
            .map_or(0, |e| e.seq);
        last_seq.insert(key.clone(), seq);
    }
    // The stall lasts 30 s (the stimulus, not a wait for something).
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(stopped.elapsed())).await;
    nodes[2].signal("-CONT");
    let acked = load.finish().await;
    // The woken node finds its shards taken (its writes are fenced), then
    // rejoins and takes its share back.
    poll_until(
        "s3 back with its shards",
        Duration::from_secs(60),
        EVERY,
        async || settled(&nodes[0], &ids).await,
    )
    .await;
    // It told its operators what happened to its lease.
    let late: Vec<u64> = nodes[2]
        .stdout_lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("lease renewed after it ran out"))
        })
        .filter_map(|v| v["late_ms"].as_u64())
        .collect();
    assert!(
        late.iter().any(|&ms| ms > 20_000),
        "the woken node warns that its lease ran out ~28 s before: {late:?}"
    );
    verify(db.url(), &req, &acked).await;
    // Nothing written after the takeover at an epoch before it.
    let mut later = 0;
    for key in &keys {
        let shard = u64::from(cardio::cluster::shard_of_key(key, SHARDS));
        for e in store.events(key, last_seq[key]).await.unwrap() {
            if e.seq <= last_seq[key] {
                continue;
            }
            later += 1;
            assert!(
                e.epoch >= taken_at[&shard],
                "{key} seq {} written at epoch {} after shard {shard} was taken at epoch {}",
                e.seq,
                e.epoch,
                taken_at[&shard]
            );
        }
    }
    assert!(later > 0, "the load wrote after the takeover");
    store.close().await;
    drop(req);
    nodes.clear();
    db.done().await;
}

#[actix_rt::test]
async fn a_node_leaving_gracefully_hands_its_shards_over_and_loses_nothing() {
    needs!(Cluster);
    let _broker = crate::broker::shared().await;
    let (cluster, db) = Cluster::new().await;
    let ids = ["g1", "g2", "g3"];
    let mut nodes = vec![
        cluster.start("g1"),
        cluster.start("g2"),
        cluster.start("g3"),
    ];
    settle(&nodes[0], &ids, "three nodes sharing the shards").await;
    let (_client, req) = cluster.client().await;
    let load = Load::start(&req, "g", 4, 40, 30);
    load.until_chat(40, "some load before the leave").await;
    // SIGTERM: g3 drains: each shard's message in hand is finished, its
    // actors passivated and the shard released, then the process exits 0.
    let left_at = Instant::now();
    nodes[2].signal("-TERM");
    let status = poll_until(
        "g3 to drain and exit",
        Duration::from_secs(30),
        Duration::from_millis(50),
        async || nodes[2].exited(),
    )
    .await;
    assert_eq!(status.code(), Some(0), "a drained node exits 0");
    // Released shards are taken at once, not after a lease.
    poll_until(
        "g3's shards on g1 and g2",
        Duration::from_secs(10),
        EVERY,
        async || settled(&nodes[0], &["g1", "g2"]).await,
    )
    .await;
    eprintln!(
        "shards of a leaving node moved {:?} after SIGTERM",
        left_at.elapsed()
    );
    assert_eq!(status_of(&nodes[0], "g3").await.as_deref(), Some("left"));
    let acked = load.finish().await;
    verify(db.url(), &req, &acked).await;
    drop(req);
    nodes.clear();
    db.done().await;
}

#[actix_rt::test]
async fn a_clinician_on_one_node_sees_live_what_a_device_on_another_node_caused() {
    needs!(Cluster);
    use crate::api::{device_of, hr, maybe_event, now_ms, ok, people, send, socket, token, PUSH};
    use cardio::principal::Role;
    use serde_json::json;
    let _broker = crate::broker::shared().await;
    let (cluster, db) = Cluster::new().await;
    let ids = ["a1", "a2", "a3"];
    let nodes = vec![
        cluster.start("a1"),
        cluster.start("a2"),
        cluster.start("a3"),
    ];
    let owners = settle(&nodes[0], &ids, "three nodes sharing the shards").await;
    let (patient, clinician) = (token(Role::Patient, "p-1"), token(Role::Clinician, "dr-1"));
    let a0 = &nodes[0].addr;
    people(a0, &["p-1"], &["dr-1"], &[("p-1", "dr-1")]).await;
    let device = device_of(a0, "p-1", "patch").await;
    // Where the device's actor lives, and a node where it does not.
    let shard = cardio::cluster::shard_of(&ActorId::new("device", &device).unwrap(), SHARDS);
    let owner = owners[&u64::from(shard)].clone();
    let watcher = nodes
        .iter()
        .zip(ids)
        .find(|(_, id)| *id != owner)
        .map(|(n, _)| n)
        .unwrap();
    let pusher = nodes
        .iter()
        .zip(ids)
        .find(|(_, id)| *id == owner)
        .map(|(n, _)| n)
        .unwrap();
    let mut ws = socket(&watcher.addr, &clinician).await;
    send(&mut ws, json!({"id": "a", "type": "subscribe", "payload": {"query": "subscription { alerts { deviceId patientId change kind } }"}})).await;
    send(&mut ws, json!({"id": "v", "type": "subscribe", "payload": {"query": "subscription { vitals(patientId: \"p-1\") { deviceId accepted } }"}})).await;
    // Pushed through the node hosting the device (any node would do).
    let mut at = now_ms() - 600_000.0;
    loop {
        ok(
            &pusher.addr,
            &patient,
            PUSH,
            json!({"d": device, "s": [hr(at, 72.0)]}),
        )
        .await;
        at += 1_000.0;
        if let Some(v) = maybe_event(&mut ws, "v", Duration::from_millis(500)).await {
            assert_eq!(v["data"]["vitals"]["deviceId"], device.as_str());
            break;
        }
        assert!(at < now_ms(), "no vitals event crossed the nodes");
    }
    let (alert, _) =
        crate::api::until_alert(&pusher.addr, &patient, &device, &mut ws, "a", &mut at).await;
    assert_eq!(alert["data"]["alerts"]["kind"], "TACHYCARDIA");
    assert_eq!(alert["data"]["alerts"]["patientId"], "p-1");
    // Pushes in flight together at a node that does not host the device
    // cross the broker together (`device.push_many`), and each is stored
    // once: retried, each is a duplicate.
    let t0 = at + 1_000.0;
    crate::api::pushed_until_coalesced(&watcher.addr, &patient, &device, t0, 16).await;
    for r in crate::api::pushes_at_once(&watcher.addr, &patient, &device, t0, 0, 16).await {
        assert_eq!(r["duplicate"], true, "{r}");
    }
    drop(ws);
    drop(nodes);
    db.done().await;
}

/// An OTLP/HTTP (JSON) trace receiver on loopback, as a collector would be:
/// what the nodes exported, as (node, trace id, span name, attributes).
struct Collector {
    addr: std::net::SocketAddr,
    spans: Arc<std::sync::Mutex<Vec<ExportedSpan>>>,
    server: actix_web::dev::ServerHandle,
}

#[derive(Debug, Clone)]
struct ExportedSpan {
    node: String,
    trace: String,
    span: String,
    parent: String,
    name: String,
    attributes: Value,
    events: Value,
}

impl Collector {
    fn start() -> Collector {
        use actix_web::{web, App, HttpResponse, HttpServer};
        let spans: Arc<std::sync::Mutex<Vec<ExportedSpan>>> = Arc::default();
        let kept = Arc::clone(&spans);
        let server = HttpServer::new(move || {
            let kept = Arc::clone(&kept);
            App::new().route(
                "/v1/traces",
                web::post().to(move |body: web::Bytes| {
                    let kept = Arc::clone(&kept);
                    async move {
                        let v: Value = serde_json::from_slice(&body).expect("OTLP JSON");
                        kept.lock().unwrap().extend(Collector::flatten(&v));
                        HttpResponse::Ok().json(serde_json::json!({}))
                    }
                }),
            )
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Collector {
            addr,
            spans,
            server: handle,
        }
    }

    fn flatten(v: &Value) -> Vec<ExportedSpan> {
        let mut out = Vec::new();
        for rs in v["resourceSpans"].as_array().into_iter().flatten() {
            let node = rs["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.instance.id")
                .and_then(|a| a["value"]["stringValue"].as_str())
                .unwrap_or("")
                .to_owned();
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for sp in ss["spans"].as_array().into_iter().flatten() {
                    out.push(ExportedSpan {
                        node: node.clone(),
                        trace: sp["traceId"].as_str().unwrap_or("").to_owned(),
                        span: sp["spanId"].as_str().unwrap_or("").to_owned(),
                        parent: sp["parentSpanId"].as_str().unwrap_or("").to_owned(),
                        name: sp["name"].as_str().unwrap_or("").to_owned(),
                        attributes: sp["attributes"].clone(),
                        events: sp["events"].clone(),
                    });
                }
            }
        }
        out
    }

    fn spans(&self) -> Vec<ExportedSpan> {
        self.spans.lock().unwrap().clone()
    }
}

fn attribute<'a>(span: &'a ExportedSpan, key: &str) -> Option<&'a str> {
    span.attributes
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)?["value"]["stringValue"]
        .as_str()
}

#[actix_rt::test]
async fn one_trace_follows_a_push_from_the_api_node_to_the_alert_on_the_devices_node() {
    needs!(Cluster);
    use crate::api::{device_of, hr, now_ms, ok, people, token, PUSH};
    use cardio::principal::Role;
    use serde_json::json;
    let _broker = crate::broker::shared().await;
    let (cluster, db) = Cluster::new().await;
    let collector = Collector::start();
    let endpoint = format!("http://{}", collector.addr);
    let tracing = [
        ("CARDIO_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let url = cluster.vhost.url();
    let nodes = [
        cluster.start_with("t1", &url, &tracing),
        cluster.start_with("t2", &url, &tracing),
    ];
    let owners = settle(&nodes[0], &["t1", "t2"], "two nodes sharing the shards").await;
    let api = &nodes[0].addr;
    people(api, &["p-1"], &[], &[]).await;
    // A device whose actor lives on t2, pushed to through t1's API.
    let device = loop {
        let d = device_of(api, "p-1", "patch").await;
        let shard = cardio::cluster::shard_of(&ActorId::new("device", &d).unwrap(), SHARDS);
        if owners[&u64::from(shard)] == "t2" {
            break d;
        }
    };
    let at = now_ms() - 60_000.0;
    let sustained: Vec<Value> = (0..8)
        .map(|i| hr(at + f64::from(i) * 1_000.0, 150.0))
        .collect();
    let patient = token(Role::Patient, "p-1");
    ok(api, &patient, PUSH, json!({"d": device, "s": sustained})).await;

    // The push's trace: its GraphQL span on t1, and on t2 the delivery, the
    // device's handler, the journal write and the alert it raised, each a
    // child of the one before.
    let (trace, spans) = poll_until(
        "a trace from t1's pushSamples to t2's alert",
        Duration::from_secs(30),
        Duration::from_millis(200),
        async || {
            let all = collector.spans();
            let push = all
                .iter()
                .find(|s| s.node == "t1" && attribute(s, "operation") == Some("pushSamples"));
            if let Some(push) = push {
                let trace: Vec<ExportedSpan> = all
                    .iter()
                    .filter(|s| s.trace == push.trace)
                    .cloned()
                    .collect();
                if trace
                    .iter()
                    .any(|s| s.node == "t2" && s.name == "alerts.raise")
                {
                    return Ok((push.trace.clone(), trace));
                }
            }
            let exported: Vec<_> = all.iter().map(|s| (&s.node, &s.name, &s.trace)).collect();
            Err(format!("exported: {exported:#?}"))
        },
    )
    .await;
    assert_eq!(trace.len(), 32, "a W3C trace id: {trace}");
    let one = |node: &str, pick: &dyn Fn(&ExportedSpan) -> bool, what: &str| {
        spans
            .iter()
            .find(|s| s.node == node && pick(s))
            .unwrap_or_else(|| panic!("no {what} span on {node}: {spans:#?}"))
            .clone()
    };
    let request = one(
        "t1",
        &|s| attribute(s, "operation") == Some("pushSamples"),
        "graphql",
    );
    let deliver = one(
        "t2",
        &|s| s.name.starts_with("deliver device.push"),
        "delivery",
    );
    let handle = one("t2", &|s| s.name == "device Push", "handler");
    let append = one("t2", &|s| s.name == "journal.append", "journal");
    let raise = one("t2", &|s| s.name == "alerts.raise", "alert");
    assert_eq!(request.name, "graphql pushSamples");
    assert_eq!(
        deliver.parent, request.span,
        "t2's delivery continues t1's request"
    );
    assert_eq!(handle.parent, deliver.span);
    assert_eq!(append.parent, handle.span);
    assert_eq!(raise.parent, handle.span);
    // Spans (their attributes and events) name kinds and operations, never
    // the patient or the device.
    let no_phi = |spans: &[ExportedSpan]| {
        for s in spans {
            let text = format!("{} {} {}", s.name, s.attributes, s.events);
            assert!(!text.contains("p-1") && !text.contains(&device), "{text}");
        }
    };
    no_phi(&spans);

    // Pushes in flight together go to t2 as one batch: its delivery and
    // handling continue the trace of the batch's first push's request.
    crate::api::pushed_until_coalesced(api, &patient, &device, at + 20_000.0, 16).await;
    let (request, handle) = poll_until(
        "a coalesced batch's delivery in a request's trace",
        Duration::from_secs(30),
        Duration::from_millis(200),
        async || {
            let all = collector.spans();
            let deliver = all
                .iter()
                .find(|s| s.node == "t2" && s.name == "deliver device.push_many")
                .ok_or("no batch delivered yet")?;
            let request = all
                .iter()
                .find(|s| s.span == deliver.parent)
                .ok_or("the delivery's parent is not exported")?;
            let handle = all
                .iter()
                .find(|s| s.parent == deliver.span && s.name == "device PushMany")
                .ok_or("no handler span")?;
            Ok::<_, &str>((request.clone(), handle.clone()))
        },
    )
    .await;
    assert_eq!(
        (request.node.as_str(), request.name.as_str()),
        ("t1", "graphql pushSamples")
    );
    assert_eq!(handle.trace, request.trace);
    no_phi(&collector.spans());

    collector.server.stop(false).await;
    drop(nodes);
    db.done().await;
}

/// Epoch of every shard as `p` sees it.
async fn epochs(p: &TestNode) -> Option<BTreeMap<u64, u64>> {
    let v = cluster_view(p).await?;
    v["shards"]
        .as_array()?
        .iter()
        .map(|s| Some((s["id"].as_u64()?, s["epoch"].as_u64()?)))
        .collect()
}

/// Chat ops that started in `[from, to]`: how many took over a second, and
/// the slowest.
fn slow_ops(ops: &[(Instant, Duration)], from: Instant, to: Instant) -> (usize, Duration, usize) {
    let window: Vec<Duration> = ops
        .iter()
        .filter(|(at, _)| *at >= from && *at <= to)
        .map(|(_, took)| *took)
        .collect();
    let over = window
        .iter()
        .filter(|t| **t > Duration::from_secs(1))
        .count();
    let max = window.iter().max().copied().unwrap_or_default();
    (over, max, window.len())
}

#[actix_rt::test]
async fn a_killed_node_takes_its_shards_back_calmly_once_each_and_no_op_waits_a_second() {
    needs!(Cluster);
    let _broker = crate::broker::shared().await;
    let (cluster, db) = Cluster::new().await;
    let ids = ["k1", "k2", "k3"];
    let mut nodes = vec![
        cluster.start("k1"),
        cluster.start("k2"),
        cluster.start("k3"),
    ];
    let before = settle(&nodes[0], &ids, "three nodes sharing the shards").await;
    let (_client, req) = cluster.client().await;
    let load = Load::chat_until_stopped(&req, "k", 12);
    load.until_chat(60, "some load before the kill").await;
    nodes[2].signal("-KILL");
    nodes[2].wait();
    settle(&nodes[0], &["k1", "k2"], "k3's shards on k1 and k2").await;
    // Every claim from here on is part of the hand-back.
    let at_restart = poll_until("the epochs", Duration::from_secs(10), EVERY, async || {
        epochs(&nodes[0]).await
    })
    .await;
    let restarted = Instant::now();
    nodes[2] = cluster.start("k3");
    let back = settle(&nodes[0], &ids, "k3 taking its shards back").await;
    let settled = Instant::now();
    assert_eq!(back, before, "the same placement as before the kill");
    // Ops still under way when placement settled count too.
    let so_far: usize = load
        .acked
        .lock()
        .unwrap()
        .chat
        .values()
        .map(BTreeSet::len)
        .sum();
    load.until_chat(so_far + 60, "load after the hand-back")
        .await;
    load.stop();
    let ops = load.ops();
    let after = poll_until("the epochs", Duration::from_secs(10), EVERY, async || {
        epochs(&nodes[0]).await
    })
    .await;
    let mut moved = 0;
    for (shard, epoch) in &after {
        let was = at_restart[shard];
        assert!(
            *epoch <= was + 1,
            "shard {shard} claimed {} times in the hand-back (epoch {was} → {epoch})",
            epoch - was
        );
        if before[shard] == "k3" {
            assert_eq!(
                *epoch,
                was + 1,
                "shard {shard} came back to k3 by one claim"
            );
            moved += 1;
        } else {
            assert_eq!(*epoch, was, "shard {shard} moved needlessly");
        }
    }
    let (over, max, n) = slow_ops(&ops, restarted, settled + Duration::from_secs(2));
    eprintln!(
        "hand-back of {moved} shards took {:?}; {n} ops in it, {over} over 1 s, the slowest {max:?}",
        settled - restarted
    );
    assert_eq!(over, 0, "ops over 1 s in the hand-back (slowest {max:?})");
    let acked = load.finish().await;
    verify(db.url(), &req, &acked).await;
    drop(req);
    nodes.clear();
    db.done().await;
}

#[actix_rt::test]
async fn a_rolling_restart_of_three_nodes_moves_each_shard_twice() {
    needs!(Cluster);
    let _broker = crate::broker::shared().await;
    let (cluster, db) = Cluster::new().await;
    let ids = ["r1", "r2", "r3"];
    let mut nodes: Vec<TestNode> = ids.iter().map(|id| cluster.start(id)).collect();
    let before = settle(&nodes[0], &ids, "three nodes sharing the shards").await;
    let (_client, req) = cluster.client().await;
    let load = Load::chat_until_stopped(&req, "r", 12);
    load.until_chat(60, "some load before the restarts").await;
    let start = poll_until("the epochs", Duration::from_secs(10), EVERY, async || {
        epochs(&nodes[0]).await
    })
    .await;
    let began = Instant::now();
    // The logs of the nodes stopped on the way: a failure shows how a shard
    // moved, from every incarnation's own words.
    let mut earlier: Vec<(String, Vec<String>)> = Vec::new();
    for i in 0..3 {
        // SIGTERM: the node hands its shards over and exits; then it starts
        // again and takes them back once warm.
        nodes[i].signal("-TERM");
        let status = poll_until(
            "the node to drain and exit",
            Duration::from_secs(30),
            Duration::from_millis(50),
            async || nodes[i].exited(),
        )
        .await;
        assert_eq!(status.code(), Some(0));
        let watcher = (i + 1) % 3;
        let rest: Vec<&str> = ids.iter().copied().filter(|id| *id != ids[i]).collect();
        settle(&nodes[watcher], &rest, "the shards on the two others").await;
        earlier.push((ids[i].to_owned(), nodes[i].stdout_lines()));
        nodes[i] = cluster.start(ids[i]);
        let back = settle(&nodes[watcher], &ids, "the node taking its shards back").await;
        assert_eq!(back, before);
    }
    let ended = Instant::now();
    let so_far: usize = load
        .acked
        .lock()
        .unwrap()
        .chat
        .values()
        .map(BTreeSet::len)
        .sum();
    load.until_chat(so_far + 60, "load after the restarts")
        .await;
    load.stop();
    let end = poll_until("the epochs", Duration::from_secs(10), EVERY, async || {
        epochs(&nodes[0]).await
    })
    .await;
    // Each shard moved away from its owner and back: two claims.
    let moves: u64 = end.iter().map(|(s, e)| e - start[s]).sum();
    for (shard, epoch) in &end {
        if epoch - start[shard] != 2 {
            let now = ids
                .iter()
                .zip(&nodes)
                .map(|(id, n)| (id.to_string(), n.stdout_lines()));
            print_shard_story(*shard, earlier.iter().cloned().chain(now));
        }
        assert_eq!(
            epoch - start[shard],
            2,
            "shard {shard}: claims in the rolling restart"
        );
    }
    let (over, max, n) = slow_ops(&load.ops(), began, ended);
    eprintln!(
        "rolling restart of 3 nodes took {:?}: {moves} shard moves; {n} ops, {over} over 1 s, the slowest {max:?}",
        ended - began
    );
    // Latency is reported (docs/cluster.md quotes it), not asserted: the
    // leave on SIGTERM is not held to the hand-back's bound.
    let acked = load.finish().await;
    verify(db.url(), &req, &acked).await;
    drop(req);
    nodes.clear();
    db.done().await;
}
