//! The connection: opened on first use, repaired after an error (a fresh
//! publisher channel when only that closed, else a new connection with the
//! topology declared again), and [`Inner::with_retry`], which runs an
//! operation on a live connection, reconnecting with backoff, for at most
//! the bus's `retry_for`.
//!
//! It must not wait without a bound: every connect is bounded by
//! `OPEN_TIMEOUT`, every retry loop by `retry_for`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties};

use super::topology::declare_topology;
use super::{broker_err, s, BusRuntime, Inner, Live};
use crate::bus::BusError;
use crate::supervisors::backoff::Backoff;

/// Longest wait for one publisher confirm (the publisher window's slot
/// included); also how long a replaced confirming channel may take to see
/// its other confirms in.
pub(super) const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a connection with its topology declared.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);
/// Pauses between tries while the broker is away: 50 ms doubling to 1 s,
/// up to half taken off at random so that nodes cut off together do not
/// reconnect in lock-step. A caller also wakes as soon as another one has
/// reconnected, so every consumer is back right after the first success.
const RECONNECT: Backoff =
    Backoff::doubling(Duration::from_millis(50), Duration::from_secs(1), 0.5);
/// A connect that failed less than this ago is not tried again: the many
/// callers waiting out an outage (every consumer, every publisher) make at
/// most one attempt per this between them.
const CONNECT_SPACING: Duration = Duration::from_millis(100);

