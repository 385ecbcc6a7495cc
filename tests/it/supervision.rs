//! Supervision trees: strategies, intensity, escalation, backoff, panics.

use std::time::Duration;

use cardio::supervisors::{
    ArbiterPool, Backoff, ChildSpec, EventKind, SendError, Strategy, SupervisorRef, SupervisorSpec,
    Tree,
};

use crate::support::*;

const LONG: Duration = Duration::from_secs(10);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn three_probes(strategy: Strategy, journal: &Journal) -> SupervisorSpec {
    let mut spec = SupervisorSpec::new("sup")
        .strategy(strategy)
        .backoff(Backoff::none())
        .intensity(10, Duration::from_secs(10));
    for name in ["a", "b", "c"] {
        spec = spec.child(ChildSpec::worker(name, Probe::factory(name, journal)));
    }
    spec
}

async fn start(spec: SupervisorSpec) -> (Tree, SupervisorRef) {
    let tree = Tree::new();
    let root = SupervisorRef::start_root(spec, &tree, &ArbiterPool::current(), |reason| {
        panic!("root failed unexpectedly: {reason}")
    })
    .await;
    (tree, root)
}

fn restarted_paths(events: &[cardio::supervisors::SupervisionEvent]) -> Vec<String> {
    events
        .iter()
        .filter(|e| matches!(e.what, EventKind::Restarted { .. }))
        .map(|e| e.path.clone())
        .collect()
}

/// Crashes `victim`, then waits until `expect` restarts happened; returns the
/// restarted paths and the hook journal from the crash on.
async fn crash_and_watch(
    strategy: Strategy,
    victim: &str,
    expect: usize,
) -> (Vec<String>, Vec<String>, Tree, SupervisorRef) {
    let journal = Journal::default();
    let (tree, root) = start(three_probes(strategy, &journal)).await;
    let mut events = tree.events();
    for name in ["a", "b", "c"] {
        let probe = root.worker::<Probe>(name).await.unwrap();
        assert_eq!(probe.send(Ping, LONG).await.unwrap(), 1);
    }
    journal.take();
    let target = root.worker::<Probe>(victim).await.unwrap();
    match target.send(Boom, LONG).await {
        Err(SendError::Crashed { reason }) => assert!(reason.contains("boom in"), "{reason}"),
        other => panic!("expected a crash, got {other:?}"),
    }
    let seen = events_until(&mut events, LONG, |evs| {
        restarted_paths(evs).len() >= expect
            && evs.iter().filter(|e| e.what == EventKind::Started).count() >= expect
    })
    .await;
    (restarted_paths(&seen), journal.take(), tree, root)
}

#[actix_rt::test]
async fn one_for_one_restarts_only_the_crashed_child() {
    let (restarted, hooks, _tree, root) = crash_and_watch(Strategy::OneForOne, "b", 1).await;
    assert_eq!(restarted, vec!["/sup/b"]);
    assert_eq!(hooks, vec!["start:b"]);
    // Siblings kept their state; the crashed one starts over.
    let a = root.worker::<Probe>("a").await.unwrap();
    let b = root.worker::<Probe>("b").await.unwrap();
    assert_eq!(a.send(Ping, LONG).await.unwrap(), 2);
    assert_eq!(b.send(Ping, LONG).await.unwrap(), 1);
}

#[actix_rt::test]
async fn one_for_all_restarts_every_child_stopping_in_reverse_order() {
    let (restarted, hooks, _tree, root) = crash_and_watch(Strategy::OneForAll, "b", 3).await;
    assert_eq!(restarted, vec!["/sup/a", "/sup/b", "/sup/c"]);
    // b crashed (no stop hook: its state is presumed broken); c then a stop.
    assert_eq!(
        hooks,
        vec!["stop:c", "stop:a", "start:a", "start:b", "start:c"]
    );
    all_start_over(&root).await;
}

#[actix_rt::test]
async fn rest_for_one_restarts_the_crashed_child_and_those_started_after_it() {
    let (restarted, hooks, _tree, root) = crash_and_watch(Strategy::RestForOne, "b", 2).await;
    assert_eq!(restarted, vec!["/sup/b", "/sup/c"]);
    assert_eq!(hooks, vec!["stop:c", "start:b", "start:c"]);
    let a = root.worker::<Probe>("a").await.unwrap();
    assert_eq!(a.send(Ping, LONG).await.unwrap(), 2, "a kept its state");
}

