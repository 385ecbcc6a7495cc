//! The GraphQL API (async-graphql): `POST /graphql`, subscriptions over
//! WebSocket on the same path (graphql-transport-ws), GraphiQL at `/graphiql`
//! in dev mode. The SDL is committed as `schema.graphql`.
//!
//! Every resolver that touches a patient's records first authorizes the
//! principal (a patient: their own; a clinician: patients on their care team;
//! ops and admin: no PHI) and appends an audit entry for the access, allowed
//! or denied, before answering. A denial is `FORBIDDEN` whether or not the
//! record exists. Errors carry a code in `extensions.code` and never PHI.
//!
//! Actor operations go through the bus ([`crate::bus::client::Requester`]),
//! so they reach the actor on whichever node owns its shard. What resolvers
//! share (dependencies, errors, authorization and audit; subscriptions'
//! plumbing) is in [`super::access`] and `live.rs`, below this module and
//! [`super::monitoring`].

use std::time::Duration;

use async_graphql::{Context, Enum, Object, Schema, SimpleObject, Subscription, ID};
use futures_util::Stream;
use serde_json::Value;

use super::access::{
    audit, audit_admin, audit_denied, deps, device_patient, device_topics, forbidden, guard,
    principal, require_role, retry_pause, unavailable, valid,
};
pub use super::access::{coded, Deps};
use super::live::{async_stream_lite, until_expiry, watch, SubscriptionSlot};
pub use super::live::{Expiry, MAX_SUBSCRIPTIONS};
use crate::actors::consult::state::{Command, Party};
use crate::actors::consult::{Act, View};
use crate::clock::unix_ms;
use crate::principal::{Principal, Role};
use crate::registry::ActorId;

/// Where `restartActor` asks every node to restart an actor it hosts.
pub const RESTART_TOPIC: &str = "control.restart";

/// The schema type.
pub type CardioSchema = Schema<Query, Mutation, SubscriptionRoot>;

/// Builds the schema with its limits; introspection only in dev mode (the
/// SDL is published as `schema.graphql` instead).
pub fn schema(deps: Deps, dev: bool) -> CardioSchema {
    let builder = Schema::build(
        Query::default(),
        Mutation::default(),
        SubscriptionRoot::default(),
    )
    .data(deps)
    .limit_depth(12)
    .limit_complexity(1_000)
    .limit_recursive_depth(32)
    .extension(super::observe::Observe);
    if dev {
        builder.finish()
    } else {
        builder.disable_introspection().finish()
    }
}

/// The SDL of the schema (committed as `schema.graphql`).
pub fn sdl() -> String {
    Schema::build(
        Query::default(),
        Mutation::default(),
        SubscriptionRoot::default(),
    )
    .finish()
    .sdl()
}

/// Sends a command to a consult actor, retrying with the same request id
/// while the cluster moves things around.
async fn act(
    deps: &Deps,
    consult: &str,
    request_id: String,
    command: Command,
) -> async_graphql::Result<Value> {
    let to = ActorId::new("consult", consult).map_err(|_| coded("BAD_INPUT", "consult id"))?;
    let msg = Act {
        request_id,
        command,
    };
    match ask(deps, &to, "consult.act", &msg).await? {
        Ok(v) => Ok(v),
        Err(e) => Err(coded(
            "CONSULT_REFUSED",
            e["code"].as_str().unwrap_or("refused").to_owned(),
        )),
    }
}

/// Sends `msg` to actor `to` as `msg_type` and returns its handler's answer:
/// `Ok` with the value, or `Err` with the refusal. A request that got no
/// answer, or that the actor found `unavailable` (its shard moving, the
/// database away), is sent again (the idempotency key inside `msg` makes
/// that safe) for up to 10 s, then `UNAVAILABLE`.
async fn ask<T: serde::Serialize>(
    deps: &Deps,
    to: &ActorId,
    msg_type: &str,
    msg: &T,
) -> async_graphql::Result<Result<Value, Value>> {
    // `ConsultError::Unavailable` is tagged by code, `PushError::Unavailable` by name.
    let unavailable_now = |e: &Value| e["code"] == "unavailable" || *e == "Unavailable";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for attempt in 0.. {
        match deps
            .requester
            .request::<_, Value>(to, msg_type, msg, Duration::from_secs(3))
            .await
        {
            Ok(v) if v.get("Ok").is_some() => return Ok(Ok(v["Ok"].clone())),
            Ok(v) if !unavailable_now(&v["Err"]) => return Ok(Err(v["Err"].clone())),
            _ if tokio::time::Instant::now() < deadline => {
                let left = deadline - tokio::time::Instant::now();
                tokio::time::sleep(retry_pause(attempt).min(left)).await;
            }
            _ => break,
        }
    }
    Err(unavailable())
}

