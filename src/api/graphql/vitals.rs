//! Device readings: pushing samples (`pushSamples`), reading aggregates of
//! a vital sign (`vitals`), and the live stream of stored readings.
//!
//! A push goes to the device's actor over the bus (`device.push`): it judges
//! every sample, journals the accepted ones and answers once they are
//! durable. Aggregates are read from the SQL projection the actor keeps,
//! plus the buckets still open in the actor (`device.open_aggregates`).

use async_graphql::{Context, Enum, Object, SimpleObject, Subscription, ID};
use futures_util::Stream;

use crate::actors::device::sample::{Rejection as Reject, Sample};
use crate::actors::device::stream::{EcgEvent, Latest, OpenAggregates, Push, VitalsEvent};
use crate::api::access::{
    carried_back, deps, device_patient, patients_asked, principal, valid, Access, Deps,
};
use crate::api::ask::ask;
use crate::api::error::ApiError;
use crate::api::graphql::scalars::DateTime;
use crate::api::lanes::PushLanes;
use crate::api::live::{async_stream_lite, until_expiry, watch, SubscriptionSlot};
use crate::domain::vitals::{Series, Span};
use crate::principal::Role;

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

impl From<VitalMetric> for Series {
    fn from(m: VitalMetric) -> Self {
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
    /// Bucket start.
    pub start: DateTime,
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

/// One reading at `at` (for ECG: the time of its first sample); the other
/// fields by metric: `value` (bpm, %), `systolic` + `diastolic` (mmHg),
/// `hz` + `millivolts` (ECG).
#[derive(async_graphql::InputObject)]
pub struct SampleInput {
    pub metric: SampleMetric,
    pub at: DateTime,
    pub value: Option<f64>,
    pub systolic: Option<f64>,
    pub diastolic: Option<f64>,
    pub hz: Option<i32>,
    pub millivolts: Option<Vec<f64>>,
}

impl SampleInput {
    fn sample(&self) -> Option<Sample> {
        if self.at.ms() < 0 {
            return None;
        }
        let at_ms = self.at.unix_ms();
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
    pub reason: RejectionReason,
    pub message: String,
}

/// Why a pushed sample was not stored.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum RejectionReason {
    /// A field the metric needs is missing or invalid.
    Incomplete,
    /// NaN or infinite.
    NotFinite,
    /// Outside the physiological range.
    OutOfRange,
    SystolicNotAboveDiastolic,
    /// Later than the node's clock allows.
    InFuture,
    /// Older than what the device already sent.
    OutOfOrder,
    Duplicate,
    /// An ECG sample rate the node does not take.
    SampleRate,
    /// An ECG chunk too long or empty.
    ChunkSize,
}

impl From<&Reject> for RejectionReason {
    fn from(r: &Reject) -> Self {
        match r {
            Reject::NotFinite => RejectionReason::NotFinite,
            Reject::OutOfRange { .. } => RejectionReason::OutOfRange,
            Reject::SystolicNotAboveDiastolic => RejectionReason::SystolicNotAboveDiastolic,
            Reject::InFuture { .. } => RejectionReason::InFuture,
            Reject::OutOfOrder { .. } => RejectionReason::OutOfOrder,
            Reject::Duplicate => RejectionReason::Duplicate,
            Reject::SampleRate { .. } => RejectionReason::SampleRate,
            Reject::ChunkSize { .. } => RejectionReason::ChunkSize,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "PushResult")]
pub struct PushResultGql {
    pub accepted: i32,
    pub rejections: Vec<Rejection>,
    /// The same request id was pushed before; nothing was done again.
    pub duplicate: bool,
}

/// Readings a device pushed (raw ECG left out: see the `ecg` subscription).
#[derive(SimpleObject, Clone)]
#[graphql(name = "VitalsEvent")]
pub struct VitalsEventGql {
    pub device_id: ID,
    pub patient_id: ID,
    pub accepted: i32,
    pub samples: Vec<SampleGql>,
    /// The ECG analysis after the batch, if it held ECG.
    pub ecg: Option<crate::api::monitoring::EcgStateGql>,
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "Sample")]
pub struct SampleGql {
    pub metric: SampleMetric,
    pub at: DateTime,
    pub value: Option<f64>,
    pub systolic: Option<f64>,
    pub diastolic: Option<f64>,
}

impl From<&Sample> for SampleGql {
    fn from(s: &Sample) -> Self {
        let (metric, value, pressure) = match s {
            Sample::HeartRate { bpm, .. } => (SampleMetric::HeartRate, Some(*bpm), None),
            Sample::Spo2 { percent, .. } => (SampleMetric::Spo2, Some(*percent), None),
            Sample::BloodPressure {
                systolic,
                diastolic,
                ..
            } => (
                SampleMetric::BloodPressure,
                None,
                Some((*systolic, *diastolic)),
            ),
            Sample::Ecg { .. } => (SampleMetric::Ecg, None, None),
        };
        SampleGql {
            metric,
            at: DateTime::from_unix_ms(s.at_ms()),
            value,
            systolic: pressure.map(|p| p.0),
            diastolic: pressure.map(|p| p.1),
        }
    }
}

/// One reading of a vital sign, with its time: a client tells a stale one.
#[derive(SimpleObject, Clone)]
pub struct Reading {
    pub value: f64,
    pub at: DateTime,
    pub device_id: ID,
}

/// One blood pressure reading (mmHg).
#[derive(SimpleObject, Clone)]
pub struct BloodPressure {
    pub systolic: f64,
    pub diastolic: f64,
    pub at: DateTime,
    pub device_id: ID,
}

/// The newest ECG analysis, at the end of the second it is about.
#[derive(SimpleObject, Clone)]
pub struct EcgReading {
    pub at: DateTime,
    pub device_id: ID,
    pub state: crate::api::monitoring::EcgStateGql,
}

/// The newest reading of each vital sign of a patient's devices (the
/// newest across devices), each with its time: never a stale value shown
/// as current.
#[derive(SimpleObject, Clone, Default)]
pub struct LatestVitals {
    /// The pulse rate the device reports.
    pub heart_rate: Option<Reading>,
    pub spo2: Option<Reading>,
    pub blood_pressure: Option<BloodPressure>,
    pub ecg: Option<EcgReading>,
}

/// The newest readings of `patient`'s devices (authorized already), asked
/// of each device's stream.
pub(crate) async fn latest_vitals(d: &Deps, patient: &str) -> Result<LatestVitals, ApiError> {
    let mut out = LatestVitals::default();
    let devices = d
        .store
        .devices_of(patient)
        .await
        .map_err(ApiError::unavailable)?;
    let newer = |have: Option<DateTime>, at: u64| have.is_none_or(|t| t.unix_ms() < at);
    for dev in devices {
        let l = ask(d, &dev.id, &Latest).await?;
        let id = || ID(dev.id.clone());
        let reading = |(at, value): (u64, f64)| Reading {
            value,
            at: DateTime::from_unix_ms(at),
            device_id: id(),
        };
        if let Some(r) = l
            .heart_rate
            .filter(|r| newer(out.heart_rate.as_ref().map(|x| x.at), r.0))
        {
            out.heart_rate = Some(reading(r));
        }
        if let Some(r) = l
            .spo2
            .filter(|r| newer(out.spo2.as_ref().map(|x| x.at), r.0))
        {
            out.spo2 = Some(reading(r));
        }
        if let Some((at, systolic, diastolic)) = l
            .blood_pressure
            .filter(|r| newer(out.blood_pressure.as_ref().map(|x| x.at), r.0))
        {
            out.blood_pressure = Some(BloodPressure {
                systolic,
                diastolic,
                at: DateTime::from_unix_ms(at),
                device_id: id(),
            });
        }
        if let Some((at, state)) = l.ecg.filter(|r| newer(out.ecg.as_ref().map(|x| x.at), r.0)) {
            out.ecg = Some(EcgReading {
                at: DateTime::from_unix_ms(at),
                device_id: id(),
                state: state.into(),
            });
        }
    }
    Ok(out)
}

#[derive(Default)]
pub struct VitalsQuery;

#[Object]
impl VitalsQuery {
    /// Aggregates of one vital sign of a patient's devices, of the buckets
    /// starting from `from` until before `to`.
    async fn vitals(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        metric: VitalMetric,
        from: DateTime,
        to: DateTime,
        resolution: Option<Resolution>,
    ) -> async_graphql::Result<Vec<VitalPoint>> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        valid(&patient_id, "patientId")?;
        Access::new(d, who, "read", "vitals")
            .patient(&patient_id)
            .await?;
        let span = match resolution.unwrap_or(Resolution::Minute) {
            Resolution::Minute => Span::Minute,
            Resolution::Hour => Span::Hour,
        };
        let (from, to) = (from.unix_ms(), to.unix_ms());
        let mut points = Vec::new();
        let devices = d
            .store
            .devices_of(&patient_id)
            .await
            .map_err(ApiError::unavailable)?;
        for dev in devices {
            let mut aggs = d
                .store
                .aggregates(&dev.id, metric.into(), span, from, to)
                .await
                .map_err(ApiError::unavailable)?;
            // The buckets still filling live in the device's actor.
            let open = ask(d, &dev.id, &OpenAggregates(metric.into())).await?;
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
                    start: DateTime::from_unix_ms(a.start_ms),
                    min,
                    max,
                    mean,
                    count: a.count as i32,
                })
            }));
        }
        points.sort_by_key(|p| p.start);
        Ok(points)
    }
}