#[actix_rt::test]
async fn a_panicking_handler_fails_only_its_actor_and_the_arbiter_lives_on() {
    let journal = Journal::default();
    let (tree, root) = start(three_probes(Strategy::OneForOne, &journal)).await;
    let a = root.worker::<Probe>("a").await.unwrap();
    let c = root.worker::<Probe>("c").await.unwrap();
    assert_eq!(c.send(Ping, LONG).await.unwrap(), 1);
    assert!(matches!(
        a.send(Boom, LONG).await,
        Err(SendError::Crashed { .. })
    ));
    // Same arbiter thread: a sibling still answers, and so does a after restart.
    assert_eq!(c.send(Ping, LONG).await.unwrap(), 2);
    assert_eq!(a.send(Ping, LONG).await.unwrap(), 1);
    let snap = tree.snapshot();
    let a_node = snap.iter().find(|n| n.path == "/sup/a").unwrap();
    assert_eq!(a_node.restarts, 1);
    assert!(a_node
        .last_failure
        .as_deref()
        .unwrap()
        .contains("boom in a"));
    let c_node = snap.iter().find(|n| n.path == "/sup/c").unwrap();
    assert_eq!(c_node.restarts, 0);
}

#[actix_rt::test]
async fn exceeding_intensity_stops_children_in_reverse_order_and_escalates() {
    let journal = Journal::default();
    let inner = {
        let mut spec = SupervisorSpec::new("inner")
            .backoff(Backoff::none())
            .intensity(2, Duration::from_secs(60));
        for name in ["a", "b", "c"] {
            spec = spec.child(ChildSpec::worker(name, Probe::factory(name, &journal)));
        }
        spec
    };
    let outer = SupervisorSpec::new("outer")
        .backoff(Backoff::none())
        .intensity(5, Duration::from_secs(60))
        .child(ChildSpec::supervisor(inner));
    let (tree, root) = start(outer).await;
    let mut events = tree.events();
    let inner = root.supervisor("inner").await.unwrap();
    journal.take();
    for round in 0..3 {
        let a = inner.worker::<Probe>("a").await.unwrap();
        // Wait until a is back up before crashing it again.
        poll_until("a running", LONG, Duration::from_millis(5), async || {
            status_of(&tree, "/outer/inner/a").as_deref() == Some("running")
        })
        .await;
        assert!(
            matches!(a.send(Boom, LONG).await, Err(SendError::Crashed { .. })),
            "round {round}"
        );
    }
    let seen = events_until(&mut events, LONG, |evs| {
        evs.iter()
            .any(|e| e.path == "/outer/inner" && matches!(e.what, EventKind::Restarted { .. }))
    })
    .await;
    let escalated: Vec<_> = seen
        .iter()
        .filter(|e| matches!(e.what, EventKind::Escalated { .. }))
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(escalated, vec!["/outer/inner"]);
    let stopped: Vec<_> = seen
        .iter()
        .filter(|e| matches!(e.what, EventKind::Stopped { .. }))
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(
        stopped,
        vec!["/outer/inner/c", "/outer/inner/b", "/outer/inner/a"]
    );
    // The parent restarted the failed subtree: fresh children again.
    poll_until(
        "inner children back",
        LONG,
        Duration::from_millis(5),
        async || {
            ["a", "b", "c"].iter().all(|n| {
                status_of(&tree, &format!("/outer/inner/{n}")).as_deref() == Some("running")
            })
        },
    )
    .await;
    let hooks = journal.take();
    let stops: Vec<_> = hooks
        .iter()
        .filter(|h| h.starts_with("stop:"))
        .cloned()
        .collect();
    assert_eq!(
        stops,
        vec!["stop:c", "stop:b"],
        "a had crashed; c then b stopped"
    );
    assert!(
        hooks.ends_with(&["start:a".into(), "start:b".into(), "start:c".into()]),
        "{hooks:?}"
    );
}

