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
pub mod page;
pub mod people;
pub mod role;
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
    .register_output_type::<super::error::RefusalReason>()
    .data(deps)
    // The node's device lanes (issue 15): beside the dependencies, which
    // they use to reach the streams.
    .data(std::sync::Arc::new(super::lanes::PushLanes::default()))
    .limit_depth(12)
    .limit_complexity(1_000)
    .limit_recursive_depth(32)
    // Checked before validation: a field of 60,000 directives is one error.
    .limit_directives(MAX_DIRECTIVES)
    .extension(super::observe::Observe)
    .extension(super::limits::RequestLimits { max_errors })
    // Innermost on the parse step: the two above see every document.
    .extension(super::doc_cache::DocumentCache::default());
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
    .register_output_type::<super::error::RefusalReason>()
    .finish()
    .sdl()
}

/// The schema's own rules, checked on its SDL by the tests: type names
/// that leak Rust (`…Gql`), and times, sequences or epochs typed `Float`.
pub mod rules {
    use async_graphql::parser::types::{BaseType, Type, TypeKind, TypeSystemDefinition};

    /// Whether a field, argument or input field named `name` holds a time:
    /// `at`, `since`, `start`, `from`, `to`, `until`, or a name ending in
    /// `At`, `Until` or `Seen`.
    pub fn is_time(name: &str) -> bool {
        matches!(name, "at" | "since" | "start" | "from" | "to" | "until")
            || ["At", "Until", "Seen"]
                .iter()
                .any(|end| name.ends_with(end))
    }

    fn named(ty: &Type) -> &str {
        match &ty.base {
            BaseType::Named(n) => n.as_str(),
            BaseType::List(inner) => named(inner),
        }
    }

    /// The types of `sdl` whose name ends in `Gql`.
    pub fn gql_names(sdl: &str) -> Vec<String> {
        definitions(sdl)
            .filter_map(|d| match d {
                TypeSystemDefinition::Type(t) => Some(t.node.name.node.to_string()),
                _ => None,
            })
            .filter(|n| n.ends_with("Gql"))
            .collect()
    }

    /// Every `Type.field`, `Type.field(arg)` or `Input.field` of `sdl` that
    /// is a time, a `seq` or an `epoch` and is typed `Float`.
    pub fn float_times(sdl: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |place: String, name: &str, ty: &Type| {
            if (is_time(name) || matches!(name, "seq" | "epoch")) && named(ty) == "Float" {
                out.push(place);
            }
        };
        for d in definitions(sdl) {
            let TypeSystemDefinition::Type(t) = d else {
                continue;
            };
            let owner = t.node.name.node.to_string();
            match &t.node.kind {
                TypeKind::Object(o) => {
                    for f in &o.fields {
                        let f = &f.node;
                        check(format!("{owner}.{}", f.name.node), &f.name.node, &f.ty.node);
                        for a in &f.arguments {
                            let a = &a.node;
                            let place = format!("{owner}.{}({})", f.name.node, a.name.node);
                            check(place, &a.name.node, &a.ty.node);
                        }
                    }
                }
                TypeKind::InputObject(i) => {
                    for f in &i.fields {
                        let f = &f.node;
                        check(format!("{owner}.{}", f.name.node), &f.name.node, &f.ty.node);
                    }
                }
                _ => {}
            }
        }
        out
    }

    fn definitions(sdl: &str) -> impl Iterator<Item = TypeSystemDefinition> {
        async_graphql::parser::parse_schema(sdl)
            .expect("the SDL parses")
            .definitions
            .into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::rules::{float_times, gql_names, is_time};

    /// Part of the schema before API v1: what the rules must catch.
    const OLD: &str = r#"
        type PushResultGql { accepted: Int! }
        type Alert { id: ID!, since: Float!, raisedAt: Float!, resolvedAt: Float }
        type AuditEntry { seq: Float!, at: Float! }
        type Shard { id: Int!, epoch: Float! }
        type Node { lastSeen: Float! }
        type VitalPoint { start: Float!, mean: Float! }
        input SampleInput { at: Float!, value: Float }
        type Query {
            vitals(patientId: ID!, from: Float!, to: Float!): [VitalPoint!]!
            auditLog(after: Float): [AuditEntry!]!
        }
    "#;

    #[test]
    fn the_rules_catch_the_old_schema() {
        assert_eq!(gql_names(OLD), ["PushResultGql"]);
        assert_eq!(
            float_times(OLD),
            [
                "Alert.since",
                "Alert.raisedAt",
                "Alert.resolvedAt",
                "AuditEntry.seq",
                "AuditEntry.at",
                "Shard.epoch",
                "Node.lastSeen",
                "VitalPoint.start",
                "SampleInput.at",
                "Query.vitals(from)",
                "Query.vitals(to)",
            ],
            "(`after` is a cursor now, not a time: not caught by its name)"
        );
        assert!(is_time("expiresAt") && is_time("pausedUntil") && is_time("lastSeen"));
        assert!(!is_time("mean") && !is_time("kind"));
    }

    #[test]
    fn no_type_name_ends_in_gql() {
        let names = gql_names(&super::sdl());
        assert!(names.is_empty(), "types named after Rust: {names:?}");
    }

    #[test]
    fn no_time_sequence_or_epoch_is_a_float() {
        let floats = float_times(&super::sdl());
        assert!(floats.is_empty(), "use DateTime or Int64: {floats:?}");
    }

    #[test]
    fn the_committed_schema_is_the_one_the_code_serves() {
        let committed = include_str!("../../../schema.graphql");
        assert!(
            committed == super::sdl(),
            "schema.graphql drifted from the code: run `cargo run -- schema > schema.graphql` and review the diff"
        );
    }
}
