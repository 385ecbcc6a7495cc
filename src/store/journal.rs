//! The event journal and snapshots: what actors recover from.
//!
//! Appends are idempotent by message id (a message applied before is reported
//! as a duplicate with the sequence it got, not written again) and ordered by a
//! sequence the writer states (a writer whose view is stale gets a conflict, not
//! a gap or an overwrite).

use sqlx::Row;

use super::audit::PendingAudit;
use super::writer::{AppendOp, AppendOutcome, Arg, Op, Reply, Stmt, Then};
use super::{with_pool, Store, StoreError};
use crate::clock::unix_ms;

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub seq: u64,
    pub message_id: String,
    pub epoch: u64,
    pub payload: Vec<u8>,
    pub at_ms: u64,
}

/// The latest snapshot of an actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The journal sequence the snapshot includes.
    pub seq: u64,
    pub payload: Vec<u8>,
}

/// Reads a journal entry (`seq, message_id, epoch, payload, at_ms`) off a
/// row of either database, as stored (sealed).
macro_rules! event_row {
    ($row:expr) => {{
        let row = $row;
        Ok::<Event, sqlx::Error>(Event {
            seq: row.try_get::<i64, _>("seq")? as u64,
            message_id: row.try_get("message_id")?,
            epoch: row.try_get::<i64, _>("epoch")? as u64,
            payload: row.try_get("payload")?,
            at_ms: row.try_get::<i64, _>("at_ms")? as u64,
        })
    }};
}
pub(super) use event_row;

/// Reads a snapshot (`seq, payload`) off a row of either database, as
/// stored (sealed).
macro_rules! snapshot_row {
    ($row:expr) => {{
        let row = $row;
        Ok::<Snapshot, sqlx::Error>(Snapshot {
            seq: row.try_get::<i64, _>("seq")? as u64,
            payload: row.try_get("payload")?,
        })
    }};
}
pub(super) use snapshot_row;

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Written at this sequence, durably.
    Written { seq: u64 },
    /// This message was applied before, at this sequence; nothing written.
    Duplicate { seq: u64 },
}

/// An alias of a coalesced entry (a replay writing it again changes nothing).
const ALIAS_PG: &str = "INSERT INTO journal_aliases (actor_id, message_id, seq, at_ms) \
     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
const ALIAS_SQLITE: &str = "INSERT INTO journal_aliases (actor_id, message_id, seq, at_ms) \
     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING";

/// Where a message id is: an entry's own, or an alias.
const FIND_ANY_PG: &str = "SELECT seq FROM journal WHERE actor_id = $1 AND message_id = $2 \
     UNION ALL SELECT seq FROM journal_aliases WHERE actor_id = $1 AND message_id = $2 LIMIT 1";
const FIND_ANY_SQLITE: &str = "SELECT seq FROM journal WHERE actor_id = ?1 AND message_id = ?2 \
     UNION ALL SELECT seq FROM journal_aliases WHERE actor_id = ?1 AND message_id = ?2 LIMIT 1";

/// Journal entries a retention batch examines at most (two statements: where
/// the batch ends, and the delete).
pub const PRUNE_BATCH: i64 = 5_000;

const LOAD_PG: &str = "SELECT seq, message_id, epoch, payload, at_ms FROM journal \
     WHERE actor_id = $1 AND seq > $2 ORDER BY seq";
const LOAD_SQLITE: &str = "SELECT seq, message_id, epoch, payload, at_ms FROM journal \
     WHERE actor_id = ?1 AND seq > ?2 ORDER BY seq";
const LAST_PG: &str = "SELECT COALESCE(MAX(seq), 0) AS seq FROM journal WHERE actor_id = $1";
const LAST_SQLITE: &str = "SELECT COALESCE(MAX(seq), 0) AS seq FROM journal WHERE actor_id = ?1";
const SNAPSHOT_PG: &str =
    "INSERT INTO snapshots (actor_id, seq, payload, at_ms) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (actor_id) DO UPDATE SET seq = excluded.seq, payload = excluded.payload, \
     at_ms = excluded.at_ms WHERE snapshots.seq <= excluded.seq";
const SNAPSHOT_SQLITE: &str =
    "INSERT INTO snapshots (actor_id, seq, payload, at_ms) VALUES (?1, ?2, ?3, ?4) \
     ON CONFLICT (actor_id) DO UPDATE SET seq = excluded.seq, payload = excluded.payload, \
     at_ms = excluded.at_ms WHERE snapshots.seq <= excluded.seq";