#[actix_rt::test]
async fn a_root_that_gives_up_reports_its_failure() {
    let journal = Journal::default();
    let tree = Tree::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let spec = SupervisorSpec::new("root")
        .backoff(Backoff::none())
        .intensity(0, Duration::from_secs(60))
        .child(ChildSpec::worker("a", Probe::factory("a", &journal)));
    let root = SupervisorRef::start_root(spec, &tree, &ArbiterPool::current(), move |reason| {
        let _ = tx.send(reason);
    })
    .await;
    let a = root.worker::<Probe>("a").await.unwrap();
    let _ = a.send(Boom, LONG).await;
    let reason = tokio::time::timeout(LONG, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(reason.contains("restart intensity exceeded"), "{reason}");
    poll_until("root failed", LONG, Duration::from_millis(5), async || {
        status_of(&tree, "/root").as_deref() == Some("failed")
    })
    .await;
}

#[actix_rt::test]
async fn backoff_delays_grow_and_cap_in_paused_time() {
    tokio::time::pause();
    let journal = Journal::default();
    let backoff = Backoff::new(ms(100), ms(400), 2.0, 0.0, Duration::from_secs(3600)).unwrap();
    let spec = SupervisorSpec::new("sup")
        .backoff(backoff)
        .intensity(100, Duration::from_secs(3600))
        .child(ChildSpec::worker("a", Probe::factory("a", &journal)));
    let (tree, root) = start(spec).await;
    let a = root.worker::<Probe>("a").await.unwrap();
    let mut events = tree.events();
    let mut waits = Vec::new();
    for _ in 0..5 {
        let crashed_at = tokio::time::Instant::now();
        assert!(matches!(
            a.send(Boom, LONG).await,
            Err(SendError::Crashed { .. })
        ));
        // A ping sent while restarting waits in the stash until the restart.
        assert_eq!(a.send(Ping, LONG).await.unwrap(), 1);
        waits.push(crashed_at.elapsed());
    }
    let delays: Vec<u64> = events_until(&mut events, LONG, |evs| restarted_paths(evs).len() >= 5)
        .await
        .into_iter()
        .filter_map(|e| match e.what {
            EventKind::Restarted { delay_ms, .. } => Some(delay_ms),
            _ => None,
        })
        .collect();
    assert_eq!(delays, vec![100, 200, 400, 400, 400]);
    for (wait, expected) in waits.iter().zip([100, 200, 400, 400, 400]) {
        assert!(
            *wait >= ms(expected),
            "waited {wait:?} for a {expected} ms backoff"
        );
        assert!(
            *wait < ms(expected + 50),
            "waited {wait:?} for a {expected} ms backoff"
        );
    }
}

#[actix_rt::test]
async fn backoff_series_resets_after_a_quiet_period() {
    tokio::time::pause();
    let journal = Journal::default();
    let backoff = Backoff::new(ms(100), ms(10_000), 2.0, 0.0, Duration::from_secs(5)).unwrap();
    let spec = SupervisorSpec::new("sup")
        .backoff(backoff)
        .intensity(100, Duration::from_secs(3600))
        .child(ChildSpec::worker("a", Probe::factory("a", &journal)));
    let (tree, root) = start(spec).await;
    let a = root.worker::<Probe>("a").await.unwrap();
    let mut events = tree.events();
    for _ in 0..3 {
        let _ = a.send(Boom, LONG).await;
        a.send(Ping, LONG).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let _ = a.send(Boom, LONG).await;
    a.send(Ping, LONG).await.unwrap();
    let delays: Vec<u64> = events_until(&mut events, LONG, |evs| restarted_paths(evs).len() >= 4)
        .await
        .into_iter()
        .filter_map(|e| match e.what {
            EventKind::Restarted { delay_ms, .. } => Some(delay_ms),
            _ => None,
        })
        .collect();
    assert_eq!(delays, vec![100, 200, 400, 100]);
}

#[actix_rt::test]
async fn a_message_sent_while_restarting_is_handed_back_at_its_deadline() {
    let (_root, a) = crashed_with_a_30s_backoff().await;
    match a.send(Ping, Duration::from_secs(1)).await {
        Err(SendError::Restarting(Ping)) => {}
        other => panic!("expected the message back, got {other:?}"),
    }
}

#[actix_rt::test]
async fn a_slow_child_is_killed_after_its_shutdown_timeout() {
    tokio::time::pause();
    let journal = Journal::default();
    let spec = SupervisorSpec::new("sup").child(
        ChildSpec::worker("slow", Probe::factory("slow", &journal))
            .shutdown(cardio::supervisors::Shutdown::Timeout(ms(200))),
    );
    let (tree, root) = start(spec).await;
    let slow = root.worker::<Probe>("slow").await.unwrap();
    let napping = tokio::spawn(async move {
        slow.send(Nap(Duration::from_secs(3600)), Duration::from_secs(7200))
            .await
    });
    tokio::task::yield_now().await;
    let began = tokio::time::Instant::now();
    root.shutdown().await;
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        began.elapsed()
    );
    assert!(matches!(
        napping.await.unwrap(),
        Err(SendError::Crashed { .. })
    ));
    assert!(tree.is_empty(), "{:?}", tree.snapshot());
}

#[actix_rt::test]
async fn a_message_queued_behind_a_slow_handler_comes_back_at_its_deadline() {
    tokio::time::pause();
    let journal = Journal::default();
    let spec =
        SupervisorSpec::new("sup").child(ChildSpec::worker("a", Probe::factory("a", &journal)));
    let (_tree, root) = start(spec).await;
    let a = root.worker::<Probe>("a").await.unwrap();
    let slow = a.clone();
    let napping = tokio::spawn(async move {
        slow.send(Nap(Duration::from_secs(60)), Duration::from_secs(120))
            .await
    });
    tokio::task::yield_now().await;
    match a.send(Ping, Duration::from_secs(1)).await {
        Err(SendError::Expired(Ping)) => {}
        other => panic!("expected the message back, got {other:?}"),
    }
    napping.await.unwrap().unwrap();
    assert_eq!(
        a.send(Ping, LONG).await.unwrap(),
        1,
        "the expired ping was never handled"
    );
}

#[actix_rt::test]
async fn stashed_messages_come_back_at_their_own_deadlines() {
    let (_root, a) = crashed_with_a_30s_backoff().await;
    let late = a.clone();
    let patient = tokio::spawn(async move { late.send(Ping, Duration::from_secs(20)).await });
    tokio::task::yield_now().await;
    let began = tokio::time::Instant::now();
    assert!(matches!(
        a.send(Ping, Duration::from_secs(1)).await,
        Err(SendError::Restarting(Ping))
    ));
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "handed back at its own deadline"
    );
    assert!(matches!(
        patient.await.unwrap(),
        Err(SendError::Restarting(Ping))
    ));
}

