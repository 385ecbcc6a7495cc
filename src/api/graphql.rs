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
//! Actor operations go through the bus ([`Requester`]), so they reach the
//! actor on whichever node owns its shard.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::{
    Context, Enum, ErrorExtensions, Object, Schema, SimpleObject, Subscription, ID,
};
use futures_util::Stream;
use serde_json::Value;

use crate::actors::consult::state::{Command, Party};
use crate::actors::consult::{Act, View};
use crate::bus::client::Requester;
use crate::bus::Bus;
use crate::principal::{Principal, Role};
use crate::registry::ActorId;
use crate::store::audit::AuditEntry;
use crate::store::Store;
use crate::supervisors::tree::unix_ms;

/// The schema type.
pub type CardioSchema = Schema<Query, Mutation, SubscriptionRoot>;

/// What resolvers need, shared by every request.
#[derive(Clone)]
pub struct Deps {
    pub store: Store,
    pub bus: Arc<dyn Bus>,
    pub requester: Arc<Requester>,
    pub cluster: crate::cluster::Cluster,
    pub node_id: String,
}

/// Builds the schema with its limits.
pub fn schema(deps: Deps) -> CardioSchema {
    Schema::build(Query, Mutation, SubscriptionRoot)
        .data(deps)
        .limit_depth(12)
        .limit_complexity(1_000)
        .limit_recursive_depth(32)
        .finish()
}

/// The SDL of the schema (committed as `schema.graphql`).
pub fn sdl() -> String {
    Schema::build(Query, Mutation, SubscriptionRoot)
        .finish()
        .sdl()
}

/// A coded error; the message is safe to show (no PHI, no internals).
pub fn coded(code: &'static str, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message.into()).extend_with(|_, e| e.set("code", code))
}

fn forbidden() -> async_graphql::Error {
    coded("FORBIDDEN", "not allowed")
}

fn unavailable() -> async_graphql::Error {
    coded("UNAVAILABLE", "the service cannot answer now; try again")
}

fn principal<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<&'a Principal> {
    ctx.data_opt::<Principal>()
        .ok_or_else(|| coded("UNAUTHENTICATED", "no bearer token"))
}

fn deps<'a>(ctx: &'a Context<'_>) -> &'a Deps {
    ctx.data_unchecked::<Deps>()
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Patient => "patient",
        Role::Clinician => "clinician",
        Role::Ops => "ops",
        Role::Admin => "admin",
        Role::System => "system",
    }
}

/// Whether `who` may reach `patient`'s records (PHI).
async fn may_reach(deps: &Deps, who: &Principal, patient: &str) -> async_graphql::Result<bool> {
    Ok(match who.role {
        Role::Patient => who.subject == patient,
        Role::Clinician => deps
            .store
            .on_care_team(patient, &who.subject)
            .await
            .map_err(|_| unavailable())?,
        Role::Ops | Role::Admin | Role::System => false,
    })
}

/// Authorizes `who` for `patient` and audits the attempt either way; the
/// audit entry is durable before the answer.
async fn guard(
    deps: &Deps,
    who: &Principal,
    action: &str,
    patient: &str,
    fields: &str,
) -> async_graphql::Result<()> {
    let allowed = may_reach(deps, who, patient).await?;
    let entry = AuditEntry {
        at_ms: unix_ms(),
        subject: who.subject.clone(),
        role: role_name(who.role).into(),
        action: action.into(),
        patient_id: Some(patient.into()),
        fields: fields.into(),
        outcome: if allowed { "allowed" } else { "denied" }.into(),
    };
    deps.store.audit(&entry).await.map_err(|_| unavailable())?;
    if allowed {
        Ok(())
    } else {
        Err(forbidden())
    }
}

/// Audits an administrative act (no patient records read).
async fn audit_admin(
    deps: &Deps,
    who: &Principal,
    action: &str,
    patient: Option<&str>,
) -> async_graphql::Result<()> {
    let entry = AuditEntry {
        at_ms: unix_ms(),
        subject: who.subject.clone(),
        role: role_name(who.role).into(),
        action: action.into(),
        patient_id: patient.map(str::to_owned),
        fields: "registration".into(),
        outcome: "allowed".into(),
    };
    deps.store.audit(&entry).await.map_err(|_| unavailable())?;
    Ok(())
}

