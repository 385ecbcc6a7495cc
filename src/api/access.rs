//! Who may do what, and the trail of it: the dependencies every resolver
//! shares, `Access` (authorization of a principal for a patient's records,
//! with its audit entry durable before the answer), and the small lookups
//! authorization needs (a device's patient, a patient's devices). A
//! clinician's care team and a device's patient are read through the node's
//! [`super::authz_cache::AuthzCache`].

use async_graphql::Context;
use std::sync::Arc;

use super::error::ApiError;
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
    pub alarms: crate::domain::alarm::AlarmSettings,
    /// When this node serves HTTPS: the TLS client configuration requests
    /// forwarded to other nodes use (https, peers verified); `None`: http.
    pub peer_tls: Option<Arc<rustls::ClientConfig>>,
    /// Revocation, deactivation and logoff (shared with the HTTP layer).
    pub gate: Arc<super::gate::Gate>,
    /// How long a break-glass grant lasts.
    pub break_glass: std::time::Duration,
    /// The node's limits (errors per response; issue 13).
    pub limits: Arc<super::limits::Limits>,
}

pub(crate) fn principal<'a>(ctx: &'a Context<'_>) -> Result<&'a Principal, ApiError> {
    ctx.data_opt::<Principal>().ok_or(ApiError::Unauthenticated(
        super::error::RefusalReason::NoToken,
    ))
}

pub(crate) fn deps<'a>(ctx: &'a Context<'_>) -> &'a Deps {
    ctx.data_unchecked::<Deps>()
}

/// How `who` reaches a patient's records, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Their own, or a patient of their care team.
    Yes,
    /// Under a break-glass grant in force (a clinician off the care team).
    BreakGlass,
    No,
}

/// Whether `who` may reach `patient`'s records (PHI).
async fn may_reach(deps: &Deps, who: &Principal, patient: &str) -> Result<Reach, ApiError> {
    Ok(match who.role {
        Role::Patient if who.subject == patient => Reach::Yes,
        Role::Clinician => {
            let store = &deps.store;
            let lookup = store.on_care_team(patient, &who.subject);
            if deps
                .gate
                .authz()
                .on_care_team(patient, &who.subject, unix_ms(), lookup)
                .await
                .map_err(ApiError::unavailable)?
            {
                Reach::Yes
            } else if store
                .break_glass_until(patient, &who.subject, unix_ms())
                .await
                .map_err(ApiError::unavailable)?
                .is_some()
            {
                Reach::BreakGlass
            } else {
                Reach::No
            }
        }
        _ => Reach::No,
    })
}

/// What became of an audited act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Allowed,
    Refused,
    /// Allowed, then failed (a second row after the `allowed` one).
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

/// The one authorization-and-audit check: `who` wants to `action` (`read`,
/// `write`, `register device`, …) the `fields` of someone's records. Every
/// way it ends appends one audit entry, durable before the answer: allowed
/// for the patient ([`Self::patient`]), refused for a record that names no
/// patient ([`Self::refuse_unknown`]) or for a patient the role may not
/// touch ([`Self::refuse`]), or an administrative act ([`Self::admin`]).
pub(crate) struct Access<'a> {
    deps: &'a Deps,
    who: &'a Principal,
    action: &'a str,
    fields: &'a str,
}

impl<'a> Access<'a> {
    pub(crate) fn new(
        deps: &'a Deps,
        who: &'a Principal,
        action: &'a str,
        fields: &'a str,
    ) -> Self {
        Self {
            deps,
            who,
            action,
            fields,
        }
    }

