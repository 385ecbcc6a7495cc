//! Vitals aggregates and alerts: what device streams derive from their
//! journaled samples. Writes are idempotent (upserts keyed by bucket and by
//! alert episode), so replaying a journal after a crash rewrites the same rows.

use sqlx::Row;

use super::{with_pool, Store, StoreError};
use crate::actors::device::aggregate::{Aggregate, Series, Span};
use crate::actors::device::alerts::{AlertKind, Priority};

/// A stored alert episode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRecord {
    /// `<device>:<kind>:<since_ms>`: one row per episode, however often derived.
    pub id: String,
    pub device_id: String,
    pub kind: AlertKind,
    pub priority: Priority,
    pub since_ms: u64,
    pub raised_ms: u64,
    pub resolved_ms: Option<u64>,
}

fn name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn parse<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
        StoreError::Database(sqlx::Error::Decode(format!("unknown value {s:?}").into()))
    })
}

// A bucket only grows as samples arrive: a smaller one (a stalled former
// owner's, derived from fewer samples) never replaces a larger one.
const UPSERT_AGG_PG: &str = "INSERT INTO vitals_aggregates (device_id, series, span, start_ms, min, max, sum, count) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (device_id, series, span, start_ms) \
     DO UPDATE SET min = excluded.min, max = excluded.max, sum = excluded.sum, count = excluded.count \
     WHERE vitals_aggregates.count <= excluded.count";
const UPSERT_AGG_SQLITE: &str = "INSERT INTO vitals_aggregates (device_id, series, span, start_ms, min, max, sum, count) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (device_id, series, span, start_ms) \
     DO UPDATE SET min = excluded.min, max = excluded.max, sum = excluded.sum, count = excluded.count \
     WHERE vitals_aggregates.count <= excluded.count";
const AGG_PG: &str = "SELECT series, span, start_ms, min, max, sum, count FROM vitals_aggregates \
     WHERE device_id = $1 AND series = $2 AND span = $3 AND start_ms >= $4 AND start_ms < $5 ORDER BY start_ms";
const AGG_SQLITE: &str = "SELECT series, span, start_ms, min, max, sum, count FROM vitals_aggregates \
     WHERE device_id = ?1 AND series = ?2 AND span = ?3 AND start_ms >= ?4 AND start_ms < ?5 ORDER BY start_ms";
const RAISE_PG: &str = "INSERT INTO alerts (id, device_id, kind, priority, since_ms, raised_ms) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING";
const RAISE_SQLITE: &str =
    "INSERT INTO alerts (id, device_id, kind, priority, since_ms, raised_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO NOTHING";
const RESOLVE_PG: &str = "UPDATE alerts SET resolved_ms = $2 WHERE id = $1 AND resolved_ms IS NULL";
const RESOLVE_SQLITE: &str =
    "UPDATE alerts SET resolved_ms = ?2 WHERE id = ?1 AND resolved_ms IS NULL";
const ALERTS_PG: &str =
    "SELECT id, device_id, kind, priority, since_ms, raised_ms, resolved_ms FROM alerts \
     WHERE device_id = $1 ORDER BY raised_ms, id COLLATE \"C\"";
const ALERTS_SQLITE: &str =
    "SELECT id, device_id, kind, priority, since_ms, raised_ms, resolved_ms FROM alerts \
     WHERE device_id = ?1 ORDER BY raised_ms, id";

type RawAlert = (String, String, String, String, i64, i64, Option<i64>);

/// An alert row as read, typed.
fn alert_record(raw: RawAlert) -> Result<AlertRecord, StoreError> {
    let (id, device_id, kind, priority, since, raised, resolved) = raw;
    Ok(AlertRecord {
        id,
        device_id,
        kind: parse(&kind)?,
        priority: parse(&priority)?,
        since_ms: since as u64,
        raised_ms: raised as u64,
        resolved_ms: resolved.map(|r| r as u64),
    })
}
type RawAggregate = (String, String, i64, f64, f64, f64, i64);

