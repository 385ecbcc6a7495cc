//! The API's errors: one enum, each variant with the code clients branch on
//! (`extensions.code`) and a message safe to show: no PHI, no id, no value,
//! no internals. The cause of an `UNAVAILABLE` (a database or bus error, an
//! actor that did not answer) is logged once, when the error becomes the
//! GraphQL answer, and never shown.
//!
//! `ApiError` deliberately has no `Display`: async-graphql turns anything
//! that displays into an error without a code, so a `?` on a displayable
//! error would lose it. `From<ApiError>` is the only way out, and it sets the
//! code.

use async_graphql::{Enum, ErrorExtensions};

/// Why a request was refused, in `extensions.reason` beside the code: what
/// a client branches on (the message is for people). Registered in the
/// schema though no field returns it, so the SDL documents every value.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum RefusalReason {
    /// No bearer token.
    NoToken,
    /// The token expired: sign in again.
    TokenExpired,
    /// The token was revoked, its session ended (logoff, revocation) or its
    /// account deactivated: sign in again.
    TokenRevoked,
    /// The token does not verify (signature, issuer, claims, key).
    TokenInvalid,
    /// The role needs multi-factor authentication.
    MfaRequired,
    /// The caller may not do this, or the record does not exist (not told
    /// apart).
    NotAllowed,
    /// The consult is over (ended, cancelled, no-show).
    ConsultOver,
    /// The caller is not in the consult.
    NotParticipant,
    /// Only the clinician in a consult ends it.
    OnlyClinicianMayEnd,
    /// Another clinician is already in the consult.
    TakenByAnotherClinician,
    /// Not in this state of the consult (a clinician joining before the
    /// patient, chatting before anyone joined, …).
    WrongState,
    /// The request id was used before for another request.
    RequestIdReused,
    /// The consult exists already.
    AlreadyRequested,
    /// A chat line empty or too long.
    BadText,
    /// No such consult.
    NoSuchConsult,
}

impl RefusalReason {
    /// A message for people: no PHI, no id, no value.
    pub fn message(self) -> &'static str {
        match self {
            RefusalReason::NoToken => "no bearer token",
            RefusalReason::TokenExpired => "the token has expired",
            RefusalReason::TokenRevoked => "the token was revoked or its session ended",
            RefusalReason::TokenInvalid => "the token is not a valid cardio token",
            RefusalReason::MfaRequired => "this role needs multi-factor authentication (acr/amr)",
            RefusalReason::NotAllowed => "not allowed",
            RefusalReason::ConsultOver => "the consult is over",
            RefusalReason::NotParticipant => "not a participant of this consult",
            RefusalReason::OnlyClinicianMayEnd => "only the clinician in the consult may end it",
            RefusalReason::TakenByAnotherClinician => {
                "another clinician is already in this consult"
            }
            RefusalReason::WrongState => "the consult is not in a state that allows this",
            RefusalReason::RequestIdReused => {
                "this request id was already used for another request"
            }
            RefusalReason::AlreadyRequested => "the consult already exists",
            RefusalReason::BadText => "message text must be 1 to 4000 characters",
            RefusalReason::NoSuchConsult => "no such consult",
        }
    }

    /// Why a consult refused a command.
    pub fn of_consult(e: &crate::actors::consult::state::ConsultError) -> Option<RefusalReason> {
        use crate::actors::consult::state::ConsultError as E;
        Some(match e {
            E::NotFound => RefusalReason::NoSuchConsult,
            E::AlreadyRequested => RefusalReason::AlreadyRequested,
            E::NotParticipant => RefusalReason::NotParticipant,
            E::WrongState { .. } => RefusalReason::WrongState,
            E::TakenByAnotherClinician => RefusalReason::TakenByAnotherClinician,
            E::Over => RefusalReason::ConsultOver,
            E::BadText { .. } => RefusalReason::BadText,
            E::RequestIdReused => RefusalReason::RequestIdReused,
            E::Unavailable => return None,
        })
    }

    /// Why a token was refused (`None`: not the token's fault).
    pub fn of_auth(e: &crate::auth::AuthError) -> Option<RefusalReason> {
        use crate::auth::AuthError as E;
        Some(match e {
            E::Missing => RefusalReason::NoToken,
            E::Expired => RefusalReason::TokenExpired,
            E::Revoked => RefusalReason::TokenRevoked,
            E::MfaRequired => RefusalReason::MfaRequired,
            E::BadSignature | E::Malformed(_) | E::NoKey(_) | E::BadKey(_) => {
                RefusalReason::TokenInvalid
            }
            E::Unavailable => return None,
        })
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub enum ApiError {
    /// No valid bearer token, and why (never quoting the token).
    Unauthenticated(RefusalReason),
    /// Not allowed, or no such record: the two are not told apart.
    Forbidden,
    /// An argument is out of bounds; the message names the argument.
    BadInput(String),
    /// The thing named does not exist (only where existence is not PHI).
    NotFound(String),
    /// The principal's request budget is spent.
    RateLimited,
    /// A domain refusal: `code` (`CONSULT_REFUSED`, `FORBIDDEN`) and why.
    Refused {
        code: &'static str,
        reason: RefusalReason,
    },
    /// The service cannot answer now; asking again may work. `cause` is
    /// logged, never shown.
    Unavailable { cause: String },
}

/// What made a request unanswerable, described for the log without
/// anything it may quote: a database error by its class and SQLSTATE, not
/// its text (PostgreSQL's can quote values); a bus error by its kind, not
/// its topic (topics carry ids); a JSON error by its position, not the
/// value it met.
pub trait Cause {
    fn describe(&self) -> String;
}

impl Cause for &'static str {
    fn describe(&self) -> String {
        (*self).to_owned()
    }
}

