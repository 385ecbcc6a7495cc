//! What a stream learns from samples it stored: their aggregates, the ECG
//! analysis of a lead (beats, rhythm, signal quality, the chunks to index)
//! and the alarm engine's decisions.

use super::*;

impl DeviceStream {
    /// Folds accepted samples (in time order) into aggregates, the ECG
    /// analysis and the alarm engine; `seq` is their journal entry. Returns
    /// the alarm changes and the ECG chunks to index.
    pub(super) fn absorb(
        &mut self,
        samples: &[Sample],
        seq: u64,
    ) -> (Vec<AlarmChange>, Vec<EcgChunkRow>) {
        let mut changes = Vec::new();
        let mut chunks = Vec::new();
        for s in samples {
            self.rollups.add(s);
            let at_ms = s.at_ms();
            let mut reading = |signal, value| {
                changes.extend(self.engine.observe(&Observation::Reading {
                    signal,
                    at_ms,
                    value,
                }))
            };
            let latest = &mut self.latest;
            match s {
                Sample::HeartRate { bpm, .. } => {
                    LatestReadings::keep(&mut latest.heart_rate, at_ms, *bpm);
                    reading(Signal::PulseRate, *bpm)
                }
                Sample::Spo2 { percent, .. } => {
                    LatestReadings::keep(&mut latest.spo2, at_ms, *percent);
                    reading(Signal::Spo2, *percent)
                }
                Sample::BloodPressure {
                    systolic,
                    diastolic,
                    ..
                } => {
                    if latest.blood_pressure.is_none_or(|(t, _, _)| t <= at_ms) {
                        latest.blood_pressure = Some((at_ms, *systolic, *diastolic));
                    }
                    reading(Signal::Systolic, *systolic);
                    reading(Signal::Diastolic, *diastolic);
                }
                Sample::Ecg { hz, millivolts, .. } => {
                    let (c, chunk) = self.follow_ecg(at_ms, *hz, millivolts, seq);
                    changes.extend(c);
                    chunks.push(chunk);
                }
            }
        }
        (changes, chunks)
    }

    fn follow_ecg(
        &mut self,
        at_ms: u64,
        hz: u32,
        millivolts: &[f32],
        seq: u64,
    ) -> (Vec<AlarmChange>, EcgChunkRow) {
        // A new lead, another rate, or a gap (or overlap) beyond what device
        // clocks jitter: start over (the analysis learns the new signal; the
        // old beats age out). Within it, the lead goes on, re-anchored on the
        // device's clock.
        let continues = self
            .lead
            .as_ref()
            .is_some_and(|l| l.hz == hz && l.ms_of(l.fed).abs_diff(at_ms) <= LEAD_JITTER_MS);
        if continues {
            let lead = self.lead.as_mut().expect("continues");
            lead.origin_ms = at_ms.saturating_sub(lead.fed * 1000 / hz as u64);
        } else {
            self.lead = Some(Lead {
                hz,
                analyzer: EcgAnalyzer::new(hz, self.settings.rhythm),
                origin_ms: at_ms,
                fed: 0,
                last_beat_ms: None,
                latest: None,
            });
        }
        let lead = self.lead.as_mut().expect("set above");
        let mut out = EcgOutput::default();
        lead.analyzer.push(millivolts, &mut out);
        lead.fed += millivolts.len() as u64;
        let mut beats: Vec<StoredBeat> = Vec::with_capacity(out.beats.len());
        for b in &out.beats {
            let t = lead.ms_of(b.sample);
            let rr = lead
                .last_beat_ms
                .filter(|last| t > *last)
                .map(|last| t - last);
            lead.last_beat_ms = Some(t);
            self.rollups.add_beat(t, rr.map(|rr| 60_000.0 / rr as f64));
            beats.push((t, rr, b.kind));
        }
        let mut changes = Vec::new();
        for state in &out.states {
            let end = lead.ms_of(state.at_sample);
            if state.quality.is_good() {
                self.rollups.add_coverage(end.saturating_sub(1000), end);
            }
            changes.extend(self.engine.observe(&state.observation(end)));
            if let Some(bpm) = state.hr_bpm {
                changes.extend(self.engine.observe(&Observation::Reading {
                    signal: Signal::EcgHeartRate,
                    at_ms: end,
                    value: bpm,
                }));
            }
            lead.latest = Some(*state);
            if self.latest.ecg.is_none_or(|(t, _)| t <= end) {
                self.latest.ecg = Some((end, *state));
            }
        }
        let chunk = EcgChunkRow {
            start_ms: at_ms,
            end_ms: at_ms + (millivolts.len() as u64 * 1000).div_ceil(hz as u64),
            hz,
            seq,
            beats: serde_json::to_string(&beats).expect("beats serialise"),
        };
        (changes, chunk)
    }
}
