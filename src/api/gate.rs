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
//! caches a subject's row for at most [`CACHE_MS`], and drops it as soon as
//! an [`AccessChanged`] event names the subject on the bus (topic
//! [`ACCESS_TOPIC`]): every node knows of a change within a second, and
//! without the bus within [`CACHE_MS`]. The same events, forwarded to the
//! node's own listeners ([`Gate::changes`]), close WebSocket connections and
//! end subscriptions. Each node also ends its own subscriptions opened under
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

use crate::auth::{AuthError, Verified};
use crate::bus::{Bus, BusEvent, Envelope};
use crate::clock::unix_ms;
use crate::principal::Role;
use crate::store::access::AccountState;
use crate::store::audit::AuditEntry;
use crate::store::Store;

/// Where access changes are announced to every node.
pub const ACCESS_TOPIC: &str = "access.changed";
/// Where break-glass grants are announced (to admins' subscriptions).
pub const BREAK_GLASS_TOPIC: &str = "access.break_glass";
/// Longest a node trusts its cached copy of a subject's access state.
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

    /// How often open connections are checked: a quarter of the shortest
    /// logoff, from 250 ms to 5 s.
    pub fn tick(&self) -> Duration {
        let shortest = [self.patient, self.clinician, self.ops, self.admin]
            .into_iter()
            .min()
            .unwrap_or(Duration::from_secs(60));
        (shortest / 4).clamp(Duration::from_millis(250), Duration::from_secs(5))
    }
}

#[derive(Clone)]
struct Cached {
    fetched_ms: u64,
    state: Option<AccountState>,
    /// When this node last wrote the subject's activity.
    written_ms: u64,
}

/// The gate (see the module docs). One per node, shared.
pub struct Gate {
    store: Store,
    bus: Arc<dyn Bus>,
    logoff: Logoff,
    cache: dashmap::DashMap<String, Cached>,
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
            changes: tokio::sync::broadcast::channel(1024).0,
            failures: std::sync::Mutex::default(),
        })
    }

    /// Listens for access changes on the bus, and writes the failure
    /// summaries every `summaries`. Runs until the process ends.
    pub async fn start(self: &Arc<Gate>, summaries: Duration) -> Result<(), crate::bus::BusError> {
        let mut sub = self.bus.subscribe(ACCESS_TOPIC, 1024).await?;
        let gate = Arc::clone(self);
        tokio::spawn(async move {
            while let Some((_, change)) = sub.next_of::<AccessChanged>().await {
                gate.cache.remove(&change.subject);
                let _ = gate.changes.send(change);
            }
            tracing::warn!("the access-change subscription ended");
        });
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
        let _ = self.changes.send(change.clone());
        let env = Envelope::new(AccessChanged::TYPE, &change).map_err(|e| e.to_string())?;
        self.bus
            .publish(ACCESS_TOPIC, &env)
            .await
            .map_err(|e| e.to_string())
    }

    async fn state(&self, subject: &str, now: u64, fresh: bool) -> Result<Cached, AuthError> {
        if !fresh {
            if let Some(c) = self.cache.get(subject) {
                if now.saturating_sub(c.fetched_ms) < CACHE_MS {
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
            fetched_ms: now,
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
        // Activity is written at most every `write_every`: the stored time
        // may be that much behind, so the logoff waits that much longer.
        let role = v.principal.role;
        let limit = (self.logoff.of(role) + self.logoff.write_every(role)).as_millis() as u64;
        if now.saturating_sub(last) > limit {
            Verdict::Idle
        } else {
            Verdict::Ok
        }
    }

    async fn touch(&self, v: &Verified, now: u64) -> Result<(), AuthError> {
        let subject = &v.principal.subject;
        let every = self.logoff.write_every(v.principal.role);
        let written = match self.cache.get_mut(subject) {
            Some(mut c) => {
                // This node knows at once; the database within `every`.
                let s = c.state.get_or_insert_with(AccountState::default);
                s.last_active_ms = s.last_active_ms.max(now);
                c.written_ms
            }
            None => 0,
        };
        if now.saturating_sub(written) < every.as_millis() as u64 {
            return Ok(());
        }
        self.store
            .touch_account(subject, v.principal.role.name(), now)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "the access state cannot be written");
                AuthError::Unavailable
            })?;
        if let Some(mut c) = self.cache.get_mut(subject) {
            c.written_ms = now;
            let s = c.state.get_or_insert_with(AccountState::default);
            s.last_active_ms = s.last_active_ms.max(now);
            s.role = v.principal.role.name().into();
        }
        Ok(())
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
    }
}
