//! Addressing: activation by id, passivation, hand-back, many dynamic children.

use std::time::Duration;

use cardio::registry::{Kind, KindSpec, Registry};
use cardio::supervisors::{
    ArbiterPool, Backoff, SendError, Status, SupervisorRef, SupervisorSpec, Tree,
};
use futures_util::future::join_all;

use crate::support::*;

const LONG: Duration = Duration::from_secs(30);

async fn setup(spec: KindSpec<Probe>) -> (Tree, SupervisorRef, Kind<Probe>) {
    serve_kind(spec, Duration::from_secs(5)).await
}

fn probes(journal: &Journal) -> KindSpec<Probe> {
    let journal = journal.clone();
    KindSpec::new(move |id: &str| Probe {
        name: id.to_owned(),
        journal: journal.clone(),
        pings: 0,
    })
    .backoff(Backoff::none())
}

#[actix_rt::test]
async fn an_actor_is_activated_by_its_first_message_and_keeps_its_state() {
    let journal = Journal::default();
    let (tree, _root, kind) = setup(probes(&journal)).await;
    assert_eq!(kind.live(), 0);
    assert_eq!(kind.send("p-1", Ping).await.unwrap(), 1);
    assert_eq!(kind.send("p-1", Ping).await.unwrap(), 2);
    assert_eq!(kind.send("p-2", Ping).await.unwrap(), 1);
    assert_eq!(kind.live(), 2);
    assert_eq!(journal.take(), vec!["start:p-1", "start:p-2"]);
    assert_eq!(
        status_of(&tree, "/root/probe/p-1").as_deref(),
        Some("running")
    );
}

#[actix_rt::test]
async fn an_invalid_id_hands_the_message_back() {
    let (_tree, _root, kind) = setup(probes(&Journal::default())).await;
    assert!(matches!(
        kind.send("bad id/x", Ping).await,
        Err(SendError::InvalidId(Ping))
    ));
    assert_eq!(kind.live(), 0);
}

#[actix_rt::test]
async fn idle_actors_passivate_and_come_back_on_their_next_message() {
    tokio::time::pause();
    let journal = Journal::default();
    let spec = probes(&journal).idle_timeout(Some(Duration::from_secs(60)));
    let (tree, _root, kind) = setup(spec).await;
    assert_eq!(kind.send("p-1", Add { n: 5 }).await.unwrap(), 5);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        kind.send("p-1", Ping).await.unwrap(),
        6,
        "still live after 30 s"
    );
    tokio::time::sleep(Duration::from_secs(61)).await;
    poll_until("passivated", LONG, Duration::from_millis(5), async || {
        kind.live() == 0
    })
    .await;
    assert!(
        status_of(&tree, "/root/probe/p-1").is_none(),
        "left the tree"
    );
    assert_eq!(
        journal.take(),
        vec!["start:p-1", "stop:p-1"],
        "stop hook ran (state flush point)"
    );
    // Re-activated by id; in-memory state starts over (durable state is the store's job).
    assert_eq!(kind.send("p-1", Ping).await.unwrap(), 1);
    assert_eq!(kind.live(), 1);
    assert_eq!(journal.take(), vec!["start:p-1"]);
}

#[actix_rt::test]
async fn sends_racing_passivation_are_all_delivered() {
    tokio::time::pause();
    let spec = probes(&Journal::default()).idle_timeout(Some(Duration::from_millis(10)));
    let (_tree, _root, kind) = setup(spec).await;
    let mut answered = 0;
    for i in 0..300u64 {
        // Straddle the idle timeout: some sends find the actor live, some find it
        // passivating, some find it gone.
        tokio::time::sleep(Duration::from_micros(9_000 + (i % 5) * 500)).await;
        match kind.send("p-1", Ping).await {
            Ok(_) => answered += 1,
            Err(e) => panic!("send {i} failed: {e:?}"),
        }
    }
    assert_eq!(answered, 300);
}

#[actix_rt::test]
async fn a_message_to_a_stopped_actor_is_handed_back() {
    let journal = Journal::default();
    let (_tree, _root, kind) = setup(probes(&journal)).await;
    kind.send("p-1", Ping).await.unwrap();
    let p1 = kind.get("p-1").unwrap();
    kind.supervisor().shutdown().await;
    assert!(matches!(
        p1.send(Ping, LONG).await,
        Err(SendError::Stopped(Ping))
    ));
}

