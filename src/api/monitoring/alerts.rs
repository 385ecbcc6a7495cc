//! Alerts: listing a patient's, acknowledging one (with a note), and the
//! live subscription (raised, resolved, announced again, escalated).

use super::*;
use crate::api::graphql::page::{connection, AlertKey, Page};
use crate::store::vitals::AlertState;

/// An alarm episode.
#[derive(SimpleObject, Clone)]
#[graphql(name = "Alert")]
pub struct AlertGql {
    pub id: ID,
    pub device_id: ID,
    pub patient_id: ID,
    pub kind: AlarmKind,
    pub category: AlarmCategory,
    pub priority: AlarmPriority,
    /// For heart-rate alarms: ECG-derived or device-reported.
    pub source: Option<VitalSignal>,
    /// The reading that raised it (bpm, %, mmHg, PVCs a minute), if a number.
    pub reading: Option<f64>,
    /// The threshold it crossed.
    pub threshold: Option<f64>,
    /// Start of the episode.
    pub since: DateTime,
    pub raised_at: DateTime,
    pub resolved_at: Option<DateTime>,
    pub resolve_reason: Option<ResolveReason>,
    /// False for a non-high alarm raised while the patient's alarms were paused.
    pub announced: bool,
    pub reannounced_at: Option<DateTime>,
    pub escalated_at: Option<DateTime>,
    pub acknowledged_by: Option<ID>,
    pub acknowledged_at: Option<DateTime>,
    pub acknowledgement_note: Option<String>,
}

async fn alert_gql(
    d: &Deps,
    a: crate::store::vitals::AlertRecord,
    patient: &str,
) -> async_graphql::Result<AlertGql> {
    let acked = d
        .store
        .alert_acknowledgement(&a.id)
        .await
        .map_err(ApiError::unavailable)?;
    let ms = |v: Option<u64>| v.map(DateTime::from_unix_ms);
    Ok(AlertGql {
        category: a.category().into(),
        id: ID(a.id),
        device_id: ID(a.device_id),
        patient_id: ID(patient.into()),
        kind: a.kind.into(),
        priority: a.priority.into(),
        source: a.source.map(Into::into),
        reading: a.reading,
        threshold: a.threshold,
        since: DateTime::from_unix_ms(a.since_ms),
        raised_at: DateTime::from_unix_ms(a.raised_ms),
        resolved_at: ms(a.resolved_ms),
        resolve_reason: a.resolve_reason.map(Into::into),
        announced: a.announced,
        reannounced_at: ms(a.reannounced_ms),
        escalated_at: ms(a.escalated_ms),
        acknowledged_at: acked.as_ref().map(|k| DateTime::from_unix_ms(k.at_ms)),
        acknowledgement_note: acked.as_ref().and_then(|k| k.note.clone()),
        acknowledged_by: acked.map(|k| ID(k.by)),
    })
}

/// An alert raised, resolved, announced again or escalated.
#[derive(SimpleObject, Clone)]
#[graphql(name = "AlertEvent")]
pub struct AlertEventGql {
    pub device_id: ID,
    pub patient_id: ID,
    pub alert_id: ID,
    pub change: AlertChange,
    pub kind: AlarmKind,
    pub category: AlarmCategory,
    /// Set when raised.
    pub priority: Option<AlarmPriority>,
    pub source: Option<VitalSignal>,
    pub reading: Option<f64>,
    pub threshold: Option<f64>,
    pub at: DateTime,
    pub resolve_reason: Option<ResolveReason>,
}

