//! Publishing with publisher confirms: a publish returns once the broker
//! confirmed it (on disk in a quorum queue), a `mandatory` message no queue
//! takes is [`BusError::Unroutable`], and a missing confirm is retried on a
//! fresh channel.
//!
//! It must not publish without waiting for the confirm, nor wait for the
//! publish or its confirm without a bound (`CONFIRM_TIMEOUT`).

use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::BasicProperties;

use super::connection::Attempt;
use super::{broker_err, s, Inner};
use crate::bus::BusError;

/// Longest wait for one publisher confirm.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

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
        self.with_retry("publish", |live| {
            let props = props.clone();
            async move {
                // Bounded as a whole: on a connection that died without a
                // word (a cut link), the publish itself can wait forever.
                let published = async {
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
                    lapin::Confirmation::Ack(Some(_)) => {
                        Err(Attempt::Fatal(BusError::Unroutable(key.to_owned())))
                    }
                    lapin::Confirmation::Nack(_) => Err(Attempt::Retry(BusError::Broker(
                        "the broker refused the message (nack)".into(),
                    ))),
                }
            }
        })
        .await
    }
}

pub(super) fn persistent(env_id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(s(env_id))
        .with_content_type(s("application/json"))
}
