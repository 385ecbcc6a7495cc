//! What ops and admins see and do: supervision trees of every node,
//! supervision events, the cluster's nodes and shards, the audit trail, and
//! restarting an actor. No PHI: actor ids of patients' actors are masked.
//!
//! Trees come from each node's own runtime (this node's directly, the
//! others' over HTTP with the caller's token); the cluster view and the
//! audit trail from SQL; a restart is an event every node hears.

use async_graphql::{Context, Enum, Object, SimpleObject, Subscription, ID};
use futures_util::Stream;
use serde::{Deserialize, Serialize};

use super::page::{connection, AuditKey, Page};
use super::role::RoleGql;
use super::scalars::{DateTime, Int64};
use super::Bearer;
use crate::address::ActorId;
use crate::api::access::{deps, principal, Access};
use crate::api::error::ApiError;
use crate::api::live::{async_stream_lite, until_expiry, SubscriptionSlot};
use crate::bus::events::NodeSupervisionEvent;
use crate::bus::BusEvent;
use crate::principal::Role;

/// Where `restartActor` asks every node to restart an actor it hosts.
pub const RESTART_TOPIC: &str = "control.restart";

/// Restart actor `actor` (`kind/id`) wherever it runs (`restartActor`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestartRequest {
    pub actor: String,
}

impl BusEvent for RestartRequest {
    const TYPE: &'static str = "actor.restart";
}

/// One node of a supervision tree, flattened (`parent` names its parent).
#[derive(SimpleObject, Clone)]
pub struct TreeNode {
    pub node: ID,
    pub path: String,
    pub parent: Option<String>,
    /// `supervisor` or the actor kind.
    pub kind: String,
    pub id: String,
    pub status: ActorStatus,
    pub restarts: i32,
    pub last_failure: Option<String>,
    pub mailbox_depth: i32,
}

fn flatten(
    node: &str,
    v: &crate::supervisors::TreeView,
    parent: Option<&str>,
    out: &mut Vec<TreeNode>,
) {
    let masked = v.path != crate::api::mask_path(&v.path);
    out.push(TreeNode {
        node: ID(node.into()),
        path: crate::api::mask_path(&v.path),
        parent: parent.map(str::to_owned),
        kind: v.kind.clone(),
        id: if masked {
            crate::api::mask_id(&v.id)
        } else {
            v.id.clone()
        },
        status: ActorStatus::parse(&v.status),
        restarts: v.restarts as i32,
        last_failure: v.last_failure.clone(),
        mailbox_depth: v.mailbox_depth as i32,
    });
    for c in &v.children {
        flatten(node, c, Some(&v.path), out);
    }
}

/// Where an actor is in its life.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ActorStatus {
    Starting,
    Running,
    /// Crashed; its supervisor restarts it after a backoff.
    Restarting,
    Stopping,
    Stopped,
    /// Gave up on (restart intensity spent, or a failed start).
    Failed,
}

impl ActorStatus {
    /// From the tree's name of a status (`running`, …; a peer's tree
    /// arrives as JSON).
    fn parse(s: &str) -> ActorStatus {
        match s {
            "starting" => ActorStatus::Starting,
            "running" => ActorStatus::Running,
            "restarting" => ActorStatus::Restarting,
            "stopping" => ActorStatus::Stopping,
            "stopped" => ActorStatus::Stopped,
            _ => ActorStatus::Failed,
        }
    }
}

/// What happened to a supervised actor.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum SupervisionEventKind {
    Started,
    Stopped,
    Crashed,
    Restarted,
    /// A supervisor gave up and failed to its parent.
    Escalated,
    /// A message for it could not be delivered and was dead-lettered.
    DeadLettered,
}

/// A supervision event of any node.
#[derive(SimpleObject, Clone)]
#[graphql(name = "SupervisionEvent")]
pub struct SupervisionEventGql {
    pub node: ID,
    pub at: DateTime,
    pub path: String,
    pub event: SupervisionEventKind,
    pub reason: Option<String>,
}

