//! The bus shim's contract, on the memory backend, and the inbox that feeds
//! actors from it.

use std::time::Duration;

use cardio::bus::{self, Bus, BusError, BusOptions, Envelope, Nacked};
use cardio::registry::inbox::{deliver, Delivered, Inbox};
use cardio::registry::{KindSpec, Registry};
use cardio::supervisors::{ArbiterPool, Backoff, EventKind, SupervisorRef, SupervisorSpec, Tree};
use std::sync::Arc;

use crate::support::*;

/// Runs a contract check on the memory backend and on RabbitMQ (tier
/// `rabbitmq`; a virtual host of its own).
macro_rules! on_both_buses {
    ($name:ident, $limit:expr) => {
        mod $name {
            #[actix_rt::test]
            async fn memory() {
                super::$name(super::memory($limit).await).await;
            }

            #[actix_rt::test]
            async fn amqp() {
                needs!(Rabbitmq);
                let _broker = crate::broker::shared().await;
                let vhost = crate::broker::Vhost::new();
                let bus = vhost.bus(super::options($limit)).await;
                super::$name(std::sync::Arc::new(bus)).await;
            }
        }
    };
}

const LONG: Duration = Duration::from_secs(30);

fn options(delivery_limit: u32) -> BusOptions {
    BusOptions {
        shards: 4,
        delivery_limit,
        max_queue_len: 100,
    }
}

async fn memory(delivery_limit: u32) -> Arc<dyn Bus> {
    bus::connect("memory://", options(delivery_limit))
        .await
        .unwrap()
}

fn to_probe(id: &str, msg_type: &str, payload: &impl serde::Serialize) -> Envelope {
    Envelope::new(msg_type, payload)
        .unwrap()
        .to(format!("probe/{id}").parse().unwrap())
}

/// The shard queue holding messages for `probe/<id>`.
async fn shard_of(bus: &Arc<dyn Bus>, id: &str) -> u16 {
    cardio::cluster::shard_of(&format!("probe/{id}").parse().unwrap(), bus.shards())
}

async fn next(sub: &mut bus::Subscription) -> bus::Delivery {
    tokio::time::timeout(LONG, sub.next())
        .await
        .expect("a delivery")
        .expect("open")
}

async fn nothing_more(sub: &mut bus::Subscription) {
    let got = tokio::time::timeout(Duration::from_millis(200), sub.next()).await;
    assert!(
        got.is_err(),
        "unexpected delivery: {:?}",
        got.unwrap().map(|d| d.info().clone())
    );
}

#[tokio::test]
async fn unknown_schemes_are_refused_with_a_clear_error() {
    assert_eq!(
        bus::connect("kafka://x", BusOptions::default()).await.err(),
        Some(BusError::UnsupportedScheme("kafka".into()))
    );
    assert!(matches!(
        bus::connect("nonsense", BusOptions::default()).await,
        Err(BusError::BadUrl(_))
    ));
}

async fn an_unacked_delivery_is_redelivered_and_an_acked_one_never_again(bus: Arc<dyn Bus>) {
    let env = to_probe("p-1", "probe.ping", &Ping);
    bus.send(&env).await.unwrap();
    let mut sub = bus
        .consume_shard(shard_of(&bus, "p-1").await, 10)
        .await
        .unwrap();
    let first = next(&mut sub).await;
    assert_eq!(first.envelope().unwrap().id, env.id);
    assert!(!first.info().redelivered);
    drop(first); // consumer died before acknowledging
    let second = next(&mut sub).await;
    assert_eq!(second.envelope().unwrap().id, env.id);
    assert!(second.info().redelivered);
    assert_eq!(second.info().delivery_count, 2);
    assert_eq!(second.nack("transient").await.unwrap(), Nacked::Requeued);
    let third = next(&mut sub).await;
    assert_eq!(third.info().delivery_count, 3);
    third.ack().await.unwrap();
    nothing_more(&mut sub).await;
}

async fn past_the_delivery_limit_a_message_is_dead_lettered_with_its_reason(bus: Arc<dyn Bus>) {
    let env = to_probe("p-1", "probe.boom", &Boom);
    bus.send(&env).await.unwrap();
    let mut sub = bus
        .consume_shard(shard_of(&bus, "p-1").await, 10)
        .await
        .unwrap();
    for attempt in 1..=3 {
        let d = next(&mut sub).await;
        assert_eq!(d.info().delivery_count, attempt);
        let outcome = d.nack("handler failed").await.unwrap();
        assert_eq!(
            outcome,
            if attempt < 3 {
                Nacked::Requeued
            } else {
                Nacked::DeadLettered
            }
        );
    }
    nothing_more(&mut sub).await;
    let mut dead = bus.consume_dead_letters(10).await.unwrap();
    let d = next(&mut dead).await;
    assert_eq!(d.envelope().unwrap().id, env.id);
    let info = d.info().dead_letter.clone().unwrap();
    assert!(info.reason.contains("handler failed"), "{}", info.reason);
    assert_eq!(info.deliveries, 3);
    assert!(info.from_queue.starts_with("cardio.shard."));
}

