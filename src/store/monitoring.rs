//! What monitoring keeps beside the journal: per-patient alarm settings (the
//! thresholds a clinician set, and a pause of non-high alarms), and an index
//! of stored ECG chunks with the beats found in each, from which beat lists
//! and raw strips around an alert are read.
//!
//! Settings are opaque JSON here (the alarm engine's own serialisation);
//! beats are JSON of `[at_ms, rr_ms or null, kind]` rows.

use sqlx::Row;

use super::writer::{Arg, Stmt, Then};
use super::{with_pool, Store, StoreError};

/// A patient's alarm settings as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAlarmSettings {
    /// JSON of the alarm engine's settings; `None`: the node's defaults.
    pub settings: Option<String>,
    /// Non-high alarms are not announced before this time (Unix ms).
    pub paused_until_ms: Option<u64>,
    pub updated_by: String,
    pub updated_ms: u64,
}

/// One stored ECG chunk: where it sits in time and in the device's journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcgChunkRow {
    pub start_ms: u64,
    pub end_ms: u64,
    pub hz: u32,
    /// The journal entry holding the chunk's samples.
    pub seq: u64,
    /// JSON of the beats found in it.
    pub beats: String,
}

const SETTINGS_PG: &str =
    "SELECT settings, paused_until_ms, updated_by, updated_ms FROM alarm_settings WHERE patient_id = $1";
const SETTINGS_SQLITE: &str =
    "SELECT settings, paused_until_ms, updated_by, updated_ms FROM alarm_settings WHERE patient_id = ?1";
const SAVE_SETTINGS_PG: &str = "INSERT INTO alarm_settings (patient_id, settings, paused_until_ms, updated_by, updated_ms) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (patient_id) DO UPDATE SET settings = excluded.settings, \
     paused_until_ms = excluded.paused_until_ms, updated_by = excluded.updated_by, updated_ms = excluded.updated_ms";
const SAVE_SETTINGS_SQLITE: &str = "INSERT INTO alarm_settings (patient_id, settings, paused_until_ms, updated_by, updated_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (patient_id) DO UPDATE SET settings = excluded.settings, \
     paused_until_ms = excluded.paused_until_ms, updated_by = excluded.updated_by, updated_ms = excluded.updated_ms";
const SAVE_CHUNK_PG: &str = "INSERT INTO ecg_chunks (device_id, start_ms, end_ms, hz, seq, beats) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (device_id, start_ms) DO NOTHING";
const SAVE_CHUNK_SQLITE: &str =
    "INSERT INTO ecg_chunks (device_id, start_ms, end_ms, hz, seq, beats) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (device_id, start_ms) DO NOTHING";
// Chunks that overlap [from, to): a chunk starts at most its longest length
// before `from` ($5), which keeps the scan on the primary key's range.
const CHUNKS_PG: &str = "SELECT start_ms, end_ms, hz, seq, beats FROM ecg_chunks \
     WHERE device_id = $1 AND end_ms > $2 AND start_ms < $3 AND start_ms >= $5 ORDER BY start_ms LIMIT $4";
const CHUNKS_SQLITE: &str = "SELECT start_ms, end_ms, hz, seq, beats FROM ecg_chunks \
     WHERE device_id = ?1 AND end_ms > ?2 AND start_ms < ?3 AND start_ms >= ?5 ORDER BY start_ms LIMIT ?4";

/// The longest an ECG chunk lasts: the validator's 30,000 samples at its
/// lowest rate, 250 Hz.
const LONGEST_CHUNK_MS: u64 = 30_000 * 1000 / 250;
// One bounded batch of what ended before the cutoff, found on `ecg_chunks_by_end`.
const PRUNE_CHUNKS_PG: &str = "DELETE FROM ecg_chunks WHERE (device_id, start_ms) IN \
     (SELECT device_id, start_ms FROM ecg_chunks WHERE end_ms < $1 LIMIT $2)";
const PRUNE_CHUNKS_SQLITE: &str = "DELETE FROM ecg_chunks WHERE (device_id, start_ms) IN \
     (SELECT device_id, start_ms FROM ecg_chunks WHERE end_ms < ?1 LIMIT ?2)";