    /// The same access to other fields (an unknown record is audited with
    /// the fields that name it, not those the caller wanted from it).
    pub(crate) fn on(&self, fields: &'a str) -> Access<'a> {
        Access { fields, ..*self }
    }

    /// Authorizes the access to `patient`'s records (charging the
    /// principal's budget) and audits it either way.
    pub(crate) async fn patient(&self, patient: &str) -> Result<(), ApiError> {
        let entry = self.patient_carried(patient).await?;
        self.write(&entry).await
    }

    /// Authorizes the access to `patient`'s records like [`Self::patient`],
    /// but an allowed access's entry is not written here: it is returned, to
    /// travel with the command whose effect it records and commit in the
    /// same transaction ([`crate::store::audit::PendingAudit`]); if the
    /// command gets no answer, [`carried_back`] writes it. A refusal is
    /// written at once.
    pub(crate) async fn patient_carried(&self, patient: &str) -> Result<AuditEntry, ApiError> {
        if self.deps.limiter.check_key(&self.who.subject).is_err() {
            return Err(ApiError::RateLimited);
        }
        let reach = may_reach(self.deps, self.who, patient).await?;
        let (action, outcome) = match reach {
            Reach::Yes => (self.action.to_owned(), Outcome::Allowed),
            // Reads and writes under a grant are marked as such.
            Reach::BreakGlass => (format!("break_glass:{}", self.action), Outcome::Allowed),
            Reach::No => (self.action.to_owned(), Outcome::Refused),
        };
        let entry = self.entry(&action, Some(patient), self.fields, outcome);
        if reach == Reach::No {
            self.write(&entry).await?;
            return Err(ApiError::Forbidden);
        }
        Ok(entry)
    }

    /// Writes a carried entry that was not committed with its effect.
    pub(crate) async fn write(&self, entry: &AuditEntry) -> Result<(), ApiError> {
        self.deps
            .store
            .audit(entry)
            .await
            .map(|_| ())
            .map_err(ApiError::unavailable)
    }

    /// Authorizes by role alone (ops views, administrative acts): a refusal
    /// is audited (`refused`) and answered `FORBIDDEN`.
    pub(crate) async fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.who.role) {
            return Ok(());
        }
        Err(self.refuse(None).await)
    }

    /// Records that an act audited as allowed then failed.
    pub(crate) async fn failed(&self, patient: Option<&str>) {
        if let Err(e) = self
            .record_as(self.action, patient, self.fields, Outcome::Failed)
            .await
        {
            tracing::warn!(error = %e.message(), "a failed act was not audited");
        }
    }

    /// `result` of an act audited as allowed: on an error, the act is
    /// recorded as failed and the caller sees `UNAVAILABLE`.
    pub(crate) async fn unless_failed<T>(
        &self,
        patient: Option<&str>,
        result: Result<T, impl super::error::Cause>,
    ) -> Result<T, ApiError> {
        match result {
            Ok(v) => Ok(v),
            Err(e) => {
                self.failed(patient).await;
                Err(ApiError::unavailable(e))
            }
        }
    }

    /// Records an allowed act on `fields` (not `registration`).
    pub(crate) async fn allowed(&self, patient: Option<&str>) -> Result<(), ApiError> {
        self.record_as(self.action, patient, self.fields, Outcome::Allowed)
            .await
    }

    /// Refuses an access to a record that is not there (so no patient can
    /// be named): the caller sees `FORBIDDEN`, as for a record it may not
    /// reach. It costs the caller's budget, and is audited as refused once a
    /// minute per principal (a summary: a request of thousands of aliased
    /// random ids writes one entry, not thousands).
    pub(crate) async fn refuse_unknown(&self) -> ApiError {
        if self.deps.limiter.check_key(&self.who.subject).is_err() {
            return ApiError::RateLimited;
        }
        crate::metrics::limited("unknown_record");
        if !self.deps.limits.audit_unknown_now(&self.who.subject) {
            return ApiError::Forbidden;
        }
        self.refuse(None).await
    }

    /// Refuses an access to `patient`'s records that the role may not make,
    /// audited as refused.
    pub(crate) async fn refuse(&self, patient: Option<&str>) -> ApiError {
        match self
            .record_as(self.action, patient, self.fields, Outcome::Refused)
            .await
        {
            Ok(()) => ApiError::Forbidden,
            Err(e) => e,
        }
    }

    /// Records an administrative act (no patient records read).
    pub(crate) async fn admin(&self, patient: Option<&str>) -> Result<(), ApiError> {
        self.record_as(self.action, patient, self.fields, Outcome::Allowed)
            .await
    }

    async fn record_as(
        &self,
        action: &str,
        patient: Option<&str>,
        fields: &str,
        outcome: Outcome,
    ) -> Result<(), ApiError> {
        self.write(&self.entry(action, patient, fields, outcome))
            .await
    }

    fn entry(
        &self,
        action: &str,
        patient: Option<&str>,
        fields: &str,
        outcome: Outcome,
    ) -> AuditEntry {
        AuditEntry {
            at_ms: unix_ms(),
            subject: self.who.subject.clone(),
            role: self.who.role.name().into(),
            action: action.into(),
            patient_id: patient.map(str::to_owned),
            fields: fields.into(),
            outcome: outcome.as_str().into(),
        }
    }
}

/// Writes the entry a command carried ([`Access::patient_carried`]) when
/// the command got no answer that says it was written: the actor may not
/// have run it, or may have written it already (then the access is in the
/// trail twice, never missing). A failure to write it is logged: the caller
/// already answers with an error.
pub(crate) async fn carried_back(d: &Deps, entry: Option<&AuditEntry>) {
    if let Some(entry) = entry {
        if let Err(e) = d.store.audit(entry).await {
            tracing::warn!(error = %e, "a carried audit entry not written after a failed command");
        }
    }
}

pub(crate) fn valid(id: &str, what: &str) -> Result<(), ApiError> {
    if crate::address::valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::bad_input(format!("{what} is not a valid id")))
    }
}

/// Topics of `patients`' devices (as registered now), with each device's patient.
pub(crate) async fn device_topics(
    d: &Deps,
    prefix: &str,
    patients: &[String],
) -> Result<Vec<(String, String, String)>, ApiError> {
    let mut out = Vec::new();
    for p in patients {
        for dev in d.store.devices_of(p).await.map_err(ApiError::unavailable)? {
            out.push((
                format!("{prefix}.{}", crate::bus::events::topic_word(&dev.id)),
                p.clone(),
                dev.id.clone(),
            ));
        }
    }
    Ok(out)
}

/// The patient a device belongs to, if the device is registered (from the
/// node's cache once known: a device never changes patient).
pub(crate) async fn device_patient(d: &Deps, device: &str) -> Result<Option<String>, ApiError> {
    let lookup = async {
        let dev = d.store.device(device).await?;
        Ok::<_, crate::store::StoreError>(dev.map(|dev| dev.patient_id))
    };
    d.gate
        .authz()
        .device_patient(device, lookup)
        .await
        .map_err(ApiError::unavailable)
}

/// The patients whose records (`fields`: alerts, vitals) `who` asked for:
/// `patient`, or (without one) theirs: a clinician's care team, a patient
/// themself. Each is authorized and audited; another role is refused.
pub(crate) async fn patients_asked(
    d: &Deps,
    who: &Principal,
    patient: Option<&async_graphql::ID>,
    fields: &str,
) -> Result<Vec<String>, ApiError> {
    let access = Access::new(d, who, "read", fields);
    let patients = match patient {
        Some(p) => {
            valid(p, "patientId")?;
            vec![p.to_string()]
        }
        None => match who.role {
            Role::Patient => vec![who.subject.clone()],
            Role::Clinician => d
                .store
                .patients_of(&who.subject)
                .await
                .map_err(ApiError::unavailable)?,
            _ => return Err(access.refuse_unknown().await),
        },
    };
    for p in &patients {
        access.patient(p).await?;
    }
    Ok(patients)
}
