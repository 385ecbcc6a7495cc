//! Group commit: one writer per database commits journal appends, the
//! statements that project them, and audit entries, from every caller of the
//! node, in one transaction per round.
//!
//! A caller queues its write and waits ([`super::batches`]); the first
//! caller to find no writer at work becomes the writer (a task of its own,
//! so the round is written even if that caller stops waiting). A round takes what waits (up to
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
//! The rounds run on the writer's runtime ([`writer_runtime`]): on
//! PostgreSQL as a task, through the pool; on SQLite on a blocking thread,
//! through the writer's own connection ([`tx`]), so that a round's
//! statements are calls into SQLite rather than round trips to sqlx's
//! connection thread.
//!
//! The writer knows no actor and no request: what it commits is opaque
//! statements and bytes; payloads are sealed before they are queued.

mod round;
mod tx;

pub(crate) use tx::SqliteTarget;

use super::audit::AuditEntry;
use super::batches::Batches;
use super::{Db, Store, StoreError};
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
    /// The audit entries of the accesses this append is the effect of (and
    /// the key of the store that queued them; several when a device stream
    /// coalesced pushes): written in the round whatever the append's outcome.
    pub(crate) audit: Vec<(AuditEntry, AuditKey)>,
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

/// Writes waiting for the next round, and whether a writer is at work.
pub(crate) struct Queue {
    batches: Batches<Op, Result<Reply, String>>,
    /// The SQLite database the writer opens its own connection to (none on
    /// PostgreSQL), and that connection once open.
    sqlite_target: Option<SqliteTarget>,
    sqlite: std::sync::Mutex<Option<rusqlite::Connection>>,
    /// Rounds committed so far (tests check what went together).
    rounds: std::sync::atomic::AtomicU64,
    /// Set by [`Store::close`]: no write is taken any more.
    closed: std::sync::atomic::AtomicBool,
    /// Makes the writer panic at its next round (the unit test of
    /// [`Store::write_while_waiting`]).
    #[cfg(test)]
    panic_next: std::sync::atomic::AtomicBool,
}

impl Queue {
    /// The queue of a store on `sqlite` (`None`: on PostgreSQL).
    pub(crate) fn new(sqlite: Option<SqliteTarget>) -> Queue {
        Queue {
            batches: Batches::new(MAX_BATCH),
            sqlite_target: sqlite,
            sqlite: std::sync::Mutex::default(),
            rounds: std::sync::atomic::AtomicU64::default(),
            closed: std::sync::atomic::AtomicBool::default(),
            #[cfg(test)]
            panic_next: std::sync::atomic::AtomicBool::default(),
        }
    }
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
        let (rx, claimed) = self.write_queue.batches.push(op);
        if claimed {
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
        self.write_queue.batches.len()
    }

    /// Whether a writer is at work (for tests).
    #[doc(hidden)]
    pub fn writer_busy(&self) -> bool {
        self.write_queue.batches.busy()
    }

