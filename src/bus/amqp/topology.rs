//! The broker's topology: cardio's exchanges, the shard queues (quorum,
//! single active consumer, a broker-side delivery limit) and the
//! dead-letter queue, declared idempotently on every (re)connection.
//!
//! Names and declarations only: it must not publish, consume or keep a
//! connection.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

use super::{broker_err, s};
use crate::bus::{BusError, BusOptions};

pub(super) const SHARDS_EXCHANGE: &str = "cardio.shards";
pub(super) const EVENTS_EXCHANGE: &str = "cardio.events";
pub(super) const DLX: &str = "cardio.dlx";
/// Reply queues are named this and a UUID (exclusive, auto-deleted, one
/// per requester; see the module docs of `amqp`).
pub(super) const REPLY_QUEUE_PREFIX: &str = "cardio.reply.";
/// Name of the dead-letter queue.
pub const DEAD_LETTER_QUEUE: &str = "cardio.dead-letters";
/// The broker's own limit: far above cardio's, only a safety net.
const BROKER_DELIVERY_LIMIT: i64 = 50;

/// Name of shard `n`'s queue.
pub fn shard_queue(n: u16) -> String {
    format!("cardio.shard.{n}")
}

pub(super) async fn declare_topology(ch: &Channel, options: &BusOptions) -> Result<(), BusError> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    for (name, kind) in [
        (SHARDS_EXCHANGE, ExchangeKind::Direct),
        (EVENTS_EXCHANGE, ExchangeKind::Topic),
        (DLX, ExchangeKind::Fanout),
    ] {
        ch.exchange_declare(s(name), kind, durable, FieldTable::default())
            .await
            .map_err(broker_err)?;
    }
    let durable_q = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let mut quorum = FieldTable::default();
    quorum.insert(s("x-queue-type"), AMQPValue::LongString("quorum".into()));
    ch.queue_declare(s(DEAD_LETTER_QUEUE), durable_q, quorum.clone())
        .await
        .map_err(broker_err)?;
    ch.queue_bind(
        s(DEAD_LETTER_QUEUE),
        s(DLX),
        s(""),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(broker_err)?;
    let mut args = quorum;
    args.insert(s("x-single-active-consumer"), AMQPValue::Boolean(true));
    args.insert(
        s("x-delivery-limit"),
        AMQPValue::LongLongInt(BROKER_DELIVERY_LIMIT),
    );
    args.insert(
        s("x-dead-letter-exchange"),
        AMQPValue::LongString(DLX.into()),
    );
    // Declarations are pipelined: 64 queues take one round trip's worth of waiting.
    let declares = (0..options.shards).map(|n| {
        let args = args.clone();
        async move {
            ch.queue_declare(s(&shard_queue(n)), durable_q, args)
                .await
                .map_err(broker_err)?;
            ch.queue_bind(
                s(&shard_queue(n)),
                s(SHARDS_EXCHANGE),
                s(&n.to_string()),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker_err)
        }
    });
    for r in futures_util::future::join_all(declares).await {
        r?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_queues_are_named_by_number() {
        assert_eq!(shard_queue(0), "cardio.shard.0");
        assert_eq!(shard_queue(63), "cardio.shard.63");
    }
}