impl AlertEventGql {
    fn from_event(e: AlertEvent, patient: String) -> Self {
        let key = e.change.key();
        let mut out = AlertEventGql {
            device_id: ID(e.device),
            patient_id: ID(patient),
            alert_id: ID(e.alert),
            change: AlertChange::Raised,
            kind: key.kind.into(),
            category: key.kind.category().into(),
            priority: None,
            source: key.source.map(Into::into),
            reading: None,
            threshold: None,
            at: DateTime::from_ms(0),
            resolve_reason: None,
        };
        match e.change {
            engine::AlarmChange::Raised {
                priority,
                at_ms,
                reading,
                threshold,
                ..
            } => {
                out.priority = Some(priority.into());
                out.reading = reading;
                out.threshold = threshold;
                out.at = DateTime::from_unix_ms(at_ms);
            }
            engine::AlarmChange::Resolved { at_ms, reason, .. } => {
                out.change = AlertChange::Resolved;
                out.resolve_reason = Some(reason.into());
                out.at = DateTime::from_unix_ms(at_ms);
            }
            engine::AlarmChange::Reannounced { at_ms, .. } => {
                out.change = AlertChange::Reannounced;
                out.at = DateTime::from_unix_ms(at_ms);
            }
            engine::AlarmChange::Escalated { at_ms, .. } => {
                out.change = AlertChange::Escalated;
                out.at = DateTime::from_unix_ms(at_ms);
            }
            // Kept quiet by a pause and still active when it ended: for the
            // subscriber, raised now.
            engine::AlarmChange::Announced {
                priority, at_ms, ..
            } => {
                out.priority = Some(priority.into());
                out.at = DateTime::from_unix_ms(at_ms);
            }
        }
        out
    }
}

#[derive(Default)]
pub struct AlertsQuery;

/// The patients whose alerts `who` asked for: `patient`, or (without one)
/// theirs: a clinician's care team, a patient themself. Each is authorized
/// and audited (`fields`); another role is refused.
pub(crate) async fn patients_asked(
    d: &Deps,
    who: &Principal,
    patient: Option<&ID>,
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

#[Object]
impl AlertsQuery {
    /// Alerts, newest raised first: of `patientId`, or without it of every
    /// patient of the caller (a clinician's care team, a patient's own);
    /// open ones by default, of one priority if asked.
    async fn alerts(
        &self,
        ctx: &Context<'_>,
        patient_id: Option<ID>,
        #[graphql(default_with = "Some(AlertStatus::Open)")] status: Option<AlertStatus>,
        priority: Option<AlarmPriority>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<AlertConnection> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        let page = Page::<AlertKey>::of(first, after)?;
        let patients = patients_asked(d, who, patient_id.as_ref(), "alerts").await?;
        let status = status.unwrap_or(AlertStatus::Open);
        alert_page(d, &patients, status, priority, page).await
    }
}

/// A page of alerts, as the connection answers it.
pub type AlertConnection = async_graphql::connection::Connection<
    async_graphql::connection::OpaqueCursor<AlertKey>,
    AlertGql,
>;

/// Most open alerts `Patient.openAlerts` lists.
const MAX_OPEN: u32 = 500;

/// `patient`'s open alerts, newest raised first (authorized already).
pub async fn open_alerts(d: &Deps, patient: &str) -> async_graphql::Result<Vec<AlertGql>> {
    let devices: Vec<String> = d
        .store
        .devices_of(patient)
        .await
        .map_err(ApiError::unavailable)?
        .into_iter()
        .map(|dev| dev.id)
        .collect();
    let rows = d
        .store
        .alerts_page(&devices, AlertState::Open, None, None, MAX_OPEN)
        .await
        .map_err(ApiError::unavailable)?;
    let mut out = Vec::with_capacity(rows.len());
    for a in rows {
        out.push(alert_gql(d, a, patient).await?);
    }
    Ok(out)
}

/// One page of the alerts of `patients`' devices (authorized already).
pub(crate) async fn alert_page(
    d: &Deps,
    patients: &[String],
    status: AlertStatus,
    priority: Option<AlarmPriority>,
    page: Page<AlertKey>,
) -> async_graphql::Result<AlertConnection> {
    let mut devices = Vec::new();
    let mut patient_of = std::collections::HashMap::new();
    for p in patients {
        for dev in d.store.devices_of(p).await.map_err(ApiError::unavailable)? {
            patient_of.insert(dev.id.clone(), p.clone());
            devices.push(dev.id);
        }
    }
    let state = match status {
        AlertStatus::Open => AlertState::Open,
        AlertStatus::Resolved => AlertState::Resolved,
        AlertStatus::All => AlertState::Any,
    };
    let before = page.after.as_ref().map(|k| (k.a.0, k.a.1.as_str()));
    let rows = d
        .store
        .alerts_page(
            &devices,
            state,
            priority.map(Into::into),
            before,
            page.limit(),
        )
        .await
        .map_err(ApiError::unavailable)?;
    let mut out = Vec::with_capacity(rows.len());
    for a in rows {
        let key = AlertKey {
            a: (a.raised_ms, a.id.clone()),
        };
        let patient = patient_of.get(&a.device_id).cloned().unwrap_or_default();
        out.push((key, alert_gql(d, a, &patient).await?));
    }
    Ok(connection(out, page.first))
}

/// Longest acknowledgement note.
const MAX_NOTE: usize = 1_000;

#[derive(Default)]
pub struct AlertsMutation;

#[Object]
impl AlertsMutation {
    /// Acknowledges an alert, with an optional note (a clinician of the
    /// patient's care team): it is not announced again nor escalated. It
    /// stays open until its condition clears.
    async fn acknowledge_alert(
        &self,
        ctx: &Context<'_>,
        id: ID,
        note: Option<String>,
    ) -> async_graphql::Result<bool> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        valid(&id, "id")?;
        if note.as_ref().is_some_and(|n| n.len() > MAX_NOTE) {
            return Err(ApiError::bad_input("note: at most 1000 bytes").into());
        }
        if who.role != Role::Clinician {
            return Err(Access::new(d, who, "write", "alerts")
                .refuse_unknown()
                .await
                .into());
        }
        let alert = authorized_alert(d, who, &id, "write", "alerts").await?;
        d.store
            .acknowledge_alert(&id, &who.subject, unix_ms(), note.as_deref())
            .await
            .map_err(ApiError::unavailable)?;
        if alert.resolved_ms.is_none() {
            let msg = crate::actors::device::stream::Acknowledge {
                alert: id.to_string(),
            };
            ask(d, &alert.device_id, &msg).await?;
        }
        Ok(true)
    }
}

