//! What live subscriptions share: a bound on them per principal, the bus
//! subscriptions behind one (ended with it), its end when the connection's
//! token expires, and a stream fed by a task.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::Context;
use futures_util::Stream;
use serde_json::Value;

use super::access::{coded, unavailable, Deps};
use crate::clock::unix_ms;
use crate::principal::Principal;

/// Most live subscriptions one principal may hold.
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
    ) -> async_graphql::Result<SubscriptionSlot> {
        let mut n = d.subscriptions.entry(who.subject.clone()).or_insert(0);
        if *n >= MAX_SUBSCRIPTIONS {
            return Err(coded(
                "RATE_LIMITED",
                format!("at most {MAX_SUBSCRIPTIONS} live subscriptions"),
            ));
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

/// `stream`, ended when the connection's token expires.
pub(crate) fn until_expiry<S>(
    ctx: &Context<'_>,
    stream: S,
) -> impl Stream<Item = S::Item> + Send + 'static
where
    S: Stream + Send + 'static,
    S::Item: Send,
{
    use futures_util::StreamExt;
    let exp = ctx.data_opt::<Expiry>().map(|e| e.0);
    let left = exp.map(|e| Duration::from_millis((e * 1000).saturating_sub(unix_ms())));
    let end = async move {
        match left {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    stream.take_until(Box::pin(end))
}

/// The bus subscriptions of a live GraphQL subscription: they end with it.
pub(crate) struct Watch {
    pub(crate) rx: tokio::sync::mpsc::Receiver<(String, Value, String)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub(crate) async fn watch(
    d: &Deps,
    topics: Vec<(String, String, String)>,
) -> async_graphql::Result<Watch> {
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let mut tasks = Vec::new();
    for (topic, patient, device) in topics {
        let mut sub = d
            .bus
            .subscribe(&topic, 256)
            .await
            .map_err(|_| unavailable())?;
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Some((env, v)) = sub.next_event::<Value>().await {
                if v["device"].as_str() != Some(device.as_str()) {
                    continue;
                }
                if tx
                    .send((env.msg_type.clone(), v, patient.clone()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }));
    }
    Ok(Watch { rx, tasks })
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
