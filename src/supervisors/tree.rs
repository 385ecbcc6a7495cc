//! Introspection: the live supervision tree and the stream of supervision events.
//!
//! Every supervisor and supervised actor owns one [`NodeInfo`], shared through an
//! `Arc` with its parent, the registry and this index. Readers take snapshots
//! without messaging any actor, so a tree of 100,000 actors can be listed while
//! they work. This module never holds message payloads: nothing here is PHI.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use crate::clock::unix_ms;

use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, Notify};

/// Lifecycle state of a tree node, as ops see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Status {
    Starting = 0,
    Running = 1,
    /// Crashed; waiting (backoff) for its supervisor to restart it.
    Restarting = 2,
    Stopping = 3,
    Stopped = 4,
    /// A supervisor that exceeded its restart intensity and gave up.
    Failed = 5,
}

impl Status {
    fn from_u8(v: u8) -> Status {
        match v {
            0 => Status::Starting,
            1 => Status::Running,
            2 => Status::Restarting,
            3 => Status::Stopping,
            4 => Status::Stopped,
            _ => Status::Failed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Restarting => "restarting",
            Status::Stopping => "stopping",
            Status::Stopped => "stopped",
            Status::Failed => "failed",
        }
    }
}

/// What a tree node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A supervisor with its strategy.
    Supervisor(super::Strategy),
    /// A worker hosting an actor of this kind.
    Worker(&'static str),
}

static NEXT_UID: AtomicU64 = AtomicU64::new(1);

/// The shared, lock-light record of one node of the tree.
pub struct NodeInfo {
    /// Unique for the process; increases with start order.
    pub uid: u64,
    /// Parent's uid; `None` for a root.
    pub parent: Option<u64>,
    /// `/`-separated path from the root, e.g. `/cardio/entities/consult/c-17`.
    pub path: Box<str>,
    /// The last path segment.
    pub id: Box<str>,
    pub kind: NodeKind,
    status: AtomicU8,
    restarts: AtomicU32,
    /// Unix milliseconds when the current incarnation started.
    started_at_ms: AtomicU64,
    /// Calls queued for this actor and not yet taken by it.
    pub(crate) depth: AtomicU32,
    last_failure: Mutex<Option<Box<str>>>,
    /// What a parent that gave up waiting killed ([`Kill`] bits); wakes
    /// [`Self::killed`].
    kill_flag: AtomicU8,
    /// Set when the node leaves for passivation: senders wait for its
    /// successor instead of starting one while it still flushes.
    draining: AtomicBool,
    kill: Notify,
}

impl std::fmt::Debug for NodeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeInfo")
            .field("path", &self.path)
            .field("status", &self.status())
            .finish()
    }
}

impl NodeInfo {
    pub fn new(parent: Option<&NodeInfo>, id: &str, kind: NodeKind) -> Arc<Self> {
        let path = match parent {
            Some(p) => format!("{}/{}", p.path, id),
            None => format!("/{id}"),
        };
        Arc::new(Self {
            uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
            parent: parent.map(|p| p.uid),
            path: path.into_boxed_str(),
            id: id.into(),
            kind,
            status: AtomicU8::new(Status::Starting as u8),
            restarts: AtomicU32::new(0),
            started_at_ms: AtomicU64::new(unix_ms()),
            depth: AtomicU32::new(0),
            last_failure: Mutex::new(None),
            kill_flag: AtomicU8::new(0),
            draining: AtomicBool::new(false),
            kill: Notify::new(),
        })
    }

    pub fn status(&self) -> Status {
        Status::from_u8(self.status.load(Ordering::Acquire))
    }

    pub(crate) fn set_status(&self, s: Status) {
        self.status.store(s as u8, Ordering::Release);
    }

