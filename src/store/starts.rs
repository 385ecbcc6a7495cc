//! Actor starts read together: what an actor starts from (its snapshot and
//! the journal after it; for a device stream also its open alerts, its
//! patient and that patient's alarm settings), read for every actor starting
//! at the same time in one batch of statements.
//!
//! A node that takes shards over, or a fleet of devices that connects at
//! once, starts hundreds of actors within a second. Read one by one, each
//! start is five or more statements, each taking a pool connection in turn;
//! the burst holds the pool for as long as it lasts, and the write rounds of
//! the actors already running wait behind it. Here the first start to find
//! no reader at work becomes the reader (a task of its own, so the batch is
//! read even if that caller stops waiting): it takes every start queued (up
//! to [`MAX_STARTS`]) and reads them with four statements on one connection,
//! whatever their number. A start alone is read at once, with no wait.
//!
//! The journal is read after the snapshots, from the sequence of the
//! snapshot just read, so a snapshot saved meanwhile cannot hide entries.
//! Values come back as stored (sealed); each caller opens its own, on its
//! own task.

use std::collections::HashMap;

use sqlx::Row;

use super::batches::{Batches, Claim};
use super::monitoring::StoredAlarmSettings;
use super::vitals::{AlertRecord, RawAlert};
use super::{Db, Event, Snapshot, Store, StoreError};

/// Starts read in one batch at most.
pub const MAX_STARTS: usize = 256;

/// What an actor starts from.
#[derive(Debug, Clone, Default)]
pub struct ActorStart {
    /// Its latest snapshot, opened.
    pub snapshot: Option<Snapshot>,
    /// Its journal after that snapshot (all of it without one), in order,
    /// opened.
    pub tail: Vec<Event>,
}

/// What a device stream starts from.
#[derive(Debug, Clone, Default)]
pub struct DeviceStart {
    pub actor: ActorStart,
    /// The device's alerts not resolved in the store, oldest first.
    pub open_alerts: Vec<AlertRecord>,
    /// The device's patient (`None`: the device is not registered).
    pub patient: Option<String>,
    /// That patient's stored alarm settings, opened.
    pub settings: Option<StoredAlarmSettings>,
}

/// Why a start could not be read: which part (what an actor crashing on it
/// says, naming no value) and the store's error.
#[derive(Debug)]
pub struct StartError {
    pub what: &'static str,
    pub error: StoreError,
}

/// The parts of a start, as [`StartError::what`] names them.
pub const CONNECTION: &str = "actor start state unreadable";
pub const SNAPSHOT: &str = "actor snapshot unreadable";
pub const JOURNAL: &str = "actor journal unreadable";
pub const ALERTS: &str = "alerts unreadable";
pub const DEVICE: &str = "device or alarm settings unreadable";

/// Tags a database error with the part it failed.
fn tag(what: &'static str) -> impl Fn(sqlx::Error) -> StartError {
    move |e| StartError {
        what,
        error: StoreError::Database(e),
    }
}

fn tagged(what: &'static str) -> impl Fn(StoreError) -> StartError {
    move |error| StartError { what, error }
}

/// A start to read: an actor's journal key, and the device id of a stream.
struct Want {
    actor: String,
    device: Option<String>,
}

/// One start as read, sealed.
#[derive(Clone, Default)]
struct Raw {
    snapshot: Option<Snapshot>,
    tail: Vec<Event>,
    alerts: Vec<RawAlert>,
    patient: Option<String>,
    settings: Option<StoredAlarmSettings>,
}

