//! Vitals aggregates and alerts: what device streams derive from their
//! journaled samples. Writes are idempotent (upserts keyed by bucket and by
//! alert episode), so replaying a journal after a crash rewrites the same rows.

use sqlx::Row;

use super::writer::{Arg, Stmt, Then};
use super::{with_pool, Store, StoreError};
use crate::domain::alarm::{AlarmKind, Category, Priority, ResolveReason, Signal};
use crate::domain::vitals::{Aggregate, Series, Span};

/// A stored alert episode.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRecord {
    /// `<device>:<kind>[.<source>]:<since_ms>`: one row per episode, however
    /// often derived.
    pub id: String,
    pub device_id: String,
    pub kind: AlarmKind,
    /// The signal a heart-rate rule judged (ECG-derived or device-reported).
    pub source: Option<Signal>,
    pub priority: Priority,
    pub since_ms: u64,
    pub raised_ms: u64,
    pub resolved_ms: Option<u64>,
    /// The reading that raised it and the threshold it crossed.
    pub reading: Option<f64>,
    pub threshold: Option<f64>,
    /// False for a non-high alarm raised while the patient's alarms were paused.
    pub announced: bool,
    pub resolve_reason: Option<ResolveReason>,
    pub reannounced_ms: Option<u64>,
    pub escalated_ms: Option<u64>,
}

impl AlertRecord {
    /// Physiological or technical.
    pub fn category(&self) -> Category {
        self.kind.category()
    }
}

/// A clinician's acknowledgement of an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledgement {
    pub by: String,
    pub at_ms: u64,
    pub note: Option<String>,
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
// (For heart rate from ECG, neither the beats nor the signal time covered may shrink.)
const UPSERT_AGG_PG: &str = "INSERT INTO vitals_aggregates (device_id, series, span, start_ms, min, max, sum, count, covered_ms, sealed) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (device_id, series, span, start_ms) \
     DO UPDATE SET min = excluded.min, max = excluded.max, sum = excluded.sum, count = excluded.count, covered_ms = excluded.covered_ms, sealed = excluded.sealed \
     WHERE vitals_aggregates.count <= excluded.count AND COALESCE(vitals_aggregates.covered_ms, 0) <= COALESCE(excluded.covered_ms, 0)";
const UPSERT_AGG_SQLITE: &str = "INSERT INTO vitals_aggregates (device_id, series, span, start_ms, min, max, sum, count, covered_ms, sealed) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (device_id, series, span, start_ms) \
     DO UPDATE SET min = excluded.min, max = excluded.max, sum = excluded.sum, count = excluded.count, covered_ms = excluded.covered_ms, sealed = excluded.sealed \
     WHERE vitals_aggregates.count <= excluded.count AND COALESCE(vitals_aggregates.covered_ms, 0) <= COALESCE(excluded.covered_ms, 0)";
const AGG_PG: &str = "SELECT series, span, start_ms, min, max, sum, count, covered_ms, sealed FROM vitals_aggregates \
     WHERE device_id = $1 AND series = $2 AND span = $3 AND start_ms >= $4 AND start_ms < $5 ORDER BY start_ms";
const AGG_SQLITE: &str = "SELECT series, span, start_ms, min, max, sum, count, covered_ms, sealed FROM vitals_aggregates \
     WHERE device_id = ?1 AND series = ?2 AND span = ?3 AND start_ms >= ?4 AND start_ms < ?5 ORDER BY start_ms";
pub(super) const ALERT_COLUMNS: &str =
    "id, device_id, kind, source, priority, since_ms, raised_ms, resolved_ms, \
     reading, threshold, announced, resolve_reason, reannounced_ms, escalated_ms, sealed";
const RAISE_PG: &str = "INSERT INTO alerts (id, device_id, kind, source, category, priority, since_ms, raised_ms, reading, threshold, announced, sealed) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (id) DO NOTHING";
const RAISE_SQLITE: &str = "INSERT INTO alerts (id, device_id, kind, source, category, priority, since_ms, raised_ms, reading, threshold, announced, sealed) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) ON CONFLICT (id) DO NOTHING";
const RESOLVE_PG: &str =
    "UPDATE alerts SET resolved_ms = $2, resolve_reason = $3 WHERE id = $1 AND resolved_ms IS NULL";
const RESOLVE_SQLITE: &str =
    "UPDATE alerts SET resolved_ms = ?2, resolve_reason = ?3 WHERE id = ?1 AND resolved_ms IS NULL";
