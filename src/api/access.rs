//! Who may do what, and the trail of it: the dependencies every resolver
//! shares, the coded errors, authorization of a principal for a patient's
//! records with its audit entry (durable before the answer), and the small
//! lookups authorization needs (a device's patient, a patient's devices).

use async_graphql::{Context, ErrorExtensions};
use std::sync::Arc;

use crate::bus::client::Requester;
use crate::bus::Bus;
use crate::clock::unix_ms;
use crate::principal::{Principal, Role};
use crate::store::audit::AuditEntry;
use crate::store::Store;

/// What resolvers need, shared by every request.
#[derive(Clone)]
pub struct Deps {
    pub store: Store,
    pub bus: Arc<dyn Bus>,
    pub requester: Arc<Requester>,
    pub cluster: crate::cluster::Cluster,
    pub node_id: String,
    pub tree: crate::supervisors::Tree,
    /// The per-principal budget, charged for every access to a patient's
    /// records too (so aliases, batches and WebSocket operations count).
    pub limiter: Arc<super::RateLimiter>,
    /// Live subscriptions per principal.
    pub subscriptions: Arc<dashmap::DashMap<String, usize>>,
    /// The node's alarm settings: a patient's start from them.
    pub alarms: crate::actors::device::alarms::AlarmSettings,
}

/// A coded error; the message is safe to show (no PHI, no internals).
pub fn coded(code: &'static str, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message.into()).extend_with(|_, e| e.set("code", code))
}

pub(crate) fn forbidden() -> async_graphql::Error {
    coded("FORBIDDEN", "not allowed")
}

pub(crate) fn unavailable() -> async_graphql::Error {
    coded("UNAVAILABLE", "the service cannot answer now; try again")
}

pub(crate) fn principal<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<&'a Principal> {
    ctx.data_opt::<Principal>()
        .ok_or_else(|| coded("UNAUTHENTICATED", "no bearer token"))
}

pub(crate) fn deps<'a>(ctx: &'a Context<'_>) -> &'a Deps {
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
pub(crate) async fn guard(
    deps: &Deps,
    who: &Principal,
    action: &str,
    patient: &str,
    fields: &str,
) -> async_graphql::Result<()> {
    if deps.limiter.check_key(&who.subject).is_err() {
        return Err(coded("RATE_LIMITED", "too many requests; slow down"));
    }
    let allowed = may_reach(deps, who, patient).await?;
    audit(deps, who, action, Some(patient), fields, allowed).await?;
    if allowed {
        Ok(())
    } else {
        Err(forbidden())
    }
}

/// Appends one audit entry.
pub(crate) async fn audit(
    deps: &Deps,
    who: &Principal,
    action: &str,
    patient: Option<&str>,
    fields: &str,
    allowed: bool,
) -> async_graphql::Result<()> {
    let entry = AuditEntry {
        at_ms: unix_ms(),
        subject: who.subject.clone(),
        role: role_name(who.role).into(),
        action: action.into(),
        patient_id: patient.map(str::to_owned),
        fields: fields.into(),
        outcome: if allowed { "allowed" } else { "denied" }.into(),
    };
    deps.store.audit(&entry).await.map_err(|_| unavailable())?;
    Ok(())
}

/// Audits an administrative act (no patient records read).
pub(crate) async fn audit_admin(
    deps: &Deps,
    who: &Principal,
    action: &str,
    patient: Option<&str>,
) -> async_graphql::Result<()> {
    audit(deps, who, action, patient, "registration", true).await
}

pub(crate) fn require_role(who: &Principal, roles: &[Role]) -> async_graphql::Result<()> {
    if roles.contains(&who.role) {
        Ok(())
    } else {
        Err(forbidden())
    }
}

pub(crate) fn valid(id: &str, what: &str) -> async_graphql::Result<()> {
    if crate::registry::id::valid_id(id) {
        Ok(())
    } else {
        Err(coded("BAD_INPUT", format!("{what} is not a valid id")))
    }
}

/// Audits a refusal that names no patient (the record is unknown, so no
/// patient can be named).
pub(crate) async fn audit_denied(
    deps: &Deps,
    who: &Principal,
    action: &str,
    fields: &str,
) -> async_graphql::Result<()> {
    audit(deps, who, action, None, fields, false).await
}

/// Topics of `patients`' devices (as registered now), with each device's patient.
pub(crate) async fn device_topics(
    d: &Deps,
    prefix: &str,
    patients: &[String],
) -> async_graphql::Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for p in patients {
        for dev in d.store.devices_of(p).await.map_err(|_| unavailable())? {
            out.push((
                format!("{prefix}.{}", crate::bus::events::topic_word(&dev.id)),
                p.clone(),
                dev.id.clone(),
            ));
        }
    }
    Ok(out)
}

/// The patient a device belongs to, or FORBIDDEN.
pub(crate) async fn device_patient(d: &Deps, device: &str) -> async_graphql::Result<String> {
    match d.store.device(device).await.map_err(|_| unavailable())? {
        Some(dev) => Ok(dev.patient_id),
        None => Err(forbidden()),
    }
}

/// The pause before retry `attempt` (0-based) of a request the cluster could
/// not answer yet (an actor's shard moving, the database away): the project's
/// one [`crate::supervisors::Backoff`], from 20 ms doubling to 500 ms,
/// jittered, so a refusal that comes back at once is not asked again in a
/// tight loop.
pub(crate) fn retry_pause(attempt: u32) -> std::time::Duration {
    use std::sync::LazyLock;
    use std::time::Duration;
    static PAUSE: LazyLock<crate::supervisors::Backoff> = LazyLock::new(|| {
        crate::supervisors::Backoff::new(
            Duration::from_millis(20),
            Duration::from_millis(500),
            2.0,
            0.5,
            Duration::from_secs(10),
        )
        .expect("a valid backoff")
    });
    PAUSE.delay(attempt, fastrand::f64())
}
