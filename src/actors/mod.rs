//! The actor model cardio's entities are written in.
//!
//! An actor is plain state plus one [`Handler`] per message type; messages are
//! actix messages (`#[derive(actix::Message)] #[rtype(result = "...")]`). The
//! runtime hosts each actor in its own actix actor (a *cell*, see
//! `supervisors::cell`) that owns the mailbox, runs one handler at a time, catches
//! panics and reports them to the supervisor. Handlers are `async` and have
//! `&mut self` for their whole run; no other message is handled meanwhile.
//!
//! Actors never talk to sqlx, lapin or actix-web: they get what they need through
//! their constructor (the factory a supervisor calls on every (re)start).

pub mod consult;
pub mod device;
pub mod session;

pub use crate::supervisors::actor::{Actor, Ctx, Handler};

/// Decodes a journal entry or snapshot; `None` (logged, without the bytes,
/// which may hold PHI) if it does not decode, so that one bad entry cannot
/// crash-loop its actor.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
    actor: &str,
) -> Option<T> {
    match serde_json::from_slice(bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            let reason = crate::redact::describe_json_error(&e);
            tracing::error!(actor = %crate::redact::pseudonym::actor_key(actor), what, %reason, "stored state does not decode; skipped");
            None
        }
    }
}

/// The value, or a crash whose message names only `what` (a store error may
/// quote ids; the log gets its kind): the supervisor retries with backoff.
pub(crate) fn or_crash<T>(
    result: Result<T, crate::store::StoreError>,
    what: &'static str,
    actor: &str,
) -> T {
    match result {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(actor = %crate::redact::pseudonym::actor_key(actor), error = %e, "{what}");
            panic!("{what}");
        }
    }
}

/// `answer` to a command that carried its access's audit entry, once that
/// entry is durable: committed with the command's journal entry already, or
/// written now (a refusal, a retry, nothing appended). An entry that cannot
/// be written turns the answer into `unavailable` (the caller retries, and
/// the API writes the entry itself).
pub(crate) async fn audited<T, E>(
    store: &crate::store::Store,
    actor: &str,
    mut audit: crate::store::audit::PendingAudit,
    answer: Result<T, E>,
    unavailable: E,
) -> Result<T, E> {
    match audit.settle(store).await {
        Ok(()) => answer,
        Err(e) => {
            tracing::warn!(actor = %crate::redact::pseudonym::actor_key(actor), error = %e, "a command's audit entry not written");
            Err(unavailable)
        }
    }
}

/// What an actor starts from: its latest snapshot (if any decodes), the
/// sequence that snapshot covers, and the journal entries after it.
pub(crate) struct Recovered<S> {
    pub snapshot: Option<S>,
    pub snapshot_seq: u64,
    pub tail: Vec<crate::store::Event>,
}

/// Reads `key`'s snapshot and the journal after it (with the other actors
/// starting now, [`crate::store::starts`]); a store that cannot be read is a
/// crash (the supervisor retries with backoff), a snapshot that does not
/// decode is ignored (the whole journal is replayed).
pub(crate) async fn recover<S: serde::de::DeserializeOwned>(
    store: &crate::store::Store,
    key: &str,
) -> Recovered<S> {
    let start = started_or_crash(store.actor_start(key).await, key);
    recovered(store, key, start).await
}

/// What a start read, or a crash naming the part that could not be read
/// (as [`or_crash`]).
pub(crate) fn started_or_crash<T>(
    result: Result<T, crate::store::starts::StartError>,
    actor: &str,
) -> T {
    match result {
        Ok(v) => v,
        Err(e) => or_crash(Err(e.error), e.what, actor),
    }
}

/// What `start` (as read for `key`) gives to start from: its snapshot if
/// that decodes, else the whole journal, read again.
pub(crate) async fn recovered<S: serde::de::DeserializeOwned>(
    store: &crate::store::Store,
    key: &str,
    start: crate::store::starts::ActorStart,
) -> Recovered<S> {
    let Some(saved) = start.snapshot else {
        return Recovered {
            snapshot: None,
            snapshot_seq: 0,
            tail: start.tail,
        };
    };
    match decode::<S>(&saved.payload, "snapshot", key) {
        Some(state) => Recovered {
            snapshot: Some(state),
            snapshot_seq: saved.seq,
            tail: start.tail,
        },
        None => Recovered {
            snapshot: None,
            snapshot_seq: 0,
            tail: or_crash(store.events(key, 0).await, "actor journal unreadable", key),
        },
    }
}