fn require_role(who: &Principal, roles: &[Role]) -> async_graphql::Result<()> {
    if roles.contains(&who.role) {
        Ok(())
    } else {
        Err(forbidden())
    }
}

fn valid(id: &str, what: &str) -> async_graphql::Result<()> {
    if crate::registry::id::valid_id(id) {
        Ok(())
    } else {
        Err(coded("BAD_INPUT", format!("{what} is not a valid id")))
    }
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
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match deps
            .requester
            .request::<_, Value>(&to, "consult.act", &msg, Duration::from_secs(3))
            .await
        {
            Ok(v) if v.get("Ok").is_some() => return Ok(v["Ok"].clone()),
            Ok(v) => {
                let code = v["Err"]["code"].as_str().unwrap_or("refused").to_owned();
                if code == "unavailable" && std::time::Instant::now() < deadline {
                    continue;
                }
                return Err(coded("CONSULT_REFUSED", code));
            }
            Err(_) if std::time::Instant::now() < deadline => continue,
            Err(_) => return Err(unavailable()),
        }
    }
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

pub struct Query;

#[Object]
impl Query {
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
        let patient = match consult_patient(d, &id).await {
            Ok((p, _)) => p,
            Err(e) => {
                // No such consult: denied alike, and audited without a patient.
                if who.role != Role::System {
                    let _ = audit_denied(d, who, "read consult").await;
                }
                return Err(e);
            }
        };
        guard(d, who, "read", &patient, "consult,chat").await?;
        let view = view(d, &id, u64::MAX).await?;
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

async fn audit_denied(deps: &Deps, who: &Principal, action: &str) -> async_graphql::Result<()> {
    let entry = AuditEntry {
        at_ms: unix_ms(),
        subject: who.subject.clone(),
        role: role_name(who.role).into(),
        action: action.into(),
        patient_id: None,
        fields: "consult".into(),
        outcome: "denied".into(),
    };
    deps.store.audit(&entry).await.map_err(|_| unavailable())?;
    Ok(())
}

pub struct Mutation;

fn party(who: &Principal) -> async_graphql::Result<Party> {
    match who.role {
        Role::Patient => Ok(Party::Patient(who.subject.clone())),
        Role::Clinician => Ok(Party::Clinician(who.subject.clone())),
        _ => Err(forbidden()),
    }
}

#[Object]
impl Mutation {
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
        let (patient, _) = consult_patient(d, &id).await?;
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
        if client_message_id.is_empty() || client_message_id.len() > 128 || text.len() > 10_000 {
            return Err(coded(
                "BAD_INPUT",
                "clientMessageId 1–128 bytes, text at most 10000",
            ));
        }
        let (patient, _) = consult_patient(d, &consult_id).await?;
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
        let (patient, _) = consult_patient(d, &id).await?;
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
        let (patient, _) = consult_patient(d, &id).await?;
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

pub struct SubscriptionRoot;

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
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
        let (patient, _) = consult_patient(&d, &consult_id).await?;
        guard(&d, &who, "read", &patient, "consult,chat").await?;
        let topic = format!("consult.{}", crate::bus::events::topic_word(&consult_id));
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
        Ok(async_stream_lite(move |tx| async move {
            for line in &backlog {
                let m = message(line);
                let _ = tx
                    .send(ConsultEventGql {
                        seq: 0.0,
                        kind: "chatted".into(),
                        message: Some(m),
                    })
                    .await;
            }
            while let Some(delivery) = sub.next().await {
                let env = delivery.envelope();
                let _ = delivery.ack().await;
                let Ok(env) = env else { continue };
                let Ok(v) = serde_json::from_str::<Value>(env.payload.get()) else {
                    continue;
                };
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
        }))
    }
}

/// A stream fed by a task: `body` gets a sender; the stream ends when it
/// returns or the subscriber goes away.
fn async_stream_lite<T, F, Fut>(body: F) -> impl Stream<Item = T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let task = tokio::spawn(body(tx));
    struct Guard(tokio::task::JoinHandle<()>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let guard = Guard(task);
    futures_util::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        rx.recv().await.map(|item| (item, (rx, guard)))
    })
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