const ENTRY_PG: &str = "SELECT payload FROM journal WHERE actor_id = $1 AND seq = $2";
const ENTRY_SQLITE: &str = "SELECT payload FROM journal WHERE actor_id = ?1 AND seq = ?2";

/// Reads stored alarm settings (`settings, paused_until_ms, updated_by,
/// updated_ms`) off a row of either database, as stored (sealed).
macro_rules! settings_row {
    ($row:expr) => {{
        let row = $row;
        Ok::<StoredAlarmSettings, sqlx::Error>(StoredAlarmSettings {
            settings: row.try_get("settings")?,
            paused_until_ms: row
                .try_get::<Option<i64>, _>("paused_until_ms")?
                .map(|v| v as u64),
            updated_by: row.try_get("updated_by")?,
            updated_ms: row.try_get::<i64, _>("updated_ms")? as u64,
        })
    }};
}
pub(super) use settings_row;

impl Store {
    /// `patient`'s alarm settings, if a clinician set any.
    pub async fn alarm_settings(
        &self,
        patient: &str,
    ) -> Result<Option<StoredAlarmSettings>, StoreError> {
        let sql = self.dialect(SETTINGS_PG, SETTINGS_SQLITE);
        let row = with_pool!(self, pool => sqlx::query(sql)
            .bind(patient)
            .fetch_optional(pool)
            .await
            .and_then(|r| r.map(|r| settings_row!(&r)).transpose()))?;
        match row {
            Some(saved) => Ok(Some(self.opened_settings(patient, saved).await?)),
            None => Ok(None),
        }
    }

    /// `patient`'s alarm settings as read, their sealed JSON opened.
    pub(crate) async fn opened_settings(
        &self,
        patient: &str,
        mut saved: StoredAlarmSettings,
    ) -> Result<StoredAlarmSettings, StoreError> {
        if let Some(settings) = saved.settings.take() {
            let ad = super::sealed::ad("alarm_settings", patient, None);
            saved.settings = Some(self.open_text(&ad, settings).await?);
        }
        Ok(saved)
    }