impl From<NodeSupervisionEvent> for SupervisionEventGql {
    fn from(e: NodeSupervisionEvent) -> Self {
        use crate::supervisors::tree::EventKind;
        use SupervisionEventKind as K;
        let (event, reason) = match e.event.what {
            EventKind::Started => (K::Started, None),
            EventKind::Stopped { reason } => (K::Stopped, Some(reason)),
            EventKind::Crashed { reason } => (K::Crashed, Some(reason)),
            EventKind::Restarted { .. } => (K::Restarted, None),
            EventKind::Escalated { reason } => (K::Escalated, Some(reason)),
            EventKind::DeadLettered { reason } => (K::DeadLettered, Some(reason)),
        };
        SupervisionEventGql {
            node: ID(e.node),
            at: DateTime::from_unix_ms(e.event.at_ms),
            path: crate::api::mask_path(&e.event.path),
            event,
            reason,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Node")]
pub struct NodeGql {
    pub id: ID,
    pub addr: String,
    pub status: NodeStatus,
    pub last_seen: DateTime,
    pub shards: i32,
}

/// A node's membership status.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum NodeStatus {
    Joining,
    Up,
    Leaving,
    /// Left the cluster in order.
    Left,
    /// Alive but cut off from the broker: it gave its shards up.
    Degraded,
    /// Its lease ran out without leaving: presumed dead.
    Down,
}

impl NodeStatus {
    fn parse(s: &str) -> NodeStatus {
        match s {
            "joining" => NodeStatus::Joining,
            "up" => NodeStatus::Up,
            "leaving" => NodeStatus::Leaving,
            "left" => NodeStatus::Left,
            "degraded" => NodeStatus::Degraded,
            _ => NodeStatus::Down,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Shard")]
pub struct ShardGql {
    pub id: i32,
    pub owner: Option<ID>,
    /// The fencing epoch: bumped each time the shard changes hands.
    pub epoch: Int64,
}

#[derive(SimpleObject)]
#[graphql(name = "Cluster")]
pub struct ClusterGql {
    pub node: ID,
    pub nodes: Vec<NodeGql>,
    pub shards: Vec<ShardGql>,
}

#[derive(SimpleObject)]
#[graphql(name = "AuditEntry")]
pub struct AuditEntryGql {
    /// The entry's place in the chain.
    pub seq: Int64,
    pub at: DateTime,
    pub subject: ID,
    /// The role the subject acted in; null for the summaries of refused
    /// sign-ins (no principal).
    pub role: Option<RoleGql>,
    /// What was done: `read`, `write`, `register patient`, … (an open
    /// vocabulary); an access under a break-glass grant is
    /// `break_glass:<action>`.
    pub action: String,
    pub patient_id: Option<ID>,
    pub fields: String,
    pub outcome: AuditOutcome,
}

/// What became of an audited act.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum AuditOutcome {
    Allowed,
    Refused,
    /// Allowed, then failed (a second entry after the allowed one).
    Failed,
}

/// Fetches `GET {path}` (a supervision tree, a node's series) of the node
/// at `addr` on the caller's behalf, at most `limit` bytes of JSON. Over
/// https (peers verified with `tls`) when this node serves HTTPS: the
/// caller's bearer token never crosses the network in clear.
pub(super) async fn peer_get<T: serde::de::DeserializeOwned + 'static>(
    addr: &str,
    path: &str,
    limit: usize,
    bearer: Option<String>,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> Option<T> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{addr}{path}");
    let (addr, path) = (addr.to_owned(), path.to_owned());
    // awc lives on this worker's thread: fetch there.
    let fetched = actix_rt::spawn(async move {
        let client = match tls {
            Some(tls) => awc::Client::builder()
                .connector(awc::Connector::new().rustls_0_23(tls))
                .finish(),
            None => awc::Client::new(),
        };
        let mut req = client.get(url);
        if let Some(b) = &bearer {
            req = req.insert_header(("authorization", format!("Bearer {b}")));
        }
        match req.send().await {
            Ok(mut r) if r.status().is_success() => r.json::<T>().limit(limit).await.ok(),
            Ok(r) => {
                tracing::warn!(peer = %addr, %path, status = %r.status(), "a peer refused the request");
                None
            }
            Err(e) => {
                // A TLS failure (a peer not verified by tls_peer_ca_file) shows here.
                tracing::warn!(peer = %addr, %path, error = ?e, "cannot reach a peer");
                None
            }
        }
    })
    .await;
    fetched.ok().flatten()
}

#[derive(Default)]
pub struct OpsQuery;

#[Object]
impl OpsQuery {
    /// Supervision trees, flattened: this node's, or `node`'s, or (with
    /// `node: "*"`) every live node's (ops and admin).
    async fn supervision_tree(
        &self,
        ctx: &Context<'_>,
        node: Option<ID>,
    ) -> async_graphql::Result<Vec<TreeNode>> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        Access::new(d, who, "read supervision tree", "ops")
            .require(&[Role::Ops, Role::Admin])
            .await?;
        let wanted = node.map(|n| n.0).unwrap_or_else(|| d.node_id.clone());
        let mut out = Vec::new();
        if wanted == d.node_id || wanted == "*" {
            for root in d.tree.view() {
                flatten(&d.node_id, &root, None, &mut out);
            }
        }
        if wanted != d.node_id {
            let view = d.cluster.view().await;
            let bearer = ctx.data_opt::<Bearer>().map(|b| b.0.clone());
            for n in view.nodes.iter().filter(|n| {
                n.id != d.node_id && (wanted == "*" || n.id == wanted) && n.status == "up"
            }) {
                match peer_get::<crate::supervisors::TreeView>(
                    &n.addr,
                    "/debug/tree",
                    64 << 20,
                    bearer.clone(),
                    d.peer_tls.clone(),
                )
                .await
                {
                    Some(t) => flatten(&n.id, &t, None, &mut out),
                    None => {
                        tracing::warn!(node = %n.id, "a node did not answer with its tree");
                        let cause = "a node did not answer with its tree";
                        return Err(ApiError::unavailable(cause).into());
                    }
                }
            }
        }
        Ok(out)
    }

    /// Nodes and shards with their owners (ops and admin).
    async fn cluster(&self, ctx: &Context<'_>) -> async_graphql::Result<ClusterGql> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        Access::new(d, who, "read cluster", "ops")
            .require(&[Role::Ops, Role::Admin])
            .await?;
        let v = d.cluster.view().await;
        Ok(ClusterGql {
            node: ID(v.node),
            nodes: v
                .nodes
                .into_iter()
                .map(|n| NodeGql {
                    id: ID(n.id),
                    addr: n.addr,
                    status: NodeStatus::parse(&n.status),
                    last_seen: DateTime::from_unix_ms(n.last_seen),
                    shards: n.shards as i32,
                })
                .collect(),
            shards: v
                .shards
                .into_iter()
                .map(|s| ShardGql {
                    id: i32::from(s.id),
                    owner: s.owner.map(ID),
                    epoch: Int64(s.epoch as i64),
                })
                .collect(),
        })
    }

    /// The PHI audit trail in chain order (oldest first), optionally of one
    /// patient (admin only).
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        patient_id: Option<ID>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<
        async_graphql::connection::Connection<
            async_graphql::connection::OpaqueCursor<AuditKey>,
            AuditEntryGql,
        >,
    > {
        let (who, d) = (principal(ctx)?, deps(ctx));
        if let Some(p) = &patient_id {
            crate::api::access::valid(p, "patientId")?;
        }
        let page = Page::<AuditKey>::of(first, after)?;
        // Reading the trail is itself audited (with the patient it filters on).
        let access = Access::new(d, who, "read audit log", "audit_log");
        access.require(&[Role::Admin]).await?;
        access
            .allowed(patient_id.as_ref().map(|p| p.as_str()))
            .await?;
        let rows = d
            .store
            .audit_log(
                patient_id.as_ref().map(|p| p.as_str()),
                page.after.map_or(0, |k| k.l),
                page.limit(),
            )
            .await
            .map_err(ApiError::unavailable)?;
        let rows = rows
            .into_iter()
            .map(|r| {
                let key = AuditKey { l: r.seq };
                let entry = AuditEntryGql {
                    seq: Int64(r.seq as i64),
                    at: DateTime::from_unix_ms(r.entry.at_ms),
                    subject: ID(r.entry.subject),
                    role: RoleGql::parse(&r.entry.role),
                    action: r.entry.action,
                    patient_id: r.entry.patient_id.map(ID),
                    fields: r.entry.fields,
                    outcome: match r.entry.outcome.as_str() {
                        "allowed" => AuditOutcome::Allowed,
                        "refused" => AuditOutcome::Refused,
                        _ => AuditOutcome::Failed,
                    },
                };
                (key, entry)
            })
            .collect();
        Ok(connection(rows, page.first))
    }
}

#[derive(Default)]
pub struct OpsMutation;

#[Object]
impl OpsMutation {
    /// Restarts an entity actor (`/cardio/entities/<kind>/<id>`) wherever it
    /// runs in the cluster: its current incarnation stops (its stop hook
    /// flushes state) and it starts again from its journal on its next
    /// message (ops and admin).
    async fn restart_actor(&self, ctx: &Context<'_>, path: String) -> async_graphql::Result<bool> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        let key = path
            .strip_prefix("/cardio/entities/")
            .filter(|k| k.parse::<ActorId>().is_ok())
            .ok_or_else(|| ApiError::bad_input("path: /cardio/entities/<kind>/<id>"))?;
        // The actor as ops see it: a session's patient id is masked.
        let masked = crate::api::mask_path(&path);
        let access = Access::new(d, who, "restart actor", &masked);
        access.require(&[Role::Ops, Role::Admin]).await?;
        access.allowed(None).await?;
        let request = RestartRequest { actor: key.into() };
        let env = crate::bus::Envelope::new(RestartRequest::TYPE, &request)
            .map_err(ApiError::unavailable)?
            .principal(who.clone());
        let done = d.bus.publish(RESTART_TOPIC, &env).await;
        access.unless_failed(None, done).await?;
        Ok(true)
    }
}

#[derive(Default)]
pub struct OpsSubscription;

#[Subscription]
impl OpsSubscription {
    /// Supervision events of every node (ops and admin).
    async fn supervision_events(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<SupervisionEventGql>>> {
        let (who, d) = (principal(ctx)?, deps(ctx).clone());
        Access::new(&d, who, "read supervision events", "ops")
            .require(&[Role::Ops, Role::Admin])
            .await?;
        let slot = SubscriptionSlot::take(&d, who, "supervisionEvents")?;
        let mut sub = d
            .bus
            .subscribe("supervision.*", 1024)
            .await
            .map_err(ApiError::unavailable)?;
        Ok(until_expiry(
            ctx,
            async_stream_lite(move |tx| async move {
                let _slot = slot;
                while let Some((_, e)) = sub.next_of::<NodeSupervisionEvent>().await {
                    if tx.send(e.into()).await.is_err() {
                        break;
                    }
                }
            }),
        ))
    }
}