#[actix_rt::test]
async fn ten_thousand_dynamic_children_start_crash_selectively_and_shut_down_cleanly() {
    const N: usize = 10_000;
    let journal = Journal::default();
    let spec = probes(&journal).idle_timeout(None);
    let (tree, root, kind) = setup(spec).await;
    let ids: Vec<String> = (0..N).map(|i| format!("p-{i}")).collect();
    for chunk in ids.chunks(1000) {
        let replies = join_all(chunk.iter().map(|id| kind.send(id, Ping))).await;
        assert!(replies.into_iter().all(|r| r.unwrap() == 1));
    }
    assert_eq!(kind.live(), N);
    assert_eq!(tree.len(), N + 2, "root + kind supervisor + children");
    // Crash every 100th.
    let victims: Vec<&String> = ids.iter().step_by(100).collect();
    let crashes = join_all(victims.iter().map(|id| kind.send(id, Boom))).await;
    assert!(crashes
        .iter()
        .all(|r| matches!(r, Err(SendError::Crashed { .. }))));
    let replies = join_all(ids.iter().map(|id| kind.send(id, Ping))).await;
    for (i, reply) in replies.into_iter().enumerate() {
        let expected = if i % 100 == 0 { 1 } else { 2 };
        assert_eq!(reply.unwrap(), expected, "p-{i}");
    }
    let snapshot = tree.snapshot();
    let restarted: Vec<_> = snapshot
        .iter()
        .filter(|n| n.restarts > 0)
        .map(|n| n.id.clone())
        .collect();
    assert_eq!(restarted.len(), victims.len());
    assert!(restarted
        .iter()
        .all(|id| id.trim_start_matches("p-").parse::<usize>().unwrap() % 100 == 0));
    assert!(snapshot.iter().all(|n| n.status == Status::Running));
    root.shutdown().await;
    assert!(tree.is_empty(), "{} nodes left", tree.len());
    assert_eq!(kind.live(), 0);
    let stops = journal
        .take()
        .iter()
        .filter(|l| l.starts_with("stop:"))
        .count();
    assert_eq!(stops, N, "every child ran its stop hook");
}

#[actix_rt::test]
async fn timers_set_by_an_actor_deliver_to_it_later() {
    tokio::time::pause();
    let (_tree, _root, kind) = setup(probes(&Journal::default())).await;
    kind.send(
        "p-1",
        Later {
            after: Duration::from_secs(30),
            n: 10,
        },
    )
    .await
    .unwrap();
    assert_eq!(kind.send("p-1", Ping).await.unwrap(), 1, "not yet");
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(
        kind.send("p-1", Ping).await.unwrap(),
        12,
        "timer message handled"
    );
}

#[actix_rt::test]
async fn actors_are_spread_over_the_arbiters_of_the_pool() {
    let arbiters: Vec<actix::Arbiter> = (0..2).map(|_| actix::Arbiter::new()).collect();
    let pool = ArbiterPool::new(arbiters.iter().map(|a| a.handle()).collect());
    let tree = Tree::new();
    let root = SupervisorRef::start_root(SupervisorSpec::new("root"), &tree, &pool, |r| {
        panic!("root failed: {r}")
    })
    .await;
    let registry = Registry::new(tree.clone(), pool, Duration::from_secs(5));
    let kind = registry
        .register(&root, probes(&Journal::default()))
        .await
        .unwrap();
    let mut threads = std::collections::BTreeSet::new();
    for i in 0..8 {
        threads.insert(kind.send(&format!("p-{i}"), WhichThread).await.unwrap());
    }
    let here = format!("{:?}", std::thread::current().id());
    assert_eq!(threads.len(), 2, "{threads:?}");
    assert!(
        !threads.contains(&here),
        "actors run on the pool, not the caller's thread"
    );
    root.shutdown().await;
    for a in arbiters {
        a.stop();
    }
}

/// An actor whose stop hook takes a while, recording when it starts and ends.
struct Flusher {
    journal: Journal,
    incarnation: usize,
}

impl cardio::actors::Actor for Flusher {
    const KIND: &'static str = "flusher";

    async fn started(&mut self, _: &mut cardio::actors::Ctx<Self>) {
        self.journal.push(format!("start:{}", self.incarnation));
    }