const REANNOUNCED_PG: &str =
    "UPDATE alerts SET reannounced_ms = $2 WHERE id = $1 AND reannounced_ms IS NULL";
const REANNOUNCED_SQLITE: &str =
    "UPDATE alerts SET reannounced_ms = ?2 WHERE id = ?1 AND reannounced_ms IS NULL";
const ANNOUNCED_PG: &str = "UPDATE alerts SET announced = 1 WHERE id = $1 AND announced = 0";
const ANNOUNCED_SQLITE: &str = "UPDATE alerts SET announced = 1 WHERE id = ?1 AND announced = 0";
const ESCALATED_PG: &str =
    "UPDATE alerts SET escalated_ms = $2 WHERE id = $1 AND escalated_ms IS NULL";
const ESCALATED_SQLITE: &str =
    "UPDATE alerts SET escalated_ms = ?2 WHERE id = ?1 AND escalated_ms IS NULL";

/// The alert columns of a row, as read on either database.
#[derive(Clone)]
pub(super) struct RawAlert {
    pub(super) id: String,
    pub(super) device_id: String,
    pub(super) kind: String,
    pub(super) source: Option<String>,
    pub(super) priority: String,
    pub(super) since_ms: i64,
    pub(super) raised_ms: i64,
    pub(super) resolved_ms: Option<i64>,
    pub(super) reading: Option<f64>,
    pub(super) threshold: Option<f64>,
    pub(super) announced: i64,
    pub(super) resolve_reason: Option<String>,
    pub(super) reannounced_ms: Option<i64>,
    pub(super) escalated_ms: Option<i64>,
    /// `[reading, threshold]` sealed (a keyed node's rows).
    pub(super) sealed: Option<Vec<u8>>,
}

/// Reads [`ALERT_COLUMNS`] off a row of either database.
macro_rules! raw_alert {
    ($r:expr) => {{
        let r = $r;
        Ok::<RawAlert, sqlx::Error>(RawAlert {
            id: r.try_get("id")?,
            device_id: r.try_get("device_id")?,
            kind: r.try_get("kind")?,
            source: r.try_get("source")?,
            priority: r.try_get("priority")?,
            since_ms: r.try_get("since_ms")?,
            raised_ms: r.try_get("raised_ms")?,
            resolved_ms: r.try_get("resolved_ms")?,
            reading: r.try_get("reading")?,
            threshold: r.try_get("threshold")?,
            announced: r.try_get("announced")?,
            resolve_reason: r.try_get("resolve_reason")?,
            reannounced_ms: r.try_get("reannounced_ms")?,
            escalated_ms: r.try_get("escalated_ms")?,
            sealed: r.try_get("sealed")?,
        })
    }};
}
pub(super) use raw_alert;

impl Store {
    /// An alert row as read, its sealed values opened, typed.
    pub(super) async fn alert_opened(&self, mut raw: RawAlert) -> Result<AlertRecord, StoreError> {
        if let Some(sealed) = raw.sealed.take() {
            let ad = super::sealed::ad("alerts", &raw.id, None);
            let json = self.open_blob(&ad, sealed).await?;
            let [reading, threshold]: [Option<f64>; 2] =
                serde_json::from_slice(&json).map_err(|_| {
                    StoreError::Sealing("a sealed alert reading is not 2 numbers".into())
                })?;
            (raw.reading, raw.threshold) = (reading, threshold);
        }
        alert_record(raw)
    }
}

/// An alert row as read, typed.
fn alert_record(raw: RawAlert) -> Result<AlertRecord, StoreError> {
    let ms = |v: Option<i64>| v.map(|v| v as u64);
    Ok(AlertRecord {
        id: raw.id,
        device_id: raw.device_id,
        kind: parse(&raw.kind)?,
        source: raw.source.as_deref().map(parse).transpose()?,
        priority: parse(&raw.priority)?,
        since_ms: raw.since_ms as u64,
        raised_ms: raw.raised_ms as u64,
        resolved_ms: ms(raw.resolved_ms),
        reading: raw.reading,
        threshold: raw.threshold,
        announced: raw.announced != 0,
        resolve_reason: raw.resolve_reason.as_deref().map(parse).transpose()?,
        reannounced_ms: ms(raw.reannounced_ms),
        escalated_ms: ms(raw.escalated_ms),
    })
}
type RawAggregate = (
    String,
    String,
    i64,
    f64,
    f64,
    f64,
    i64,
    Option<i64>,
    Option<Vec<u8>>,
);