/// A one-child supervisor (paused time) whose child just crashed and will be
/// restarted in 30 s.
async fn crashed_with_a_30s_backoff() -> (SupervisorRef, cardio::supervisors::ActorRef<Probe>) {
    tokio::time::pause();
    let journal = Journal::default();
    let thirty = Duration::from_secs(30);
    let backoff = Backoff::new(thirty, thirty, 1.0, 0.0, Duration::from_secs(60)).unwrap();
    let spec = SupervisorSpec::new("sup")
        .backoff(backoff)
        .child(ChildSpec::worker("a", Probe::factory("a", &journal)));
    let (_tree, root) = start(spec).await;
    let a = root.worker::<Probe>("a").await.unwrap();
    assert!(matches!(
        a.send(Boom, LONG).await,
        Err(SendError::Crashed { .. })
    ));
    (root, a)
}

#[actix_rt::test]
async fn a_permanent_child_that_stops_itself_is_restarted_with_its_group() {
    let journal = Journal::default();
    let (tree, root) = start(three_probes(Strategy::OneForAll, &journal)).await;
    let mut events = tree.events();
    for name in ["a", "b", "c"] {
        let p = root.worker::<Probe>(name).await.unwrap();
        p.send(Ping, LONG).await.unwrap();
    }
    journal.take();
    let b = root.worker::<Probe>("b").await.unwrap();
    b.send(Quit, LONG).await.unwrap();
    let seen = events_until(&mut events, LONG, |evs| restarted_paths(evs).len() >= 3).await;
    assert_eq!(restarted_paths(&seen), vec!["/sup/a", "/sup/b", "/sup/c"]);
    all_running(&tree).await;
    all_start_over(&root).await;
    // b stopped itself; then the others stop in reverse order and all start in order.
    assert_eq!(
        journal.take(),
        vec!["stop:b", "stop:c", "stop:a", "start:a", "start:b", "start:c"]
    );
}

