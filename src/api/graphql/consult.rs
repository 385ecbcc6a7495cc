//! Live consults: reading one (status, people, chat), the lifecycle
//! commands (request, join, chat, end, cancel) and the live event stream.
//!
//! Everything here goes through the consult's actor over the bus (its view
//! for reads, `consult.act` for writes): the actor is the one writer of a
//! consult's journal and of its chat projection, and it answers only once
//! the command is journaled.

use async_graphql::connection::{Connection, OpaqueCursor};
use async_graphql::{Context, Enum, Object, SimpleObject, Subscription, ID};
use futures_util::Stream;

use crate::actors::consult::state::{ChatLine, Command, Event, Outcome, Party, Status};
use crate::actors::consult::ConsultEvent;
use crate::api::access::{deps, principal, valid, Access, Deps};
use crate::api::ask::{act, authorized_consult, authorized_consult_carried, consult_view};
use crate::api::error::ApiError;
use crate::api::graphql::page::{connection, ConsultKey, MessageKey, Page};
use crate::api::graphql::role::RoleGql;
use crate::api::graphql::scalars::{DateTime, Int64};
use crate::api::live::{async_stream_lite, until_expiry, SubscriptionSlot};
use crate::clock::unix_ms;
use crate::principal::{Principal, Role};
use crate::store::audit::AuditEntry;
use crate::store::consults::{ConsultClaim, ConsultRow, ConsultsOf};

#[derive(SimpleObject, Clone)]
pub struct Message {
    pub seq: i32,
    pub author_role: RoleGql,
    pub author_id: ID,
    pub client_message_id: String,
    pub text: String,
    pub at: DateTime,
}

/// Where a consult is in its life.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::domain::consult::Status")]
pub enum ConsultStatus {
    /// Asked for; the patient is not in the waiting room yet.
    Requested,
    /// The patient is in the waiting room.
    Waiting,
    /// A clinician joined.
    InProgress,
    Ended,
    Cancelled,
    /// The patient did not come in time.
    NoShow,
}

/// What happened in a consult.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ConsultEventKind {
    Requested,
    Joined,
    Left,
    Chatted,
    Ended,
    Cancelled,
    NoShow,
}

impl From<&Event> for ConsultEventKind {
    fn from(e: &Event) -> Self {
        match e {
            Event::Requested { .. } => ConsultEventKind::Requested,
            Event::Joined { .. } => ConsultEventKind::Joined,
            Event::Left { .. } => ConsultEventKind::Left,
            Event::Chatted { .. } => ConsultEventKind::Chatted,
            Event::Ended { .. } => ConsultEventKind::Ended,
            Event::Cancelled { .. } => ConsultEventKind::Cancelled,
            Event::NoShow { .. } => ConsultEventKind::NoShow,
        }
    }
}

impl From<&ChatLine> for Message {
    fn from(line: &ChatLine) -> Self {
        let (role, id) = match &line.author {
            Party::Patient(id) => (RoleGql::Patient, id),
            Party::Clinician(id) => (RoleGql::Clinician, id),
        };
        Message {
            seq: line.seq as i32,
            author_role: role,
            author_id: ID(id.clone()),
            client_message_id: line.client_message_id.clone(),
            text: line.text.clone(),
            at: DateTime::from_unix_ms(line.at_ms),
        }
    }
}

/// A consult as its participants see it: read from the projection its
/// actor keeps, the chat from the actor itself.
pub struct ConsultGql {
    row: ConsultRow,
}

impl ConsultGql {
    pub(crate) fn new(row: ConsultRow) -> Self {
        ConsultGql { row }
    }

    /// The consult's patient.
    pub(crate) fn patient(&self) -> &str {
        &self.row.patient_id
    }
}

/// A page of chat messages.
pub type MessageConnection = Connection<OpaqueCursor<MessageKey>, Message>;
/// A page of consults.
pub type ConsultConnection = Connection<OpaqueCursor<ConsultKey>, ConsultGql>;