impl Store {
    /// Stores (or replaces) aggregates of `device`, in the writer's next
    /// round.
    pub async fn save_aggregates(
        &self,
        device: &str,
        aggregates: &[Aggregate],
    ) -> Result<(), StoreError> {
        self.save_derived(device, &[], aggregates).await
    }

    /// The statements storing (or replacing) aggregates of `device`.
    pub(crate) fn aggregates_then(&self, device: &str, aggregates: &[Aggregate], then: &mut Then) {
        let sql = self.dialect(UPSERT_AGG_PG, UPSERT_AGG_SQLITE);
        for a in aggregates {
            let (series, span) = (name(&a.series), name(&a.span));
            // Keyed: the values sealed, the numeric columns 0.
            let (values, sealed) = if self.seals() {
                let ad = super::sealed::aggregate_ad(device, &series, &span, a.start_ms as i64);
                let json = serde_json::to_vec(&[a.min, a.max, a.sum]).unwrap_or_default();
                ((0.0, 0.0, 0.0), Some(self.seal_blob(&ad, &json)))
            } else {
                ((a.min, a.max, a.sum), None)
            };
            then.0.push(Stmt {
                sql: sql.to_owned(),
                args: vec![
                    Arg::Text(device.to_owned()),
                    Arg::Text(series),
                    Arg::Text(span),
                    Arg::Int(a.start_ms as i64),
                    Arg::Real(values.0),
                    Arg::Real(values.1),
                    Arg::Real(values.2),
                    Arg::Int(a.count as i64),
                    Arg::OptInt(a.covered_ms.map(|c| c as i64)),
                    Arg::OptBlob(sealed),
                ],
            });
        }
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
                r.try_get("covered_ms")?, r.try_get("sealed")?,
            ))).collect()))?;
        let mut opened = Vec::with_capacity(rows.len());
        for (series, span, start, min, max, sum, count, covered, sealed) in rows {
            let (min, max, sum) = match sealed {
                Some(sealed) => {
                    let ad = super::sealed::aggregate_ad(device, &series, &span, start);
                    let json = self.open_blob(&ad, sealed).await?;
                    let [min, max, sum]: [f64; 3] =
                        serde_json::from_slice(&json).map_err(|_| {
                            super::StoreError::Sealing("a sealed aggregate is not 3 numbers".into())
                        })?;
                    (min, max, sum)
                }
                None => (min, max, sum),
            };
            opened.push((series, span, start, min, max, sum, count, covered));
        }
        opened
            .into_iter()
            .map(|(series, span, start, min, max, sum, count, covered)| {
                Ok(Aggregate {
                    series: parse(&series)?,
                    span: parse(&span)?,
                    start_ms: start as u64,
                    min,
                    max,
                    sum,
                    count: count as u64,
                    covered_ms: covered.map(|c| c as u64),
                })
            })
            .collect()
    }

    /// Records a raised alert (once per episode); true if this recorded it
    /// (false: it was recorded before, e.g. before a crash).
    #[tracing::instrument(name = "alerts.raise", skip_all)]
    pub async fn raise_alert(&self, alert: &AlertRecord) -> Result<bool, StoreError> {
        let sql = self.dialect(RAISE_PG, RAISE_SQLITE);
        // Keyed: reading and threshold sealed, their columns NULL.
        let sealed = self.seals().then(|| {
            let json = serde_json::to_vec(&[alert.reading, alert.threshold]).unwrap_or_default();
            self.seal_blob(&super::sealed::ad("alerts", &alert.id, None), &json)
        });
        let fresh = with_pool!(self, pool => sqlx::query(sql)
            .bind(&alert.id)
            .bind(&alert.device_id)
            .bind(alert.kind.as_str())
            .bind(alert.source.map(|s| s.as_str()))
            .bind(alert.category().as_str())
            .bind(alert.priority.as_str())
            .bind(alert.since_ms as i64)
            .bind(alert.raised_ms as i64)
            .bind(if sealed.is_some() { None } else { alert.reading })
            .bind(if sealed.is_some() { None } else { alert.threshold })
            .bind(i64::from(alert.announced))
            .bind(&sealed)
            .execute(pool)
            .await
            .map(|r| r.rows_affected() == 1))?;
        Ok(fresh)
    }

    /// Marks an alert episode resolved (the first time only), and why; true
    /// if this resolved it.
    pub async fn resolve_alert(
        &self,
        id: &str,
        resolved_ms: u64,
        reason: ResolveReason,
    ) -> Result<bool, StoreError> {
        let sql = self.dialect(RESOLVE_PG, RESOLVE_SQLITE);
        let fresh = with_pool!(self, pool => sqlx::query(sql)
            .bind(id)
            .bind(resolved_ms as i64)
            .bind(reason.as_str())
            .execute(pool)
            .await
            .map(|r| r.rows_affected() == 1))?;
        Ok(fresh)
    }

    /// Records that an unacknowledged alert was announced again (`escalated`
    /// false) or escalated to the rest of the care team (the first time
    /// only); true if this recorded it.
    pub async fn mark_alert(
        &self,
        id: &str,
        escalated: bool,
        at_ms: u64,
    ) -> Result<bool, StoreError> {
        let sql = if escalated {
            self.dialect(ESCALATED_PG, ESCALATED_SQLITE)
        } else {
            self.dialect(REANNOUNCED_PG, REANNOUNCED_SQLITE)
        };
        let fresh = with_pool!(self, pool => sqlx::query(sql)
            .bind(id)
            .bind(at_ms as i64)
            .execute(pool)
            .await
            .map(|r| r.rows_affected() == 1))?;
        Ok(fresh)
    }

    /// Records that an alert a pause kept quiet has been announced; true if
    /// this recorded it.
    pub async fn mark_announced(&self, id: &str) -> Result<bool, StoreError> {
        let sql = self.dialect(ANNOUNCED_PG, ANNOUNCED_SQLITE);
        let fresh = with_pool!(self, pool => sqlx::query(sql)
            .bind(id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected() == 1))?;
        Ok(fresh)
    }

    /// `device`'s alerts, oldest first.
    pub async fn alerts(&self, device: &str) -> Result<Vec<AlertRecord>, StoreError> {
        let sql = match self.backend() {
            "postgres" => format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE device_id = $1 ORDER BY raised_ms, id COLLATE \"C\""
            ),
            _ => format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE device_id = ?1 ORDER BY raised_ms, id"
            ),
        };
        let rows: Vec<RawAlert> = with_pool!(self, pool => sqlx::query(&sql)
            .bind(device)
            .fetch_all(pool)
            .await
            .and_then(|rows| rows.iter().map(|r| raw_alert!(r)).collect()))?;
        let mut out = Vec::with_capacity(rows.len());
        for raw in rows {
            out.push(self.alert_opened(raw).await?);
        }
        Ok(out)
    }
}

