//! Group commit: one writer per database commits journal appends, the
//! statements that project them, and audit entries, from every caller of the
//! node, in one transaction per round.
//!
//! A caller queues its write and waits; the first caller to find no writer
//! at work becomes the writer (a task of its own, so the round is written
//! even if that caller stops waiting). A round takes what waits (up to
//! [`MAX_BATCH`]) and commits it in one transaction, so a durable commit
//! (SQLite's fsync at `synchronous=FULL`, PostgreSQL's WAL flush) is paid
//! once per round, not once per write. Each caller is answered only after
//! its round committed.
//!
//! Each append keeps its own checks, made by the database inside the round:
//! the sequence it states follows its actor's last, its message id is new,
//! and (fenced) its shard's epoch is the writer's. One that fails them
//! inserts nothing (a conditional `INSERT … SELECT … ON CONFLICT DO NOTHING`,
//! which raises no error, so a PostgreSQL transaction is never aborted by
//! it), and is answered with its own outcome (duplicate, conflict, fenced),
//! while the others commit. Statements to run with an append ([`Then`]: the
//! projection of what it records) run only if it was written. Audit entries
//! of the round are chained after one move of the head row (see
//! [`super::audit`]), each hashed under the key of the store that queued it;
//! an append may carry the entry of the access it is the effect of
//! ([`super::audit::PendingAudit`]), written in its round whatever the
//! append's outcome, so the effect is never durable without its entry.
//! A round the database refuses as a whole (an unexpected error) is retried
//! one write per transaction, so that one bad write fails alone.
//!
//! The writer knows no actor and no request: what it commits is opaque
//! statements and bytes; payloads are sealed before they are queued.

use sqlx::Row;

use super::audit::{chain_hash, AuditEntry, HEAD_PG, HEAD_SQLITE, INSERT_ROWS};
use super::audit::{SET_HEAD_PG, SET_HEAD_SQLITE};
use super::cluster::{EPOCH_PG, EPOCH_SQLITE};
use super::{with_pool, Store, StoreError};
use crate::crypto::AuditKey;

/// Writes committed in one transaction at most.
pub const MAX_BATCH: usize = 256;

/// A value bound to a statement that travels with a write.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(i64),
    OptInt(Option<i64>),
    Text(String),
    OptText(Option<String>),
    Real(f64),
    OptBlob(Option<Vec<u8>>),
}

/// One statement with its values (placeholders of the store's dialect).
#[derive(Debug, Clone)]
pub(crate) struct Stmt {
    pub(crate) sql: String,
    pub(crate) args: Vec<Arg>,
}

/// Statements to run in the same transaction as an append, and only if the
/// append is written: the projection of what it records (built by the store,
/// e.g. [`Store::consult_projection`]). Idempotent statements, so that a
/// replay writing them again changes nothing.
#[derive(Debug, Clone, Default)]
pub struct Then(pub(crate) Vec<Stmt>);

impl Then {
    /// Nothing more than the append.
    pub fn nothing() -> Then {
        Then::default()
    }
}

/// A journal append as queued (its payload sealed already).
pub(crate) struct AppendOp {
    pub(crate) actor: String,
    pub(crate) seq: i64,
    pub(crate) message_id: String,
    pub(crate) epoch: i64,
    pub(crate) payload: Vec<u8>,
    pub(crate) at_ms: i64,
    /// The shard whose epoch must be `epoch` (fenced appends).
    pub(crate) shard: Option<i32>,
    pub(crate) then: Then,
    /// The audit entry of the access this append is the effect of (and the
    /// key of the store that queued it): written in the round whatever the
    /// append's outcome.
    pub(crate) audit: Option<(AuditEntry, AuditKey)>,
}

/// What a round found for an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AppendOutcome {
    Written,
    /// Its message id is in the journal already, at this sequence.
    Known(u64),
    /// Not written and its message id is new: its sequence is taken or not
    /// next, or (fenced) its shard's epoch, given here, is another one.
    Refused {
        shard_epoch: Option<u64>,
    },
}