type Waiting = super::batches::Waiting<Want, Result<Raw, (&'static str, String)>>;

/// Starts waiting for the next batch, and whether a reader is at work.
pub(crate) struct Queue {
    batches: Batches<Want, Result<Raw, (&'static str, String)>>,
}

impl Default for Queue {
    fn default() -> Queue {
        Queue {
            batches: Batches::new(MAX_STARTS),
        }
    }
}

const SNAPSHOTS_PG: &str = "SELECT actor_id, seq, payload FROM snapshots WHERE actor_id = ANY($1)";
const SNAPSHOTS_SQLITE: &str = "SELECT actor_id, seq, payload FROM snapshots \
     WHERE actor_id IN (SELECT value FROM json_each(?1))";
// LATERAL: one primary-key range per actor, whatever the planner thinks of
// the journal's size.
const TAILS_PG: &str = "SELECT j.actor_id, j.seq, j.message_id, j.epoch, j.payload, j.at_ms \
     FROM unnest($1::text[], $2::bigint[]) AS w(actor_id, after_seq) \
     CROSS JOIN LATERAL (SELECT * FROM journal WHERE actor_id = w.actor_id AND seq > w.after_seq \
     ORDER BY seq) j ORDER BY j.actor_id, j.seq";
// CROSS JOIN keeps the wanted list outside: one primary-key range per actor.
const TAILS_SQLITE: &str = "SELECT j.actor_id, j.seq, j.message_id, j.epoch, j.payload, j.at_ms \
     FROM json_each(?1) AS w CROSS JOIN journal j \
     ON j.actor_id = json_extract(w.value, '$[0]') AND j.seq > json_extract(w.value, '$[1]') \
     ORDER BY j.actor_id, j.seq";
const DEVICES_PG: &str =
    "SELECT d.id, d.patient_id, s.settings, s.paused_until_ms, s.updated_by, s.updated_ms \
     FROM devices d LEFT JOIN alarm_settings s ON s.patient_id = d.patient_id \
     WHERE d.id = ANY($1)";
const DEVICES_SQLITE: &str =
    "SELECT d.id, d.patient_id, s.settings, s.paused_until_ms, s.updated_by, s.updated_ms \
     FROM devices d LEFT JOIN alarm_settings s ON s.patient_id = d.patient_id \
     WHERE d.id IN (SELECT value FROM json_each(?1))";

fn open_alerts_sql(postgres: bool) -> String {
    let columns = super::vitals::ALERT_COLUMNS;
    if postgres {
        format!(
            "SELECT {columns} FROM alerts WHERE device_id = ANY($1) AND resolved_ms IS NULL \
             ORDER BY raised_ms, id COLLATE \"C\""
        )
    } else {
        format!(
            "SELECT {columns} FROM alerts WHERE device_id IN (SELECT value FROM json_each(?1)) \
             AND resolved_ms IS NULL ORDER BY raised_ms, id"
        )
    }
}

/// Reads the statements of one batch on `conn` (either database's):
/// `list` binds a list of ids as one value (an array on PostgreSQL, JSON on
/// SQLite), `tails` binds the actors and the sequences their tails start
/// after, `sql` the dialect's four statements.
macro_rules! read_batch {
    ($conn:expr, $actors:expr, $devices:expr, list = $list:expr, tails = $tails:expr, sql = $sql:expr) => {{
        let conn = $conn;
        let actors: &[&str] = $actors;
        let devices: &[&str] = $devices;
        let (snapshots_sql, alerts_sql, devices_sql): (&str, &str, &str) = $sql;
        let mut out: HashMap<String, Raw> = HashMap::new();
        let snapshots = sqlx::query(snapshots_sql)
            .bind($list(actors))
            .fetch_all(&mut *conn)
            .await
            .map_err(tag(SNAPSHOT))?;
        for row in &snapshots {
            let read = || -> Result<(String, Snapshot), sqlx::Error> {
                Ok((
                    row.try_get("actor_id")?,
                    super::journal::snapshot_row!(row)?,
                ))
            };
            let (actor, snapshot) = read().map_err(tag(SNAPSHOT))?;
            out.entry(actor).or_default().snapshot = Some(snapshot);
        }
        let after: Vec<i64> = actors
            .iter()
            .map(|a| {
                out.get(*a)
                    .and_then(|r| r.snapshot.as_ref())
                    .map_or(0, |s| s.seq as i64)
            })
            .collect();
        let tails = $tails(after)
            .fetch_all(&mut *conn)
            .await
            .map_err(tag(JOURNAL))?;
        for row in &tails {
            let read = || -> Result<(String, Event), sqlx::Error> {
                Ok((row.try_get("actor_id")?, super::journal::event_row!(row)?))
            };
            let (actor, event) = read().map_err(tag(JOURNAL))?;
            out.entry(actor).or_default().tail.push(event);
        }
        // Keyed by device id, apart from the actors' keys.
        let mut by_device: HashMap<String, Raw> = HashMap::new();
        if !devices.is_empty() {
            let alerts = sqlx::query(alerts_sql)
                .bind($list(devices))
                .fetch_all(&mut *conn)
                .await
                .map_err(tag(ALERTS))?;
            for row in &alerts {
                let read = || super::vitals::raw_alert!(row);
                let raw = read().map_err(tag(ALERTS))?;
                by_device
                    .entry(raw.device_id.clone())
                    .or_default()
                    .alerts
                    .push(raw);
            }
            let registered = sqlx::query(devices_sql)
                .bind($list(devices))
                .fetch_all(&mut *conn)
                .await
                .map_err(tag(DEVICE))?;
            for row in &registered {
                let read =
                    || -> Result<(String, String, Option<StoredAlarmSettings>), sqlx::Error> {
                        // No settings row joined: its NOT NULL columns are NULL.
                        let joined = row.try_get::<Option<String>, _>("updated_by")?.is_some();
                        let settings = if joined {
                            Some(super::monitoring::settings_row!(row)?)
                        } else {
                            None
                        };
                        Ok((row.try_get("id")?, row.try_get("patient_id")?, settings))
                    };
                let (device, patient, settings) = read().map_err(tag(DEVICE))?;
                let entry = by_device.entry(device).or_default();
                entry.patient = Some(patient);
                entry.settings = settings;
            }
        }
        Ok::<_, StartError>((out, by_device))
    }};
}

impl Store {
    /// What `actor` starts from: read with the other starts queued now.
    pub async fn actor_start(&self, actor: &str) -> Result<ActorStart, StartError> {
        let raw = self.read_start(actor, None).await?;
        self.opened_start(actor, raw.snapshot, raw.tail).await
    }

    /// What the stream of `device` (journal key `actor`) starts from: read
    /// with the other starts queued now.
    pub async fn device_start(&self, actor: &str, device: &str) -> Result<DeviceStart, StartError> {
        let raw = self.read_start(actor, Some(device)).await?;
        let started = self.opened_start(actor, raw.snapshot, raw.tail).await?;
        let mut open_alerts = Vec::with_capacity(raw.alerts.len());
        for alert in raw.alerts {
            open_alerts.push(self.alert_opened(alert).await.map_err(tagged(ALERTS))?);
        }
        let settings = match (raw.settings, &raw.patient) {
            (Some(saved), Some(patient)) => Some(
                self.opened_settings(patient, saved)
                    .await
                    .map_err(tagged(DEVICE))?,
            ),
            _ => None,
        };
        Ok(DeviceStart {
            actor: started,
            open_alerts,
            patient: raw.patient,
            settings,
        })
    }

    /// How many batches of starts this store read (for tests).
    #[doc(hidden)]
    pub fn start_batches(&self) -> u64 {
        self.start_queue.batches.taken()
    }

    async fn opened_start(
        &self,
        actor: &str,
        snapshot: Option<Snapshot>,
        tail: Vec<Event>,
    ) -> Result<ActorStart, StartError> {
        let snapshot = match snapshot {
            Some(s) => Some(
                self.opened_snapshot(actor, s)
                    .await
                    .map_err(tagged(SNAPSHOT))?,
            ),
            None => None,
        };
        let tail = self
            .opened_events(actor, tail)
            .await
            .map_err(tagged(JOURNAL))?;
        Ok(ActorStart { snapshot, tail })
    }

    /// Queues a start and waits for the batch it was read in.
    #[tracing::instrument(name = "actor.start_read", skip_all)]
    async fn read_start(&self, actor: &str, device: Option<&str>) -> Result<Raw, StartError> {
        let want = Want {
            actor: actor.to_owned(),
            device: device.map(str::to_owned),
        };
        let (rx, claimed) = self.start_queue.batches.push(want);
        if claimed {
            // A task of its own: the batch is read even if this caller stops
            // waiting.
            let store = self.clone();
            tokio::spawn(async move { store.read_while_waiting().await });
        }
        match rx.await {
            Ok(read) => read.map_err(|(what, why)| StartError {
                what,
                error: StoreError::Read(why),
            }),
            Err(_) => Err(StartError {
                what: CONNECTION,
                error: StoreError::Read("the reader stopped".into()),
            }),
        }
    }

    /// Reads batches until no start waits.
    async fn read_while_waiting(self) {
        let queue = &self.start_queue;
        // Given up if this task ends mid-batch: the starts still queued are
        // answered "the reader stopped" (their actors crash and start again,
        // as on any unreadable store), and the next start reads anew.
        let claim = Claim::new(&queue.batches);
        while let Some(batch) = queue.batches.next_batch() {
            let read = self.read_batch(&batch).await;
            match read {
                Ok((mut by_actor, by_device)) => {
                    // The last of an actor's waiters takes its read, the
                    // others (a start asked twice) a copy.
                    let mut left: HashMap<String, usize> = HashMap::new();
                    for (want, _) in &batch {
                        *left.entry(want.actor.clone()).or_default() += 1;
                    }
                    for (want, tx) in batch {
                        let n = left.get_mut(&want.actor).expect("counted above");
                        *n -= 1;
                        let mut raw = if *n == 0 {
                            by_actor.remove(&want.actor).unwrap_or_default()
                        } else {
                            by_actor.get(&want.actor).cloned().unwrap_or_default()
                        };
                        if let Some(d) = want.device.as_ref().and_then(|d| by_device.get(d)) {
                            raw.alerts = d.alerts.clone();
                            raw.patient = d.patient.clone();
                            raw.settings = d.settings.clone();
                        }
                        let _ = tx.send(Ok(raw));
                    }
                }
                Err(e) => {
                    let why = e.error.to_string();
                    for (_, tx) in batch {
                        let _ = tx.send(Err((e.what, why.clone())));
                    }
                }
            }
        }
        // Nothing waits and the queue gave the claim up.
        claim.released();
    }

    async fn read_batch(
        &self,
        batch: &[Waiting],
    ) -> Result<(HashMap<String, Raw>, HashMap<String, Raw>), StartError> {
        let mut actors: Vec<&str> = batch.iter().map(|(w, _)| w.actor.as_str()).collect();
        actors.sort_unstable();
        actors.dedup();
        let mut devices: Vec<&str> = batch
            .iter()
            .filter_map(|(w, _)| w.device.as_deref())
            .collect();
        devices.sort_unstable();
        devices.dedup();
        match &*self.db {
            Db::Postgres(pool) => {
                let mut conn = pool.acquire().await.map_err(tag(CONNECTION))?;
                let alerts = open_alerts_sql(true);
                read_batch!(
                    &mut *conn,
                    &actors,
                    &devices,
                    list = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                    tails = |after: Vec<i64>| sqlx::query(TAILS_PG)
                        .bind(actors.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                        .bind(after),
                    sql = (SNAPSHOTS_PG, &alerts, DEVICES_PG)
                )
            }
            Db::Sqlite(pool) => {
                let mut conn = pool.acquire().await.map_err(tag(CONNECTION))?;
                let alerts = open_alerts_sql(false);
                read_batch!(
                    &mut *conn,
                    &actors,
                    &devices,
                    list = |ids: &[&str]| serde_json::to_string(ids).expect("ids serialise"),
                    tails = |after: Vec<i64>| {
                        let pairs: Vec<(&str, i64)> = actors.iter().copied().zip(after).collect();
                        sqlx::query(TAILS_SQLITE)
                            .bind(serde_json::to_string(&pairs).expect("pairs serialise"))
                    },
                    sql = (SNAPSHOTS_SQLITE, &alerts, DEVICES_SQLITE)
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A reader whose task stops mid-batch (its runtime ended) gives up its
    /// claim: the next start is read by a new reader, not queued forever.
    #[test]
    fn a_reader_stopped_mid_batch_gives_up_its_claim() {
        let main = runtime();
        let (_dir, store) = main.block_on(crate::store::test_sqlite());
        // Every connection held: a batch waits for one.
        let pool = store.sqlite_pool().clone();
        let held = main.block_on(async {
            let mut held = Vec::new();
            for _ in 0..pool.options().get_max_connections() {
                held.push(pool.acquire().await.unwrap());
            }
            held
        });
        // A start on a runtime of its own, run until its reader has taken
        // the batch and waits for a connection; then that runtime ends.
        let other = runtime();
        let s = store.clone();
        let _start = other.spawn(async move { s.actor_start("consult/c-1").await });
        let queue = &store.start_queue;
        other.block_on(async {
            let taken = async {
                while !(queue.batches.busy() && queue.batches.len() == 0) {
                    tokio::task::yield_now().await;
                }
            };
            tokio::time::timeout(Duration::from_secs(10), taken)
                .await
                .expect("the reader takes the batch");
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        });
        assert!(queue.batches.busy(), "mid-batch");
        drop(other);
        assert!(!queue.batches.busy(), "the claim is given up");
        // Back to the pool, which needs a runtime to take them.
        main.block_on(async move { drop(held) });
        let again = main.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), store.actor_start("consult/c-1")).await
        });
        let start = again.expect("a new reader reads it").unwrap();
        assert!(start.snapshot.is_none() && start.tail.is_empty());
    }
}