/// Which alerts a page lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    Open,
    Resolved,
    Any,
}

impl Store {
    /// One page of the alerts of `devices`, newest raised first (then by
    /// id): in `state`, of `priority` if given, raised before `before`
    /// (exclusive), at most `limit`.
    pub async fn alerts_page(
        &self,
        devices: &[String],
        state: AlertState,
        priority: Option<crate::domain::alarm::Priority>,
        before: Option<(u64, &str)>,
        limit: u32,
    ) -> Result<Vec<AlertRecord>, StoreError> {
        if devices.is_empty() {
            return Ok(Vec::new());
        }
        let pg = self.backend() == "postgres";
        let mut n = 0;
        let mut p = || {
            n += 1;
            if pg {
                format!("${n}")
            } else {
                format!("?{n}")
            }
        };
        let collate = if pg { " COLLATE \"C\"" } else { "" };
        let ids: Vec<String> = devices.iter().map(|_| p()).collect();
        let mut sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE device_id IN ({})",
            ids.join(", ")
        );
        match state {
            AlertState::Open => sql.push_str(" AND resolved_ms IS NULL"),
            AlertState::Resolved => sql.push_str(" AND resolved_ms IS NOT NULL"),
            AlertState::Any => {}
        }
        if priority.is_some() {
            sql.push_str(&format!(" AND priority = {}", p()));
        }
        if before.is_some() {
            let (a, b, c) = (p(), p(), p());
            sql.push_str(&format!(
                " AND (raised_ms < {a} OR (raised_ms = {b} AND id{collate} < {c}))"
            ));
        }
        sql.push_str(&format!(
            " ORDER BY raised_ms DESC, id{collate} DESC LIMIT {}",
            p()
        ));
        let rows: Vec<RawAlert> = with_pool!(self, pool => {
            let mut q = sqlx::query(&sql);
            for d in devices {
                q = q.bind(d);
            }
            if let Some(pr) = priority {
                q = q.bind(pr.as_str());
            }
            if let Some((ms, id)) = before {
                q = q.bind(ms as i64).bind(ms as i64).bind(id);
            }
            q.bind(i64::from(limit))
                .fetch_all(pool)
                .await
                .and_then(|rows| rows.iter().map(|r| raw_alert!(r)).collect())
        })?;
        let mut out = Vec::with_capacity(rows.len());
        for raw in rows {
            out.push(self.alert_opened(raw).await?);
        }
        Ok(out)
    }
}

