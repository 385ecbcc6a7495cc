//! The gate's unit tests.

use super::*;
use crate::principal::Role;

#[test]
fn a_change_closes_only_what_it_names() {
    let revoked = AccessChanged {
        subject: "dr-1".into(),
        jti: Some("t1".into()),
        change: Change::TokenRevoked,
    };
    assert!(revoked.closes("dr-1", Some("t1")));
    assert!(!revoked.closes("dr-1", Some("t2")));
    assert!(!revoked.closes("dr-2", Some("t1")));
    let ended = AccessChanged {
        subject: "dr-1".into(),
        jti: None,
        change: Change::SessionsEnded,
    };
    assert!(ended.closes("dr-1", None) && ended.closes("dr-1", Some("t2")));
    let team = AccessChanged {
        change: Change::CareTeamChanged,
        ..ended
    };
    assert!(!team.closes("dr-1", None));
    assert!(team.ends_subscriptions("dr-1", None));
    assert!(!team.ends_subscriptions("dr-2", None));
}

/// A subscription that delivers nothing and is set up again when the
/// test says so.
struct Resetting {
    resets: tokio::sync::watch::Receiver<u64>,
    ends: bool,
}

#[async_trait::async_trait]
impl crate::bus::Source for Resetting {
    async fn next(&mut self) -> Option<crate::bus::Delivery> {
        if self.ends {
            return None;
        }
        std::future::pending().await
    }
    fn resets(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.resets.clone())
    }
}

async fn gate_on(bus: Arc<dyn Bus>) -> (Arc<Gate>, tempfile::TempDir) {
    gate_with(bus, Duration::from_secs(900)).await
}

/// A gate whose clinicians are logged off after `clinician` idle.
async fn gate_with(bus: Arc<dyn Bus>, clinician: Duration) -> (Arc<Gate>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/cardio.db", dir.path().display());
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let s = Duration::from_secs(900);
    let logoff = Logoff {
        patient: s,
        clinician,
        ops: s,
        admin: s,
    };
    (Gate::new(store, bus, logoff), dir)
}

fn memory_bus() -> Arc<dyn Bus> {
    Arc::new(crate::bus::memory::MemoryBus::new(Default::default()))
}

/// Whether the request path's cache answers that `clinician` is on
/// `patient`'s team without the database (whose lookup here fails).
async fn cached(gate: &Gate, patient: &str, clinician: &str) -> bool {
    let no_database = async { Err::<bool, ()>(()) };
    let authz = gate.authz();
    authz
        .on_care_team(patient, clinician, unix_ms(), no_database)
        .await
        .is_ok()
}

async fn keep(gate: &Gate, patient: &str, clinician: &str) {
    let found = async { Ok::<_, ()>(true) };
    let authz = gate.authz();
    authz
        .on_care_team(patient, clinician, unix_ms(), found)
        .await
        .unwrap();
    assert!(cached(gate, patient, clinician).await);
}

async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn removal(clinician: &str) -> AccessChanged {
    AccessChanged {
        subject: clinician.into(),
        jti: None,
        change: Change::CareTeamChanged,
    }
}

#[tokio::test]
async fn a_removal_empties_the_request_paths_cache_here_at_once_and_elsewhere_by_the_bus() {
    let bus = memory_bus();
    let (gate, _dir) = gate_on(Arc::clone(&bus)).await;
    gate.start(Duration::from_secs(3600)).await.unwrap();
    keep(&gate, "p-1", "dr-1").await;
    keep(&gate, "p-1", "dr-2").await;
    // Announced by this node: forgotten before `announce` returns.
    gate.announce(removal("dr-1")).await.unwrap();
    assert!(!cached(&gate, "p-1", "dr-1").await);
    assert!(cached(&gate, "p-1", "dr-2").await);
    // Announced by another node on the shared bus: forgotten when the
    // event arrives, before this node's listeners hear of it.
    let mut listeners = gate.changes();
    let env = Envelope::new(AccessChanged::TYPE, &removal("dr-2")).unwrap();
    bus.publish(ACCESS_TOPIC, &env).await.unwrap();
    loop {
        let heard = listeners.recv().await.unwrap();
        if heard.subject == "dr-2" {
            break;
        }
    }
    assert!(!cached(&gate, "p-1", "dr-2").await);
}

/// Makes `gate` follow a [`Resetting`] subscription (ended at once if
/// `ends`); returns the sender of its resets.
fn follow_resetting(gate: &Arc<Gate>, ends: bool) -> tokio::sync::watch::Sender<u64> {
    let (resets, rx) = tokio::sync::watch::channel(0);
    gate.follow(Subscription::new(Box::new(Resetting { resets: rx, ends })));
    resets
}

