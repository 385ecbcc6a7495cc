//! PHI sealed at rest: the data keys (wrapped, in `data_keys`), sealing and
//! opening column values, key rotation and sealing legacy plaintext rows.
//! The mechanism is [`crate::crypto`]; this is where it meets the tables.
//!
//! Sealed columns ([`SEALED`]): journal and snapshot payloads (every event:
//! chat text, consult reasons, end notes, raw ECG and vitals samples), chat
//! text, consults' reasons and end notes, alert acknowledgement notes, the beats found in ECG chunks and
//! per-patient alarm settings; and the vitals values of aggregates (min, max,
//! sum) and alerts (reading, threshold), sealed together into their row's
//! `sealed` column. Ids, roles, statuses and times stay clear (the
//! indexes and retention need them).

use std::sync::Arc;

use sqlx::Row;

use super::{with_pool, Store, StoreError};
use crate::crypto::{self, KeyProvider, Keyring, OpenError};

/// A sealed column: its table, key columns (text, then an optional integer)
/// and whether it is TEXT (sealed as base64 text) or a BLOB.
pub struct SealedColumn {
    pub table: &'static str,
    pub column: &'static str,
    pub text_key: &'static str,
    pub int_key: Option<&'static str>,
    pub text: bool,
}

/// Every column that holds PHI in a table of this crate's migrations.
pub const SEALED: &[SealedColumn] = &[
    SealedColumn {
        table: "journal",
        column: "payload",
        text_key: "actor_id",
        int_key: Some("seq"),
        text: false,
    },
    SealedColumn {
        table: "snapshots",
        column: "payload",
        text_key: "actor_id",
        int_key: None,
        text: false,
    },
    SealedColumn {
        table: "chat_messages",
        column: "text",
        text_key: "consult_id",
        int_key: Some("seq"),
        text: true,
    },
    SealedColumn {
        table: "alert_acks",
        column: "note",
        text_key: "alert_id",
        int_key: None,
        text: true,
    },
    SealedColumn {
        table: "ecg_chunks",
        column: "beats",
        text_key: "device_id",
        int_key: Some("start_ms"),
        text: true,
    },
    SealedColumn {
        table: "break_glass",
        column: "reason",
        text_key: "id",
        int_key: None,
        text: true,
    },
    SealedColumn {
        table: "consults",
        column: "reason",
        text_key: "id",
        int_key: None,
        text: true,
    },
    SealedColumn {
        table: "consults",
        column: "notes",
        text_key: "id",
        int_key: None,
        text: true,
    },
    SealedColumn {
        table: "alarm_settings",
        column: "settings",
        text_key: "patient_id",
        int_key: None,
        text: true,
    },
];

/// The associated data of a value of `table` in the row with these keys.
pub fn ad(table: &str, text_key: &str, int_key: Option<i64>) -> Vec<u8> {
    match int_key {
        Some(i) => crypto::row_ad(table, &[text_key.as_bytes(), &i.to_be_bytes()]),
        None => crypto::row_ad(table, &[text_key.as_bytes()]),
    }
}

/// The associated data of an aggregate's sealed values (min, max, sum).
pub(super) fn aggregate_ad(device: &str, series: &str, span: &str, start_ms: i64) -> Vec<u8> {
    ad(
        "vitals_aggregates",
        &format!("{device}\u{0}{series}\u{0}{span}"),
        Some(start_ms),
    )
}

fn sealing(e: impl std::fmt::Display) -> StoreError {
    StoreError::Sealing(e.to_string())
}