const LOAD_SNAPSHOT_PG: &str = "SELECT seq, payload FROM snapshots WHERE actor_id = $1";
const LOAD_SNAPSHOT_SQLITE: &str = "SELECT seq, payload FROM snapshots WHERE actor_id = ?1";

impl Store {
    pub(crate) fn dialect(&self, pg: &'static str, sqlite: &'static str) -> &'static str {
        match self.backend() {
            "postgres" => pg,
            _ => sqlite,
        }
    }

    /// Appends the event caused by `message_id` to `actor`'s journal, right
    /// after `after_seq` (the last sequence this writer knows). Returns once it
    /// is durable; a message applied before is a [`Appended::Duplicate`].
    /// Committed in a round of the store's writer with the other writes of
    /// the moment ([`super::writer`]), each keeping its own checks.
    pub async fn append(
        &self,
        actor: &str,
        after_seq: u64,
        message_id: &str,
        epoch: u64,
        payload: &[u8],
    ) -> Result<Appended, StoreError> {
        self.append_then(
            actor,
            after_seq,
            message_id,
            epoch,
            payload,
            Then::nothing(),
        )
        .await
    }

    /// [`Self::append`], and `then` (a projection of the event) in the same
    /// transaction, only if the event is written.
    pub async fn append_then(
        &self,
        actor: &str,
        after_seq: u64,
        message_id: &str,
        epoch: u64,
        payload: &[u8],
        then: Then,
    ) -> Result<Appended, StoreError> {
        let mut none = PendingAudit::default();
        self.append_audited(
            actor, after_seq, message_id, epoch, payload, then, &mut none,
        )
        .await
    }

    /// [`Self::append_then`], with `audit`'s entry (if still pending) in the
    /// same transaction, whatever the append's outcome: once the round
    /// committed (an `Ok`, or a conflict or fencing found by the round),
    /// `audit` is no longer pending. Not taken if the round failed or the
    /// append was not queued.
    #[allow(clippy::too_many_arguments)]
    pub async fn append_audited(
        &self,
        actor: &str,
        after_seq: u64,
        message_id: &str,
        epoch: u64,
        payload: &[u8],
        then: Then,
        audit: &mut PendingAudit,
    ) -> Result<Appended, StoreError> {
        let audits = std::slice::from_mut(audit);
        self.append_with(actor, after_seq, message_id, epoch, payload, then, audits)
            .await
    }

    /// One entry that is the effect of several messages (a device stream's
    /// pushes coalesced while the previous entry was written): written under
    /// `message_ids[0]`, with the other ids kept as its aliases in the same
    /// transaction, so that [`Self::message_seq`] finds the entry by any of
    /// them. Each of `audits` as in [`Self::append_audited`]. Only the first
    /// id is checked for a duplicate: the caller knows the others are new.
    pub async fn append_coalesced(
        &self,
        actor: &str,
        after_seq: u64,
        message_ids: &[&str],
        payload: &[u8],
        audits: &mut [PendingAudit],
    ) -> Result<Appended, StoreError> {
        let Some((first, aliases)) = message_ids.split_first() else {
            return Err(StoreError::Batch("an entry needs a message id".into()));
        };
        let seq = after_seq as i64 + 1;
        let at_ms = unix_ms() as i64;
        let insert = self.dialect(ALIAS_PG, ALIAS_SQLITE);
        let then = Then(
            aliases
                .iter()
                .map(|id| Stmt {
                    sql: insert.into(),
                    args: vec![
                        Arg::Text(actor.to_owned()),
                        Arg::Text((*id).to_owned()),
                        Arg::Int(seq),
                        Arg::Int(at_ms),
                    ],
                })
                .collect(),
        );
        self.append_with(actor, after_seq, first, 0, payload, then, audits)
            .await
    }

    /// Appends in a `journal.append` span when spans are exported
    /// ([`crate::telemetry::spans_exported`]).
    #[allow(clippy::too_many_arguments)]
    async fn append_with(
        &self,
        actor: &str,
        after_seq: u64,
        message_id: &str,
        epoch: u64,
        payload: &[u8],
        then: Then,
        audits: &mut [PendingAudit],
    ) -> Result<Appended, StoreError> {
        let span = if crate::telemetry::spans_exported() {
            tracing::info_span!("journal.append", bytes = payload.len())
        } else {
            tracing::Span::none()
        };
        let append = async move {
            let seq = after_seq + 1;
            let fenced = match &self.fence {
                Some(fence) => {
                    let shard = fence.shard_of_key(actor);
                    match fence.epoch(shard) {
                        Some(epoch) => Some((shard, epoch)),
                        None => return Err(StoreError::Fenced { shard, held: None }),
                    }
                }
                None => None,
            };
            let stored = self.seal_blob(
                &super::sealed::ad("journal", actor, Some(seq as i64)),
                payload,
            );
            let bytes = stored.len();
            let op = Op::Append(AppendOp {
                actor: actor.to_owned(),
                seq: seq as i64,
                message_id: message_id.to_owned(),
                epoch: fenced.map_or(epoch, |(_, held)| held) as i64,
                payload: stored,
                at_ms: unix_ms() as i64,
                shard: fenced.map(|(shard, _)| i32::from(shard)),
                then,
                audit: audits
                    .iter()
                    .filter_map(PendingAudit::pending)
                    .map(|entry| (entry.clone(), self.audit_key.clone()))
                    .collect(),
            });
            let started = std::time::Instant::now();
            let outcome = self.commit_with_others(op).await;
            if matches!(outcome, Ok(Reply::Append(_))) {
                audits.iter_mut().for_each(PendingAudit::committed);
            }
            crate::metrics::journal_write(bytes, started.elapsed());
            match outcome {
                Ok(Reply::Append(AppendOutcome::Written)) => Ok(Appended::Written { seq }),
                // The message id is known: report where it went.
                Ok(Reply::Append(AppendOutcome::Known(seq))) => Ok(Appended::Duplicate { seq }),
                // Either the shard moved on, or the writer is behind or ahead of
                // the journal.
                Ok(Reply::Append(AppendOutcome::Refused { shard_epoch })) => {
                    if let (Some((shard, held)), Some(now)) = (fenced, shard_epoch) {
                        if now != held {
                            if let Some(fence) = &self.fence {
                                fence.lost(shard, held);
                            }
                            tracing::warn!(
                                shard,
                                epoch = held,
                                "journal write refused: the shard moved to another node"
                            );
                            return Err(StoreError::Fenced {
                                shard,
                                held: Some(held),
                            });
                        }
                    }
                    Err(StoreError::Conflict {
                        actor: actor.to_owned(),
                        expected: seq,
                    })
                }
                Ok(Reply::Audit(_) | Reply::Projected) => Err(StoreError::Batch(
                    "the writer answered another write".into(),
                )),
                Err(why) => Err(StoreError::Batch(why)),
            }
        };
        tracing::Instrument::instrument(append, span).await
    }

    /// `actor`'s events after `after_seq`, in order.
    #[tracing::instrument(name = "journal.replay", skip_all)]
    pub async fn events(&self, actor: &str, after_seq: u64) -> Result<Vec<Event>, StoreError> {
        let load = self.dialect(LOAD_PG, LOAD_SQLITE);
        let events = with_pool!(self, pool => sqlx::query(load)
        .bind(actor)
        .bind(after_seq as i64)
        .fetch_all(pool)
        .await
        .and_then(|rows| rows.iter().map(|row| event_row!(row)).collect::<Result<Vec<_>, _>>()))?;
        self.opened_events(actor, events).await
    }

    /// `actor`'s journal entries as read, their payloads opened.
    pub(crate) async fn opened_events(
        &self,
        actor: &str,
        events: Vec<Event>,
    ) -> Result<Vec<Event>, StoreError> {
        let mut opened = Vec::with_capacity(events.len());
        for mut e in events {
            let ad = super::sealed::ad("journal", actor, Some(e.seq as i64));
            e.payload = self.open_blob(&ad, e.payload).await?;
            opened.push(e);
        }
        Ok(opened)
    }

    /// The last sequence in `actor`'s journal (0 when empty).
    pub async fn last_seq(&self, actor: &str) -> Result<u64, StoreError> {
        let last = self.dialect(LAST_PG, LAST_SQLITE);
        let seq: i64 = with_pool!(self, pool => sqlx::query(last)
            .bind(actor)
            .fetch_one(pool)
            .await
            .and_then(|row| row.try_get("seq")))?;
        Ok(seq as u64)
    }

    /// The sequence `actor`'s journal holds `message_id` at, if any, as an
    /// entry's own id or as one of its aliases ([`Self::append_coalesced`];
    /// both indexed by (actor, message id)): a retry older than what the
    /// actor keeps in memory.
    pub async fn message_seq(
        &self,
        actor: &str,
        message_id: &str,
    ) -> Result<Option<u64>, StoreError> {
        let find = self.dialect(FIND_ANY_PG, FIND_ANY_SQLITE);
        let seq: Option<i64> = with_pool!(self, pool => sqlx::query(find)
            .bind(actor)
            .bind(message_id)
            .fetch_optional(pool)
            .await
            .and_then(|row| row.map(|row| row.try_get("seq")).transpose()))?;
        Ok(seq.map(|s| s as u64))
    }

    /// Deletes journal entries older than `before_ms` of the actors whose key
    /// starts with `prefix` (raw sample retention), only those a snapshot
    /// already covers; returns how many.
    ///
    /// Incremental: it walks the entries older than the cutoff in time order
    /// ([`PRUNE_BATCH`] at a time, two statements a batch, yielding between
    /// batches), on the partial index `journal_device_by_time` for the
    /// `device/` prefix; so a prune reads what aged past the cutoff since the
    /// last one plus the few entries each actor keeps, never the whole
    /// journal. `prefix` is a kind and a slash (`device/`); anything else
    /// deletes nothing.
    pub async fn prune_journal(&self, prefix: &str, before_ms: u64) -> Result<u64, StoreError> {
        let (bound, delete, aliases) = match self.prune_statements(prefix) {
            Some(sql) => sql,
            None => return Ok(0),
        };
        let before = before_ms.min(i64::MAX as u64) as i64;
        // The keyset cursor: (at_ms, actor_id, seq) of the last entry examined.
        let mut from: (i64, String, i64) = (i64::MIN, String::new(), i64::MIN);
        let mut deleted = 0;
        loop {
            // Where this batch ends: the PRUNE_BATCH-th entry past the cursor,
            // or (none left) the cutoff itself.
            let to: Option<(i64, String, i64)> = with_pool!(self, pool => sqlx::query(&bound)
                .bind(before)
                .bind(from.0)
                .bind(&from.1)
                .bind(from.2)
                .fetch_optional(pool)
                .await
                .and_then(|r| r.map(|r| Ok((r.try_get("at_ms")?, r.try_get("actor_id")?, r.try_get("seq")?))).transpose()))?;
            let last = to.is_none();
            let to = to.unwrap_or((before, String::new(), i64::MIN));
            deleted += with_pool!(self, pool => sqlx::query(&delete)
                .bind(before)
                .bind(from.0)
                .bind(&from.1)
                .bind(from.2)
                .bind(to.0)
                .bind(&to.1)
                .bind(to.2)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()))?;
            if last {
                // The aliases of the entries gone (on the index by time;
                // an entry kept keeps its aliases).
                with_pool!(self, pool => sqlx::query(&aliases)
                    .bind(before)
                    .execute(pool)
                    .await
                    .map(|_| ()))?;
                return Ok(deleted);
            }
            from = to;
            // Let the node's other work (appends on this pool) through.
            tokio::task::yield_now().await;
        }
    }

    /// The query plans of a retention batch's two statements for `prefix`
    /// (SQLite's `EXPLAIN QUERY PLAN`, PostgreSQL's `EXPLAIN` with
    /// sequential scans disabled for the transaction, so that a small table
    /// shows whether an index can serve the statement), one line a step:
    /// how tests check that retention is indexed.
    #[doc(hidden)]
    pub async fn prune_plans(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let Some((bound, delete, _)) = self.prune_statements(prefix) else {
            return Ok(Vec::new());
        };
        let mut lines = Vec::new();
        for sql in [bound, delete] {
            let deletes = sql.starts_with("DELETE");
            match &*self.db {
                super::Db::Sqlite(pool) => {
                    let text = format!("EXPLAIN QUERY PLAN {sql}");
                    let mut q = sqlx::query(&text)
                        .bind(0_i64)
                        .bind(0_i64)
                        .bind("")
                        .bind(0_i64);
                    if deletes {
                        q = q.bind(0_i64).bind("").bind(0_i64);
                    }
                    for r in q.fetch_all(pool).await? {
                        lines.push(r.try_get::<String, _>("detail")?);
                    }
                }
                super::Db::Postgres(pool) => {
                    let mut tx = pool.begin().await?;
                    sqlx::query("SET LOCAL enable_seqscan = off")
                        .execute(&mut *tx)
                        .await?;
                    let text = format!("EXPLAIN {sql}");
                    let mut q = sqlx::query(&text)
                        .bind(0_i64)
                        .bind(0_i64)
                        .bind("")
                        .bind(0_i64);
                    if deletes {
                        q = q.bind(0_i64).bind("").bind(0_i64);
                    }
                    for r in q.fetch_all(&mut *tx).await? {
                        lines.push(r.try_get::<String, _>(0)?);
                    }
                    tx.rollback().await?;
                }
            }
        }
        Ok(lines)
    }

    /// The two statements of a retention batch for `prefix`: the end of the
    /// batch, and the delete within it. The prefix's bounds are literals (a
    /// partial index is used only by a query whose WHERE implies its own),
    /// hence the strict check of `prefix`.
    fn prune_statements(&self, prefix: &str) -> Option<(String, String, String)> {
        let kind = prefix.strip_suffix('/')?;
        if kind.is_empty()
            || !kind
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return None;
        }
        // Keys from `prefix` up to (not including) the kind followed by '0',
        // the character after '/': every key that starts with `prefix`,
        // compared bytewise (`COLLATE "C"`: a locale collation would ignore
        // the '/').
        let pg = self.backend() == "postgres";
        let (range, p) = if pg {
            (
                format!(
                    "actor_id COLLATE \"C\" >= '{kind}/' AND actor_id COLLATE \"C\" < '{kind}0'"
                ),
                ["$1", "$2", "$3", "$4", "$5", "$6", "$7"],
            )
        } else {
            (
                format!("actor_id >= '{kind}/' AND actor_id < '{kind}0'"),
                ["?1", "?2", "?3", "?4", "?5", "?6", "?7"],
            )
        };
        let bound = format!(
            "SELECT at_ms, actor_id, seq FROM journal WHERE {range} AND at_ms < {} \
             AND (at_ms, actor_id, seq) > ({}, {}, {}) \
             ORDER BY at_ms, actor_id, seq LIMIT 1 OFFSET {}",
            p[0],
            p[1],
            p[2],
            p[3],
            PRUNE_BATCH - 1
        );
        // An actor's latest entry stays (its sequence is what the next append
        // continues from), and so does everything after its latest snapshot
        // (what its recovery replays).
        let delete = format!(
            "DELETE FROM journal WHERE {range} AND at_ms < {} \
             AND (at_ms, actor_id, seq) > ({}, {}, {}) AND (at_ms, actor_id, seq) <= ({}, {}, {}) \
             AND seq < (SELECT MAX(j.seq) FROM journal j WHERE j.actor_id = journal.actor_id) \
             AND seq <= COALESCE((SELECT s.seq FROM snapshots s WHERE s.actor_id = journal.actor_id), 0)",
            p[0], p[1], p[2], p[3], p[4], p[5], p[6]
        );
        let aliases = format!(
            "DELETE FROM journal_aliases WHERE at_ms < {} AND {range} \
             AND NOT EXISTS (SELECT 1 FROM journal j \
                 WHERE j.actor_id = journal_aliases.actor_id AND j.seq = journal_aliases.seq)",
            p[0]
        );
        Some((bound, delete, aliases))
    }

    /// Stores `actor`'s snapshot at `seq`, unless a newer one is stored (one at
    /// the same sequence is replaced: state that timers changed since, such as
    /// a device's alarms, is not in the journal).
    pub async fn save_snapshot(
        &self,
        actor: &str,
        seq: u64,
        payload: &[u8],
    ) -> Result<(), StoreError> {
        let save = self.dialect(SNAPSHOT_PG, SNAPSHOT_SQLITE);
        let payload = self.seal_blob(&super::sealed::ad("snapshots", actor, None), payload);
        with_pool!(self, pool => sqlx::query(save)
            .bind(actor)
            .bind(seq as i64)
            .bind(payload)
            .bind(unix_ms() as i64)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// `actor`'s latest snapshot.
    pub async fn snapshot(&self, actor: &str) -> Result<Option<Snapshot>, StoreError> {
        let load = self.dialect(LOAD_SNAPSHOT_PG, LOAD_SNAPSHOT_SQLITE);
        let snapshot = with_pool!(self, pool => sqlx::query(load)
        .bind(actor)
        .fetch_optional(pool)
        .await
        .and_then(|row| row.map(|row| snapshot_row!(&row)).transpose()))?;
        match snapshot {
            Some(s) => Ok(Some(self.opened_snapshot(actor, s).await?)),
            None => Ok(None),
        }
    }

    /// `actor`'s snapshot as read, its payload opened.
    pub(crate) async fn opened_snapshot(
        &self,
        actor: &str,
        mut snapshot: Snapshot,
    ) -> Result<Snapshot, StoreError> {
        let ad = super::sealed::ad("snapshots", actor, None);
        snapshot.payload = self.open_blob(&ad, snapshot.payload).await?;
        Ok(snapshot)
    }
}
