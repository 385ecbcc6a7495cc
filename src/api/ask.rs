//! How resolvers reach actors: typed asks over the bus
//! ([`crate::bus::client::Requester::ask`]) within the API's deadline, their
//! failures as [`ApiError`]s (the cause logged once), and the consult
//! lookups authorization needs. Commands carry their idempotency key, so an
//! ask that is repeated while a shard moves is applied once.

use std::time::Duration;

use super::access::{carried_back, Access, Deps};
use super::error::{ApiError, RefusalReason};
use crate::actors::consult::state::{Command, Outcome};
use crate::actors::consult::{Act, ConsultView, View};
use crate::address::ActorId;
use crate::bus::BusMessage;
use crate::store::audit::AuditEntry;
use crate::store::consults::ConsultKnown;

/// How long a resolver waits for an actor, every retry included.
pub(crate) const ASK_DEADLINE: Duration = Duration::from_secs(10);

/// Asks actor `id` (of `M`'s kind) with `msg`; see the module docs.
pub(crate) async fn ask<M: BusMessage>(d: &Deps, id: &str, msg: &M) -> Result<M::Reply, ApiError> {
    let to = ActorId::new(M::KIND, id)
        .map_err(|_| ApiError::bad_input(format!("{} id is not a valid id", M::KIND)))?;
    let deadline = tokio::time::Instant::now() + ASK_DEADLINE;
    d.requester
        .ask(&to, msg, deadline)
        .await
        .map_err(|e| ApiError::ask_failed(M::TYPE, &e))
}

/// Sends `command` to consult `consult` with its idempotency key and the
/// audit entry of its access (committed with the command's first event, or
/// on its own by the actor before it answers); a refusal comes back as
/// `CONSULT_REFUSED` with the refusal's code. Without an answer, the entry
/// is written here ([`carried_back`]).
pub(crate) async fn act(
    d: &Deps,
    consult: &str,
    request_id: String,
    command: Command,
    audit: Option<AuditEntry>,
) -> Result<Outcome, ApiError> {
    let msg = Act {
        request_id,
        command,
        audit,
    };
    match ask(d, consult, &msg).await {
        Ok(Ok(outcome)) => Ok(outcome),
        Ok(Err(refused)) => match RefusalReason::of_consult(&refused) {
            Some(reason) => Err(ApiError::consult(reason)),
            None => {
                carried_back(d, msg.audit.as_ref()).await;
                Err(ApiError::unavailable(
                    "the consult could not record this now",
                ))
            }
        },
        Err(e) => {
            carried_back(d, msg.audit.as_ref()).await;
            Err(e)
        }
    }
}

/// The consult's view (status, people, chat lines after `after`).
pub(crate) async fn consult_view(
    d: &Deps,
    consult: &str,
    after: u64,
) -> Result<ConsultView, ApiError> {
    ask(d, consult, &View { after }).await
}

/// The patient of consult `consult`, once `access` allows it for that
/// patient (audited either way).
///
/// The patient comes from the node's cache
/// ([`super::authz_cache::AuthzCache`]: a consult's patient never changes)
/// or, the first time, from the consult's projected row (its view when the
/// projection lags behind the journal); so a command on a consult asks its
/// actor once, and the actor decides from its own state whether the caller
/// takes part and whether the consult is over.
///
/// A consult that is not there is refused alike (`FORBIDDEN`, as for one the
/// caller may not see: no answer tells an id that exists from one that does
/// not), looked up in the store without starting its actor (a request of
/// thousands of aliased random ids would otherwise start thousands of
/// actors); see [`Access::refuse_unknown`] for its cost and its audit.
pub(crate) async fn authorized_consult(
    d: &Deps,
    access: &Access<'_>,
    consult: &str,
) -> Result<String, ApiError> {
    let (patient, entry) = authorized_consult_carried(d, access, consult).await?;
    access.write(&entry).await?;
    Ok(patient)
}

/// [`authorized_consult`], the allowed access's entry returned to be
/// carried with the command ([`Access::patient_carried`]).
pub(crate) async fn authorized_consult_carried(
    d: &Deps,
    access: &Access<'_>,
    consult: &str,
) -> Result<(String, AuditEntry), ApiError> {
    let lookup = async {
        let known = d.store.consult_known(consult).await;
        match known.map_err(ApiError::unavailable)? {
            ConsultKnown::Patient(patient) => Ok(Some(patient)),
            ConsultKnown::Journaled => Ok(consult_view(d, consult, u64::MAX).await?.patient),
            ConsultKnown::Unknown => Ok(None),
        }
    };
    let Some(patient) = d.gate.authz().consult_patient(consult, lookup).await? else {
        // Audited as an attempt on "consult", whatever was asked of it.
        return Err(access.on("consult").refuse_unknown().await);
    };
    let entry = access.patient_carried(&patient).await?;
    Ok((patient, entry))
}