/// One page of the consults of `whose` (authorized already), newest first.
pub(crate) async fn consult_page(
    d: &Deps,
    whose: &ConsultsOf,
    status: Option<Vec<ConsultStatus>>,
    first: Option<i32>,
    after: Option<String>,
) -> async_graphql::Result<ConsultConnection> {
    let page = Page::<ConsultKey>::of(first, after)?;
    let statuses: Vec<Status> = status
        .unwrap_or_default()
        .into_iter()
        .map(Into::into)
        .collect();
    let before = page.after.as_ref().map(|k| (k.c.0, k.c.1.as_str()));
    let rows = d
        .store
        .consults_page(whose, &statuses, before, page.limit())
        .await
        .map_err(ApiError::unavailable)?;
    let rows = rows
        .into_iter()
        .map(|r| {
            let key = ConsultKey {
                c: (r.requested_ms, r.id.clone()),
            };
            (key, ConsultGql::new(r))
        })
        .collect();
    Ok(connection(rows, page.first))
}

#[Object(name = "Consult")]
impl ConsultGql {
    async fn id(&self) -> ID {
        ID(self.row.id.clone())
    }

    async fn status(&self) -> ConsultStatus {
        self.row.status.into()
    }

    async fn patient_id(&self) -> Option<ID> {
        Some(ID(self.row.patient_id.clone()))
    }

    async fn clinician_id(&self) -> Option<ID> {
        self.row.clinician_id.clone().map(ID)
    }

    /// Why it was requested (PHI, read by whoever may read the consult).
    async fn reason(&self) -> &str {
        &self.row.reason
    }

    /// The clinician's notes, once ended (PHI).
    async fn notes(&self) -> Option<&str> {
        self.row.notes.as_deref()
    }

    async fn requested_at(&self) -> DateTime {
        DateTime::from_unix_ms(self.row.requested_ms)
    }

    /// When a clinician joined the waiting patient.
    async fn started_at(&self) -> Option<DateTime> {
        self.row.started_ms.map(DateTime::from_unix_ms)
    }

    /// When it ended, was cancelled or became a no-show.
    async fn ended_at(&self) -> Option<DateTime> {
        self.row.ended_ms.map(DateTime::from_unix_ms)
    }

    /// The chat, oldest first (by `seq`).
    async fn messages(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<MessageConnection> {
        let page = Page::<MessageKey>::of(first, after)?;
        let after = page.after.map_or(0, |k| k.m);
        let view = consult_view(deps(ctx), &self.row.id, after).await?;
        let rows = view
            .lines
            .iter()
            .take(page.first + 1)
            .map(|l| (MessageKey { m: l.seq }, Message::from(l)))
            .collect();
        Ok(connection(rows, page.first))
    }
}

/// What happened in a consult, as subscribers see it.
#[derive(SimpleObject, Clone)]
#[graphql(name = "ConsultEvent")]
pub struct ConsultEventGql {
    /// The journal sequence of the event.
    pub seq: Int64,
    pub kind: ConsultEventKind,
    pub at: DateTime,
    /// The chat line, for `CHATTED`.
    pub message: Option<Message>,
}

fn party(who: &Principal) -> Result<Party, ApiError> {
    match who.role {
        Role::Patient => Ok(Party::Patient(who.subject.clone())),
        Role::Clinician => Ok(Party::Clinician(who.subject.clone())),
        _ => Err(ApiError::Forbidden),
    }
}

/// The caller as a party of consult `id`, once allowed to write `fields`
/// of it, and the access's audit entry, to travel with the command
/// ([`act`]).
async fn writer(
    d: &Deps,
    who: &Principal,
    id: &str,
    fields: &str,
) -> Result<(Party, AuditEntry), ApiError> {
    let access = Access::new(d, who, "write", fields);
    let (_, entry) = authorized_consult_carried(d, &access, id).await?;
    match party(who) {
        Ok(p) => Ok((p, entry)),
        Err(e) => {
            access.write(&entry).await?;
            Err(e)
        }
    }
}

#[derive(Default)]
pub struct ConsultQuery;

#[Object]
impl ConsultQuery {
    /// A consult and its chat (PHI).
    async fn consult(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<ConsultGql> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        valid(&id, "id")?;
        let access = Access::new(d, who, "read", "consult,chat");
        authorized_consult(d, &access, &id).await?;
        // The actor writes its row before it answers a command: a consult
        // without one is a projection still failing (repaired on its start).
        let row = d
            .store
            .consult_row(&id)
            .await
            .map_err(ApiError::unavailable)?
            .ok_or_else(|| ApiError::unavailable("a consult not projected yet"))?;
        Ok(ConsultGql::new(row))
    }
}

#[derive(Default)]
pub struct ConsultMutation;

#[Object]
impl ConsultMutation {
    /// A new consult for `patientId` (the patient, or a clinician of theirs).
    /// `requestId` (the caller's, 1–128 bytes) makes a retry safe: the same
    /// caller's same id answers the same consult and makes nothing new,
    /// across restarts.
    async fn request_consult(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        reason: String,
        request_id: ID,
    ) -> async_graphql::Result<ID> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        valid(&patient_id, "patientId")?;
        if reason.len() > 2_000 {
            return Err(ApiError::bad_input("reason: at most 2000 bytes").into());
        }
        if request_id.is_empty() || request_id.len() > 128 {
            return Err(ApiError::bad_input("requestId: 1–128 bytes").into());
        }
        // The allowed access's entry travels with the command and commits
        // with its first event; every other way out writes it here.
        let access = Access::new(d, who, "write", "consult");
        let entry = access.patient_carried(&patient_id).await?;
        let fresh = uuid::Uuid::new_v4().simple().to_string();
        let claim = d
            .store
            .claim_consult_request(&who.subject, &request_id, &fresh, &patient_id)
            .await;
        let claimed = match claim {
            Ok(ConsultClaim::Claimed { consult, patient }) if patient == patient_id.as_str() => {
                Ok(consult)
            }
            Ok(ConsultClaim::Claimed { .. }) => Err(ApiError::consult(
                crate::api::error::RefusalReason::RequestIdReused,
            )),
            Ok(ConsultClaim::UnknownPatient) => Err(ApiError::NotFound("no such patient".into())),
            Err(e) => Err(ApiError::unavailable(e)),
        };
        let id = match claimed {
            Ok(id) => id,
            // No command: the access is audited here, before the answer.
            Err(e) => {
                access.write(&entry).await?;
                return Err(e.into());
            }
        };
        // A retry asks again with the same command id: the consult answers
        // it without recording anything new.
        let command = Command::Request {
            patient: patient_id.to_string(),
            reason,
        };
        act(d, &id, format!("{id}-request"), command, Some(entry)).await?;
        Ok(ID(id))
    }