    /// How many rounds this store's writer committed (for tests).
    #[doc(hidden)]
    pub fn rounds_committed(&self) -> u64 {
        self.write_queue
            .rounds
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Writes rounds until nothing waits, again after a panic: the callers
    /// of the round that panicked are answered "the writer stopped" (their
    /// senders dropped with it), and the writes queued behind it still get
    /// a writer (the queue stays claimed, so without this no caller would
    /// ever start one again).
    ///
    /// PostgreSQL's rounds run as a task of the writer's runtime; SQLite's
    /// on a blocking thread of it, through the writer's own connection
    /// ([`tx`]).
    async fn write_while_waiting(self) {
        loop {
            let store = self.clone();
            let ran = match &*self.db {
                Db::Postgres(_) => {
                    writer_runtime()
                        .spawn(async move { store.write_rounds_postgres().await })
                        .await
                }
                Db::Sqlite(_) => {
                    writer_runtime()
                        .spawn_blocking(move || store.write_rounds_sqlite())
                        .await
                }
            };
            match ran {
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

    async fn write_rounds_postgres(&self) {
        let Db::Postgres(pool) = &*self.db else {
            unreachable!("a PostgreSQL store")
        };
        // A handle of the pool (an `Arc`): the writer's future holds no
        // borrow of it, so it is `Send` for the runtime.
        self.write_rounds(&mut pool.clone()).await;
    }

    /// The SQLite writer's rounds, on this (blocking) thread: its statements
    /// are calls into SQLite here, not round trips to a connection's thread.
    fn write_rounds_sqlite(&self) {
        let rt = writer_runtime();
        let mut conn = self
            .write_queue
            .sqlite
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let closed = || {
            self.write_queue
                .closed
                .load(std::sync::atomic::Ordering::Acquire)
        };
        let opened = match conn.as_mut() {
            _ if closed() => Err(StoreError::Batch("the store is closed".into())),
            Some(open) => Ok(open),
            None => match &self.write_queue.sqlite_target {
                Some(target) => target.open().map(|c| conn.insert(c)),
                None => Err(StoreError::Batch("no SQLite file to write".into())),
            },
        };
        match opened {
            Ok(conn) => {
                // A round a panic left open (its transaction's drop rolls
                // back, but make sure).
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                rt.block_on(self.write_rounds(conn));
            }
            Err(e) => {
                if !closed() {
                    tracing::warn!(error = %e, "the store's SQLite writer cannot open its connection");
                }
                rt.block_on(self.write_rounds(&mut tx::Unavailable(e.to_string())));
            }
        }
        // Closed while this run wrote: the connection goes now.
        if closed() {
            conn.take();
        }
    }

    /// Closes the SQLite writer's connection (checkpointing its WAL, as the
    /// pool's last connection does) unless a run of rounds holds it (which
    /// then closes it as it ends); later writes fail as the pool's do.
    pub(crate) fn close_writer(&self) {
        self.write_queue
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        if let Ok(mut conn) = self.write_queue.sqlite.try_lock() {
            conn.take();
        }
    }

    /// Writes what waits, round after round, until nothing does.
    async fn write_rounds<D: tx::Database>(&self, db: &mut D) {
        let queue = &self.write_queue;
        let postgres = self.backend() == "postgres";
        while let Some(round) = queue.batches.next_batch() {
            #[cfg(test)]
            if queue
                .panic_next
                .swap(false, std::sync::atomic::Ordering::AcqRel)
            {
                panic!("the writer panics (injected by a test)");
            }
            let ops: Vec<&Op> = round.iter().map(|(op, _)| op).collect();
            let started = std::time::Instant::now();
            let replies = match round::commit(db, &ops, postgres).await {
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
                        replies.push(match round::commit(db, &[op], postgres).await {
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
        let (_dir, store) = crate::store::test_sqlite().await;
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
        let_go(&store).await;
    }

    #[tokio::test]
    async fn an_in_memory_database_is_the_one_the_writer_writes() {
        // The writer's own connection opens sqlx's shared in-memory database
        // (migrated through the pool): another one would have no journal.
        let store = Store::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        let written = store.append("device/d-1", 0, "m-1", 0, b"{}").await;
        assert_eq!(written.unwrap(), Appended::Written { seq: 1 });
        let events = store.events("device/d-1", 0).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].payload, b"{}");
        // And no file was made for it (sqlx names it `file:sqlx-in-memory-…`).
        let stray = std::fs::read_dir(".")
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().contains("sqlx-in-memory"));
        assert!(!stray, "a file was made for an in-memory database");
    }

    #[tokio::test]
    async fn a_closed_store_s_writer_lets_its_connection_go_and_takes_no_write() {
        let (dir, store) = crate::store::test_sqlite().await;
        let written = store.append("device/d-1", 0, "m-1", 0, b"{}").await;
        assert_eq!(written.unwrap(), Appended::Written { seq: 1 });
        let_go(&store).await;
        assert!(store.write_queue.sqlite.lock().unwrap().is_some());
        store.close().await;
        assert!(store.write_queue.sqlite.lock().unwrap().is_none());
        // The last connection closed checkpointed the WAL and removed it.
        let wal = dir.path().join("cardio.db-wal");
        assert!(!wal.exists(), "the WAL is left after close");
        let after = store.append("device/d-1", 1, "m-2", 0, b"{}").await;
        assert!(matches!(after, Err(StoreError::Batch(_))), "{after:?}");
        assert!(store.write_queue.sqlite.lock().unwrap().is_none());
    }

    /// Waits (at most 10 s) until the writer, on its own thread, lets go
    /// once nothing waits.
    async fn let_go(store: &Store) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while store.writer_busy() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the writer let go");
    }

    /// A pragma's value on a connection of the writer's, as text.
    fn get(conn: &rusqlite::Connection, pragma: &str) -> String {
        conn.query_row(&format!("PRAGMA {pragma}"), [], |r| {
            Ok(match r.get_ref(0)? {
                rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into(),
                v => v.as_i64()?.to_string(),
            })
        })
        .unwrap()
    }

    #[tokio::test]
    async fn the_writer_s_connection_is_set_as_the_pool_s() {
        let (_dir, store) = crate::store::test_sqlite().await;
        let pool = store.sqlite_pool();
        let target = store.write_queue.sqlite_target.as_ref().unwrap();
        let writer = target.open().unwrap();
        // Every pragma the store sets, and the busy timeout (set apart).
        let pragmas = crate::store::SQLITE_PRAGMAS.map(|(name, _)| name);
        for pragma in pragmas.into_iter().chain(["busy_timeout"]) {
            let sql = format!("PRAGMA {pragma}");
            let row = sqlx::query(&sql).fetch_one(pool).await.unwrap();
            let of_pool = {
                use sqlx::Row;
                row.try_get::<i64, _>(0)
                    .map(|v| v.to_string())
                    .or_else(|_| row.try_get::<String, _>(0))
                    .unwrap()
            };
            assert_eq!(get(&writer, pragma), of_pool, "{pragma}");
        }
        // And they are what the store asks for.
        let get = |p: &str| get(&writer, p);
        assert_eq!(get("journal_mode"), "wal");
        assert_eq!(get("synchronous"), "2", "FULL");
        assert_eq!(get("secure_delete"), "1");
        assert_eq!(get("temp_store"), "2", "MEMORY");
        assert_eq!(get("wal_autocheckpoint"), "10000");
        assert_eq!(get("busy_timeout"), "5000");
    }
}
