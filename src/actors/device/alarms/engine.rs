//! The alarm engine of one device: observations and ticks in, alarm
//! changes out (see the module above for the rules and their semantics).

use serde::{Deserialize, Serialize};

use super::tracker::*;
use super::*;

/// The alarm engine of one device. Snapshot it with serde; restore gives the same
/// future changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmEngine {
    settings: AlarmSettings,
    trackers: Vec<Tracker>,
    pressure: Pressure,
    /// Newest accepted sample per stream (5 signals + rhythm).
    newest: [Option<u64>; 6],
    /// Whether the newest rhythm state allows judging ECG rules.
    ecg_ok: bool,
    /// `no_data` episode: (since = newest data, priority).
    no_data: Option<(u64, Priority)>,
    /// Signals that went silent with an open alarm while the device kept sending:
    /// (signal, newest reading, priority of their `no_data`).
    silent: Vec<(Signal, u64, Priority)>,
    shown: Vec<Shown>,
    paused_until: Option<u64>,
    /// Whether a lethal rhythm was suppressing the HR and pause rules at the last
    /// reconcile (a change, whatever its cause, restarts the suppressed rules).
    suppressing: bool,
}

impl AlarmEngine {
    pub fn new(settings: AlarmSettings) -> Self {
        Self {
            settings,
            trackers: vec![Tracker::default(); SLOTS.len()],
            pressure: Pressure::default(),
            newest: [None; 6],
            ecg_ok: true,
            no_data: None,
            silent: Vec::new(),
            shown: Vec::new(),
            paused_until: None,
            suppressing: false,
        }
    }

    pub fn settings(&self) -> &AlarmSettings {
        &self.settings
    }

    /// Replaces the per-patient settings; open episodes are judged against them from the
    /// next observation or tick on. The caller validates them first
    /// ([`AlarmSettings::validate`]); the engine does not refuse settings.
    pub fn set_settings(&mut self, s: AlarmSettings) {
        self.settings = s;
    }

    /// Newest sample time of the device over its continuous streams (ECG,
    /// pulse rate, SpO2, rhythm). Blood pressure is sparse by nature (a
    /// cuff reads every few minutes): a BP-only device is never "silent".
    fn newest_data(&self) -> Option<u64> {
        let bp = [stream_of(Signal::Systolic), stream_of(Signal::Diastolic)];
        self.newest
            .iter()
            .enumerate()
            .filter(|(i, _)| !bp.contains(i))
            .filter_map(|(_, n)| *n)
            .max()
    }

    fn level_rule(&self, slot: usize) -> LevelRule {
        let s = &self.settings;
        match SLOTS[slot].kind {
            AlarmKind::ExtremeTachycardia => s.extreme_tachycardia,
            AlarmKind::ExtremeBradycardia => s.extreme_bradycardia,
            AlarmKind::Tachycardia => s.tachycardia,
            AlarmKind::Bradycardia => s.bradycardia,
            AlarmKind::FrequentEctopy => s.frequent_ectopy,
            AlarmKind::SevereLowSpo2 => s.severe_low_spo2,
            AlarmKind::LowSpo2 => s.low_spo2,
            _ => unreachable!("not a level rule"),
        }
    }

    fn flag_rule(&self, slot: usize) -> FlagRule {
        let s = &self.settings;
        match SLOTS[slot].kind {
            AlarmKind::Asystole => s.asystole,
            AlarmKind::VentricularFibrillation => s.ventricular_fibrillation,
            AlarmKind::VentricularTachycardia => s.ventricular_tachycardia,
            AlarmKind::Pause => s.pause,
            AlarmKind::AtrialFibrillation => s.atrial_fibrillation,
            AlarmKind::EcgLeadOff => s.ecg_lead_off,
            AlarmKind::EcgPoorSignal => s.ecg_poor_signal,
            _ => unreachable!("not a flag rule"),
        }
    }

    fn enabled(&self, slot: usize) -> bool {
        match SLOTS[slot].kind {
            AlarmKind::ExtremeTachycardia
            | AlarmKind::ExtremeBradycardia
            | AlarmKind::Tachycardia
            | AlarmKind::Bradycardia
            | AlarmKind::FrequentEctopy
            | AlarmKind::SevereLowSpo2
            | AlarmKind::LowSpo2 => self.level_rule(slot).enabled,
            _ => self.flag_rule(slot).enabled,
        }
    }

