//! The typed protocol across the bus, on the embedded (memory) bus: a
//! `BusMessage` goes to its handler and its reply comes back typed; payloads
//! of another version's shape are read by their type or dead-lettered with a
//! reason, never mis-read; an ask gives up at once on a permanent error and
//! asks again, pausing, on a transient one until its deadline.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cardio::actors::{Actor, Ctx, Handler};
use cardio::address::ActorId;
use cardio::bus::client::{AnyMessage, AskError, LocalDelivery, LocalPath, Requester};
use cardio::bus::{self, Bus, BusMessage, BusOptions, Envelope};
use cardio::registry::inbox::{deliver, Delivered, Inbox};
use cardio::registry::{KindSpec, Registry};
use cardio::supervisors::{ArbiterPool, SupervisorRef, SupervisorSpec, Tree};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Answers greetings; counts the tries of `Flaky`.
struct Greeter {
    name: String,
    tries: Arc<AtomicU32>,
}

impl Actor for Greeter {
    const KIND: &'static str = "greeter";
}

/// Today's shape of the greeting: `formal` came in a later version, so it
/// has a default and an older node's payload without it is still read.
#[derive(Debug, Clone, Serialize, Deserialize, actix::Message)]
#[rtype(result = "String")]
struct Greet {
    from: String,
    #[serde(default)]
    formal: bool,
}

impl BusMessage for Greet {
    const TYPE: &'static str = "greeter.greet";
    const KIND: &'static str = "greeter";
    type Reply = String;
}

impl Handler<Greet> for Greeter {
    async fn handle(&mut self, g: Greet, _: &mut Ctx<Self>) -> String {
        let hello = if g.formal { "good day" } else { "hello" };
        format!("{hello} {}, from {}", g.from, self.name)
    }
}

/// A caller that expects another reply type than the handler gives (a peer
/// of another version): a protocol mismatch.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct GreetExpectingANumber {
    from: String,
}

impl BusMessage for GreetExpectingANumber {
    const TYPE: &'static str = "greeter.greet";
    const KIND: &'static str = "greeter";
    type Reply = u64;
}

/// Answers "busy" (a transient refusal) its first three times.
#[derive(Debug, Clone, Serialize, Deserialize, actix::Message)]
#[rtype(result = "Result<u32, String>")]
struct Flaky;

impl BusMessage for Flaky {
    const TYPE: &'static str = "greeter.flaky";
    const KIND: &'static str = "greeter";
    type Reply = Result<u32, String>;

    fn unavailable(reply: &Self::Reply) -> bool {
        matches!(reply, Err(e) if e == "busy")
    }
}

impl Handler<Flaky> for Greeter {
    async fn handle(&mut self, _: Flaky, _: &mut Ctx<Self>) -> Result<u32, String> {
        let n = self.tries.fetch_add(1, Ordering::SeqCst) + 1;
        if n <= 3 {
            Err("busy".into())
        } else {
            Ok(n)
        }
    }
}

/// A message for another kind of actor.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ForConsults;

impl BusMessage for ForConsults {
    const TYPE: &'static str = "consult.something";
    const KIND: &'static str = "consult";
    type Reply = ();
}

async fn node() -> (Registry, Arc<dyn Bus>, Arc<AtomicU32>) {
    let bus = bus::connect(
        "memory://",
        BusOptions {
            shards: 4,
            delivery_limit: 3,
            max_queue_len: 100,
        },
    )
    .await
    .unwrap();
    let tree = Tree::new();
    let pool = ArbiterPool::current();
    let root = SupervisorRef::start_root(SupervisorSpec::new("root"), &tree, &pool, |r| {
        panic!("root failed: {r}")
    })
    .await;
    let registry = Registry::new(tree, pool, Duration::from_secs(5));
    let tries = Arc::new(AtomicU32::new(0));
    let t = Arc::clone(&tries);
    let kind = registry
        .register(
            &root,
            KindSpec::new(move |id: &str| Greeter {
                name: id.to_owned(),
                tries: Arc::clone(&t),
            }),
        )
        .await
        .unwrap();
    registry.route::<Greeter, Greet>(&kind);
    registry.route::<Greeter, Flaky>(&kind);
    (registry, bus, tries)
}

