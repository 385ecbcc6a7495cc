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

/// The broker's own limit: far above cardio's, only a safety net.
const BROKER_DELIVERY_LIMIT: i64 = 50;

/// The namespace of a bus URL without a `namespace` parameter.
pub const DEFAULT_NAMESPACE: &str = "cardio";

/// The names of cardio's exchanges and queues in a virtual host, all under
/// one namespace: `<ns>.shards`, `<ns>.events`, `<ns>.dlx`,
/// `<ns>.dead-letters` and `<ns>.shard.<n>`. The namespace is the bus URL's
/// `namespace` parameter (`amqp://host/vhost?namespace=blue`; default
/// `cardio`), so that several clusters (or test runs' tests) can share one
/// virtual host without sharing a queue. Every node of a cluster must use
/// the same one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    ns: String,
}

impl Names {
    /// The names under namespace `ns`: 1 to 64 of `a-z`, `0-9`, `-`, `_`.
    pub fn new(ns: &str) -> Result<Names, BusError> {
        let valid = !ns.is_empty()
            && ns.len() <= 64
            && ns
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if valid {
            Ok(Names { ns: ns.to_owned() })
        } else {
            Err(BusError::BadUrl(
                "namespace: 1 to 64 of a-z, 0-9, '-' and '_'".into(),
            ))
        }
    }

    /// The names under the URL's `namespace` parameter, or the default.
    pub fn of_url(url: &str) -> Result<Names, BusError> {
        let query = url.split_once('?').map_or("", |(_, q)| q);
        let query = query.split('#').next().unwrap_or("");
        let ns = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "namespace")
            .map_or(DEFAULT_NAMESPACE, |(_, v)| v);
        Names::new(ns)
    }

    pub fn namespace(&self) -> &str {
        &self.ns
    }

    pub(super) fn shards_exchange(&self) -> String {
        format!("{}.shards", self.ns)
    }

    pub(super) fn events_exchange(&self) -> String {
        format!("{}.events", self.ns)
    }

    pub(super) fn dlx(&self) -> String {
        format!("{}.dlx", self.ns)
    }

    /// Name of the dead-letter queue.
    pub fn dead_letters(&self) -> String {
        format!("{}.dead-letters", self.ns)
    }

    /// Name of shard `n`'s queue.
    pub fn shard_queue(&self, n: u16) -> String {
        format!("{}.shard.{n}", self.ns)
    }
}

pub(super) async fn declare_topology(
    ch: &Channel,
    names: &Names,
    options: &BusOptions,
) -> Result<(), BusError> {
    let (shards_exchange, dlx, dead_letters) =
        (names.shards_exchange(), names.dlx(), names.dead_letters());
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    for (name, kind) in [
        (shards_exchange.clone(), ExchangeKind::Direct),
        (names.events_exchange(), ExchangeKind::Topic),
        (dlx.clone(), ExchangeKind::Fanout),
    ] {
        ch.exchange_declare(s(&name), kind, durable, FieldTable::default())
            .await
            .map_err(broker_err)?;
    }
    let durable_q = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let mut quorum = FieldTable::default();
    quorum.insert(s("x-queue-type"), AMQPValue::LongString("quorum".into()));
    ch.queue_declare(s(&dead_letters), durable_q, quorum.clone())
        .await
        .map_err(broker_err)?;
    ch.queue_bind(
        s(&dead_letters),
        s(&dlx),
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
        AMQPValue::LongString(dlx.as_str().into()),
    );
    // Declarations are pipelined: 64 queues take one round trip's worth of waiting.
    let declares = (0..options.shards).map(|n| {
        let (args, queue, exchange) = (args.clone(), names.shard_queue(n), &shards_exchange);
        async move {
            ch.queue_declare(s(&queue), durable_q, args)
                .await
                .map_err(broker_err)?;
            ch.queue_bind(
                s(&queue),
                s(exchange),
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

    #[tokio::test]
    async fn a_bad_namespace_is_refused_before_anything_starts() {
        // No broker needed: the URL is judged first (and no runtime is
        // built, whose drop inside async code would panic).
        let url = "amqp://127.0.0.1:1/v?namespace=Not.Valid";
        let refused = super::super::AmqpBus::connect(url, BusOptions::default()).await;
        assert!(matches!(refused, Err(BusError::BadUrl(_))));
    }

    #[test]
    fn names_live_under_the_urls_namespace() {
        let default = Names::of_url("amqp://h:5672/%2f?heartbeat=5").unwrap();
        assert_eq!(default.shard_queue(0), "cardio.shard.0");
        assert_eq!(default.shard_queue(63), "cardio.shard.63");
        assert_eq!(default.dead_letters(), "cardio.dead-letters");
        let blue = Names::of_url("amqp://u:p@h/v?heartbeat=5&namespace=blue-2").unwrap();
        assert_eq!(blue.shard_queue(7), "blue-2.shard.7");
        assert_eq!(blue.shards_exchange(), "blue-2.shards");
        assert_eq!(blue.events_exchange(), "blue-2.events");
        assert_eq!(blue.dlx(), "blue-2.dlx");
        for bad in ["", "Blue", "a.b", "a/b", &"x".repeat(65)] {
            let url = format!("amqp://h/v?namespace={bad}");
            assert!(Names::of_url(&url).is_err(), "{bad:?}");
        }
    }
}