/// The consult's view (status, patient, lines after `after`).
async fn view(deps: &Deps, consult: &str, after: u64) -> async_graphql::Result<Value> {
    let to = ActorId::new("consult", consult).map_err(|_| coded("BAD_INPUT", "consult id"))?;
    deps.requester
        .request::<_, Value>(&to, "consult.view", &View { after }, Duration::from_secs(5))
        .await
        .map_err(|_| unavailable())
}

/// The patient of a consult, or FORBIDDEN (also when there is no such consult).
async fn consult_patient(deps: &Deps, consult: &str) -> async_graphql::Result<(String, Value)> {
    let v = view(deps, consult, u64::MAX).await?;
    match v["patient"].as_str() {
        Some(p) => Ok((p.to_owned(), v)),
        None => Err(forbidden()),
    }
}

/// [`consult_patient`] for `who`, auditing a refusal for a consult that is not there.
async fn consult_patient_for(
    deps: &Deps,
    who: &Principal,
    consult: &str,
    action: &str,
) -> async_graphql::Result<String> {
    match consult_patient(deps, consult).await {
        Ok((p, _)) => Ok(p),
        Err(e) => {
            let refused = e
                .extensions
                .as_ref()
                .and_then(|x| x.get("code"))
                .is_some_and(|c| *c == async_graphql::Value::String("FORBIDDEN".into()));
            if refused {
                audit_denied(deps, who, action, "consult").await?;
            }
            Err(e)
        }
    }
}

#[derive(SimpleObject)]
pub struct Me {
    pub subject: ID,
    pub role: RoleGql,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(name = "Role")]
pub enum RoleGql {
    Patient,
    Clinician,
    Ops,
    Admin,
}

