//! What live subscriptions share: a bound on them per principal, the bus
//! subscriptions behind one (ended with it), its end when the connection's
//! token expires, and a stream fed by a task.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::Context;
use futures_util::Stream;

use super::access::Deps;
use super::error::ApiError;
use crate::actors::device::stream::{AlertEvent, VitalsEvent};
use crate::bus::BusEvent;
use crate::clock::unix_ms;
use crate::principal::Principal;

/// Most live subscriptions one principal may hold. The web console's wall
/// holds three however many patients it shows (`vitals` and `alerts` of
/// the whole care team, one ECG strip), and a consult's chat elsewhere.
pub const MAX_SUBSCRIPTIONS: usize = 32;

/// Counts a live subscription of `who` until dropped.
pub struct SubscriptionSlot {
    map: Arc<dashmap::DashMap<String, usize>>,
    who: String,
    field: &'static str,
}

impl SubscriptionSlot {
    pub(crate) fn take(
        d: &Deps,
        who: &Principal,
        field: &'static str,
    ) -> Result<SubscriptionSlot, ApiError> {
        let mut n = d.subscriptions.entry(who.subject.clone()).or_insert(0);
        if *n >= MAX_SUBSCRIPTIONS {
            return Err(ApiError::RateLimited);
        }
        *n += 1;
        crate::metrics::subscriptions(field, 1.0);
        Ok(SubscriptionSlot {
            map: Arc::clone(&d.subscriptions),
            who: who.subject.clone(),
            field,
        })
    }
}

