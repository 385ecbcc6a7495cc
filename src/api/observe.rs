//! Metrics and a trace span for every GraphQL operation.
//!
//! The operation is labelled by its root field (`pushSamples`, `me`, …;
//! `multiple` when it selects several, `introspection`, or `invalid` when it
//! did not pass validation): names from the schema, never from the client, so
//! the label set stays bounded. The outcome is `ok` or the first error's code.
//! Neither the query text nor its variables (PHI) reach spans or metrics.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextRequest,
};
use async_graphql::parser::types::{ExecutableDocument, OperationDefinition, Selection};
use async_graphql::{Response, ServerResult, Variables};
use tracing::Instrument;

/// Add to the schema with `.extension(Observe)`.
pub struct Observe;

impl ExtensionFactory for Observe {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Observed::default())
    }
}

#[derive(Default)]
struct Observed {
    /// Each operation of the document (by name) and its label.
    operations: Mutex<Vec<(Option<String>, String)>>,
    /// The label of the operation that ran (set once it passed validation).
    ran: Mutex<Option<String>>,
}

/// The root field an operation selects, as a label.
fn label(op: &OperationDefinition) -> String {
    let mut names: Vec<&str> = Vec::new();
    for item in &op.selection_set.node.items {
        match &item.node {
            Selection::Field(f) => names.push(f.node.name.node.as_str()),
            _ => return "multiple".into(),
        }
    }
    names.sort_unstable();
    names.dedup();
    if !names.is_empty() && names.iter().all(|n| n.starts_with("__")) {
        return "introspection".into();
    }
    match names.as_slice() {
        [one] => (*one).to_owned(),
        _ => "multiple".into(),
    }
}

/// `ok`, or the code of the first error (`BAD_REQUEST` for the parse and
/// validation errors async-graphql raises without one).
pub fn outcome(response: &Response) -> String {
    match response.errors.first() {
        None => "ok".into(),
        Some(e) => e
            .extensions
            .as_ref()
            .and_then(|x| x.get("code"))
            .and_then(|v| match v {
                async_graphql::Value::String(s) => Some(s.clone()),
                async_graphql::Value::Enum(s) => Some(s.to_string()),
                _ => None,
            })
            .unwrap_or_else(|| "BAD_REQUEST".into()),
    }
}

#[async_trait::async_trait]
impl Extension for Observed {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let span = tracing::info_span!(
            "graphql.request",
            otel.kind = "server",
            operation = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let started = Instant::now();
        let response = next.run(ctx).instrument(span.clone()).await;
        let operation = self
            .ran
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| "invalid".into());
        let outcome = outcome(&response);
        {
            // The span may be started already (a resolver asked for its
            // context): rename the OpenTelemetry span itself.
            use opentelemetry::trace::TraceContextExt;
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            span.context()
                .span()
                .update_name(format!("graphql {operation}"));
        }
        span.record("operation", operation.as_str());
        span.record("outcome", outcome.as_str());
        let took = started.elapsed();
        span.in_scope(|| {
            tracing::debug!(%operation, %outcome, ms = took.as_millis() as u64, "graphql request")
        });
        crate::metrics::graphql_request(&operation, &outcome, took);
        response
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let labels = doc
            .operations
            .iter()
            .map(|(name, op)| (name.map(|n| n.to_string()), label(&op.node)))
            .collect();
        *self.operations.lock().unwrap_or_else(|e| e.into_inner()) = labels;
        Ok(doc)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let chosen = {
            let ops = self.operations.lock().unwrap_or_else(|e| e.into_inner());
            match operation_name {
                Some(name) => ops
                    .iter()
                    .find(|(n, _)| n.as_deref() == Some(name))
                    .map(|(_, l)| l.clone()),
                None if ops.len() == 1 => Some(ops[0].1.clone()),
                None => None,
            }
        };
        *self.ran.lock().unwrap_or_else(|e| e.into_inner()) = chosen;
        next.run(ctx, operation_name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(query: &str) -> Vec<String> {
        let doc = async_graphql::parser::parse_query(query).unwrap();
        doc.operations
            .iter()
            .map(|(_, op)| label(&op.node))
            .collect()
    }

    #[test]
    fn operations_are_labelled_by_their_root_field() {
        assert_eq!(labels("{ me { id } }"), ["me"]);
        assert_eq!(
            labels("mutation M { pushSamples(deviceId: \"d\") { accepted } }"),
            ["pushSamples"]
        );
        assert_eq!(labels("{ a: me { id } b: me { role } }"), ["me"]);
        assert_eq!(
            labels("{ me { id } patient(id: \"p\") { id } }"),
            ["multiple"]
        );
        assert_eq!(labels("{ __schema { types { name } } }"), ["introspection"]);
        assert_eq!(
            labels("{ ...F } fragment F on Query { me { id } }"),
            ["multiple"]
        );
    }
}
