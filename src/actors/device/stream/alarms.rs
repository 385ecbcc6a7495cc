//! The stream's alarm bookkeeping: recording what the engine decides (one
//! row per episode, idempotently, knowing which writes are new), announcing
//! it on the bus, the timer for silence, escalation and the end of a pause,
//! the patient's settings, and the repair of alerts a crash left open.

use std::time::Duration;

use super::*;

/// The stored id of an alarm episode: one row per episode, however often derived.
pub(super) fn alert_id(device: &str, key: AlarmKey, since_ms: u64) -> String {
    match key.source {
        Some(source) => format!(
            "{device}:{}.{}:{since_ms}",
            key.kind.as_str(),
            source.as_str()
        ),
        None => format!("{device}:{}:{since_ms}", key.kind.as_str()),
    }
}

/// What recording a change did: the stored alert it is about, and whether
/// this was its first write.
pub(super) struct Recorded {
    pub(super) alert: String,
    pub(super) fresh: bool,
}

impl DeviceStream {
    /// Writes what the changes, chunks and closed buckets imply (idempotent).
    /// Returns, per change, the stored alert it is about and whether this
    /// write was its first (a replay rewrites what was written before a
    /// crash: only what is new there is announced).
    pub(super) async fn record(
        &mut self,
        changes: &[AlarmChange],
        chunks: &[EcgChunkRow],
    ) -> Result<Vec<Recorded>, crate::store::StoreError> {
        let mut recorded = Vec::with_capacity(changes.len());
        for change in changes {
            let key = change.key();
            // In order: a change resolving an alarm raised earlier in the
            // same list names that alarm.
            let (alert, fresh) = match *change {
                AlarmChange::Raised {
                    key,
                    priority,
                    since_ms,
                    at_ms,
                    reading,
                    threshold,
                    announce,
                } => {
                    let id = alert_id(&self.id, key, since_ms);
                    let fresh = self
                        .store
                        .raise_alert(&AlertRecord {
                            id: id.clone(),
                            device_id: self.id.clone(),
                            kind: key.kind,
                            source: key.source,
                            priority,
                            since_ms,
                            raised_ms: at_ms,
                            resolved_ms: None,
                            reading,
                            threshold,
                            announced: announce,
                            resolve_reason: None,
                            reannounced_ms: None,
                            escalated_ms: None,
                        })
                        .await?;
                    self.open_alerts.insert(key, id.clone());
                    (id, fresh)
                }
                AlarmChange::Resolved { at_ms, reason, .. } => {
                    match self.open_alerts.remove(&key) {
                        Some(id) => {
                            let fresh = self.store.resolve_alert(&id, at_ms, reason).await?;
                            (id, fresh)
                        }
                        None => (String::new(), false),
                    }
                }
                AlarmChange::Reannounced { at_ms, .. } | AlarmChange::Escalated { at_ms, .. } => {
                    match self.open_alerts.get(&key) {
                        Some(id) => {
                            let escalated = matches!(change, AlarmChange::Escalated { .. });
                            let fresh = self.store.mark_alert(id, escalated, at_ms).await?;
                            (id.clone(), fresh)
                        }
                        None => (String::new(), false),
                    }
                }
                AlarmChange::Announced { .. } => match self.open_alerts.get(&key) {
                    Some(id) => (id.clone(), self.store.mark_announced(id).await?),
                    None => (String::new(), false),
                },
            };
            recorded.push(Recorded { alert, fresh });
        }
        // The chunks and the buckets this closed, in one round of the
        // store's writer (with other devices' writes).
        let closed = self.rollups.take_closed();
        self.store.save_derived(&self.id, chunks, &closed).await?;
        Ok(recorded)
    }

    /// Publishes on `alerts.<device>` the changes whose record was new.
    pub(super) fn announce(
        &self,
        changes: &[AlarmChange],
        recorded: Vec<Recorded>,
        accepted_ms: u64,
    ) {
        let topic = format!("alerts.{}", crate::bus::events::topic_word(&self.id));
        for (change, Recorded { alert, fresh }) in changes.iter().zip(recorded) {
            if !fresh {
                continue;
            }
            if let AlarmChange::Raised {
                key,
                priority,
                announce,
                ..
            } = change
            {
                crate::metrics::alert_raised(key.kind.as_str(), priority.as_str());
                if !announce {
                    // Paused: recorded, not announced.
                    continue;
                }
            }
            self.events.publish(
                &topic,
                &AlertEvent {
                    device: self.id.clone(),
                    alert,
                    change: *change,
                    accepted_ms,
                },
            );
        }
    }