impl Store {
    /// This store sealing PHI under a fresh data key (one per node start),
    /// wrapped by `provider`'s current KEK and stored in `data_keys`; the
    /// audit chain keyed by the provider's audit key.
    pub async fn with_keys(
        &self,
        provider: Arc<dyn KeyProvider>,
        node: &str,
    ) -> Result<Store, StoreError> {
        let audit = provider.audit_key().await.map_err(sealing)?;
        let kek = provider.current_kek().await.map_err(sealing)?;
        let (id, key) = crypto::fresh_data_key();
        let wrapped = provider
            .wrap(&kek, &key, &crypto::dek_ad(id))
            .await
            .map_err(sealing)?;
        let sql = self.dialect(
            "INSERT INTO data_keys (id, kek_id, wrapped, node, created_ms) VALUES ($1, $2, $3, $4, $5)",
            "INSERT INTO data_keys (id, kek_id, wrapped, node, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        );
        with_pool!(self, pool => sqlx::query(sql)
            .bind(id.to_string())
            .bind(&kek)
            .bind(&wrapped)
            .bind(node)
            .bind(crate::clock::unix_ms() as i64)
            .execute(pool)
            .await
            .map(|_| ()))?;
        let keyring = Keyring::new(provider, audit.clone(), id, &key).map_err(sealing)?;
        let mut store = self.clone();
        store.keyring = Some(Arc::new(keyring));
        store.audit_key = audit;
        Ok(store)
    }

    /// Whether PHI written through this store is sealed.
    pub fn seals(&self) -> bool {
        self.keyring.is_some()
    }

    /// `plain` as stored in a BLOB column of the row `ad` names.
    pub(crate) fn seal_blob(&self, ad: &[u8], plain: &[u8]) -> Vec<u8> {
        match &self.keyring {
            Some(k) => k.seal(ad, plain),
            None => plain.to_vec(),
        }
    }

    /// `plain` as stored in a TEXT column of the row `ad` names.
    pub(crate) fn seal_text(&self, ad: &[u8], plain: &str) -> String {
        match &self.keyring {
            Some(k) => k.seal_text(ad, plain),
            None => plain.to_owned(),
        }
    }

    /// Loads data key `id` from `data_keys` (sealed by another node or an
    /// earlier start of this one).
    async fn load_data_key(&self, keyring: &Keyring, id: uuid::Uuid) -> Result<(), StoreError> {
        let sql = self.dialect(
            "SELECT kek_id, wrapped FROM data_keys WHERE id = $1",
            "SELECT kek_id, wrapped FROM data_keys WHERE id = ?1",
        );
        let row: Option<(String, Vec<u8>)> = with_pool!(self, pool => sqlx::query(sql)
            .bind(id.to_string())
            .fetch_optional(pool)
            .await
            .and_then(|r| r.map(|r| Ok((r.try_get("kek_id")?, r.try_get("wrapped")?))).transpose()))?;
        let (kek, wrapped) =
            row.ok_or_else(|| sealing(format!("data key {id} is not in data_keys")))?;
        let key = keyring
            .provider()
            .unwrap(&kek, &wrapped, &crypto::dek_ad(id))
            .await
            .map_err(sealing)?;
        keyring.install(id, &key, false).map_err(sealing)
    }

    /// A BLOB column's value opened (legacy plaintext as it is).
    pub(crate) async fn open_blob(
        &self,
        ad: &[u8],
        stored: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        if !crypto::is_sealed(&stored) {
            return Ok(stored);
        }
        self.opened(|k| k.open(ad, &stored)).await
    }

    /// A TEXT column's value opened (legacy plaintext as it is).
    pub(crate) async fn open_text(&self, ad: &[u8], stored: String) -> Result<String, StoreError> {
        if !crypto::is_sealed_text(&stored) {
            return Ok(stored);
        }
        self.opened(|k| k.open_text(ad, &stored)).await
    }

    /// A sealed value opened by `open`, once more after loading its data
    /// key when it was sealed under one this store has not met yet.
    async fn opened<T>(
        &self,
        open: impl Fn(&Keyring) -> Result<T, OpenError>,
    ) -> Result<T, StoreError> {
        let Some(k) = &self.keyring else {
            return Err(sealing("a sealed value, and this store has no keys"));
        };
        match open(k) {
            Err(OpenError::UnknownKey(id)) => {
                self.load_data_key(k, id).await?;
                open(k).map_err(sealing)
            }
            opened => opened.map_err(sealing),
        }
    }

    /// `cardio keys rotate`: a new KEK becomes current and every data key is
    /// re-wrapped under it, one row at a time (values are not re-encrypted:
    /// nodes keep reading and writing throughout). Returns the new KEK's id
    /// and how many data keys were re-wrapped.
    pub async fn rotate_keys(&self) -> Result<(String, u64), StoreError> {
        let Some(k) = &self.keyring else {
            return Err(sealing("this store has no keys to rotate"));
        };
        let provider = k.provider();
        let new = provider.rotate().await.map_err(sealing)?;
        let select = self.dialect(
            "SELECT id, kek_id, wrapped FROM data_keys WHERE kek_id <> $1",
            "SELECT id, kek_id, wrapped FROM data_keys WHERE kek_id <> ?1",
        );
        let update = self.dialect(
            "UPDATE data_keys SET kek_id = $1, wrapped = $2 WHERE id = $3 AND kek_id = $4",
            "UPDATE data_keys SET kek_id = ?1, wrapped = ?2 WHERE id = ?3 AND kek_id = ?4",
        );
        let rows: Vec<(String, String, Vec<u8>)> = with_pool!(self, pool => sqlx::query(select)
            .bind(&new)
            .fetch_all(pool)
            .await
            .and_then(|rows| rows.iter().map(|r| Ok((r.try_get("id")?, r.try_get("kek_id")?, r.try_get("wrapped")?))).collect()))?;
        let mut n = 0;
        for (id, old, wrapped) in rows {
            let uuid = uuid::Uuid::parse_str(&id).map_err(sealing)?;
            let ad = crypto::dek_ad(uuid);
            let key = provider
                .unwrap(&old, &wrapped, &ad)
                .await
                .map_err(sealing)?;
            let rewrapped = provider.wrap(&new, &key, &ad).await.map_err(sealing)?;
            n += with_pool!(self, pool => sqlx::query(update)
                .bind(&new)
                .bind(&rewrapped)
                .bind(&id)
                .bind(&old)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()))?;
        }
        Ok((new, n))
    }

