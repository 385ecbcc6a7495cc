//! The access lifecycle: deactivating and reactivating accounts, revoking
//! tokens and sessions, and break-glass (emergency) access with its
//! announcements to admins.
//!
//! Every act is audited (allowed, refused, or failed) and announced on the
//! bus ([`crate::api::gate`]), so every node's open connections and
//! subscriptions of the principal end within a second. A break-glass reason
//! is stored with the grant (it may hold PHI): never logged, never audited,
//! never announced.

use async_graphql::{Context, Object, SimpleObject, Subscription, ID};
use futures_util::Stream;

use crate::api::access::{deps, principal, valid, Access};
use crate::api::error::ApiError;
use crate::api::gate::{AccessChanged, BreakGlassGranted, Change, BREAK_GLASS_TOPIC};
use crate::api::graphql::scalars::DateTime;
use crate::api::live::{async_stream_lite, until_expiry, SubscriptionSlot};
use crate::bus::{BusEvent, Envelope};
use crate::clock::unix_ms;
use crate::principal::Role;

/// Longest break-glass reason, in bytes.
const MAX_REASON: usize = 2000;

/// A break-glass grant: a clinician's emergency access to a patient off its
/// care team, until `expiresAt`.
#[derive(SimpleObject, Clone)]
#[graphql(name = "BreakGlassGrant")]
pub struct BreakGlassGrantGql {
    pub id: ID,
    pub clinician_id: ID,
    pub patient_id: ID,
    pub granted_at: DateTime,
    pub expires_at: DateTime,
}

impl From<BreakGlassGranted> for BreakGlassGrantGql {
    fn from(g: BreakGlassGranted) -> Self {
        BreakGlassGrantGql {
            id: ID(g.grant),
            clinician_id: ID(g.clinician),
            patient_id: ID(g.patient),
            granted_at: DateTime::from_unix_ms(g.granted_ms),
            expires_at: DateTime::from_unix_ms(g.expires_ms),
        }
    }
}

/// Announces `change`; a failure to announce is an error of the act (the
/// database already holds it).
async fn announce(d: &crate::api::access::Deps, change: AccessChanged) -> Result<(), ApiError> {
    d.gate.announce(change).await.map_err(|e| {
        tracing::warn!(error = %e, "an access change was not announced");
        ApiError::unavailable("the change was stored but not announced to every node")
    })
}

#[derive(Default)]
pub struct LifecycleMutation;