    fn priority(&self, slot: usize) -> Priority {
        match SLOTS[slot].kind {
            AlarmKind::ExtremeTachycardia
            | AlarmKind::ExtremeBradycardia
            | AlarmKind::Tachycardia
            | AlarmKind::Bradycardia
            | AlarmKind::FrequentEctopy
            | AlarmKind::SevereLowSpo2
            | AlarmKind::LowSpo2 => self.level_rule(slot).priority,
            _ => self.flag_rule(slot).priority,
        }
    }

    fn lethal_active(&self) -> bool {
        (0..3).any(|i| self.trackers[i].active.is_some() && self.enabled(i))
    }

    /// Feeds a level sample to a level-rule slot.
    fn feed_level(&mut self, slot: usize, at: u64, span: u64, value: f64) {
        let r = self.level_rule(slot);
        let above = matches!(
            SLOTS[slot].kind,
            AlarmKind::ExtremeTachycardia | AlarmKind::Tachycardia | AlarmKind::FrequentEctopy
        );
        let verdict = if above {
            if value > r.raise {
                Verdict::Condition
            } else if value < r.resolve {
                Verdict::Clear
            } else {
                Verdict::Band
            }
        } else if value < r.raise {
            Verdict::Condition
        } else if value > r.resolve {
            Verdict::Clear
        } else {
            Verdict::Band
        };
        let gap = self.settings.max_gap_ms;
        self.trackers[slot].update(
            at,
            span,
            verdict,
            gap,
            r.sustain_ms,
            r.resolve_ms,
            Some(value),
            Some(r.raise),
        );
    }

    fn feed_flag(&mut self, slot: usize, at: u64, flag: bool, clear: bool) {
        let r = self.flag_rule(slot);
        let verdict = if flag {
            Verdict::Condition
        } else if clear {
            Verdict::Clear
        } else {
            Verdict::Band
        };
        let gap = self.settings.max_gap_ms;
        self.trackers[slot].update(
            at,
            1000,
            verdict,
            gap,
            r.sustain_ms,
            r.resolve_ms,
            None,
            None,
        );
    }

    /// Feeds one observation. Returns the alarm changes it caused, in order.
    pub fn observe(&mut self, obs: &Observation) -> Vec<AlarmChange> {
        let at = obs.at_ms();
        let stream = match obs {
            Observation::Reading { signal, .. } => stream_of(*signal),
            Observation::Rhythm { .. } => RHYTHM_STREAM,
        };
        // Late or duplicate: ignored for state (and it does not prove the device is back,
        // since it is older than what we already had from that stream).
        if self.newest[stream].is_some_and(|n| at <= n) {
            return Vec::new();
        }
        // A non-finite reading (a device's "no value" code) is neither evidence nor data.
        if let Observation::Reading { value, .. } = obs {
            if !value.is_finite() {
                return Vec::new();
            }
        }
        self.newest[stream] = Some(at);
        self.no_data = None;
        if let Observation::Reading { signal, .. } = obs {
            self.silent.retain(|x| x.0 != *signal);
        }
        match *obs {
            Observation::Reading { signal, value, .. } => self.observe_reading(signal, at, value),
            Observation::Rhythm {
                quality_ok,
                lead_off,
                asystole,
                pause,
                vf,
                vt,
                af,
                pvc_per_min,
                ..
            } => {
                // Technical rules always run. Lead-off clears only with no lead-off; poor
                // signal clears only with a good signal (a lead-off second is neither).
                self.feed_flag(16, at, lead_off, !lead_off);
                self.feed_flag(17, at, !quality_ok && !lead_off, quality_ok && !lead_off);
                self.ecg_ok = quality_ok && !lead_off;
                if self.ecg_ok {
                    self.feed_flag(0, at, asystole, true);
                    self.feed_flag(1, at, vf, true);
                    self.feed_flag(2, at, vt, true);
                    if !self.lethal_active() {
                        self.feed_flag(11, at, pause, true);
                    }
                    self.feed_flag(12, at, af, true);
                    if pvc_per_min.is_finite() {
                        self.feed_level(13, at, 1000, pvc_per_min);
                    }
                }
            }
        }
        self.reconcile(at)
    }

