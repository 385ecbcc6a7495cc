//! The access lifecycle's state, shared by every node: accounts (deactivated,
//! sessions ended before a time, last activity), revoked tokens by id,
//! break-glass grants, and care-team removal.
//!
//! The API decides with it; this module only reads and writes rows. A
//! break-glass reason may hold PHI: it is stored sealed, never logged.

use std::collections::HashMap;

use sqlx::Row;

use super::batches;
use super::people::PeopleError;
use super::{with_pool, Db, Store, StoreError};

/// What the database says about a subject's access.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccountState {
    /// The role the subject last authenticated with (`""`: never).
    pub role: String,
    pub disabled: bool,
    /// Tokens issued before this (Unix seconds) are dead.
    pub not_before_s: u64,
    pub last_active_ms: u64,
    /// Ids of the subject's revoked tokens that have not expired yet.
    pub revoked: Vec<String>,
}

macro_rules! sql {
    ($pg:literal, $sqlite:literal) => {
        ($pg, $sqlite)
    };
}

/// Subjects' account rows (`jti` NULL) and their unexpired revoked tokens
/// (one row each, the account's columns NULL), in one round trip: the gate
/// reads this for the subjects it has not cached, together
/// ([`super::lookups`]).
const ACCOUNT_STATES: (&str, &str) = sql!(
    "SELECT subject, role, disabled, not_before_s, last_active_ms, NULL AS jti FROM accounts WHERE subject = ANY($1) \
     UNION ALL SELECT subject, NULL, NULL, NULL, NULL, jti FROM revoked_tokens WHERE subject = ANY($1) AND expires_ms > $2",
    "SELECT subject, role, disabled, not_before_s, last_active_ms, NULL AS jti FROM accounts \
     WHERE subject IN (SELECT value FROM json_each(?1)) \
     UNION ALL SELECT subject, NULL, NULL, NULL, NULL, jti FROM revoked_tokens \
     WHERE subject IN (SELECT value FROM json_each(?1)) AND expires_ms > ?2"
);
/// A row of [`ACCOUNT_STATES`], without its subject.
enum AccessRow {
    Account(AccountState),
    Revoked(String),
}