pub(crate) enum Op {
    Append(AppendOp),
    /// An entry and the key of the store that queued it.
    Audit(AuditEntry, AuditKey),
    /// Statements of a projection outside any append (derived rows a
    /// journal entry implies, or a projection catching up): idempotent, so
    /// they commit with the round instead of in a transaction of their own,
    /// which on SQLite would be one more fsync and one more taker of the
    /// database's one write lock.
    Project(Then),
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Reply {
    Append(AppendOutcome),
    /// The entry's sequence in the chain.
    Audit(u64),
    Projected,
}

type Waiting = (Op, tokio::sync::oneshot::Sender<Result<Reply, String>>);

/// Writes waiting for the next round, and whether a writer is at work.
#[derive(Default)]
pub(crate) struct Queue {
    waiting: std::sync::Mutex<Vec<Waiting>>,
    writing: std::sync::atomic::AtomicBool,
    /// Rounds committed so far (tests check what went together).
    rounds: std::sync::atomic::AtomicU64,
    /// Makes the writer panic at its next round (the unit test of
    /// [`Store::write_while_waiting`]).
    #[cfg(test)]
    panic_next: std::sync::atomic::AtomicBool,
}

impl Queue {
    fn take(&self) -> Vec<Waiting> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let n = waiting.len().min(MAX_BATCH);
        waiting.drain(..n).collect()
    }

    fn is_empty(&self) -> bool {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Becomes the writer unless one is at work.
    fn claim(&self) -> bool {
        !self.writing.swap(true, std::sync::atomic::Ordering::AcqRel)
    }
}

/// Binds a [`Stmt`]'s values to a query of either database.
macro_rules! bound {
    ($stmt:expr) => {{
        let stmt: &Stmt = $stmt;
        let mut q = sqlx::query(&stmt.sql);
        for a in &stmt.args {
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
    }};
}

/// The statement appending `rows` journal entries, each written only if its
/// message is new and its `seq` follows its actor's last entry, and (when it
/// names a shard) only while its epoch is that shard's current one. A row
/// that fails its checks, or that a writer racing from another transaction
/// took first, inserts nothing rather than failing the round (`ON CONFLICT
/// DO NOTHING` raises no error, so a PostgreSQL transaction is never
/// aborted by it). Returns the actor of each row written: the rows of one
/// statement are of different actors ([`pieces`]), and each row's checks
/// see the journal as it was before the statement.
///
/// On PostgreSQL the shard row is share-locked, so a claim waits for the
/// round in flight and an append after a claim sees the new epoch.
fn insert_rows(postgres: bool, rows: usize) -> String {
    const COLUMNS: usize = 7;
    let mut sql = String::with_capacity(400 + rows * 40);
    sql.push_str(
        "INSERT INTO journal (actor_id, seq, message_id, epoch, payload, at_ms) \
         SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6 FROM (VALUES ",
    );
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for col in 0..COLUMNS {
            if col > 0 {
                sql.push_str(", ");
            }
            if postgres {
                sql.push_str(&format!("${}", row * COLUMNS + col + 1));
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    sql.push_str(
        ") AS v \
         WHERE NOT EXISTS (SELECT 1 FROM journal j WHERE j.actor_id = v.column1 AND j.message_id = v.column3) \
         AND (SELECT COALESCE(MAX(j.seq), 0) FROM journal j WHERE j.actor_id = v.column1) = v.column2 - 1 \
         AND (v.column7 IS NULL OR EXISTS (SELECT 1 FROM shard_owners o \
              WHERE o.shard = v.column7 AND o.epoch = v.column4",
    );
    sql.push_str(if postgres { " FOR SHARE)) " } else { ")) " });
    sql.push_str("ON CONFLICT DO NOTHING RETURNING actor_id");
    sql
}

/// [`insert_rows`] of `rows` (a power of two up to [`MAX_BATCH`], see
/// [`chunked`]), built once per process rather than once per round.
fn insert_statement(postgres: bool, rows: usize) -> &'static str {
    const SIZES: usize = MAX_BATCH.ilog2() as usize + 1;
    static TEXTS: [[std::sync::OnceLock<String>; SIZES]; 2] =
        [const { [const { std::sync::OnceLock::new() }; SIZES] }; 2];
    debug_assert!(rows.is_power_of_two() && rows <= MAX_BATCH);
    TEXTS[usize::from(postgres)][rows.ilog2() as usize].get_or_init(|| insert_rows(postgres, rows))
}

/// A round's writes in the order they are committed.
#[derive(Debug, PartialEq)]
enum Piece {
    /// Appends (indexes into the round) of different actors, in one
    /// statement per chunk ([`chunked`]).
    Appends(Vec<usize>),
    /// A projection's statements (its index in the round).
    Project(usize),
}

/// Splits a round into pieces, in order: a run of appends ends where an
/// actor comes again (its second append must see its first) or where a
/// projection comes (which may read what the appends before it wrote).
fn pieces(ops: &[&Op]) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut run: Vec<usize> = Vec::new();
    let mut actors = std::collections::HashSet::new();
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Append(a) => {
                if !actors.insert(a.actor.as_str()) {
                    pieces.push(Piece::Appends(std::mem::take(&mut run)));
                    actors.clear();
                    actors.insert(a.actor.as_str());
                }
                run.push(i);
            }
            Op::Project(_) => {
                if !run.is_empty() {
                    pieces.push(Piece::Appends(std::mem::take(&mut run)));
                    actors.clear();
                }
                pieces.push(Piece::Project(i));
            }
            Op::Audit(..) => {}
        }
    }
    if !run.is_empty() {
        pieces.push(Piece::Appends(run));
    }
    pieces
}

