//! Persistence: the only module that talks SQL.
//!
//! One [`Store`] over either database, chosen by URL: an embedded SQLite file
//! (`sqlite://data/cardio.db`, the default, created on first run) or PostgreSQL
//! (`postgres://…`) for production. Queries are runtime-checked `sqlx::query`
//! strings, one per dialect, behind typed methods: no `DATABASE_URL` is needed
//! to build, and each method is tested against both databases. Migrations are
//! embedded per database (`migrations/sqlite`, `migrations/postgres`).
//!
//! Errors never carry payloads; payloads are opaque bytes here. Ids sort
//! bytewise on both databases (`COLLATE "C"` on PostgreSQL, SQLite's default).

pub mod access;
pub mod audit;
mod batches;
pub mod cluster;
pub mod consults;
pub mod journal;
mod lookups;
pub mod monitoring;
pub mod people;
pub mod sealed;
pub mod secrets;
pub mod starts;
pub mod vitals;
pub mod writer;

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

pub use journal::{Appended, Event, Snapshot};
pub use vitals::AlertRecord;

/// Why the store could not do something.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL scheme {0:?}: use sqlite://… or postgres://…")]
    Unsupported(String),
    #[error("cannot create the database folder {path}: {source}")]
    Folder {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// An error of the SQLite writer's own connection ([`writer`]).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// Another writer appended to this actor first (or this writer's view of
    /// the actor is stale): its journal moved past `expected`.
    #[error(
        "journal of {} moved on: sequence {expected} is taken",
        crate::redact::pseudonym::actor_key(actor)
    )]
    Conflict { actor: String, expected: u64 },
    /// This node does not hold the actor's shard (any more): another node
    /// took it, so this one must not write.
    #[error("shard {shard} is not held by this node at epoch {held:?}: fenced off")]
    Fenced { shard: u16, held: Option<u64> },
    /// The batch an audit entry was written in failed (or its writer
    /// stopped): the entry is not in the log.
    #[error("audit entry not written: {0}")]
    Audit(String),
    /// The write round an append was in was not committed (or its writer
    /// stopped): nothing of it was written.
    #[error("write round not committed: {0}")]
    Batch(String),
    /// The batch of actor starts a read was in failed (or its reader
    /// stopped): nothing was read.
    #[error("start state not read: {0}")]
    Read(String),
    /// Sealing or opening a PHI value, or a data key, failed (never names
    /// the value).
    #[error("encryption at rest: {0}")]
    Sealing(String),
}

/// The settings of every SQLite connection: the pool's and the writer's own
/// ([`writer`]). WAL; FULL: a commit is on disk before it is acknowledged;
/// `secure_delete`: freed space is zeroed, so a value sealed in place
/// (legacy plaintext) leaves no readable copy in the file. `temp_store`
/// in memory: a statement's journal (the pages a multi-row insert of a
/// write round changes, kept in case it must be undone) and a large sort's
/// rows are never written to temporary files outside the database's 0700
/// folder; it also spares each round's statements creating, writing and
/// deleting such a file (about 5 % of a node's CPU under pushes, issue 15).
/// `wal_autocheckpoint` at 10,000 pages (about 40 MB of WAL) rather than
/// SQLite's 1,000: the checkpoint runs on the committing connection, which
/// is the writer's, so every checkpoint stalls the rounds behind it, and
/// the pages a round dirties (the journal's and the audit chain's last
/// leaves and index pages, the chain's head) are copied back once per
/// checkpoint however often they changed in between. Under pushes on one
/// node the checkpoints took 4 % of the node's CPU, on the writer's thread
/// (issue 15; BENCHMARKS.md). A crash replays at most that much WAL at the
/// next open; what a commit makes durable is unchanged (FULL syncs the WAL
/// at each commit).
pub(crate) const SQLITE_PRAGMAS: [(&str, &str); 6] = [
    ("journal_mode", "WAL"),
    ("synchronous", "FULL"),
    ("foreign_keys", "ON"),
    ("secure_delete", "ON"),
    ("temp_store", "MEMORY"),
    ("wal_autocheckpoint", "10000"),
];