    /// Replaces `patient`'s alarm settings.
    pub async fn save_alarm_settings(
        &self,
        patient: &str,
        saved: &StoredAlarmSettings,
    ) -> Result<(), StoreError> {
        let sql = self.dialect(SAVE_SETTINGS_PG, SAVE_SETTINGS_SQLITE);
        let ad = super::sealed::ad("alarm_settings", patient, None);
        let settings = saved.settings.as_deref().map(|s| self.seal_text(&ad, s));
        with_pool!(self, pool => sqlx::query(sql)
            .bind(patient)
            .bind(settings)
            .bind(saved.paused_until_ms.map(|v| v as i64))
            .bind(&saved.updated_by)
            .bind(saved.updated_ms as i64)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Indexes a stored ECG chunk of `device` (idempotent: a replay writes
    /// the same row), in the writer's next round.
    pub async fn save_ecg_chunk(
        &self,
        device: &str,
        chunk: &EcgChunkRow,
    ) -> Result<(), StoreError> {
        self.save_derived(device, std::slice::from_ref(chunk), &[])
            .await
    }

    /// The statement indexing a stored ECG chunk of `device`.
    fn ecg_chunk_then(&self, device: &str, chunk: &EcgChunkRow, then: &mut Then) {
        let sql = self.dialect(SAVE_CHUNK_PG, SAVE_CHUNK_SQLITE);
        let beats = self.seal_text(
            &super::sealed::ad("ecg_chunks", device, Some(chunk.start_ms as i64)),
            &chunk.beats,
        );
        then.0.push(Stmt {
            sql: sql.to_owned(),
            args: vec![
                Arg::Text(device.to_owned()),
                Arg::Int(chunk.start_ms as i64),
                Arg::Int(chunk.end_ms as i64),
                Arg::Int(i64::from(chunk.hz)),
                Arg::Int(chunk.seq as i64),
                Arg::Text(beats),
            ],
        });
    }

    /// Stores what a device's journal entry implies beside it: its ECG
    /// chunks and the aggregates it closed, together in the writer's next
    /// round (idempotent, so a replay writes the same rows).
    pub async fn save_derived(
        &self,
        device: &str,
        chunks: &[EcgChunkRow],
        aggregates: &[crate::domain::vitals::Aggregate],
    ) -> Result<(), StoreError> {
        let mut then = Then::nothing();
        for chunk in chunks {
            self.ecg_chunk_then(device, chunk, &mut then);
        }
        self.aggregates_then(device, aggregates, &mut then);
        self.run_then(then).await
    }

    /// `device`'s ECG chunks overlapping `[from_ms, to_ms)`, oldest first, at
    /// most `limit`.
    pub async fn ecg_chunks(
        &self,
        device: &str,
        from_ms: u64,
        to_ms: u64,
        limit: u32,
    ) -> Result<Vec<EcgChunkRow>, StoreError> {
        let sql = self.dialect(CHUNKS_PG, CHUNKS_SQLITE);
        let rows = with_pool!(self, pool => sqlx::query(sql)
            .bind(device)
            .bind(from_ms.min(i64::MAX as u64) as i64)
            .bind(to_ms.min(i64::MAX as u64) as i64)
            .bind(i64::from(limit))
            .bind(from_ms.saturating_sub(LONGEST_CHUNK_MS).min(i64::MAX as u64) as i64)
            .fetch_all(pool)
            .await
            .and_then(|rows| rows.iter().map(|r| Ok(EcgChunkRow {
                start_ms: r.try_get::<i64, _>("start_ms")? as u64,
                end_ms: r.try_get::<i64, _>("end_ms")? as u64,
                hz: r.try_get::<i64, _>("hz")? as u32,
                seq: r.try_get::<i64, _>("seq")? as u64,
                beats: r.try_get("beats")?,
            })).collect::<Result<Vec<_>, sqlx::Error>>()))?;
        let mut opened = Vec::with_capacity(rows.len());
        for mut chunk in rows {
            let ad = super::sealed::ad("ecg_chunks", device, Some(chunk.start_ms as i64));
            chunk.beats = self.open_text(&ad, chunk.beats).await?;
            opened.push(chunk);
        }
        Ok(opened)
    }

    /// The payload of `actor`'s journal entry `seq`; `None` once pruned.
    pub async fn journal_entry(
        &self,
        actor: &str,
        seq: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let sql = self.dialect(ENTRY_PG, ENTRY_SQLITE);
        let row = with_pool!(self, pool => sqlx::query(sql)
            .bind(actor)
            .bind(seq as i64)
            .fetch_optional(pool)
            .await
            .and_then(|r| r.map(|r| r.try_get::<Vec<u8>, _>("payload")).transpose()))?;
        match row {
            Some(payload) => {
                let ad = super::sealed::ad("journal", actor, Some(seq as i64));
                Ok(Some(self.open_blob(&ad, payload).await?))
            }
            None => Ok(None),
        }
    }

    /// Deletes the index rows of ECG chunks that ended before `before_ms`
    /// (raw sample retention: their samples go too, and with them the beats
    /// and strips read from them); returns how many. In batches of [`super::journal::PRUNE_BATCH`] rows (one statement
    /// each, yielding between them), found by end time on an index.
    pub async fn prune_ecg_chunks(&self, before_ms: u64) -> Result<u64, StoreError> {
        let sql = self.dialect(PRUNE_CHUNKS_PG, PRUNE_CHUNKS_SQLITE);
        let batch = super::journal::PRUNE_BATCH;
        let mut deleted = 0;
        loop {
            let n = with_pool!(self, pool => sqlx::query(sql)
                .bind(before_ms.min(i64::MAX as u64) as i64)
                .bind(batch)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()))?;
            deleted += n;
            if n < batch as u64 {
                return Ok(deleted);
            }
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_valid_ecg_chunk_is_longer_than_the_index_looks_back() {
        let l = crate::actors::device::sample::Limits::default();
        let longest = l.ecg_max_samples as u64 * 1000 / u64::from(l.ecg_hz.0);
        assert!(longest <= super::LONGEST_CHUNK_MS, "{longest} ms");
    }
}