    fn observe_reading(&mut self, signal: Signal, at: u64, value: f64) {
        match signal {
            Signal::EcgHeartRate | Signal::PulseRate => {
                if self.lethal_active() || (signal == Signal::EcgHeartRate && !self.ecg_ok) {
                    return;
                }
                let base = if signal == Signal::EcgHeartRate { 3 } else { 7 };
                for slot in base..base + 4 {
                    self.feed_level(slot, at, 0, value);
                }
            }
            Signal::Spo2 => {
                self.feed_level(14, at, 0, value);
                self.feed_level(15, at, 0, value);
            }
            Signal::Systolic | Signal::Diastolic => {
                let r = self.settings.hypertensive_crisis;
                let p = &mut self.pressure;
                let raise = if signal == Signal::Systolic {
                    p.systolic = Some(value);
                    r.systolic_raise
                } else {
                    p.diastolic = Some(value);
                    r.diastolic_raise
                };
                let normal = p.systolic.is_none_or(|v| v < r.systolic_resolve)
                    && p.diastolic.is_none_or(|v| v < r.diastolic_resolve);
                if p.active.is_none() {
                    if value >= raise {
                        p.active = Some(Episode {
                            since_ms: at,
                            reading: Some(value),
                            threshold: Some(raise),
                        });
                    }
                } else if normal {
                    p.active = None;
                }
            }
        }
    }

    /// What should be shown now.
    fn wanted(&self) -> Vec<Wanted> {
        let mut out = Vec::new();
        if let Some((since, priority)) = self.no_data {
            out.push(Wanted {
                key: NO_DATA,
                priority,
                episode: Episode {
                    since_ms: since,
                    reading: None,
                    threshold: None,
                },
            });
            return out;
        }
        for &(signal, since, priority) in &self.silent {
            out.push(Wanted {
                key: AlarmKey::new(AlarmKind::NoData, Some(signal)),
                priority,
                episode: Episode {
                    since_ms: since,
                    reading: None,
                    threshold: None,
                },
            });
        }
        let lethal = self.lethal_active();
        let candidate = |i: usize| {
            self.enabled(i)
                && self.trackers[i].active.is_some()
                && !(lethal && SUPPRESSED.contains(&i))
        };
        let mut in_family = [false; SLOTS.len()];
        for fam in FAMILIES {
            let mut best: Option<usize> = None;
            for &i in fam {
                in_family[i] = true;
                if candidate(i) && best.is_none_or(|b| self.priority(i) > self.priority(b)) {
                    best = Some(i);
                }
            }
            if let Some(i) = best {
                out.push(self.wanted_slot(i));
            }
        }
        for (i, fam) in in_family.iter().enumerate() {
            if !fam && candidate(i) {
                out.push(self.wanted_slot(i));
            }
        }
        let bp = &self.settings.hypertensive_crisis;
        if let (true, Some(e)) = (bp.enabled, self.pressure.active) {
            out.push(Wanted {
                key: HYPERTENSIVE,
                priority: bp.priority,
                episode: e,
            });
        }
        out
    }

    fn wanted_slot(&self, i: usize) -> Wanted {
        Wanted {
            key: SLOTS[i],
            priority: self.priority(i),
            episode: self.trackers[i].active.expect("candidate is active"),
        }
    }

    fn announce(&self, priority: Priority, at: u64) -> bool {
        priority == Priority::High || self.paused_until.is_none_or(|u| at >= u)
    }

