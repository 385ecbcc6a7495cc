//! ECG: the live analysis state carried by vitals events, the beats found in
//! a patient's ECG, and the raw strip around an alert (read back from the
//! journal through the ECG chunk index).

use super::*;

/// The ECG analysis at the end of a batch: what a live view shows.
#[derive(SimpleObject, Clone)]
#[graphql(name = "EcgState")]
pub struct EcgStateGql {
    /// Counted from the beats of the last seconds; null when unknown (poor
    /// signal, no recent beat, VF): never a stale number.
    pub heart_rate: Option<f64>,
    pub quality: SignalQuality,
    pub asystole: bool,
    pub pause: bool,
    pub ventricular_fibrillation: bool,
    pub ventricular_tachycardia: bool,
    pub atrial_fibrillation: bool,
    /// Premature ventricular beats in the last minute.
    pub pvcs_per_minute: f64,
    /// The rhythm these flags add up to.
    pub rhythm: Rhythm,
}

/// The rhythm an ECG analysis shows, the most serious first: `UNKNOWN`
/// when the signal is not good enough to tell (never a guess).
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum Rhythm {
    Sinus,
    AtrialFibrillation,
    VentricularTachycardia,
    VentricularFibrillation,
    Asystole,
    Unknown,
}

impl Rhythm {
    fn of(s: &crate::actors::device::ecg::RhythmState) -> Rhythm {
        use crate::actors::device::ecg::Quality;
        if s.vf {
            Rhythm::VentricularFibrillation
        } else if s.asystole {
            Rhythm::Asystole
        } else if s.vt {
            Rhythm::VentricularTachycardia
        } else if s.af {
            Rhythm::AtrialFibrillation
        } else if s.quality == Quality::Good && s.hr_bpm.is_some() {
            Rhythm::Sinus
        } else {
            Rhythm::Unknown
        }
    }
}

impl From<crate::actors::device::ecg::RhythmState> for EcgStateGql {
    fn from(s: crate::actors::device::ecg::RhythmState) -> Self {
        EcgStateGql {
            rhythm: Rhythm::of(&s),
            heart_rate: s.hr_bpm,
            quality: s.quality.into(),
            asystole: s.asystole,
            pause: s.pause,
            ventricular_fibrillation: s.vf,
            ventricular_tachycardia: s.vt,
            atrial_fibrillation: s.af,
            pvcs_per_minute: s.pvc_per_min,
        }
    }
}

/// A beat found in a device's ECG.
#[derive(SimpleObject, Clone)]
#[graphql(name = "Beat")]
pub struct BeatGql {
    pub device_id: ID,
    /// The R peak.
    pub at: DateTime,
    /// Milliseconds since the beat before (unknown after a gap or at the start).
    pub rr: Option<f64>,
    pub kind: BeatKind,
}

/// Contiguous raw ECG.
#[derive(SimpleObject, Clone)]
pub struct EcgSegment {
    /// Time of the first sample.
    pub start: DateTime,
    pub hz: i32,
    pub millivolts: Vec<f64>,
}

/// The raw ECG around an alert (segments, since the recording may have gaps).
#[derive(SimpleObject, Clone)]
pub struct EcgStrip {
    pub alert_id: ID,
    pub device_id: ID,
    pub from: DateTime,
    pub to: DateTime,
    pub segments: Vec<EcgSegment>,
}

/// Longest span of beats one query returns.
const MAX_BEATS_SPAN_MS: u64 = 10 * 60_000;
/// Longest strip either side of an alert.
const MAX_STRIP_SECONDS: i32 = 30;

#[derive(Default)]
pub struct EcgQuery;