fn greeter(id: &str) -> ActorId {
    ActorId::new("greeter", id).unwrap()
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

/// Asks greeter g-1 to greet ann formally, and checks its typed reply.
async fn greets_ann(requester: &Requester) {
    let greet = Greet {
        from: "ann".into(),
        formal: true,
    };
    let reply: String = requester
        .ask(&greeter("g-1"), &greet, soon())
        .await
        .unwrap();
    assert_eq!(reply, "good day ann, from g-1");
}

#[actix_rt::test]
async fn a_typed_ask_reaches_its_handler_and_its_reply_comes_back_typed() {
    let (registry, bus, tries) = node().await;
    let shards: Vec<u16> = (0..bus.shards()).collect();
    let inbox = Inbox::start(registry, Arc::clone(&bus), shards, 8)
        .await
        .unwrap();
    let requester = Requester::new(Arc::clone(&bus)).await.unwrap();
    greets_ann(&requester).await;

    // A transient refusal is asked again (with pauses) until it is answered.
    let n = requester
        .ask(&greeter("g-1"), &Flaky, soon())
        .await
        .unwrap();
    assert_eq!(n, Ok(4), "three refusals, then the answer");
    assert_eq!(tries.load(Ordering::SeqCst), 4);

    // A reply that does not decode as the caller's reply type is a permanent
    // error, reported as such before the deadline (not a timeout).
    let asked = Instant::now();
    let odd = GreetExpectingANumber { from: "bo".into() };
    let e = requester
        .ask(&greeter("g-1"), &odd, soon())
        .await
        .unwrap_err();
    assert!(matches!(e, AskError::Protocol(_)), "{e:?}");
    assert!(!e.is_transient());
    assert!(
        Instant::now() < asked + Duration::from_secs(10),
        "gave up early"
    );

    // A message for another kind is refused before it is sent.
    let e = requester
        .ask(&greeter("g-1"), &ForConsults, soon())
        .await
        .unwrap_err();
    assert!(matches!(e, AskError::WrongKind { .. }), "{e:?}");
    inbox.stop().await;
}

/// A local path that serves every actor of `registry` here (the cluster's
/// serves those of the shards it holds), counting what it delivered.
struct Everything {
    registry: Registry,
    delivered: AtomicU32,
}

impl LocalPath for Everything {
    fn deliver(
        &self,
        to: &ActorId,
        msg_type: &str,
        msg: &dyn Fn() -> AnyMessage,
        deadline: Instant,
    ) -> Option<LocalDelivery> {
        self.delivered.fetch_add(1, Ordering::SeqCst);
        self.registry.deliver_here(to, msg_type, msg, deadline)
    }
}

#[actix_rt::test]
async fn an_ask_served_here_hands_its_message_and_reply_over_as_they_are() {
    // No inbox consumes the shard queues: only the local path can answer.
    let (registry, bus, tries) = node().await;
    let local = Arc::new(Everything {
        registry,
        delivered: AtomicU32::new(0),
    });
    let requester = Requester::new(Arc::clone(&bus))
        .await
        .unwrap()
        .with_local(local.clone());
    greets_ann(&requester).await;
    assert_eq!(local.delivered.load(Ordering::SeqCst), 1);

    // A transient refusal is tried here once; the ask then goes on through
    // the bus, which nobody consumes here: it ends at its deadline.
    let deadline = Instant::now() + Duration::from_millis(500);
    let e = requester
        .ask(&greeter("g-1"), &Flaky, deadline)
        .await
        .unwrap_err();
    assert_eq!(e, AskError::Timeout);
    assert_eq!(tries.load(Ordering::SeqCst), 1, "one try here");
    assert_eq!(local.delivered.load(Ordering::SeqCst), 2);

    // A caller's message of another type than the route's (a peer of another
    // version, under the same wire name) is a permanent protocol error, as
    // its reply would be through the bus: no handler gets it, at once.
    let asked = Instant::now();
    let odd = GreetExpectingANumber { from: "bo".into() };
    let e = requester
        .ask(&greeter("g-1"), &odd, soon())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, AskError::Protocol(reason) if reason.starts_with("not a ")),
        "refused as a value of another type: {e:?}"
    );
    assert!(Instant::now() < asked + Duration::from_secs(1), "at once");

    // A message no route takes here is for the bus (nobody consumes it).
    #[derive(Clone, Serialize, Deserialize)]
    struct Unrouted;
    impl BusMessage for Unrouted {
        const TYPE: &'static str = "greeter.unrouted";
        const KIND: &'static str = "greeter";
        type Reply = ();
    }
    let deadline = Instant::now() + Duration::from_millis(300);
    let e = requester
        .ask(&greeter("g-1"), &Unrouted, deadline)
        .await
        .unwrap_err();
    assert_eq!(e, AskError::Timeout);
}

