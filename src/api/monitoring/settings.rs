//! Per-patient alarm settings: the thresholds a clinician of the care team
//! sets (each resolve limit moving with its raise limit), and a bounded pause
//! of non-high alarms. Stored, then handed to each of the patient's device
//! streams, whose alarm engine applies them.

use super::*;

/// The thresholds a clinician may set for a patient.
#[derive(SimpleObject, Clone)]
pub struct AlarmThresholds {
    /// Heart rate above this for `sustainSeconds`: tachycardia (medium).
    pub tachycardia_bpm: f64,
    /// Heart rate below this for `sustainSeconds`: bradycardia (medium).
    pub bradycardia_bpm: f64,
    /// Above this for 10 s: extreme tachycardia (high).
    pub extreme_tachycardia_bpm: f64,
    /// Below this for 10 s: extreme bradycardia (high).
    pub extreme_bradycardia_bpm: f64,
    /// SpO2 below this for `sustainSeconds`: low SpO2 (medium).
    pub low_spo2_percent: f64,
    /// Below this for 10 s: severe low SpO2 (high).
    pub severe_low_spo2_percent: f64,
    /// Systolic at or above: hypertensive crisis (medium).
    pub crisis_systolic: f64,
    /// Diastolic at or above: hypertensive crisis.
    pub crisis_diastolic: f64,
    /// How long tachycardia, bradycardia and low SpO2 must hold.
    pub sustain_seconds: i32,
}

/// A change to some thresholds (the others stay).
#[derive(InputObject)]
pub struct AlarmThresholdsInput {
    pub tachycardia_bpm: Option<f64>,
    pub bradycardia_bpm: Option<f64>,
    pub extreme_tachycardia_bpm: Option<f64>,
    pub extreme_bradycardia_bpm: Option<f64>,
    pub low_spo2_percent: Option<f64>,
    pub severe_low_spo2_percent: Option<f64>,
    pub crisis_systolic: Option<f64>,
    pub crisis_diastolic: Option<f64>,
    pub sustain_seconds: Option<i32>,
}

impl AlarmThresholds {
    fn of(s: &AlarmSettings) -> Self {
        AlarmThresholds {
            tachycardia_bpm: s.tachycardia.raise,
            bradycardia_bpm: s.bradycardia.raise,
            extreme_tachycardia_bpm: s.extreme_tachycardia.raise,
            extreme_bradycardia_bpm: s.extreme_bradycardia.raise,
            low_spo2_percent: s.low_spo2.raise,
            severe_low_spo2_percent: s.severe_low_spo2.raise,
            crisis_systolic: s.hypertensive_crisis.systolic_raise,
            crisis_diastolic: s.hypertensive_crisis.diastolic_raise,
            sustain_seconds: (s.tachycardia.sustain_ms / 1000) as i32,
        }
    }
}

/// Applies `input` over `s`, moving each resolve limit with its raise limit
/// (the hysteresis keeps its width).
fn change_thresholds(s: &mut AlarmSettings, input: &AlarmThresholdsInput) -> Result<(), String> {
    fn shift(rule: &mut engine::LevelRule, to: Option<f64>) {
        if let Some(to) = to {
            let gap = rule.resolve - rule.raise;
            rule.raise = to;
            rule.resolve = to + gap;
        }
    }
    shift(&mut s.tachycardia, input.tachycardia_bpm);
    shift(&mut s.bradycardia, input.bradycardia_bpm);
    shift(&mut s.extreme_tachycardia, input.extreme_tachycardia_bpm);
    shift(&mut s.extreme_bradycardia, input.extreme_bradycardia_bpm);
    shift(&mut s.low_spo2, input.low_spo2_percent);
    shift(&mut s.severe_low_spo2, input.severe_low_spo2_percent);
    let crisis = &mut s.hypertensive_crisis;
    if let Some(v) = input.crisis_systolic {
        crisis.systolic_resolve = v - (crisis.systolic_raise - crisis.systolic_resolve);
        crisis.systolic_raise = v;
    }
    if let Some(v) = input.crisis_diastolic {
        crisis.diastolic_resolve = v - (crisis.diastolic_raise - crisis.diastolic_resolve);
        crisis.diastolic_raise = v;
    }
    if let Some(secs) = input.sustain_seconds {
        if !(5..=600).contains(&secs) {
            return Err("sustainSeconds: 5–600".into());
        }
        let ms = secs as u64 * 1000;
        for rule in [&mut s.tachycardia, &mut s.bradycardia, &mut s.low_spo2] {
            rule.sustain_ms = ms;
        }
    }
    let finite = [
        input.tachycardia_bpm,
        input.bradycardia_bpm,
        input.extreme_tachycardia_bpm,
        input.extreme_bradycardia_bpm,
        input.low_spo2_percent,
        input.severe_low_spo2_percent,
        input.crisis_systolic,
        input.crisis_diastolic,
    ];
    if finite.iter().flatten().any(|v| !v.is_finite()) {
        return Err("thresholds must be finite numbers".into());
    }
    s.validate()
}

