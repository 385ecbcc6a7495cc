//! People and their devices: who the token names (`me`), a patient's profile
//! (`patient`), and the registrations an admin (or a patient, for their own
//! devices) makes.
//!
//! Reads and writes here go to SQL directly: registrations (patients,
//! clinicians, care teams, devices) are reference data no actor owns, and a
//! patient's profile is read from the projections the actors keep
//! (consults) and from those registrations. Every access is audited.

use async_graphql::{Context, Object, SimpleObject, ID};

use super::consult::{consult_page, ConsultConnection, ConsultStatus};
pub use super::role::RoleGql;
use super::scalars::DateTime;
use super::vitals::{latest_vitals, LatestVitals};
use crate::api::access::{deps, principal, valid, Access};
use crate::api::error::ApiError;
use crate::api::gate::{AccessChanged, Change};
use crate::api::live::{devices_topic, DeviceRegistered};
use crate::bus::BusEvent;
use crate::principal::Role;
use crate::store::consults::ConsultsOf;

/// The principal the bearer token names.
pub struct Me {
    subject: String,
    role: Role,
    /// The token's expiry (Unix seconds), when known.
    exp: Option<u64>,
}

#[Object]
impl Me {
    async fn subject(&self) -> ID {
        ID(self.subject.clone())
    }

    async fn role(&self) -> RoleGql {
        self.role.into()
    }

    /// When the token stops working (a client signs in again before).
    async fn token_expires_at(&self) -> Option<DateTime> {
        self.exp
            .map(|s| DateTime::from_unix_ms(s.saturating_mul(1000)))
    }

    /// A clinician's patients (their care team's), a patient themself;
    /// none for ops and admins. Each is a read of the patient's profile,
    /// audited like `patient`.
    async fn patients(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<PatientGql>> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        let ids = match self.role {
            Role::Patient => vec![self.subject.clone()],
            Role::Clinician => d
                .store
                .patients_of(&self.subject)
                .await
                .map_err(ApiError::unavailable)?,
            _ => Vec::new(),
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(profile(d, who, &ID(id)).await?);
        }
        Ok(out)
    }

    /// A clinician's consults: those waiting for them (requested or waiting,
    /// of their care team's patients) and those they are in; a patient's
    /// own. Newest first; of those statuses if given. Each patient listed is
    /// audited (`consults`).
    async fn consults(
        &self,
        ctx: &Context<'_>,
        status: Option<Vec<ConsultStatus>>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<ConsultConnection> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        let whose = match self.role {
            Role::Patient => ConsultsOf::Patient(self.subject.clone()),
            Role::Clinician => ConsultsOf::Clinician {
                id: self.subject.clone(),
                patients: d
                    .store
                    .patients_of(&self.subject)
                    .await
                    .map_err(ApiError::unavailable)?,
            },
            _ => ConsultsOf::Clinician {
                id: self.subject.clone(),
                patients: Vec::new(),
            },
        };
        let page = consult_page(d, &whose, status, first, after).await?;
        let mut patients: Vec<&str> = page.edges.iter().map(|e| e.node.patient()).collect();
        patients.sort_unstable();
        patients.dedup();
        let access = Access::new(d, who, "read", "consults");
        for p in patients {
            access.patient(p).await?;
        }
        Ok(page)
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Device")]
pub struct DeviceGql {
    pub id: ID,
    pub kind: String,
}

/// A patient's profile (PHI): who reads it was authorized and audited for
/// the patient before it was made.
pub struct PatientGql {
    pub id: ID,
    pub devices: Vec<DeviceGql>,
    pub care_team: Vec<ID>,
}

/// `id`'s profile, once `who` is authorized for it (audited either way).
async fn profile(
    d: &crate::api::access::Deps,
    who: &crate::principal::Principal,
    id: &ID,
) -> Result<PatientGql, ApiError> {
    Access::new(d, who, "read", "profile,devices,care_team,consults")
        .patient(id)
        .await?;
    let devices = d
        .store
        .devices_of(id)
        .await
        .map_err(ApiError::unavailable)?;
    let team = d.store.care_team(id).await.map_err(ApiError::unavailable)?;
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
    })
}

#[Object(name = "Patient")]
impl PatientGql {
    async fn id(&self) -> &ID {
        &self.id
    }

    async fn devices(&self) -> &[DeviceGql] {
        &self.devices
    }

    async fn care_team(&self) -> &[ID] {
        &self.care_team
    }

    /// The patient's consults, newest first; of those statuses if given.
    async fn consults(
        &self,
        ctx: &Context<'_>,
        status: Option<Vec<ConsultStatus>>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<ConsultConnection> {
        let whose = ConsultsOf::Patient(self.id.to_string());
        consult_page(deps(ctx), &whose, status, first, after).await
    }

    /// The patient's open alerts, newest raised first (a PHI read, audited
    /// as `alerts`).
    async fn open_alerts(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<crate::api::monitoring::AlertGql>> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        Access::new(d, who, "read", "alerts")
            .patient(&self.id)
            .await?;
        crate::api::monitoring::open_alerts(d, &self.id).await
    }

    /// The newest reading of each vital sign, each with its time (a PHI
    /// read, audited as `vitals`).
    async fn latest_vitals(&self, ctx: &Context<'_>) -> async_graphql::Result<LatestVitals> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        Access::new(d, who, "read", "vitals")
            .patient(&self.id)
            .await?;
        Ok(latest_vitals(d, &self.id).await?)
    }
}

#[derive(Default)]
pub struct PeopleQuery;

#[Object]
impl PeopleQuery {
    /// Who the bearer token names.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Me> {
        let who = principal(ctx)?;
        Ok(Me {
            subject: who.subject.clone(),
            role: who.role,
            exp: ctx.data_opt::<crate::auth::Verified>().map(|v| v.exp),
        })
    }