#[derive(Default)]
pub struct VitalsMutation;

#[Object]
impl VitalsMutation {
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
        let (who, d) = (principal(ctx)?, deps(ctx));
        valid(&device_id, "deviceId")?;
        if samples.is_empty() || samples.len() > 5_000 {
            return Err(ApiError::bad_input("1–5000 samples per push").into());
        }
        let request_id = request_id.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        if request_id.is_empty() || request_id.len() > 128 {
            return Err(ApiError::bad_input("requestId: 1–128 bytes").into());
        }
        // Only the device's patient pushes (a clinician of theirs may read).
        let access = Access::new(d, who, "write", "vitals");
        let Some(patient) = device_patient(d, &device_id).await? else {
            return Err(access.refuse_unknown().await.into());
        };
        if who.role != Role::Patient {
            return Err(access.refuse(Some(&patient)).await.into());
        }
        // Written with the batch's journal entry (or by the stream on its
        // own if no batch is written), not before it.
        let entry = access.patient_carried(&patient).await?;
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
                    reason: RejectionReason::Incomplete,
                    message: "a field this metric needs is missing or invalid".into(),
                }),
            }
        }
        let mut accepted = 0;
        let mut duplicate = false;
        if forwarded.is_empty() {
            access.write(&entry).await?;
        } else {
            let push = Push {
                request_id,
                samples: forwarded,
                audit: Some(entry),
            };
            // Kept to write it here if the stream could not (below).
            let audit = push.audit.clone();
            // `PushError` has no refusal but `Unavailable`, which `ask` asks
            // again until its deadline. Pushes of one device that arrive
            // while its previous one is stored go on together
            // ([`crate::api::lanes`]).
            let lanes = ctx.data_unchecked::<std::sync::Arc<PushLanes>>();
            let result = match lanes.push(d, &device_id, push).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => {
                    carried_back(d, audit.as_ref()).await;
                    return Err(ApiError::unavailable("device.push: samples not stored").into());
                }
                Err(e) => {
                    carried_back(d, audit.as_ref()).await;
                    return Err(e.into());
                }
            };
            accepted = result.accepted as i32;
            duplicate = result.duplicate;
            for (i, r) in result.rejected {
                rejections.push(Rejection {
                    index: index_of.get(i).copied().unwrap_or(i) as i32,
                    reason: (&r).into(),
                    message: r.to_string(),
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
}

/// Raw ECG of a patient's device as stored: contiguous samples from `start`.
#[derive(SimpleObject, Clone)]
pub struct EcgSegmentEvent {
    pub device_id: ID,
    pub patient_id: ID,
    /// Time of the first sample.
    pub start: DateTime,
    pub hz: i32,
    pub millivolts: Vec<f64>,
}

#[derive(Default)]
pub struct VitalsSubscription;

#[Subscription]
impl VitalsSubscription {
    /// Readings of a patient's devices as they are stored; without
    /// `patientId`, of every patient of the caller (a clinician's care
    /// team, a patient's own) on one subscription, as a central station's
    /// wall needs. Each patient is authorized and audited; ops and admin
    /// are refused.
    async fn vitals(
        &self,
        ctx: &Context<'_>,
        patient_id: Option<ID>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<VitalsEventGql>>> {
        let (who, d) = (principal(ctx)?.clone(), deps(ctx).clone());
        let patients = patients_asked(&d, &who, patient_id.as_ref(), "vitals").await?;
        let mut w = watch::<VitalsEvent>(&d, "vitals", &patients).await?;
        let slot = SubscriptionSlot::take(&d, &who, "vitals")?;
        Ok(until_expiry(
            ctx,
            async_stream_lite(move |tx| async move {
                let _slot = slot;
                while let Some((e, patient)) = w.rx.recv().await {
                    let event = VitalsEventGql {
                        device_id: ID(e.device.clone()),
                        patient_id: ID(patient),
                        accepted: e.accepted as i32,
                        samples: e.samples.iter().map(SampleGql::from).collect(),
                        ecg: e.ecg.map(Into::into),
                    };
                    if tx.send(event).await.is_err() {
                        break;
                    }
                }
            }),
        ))
    }
    /// Raw ECG of a patient's devices as it is stored (each stored chunk,
    /// for a live waveform); like `vitals`, it waits for a device registered
    /// later.
    async fn ecg(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<EcgSegmentEvent>>> {
        let (who, d) = (principal(ctx)?.clone(), deps(ctx).clone());
        valid(&patient_id, "patientId")?;
        Access::new(&d, &who, "read", "ecg")
            .patient(&patient_id)
            .await?;
        let mut w = watch::<EcgEvent>(&d, "ecg", std::slice::from_ref(&patient_id.0)).await?;
        let slot = SubscriptionSlot::take(&d, &who, "ecg")?;
        Ok(until_expiry(
            ctx,
            async_stream_lite(move |tx| async move {
                let _slot = slot;
                while let Some((e, patient)) = w.rx.recv().await {
                    for s in e.segments {
                        let event = EcgSegmentEvent {
                            device_id: ID(e.device.clone()),
                            patient_id: ID(patient.clone()),
                            start: DateTime::from_unix_ms(s.start_ms),
                            hz: s.hz as i32,
                            millivolts: s.millivolts.iter().map(|v| f64::from(*v)).collect(),
                        };
                        if tx.send(event).await.is_err() {
                            return;
                        }
                    }
                }
            }),
        ))
    }
}