/// `at` in chunks of a power of two rows, largest first: the few statement
/// texts this makes ([`insert_rows`] of 1, 2, 4, … [`MAX_BATCH`] rows) stay
/// prepared in each connection's statement cache.
fn chunked(at: &[usize]) -> Vec<&[usize]> {
    let mut chunks = Vec::new();
    let mut rest = at;
    while !rest.is_empty() {
        let size = 1 << rest.len().ilog2();
        let (chunk, tail) = rest.split_at(size);
        chunks.push(chunk);
        rest = tail;
    }
    chunks
}

/// Where a message id went in an actor's journal (also the journal's own
/// lookup, [`Store::message_seq`]).
pub(super) const FIND_PG: &str = "SELECT seq FROM journal WHERE actor_id = $1 AND message_id = $2";
pub(super) const FIND_SQLITE: &str =
    "SELECT seq FROM journal WHERE actor_id = ?1 AND message_id = ?2";

/// The runtime the writers run on: a thread of its own for the process.
///
/// A round is a chain of statements, each a round trip to the database
/// (SQLite's worker thread, or PostgreSQL), and the round holds the
/// database's write lock (SQLite) or the audit head (both) from its first
/// statement to its commit. On the caller's runtime (an actix arbiter, one
/// thread shared with the actors and HTTP handlers there) each step of that
/// chain waited its turn behind whatever else was ready on it; on a thread
/// of its own it waits only for the database.
fn writer_runtime() -> &'static tokio::runtime::Handle {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Handle> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("cardio-writer")
            .build()
            .expect("the store writer's runtime starts");
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("cardio-writer".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .expect("the store writer's thread starts");
        handle
    })
}