    /// Seals every legacy plaintext value of the [`SEALED`] columns (rows
    /// written before encryption at rest); returns how many. Idempotent, and
    /// safe beside running writers (a row is replaced only if unchanged).
    pub async fn seal_existing(&self) -> Result<u64, StoreError> {
        if self.keyring.is_none() {
            return Err(sealing("this store has no keys to seal with"));
        }
        let mut sealed = 0;
        for c in SEALED {
            sealed += self.seal_column(c).await?;
        }
        sealed += self.seal_vitals().await?;
        Ok(sealed)
    }

    /// Seals the numeric vitals values written in the clear before: an
    /// aggregate's min, max and sum, an alert's reading and threshold (into
    /// `sealed`; the numeric columns become 0 / NULL).
    async fn seal_vitals(&self) -> Result<u64, StoreError> {
        let mut n = 0;
        let (page, update) = (
            "SELECT device_id, series, span, start_ms, min, max, sum FROM vitals_aggregates \
             WHERE sealed IS NULL LIMIT 500",
            self.dialect(
                "UPDATE vitals_aggregates SET sealed = $1, min = 0, max = 0, sum = 0 \
                 WHERE device_id = $2 AND series = $3 AND span = $4 AND start_ms = $5 AND sealed IS NULL",
                "UPDATE vitals_aggregates SET sealed = ?1, min = 0, max = 0, sum = 0 \
                 WHERE device_id = ?2 AND series = ?3 AND span = ?4 AND start_ms = ?5 AND sealed IS NULL",
            ),
        );
        loop {
            type Raw = (String, String, String, i64, f64, f64, f64);
            let rows: Vec<Raw> = with_pool!(self, pool => sqlx::query(page)
                .fetch_all(pool)
                .await
                .and_then(|rows| rows.iter().map(|r| Ok((
                    r.try_get("device_id")?, r.try_get("series")?, r.try_get("span")?,
                    r.try_get("start_ms")?, r.try_get("min")?, r.try_get("max")?, r.try_get("sum")?,
                ))).collect()))?;
            if rows.is_empty() {
                break;
            }
            for (device, series, span, start, min, max, sum) in rows {
                let ad = aggregate_ad(&device, &series, &span, start);
                let json = serde_json::to_vec(&[min, max, sum]).map_err(sealing)?;
                let sealed = self.seal_blob(&ad, &json);
                n += with_pool!(self, pool => sqlx::query(update)
                    .bind(&sealed).bind(&device).bind(&series).bind(&span).bind(start)
                    .execute(pool).await.map(|r| r.rows_affected()))?;
            }
        }
        let (page, update) = (
            "SELECT id, reading, threshold FROM alerts WHERE sealed IS NULL LIMIT 500",
            self.dialect(
                "UPDATE alerts SET sealed = $1, reading = NULL, threshold = NULL WHERE id = $2 AND sealed IS NULL",
                "UPDATE alerts SET sealed = ?1, reading = NULL, threshold = NULL WHERE id = ?2 AND sealed IS NULL",
            ),
        );
        loop {
            type Raw = (String, Option<f64>, Option<f64>);
            let rows: Vec<Raw> = with_pool!(self, pool => sqlx::query(page)
                .fetch_all(pool)
                .await
                .and_then(|rows| rows.iter().map(|r| Ok((
                    r.try_get("id")?, r.try_get("reading")?, r.try_get("threshold")?,
                ))).collect()))?;
            if rows.is_empty() {
                break;
            }
            for (id, reading, threshold) in rows {
                let json = serde_json::to_vec(&[reading, threshold]).map_err(sealing)?;
                let sealed = self.seal_blob(&ad("alerts", &id, None), &json);
                n += with_pool!(self, pool => sqlx::query(update)
                    .bind(&sealed).bind(&id)
                    .execute(pool).await.map(|r| r.rows_affected()))?;
            }
        }
        Ok(n)
    }