impl Store {
    /// Stores (or replaces) aggregates of `device`.
    pub async fn save_aggregates(
        &self,
        device: &str,
        aggregates: &[Aggregate],
    ) -> Result<(), StoreError> {
        if aggregates.is_empty() {
            return Ok(());
        }
        let sql = self.dialect(UPSERT_AGG_PG, UPSERT_AGG_SQLITE);
        with_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
            for a in aggregates {
                sqlx::query(sql)
                    .bind(device)
                    .bind(name(&a.series))
                    .bind(name(&a.span))
                    .bind(a.start_ms as i64)
                    .bind(a.min)
                    .bind(a.max)
                    .bind(a.sum)
                    .bind(a.count as i64)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        }.await)?;
        Ok(())
    }

    /// `device`'s aggregates of one series and span with `from_ms <= start < to_ms`.
    pub async fn aggregates(
        &self,
        device: &str,
        series: Series,
        span: Span,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<Aggregate>, StoreError> {
        let sql = self.dialect(AGG_PG, AGG_SQLITE);
        let rows: Vec<RawAggregate> = with_pool!(self, pool => sqlx::query(sql)
            .bind(device)
            .bind(name(&series))
            .bind(name(&span))
            .bind(from_ms.min(i64::MAX as u64) as i64)
            .bind(to_ms.min(i64::MAX as u64) as i64)
            .fetch_all(pool)
            .await
            .and_then(|rows| rows.iter().map(|r| Ok((
                r.try_get("series")?, r.try_get("span")?, r.try_get("start_ms")?,
                r.try_get("min")?, r.try_get("max")?, r.try_get("sum")?, r.try_get("count")?,
            ))).collect()))?;
        rows.into_iter()
            .map(|(series, span, start, min, max, sum, count)| {
                Ok(Aggregate {
                    series: parse(&series)?,
                    span: parse(&span)?,
                    start_ms: start as u64,
                    min,
                    max,
                    sum,
                    count: count as u64,
                })
            })
            .collect()
    }

    /// Records a raised alert (once per episode).
    #[tracing::instrument(name = "alerts.raise", skip_all)]
    pub async fn raise_alert(&self, alert: &AlertRecord) -> Result<(), StoreError> {
        let sql = self.dialect(RAISE_PG, RAISE_SQLITE);
        with_pool!(self, pool => sqlx::query(sql)
            .bind(&alert.id)
            .bind(&alert.device_id)
            .bind(name(&alert.kind))
            .bind(name(&alert.priority))
            .bind(alert.since_ms as i64)
            .bind(alert.raised_ms as i64)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Marks an alert episode resolved (the first time only).
    pub async fn resolve_alert(&self, id: &str, resolved_ms: u64) -> Result<(), StoreError> {
        let sql = self.dialect(RESOLVE_PG, RESOLVE_SQLITE);
        with_pool!(self, pool => sqlx::query(sql)
            .bind(id)
            .bind(resolved_ms as i64)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// `device`'s alerts, oldest first.
    pub async fn alerts(&self, device: &str) -> Result<Vec<AlertRecord>, StoreError> {
        let sql = self.dialect(ALERTS_PG, ALERTS_SQLITE);
        let rows: Vec<RawAlert> = with_pool!(self, pool => sqlx::query(sql)
            .bind(device)
            .fetch_all(pool)
            .await
            .and_then(|rows| rows.iter().map(|r| Ok((
                r.try_get("id")?, r.try_get("device_id")?, r.try_get("kind")?, r.try_get("priority")?,
                r.try_get("since_ms")?, r.try_get("raised_ms")?, r.try_get("resolved_ms")?,
            ))).collect()))?;
        rows.into_iter().map(alert_record).collect()
    }
}

const ALERT_PG: &str = "SELECT id, device_id, kind, priority, since_ms, raised_ms, resolved_ms \
     FROM alerts WHERE id = $1";
const ALERT_SQLITE: &str =
    "SELECT id, device_id, kind, priority, since_ms, raised_ms, resolved_ms \
     FROM alerts WHERE id = ?1";
const ACK_PG: &str =
    "INSERT INTO alert_acks (alert_id, by_id, at_ms) VALUES ($1, $2, $3) ON CONFLICT (alert_id) DO NOTHING";
const ACK_SQLITE: &str =
    "INSERT INTO alert_acks (alert_id, by_id, at_ms) VALUES (?1, ?2, ?3) ON CONFLICT (alert_id) DO NOTHING";
const ACKED_PG: &str = "SELECT by_id, at_ms FROM alert_acks WHERE alert_id = $1";
const ACKED_SQLITE: &str = "SELECT by_id, at_ms FROM alert_acks WHERE alert_id = ?1";

impl Store {
    /// One alert episode.
    pub async fn alert(&self, id: &str) -> Result<Option<AlertRecord>, StoreError> {
        let sql = self.dialect(ALERT_PG, ALERT_SQLITE);
        let row: Option<RawAlert> = with_pool!(self, pool => sqlx::query(sql)
            .bind(id)
            .fetch_optional(pool)
            .await
            .and_then(|r| r.map(|r| Ok((
                r.try_get("id")?, r.try_get("device_id")?, r.try_get("kind")?, r.try_get("priority")?,
                r.try_get("since_ms")?, r.try_get("raised_ms")?, r.try_get("resolved_ms")?,
            ))).transpose()))?;
        row.map(alert_record).transpose()
    }

    /// Records `by`'s acknowledgement of alert `id` (the first one stays).
    pub async fn acknowledge_alert(
        &self,
        id: &str,
        by: &str,
        at_ms: u64,
    ) -> Result<(), StoreError> {
        let sql = self.dialect(ACK_PG, ACK_SQLITE);
        with_pool!(self, pool => sqlx::query(sql)
            .bind(id)
            .bind(by)
            .bind(at_ms as i64)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Who acknowledged alert `id`, and when.
    pub async fn alert_acknowledgement(
        &self,
        id: &str,
    ) -> Result<Option<(String, u64)>, StoreError> {
        let sql = self.dialect(ACKED_PG, ACKED_SQLITE);
        let row = with_pool!(self, pool => sqlx::query(sql)
            .bind(id)
            .fetch_optional(pool)
            .await
            .and_then(|r| r.map(|r| Ok((r.try_get::<String, _>("by_id")?, r.try_get::<i64, _>("at_ms")? as u64))).transpose()))?;
        Ok(row)
    }
}