async fn prefetch_bounds_unsettled_deliveries(bus: Arc<dyn Bus>) {
    let shard = shard_of(&bus, "p-1").await;
    for _ in 0..5 {
        bus.send(&to_probe("p-1", "probe.ping", &Ping))
            .await
            .unwrap();
    }
    let mut sub = bus.consume_shard(shard, 2).await.unwrap();
    let a = next(&mut sub).await;
    let _b = next(&mut sub).await;
    nothing_more(&mut sub).await;
    a.ack().await.unwrap();
    let _c = next(&mut sub).await;
}

async fn topic_subscribers_each_get_the_events_that_match(bus: Arc<dyn Bus>) {
    let mut one_patient = bus.subscribe("vitals.p-1.*", 10).await.unwrap();
    let mut all_vitals = bus.subscribe("vitals.#", 10).await.unwrap();
    let e1 = Envelope::new("vitals", &1).unwrap();
    let e2 = Envelope::new("vitals", &2).unwrap();
    bus.publish("vitals.p-1.hr", &e1).await.unwrap();
    bus.publish("vitals.p-2.hr", &e2).await.unwrap();
    bus.publish("alerts.p-1", &Envelope::new("alert", &3).unwrap())
        .await
        .unwrap();
    for (sub, expected) in [
        (&mut one_patient, vec![e1.id]),
        (&mut all_vitals, vec![e1.id, e2.id]),
    ] {
        for id in expected {
            let d = next(sub).await;
            assert_eq!(d.envelope().unwrap().id, id);
            d.ack().await.unwrap();
        }
        nothing_more(sub).await;
    }
    assert!(matches!(
        bus.publish("vitals.*", &e1).await,
        Err(BusError::BadTopic(_))
    ));
}

/// Memory only (a broker routes on its side: it always may): the
/// in-process bus tells whether an event on a topic would reach anyone, so
/// that events nobody watches are not even encoded; and one that would is
/// still published by `Events`.
#[actix_rt::test]
async fn the_in_process_bus_knows_whether_a_topic_has_subscribers() {
    let bus = memory(5).await;
    assert!(!bus.may_have_subscribers("vitals.d-1"));
    let sub = bus.subscribe("vitals.d-1", 10).await.unwrap();
    assert!(bus.may_have_subscribers("vitals.d-1"));
    assert!(!bus.may_have_subscribers("vitals.d-2"));
    assert!(!bus.may_have_subscribers("alerts.d-1"));
    let mut all = bus.subscribe("alerts.#", 10).await.unwrap();
    assert!(bus.may_have_subscribers("alerts.d-2"));
    drop(sub);
    assert!(
        !bus.may_have_subscribers("vitals.d-1"),
        "the subscription went"
    );
    let events = cardio::bus::events::Events::start(Arc::clone(&bus));
    events.publish(
        "alerts.d-2",
        &cardio::bus::events::NodeSupervisionEvent {
            node: "n-1".into(),
            event: cardio::supervisors::tree::SupervisionEvent {
                at_ms: 0,
                path: "/".into(),
                what: EventKind::Started,
            },
        },
    );
    let d = next(&mut all).await;
    assert_eq!(d.envelope().unwrap().msg_type, "supervision.event");
}

/// Memory only: RabbitMQ bounds queues by policy (`x-max-length`), not per call.
#[tokio::test]
async fn a_full_queue_refuses_new_messages_with_a_typed_error() {
    let bus = memory(5).await;
    for _ in 0..100 {
        bus.send(&to_probe("p-1", "probe.ping", &Ping))
            .await
            .unwrap();
    }
    assert!(matches!(
        bus.send(&to_probe("p-1", "probe.ping", &Ping)).await,
        Err(BusError::QueueFull(_))
    ));
    assert_eq!(
        bus.send(&Envelope::new("x", &1).unwrap()).await,
        Err(BusError::NoRecipient)
    );
}

async fn node_with_probes(bus: Arc<dyn Bus>) -> (Tree, Registry, Arc<dyn Bus>) {
    let tree = Tree::new();
    let pool = ArbiterPool::current();
    let root = SupervisorRef::start_root(SupervisorSpec::new("root"), &tree, &pool, |r| {
        panic!("root failed: {r}")
    })
    .await;
    let registry = Registry::new(tree.clone(), pool, Duration::from_secs(5));
    let journal = Journal::default();
    let kind = registry
        .register(
            &root,
            KindSpec::new(move |id: &str| Probe {
                name: id.to_owned(),
                journal: journal.clone(),
                pings: 0,
            })
            .backoff(Backoff::none()),
        )
        .await
        .unwrap();
    registry.route_for::<Probe, Ping>(&kind, "probe.ping");
    registry.route_for::<Probe, Boom>(&kind, "probe.boom");
    registry.route_for::<Probe, Add>(&kind, "probe.add");
    (tree, registry, bus)
}