/// Saves `key`'s snapshot at `seq`. A snapshot that cannot be saved is
/// logged, not fatal: recovery replays more of the journal instead.
pub(crate) async fn save_snapshot<S: serde::Serialize>(
    store: &crate::store::Store,
    key: &str,
    seq: u64,
    state: &S,
) {
    let payload = serde_json::to_vec(state).expect("snapshots serialise");
    if let Err(e) = store.save_snapshot(key, seq, &payload).await {
        tracing::warn!(actor = %crate::redact::pseudonym::actor_key(key), error = %e, "snapshot not saved");
    }
}

/// Journal entries an actor lets pass before it snapshots again: a start
/// then replays at most this many entries after its snapshot. 100 keeps the
/// replay to a few milliseconds while a snapshot (a consult's is a few
/// kilobytes to tens of kilobytes) is written once per 100 appends, well
/// under 1% of the journal's own writes.
pub(crate) const SNAPSHOT_EVERY: u64 = 100;

/// Longest a journaled event stays out of its actor's snapshot (an actor
/// with few events still starts from a recent snapshot after a kill -9).
pub(crate) const SNAPSHOT_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// When an actor snapshots during its life: every [`SNAPSHOT_EVERY`] events
/// or [`SNAPSHOT_AFTER`] after the first unsaved one, whichever comes first.
/// The actor asks itself ([`Ctx::notify_later`]) to snapshot, so the save
/// runs after the answer to the command that made it due, and the write
/// itself runs beside the actor ([`spawn_snapshot`]).
#[derive(Debug, Default)]
pub(crate) struct SnapshotClock {
    /// Events journaled since the last snapshot.
    unsaved: u64,
    /// A timer for the unsaved events is set.
    timer: bool,
}

/// What an actor should do about its snapshot now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SnapshotDue {
    /// Ask for one at once (after the current answer).
    Now,
    /// Ask for one after this delay.
    After(std::time::Duration),
    /// Nothing: one is due already.
    No,
}

impl SnapshotClock {
    /// Counts `n` events journaled (or replayed at start); what to ask for.
    pub fn journaled(&mut self, n: u64) -> SnapshotDue {
        if n == 0 {
            return SnapshotDue::No;
        }
        let before = self.unsaved;
        self.unsaved += n;
        if before < SNAPSHOT_EVERY && self.unsaved >= SNAPSHOT_EVERY {
            SnapshotDue::Now
        } else if !self.timer && self.unsaved < SNAPSHOT_EVERY {
            self.timer = true;
            SnapshotDue::After(SNAPSHOT_AFTER)
        } else {
            SnapshotDue::No
        }
    }

    /// Counts `n` events journaled and, when a snapshot is due, has the
    /// actor ask itself for one ([`SaveSnapshot`]): at once (after the
    /// current answer) or by a timer.
    pub fn count<A: Handler<SaveSnapshot>>(&mut self, n: u64, ctx: &Ctx<A>) {
        match self.journaled(n) {
            SnapshotDue::Now => {
                ctx.notify_later(std::time::Duration::ZERO, SaveSnapshot { timer: false })
            }
            SnapshotDue::After(wait) => ctx.notify_later(wait, SaveSnapshot { timer: true }),
            SnapshotDue::No => {}
        }
    }

    /// Whether a snapshot asked for (by the timer if `timer`) should be
    /// taken now: something is unsaved. Counts it saved.
    pub fn take(&mut self, timer: bool) -> bool {
        if timer {
            self.timer = false;
        }
        std::mem::take(&mut self.unsaved) > 0
    }
}

/// An actor's request to itself to snapshot (its timer, or a count reached).
#[doc(hidden)]
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub struct SaveSnapshot {
    pub(crate) timer: bool,
}

/// Saves `key`'s snapshot at `seq` beside the actor (an actix task on its
/// arbiter): neither the answer nor the actor's next message waits for the
/// write. Saves that finish out of order are harmless when a snapshot is a
/// function of its sequence (the store keeps the one with the highest);
/// an actor whose snapshot holds state no journal does passes the previous
/// save as `after`, so its saves land in the order taken.
pub(crate) fn spawn_snapshot(
    store: &crate::store::Store,
    key: &str,
    seq: u64,
    payload: Vec<u8>,
    after: Option<actix_rt::task::JoinHandle<()>>,
) -> actix_rt::task::JoinHandle<()> {
    let (store, key) = (store.clone(), key.to_owned());
    actix_rt::spawn(async move {
        if let Some(previous) = after {
            let _ = previous.await;
        }
        if let Err(e) = store.save_snapshot(&key, seq, &payload).await {
            tracing::warn!(actor = %crate::redact::pseudonym::actor_key(&key), error = %e, "snapshot not saved");
        }
    })
}