impl Store {
    /// Queues `op` for the next round and waits until its round committed
    /// (`Err`: why the round was not, or the writer stopped).
    pub(crate) async fn commit_with_others(&self, op: Op) -> Result<Reply, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let queue = &self.write_queue;
        queue
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((op, tx));
        if queue.claim() {
            // A task of its own: the round is written even if this caller
            // stops waiting.
            let store = self.clone();
            writer_runtime().spawn(async move { store.write_while_waiting().await });
        }
        match rx.await {
            Ok(reply) => reply,
            Err(_) => Err("the writer stopped".into()),
        }
    }

    /// How many writes wait for a round now (for tests).
    #[doc(hidden)]
    pub fn writes_waiting(&self) -> usize {
        self.write_queue
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Whether a writer is at work (for tests).
    #[doc(hidden)]
    pub fn writer_busy(&self) -> bool {
        self.write_queue
            .writing
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// How many rounds this store's writer committed (for tests).
    #[doc(hidden)]
    pub fn rounds_committed(&self) -> u64 {
        self.write_queue
            .rounds
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// [`Self::write_rounds`], in a task of its own, again after a panic:
    /// the callers of the round that panicked are answered "the writer
    /// stopped" (their senders dropped with it), and the writes queued
    /// behind it still get a writer (the queue stays claimed, so without
    /// this no caller would ever start one again).
    async fn write_while_waiting(self) {
        loop {
            let store = self.clone();
            match writer_runtime()
                .spawn(async move { store.write_rounds().await })
                .await
            {
                Ok(()) => return,
                Err(e) if e.is_panic() => {
                    tracing::error!(
                        "the store's writer panicked; its round failed, the next rounds go on"
                    );
                }
                // The runtime is shutting down.
                Err(_) => return,
            }
        }
    }

    /// Writes what waits, round after round, until nothing does.
    async fn write_rounds(&self) {
        let queue = &self.write_queue;
        loop {
            let round = queue.take();
            if round.is_empty() {
                queue
                    .writing
                    .store(false, std::sync::atomic::Ordering::Release);
                // A write queued after the take but before the release saw a
                // writer at work: take it on, unless another did.
                if queue.is_empty() || !queue.claim() {
                    return;
                }
                continue;
            }
            #[cfg(test)]
            if queue
                .panic_next
                .swap(false, std::sync::atomic::Ordering::AcqRel)
            {
                panic!("the writer panics (injected by a test)");
            }
            let ops: Vec<&Op> = round.iter().map(|(op, _)| op).collect();
            let started = std::time::Instant::now();
            let replies = match self.commit_round(&ops).await {
                Ok(replies) => {
                    queue
                        .rounds
                        .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                    replies.into_iter().map(Ok).collect()
                }
                Err(e) if ops.len() > 1 => {
                    // One write may be what the database refuses: each on
                    // its own, so that the others still commit.
                    tracing::warn!(error = %e, writes = ops.len(), "write round refused; writing one by one");
                    let mut replies = Vec::with_capacity(ops.len());
                    for op in &ops {
                        replies.push(match self.commit_round(&[op]).await {
                            Ok(mut r) => Ok(r.remove(0)),
                            Err(e) => Err(e.to_string()),
                        });
                    }
                    replies
                }
                Err(e) => vec![Err(e.to_string())],
            };
            crate::metrics::write_round(ops.len(), started.elapsed());
            for ((_, tx), reply) in round.into_iter().zip(replies) {
                let _ = tx.send(reply);
            }
        }
    }

    /// Commits `ops` in one transaction: the appends in order (each with its
    /// own checks, and its statements if written), then the audit entries
    /// after one move of the chain's head. One reply per op, in order.
    async fn commit_round(&self, ops: &[&Op]) -> Result<Vec<Reply>, StoreError> {
        let (find, epoch_of) = (
            self.dialect(FIND_PG, FIND_SQLITE),
            self.dialect(EPOCH_PG, EPOCH_SQLITE),
        );
        let (head, set_head) = (
            self.dialect(HEAD_PG, HEAD_SQLITE),
            self.dialect(SET_HEAD_PG, SET_HEAD_SQLITE),
        );
        let audits: Vec<(&AuditEntry, &AuditKey)> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Audit(e, k) => Some((e, k)),
                Op::Append(a) => a.audit.as_ref().map(|(e, k)| (e, k)),
                Op::Project(_) => None,
            })
            .collect();
        let pieces = pieces(ops);
        let postgres = self.backend() == "postgres";
        let replies = with_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
            // Per op, what the round found for it (appends only).
            let mut outcome: Vec<Option<AppendOutcome>> = vec![None; ops.len()];
            for piece in &pieces {
                let at = match piece {
                    Piece::Appends(at) => at,
                    Piece::Project(i) => {
                        let Op::Project(then) = ops[*i] else { unreachable!() };
                        for stmt in &then.0 {
                            bound!(stmt).execute(&mut *tx).await?;
                        }
                        continue;
                    }
                };
                // The appends of the piece in one statement per chunk (no
                // actor twice in a piece: each row's checks see the journal
                // as it was before the statement).
                let mut written = std::collections::HashSet::new();
                for chunk in chunked(at) {
                    let mut q = sqlx::query(insert_statement(postgres, chunk.len()));
                    for i in chunk {
                        let Op::Append(a) = ops[*i] else { unreachable!() };
                        q = q
                            .bind(&a.actor)
                            .bind(a.seq)
                            .bind(&a.message_id)
                            .bind(a.epoch)
                            .bind(&a.payload)
                            .bind(a.at_ms)
                            .bind(a.shard);
                    }
                    for row in q.fetch_all(&mut *tx).await? {
                        written.insert(row.try_get::<String, _>("actor_id")?);
                    }
                }
                for i in at {
                    let Op::Append(a) = ops[*i] else { unreachable!() };
                    let found = if written.contains(&a.actor) {
                        for stmt in &a.then.0 {
                            bound!(stmt).execute(&mut *tx).await?;
                        }
                        AppendOutcome::Written
                    } else {
                        let known: Option<i64> = sqlx::query(find)
                            .bind(&a.actor)
                            .bind(&a.message_id)
                            .fetch_optional(&mut *tx)
                            .await?
                            .map(|r| r.try_get("seq"))
                            .transpose()?;
                        match (known, a.shard) {
                            (Some(seq), _) => AppendOutcome::Known(seq as u64),
                            (None, None) => AppendOutcome::Refused { shard_epoch: None },
                            (None, Some(shard)) => {
                                let epoch: Option<i64> = sqlx::query(epoch_of)
                                    .bind(shard)
                                    .fetch_optional(&mut *tx)
                                    .await?
                                    .map(|r| r.try_get("epoch"))
                                    .transpose()?;
                                AppendOutcome::Refused {
                                    shard_epoch: Some(epoch.unwrap_or(0) as u64),
                                }
                            }
                        }
                    };
                    outcome[*i] = Some(found);
                }
            }
            let appended: Vec<AppendOutcome> = outcome.into_iter().flatten().collect();
            let mut first_audit = 0;
            if !audits.is_empty() {
                // Moving the head locks it: rounds chain one after another,
                // across nodes too.
                let row = sqlx::query(head)
                    .bind(audits.len() as i64)
                    .fetch_one(&mut *tx)
                    .await?;
                let last = row.try_get::<i64, _>("seq")? as u64;
                first_audit = last + 1 - audits.len() as u64;
                let mut prev: String = row.try_get("hash")?;
                let mut rows = Vec::with_capacity(audits.len());
                for (i, (entry, key)) in audits.iter().enumerate() {
                    let seq = first_audit + i as u64;
                    let hash = chain_hash(key, &prev, seq, entry);
                    rows.push((seq, *entry, std::mem::replace(&mut prev, hash.clone()), hash));
                }
                let mut insert = sqlx::QueryBuilder::new(INSERT_ROWS);
                insert.push_values(&rows, |mut b, (seq, e, prev, hash)| {
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
                insert.build().execute(&mut *tx).await?;
                sqlx::query(set_head).bind(&prev).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>((appended, first_audit))
        }
        .await);
        let (appended, first_audit) = replies?;
        let (mut appended, mut audit_seq) = (appended.into_iter(), first_audit);
        Ok(ops
            .iter()
            .map(|op| match op {
                Op::Append(a) => {
                    // Its entry took the next place in the chain.
                    audit_seq += u64::from(a.audit.is_some());
                    Reply::Append(appended.next().expect("one outcome per append"))
                }
                Op::Audit(..) => {
                    audit_seq += 1;
                    Reply::Audit(audit_seq - 1)
                }
                Op::Project(_) => Reply::Projected,
            })
            .collect())
    }

    /// Commits `then`'s statements (a projection outside any append: one
    /// catching up, or rows derived from an entry already journaled) in the
    /// next round; returns once they are durable.
    pub(crate) async fn run_then(&self, then: Then) -> Result<(), StoreError> {
        if then.0.is_empty() {
            return Ok(());
        }
        match self.commit_with_others(Op::Project(then)).await {
            Ok(Reply::Projected) => Ok(()),
            Ok(_) => Err(StoreError::Batch(
                "a projection got another write's reply".into(),
            )),
            Err(e) => Err(StoreError::Batch(e)),
        }
    }
}

impl Store {
    /// Appends `entry` to the audit chain (see [`super::audit`]); returns its
    /// sequence once durable, committed in the store's next write round.
    pub async fn audit(&self, entry: &AuditEntry) -> Result<u64, StoreError> {
        let op = Op::Audit(entry.clone(), self.audit_key.clone());
        match self.commit_with_others(op).await {
            Ok(Reply::Audit(seq)) => Ok(seq),
            Ok(Reply::Append(_) | Reply::Projected) => Err(StoreError::Audit(
                "the writer answered another write".into(),
            )),
            Err(why) => Err(StoreError::Audit(why)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Release;
    use std::time::Duration;

    use crate::store::{Appended, Store, StoreError};

    #[tokio::test]
    async fn a_writer_that_panics_fails_its_round_and_the_next_rounds_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("w.db").display());
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        store.write_queue.panic_next.store(true, Release);
        let within = |f| tokio::time::timeout(Duration::from_secs(10), f);
        let failed = within(store.append("device/d-1", 0, "m-1", 0, b"{}"))
            .await
            .expect("the panicked round's caller answered");
        assert!(matches!(failed, Err(StoreError::Batch(_))), "{failed:?}");
        let next = within(store.append("device/d-1", 0, "m-1", 0, b"{}"))
            .await
            .expect("a write after the panic got no writer");
        assert_eq!(next.unwrap(), Appended::Written { seq: 1 });
        // The writer (on its own thread) lets go once nothing waits.
        tokio::time::timeout(Duration::from_secs(10), async {
            while store.writer_busy() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the writer let go");
    }

    fn append(actor: &str) -> super::Op {
        super::Op::Append(super::AppendOp {
            actor: actor.into(),
            seq: 1,
            message_id: "m".into(),
            epoch: 0,
            payload: Vec::new(),
            at_ms: 0,
            shard: None,
            then: super::Then::nothing(),
            audit: None,
        })
    }

    #[test]
    fn a_round_splits_where_an_actor_comes_again_or_a_projection_comes() {
        use super::{pieces, Op, Piece, Then};
        let ops = [
            append("a"),
            append("b"),
            append("a"),
            append("c"),
            Op::Project(Then::nothing()),
            append("c"),
            append("d"),
        ];
        let ops: Vec<&Op> = ops.iter().collect();
        assert_eq!(
            pieces(&ops),
            [
                Piece::Appends(vec![0, 1]),
                Piece::Appends(vec![2, 3]),
                Piece::Project(4),
                Piece::Appends(vec![5, 6]),
            ]
        );
    }

    #[test]
    fn appends_go_in_chunks_of_a_power_of_two_largest_first() {
        let at: Vec<usize> = (0..25).collect();
        let sizes: Vec<usize> = super::chunked(&at).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [16, 8, 1]);
        assert_eq!(super::chunked(&at).concat(), at);
        assert!(super::chunked(&[]).is_empty());
    }

    #[test]
    fn the_rows_statement_has_one_placeholder_per_value() {
        let pg = super::insert_rows(true, 3);
        assert!(pg.contains("($15, $16, $17, $18, $19, $20, $21)") && !pg.contains("$22"));
        assert!(pg.contains("FOR SHARE"));
        let sqlite = super::insert_rows(false, 3);
        assert_eq!(sqlite.matches('?').count(), 21);
        assert!(!sqlite.contains("FOR SHARE"));
    }
}