async fn a_poison_message_is_dead_lettered_while_the_actor_keeps_serving(bus: Arc<dyn Bus>) {
    let (tree, registry, bus) = node_with_probes(bus).await;
    let mut replies = bus.subscribe("reply.test", 100).await.unwrap();
    let mut events = tree.events();
    let poison = to_probe("p-1", "probe.boom", &Boom);
    bus.send(&poison).await.unwrap();
    let mut pings = Vec::new();
    for _ in 0..3 {
        let ping = to_probe("p-1", "probe.ping", &Ping).reply_to("reply.test");
        bus.send(&ping).await.unwrap();
        pings.push(ping.id);
    }
    let shards: Vec<u16> = (0..bus.shards()).collect();
    let inbox = Inbox::start(registry.clone(), Arc::clone(&bus), shards, 8)
        .await
        .unwrap();
    // The pings are answered, in order, by a fresh incarnation.
    for (i, id) in pings.iter().enumerate() {
        let d = next(&mut replies).await;
        let reply = d.envelope().unwrap();
        assert_eq!(reply.correlation_id, Some(*id));
        assert_eq!(reply.payload.get(), (i + 1).to_string());
        d.ack().await.unwrap();
    }
    let mut dead = bus.consume_dead_letters(10).await.unwrap();
    let d = next(&mut dead).await;
    assert_eq!(d.envelope().unwrap().id, poison.id);
    let info = d.info().dead_letter.clone().unwrap();
    assert_eq!(info.deliveries, 3);
    assert!(info.reason.contains("boom in p-1"), "{}", info.reason);
    nothing_more(&mut dead).await;
    let seen = events_until(&mut events, LONG, |evs| {
        evs.iter()
            .any(|e| matches!(e.what, EventKind::DeadLettered { .. }))
    })
    .await;
    let crashes = seen
        .iter()
        .filter(|e| matches!(e.what, EventKind::Crashed { .. }))
        .count();
    assert_eq!(crashes, 3, "one crash per delivery, then set aside");
    // Remembered by the node, with the reason of its last failure.
    let (kept, _) = tree.dead_letters().page(None, 10);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].topic, "probe.boom");
    assert!(kept[0].reason.contains("boom in p-1"), "{}", kept[0].reason);
    inbox.stop().await;
}

async fn messages_that_can_never_work_are_dead_lettered_at_once(bus: Arc<dyn Bus>) {
    let (tree, registry, bus) = node_with_probes(bus).await;
    let shard = shard_of(&bus, "p-1").await;
    let mut sub = bus.consume_shard(shard, 10).await.unwrap();
    let cases = [
        (to_probe("p-1", "probe.unknown", &Ping), "no handler"),
        (
            to_probe("p-1", "probe.add", &serde_json::json!({"n": "Jane Doe"})),
            "wrong shape",
        ),
        (
            {
                let mut e = to_probe("p-1", "probe.ping", &Ping);
                e.deadline_ms = Some(1);
                e
            },
            "deadline passed",
        ),
    ];
    for (env, why) in cases {
        bus.send(&env).await.unwrap();
        match deliver(&registry, bus.as_ref(), next(&mut sub).await).await {
            Delivered::DeadLettered(reason) => {
                assert!(reason.contains(why), "{reason}");
                assert!(
                    !reason.contains("Jane"),
                    "reason quotes the payload: {reason}"
                );
            }
            other => panic!("{why}: {other:?}"),
        }
    }
    // The node remembers them, newest first, with their type and reason
    // and without their payload (deadLetters in the API).
    let (kept, more) = tree.dead_letters().page(None, 10);
    assert!(!more);
    let kept: Vec<(&str, &str)> = kept
        .iter()
        .map(|d| (d.topic.as_str(), d.reason.as_str()))
        .collect();
    assert_eq!(kept.len(), 3, "{kept:?}");
    for ((topic, reason), (expected_topic, why)) in kept.iter().zip([
        ("probe.ping", "deadline passed"),
        ("probe.add", "wrong shape"),
        ("probe.unknown", "no handler"),
    ]) {
        assert_eq!(*topic, expected_topic);
        assert!(reason.contains(why) && !reason.contains("Jane"), "{reason}");
    }
    let mut dead = bus.consume_dead_letters(10).await.unwrap();
    for _ in 0..3 {
        next(&mut dead).await.ack().await.unwrap();
    }
}