    /// Diffs what should be shown against what is shown: Raised first, then Resolved.
    fn reconcile(&mut self, at: u64) -> Vec<AlarmChange> {
        // A lethal rhythm starting or ending (or its rule being disabled): the suppressed
        // rules start over, so a stale pre-arrest tachycardia never reappears afterwards.
        let lethal = self.lethal_active();
        if lethal != self.suppressing {
            for i in SUPPRESSED {
                self.trackers[i] = Tracker::default();
            }
            self.suppressing = lethal;
        }
        // Nothing shown and nothing to show (the usual case): nothing to diff.
        let quiet = self.shown.is_empty()
            && self.no_data.is_none()
            && self.silent.is_empty()
            && self.pressure.active.is_none()
            && self.trackers.iter().all(|t| t.active.is_none());
        if quiet {
            return Vec::new();
        }
        let wanted = self.wanted();
        let mut changes = Vec::new();
        for w in &wanted {
            if !self.shown.iter().any(|s| s.key == w.key) {
                self.shown.push(Shown {
                    key: w.key,
                    priority: w.priority,
                    since_ms: w.episode.since_ms,
                    raised_at: at,
                    acknowledged: false,
                    reannounced: false,
                    escalated: false,
                    announced: self.announce(w.priority, at),
                });
                changes.push(AlarmChange::Raised {
                    key: w.key,
                    priority: w.priority,
                    since_ms: w.episode.since_ms,
                    at_ms: at,
                    reading: w.episode.reading,
                    threshold: w.episode.threshold,
                    announce: self.announce(w.priority, at),
                });
            }
        }
        let mut kept = Vec::with_capacity(self.shown.len());
        for s in std::mem::take(&mut self.shown) {
            if wanted.iter().any(|w| w.key == s.key) {
                kept.push(s);
                continue;
            }
            // Still active in its own right but not wanted, or reset because a lethal
            // rhythm took over: superseded by a more severe alarm.
            let own_active = match slot_of(s.key) {
                Some(i) => {
                    self.enabled(i)
                        && (self.trackers[i].active.is_some()
                            || (lethal && SUPPRESSED.contains(&i)))
                }
                None => false,
            };
            changes.push(AlarmChange::Resolved {
                key: s.key,
                // Delayed data can be older than the raise (no_data): never end before
                // the start.
                at_ms: at.max(s.raised_at),
                reason: if own_active {
                    ResolveReason::Superseded
                } else {
                    ResolveReason::Cleared
                },
            });
        }
        kept.sort_by_key(|s| s.key);
        self.shown = kept;
        changes
    }

    /// Advances time: raises `no_data`, re-announces and escalates. Call it at
    /// [`AlarmEngine::next_deadline`] (calling it more often is harmless).
    pub fn tick(&mut self, now_ms: u64) -> Vec<AlarmChange> {
        let mut changes = Vec::new();
        if self.paused_until.is_some_and(|until| now_ms >= until) {
            changes.extend(self.resume(now_ms));
        }
        if let (None, Some(newest)) = (self.no_data, self.newest_data()) {
            if now_ms.saturating_sub(newest) >= self.settings.no_data_ms {
                let mut high = false;
                for s in std::mem::take(&mut self.shown) {
                    high |= s.priority == Priority::High;
                    changes.push(AlarmChange::Resolved {
                        key: s.key,
                        at_ms: now_ms,
                        // A signal's own no-data alarm is subsumed by the device's.
                        reason: if s.key.kind == AlarmKind::NoData {
                            ResolveReason::Superseded
                        } else {
                            ResolveReason::NoData
                        },
                    });
                }
                // Nothing judged before the silence carries over it.
                self.trackers = vec![Tracker::default(); SLOTS.len()];
                self.pressure = Pressure::default();
                self.silent.clear();
                let priority = if high {
                    Priority::High
                } else {
                    self.settings.no_data_priority
                };
                self.no_data = Some((newest, priority));
            }
        }
        if self.no_data.is_none() {
            self.end_silent_signals(now_ms, &mut changes);
        }
        changes.extend(self.reconcile(now_ms));
        let (re, esc) = (self.settings.reannounce_ms, self.settings.escalate_ms);
        for s in &mut self.shown {
            if s.priority != Priority::High || s.acknowledged {
                continue;
            }
            if !s.reannounced && now_ms >= s.raised_at.saturating_add(re) {
                s.reannounced = true;
                changes.push(AlarmChange::Reannounced {
                    key: s.key,
                    at_ms: now_ms,
                });
            }
            if !s.escalated && now_ms >= s.raised_at.saturating_add(esc) {
                s.escalated = true;
                changes.push(AlarmChange::Escalated {
                    key: s.key,
                    at_ms: now_ms,
                });
            }
        }
        changes
    }