    async fn join_consult(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        valid(&id, "id")?;
        let (p, entry) = writer(d, who, &id, "consult").await?;
        let request_id = format!("join-{}-{}", who.subject, unix_ms());
        act(d, &id, request_id, Command::Join { who: p }, Some(entry)).await?;
        Ok(true)
    }

    /// Sends a chat line; `clientMessageId` makes retries safe. Returns its sequence.
    async fn send_message(
        &self,
        ctx: &Context<'_>,
        consult_id: ID,
        client_message_id: String,
        text: String,
    ) -> async_graphql::Result<i32> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        valid(&consult_id, "consultId")?;
        if client_message_id.is_empty()
            || client_message_id.len() > 128
            || text.is_empty()
            || text.chars().count() > 4_000
        {
            return Err(
                ApiError::bad_input("clientMessageId 1–128 bytes, text 1–4000 characters").into(),
            );
        }
        let (p, entry) = writer(d, who, &consult_id, "chat").await?;
        let request_id = format!("chat-{}-{client_message_id}", who.subject);
        let command = Command::Chat {
            who: p,
            client_message_id,
            text,
        };
        match act(d, &consult_id, request_id, command, Some(entry)).await? {
            Outcome::Line { seq, .. } => Ok(seq as i32),
            Outcome::Done => {
                Err(ApiError::unavailable("a chat line was answered without its sequence").into())
            }
        }
    }

    async fn end_consult(
        &self,
        ctx: &Context<'_>,
        id: ID,
        notes: String,
    ) -> async_graphql::Result<bool> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        valid(&id, "id")?;
        if notes.chars().count() > 20_000 {
            return Err(ApiError::bad_input("notes: at most 20000 characters").into());
        }
        if who.role == Role::Patient {
            // Not a question of which consult: no patient ends one.
            Access::new(d, who, "write", "consult,notes")
                .refuse(None)
                .await;
            return Err(ApiError::Refused {
                code: "FORBIDDEN",
                reason: crate::api::error::RefusalReason::OnlyClinicianMayEnd,
            }
            .into());
        }
        let (p, entry) = writer(d, who, &id, "consult,notes").await?;
        let request_id = format!("end-{}", id.as_str());
        act(
            d,
            &id,
            request_id,
            Command::End { who: p, notes },
            Some(entry),
        )
        .await?;
        Ok(true)
    }

    async fn cancel_consult(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let (who, d) = (principal(ctx)?, deps(ctx));
        valid(&id, "id")?;
        let (p, entry) = writer(d, who, &id, "consult").await?;
        let request_id = format!("cancel-{}", id.as_str());
        act(d, &id, request_id, Command::Cancel { who: p }, Some(entry)).await?;
        Ok(true)
    }
}