async fn requeued_messages_go_back_to_their_place_in_order(bus: Arc<dyn Bus>) {
    let ids: Vec<_> = (0..4)
        .map(|i| to_probe("p-1", "probe.add", &serde_json::json!({ "n": i })))
        .collect();
    for env in &ids {
        bus.send(env).await.unwrap();
    }
    let mut sub = bus
        .consume_shard(shard_of(&bus, "p-1").await, 10)
        .await
        .unwrap();
    let first = next(&mut sub).await;
    let second = next(&mut sub).await;
    let third = next(&mut sub).await;
    // Settled out of order: 2nd, then 1st failed; 3rd released by dropping it.
    second.nack("x").await.unwrap();
    first.nack("x").await.unwrap();
    drop(third);
    let order: Vec<_> = [
        next(&mut sub).await,
        next(&mut sub).await,
        next(&mut sub).await,
        next(&mut sub).await,
    ]
    .iter()
    .map(|d| d.envelope().unwrap().id)
    .collect();
    let sent: Vec<_> = ids.iter().map(|e| e.id).collect();
    if bus.describe().starts_with("amqp") {
        // RabbitMQ had already pushed the 4th (prefetch) before the others
        // came back: each comes again exactly once, the requeued in their order.
        let mut got = order.clone();
        got.sort_by_key(|id| sent.iter().position(|s| s == id));
        assert_eq!(got, sent, "each message exactly once");
        assert_eq!(order[0], sent[3], "{order:?}");
    } else {
        assert_eq!(order, sent);
    }
}

on_both_buses!(
    an_unacked_delivery_is_redelivered_and_an_acked_one_never_again,
    5
);
on_both_buses!(
    past_the_delivery_limit_a_message_is_dead_lettered_with_its_reason,
    3
);
on_both_buses!(prefetch_bounds_unsettled_deliveries, 5);
on_both_buses!(a_consumer_given_up_while_starting_leaves_none_behind, 5);

/// A subscription dropped while it is still starting (a caller's timeout, a
/// `select!` that went the other way) leaves no consumer behind: on RabbitMQ
/// one the broker registered and nobody reads would be the shard's single
/// active consumer, and the consumer started after it would never get the
/// shard's messages.
async fn a_consumer_given_up_while_starting_leaves_none_behind(bus: Arc<dyn Bus>) {
    let shard = shard_of(&bus, "p-orphan").await;
    // Given up at points all along the attach (channel, qos, consume).
    for i in 0..40u64 {
        let starting = bus.consume_shard(shard, 4);
        let _ = tokio::time::timeout(Duration::from_micros(i * 250), starting).await;
    }
    let mut sub = bus.consume_shard(shard, 4).await.unwrap();
    let env = to_probe("p-orphan", "probe.ping", &Ping);
    bus.send(&env).await.unwrap();
    let got = next(&mut sub).await;
    assert_eq!(got.envelope().unwrap().id, env.id);
    got.ack().await.unwrap();
}
on_both_buses!(topic_subscribers_each_get_the_events_that_match, 5);
on_both_buses!(requeued_messages_go_back_to_their_place_in_order, 10);
on_both_buses!(
    a_poison_message_is_dead_lettered_while_the_actor_keeps_serving,
    3
);
on_both_buses!(messages_that_can_never_work_are_dead_lettered_at_once, 5);

/// A consumer lost (a dropped delivery: a node died, a shard was handed over)
/// is not the message's fault: only failed deliveries count toward the limit.
async fn only_failures_count_toward_the_delivery_limit(bus: Arc<dyn Bus>) {
    let env = to_probe("p-1", "probe.boom", &Boom);
    bus.send(&env).await.unwrap();
    let mut sub = bus
        .consume_shard(shard_of(&bus, "p-1").await, 10)
        .await
        .unwrap();
    for _ in 0..3 {
        drop(next(&mut sub).await); // released, three times
    }
    let d = next(&mut sub).await;
    assert_eq!(d.info().delivery_count, 4);
    assert_eq!(d.nack("first failure").await.unwrap(), Nacked::Requeued);
    let d = next(&mut sub).await;
    assert_eq!(d.info().delivery_count, 5);
    assert_eq!(
        d.nack("second failure").await.unwrap(),
        Nacked::DeadLettered
    );
    let mut dead = bus.consume_dead_letters(10).await.unwrap();
    let d = next(&mut dead).await;
    assert_eq!(d.envelope().unwrap().id, env.id);
    let info = d.info().dead_letter.clone().unwrap();
    assert!(info.reason.contains("second failure"), "{}", info.reason);
    assert_eq!(info.deliveries, 5);
}

on_both_buses!(only_failures_count_toward_the_delivery_limit, 2);