impl Drop for SubscriptionSlot {
    fn drop(&mut self) {
        crate::metrics::subscriptions(self.field, -1.0);
        self.map.remove_if_mut(&self.who, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

/// When the token of a WebSocket connection expires (Unix seconds): its
/// subscriptions end then.
#[derive(Clone, Copy)]
pub struct Expiry(pub u64);

/// `stream`, ended when the connection's token expires or its access
/// changes, with a last error saying why (`UNAUTHENTICATED` with reason
/// `TOKEN_EXPIRED` or `TOKEN_REVOKED`; `FORBIDDEN` when taken off a care
/// team or a break-glass grant ended), so that a client knows to sign in
/// again rather than resubscribe.
pub(crate) fn until_expiry<S>(
    ctx: &Context<'_>,
    stream: S,
) -> impl Stream<Item = async_graphql::Result<S::Item>> + Send + 'static
where
    S: Stream + Send + 'static,
    S::Item: Send,
{
    use super::error::RefusalReason;
    use futures_util::StreamExt;
    let exp = ctx.data_opt::<Expiry>().map(|e| e.0);
    let left = exp.map(|e| Duration::from_millis((e * 1000).saturating_sub(unix_ms())));
    let expired = async move {
        match left {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    // Ended too when the principal's access changes (revoked, deactivated,
    // logged off, taken off a care team, a break-glass grant over): opened
    // again, it is authorized again.
    let d = ctx.data_unchecked::<Deps>();
    let mut changes = d.gate.changes();
    let who = ctx.data_opt::<Principal>().map(|p| p.subject.clone());
    let verified = ctx.data_opt::<crate::auth::Verified>().cloned();
    let jti = verified.as_ref().and_then(|v| v.jti.clone());
    if let Some(v) = verified {
        // Opening a subscription is the subject's activity.
        let gate = std::sync::Arc::clone(&d.gate);
        tokio::spawn(async move {
            let _ = gate.admit(&v, true).await;
        });
    }
    let revoked = async move {
        let Some(who) = who else {
            return std::future::pending().await;
        };
        loop {
            match changes.recv().await {
                Ok(c) if c.ends_subscriptions(&who, jti.as_deref()) => {
                    return Some(if c.closes(&who, jti.as_deref()) {
                        ApiError::Unauthenticated(RefusalReason::TokenRevoked)
                    } else {
                        ApiError::Forbidden
                    });
                }
                Ok(_) => {}
                // Missed changes: end, to be safe (the client subscribes again).
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return None,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    std::future::pending().await
                }
            }
        }
    };
    let end = Box::pin(async move {
        tokio::select! {
            _ = expired => Some(ApiError::Unauthenticated(RefusalReason::TokenExpired)),
            why = revoked => why,
        }
    });
    futures_util::stream::unfold(
        (Box::pin(stream), Some(end)),
        |(mut stream, end)| async move {
            let mut end = end?;
            tokio::select! {
                item = stream.next() => item.map(|i| (Ok(i), (stream, Some(end)))),
                why = &mut end => why.map(|e| (Err(e.into()), (stream, None))),
            }
        },
    )
}

/// An event about one device (published on `<prefix>.<device>`).
pub(crate) trait DeviceEvent: BusEvent {
    fn device(&self) -> &str;
}

impl DeviceEvent for VitalsEvent {
    fn device(&self) -> &str {
        &self.device
    }
}

impl DeviceEvent for AlertEvent {
    fn device(&self) -> &str {
        &self.device
    }
}

impl DeviceEvent for crate::actors::device::stream::EcgEvent {
    fn device(&self) -> &str {
        &self.device
    }
}

/// Where a device's registration is announced: `devices.<patient>`.
pub(crate) fn devices_topic(patient: &str) -> String {
    format!("devices.{}", crate::bus::events::topic_word(patient))
}

/// A device registered for a patient (announced by `registerDevice`), so
/// that live subscriptions opened before it watch it too.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DeviceRegistered {
    pub patient: String,
    pub device: String,
}

impl BusEvent for DeviceRegistered {
    const TYPE: &'static str = "device.registered";
}

/// The bus subscriptions of a live GraphQL subscription: they end with it.
/// Each event comes with its device's patient. It never ends by itself:
/// a patient without a device yet is watched until one is registered.
pub(crate) struct Watch<E> {
    pub(crate) rx: tokio::sync::mpsc::Receiver<(E, String)>,
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    /// Keeps `rx` open with nothing to watch yet (no patient, no device).
    _open: tokio::sync::mpsc::Sender<(E, String)>,
}

impl<E> Drop for Watch<E> {
    fn drop(&mut self) {
        for t in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            t.abort();
        }
    }
}

/// Watches events `E` (on `<prefix>.<device>`) of every device of
/// `patients`: those registered now, and those registered later (heard on
/// `devices.<patient>`, subscribed to before the devices are read, so none
/// falls in between).
pub(crate) async fn watch<E: DeviceEvent>(
    d: &Deps,
    prefix: &'static str,
    patients: &[String],
) -> Result<Watch<E>, ApiError> {
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
    let mut registrations = Vec::new();
    for p in patients {
        let sub = d
            .bus
            .subscribe(&devices_topic(p), 16)
            .await
            .map_err(ApiError::unavailable)?;
        registrations.push(sub);
    }
    let watched: Arc<std::sync::Mutex<std::collections::HashSet<String>>> = Arc::default();
    for (_, patient, device) in super::access::device_topics(d, prefix, patients).await? {
        follow::<E>(d, prefix, &tx, &tasks, &watched, patient, device).await?;
    }
    for mut sub in registrations {
        let (d2, tx, tasks2, watched) = (
            d.clone(),
            tx.clone(),
            Arc::clone(&tasks),
            Arc::clone(&watched),
        );
        let task = tokio::spawn(async move {
            while let Some((_, r)) = sub.next_of::<DeviceRegistered>().await {
                let (patient, device) = (r.patient, r.device);
                if let Err(e) =
                    follow::<E>(&d2, prefix, &tx, &tasks2, &watched, patient, device).await
                {
                    tracing::warn!(error = %e.message(), "a new device is not watched");
                }
            }
        });
        tasks.lock().unwrap_or_else(|e| e.into_inner()).push(task);
    }
    Ok(Watch {
        rx,
        tasks,
        _open: tx,
    })
}

/// Starts forwarding events of `device` (of `patient`), once.
async fn follow<E: DeviceEvent>(
    d: &Deps,
    prefix: &str,
    tx: &tokio::sync::mpsc::Sender<(E, String)>,
    tasks: &std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    watched: &std::sync::Mutex<std::collections::HashSet<String>>,
    patient: String,
    device: String,
) -> Result<(), ApiError> {
    if !watched
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(device.clone())
    {
        return Ok(());
    }
    let topic = format!("{prefix}.{}", crate::bus::events::topic_word(&device));
    let mut sub = d
        .bus
        .subscribe(&topic, 256)
        .await
        .map_err(ApiError::unavailable)?;
    let tx = tx.clone();
    let task = tokio::spawn(async move {
        while let Some((_, event)) = sub.next_of::<E>().await {
            if event.device() != device {
                continue;
            }
            if tx.send((event, patient.clone())).await.is_err() {
                break;
            }
        }
    });
    tasks.lock().unwrap_or_else(|e| e.into_inner()).push(task);
    Ok(())
}

/// A stream fed by a task: `body` gets a sender; the stream ends when it
/// returns or the subscriber goes away.
pub(crate) fn async_stream_lite<T, F, Fut>(body: F) -> impl Stream<Item = T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let task = tokio::spawn(body(tx));
    struct Guard(tokio::task::JoinHandle<()>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let guard = Guard(task);
    futures_util::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        rx.recv().await.map(|item| (item, (rx, guard)))
    })
}