#[tokio::test]
async fn a_subscription_set_up_again_empties_the_caches() {
    let (gate, _dir) = gate_on(memory_bus()).await;
    let resets = follow_resetting(&gate, false);
    keep(&gate, "p-1", "dr-1").await;
    let kept = async { Ok::<_, ()>(Some("p-1".to_owned())) };
    gate.authz().device_patient("d-1", kept).await.unwrap();
    // The broker came back: what was announced meanwhile is lost.
    resets.send_modify(|n| *n += 1);
    until("the cache to empty after a reset", async || {
        !cached(&gate, "p-1", "dr-1").await
    })
    .await;
    let unknown = async { Ok::<_, ()>(None) };
    assert_eq!(gate.authz().device_patient("d-1", unknown).await, Ok(None));
    // It keeps again afterwards (the subscription runs).
    keep(&gate, "p-1", "dr-1").await;
}

#[tokio::test]
async fn once_the_subscription_ends_the_cache_keeps_nothing() {
    let (gate, _dir) = gate_on(memory_bus()).await;
    let _resets = follow_resetting(&gate, true);
    until("the cache to stop keeping", async || {
        let found = async { Ok::<_, ()>(true) };
        let authz = gate.authz();
        authz
            .on_care_team("p-1", "dr-1", unix_ms(), found)
            .await
            .unwrap();
        !cached(&gate, "p-1", "dr-1").await
    })
    .await;
}

fn verified(subject: &str) -> Verified {
    let now_s = unix_ms() / 1000;
    Verified {
        principal: crate::principal::Principal {
            subject: subject.into(),
            role: Role::Clinician,
        },
        exp: now_s + 600,
        iat: now_s,
        jti: None,
    }
}

async fn stored_activity(gate: &Gate, subject: &str) -> u64 {
    let state = gate.store.account_state(subject, unix_ms()).await.unwrap();
    state.map_or(0, |s| s.last_active_ms)
}

fn pending(gate: &Gate) -> usize {
    gate.activity.len()
}

#[tokio::test]
async fn a_first_activity_is_written_at_once_and_later_ones_together() {
    // A 2 s logoff: activity is due every 500 ms.
    let (gate, _dir) = gate_with(memory_bus(), Duration::from_secs(2)).await;
    let (a, b) = (verified("dr-1"), verified("dr-2"));
    gate.admit(&a, true).await.unwrap();
    let first = stored_activity(&gate, "dr-1").await;
    assert!(
        first > 0,
        "a first activity is written before the request goes on"
    );
    // Not due again within 500 ms.
    gate.admit(&a, true).await.unwrap();
    assert_eq!(pending(&gate), 0);
    tokio::time::sleep(Duration::from_millis(520)).await;
    gate.admit(&a, true).await.unwrap();
    gate.admit(&b, true).await.unwrap();
    // Due, gathered, not written: the request did not wait for a commit.
    assert_eq!(pending(&gate), 1);
    assert_eq!(stored_activity(&gate, "dr-1").await, first);
    assert!(stored_activity(&gate, "dr-2").await > 0);
    gate.write_activity().await;
    assert!(stored_activity(&gate, "dr-1").await >= first + 520);
    assert_eq!(pending(&gate), 0);
}

#[tokio::test]
async fn activity_the_database_did_not_take_is_written_at_the_next_try() {
    let (gate, _dir) = gate_with(memory_bus(), Duration::from_secs(2)).await;
    let a = verified("dr-1");
    gate.admit(&a, true).await.unwrap();
    let first = stored_activity(&gate, "dr-1").await;
    tokio::time::sleep(Duration::from_millis(520)).await;
    gate.admit(&a, true).await.unwrap();
    gate.store
        .execute_admin("ALTER TABLE accounts RENAME TO accounts_away")
        .await
        .unwrap();
    gate.write_activity().await;
    assert_eq!(pending(&gate), 1, "kept for the next try");
    gate.store
        .execute_admin("ALTER TABLE accounts_away RENAME TO accounts")
        .await
        .unwrap();
    gate.write_activity().await;
    assert!(stored_activity(&gate, "dr-1").await >= first + 520);
    assert_eq!(pending(&gate), 0);
}

#[test]
fn connections_are_checked_often_enough_for_the_shortest_logoff() {
    let s = Duration::from_secs;
    let l = Logoff {
        patient: s(900),
        clinician: s(2),
        ops: s(900),
        admin: s(900),
    };
    assert_eq!(l.tick(), Duration::from_millis(500));
    assert_eq!(l.of(Role::Clinician), s(2));
    // Gathered activity is written within an eighth of it, 1 s at most.
    assert_eq!(l.flush_every(), Duration::from_millis(250));
    let long = Logoff {
        clinician: s(900),
        ..l
    };
    assert_eq!(long.flush_every(), s(1));
}
