//! The cluster: which node processes which shard, and how shards move.
//!
//! - **Placement** ([`shard_of`]): an actor address hashes (xxh3, fixed forever)
//!   to one of `CARDIO_SHARDS` shards; each shard is one bus queue, so any node
//!   can send to any actor.
//! - **Membership**: each node renews a lease row in SQL every heartbeat; a
//!   node whose lease ran out is dead to the others.
//! - **Balance**: shards are ranked over live nodes by rendezvous hashing. A
//!   shard's queue is consumed by its holder and by the first-ranked other
//!   node; the broker (single active consumer) delivers to one of them at a
//!   time and activates the other at once when the first one's connection
//!   dies. A node that holds a shard while another live node ranks first
//!   hands it over once that node is warm and the shard's only other
//!   consumer (so the broker activates it and nobody else), a few shards per
//!   heartbeat: stops taking its messages, finishes those in flight,
//!   passivates the shard's actors (their stop hooks flush state), cancels
//!   its consumer, releases the shard, and stays on as standby.
//! - **Ownership and fencing**: a node takes a shard when its first message
//!   arrives (or when the owner is gone and the node ranks first) by bumping
//!   the shard's epoch in SQL; every journal write is conditional on the epoch
//!   the writer holds ([`Fence`]), so a stalled or partitioned former owner can
//!   never write again once the shard moved.
//!
//! docs/cluster.md tells the whole story, including network partitions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod shard;

pub use crate::address::shard_of;

use crate::address::ActorId;
use crate::bus::client::{AnyMessage, LocalDelivery, LocalPath};
use crate::bus::{Bus, Subscription};
use crate::clock::unix_ms;
use crate::registry::Registry;
use crate::store::cluster::{NodeRow, ShardRow};
use crate::store::Store;

pub use crate::shards::{shard_of_key, Fence};

/// Shards a holder hands back per heartbeat at most (a rejoining node takes
/// its share gradually).
pub const HANDOVERS_PER_BEAT: usize = 2;

/// Rendezvous (highest random weight) ranking of `nodes` for `shard`: the
/// order every node computes alike from the same live set. Removing a node
/// keeps the others' order, so only its shards move.
pub fn rank<'a>(shard: u16, nodes: &[&'a str]) -> Vec<&'a str> {
    let mut scored: Vec<(u64, &str)> = nodes
        .iter()
        .map(|n| {
            let mut key = Vec::with_capacity(n.len() + 2);
            key.extend_from_slice(n.as_bytes());
            key.extend_from_slice(&shard.to_be_bytes());
            (xxhash_rust::xxh3::xxh3_64(&key), *n)
        })
        .collect();
    scored.sort_unstable_by(|a, b| b.cmp(a));
    scored.into_iter().map(|(_, n)| n).collect()
}

/// How a node takes part in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub node_id: String,
    /// The node's HTTP address, for the membership view.
    pub addr: String,
    pub shards: u16,
    /// How often the lease is renewed and the view re-read.
    pub heartbeat: Duration,
    /// How long a lease lasts without renewal.
    pub lease: Duration,
    /// Unsettled deliveries per shard consumer.
    pub prefetch: u16,
    /// Consumers per shard: the first is active, the others stand by.
    pub replicas: usize,
}

/// A node's status in the membership table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Joining,
    Up,
    Leaving,
    Left,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Joining => "joining",
            Status::Up => "up",
            Status::Leaving => "leaving",
            Status::Left => "left",
        }
    }
}

