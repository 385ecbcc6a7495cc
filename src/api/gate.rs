//! The access gate: whether a verified token may still be used, on every
//! HTTP request and WebSocket connection of every node.
//!
//! A token that verifies is still refused (`UNAUTHENTICATED`) when its
//! subject's account is deactivated, its id (`jti`) is revoked, it was issued
//! before its subject's sessions were ended (a revocation of every session,
//! a deactivation, an automatic logoff), or its subject has been inactive
//! longer than its role's logoff: then the gate logs the subject off (ends
//! its sessions in the database, audits it, announces it), so the same token
//! stays refused on every node, after restarts too.
//!
//! The state lives in the database (`accounts`, `revoked_tokens`); each node
//! caches a subject's rows, and drops them as soon as an [`AccessChanged`]
//! event names the subject on the bus (topic [`ACCESS_TOPIC`]): every node
//! knows of a change within a second. Without the bus, within
//! [`CACHE_MS`]: the database counts every change of access (triggers, so
//! an operator's SQL counts too; activity does not), a node reads that
//! count at most [`CACHE_MS`] before it admits a request, and a subject's
//! cached rows are used only while the count they were read under stands.
//! One read of a number every [`CACHE_MS`] per node, instead of one read of
//! the subject's rows per request: a device pushing every second was read
//! on every push, its rows always older than [`CACHE_MS`] (issue 15).
//!
//! The same events, forwarded to the node's own listeners
//! ([`Gate::changes`]), close WebSocket connections and end subscriptions,
//! after the request path's cache
//! ([`super::authz_cache::AuthzCache`], held here) has dropped what it knew
//! of the subject. Each node also ends its own subscriptions opened under
//! a break-glass grant when the grant ends (it hears of grants on
//! [`BREAK_GLASS_TOPIC`]).
//!
//! Authentication failures are audited as summaries (one row per source
//! address and reason per period, with a count), never one row per request
//! and never with the token.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::authz_cache::AuthzCache;
use crate::auth::{AuthError, Verified};
use crate::bus::{Bus, BusEvent, Envelope, Subscription};
use crate::clock::unix_ms;
use crate::principal::Role;
use crate::store::access::AccountState;
use crate::store::audit::AuditEntry;
use crate::store::Store;

/// Where access changes are announced to every node.
pub const ACCESS_TOPIC: &str = "access.changed";
/// Where break-glass grants are announced (to admins' subscriptions).
pub const BREAK_GLASS_TOPIC: &str = "access.break_glass";
/// Longest a node goes without reading the database's count of access
/// changes, under which its cached access states are used.
pub const CACHE_MS: u64 = 500;

/// What changed about a subject's access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// One token (`jti`) revoked.
    TokenRevoked,
    /// Every session ended (revocation, logoff).
    SessionsEnded,
    Deactivated,
    Reactivated,
    /// Taken off a care team: its subscriptions end (they are authorized again
    /// when opened again).
    CareTeamChanged,
    /// A break-glass grant ended: its subscriptions end too.
    BreakGlassEnded,
}

/// Announced on [`ACCESS_TOPIC`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessChanged {
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    pub change: Change,
}

impl BusEvent for AccessChanged {
    const TYPE: &'static str = "access.changed";
}

impl AccessChanged {
    /// Whether a connection authenticated with `subject`'s token `jti` must
    /// close (its token no longer works).
    pub fn closes(&self, subject: &str, jti: Option<&str>) -> bool {
        self.subject == subject
            && match self.change {
                Change::TokenRevoked => self.jti.is_some() && self.jti.as_deref() == jti,
                Change::SessionsEnded | Change::Deactivated => true,
                _ => false,
            }
    }

    /// Whether the live subscriptions of `subject` (token `jti`) must end.
    pub fn ends_subscriptions(&self, subject: &str, jti: Option<&str>) -> bool {
        self.closes(subject, jti)
            || (self.subject == subject
                && matches!(
                    self.change,
                    Change::CareTeamChanged | Change::BreakGlassEnded
                ))
    }
}