impl From<Role> for RoleGql {
    fn from(r: Role) -> Self {
        match r {
            Role::Patient => RoleGql::Patient,
            Role::Clinician => RoleGql::Clinician,
            Role::Ops => RoleGql::Ops,
            Role::Admin | Role::System => RoleGql::Admin,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Device")]
pub struct DeviceGql {
    pub id: ID,
    pub kind: String,
}

#[derive(SimpleObject)]
pub struct ConsultSummary {
    pub id: ID,
    pub status: String,
    pub clinician_id: Option<ID>,
    pub requested_at: f64,
}

#[derive(SimpleObject)]
#[graphql(name = "Patient")]
pub struct PatientGql {
    pub id: ID,
    pub devices: Vec<DeviceGql>,
    pub care_team: Vec<ID>,
    pub consults: Vec<ConsultSummary>,
}

#[derive(SimpleObject, Clone)]
pub struct Message {
    pub seq: i32,
    pub author_role: String,
    pub author_id: ID,
    pub client_message_id: String,
    pub text: String,
    pub at: f64,
}

fn message(v: &Value) -> Message {
    Message {
        seq: v["seq"].as_i64().unwrap_or(0) as i32,
        author_role: v["author"]["role"].as_str().unwrap_or("").into(),
        author_id: ID(v["author"]["id"].as_str().unwrap_or("").into()),
        client_message_id: v["client_message_id"].as_str().unwrap_or("").into(),
        text: v["text"].as_str().unwrap_or("").into(),
        at: v["at_ms"].as_f64().unwrap_or(0.0),
    }
}

/// A consult as its participants see it.
pub struct ConsultGql {
    id: String,
    view: Value,
}

#[Object(name = "Consult")]
impl ConsultGql {
    async fn id(&self) -> ID {
        ID(self.id.clone())
    }

    async fn status(&self) -> String {
        self.view["status"].as_str().unwrap_or("unknown").to_owned()
    }

    async fn patient_id(&self) -> Option<ID> {
        self.view["patient"].as_str().map(|s| ID(s.into()))
    }

    async fn clinician_id(&self) -> Option<ID> {
        self.view["clinician"].as_str().map(|s| ID(s.into()))
    }

    /// Chat messages after sequence `after` (0: all), in order.
    async fn messages(
        &self,
        ctx: &Context<'_>,
        after: Option<i32>,
    ) -> async_graphql::Result<Vec<Message>> {
        let v = view(deps(ctx), &self.id, after.unwrap_or(0).max(0) as u64).await?;
        Ok(v["lines"]
            .as_array()
            .map(|l| l.iter().map(message).collect())
            .unwrap_or_default())
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Node")]
pub struct NodeGql {
    pub id: ID,
    pub addr: String,
    pub status: String,
    pub last_seen: f64,
    pub shards: i32,
}

#[derive(SimpleObject)]
#[graphql(name = "Shard")]
pub struct ShardGql {
    pub id: i32,
    pub owner: Option<ID>,
    pub epoch: f64,
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
    pub seq: f64,
    pub at: f64,
    pub subject: ID,
    pub role: String,
    pub action: String,
    pub patient_id: Option<ID>,
    pub fields: String,
    pub outcome: String,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum VitalMetric {
    /// Heart rate reported by the device (PPG pulse rate).
    HeartRate,
    /// Heart rate counted from the beats cardio detects in the ECG: `mean`
    /// is beats per minute of good signal, `count` the beats, `min` and `max`
    /// the slowest and fastest beat-to-beat rates.
    EcgHeartRate,
    #[graphql(name = "SPO2")]
    Spo2,
    Systolic,
    Diastolic,
}

impl From<VitalMetric> for crate::actors::device::aggregate::Series {
    fn from(m: VitalMetric) -> Self {
        use crate::actors::device::aggregate::Series;
        match m {
            VitalMetric::HeartRate => Series::HeartRate,
            VitalMetric::EcgHeartRate => Series::EcgHeartRate,
            VitalMetric::Spo2 => Series::Spo2,
            VitalMetric::Systolic => Series::Systolic,
            VitalMetric::Diastolic => Series::Diastolic,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum Resolution {
    Minute,
    Hour,
}

/// One aggregate bucket of a vital sign.
#[derive(SimpleObject)]
pub struct VitalPoint {
    pub device_id: ID,
    /// Bucket start, Unix milliseconds.
    pub start: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub count: i32,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum SampleMetric {
    HeartRate,
    #[graphql(name = "SPO2")]
    Spo2,
    BloodPressure,
    Ecg,
}

/// One reading. `at` is Unix milliseconds; the other fields by metric:
/// `value` (bpm, %), `systolic` + `diastolic` (mmHg), `hz` + `millivolts` (ECG).
#[derive(async_graphql::InputObject)]
pub struct SampleInput {
    pub metric: SampleMetric,
    pub at: f64,
    pub value: Option<f64>,
    pub systolic: Option<f64>,
    pub diastolic: Option<f64>,
    pub hz: Option<i32>,
    pub millivolts: Option<Vec<f64>>,
}

impl SampleInput {
    fn sample(&self) -> Option<crate::actors::device::sample::Sample> {
        use crate::actors::device::sample::Sample;
        if !(self.at.is_finite() && self.at >= 0.0) {
            return None;
        }
        let at_ms = self.at as u64;
        Some(match self.metric {
            SampleMetric::HeartRate => Sample::HeartRate {
                at_ms,
                bpm: self.value?,
            },
            SampleMetric::Spo2 => Sample::Spo2 {
                at_ms,
                percent: self.value?,
            },
            SampleMetric::BloodPressure => Sample::BloodPressure {
                at_ms,
                systolic: self.systolic?,
                diastolic: self.diastolic?,
            },
            SampleMetric::Ecg => Sample::Ecg {
                at_ms,
                hz: u32::try_from(self.hz?).ok()?,
                millivolts: self
                    .millivolts
                    .as_ref()?
                    .iter()
                    .map(|v| *v as f32)
                    .collect(),
            },
        })
    }
}

#[derive(SimpleObject)]
pub struct Rejection {
    /// Index in the pushed list.
    pub index: i32,
    /// `out_of_range`, `not_finite`, `in_future`, `out_of_order`, `duplicate`,
    /// `incomplete`, …
    pub reason: String,
    pub message: String,
}

fn rejection_message(v: &Value) -> String {
    let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
    match v["reason"].as_str().unwrap_or("") {
        "out_of_range" => format!(
            "{} outside {}–{} {}",
            v["what"].as_str().unwrap_or("value"),
            f("min"),
            f("max"),
            v["unit"].as_str().unwrap_or("")
        ),
        "not_finite" => "value is not a finite number".into(),
        "systolic_not_above_diastolic" => "systolic pressure not above diastolic".into(),
        "in_future" => format!("timestamp {} ms in the future", f("ahead_ms")),
        "out_of_order" => format!("timestamp {} ms before the latest accepted", f("behind_ms")),
        "duplicate" => "duplicate of an accepted sample".into(),
        "sample_rate" => format!("ECG sample rate outside {}–{} Hz", f("min"), f("max")),
        "chunk_size" => format!(
            "ECG chunk empty or longer than {} samples",
            f("max_samples")
        ),
        other => other.replace('_', " "),
    }
}

#[derive(SimpleObject)]
pub struct PushResultGql {
    pub accepted: i32,
    pub rejections: Vec<Rejection>,
    /// The same request id was pushed before; nothing was done again.
    pub duplicate: bool,
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
    pub status: String,
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
    let masked = v.path != super::mask_path(&v.path);
    out.push(TreeNode {
        node: ID(node.into()),
        path: super::mask_path(&v.path),
        parent: parent.map(str::to_owned),
        kind: v.kind.clone(),
        id: if masked {
            super::mask_id(&v.id)
        } else {
            v.id.clone()
        },
        status: v.status.clone(),
        restarts: v.restarts as i32,
        last_failure: v.last_failure.clone(),
        mailbox_depth: v.mailbox_depth as i32,
    });
    for c in &v.children {
        flatten(node, c, Some(&v.path), out);
    }
}

/// A supervision event of any node.
#[derive(SimpleObject, Clone)]
pub struct SupervisionEventGql {
    pub node: ID,
    pub at: f64,
    pub path: String,
    /// `started`, `crashed`, `restarted`, `stopped`, `escalated`, …
    pub event: String,
    pub reason: Option<String>,
}

/// The bearer token of the request, to ask other nodes on the caller's behalf.
#[derive(Clone)]
pub struct Bearer(pub String);

/// The API's root types: the core (people, consults, devices, operations)
/// merged with monitoring ([`super::monitoring`]).
#[derive(async_graphql::MergedObject, Default)]
pub struct Query(CoreQuery, super::monitoring::MonitoringQuery);

#[derive(async_graphql::MergedObject, Default)]
pub struct Mutation(CoreMutation, super::monitoring::MonitoringMutation);

#[derive(async_graphql::MergedSubscription, Default)]
#[graphql(name = "Subscription")]
pub struct SubscriptionRoot(CoreSubscription, super::monitoring::MonitoringSubscription);

#[derive(Default)]
pub struct CoreQuery;

#[Object]
impl CoreQuery {
    /// Supervision trees, flattened: this node's, or `node`'s, or (with
    /// `node: "*"`) every live node's (ops and admin).
    async fn supervision_tree(
        &self,
        ctx: &Context<'_>,
        node: Option<ID>,
    ) -> async_graphql::Result<Vec<TreeNode>> {
        let who = principal(ctx)?;
        require_role(who, &[Role::Ops, Role::Admin])?;
        let d = deps(ctx);
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
                // awc lives on this worker's thread: fetch there.
                let (url, bearer) = (format!("http://{}/debug/tree", n.addr), bearer.clone());
                let fetched = actix_rt::spawn(async move {
                    let mut req = awc::Client::new().get(url);
                    if let Some(b) = &bearer {
                        req = req.insert_header(("authorization", format!("Bearer {b}")));
                    }
                    match req.send().await {
                        Ok(mut r) if r.status().is_success() => r
                            .json::<crate::supervisors::TreeView>()
                            .limit(64 << 20)
                            .await
                            .ok(),
                        _ => None,
                    }
                })
                .await;
                let tree = fetched.ok().flatten();
                match tree {
                    Some(t) => flatten(&n.id, &t, None, &mut out),
                    None => return Err(unavailable()),
                }
            }
        }
        Ok(out)
    }

    /// Aggregates of one vital sign of a patient's devices between `from`
    /// and `to` (Unix ms).
    async fn vitals(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        metric: VitalMetric,
        from: f64,
        to: f64,
        resolution: Option<Resolution>,
    ) -> async_graphql::Result<Vec<VitalPoint>> {
        use crate::actors::device::aggregate::Span;
        let (who, d) = (principal(ctx)?, deps(ctx));
        valid(&patient_id, "patientId")?;
        guard(d, who, "read", &patient_id, "vitals").await?;
        let span = match resolution.unwrap_or(Resolution::Minute) {
            Resolution::Minute => Span::Minute,
            Resolution::Hour => Span::Hour,
        };
        let (from, to) = (from.max(0.0) as u64, to.max(0.0) as u64);
        let mut points = Vec::new();
        for dev in d
            .store
            .devices_of(&patient_id)
            .await
            .map_err(|_| unavailable())?
        {
            let mut aggs = d
                .store
                .aggregates(&dev.id, metric.into(), span, from, to)
                .await
                .map_err(|_| unavailable())?;
            // The buckets still filling live in the device's actor.
            let to_actor = ActorId::new("device", &dev.id).map_err(|_| unavailable())?;
            let open: Vec<crate::actors::device::aggregate::Aggregate> = d
                .requester
                .request(
                    &to_actor,
                    "device.open_aggregates",
                    &crate::actors::device::stream::OpenAggregates(metric.into()),
                    Duration::from_secs(5),
                )
                .await
                .map_err(|_| unavailable())?;
            for o in open {
                if o.span == span && o.start_ms >= from && o.start_ms < to {
                    aggs.retain(|a| a.start_ms != o.start_ms);
                    aggs.push(o);
                }
            }
            // A bucket with no value (ECG without good signal) is no point:
            // an unknown rate is not shown as a number.
            points.extend(aggs.into_iter().filter_map(|a| {
                let mean = a.rate()?;
                let (min, max) = if a.min <= a.max {
                    (a.min, a.max)
                } else {
                    (mean, mean)
                };
                Some(VitalPoint {
                    device_id: ID(dev.id.clone()),
                    start: a.start_ms as f64,
                    min,
                    max,
                    mean,
                    count: a.count as i32,
                })
            }));
        }
        points.sort_by(|a, b| a.start.total_cmp(&b.start));
        Ok(points)
    }

    /// Who the bearer token names.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Me> {
        let who = principal(ctx)?;
        Ok(Me {
            subject: ID(who.subject.clone()),
            role: who.role.into(),
        })
    }

    /// A patient's profile: devices, care team, consults (PHI).
    async fn patient(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<PatientGql> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        valid(&id, "id")?;
        guard(d, who, "read", &id, "profile,devices,care_team,consults").await?;
        let fail = |_| unavailable();
        let devices = d.store.devices_of(&id).await.map_err(fail)?;
        let team = d.store.care_team(&id).await.map_err(fail)?;
        let consults = d.store.consults_of(&id).await.map_err(fail)?;
        Ok(PatientGql {
            id: id.clone(),
            devices: devices
                .into_iter()
                .map(|dev| DeviceGql {
                    id: ID(dev.id),
                    kind: dev.kind,
                })
                .collect(),
            care_team: team.into_iter().map(ID).collect(),
            consults: consults
                .into_iter()
                .map(|c| ConsultSummary {
                    id: ID(c.id),
                    status: serde_json::to_value(c.status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    clinician_id: c.clinician_id.map(ID),
                    requested_at: c.requested_ms as f64,
                })
                .collect(),
        })
    }

    /// A consult and its chat (PHI).
    async fn consult(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<ConsultGql> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        valid(&id, "id")?;
        // The view that names the patient is the one answered (once authorized).
        let (patient, view) = match consult_patient(d, &id).await {
            Ok(found) => found,
            Err(e) => {
                // No such consult: denied alike, and audited without a patient.
                audit_denied(d, who, "read", "consult").await?;
                return Err(e);
            }
        };
        guard(d, who, "read", &patient, "consult,chat").await?;
        Ok(ConsultGql {
            id: id.to_string(),
            view,
        })
    }

    /// Nodes and shards with their owners (ops and admin).
    async fn cluster(&self, ctx: &Context<'_>) -> async_graphql::Result<ClusterGql> {
        let who = principal(ctx)?;
        require_role(who, &[Role::Ops, Role::Admin])?;
        let v = deps(ctx).cluster.view().await;
        Ok(ClusterGql {
            node: ID(v.node),
            nodes: v
                .nodes
                .into_iter()
                .map(|n| NodeGql {
                    id: ID(n.id),
                    addr: n.addr,
                    status: n.status,
                    last_seen: n.last_seen as f64,
                    shards: n.shards as i32,
                })
                .collect(),
            shards: v
                .shards
                .into_iter()
                .map(|s| ShardGql {
                    id: i32::from(s.id),
                    owner: s.owner.map(ID),
                    epoch: s.epoch as f64,
                })
                .collect(),
        })
    }

    /// The PHI audit trail, optionally of one patient (admin only).
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        patient_id: Option<ID>,
        first: Option<i32>,
        after: Option<f64>,
    ) -> async_graphql::Result<Vec<AuditEntryGql>> {
        let who = principal(ctx)?;
        require_role(who, &[Role::Admin])?;
        let rows = deps(ctx)
            .store
            .audit_log(
                patient_id.as_ref().map(|p| p.as_str()),
                after.unwrap_or(0.0).max(0.0) as u64,
                first.unwrap_or(100).clamp(1, 1000) as u32,
            )
            .await
            .map_err(|_| unavailable())?;
        Ok(rows
            .into_iter()
            .map(|r| AuditEntryGql {
                seq: r.seq as f64,
                at: r.entry.at_ms as f64,
                subject: ID(r.entry.subject),
                role: r.entry.role,
                action: r.entry.action,
                patient_id: r.entry.patient_id.map(ID),
                fields: r.entry.fields,
                outcome: r.entry.outcome,
            })
            .collect())
    }
}

#[derive(Default)]
pub struct CoreMutation;

fn party(who: &Principal) -> async_graphql::Result<Party> {
    match who.role {
        Role::Patient => Ok(Party::Patient(who.subject.clone())),
        Role::Clinician => Ok(Party::Clinician(who.subject.clone())),
        _ => Err(forbidden()),
    }
}

#[Object]
impl CoreMutation {
    async fn register_patient(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<ID> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        require_role(who, &[Role::Admin])?;
        valid(&id, "id")?;
        audit_admin(d, who, "register patient", Some(&id)).await?;
        d.store
            .register_patient(&id)
            .await
            .map_err(|_| unavailable())?;
        Ok(id)
    }

    async fn register_clinician(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<ID> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        require_role(who, &[Role::Admin])?;
        valid(&id, "id")?;
        audit_admin(d, who, "register clinician", None).await?;
        d.store
            .register_clinician(&id)
            .await
            .map_err(|_| unavailable())?;
        Ok(id)
    }

    async fn assign_clinician(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        clinician_id: ID,
    ) -> async_graphql::Result<bool> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        require_role(who, &[Role::Admin])?;
        valid(&patient_id, "patientId")?;
        valid(&clinician_id, "clinicianId")?;
        audit_admin(d, who, "assign clinician", Some(&patient_id)).await?;
        match d.store.assign_clinician(&patient_id, &clinician_id).await {
            Ok(Ok(())) => Ok(true),
            Ok(Err(e)) => Err(coded("NOT_FOUND", e.to_string())),
            Err(_) => Err(unavailable()),
        }
    }

    /// Restarts an entity actor (`/cardio/entities/<kind>/<id>`) wherever it
    /// runs in the cluster: its current incarnation stops (its stop hook
    /// flushes state) and it starts again from its journal on its next
    /// message (ops and admin).
    async fn restart_actor(&self, ctx: &Context<'_>, path: String) -> async_graphql::Result<bool> {
        let who = principal(ctx)?;
        require_role(who, &[Role::Ops, Role::Admin])?;
        let d = deps(ctx);
        let key = path
            .strip_prefix("/cardio/entities/")
            .filter(|k| k.parse::<ActorId>().is_ok())
            .ok_or_else(|| coded("BAD_INPUT", "path: /cardio/entities/<kind>/<id>"))?;
        let env = crate::bus::Envelope::new("actor.restart", &serde_json::json!({ "actor": key }))
            .map_err(|_| unavailable())?
            .principal(who.clone());
        d.bus
            .publish(RESTART_TOPIC, &env)
            .await
            .map_err(|_| unavailable())?;
        Ok(true)
    }

    /// Registers a device of `patientId` (admin, or the patient themself).
    async fn register_device(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        kind: String,
    ) -> async_graphql::Result<ID> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        valid(&patient_id, "patientId")?;
        if kind.is_empty() || kind.len() > 64 {
            return Err(coded("BAD_INPUT", "kind: 1–64 bytes"));
        }
        if who.role == Role::Admin {
            audit_admin(d, who, "register device", Some(&patient_id)).await?;
        } else if who.role == Role::Patient {
            guard(d, who, "write", &patient_id, "devices").await?;
        } else {
            audit(d, who, "write", Some(&patient_id), "devices", false).await?;
            return Err(forbidden());
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        match d.store.register_device(&id, &patient_id, &kind).await {
            Ok(Ok(())) => Ok(ID(id)),
            Ok(Err(e)) => Err(coded("NOT_FOUND", e.to_string())),
            Err(_) => Err(unavailable()),
        }
    }

    /// Pushes a device's readings (its patient's token). Each invalid sample
    /// is rejected with its reason; the valid ones are stored. `requestId`
    /// makes a retry safe.
    async fn push_samples(
        &self,
        ctx: &Context<'_>,
        device_id: ID,
        samples: Vec<SampleInput>,
        request_id: Option<String>,
    ) -> async_graphql::Result<PushResultGql> {
        use crate::actors::device::stream::Push;
        let (who, d) = (principal(ctx)?, deps(ctx));
        valid(&device_id, "deviceId")?;
        if samples.is_empty() || samples.len() > 5_000 {
            return Err(coded("BAD_INPUT", "1–5000 samples per push"));
        }
        let request_id = request_id.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        if request_id.is_empty() || request_id.len() > 128 {
            return Err(coded("BAD_INPUT", "requestId: 1–128 bytes"));
        }
        // Only the device's patient pushes (a clinician of theirs may read).
        let patient = match device_patient(d, &device_id).await {
            Ok(p) => p,
            Err(_) => {
                audit_denied(d, who, "write", "vitals").await?;
                return Err(forbidden());
            }
        };
        if who.role != Role::Patient {
            audit(d, who, "write", Some(&patient), "vitals", false).await?;
            return Err(forbidden());
        }
        guard(d, who, "write", &patient, "vitals").await?;
        let mut rejections = Vec::new();
        let mut forwarded = Vec::new();
        let mut index_of = Vec::new();
        for (i, s) in samples.iter().enumerate() {
            match s.sample() {
                Some(sample) => {
                    forwarded.push(sample);
                    index_of.push(i);
                }
                None => rejections.push(Rejection {
                    index: i as i32,
                    reason: "incomplete".into(),
                    message: "a field this metric needs is missing or invalid".into(),
                }),
            }
        }
        let mut accepted = 0;
        let mut duplicate = false;
        if !forwarded.is_empty() {
            let to =
                ActorId::new("device", &device_id).map_err(|_| coded("BAD_INPUT", "deviceId"))?;
            let push = Push {
                request_id,
                samples: forwarded,
            };
            // `PushError` has no refusal but `Unavailable`.
            let Ok(v) = ask(d, &to, "device.push", &push).await? else {
                return Err(unavailable());
            };
            accepted = v["accepted"].as_i64().unwrap_or(0) as i32;
            duplicate = v["duplicate"].as_bool().unwrap_or(false);
            for r in v["rejected"].as_array().into_iter().flatten() {
                let i = r[0].as_u64().unwrap_or(0) as usize;
                rejections.push(Rejection {
                    index: index_of.get(i).copied().unwrap_or(i) as i32,
                    reason: r[1]["reason"].as_str().unwrap_or("rejected").into(),
                    message: rejection_message(&r[1]),
                });
            }
        }
        rejections.sort_by_key(|r| r.index);
        Ok(PushResultGql {
            accepted,
            rejections,
            duplicate,
        })
    }

    /// A new consult for `patientId` (the patient, or a clinician of theirs).
    async fn request_consult(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        reason: String,
    ) -> async_graphql::Result<ID> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        valid(&patient_id, "patientId")?;
        if reason.len() > 2_000 {
            return Err(coded("BAD_INPUT", "reason: at most 2000 bytes"));
        }
        guard(d, who, "write", &patient_id, "consult").await?;
        if !d
            .store
            .patient_exists(&patient_id)
            .await
            .map_err(|_| unavailable())?
        {
            return Err(coded("NOT_FOUND", "no such patient"));
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        act(
            d,
            &id,
            format!("{id}-request"),
            Command::Request {
                patient: patient_id.to_string(),
                reason,
            },
        )
        .await?;
        Ok(ID(id))
    }

    async fn join_consult(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        valid(&id, "id")?;
        let patient = consult_patient_for(d, who, &id, "write").await?;
        guard(d, who, "write", &patient, "consult").await?;
        let p = party(who)?;
        act(
            d,
            &id,
            format!("join-{}-{}", who.subject, unix_ms()),
            Command::Join { who: p },
        )
        .await?;
        Ok(true)
    }

    /// Sends a chat line; `clientMessageId` makes retries safe. Returns its sequence.
    async fn send_message(
        &self,
        ctx: &Context<'_>,
        consult_id: ID,
        client_message_id: String,
        text: String,
    ) -> async_graphql::Result<i32> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        valid(&consult_id, "consultId")?;
        if client_message_id.is_empty()
            || client_message_id.len() > 128
            || text.is_empty()
            || text.chars().count() > 4_000
        {
            return Err(coded(
                "BAD_INPUT",
                "clientMessageId 1–128 bytes, text 1–4000 characters",
            ));
        }
        let patient = consult_patient_for(d, who, &consult_id, "write").await?;
        guard(d, who, "write", &patient, "chat").await?;
        let p = party(who)?;
        let out = act(
            d,
            &consult_id,
            format!("chat-{}-{client_message_id}", who.subject),
            Command::Chat {
                who: p,
                client_message_id,
                text,
            },
        )
        .await?;
        out["Line"]["seq"]
            .as_i64()
            .map(|s| s as i32)
            .ok_or_else(unavailable)
    }

    async fn end_consult(
        &self,
        ctx: &Context<'_>,
        id: ID,
        notes: String,
    ) -> async_graphql::Result<bool> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        valid(&id, "id")?;
        if notes.chars().count() > 20_000 {
            return Err(coded("BAD_INPUT", "notes: at most 20000 characters"));
        }
        let patient = consult_patient_for(d, who, &id, "write").await?;
        guard(d, who, "write", &patient, "consult,notes").await?;
        let p = party(who)?;
        act(
            d,
            &id,
            format!("end-{}", id.as_str()),
            Command::End { who: p, notes },
        )
        .await?;
        Ok(true)
    }

    async fn cancel_consult(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        valid(&id, "id")?;
        let patient = consult_patient_for(d, who, &id, "write").await?;
        guard(d, who, "write", &patient, "consult").await?;
        let p = party(who)?;
        act(
            d,
            &id,
            format!("cancel-{}", id.as_str()),
            Command::Cancel { who: p },
        )
        .await?;
        Ok(true)
    }
}

/// What happened in a consult, as subscribers see it.
#[derive(SimpleObject, Clone)]
#[graphql(name = "ConsultEvent")]
pub struct ConsultEventGql {
    /// The journal sequence of the event.
    pub seq: f64,
    /// `requested`, `joined`, `left`, `chatted`, `ended`, `cancelled`, `no_show`…
    pub kind: String,
    pub message: Option<Message>,
}

/// Readings a device pushed (raw ECG left out).
#[derive(SimpleObject, Clone)]
pub struct VitalsEventGql {
    pub device_id: ID,
    pub patient_id: ID,
    pub accepted: i32,
    pub samples: Vec<SampleGql>,
    /// The ECG analysis after the batch, if it held ECG.
    pub ecg: Option<super::monitoring::EcgStateGql>,
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "Sample")]
pub struct SampleGql {
    /// `heart_rate`, `spo2`, `blood_pressure`.
    pub metric: String,
    pub at: f64,
    pub value: Option<f64>,
    pub systolic: Option<f64>,
    pub diastolic: Option<f64>,
}

#[derive(Default)]
pub struct CoreSubscription;

#[Subscription]
impl CoreSubscription {
    /// Supervision events of every node (ops and admin).
    async fn supervision_events(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = SupervisionEventGql>> {
        let who = principal(ctx)?;
        require_role(who, &[Role::Ops, Role::Admin])?;
        let d = deps(ctx).clone();
        let slot = SubscriptionSlot::take(&d, who, "supervisionEvents")?;
        let mut sub = d
            .bus
            .subscribe("supervision.*", 1024)
            .await
            .map_err(|_| unavailable())?;
        Ok(until_expiry(
            ctx,
            async_stream_lite(move |tx| async move {
                let _slot = slot;
                while let Some((_, v)) = sub.next_event::<Value>().await {
                    let event = SupervisionEventGql {
                        node: ID(v["node"].as_str().unwrap_or("").into()),
                        at: v["at_ms"].as_f64().unwrap_or(0.0),
                        path: super::mask_path(v["path"].as_str().unwrap_or("")),
                        event: v["event"].as_str().unwrap_or("").into(),
                        reason: v["reason"].as_str().map(str::to_owned),
                    };
                    if tx.send(event).await.is_err() {
                        break;
                    }
                }
            }),
        ))
    }

    /// Readings of a patient's devices as they are stored.
    async fn vitals(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
    ) -> async_graphql::Result<impl Stream<Item = VitalsEventGql>> {
        let (who, d) = (principal(ctx)?.clone(), deps(ctx).clone());
        valid(&patient_id, "patientId")?;
        guard(&d, &who, "read", &patient_id, "vitals").await?;
        let topics = device_topics(&d, "vitals", std::slice::from_ref(&patient_id.0)).await?;
        let mut w = watch(&d, topics).await?;
        let slot = SubscriptionSlot::take(&d, &who, "vitals")?;
        Ok(until_expiry(
            ctx,
            async_stream_lite(move |tx| async move {
                let _slot = slot;
                while let Some((_, v, patient)) = w.rx.recv().await {
                    let samples = v["samples"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|s| SampleGql {
                            metric: s["kind"].as_str().unwrap_or("").into(),
                            at: s["at_ms"].as_f64().unwrap_or(0.0),
                            value: s["bpm"].as_f64().or(s["percent"].as_f64()),
                            systolic: s["systolic"].as_f64(),
                            diastolic: s["diastolic"].as_f64(),
                        })
                        .collect();
                    let event = VitalsEventGql {
                        device_id: ID(v["device"].as_str().unwrap_or("").into()),
                        patient_id: ID(patient),
                        accepted: v["accepted"].as_i64().unwrap_or(0) as i32,
                        samples,
                        ecg: serde_json::from_value::<crate::actors::device::ecg::RhythmState>(
                            v["ecg"].clone(),
                        )
                        .ok()
                        .map(Into::into),
                    };
                    if tx.send(event).await.is_err() {
                        break;
                    }
                }
            }),
        ))
    }

    /// A consult's events from now on; with `afterMessage`, the chat messages
    /// after that sequence first (resuming after a reconnect).
    async fn consult_events(
        &self,
        ctx: &Context<'_>,
        consult_id: ID,
        after_message: Option<i32>,
    ) -> async_graphql::Result<impl Stream<Item = ConsultEventGql>> {
        let (who, d) = (principal(ctx)?.clone(), deps(ctx).clone());
        valid(&consult_id, "consultId")?;
        let patient = consult_patient_for(&d, &who, &consult_id, "read").await?;
        guard(&d, &who, "read", &patient, "consult,chat").await?;
        let topic = format!("consult.{}", crate::bus::events::topic_word(&consult_id));
        let slot = SubscriptionSlot::take(&d, &who, "consultEvents")?;
        let mut sub = d
            .bus
            .subscribe(&topic, 256)
            .await
            .map_err(|_| unavailable())?;
        let backlog = match after_message {
            Some(after) => {
                let v = view(&d, &consult_id, after.max(0) as u64).await?;
                v["lines"].as_array().cloned().unwrap_or_default()
            }
            None => Vec::new(),
        };
        let last_backlog = backlog.last().and_then(|l| l["seq"].as_i64()).unwrap_or(-1);
        let id = consult_id.to_string();
        Ok(until_expiry(
            ctx,
            async_stream_lite(move |tx| async move {
                let _slot = slot;
                for line in &backlog {
                    let m = message(line);
                    let _ = tx
                        .send(ConsultEventGql {
                            seq: f64::from(m.seq),
                            kind: "chatted".into(),
                            message: Some(m),
                        })
                        .await;
                }
                while let Some((_, v)) = sub.next_event::<Value>().await {
                    if v["consult"].as_str() != Some(id.as_str()) {
                        continue;
                    }
                    let kind = v["event"]["event"].as_str().unwrap_or("").to_owned();
                    let message = (kind == "chatted").then(|| message(&v["event"]["line"]));
                    if let Some(m) = &message {
                        if i64::from(m.seq) <= last_backlog {
                            continue;
                        }
                    }
                    let event = ConsultEventGql {
                        seq: v["seq"].as_f64().unwrap_or(0.0),
                        kind,
                        message,
                    };
                    if tx.send(event).await.is_err() {
                        break;
                    }
                }
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_committed_schema_is_the_one_the_code_serves() {
        let committed = include_str!("../../schema.graphql");
        assert!(
            committed == super::sdl(),
            "schema.graphql drifted from the code: run `cargo run -- schema > schema.graphql` and review the diff"
        );
    }
}