impl Inner {
    /// The current connection, opening a new one if it is gone.
    pub(super) async fn open(&self) -> Result<Live, BusError> {
        if let Some(live) = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            if live.up() && live.publisher.status().connected() && live.replier.status().connected()
            {
                return Ok(live.clone());
            }
        }
        let mut guard = self.live.lock().await;
        let live = self.open_locked(&mut guard).await;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = guard.clone();
        live
    }

    async fn open_locked(&self, guard: &mut Option<Live>) -> Result<Live, BusError> {
        if let Some(live) = guard.as_mut() {
            if live.up() {
                // Only a channel closed (a refused publish, say): replace it.
                let repaired = tokio::time::timeout(OPEN_TIMEOUT, async {
                    if !live.publisher.status().connected() {
                        live.publisher = Arc::new(new_publisher(&live.out).await?);
                        live.publisher_epoch += 1;
                    }
                    if !live.replier.status().connected() {
                        live.replier = live.out.create_channel().await.map_err(broker_err)?;
                    }
                    Ok::<_, BusError>(())
                })
                .await;
                if let Ok(Ok(())) = repaired {
                    return Ok(live.clone());
                }
            }
        }
        self.connected.store(false, Ordering::Release);
        if let Some(old) = guard.take() {
            close_later(&self.runtime, old);
        }
        if let Some((at, e)) = self
            .last_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            if at.elapsed() < CONNECT_SPACING {
                return Err(e.clone());
            }
        }
        // Bounded: a broker that drops packets must not hold every caller
        // (and the node's heartbeat) for a TCP timeout.
        let connected = tokio::time::timeout(OPEN_TIMEOUT, self.connect())
            .await
            .map_err(|_| BusError::Broker(format!("no connection within {OPEN_TIMEOUT:?}")))
            .and_then(|r| r);
        let (conn, out, publisher, replier) = match connected {
            Ok(c) => c,
            Err(e) => {
                *self.last_failure.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((tokio::time::Instant::now(), e.clone()));
                return Err(e);
            }
        };
        *self.last_failure.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        if generation > 1 {
            tracing::info!(
                bus = %self.described,
                generation,
                "reconnected to the broker"
            );
        }
        let live = Live {
            generation,
            conn,
            out,
            publisher: Arc::new(publisher),
            publisher_epoch: 0,
            replier,
        };
        *guard = Some(live.clone());
        self.connected.store(true, Ordering::Release);
        self.reconnected.send_replace(generation);
        Ok(live)
    }

    /// The consumers' connection (topology declared on it), the
    /// publishers' connection, and its two channels.
    async fn connect(
        &self,
    ) -> Result<(Arc<Connection>, Arc<Connection>, Channel, Channel), BusError> {
        let conn = self.connection().await?;
        let topology = conn.create_channel().await.map_err(broker_err)?;
        declare_topology(&topology, &self.options).await?;
        let _ = topology.close(200, s("topology declared")).await;
        let out = match self.connection().await {
            Ok(out) => out,
            Err(e) => {
                close_now(conn).await;
                return Err(e);
            }
        };
        let channels = async {
            let publisher = new_publisher(&out).await?;
            let replier = out.create_channel().await.map_err(broker_err)?;
            Ok::<_, BusError>((publisher, replier))
        };
        match channels.await {
            Ok((publisher, replier)) => Ok((Arc::new(conn), Arc::new(out), publisher, replier)),
            Err(e) => {
                close_now(conn).await;
                close_now(out).await;
                Err(e)
            }
        }
    }

    async fn connection(&self) -> Result<Connection, BusError> {
        Connection::connect_with_config(
            &self.url,
            ConnectionProperties::default(),
            self.tls.clone(),
            async_rs::Runtime::tokio_with_handle(self.runtime.handle()),
        )
        .await
        .map_err(broker_err)
    }

    /// After an error on connection `generation` while its publisher was
    /// the one of `publisher_epoch`: a fresh publisher channel if the
    /// connection still stands (a refused or unconfirmed publish must not
    /// take every consumer down with it), else forget the connection. The
    /// publishes that failed together on one channel replace it once; the
    /// replaced channel is closed after the confirms still due on it came
    /// in (within `CONFIRM_TIMEOUT`), so the publishes that did not fail
    /// are not failed, nor published again, by the replacement.
    async fn broken(&self, generation: u64, publisher_epoch: u64) {
        let mut guard = self.live.lock().await;
        let Some(live) = guard.as_mut().filter(|l| l.generation == generation) else {
            return;
        };
        if live.up() {
            if live.publisher_epoch != publisher_epoch && live.publisher.status().connected() {
                return; // replaced already, by another publish that failed with ours
            }
            if let Ok(Ok(publisher)) =
                tokio::time::timeout(OPEN_TIMEOUT, new_publisher(&live.out)).await
            {
                let old = std::mem::replace(&mut live.publisher, Arc::new(publisher));
                live.publisher_epoch += 1;
                self.runtime.handle().spawn(async move {
                    // Publishes that took the old channel before it was
                    // replaced may still be sending on it: closing it under
                    // them would fail publishes the broker took, and they
                    // would be published again. Wait until none holds it
                    // (each holds it until its confirm came in), then for
                    // its last confirms; bounded.
                    let drained = async {
                        while Arc::strong_count(&old) > 1 {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        let _ = old.wait_for_confirms().await;
                    };
                    let _ = tokio::time::timeout(CONFIRM_TIMEOUT, drained).await;
                    let _ = old.close(200, s("replaced")).await;
                });
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = guard.clone();
                return;
            }
        }
        if let Some(old) = guard.take() {
            close_later(&self.runtime, old);
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = None;
        self.connected.store(false, Ordering::Release);
    }

    /// Whether the connection stands, without waiting; when it does not, a
    /// reconnection starts in the background (readiness recovers by itself).
    pub(super) fn connected_now(self: &Arc<Self>) -> bool {
        let up = self.connected.load(Ordering::Acquire)
            && self
                .live
                .try_lock()
                .map_or(true, |g| g.as_ref().is_some_and(Live::up));
        if !up && !self.reconnecting.swap(true, Ordering::AcqRel) {
            let me = Arc::clone(self);
            self.runtime.handle().spawn(async move {
                let _ = me.open().await;
                me.reconnecting.store(false, Ordering::Release);
            });
        }
        up
    }

    /// Runs `op` on a live connection, reconnecting with jittered backoff on
    /// failure, for at most `retry_for`.
    pub(super) async fn with_retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, BusError>
    where
        F: FnMut(Live) -> Fut,
        Fut: std::future::Future<Output = Result<T, Attempt>>,
    {
        let deadline = tokio::time::Instant::now() + self.retry_for;
        let mut attempt = 0;
        loop {
            // Seen before trying: a reconnection by anyone after this wakes us.
            let mut reconnected = self.reconnected.subscribe();
            let err = match self.open().await {
                Ok(live) => {
                    let (generation, epoch) = (live.generation, live.publisher_epoch);
                    match op(live).await {
                        Ok(v) => return Ok(v),
                        Err(Attempt::Fatal(e)) => return Err(e),
                        Err(Attempt::Retry(e)) => {
                            self.broken(generation, epoch).await;
                            e
                        }
                    }
                }
                Err(e) => e,
            };
            // Given up when the next full pause would pass the deadline.
            if tokio::time::Instant::now() + RECONNECT.delay(attempt, 0.0) > deadline {
                tracing::warn!(error = %err, what, "broker unreachable; giving up");
                return Err(err);
            }
            tracing::debug!(error = %err, what, "broker unreachable; retrying");
            tokio::select! {
                _ = tokio::time::sleep(RECONNECT.delay(attempt, fastrand::f64())) => {}
                _ = reconnected.changed() => {}
            }
            attempt = attempt.saturating_add(1);
        }
    }
}

pub(super) enum Attempt {
    /// Try again on a fresh connection.
    Retry(BusError),
    /// Trying again cannot help.
    Fatal(BusError),
}

async fn new_publisher(conn: &Connection) -> Result<Channel, BusError> {
    let publisher = conn.create_channel().await.map_err(broker_err)?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(broker_err)?;
    Ok(publisher)
}

impl Live {
    /// Both connections stand.
    fn up(&self) -> bool {
        self.conn.status().connected() && self.out.status().connected()
    }
}

/// Closes both connections of `old` without making the caller wait for the
/// broker.
fn close_later(runtime: &BusRuntime, old: Live) {
    runtime.handle().spawn(async move {
        let _ = old.conn.close(320, s("reconnecting")).await;
        let _ = old.out.close(320, s("reconnecting")).await;
    });
}

/// Closes a connection opened for a connect that failed half-way.
async fn close_now(conn: Connection) {
    let _ = conn.close(320, s("connect failed")).await;
}