    pub fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// `supervisor`, or the kind of actor a worker hosts.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            NodeKind::Supervisor(_) => "supervisor",
            NodeKind::Worker(kind) => kind,
        }
    }

    pub(crate) fn count_restart(&self) -> u32 {
        self.restarts.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn mark_started(&self) {
        self.started_at_ms.store(unix_ms(), Ordering::Relaxed);
    }

    pub fn mailbox_depth(&self) -> u32 {
        self.depth.load(Ordering::Relaxed)
    }

    pub fn last_failure(&self) -> Option<String> {
        self.last_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_deref()
            .map(str::to_owned)
    }

    pub(crate) fn set_failure(&self, reason: &str) {
        *self.last_failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.into());
    }

    pub fn uptime_ms(&self) -> u64 {
        match self.status() {
            Status::Running => unix_ms().saturating_sub(self.started_at_ms.load(Ordering::Relaxed)),
            _ => 0,
        }
    }

    /// Aborts what the node runs in `scope`: its start (`Kill::START`), or its
    /// handlers and stop hook (`Kill::RUN`). Scoped, so that a kill for a start
    /// that finished at that very moment cannot abort a later handler.
    pub(crate) fn kill(&self, scope: u8) {
        self.kill_flag.fetch_or(scope, Ordering::AcqRel);
        self.kill.notify_waiters();
    }

    pub(crate) fn is_killed(&self, scope: u8) -> bool {
        self.kill_flag.load(Ordering::Acquire) & scope != 0
    }

    /// Resolves once [`Self::kill`] was called for `scope`.
    pub(crate) async fn killed(&self, scope: u8) {
        loop {
            let notified = self.kill.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_killed(scope) {
                return;
            }
            notified.await;
        }
    }

    pub(crate) fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub(crate) fn clear_kill(&self) {
        self.kill_flag.store(0, Ordering::Release);
    }
}

/// Scopes of [`NodeInfo::kill`].
pub(crate) struct Kill;

impl Kill {
    pub(crate) const START: u8 = 1;
    pub(crate) const RUN: u8 = 2;
}

/// One event in the life of the tree.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SupervisionEvent {
    /// Unix milliseconds.
    pub at_ms: u64,
    pub path: String,
    #[serde(flatten)]
    pub what: EventKind,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    Started,
    Stopped {
        reason: String,
    },
    Crashed {
        reason: String,
    },
    Restarted {
        restarts: u32,
        delay_ms: u64,
    },
    /// A supervisor exceeded its restart intensity and failed to its parent.
    Escalated {
        reason: String,
    },
    /// A message that kept crashing its actor was set aside.
    DeadLettered {
        reason: String,
    },
}

/// A flat, serialisable view of one node.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeSnapshot {
    pub path: String,
    pub parent: Option<String>,
    /// `supervisor` or the actor kind (`consult`, `device`, ...).
    pub kind: String,
    /// For supervisors, the strategy.
    pub strategy: Option<&'static str>,
    pub id: String,
    pub status: Status,
    pub restarts: u32,
    pub last_failure: Option<String>,
    pub uptime_ms: u64,
    pub mailbox_depth: u32,
}

/// Nested form for `/debug/tree` and `cardio tree`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct TreeView {
    pub path: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    pub id: String,
    pub status: String,
    pub restarts: u32,
    #[serde(default)]
    pub last_failure: Option<String>,
    #[serde(default)]
    pub uptime_ms: u64,
    #[serde(default)]
    pub mailbox_depth: u32,
    #[serde(default)]
    pub children: Vec<TreeView>,
}

/// The index of every live node plus the event stream. Cheap to clone.
#[derive(Clone)]
pub struct Tree {
    inner: Arc<TreeInner>,
}

struct TreeInner {
    nodes: DashMap<u64, Arc<NodeInfo>>,
    events: broadcast::Sender<SupervisionEvent>,
    /// The node's recent dead letters (its inbox records them).
    dead_letters: super::dead_letters::DeadLetters,
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

impl Tree {
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(4096);
        Self {
            inner: Arc::new(TreeInner {
                nodes: DashMap::new(),
                events,
                dead_letters: Default::default(),
            }),
        }
    }

    pub(crate) fn insert(&self, node: &Arc<NodeInfo>) {
        self.inner.nodes.insert(node.uid, Arc::clone(node));
    }

    pub(crate) fn remove(&self, node: &NodeInfo) {
        self.inner.nodes.remove(&node.uid);
    }

    /// The messages this node set aside lately, and why.
    pub fn dead_letters(&self) -> &super::dead_letters::DeadLetters {
        &self.inner.dead_letters
    }

    /// Subscribes to supervision events from now on. A subscriber that falls more
    /// than 4096 events behind sees `RecvError::Lagged` and the count it missed.
    pub fn events(&self) -> broadcast::Receiver<SupervisionEvent> {
        self.inner.events.subscribe()
    }