    /// A continuous signal (ECG HR, pulse rate, SpO2) silent for `no_data_ms` while the
    /// device still sends other data: its shown alarms end (`NoData`), its rules start
    /// over, and `no_data` is raised for that signal (high if one of them was high).
    /// Only signals with a shown alarm: a sparse or absent signal with nothing open is
    /// not an alarm condition.
    fn end_silent_signals(&mut self, now_ms: u64, changes: &mut Vec<AlarmChange>) {
        for signal in [Signal::EcgHeartRate, Signal::PulseRate, Signal::Spo2] {
            let Some(newest) = self.newest[stream_of(signal)] else {
                continue;
            };
            if self.silent.iter().any(|x| x.0 == signal)
                || now_ms.saturating_sub(newest) < self.settings.no_data_ms
            {
                continue;
            }
            let slots = slots_of_signal(signal);
            let of_signal = |s: &Shown| slot_of(s.key).is_some_and(|i| slots.contains(&i));
            if !self.shown.iter().any(of_signal) {
                continue;
            }
            let mut high = false;
            for s in self.shown.iter().filter(|s| of_signal(s)) {
                high |= s.priority == Priority::High;
                changes.push(AlarmChange::Resolved {
                    key: s.key,
                    at_ms: now_ms,
                    reason: ResolveReason::NoData,
                });
            }
            self.shown.retain(|s| !of_signal(s));
            for &i in slots {
                self.trackers[i] = Tracker::default();
            }
            let priority = if high {
                Priority::High
            } else {
                self.settings.no_data_priority
            };
            self.silent.push((signal, newest, priority));
        }
    }

    /// Acknowledges a shown alarm: stops its re-announcement and escalation (it stays
    /// active). Returns whether the key was shown.
    pub fn acknowledge(&mut self, key: AlarmKey, _now_ms: u64) -> bool {
        match self.shown.iter_mut().find(|s| s.key == key) {
            Some(s) => {
                s.acknowledged = true;
                true
            }
            None => false,
        }
    }

    /// Pauses the announcement of non-high alarms until `until_ms` (bounded by
    /// `max_pause_ms`). Alarms are still raised and recorded.
    pub fn pause(&mut self, now_ms: u64, until_ms: u64) -> Result<(), PauseError> {
        if until_ms <= now_ms {
            return Err(PauseError::NotInFuture);
        }
        if until_ms - now_ms > self.settings.max_pause_ms {
            return Err(PauseError::TooLong {
                max_ms: self.settings.max_pause_ms,
            });
        }
        self.paused_until = Some(until_ms);
        Ok(())
    }

    /// Ends a pause: the alarms it kept unannounced and still shown are
    /// `Announced`.
    pub fn resume(&mut self, now_ms: u64) -> Vec<AlarmChange> {
        self.paused_until = None;
        self.announce_deferred(now_ms)
    }

    /// The end of the pause, if paused.
    pub fn paused_until(&self) -> Option<u64> {
        self.paused_until
    }

    /// Announces the shown alarms a pause kept quiet.
    fn announce_deferred(&mut self, now_ms: u64) -> Vec<AlarmChange> {
        let mut changes = Vec::new();
        for s in self.shown.iter_mut().filter(|s| !s.announced) {
            s.announced = true;
            changes.push(AlarmChange::Announced {
                key: s.key,
                priority: s.priority,
                at_ms: now_ms,
            });
        }
        changes
    }

    /// Shown alarms: key, priority, since.
    pub fn active(&self) -> Vec<(AlarmKey, Priority, u64)> {
        self.shown
            .iter()
            .map(|s| (s.key, s.priority, s.since_ms))
            .collect()
    }

    /// When `tick` next has something to do.
    pub fn next_deadline(&self) -> Option<u64> {
        let mut next: Option<u64> = None;
        let mut consider = |t: u64| next = Some(next.map_or(t, |n| n.min(t)));
        if let (None, Some(newest)) = (self.no_data, self.newest_data()) {
            consider(newest.saturating_add(self.settings.no_data_ms));
            for signal in [Signal::EcgHeartRate, Signal::PulseRate, Signal::Spo2] {
                let slots = slots_of_signal(signal);
                let open = self
                    .shown
                    .iter()
                    .any(|s| slot_of(s.key).is_some_and(|i| slots.contains(&i)));
                let silent = self.silent.iter().any(|x| x.0 == signal);
                if let (true, false, Some(n)) = (open, silent, self.newest[stream_of(signal)]) {
                    consider(n.saturating_add(self.settings.no_data_ms));
                }
            }
        }
        if let Some(until) = self.paused_until {
            if self.shown.iter().any(|s| !s.announced) {
                consider(until);
            }
        }
        for s in &self.shown {
            if s.priority != Priority::High || s.acknowledged {
                continue;
            }
            if !s.reannounced {
                consider(s.raised_at.saturating_add(self.settings.reannounce_ms));
            }
            if !s.escalated {
                consider(s.raised_at.saturating_add(self.settings.escalate_ms));
            }
        }
        next
    }
}