#[derive(Default)]
pub struct ConsultSubscription;

#[Subscription]
impl ConsultSubscription {
    /// A consult's events from now on; with `afterMessage`, the chat messages
    /// after that sequence first (resuming after a reconnect). It completes
    /// after delivering the end (`ENDED`, `CANCELLED`, `NO_SHOW`); opened on
    /// a consult already over, it delivers that end and completes.
    async fn consult_events(
        &self,
        ctx: &Context<'_>,
        consult_id: ID,
        after_message: Option<i32>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<ConsultEventGql>>> {
        let (who, d) = (principal(ctx)?.clone(), deps(ctx).clone());
        valid(&consult_id, "consultId")?;
        let access = Access::new(&d, &who, "read", "consult,chat");
        authorized_consult(&d, &access, &consult_id).await?;
        let topic = format!("consult.{}", crate::bus::events::topic_word(&consult_id));
        let slot = SubscriptionSlot::take(&d, &who, "consultEvents")?;
        let mut sub = d
            .bus
            .subscribe(&topic, 256)
            .await
            .map_err(ApiError::unavailable)?;
        let backlog = match after_message {
            Some(after) => {
                consult_view(&d, &consult_id, after.max(0) as u64)
                    .await?
                    .lines
            }
            None => Vec::new(),
        };
        let last_backlog = backlog.last().map_or(0, |l| l.seq);
        let id = consult_id.to_string();
        // Over already (looked at once the subscription is bound, so an end
        // cannot fall in between): its end, from the projection, is the
        // last event.
        let now = consult_view(&d, &consult_id, u64::MAX).await?;
        let over = match now.status.filter(|s| s.is_over()) {
            Some(status) => {
                let row = d
                    .store
                    .consult_row(&consult_id)
                    .await
                    .map_err(ApiError::unavailable)?;
                let kind = match status {
                    Status::Ended => ConsultEventKind::Ended,
                    Status::Cancelled => ConsultEventKind::Cancelled,
                    _ => ConsultEventKind::NoShow,
                };
                let at = row.and_then(|r| r.ended_ms).unwrap_or(0);
                let seq = d
                    .store
                    .last_seq(&format!("consult/{}", consult_id.as_str()))
                    .await
                    .map_err(ApiError::unavailable)?;
                Some(ConsultEventGql {
                    seq: Int64(seq as i64),
                    kind,
                    at: DateTime::from_unix_ms(at),
                    message: None,
                })
            }
            None => None,
        };
        Ok(until_expiry(
            ctx,
            async_stream_lite(move |tx| async move {
                let _slot = slot;
                for line in &backlog {
                    let event = ConsultEventGql {
                        seq: Int64(line.seq as i64),
                        kind: ConsultEventKind::Chatted,
                        at: DateTime::from_unix_ms(line.at_ms),
                        message: Some(line.into()),
                    };
                    let _ = tx.send(event).await;
                }
                if let Some(end) = over {
                    let _ = tx.send(end).await;
                    return;
                }
                while let Some((_, e)) = sub.next_of::<ConsultEvent>().await {
                    if e.consult != id {
                        continue;
                    }
                    let message = match &e.event {
                        crate::actors::consult::state::Event::Chatted { line } => {
                            if line.seq <= last_backlog {
                                continue;
                            }
                            Some(Message::from(line))
                        }
                        _ => None,
                    };
                    let event = ConsultEventGql {
                        seq: Int64(e.seq as i64),
                        kind: (&e.event).into(),
                        at: DateTime::from_unix_ms(e.event.at_ms()),
                        message,
                    };
                    let last = matches!(
                        event.kind,
                        ConsultEventKind::Ended
                            | ConsultEventKind::Cancelled
                            | ConsultEventKind::NoShow
                    );
                    if tx.send(event).await.is_err() || last {
                        break;
                    }
                }
            }),
        ))
    }
}
