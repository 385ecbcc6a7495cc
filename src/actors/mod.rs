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

/// What an actor starts from: its latest snapshot (if any decodes), the
/// sequence that snapshot covers, and the journal entries after it.
pub(crate) struct Recovered<S> {
    pub snapshot: Option<S>,
    pub snapshot_seq: u64,
    pub tail: Vec<crate::store::Event>,
}

/// Reads `key`'s snapshot and the journal after it; a store that cannot be
/// read is a crash (the supervisor retries with backoff), a snapshot that does
/// not decode is ignored (the whole journal is replayed).
pub(crate) async fn recover<S: serde::de::DeserializeOwned>(
    store: &crate::store::Store,
    key: &str,
) -> Recovered<S> {
    let saved = or_crash(store.snapshot(key).await, "actor snapshot unreadable", key);
    let (snapshot, snapshot_seq) = match saved {
        Some(s) => match decode::<S>(&s.payload, "snapshot", key) {
            Some(state) => (Some(state), s.seq),
            None => (None, 0),
        },
        None => (None, 0),
    };
    let tail = or_crash(
        store.events(key, snapshot_seq).await,
        "actor journal unreadable",
        key,
    );
    Recovered {
        snapshot,
        snapshot_seq,
        tail,
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

/// What a journal append means to the actor that made it.
pub(crate) enum Journaled {
    /// Written, durably, at this sequence.
    Written { seq: u64 },
    /// This message id was applied before (the caller decides what that
    /// means for it: a retry, or a journal ahead of its state).
    Duplicate,
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
        Ok(Appended::Duplicate { .. }) => Journaled::Duplicate,
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