    pub(crate) fn emit(&self, node: &NodeInfo, what: EventKind) {
        if self.inner.events.receiver_count() == 0 {
            return;
        }
        let _ = self.inner.events.send(SupervisionEvent {
            at_ms: unix_ms(),
            path: node.path.to_string(),
            what,
        });
    }

    /// Emits an event about a path that may not be live right now.
    pub(crate) fn emit_path(&self, path: String, what: EventKind) {
        if self.inner.events.receiver_count() > 0 {
            let _ = self.inner.events.send(SupervisionEvent {
                at_ms: unix_ms(),
                path,
                what,
            });
        }
    }

    /// Live workers and their queued messages, by actor kind.
    pub fn actor_counts(&self) -> Vec<(&'static str, u64, u64)> {
        let mut by_kind: Vec<(&'static str, u64, u64)> = Vec::new();
        for n in self.inner.nodes.iter() {
            if let NodeKind::Worker(kind) = n.kind {
                let depth = u64::from(n.mailbox_depth());
                match by_kind.iter_mut().find(|(k, _, _)| *k == kind) {
                    Some(entry) => {
                        entry.1 += 1;
                        entry.2 += depth;
                    }
                    None => by_kind.push((kind, 1, depth)),
                }
            }
        }
        by_kind
    }

    /// Number of live nodes (supervisors and workers).
    pub fn len(&self) -> usize {
        self.inner.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.nodes.is_empty()
    }

    /// The node at `path`, if it is live.
    pub fn find(&self, path: &str) -> Option<Arc<NodeInfo>> {
        self.inner
            .nodes
            .iter()
            .find(|n| &*n.path == path)
            .map(|n| Arc::clone(n.value()))
    }

    /// Flat snapshot in start order (parents before children).
    pub fn snapshot(&self) -> Vec<NodeSnapshot> {
        let mut nodes: Vec<Arc<NodeInfo>> = self
            .inner
            .nodes
            .iter()
            .map(|n| Arc::clone(n.value()))
            .collect();
        nodes.sort_by_key(|n| n.uid);
        let paths: std::collections::HashMap<u64, &str> =
            nodes.iter().map(|n| (n.uid, &*n.path)).collect();
        nodes
            .iter()
            .map(|n| {
                let (kind, strategy) = match n.kind {
                    NodeKind::Supervisor(s) => ("supervisor".to_owned(), Some(s.as_str())),
                    NodeKind::Worker(k) => (k.to_owned(), None),
                };
                NodeSnapshot {
                    path: n.path.to_string(),
                    parent: n.parent.and_then(|p| paths.get(&p)).map(|p| p.to_string()),
                    kind,
                    strategy,
                    id: n.id.to_string(),
                    status: n.status(),
                    restarts: n.restarts(),
                    last_failure: n.last_failure(),
                    uptime_ms: n.uptime_ms(),
                    mailbox_depth: n.mailbox_depth(),
                }
            })
            .collect()
    }

    /// Nested view: one entry per root.
    pub fn view(&self) -> Vec<TreeView> {
        nest(self.snapshot())
    }
}

/// Turns a flat snapshot (parents before children) into nested views.
pub fn nest(flat: Vec<NodeSnapshot>) -> Vec<TreeView> {
    use std::collections::HashMap;
    let mut children: HashMap<Option<String>, Vec<NodeSnapshot>> = HashMap::new();
    for n in flat {
        children.entry(n.parent.clone()).or_default().push(n);
    }
    fn build(
        n: NodeSnapshot,
        children: &mut std::collections::HashMap<Option<String>, Vec<NodeSnapshot>>,
    ) -> TreeView {
        let kids = children.remove(&Some(n.path.clone())).unwrap_or_default();
        TreeView {
            children: kids.into_iter().map(|k| build(k, children)).collect(),
            path: n.path,
            kind: n.kind,
            strategy: n.strategy.map(str::to_owned),
            id: n.id,
            status: n.status.as_str().to_owned(),
            restarts: n.restarts,
            last_failure: n.last_failure,
            uptime_ms: n.uptime_ms,
            mailbox_depth: n.mailbox_depth,
        }
    }
    let roots = children.remove(&None).unwrap_or_default();
    roots.into_iter().map(|r| build(r, &mut children)).collect()
}

impl crate::metrics::RestartedChild for NodeInfo {
    fn kind_name(&self) -> &'static str {
        NodeInfo::kind_name(self)
    }
    fn last_failure(&self) -> Option<String> {
        NodeInfo::last_failure(self)
    }
}
