//! Pushes: a batch judged sample by sample on a copy of the validator,
//! journaled (with the access's audit entry) before anything is answered,
//! then folded in ([`super::absorb`]), recorded and published. Several
//! pushes of one device that queued together ([`PushMany`]) are judged one
//! after another as if each came alone and journaled as one entry.

use super::*;

impl Handler<Push> for DeviceStream {
    async fn handle(&mut self, push: Push, ctx: &mut Ctx<Self>) -> Result<PushResult, PushError> {
        let mut answers = self.pushes(vec![push], ctx).await;
        answers.pop().expect("one answer a push")
    }
}

impl Handler<PushMany> for DeviceStream {
    async fn handle(
        &mut self,
        many: PushMany,
        ctx: &mut Ctx<Self>,
    ) -> Vec<Result<PushResult, PushError>> {
        self.pushes(many.pushes, ctx).await
    }
}

/// A push with samples accepted, in a batch being stored.
struct Accepted {
    /// Its place in the batch.
    at: usize,
    request_id: String,
    /// How many of the batch's accepted samples are its own (they follow
    /// those of the pushes before it).
    samples: usize,
    rejected: Vec<(usize, Rejection)>,
}

impl DeviceStream {
    /// Handles `pushes` (one, or several that queued together) and answers
    /// each, each only once its access is audited (a rejection too).
    async fn pushes(
        &mut self,
        mut pushes: Vec<Push>,
        ctx: &mut Ctx<Self>,
    ) -> Vec<Result<PushResult, PushError>> {
        let mut audits: Vec<PendingAudit> = pushes
            .iter_mut()
            .map(|p| PendingAudit::new(p.audit.take()))
            .collect();
        let answers = self.push_batch(pushes, &mut audits, ctx).await;
        let mut out = Vec::with_capacity(answers.len());
        for (audit, answer) in audits.into_iter().zip(answers) {
            let unavailable = PushError::Unavailable;
            out.push(
                crate::actors::audited(&self.store, &self.key, audit, answer, unavailable).await,
            );
        }
        out
    }

    /// Judges each push in order, as if each came alone, and journals the
    /// samples they have accepted as one entry (the first push's request id
    /// its id, the others its aliases), with every push's audit entry.
    async fn push_batch(
        &mut self,
        pushes: Vec<Push>,
        audits: &mut [PendingAudit],
        ctx: &mut Ctx<Self>,
    ) -> Vec<Result<PushResult, PushError>> {
        let mut answers: Vec<Option<Result<PushResult, PushError>>> = vec![None; pushes.len()];
        let duplicate = || {
            Ok(PushResult {
                duplicate: true,
                ..PushResult::default()
            })
        };
        // Judged on a copy: the history moves on only if the batch is stored.
        let mut validator = self.validator.clone();
        let now = unix_ms();
        let mut all: Vec<Sample> = Vec::new();
        let mut accepted: Vec<Accepted> = Vec::new();
        // Retries of a push earlier in this batch: answered as it is.
        let mut again: Vec<usize> = Vec::new();
        for (at, push) in pushes.into_iter().enumerate() {
            if self.recent_requests.contains(&push.request_id) {
                answers[at] = Some(duplicate());
                continue;
            }
            if accepted.iter().any(|a| a.request_id == push.request_id) {
                again.push(at);
                continue;
            }
            let verdict = validator.judge(push.samples, now);
            if verdict.accepted.is_empty() {
                answers[at] = Some(
                    self.nothing_accepted(&push.request_id, verdict.rejected)
                        .await,
                );
                continue;
            }
            accepted.push(Accepted {
                at,
                request_id: push.request_id,
                samples: verdict.accepted.len(),
                rejected: verdict.rejected,
            });
            all.extend(verdict.accepted);
        }
        if accepted.is_empty() {
            return answers.into_iter().map(|a| a.expect("answered")).collect();
        }
        let payload = serde_json::to_vec(&all).expect("samples serialise");
        let ids: Vec<&str> = accepted.iter().map(|a| a.request_id.as_str()).collect();
        let appended = self
            .store
            .append_coalesced(&self.key, self.last_seq, &ids, &payload, audits)
            .await;
        let unavailable = |mut answers: Vec<Option<_>>| {
            answers
                .iter_mut()
                .for_each(|a: &mut Option<_>| *a = a.take().or(Some(Err(PushError::Unavailable))));
            answers.into_iter().map(|a| a.expect("answered")).collect()
        };
        match crate::actors::journaled(appended, "device", &self.key) {
            Journaled::Written { seq } => self.last_seq = seq,
            // A retry older than the window of recent requests: the journal
            // has it at a sequence this state applied. The pushes after it
            // in the batch were not stored: they are asked again.
            Journaled::Duplicate { seq } if seq <= self.last_seq => {
                let first = accepted.remove(0);
                answers[first.at] = Some(duplicate());
                self.remember(first.request_id);
                return unavailable(answers);
            }
            // The journal holds a batch (or a writer) this state has not seen:
            // crash, so that the restart replays the journal (the caller gets
            // `Crashed` and may retry; nothing is applied twice).
            Journaled::Duplicate { .. } => {
                panic!("device journal holds a batch this state lacks; recovering")
            }
            Journaled::Unavailable => return unavailable(answers),
        }
        let accepted_ms = unix_ms();
        self.validator = validator;
        // Each push's share, in order: what its samples changed is its own.
        let mut changes = Vec::new();
        let mut chunks = Vec::new();
        let mut from = 0;
        for a in &accepted {
            let rejected: Vec<&'static str> = a.rejected.iter().map(|(_, r)| r.code()).collect();
            crate::metrics::samples(a.samples, &rejected);
            self.remember(a.request_id.clone());
            let (mine, c) = self.absorb(&all[from..from + a.samples], self.last_seq);
            from += a.samples;
            chunks.extend(c);
            answers[a.at] = Some(Ok(PushResult {
                accepted: a.samples as u32,
                rejected: a.rejected.clone(),
                alerts: mine.clone(),
                duplicate: false,
            }));
            changes.extend(mine);
        }
        for at in again {
            answers[at] = Some(duplicate());
        }
        if let Some(newest) = all.iter().map(Sample::at_ms).max() {
            // The device's clock only goes forward (a late sample is not news).
            if self.received.is_none_or(|(ms, _)| newest >= ms) {
                self.received = Some((newest, tokio::time::Instant::now()));
            }
        }
        let recorded = match self.record(&changes, &chunks).await {
            Ok(recorded) => recorded,
            Err(e) => {
                // The samples are durable; crash, so that the restart
                // re-derives the alerts and aggregates from the journal.
                tracing::warn!(actor = %crate::redact::pseudonym::actor_key(&self.key), error = %e, "derived vitals not written");
                panic!("derived vitals not writable; recovering from the journal");
            }
        };
        self.publish(&all, !chunks.is_empty());
        self.announce(&changes, recorded, accepted_ms);
        self.unsnapped.0 += 1;
        self.unsnapped.1 += all.len() as u64;
        let (batches, samples) = self.unsnapped;
        if batches >= SNAPSHOT_EVERY || samples >= self.settings.snapshot_samples {
            // Only after the derived rows are written: a replay from this
            // snapshot must not need to re-derive what came before it.
            self.snapshot_beside();
        }
        self.arm(ctx);
        answers.into_iter().map(|a| a.expect("answered")).collect()
    }