const ACK_PG: &str =
    "INSERT INTO alert_acks (alert_id, by_id, at_ms, note) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (alert_id) DO NOTHING";
const ACK_SQLITE: &str =
    "INSERT INTO alert_acks (alert_id, by_id, at_ms, note) VALUES (?1, ?2, ?3, ?4) \
     ON CONFLICT (alert_id) DO NOTHING";
const ACKED_PG: &str = "SELECT by_id, at_ms, note FROM alert_acks WHERE alert_id = $1";
const ACKED_SQLITE: &str = "SELECT by_id, at_ms, note FROM alert_acks WHERE alert_id = ?1";

impl Store {
    /// One alert episode.
    pub async fn alert(&self, id: &str) -> Result<Option<AlertRecord>, StoreError> {
        let sql = match self.backend() {
            "postgres" => format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1"),
            _ => format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"),
        };
        let row: Option<RawAlert> = with_pool!(self, pool => sqlx::query(&sql)
            .bind(id)
            .fetch_optional(pool)
            .await
            .and_then(|r| r.map(|r| raw_alert!(&r)).transpose()))?;
        match row {
            Some(raw) => Ok(Some(self.alert_opened(raw).await?)),
            None => Ok(None),
        }
    }

    /// Records `by`'s acknowledgement of alert `id`, with an optional note
    /// (the first acknowledgement stays). True if this one was recorded.
    pub async fn acknowledge_alert(
        &self,
        id: &str,
        by: &str,
        at_ms: u64,
        note: Option<&str>,
    ) -> Result<bool, StoreError> {
        let sql = self.dialect(ACK_PG, ACK_SQLITE);
        let note = note.map(|n| self.seal_text(&super::sealed::ad("alert_acks", id, None), n));
        let recorded = with_pool!(self, pool => sqlx::query(sql)
            .bind(id)
            .bind(by)
            .bind(at_ms as i64)
            .bind(note)
            .execute(pool)
            .await
            .map(|r| r.rows_affected() == 1))?;
        Ok(recorded)
    }

    /// Which of the alerts `ids` are acknowledged (one statement, whatever
    /// their number).
    pub async fn acknowledged_among(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let acked: Vec<String> = match &*self.db {
            super::Db::Postgres(pool) => {
                sqlx::query_scalar("SELECT alert_id FROM alert_acks WHERE alert_id = ANY($1)")
                    .bind(ids)
                    .fetch_all(pool)
                    .await?
            }
            super::Db::Sqlite(pool) => {
                let json = serde_json::to_string(ids).expect("strings serialise");
                sqlx::query_scalar(
                    "SELECT alert_id FROM alert_acks WHERE alert_id IN (SELECT value FROM json_each(?1))",
                )
                .bind(json)
                .fetch_all(pool)
                .await?
            }
        };
        Ok(acked.into_iter().collect())
    }

    /// Who acknowledged alert `id`, when, and their note.
    pub async fn alert_acknowledgement(
        &self,
        id: &str,
    ) -> Result<Option<Acknowledgement>, StoreError> {
        let sql = self.dialect(ACKED_PG, ACKED_SQLITE);
        let row = with_pool!(self, pool => sqlx::query(sql)
            .bind(id)
            .fetch_optional(pool)
            .await
            .and_then(|r| r.map(|r| Ok(Acknowledgement {
                by: r.try_get("by_id")?,
                at_ms: r.try_get::<i64, _>("at_ms")? as u64,
                note: r.try_get("note")?,
            })).transpose()))?;
        match row {
            Some(mut a) => {
                if let Some(note) = a.note.take() {
                    let ad = super::sealed::ad("alert_acks", id, None);
                    a.note = Some(self.open_text(&ad, note).await?);
                }
                Ok(Some(a))
            }
            None => Ok(None),
        }
    }
}
