//! Parsed GraphQL documents kept by their text, so that the operations apps
//! send again and again (`pushSamples` once a second per device, `me`,
//! `sendMessage`) are parsed once per node rather than once per request.
//!
//! async-graphql parses every request's text (a pest parser: about a fifth
//! of a write request's time in the HTTP handler, BENCHMARKS.md) before it
//! validates it against the variables. This extension sits innermost on the
//! parse step: a text seen before gets a copy of its document, without the
//! parse or its depth and directive checks (a document is a function of its
//! text alone, so the checks' verdict is the same); validation, which depends
//! on the variables, runs on every request as before.
//!
//! Only a text that holds no value of its own is kept: none with a string
//! (`"`), a number or a comment (`#`), the places where a client could have
//! written patient data into the text instead of into variables. Such a text
//! is parsed every time and never outlives its request. Texts over
//! [`MAX_TEXT`] bytes are not kept either, and the cache holds at most
//! [`CAPACITY`] documents, dropping the least recently used.

use std::sync::{Arc, Mutex};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerResult, Variables};
use hashlink::LruCache;

/// Documents kept at most.
pub const CAPACITY: usize = 256;
/// The longest text kept, in bytes.
pub const MAX_TEXT: usize = 2_048;

/// Whether a document of `query` may be kept (see the module docs).
pub fn keepable(query: &str) -> bool {
    query.len() <= MAX_TEXT
        && !query
            .bytes()
            .any(|b| b == b'"' || b == b'#' || b.is_ascii_digit())
}

/// The schema's extension: one cache per schema (so per node).
#[derive(Clone)]
pub struct ParseCache {
    docs: Arc<Mutex<LruCache<String, ExecutableDocument>>>,
}

impl Default for ParseCache {
    fn default() -> Self {
        ParseCache {
            docs: Arc::new(Mutex::new(LruCache::new(CAPACITY))),
        }
    }
}

impl ParseCache {
    /// Documents kept now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, ExecutableDocument>> {
        self.docs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ExtensionFactory for ParseCache {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Extension for ParseCache {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if !keepable(query) {
            return next.run(ctx, query, variables).await;
        }
        if let Some(doc) = self.lock().get(query) {
            return Ok(doc.clone());
        }
        // Kept only once parsed and checked: an error is not kept.
        let doc = next.run(ctx, query, variables).await?;
        self.lock().insert(query.to_owned(), doc.clone());
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};

    struct Q;

    #[Object]
    impl Q {
        async fn me(&self) -> &str {
            "me"
        }
        async fn echo(&self, text: String) -> String {
            text
        }
    }

    fn schema(cache: &ParseCache) -> Schema<Q, EmptyMutation, EmptySubscription> {
        Schema::build(Q, EmptyMutation, EmptySubscription)
            .limit_recursive_depth(8)
            .extension(cache.clone())
            .finish()
    }

    #[test]
    fn only_texts_without_values_of_their_own_are_kept() {
        assert!(keepable("query($t: String!) { echo(text: $t) }"));
        assert!(keepable("mutation($d: ID!, $s: [SampleInput!]!) { pushSamples(deviceId: $d, samples: $s) { accepted } }"));
        assert!(!keepable("{ echo(text: \"Jane Doe\") }"));
        assert!(!keepable("{ vitals(bpm: 72) { at } }"));
        assert!(!keepable("{ me } # Jane Doe, chest pain"));
        assert!(!keepable(&format!("{{ me {} }}", " ".repeat(MAX_TEXT))));
    }

    #[actix_rt::test]
    async fn a_text_seen_before_is_answered_from_its_kept_document() {
        let cache = ParseCache::default();
        let schema = schema(&cache);
        let q = "query($t: String!) { echo(text: $t) }";
        for text in ["a", "b"] {
            let req = async_graphql::Request::new(q)
                .variables(Variables::from_json(serde_json::json!({ "t": text })));
            let res = schema.execute(req).await;
            assert!(res.errors.is_empty(), "{:?}", res.errors);
            assert_eq!(res.data.into_json().unwrap()["echo"], text);
        }
        assert_eq!(cache.len(), 1);
        // Validation still runs per request, on its variables.
        let res = schema
            .execute(
                async_graphql::Request::new(q)
                    .variables(Variables::from_json(serde_json::json!({ "t": 7 }))),
            )
            .await;
        assert_eq!(res.errors.len(), 1, "{res:?}");
    }

    #[actix_rt::test]
    async fn literals_errors_and_too_deep_texts_are_not_kept() {
        let cache = ParseCache::default();
        let schema = schema(&cache);
        let res = schema.execute("{ echo(text: \"Jane Doe\") }").await;
        assert!(res.errors.is_empty());
        let res = schema.execute("{ me ").await;
        assert_eq!(res.errors.len(), 1);
        // Deeper than the schema's recursive depth: refused, and again.
        let deep = format!("{{ me {}{} }}", "{ a ".repeat(9), "} ".repeat(9));
        for _ in 0..2 {
            let res = schema.execute(deep.as_str()).await;
            assert_eq!(res.errors.len(), 1, "{res:?}");
        }
        assert_eq!(cache.len(), 0);
        let res = schema.execute("{ me }").await;
        assert!(res.errors.is_empty());
        assert_eq!(cache.len(), 1);
    }

    #[actix_rt::test]
    async fn it_holds_at_most_its_capacity() {
        let cache = ParseCache::default();
        let schema = schema(&cache);
        // Distinct texts without digits: aliases of letters.
        let names: Vec<String> = (0..CAPACITY + 10)
            .map(|i| {
                let mut n = String::new();
                let mut i = i;
                loop {
                    n.push((b'a' + (i % 26) as u8) as char);
                    i /= 26;
                    if i == 0 {
                        break;
                    }
                }
                n
            })
            .collect();
        for n in &names {
            let res = schema.execute(format!("{{ {n}: me }}")).await;
            assert!(res.errors.is_empty(), "{:?}", res.errors);
        }
        assert_eq!(cache.len(), CAPACITY);
    }
}