/// An actor whose steps can be held at a gate, to show that the deliveries
/// of one shard are dispatched per actor.
struct Gated {
    id: String,
    gate: Arc<tokio::sync::Semaphore>,
    log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl cardio::actors::Actor for Gated {
    const KIND: &'static str = "gated";
}

#[derive(actix::Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "u32")]
struct Step {
    n: u32,
}

impl cardio::actors::Handler<Step> for Gated {
    async fn handle(&mut self, step: Step, _: &mut cardio::actors::Ctx<Self>) -> u32 {
        self.log
            .lock()
            .unwrap()
            .push(format!("{}:{} begun", self.id, step.n));
        if self.id == "slow" {
            // Held (without blocking the thread) until the test opens the gate.
            self.gate.acquire().await.unwrap().forget();
        }
        self.log
            .lock()
            .unwrap()
            .push(format!("{}:{} done", self.id, step.n));
        step.n
    }
}

/// A registry with the `gated` kind routed: the actor `gated/slow` waits at
/// the gate (opened with its permits), the others do not; each step is logged.
async fn gated_registry() -> (
    Registry,
    Arc<tokio::sync::Semaphore>,
    Arc<std::sync::Mutex<Vec<String>>>,
    SupervisorRef,
) {
    let tree = Tree::new();
    let pool = ArbiterPool::current();
    let root = SupervisorRef::start_root(SupervisorSpec::new("root"), &tree, &pool, |r| {
        panic!("root failed: {r}")
    })
    .await;
    let registry = Registry::new(tree.clone(), pool, Duration::from_secs(30));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let log: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let (g, l) = (Arc::clone(&gate), Arc::clone(&log));
    let kind = registry
        .register(
            &root,
            KindSpec::new(move |id: &str| Gated {
                id: id.to_owned(),
                gate: Arc::clone(&g),
                log: Arc::clone(&l),
            }),
        )
        .await
        .unwrap();
    registry.route_for::<Gated, Step>(&kind, "gated.step");
    (registry, gate, log, root)
}

#[actix_rt::test]
async fn a_slow_actor_does_not_hold_up_the_others_on_its_shard_and_each_keeps_its_order() {
    // One shard: every actor shares it.
    let bus = bus::connect(
        "memory://",
        BusOptions {
            shards: 1,
            ..options(5)
        },
    )
    .await
    .unwrap();
    let (registry, gate, log, _root) = gated_registry().await;
    let step = |id: &str, n: u32| {
        Envelope::new("gated.step", &Step { n })
            .unwrap()
            .to(format!("gated/{id}").parse().unwrap())
    };
    // The slow actor's steps come first in the queue.
    for env in [
        step("slow", 1),
        step("slow", 2),
        step("fast", 1),
        step("fast", 2),
        step("fast", 3),
    ] {
        bus.send(&env).await.unwrap();
    }
    let inbox = Inbox::start(registry.clone(), Arc::clone(&bus), [0], 8)
        .await
        .unwrap();
    let done = |id: &str, n: u32| format!("{id}:{n} done");
    poll_until(
        "the fast actor's steps done while the slow one is held",
        LONG,
        Duration::from_millis(10),
        async || {
            let log = log.lock().unwrap();
            log.contains(&done("fast", 3))
        },
    )
    .await;
    {
        let log = log.lock().unwrap();
        let fast: Vec<&String> = log.iter().filter(|e| e.starts_with("fast:")).collect();
        assert_eq!(
            fast,
            [
                "fast:1 begun",
                "fast:1 done",
                "fast:2 begun",
                "fast:2 done",
                "fast:3 begun",
                "fast:3 done"
            ],
            "in order"
        );
        // The slow actor's first step is in hand; its second waits behind it.
        let slow: Vec<&String> = log.iter().filter(|e| e.starts_with("slow:")).collect();
        assert_eq!(slow, ["slow:1 begun"], "{log:?}");
    }
    gate.add_permits(2);
    poll_until(
        "the slow actor's steps done",
        LONG,
        Duration::from_millis(10),
        async || log.lock().unwrap().contains(&done("slow", 2)),
    )
    .await;
    let log = log.lock().unwrap().clone();
    let slow: Vec<&String> = log.iter().filter(|e| e.starts_with("slow:")).collect();
    assert_eq!(
        slow,
        ["slow:1 begun", "slow:1 done", "slow:2 begun", "slow:2 done"],
        "in order, each once"
    );
    inbox.stop().await;
    // All acknowledged: nothing comes again.
    let mut sub = bus.consume_shard(0, 8).await.unwrap();
    nothing_more(&mut sub).await;
}

/// A settlement that never completes (an ack on a connection that died
/// without a word): what the lane watchdog is for. Records being dropped,
/// that is, the wait given up.
struct NeverSettles {
    dropped: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for NeverSettles {
    fn drop(&mut self) {
        self.dropped
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl bus::Acker for NeverSettles {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        std::future::pending().await
    }
    async fn nack(self: Box<Self>, _: &str) -> Result<Nacked, BusError> {
        std::future::pending().await
    }
    async fn dead_letter(self: Box<Self>, _: &str) -> Result<(), BusError> {
        std::future::pending().await
    }
    fn release(self: Box<Self>) {}
}

/// Settles at once, recording it.
struct Settles {
    acked: Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait::async_trait]
impl bus::Acker for Settles {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        self.acked.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
    async fn nack(self: Box<Self>, _: &str) -> Result<Nacked, BusError> {
        Ok(Nacked::Requeued)
    }
    async fn dead_letter(self: Box<Self>, _: &str) -> Result<(), BusError> {
        Ok(())
    }
    fn release(self: Box<Self>) {}
}

fn delivery_of(env: &Envelope, acker: Box<dyn bus::Acker>) -> bus::Delivery {
    bus::Delivery::new(
        env.encode(),
        bus::DeliveryInfo {
            queue: "cardio.shard.0".into(),
            redelivered: false,
            delivery_count: 1,
            dead_letter: None,
        },
        acker,
    )
}

#[actix_rt::test]
async fn a_delivery_that_never_settles_is_given_up_after_its_deadline_and_its_actor_goes_on() {
    use cardio::registry::inbox::{Lanes, SETTLE_GRACE};
    use std::sync::atomic::{AtomicBool, Ordering};
    let bus = memory(5).await;
    let (registry, _gate, log, _root) = gated_registry().await;
    let step = |n: u32, within: Duration| {
        Envelope::new("gated.step", &Step { n })
            .unwrap()
            .to("gated/fast".parse().unwrap())
            .within(within)
    };
    let (dropped, acked) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let mut lanes = Lanes::new(registry.clone(), bus, Arc::new(|| false));
    // Paused from here: the wait for the watchdog costs no real time.
    tokio::time::pause();
    let began = tokio::time::Instant::now();
    let deadline = Duration::from_secs(2);
    lanes.push(delivery_of(
        &step(1, deadline),
        Box::new(NeverSettles {
            dropped: Arc::clone(&dropped),
        }),
    ));
    lanes.push(delivery_of(
        &step(2, Duration::from_secs(60)),
        Box::new(Settles {
            acked: Arc::clone(&acked),
        }),
    ));
    assert_eq!(lanes.in_hand(), 2, "the second waits behind the first");
    tokio::time::timeout(Duration::from_secs(600), async {
        while !acked.load(Ordering::SeqCst) {
            lanes.next_done().await;
        }
    })
    .await
    .expect("the actor's second message was never handled");
    let took = began.elapsed();
    assert!(
        dropped.load(Ordering::SeqCst),
        "the stuck settle was given up"
    );
    assert!(
        took >= SETTLE_GRACE && took <= deadline + SETTLE_GRACE + Duration::from_secs(1),
        "given up after its deadline and the grace, not before nor much later: {took:?}"
    );
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log,
        ["fast:1 begun", "fast:1 done", "fast:2 begun", "fast:2 done"],
        "handled in order, each once"
    );
    assert_eq!(lanes.in_hand(), 0);
}

// ---- The bus path (issue 15): pipelined confirms, the reply path ----------

/// Many sends in flight at once (pipelined on one channel on RabbitMQ) are
/// each confirmed, and each message is in its queue exactly once.
async fn many_concurrent_sends_are_each_confirmed_and_queued_once(bus: Arc<dyn Bus>) {
    let envs: Vec<Envelope> = (0..200)
        .map(|i| to_probe(&format!("p-{i}"), "probe.ping", &Ping))
        .collect();
    let sent = futures_util::future::join_all(envs.iter().map(|e| bus.send(e))).await;
    assert!(sent.iter().all(Result::is_ok), "{sent:?}");
    let mut seen = std::collections::HashMap::new();
    for shard in 0..bus.shards() {
        let mut sub = bus.consume_shard(shard, 50).await.unwrap();
        while let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
            *seen.entry(d.envelope().unwrap().id).or_insert(0) += 1;
            d.ack().await.unwrap();
        }
    }
    assert_eq!(seen.len(), envs.len(), "every confirmed message is queued");
    assert!(
        envs.iter().all(|e| seen.get(&e.id) == Some(&1)),
        "none twice"
    );
}
on_both_buses!(many_concurrent_sends_are_each_confirmed_and_queued_once, 5);

/// A reply reaches the reply queue it is sent to, and one sent to a reply
/// queue whose requester is gone is dropped: the responder sees no error.
async fn a_reply_reaches_its_queue_and_one_to_a_requester_gone_is_dropped(bus: Arc<dyn Bus>) {
    let (address, mut replies) = bus.reply_queue().await.unwrap();
    let request = to_probe("p-1", "probe.ping", &Ping).reply_to(&address);
    let reply = request.reply(serde_json::value::to_raw_value(&7).unwrap());
    bus.reply(&address, &reply).await.unwrap();
    let got = next(&mut replies).await;
    let env = got.envelope().unwrap();
    assert_eq!(env.correlation_id, Some(request.id));
    assert_eq!(env.payload.get(), "7");
    got.ack().await.unwrap(); // nothing to settle, and no error
    replies.close().await;
    for _ in 0..50 {
        bus.reply(&address, &reply).await.unwrap();
    }
    // A new reply queue sees none of them.
    let (_, mut other) = bus.reply_queue().await.unwrap();
    nothing_more(&mut other).await;
}
on_both_buses!(
    a_reply_reaches_its_queue_and_one_to_a_requester_gone_is_dropped,
    5
);

/// The inbox answers a request whose requester is gone, and acknowledges
/// it like any other: the lost reply is no failure of the message.
async fn a_request_whose_requester_is_gone_is_handled_and_acknowledged(bus: Arc<dyn Bus>) {
    let (_tree, registry, bus) = node_with_probes(bus).await;
    let (address, replies) = bus.reply_queue().await.unwrap();
    replies.close().await;
    let ping = to_probe("p-gone", "probe.ping", &Ping).reply_to(&address);
    bus.send(&ping).await.unwrap();
    let shard = shard_of(&bus, "p-gone").await;
    let mut sub = bus.consume_shard(shard, 4).await.unwrap();
    let d = next(&mut sub).await;
    assert_eq!(deliver(&registry, bus.as_ref(), d).await, Delivered::Acked);
    nothing_more(&mut sub).await;
}
on_both_buses!(
    a_request_whose_requester_is_gone_is_handled_and_acknowledged,
    5
);

/// `Requester::ask` end to end through an inbox: the answer comes back.
async fn an_ask_is_answered_through_the_inbox(bus: Arc<dyn Bus>) {
    let (_tree, registry, bus) = node_with_probes(bus).await;
    let shards: Vec<u16> = (0..bus.shards()).collect();
    let inbox = Inbox::start(registry, Arc::clone(&bus), shards, 8)
        .await
        .unwrap();
    let req = Requester::new(Arc::clone(&bus)).await.unwrap();
    let to: cardio::registry::ActorId = "probe/p-ask".parse().unwrap();
    let deadline = tokio::time::Instant::now() + LONG;
    let answers =
        futures_util::future::join_all((0..20).map(|_| req.ask(&to, &AskPing, deadline))).await;
    let mut answers: Vec<u32> = answers.into_iter().map(Result::unwrap).collect();
    answers.sort();
    assert_eq!(
        answers,
        (1..=20).collect::<Vec<u32>>(),
        "each answered once"
    );
    inbox.stop().await;
}
on_both_buses!(an_ask_is_answered_through_the_inbox, 5);

use cardio::bus::client::{AskError, Requester};

/// `Ping` as a typed bus message, for `Requester::ask`.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct AskPing;

impl cardio::bus::BusMessage for AskPing {
    const TYPE: &'static str = "probe.ping";
    const KIND: &'static str = "probe";
    type Reply = u32;
}

/// Many confirms in flight on one channel, one of them refused (a nack from
/// a full quorum queue): the refused one fails alone, every other is
/// confirmed and queued once (the channel the nack came on is replaced
/// only after its other confirms came in, so none is published again).
#[actix_rt::test]
async fn a_refused_publish_fails_alone_among_many_in_flight() {
    needs!(Rabbitmq);
    let _broker = crate::broker::shared().await;
    let vhost = crate::broker::Vhost::new();
    let bus: Arc<dyn Bus> = Arc::new(
        vhost
            .bus(options(5))
            .await
            .with_retry_for(Duration::from_secs(2)),
    );
    let full = 0u16;
    crate::broker::rabbitmqctl(&[
        "set_policy",
        "-p",
        &vhost.name,
        "full",
        &format!("^cardio\\.shard\\.{full}$"),
        r#"{"max-length":0,"overflow":"reject-publish"}"#,
        "--apply-to",
        "queues",
    ]);
    let refused = (0..)
        .map(|i| format!("p-r{i}"))
        .find(|id| cardio::cluster::shard_of(&format!("probe/{id}").parse().unwrap(), 4) == full)
        .unwrap();
    let others: Vec<Envelope> = (0..)
        .map(|i| format!("p-{i}"))
        .filter(|id| cardio::cluster::shard_of(&format!("probe/{id}").parse().unwrap(), 4) != full)
        .take(300)
        .map(|id| to_probe(&id, "probe.ping", &Ping))
        .collect();
    let bad = to_probe(&refused, "probe.ping", &Ping);
    // The policy reaches the queue a moment after rabbitmqctl returns.
    poll_until(
        "the policy applied",
        LONG,
        Duration::from_millis(100),
        async || bus.send(&bad).await.is_err(),
    )
    .await;
    let (bad_sent, sent) = tokio::join!(
        bus.send(&bad),
        futures_util::future::join_all(others.iter().map(|e| bus.send(e)))
    );
    assert!(
        matches!(&bad_sent, Err(BusError::Broker(e)) if e.contains("nack")),
        "{bad_sent:?}"
    );
    assert!(sent.iter().all(Result::is_ok), "{sent:?}");
    let mut seen = std::collections::HashMap::new();
    for shard in (0..4).filter(|s| *s != full) {
        let mut sub = bus.consume_shard(shard, 100).await.unwrap();
        while let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
            *seen.entry(d.envelope().unwrap().id).or_insert(0) += 1;
            d.ack().await.unwrap();
        }
    }
    assert_eq!(
        seen.len(),
        others.len(),
        "every confirmed message is queued"
    );
    let twice = others
        .iter()
        .filter(|e| seen.get(&e.id) != Some(&1))
        .count();
    assert_eq!(twice, 0, "published again after the nack on their channel");
}

