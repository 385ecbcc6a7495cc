//! Settling a delivery: ack; nack (a shard message is published again with
//! its failure count, then taken off; past the delivery limit it is
//! dead-lettered); dead-letter (published to `cardio.dlx` with the reason in
//! headers, then taken off); release (back to the broker).
//!
//! It must not take a message off its queue before its copy (requeue or
//! dead letter) is confirmed.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use lapin::options::{BasicAckOptions, BasicRejectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};

use super::topology::{DLX, SHARDS_EXCHANGE};
use super::{broker_err, s, Inner};
use crate::bus::{Acker, BusError, Nacked};

/// lapin answers `Ok(false)` when the channel closed under the delivery (the
/// broker re-queued it): that is no settlement.
fn settled(r: lapin::Result<bool>) -> Result<(), BusError> {
    match r {
        Ok(true) => Ok(()),
        Ok(false) => Err(BusError::Broker(
            "the delivery's channel closed; the broker redelivers it".into(),
        )),
        Err(e) => Err(broker_err(e)),
    }
}

pub(super) struct AmqpAcker {
    pub(super) inner: Arc<Inner>,
    pub(super) acker: lapin::Acker,
    /// Keeps the channel open while a delivery is in hand.
    pub(super) _channel: Channel,
    pub(super) body: Bytes,
    pub(super) queue: String,
    pub(super) deliveries: u32,
    /// Earlier deliveries of this message that failed.
    pub(super) failures: u32,
    /// Set for shard queues: a failed message is published there again.
    pub(super) shard: Option<u16>,
    pub(super) limit: u32,
}

#[async_trait]
impl Acker for AmqpAcker {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        settled(self.acker.ack(BasicAckOptions::default()).await)
    }

    fn usable(&self) -> bool {
        self.acker.usable()
    }

    async fn nack(self: Box<Self>, reason: &str) -> Result<Nacked, BusError> {
        let failures = self.failures + 1;
        if failures >= self.limit {
            let reason = format!(
                "delivery limit {} reached; last failure: {reason}",
                self.limit
            );
            self.dead_letter(&reason).await?;
            return Ok(Nacked::DeadLettered);
        }
        if let Some(shard) = self.shard {
            // Only failures count against the limit, not returns after a
            // lost consumer or a hand-over (which the broker's own count
            // includes): publish it again carrying its counts, then take
            // this copy off the queue. A crash in between delivers it twice,
            // which handlers tolerate.
            let mut headers = FieldTable::default();
            headers.insert(
                s("x-cardio-failures"),
                AMQPValue::LongLongInt(i64::from(failures)),
            );
            headers.insert(
                s("x-cardio-deliveries"),
                AMQPValue::LongLongInt(i64::from(self.deliveries)),
            );
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_headers(headers);
            self.inner
                .publish_confirmed(SHARDS_EXCHANGE, &shard.to_string(), &self.body, props, true)
                .await?;
            settled(self.acker.ack(BasicAckOptions::default()).await)?;
            return Ok(Nacked::Requeued);
        }
        settled(
            self.acker
                .reject(BasicRejectOptions { requeue: true })
                .await,
        )?;
        Ok(Nacked::Requeued)
    }

    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), BusError> {
        let mut headers = FieldTable::default();
        headers.insert(
            s("x-cardio-reason"),
            AMQPValue::LongString(reason.to_owned().into()),
        );
        headers.insert(
            s("x-cardio-from-queue"),
            AMQPValue::LongString(self.queue.clone().into()),
        );
        headers.insert(
            s("x-cardio-dead-after"),
            AMQPValue::LongLongInt(i64::from(self.deliveries)),
        );
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(headers);
        // Set aside durably first; only then take it off its queue. A failure
        // in between redelivers it (and it is dead-lettered again: harmless).
        self.inner
            .publish_confirmed(DLX, "", &self.body, props, true)
            .await?;
        settled(self.acker.ack(BasicAckOptions::default()).await)
    }

    fn release(self: Box<Self>) {
        let acker = self.acker;
        self.inner.runtime.handle().spawn(async move {
            let _ = acker.reject(BasicRejectOptions { requeue: true }).await;
        });
    }
}