/// The membership view one node has (`GET /debug/cluster`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterView {
    pub node: String,
    pub status: &'static str,
    pub nodes: Vec<NodeView>,
    pub shards: Vec<ShardView>,
    /// Shards this node consumes (active or standby).
    pub consuming: Vec<u16>,
    /// Shards this node holds that rank another live node first, as of the
    /// last heartbeat: hand-overs still to come. 0 on every node: the
    /// cluster is balanced.
    pub handovers_pending: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeView {
    pub id: String,
    pub addr: String,
    /// `up`, `joining`, `leaving`, `left`, `degraded` (cut off from the
    /// broker: not ranked), or `down` (lease ran out).
    pub status: String,
    pub last_seen: u64,
    pub lease_until: u64,
    pub shards: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ShardView {
    pub id: u16,
    pub owner: Option<String>,
    pub epoch: u64,
    pub since: u64,
    /// Whether the owner's lease is valid.
    pub owner_live: bool,
}

/// A running membership and shard manager; see the module docs.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ClusterSettings,
    store: Store,
    bus: Arc<dyn Bus>,
    registry: Registry,
    fence: Arc<Fence>,
    status: Mutex<Status>,
    started_ms: u64,
    last_renewed_ms: AtomicU64,
    /// Since when (Unix ms) this node's bus has been up; 0 while it is down.
    bus_up_since_ms: AtomicU64,
    /// Since when the lease has been renewed as `up` without a lapse.
    up_since_ms: AtomicU64,
    consumers: tokio::sync::Mutex<HashMap<u16, ShardTask>>,
    view: RwLock<(Vec<NodeRow>, Vec<ShardRow>)>,
    /// Shards taken from another owner (failovers and handovers), for metrics.
    takeovers: AtomicU64,
    /// When this node took each shard it holds.
    taken_at: DashMap<u16, u64>,
    /// Serialises this node's claims of each shard: a claim on delivery and
    /// a heartbeat's claim of the same shard must not both bump its epoch.
    /// One lock per shard, so that the shards of a dead node, delivered at
    /// once, are claimed side by side rather than one after another.
    claiming: Vec<tokio::sync::Mutex<()>>,
    /// Per shard: whether the broker delivers its queue to this node's
    /// consumer now (set by a delivery the node took the shard for, cleared
    /// when the consumer is lost, stopped or handed over, or the shard is
    /// lost): with the shard held, its actors are asked here directly
    /// ([`Cluster::local_path`]).
    serving: Vec<AtomicBool>,
    /// See [`ClusterView::handovers_pending`].
    handovers_pending: AtomicUsize,
    ticker: Mutex<Option<Ticker>>,
}

/// The cluster's [`LocalPath`]: a request to an actor of a shard this node
/// serves goes to the actor as a delivery of the shard's queue would, the
/// message and its reply handed over as they are, not encoded
/// ([`Registry::deliver_here`]).
struct Local(Arc<Inner>);

impl LocalPath for Local {
    fn deliver(
        &self,
        to: &ActorId,
        msg_type: &str,
        msg: &dyn Fn() -> AnyMessage,
        deadline: tokio::time::Instant,
    ) -> Option<LocalDelivery> {
        let shard = shard_of(to, self.0.settings.shards);
        if !self.0.serves(shard) {
            return None;
        }
        let answered = self.0.registry.deliver_here(to, msg_type, msg, deadline)?;
        if !crate::telemetry::spans_exported() {
            return Some(answered);
        }
        let span = tracing::info_span!(
            "actor.local",
            otel.name = %format_args!("deliver {msg_type} (local)"),
            msg_type = %msg_type,
        );
        Some(Box::pin(tracing::Instrument::instrument(answered, span)))
    }
}

/// The lease renewer and the rebalancer, with their stop signal.
type Ticker = (watch::Sender<bool>, Vec<JoinHandle<()>>);

struct ShardTask {
    stop: watch::Sender<bool>,
    task: JoinHandle<Option<Subscription>>,
}