/// How long an SQLite connection waits for another's write lock.
pub(crate) const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A PostgreSQL connection idle this long is checked before it is handed
/// out (see [`Store::connect`]).
const PG_CHECK_IDLE: Duration = Duration::from_secs(1);

pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A connection pool to cardio's database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: std::sync::Arc<Db>,
    /// Set on cluster nodes: journal writes are conditional on the epoch of
    /// the writer's shard.
    fence: Option<std::sync::Arc<crate::shards::Fence>>,
    /// Journal appends and audit entries waiting for the next group commit
    /// (one queue per database, shared by every clone).
    write_queue: std::sync::Arc<writer::Queue>,
    /// Actor starts waiting to be read together (shared by every clone).
    start_queue: std::sync::Arc<starts::Queue>,
    /// The request path's lookups waiting to be served together (shared by
    /// every clone).
    lookups: std::sync::Arc<lookups::Lookups>,
    /// The data keys PHI is sealed with (none: written in the clear, for
    /// tests and tools; a node always has keys).
    keyring: Option<std::sync::Arc<crate::crypto::Keyring>>,
    /// The key of the audit chain ([`crate::crypto::AuditKey::unkeyed`]
    /// without a key provider).
    audit_key: crate::crypto::AuditKey,
}

/// Creates the SQLite file 0600 if missing (SQLite creates its -wal and
/// -shm files with the database file's mode), and takes group and other
/// access away from an existing one and its -wal and -shm.
fn private_files(db: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if db.as_os_str().is_empty() {
        return Ok(());
    }
    if !db.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(db)?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let path = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
        if let Ok(meta) = std::fs::metadata(&path) {
            if meta.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    Ok(())
}

/// Whether an `sqlite:` URL names an in-memory database (which sqlx opens
/// shared-cache under a name of its own, the writer's connection too).
fn sqlite_in_memory(url: &str) -> bool {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    database == ":memory:" || params.split('&').any(|p| p == "mode=memory")
}

/// Runs `$body` with `$pool` bound to the concrete pool of either database.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &*$store.db {
            $crate::store::Db::Sqlite($pool) => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// How long a PostgreSQL session of a node may sit idle inside a
/// transaction before the server ends it, rolling the transaction back.
///
/// A node stalled in the middle of a write round (SIGSTOP, a frozen VM, a
/// long GC-like pause) would otherwise keep the round's row locks — its
/// shards' epoch rows (share-locked by fenced appends) and the audit chain's
/// head — for the whole stall: the survivors could not take its shards
/// (their claim waits on the row) and no node could audit an access, so no
/// PHI request anywhere would be answered. The node's own transactions never
/// wait on anything but the database between two statements.
pub const PG_IDLE_IN_TRANSACTION: Duration = Duration::from_secs(2);

/// A node's PostgreSQL connection options: `url`, with the session settings
/// every node connection gets ([`PG_IDLE_IN_TRANSACTION`]).
pub fn pg_options(url: &str) -> Result<sqlx::postgres::PgConnectOptions, StoreError> {
    let options: sqlx::postgres::PgConnectOptions = url.parse()?;
    Ok(options.options([(
        "idle_in_transaction_session_timeout",
        format!("{}ms", PG_IDLE_IN_TRANSACTION.as_millis()),
    )]))
}

impl Store {
    /// Opens the database at `url` (creating an SQLite file and its folder if
    /// needed). Does not migrate: see [`Self::migrate`].
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let scheme = url.split_once(':').map_or(url, |(s, _)| s);
        let mut sqlite_target = None;
        let db = match scheme {
            "sqlite" => {
                let mut options = SqliteConnectOptions::from_str(url)?
                    .create_if_missing(true)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT);
                for (name, value) in SQLITE_PRAGMAS {
                    options = options.pragma(name, value);
                }
                if let Some(folder) = options.get_filename().parent() {
                    if !folder.as_os_str().is_empty() && !Path::new(folder).exists() {
                        // 0700: the database and its key file are the node's alone.
                        std::fs::DirBuilder::new()
                            .recursive(true)
                            .mode(0o700)
                            .create(folder)
                            .map_err(|source| StoreError::Folder {
                                path: folder.display().to_string(),
                                source,
                            })?;
                    }
                }
                let in_memory = sqlite_in_memory(url);
                if !in_memory {
                    private_files(options.get_filename()).map_err(|source| StoreError::Folder {
                        path: options.get_filename().display().to_string(),
                        source,
                    })?;
                }
                sqlite_target = Some(writer::SqliteTarget {
                    filename: options.get_filename().to_path_buf(),
                    in_memory,
                });
                Db::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(4)
                        .acquire_timeout(Duration::from_secs(5))
                        // A file of this process's: its connections do not go
                        // stale, and the ping sqlx makes before handing one
                        // out is a round trip to the connection's thread on
                        // every query (and every write round).
                        .test_before_acquire(false)
                        .connect_with(options)
                        .await?,
                )
            }
            "postgres" | "postgresql" => Db::Postgres(
                PgPoolOptions::new()
                    .max_connections(10)
                    .acquire_timeout(Duration::from_secs(5))
                    // A connection is checked (a round trip) before it is
                    // handed out only if it sat idle for a while, when the
                    // server may have closed it meanwhile; sqlx's default
                    // checks every time, one round trip more per query
                    // (sqlx checks each connection again on release).
                    .test_before_acquire(false)
                    .before_acquire(|conn, meta| {
                        Box::pin(async move {
                            if meta.idle_for >= PG_CHECK_IDLE {
                                sqlx::Connection::ping(conn).await?;
                            }
                            Ok(true)
                        })
                    })
                    .connect_with(pg_options(url)?)
                    .await?,
            ),
            other => return Err(StoreError::Unsupported(other.to_owned())),
        };
        Ok(Store {
            db: std::sync::Arc::new(db),
            fence: None,
            write_queue: std::sync::Arc::new(writer::Queue::new(sqlite_target)),
            start_queue: std::sync::Arc::default(),
            lookups: std::sync::Arc::default(),
            keyring: None,
            audit_key: crate::crypto::AuditKey::unkeyed(),
        })
    }

    /// Connections of the pool: (in use, idle, limit).
    pub fn pool_stats(&self) -> (u32, u32, u32) {
        with_pool!(self, pool => {
            let idle = pool.num_idle() as u32;
            (
                pool.size().saturating_sub(idle),
                idle,
                pool.options().get_max_connections(),
            )
        })
    }

    /// Applies the embedded migrations of this database that are not applied yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &*self.db {
            Db::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await?,
            Db::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// This store with journal writes fenced by `fence`: an append succeeds
    /// only while this node holds the actor's shard at the epoch it claimed.
    pub fn fenced(&self, fence: std::sync::Arc<crate::shards::Fence>) -> Store {
        Store {
            db: std::sync::Arc::clone(&self.db),
            fence: Some(fence),
            write_queue: std::sync::Arc::clone(&self.write_queue),
            start_queue: std::sync::Arc::clone(&self.start_queue),
            lookups: std::sync::Arc::clone(&self.lookups),
            keyring: self.keyring.clone(),
            audit_key: self.audit_key.clone(),
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match &*self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// Whether the database answers now (for readiness).
    pub async fn healthy(&self) -> bool {
        with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.is_ok())
    }

    /// Runs one statement that takes no parameters and returns nothing
    /// (administration: creating or dropping databases in tests and tools).
    pub async fn execute_admin(&self, statement: &str) -> Result<(), StoreError> {
        with_pool!(self, pool => sqlx::raw_sql(statement).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Closes the pool, waiting for connections in use, and the SQLite
    /// writer's own connection.
    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await);
        self.close_writer();
    }
}

/// A migrated store on an SQLite file of its own, `cardio.db` in a folder
/// removed when the returned guard drops (the store's unit tests).
#[cfg(test)]
pub(crate) async fn test_sqlite() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cardio.db").display());
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    (dir, store)
}

#[cfg(test)]
impl Store {
    /// The SQLite pool of a store on SQLite (unit tests).
    pub(crate) fn sqlite_pool(&self) -> &SqlitePool {
        match &*self.db {
            Db::Sqlite(pool) => pool,
            Db::Postgres(_) => panic!("a store on SQLite"),
        }
    }
}