#[Object]
impl LifecycleMutation {
    /// Deactivates an account (admin): every token of the subject stops
    /// working and its connections close; it stays so until reactivated.
    async fn deactivate_account(
        &self,
        ctx: &Context<'_>,
        subject: ID,
    ) -> async_graphql::Result<bool> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        let fields = format!("account={}", subject.as_str());
        let access = Access::new(d, who, "deactivate account", &fields);
        access.require(&[Role::Admin]).await?;
        valid(&subject, "subject")?;
        if subject.as_str() == who.subject {
            return Err(ApiError::bad_input("subject: an admin does not deactivate itself").into());
        }
        access.allowed(None).await?;
        let now_s = unix_ms() / 1000 + 1;
        let stored = match d.store.set_disabled(&subject, true).await {
            Ok(()) => d.store.end_sessions(&subject, now_s).await,
            Err(e) => Err(e),
        };
        access.unless_failed(None, stored).await?;
        let change = AccessChanged {
            subject: subject.to_string(),
            jti: None,
            change: Change::Deactivated,
        };
        announce(d, change).await?;
        Ok(true)
    }

    /// Reactivates an account (admin). Tokens issued before the
    /// deactivation stay dead: the subject signs in again.
    async fn reactivate_account(
        &self,
        ctx: &Context<'_>,
        subject: ID,
    ) -> async_graphql::Result<bool> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        let fields = format!("account={}", subject.as_str());
        let access = Access::new(d, who, "reactivate account", &fields);
        access.require(&[Role::Admin]).await?;
        valid(&subject, "subject")?;
        access.allowed(None).await?;
        let done = d.store.set_disabled(&subject, false).await;
        access.unless_failed(None, done).await?;
        let change = AccessChanged {
            subject: subject.to_string(),
            jti: None,
            change: Change::Reactivated,
        };
        announce(d, change).await?;
        Ok(true)
    }

    /// Revokes one token by its id (`jti`). Without arguments: the caller's
    /// own token (a logout). Anyone may revoke tokens of its own subject;
    /// an admin, of any `subject`.
    async fn revoke_token(
        &self,
        ctx: &Context<'_>,
        jti: Option<ID>,
        subject: Option<ID>,
    ) -> async_graphql::Result<bool> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        let current = ctx.data_opt::<crate::auth::Verified>();
        let subject = subject.map_or_else(|| who.subject.clone(), |s| s.0);
        let fields = format!("account={subject}");
        let access = Access::new(d, who, "revoke token", &fields);
        if subject != who.subject {
            access.require(&[Role::Admin]).await?;
        }
        valid(&subject, "subject")?;
        let (jti, expires_ms) = match (jti, current) {
            (Some(j), _) => {
                if j.is_empty() || j.len() > 128 {
                    return Err(ApiError::bad_input("jti: 1–128 bytes").into());
                }
                let longest = crate::auth::MAX_TTL.as_millis() as u64 + 10_000;
                (j.0, unix_ms() + longest)
            }
            (None, Some(v)) if subject == who.subject => match &v.jti {
                Some(j) => (j.clone(), v.exp * 1000 + 10_000),
                None => {
                    let why = "jti: this token has no id; revoke the sessions instead";
                    return Err(ApiError::bad_input(why).into());
                }
            },
            (None, _) => return Err(ApiError::bad_input("jti: which token").into()),
        };
        access.allowed(None).await?;
        let done = d.store.revoke_token(&jti, &subject, expires_ms).await;
        access.unless_failed(None, done).await?;
        let change = AccessChanged {
            subject,
            jti: Some(jti),
            change: Change::TokenRevoked,
        };
        announce(d, change).await?;
        Ok(true)
    }

    /// Ends every session of `subject` (default: the caller's own): every
    /// token issued until now stops working, its connections close. An
    /// admin may end anyone's.
    async fn revoke_sessions(
        &self,
        ctx: &Context<'_>,
        subject: Option<ID>,
    ) -> async_graphql::Result<bool> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        let subject = subject.map_or_else(|| who.subject.clone(), |s| s.0);
        let fields = format!("account={subject}");
        let access = Access::new(d, who, "revoke sessions", &fields);
        if subject != who.subject {
            access.require(&[Role::Admin]).await?;
        }
        valid(&subject, "subject")?;
        access.allowed(None).await?;
        let done = d.store.end_sessions(&subject, unix_ms() / 1000 + 1).await;
        access.unless_failed(None, done).await?;
        let change = AccessChanged {
            subject,
            jti: None,
            change: Change::SessionsEnded,
        };
        announce(d, change).await?;
        Ok(true)
    }

    /// Emergency access (clinician): opens `patientId`'s records to the
    /// caller for the configured time (`CARDIO_BREAK_GLASS_DURATION`,
    /// default 60 min), off the care team. The `reason` is stored with the
    /// grant for review (never logged); the grant is audited as
    /// `break_glass`, every access under it as `break_glass:<action>`, and
    /// every admin is told on `breakGlassEvents`. It ends by itself.
    async fn break_glass(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        reason: String,
    ) -> async_graphql::Result<BreakGlassGrantGql> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        let access = Access::new(d, who, "break_glass", "grant");
        access.require(&[Role::Clinician]).await?;
        valid(&patient_id, "patientId")?;
        if reason.trim().is_empty() || reason.len() > MAX_REASON {
            return Err(ApiError::bad_input(format!("reason: 1–{MAX_REASON} bytes")).into());
        }
        if !d
            .store
            .patient_exists(&patient_id)
            .await
            .map_err(ApiError::unavailable)?
        {
            return Err(access.refuse_unknown().await.into());
        }
        access.allowed(Some(&patient_id)).await?;
        let now = unix_ms();
        let grant = BreakGlassGranted {
            grant: uuid::Uuid::new_v4().simple().to_string(),
            clinician: who.subject.clone(),
            patient: patient_id.to_string(),
            granted_ms: now,
            expires_ms: now + d.break_glass.as_millis() as u64,
        };
        let stored = d
            .store
            .grant_break_glass(
                &grant.grant,
                &grant.clinician,
                &grant.patient,
                &reason,
                grant.granted_ms,
                grant.expires_ms,
            )
            .await;
        match stored {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                access.failed(Some(&patient_id)).await;
                return Err(ApiError::Forbidden.into());
            }
            Err(e) => {
                access.failed(Some(&patient_id)).await;
                return Err(ApiError::unavailable(e).into());
            }
        }
        let env = Envelope::new(BreakGlassGranted::TYPE, &grant).map_err(ApiError::unavailable)?;
        if let Err(e) = d.bus.publish(BREAK_GLASS_TOPIC, &env).await {
            // The emergency comes first: the grant stands (it is audited;
            // the admins' review reads the trail).
            tracing::warn!(error = %e, "a break-glass grant was not announced to admins");
        }
        // At its end, every node ends the clinician's subscriptions (the
        // gate times it from this announcement); the check on every access
        // needs no timer: it reads the expiry.
        Ok(grant.into())
    }
}

#[derive(Default)]
pub struct LifecycleSubscription;

#[Subscription]
impl LifecycleSubscription {
    /// Break-glass grants as they are made, on any node (admin).
    async fn break_glass_events(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<BreakGlassGrantGql>>> {
        let (who, d) = (principal(ctx)?, deps(ctx).clone());
        let access = Access::new(&d, who, "read break_glass events", "break_glass");
        access.require(&[Role::Admin]).await?;
        access.allowed(None).await?;
        let slot = SubscriptionSlot::take(&d, who, "breakGlassEvents")?;
        let mut sub = d
            .bus
            .subscribe(BREAK_GLASS_TOPIC, 256)
            .await
            .map_err(ApiError::unavailable)?;
        Ok(until_expiry(
            ctx,
            async_stream_lite(move |tx| async move {
                let _slot = slot;
                while let Some((_, g)) = sub.next_of::<BreakGlassGranted>().await {
                    if tx.send(g.into()).await.is_err() {
                        break;
                    }
                }
            }),
        ))
    }
}