    async fn stopping(&mut self, _: &mut cardio::actors::Ctx<Self>) {
        self.journal
            .push(format!("flush-begin:{}", self.incarnation));
        tokio::time::sleep(Duration::from_secs(2)).await;
        self.journal.push(format!("flush-end:{}", self.incarnation));
    }
}

impl cardio::actors::Handler<Ping> for Flusher {
    async fn handle(&mut self, _: Ping, _: &mut cardio::actors::Ctx<Self>) -> u32 {
        self.incarnation as u32
    }
}

#[actix_rt::test]
async fn a_passivating_actor_finishes_flushing_before_its_successor_starts() {
    tokio::time::pause();
    let journal = Journal::default();
    let tree = Tree::new();
    let pool = ArbiterPool::current();
    let root = SupervisorRef::start_root(SupervisorSpec::new("root"), &tree, &pool, |r| {
        panic!("root failed: {r}")
    })
    .await;
    let registry = Registry::new(tree.clone(), pool, Duration::from_secs(30));
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let j = journal.clone();
    let kind = registry
        .register(
            &root,
            KindSpec::new(move |_: &str| Flusher {
                journal: j.clone(),
                incarnation: counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
            })
            .idle_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    assert_eq!(kind.send("f-1", Ping).await.unwrap(), 0);
    // Wait until the flush is under way, then send.
    poll_until(
        "flush began",
        Duration::from_secs(60),
        Duration::from_millis(5),
        async || journal.contains("flush-begin:0"),
    )
    .await;
    assert_eq!(
        kind.send("f-1", Ping).await.unwrap(),
        1,
        "answered by the successor"
    );
    assert_eq!(
        journal.take(),
        vec!["start:0", "flush-begin:0", "flush-end:0", "start:1"],
        "the successor started only after the flush"
    );
}

#[actix_rt::test]
async fn a_kind_keeps_serving_after_its_supervisor_gave_up_and_was_restarted() {
    let journal = Journal::default();
    let spec = probes(&journal).intensity(0, Duration::from_secs(60));
    let (tree, _root, kind) = setup(spec).await;
    let mut events = tree.events();
    assert_eq!(kind.send("p-1", Add { n: 3 }).await.unwrap(), 3);
    assert!(matches!(
        kind.send("p-1", Boom).await,
        Err(SendError::Crashed { .. })
    ));
    // The kind's supervisor escalates; the root restarts it in place.
    events_until(&mut events, LONG, |evs| {
        evs.iter().any(|e| {
            e.path == "/root/probe"
                && matches!(e.what, cardio::supervisors::EventKind::Restarted { .. })
        })
    })
    .await;
    poll_until(
        "kind supervisor running",
        LONG,
        Duration::from_millis(5),
        async || status_of(&tree, "/root/probe").as_deref() == Some("running"),
    )
    .await;
    assert_eq!(
        kind.send("p-1", Ping).await.unwrap(),
        1,
        "a fresh activation answers"
    );
    assert_eq!(kind.send("p-2", Ping).await.unwrap(), 1);
}

#[actix_rt::test]
async fn a_kind_whose_supervisor_was_shut_down_hands_messages_back() {
    let (_tree, _root, kind) = setup(probes(&Journal::default())).await;
    kind.supervisor().shutdown().await;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    assert!(matches!(
        kind.send_until("p-9", Ping, deadline).await,
        Err(SendError::Stopped(Ping))
    ));
}

/// Many senders, frequent passivation and crashes, in paused time: every
/// message is answered within its deadline; none is lost or handed back.
#[actix_rt::test]
async fn under_churn_every_message_is_answered() {
    tokio::time::pause();
    let activations = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&activations);
    let spec = KindSpec::new(move |id: &str| {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Probe {
            name: id.to_owned(),
            journal: Journal::default(),
            pings: 0,
        }
    })
    .backoff(Backoff::none())
    .idle_timeout(Some(Duration::from_millis(5)))
    .child_intensity(10_000, Duration::from_secs(1))
    .intensity(100_000, Duration::from_secs(1));
    let (tree, _root, kind) = setup(spec).await;
    let mut senders = Vec::new();
    for sender in 0..50u64 {
        let kind = kind.clone();
        senders.push(actix_rt::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(sender);
            let (mut answered, mut crashed) = (0u32, 0u32);
            for _ in 0..200 {
                tokio::time::sleep(Duration::from_micros(rng.u64(0..10_000))).await;
                let id = format!("p-{}", rng.u8(0..20));
                if rng.u8(0..100) == 0 {
                    match kind.send(&id, Boom).await {
                        Err(SendError::Crashed { .. }) => crashed += 1,
                        other => panic!("boom to {id}: {other:?}"),
                    }
                } else {
                    match kind.send(&id, Add { n: 1 }).await {
                        Ok(n) => assert!(n >= 1),
                        Err(e) => panic!("add to {id}: {e:?}"),
                    }
                    answered += 1;
                }
            }
            (answered, crashed)
        }));
    }
    let (mut total, mut crashes) = (0, 0);
    for s in senders {
        let (answered, crashed) = s.await.unwrap();
        total += answered + crashed;
        crashes += crashed as usize;
    }
    assert_eq!(total, 50 * 200);
    // Each actor was made once, once per crash, and once per re-activation.
    let made = activations.load(std::sync::atomic::Ordering::Relaxed);
    let reactivations = made - 20 - crashes;
    assert!(
        crashes >= 50 && reactivations >= 100,
        "the churn was real: {crashes} crashes, {reactivations} re-activations"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    poll_until(
        "all passivated",
        LONG,
        Duration::from_millis(5),
        async || kind.live() == 0,
    )
    .await;
    assert_eq!(tree.len(), 2, "only the supervisors are left");
}