/// A break-glass grant, announced to admins on [`BREAK_GLASS_TOPIC`] (the
/// reason is not in it: it may hold PHI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlassGranted {
    pub grant: String,
    pub clinician: String,
    pub patient: String,
    pub granted_ms: u64,
    pub expires_ms: u64,
}

impl BusEvent for BreakGlassGranted {
    const TYPE: &'static str = "access.break_glass";
}

/// Inactivity logoff per role.
#[derive(Debug, Clone, Copy)]
pub struct Logoff {
    pub patient: Duration,
    pub clinician: Duration,
    pub ops: Duration,
    pub admin: Duration,
}

impl Logoff {
    pub fn from_config(c: &crate::config::Config) -> Logoff {
        Logoff {
            patient: c.session_logoff,
            clinician: c.logoff_clinician,
            ops: c.logoff_ops,
            admin: c.logoff_admin,
        }
    }

    pub fn of(&self, role: Role) -> Duration {
        match role {
            Role::Patient => self.patient,
            Role::Clinician => self.clinician,
            Role::Ops => self.ops,
            Role::Admin => self.admin,
            Role::System => Duration::MAX,
        }
    }

    /// How often a subject's activity is written to the database: a
    /// quarter of its role's logoff, at most 5 s (so a logoff comes at most
    /// that late).
    pub fn write_every(&self, role: Role) -> Duration {
        (self.of(role) / 4).min(Duration::from_secs(5))
    }

    /// How often a node writes the activity it gathered: an eighth of the
    /// shortest logoff, from 50 ms to 1 s (so a logoff comes at most that
    /// much later still).
    pub fn flush_every(&self) -> Duration {
        (self.shortest() / 8).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    fn shortest(&self) -> Duration {
        [self.patient, self.clinician, self.ops, self.admin]
            .into_iter()
            .min()
            .unwrap_or(Duration::from_secs(60))
    }

    /// How often open connections are checked: a quarter of the shortest
    /// logoff, from 250 ms to 5 s.
    pub fn tick(&self) -> Duration {
        (self.shortest() / 4).clamp(Duration::from_millis(250), Duration::from_secs(5))
    }
}

#[derive(Clone)]
struct Cached {
    /// The database's count of access changes when this was read.
    version: u64,
    state: Option<AccountState>,
    /// When this node last wrote the subject's activity.
    written_ms: u64,
}

/// The database's count of access changes, as last read.
#[derive(Clone, Copy, Default)]
struct Version {
    count: u64,
    /// When the read of `count` began (0: never read).
    read_ms: u64,
}

impl Version {
    fn fresh_at(&self, now: u64) -> Option<u64> {
        (self.read_ms > 0 && now.saturating_sub(self.read_ms) < CACHE_MS).then_some(self.count)
    }
}

/// The gate (see the module docs). One per node, shared.
pub struct Gate {
    store: Store,
    bus: Arc<dyn Bus>,
    logoff: Logoff,
    cache: dashmap::DashMap<String, Cached>,
    version: std::sync::Mutex<Version>,
    /// One read of the count at a time; the others wait for it.
    version_read: tokio::sync::Mutex<()>,
    /// Activity due to be written, by subject (role, when): written
    /// together every [`Logoff::flush_every`], not one commit per request.
    activity: std::sync::Mutex<HashMap<String, (&'static str, u64)>>,
    /// The request path's care-team, consult and device view, emptied of
    /// a subject by every change naming it (the same events).
    authz: Arc<AuthzCache>,
    changes: tokio::sync::broadcast::Sender<AccessChanged>,
    failures: std::sync::Mutex<HashMap<(String, &'static str), u64>>,
}

impl Gate {
    pub fn new(store: Store, bus: Arc<dyn Bus>, logoff: Logoff) -> Arc<Gate> {
        Arc::new(Gate {
            store,
            bus,
            logoff,
            cache: dashmap::DashMap::new(),
            version: std::sync::Mutex::default(),
            version_read: tokio::sync::Mutex::const_new(()),
            activity: std::sync::Mutex::default(),
            authz: AuthzCache::new(),
            changes: tokio::sync::broadcast::channel(1024).0,
            failures: std::sync::Mutex::default(),
        })
    }

    /// Listens for access changes on the bus, writes the activity gathered
    /// every [`Logoff::flush_every`] and the failure summaries every
    /// `summaries`. Runs until the process ends.
    pub async fn start(self: &Arc<Gate>, summaries: Duration) -> Result<(), crate::bus::BusError> {
        let gate = Arc::clone(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(gate.logoff.flush_every());
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                gate.write_activity().await;
            }
        });
        let sub = self.bus.subscribe(ACCESS_TOPIC, 1024).await?;
        self.follow(sub);
        // Each node ends its own subscriptions opened under a break-glass
        // grant when the grant ends, whichever node granted it.
        let mut grants = self.bus.subscribe(BREAK_GLASS_TOPIC, 256).await?;
        let gate = Arc::clone(self);
        tokio::spawn(async move {
            while let Some((_, g)) = grants.next_of::<BreakGlassGranted>().await {
                let gate = Arc::clone(&gate);
                tokio::spawn(async move {
                    let left = g.expires_ms.saturating_sub(unix_ms());
                    tokio::time::sleep(Duration::from_millis(left)).await;
                    gate.cache.remove(&g.clinician);
                    let _ = gate.changes.send(AccessChanged {
                        subject: g.clinician,
                        jti: None,
                        change: Change::BreakGlassEnded,
                    });
                });
            }
        });
        let gate = Arc::clone(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(summaries);
            every.tick().await;
            loop {
                every.tick().await;
                gate.write_failure_summaries().await;
            }
        });
        Ok(())
    }

