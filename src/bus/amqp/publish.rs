//! Publishing with publisher confirms: a publish returns once the broker
//! confirmed it (on disk in a quorum queue), a `mandatory` message no queue
//! takes is [`BusError::Unroutable`], and a missing confirm is retried on a
//! fresh channel. Replies are published without confirms
//! ([`Inner::publish_reply`]).
//!
//! **Pipelined.** Every caller publishes on the connection's one confirming
//! channel and awaits its own confirm: nothing serialises a publish and its
//! confirm across callers, so with many callers many publishes are in
//! flight and the broker confirms them in batches (RabbitMQ sends one
//! `basic.ack` with `multiple` for a run of them). `PUBLISH_WINDOW` bounds
//! the confirms outstanding per connection. A failure on the channel (a
//! nack, a missing confirm) replaces it once for all the publishes that
//! failed on it together (`publisher_epoch`), and the replaced channel is
//! closed only after its other confirms came in (bounded), so one refused
//! publish does not fail, nor make re-publish, the others in flight.
//!
//! It must not report a publish as sent without its confirm, nor wait for
//! the publish or its confirm without a bound (`CONFIRM_TIMEOUT`).

use lapin::options::BasicPublishOptions;
use lapin::BasicProperties;

use super::connection::{Attempt, CONFIRM_TIMEOUT};
use super::{broker_err, s, Inner};
use crate::bus::BusError;

/// Confirmed publishes in flight per connection (the publisher window).
/// Above it callers wait for a slot (within `CONFIRM_TIMEOUT`). It bounds
/// what a burst holds in the client's and the broker's unconfirmed maps;
/// a quorum queue confirms after its (batched) write, so a window well
/// above the number of callers in flight costs nothing: BENCHMARKS.md "The
/// bus path (issue 15)" has the measurements behind the value.
pub(super) const PUBLISH_WINDOW: usize = 1024;

impl Inner {
    /// Publishes and waits for the broker's confirm.
    pub(super) async fn publish_confirmed(
        &self,
        exchange: &str,
        key: &str,
        body: &[u8],
        props: BasicProperties,
        mandatory: bool,
    ) -> Result<(), BusError> {
        let id = props.message_id().clone();
        self.with_retry("publish", |live| {
            let (props, id) = (props.clone(), id.clone());
            async move {
                // Bounded as a whole: on a connection that died without a
                // word (a cut link), the publish itself can wait forever.
                let published = async {
                    let _slot = self.window.acquire().await.map_err(|_| {
                        Attempt::Fatal(BusError::Broker("the bus is closed".into()))
                    })?;
                    let confirm = live
                        .publisher
                        .basic_publish(
                            s(exchange),
                            s(key),
                            BasicPublishOptions {
                                mandatory,
                                ..BasicPublishOptions::default()
                            },
                            body,
                            props,
                        )
                        .await
                        .map_err(|e| Attempt::Retry(broker_err(e)))?;
                    confirm.await.map_err(|e| Attempt::Retry(broker_err(e)))
                };
                let confirmation = tokio::time::timeout(CONFIRM_TIMEOUT, published)
                    .await
                    .map_err(|_| Attempt::Retry(BusError::Broker("confirm timed out".into())))??;
                match confirmation {
                    lapin::Confirmation::Ack(None) | lapin::Confirmation::NotRequested => Ok(()),
                    // lapin hands a returned message to the confirm it
                    // completes next; RabbitMQ sends the return right before
                    // the ack of the message it returns, so it is ours. If it
                    // is not (ids differ), ours may have been returned too:
                    // publishing again cannot lose it.
                    lapin::Confirmation::Ack(Some(returned))
                        if id.is_none() || returned.properties.message_id() == &id =>
                    {
                        Err(Attempt::Fatal(BusError::Unroutable(key.to_owned())))
                    }
                    lapin::Confirmation::Ack(Some(_)) => Err(Attempt::Retry(BusError::Broker(
                        "a confirm came with another message's return".into(),
                    ))),
                    lapin::Confirmation::Nack(_) => Err(Attempt::Retry(BusError::Broker(
                        "the broker refused the message (nack)".into(),
                    ))),
                }
            }
        })
        .await
    }

    /// Publishes a reply to the reply queue `queue` through the default
    /// exchange, once and without a confirm: transient, not `mandatory` (a
    /// reply to a requester that is gone is dropped by the broker). Bounded
    /// by `CONFIRM_TIMEOUT`. Not retried: after a lost connection the
    /// request's acknowledgement fails too, so it is delivered and answered
    /// again, and the requester asks again when its reply queue was reset.
    pub(super) async fn publish_reply(
        &self,
        queue: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), BusError> {
        let sent = async {
            let live = self.open().await?;
            live.replier
                .basic_publish(s(""), s(queue), BasicPublishOptions::default(), body, props)
                .await
                .map_err(broker_err)
        };
        match tokio::time::timeout(CONFIRM_TIMEOUT, sent).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(BusError::Broker("reply not sent in time".into())),
        }
    }
}

pub(super) fn persistent(env_id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(s(env_id))
        .with_content_type(s("application/json"))
}