    /// A patient's profile: devices, care team, consults, alerts, latest
    /// vitals (PHI).
    async fn patient(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<PatientGql> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        valid(&id, "id")?;
        Ok(profile(d, who, &id).await?)
    }
}

#[derive(Default)]
pub struct PeopleMutation;

#[Object]
impl PeopleMutation {
    async fn register_patient(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<ID> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        let access = Access::new(d, who, "register patient", "registration");
        access.require(&[Role::Admin]).await?;
        valid(&id, "id")?;
        access.admin(Some(&id)).await?;
        let done = d.store.register_patient(&id).await;
        access.unless_failed(Some(&id), done).await?;
        Ok(id)
    }

    async fn register_clinician(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<ID> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        let access = Access::new(d, who, "register clinician", "registration");
        access.require(&[Role::Admin]).await?;
        valid(&id, "id")?;
        access.admin(None).await?;
        let done = d.store.register_clinician(&id).await;
        access.unless_failed(None, done).await?;
        Ok(id)
    }

    async fn assign_clinician(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        clinician_id: ID,
    ) -> async_graphql::Result<bool> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        let access = Access::new(d, who, "assign clinician", "care_team");
        access.require(&[Role::Admin]).await?;
        valid(&patient_id, "patientId")?;
        valid(&clinician_id, "clinicianId")?;
        // Separation of duties: an admin does not put itself (nor a subject
        // known as an admin or ops) on a care team.
        let seen_as = d
            .store
            .account_state(&clinician_id, crate::clock::unix_ms())
            .await
            .map_err(ApiError::unavailable)?
            .map(|s| s.role)
            .unwrap_or_default();
        if clinician_id.as_str() == who.subject || matches!(seen_as.as_str(), "admin" | "ops") {
            return Err(access.refuse(Some(&patient_id)).await.into());
        }
        access.admin(Some(&patient_id)).await?;
        let result = match d.store.assign_clinician(&patient_id, &clinician_id).await {
            Ok(Ok(())) => return Ok(true),
            Ok(Err(e)) => ApiError::NotFound(e.to_string()),
            Err(e) => ApiError::unavailable(e),
        };
        access.failed(Some(&patient_id)).await;
        Err(result.into())
    }

    /// Takes a clinician off a patient's care team (admin): its access ends
    /// at once, its open subscriptions within a second. Whether it was on it.
    async fn remove_clinician(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        clinician_id: ID,
    ) -> async_graphql::Result<bool> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        let access = Access::new(d, who, "remove clinician", "care_team");
        access.require(&[Role::Admin]).await?;
        valid(&patient_id, "patientId")?;
        valid(&clinician_id, "clinicianId")?;
        access.admin(Some(&patient_id)).await?;
        let was = d.store.remove_clinician(&patient_id, &clinician_id).await;
        let was = access.unless_failed(Some(&patient_id), was).await?;
        let change = AccessChanged {
            subject: clinician_id.to_string(),
            jti: None,
            change: Change::CareTeamChanged,
        };
        if let Err(e) = d.gate.announce(change).await {
            // The database already refuses; only other nodes' open
            // subscriptions would outlive the removal.
            tracing::warn!(error = %e, "a care-team removal was not announced");
            return Err(ApiError::unavailable("the removal was stored but not announced").into());
        }
        Ok(was)
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
            return Err(ApiError::bad_input("kind: 1–64 bytes").into());
        }
        match who.role {
            Role::Admin => {
                Access::new(d, who, "register device", "registration")
                    .admin(Some(&patient_id))
                    .await?
            }
            Role::Patient => {
                Access::new(d, who, "write", "devices")
                    .patient(&patient_id)
                    .await?
            }
            _ => {
                let access = Access::new(d, who, "write", "devices");
                return Err(access.refuse(Some(&patient_id)).await.into());
            }
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        match d.store.register_device(&id, &patient_id, &kind).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ApiError::NotFound(e.to_string()).into()),
            Err(e) => return Err(ApiError::unavailable(e).into()),
        }
        // Live subscriptions of the patient, on any node, start watching it.
        let registered = DeviceRegistered {
            patient: patient_id.to_string(),
            device: id.clone(),
        };
        let announced = crate::bus::Envelope::new(DeviceRegistered::TYPE, &registered)
            .map_err(|e| crate::bus::BusError::Broker(e.to_string()));
        let announced = match announced {
            Ok(env) => d.bus.publish(&devices_topic(&patient_id), &env).await,
            Err(e) => Err(e),
        };
        if let Err(e) = announced {
            // Registered all the same: subscriptions opened from now on see it.
            use crate::api::error::Cause;
            tracing::warn!(cause = %e.describe(), "a device registration was not announced");
        }
        Ok(ID(id))
    }
}