    /// Applies the access changes of `sub` (every node's): the caches
    /// forget the subject before the node's listeners hear of it. A
    /// subscription set up again after it was lost (changes may have been
    /// missed) empties the caches; once it ends, the request path's cache
    /// keeps nothing.
    fn follow(self: &Arc<Gate>, mut sub: Subscription) {
        if let Some(mut resets) = sub.resets() {
            let gate = Arc::clone(self);
            tokio::spawn(async move {
                while resets.changed().await.is_ok() {
                    tracing::info!(
                        "access-change subscription set up again: access caches emptied"
                    );
                    gate.cache.clear();
                    gate.authz.forget_all();
                }
            });
        }
        self.authz.follow();
        let gate = Arc::clone(self);
        tokio::spawn(async move {
            while let Some((_, change)) = sub.next_of::<AccessChanged>().await {
                gate.cache.remove(&change.subject);
                gate.authz.forget_subject(&change.subject);
                let _ = gate.changes.send(change);
            }
            gate.authz.stop();
            tracing::warn!("the access-change subscription ended");
        });
    }

    /// The request path's cached view of care teams, consults and devices.
    pub fn authz(&self) -> &AuthzCache {
        &self.authz
    }

    /// This node's listeners' feed of access changes.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<AccessChanged> {
        self.changes.subscribe()
    }

    /// The inactivity logoff settings.
    pub fn logoff(&self) -> Logoff {
        self.logoff
    }

    /// Announces `change` to every node (this one at once).
    pub async fn announce(&self, change: AccessChanged) -> Result<(), String> {
        self.cache.remove(&change.subject);
        self.authz.forget_subject(&change.subject);
        let _ = self.changes.send(change.clone());
        let env = Envelope::new(AccessChanged::TYPE, &change).map_err(|e| e.to_string())?;
        self.bus
            .publish(ACCESS_TOPIC, &env)
            .await
            .map_err(|e| e.to_string())
    }

    /// The database's count of access changes, read at most [`CACHE_MS`]
    /// before `now`.
    async fn version(&self, now: u64) -> Result<u64, AuthError> {
        let known = || {
            self.version
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .fresh_at(now)
        };
        if let Some(v) = known() {
            return Ok(v);
        }
        let _one = self.version_read.lock().await;
        if let Some(v) = known() {
            return Ok(v);
        }
        let read_ms = unix_ms();
        let count = self.store.access_version().await.map_err(|e| {
            tracing::warn!(error = %e, "the count of access changes cannot be read");
            AuthError::Unavailable
        })?;
        *self.version.lock().unwrap_or_else(|e| e.into_inner()) = Version { count, read_ms };
        Ok(count)
    }

    async fn state(&self, subject: &str, now: u64, fresh: bool) -> Result<Cached, AuthError> {
        // The count first: rows read after it are at least as new as it.
        let version = self.version(now).await?;
        if !fresh {
            if let Some(c) = self.cache.get(subject) {
                if c.version == version {
                    return Ok(c.clone());
                }
            }
        }
        let state = self.store.account_state(subject, now).await.map_err(|e| {
            tracing::warn!(error = %e, "the access state cannot be read");
            AuthError::Unavailable
        })?;
        let written_ms = self.cache.get(subject).map_or(0, |c| c.written_ms);
        let c = Cached {
            version,
            state,
            written_ms,
        };
        self.cache.insert(subject.to_owned(), c.clone());
        Ok(c)
    }

    /// Whether `v` may be used now; `active`: this use is the subject's
    /// activity (a request, a subscription), which restarts its idle clock.
    /// An idle subject is logged off here.
    pub async fn admit(&self, v: &Verified, active: bool) -> Result<(), AuthError> {
        let now = unix_ms();
        let c = self.state(&v.principal.subject, now, false).await?;
        let idle = match self.judge(v, &c, now) {
            Verdict::Refused => return Err(AuthError::Revoked),
            Verdict::Idle => true,
            Verdict::Ok => false,
        };
        if idle {
            // Another node may have seen activity since: ask the database.
            let c = self.state(&v.principal.subject, now, true).await?;
            match self.judge(v, &c, now) {
                Verdict::Refused => return Err(AuthError::Revoked),
                Verdict::Idle => {
                    self.log_off(v, now).await;
                    return Err(AuthError::Revoked);
                }
                Verdict::Ok => {}
            }
        }
        if active {
            self.touch(v, now).await?;
        }
        Ok(())
    }

    fn judge(&self, v: &Verified, c: &Cached, now: u64) -> Verdict {
        let s = c.state.clone().unwrap_or_default();
        let jti_revoked = v.jti.as_ref().is_some_and(|j| s.revoked.contains(j));
        if s.disabled || v.iat < s.not_before_s || jti_revoked {
            return Verdict::Refused;
        }
        let last = s.last_active_ms.max(v.iat * 1000);
        // Activity is written at most every `write_every`, then within
        // `flush_every`: the stored time may be that much behind, so the
        // logoff waits that much longer.
        let role = v.principal.role;
        let lag = self.logoff.write_every(role) + self.logoff.flush_every();
        let limit = (self.logoff.of(role) + lag).as_millis() as u64;
        if now.saturating_sub(last) > limit {
            Verdict::Idle
        } else {
            Verdict::Ok
        }
    }

    /// Records `v`'s subject's activity: this node knows at once; it is
    /// due to be written (by [`Gate::write_activity`]) at most every
    /// [`Logoff::write_every`]. A subject's first activity in a role is
    /// written before the request goes on: the role it is known by counts
    /// (an ops or admin subject is never put on a care team), and its row
    /// is there for a deactivation to act on.
    async fn touch(&self, v: &Verified, now: u64) -> Result<(), AuthError> {
        let subject = &v.principal.subject;
        let role = v.principal.role.name();
        let every = self.logoff.write_every(v.principal.role).as_millis() as u64;
        let (known, due) = match self.cache.get_mut(subject) {
            Some(mut c) => {
                let known = c.state.as_ref().is_some_and(|s| s.role == role);
                let s = c.state.get_or_insert_with(AccountState::default);
                s.last_active_ms = s.last_active_ms.max(now);
                let due = now.saturating_sub(c.written_ms) >= every;
                if due && known {
                    c.written_ms = now;
                }
                (known, due)
            }
            None => (false, true),
        };
        if !known {
            self.store
                .touch_account(subject, role, now)
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "the access state cannot be written");
                    AuthError::Unavailable
                })?;
            if let Some(mut c) = self.cache.get_mut(subject) {
                c.written_ms = now;
                c.state.get_or_insert_with(AccountState::default).role = role.into();
            }
        } else if due {
            let mut pending = self.activity.lock().unwrap_or_else(|e| e.into_inner());
            let at = pending.entry(subject.clone()).or_insert((role, now));
            *at = (role, at.1.max(now));
        }
        Ok(())
    }

    /// Writes the activity due, in one statement; kept for the next try
    /// when the database does not take it.
    pub async fn write_activity(&self) {
        let due: Vec<(String, &'static str, u64)> = {
            let mut pending = self.activity.lock().unwrap_or_else(|e| e.into_inner());
            pending
                .drain()
                .map(|(s, (role, at))| (s, role, at))
                .collect()
        };
        if due.is_empty() {
            return;
        }
        if let Err(e) = self.store.touch_accounts(&due).await {
            tracing::warn!(error = %e, subjects = due.len(), "activity was not written; trying again");
            let mut pending = self.activity.lock().unwrap_or_else(|e| e.into_inner());
            for (subject, role, at) in due {
                let kept = pending.entry(subject).or_insert((role, at));
                kept.1 = kept.1.max(at);
            }
        }
    }

    /// Ends `v`'s subject's sessions for inactivity: in the database (every
    /// token issued so far stops working), in the audit trail, on the bus.
    async fn log_off(&self, v: &Verified, now: u64) {
        let subject = &v.principal.subject;
        if let Err(e) = self.store.end_sessions(subject, now / 1000 + 1).await {
            tracing::warn!(error = %e, "an automatic logoff was not stored");
            return;
        }
        let entry = AuditEntry {
            at_ms: now,
            subject: subject.clone(),
            role: v.principal.role.name().into(),
            action: "logoff".into(),
            patient_id: None,
            fields: "inactivity".into(),
            outcome: "allowed".into(),
        };
        if let Err(e) = self.store.audit(&entry).await {
            tracing::warn!(error = %e, "an automatic logoff was not audited");
        }
        tracing::info!(
            role = v.principal.role.name(),
            "automatic logoff after inactivity (every role)"
        );
        let change = AccessChanged {
            subject: subject.clone(),
            jti: None,
            change: Change::SessionsEnded,
        };
        if let Err(e) = self.announce(change).await {
            tracing::warn!(error = %e, "an automatic logoff was not announced");
        }
    }

    /// Counts an authentication failure from `source` (an address) for the
    /// next summary.
    pub fn failed(&self, source: &str, e: &AuthError) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: a flood of sources folds into one row.
        let source = if f.len() >= 1000 { "other" } else { source };
        *f.entry((source.to_owned(), e.reason())).or_insert(0) += 1;
    }

    /// Audits the failures counted since the last summary, one row per
    /// source and reason.
    pub async fn write_failure_summaries(&self) {
        let taken = std::mem::take(&mut *self.failures.lock().unwrap_or_else(|e| e.into_inner()));
        let now = unix_ms();
        for ((source, reason), n) in taken {
            let entry = AuditEntry {
                at_ms: now,
                subject: "anonymous".into(),
                role: "none".into(),
                action: "authenticate".into(),
                patient_id: None,
                fields: format!("source={source};reason={reason};count={n}"),
                outcome: "refused".into(),
            };
            if let Err(e) = self.store.audit(&entry).await {
                tracing::warn!(error = %e, "an authentication-failure summary was not audited");
            }
        }
    }
}

enum Verdict {
    Ok,
    Idle,
    Refused,
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test]
    async fn a_subscription_set_up_again_empties_the_caches() {
        let (gate, _dir) = gate_on(memory_bus()).await;
        let (resets, rx) = tokio::sync::watch::channel(0);
        let source = Resetting {
            resets: rx,
            ends: false,
        };
        gate.follow(Subscription::new(Box::new(source)));
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
        let (_resets, rx) = tokio::sync::watch::channel(0);
        let source = Resetting {
            resets: rx,
            ends: true,
        };
        gate.follow(Subscription::new(Box::new(source)));
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
        gate.activity.lock().unwrap().len()
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
}