/// The most recent message ids an actor applied, at most `RecentIds::CAP`,
/// oldest first: a retry among them is recognised without the store; an
/// older one is found in the journal (its unique (actor, message id)).
/// Serialised as a list (an older snapshot's set of every id loads too,
/// trimmed).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(from = "Vec<String>", into = "Vec<String>")]
pub(crate) struct RecentIds {
    order: std::collections::VecDeque<String>,
    set: std::collections::HashSet<String>,
}

impl RecentIds {
    /// Ids kept: 1,000 (tens of kilobytes), far more than the requests a
    /// client can have in flight and retrying within its deadline.
    pub const CAP: usize = 1000;

    pub fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    pub fn insert(&mut self, id: String) {
        if self.set.insert(id.clone()) {
            self.order.push_back(id);
            while self.order.len() > Self::CAP {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    /// Whether ids were let go (then one not here may still be in the
    /// journal).
    pub fn forgot_some(&self) -> bool {
        self.order.len() >= Self::CAP
    }
}

impl From<Vec<String>> for RecentIds {
    fn from(ids: Vec<String>) -> Self {
        let mut recent = RecentIds::default();
        for id in ids {
            recent.insert(id);
        }
        recent
    }
}

impl From<RecentIds> for Vec<String> {
    fn from(ids: RecentIds) -> Self {
        ids.order.into()
    }
}

/// What a journal append means to the actor that made it.
pub(crate) enum Journaled {
    /// Written, durably, at this sequence.
    Written { seq: u64 },
    /// This message id was applied before, at journal sequence `seq` (the
    /// caller decides what that means for it: a retry if `seq` is one its
    /// state has applied, else a journal ahead of its state).
    Duplicate { seq: u64 },
    /// The store cannot take it now (logged here); nothing was applied.
    Unavailable,
}

/// Reads an append's result for `actor`'s `kind`. Two outcomes are crashes,
/// by design: the shard moved to another node (`Fenced`: the message goes
/// back to the bus and reaches the owner) or the journal moved on under
/// another writer (`Conflict`: the restart replays it); the caller gets
/// `Crashed` and may retry, and nothing is applied twice.
pub(crate) fn journaled(
    result: Result<crate::store::Appended, crate::store::StoreError>,
    kind: &'static str,
    actor: &str,
) -> Journaled {
    use crate::store::{Appended, StoreError};
    match result {
        Ok(Appended::Written { seq }) => Journaled::Written { seq },
        Ok(Appended::Duplicate { seq }) => Journaled::Duplicate { seq },
        Err(StoreError::Fenced { .. }) => {
            panic!("{kind} shard moved to another node; handing the message back")
        }
        Err(StoreError::Conflict { .. }) => {
            panic!("{kind} journal moved on under another writer; recovering")
        }
        Err(e) => {
            tracing::warn!(actor = %crate::redact::pseudonym::actor_key(actor), error = %e, "{kind} event not journaled");
            Journaled::Unavailable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_due_every_hundred_events_or_after_a_while() {
        let mut clock = SnapshotClock::default();
        assert_eq!(clock.journaled(0), SnapshotDue::No);
        assert_eq!(clock.journaled(1), SnapshotDue::After(SNAPSHOT_AFTER));
        for _ in 2..SNAPSHOT_EVERY {
            assert_eq!(clock.journaled(1), SnapshotDue::No);
        }
        assert_eq!(clock.journaled(1), SnapshotDue::Now);
        assert_eq!(clock.journaled(1), SnapshotDue::No, "one is asked for");
        assert!(clock.take(false));
        assert!(!clock.take(false), "nothing unsaved");
        // The timer set before is still running: no second one.
        assert_eq!(clock.journaled(1), SnapshotDue::No);
        assert!(clock.take(true));
        assert_eq!(clock.journaled(1), SnapshotDue::After(SNAPSHOT_AFTER));
        // A long replay at start: at once.
        let mut clock = SnapshotClock::default();
        assert_eq!(clock.journaled(10_000), SnapshotDue::Now);
    }

    #[test]
    fn recent_ids_keep_the_last_thousand_and_load_an_older_set() {
        let mut ids = RecentIds::default();
        for i in 0..RecentIds::CAP + 5 {
            ids.insert(format!("r{i}"));
        }
        assert!(!ids.contains("r4"));
        assert!(ids.contains("r5"));
        assert!(ids.forgot_some());
        let json = serde_json::to_string(&ids).unwrap();
        let back: RecentIds = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ids);
        // A snapshot of the previous version: a set of every id.
        let old: RecentIds = serde_json::from_str(r#"["a", "b"]"#).unwrap();
        assert!(old.contains("a") && !old.forgot_some());
    }
}