/// An actor whose first incarnation hangs in one hook.
struct Stuck {
    incarnation: usize,
    hang_in_start: bool,
}

impl cardio::actors::Actor for Stuck {
    const KIND: &'static str = "stuck";

    async fn started(&mut self, _: &mut cardio::actors::Ctx<Self>) {
        if self.hang_in_start && self.incarnation == 0 {
            std::future::pending::<()>().await;
        }
    }

    async fn stopping(&mut self, _: &mut cardio::actors::Ctx<Self>) {
        if !self.hang_in_start && self.incarnation == 0 {
            std::future::pending::<()>().await;
        }
    }
}

impl cardio::actors::Handler<Ping> for Stuck {
    async fn handle(&mut self, _: Ping, _: &mut cardio::actors::Ctx<Self>) -> u32 {
        self.incarnation as u32
    }
}

async fn stuck_kind(hang_in_start: bool) -> Kind<Stuck> {
    let made = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let spec = KindSpec::new(move |_: &str| Stuck {
        incarnation: made.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
        hang_in_start,
    })
    .backoff(Backoff::none())
    .shutdown(cardio::supervisors::Shutdown::Timeout(Duration::from_secs(
        5,
    )))
    .idle_timeout(Some(Duration::from_secs(10)));
    serve_kind(spec, Duration::from_secs(30)).await.2
}

#[actix_rt::test]
async fn a_start_hook_that_hangs_is_cut_at_the_shutdown_timeout_and_restarted() {
    tokio::time::pause();
    let kind = stuck_kind(true).await;
    let began = tokio::time::Instant::now();
    assert_eq!(
        kind.send("s-1", Ping).await.unwrap(),
        1,
        "answered by the second incarnation"
    );
    let took = began.elapsed();
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(6),
        "{took:?}"
    );
}

#[actix_rt::test]
async fn a_stop_hook_that_hangs_does_not_block_passivation_for_good() {
    tokio::time::pause();
    let kind = stuck_kind(false).await;
    assert_eq!(kind.send("s-1", Ping).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_secs(21)).await; // idle: passivation begins, its hook hangs
    assert_eq!(
        kind.send("s-1", Ping).await.unwrap(),
        1,
        "a successor answers after the cut"
    );
}

#[actix_rt::test]
async fn timers_die_with_the_incarnation_that_set_them() {
    tokio::time::pause();
    let (_tree, _root, kind) = setup(probes(&Journal::default())).await;
    kind.send(
        "p-1",
        Later {
            after: Duration::from_secs(30),
            n: 100,
        },
    )
    .await
    .unwrap();
    assert!(matches!(
        kind.send("p-1", Boom).await,
        Err(SendError::Crashed { .. })
    ));
    assert_eq!(kind.send("p-1", Ping).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(
        kind.send("p-1", Ping).await.unwrap(),
        2,
        "the old timer did not fire into the new state"
    );
}