impl Cause for crate::store::StoreError {
    fn describe(&self) -> String {
        use crate::store::StoreError as E;
        match self {
            E::Database(sqlx::Error::Database(db)) => match db.code() {
                Some(code) => format!("database error (SQLSTATE {code})"),
                None => "database error".into(),
            },
            E::Database(e) => format!("database: {}", sqlx_class(e)),
            E::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                format!("database error (SQLite {:?})", e.code)
            }
            E::Sqlite(_) => "database error".into(),
            E::Unsupported(_) | E::Folder { .. } => "database not configured".into(),
            E::Migration(_) => "migration failed".into(),
            E::Conflict { .. } => "journal conflict".into(),
            E::Fenced { shard, .. } => format!("shard {shard} fenced off"),
            E::Audit(_) => "audit entry not written".into(),
            E::Batch(_) => "write round not committed".into(),
            E::Read(_) => "start state not read".into(),
            E::Sealing(_) => "encryption at rest failed".into(),
        }
    }
}

fn sqlx_class(e: &sqlx::Error) -> &'static str {
    match e {
        sqlx::Error::PoolTimedOut => "pool timed out",
        sqlx::Error::PoolClosed => "pool closed",
        sqlx::Error::Io(_) => "i/o error",
        sqlx::Error::Tls(_) => "tls error",
        sqlx::Error::Protocol(_) => "protocol error",
        sqlx::Error::RowNotFound => "row not found",
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => "a row does not decode",
        _ => "other error",
    }
}

impl Cause for crate::bus::BusError {
    fn describe(&self) -> String {
        use crate::bus::BusError as E;
        match self {
            E::UnsupportedScheme(_) | E::BadUrl(_) => "bus not configured",
            E::NoRecipient => "no recipient",
            E::BadTopic(_) => "bad topic",
            E::NoSuchShard { .. } => "no such shard",
            E::QueueFull(_) => "queue full",
            E::Closed => "bus closed",
            E::Broker(_) => "broker error",
            E::Unroutable(_) => "unroutable",
        }
        .into()
    }
}

impl Cause for crate::bus::EnvelopeError {
    fn describe(&self) -> String {
        // Its messages never quote the input.
        self.to_string()
    }
}

impl Cause for serde_json::Error {
    fn describe(&self) -> String {
        crate::redact::describe_json_error(self)
    }
}

impl ApiError {
    /// `UNAVAILABLE` because of `cause` (logged once, never shown).
    pub fn unavailable(cause: impl Cause) -> ApiError {
        ApiError::Unavailable {
            cause: cause.describe(),
        }
    }

    /// `UNAVAILABLE` because an ask of `msg_type` failed.
    pub fn ask_failed(msg_type: &'static str, e: &crate::bus::client::AskError) -> ApiError {
        use crate::bus::client::AskError as E;
        let why = match e {
            E::Bus(b) => b.describe(),
            // The rest never quote ids or values.
            other => other.to_string(),
        };
        ApiError::Unavailable {
            cause: format!("{msg_type}: {why}"),
        }
    }

    /// `BAD_USER_INPUT` with a message naming the argument.
    pub fn bad_input(message: impl Into<String>) -> ApiError {
        ApiError::BadInput(message.into())
    }

