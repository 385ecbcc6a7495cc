//! Alarm engine for one monitored device: turns vital-sign readings and the ECG
//! analysis' rhythm states into alarm changes (raised, resolved, re-announced,
//! escalated), after the alarm-system model of IEC 60601-1-8:2006+A1:2012
//! (physiological vs technical alarm conditions; high / medium / low priority;
//! alarm-signal inactivation states "audio paused" and "acknowledged"; escalation)
//! and the ECG-monitor alarm set of IEC 60601-2-27:2011 (asystole, ventricular
//! fibrillation, ventricular tachycardia, heart-rate limits, lead-off).
//! The engine is pure and clock-free: every call carries its time (Unix ms).
//!
//! # Rules (defaults; every number is in [`AlarmSettings`])
//!
//! | kind | category | condition | sustain (raise) | resolve | priority | refs |
//! |---|---|---|---|---|---|---|
//! | `asystole` | physiological | rhythm `asystole` (good signal) | 0: first flagged second | 5 s without | high | 1, 2, 3 |
//! | `ventricular_fibrillation` | physiological | rhythm `vf` | 0 | 5 s without | high | 1, 2, 3 |
//! | `ventricular_tachycardia` | physiological | rhythm `vt` | 0 | 5 s without | high | 1, 2, 3 |
//! | `extreme_tachycardia` | physiological | HR > 180/min | 10 s | HR < 170 for 10 s | high | 1, 2, 3 |
//! | `extreme_bradycardia` | physiological | HR < 30/min | 10 s | HR > 35 for 10 s | high | 1, 2, 3 |
//! | `tachycardia` | physiological | HR > 120/min | 60 s | HR < 115 for 30 s | medium | 1, 2, 3 |
//! | `bradycardia` | physiological | HR < 40/min | 60 s | HR > 45 for 30 s | medium | 1, 2, 3 |
//! | `pause` | physiological | rhythm `pause` | 0 | 10 s without | medium | 1, 3 |
//! | `atrial_fibrillation` | physiological | rhythm `af` | 30 s | 60 s without | low | 1, 3 |
//! | `frequent_ectopy` | physiological | PVC/min > 10 | 60 s | PVC/min < 6 for 60 s | low | 1, 3 |
//! | `severe_low_spo2` | physiological | SpO2 < 85 % | 10 s | SpO2 > 88 % for 10 s | high | 1, 3 |
//! | `low_spo2` | physiological | SpO2 < 90 % | 60 s | SpO2 > 92 % for 30 s | medium | 1, 3 |
//! | `hypertensive_crisis` | physiological | systolic ≥ 180 or diastolic ≥ 120 mmHg | one reading | a reading leaving newest systolic < 170 and diastolic < 110 | medium | 1, 4 |
//! | `ecg_lead_off` | technical | rhythm `lead_off` (lead off, flat, saturated) | 5 s | 5 s not lead-off | medium | 1, 2 |
//! | `ecg_poor_signal` | technical | `!quality_ok && !lead_off` | 5 s | 5 s `quality_ok` | low | 1, 3 |
//! | `no_data` | technical | nothing from a device that has sent data, for 30 s | via `tick` | any new observation | medium; high if it ended a high alarm | 1, 3 |
//!
//! Sustain and resolve windows are "covered" windows (see Semantics); the rhythm rules
//! (and ECG HR) are judged only while the ECG quality is good.
//!
//! References: (1) IEC 60601-1-8 — alarm priorities (high: immediate response; medium:
//! prompt; low: awareness), physiological vs technical alarm conditions, audio paused and
//! acknowledged states. (2) IEC 60601-2-27 — ECG monitoring equipment: asystole,
//! ventricular fibrillation/tachycardia, heart-rate limit and lead-off alarms.
//! (3) The project's clinical notes (CLINICAL-NOTES, summarised in docs/clinical.md) — "sustained" means with data covering the window,
//! hysteresis against flapping, a stale number is never shown, alarm fatigue (The Joint
//! Commission, Sentinel Event Alert 50, 2013), lethal rhythm definitions. (4) Whelton et
//! al., 2017 ACC/AHA high blood pressure guideline, J Am Coll Cardiol 2018;71:e127–e248:
//! hypertensive crisis above 180 and/or 120 mmHg (the engine raises at ≥, as briefed).
//! The default limits and delays are common bedside-monitor defaults, not
//! numbers from the standards (which leave limits to the manufacturer and clinician).
//! cardio is not a certified medical device.
//!
//! HR rules run separately for each source (`EcgHeartRate`, `PulseRate`); the alarm's
//! identity is `(kind, source)`. `source` is `Some(signal)` for single-signal rules (HR,
//! SpO2, and a signal's own `no_data`) and `None` for rhythm, blood-pressure, ECG
//! technical and device `no_data` alarms.
//!
//! # Semantics
//!
//! * **Sustain with coverage.** Each rule sees one stream (a signal's readings or the
//!   rhythm states) and judges each sample as *in condition*, *clearly normal* (past the
//!   resolve threshold) or *in the hysteresis band* (between the two). A raising run is
//!   a series of in-condition samples no further apart than `max_gap_ms`; it raises when
//!   it spans `sustain_ms`. A longer gap between in-condition samples starts the run
//!   over, so two readings an hour apart never make an episode and a 2-minute gap
//!   restarts one. Samples not in condition inside a run are *strays*, paid from a
//!   leaky-bucket budget (a clearly-normal sample costs 1, a band sample 1/2, each
//!   in-condition sample refunds 1/4; the run ends when the cost reaches 2): one stray
//!   is always tolerated, two clearly-normal samples in a row end the run, isolated
//!   strays up to one sample in five are tolerated indefinitely (noisy but real
//!   tachycardia raises), and a value hovering in the band with dips past the limit
//!   never counts as sustained. The raised alarm's `since_ms` is the first in-condition
//!   sample of the run (for the rhythm stream, whose states each cover the second
//!   *ending* at `at_ms`, the start of that second).
//! * **Hysteresis.** An active alarm resolves only after clearly-normal samples covering
//!   `resolve_ms` with no gap > `max_gap_ms`, *without* any in-condition or band sample
//!   in between (resolving is deliberately stricter than raising: a missed alarm costs
//!   more than a late resolve).
//! * **Late samples.** A sample not newer than the newest accepted sample of its stream
//!   (out of order or duplicate timestamp) is ignored entirely. A non-finite reading
//!   (a device's "no value") is ignored too: it is neither evidence nor data, so a
//!   device sending only NaN goes to `no_data`. A non-finite `pvc_per_min` only skips
//!   the ectopy rule. (A reading stamped in the future makes the stream's later readings
//!   "late" until time catches up: the caller must stamp with the device clock it
//!   trusts.)
//! * **Families.** Within a family only one alarm is shown: HR per source
//!   {extreme_tachycardia, extreme_bradycardia, tachycardia, bradycardia}, SpO2
//!   {severe_low_spo2, low_spo2}, lethal rhythms {asystole, ventricular_fibrillation,
//!   ventricular_tachycardia}, ECG technical {ecg_lead_off, ecg_poor_signal}. The shown
//!   one is the highest priority, ties broken by the order listed. Every rule keeps
//!   judging on its own; when e.g. extreme_tachycardia raises while tachycardia is shown,
//!   the engine emits `Raised(extreme_tachycardia)` then `Resolved(tachycardia,
//!   Superseded)`; when extreme_tachycardia clears but tachycardia's own episode has not,
//!   tachycardia is `Raised` again at once with its original `since_ms` (no 60 s blind
//!   spot while HR is still 150).
//! * **Suppression.** While asystole, VF or VT is active (deliberate extension: VT too,
//!   since a 180/min VT would otherwise also raise extreme tachycardia), all HR rules
//!   (both sources) and `pause` are not evaluated and are not shown (shown ones are
//!   resolved as `Superseded`); when the lethal rhythm clears they start over.
//! * **ECG quality.** While the newest rhythm state says `!quality_ok` or `lead_off`, the
//!   rhythm rules (asystole, VF, VT, pause, AF, ectopy) and ECG-HR rules are frozen: no
//!   raise, no resolve. The technical rules keep running. (A shown ECG-HR alarm still
//!   ends by the per-signal no-data rule below if ECG HR stops arriving for `no_data_ms`.)
//! * **Blood pressure** is sparse: one crisis reading raises (no sustain); the alarm
//!   resolves on a reading after which the newest systolic is < 170 and the newest
//!   diastolic is < 110 (a value never seen counts as normal).
//! * **No data.** `tick(now)` raises `no_data` when `now - newest ≥ no_data_ms` for a
//!   device that has sent continuous data (ECG, pulse rate or SpO2: blood pressure
//!   alone, sparse by nature, never counts as a device going silent). Every shown alarm is then `Resolved(NoData)` (nothing is
//!   current any more) and all rule state starts over; `no_data` takes high priority if one
//!   of the ended alarms was high. Any new observation resolves it (`Cleared`).
//!   Extension, same rule per signal: when a continuous signal (ECG HR, pulse rate,
//!   SpO2) with a shown alarm has been silent for `no_data_ms` while the device still
//!   sends other data (e.g. the SpO2 probe fell off), that signal's alarms end
//!   (`NoData`) and `no_data` is raised with `source: Some(signal)` (high if one of them
//!   was high) until the signal is back. Not done for the rhythm stream or blood
//!   pressure (sparse by nature).
//! * **Escalation.** A shown, unacknowledged high alarm is `Reannounced` once
//!   `reannounce_ms` after it was raised and `Escalated` once `escalate_ms` after, via
//!   `tick`. `acknowledge` stops both and does not resolve. A new `Raised` of the key is
//!   a new episode.
//! * **Audio pause.** While paused, non-high alarms are raised with `announce: false`;
//!   high alarms are always announced. A pause longer than `max_pause_ms` is refused.
//!   When the pause ends (by `tick` at its end, or `resume`), each alarm raised
//!   unannounced and still shown is `Announced`: deferred, never dropped.
//! * **Settings.** `set_settings` takes effect on the next observation or tick: open
//!   episodes are judged against the new thresholds from then on (a resolve still needs
//!   its resolve window: a new limit is not evidence that the patient changed); a rule
//!   that was disabled is resolved (`Cleared`) at once.

mod engine;
mod tracker;

pub use crate::domain::alarm::*;
pub use engine::AlarmEngine;
#[cfg(test)]
use tracker::*;

#[cfg(test)]
mod tests;

/// Property tests over random series (proptest).
#[cfg(test)]
mod properties;