/// A reply queue that nobody consumes any more is gone from the broker:
/// replies to it cannot pile up there.
#[actix_rt::test]
async fn a_reply_queue_is_gone_with_its_requester() {
    needs!(Rabbitmq);
    let _broker = crate::broker::shared().await;
    let vhost = crate::broker::Vhost::new();
    let bus: Arc<dyn Bus> = Arc::new(vhost.bus(options(5)).await);
    let req = Requester::new(Arc::clone(&bus)).await.unwrap();
    let (address, replies) = bus.reply_queue().await.unwrap();
    let conn = lapin::Connection::connect(&vhost.url(), lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let exists = async |name: &str| {
        let ch = conn.create_channel().await.unwrap();
        let passive = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        // Another connection's exclusive queue answers RESOURCE_LOCKED
        // (it exists); a missing one NOT_FOUND.
        let found = match ch
            .queue_declare(name.into(), passive, Default::default())
            .await
        {
            Ok(_) => true,
            Err(e) => !e.to_string().contains("NOT_FOUND"),
        };
        let _ = ch.close(200, "done".into()).await;
        found
    };
    assert!(exists(&address).await, "the reply queue is declared");
    replies.close().await;
    poll_until(
        "the reply queue gone",
        LONG,
        Duration::from_millis(50),
        async || !exists(&address).await,
    )
    .await;
    drop(req);
    let _ = conn.close(200, "done".into()).await;
}

/// The requester's connection is cut while its request is in the actor's
/// hands (the reply queue is lost with it, like in a broker restart): the
/// ask is answered once the connection is back (it asks again when its
/// reply queue was reset), or fails by its deadline; it never hangs.
#[actix_rt::test]
async fn an_ask_whose_connection_is_cut_mid_request_is_answered_or_fails_by_its_deadline() {
    needs!(Rabbitmq);
    let _broker = crate::broker::shared().await;
    let vhost = crate::broker::Vhost::new();
    let proxy = crate::broker::Proxy::start().await;
    let direct: Arc<dyn Bus> = Arc::new(vhost.bus(options(5)).await);
    let cut_off: Arc<dyn Bus> = Arc::new(
        cardio::bus::amqp::AmqpBus::connect(&proxy.url(&vhost), options(5))
            .await
            .unwrap(),
    );
    let req = Requester::new(Arc::clone(&cut_off)).await.unwrap();
    // The responder: holds its first request until told, then answers all.
    let shard = shard_of(&direct, "p-cut").await;
    let mut sub = direct.consume_shard(shard, 4).await.unwrap();
    let (held_tx, held) = tokio::sync::oneshot::channel::<()>();
    let (go, go_rx) = tokio::sync::oneshot::channel::<()>();
    let bus = Arc::clone(&direct);
    let responder = actix_rt::spawn(async move {
        let (mut held_tx, mut go_rx) = (Some(held_tx), Some(go_rx));
        let mut answered = 0u32;
        while let Some(d) = sub.next().await {
            if let Some(tx) = held_tx.take() {
                let _ = tx.send(());
                let _ = go_rx.take().unwrap().await;
            }
            let env = d.envelope().unwrap();
            answered += 1;
            let n = serde_json::value::to_raw_value(&answered).unwrap();
            bus.reply(env.reply_to.as_deref().unwrap(), &env.reply(n))
                .await
                .unwrap();
            d.ack().await.unwrap();
        }
    });
    let to: cardio::registry::ActorId = "probe/p-cut".parse().unwrap();
    let start = tokio::time::Instant::now();
    let deadline = start + Duration::from_secs(20);
    let asking = actix_rt::spawn(async move {
        let answer = req.ask(&to, &AskPing, deadline).await;
        (answer, tokio::time::Instant::now())
    });
    tokio::time::timeout(LONG, held).await.unwrap().unwrap();
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.restore();
    let _ = go.send(());
    let (answer, at) = tokio::time::timeout(Duration::from_secs(25), asking)
        .await
        .expect("the ask ends by its deadline")
        .unwrap();
    assert!(
        at <= deadline + Duration::from_millis(500),
        "ended by the deadline"
    );
    assert!(
        matches!(answer, Ok(n) if n >= 1) || matches!(answer, Err(AskError::Timeout)),
        "{answer:?}"
    );
    // With the connection back in half a second, it is answered.
    assert!(answer.is_ok(), "answered after the cut: {answer:?}");
    responder.abort();
}
