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

mod activity;
mod logoff;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::authz_cache::AuthzCache;
use crate::auth::{AuthError, Verified};
use crate::bus::{Bus, BusEvent, Envelope, Subscription};
use crate::clock::unix_ms;
use crate::store::access::AccountState;
use crate::store::audit::AuditEntry;
use crate::store::Store;
use activity::Gathered;
pub use logoff::Logoff;

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
    activity: Gathered,
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
            activity: Gathered::default(),
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
            self.activity.gather(subject.clone(), role, now);
        }
        Ok(())
    }

    /// Writes the activity due, in one statement; kept for the next try
    /// when the database does not take it.
    pub async fn write_activity(&self) {
        let due = self.activity.take();
        if due.is_empty() {
            return;
        }
        if let Err(e) = self.store.touch_accounts(&due).await {
            tracing::warn!(error = %e, subjects = due.len(), "activity was not written; trying again");
            for (subject, role, at) in due {
                self.activity.gather(subject, role, at);
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
mod tests;