impl Cluster {
    /// Joins the cluster: renews a lease, consumes the shards this node ranks
    /// high for and takes the ones that have no live owner. Returns once the
    /// node is `up`.
    pub async fn join(
        settings: ClusterSettings,
        store: Store,
        bus: Arc<dyn Bus>,
        registry: Registry,
        fence: Arc<Fence>,
    ) -> anyhow::Result<Cluster> {
        let settings_shards = settings.shards;
        let inner = Arc::new(Inner {
            settings,
            store,
            bus,
            registry,
            fence,
            status: Mutex::new(Status::Joining),
            started_ms: unix_ms(),
            last_renewed_ms: AtomicU64::new(0),
            bus_up_since_ms: AtomicU64::new(0),
            up_since_ms: AtomicU64::new(0),
            consumers: tokio::sync::Mutex::new(HashMap::new()),
            view: RwLock::new((Vec::new(), Vec::new())),
            takeovers: AtomicU64::new(0),
            taken_at: DashMap::new(),
            claiming: (0..settings_shards)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            serving: (0..settings_shards)
                .map(|_| AtomicBool::new(false))
                .collect(),
            handovers_pending: AtomicUsize::new(0),
            ticker: Mutex::new(None),
        });
        // A process starting has no consumer yet, whatever an earlier
        // incarnation left in the table.
        inner.store.forget_consumers(inner.me()).await?;
        // Joining: subscribe where this node ranks high, then say `up`.
        inner.renew_once().await?;
        inner.rebalance().await?;
        inner.set_status(Status::Up);
        inner.renew_once().await?;
        inner.rebalance().await?;
        // The lease is renewed on a timer of its own: hand-overs (which wait
        // for messages in hand and passivation) never make it run out.
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        for rebalancing in [false, true] {
            let (me, mut stopped) = (Arc::clone(&inner), stopped.clone());
            tasks.push(actix_rt::spawn(async move {
                let mut every = tokio::time::interval(me.settings.heartbeat);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stopped.changed() => break,
                        _ = every.tick() => {
                            let done = if rebalancing {
                                me.rebalance().await
                            } else {
                                me.renew_once().await
                            };
                            if let Err(e) = done {
                                tracing::warn!(error = %e, rebalancing, "cluster heartbeat failed");
                            }
                        }
                    }
                }
            }));
        }
        *inner.ticker.lock().unwrap_or_else(|e| e.into_inner()) = Some((stop, tasks));
        tracing::info!(
            node = %inner.settings.node_id,
            held = inner.fence.held().len(),
            "joined the cluster"
        );
        Ok(Cluster { inner })
    }

    pub fn status(&self) -> Status {
        self.inner.status()
    }

    /// Whether this node has joined and still holds a valid lease.
    pub fn joined(&self) -> bool {
        let renewed = self.inner.last_renewed_ms.load(Ordering::Acquire);
        self.status() == Status::Up
            && unix_ms() < renewed + self.inner.settings.lease.as_millis() as u64
    }

    /// Asks this node's actors directly while it serves their shard (see
    /// [`crate::bus::client`]'s local path).
    pub fn local_path(&self) -> Arc<dyn LocalPath> {
        Arc::new(Local(Arc::clone(&self.inner)))
    }

    pub fn fence(&self) -> &Arc<Fence> {
        &self.inner.fence
    }

    /// Shards taken over from another owner since start.
    pub fn takeovers(&self) -> u64 {
        self.inner.takeovers.load(Ordering::Relaxed)
    }

    /// The membership view as of the last heartbeat.
    pub async fn view(&self) -> ClusterView {
        let inner = &self.inner;
        let now = unix_ms();
        let (nodes, shards) = inner.view.read().unwrap_or_else(|e| e.into_inner()).clone();
        let live = |id: &str| {
            nodes.iter().any(|n| {
                n.id == id
                    && n.lease_until_ms > now
                    && matches!(n.status.as_str(), "up" | "joining" | "leaving")
            })
        };
        let consuming = {
            let mut v: Vec<u16> = inner.consumers.lock().await.keys().copied().collect();
            v.sort_unstable();
            v
        };
        ClusterView {
            node: inner.settings.node_id.clone(),
            status: inner.status().as_str(),
            nodes: nodes
                .iter()
                .map(|n| NodeView {
                    id: n.id.clone(),
                    addr: n.addr.clone(),
                    status: if n.lease_until_ms <= now && n.status != "left" {
                        "down".into()
                    } else {
                        n.status.clone()
                    },
                    last_seen: n.last_seen_ms,
                    lease_until: n.lease_until_ms,
                    shards: shards
                        .iter()
                        .filter(|s| s.owner.as_deref() == Some(&n.id))
                        .count(),
                })
                .collect(),
            shards: shards
                .iter()
                .map(|s| ShardView {
                    id: s.id,
                    owner: s.owner.clone(),
                    epoch: s.epoch,
                    since: s.since_ms,
                    owner_live: s.owner.as_deref().is_some_and(live),
                })
                .collect(),
            consuming,
            handovers_pending: inner.handovers_pending.load(Ordering::Acquire),
        }
    }

    /// Leaves gracefully: hands every shard over, then marks the node `left`.
    pub async fn leave(&self) {
        let inner = &self.inner;
        inner.set_status(Status::Leaving);
        let _ = inner.renew(true).await;
        let ticker = inner
            .ticker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((stop, tasks)) = ticker {
            let _ = stop.send(true);
            for task in tasks {
                let _ = task.await;
            }
        }
        let shards: Vec<u16> = inner.consumers.lock().await.keys().copied().collect();
        for shard in shards {
            inner.hand_over(shard, false).await;
        }
        inner.set_status(Status::Left);
        let _ = inner.renew(true).await;
        tracing::info!(node = %inner.settings.node_id, "left the cluster");
    }
}