#[actix_rt::test]
async fn an_ask_nobody_answers_ends_at_its_deadline_as_a_transient_timeout() {
    // No inbox consumes the shard queues: nothing answers.
    let (_registry, bus, _) = node().await;
    let requester = Requester::new(Arc::clone(&bus)).await.unwrap();
    let greet = Greet {
        from: "ann".into(),
        formal: false,
    };
    let deadline = Instant::now() + Duration::from_millis(300);
    let e = requester
        .ask(&greeter("g-2"), &greet, deadline)
        .await
        .unwrap_err();
    assert_eq!(e, AskError::Timeout);
    assert!(e.is_transient());
    assert!(Instant::now() >= deadline, "asked until the deadline");
}

#[actix_rt::test]
async fn payloads_of_another_versions_shape_are_read_by_type_or_dead_lettered_never_misread() {
    let (registry, bus, _) = node().await;
    let to = greeter("g-3");
    let shard = cardio::address::shard_of(&to, bus.shards());
    let mut queue = bus.consume_shard(shard, 10).await.unwrap();
    let mut replies = bus.subscribe("reply.versions", 10).await.unwrap();
    let send = |payload: serde_json::Value| {
        Envelope::new(Greet::TYPE, &payload)
            .unwrap()
            .to(to.clone())
            .reply_to("reply.versions")
    };
    let cases = [
        // An older node's shape (no `formal`): read with the default.
        (
            send(serde_json::json!({"from": "ann"})),
            Ok("hello ann, from g-3"),
        ),
        // A newer node's shape (a field this node does not know): read,
        // the unknown field ignored.
        (
            send(serde_json::json!({"from": "bo", "formal": true, "emoji": "wave"})),
            Ok("good day bo, from g-3"),
        ),
        // A shape that cannot be a greeting: dead-lettered, with the reason
        // and without the value.
        (send(serde_json::json!({"from": 4711})), Err("wrong shape")),
        (
            send(serde_json::json!({"to": "Jane Doe"})),
            Err("wrong shape"),
        ),
        // An envelope of a version this node does not read.
        (
            {
                let mut e = send(serde_json::json!({"from": "cy"}));
                e.v = 2;
                e
            },
            Err("envelope version 2 is not supported"),
        ),
    ];
    for (env, expected) in cases {
        bus.send(&env).await.unwrap();
        let delivery = tokio::time::timeout(Duration::from_secs(10), queue.next())
            .await
            .expect("delivered in time")
            .expect("queue open");
        let delivered = deliver(&registry, bus.as_ref(), delivery).await;
        match expected {
            Ok(greeting) => {
                assert_eq!(delivered, Delivered::Acked);
                let reply = tokio::time::timeout(Duration::from_secs(10), replies.next())
                    .await
                    .expect("replied in time")
                    .expect("subscription open");
                let env = reply.envelope().unwrap();
                let text: String = serde_json::from_str(env.payload.get()).unwrap();
                assert_eq!(text, greeting);
                reply.ack().await.unwrap();
            }
            Err(why) => match delivered {
                Delivered::DeadLettered(reason) => {
                    assert!(reason.contains(why), "{reason}");
                    assert!(
                        !reason.contains("4711") && !reason.contains("Jane"),
                        "{reason}"
                    );
                }
                other => panic!("{why}: {other:?}"),
            },
        }
    }
}