/// A patient's alarm settings.
#[derive(SimpleObject, Clone)]
#[graphql(name = "AlarmSettings")]
pub struct AlarmSettingsGql {
    pub patient_id: ID,
    /// False: the node's defaults.
    pub custom: bool,
    pub thresholds: AlarmThresholds,
    /// Non-high alarms are recorded but not announced before this.
    pub paused_until: Option<DateTime>,
    pub updated_by: Option<ID>,
    pub updated_at: Option<DateTime>,
}

/// The patient's settings, or the node's.
async fn settings_of(
    d: &Deps,
    patient: &str,
) -> async_graphql::Result<(AlarmSettings, Option<StoredAlarmSettings>)> {
    let stored = d
        .store
        .alarm_settings(patient)
        .await
        .map_err(ApiError::unavailable)?;
    let settings = stored
        .as_ref()
        .and_then(|s| s.settings.as_deref())
        .and_then(|json| serde_json::from_str::<AlarmSettings>(json).ok())
        .unwrap_or_else(|| d.alarms.clone());
    Ok((settings, stored))
}

fn settings_gql(
    patient: &str,
    settings: &AlarmSettings,
    stored: Option<&StoredAlarmSettings>,
) -> AlarmSettingsGql {
    let now = unix_ms();
    AlarmSettingsGql {
        patient_id: ID(patient.into()),
        custom: stored.is_some_and(|s| s.settings.is_some()),
        thresholds: AlarmThresholds::of(settings),
        paused_until: stored
            .and_then(|s| s.paused_until_ms)
            .filter(|until| *until > now)
            .map(DateTime::from_unix_ms),
        updated_by: stored.map(|s| ID(s.updated_by.clone())),
        updated_at: stored.map(|s| DateTime::from_unix_ms(s.updated_ms)),
    }
}

/// Only a clinician of the patient's care team changes their alarms; a
/// refusal of another role is audited.
async fn clinician_guard(
    d: &Deps,
    who: &Principal,
    patient: &str,
    fields: &str,
) -> Result<(), ApiError> {
    let access = Access::new(d, who, "write", fields);
    if who.role != Role::Clinician {
        return Err(access.refuse(Some(patient)).await);
    }
    access.patient(patient).await
}

/// Stores `saved` and hands it to each of the patient's device streams.
async fn save_and_apply(
    d: &Deps,
    patient: &str,
    saved: StoredAlarmSettings,
) -> async_graphql::Result<AlarmSettingsGql> {
    d.store
        .save_alarm_settings(patient, &saved)
        .await
        .map_err(ApiError::unavailable)?;
    let settings = saved
        .settings
        .as_deref()
        .and_then(|json| serde_json::from_str::<AlarmSettings>(json).ok());
    let msg = Reconfigure {
        settings: settings.clone(),
        paused_until_ms: saved.paused_until_ms,
    };
    for dev in d
        .store
        .devices_of(patient)
        .await
        .map_err(ApiError::unavailable)?
    {
        if let Err(e) = ask(d, &dev.id, &msg).await? {
            // Validated above: a device stream refusing them is a bug, not input.
            tracing::error!(error = %e, "a device stream refused alarm settings");
            return Err(ApiError::unavailable("a device stream refused alarm settings").into());
        }
    }
    let effective = settings.unwrap_or_else(|| d.alarms.clone());
    Ok(settings_gql(patient, &effective, Some(&saved)))
}