    /// Sets the timer for the engine's next deadline, unless one is set for
    /// earlier already.
    pub(super) fn arm(&mut self, ctx: &mut Ctx<Self>) {
        let (Some(deadline), Some(now)) = (self.engine.next_deadline(), self.device_now()) else {
            return;
        };
        // A timer message is activity: waking at least every `keepalive`
        // keeps a stream with a deadline ahead (a pause's end, an
        // escalation) from passivating, which would kill its timer.
        let delay =
            Duration::from_millis(deadline.saturating_sub(now)).min(self.settings.keepalive);
        let fires = tokio::time::Instant::now() + delay;
        if self.armed_for.is_some_and(|armed| armed <= fires) {
            return;
        }
        self.armed_for = Some(fires);
        ctx.notify_later(delay, Tick);
    }

    /// Applies a patient's stored settings (or the node's) and pause; what
    /// a pause ending announces is returned. The pause's end is a time on the
    /// node's clock; the engine judges on the device's.
    pub(super) fn apply(
        &mut self,
        settings: Option<AlarmSettings>,
        paused_until_ms: Option<u64>,
    ) -> Result<Vec<AlarmChange>, String> {
        self.engine
            .set_settings(settings.unwrap_or_else(|| self.settings.alarms.clone()));
        let wall = unix_ms();
        let device = self.device_now().unwrap_or(wall);
        match paused_until_ms {
            Some(until) if until > wall => {
                let until = device + (until - wall);
                self.engine
                    .pause(device, until)
                    .map_err(|e| format!("pause not applied: {e}"))?;
                Ok(Vec::new())
            }
            _ => Ok(self.engine.resume(device)),
        }
    }

    /// Resolves the device's alerts the store holds open (`stored`, read at
    /// start) but this stream's state does not (their changes, made by
    /// timers since the last snapshot, were lost with a crash; or they
    /// predate this version): judged anew, they are raised again if their
    /// condition still holds. One the replay resolved meanwhile is resolved
    /// already: nothing changes, nothing is announced.
    pub(super) async fn forget_stale_alerts(&mut self, stored: Vec<AlertRecord>) {
        let known: std::collections::HashSet<&String> = self.open_alerts.values().collect();
        let stale: Vec<_> = stored
            .into_iter()
            .filter(|a| a.resolved_ms.is_none() && !known.contains(&a.id))
            .collect();
        let now = self.device_now().unwrap_or_else(unix_ms);
        for a in stale {
            let at = now.max(a.raised_ms);
            let fresh = or_crash(
                self.store
                    .resolve_alert(&a.id, at, ResolveReason::Reset)
                    .await,
                "alerts not writable",
                &self.key,
            );
            if fresh {
                let key = AlarmKey::new(a.kind, a.source);
                let change = AlarmChange::Resolved {
                    key,
                    at_ms: at,
                    reason: ResolveReason::Reset,
                };
                let recorded = vec![Recorded { alert: a.id, fresh }];
                self.announce(&[change], recorded, 0);
            }
        }
    }

    /// Applies the patient's stored alarm settings (read at start; `None`:
    /// the node's); what a pause that ended meanwhile announces is returned.
    pub(super) fn apply_patient_settings(
        &mut self,
        stored: Option<crate::store::monitoring::StoredAlarmSettings>,
    ) -> Vec<AlarmChange> {
        let (settings, paused_until_ms) = match stored {
            Some(stored) => (
                stored.settings.as_deref().and_then(|json| {
                    decode::<AlarmSettings>(json.as_bytes(), "alarm settings", &self.key)
                }),
                stored.paused_until_ms,
            ),
            None => (None, None),
        };
        match self.apply(settings, paused_until_ms) {
            Ok(announced) => announced,
            Err(e) => {
                tracing::warn!(actor = %crate::redact::pseudonym::actor_key(&self.key), error = %e, "stored alarm pause not applied");
                Vec::new()
            }
        }
    }

    /// Records changes a timer or a setting made, and announces them; a
    /// store that cannot take them is a crash (the restart re-derives).
    pub(super) async fn settle(&mut self, changes: Vec<AlarmChange>) {
        if changes.is_empty() {
            return;
        }
        let recorded = match self.record(&changes, &[]).await {
            Ok(recorded) => recorded,
            Err(e) => {
                tracing::warn!(actor = %crate::redact::pseudonym::actor_key(&self.key), error = %e, "alarm changes not written");
                panic!("alarm changes not writable; recovering");
            }
        };
        self.announce(&changes, recorded, 0);
        // These changes are in no journal: keep them in the snapshot.
        self.snapshot().await;
    }
}