/// Reads [`ACCOUNT_STATES`] on `pool` (either database's), `subjects` bound
/// as one value: `(subject, row)` in the order read.
macro_rules! access_rows {
    ($pool:expr, $sql:expr, $subjects:expr, $now_ms:expr) => {
        sqlx::query($sql)
            .bind($subjects)
            .bind($now_ms as i64)
            .fetch_all($pool)
            .await
            .and_then(|rows| {
                rows.iter()
                    .map(|r| {
                        let subject: String = r.try_get("subject")?;
                        let row = match r.try_get::<Option<String>, _>("jti")? {
                            Some(jti) => AccessRow::Revoked(jti),
                            None => AccessRow::Account(AccountState {
                                role: r.try_get("role")?,
                                disabled: r.try_get::<i64, _>("disabled")? != 0,
                                not_before_s: r.try_get::<i64, _>("not_before_s")?.max(0) as u64,
                                last_active_ms: r.try_get::<i64, _>("last_active_ms")?.max(0)
                                    as u64,
                                revoked: Vec::new(),
                            }),
                        };
                        Ok((subject, row))
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()
            })
    };
}

/// The count of access changes (see the migration `access_version`).
const ACCESS_VERSION: &str = "SELECT v FROM access_version WHERE id = 1";
const END_SESSIONS: (&str, &str) = sql!(
    "INSERT INTO accounts (subject, not_before_s, last_active_ms, updated_ms) VALUES ($1, $2, 0, $3) \
     ON CONFLICT (subject) DO UPDATE SET \
     not_before_s = GREATEST(accounts.not_before_s, excluded.not_before_s), updated_ms = excluded.updated_ms",
    "INSERT INTO accounts (subject, not_before_s, last_active_ms, updated_ms) VALUES (?1, ?2, 0, ?3) \
     ON CONFLICT (subject) DO UPDATE SET \
     not_before_s = MAX(accounts.not_before_s, excluded.not_before_s), updated_ms = excluded.updated_ms"
);
const SET_DISABLED: (&str, &str) = sql!(
    "INSERT INTO accounts (subject, disabled, last_active_ms, updated_ms) VALUES ($1, $2, 0, $3) \
     ON CONFLICT (subject) DO UPDATE SET disabled = excluded.disabled, updated_ms = excluded.updated_ms",
    "INSERT INTO accounts (subject, disabled, last_active_ms, updated_ms) VALUES (?1, ?2, 0, ?3) \
     ON CONFLICT (subject) DO UPDATE SET disabled = excluded.disabled, updated_ms = excluded.updated_ms"
);
const REVOKE: (&str, &str) = sql!(
    "INSERT INTO revoked_tokens (jti, subject, expires_ms, revoked_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (jti) DO NOTHING",
    "INSERT INTO revoked_tokens (jti, subject, expires_ms, revoked_ms) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (jti) DO NOTHING"
);
const GRANT: (&str, &str) = sql!(
    "INSERT INTO break_glass (id, clinician_id, patient_id, reason, granted_ms, expires_ms) VALUES ($1, $2, $3, $4, $5, $6)",
    "INSERT INTO break_glass (id, clinician_id, patient_id, reason, granted_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
);
const GRANT_UNTIL: (&str, &str) = sql!(
    "SELECT MAX(expires_ms) AS until FROM break_glass WHERE patient_id = $1 AND clinician_id = $2 AND expires_ms > $3",
    "SELECT MAX(expires_ms) AS until FROM break_glass WHERE patient_id = ?1 AND clinician_id = ?2 AND expires_ms > ?3"
);
const UNASSIGN: (&str, &str) = sql!(
    "DELETE FROM care_team WHERE patient_id = $1 AND clinician_id = $2",
    "DELETE FROM care_team WHERE patient_id = ?1 AND clinician_id = ?2"
);

impl Store {
    fn pick_access(&self, (pg, sqlite): (&'static str, &'static str)) -> &'static str {
        self.dialect(pg, sqlite)
    }

    /// `subject`'s access state now (`None`: never seen nor changed): read
    /// with the other subjects asked meanwhile ([`super::lookups`]).
    pub async fn account_state(
        &self,
        subject: &str,
        now_ms: u64,
    ) -> Result<Option<AccountState>, StoreError> {
        batches::ask(
            self,
            |s| &s.lookups.accounts,
            (subject.to_owned(), now_ms),
            Store::serve_account_states,
        )
        .await
        .map_err(StoreError::Read)
    }

    /// A batch of [`Store::account_state`]s, in its order. Revoked tokens
    /// are those unexpired at the batch's earliest `now_ms`, so a caller may
    /// see one that expired since: its token has expired too.
    async fn serve_account_states(
        self,
        asked: Vec<(String, u64)>,
    ) -> Result<Vec<Option<AccountState>>, StoreError> {
        let now_ms = asked.iter().map(|(_, now)| *now).min().unwrap_or(0);
        let mut subjects: Vec<&str> = asked.iter().map(|(s, _)| s.as_str()).collect();
        subjects.sort_unstable();
        subjects.dedup();
        let sql = self.pick_access(ACCOUNT_STATES);
        let rows = match &*self.db {
            Db::Postgres(pool) => access_rows!(pool, sql, &subjects, now_ms),
            Db::Sqlite(pool) => access_rows!(
                pool,
                sql,
                serde_json::to_string(&subjects).expect("strings serialise"),
                now_ms
            ),
        };
        let mut states: HashMap<String, (Option<AccountState>, Vec<String>)> = HashMap::new();
        for (subject, row) in rows? {
            let entry = states.entry(subject).or_default();
            match row {
                AccessRow::Revoked(jti) => entry.1.push(jti),
                AccessRow::Account(account) => entry.0 = Some(account),
            }
        }
        Ok(asked
            .iter()
            .map(|(subject, _)| {
                let (account, revoked) = states.get(subject).cloned()?;
                Some(AccountState {
                    revoked,
                    ..account.unwrap_or_default()
                })
            })
            .collect())
    }

    /// How many changes of access the database has counted: a deactivation
    /// or reactivation, sessions ended, a revoked token, a deleted row
    /// (counted by triggers, whoever writes). Activity is not counted.
    pub async fn access_version(&self) -> Result<u64, StoreError> {
        let v: i64 =
            with_pool!(self, pool => sqlx::query_scalar(ACCESS_VERSION).fetch_one(pool).await)?;
        Ok(v.max(0) as u64)
    }

    /// Records activity of `subject` (with `role`) at `at_ms`, committed
    /// before this returns: written with the other subjects' recorded
    /// meanwhile ([`super::lookups`]).
    pub async fn touch_account(
        &self,
        subject: &str,
        role: &str,
        at_ms: u64,
    ) -> Result<(), StoreError> {
        batches::ask(
            self,
            |s| &s.lookups.touches,
            (subject.to_owned(), role.to_owned(), at_ms),
            Store::serve_touches,
        )
        .await
        .map_err(StoreError::Read)
    }

    /// A batch of [`Store::touch_account`]s: one row per subject, with the
    /// latest of its activity and the role it was last asked with (as the
    /// same writes one by one would leave it).
    async fn serve_touches(self, asked: Vec<(String, String, u64)>) -> Result<Vec<()>, StoreError> {
        let mut rows: Vec<(String, &str, u64)> = Vec::with_capacity(asked.len());
        let mut at: HashMap<&str, usize> = HashMap::new();
        for (subject, role, at_ms) in &asked {
            match at.get(subject.as_str()) {
                Some(&i) => {
                    rows[i].1 = role;
                    rows[i].2 = rows[i].2.max(*at_ms);
                }
                None => {
                    at.insert(subject, rows.len());
                    rows.push((subject.clone(), role, *at_ms));
                }
            }
        }
        self.touch_accounts(&rows).await?;
        Ok(vec![(); asked.len()])
    }

    /// Records the activity of many subjects at once (`(subject, role,
    /// at_ms)`, one row per subject), in one statement per 500 subjects:
    /// what a node gathered since its last write.
    pub async fn touch_accounts(&self, rows: &[(String, &str, u64)]) -> Result<(), StoreError> {
        let upsert = self.dialect(
            " ON CONFLICT (subject) DO UPDATE SET role = excluded.role, \
             last_active_ms = GREATEST(accounts.last_active_ms, excluded.last_active_ms), updated_ms = excluded.updated_ms",
            " ON CONFLICT (subject) DO UPDATE SET role = excluded.role, \
             last_active_ms = MAX(accounts.last_active_ms, excluded.last_active_ms), updated_ms = excluded.updated_ms",
        );
        for chunk in rows.chunks(500) {
            with_pool!(self, pool => {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO accounts (subject, role, last_active_ms, updated_ms) ",
                );
                insert.push_values(chunk, |mut b, (subject, role, at_ms)| {
                    b.push_bind(subject)
                        .push_bind(*role)
                        .push_bind(*at_ms as i64)
                        .push_bind(*at_ms as i64);
                });
                insert.push(upsert);
                insert.build().execute(pool).await.map(|_| ())
            })?;
        }
        Ok(())
    }

    /// Ends every session of `subject` whose token was issued before
    /// `not_before_s` (a logoff, a revocation of all its sessions).
    pub async fn end_sessions(&self, subject: &str, not_before_s: u64) -> Result<(), StoreError> {
        let sql = self.pick_access(END_SESSIONS);
        let now = crate::clock::unix_ms() as i64;
        with_pool!(self, pool => sqlx::query(sql).bind(subject).bind(not_before_s as i64).bind(now).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Deactivates (or reactivates) `subject`'s account.
    pub async fn set_disabled(&self, subject: &str, disabled: bool) -> Result<(), StoreError> {
        let sql = self.pick_access(SET_DISABLED);
        let now = crate::clock::unix_ms() as i64;
        with_pool!(self, pool => sqlx::query(sql).bind(subject).bind(i64::from(disabled)).bind(now).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Revokes the token `jti` of `subject` (kept until it expires).
    pub async fn revoke_token(
        &self,
        jti: &str,
        subject: &str,
        expires_ms: u64,
    ) -> Result<(), StoreError> {
        let sql = self.pick_access(REVOKE);
        let now = crate::clock::unix_ms() as i64;
        with_pool!(self, pool => sqlx::query(sql).bind(jti).bind(subject).bind(expires_ms as i64).bind(now).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Grants `clinician` break-glass access to `patient` until `expires_ms`.
    pub async fn grant_break_glass(
        &self,
        id: &str,
        clinician: &str,
        patient: &str,
        reason: &str,
        granted_ms: u64,
        expires_ms: u64,
    ) -> Result<Result<(), PeopleError>, StoreError> {
        if !self.patient_exists(patient).await? {
            return Ok(Err(PeopleError::UnknownPatient));
        }
        // The reason may hold PHI: sealed at rest, bound to its grant.
        let sealed_reason = self.seal_text(&super::sealed::ad("break_glass", id, None), reason);
        let sql = self.pick_access(GRANT);
        with_pool!(self, pool => sqlx::query(sql)
            .bind(id)
            .bind(clinician)
            .bind(patient)
            .bind(&sealed_reason)
            .bind(granted_ms as i64)
            .bind(expires_ms as i64)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(Ok(()))
    }

    /// Until when `clinician` holds a break-glass grant to `patient` (Unix
    /// ms), if one is in force at `now_ms`.
    pub async fn break_glass_until(
        &self,
        patient: &str,
        clinician: &str,
        now_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        let sql = self.pick_access(GRANT_UNTIL);
        let until = with_pool!(self, pool => sqlx::query(sql)
            .bind(patient)
            .bind(clinician)
            .bind(now_ms as i64)
            .fetch_one(pool)
            .await
            .and_then(|r| r.try_get::<Option<i64>, _>("until")))?;
        Ok(until.map(|u| u.max(0) as u64))
    }

    /// Takes `clinician` off `patient`'s care team; whether it was on it.
    pub async fn remove_clinician(
        &self,
        patient: &str,
        clinician: &str,
    ) -> Result<bool, StoreError> {
        let sql = self.pick_access(UNASSIGN);
        let n = with_pool!(self, pool => sqlx::query(sql).bind(patient).bind(clinician).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }
}