#[derive(Default)]
pub struct SettingsQuery;

#[Object]
impl SettingsQuery {
    /// A patient's alarm thresholds (theirs, or the node's defaults) and
    /// pause.
    async fn alarm_settings(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
    ) -> async_graphql::Result<AlarmSettingsGql> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        valid(&patient_id, "patientId")?;
        Access::new(d, who, "read", "alarm_settings")
            .patient(&patient_id)
            .await?;
        let (settings, stored) = settings_of(d, &patient_id).await?;
        Ok(settings_gql(&patient_id, &settings, stored.as_ref()))
    }
}

/// What a change leaves stored: the settings (JSON; `None`: the node's) and
/// the end of a pause.
type Stored = (Option<String>, Option<u64>);

/// Authorizes `who` (a clinician of the care team) to change `patient`'s
/// alarms (audited as `fields`), applies `change` to the patient's current
/// settings and what is stored, stores the result and hands it to the
/// patient's device streams.
async fn update(
    d: &Deps,
    who: &Principal,
    patient: &str,
    fields: &str,
    change: impl FnOnce(AlarmSettings, Option<StoredAlarmSettings>) -> async_graphql::Result<Stored>,
) -> async_graphql::Result<AlarmSettingsGql> {
    valid(patient, "patientId")?;
    clinician_guard(d, who, patient, fields).await?;
    let (settings, stored) = settings_of(d, patient).await?;
    let (settings, paused_until_ms) = change(settings, stored)?;
    let saved = StoredAlarmSettings {
        settings,
        paused_until_ms,
        updated_by: who.subject.clone(),
        updated_ms: unix_ms(),
    };
    save_and_apply(d, patient, saved).await
}

#[derive(Default)]
pub struct SettingsMutation;

#[Object]
impl SettingsMutation {
    /// Sets some of a patient's alarm thresholds (a clinician of their care
    /// team); the others keep their values. Each resolve limit moves with its
    /// raise limit.
    async fn set_alarm_thresholds(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        thresholds: AlarmThresholdsInput,
    ) -> async_graphql::Result<AlarmSettingsGql> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        update(
            d,
            who,
            &patient_id,
            "alarm_settings",
            |mut settings, stored| {
                change_thresholds(&mut settings, &thresholds).map_err(ApiError::bad_input)?;
                let json = serde_json::to_string(&settings).map_err(ApiError::unavailable)?;
                Ok((Some(json), stored.and_then(|s| s.paused_until_ms)))
            },
        )
        .await
    }

    /// Puts a patient's alarm thresholds back to the node's defaults.
    async fn reset_alarm_thresholds(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
    ) -> async_graphql::Result<AlarmSettingsGql> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        update(d, who, &patient_id, "alarm_settings", |_, stored| {
            Ok((None, stored.and_then(|s| s.paused_until_ms)))
        })
        .await
    }

    /// Pauses the announcement of a patient's non-high alarms for `minutes`
    /// (at most the node's limit, 30 by default). They are still recorded;
    /// high-priority alarms are always announced.
    async fn pause_alarms(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        minutes: i32,
    ) -> async_graphql::Result<AlarmSettingsGql> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        update(d, who, &patient_id, "alarm_pause", |settings, stored| {
            let most = (settings.max_pause_ms / 60_000) as i32;
            if !(1..=most).contains(&minutes) {
                return Err(ApiError::bad_input(format!("minutes: 1–{most}")).into());
            }
            let until = unix_ms() + minutes as u64 * 60_000;
            Ok((stored.and_then(|s| s.settings), Some(until)))
        })
        .await
    }

    /// Ends a pause of a patient's alarms.
    async fn resume_alarms(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
    ) -> async_graphql::Result<AlarmSettingsGql> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        update(d, who, &patient_id, "alarm_pause", |_, stored| {
            Ok((stored.and_then(|s| s.settings), None))
        })
        .await
    }
}