#[Object]
impl EcgQuery {
    /// The beats found in a patient's ECG with `from <= at < to` (at most
    /// 10 minutes), oldest first.
    async fn beats(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        from: DateTime,
        to: DateTime,
    ) -> async_graphql::Result<Vec<BeatGql>> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        valid(&patient_id, "patientId")?;
        if !(from.ms() >= 0 && to > from) {
            return Err(ApiError::bad_input("from and to: times after 1970 with from < to").into());
        }
        let (from, to) = (from.unix_ms(), to.unix_ms());
        if to - from > MAX_BEATS_SPAN_MS {
            return Err(ApiError::bad_input("at most 10 minutes of beats at a time").into());
        }
        Access::new(d, who, "read", "ecg_beats")
            .patient(&patient_id)
            .await?;
        let mut out = Vec::new();
        for dev in d
            .store
            .devices_of(&patient_id)
            .await
            .map_err(ApiError::unavailable)?
        {
            // A chunk's beats may lie up to a detection delay before it.
            let chunks = d
                .store
                .ecg_chunks(
                    &dev.id,
                    from.saturating_sub(2_000),
                    to.saturating_add(2_000),
                    2_000,
                )
                .await
                .map_err(ApiError::unavailable)?;
            for chunk in chunks {
                let beats: Vec<(u64, Option<u64>, crate::actors::device::ecg::BeatKind)> =
                    serde_json::from_str(&chunk.beats).map_err(ApiError::unavailable)?;
                out.extend(
                    beats
                        .into_iter()
                        .filter(|(at, _, _)| (from..to).contains(at))
                        .map(|(at, rr, kind)| BeatGql {
                            device_id: ID(dev.id.clone()),
                            at: DateTime::from_unix_ms(at),
                            rr: rr.map(|r| r as f64),
                            kind: kind.into(),
                        }),
                );
            }
        }
        out.sort_by_key(|b| b.at);
        Ok(out)
    }

    /// The raw ECG `seconds` (default 10, at most 30) either side of when an
    /// alert was raised.
    async fn ecg_strip(
        &self,
        ctx: &Context<'_>,
        alert_id: ID,
        seconds: Option<i32>,
    ) -> async_graphql::Result<EcgStrip> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        valid(&alert_id, "alertId")?;
        let seconds = seconds.unwrap_or(10);
        if !(1..=MAX_STRIP_SECONDS).contains(&seconds) {
            return Err(ApiError::bad_input("seconds: 1–30").into());
        }
        let alert = authorized_alert(d, who, &alert_id, "read", "ecg_strip").await?;
        let half = seconds as u64 * 1000;
        let (from, to) = (alert.raised_ms.saturating_sub(half), alert.raised_ms + half);
        let chunks = d
            .store
            .ecg_chunks(&alert.device_id, from, to, 1_000)
            .await
            .map_err(ApiError::unavailable)?;
        let journal = format!("device/{}", alert.device_id);
        let mut segments: Vec<EcgSegment> = Vec::new();
        let mut last_seq = None;
        let mut entry: Vec<Sample> = Vec::new();
        for chunk in chunks {
            if last_seq != Some(chunk.seq) {
                let payload = d
                    .store
                    .journal_entry(&journal, chunk.seq)
                    .await
                    .map_err(ApiError::unavailable)?;
                // Pruned after the raw sample retention: nothing to show.
                entry = payload
                    .and_then(|p| serde_json::from_slice(&p).ok())
                    .unwrap_or_default();
                last_seq = Some(chunk.seq);
            }
            for s in &entry {
                let Sample::Ecg {
                    at_ms,
                    hz,
                    millivolts,
                } = s
                else {
                    continue;
                };
                if *at_ms != chunk.start_ms {
                    continue;
                }
                let hz64 = u64::from(*hz);
                let first = (from.saturating_sub(*at_ms) * hz64).div_ceil(1000) as usize;
                // Samples at + i·1000/hz with from <= t < to.
                let last = (to.saturating_sub(*at_ms) * hz64).div_ceil(1000) as usize;
                let (first, last) = (first.min(millivolts.len()), last.min(millivolts.len()));
                if first >= last {
                    continue;
                }
                let start = at_ms + first as u64 * 1000 / hz64;
                let values = millivolts[first..last].iter().map(|v| f64::from(*v));
                match segments.last_mut() {
                    // Contiguous with the segment before: one segment.
                    Some(seg)
                        if seg.hz == *hz as i32
                            && (seg.start.unix_ms()
                                + seg.millivolts.len() as u64 * 1000 / hz64)
                                .abs_diff(start)
                                <= 1000 / hz64 + 1 =>
                    {
                        seg.millivolts.extend(values)
                    }
                    _ => segments.push(EcgSegment {
                        start: DateTime::from_unix_ms(start),
                        hz: *hz as i32,
                        millivolts: values.collect(),
                    }),
                }
            }
        }
        Ok(EcgStrip {
            alert_id,
            device_id: ID(alert.device_id),
            from: DateTime::from_unix_ms(from),
            to: DateTime::from_unix_ms(to),
            segments,
        })
    }
}