    /// The answer to a push none of whose samples was accepted.
    async fn nothing_accepted(
        &mut self,
        request_id: &str,
        rejected: Vec<(usize, Rejection)>,
    ) -> Result<PushResult, PushError> {
        let codes: Vec<&'static str> = rejected.iter().map(|(_, r)| r.code()).collect();
        // Every sample already seen (duplicates, or behind what was stored):
        // maybe a retry of a batch stored before, older than the window of
        // recent requests; the journal knows its request id.
        let seen_before = rejected
            .iter()
            .all(|(_, r)| matches!(r, Rejection::Duplicate | Rejection::OutOfOrder { .. }));
        if seen_before && !rejected.is_empty() {
            match self.store.message_seq(&self.key, request_id).await {
                Ok(Some(seq)) if seq <= self.last_seq => {
                    return Ok(PushResult {
                        duplicate: true,
                        ..PushResult::default()
                    });
                }
                Ok(_) => {}
                Err(_) => return Err(PushError::Unavailable),
            }
        }
        // Counted once the verdict is final (a failed write is retried and
        // judged again).
        crate::metrics::samples(0, &codes);
        Ok(PushResult {
            rejected,
            ..PushResult::default()
        })
    }

    /// Publishes what a stored batch brought: its readings on
    /// `vitals.<device>`, and its raw ECG on `ecg.<device>` if it held any.
    fn publish(&self, stored: &[Sample], had_ecg: bool) {
        let word = crate::bus::events::topic_word(&self.id);
        self.events.publish(
            &format!("vitals.{word}"),
            &VitalsEvent {
                device: self.id.clone(),
                accepted: stored.len() as u32,
                samples: stored
                    .iter()
                    .filter(|s| !matches!(s, Sample::Ecg { .. }))
                    .cloned()
                    .collect(),
                ecg: if had_ecg {
                    self.lead.as_ref().and_then(|l| l.latest)
                } else {
                    None
                },
            },
        );
        if had_ecg {
            let segments = stored
                .iter()
                .filter_map(|s| match s {
                    Sample::Ecg {
                        at_ms,
                        hz,
                        millivolts,
                    } => Some(EcgSegment {
                        start_ms: *at_ms,
                        hz: *hz,
                        millivolts: millivolts.clone(),
                    }),
                    _ => None,
                })
                .collect();
            self.events.publish(
                &format!("ecg.{word}"),
                &EcgEvent {
                    device: self.id.clone(),
                    segments,
                },
            );
        }
    }
}