#[actix_rt::test]
async fn a_re_created_child_keeps_its_place_in_start_order() {
    let journal = Journal::default();
    let (tree, root) = start(three_probes(Strategy::RestForOne, &journal)).await;
    let mut events = tree.events();
    let b = root.worker::<Probe>("b").await.unwrap();
    b.send(Quit, LONG).await.unwrap();
    let seen = events_until(&mut events, LONG, |evs| restarted_paths(evs).len() >= 2).await;
    let mut first = restarted_paths(&seen);
    first.sort();
    assert_eq!(
        first,
        vec!["/sup/b", "/sup/c"],
        "b re-created, c after it restarted"
    );
    all_running(&tree).await;
    // The new b still counts as started before c: crashing it restarts c too.
    let b = root.worker::<Probe>("b").await.unwrap();
    assert!(matches!(
        b.send(Boom, LONG).await,
        Err(SendError::Crashed { .. })
    ));
    let seen = events_until(&mut events, LONG, |evs| restarted_paths(evs).len() >= 2).await;
    assert_eq!(restarted_paths(&seen), vec!["/sup/b", "/sup/c"]);
}

#[actix_rt::test]
async fn overlapping_group_restarts_restart_every_child_that_needs_it() {
    tokio::time::pause();
    let journal = Journal::default();
    let backoff = Backoff::new(ms(100), ms(10_000), 2.0, 0.0, Duration::from_secs(3600)).unwrap();
    let mut spec = SupervisorSpec::new("sup")
        .strategy(Strategy::RestForOne)
        .backoff(backoff)
        .intensity(100, Duration::from_secs(60));
    for name in ["a", "b", "c"] {
        spec = spec.child(ChildSpec::worker(name, Probe::factory(name, &journal)));
    }
    let (tree, root) = start(spec).await;
    let a = root.worker::<Probe>("a").await.unwrap();
    let _ = a.send(Boom, LONG).await;
    a.send(Ping, LONG).await.unwrap(); // back after 100 ms
    let _ = a.send(Boom, LONG).await; // restart due in 200 ms
    let b = root.worker::<Probe>("b").await.unwrap();
    let _ = b.send(Quit, LONG).await; // re-creation due in 100 ms
    all_running(&tree).await;
    all_start_over(&root).await;
}

#[actix_rt::test]
async fn a_child_awaiting_re_creation_survives_its_supervisors_restart() {
    tokio::time::pause();
    let journal = Journal::default();
    let slow = Backoff::new(
        Duration::from_secs(1),
        Duration::from_secs(1),
        1.0,
        0.0,
        Duration::from_secs(60),
    )
    .unwrap();
    let inner = SupervisorSpec::new("inner")
        .backoff(slow)
        .child(ChildSpec::worker("a", Probe::factory("a", &journal)))
        .child(ChildSpec::worker("b", Probe::factory("b", &journal)));
    let outer = SupervisorSpec::new("outer")
        .strategy(Strategy::OneForAll)
        .backoff(Backoff::none())
        .child(ChildSpec::supervisor(inner))
        .child(ChildSpec::worker("x", Probe::factory("x", &journal)));
    let (tree, root) = start(outer).await;
    let inner = root.supervisor("inner").await.unwrap();
    let b = inner.worker::<Probe>("b").await.unwrap();
    b.send(Quit, LONG).await.unwrap(); // b ends; inner re-creates it in 1 s
    let x = root.worker::<Probe>("x").await.unwrap();
    let _ = x.send(Boom, LONG).await; // meanwhile outer restarts everything
    poll_until("b back", LONG, Duration::from_millis(5), async || {
        status_of(&tree, "/outer/inner/b").as_deref() == Some("running")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let b = inner
        .worker::<Probe>("b")
        .await
        .expect("b is still a child of inner");
    assert_eq!(b.send(Ping, LONG).await.unwrap(), 1);
    let paths: Vec<String> = tree.snapshot().into_iter().map(|n| n.path).collect();
    assert_eq!(
        paths
            .iter()
            .filter(|p| p.as_str() == "/outer/inner/b")
            .count(),
        1,
        "{paths:?}"
    );
}

/// Waits until /sup/a, b and c all run.
async fn all_running(tree: &Tree) {
    poll_until(
        "a, b and c running",
        LONG,
        Duration::from_millis(5),
        async || {
            ["a", "b", "c"]
                .iter()
                .all(|n| status_of(tree, &format!("/sup/{n}")).as_deref() == Some("running"))
        },
    )
    .await;
}

/// a, b and c answer their first ping: each has fresh state.
async fn all_start_over(root: &SupervisorRef) {
    for name in ["a", "b", "c"] {
        let p = root.worker::<Probe>(name).await.unwrap();
        assert_eq!(
            p.send(Ping, LONG).await.unwrap(),
            1,
            "{name} has fresh state"
        );
    }
}