#[derive(Default)]
pub struct AlertsSubscription;

#[Subscription]
impl AlertsSubscription {
    /// Alerts of a patient's devices; without `patientId`, of every patient
    /// on the clinician's care team (or the patient's own). With
    /// `escalatedOnly`, only escalations: for the members of a care team who
    /// are told when the clinician watching did not acknowledge in time.
    async fn alerts(
        &self,
        ctx: &Context<'_>,
        patient_id: Option<ID>,
        escalated_only: Option<bool>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<AlertEventGql>>> {
        let (who, d) = (principal(ctx)?.clone(), deps(ctx).clone());
        let patients = match &patient_id {
            Some(p) => {
                valid(p, "patientId")?;
                Access::new(&d, &who, "read", "alerts").patient(p).await?;
                vec![p.to_string()]
            }
            None => {
                let mine = match who.role {
                    Role::Patient => vec![who.subject.clone()],
                    Role::Clinician => d
                        .store
                        .patients_of(&who.subject)
                        .await
                        .map_err(ApiError::unavailable)?,
                    _ => {
                        return Err(Access::new(&d, &who, "read", "alerts")
                            .refuse_unknown()
                            .await
                            .into());
                    }
                };
                for p in &mine {
                    Access::new(&d, &who, "read", "alerts").patient(p).await?;
                }
                mine
            }
        };
        let escalated_only = escalated_only.unwrap_or(false);
        let mut w = watch::<AlertEvent>(&d, "alerts", &patients).await?;
        let slot = SubscriptionSlot::take(&d, &who, "alerts")?;
        Ok(until_expiry(
            ctx,
            async_stream_lite(move |tx| async move {
                let _slot = slot;
                // Another version's shape is skipped by the watch, never misread.
                while let Some((event, patient)) = w.rx.recv().await {
                    let accepted = event.accepted_ms;
                    let event = AlertEventGql::from_event(event, patient);
                    if escalated_only && event.change != AlertChange::Escalated {
                        continue;
                    }
                    let raised = event.change == AlertChange::Raised;
                    if tx.send(event).await.is_err() {
                        break;
                    }
                    // Handed to the connection: the end of the alert latency.
                    if raised && accepted > 0 {
                        crate::metrics::alert_delivered(Duration::from_millis(
                            unix_ms().saturating_sub(accepted),
                        ));
                    }
                }
            }),
        ))
    }
}
