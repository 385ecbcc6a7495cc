//! Metrics around any backend: what [`super::connect`] hands out.
//!
//! Counts publishes (with the time until the bus holds the message: the
//! publisher confirm on RabbitMQ), deliveries and how they were settled,
//! redeliveries, dead letters, and the lag from sending to delivery.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Acker, Bus, BusError, Delivery, Envelope, Nacked, Sealed, Source, Subscription};
use crate::metrics::bus as m;

/// A backend with metrics.
pub struct Metered {
    inner: Arc<dyn Bus>,
    backend: &'static str,
}

impl Metered {
    pub fn new(inner: Arc<dyn Bus>, backend: &'static str) -> Self {
        m::announce(backend);
        Self { inner, backend }
    }

    /// `lag`: whether to measure the delivery lag (actor messages; event
    /// copies fan out to every subscriber and are not timed).
    fn wrap(&self, sub: Subscription, lag: bool) -> Subscription {
        Subscription::new(Box::new(MeteredSource {
            inner: sub,
            backend: self.backend,
            lag,
        }))
    }
}

#[async_trait]
impl Bus for Metered {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn shards(&self) -> u16 {
        self.inner.shards()
    }

    fn may_have_subscribers(&self, topic: &str) -> bool {
        self.inner.may_have_subscribers(topic)
    }

    async fn send_sealed(&self, msg: &Sealed) -> Result<(), BusError> {
        let start = Instant::now();
        let sent = self.inner.send_sealed(msg).await;
        if sent.is_ok() {
            m::published(self.backend, "actor", start.elapsed());
        }
        sent
    }

    async fn reply_queue(&self) -> Result<(String, Subscription), BusError> {
        let (address, sub) = self.inner.reply_queue().await?;
        Ok((address, self.wrap(sub, false)))
    }

    async fn reply(&self, address: &str, reply: &Envelope) -> Result<(), BusError> {
        let start = Instant::now();
        let sent = self.inner.reply(address, reply).await;
        if sent.is_ok() {
            m::published(self.backend, "reply", start.elapsed());
        }
        sent
    }

    async fn publish(&self, topic: &str, env: &Envelope) -> Result<(), BusError> {
        let start = Instant::now();
        let sent = self.inner.publish(topic, env).await;
        if sent.is_ok() {
            let class = if env.correlation_id.is_some() {
                "reply"
            } else {
                "event"
            };
            m::published(self.backend, class, start.elapsed());
        }
        sent
    }

    async fn subscribe(&self, pattern: &str, prefetch: u16) -> Result<Subscription, BusError> {
        Ok(self.wrap(self.inner.subscribe(pattern, prefetch).await?, false))
    }

    async fn consume_shard(&self, shard: u16, prefetch: u16) -> Result<Subscription, BusError> {
        Ok(self.wrap(self.inner.consume_shard(shard, prefetch).await?, true))
    }

    async fn consume_dead_letters(&self, prefetch: u16) -> Result<Subscription, BusError> {
        Ok(self.wrap(self.inner.consume_dead_letters(prefetch).await?, false))
    }

    async fn healthy(&self) -> bool {
        self.inner.healthy().await
    }

    fn prefer_shards(&self, preferred: super::ShardPreference) {
        self.inner.prefer_shards(preferred);
    }
}

struct MeteredSource {
    inner: Subscription,
    backend: &'static str,
    lag: bool,
}

#[async_trait]
impl Source for MeteredSource {
    fn resets(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.resets()
    }

    fn losses(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.losses()
    }

    async fn next(&mut self) -> Option<Delivery> {
        let mut delivery = self.inner.next().await?;
        let info = delivery.info();
        m::delivered(
            self.backend,
            info.redelivered || info.delivery_count > 1,
            if self.lag {
                sent_at(delivery.body()).map(lag_since)
            } else {
                None
            },
        );
        let acker = delivery.take();
        let (body, info) = delivery.into_parts();
        Some(Delivery::new(
            body,
            info,
            Box::new(MeteredAcker {
                inner: acker,
                backend: self.backend,
            }),
        ))
    }
}

/// `sent_at_ms` of an envelope, without decoding it: the field comes before
/// the payload in every envelope this build writes, so the scan is short.
fn sent_at(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"sent_at_ms\":";
    let at = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits = body[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&body[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

fn lag_since(sent_at_ms: u64) -> Duration {
    Duration::from_millis(crate::clock::unix_ms().saturating_sub(sent_at_ms))
}

struct MeteredAcker {
    inner: Box<dyn Acker>,
    backend: &'static str,
}

#[async_trait]
impl Acker for MeteredAcker {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        let done = self.inner.ack().await;
        if done.is_ok() {
            m::settled(self.backend, "ack");
        }
        done
    }

    async fn nack(self: Box<Self>, reason: &str) -> Result<Nacked, BusError> {
        let done = self.inner.nack(reason).await;
        match done {
            Ok(Nacked::Requeued) => m::settled(self.backend, "retry"),
            Ok(Nacked::DeadLettered) => {
                m::settled(self.backend, "dead_letter");
                m::dead_lettered(self.backend, "delivery_limit");
            }
            Err(_) => {}
        }
        done
    }

    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), BusError> {
        let done = self.inner.dead_letter(reason).await;
        if done.is_ok() {
            m::settled(self.backend, "dead_letter");
            m::dead_lettered(self.backend, "rejected");
        }
        done
    }

    fn release(self: Box<Self>) {
        m::settled(self.backend, "released");
        self.inner.release()
    }

    fn usable(&self) -> bool {
        self.inner.usable()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sending_time_is_read_off_an_encoded_envelope() {
        let env = crate::bus::Envelope::new("x.y", &serde_json::json!({"sent_at_ms": 1})).unwrap();
        assert_eq!(super::sent_at(&env.encode()), Some(env.sent_at_ms));
        assert_eq!(super::sent_at(b"not an envelope"), None);
    }
}
