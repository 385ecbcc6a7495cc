//! A write round's transaction on either database: PostgreSQL through
//! sqlx, SQLite through the writer's own connection, driven in the
//! writer's thread.
//!
//! sqlx runs each SQLite connection on a thread of its own, and every
//! statement is a round trip to it: a message there, and a wake-up of the
//! waiting task back. A round is a chain of such statements (its `BEGIN`,
//! its appends, its audit entries, its `COMMIT`), so on a loaded machine
//! it spent most of its time in these hops rather than in SQLite. The
//! SQLite writer instead takes its connection's handle from sqlx for the
//! whole of a run of rounds ([`sqlx::sqlite::LockedSqliteHandle`], sqlx's
//! documented way to the raw handle) and runs the rounds' statements
//! through rusqlite on its own (blocking) thread: no hop but the one to
//! start the run.

use sqlx::Row;

use super::{AppendOp, Arg, Stmt};
use crate::store::audit::{AuditEntry, INSERT_ROWS};
use crate::store::StoreError;

/// One audit row of a round: its sequence, the entry, the hash before it
/// and its own.
pub(super) type AuditRow<'a> = (u64, &'a AuditEntry, String, String);

/// Where a write round's transactions are opened.
pub(super) trait Database {
    type Tx<'a>: RoundTx
    where
        Self: 'a;
    async fn begin(&mut self) -> Result<Self::Tx<'_>, StoreError>;
}

/// The statements of a write round, in its transaction.
pub(super) trait RoundTx {
    /// Runs a multi-row append statement ([`super::round::insert_rows`]);
    /// the actors of the rows it wrote.
    async fn insert(&mut self, sql: &str, rows: &[&AppendOp]) -> Result<Vec<String>, StoreError>;
    /// A one-column one-row query of integers (`None`: no row).
    async fn integer(&mut self, sql: &str, args: &[Arg]) -> Result<Option<i64>, StoreError>;
    async fn run(&mut self, stmt: &Stmt) -> Result<(), StoreError>;
    /// Moves the audit chain's head `n` places on (locking it): its
    /// sequence after the move and the hash it had.
    async fn move_head(&mut self, sql: &str, n: i64) -> Result<(i64, String), StoreError>;
    async fn insert_audit(&mut self, rows: &[AuditRow<'_>]) -> Result<(), StoreError>;
    async fn commit(self) -> Result<(), StoreError>;
}

/// Binds a [`Stmt`]'s values to a sqlx query.
fn bound<'q>(
    sql: &'q str,
    args: &'q [Arg],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let mut q = sqlx::query(sql);
    for a in args {
        q = match a {
            Arg::Int(v) => q.bind(*v),
            Arg::OptInt(v) => q.bind(*v),
            Arg::Text(v) => q.bind(v.as_str()),
            Arg::OptText(v) => q.bind(v.as_deref()),
            Arg::Real(v) => q.bind(*v),
            Arg::OptBlob(v) => q.bind(v.as_deref()),
        };
    }
    q
}

impl Database for sqlx::PgPool {
    type Tx<'a>
        = sqlx::Transaction<'static, sqlx::Postgres>
    where
        Self: 'a;
    async fn begin(&mut self) -> Result<Self::Tx<'_>, StoreError> {
        Ok(sqlx::PgPool::begin(self).await?)
    }
}

impl RoundTx for sqlx::Transaction<'static, sqlx::Postgres> {
    async fn insert(&mut self, sql: &str, rows: &[&AppendOp]) -> Result<Vec<String>, StoreError> {
        let mut q = sqlx::query(sql);
        for a in rows {
            q = q
                .bind(&a.actor)
                .bind(a.seq)
                .bind(&a.message_id)
                .bind(a.epoch)
                .bind(&a.payload)
                .bind(a.at_ms)
                .bind(a.shard);
        }
        let mut written = Vec::with_capacity(rows.len());
        for row in q.fetch_all(&mut **self).await? {
            written.push(row.try_get::<String, _>(0)?);
        }
        Ok(written)
    }

    async fn integer(&mut self, sql: &str, args: &[Arg]) -> Result<Option<i64>, StoreError> {
        let row = bound(sql, args).fetch_optional(&mut **self).await?;
        Ok(row.map(|r| r.try_get::<i64, _>(0)).transpose()?)
    }

    async fn run(&mut self, stmt: &Stmt) -> Result<(), StoreError> {
        bound(&stmt.sql, &stmt.args).execute(&mut **self).await?;
        Ok(())
    }

    async fn move_head(&mut self, sql: &str, n: i64) -> Result<(i64, String), StoreError> {
        let row = sqlx::query(sql).bind(n).fetch_one(&mut **self).await?;
        Ok((row.try_get("seq")?, row.try_get("hash")?))
    }

    async fn insert_audit(&mut self, rows: &[AuditRow<'_>]) -> Result<(), StoreError> {
        let mut insert = sqlx::QueryBuilder::new(INSERT_ROWS);
        insert.push_values(rows, |mut b, (seq, e, prev, hash)| {
            b.push_bind(*seq as i64)
                .push_bind(e.at_ms as i64)
                .push_bind(&e.subject)
                .push_bind(&e.role)
                .push_bind(&e.action)
                .push_bind(&e.patient_id)
                .push_bind(&e.fields)
                .push_bind(&e.outcome)
                .push_bind(prev)
                .push_bind(hash);
        });
        insert.build().execute(&mut **self).await?;
        Ok(())
    }

    async fn commit(self) -> Result<(), StoreError> {
        Ok(sqlx::Transaction::commit(self).await?)
    }
}

impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Arg::Int(v) => v.to_sql(),
            Arg::OptInt(v) => v.to_sql(),
            Arg::Text(v) => v.to_sql(),
            Arg::OptText(v) => v.to_sql(),
            Arg::Real(v) => v.to_sql(),
            Arg::OptBlob(v) => v.to_sql(),
        }
    }
}

impl Database for rusqlite::Connection {
    type Tx<'a> = rusqlite::Transaction<'a>;
    async fn begin(&mut self) -> Result<Self::Tx<'_>, StoreError> {
        // IMMEDIATE: the write lock is taken (waiting up to the busy
        // timeout) before the first statement, never upgraded in the middle
        // of the round, which in WAL mode could fail without waiting.
        Ok(self.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?)
    }
}

impl RoundTx for rusqlite::Transaction<'_> {
    async fn insert(&mut self, sql: &str, rows: &[&AppendOp]) -> Result<Vec<String>, StoreError> {
        use rusqlite::ToSql;
        let mut values: Vec<&dyn ToSql> = Vec::with_capacity(rows.len() * 7);
        for a in rows {
            values.extend([
                &a.actor as &dyn ToSql,
                &a.seq,
                &a.message_id,
                &a.epoch,
                &a.payload,
                &a.at_ms,
                &a.shard,
            ]);
        }
        let mut stmt = self.prepare_cached(sql)?;
        let mut found = stmt.query(values.as_slice())?;
        let mut written = Vec::with_capacity(rows.len());
        while let Some(row) = found.next()? {
            written.push(row.get(0)?);
        }
        Ok(written)
    }

    async fn integer(&mut self, sql: &str, args: &[Arg]) -> Result<Option<i64>, StoreError> {
        use rusqlite::OptionalExtension;
        let mut stmt = self.prepare_cached(sql)?;
        Ok(stmt
            .query_row(rusqlite::params_from_iter(args), |r| r.get(0))
            .optional()?)
    }

    async fn run(&mut self, stmt: &Stmt) -> Result<(), StoreError> {
        self.prepare_cached(&stmt.sql)?
            .execute(rusqlite::params_from_iter(&stmt.args))?;
        Ok(())
    }

    async fn move_head(&mut self, sql: &str, n: i64) -> Result<(i64, String), StoreError> {
        let mut stmt = self.prepare_cached(sql)?;
        Ok(stmt.query_row([n], |r| Ok((r.get("seq")?, r.get("hash")?)))?)
    }

    async fn insert_audit(&mut self, rows: &[AuditRow<'_>]) -> Result<(), StoreError> {
        // A row per statement: each is a call into SQLite on this thread,
        // not a round trip.
        let mut stmt = self.prepare_cached(&format!(
            "{INSERT_ROWS}VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ))?;
        for (seq, e, prev, hash) in rows {
            stmt.execute(rusqlite::params![
                *seq as i64,
                e.at_ms as i64,
                e.subject,
                e.role,
                e.action,
                e.patient_id,
                e.fields,
                e.outcome,
                prev,
                hash,
            ])?;
        }
        Ok(())
    }

    async fn commit(self) -> Result<(), StoreError> {
        Ok(rusqlite::Transaction::commit(self)?)
    }
}

/// The SQLite database the writer opens its own connection to: the pool's
/// file (or shared in-memory database), with the pool's settings.
#[derive(Debug, Clone)]
pub(crate) struct SqliteTarget {
    pub(crate) filename: std::path::PathBuf,
    pub(crate) in_memory: bool,
}

impl SqliteTarget {
    /// Opens the writer's connection, set as the pool's connections are
    /// ([`crate::store::SQLITE_PRAGMAS`]).
    pub(super) fn open(&self) -> Result<rusqlite::Connection, StoreError> {
        use rusqlite::OpenFlags;
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if self.in_memory {
            flags |= OpenFlags::SQLITE_OPEN_MEMORY | OpenFlags::SQLITE_OPEN_SHARED_CACHE;
        }
        let conn = rusqlite::Connection::open_with_flags(&self.filename, flags)?;
        conn.busy_timeout(crate::store::SQLITE_BUSY_TIMEOUT)?;
        for (name, value) in crate::store::SQLITE_PRAGMAS {
            // Some answer with a row (journal_mode): read to the end.
            let mut stmt = conn.prepare(&format!("PRAGMA {name} = {value}"))?;
            let mut rows = stmt.query([])?;
            while rows.next()?.is_some() {}
        }
        // The round's statements: up to 9 append texts, the lookups, the
        // audit head, entries and projections.
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }
}

/// A database the writer could not open: each round fails, saying why (the
/// next run of rounds tries again).
pub(super) struct Unavailable(pub(super) String);

impl Database for Unavailable {
    type Tx<'a> = std::convert::Infallible;
    async fn begin(&mut self) -> Result<Self::Tx<'_>, StoreError> {
        Err(StoreError::Batch(self.0.clone()))
    }
}

impl RoundTx for std::convert::Infallible {
    async fn insert(&mut self, _: &str, _: &[&AppendOp]) -> Result<Vec<String>, StoreError> {
        match *self {}
    }
    async fn integer(&mut self, _: &str, _: &[Arg]) -> Result<Option<i64>, StoreError> {
        match *self {}
    }
    async fn run(&mut self, _: &Stmt) -> Result<(), StoreError> {
        match *self {}
    }
    async fn move_head(&mut self, _: &str, _: i64) -> Result<(i64, String), StoreError> {
        match *self {}
    }
    async fn insert_audit(&mut self, _: &[AuditRow<'_>]) -> Result<(), StoreError> {
        match *self {}
    }
    async fn commit(self) -> Result<(), StoreError> {
        match self {}
    }
}