impl Inner {
    /// Whether `shard`'s actors are asked here directly now: held, and its
    /// queue delivered to this node's consumer.
    fn serves(&self, shard: u16) -> bool {
        self.serving
            .get(usize::from(shard))
            .is_some_and(|s| s.load(Ordering::Acquire))
            && self.fence.epoch(shard).is_some()
            && matches!(self.status(), Status::Joining | Status::Up)
    }

    fn set_serving(&self, shard: u16, serving: bool) {
        if let Some(s) = self.serving.get(usize::from(shard)) {
            s.store(serving, Ordering::Release);
        }
    }

    fn not_serving(&self, shard: u16) {
        self.set_serving(shard, false);
    }

    fn status(&self) -> Status {
        *self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_status(&self, status: Status) {
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = status;
    }

    fn me(&self) -> &str {
        &self.settings.node_id
    }

    async fn renew(&self, bus_ok: bool) -> Result<(), crate::store::StoreError> {
        let now = unix_ms();
        // A node cut off from the broker cannot receive: it says `degraded`,
        // so that the others do not rank it and hand its shards back to it.
        let status = match self.status() {
            Status::Up if !bus_ok => "degraded",
            s => s.as_str(),
        };
        // Warmth starts again after a lapse (a stall, a cut from the
        // database) and while not `up`.
        let last = self.last_renewed_ms.load(Ordering::Acquire);
        let lapsed = last == 0 || now > last + self.settings.lease.as_millis() as u64;
        if lapsed && last != 0 && self.status() == Status::Up {
            // The others saw no lease for a while and may have taken this
            // node's shards (they are taken back once it is warm again).
            tracing::warn!(
                late_ms = now - last - self.settings.lease.as_millis() as u64,
                "lease renewed after it ran out (the node stalled, was starved of CPU or could not reach the database)"
            );
        }
        if lapsed || status != "up" {
            self.up_since_ms.store(now, Ordering::Release);
        }
        self.store
            .heartbeat(&NodeRow {
                id: self.settings.node_id.clone(),
                addr: self.settings.addr.clone(),
                status: status.into(),
                started_ms: self.started_ms,
                last_seen_ms: now,
                lease_until_ms: now + self.settings.lease.as_millis() as u64,
                up_since_ms: self.up_since_ms.load(Ordering::Acquire),
            })
            .await?;
        self.last_renewed_ms.store(now, Ordering::Release);
        Ok(())
    }

    /// Renews the lease (as `degraded` while the broker is away); cut off
    /// from the database for half a lease, stops consuming altogether.
    async fn renew_once(self: &Arc<Self>) -> anyhow::Result<()> {
        let bus_ok = self.bus.healthy().await;
        if let Err(e) = self.renew(bus_ok).await {
            let renewed = self.last_renewed_ms.load(Ordering::Acquire);
            if unix_ms() > renewed + self.settings.lease.as_millis() as u64 / 2 {
                // Others will soon take our shards: stop consuming so the
                // broker hands them to a standby now.
                self.let_go_of_everything().await;
            }
            return Err(e.into());
        }
        Ok(())
    }

    /// Reads the view, then subscribes, unsubscribes, hands over and takes
    /// shards as the ranking says. A failure on one shard does not stop the
    /// others.
    ///
    /// Consumers: a shard's holder and the first-ranked other node (the one
    /// the shard goes to next); with no live holder, the top `replicas`. A
    /// holder hands a shard to the first-ranked node only when that node is
    /// warm (up, without a lapse, for [`Inner::warmup`]) and is the shard's
    /// one other consumer, so that the broker, which activates the
    /// earliest-registered waiting consumer, cannot activate anyone else; and
    /// at most [`HANDOVERS_PER_BEAT`] shards per heartbeat.
    async fn rebalance(self: &Arc<Self>) -> anyhow::Result<()> {
        let bus_ok = self.bus.healthy().await;
        let nodes = self.store.cluster_nodes().await?;
        let shards = self.store.shard_owners().await?;
        let consumer_rows = self.store.shard_consumers().await?;
        let now = unix_ms();
        // A peer `degraded` within a lease of this node's own bus coming
        // back was most likely cut off by the same broker restart and is
        // reconnecting too: it still counts as up (taking its shards now
        // would only bounce them back). Later, `degraded` means cut off alone.
        let up_since = if bus_ok {
            let _ =
                self.bus_up_since_ms
                    .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
            self.bus_up_since_ms.load(Ordering::Acquire)
        } else {
            self.bus_up_since_ms.store(0, Ordering::Release);
            0
        };
        let peers_reconnecting = bus_ok && now < up_since + self.settings.lease.as_millis() as u64;
        let serving = |status: &str| status == "up" || (peers_reconnecting && status == "degraded");
        let me = self.me().to_owned();
        let status = self.status();
        let participating = matches!(status, Status::Joining | Status::Up);
        let mut live: Vec<&str> = nodes
            .iter()
            .filter(|n| n.lease_until_ms > now && serving(&n.status) && n.id != me)
            .map(|n| n.id.as_str())
            .collect();
        if participating {
            live.push(&me);
        }
        let lease_valid = |id: &str| nodes.iter().any(|n| n.id == id && n.lease_until_ms > now);
        // An owner cut off from the broker (`degraded`) cannot serve its
        // shards: they are taken like a dead node's.
        let owner_live = |owner: &str| {
            nodes.iter().any(|n| {
                n.id == owner
                    && n.lease_until_ms > now
                    && (matches!(n.status.as_str(), "joining" | "leaving") || serving(&n.status))
            })
        };
        let warmup = self.warmup().as_millis() as u64;
        let warm = |id: &str| {
            nodes.iter().any(|n| {
                n.id == id
                    && n.status == "up"
                    && n.lease_until_ms > now
                    && n.up_since_ms > 0
                    && n.up_since_ms + warmup <= now
            })
        };
        // Other live nodes' consumers, by shard.
        let mut others_consuming: HashMap<u16, Vec<&str>> = HashMap::new();
        for (shard, node) in &consumer_rows {
            if *node != me && lease_valid(node) {
                others_consuming.entry(*shard).or_default().push(node);
            }
        }
        let rows: HashMap<u16, &ShardRow> = shards.iter().map(|s| (s.id, s)).collect();
        let replicas = self.settings.replicas.max(1);
        let mut to_claim = Vec::new();
        let mut handed = 0;
        let mut pending = 0;
        for shard in 0..self.settings.shards {
            let ranked = rank(shard, &live);
            let row = rows.get(&shard);
            // A hold the table has moved past is gone: another node took it.
            // (A row older than our own claim, read before it, proves nothing.)
            if let Some(epoch) = self.fence.epoch(shard) {
                let taken = row.is_none_or(|r| {
                    r.epoch > epoch || (r.epoch == epoch && r.owner.as_deref() != Some(&me))
                });
                if taken {
                    self.not_serving(shard);
                    self.fence.lost(shard, epoch);
                    tracing::info!(shard, epoch, "shard taken by another node");
                    self.passivate_shard(shard).await;
                }
            }
            let held = self.fence.epoch(shard).is_some();
            let holder = if held {
                Some(me.as_str())
            } else {
                row.and_then(|r| r.owner.as_deref())
                    .filter(|o| owner_live(o))
            };
            // Who should consume: the holder and the nodes it hands to next.
            let wanted: Vec<&str> = match holder {
                Some(h) => std::iter::once(h)
                    .chain(
                        ranked
                            .iter()
                            .copied()
                            .filter(|n| *n != h)
                            .take(replicas - 1),
                    )
                    .collect(),
                None => ranked.iter().take(replicas).copied().collect(),
            };
            let want = participating && wanted.contains(&me.as_str());
            let first = ranked.first().copied() == Some(me.as_str());
            if !bus_ok {
                continue; // nothing to consume with; consumers re-attach by themselves
            }
            let subscribed = {
                let mut consumers = self.consumers.lock().await;
                // A consumer that gave up (broker away too long) is consumed anew.
                if consumers.get(&shard).is_some_and(|c| c.task.is_finished()) {
                    consumers.remove(&shard);
                    tracing::warn!(shard, "shard consumer ended; consuming again");
                }
                consumers.contains_key(&shard)
            };
            if held && !first && participating {
                let next = ranked.first().copied();
                // It must have shown life after this node took the shard (a
                // node killed a moment ago still ranks first until its lease
                // runs out, and the broker gave its shards to the standby at
                // once), be warm, and be the one other consumer.
                let ready = next.is_some_and(|f| {
                    let taken = self.taken_at.get(&shard).map_or(0, |t| *t);
                    let alive_since_taken = nodes.iter().any(|n| {
                        n.id == f
                            && n.last_seen_ms > taken + self.settings.heartbeat.as_millis() as u64
                    });
                    alive_since_taken
                        && warm(f)
                        && others_consuming.get(&shard).map(Vec::as_slice) == Some(&[f][..])
                });
                if ready && handed < HANDOVERS_PER_BEAT {
                    handed += 1;
                    // Consume again as a standby if this node is next after it.
                    let after: Vec<&str> =
                        ranked.iter().skip(1).take(replicas - 1).copied().collect();
                    self.hand_over(shard, after.contains(&me.as_str())).await;
                    continue;
                }
                pending += 1;
            }
            if want && !subscribed {
                if let Err(e) = self.subscribe(shard).await {
                    tracing::warn!(shard, error = %e, "cannot consume the shard yet");
                    continue;
                }
            } else if !want && subscribed && !held {
                self.hand_over(shard, false).await;
                continue;
            }
            let orphan = row.is_none_or(|r| r.owner.as_deref().is_none_or(|o| !owner_live(o)));
            if first && !held && orphan {
                to_claim.push((shard, Some(row.map_or(0, |r| r.epoch))));
            }
        }
        self.handovers_pending.store(pending, Ordering::Release);
        self.reconcile_consumer_rows(&consumer_rows, now).await;
        if !to_claim.is_empty() {
            // Shards in ascending order (a claim on delivery holds one only).
            to_claim.sort_unstable_by_key(|(shard, _)| *shard);
            let mut _claiming = Vec::with_capacity(to_claim.len());
            for (shard, _) in &to_claim {
                _claiming.push(self.claiming[usize::from(*shard)].lock().await);
            }
            // Not those taken on delivery meanwhile, and only if nobody
            // took them since the view was read.
            to_claim.retain(|(shard, _)| self.fence.epoch(*shard).is_none());
            match self.store.claim_shards(&me, &to_claim, now).await {
                Ok(claimed) => {
                    for (shard, epoch) in &claimed {
                        self.fence.hold(*shard, *epoch);
                        self.taken_at.insert(*shard, now);
                        if rows.get(shard).is_some_and(|r| r.owner.is_some()) {
                            self.takeovers.fetch_add(1, Ordering::Relaxed);
                            crate::metrics::failover();
                        }
                    }
                    let taken: Vec<u16> = claimed.iter().map(|(s, _)| *s).collect();
                    tracing::info!(shards = ?taken, "took shards without a live owner");
                }
                Err(e) => tracing::warn!(error = %e, "could not take orphaned shards"),
            }
        }
        let (nodes, shards) = (
            self.store.cluster_nodes().await.unwrap_or(nodes),
            self.store.shard_owners().await.unwrap_or(shards),
        );
        *self.view.write().unwrap_or_else(|e| e.into_inner()) = (nodes, shards);
        Ok(())
    }

    /// How long a node must have been up without a lapse before shards are
    /// handed back to it: two leases, so a node that flaps (or just woke
    /// from a stall) is not given shards it may lose again at once.
    fn warmup(&self) -> Duration {
        self.settings.lease * 2
    }

    /// Makes this node's rows in `shard_consumers` say what it consumes
    /// (a write that failed before, or a consumer that ended by itself).
    async fn reconcile_consumer_rows(&self, rows: &[(u16, String)], now: u64) {
        let me = self.me();
        let recorded: std::collections::BTreeSet<u16> = rows
            .iter()
            .filter(|(_, n)| n == me)
            .map(|(s, _)| *s)
            .collect();
        let consuming: std::collections::BTreeSet<u16> = {
            let consumers = self.consumers.lock().await;
            consumers
                .iter()
                .filter(|(_, c)| !c.task.is_finished())
                .map(|(s, _)| *s)
                .collect()
        };
        for shard in consuming.symmetric_difference(&recorded) {
            let on = consuming.contains(shard);
            if let Err(e) = self.store.set_consuming(me, *shard, on, now).await {
                tracing::warn!(shard, error = %e, "could not record a shard consumer");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_keys_and_addresses_map_to_the_same_shard() {
        let a: crate::address::ActorId = "consult/c-1".parse().unwrap();
        assert_eq!(shard_of_key("consult/c-1", 64), shard_of(&a, 64));
    }

    #[test]
    fn rendezvous_spreads_shards_and_removing_a_node_moves_only_its_shards() {
        let three = ["n1", "n2", "n3"];
        let two = ["n1", "n3"];
        let mut counts = HashMap::new();
        for shard in 0..64u16 {
            let before = rank(shard, &three);
            *counts.entry(before[0]).or_insert(0) += 1;
            let after = rank(shard, &two);
            if before[0] != "n2" {
                assert_eq!(after[0], before[0], "shard {shard} moved needlessly");
            } else {
                // The standby (second) becomes first: it is already consuming.
                assert_eq!(after[0], before[1]);
            }
        }
        for n in three {
            let c = counts[n];
            assert!((12..=30).contains(&c), "{n} has {c} of 64 shards");
        }
    }

    #[test]
    fn a_fence_forgets_a_lost_epoch_but_not_a_newer_one() {
        let f = Fence::new(8);
        f.hold(3, 5);
        f.lost(3, 4);
        assert_eq!(f.epoch(3), Some(5));
        f.lost(3, 5);
        assert_eq!(f.epoch(3), None);
    }
}