    async fn seal_column(&self, c: &SealedColumn) -> Result<u64, StoreError> {
        let pg = self.backend() == "postgres";
        let p = |n: u32| if pg { format!("${n}") } else { format!("?{n}") };
        let (t, v, k1) = (c.table, c.column, c.text_key);
        let page = match c.int_key {
            Some(k2) => format!(
                "SELECT {k1} AS k1, {k2} AS k2, {v} AS v FROM {t} WHERE ({k1}, {k2}) > ({}, {}) \
                 ORDER BY {k1}, {k2} LIMIT 500",
                p(1),
                p(2)
            ),
            None => format!(
                "SELECT {k1} AS k1, CAST(0 AS BIGINT) AS k2, {v} AS v FROM {t} WHERE {k1} > {} OR {} = 0 \
                 ORDER BY {k1} LIMIT 500",
                p(1),
                p(2)
            ),
        };
        let update = match c.int_key {
            Some(k2) => format!(
                "UPDATE {t} SET {v} = {} WHERE {k1} = {} AND {k2} = {} AND {v} = {}",
                p(1),
                p(2),
                p(3),
                p(4)
            ),
            None => format!(
                "UPDATE {t} SET {v} = {} WHERE {k1} = {} AND {} = {} AND {v} = {}",
                p(1),
                p(2),
                p(3),
                p(3),
                p(4)
            ),
        };
        let (mut after, mut after_int, mut first) = (String::new(), i64::MIN, true);
        let mut n = 0;
        loop {
            // Without an integer key, the first page starts at the beginning
            // ("" is not below every text on every collation).
            let flag: i64 = if first && c.int_key.is_none() { 0 } else { 1 };
            let second = if c.int_key.is_some() { after_int } else { flag };
            type Raw = (String, i64, Option<Vec<u8>>);
            let rows: Vec<Raw> = with_pool!(self, pool => sqlx::query(&page)
                .bind(&after)
                .bind(second)
                .fetch_all(pool)
                .await
                .and_then(|rows| rows.iter().map(|r| {
                    let v: Option<Vec<u8>> = if c.text {
                        r.try_get::<Option<String>, _>("v")?.map(String::into_bytes)
                    } else {
                        r.try_get("v")?
                    };
                    Ok((r.try_get("k1")?, r.try_get::<i64, _>("k2")?, v))
                }).collect()))?;
            first = false;
            let Some(last) = rows.last() else {
                return Ok(n);
            };
            (after, after_int) = (last.0.clone(), last.1);
            for (k1v, k2v, value) in rows {
                let Some(value) = value else { continue };
                let ad = ad(t, &k1v, c.int_key.map(|_| k2v));
                if c.text {
                    let old = String::from_utf8(value).map_err(sealing)?;
                    if crypto::is_sealed_text(&old) {
                        continue;
                    }
                    let new = self.seal_text(&ad, &old);
                    n += with_pool!(self, pool => sqlx::query(&update)
                        .bind(&new).bind(&k1v).bind(k2v).bind(&old)
                        .execute(pool).await.map(|r| r.rows_affected()))?;
                } else {
                    if crypto::is_sealed(&value) {
                        continue;
                    }
                    let new = self.seal_blob(&ad, &value);
                    n += with_pool!(self, pool => sqlx::query(&update)
                        .bind(&new).bind(&k1v).bind(k2v).bind(&value)
                        .execute(pool).await.map(|r| r.rows_affected()))?;
                }
            }
        }
    }
}
