//! The GraphQL API (async-graphql): `POST /graphql`, subscriptions over
//! WebSocket on the same path (graphql-transport-ws), GraphiQL at `/graphiql`
//! in dev mode. The SDL is committed as `schema.graphql`.
//!
//! One room per area, each with its queries, mutations and subscriptions:
//! [`people`] (who I am, patients, registrations, care teams),
//! [`lifecycle`] (accounts, revocation, break-glass), [`consult`] (live
//! consults), [`vitals`] (device readings), [`ops`] (supervision trees, the
//! cluster, the audit trail), [`insight`] (the node's recent series, dead
//! letters) and [`super::monitoring`] (alerts, ECG, alarm
//! settings). What they share sits below them: [`super::access`] (the one
//! authorization-and-audit check), `api::ask` (typed asks to actors),
//! [`super::error`] (coded errors) and `api::live` (subscriptions).
//!
//! Every resolver that touches a patient's records first authorizes the
//! principal (a patient: their own; a clinician: patients on their care team;
//! ops and admin: no PHI) and appends an audit entry for the access, allowed
//! or denied, before answering. A denial is `FORBIDDEN` whether or not the
//! record exists. Errors carry a code in `extensions.code` and never PHI.

pub mod consult;
pub mod insight;
pub mod lifecycle;
pub mod ops;
pub mod people;
pub mod scalars;
pub mod vitals;

use async_graphql::Schema;

pub use super::access::Deps;
pub use super::error::coded;
pub use super::live::{Expiry, MAX_SUBSCRIPTIONS};
pub use ops::RESTART_TOPIC;

/// The schema type.
pub type CardioSchema = Schema<Query, Mutation, SubscriptionRoot>;

/// The API's root types: every area's, merged.
#[derive(async_graphql::MergedObject, Default)]
pub struct Query(
    people::PeopleQuery,
    consult::ConsultQuery,
    vitals::VitalsQuery,
    ops::OpsQuery,
    super::monitoring::MonitoringQuery,
    insight::InsightQuery,
);

#[derive(async_graphql::MergedObject, Default)]
pub struct Mutation(
    people::PeopleMutation,
    consult::ConsultMutation,
    vitals::VitalsMutation,
    ops::OpsMutation,
    super::monitoring::MonitoringMutation,
    lifecycle::LifecycleMutation,
);

#[derive(async_graphql::MergedSubscription, Default)]
#[graphql(name = "Subscription")]
pub struct SubscriptionRoot(
    ops::OpsSubscription,
    vitals::VitalsSubscription,
    consult::ConsultSubscription,
    super::monitoring::MonitoringSubscription,
    lifecycle::LifecycleSubscription,
);

/// The bearer token of the request, to ask other nodes on the caller's behalf.
#[derive(Clone)]
pub struct Bearer(pub String);

/// Most directives on one field.
pub const MAX_DIRECTIVES: usize = 8;

/// Builds the schema with its limits; introspection only in dev mode (the
/// SDL is published as `schema.graphql` instead).
pub fn schema(deps: Deps, dev: bool) -> CardioSchema {
    let max_errors = deps.limits.max_errors;
    let builder = Schema::build(
        Query::default(),
        Mutation::default(),
        SubscriptionRoot::default(),
    )
    .data(deps)
    .limit_depth(12)
    .limit_complexity(1_000)
    .limit_recursive_depth(32)
    // Checked before validation: a field of 60,000 directives is one error.
    .limit_directives(MAX_DIRECTIVES)
    .extension(super::observe::Observe)
    .extension(super::limits::RequestLimits { max_errors });
    if dev {
        builder.finish()
    } else {
        builder.disable_introspection().finish()
    }
}

/// The SDL of the schema (committed as `schema.graphql`).
pub fn sdl() -> String {
    Schema::build(
        Query::default(),
        Mutation::default(),
        SubscriptionRoot::default(),
    )
    .finish()
    .sdl()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_committed_schema_is_the_one_the_code_serves() {
        let committed = include_str!("../../../schema.graphql");
        assert!(
            committed == super::sdl(),
            "schema.graphql drifted from the code: run `cargo run -- schema > schema.graphql` and review the diff"
        );
    }
}