    /// The code clients branch on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated(_) => "UNAUTHENTICATED",
            ApiError::Forbidden => "FORBIDDEN",
            ApiError::BadInput(_) => "BAD_USER_INPUT",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::RateLimited => "RATE_LIMITED",
            ApiError::Refused { code, .. } => code,
            ApiError::Unavailable { .. } => "UNAVAILABLE",
        }
    }

    /// Why, for `extensions.reason`, when a refusal.
    pub fn reason(&self) -> Option<RefusalReason> {
        match self {
            ApiError::Unauthenticated(why) => Some(*why),
            ApiError::Forbidden => Some(RefusalReason::NotAllowed),
            ApiError::Refused { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    /// A consult's refusal: `CONSULT_REFUSED` and its reason.
    pub fn consult(reason: RefusalReason) -> ApiError {
        ApiError::Refused {
            code: "CONSULT_REFUSED",
            reason,
        }
    }

    /// The message shown.
    pub fn message(&self) -> String {
        match self {
            ApiError::Unauthenticated(why) => why.message().into(),
            ApiError::Forbidden => RefusalReason::NotAllowed.message().into(),
            ApiError::Refused { reason, .. } => reason.message().into(),
            ApiError::BadInput(m) | ApiError::NotFound(m) => m.clone(),
            ApiError::RateLimited => "too many requests; slow down".into(),
            ApiError::Unavailable { .. } => "the service cannot answer now; try again".into(),
        }
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(e: ApiError) -> Self {
        if let ApiError::Unavailable { cause } = &e {
            tracing::warn!(%cause, "request not answered");
        }
        match e.reason() {
            Some(reason) => refused(e.code(), reason, e.message()),
            None => coded(e.code(), e.message()),
        }
    }
}

/// A coded refusal with its reason (`extensions.reason`).
pub fn refused(
    code: &'static str,
    reason: RefusalReason,
    message: impl Into<String>,
) -> async_graphql::Error {
    let reason = async_graphql::InputType::to_value(&reason);
    async_graphql::Error::new(message.into()).extend_with(move |_, e| {
        e.set("code", code);
        e.set("reason", reason.clone());
    })
}

/// A coded GraphQL error, for the few answers made outside a resolver
/// (HTTP and WebSocket set-up); resolvers return [`ApiError`].
pub fn coded(code: &'static str, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message.into()).extend_with(|_, e| e.set("code", code))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(e: &async_graphql::Error) -> Option<String> {
        e.extensions
            .as_ref()
            .and_then(|x| x.get("code"))
            .map(|c| c.to_string().trim_matches('"').to_owned())
    }

    #[test]
    fn every_error_keeps_its_code_and_an_unavailable_never_shows_its_cause() {
        let cause = crate::bus::BusError::BadTopic("session.p-1@x".into());
        let api = ApiError::unavailable(cause);
        let ApiError::Unavailable { cause: logged } = &api else {
            panic!("{api:?}")
        };
        assert_eq!(logged, "bad topic", "the logged cause quotes no id");
        let e: async_graphql::Error = api.into();
        assert_eq!(code_of(&e).as_deref(), Some("UNAVAILABLE"));
        assert!(!e.message.contains("p-1"), "{}", e.message);
        let bad: serde_json::Error = serde_json::from_str::<u32>("\"812.5 Jane\"").unwrap_err();
        let ApiError::Unavailable { cause: logged } = ApiError::unavailable(bad) else {
            panic!()
        };
        assert!(!logged.contains("Jane"), "{logged}");
        let e: async_graphql::Error = ApiError::Forbidden.into();
        assert_eq!(code_of(&e).as_deref(), Some("FORBIDDEN"));
        let e: async_graphql::Error = ApiError::consult(RefusalReason::ConsultOver).into();
        assert_eq!(code_of(&e).as_deref(), Some("CONSULT_REFUSED"));
        assert_eq!(e.message, "the consult is over");
        let reason = e.extensions.as_ref().and_then(|x| x.get("reason")).cloned();
        assert_eq!(
            reason,
            Some(async_graphql::Value::Enum(async_graphql::Name::new(
                "CONSULT_OVER"
            )))
        );
    }

    #[test]
    fn a_question_mark_on_an_api_error_keeps_the_code() {
        fn resolver() -> async_graphql::Result<()> {
            Err(ApiError::bad_input("id is not a valid id"))?;
            Ok(())
        }
        let e = resolver().unwrap_err();
        assert_eq!(code_of(&e).as_deref(), Some("BAD_USER_INPUT"));
    }
}
